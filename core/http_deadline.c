/* Deadlines per connection (issue 15 defect 6): MHD 0.9.75 has only an
 * idle timeout, which a client that trickles one byte now and then never
 * meets. Each open connection is tracked here with a deadline for its
 * current phase: its headers must be complete within the phase time of the
 * connection opening (or of the previous answer on a kept-alive
 * connection), its body within the phase time of its headers. While our
 * code works on a request (or it waits deferred) there is no deadline; a
 * client that does not read its answer meets MHD's idle timeout.
 *
 * A watchdog (core/periodic) walks the list twice a second and shuts down
 * the socket of a connection past its deadline; MHD then sees the end of
 * the stream in the connection's own thread and closes it. The socket is
 * only shut down, never closed here: MHD tells us (untrack) before it
 * closes the descriptor, under the same lock, so the number never names
 * another connection's socket. */
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/http_int.h"

#define WATCH_MS 500

struct http_conn {
    int fd;
    unsigned served;              /* requests answered on it (its MHD thread only) */
    _Atomic uint64_t deadline_ns; /* qtsp_mono_ns; 0 = none */
    http_conn *prev, *next;
};

static int64_t watch(qtsp_periodic *p, void *ctx)
{
    (void)p;
    qtsp_http_server *srv = ctx;
    uint64_t now = qtsp_mono_ns();
    pthread_mutex_lock(&srv->cmu);
    for (http_conn *c = srv->conns; c; c = c->next) {
        uint64_t d = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
        if (d == 0 || d > now)
            continue;
        atomic_store_explicit(&c->deadline_ns, 0, memory_order_relaxed); /* once */
        shutdown(c->fd, SHUT_RDWR);
        atomic_fetch_add_explicit(&srv->conns_timed_out, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&srv->cmu);
    return QTSP_PERIODIC_INTERVAL;
}

qtsp_status http_deadlines_start(qtsp_http_server *srv, unsigned phase_s)
{
    srv->phase_ns = (uint64_t)phase_s * 1000000000ULL;
    return qtsp_periodic_start("http deadlines", WATCH_MS, WATCH_MS, watch, srv, &srv->watch);
}

void http_deadlines_stop(qtsp_http_server *srv)
{
    qtsp_periodic_stop(srv->watch);
    srv->watch = NULL;
}

http_conn *http_conn_track(qtsp_http_server *srv, int fd)
{
    http_conn *c = malloc(sizeof *c);
    if (c == NULL)
        return NULL; /* untracked: only MHD's idle timeout applies */
    c->fd = fd;
    c->served = 0;
    atomic_init(&c->deadline_ns, qtsp_mono_ns() + srv->phase_ns);
    c->prev = NULL;
    pthread_mutex_lock(&srv->cmu);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    pthread_mutex_unlock(&srv->cmu);
    return c;
}

void http_conn_untrack(qtsp_http_server *srv, http_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&srv->cmu);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&srv->cmu);
    free(c);
}

void http_conn_served(http_conn *c)
{
    if (c && c->served < UINT_MAX)
        c->served++;
}

int http_conn_kept_alive(const http_conn *c)
{
    return c && c->served > 0;
}

void http_conn_phase(qtsp_http_server *srv, http_conn *c, int timed)
{
    if (c)
        atomic_store_explicit(&c->deadline_ns, timed ? qtsp_mono_ns() + srv->phase_ns : 0,
                              memory_order_relaxed);
}
