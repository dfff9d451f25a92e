/* Internals of the HTTP server shared by core/http*.c (core/http.h is the
 * interface). Only core/http.c includes microhttpd.h: the MHD types appear
 * here as incomplete structs, and the deferred-answer code suspends and
 * resumes connections through http_conn_suspend/resume. */
#ifndef QTSP_CORE_HTTP_INT_H
#define QTSP_CORE_HTTP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/http.h"
#include "core/periodic.h"

struct MHD_Connection;
struct MHD_Daemon;

#define HTTP_RESP_MAX ((size_t)64 * 1024 * 1024)
#define HTTP_METRICS_MAX ((size_t)1024 * 1024)
#define HTTP_CONN_MEMORY ((size_t)16 * 1024) /* MHD zeroes it for every request */
#define HTTP_DEFAULT_CONNECTIONS 4096
#define HTTP_STOP_GRACE_MS 10000
#define HTTP_FORCED_GRACE_MS 1000    /* for the 503s of deferred requests forced at stop */
#define HTTP_DEFAULT_TIMEOUT_S 30    /* when opts->conn_timeout_s is 0 */
#define HTTP_DEFAULT_PER_ADDRESS 512 /* when opts->per_address is 0 */

/* Status codes counted per route (http_metrics.c k_codes) and latency
 * buckets (k_buckets); anything else lands in "other". */
#define N_CODES 17
#define CODE_OTHER N_CODES
#define N_BUCKETS 13

typedef struct route_stats {
    _Atomic uint64_t by_code[N_CODES + 1];
    _Atomic uint64_t bucket[N_BUCKETS + 1]; /* non-cumulative; summed at export */
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t count;
} route_stats;

typedef struct http_route {
    char *method;
    char *path;
    size_t path_len;
    int prefix;
    size_t max_body;
    char *content_type;
    size_t ct_len;
    int fast; /* may be served by the fast lane (http_lane.c) */
    qtsp_http_handler fn;
    void *ctx;
    char *name;
} http_route;

/* An open connection and the deadline of its phase (http_deadline.c). */
typedef struct http_conn http_conn;

enum { DF_PENDING = 0, DF_CLAIMED = 1 };

typedef struct lane_conn lane_conn;
typedef struct http_lane http_lane;
typedef struct http_rq http_rq;

struct qtsp_http_deferred {
    qtsp_http_server *srv;       /* only while PENDING or claimed by its owner */
    struct MHD_Connection *conn; /* NULL for a fast-lane request */
    lane_conn *lane;             /* a fast-lane request's connection, else NULL */
    http_rq *rq;                 /* ... and the request (the lane answers it) */
    _Atomic int state;           /* DF_PENDING until completed or forced */
    _Atomic int refs;            /* the request and the owner */
    int forced;                  /* answered by the server (503), not the owner */
    int linked;                  /* in srv->deferred */
    int fresh;                   /* its connection's first request (srv->deferred_fresh) */
    qtsp_status rc;              /* the owner's result */
    char what[256];              /* qtsp_err_what() for an error rc */
    qtsp_http_deferred *prev, *next;
    qtsp_http_resp resp;
};

/* Built-in pseudo-routes for metrics, after the configured ones. */
enum { BI_HEALTH = 0, BI_METRICS = 1, BI_UNMATCHED = 2, N_BUILTIN = 3 };

#define HTTP_TRUSTED_MAX 8

struct qtsp_http_server {
    struct MHD_Daemon *daemon;
    int quiesced_fd; /* MHD_socket on POSIX */
    unsigned port;
    http_route *routes;
    size_t n_routes;
    route_stats *stats; /* n_routes + N_BUILTIN */
    qtsp_metrics_fn metrics_fn;
    void *metrics_ctx;
    qtsp_status (*metrics_hook)(void *ctx, const char *own, size_t len, qtsp_buf *out);
    void *metrics_hook_ctx;
    _Atomic long conns_open;
    _Atomic long inflight;
    _Atomic size_t large_bytes; /* capacity of body buffers past QTSP_HTTP_LARGE_BODY now */
    size_t large_budget;
    _Atomic long deferred_pending; /* gauge: suspended, awaiting completion */
    _Atomic long deferred_fresh;   /* ... of them the first request of their connection */
    _Atomic uint64_t deferred_total;
    pthread_mutex_t dmu;          /* deferred, stopping */
    qtsp_http_deferred *deferred; /* pending handles (see qtsp_http_stop) */
    int stopping;
    _Atomic int draining;               /* stop began: answers close their connection */
    char trusted[HTTP_TRUSTED_MAX][46]; /* proxies whose X-Real-IP is logged, normalised */
    size_t n_trusted;
    pthread_mutex_t cmu;  /* conns */
    http_conn *conns;     /* open connections (http_deadline.c) */
    qtsp_periodic *watch; /* shuts down connections past their deadline */
    uint64_t phase_ns;    /* time allowed for a request's headers, and for its body */
    _Atomic uint64_t conns_timed_out;
    _Atomic uint64_t smuggling_refused; /* Content-Length with Transfer-Encoding, or twice */
    _Atomic uint64_t large_refused;     /* uploads refused for the large-body budget */
    http_lane *lane;                    /* the fast lane (http_lane.c), or NULL */
    _Atomic long lane_busy;             /* lane answers being written by completing threads */
};

enum rq_state { RQ_NEW = 0, RQ_BODY, RQ_DEFERRED, RQ_ANSWERED };
/* What a request gets once its (empty) body is in. */
enum { PEND_ROUTE = 0, PEND_HEALTH = 1, PEND_METRICS = 2 }; /* or an HTTP error status */

/* Body bytes past max_body that are read and dropped before the connection
 * is closed without an answer (chunked bodies only; see on_request). */
#define HTTP_DISCARD_MAX ((size_t)64 * 1024)

/* A body buffer's first capacity; it doubles as bytes arrive, up to the
 * announced length (or the route limit for a chunked body). */
#define HTTP_BODY_FIRST ((size_t)16 * 1024)

struct http_rq {
    qtsp_http_server *srv;
    const http_route *route;
    size_t stat_idx;
    uint64_t t0_ns;
    enum rq_state state;
    int status;
    int counted;
    size_t bytes;
    qtsp_buf body;
    size_t discarded;             /* body bytes dropped after the limit was passed */
    size_t large;                 /* bytes counted in srv->large_bytes (released at the end) */
    size_t body_limit;            /* the body's announced length, or the route limit */
    int pending;                  /* answer decided at the headers, sent at the end */
    const char *pend_msg;         /* static text for a pending error */
    char allow[64];               /* Allow header for a pending 405 */
    qtsp_http_deferred *deferred; /* set by qtsp_http_defer; one ref */
    http_conn *conn;              /* its connection's deadline (may be NULL) */
    int close;                    /* answer with Connection: close */
    char method[16];
    char id[17];
    char client[46]; /* the peer, or the X-Real-IP a trusted proxy sent */
    int via_tls;     /* a trusted proxy said X-Forwarded-Proto: https */
    lane_conn *lane; /* a fast-lane request's connection (http_lane.c), else NULL */
    char raw[];      /* raw path, NUL-terminated */
};

/* ---- http_deadline.c ---- */
/* Starts the watchdog: phase_s is the time for a request's headers and for
 * its body. QTSP_ERR_* of qtsp_periodic_start. */
qtsp_status http_deadlines_start(qtsp_http_server *srv, unsigned phase_s) QTSP_MUST_USE;
/* Stops the watchdog (after MHD stopped; the list is then empty). */
void http_deadlines_stop(qtsp_http_server *srv);
/* A new connection on socket fd, its headers due within the phase time;
 * NULL when out of memory (then untracked). From MHD's connection thread. */
http_conn *http_conn_track(qtsp_http_server *srv, int fd);
/* Forgets c (NULL: no-op) before MHD closes its socket. */
void http_conn_untrack(qtsp_http_server *srv, http_conn *c);
/* One more request of c ended (c NULL: no-op). Its connection's MHD thread. */
void http_conn_served(http_conn *c);
/* 1 when c has answered a request before (a kept-alive connection); 0 for
 * its first request, or NULL. Its connection's MHD thread. */
int http_conn_kept_alive(const http_conn *c);
/* timed 1: the next phase begins now (headers done: the body is due; an
 * answer sent: the next request is due); 0: no deadline (our turn). */
void http_conn_phase(qtsp_http_server *srv, http_conn *c, int timed);

/* ---- http_route.c ---- */
/* HEAD is answered like GET; MHD drops the body. */
int http_method_is(const char *m, const char *want);
/* Exact match wins; otherwise the longest prefix route. When the path is
 * known but not for this method, returns NULL with *path_known set and the
 * methods it has in allow. */
const http_route *http_route_find(const qtsp_http_server *srv, const char *method, const char *path,
                                  char *allow, size_t allow_cap, int *path_known);
/* Media type of a Content-Type value equals want, ignoring parameters and
 * case (RFC 9110 8.3.1). */
int http_media_type_is(const char *ct, const char *want, size_t want_len);
int http_has_body_method(const char *m);
/* Copies routes[0..n-1] into *out (http_routes_free). */
qtsp_status http_routes_copy(const qtsp_route *routes, size_t n, http_route **out) QTSP_MUST_USE;
void http_routes_free(http_route *r, size_t n);

/* ---- http_resp.c ---- */
void http_resp_init(qtsp_http_resp *resp);
/* Frees what a response holds without sending it (headers included). */
void http_resp_discard(qtsp_http_resp *resp);
/* The contract's error body {"error":"<code>","message":"..."} into out
 * (cap >= 64); returns its length. */
size_t http_error_body(int status, const char *message, char *out, size_t cap);
/* The message of the error answer for a handler's (or owner's) failure rc
 * with status qtsp_http_status_for(rc): hidden for 500, else what (the
 * failure's qtsp_err_what()) or the code's own text. */
const char *http_error_message(int status, qtsp_status rc, const char *what);
/* Walks the response headers: *pos starts at 0; 0 at the end. */
int http_resp_next_header(const qtsp_http_resp *resp, size_t *pos, const char **name,
                          const char **value);

/* ---- http_metrics.c ---- */
void http_stats_record(qtsp_http_server *srv, size_t idx, int status, uint64_t ns);
qtsp_status http_metrics_render(qtsp_http_server *srv, qtsp_buf *out) QTSP_MUST_USE;

/* ---- http_listen.c ---- */
/* "1.2.3.4:80" or "[::1]:80" into a socket address. */
qtsp_status http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                              int *v6) QTSP_MUST_USE;
/* qtsp_http_listen_shared, with SO_REUSEPORT only when reuseport is set (a
 * single server's socket: a second server on the port fails to bind);
 * port may be NULL. */
qtsp_status http_listen_bind(const char *addr, unsigned n, int reuseport, int *fds,
                             unsigned *port) QTSP_MUST_USE;

/* ---- http_defer.c ---- */
/* Drops one reference (the request's or the owner's). */
void http_deferred_release(qtsp_http_deferred *d);
/* The request ends before its deferred answer was sent. */
void http_deferred_abandon(qtsp_http_server *srv, qtsp_http_deferred *d);
/* Resumes every deferred request still pending, answering it 503. */
void http_force_deferred(qtsp_http_server *srv);

/* ---- http_lane.c ---- */
/* The fast lane: a thread of its own owns the listening socket fd (taken
 * over), serves the simple requests of fast routes itself and hands every
 * other connection, unread, to MHD (http_mhd_add). QTSP_ERR_* on failure
 * (fd is then closed). */
qtsp_status http_lane_start(qtsp_http_server *srv, int fd, const qtsp_http_opts *opts,
                            unsigned timeout_s, size_t max_conn, size_t per_addr) QTSP_MUST_USE;
/* The bound port. */
unsigned http_lane_port(const qtsp_http_server *srv);
/* Stop began: no more connections are accepted, idle ones are closed,
 * answers close theirs. */
void http_lane_quiesce(qtsp_http_server *srv);
/* Ends the lane thread and closes its connections (after every deferred
 * lane request was answered or forced); before MHD stops. */
void http_lane_stop(qtsp_http_server *srv);
/* Frees the lane (after MHD stopped: its connection callbacks use the
 * address table). */
void http_lane_free(qtsp_http_server *srv);
/* Answers the lane request of a claimed deferred handle (completed by its
 * owner, or forced by stop) and drops the request's reference on d. Any
 * thread; never blocks. */
void http_lane_deliver(qtsp_http_deferred *d);
/* Has the lane thread deliver d (http_lane_deliver): a completing thread
 * (the TSA's journal committer answers a whole batch) hands over the writes
 * with one wake-up at most, and goes on. */
void http_lane_post(qtsp_http_deferred *d);
/* A deferred handle's reference on its lane connection (the memory stays
 * valid for qtsp_http_deferred_gone until the handle is freed). */
void http_lane_conn_hold(lane_conn *c);
void http_lane_conn_release(lane_conn *c);
/* 1 when the peer of a lane request's connection closed or reset it. */
int http_lane_peer_closed(const lane_conn *c);
/* 1 when c answered a request before (kept alive). The lane thread. */
int http_lane_kept_alive(const lane_conn *c);
/* Within a handler on the lane thread: the request was deferred (forced 1:
 * while stopping, the lane answers 503 itself). */
void http_lane_deferred(lane_conn *c, int forced);
/* Connections per client address, the lane's and MHD's together (the lane
 * refuses past the limit at accept). MHD's connection callbacks. */
void http_lane_addr_add(qtsp_http_server *srv, const struct sockaddr *sa);
void http_lane_addr_del(qtsp_http_server *srv, const struct sockaddr *sa);
/* The lane's lines for /metrics. */
qtsp_status http_lane_metrics(qtsp_http_server *srv, qtsp_buf *out) QTSP_MUST_USE;

/* ---- http.c ---- */
/* A new request record (raw path of n bytes, its id, start time; counted
 * in flight), or NULL when out of memory. */
http_rq *http_rq_new(qtsp_http_server *srv, const char *raw, size_t n);
/* Frees a request record and ends its time in flight. */
void http_rq_free(http_rq *rq);
/* Records an answer: status and latency in /metrics, one access-log line. */
void http_rq_finish(http_rq *rq, int status, size_t bytes);
/* The peer's address as text ("" when unknown); IPv4-mapped IPv6 as IPv4. */
void http_addr_text(const struct sockaddr *sa, char *out, size_t cap);
/* The logged client of a request from peer: X-Real-IP (and
 * X-Forwarded-Proto) count only from a trusted proxy. */
void http_rq_client(http_rq *rq, const char *real_ip, const char *proto);
/* The reason phrase of an HTTP status ("OK"). */
const char *http_reason(int status);
/* Hands an accepted socket to MHD (which closes it in any case); 0 when
 * MHD refused it. */
int http_mhd_add(qtsp_http_server *srv, int fd, const struct sockaddr *sa, socklen_t len);
void http_conn_suspend(struct MHD_Connection *conn);
void http_conn_resume(struct MHD_Connection *conn);
/* 1 when the peer of a (suspended) connection has closed or reset it: a
 * non-blocking MSG_PEEK reads end of stream or an error. */
int http_conn_peer_closed(struct MHD_Connection *conn);

#endif
