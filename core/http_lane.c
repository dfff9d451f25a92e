/* The fast lane (issue 19): the HTTP path of the requests that are most of a
 * trust service's traffic (POST /ocsp, POST /tsa), without MHD.
 *
 * Why: every deferred MHD request is suspended and resumed; a resume wakes
 * the connection's MHD thread through its ITC, which then rebuilds the
 * response and writes it. Measured here, that HTTP thread spent 21-23 us of
 * CPU per request against a token signature of about 55 us. On the lane a
 * completed request is posted to the lane thread, which writes every answer
 * posted since its last round after one wake-up (a TSA batch of a dozen
 * answers costs one); writing in the completing thread itself measured
 * worse for the TSA (its journal committer then writes a whole batch before
 * it can commit the next) and no better for OCSP (docs/bench.md).
 *
 * How: one thread owns the listening socket and an epoll set (edge
 * triggered). For each connection it peeks (MSG_PEEK) at what has arrived.
 * A request is served here only when it arrived whole and simple: "POST
 * <path of a fast route> HTTP/1.1", Host, a Content-Length within the
 * route's limit and LANE_BUF, the route's media type, and none of
 * Transfer-Encoding, Expect, Upgrade, Content-Encoding or folded or
 * malformed header lines. Then it is read and dispatched to the route's
 * handler like any other. Anything else (another method or path, a chunked
 * body, a 413 or 415 to give, HTTP/1.0) hands the connection, with the
 * request still unread in the socket, to MHD (MHD_add_connection), which
 * answers it as it always did; the connection stays with MHD.
 *
 * A connection has at most one request in the works: while it is PENDING
 * (in the handler, deferred, or its answer partly written) the lane reads
 * nothing more from it (pipelined requests wait in the socket, and are
 * answered in order). The answer goes out with one non-blocking sendmsg;
 * what does not fit waits in the connection (FLUSH) and the lane thread
 * writes the rest when the socket takes it. Input seen while PENDING
 * is noted (MISSED), and the writer then queues the connection for
 * another look. Only the lane thread closes a connection's socket,
 * and never while it is PENDING, so a completing thread always writes to
 * the right socket; connections are reference counted (the lane, a request
 * in the works, the queue). Answers of the lane thread's own handlers (a
 * synchronous OCSP answer from the cache, an error) are written at once.
 *
 * Limits and timeouts follow the server's: max_connections counts lane and
 * MHD connections together, as does connections per address (one table,
 * fed by MHD's connection callbacks too); a lane connection must bring a
 * whole request within the connection timeout of its opening or of its
 * previous answer (no deadline while its request is in the works). Stop:
 * no more accepts, idle connections closed, answers carry "Connection:
 * close"; deferred lane requests are forced (503) like MHD's. */
#define _GNU_SOURCE 1 /* memmem, accept4, pthread_setname_np */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/http_int.h"
#include "core/log.h"

#define LANE_BUF ((size_t)16 * 1024) /* a whole request, headers and body */
#define LANE_EVENTS 64
#define LANE_TICK_MS 500
#define LANE_ADDR_BUCKETS 1024
#define LANE_HDR_MAX (QTSP_HTTP_HEADERS_MAX_BYTES + 1024) /* response head */
#define LANE_BATCH 64                                     /* answers written by one system call */
#define LANE_BATCH_HEADS ((size_t)32 * 1024)              /* their heads */
#define LANE_PEEK 2048 /* a round's requests looked at in one submission: each up to this */

enum { ST_PENDING = 1, ST_MISSED = 2, ST_FLUSH = 4, ST_CLOSE = 8 };
enum { DEFER_NONE = 0, DEFER_OWNED = 1, DEFER_FORCED = 2 };

struct lane_conn {
    _Atomic int fd;               /* -1 once closed or handed to MHD */
    _Atomic unsigned st;          /* ST_* */
    _Atomic int refs;             /* the lane's, a request's, the queue's */
    _Atomic uint64_t deadline_ns; /* next request due (not while PENDING) */
    _Atomic unsigned served;      /* answers written */
    int defer_state;              /* DEFER_*: set during a handler (lane thread) */
    int pipelined;                /* bytes came behind a request (lane thread) */
    int close_after;              /* the request in the works asked to close */
    unsigned char *wbuf;          /* unsent part of an answer (ST_FLUSH) */
    size_t wlen, woff;
    struct sockaddr_storage addr;
    socklen_t alen;
    char client[46];
    lane_conn *prev, *next; /* the lane's connections (lane thread) */
    lane_conn *qnext;       /* the ready queue (qmu) */
    int queued;
};

typedef struct addr_count {
    unsigned char key[17]; /* family, then the address */
    size_t n;
    struct addr_count *next;
} addr_count;

/* A request the lane parsed: offsets into the bytes it was parsed from. */
typedef struct lane_req {
    const http_route *route;
    size_t path_off, path_len;
    size_t head_len, body_len;
    int close;
    const char *real_ip, *proto; /* NUL-terminated copies below */
    char real_ip_v[64], proto_v[16];
} lane_req;

/* An answer whose write waits for its batch's submission. */
typedef struct batch_item {
    lane_conn *c;
    http_rq *rq;
    void (*fr)(void *);
    void *fr_ctx;
    int close_after;
    struct iovec v[2];
    struct msghdr m;
} batch_item;

/* A connection whose next request a round reads in its batch. */
typedef struct read_item {
    lane_conn *c;
    int n;        /* bytes the peek saw */
    size_t total; /* the request's: head and body */
    lane_req r;
} read_item;

/* The lane's io_uring and what a round submits through it (lane thread
 * only): its answers, written with one submission, so a client's thread
 * wakes once for them instead of once per answer, and its requests, peeked
 * at with one and taken with another (docs/bench.md, issue 19). */
typedef struct lane_batch {
    struct io_uring ring;
    int open; /* deliver_posted is collecting */
    size_t n, heads_used;
    batch_item items[LANE_BATCH];
    char heads[LANE_BATCH_HEADS];
    /* the round's readable connections (rbatch_run): peeked at in one
     * submission, the whole requests among them taken in a second */
    int reading; /* lane_main is polling its events */
    size_t nreads;
    read_item reads[LANE_EVENTS];
    unsigned char peek[LANE_EVENTS][LANE_PEEK];
    unsigned char scratch[LANE_PEEK]; /* the taken bytes' landing (the peek kept them) */
} lane_batch;

struct http_lane {
    qtsp_http_server *srv;
    int lfd, ep, evfd;
    unsigned port;
    pthread_t thread;
    pthread_t self; /* set by the lane thread itself */
    void (*round_begin)(void *ctx), (*round_end)(void *ctx);
    void *round_ctx;
    _Atomic int stop, quiesce;
    int quiesced, listening;
    uint64_t timeout_ns, paused_until;
    long max_conn;
    size_t per_addr;
    lane_conn *conns;
    _Atomic long n_conns;
    pthread_mutex_t qmu; /* the ready queue and the answers to write */
    lane_conn *qhead, *qtail;
    qtsp_http_deferred *dhead, *dtail;
    pthread_mutex_t amu; /* the address table */
    addr_count *addrs[LANE_ADDR_BUCKETS];
    _Atomic uint64_t served, handed, refused;
    _Atomic uint64_t batches, batched; /* io_uring submissions, answers they wrote */
    _Atomic uint64_t rbatched;         /* requests read in a round's batch */
    _Atomic int uring;                 /* 1 while the lane has its ring */
    lane_batch *batch;      /* the answers being delivered (lane thread); NULL: sendmsg each */
    lane_batch *dead_batch; /* a ring that failed, freed with the lane */
    int no_io_uring;        /* qtsp_http_opts.lane_no_io_uring */
    unsigned char buf[LANE_BUF + 1];
};

/* ---- connections, references, the queue ------------------------------- */

static void conn_ref(lane_conn *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void conn_unref(lane_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        free(c->wbuf);
        free(c);
    }
}

static void wake(http_lane *L)
{
    uint64_t one = 1;
    ssize_t w = write(L->evfd, &one, sizeof one);
    (void)w; /* a full counter still wakes the thread */
}

/* Asks the lane thread to look at c again. Any thread. */
static void enqueue(http_lane *L, lane_conn *c)
{
    pthread_mutex_lock(&L->qmu);
    int was_empty = L->qhead == NULL && L->dhead == NULL;
    if (!c->queued) {
        c->queued = 1;
        conn_ref(c);
        c->qnext = NULL;
        if (L->qtail)
            L->qtail->qnext = c;
        else
            L->qhead = c;
        L->qtail = c;
    }
    pthread_mutex_unlock(&L->qmu);
    if (was_empty)
        wake(L);
}

void http_lane_post(qtsp_http_deferred *d)
{
    http_lane *L = d->srv->lane;
    pthread_mutex_lock(&L->qmu);
    /* the lane thread itself (a round's end) delivers without a wake-up */
    int was_empty = L->qhead == NULL && L->dhead == NULL && !pthread_equal(pthread_self(), L->self);
    d->next = NULL;
    if (L->dtail)
        L->dtail->next = d;
    else
        L->dhead = d;
    L->dtail = d;
    pthread_mutex_unlock(&L->qmu);
    if (was_empty)
        wake(L);
}

static void batch_flush(http_lane *L);

/* Writes every posted answer: on the lane thread, in one batch. */
static void deliver_posted(http_lane *L)
{
    pthread_mutex_lock(&L->qmu);
    qtsp_http_deferred *d = L->dhead;
    L->dhead = L->dtail = NULL;
    pthread_mutex_unlock(&L->qmu);
    int batching = d && pthread_equal(pthread_self(), L->self) && L->batch;
    if (batching)
        L->batch->open = 1;
    while (d) {
        qtsp_http_deferred *next = d->next;
        d->next = NULL;
        http_lane_deliver(d);
        d = next;
    }
    if (batching && L->batch) {
        batch_flush(L);
        L->batch->open = 0;
    }
}

static lane_conn *dequeue(http_lane *L)
{
    pthread_mutex_lock(&L->qmu);
    lane_conn *c = L->qhead;
    if (c) {
        L->qhead = c->qnext;
        if (!L->qhead)
            L->qtail = NULL;
        c->queued = 0;
    }
    pthread_mutex_unlock(&L->qmu);
    return c;
}

/* ---- connections per address (lane and MHD) ---------------------------- */

static size_t addr_key(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (sa && sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            key[0] = 4;
            memcpy(key + 1, a6->s6_addr + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a6->s6_addr, 16);
        }
    }
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < 17; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return (size_t)(h % LANE_ADDR_BUCKETS);
}

/* Adds d (+1 or -1) to sa's count. */
static void addr_change(http_lane *L, const struct sockaddr *sa, int d)
{
    unsigned char key[17];
    size_t b = addr_key(sa, key);
    pthread_mutex_lock(&L->amu);
    addr_count **pp = &L->addrs[b];
    while (*pp && memcmp((*pp)->key, key, sizeof key) != 0)
        pp = &(*pp)->next;
    addr_count *e = *pp;
    if (d > 0 && !e && (e = calloc(1, sizeof *e)) != NULL) {
        memcpy(e->key, key, sizeof key);
        *pp = e;
    }
    if (e && d > 0)
        e->n++;
    else if (e && e->n > 0)
        e->n--;
    if (e && e->n == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&L->amu);
}

static size_t addr_count_of(http_lane *L, const struct sockaddr *sa)
{
    unsigned char key[17];
    size_t b = addr_key(sa, key), n = 0;
    pthread_mutex_lock(&L->amu);
    for (const addr_count *e = L->addrs[b]; e; e = e->next)
        if (memcmp(e->key, key, sizeof key) == 0)
            n = e->n;
    pthread_mutex_unlock(&L->amu);
    return n;
}

void http_lane_addr_add(qtsp_http_server *srv, const struct sockaddr *sa)
{
    addr_change(srv->lane, sa, 1);
}

void http_lane_addr_del(qtsp_http_server *srv, const struct sockaddr *sa)
{
    addr_change(srv->lane, sa, -1);
}

/* ---- closing and handing off (lane thread) ----------------------------- */

static void conn_forget(http_lane *L, lane_conn *c)
{
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->prev)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    atomic_fetch_sub_explicit(&L->n_conns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&L->srv->conns_open, 1, memory_order_relaxed);
    addr_change(L, (const struct sockaddr *)&c->addr, -1);
}

/* Never while PENDING: a completing thread may be writing to the socket. */
static void conn_close(http_lane *L, lane_conn *c)
{
    if (c->fd < 0)
        return;
    conn_forget(L, c);
    int fd = c->fd;
    c->fd = -1;
    close(fd);
    conn_unref(c);
}

/* The request at the head of c's socket is not ours: MHD reads it. */
static void conn_handoff(http_lane *L, lane_conn *c)
{
    conn_forget(L, c);
    int fd = c->fd;
    c->fd = -1;
    atomic_fetch_add_explicit(&L->handed, 1, memory_order_relaxed);
    if (!http_mhd_add(L->srv, fd, (const struct sockaddr *)&c->addr, c->alen))
        LOG_WARN("http: a connection from %s could not be handed to MHD: %s", c->client,
                 strerror(errno));
    conn_unref(c);
}

/* ---- the response ------------------------------------------------------ */

/* "Date: ..." of this second, cached per thread. */
static size_t date_header(char *out, size_t cap)
{
    static _Thread_local time_t t_last;
    static _Thread_local char t_text[64];
    time_t now = time(NULL);
    if (now != t_last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(t_text, sizeof t_text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        t_last = now;
    }
    return (size_t)snprintf(out, cap, "%s", t_text);
}

/* The status line and headers of an answer into out; 0 when they do not
 * fit (cannot happen within the header caps). */
static size_t response_head(const http_rq *rq, int status, const char *ctype, size_t len,
                            const qtsp_http_resp *extra, int close_after, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    n += date_header(out + n, cap - n);
    n += (size_t)snprintf(out + n, cap - n, "X-Request-Id: %s\r\n", rq->id);
    if (ctype && *ctype)
        n += (size_t)snprintf(out + n, cap - n, "Content-Type: %s\r\n", ctype);
    if (close_after)
        n += (size_t)snprintf(out + n, cap - n, "Connection: close\r\n");
    const char *hn, *hv;
    for (size_t pos = 0; extra && n < cap && http_resp_next_header(extra, &pos, &hn, &hv);) {
        /* the framing is the lane's: a handler's own would contradict it */
        if (strcasecmp(hn, "Content-Length") == 0 || strcasecmp(hn, "Transfer-Encoding") == 0 ||
            strcasecmp(hn, "Connection") == 0 || strcasecmp(hn, "Date") == 0)
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s: %s\r\n", hn, hv);
    }
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "Content-Length: %zu\r\n\r\n", len);
    return n < cap ? n : 0;
}

/* After k of the hl + bl bytes of head + body were written (k < 0: the
 * write failed with err): 1 all sent, 0 the rest copied to c->wbuf, -1 the
 * connection failed (or no memory for the rest). */
static int keep_rest(lane_conn *c, const char *head, size_t hl, const unsigned char *body,
                     size_t bl, ssize_t k, int err)
{
    if (k < 0 && err != EAGAIN && err != EWOULDBLOCK)
        return -1;
    size_t sent = k > 0 ? (size_t)k : 0, total = hl + bl;
    if (sent == total)
        return 1;
    c->wlen = total - sent;
    c->woff = 0;
    c->wbuf = malloc(c->wlen);
    if (c->wbuf == NULL)
        return -1;
    size_t o = 0;
    if (sent < hl) {
        memcpy(c->wbuf, head + sent, hl - sent);
        o = hl - sent;
        sent = 0;
    } else {
        sent -= hl;
    }
    memcpy(c->wbuf + o, body + sent, bl - sent);
    return 0;
}

/* Writes head + body with one non-blocking sendmsg: keep_rest's answer. */
static int write_answer(lane_conn *c, const char *head, size_t hl, const unsigned char *body,
                        size_t bl)
{
    struct iovec v[2] = {{(void *)head, hl}, {(void *)body, bl}};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = bl ? 2 : 1};
    ssize_t k;
    do
        k = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    return keep_rest(c, head, hl, body, bl, k, k < 0 ? errno : 0);
}

/* What follows an answer's write (w: keep_rest's answer): its data freed,
 * the request ended, the connection read again, flushed or closed. */
static void lane_sent(http_lane *L, lane_conn *c, http_rq *rq, int w, int close_after,
                      void (*fr)(void *), void *fr_ctx)
{
    if (fr)
        fr(fr_ctx);
    http_rq_free(rq);
    unsigned set = close_after || w < 0 ? ST_CLOSE : 0;
    if (w == 0) {
        /* a client that reads nothing meets the timeout (sweep) */
        atomic_store_explicit(&c->deadline_ns, qtsp_mono_ns() + L->timeout_ns,
                              memory_order_relaxed);
        atomic_fetch_or_explicit(&c->st, ST_FLUSH | set, memory_order_acq_rel);
        enqueue(L, c); /* the lane thread writes the rest */
    } else {
        atomic_store_explicit(&c->deadline_ns, qtsp_mono_ns() + L->timeout_ns,
                              memory_order_relaxed);
        if (set)
            atomic_fetch_or_explicit(&c->st, set, memory_order_acq_rel);
        unsigned s = atomic_fetch_and_explicit(&c->st, ~(unsigned)(ST_PENDING | ST_MISSED),
                                               memory_order_acq_rel);
        if (set || (s & ST_MISSED))
            enqueue(L, c); /* close it, or read what came meanwhile */
    }
    conn_unref(c); /* the request's */
}

/* ---- answers written in batches (io_uring) ------------------------------ */

/* The lane's ring, made on its own thread; NULL where io_uring is not
 * allowed (an older kernel, a seccomp filter): requests are then read and
 * answers written one system call each, as before. */
static lane_batch *batch_new(void)
{
    lane_batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN};
    int r = io_uring_queue_init_params(2 * LANE_BATCH, &b->ring, &p);
    if (r == -EINVAL) /* a kernel before 6.0 */
        r = io_uring_queue_init(2 * LANE_BATCH, &b->ring, 0);
    if (r < 0) {
        LOG_INFO("http: io_uring is not available (%s): the fast lane makes one system call "
                 "per read and answer",
                 strerror(-r));
        free(b);
        return NULL;
    }
    return b;
}

static void batch_free(lane_batch *b)
{
    if (b) {
        io_uring_queue_exit(&b->ring);
        free(b);
    }
}

/* Submits the n operations prepared on b's ring (user data 0..n-1) and
 * gathers their results into res: 0, or -1 when the submission failed
 * (nothing was done: the ring is not to be used again). Each operation is
 * non-blocking (MSG_DONTWAIT: what cannot be done at once ends -EAGAIN);
 * one still in flight after 100 ms is cancelled and counts as -EAGAIN. */
static int ring_run(lane_batch *b, size_t n, int *res)
{
    unsigned char got[LANE_BATCH] = {0};
    size_t ngot = 0;
    struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
    int cancelled = 0;
    int r = io_uring_submit(&b->ring);
    if (r < 0) {
        LOG_WARN("http: io_uring submission failed (%s): the fast lane makes one system call "
                 "per read and answer from now on",
                 strerror(-r));
        return -1;
    }
    while (ngot < n) {
        struct io_uring_cqe *cqe = NULL;
        int w = cancelled ? io_uring_wait_cqe(&b->ring, &cqe)
                          : io_uring_wait_cqe_timeout(&b->ring, &cqe, &ts);
        if (w == -ETIME && !cancelled) {
            for (size_t i = 0; i < n; i++) {
                struct io_uring_sqe *sqe = got[i] ? NULL : io_uring_get_sqe(&b->ring);
                if (sqe) {
                    io_uring_prep_cancel64(sqe, (uint64_t)i, 0);
                    io_uring_sqe_set_data64(sqe, UINT64_MAX);
                }
            }
            (void)io_uring_submit(&b->ring);
            cancelled = 1;
            continue;
        }
        if (w < 0) {
            if (w == -EINTR || w == -ETIME)
                continue;
            LOG_ERROR("http: io_uring completion lost (%s)", strerror(-w));
            abort(); /* buffers in flight: nothing safe to free */
        }
        uint64_t i = io_uring_cqe_get_data64(cqe);
        if (i < n && !got[i]) {
            res[i] = cqe->res == -ECANCELED ? -EAGAIN : cqe->res;
            got[i] = 1;
            ngot++;
        }
        io_uring_cqe_seen(&b->ring, cqe);
    }
    if (cancelled) /* the cancellations' own completions */
        for (struct io_uring_cqe *cqe; io_uring_peek_cqe(&b->ring, &cqe) == 0;)
            io_uring_cqe_seen(&b->ring, cqe);
    return 0;
}

/* The ring failed: from now on one system call each (what it holds is
 * never submitted; it is freed with the lane). */
static void ring_retire(http_lane *L)
{
    atomic_store_explicit(&L->uring, 0, memory_order_relaxed);
    L->batch->open = 0;
    L->dead_batch = L->batch;
    L->batch = NULL;
}

/* Writes every answer of the batch with one submission, then finishes each
 * (lane_sent). A send the kernel could not finish at once (MSG_DONTWAIT
 * makes that an -EAGAIN) leaves its rest to the lane's flush, as sendmsg
 * does. */
static void batch_flush(http_lane *L)
{
    lane_batch *b = L->batch;
    size_t n = b->n;
    if (n == 0)
        return;
    int res[LANE_BATCH] = {0};
    /* counted before the clients can see an answer */
    atomic_fetch_add_explicit(&L->batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&L->batched, n, memory_order_relaxed);
    if (ring_run(b, n, res) != 0) {
        for (size_t i = 0; i < n; i++) {
            batch_item *it = &b->items[i];
            res[i] = (int)sendmsg(it->c->fd, &it->m, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (res[i] < 0)
                res[i] = -errno;
        }
        ring_retire(L);
    }
    b->n = 0;
    b->heads_used = 0;
    for (size_t i = 0; i < n; i++) {
        batch_item *it = &b->items[i];
        const char *head = it->v[0].iov_base;
        size_t hl = it->v[0].iov_len;
        size_t bl = it->m.msg_iovlen > 1 ? it->v[1].iov_len : 0;
        int w = keep_rest(it->c, head, hl, it->v[1].iov_base, bl, res[i] < 0 ? -1 : res[i],
                          res[i] < 0 ? -res[i] : 0);
        lane_sent(L, it->c, it->rq, w, it->close_after, it->fr, it->fr_ctx);
    }
}

/* Adds an answer to the open batch (the lane thread delivering): 1 taken,
 * written and finished at batch_flush; 0 write it now. A body nobody owns
 * (fr NULL: an error answer's, on its caller's stack) is copied with the
 * head, as it must outlive the call. */
static int batch_add(http_lane *L, lane_conn *c, http_rq *rq, const char *head, size_t hl,
                     const unsigned char *body, size_t bl, void (*fr)(void *), void *fr_ctx,
                     int close_after)
{
    if (!pthread_equal(pthread_self(), L->self)) /* L->batch is the lane thread's */
        return 0;
    lane_batch *b = L->batch;
    size_t need = hl + (fr ? 0 : bl);
    if (b == NULL || !b->open || need > LANE_BATCH_HEADS)
        return 0;
    if (b->n == LANE_BATCH || b->heads_used + need > LANE_BATCH_HEADS)
        batch_flush(L);
    if (L->batch != b) /* the ring failed in that flush */
        return 0;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (sqe == NULL)
        return 0;
    batch_item *it = &b->items[b->n];
    char *h = b->heads + b->heads_used;
    memcpy(h, head, hl);
    if (!fr && bl) {
        memcpy(h + hl, body, bl);
        body = (const unsigned char *)h + hl;
    }
    b->heads_used += need;
    *it = (batch_item){.c = c, .rq = rq, .fr = fr, .fr_ctx = fr_ctx, .close_after = close_after};
    it->v[0] = (struct iovec){h, hl};
    it->v[1] = (struct iovec){(void *)body, bl};
    it->m.msg_iov = it->v;
    it->m.msg_iovlen = bl ? 2 : 1;
    io_uring_prep_sendmsg(sqe, c->fd, &it->m, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, (uint64_t)b->n);
    b->n++;
    return 1;
}

/* Sends an answer to rq on its lane connection and ends the request (its
 * record and its reference on the connection). data: freed with
 * fr(fr_ctx) once written or copied. Any thread; c is PENDING. On the lane
 * thread delivering posted answers, the write joins the round's batch. */
static void lane_send(http_lane *L, http_rq *rq, int status, const char *ctype,
                      const unsigned char *data, size_t len, void (*fr)(void *), void *fr_ctx,
                      const qtsp_http_resp *extra)
{
    lane_conn *c = rq->lane;
    int close_after =
        c->close_after || atomic_load_explicit(&L->srv->draining, memory_order_relaxed);
    char head[LANE_HDR_MAX];
    size_t hl = response_head(rq, status, ctype, len, extra, close_after, head, sizeof head);
    http_rq_finish(rq, status, len); /* before the client can see the answer */
    atomic_fetch_add_explicit(&L->served, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->served, 1, memory_order_relaxed);
    if (hl && batch_add(L, c, rq, head, hl, data, len, fr, fr_ctx, close_after))
        return;
    int w = hl ? write_answer(c, head, hl, data, len) : -1;
    lane_sent(L, c, rq, w, close_after, fr, fr_ctx);
}

static void free_cb(void *p)
{
    free(p);
}

static void lane_send_error(http_lane *L, http_rq *rq, int status, const char *msg)
{
    char body[640];
    size_t n = http_error_body(status, msg, body, sizeof body);
    lane_send(L, rq, status, "application/json", (const unsigned char *)body, n, NULL, NULL, NULL);
}

/* The answer a handler (or a deferred request's owner) produced: resp on
 * success, else the mapped JSON error (what: its message). */
static void lane_send_result(http_lane *L, http_rq *rq, qtsp_status rc, const char *what,
                             qtsp_http_resp *resp)
{
    if (rc == QTSP_OK && (resp->status < 100 || resp->status > 599)) {
        LOG_ERROR("http: request %s: HTTP status %d set by route %s", rq->id, resp->status,
                  rq->route->name);
        rc = QTSP_ERR_INTERNAL;
    }
    if (rc != QTSP_OK) {
        http_resp_discard(resp);
        int status = qtsp_http_status_for(rc);
        lane_send_error(L, rq, status, http_error_message(status, rc, what));
        return;
    }
    resp->content_type[sizeof resp->content_type - 1] = '\0';
    if (resp->ext_body) {
        qtsp_buf_cleanup(&resp->body);
        lane_send(L, rq, resp->status, resp->content_type, resp->ext_body, resp->ext_len,
                  resp->free_fn, resp->free_ctx, resp);
    } else {
        size_t len = 0;
        unsigned char *p = qtsp_buf_take(&resp->body, &len);
        lane_send(L, rq, resp->status, resp->content_type, p, len, free_cb, p, resp);
    }
    qtsp_buf_cleanup(&resp->headers);
    resp->n_headers = 0;
}

void http_lane_deliver(qtsp_http_deferred *d)
{
    http_lane *L = d->srv->lane;
    http_rq *rq = d->rq;
    d->rq = NULL;
    rq->deferred = NULL;
    if (d->forced)
        lane_send_error(L, rq, 503, "the server is shutting down");
    else /* a 500 was logged by qtsp_http_complete */
        lane_send_result(L, rq, d->rc, d->what, &d->resp);
    http_deferred_release(d);
}

void http_lane_conn_hold(lane_conn *c)
{
    conn_ref(c);
}

void http_lane_conn_release(lane_conn *c)
{
    conn_unref(c);
}

void http_lane_deferred(lane_conn *c, int forced)
{
    c->defer_state = forced ? DEFER_FORCED : DEFER_OWNED;
}

int http_lane_kept_alive(const lane_conn *c)
{
    return atomic_load_explicit(&c->served, memory_order_relaxed) > 0;
}

int http_lane_peer_closed(const lane_conn *c)
{
    /* the socket stays open while the request is PENDING (a stop that
     * forced it answers on the lane thread, which closes it after) */
    int fd = c->fd;
    if (fd < 0)
        return 1;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- reading a request (lane thread) ----------------------------------- */

enum { PARSE_MORE = 0, PARSE_HANDOFF = 1, PARSE_OK = 2 };

static int is_token_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* Header value [v, v+n) without surrounding blanks, copied to out (NUL);
 * 0 when it does not fit. */
static int copy_value(const char *v, size_t n, char *out, size_t cap)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        return 0;
    memcpy(out, v, n);
    out[n] = '\0';
    return 1;
}

static int name_is(const char *p, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(p, want, n) == 0;
}

/* A comma-separated header value holds the token (case-insensitive). */
static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tl && strncasecmp(p, tok, tl) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/* The request line: "POST <fast route path> HTTP/1.1\r\n". */
static int parse_request_line(const qtsp_http_server *srv, const char *b, size_t n, lane_req *r,
                              size_t *line_end)
{
    static const char k_post[] = "POST ";
    if (n < sizeof k_post - 1)
        return memcmp(b, k_post, n) == 0 ? PARSE_MORE : PARSE_HANDOFF;
    if (memcmp(b, k_post, sizeof k_post - 1) != 0)
        return PARSE_HANDOFF;
    size_t p = sizeof k_post - 1;
    const char *sp = memchr(b + p, ' ', n - p);
    if (sp == NULL)
        return n - p > 256 ? PARSE_HANDOFF : PARSE_MORE;
    size_t plen = (size_t)(sp - (b + p));
    for (size_t i = 0; i < srv->n_routes && !r->route; i++) {
        const http_route *rt = &srv->routes[i];
        if (rt->fast && rt->path_len == plen && memcmp(rt->path, b + p, plen) == 0)
            r->route = rt;
    }
    if (r->route == NULL)
        return PARSE_HANDOFF;
    r->path_off = p;
    r->path_len = plen;
    static const char k_ver[] = " HTTP/1.1\r\n";
    size_t v = (size_t)(sp - b), have = n - v;
    if (have < sizeof k_ver - 1)
        return memcmp(sp, k_ver, have) == 0 ? PARSE_MORE : PARSE_HANDOFF;
    if (memcmp(sp, k_ver, sizeof k_ver - 1) != 0)
        return PARSE_HANDOFF;
    *line_end = v + sizeof k_ver - 1;
    return PARSE_OK;
}

/* One header line [p, p+n) (no CRLF); PARSE_OK or PARSE_HANDOFF. */
static int parse_header(const char *p, size_t n, lane_req *r, int *host, int *cl_seen,
                        unsigned long long *cl, int *ct_ok)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return PARSE_HANDOFF; /* also obs-fold (a line starting with a blank) */
    size_t nl = (size_t)(colon - p);
    for (size_t i = 0; i < nl; i++)
        if (!is_token_char((unsigned char)p[i]))
            return PARSE_HANDOFF;
    const char *v = colon + 1;
    size_t vn = n - nl - 1;
    for (size_t i = 0; i < vn; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return PARSE_HANDOFF; /* bare CR or LF, NUL, controls: MHD's to judge */
    }
    char val[256];
    if (name_is(p, nl, "Content-Length")) {
        if (*cl_seen || !copy_value(v, vn, val, sizeof val) || !*val || strlen(val) > 9 ||
            strspn(val, "0123456789") != strlen(val))
            return PARSE_HANDOFF;
        *cl_seen = 1;
        *cl = strtoull(val, NULL, 10);
    } else if (name_is(p, nl, "Transfer-Encoding") || name_is(p, nl, "Expect") ||
               name_is(p, nl, "Upgrade") || name_is(p, nl, "Content-Encoding")) {
        return PARSE_HANDOFF;
    } else if (name_is(p, nl, "Host")) {
        if (*host)
            return PARSE_HANDOFF;
        *host = 1;
    } else if (name_is(p, nl, "Content-Type")) {
        if (*ct_ok >= 0 || !copy_value(v, vn, val, sizeof val))
            return PARSE_HANDOFF;
        *ct_ok = http_media_type_is(val, r->route->content_type, r->route->ct_len);
    } else if (name_is(p, nl, "Connection")) {
        if (!copy_value(v, vn, val, sizeof val) || has_token(val, "upgrade"))
            return PARSE_HANDOFF;
        r->close |= has_token(val, "close");
    } else if (name_is(p, nl, "X-Real-IP")) {
        if (r->real_ip || !copy_value(v, vn, r->real_ip_v, sizeof r->real_ip_v))
            return PARSE_HANDOFF;
        r->real_ip = r->real_ip_v;
    } else if (name_is(p, nl, "X-Forwarded-Proto")) {
        if (r->proto || !copy_value(v, vn, r->proto_v, sizeof r->proto_v))
            return PARSE_HANDOFF;
        r->proto = r->proto_v;
    }
    return PARSE_OK;
}

/* What the n bytes at the head of a connection's socket are. */
static int parse(const qtsp_http_server *srv, const char *b, size_t n, lane_req *r)
{
    memset(r, 0, sizeof *r);
    size_t line_end = 0;
    int pr = parse_request_line(srv, b, n, r, &line_end);
    if (pr != PARSE_OK)
        return pr;
    int host = 0, cl_seen = 0, ct_ok = -1;
    unsigned long long cl = 0;
    size_t p = line_end;
    for (;;) { /* header lines up to the empty one; a bare CR or LF is handed off */
        const char *eol = memmem(b + p, n - p, "\r\n", 2);
        if (eol == NULL)
            return n >= LANE_BUF ? PARSE_HANDOFF : PARSE_MORE;
        size_t len = (size_t)(eol - (b + p));
        if (len == 0)
            break;
        if (parse_header(b + p, len, r, &host, &cl_seen, &cl, &ct_ok) != PARSE_OK)
            return PARSE_HANDOFF;
        p += len + 2;
    }
    /* MHD answers what is wrong: 400 without Host, 411/413/415 */
    if (!host || !cl_seen || ct_ok != 1 || cl == 0 || cl > r->route->max_body)
        return PARSE_HANDOFF;
    r->head_len = p + 2;
    if (r->head_len + cl > LANE_BUF)
        return PARSE_HANDOFF;
    r->body_len = (size_t)cl;
    return n >= r->head_len + r->body_len ? PARSE_OK : PARSE_MORE;
}

/* Runs the route's handler on the request in L->buf; c becomes PENDING
 * until its answer is written. */
static void dispatch(http_lane *L, lane_conn *c, const lane_req *r)
{
    qtsp_http_server *srv = L->srv;
    const char *b = (const char *)L->buf;
    http_rq *rq = http_rq_new(srv, b + r->path_off, r->path_len);
    if (rq == NULL) {
        LOG_ERROR("http: out of memory for a request; closing the connection");
        atomic_fetch_or_explicit(&c->st, ST_CLOSE, memory_order_relaxed);
        return;
    }
    const http_route *rt = r->route;
    rq->route = rt;
    rq->stat_idx = (size_t)(rt - srv->routes);
    rq->state = RQ_BODY;
    rq->lane = c;
    memcpy(rq->method, "POST", 5);
    memcpy(rq->client, c->client, sizeof rq->client);
    http_rq_client(rq, r->real_ip, r->proto);
    c->close_after = r->close;
    c->defer_state = DEFER_NONE;
    conn_ref(c); /* the request's */
    atomic_fetch_or_explicit(&c->st, ST_PENDING, memory_order_acq_rel);
    qtsp_http_req req = {
        .method = rq->method,
        .path = rq->raw,
        .raw_path = rq->raw,
        .request_id = rq->id,
        .body = L->buf + r->head_len,
        .body_len = r->body_len,
        .conn = NULL,
        .internal = rq,
    };
    qtsp_http_resp resp;
    http_resp_init(&resp);
    qtsp_err_clear();
    qtsp_status rc = rt->fn(rt->ctx, &req, &resp);
    if (c->defer_state != DEFER_NONE) {
        /* the owner answers (rq belongs to the handle now), or stop forced
         * it before it was suspended: the lane answers 503 itself */
        http_resp_discard(&resp);
        if (rc != QTSP_OK)
            LOG_WARN("http: route %s deferred a request and returned %s", rt->name,
                     qtsp_strerror(rc));
        if (c->defer_state == DEFER_FORCED)
            http_lane_deliver(rq->deferred);
        return;
    }
    if (rc != QTSP_OK && qtsp_http_status_for(rc) == 500)
        LOG_ERROR("http: request %s POST %s: %s", rq->id, rq->raw, qtsp_err_message());
    lane_send_result(L, rq, rc, qtsp_err_what(), &resp);
}

/* Serves the whole request of total bytes in L->buf, of the n the socket
 * held (more behind it: pipelined, and no edge will come for it). */
static void serve_read(http_lane *L, lane_conn *c, const lane_req *r, size_t n, size_t total)
{
    L->buf[total] = '\0';
    c->pipelined = n > total;
    dispatch(L, c, r);
    if (n > total) {
        unsigned s = atomic_load_explicit(&c->st, memory_order_acquire);
        while ((s & ST_PENDING) &&
               !atomic_compare_exchange_weak_explicit(&c->st, &s, s | ST_MISSED,
                                                      memory_order_acq_rel, memory_order_acquire))
            ;
    }
}

/* c's socket holds nothing more: what comes next is not pipelined; when
 * stopping, an idle connection closes. */
static void conn_empty(http_lane *L, lane_conn *c)
{
    c->pipelined = 0;
    if (L->quiesced)
        conn_close(L, c);
}

/* Serves what c's socket holds, request after request, until it is empty,
 * incomplete, handed off, or a request is in the works. */
static void conn_input(http_lane *L, lane_conn *c)
{
    while (c->fd >= 0) {
        unsigned s = atomic_load_explicit(&c->st, memory_order_acquire);
        if (s & ST_PENDING)
            return;
        if (s & ST_CLOSE) {
            conn_close(L, c);
            return;
        }
        /* one byte more than a request may have: whether more follows */
        ssize_t n = recv(c->fd, L->buf, LANE_BUF + 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_empty(L, c);
            return;
        }
        if (n <= 0) {
            conn_close(L, c); /* the peer closed, or the connection failed */
            return;
        }
        lane_req r;
        int p = parse(L->srv, (const char *)L->buf, (size_t)n, &r);
        if (p == PARSE_MORE && c->pipelined) {
            /* The start of a pipelined request, behind one that was read:
             * waiting for the rest can deadlock, as the unread tail of a
             * large received segment may fill the socket's receive memory
             * (zero window) while its sender waits. MHD reads on. */
            conn_handoff(L, c);
            return;
        }
        if (p == PARSE_MORE) {
            if (L->quiesced) /* stopping: no waiting for the rest */
                conn_close(L, c);
            return; /* the next bytes bring an edge */
        }
        if (p == PARSE_HANDOFF) {
            conn_handoff(L, c);
            return;
        }
        size_t total = r.head_len + r.body_len;
        ssize_t k;
        do
            k = recv(c->fd, L->buf, total, MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k != (ssize_t)total) {
            conn_close(L, c);
            return;
        }
        serve_read(L, c, &r, (size_t)n, total);
    }
}

/* Reads c's next request in the round's batch (rbatch_run) while the lane
 * polls its events, or at once (conn_input). */
static void conn_read(http_lane *L, lane_conn *c)
{
    lane_batch *b = L->batch;
    unsigned s = atomic_load_explicit(&c->st, memory_order_acquire);
    if (b == NULL || !b->reading || b->nreads == LANE_EVENTS || (s & (ST_PENDING | ST_CLOSE)))
        conn_input(L, c);
    else
        b->reads[b->nreads++].c = c;
}

/* The round's readable connections: one submission peeks at each (as
 * conn_input does, up to LANE_PEEK bytes), a second takes the whole simple
 * requests among them, which are then served; anything else (nothing to
 * read, a request in pieces, one for MHD, more than LANE_PEEK bytes, a
 * closed peer) goes through conn_input, which looks again by itself. Two
 * system calls for the round instead of two per request. */
static void rbatch_run(http_lane *L)
{
    lane_batch *b = L->batch;
    if (b == NULL)
        return;
    size_t n = b->nreads;
    b->reading = 0;
    b->nreads = 0;
    if (n < 2) {
        if (n == 1)
            conn_input(L, b->reads[0].c);
        return;
    }
    int res[LANE_EVENTS] = {0};
    for (size_t i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring); /* the ring holds 2 x 64 */
        io_uring_prep_recv(sqe, b->reads[i].c->fd, b->peek[i], LANE_PEEK, MSG_PEEK | MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, (uint64_t)i);
    }
    if (ring_run(b, n, res) != 0) {
        ring_retire(L);
        for (size_t i = 0; i < n; i++)
            conn_input(L, b->reads[i].c);
        return;
    }
    size_t order[LANE_EVENTS], m = 0;
    for (size_t i = 0; i < n; i++) {
        read_item *it = &b->reads[i];
        it->n = res[i];
        if (res[i] == -EAGAIN) { /* nothing came (a new connection's first edge) */
            conn_empty(L, it->c);
            continue;
        }
        if (res[i] == 0) { /* the peer closed */
            conn_close(L, it->c);
            continue;
        }
        if (res[i] < 0 || res[i] >= LANE_PEEK ||
            parse(L->srv, (const char *)b->peek[i], (size_t)res[i], &it->r) != PARSE_OK) {
            conn_input(L, it->c);
            continue;
        }
        it->total = it->r.head_len + it->r.body_len;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        io_uring_prep_recv(sqe, it->c->fd, b->scratch, it->total, MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, (uint64_t)m);
        order[m++] = i;
    }
    if (m == 0)
        return;
    if (ring_run(b, m, res) != 0) { /* nothing was taken */
        ring_retire(L);
        for (size_t j = 0; j < m; j++)
            conn_input(L, b->reads[order[j]].c);
        return;
    }
    atomic_fetch_add_explicit(&L->rbatched, m, memory_order_relaxed);
    for (size_t j = 0; j < m; j++) {
        read_item *it = &b->reads[order[j]];
        lane_conn *c = it->c;
        if (res[j] != (int)it->total) {
            conn_close(L, c);
            continue;
        }
        memcpy(L->buf, b->peek[order[j]], it->total);
        serve_read(L, c, &it->r, (size_t)it->n, it->total);
        if (!(atomic_load_explicit(&c->st, memory_order_acquire) & ST_PENDING))
            conn_input(L, c); /* answered at once: read on */
    }
}

/* Writes the rest of an answer (ST_FLUSH); the lane thread. */
static void conn_flush(http_lane *L, lane_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            c->woff += (size_t)k;
            atomic_store_explicit(&c->deadline_ns, qtsp_mono_ns() + L->timeout_ns,
                                  memory_order_relaxed);
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EPOLLOUT brings an edge */
        atomic_fetch_or_explicit(&c->st, ST_CLOSE, memory_order_relaxed);
        break;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->woff = 0;
    atomic_store_explicit(&c->deadline_ns, qtsp_mono_ns() + L->timeout_ns, memory_order_relaxed);
    atomic_fetch_and_explicit(&c->st, ~(unsigned)(ST_PENDING | ST_FLUSH | ST_MISSED),
                              memory_order_acq_rel);
    conn_input(L, c); /* closes it when asked; reads what came meanwhile */
}

/* An event on c (its epoll events), or c taken from the queue (0). */
static void conn_poke(http_lane *L, lane_conn *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    unsigned s = atomic_load_explicit(&c->st, memory_order_acquire);
    while (s & ST_PENDING) {
        if (s & ST_FLUSH) {
            conn_flush(L, c);
            return;
        }
        if (s & ST_MISSED)
            return;
        if (atomic_compare_exchange_weak_explicit(&c->st, &s, s | ST_MISSED, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (ev & EPOLLIN)
                c->pipelined = 1; /* bytes came before the answer left */
            return;               /* looked at again once the answer is out */
        }
    }
    conn_read(L, c);
}

/* ---- accepting, timeouts, the thread ----------------------------------- */

static void accept_all(http_lane *L)
{
    qtsp_http_server *srv = L->srv;
    for (;;) {
        struct sockaddr_storage a;
        socklen_t al = sizeof a;
        int fd = accept4(L->lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the connection stays in the backlog: pause instead of
                 * spinning on a listening socket that stays readable */
                LOG_WARN("http: cannot accept: %s; pausing for 100 ms", strerror(errno));
                epoll_ctl(L->ep, EPOLL_CTL_DEL, L->lfd, NULL);
                L->listening = 0;
                L->paused_until = qtsp_mono_ns() + 100000000ULL;
            }
            return;
        }
        if (atomic_load_explicit(&srv->conns_open, memory_order_relaxed) >= L->max_conn ||
            (L->per_addr != (size_t)-1 &&
             addr_count_of(L, (const struct sockaddr *)&a) >= L->per_addr)) {
            atomic_fetch_add_explicit(&L->refused, 1, memory_order_relaxed);
            close(fd); /* like MHD: accepted and closed at once */
            continue;
        }
        lane_conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        atomic_init(&c->refs, 1);
        atomic_init(&c->deadline_ns, qtsp_mono_ns() + L->timeout_ns);
        memcpy(&c->addr, &a, al);
        c->alen = al;
        http_addr_text((const struct sockaddr *)&a, c->client, sizeof c->client);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = L->conns;
        if (c->next)
            c->next->prev = c;
        L->conns = c;
        atomic_fetch_add_explicit(&L->n_conns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->conns_open, 1, memory_order_relaxed);
        addr_change(L, (const struct sockaddr *)&a, 1);
    }
}

static void listen_again(http_lane *L)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &L->lfd};
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, L->lfd, &ev) == 0)
        L->listening = 1;
}

/* Connections past their deadline, and at stop the idle ones, close. */
static void sweep(http_lane *L, uint64_t now)
{
    for (lane_conn *c = L->conns, *next; c; c = next) {
        next = c->next;
        unsigned s = atomic_load_explicit(&c->st, memory_order_acquire);
        uint64_t due = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
        if ((s & ST_FLUSH) && due <= now) {
            /* the rest of an answer waits for a client that reads nothing;
             * no other thread touches a FLUSH connection */
            atomic_fetch_add_explicit(&L->srv->conns_timed_out, 1, memory_order_relaxed);
            atomic_fetch_and_explicit(&c->st, ~(unsigned)(ST_PENDING | ST_FLUSH | ST_MISSED),
                                      memory_order_acq_rel);
            conn_close(L, c);
            continue;
        }
        if (s & ST_PENDING)
            continue;
        if (L->quiesced) {
            conn_input(L, c); /* a request already in is answered (and closes) */
        } else if (atomic_load_explicit(&c->deadline_ns, memory_order_relaxed) <= now) {
            atomic_fetch_add_explicit(&L->srv->conns_timed_out, 1, memory_order_relaxed);
            conn_close(L, c);
        }
    }
}

static void *lane_main(void *arg)
{
    http_lane *L = arg;
    L->self = pthread_self();
    L->batch = L->no_io_uring ? NULL : batch_new();
    atomic_store_explicit(&L->uring, L->batch != NULL, memory_order_relaxed);
    struct epoll_event evs[LANE_EVENTS];
    uint64_t next_sweep = qtsp_mono_ns() + LANE_TICK_MS * 1000000ULL;
    while (!atomic_load(&L->stop)) {
        int n = epoll_wait(L->ep, evs, LANE_EVENTS, LANE_TICK_MS);
        if (L->round_begin)
            L->round_begin(L->round_ctx);
        if (L->batch)
            L->batch->reading = 1;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &L->lfd) {
                accept_all(L);
            } else if (p == &L->evfd) {
                uint64_t v;
                ssize_t r = read(L->evfd, &v, sizeof v);
                (void)r;
            } else {
                conn_poke(L, p, evs[i].events);
            }
        }
        rbatch_run(L);
        deliver_posted(L);
        for (lane_conn *c; (c = dequeue(L)) != NULL;) {
            conn_poke(L, c, 0);
            conn_unref(c); /* the queue's */
        }
        if (L->round_end) {
            L->round_end(L->round_ctx); /* may complete requests: posted */
            deliver_posted(L);
        }
        uint64_t now = qtsp_mono_ns();
        if (atomic_load(&L->quiesce) && !L->quiesced) {
            L->quiesced = 1;
            if (L->listening)
                epoll_ctl(L->ep, EPOLL_CTL_DEL, L->lfd, NULL);
            L->listening = 0;
            next_sweep = now; /* close the idle ones now */
        }
        if (!L->listening && !L->quiesced && now >= L->paused_until)
            listen_again(L);
        if (now >= next_sweep) {
            sweep(L, now);
            deliver_posted(L); /* what a request served by the sweep completed */
            next_sweep = now + LANE_TICK_MS * 1000000ULL;
        }
    }
    /* the ring goes with the thread that made it and alone submitted to
     * it: closed from another thread, its teardown's task work interrupts
     * that thread's next blocking call (EINTR) */
    lane_batch *b = L->batch, *dead = L->dead_batch;
    L->batch = L->dead_batch = NULL;
    batch_free(b);
    batch_free(dead);
    return NULL;
}

/* ---- start, stop, metrics ---------------------------------------------- */

static void lane_free(http_lane *L)
{
    if (L->ep >= 0)
        close(L->ep);
    if (L->evfd >= 0)
        close(L->evfd);
    if (L->lfd >= 0)
        close(L->lfd);
    for (size_t i = 0; i < LANE_ADDR_BUCKETS; i++)
        for (addr_count *e = L->addrs[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    pthread_mutex_destroy(&L->qmu);
    pthread_mutex_destroy(&L->amu);
    free(L);
}

qtsp_status http_lane_start(qtsp_http_server *srv, int fd, const qtsp_http_opts *opts,
                            unsigned timeout_s, size_t max_conn, size_t per_addr)
{
    http_lane *L = calloc(1, sizeof *L);
    if (L == NULL) {
        close(fd);
        FAIL(QTSP_ERR_NOMEM, "out of memory for the fast lane");
    }
    L->srv = srv;
    L->lfd = fd;
    L->round_begin = opts->lane_round_begin;
    L->round_end = opts->lane_round_end;
    L->round_ctx = opts->lane_round_ctx;
    L->no_io_uring = opts->lane_no_io_uring;
    L->timeout_ns = (uint64_t)timeout_s * 1000000000ULL;
    L->max_conn = (long)max_conn;
    L->per_addr = per_addr;
    pthread_mutex_init(&L->qmu, NULL);
    pthread_mutex_init(&L->amu, NULL);
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    L->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    qtsp_status rc = QTSP_OK;
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    ENSURE_OUT(L->ep >= 0 && L->evfd >= 0, QTSP_ERR_IO, "fast lane: %s", strerror(errno));
    ENSURE_OUT(getsockname(fd, (struct sockaddr *)&got, &gl) == 0, QTSP_ERR_IO,
               "fast lane: getsockname: %s", strerror(errno));
    L->port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                              : ((struct sockaddr_in *)&got)->sin_port);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &L->evfd};
    ENSURE_OUT(epoll_ctl(L->ep, EPOLL_CTL_ADD, L->evfd, &ev) == 0, QTSP_ERR_IO,
               "fast lane: epoll: %s", strerror(errno));
    listen_again(L);
    ENSURE_OUT(L->listening, QTSP_ERR_IO, "fast lane: epoll: %s", strerror(errno));
    srv->lane = L;
    int e = pthread_create(&L->thread, NULL, lane_main, L);
    if (e != 0) {
        srv->lane = NULL;
        FAIL_OUT(QTSP_ERR_IO, "fast lane: cannot start its thread: %s", strerror(e));
    }
    pthread_setname_np(L->thread, "qtsp-http-lane");
    return QTSP_OK;
out:
    lane_free(L);
    return rc;
}

unsigned http_lane_port(const qtsp_http_server *srv)
{
    return srv->lane ? srv->lane->port : 0;
}

void http_lane_quiesce(qtsp_http_server *srv)
{
    atomic_store(&srv->lane->quiesce, 1);
    wake(srv->lane);
}

void http_lane_stop(qtsp_http_server *srv)
{
    http_lane *L = srv->lane;
    atomic_store(&L->stop, 1);
    wake(L);
    pthread_join(L->thread, NULL);
    /* every deferred lane request was claimed before this: those still
     * being written finish without blocking */
    while (atomic_load_explicit(&srv->lane_busy, memory_order_acquire) > 0) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    deliver_posted(L); /* posted after the thread's last round */
    for (lane_conn *c; (c = dequeue(L)) != NULL;)
        conn_unref(c);
    while (L->conns) {
        lane_conn *c = L->conns;
        atomic_fetch_and(&c->st, ~(unsigned)ST_PENDING);
        conn_close(L, c);
    }
}

void http_lane_free(qtsp_http_server *srv)
{
    if (srv->lane)
        lane_free(srv->lane);
    srv->lane = NULL;
}

qtsp_status http_lane_metrics(qtsp_http_server *srv, qtsp_buf *out)
{
    http_lane *L = srv->lane;
    if (L == NULL)
        return QTSP_OK;
    return qtsp_buf_printf(
        out,
        "# HELP qtsp_http_lane_requests_total Requests answered by the fast lane.\n"
        "# TYPE qtsp_http_lane_requests_total counter\n"
        "qtsp_http_lane_requests_total %llu\n"
        "# HELP qtsp_http_lane_handoffs_total Connections the fast lane handed to the "
        "general HTTP server (a request it does not serve).\n"
        "# TYPE qtsp_http_lane_handoffs_total counter\n"
        "qtsp_http_lane_handoffs_total %llu\n"
        "# HELP qtsp_http_lane_connections Open connections held by the fast lane.\n"
        "# TYPE qtsp_http_lane_connections gauge\n"
        "qtsp_http_lane_connections %ld\n"
        "# HELP qtsp_http_lane_refused_total Connections the fast lane closed at once: "
        "the connection limit, or the limit per client address.\n"
        "# TYPE qtsp_http_lane_refused_total counter\n"
        "qtsp_http_lane_refused_total %llu\n"
        "# HELP qtsp_http_lane_io_uring 1 while the fast lane reads and writes a round's "
        "requests and answers with io_uring (http.io_uring, and allowed by the kernel).\n"
        "# TYPE qtsp_http_lane_io_uring gauge\n"
        "qtsp_http_lane_io_uring %d\n"
        "# HELP qtsp_http_lane_batches_total io_uring submissions that wrote a round's "
        "answers.\n"
        "# TYPE qtsp_http_lane_batches_total counter\n"
        "qtsp_http_lane_batches_total %llu\n"
        "# HELP qtsp_http_lane_batched_answers_total Answers written by those "
        "submissions.\n"
        "# TYPE qtsp_http_lane_batched_answers_total counter\n"
        "qtsp_http_lane_batched_answers_total %llu\n"
        "# HELP qtsp_http_lane_batched_reads_total Requests the fast lane read with a round's "
        "io_uring submissions.\n"
        "# TYPE qtsp_http_lane_batched_reads_total counter\n"
        "qtsp_http_lane_batched_reads_total %llu\n",
        (unsigned long long)atomic_load_explicit(&L->served, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&L->handed, memory_order_relaxed),
        atomic_load_explicit(&L->n_conns, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&L->refused, memory_order_relaxed),
        atomic_load_explicit(&L->uring, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&L->batches, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&L->batched, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&L->rbatched, memory_order_relaxed));
}
