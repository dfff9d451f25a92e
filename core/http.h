/* The HTTP server (libmicrohttpd; only core/http.c includes microhttpd.h;
 * its other jobs are in core/http_*.c, sharing core/http_int.h).
 * Services know no transport: a route's handler receives the method, path,
 * headers and a size-limited body, and fills a response. A protocol rejection
 * (OCSP malformedRequest, TSA rejection) is a protocol answer with status 200
 * built by the handler; a non-OK return from a handler becomes a JSON error
 * {"error":"<code>","message":"<qtsp_err_what()>"} with the mapped status:
 * INVALID 400, AUTH 401, FORBIDDEN 403, NOT_FOUND 404, EXISTS/STATE 409,
 * TOO_BIG 413, QUOTA 429, UNSUPPORTED 415, UNAVAILABLE and STORE_FULL 503, anything else 500
 * (message hidden).
 *
 * The server answers 404 for unknown paths, 405 for a wrong method, 413 when
 * a body exceeds the route's max_body (without reading the rest), 415 when a
 * body route requires a content type and gets another. Each request gets an
 * id (X-Request-Id) and one access-log line; /metrics counts it.
 * Each response goes out in one write (headers and body together).
 *
 * Deferred responses: a handler that must wait for something slow (a
 * durable journal commit) calls qtsp_http_defer() and returns; the worker
 * thread is free for other connections meanwhile, and whoever holds the
 * handle answers later from any thread with qtsp_http_complete(). */
#ifndef QTSP_CORE_HTTP_H
#define QTSP_CORE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct qtsp_http_server qtsp_http_server;

typedef struct qtsp_http_req {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* decoded path, without the query string */
    const char *raw_path;      /* the path exactly as sent (for GET /ocsp/{b64}) */
    const char *request_id;    /* 16 hex chars */
    const unsigned char *body; /* NULL when empty */
    size_t body_len;
    void *conn;     /* internal */
    void *internal; /* internal; NULL outside the server */
} qtsp_http_req;

/* Response headers: enough for a browser page (several Set-Cookie, a full
 * Content-Security-Policy) and still bounded: the whole header block must
 * fit MHD's per-connection memory (16 KiB, shared with the request). */
#define QTSP_HTTP_MAX_HEADERS 32
#define QTSP_HTTP_HEADER_NAME_MAX 64
#define QTSP_HTTP_HEADER_VALUE_MAX 4096
#define QTSP_HTTP_HEADERS_MAX_BYTES ((size_t)8 * 1024) /* names + values, all headers */

typedef struct qtsp_http_resp {
    int status;            /* default 200 */
    char content_type[64]; /* default "application/json" */
    qtsp_buf body;         /* owned by the server; max 64 MiB */
    /* Zero-copy alternative to body: if set, these bytes are sent instead and
     * must stay valid until free_fn(free_ctx) is called (may be NULL). */
    const unsigned char *ext_body;
    size_t ext_len;
    void (*free_fn)(void *);
    void *free_ctx;
    size_t n_headers; /* added with qtsp_http_resp_header */
    qtsp_buf headers; /* internal: "name\0value\0" pairs */
} qtsp_http_resp;

/* Hands the request's body to the caller (free() it; *len its length) and
 * leaves req->body empty for the server: a layer that keeps the body past
 * the handler's return (core/api's workers) takes it instead of copying
 * megabytes. NULL (and *len 0) for an empty body or a request not made by
 * the server. Call at most once, on the HTTP thread, before reading
 * req->body no more. */
unsigned char *qtsp_http_take_body(const qtsp_http_req *req, size_t *len);

/* A request header (case-insensitive), NULL when absent. Borrowed for the request. */
const char *qtsp_http_header(const qtsp_http_req *req, const char *name);
/* 1 when the request reached us through TLS: it came from a trusted proxy
 * (qtsp_http_opts.trusted_proxies) that sent X-Forwarded-Proto: https.
 * From any other peer the header is ignored (0). Decides cookies' Secure. */
int qtsp_http_via_tls(const qtsp_http_req *req);
/* A query-string argument, NULL when absent. */
const char *qtsp_http_query(const qtsp_http_req *req, const char *name);
/* Visits every query-string argument in order (value "" for "?flag");
 * fn returns non-zero to stop. Returns how many were visited. Borrowed for
 * the call. */
size_t qtsp_http_query_each(const qtsp_http_req *req,
                            int (*fn)(void *ctx, const char *name, const char *value), void *ctx);

/* RFC 9110 13.1.2 weak comparison of an If-None-Match value ("*" or a list
 * of entity tags) with etag (quoted). 0 when either is NULL or empty. */
int qtsp_http_etag_matches(const char *if_none_match, const char *etag);

/* Adds a response header (copied); the same name may be added again (one
 * Set-Cookie per cookie). QTSP_ERR_TOO_BIG past QTSP_HTTP_MAX_HEADERS
 * headers, a name over QTSP_HTTP_HEADER_NAME_MAX or a value over
 * QTSP_HTTP_HEADER_VALUE_MAX bytes, or QTSP_HTTP_HEADERS_MAX_BYTES in all;
 * QTSP_ERR_INVALID for CR/LF anywhere or ':'/space in the name (header
 * injection). On error nothing is added. Works on a zeroed resp too (then
 * free it with qtsp_http_resp_cleanup). */
qtsp_status qtsp_http_resp_header(qtsp_http_resp *resp, const char *name,
                                  const char *value) QTSP_MUST_USE;
/* Sets status, content type and a body copy in one call. */
qtsp_status qtsp_http_resp_set(qtsp_http_resp *resp, int status, const char *content_type,
                               const void *body, size_t len) QTSP_MUST_USE;
/* The contract's error answer: status with application/json
 * {"error":"<code for status>","message":"<message, JSON-escaped>"}. */
qtsp_status qtsp_http_resp_error(qtsp_http_resp *resp, int status,
                                 const char *message) QTSP_MUST_USE;
/* Drops body, external body (free_fn called) and headers: back to 200,
 * application/json, empty, as a handler receives it. */
void qtsp_http_resp_reset(qtsp_http_resp *resp);
/* Frees what a response built outside the server holds (body, external
 * body, headers). NULL is a no-op. */
void qtsp_http_resp_cleanup(qtsp_http_resp *resp);
/* The HTTP status a handler failure maps to (the table at the top). */
int qtsp_http_status_for(qtsp_status rc);

typedef qtsp_status (*qtsp_http_handler)(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp);

typedef struct qtsp_route {
    const char *method; /* "GET", "POST" */
    const char *path;   /* exact path, or a prefix when prefix = 1 */
    int prefix;
    size_t max_body;          /* bytes; 0 = no body accepted */
    const char *content_type; /* required request media type for bodies, or NULL */
    qtsp_http_handler fn;
    void *ctx;
    const char *name; /* metrics label, e.g. "ocsp_get" */
} qtsp_route;

typedef struct qtsp_http_opts {
    const char *listen; /* "127.0.0.1:8080"; port 0 = pick a free one */
    unsigned workers;   /* threads in the pool (>= 1) */
    /* idle client timeout, and the most a request's headers, or its body,
     * may take (a client trickling bytes is cut off); 0 = default 30 s */
    unsigned conn_timeout_s;
    size_t max_connections; /* 0 = default 4096 */
    /* connections from one client address at a time; 0 = default 512,
     * (size_t)-1 = no limit (behind a reverse proxy, every client is its
     * address) */
    size_t per_address;
    /* With use_listen_fd: serve the bound, listening socket listen_fd
     * (qtsp_http_listen_shared) instead of binding listen, which then only
     * names it in logs. The server closes it when it stops. */
    int use_listen_fd;
    int listen_fd;
    /* When set, /metrics answers what hook makes of this process's own text
     * (the worker processes of `serve --processes N` merge theirs). */
    qtsp_status (*metrics_hook)(void *ctx, const char *own, size_t len, qtsp_buf *out);
    void *metrics_hook_ctx;
    /* Peers (IP addresses, NULL-terminated list; NULL = none) whose
     * X-Real-IP header names the client in the access log: the TLS front.
     * From any other peer the header is ignored. */
    const char *const *trusted_proxies;
    /* Bytes of large request bodies held at once by this process. A body
     * buffer grows as bytes arrive (doubling, up to the announced length or
     * the route limit); once past QTSP_HTTP_LARGE_BODY its capacity is
     * charged here at each growth, Content-Length or chunked alike, so a
     * client that announces much and sends little holds little. An announced
     * length that does not fit what is left is answered 503 before the body
     * is read; a body that outgrows it mid-way is dropped (503 at its end
     * within 64 KiB, else the connection is closed: MHD 0.9.75 cannot answer
     * mid-body). 0 = 3 x the largest route limit. */
    size_t large_body_budget;
    /* The fast lane (core/http_lane.c): a thread of its own accepts every
     * connection and answers the requests of fast routes that arrive whole
     * and simple (HTTP/1.1 POST, Content-Length within the route limit and
     * 16 KiB, the route's media type, no Transfer-Encoding, Expect,
     * Upgrade or Content-Encoding) without MHD's suspend and resume; it
     * hands any other connection to MHD before reading a byte of the request
     * it does not serve. Same limits, timeouts, access log, metrics,
     * deferred answers and stop. fast_routes names the routes it serves
     * (NULL-terminated; POST routes on an exact path with a content_type,
     * others are ignored); their handlers then see no headers and no query
     * (qtsp_http_header/query give NULL, qtsp_http_take_body NULL): they
     * must need nothing but the body. NULL or empty: no lane. */
    const char *const *fast_routes;
    /* Called on the lane thread before and after each round of events it
     * serves (either may be NULL): a service that queues work for another
     * thread can have the lane do it at the round's end instead, for all
     * the round's requests back to back (cmd/services.c: the signing queue,
     * ca/signq.h qtsp_signq_hold). */
    void (*lane_round_begin)(void *ctx);
    void (*lane_round_end)(void *ctx);
    void *lane_round_ctx;
    /* 1: the lane writes each answer with its own sendmsg. 0 (default):
     * the answers a round completes go out in one io_uring submission
     * where the kernel allows io_uring (else one sendmsg each). */
    int lane_no_io_uring;
} qtsp_http_opts;

#define QTSP_HTTP_LARGE_BODY ((size_t)1 << 20)

/* Binds n listening TCP sockets to listen ("HOST:PORT"; port 0 = one port
 * picked by the kernel for all) with SO_REUSEPORT, so n processes can each
 * serve one and the kernel spreads new connections over them. fds[0..n-1]
 * are close-on-exec; *port is the bound port. QTSP_ERR_IO when the address
 * cannot be bound (nothing is left open). */
qtsp_status qtsp_http_listen_shared(const char *listen, unsigned n, int *fds,
                                    unsigned *port) QTSP_MUST_USE;

/* Extra lines appended to /metrics (store size, token sessions, ...). Called
 * with an output buffer; must append Prometheus text. */
typedef qtsp_status (*qtsp_metrics_fn)(void *ctx, qtsp_buf *out);

/* Starts listening. Routes are copied. /health and /metrics are built in.
 * *out owned by the caller. QTSP_ERR_IO when the address cannot be bound. */
qtsp_status qtsp_http_start(const qtsp_http_opts *opts, const qtsp_route *routes, size_t n,
                            qtsp_metrics_fn metrics_fn, void *metrics_ctx,
                            qtsp_http_server **out) QTSP_MUST_USE;
/* Writes the canonical text of the IPv4 or IPv6 address text (inet_ntop of
 * inet_pton) to out (46 bytes: INET6_ADDRSTRLEN). Returns 1, or 0 when text
 * is NULL or not an address (out is then ""). Thread-safe. */
int qtsp_http_ip_normalize(const char *text, char out[46]);

/* The paths every server answers itself with GET (the built-ins): i-th
 * ("/health", "/metrics"), NULL past the end. Static strings. */
const char *qtsp_http_builtin_path(size_t i);
/* The bound port (useful with port 0). */
unsigned qtsp_http_port(const qtsp_http_server *srv);
/* This process's own /metrics text (what the hook receives), appended to out. */
qtsp_status qtsp_http_metrics_text(qtsp_http_server *srv, qtsp_buf *out) QTSP_MUST_USE;
/* Stops accepting, lets requests in flight finish (waits up to 10 s for
 * them, deferred ones included; answers sent meanwhile carry "Connection:
 * close" so keep-alive clients leave), closes idle connections, frees.
 * Deferred requests still pending after the wait are answered 503
 * {"error":"unavailable"} by the server itself; their handles stay valid
 * until their owners call qtsp_http_complete (which then drops its
 * response). Never blocks on an owner. NULL is a no-op. */
void qtsp_http_stop(qtsp_http_server *srv);
/* qtsp_http_stop with a wait of grace_ms instead of 10 s. */
void qtsp_http_stop_within(qtsp_http_server *srv, unsigned grace_ms);

/* ---- deferred responses ------------------------------------------------ */

typedef struct qtsp_http_deferred qtsp_http_deferred;

/* Called inside a handler: the request will be answered later through the
 * returned handle, from any thread. The handler must then return QTSP_OK
 * and leave its resp untouched (both are ignored); the connection is
 * suspended (no worker thread is held, no timeout runs) until
 * qtsp_http_complete. Returns NULL when the request cannot be deferred
 * (req not from the server, out of memory, already deferred): the handler
 * answers synchronously as usual. While the server is stopping, returns a
 * handle whose request is answered 503 at once (the owner still completes
 * it). The access-log line, /metrics status and latency are recorded when
 * the response is queued, so latency includes the wait.
 * Ownership: the caller owns the handle until it passes it to
 * qtsp_http_complete, exactly once (every handle must be completed, also
 * after qtsp_http_stop: it is freed there). */
qtsp_http_deferred *qtsp_http_defer(const qtsp_http_req *req);

/* The response to fill before qtsp_http_complete, initialised like a
 * handler's (200, application/json, empty body of at most 64 MiB, no
 * headers); ext_body/free_fn work as for handlers. Borrowed from d; only
 * the owner touches it, from one thread at a time, until completion. Never
 * NULL for a valid d. The request itself (body, headers, path) must not be
 * read after the handler returned: copy what is needed before. */
qtsp_http_resp *qtsp_http_deferred_resp(qtsp_http_deferred *d);

/* 1 when nobody waits for d's answer any more: its client closed the
 * connection (or reset it) while the request was suspended, or the server
 * already answered it (stop). Lets an owner drop queued work. Only the
 * owner calls it, before qtsp_http_complete. Never blocks. */
int qtsp_http_deferred_gone(qtsp_http_deferred *d);

/* 1 when every open client connection of srv has a deferred request
 * pending, each on a connection that answered a request before: no
 * keep-alive HTTP/1.1 client (which sends its next request only after the
 * answer) can send anything before one of them is answered. A deferred
 * request that is its connection's first gives 0: its client may be one
 * that opens a connection per request and is counted nowhere while it
 * reconnects. A hint for owners that gather deferred work (the TSA's group
 * commit): waiting for more is then pure latency. Racy by nature (a new
 * client may connect just after); lock-free, any thread. 0 for NULL. */
int qtsp_http_clients_all_waiting(const qtsp_http_server *srv);

/* Answers a deferred request, from any thread, exactly once; d is invalid
 * afterwards. rc QTSP_OK sends the filled response; another code sends the
 * JSON error a handler returning rc would get (message: qtsp_err_what() of
 * the calling thread, logged when it maps to 500). The response's contents
 * pass to the server (freed with free_fn once sent or dropped). When the
 * server already answered the request (stop, client gone), the response is
 * freed here and nothing is sent. Thread-safe; never blocks on I/O. */
void qtsp_http_complete(qtsp_http_deferred *d, qtsp_status rc);

#endif
