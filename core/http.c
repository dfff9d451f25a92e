/* The HTTP server on libmicrohttpd 0.9.75 (the only file including
 * microhttpd.h).
 *
 * Threading: MHD's internal thread pool, one epoll loop per worker; a
 * request is handled start to end on one worker, so the thread-local error
 * state of core/err.h belongs to that request. Shared state while serving is
 * the route table (immutable after start) and _Atomic counters.
 *
 * Per request: MHD calls uri_log() with the raw request target before it
 * percent-decodes it; there we allocate the request record (raw path copy,
 * start time, id). The access handler then runs once for the headers, once
 * per body chunk, and once at the end. Responses are MHD buffer responses so
 * MHD sends headers and body with one sendmsg().
 *
 * Deferred responses (qtsp_http_defer): the handler suspends the
 * connection (MHD_suspend_connection, so the daemon runs with
 * MHD_ALLOW_SUSPEND_RESUME, which implies MHD_USE_ITC) and returns; the
 * owner fills the handle's response and calls qtsp_http_complete from any
 * thread, which MHD_resume_connection()s it: that sets a flag and wakes the
 * connection's worker through its ITC (eventfd); the worker moves the
 * connection back into its epoll ready list and MHD calls the access
 * handler again (upload_data_size 0), which queues the stored response. MHD
 * 0.9.75 rules honoured: suspend only from the access handler, before any
 * resume (the handle reaches the owner only after suspending); no timeout
 * and no disconnect detection while suspended; MHD_stop_daemon with a
 * suspended connection is a panic, so qtsp_http_stop resumes every pending
 * one first (answering 503 itself after the grace period).
 * A handle is shared by the request and the owner (refs); its state moves
 * once from PENDING to CLAIMED (by the owner's complete or by stop) under
 * an atomic CAS, so the response is written by one side only. Pending
 * handles sit in srv->deferred (srv->dmu), which is what stop walks; the
 * lock order is srv->dmu, then MHD's internal mutex (suspend/resume).
 * Ordinary handlers pay one pointer test (and one relaxed load) for this.
 *
 * Limits: the request line and headers must fit MHD's per-connection memory
 * pool (HTTP_CONN_MEMORY = 16 KiB); a longer URL or header block gets MHD's
 * own 414/431 answer. Bodies are limited per route (max_body). */
#include "core/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"

#define HTTP_RESP_MAX ((size_t)64 * 1024 * 1024)
#define HTTP_METRICS_MAX ((size_t)1024 * 1024)
#define HTTP_CONN_MEMORY ((size_t)16 * 1024) /* MHD zeroes it for every request */
#define HTTP_DEFAULT_CONNECTIONS 4096
#define HTTP_STOP_GRACE_MS 10000
#define HTTP_FORCED_GRACE_MS 1000 /* for the 503s of deferred requests forced at stop */
#define HTTP_DEFAULT_TIMEOUT_S 30 /* when opts->conn_timeout_s is 0 */

/* Status codes counted per route; anything else lands in "other". */
static const int k_codes[] = {200, 201, 204, 301, 302, 304, 400, 401, 403, 404,
                              405, 409, 413, 415, 429, 500, 503};
#define N_CODES (sizeof k_codes / sizeof k_codes[0])
#define CODE_OTHER N_CODES

/* Latency histogram upper bounds in seconds (plus +Inf). */
static const double k_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1.0,   2.5,  5.0};
#define N_BUCKETS (sizeof k_buckets / sizeof k_buckets[0])
static const uint64_t k_bucket_ns[] = {500000ULL,    1000000ULL,    2500000ULL,   5000000ULL,
                                       10000000ULL,  25000000ULL,   50000000ULL,  100000000ULL,
                                       250000000ULL, 500000000ULL,  1000000000ULL,
                                       2500000000ULL, 5000000000ULL};

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
    qtsp_http_handler fn;
    void *ctx;
    char *name;
} http_route;

enum { DF_PENDING = 0, DF_CLAIMED = 1 };

struct qtsp_http_deferred {
    qtsp_http_server *srv;       /* only while PENDING or claimed by its owner */
    struct MHD_Connection *conn;
    _Atomic int state;           /* DF_PENDING until completed or forced */
    _Atomic int refs;            /* the request and the owner */
    int forced;                  /* answered by the server (503), not the owner */
    int linked;                  /* in srv->deferred */
    qtsp_status rc;              /* the owner's result */
    char what[256];              /* qtsp_err_what() for an error rc */
    qtsp_http_deferred *prev, *next;
    qtsp_http_resp resp;
};

/* Built-in pseudo-routes for metrics, after the configured ones. */
enum { BI_HEALTH = 0, BI_METRICS = 1, BI_UNMATCHED = 2, N_BUILTIN = 3 };

struct qtsp_http_server {
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd;
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
    _Atomic long deferred_pending; /* gauge: suspended, awaiting completion */
    _Atomic uint64_t deferred_total;
    pthread_mutex_t dmu;           /* deferred, stopping */
    qtsp_http_deferred *deferred;  /* pending handles (see qtsp_http_stop) */
    int stopping;
    _Atomic int draining;          /* stop began: answers close their connection */
};

enum rq_state { RQ_NEW = 0, RQ_BODY, RQ_DEFERRED, RQ_ANSWERED };
/* What a request gets once its (empty) body is in. */
enum { PEND_ROUTE = 0, PEND_HEALTH = 1, PEND_METRICS = 2 }; /* or an HTTP error status */

/* Body bytes past max_body that are read and dropped before the connection
 * is closed without an answer (chunked bodies only; see on_request). */
#define HTTP_DISCARD_MAX ((size_t)64 * 1024)

typedef struct http_rq {
    qtsp_http_server *srv;
    const http_route *route;
    size_t stat_idx;
    uint64_t t0_ns;
    enum rq_state state;
    int status;
    int counted;
    size_t bytes;
    qtsp_buf body;
    size_t discarded;     /* body bytes dropped after the limit was passed */
    int pending;          /* answer decided at the headers, sent at the end */
    const char *pend_msg; /* static text for a pending error */
    char allow[64];       /* Allow header for a pending 405 */
    qtsp_http_deferred *deferred; /* set by qtsp_http_defer; one ref */
    char method[16];
    char id[17];
    char raw[]; /* raw path, NUL-terminated */
} http_rq;

/* ---- small helpers ---------------------------------------------------- */

static const char k_hex[] = "0123456789abcdef";

/* Request ids: a random 32-bit prefix per thread and a 32-bit counter; the
 * prefix is redrawn when the counter wraps. No locks, no syscalls. */
static _Thread_local uint32_t t_id_prefix;
static _Thread_local uint32_t t_id_ctr;
static _Thread_local int t_id_ready;

static void make_request_id(char out[17])
{
    if (!t_id_ready || t_id_ctr == 0) {
        unsigned char r[4] = {0};
        if (qtsp_random(r, sizeof r) != QTSP_OK) {
            /* Ids only correlate log lines; fall back to the clock. */
            uint64_t ns = qtsp_mono_ns();
            memcpy(r, &ns, sizeof r);
        }
        t_id_prefix = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
        t_id_ready = 1;
        if (t_id_ctr == 0)
            t_id_ctr = 1;
    }
    uint64_t v = (uint64_t)t_id_prefix << 32 | t_id_ctr++;
    for (int i = 15; i >= 0; i--) {
        out[i] = k_hex[v & 0xf];
        v >>= 4;
    }
    out[16] = '\0';
}

static size_t code_index(int status)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (k_codes[i] == status)
            return i;
    return CODE_OTHER;
}

static void stats_record(qtsp_http_server *srv, size_t idx, int status, uint64_t ns)
{
    route_stats *st = &srv->stats[idx];
    atomic_fetch_add_explicit(&st->by_code[code_index(status)], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < N_BUCKETS && ns > k_bucket_ns[b])
        b++;
    atomic_fetch_add_explicit(&st->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->count, 1, memory_order_relaxed);
}

static const char *error_code_name(int status)
{
    switch (status) {
    case 400: return "invalid";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "too_big";
    case 415: return "unsupported_media";
    case 429: return "quota";
    case 503: return "unavailable";
    default: return "internal";
    }
}

/* header comment of core/http.h: the status a handler failure maps to. */
static int status_for(qtsp_status rc)
{
    switch (rc) {
    case QTSP_ERR_INVALID: return 400;
    case QTSP_ERR_AUTH: return 401;
    case QTSP_ERR_FORBIDDEN: return 403;
    case QTSP_ERR_NOT_FOUND: return 404;
    case QTSP_ERR_EXISTS:
    case QTSP_ERR_STATE: return 409;
    case QTSP_ERR_TOO_BIG: return 413;
    case QTSP_ERR_QUOTA: return 429;
    case QTSP_ERR_UNSUPPORTED: return 415;
    case QTSP_ERR_UNAVAILABLE: return 503;
    default: return 500;
    }
}

/* ---- sending ---------------------------------------------------------- */

static void finish_log(http_rq *rq, int status, size_t bytes)
{
    rq->status = status;
    rq->bytes = bytes;
    rq->state = RQ_ANSWERED;
    uint64_t ns = qtsp_mono_ns() - rq->t0_ns;
    if (!rq->counted) {
        rq->counted = 1;
        stats_record(rq->srv, rq->stat_idx, status, ns);
    }
    qtsp_log_access(rq->id, rq->method, rq->raw, status, bytes, (double)ns / 1e6);
}

static void free_cb(void *p) { free(p); }

/* Queues a response; takes over data (freed with fr(fr_ctx), may be NULL). */
static enum MHD_Result send_response(struct MHD_Connection *conn, http_rq *rq, int status,
                                     const char *ctype, const void *data, size_t len,
                                     void (*fr)(void *), void *fr_ctx,
                                     const qtsp_http_resp *extra, const char *allow)
{
    struct MHD_Response *r;
    if (len == 0) {
        if (fr)
            fr(fr_ctx);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)data, fr, fr_ctx);
        if (r == NULL && fr)
            fr(fr_ctx);
    }
    if (r == NULL) {
        LOG_ERROR("http: request %s: cannot create response (out of memory)", rq->id);
        return MHD_NO;
    }
    int ok = MHD_add_response_header(r, "X-Request-Id", rq->id) == MHD_YES;
    if (ctype && *ctype)
        ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) == MHD_YES;
    if (allow)
        ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) == MHD_YES;
    /* While stopping, keep-alive clients are sent away so that the wait for
     * requests in flight ends (MHD_quiesce_daemon only closes the listener). */
    if (atomic_load_explicit(&rq->srv->draining, memory_order_relaxed))
        ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    if (extra)
        for (size_t i = 0; i < extra->n_headers && ok; i++)
            ok = MHD_add_response_header(r, extra->header_name[i], extra->header_value[i]) ==
                 MHD_YES;
    if (!ok) {
        MHD_destroy_response(r);
        LOG_ERROR("http: request %s: cannot add response headers", rq->id);
        return MHD_NO;
    }
    enum MHD_Result q = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (q == MHD_YES)
        finish_log(rq, status, len);
    else
        LOG_ERROR("http: request %s: MHD refused the %d response", rq->id, status);
    return q;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, http_rq *rq, int status,
                                  const char *message, const char *allow)
{
    char body[640];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"",
                                error_code_name(status));
    n = qtsp_json_escape(body, sizeof body - 3, n, message);
    body[n++] = '"';
    body[n++] = '}';
    body[n] = '\0';
    char *copy = malloc(n);
    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, body, n);
    return send_response(conn, rq, status, "application/json", copy, n, free_cb, copy, NULL,
                         allow);
}

/* ---- routing ---------------------------------------------------------- */

static int method_is(const char *m, const char *want)
{
    /* HEAD is answered like GET; MHD drops the body. */
    if (strcmp(m, want) == 0)
        return 1;
    return strcmp(m, "HEAD") == 0 && strcmp(want, "GET") == 0;
}

/* Exact match wins; otherwise the longest prefix route. When the path is
 * known but not for this method, returns NULL with *path_known set and the
 * methods it has in allow. */
static const http_route *route_find(const qtsp_http_server *srv, const char *method,
                                    const char *path, char *allow, size_t allow_cap,
                                    int *path_known)
{
    size_t plen = strlen(path);
    const http_route *best = NULL;
    *path_known = 0;
    allow[0] = '\0';
    /* Pass 1: the best matching path length (exact beats any prefix). */
    size_t match_len = 0;
    int match_exact = 0;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const http_route *r = &srv->routes[i];
        int exact = r->path_len == plen && memcmp(r->path, path, plen) == 0;
        int pre = r->prefix && r->path_len <= plen && memcmp(r->path, path, r->path_len) == 0;
        if (!exact && !pre)
            continue;
        if (exact && !match_exact) {
            match_exact = 1;
            match_len = plen;
        } else if (!match_exact && r->path_len > match_len) {
            match_len = r->path_len;
        }
    }
    /* Pass 2: among routes with that match, the one for this method. */
    for (size_t i = 0; i < srv->n_routes; i++) {
        const http_route *r = &srv->routes[i];
        int exact = r->path_len == plen && memcmp(r->path, path, plen) == 0;
        int pre = r->prefix && r->path_len <= plen && memcmp(r->path, path, r->path_len) == 0;
        if (match_exact ? !exact : !(pre && r->path_len == match_len))
            continue;
        *path_known = 1;
        if (method_is(method, r->method)) {
            best = r;
            break;
        }
        size_t al = strlen(allow);
        if (strstr(allow, r->method) == NULL && al + strlen(r->method) + 3 < allow_cap)
            snprintf(allow + al, allow_cap - al, "%s%s", al ? ", " : "", r->method);
    }
    return best;
}

/* Media type of a Content-Type value equals want, ignoring parameters and
 * case (RFC 9110 8.3.1). */
static int media_type_is(const char *ct, const char *want, size_t want_len)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = 0;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
        n++;
    return n == want_len && strncasecmp(ct, want, n) == 0;
}

static int has_body_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* ---- built-ins -------------------------------------------------------- */

static qtsp_status metrics_render(qtsp_http_server *srv, qtsp_buf *out)
{
    TRY(qtsp_buf_puts(out, "# HELP qtsp_http_requests_total HTTP requests answered.\n"
                           "# TYPE qtsp_http_requests_total counter\n"));
    size_t n = srv->n_routes + N_BUILTIN;
    for (size_t i = 0; i < n; i++) {
        const char *name = i < srv->n_routes ? srv->routes[i].name
                           : i == srv->n_routes + BI_HEALTH  ? "health"
                           : i == srv->n_routes + BI_METRICS ? "metrics"
                                                             : "unmatched";
        for (size_t c = 0; c <= N_CODES; c++) {
            uint64_t v = atomic_load_explicit(&srv->stats[i].by_code[c], memory_order_relaxed);
            if (v == 0)
                continue;
            if (c == CODE_OTHER)
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_requests_total{route=\"%s\",status=\"other\"} "
                                    "%llu\n",
                                    name, (unsigned long long)v));
            else
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                    name, k_codes[c], (unsigned long long)v));
        }
    }
    TRY(qtsp_buf_puts(out, "# HELP qtsp_http_request_duration_seconds Time to answer.\n"
                           "# TYPE qtsp_http_request_duration_seconds histogram\n"));
    for (size_t i = 0; i < n; i++) {
        const char *name = i < srv->n_routes ? srv->routes[i].name
                           : i == srv->n_routes + BI_HEALTH  ? "health"
                           : i == srv->n_routes + BI_METRICS ? "metrics"
                                                             : "unmatched";
        const route_stats *st = &srv->stats[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load_explicit(&st->bucket[b], memory_order_relaxed);
            if (b < N_BUCKETS)
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_request_duration_seconds_bucket{route=\"%s\","
                                    "le=\"%g\"} %llu\n",
                                    name, k_buckets[b], (unsigned long long)cum));
            else
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_request_duration_seconds_bucket{route=\"%s\","
                                    "le=\"+Inf\"} %llu\n",
                                    name, (unsigned long long)cum));
        }
        uint64_t sum = atomic_load_explicit(&st->sum_ns, memory_order_relaxed);
        uint64_t cnt = atomic_load_explicit(&st->count, memory_order_relaxed);
        TRY(qtsp_buf_printf(out,
                            "qtsp_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
                            "qtsp_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                            name, (double)sum / 1e9, name, (unsigned long long)cnt));
    }
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_http_connections_open Open client connections.\n"
                        "# TYPE qtsp_http_connections_open gauge\n"
                        "qtsp_http_connections_open %ld\n",
                        atomic_load_explicit(&srv->conns_open, memory_order_relaxed)));
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_http_deferred_pending Requests awaiting a deferred answer.\n"
                        "# TYPE qtsp_http_deferred_pending gauge\n"
                        "qtsp_http_deferred_pending %ld\n"
                        "# HELP qtsp_http_deferred_total Requests answered through a deferred "
                        "handle.\n"
                        "# TYPE qtsp_http_deferred_total counter\n"
                        "qtsp_http_deferred_total %llu\n",
                        atomic_load_explicit(&srv->deferred_pending, memory_order_relaxed),
                        (unsigned long long)atomic_load_explicit(&srv->deferred_total,
                                                                 memory_order_relaxed)));
    if (srv->metrics_fn)
        TRY(srv->metrics_fn(srv->metrics_ctx, out));
    return QTSP_OK;
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn, http_rq *rq)
{
    qtsp_buf out;
    qtsp_buf_init(&out, HTTP_METRICS_MAX);
    qtsp_err_clear();
    qtsp_status rc = metrics_render(rq->srv, &out);
    if (rc == QTSP_OK && rq->srv->metrics_hook) {
        qtsp_buf merged; /* every worker process's text: up to 64 x its own */
        qtsp_buf_init(&merged, 64 * HTTP_METRICS_MAX);
        rc = rq->srv->metrics_hook(rq->srv->metrics_hook_ctx, (const char *)out.data, out.len,
                                   &merged);
        qtsp_buf_cleanup(&out);
        out = merged;
    }
    if (rc != QTSP_OK) {
        LOG_ERROR("http: request %s: /metrics failed: %s", rq->id, qtsp_err_message());
        qtsp_buf_cleanup(&out);
        return send_error(conn, rq, 500, "internal error", NULL);
    }
    size_t len = 0;
    unsigned char *p = qtsp_buf_take(&out, &len);
    return send_response(conn, rq, 200, "text/plain; version=0.0.4", p, len, free_cb, p, NULL,
                         NULL);
}

qtsp_status qtsp_http_metrics_text(qtsp_http_server *srv, qtsp_buf *out)
{
    ENSURE(srv != NULL, QTSP_ERR_INVALID, "no server");
    return metrics_render(srv, out);
}

/* ---- the handler ------------------------------------------------------ */

static void resp_init(qtsp_http_resp *resp)
{
    resp->status = 200;
    memcpy(resp->content_type, "application/json", sizeof "application/json");
    qtsp_buf_init(&resp->body, HTTP_RESP_MAX);
    resp->ext_body = NULL;
    resp->ext_len = 0;
    resp->free_fn = NULL;
    resp->free_ctx = NULL;
    resp->n_headers = 0;
}

/* Frees what a response holds without sending it. */
static void resp_discard(qtsp_http_resp *resp)
{
    if (resp->ext_body && resp->free_fn)
        resp->free_fn(resp->free_ctx);
    resp->ext_body = NULL;
    resp->free_fn = NULL;
    qtsp_buf_cleanup(&resp->body);
}

/* Sends a response filled by a handler or a deferred request's owner;
 * takes over its contents. */
static enum MHD_Result send_resp(struct MHD_Connection *conn, http_rq *rq, qtsp_http_resp *resp)
{
    if (resp->status < 100 || resp->status > 599) {
        LOG_ERROR("http: request %s: HTTP status %d set by route %s", rq->id, resp->status,
                  rq->route ? rq->route->name : "-");
        resp_discard(resp);
        return send_error(conn, rq, 500, "internal error", NULL);
    }
    resp->content_type[sizeof resp->content_type - 1] = '\0';
    if (resp->ext_body) {
        qtsp_buf_cleanup(&resp->body);
        return send_response(conn, rq, resp->status, resp->content_type, resp->ext_body,
                             resp->ext_len, resp->free_fn, resp->free_ctx, resp, NULL);
    }
    size_t len = 0;
    unsigned char *p = qtsp_buf_take(&resp->body, &len);
    return send_response(conn, rq, resp->status, resp->content_type, p, len, free_cb, p, resp,
                         NULL);
}

static void deferred_release(qtsp_http_deferred *d)
{
    if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
        free(d);
}

/* Under srv->dmu. */
static void deferred_unlink(qtsp_http_server *srv, qtsp_http_deferred *d)
{
    if (!d->linked)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        srv->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    d->linked = 0;
    atomic_fetch_sub_explicit(&srv->deferred_pending, 1, memory_order_relaxed);
}

/* The answer to a deferred request, once completed (or forced by stop):
 * the owner's response, its error, or 503. Drops the request's ref. */
static enum MHD_Result answer_deferred(struct MHD_Connection *conn, http_rq *rq)
{
    qtsp_http_deferred *d = rq->deferred;
    rq->deferred = NULL;
    rq->state = RQ_BODY;
    enum MHD_Result r;
    if (d->forced) {
        r = send_error(conn, rq, 503, "the server is shutting down", NULL);
    } else if (d->rc != QTSP_OK) {
        resp_discard(&d->resp);
        int status = status_for(d->rc);
        r = send_error(conn, rq, status,
                       status == 500 ? "internal error"
                       : d->what[0]  ? d->what
                                     : qtsp_strerror(d->rc),
                       NULL);
    } else {
        r = send_resp(conn, rq, &d->resp);
    }
    deferred_release(d);
    return r;
}

/* After a handler that called qtsp_http_defer: its return value and resp
 * are ignored; the answer comes when the connection is resumed. */
static enum MHD_Result handler_deferred(struct MHD_Connection *conn, http_rq *rq,
                                        qtsp_status rc, qtsp_http_resp *resp)
{
    resp_discard(resp);
    if (rc != QTSP_OK)
        LOG_WARN("http: request %s: route %s deferred the request and returned %s; "
                 "waiting for its completion",
                 rq->id, rq->route->name, qtsp_strerror(rc));
    if (rq->deferred->forced) /* deferred while stopping: never suspended */
        return answer_deferred(conn, rq);
    rq->state = RQ_DEFERRED;
    return MHD_YES;
}

static enum MHD_Result run_handler(struct MHD_Connection *conn, http_rq *rq, const char *url,
                                   const char *method)
{
    const http_route *rt = rq->route;
    qtsp_http_req req = {
        .method = method,
        .path = url,
        .raw_path = rq->raw,
        .request_id = rq->id,
        .body = rq->body.len ? rq->body.data : NULL,
        .body_len = rq->body.len,
        .conn = conn,
        .internal = rq,
    };
    qtsp_http_resp resp;
    resp_init(&resp);

    qtsp_err_clear();
    qtsp_status rc = rt->fn(rt->ctx, &req, &resp);
    if (rq->deferred)
        return handler_deferred(conn, rq, rc, &resp);
    if (rc == QTSP_OK && (resp.status < 100 || resp.status > 599))
        rc = qtsp_err_set(QTSP_ERR_INTERNAL, __FILE__, __LINE__,
                          "route %s set HTTP status %d", rt->name, resp.status);
    if (rc != QTSP_OK) {
        resp_discard(&resp);
        int status = status_for(rc);
        if (status == 500) {
            LOG_ERROR("http: request %s %s %s: %s", rq->id, method, rq->raw,
                      qtsp_err_message());
            return send_error(conn, rq, 500, "internal error", NULL);
        }
        const char *what = qtsp_err_what();
        return send_error(conn, rq, status, *what ? what : qtsp_strerror(rc), NULL);
    }
    return send_resp(conn, rq, &resp);
}

/* Sends what was decided for a request without a route handler. */
static enum MHD_Result answer_pending(struct MHD_Connection *conn, http_rq *rq)
{
    switch (rq->pending) {
    case PEND_HEALTH:
        return send_response(conn, rq, 200, "text/plain", "ok", 2, NULL, NULL, NULL, NULL);
    case PEND_METRICS:
        return serve_metrics(conn, rq);
    default:
        return send_error(conn, rq, rq->pending, rq->pend_msg,
                          rq->pending == 405 ? rq->allow : NULL);
    }
}

/* First call for a request: headers are in, no body read yet.
 *
 * MHD 0.9.75 closes the connection after a response queued at this point
 * (it will not read a body it has not seen), so answers are deferred to the
 * final call when no body is announced, to keep the connection alive; when a
 * body is announced and must be refused (413 by Content-Length, 404/405/415),
 * answering now is the point: the body is never read. */
static enum MHD_Result on_headers(struct MHD_Connection *conn, http_rq *rq, const char *url,
                                  const char *method)
{
    qtsp_http_server *srv = rq->srv;
    snprintf(rq->method, sizeof rq->method, "%s", method);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    int body_expected = (cl && strcmp(cl, "0") != 0) || te != NULL;
    int known = 0;
    const http_route *rt = route_find(srv, method, url, rq->allow, sizeof rq->allow, &known);
    rq->state = RQ_BODY;
    if (rt == NULL) {
        int is_get = method_is(method, "GET");
        if (!known && strcmp(url, "/health") == 0) {
            rq->stat_idx = srv->n_routes + BI_HEALTH;
            rq->pending = PEND_HEALTH;
        } else if (!known && strcmp(url, "/metrics") == 0) {
            rq->stat_idx = srv->n_routes + BI_METRICS;
            rq->pending = PEND_METRICS;
        } else {
            is_get = 1;
            rq->stat_idx = srv->n_routes + BI_UNMATCHED;
            rq->pending = known ? 405 : 404;
            rq->pend_msg = known ? "method not allowed" : "no such resource";
        }
        if (!is_get) {
            rq->pending = 405;
            rq->pend_msg = "method not allowed";
            snprintf(rq->allow, sizeof rq->allow, "GET");
        }
        return body_expected ? answer_pending(conn, rq) : MHD_YES;
    }
    rq->route = rt;
    rq->stat_idx = (size_t)(rt - srv->routes);
    rq->pending = PEND_ROUTE;
    if (cl) {
        /* MHD has validated the digits already; a value past the limit is
         * answered before any body byte is read. */
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno || end == cl || v > rt->max_body)
            return send_error(conn, rq, 413, "request body too large", NULL);
    }
    if (te != NULL && rt->max_body == 0)
        return send_error(conn, rq, 413, "request body too large", NULL);
    if (rt->content_type && (body_expected || has_body_method(method))) {
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!media_type_is(ct, rt->content_type, rt->ct_len)) {
            if (body_expected)
                return send_error(conn, rq, 415, "unsupported content type", NULL);
            rq->pending = 415;
            rq->pend_msg = "unsupported content type";
            return MHD_YES;
        }
    }
    qtsp_buf_init(&rq->body, rt->max_body);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    http_rq *rq = *req_cls;
    if (rq == NULL)
        return MHD_NO; /* uri_log() failed to allocate */
    switch (rq->state) {
    case RQ_NEW:
        return on_headers(conn, rq, url, method);
    case RQ_BODY:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            if (rq->route == NULL)
                return MHD_NO; /* cannot happen: answered at the headers */
            size_t max = rq->route->max_body;
            if (rq->discarded == 0 && rq->pending == PEND_ROUTE && n <= max && rq->body.len <= max - n)
                return qtsp_buf_append(&rq->body, upload_data, n) == QTSP_OK ? MHD_YES
                                                                               : MHD_NO;
            /* A chunked body past the limit. MHD 0.9.75 cannot queue a
             * response in the middle of a body, so the rest is read and
             * dropped (not stored) up to HTTP_DISCARD_MAX, then 413 is sent
             * at its end; a longer body gets the connection closed. */
            qtsp_buf_cleanup(&rq->body);
            rq->discarded += n;
            if (rq->discarded > HTTP_DISCARD_MAX) {
                LOG_WARN("http: request %s: body past %zu bytes, closing the connection",
                         rq->id, max);
                return MHD_NO;
            }
            rq->pending = 413;
            rq->pend_msg = "request body too large";
            return MHD_YES;
        }
        if (rq->pending != PEND_ROUTE)
            return answer_pending(conn, rq);
        return run_handler(conn, rq, url, method);
    case RQ_DEFERRED:
        /* Called again after MHD_resume_connection (never while suspended). */
        *upload_data_size = 0;
        if (atomic_load_explicit(&rq->deferred->state, memory_order_acquire) == DF_PENDING)
            return MHD_YES;
        return answer_deferred(conn, rq);
    case RQ_ANSWERED:
    default:
        /* Answer already queued (early 413 etc.): drop further body. */
        *upload_data_size = 0;
        return MHD_YES;
    }
}

/* ---- MHD callbacks ---------------------------------------------------- */

/* Called with the request target before MHD percent-decodes it. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    qtsp_http_server *srv = cls;
    size_t n = strcspn(uri, "?");
    http_rq *rq = malloc(sizeof *rq + n + 1);
    if (rq == NULL)
        return NULL;
    rq->srv = srv;
    rq->route = NULL;
    rq->stat_idx = srv->n_routes + BI_UNMATCHED;
    rq->t0_ns = qtsp_mono_ns();
    rq->state = RQ_NEW;
    rq->status = 0;
    rq->counted = 0;
    rq->bytes = 0;
    qtsp_buf_init(&rq->body, 0);
    rq->discarded = 0;
    rq->pending = PEND_ROUTE;
    rq->pend_msg = "";
    rq->allow[0] = '\0';
    rq->method[0] = '\0';
    rq->deferred = NULL;
    make_request_id(rq->id);
    memcpy(rq->raw, uri, n);
    rq->raw[n] = '\0';
    atomic_fetch_add_explicit(&srv->inflight, 1, memory_order_relaxed);
    return rq;
}

/* The request ends before its deferred answer was sent (the connection
 * failed after the resume, or MHD_stop_daemon closed it). */
static void deferred_abandon(qtsp_http_server *srv, qtsp_http_deferred *d)
{
    int expect = DF_PENDING;
    if (atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
        /* Cannot happen with MHD 0.9.75 (a suspended connection is never
         * closed), but if it did the owner must not resume it later. */
        pthread_mutex_lock(&srv->dmu);
        d->forced = 1;
        deferred_unlink(srv, d);
        pthread_mutex_unlock(&srv->dmu);
    } else if (!d->forced) {
        resp_discard(&d->resp); /* completed by the owner, never sent */
    }
    deferred_release(d);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    qtsp_http_server *srv = cls;
    http_rq *rq = *req_cls;
    if (rq == NULL)
        return;
    *req_cls = NULL;
    if (rq->deferred)
        deferred_abandon(srv, rq->deferred);
    if (rq->state != RQ_ANSWERED)
        /* The client went away (or MHD answered itself); one line anyway. */
        qtsp_log_access(rq->id, rq->method[0] ? rq->method : "-", rq->raw, 0, 0,
                        (double)(qtsp_mono_ns() - rq->t0_ns) / 1e6);
    qtsp_buf_cleanup(&rq->body);
    free(rq);
    atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_release);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    qtsp_http_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add_explicit(&srv->conns_open, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
}

QTSP_PRINTF(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    LOG_WARN("http: %s", msg);
}

/* ---- public API ------------------------------------------------------- */

const char *qtsp_http_header(const qtsp_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *qtsp_http_query(const qtsp_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

qtsp_http_deferred *qtsp_http_defer(const qtsp_http_req *req)
{
    http_rq *rq = req ? req->internal : NULL;
    if (rq == NULL || rq->deferred != NULL || rq->state != RQ_BODY)
        return NULL;
    qtsp_http_deferred *d = malloc(sizeof *d);
    if (d == NULL) {
        LOG_WARN("http: request %s: out of memory deferring; answering synchronously", rq->id);
        return NULL;
    }
    qtsp_http_server *srv = rq->srv;
    d->srv = srv;
    d->conn = req->conn;
    atomic_init(&d->state, DF_PENDING);
    atomic_init(&d->refs, 2);
    d->forced = 0;
    d->linked = 0;
    d->rc = QTSP_OK;
    d->what[0] = '\0';
    d->prev = d->next = NULL;
    resp_init(&d->resp);
    pthread_mutex_lock(&srv->dmu);
    if (srv->stopping) {
        /* Too late to suspend (stop may be past its last resume): the
         * request is answered 503 when the handler returns. */
        atomic_store(&d->state, DF_CLAIMED);
        d->forced = 1;
    } else {
        MHD_suspend_connection(d->conn);
        d->next = srv->deferred;
        if (d->next)
            d->next->prev = d;
        srv->deferred = d;
        d->linked = 1;
        atomic_fetch_add_explicit(&srv->deferred_pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->deferred_total, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&srv->dmu);
    rq->deferred = d;
    return d;
}

qtsp_http_resp *qtsp_http_deferred_resp(qtsp_http_deferred *d) { return d ? &d->resp : NULL; }

void qtsp_http_complete(qtsp_http_deferred *d, qtsp_status rc)
{
    if (d == NULL)
        return;
    int expect = DF_PENDING;
    if (!atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
        /* The server answered it already (stop); nothing is sent. */
        resp_discard(&d->resp);
        deferred_release(d);
        return;
    }
    d->rc = rc;
    if (rc != QTSP_OK) {
        if (status_for(rc) == 500)
            LOG_ERROR("http: deferred request failed: %s", qtsp_err_message());
        snprintf(d->what, sizeof d->what, "%s", qtsp_err_what());
    }
    /* The server stays alive while d is linked: stop waits for the list to
     * drain before it frees anything. */
    qtsp_http_server *srv = d->srv;
    pthread_mutex_lock(&srv->dmu);
    deferred_unlink(srv, d);
    MHD_resume_connection(d->conn);
    pthread_mutex_unlock(&srv->dmu);
    deferred_release(d);
}

static int has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

qtsp_status qtsp_http_resp_header(qtsp_http_resp *resp, const char *name, const char *value)
{
    ENSURE(resp->n_headers < QTSP_HTTP_MAX_HEADERS, QTSP_ERR_TOO_BIG,
           "more than %d response headers", QTSP_HTTP_MAX_HEADERS);
    size_t nl = strlen(name), vl = strlen(value);
    ENSURE(nl > 0 && nl < sizeof resp->header_name[0], QTSP_ERR_TOO_BIG,
           "response header name of %zu bytes", nl);
    ENSURE(vl < sizeof resp->header_value[0], QTSP_ERR_TOO_BIG,
           "response header value of %zu bytes", vl);
    /* RFC 9110 5.5: no CR/LF (header injection) and no ':' in names. */
    ENSURE(!has_crlf(name) && !has_crlf(value) && strchr(name, ':') == NULL &&
               strpbrk(name, " \t") == NULL,
           QTSP_ERR_INVALID, "response header with forbidden characters");
    memcpy(resp->header_name[resp->n_headers], name, nl + 1);
    memcpy(resp->header_value[resp->n_headers], value, vl + 1);
    resp->n_headers++;
    return QTSP_OK;
}

qtsp_status qtsp_http_resp_set(qtsp_http_resp *resp, int status, const char *content_type,
                               const void *body, size_t len)
{
    size_t cl = strlen(content_type);
    ENSURE(cl < sizeof resp->content_type, QTSP_ERR_TOO_BIG, "content type of %zu bytes", cl);
    ENSURE(status >= 100 && status <= 599, QTSP_ERR_INVALID, "HTTP status %d", status);
    qtsp_buf_reset(&resp->body);
    TRY(qtsp_buf_append(&resp->body, body, len));
    resp->status = status;
    memcpy(resp->content_type, content_type, cl + 1);
    return QTSP_OK;
}

/* "1.2.3.4:80" or "[::1]:80" into a socket address. */
static qtsp_status parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                                int *v6);

qtsp_status qtsp_http_listen_shared(const char *addr, unsigned n, int *fds, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int v6 = 0;
    TRY(parse_listen(addr, &ss, &sslen, &v6));
    ENSURE(n >= 1 && n <= 1024, QTSP_ERR_INVALID, "1..1024 listening sockets, not %u", n);
    qtsp_status rc = QTSP_OK;
    unsigned made = 0;
    int fd = -1, one = 1;
    for (; made < n; made++) {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ENSURE_OUT(fd >= 0, QTSP_ERR_IO, "socket: %s", strerror(errno));
        ENSURE_OUT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0,
                   QTSP_ERR_IO, "setsockopt SO_REUSEPORT: %s", strerror(errno));
        if (v6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ENSURE_OUT(bind(fd, (struct sockaddr *)&ss, sslen) == 0 && listen(fd, 1024) == 0,
                   QTSP_ERR_IO, "cannot listen on %s: %s", addr, strerror(errno));
        if (made == 0) { /* port 0: the others take the port the kernel picked */
            struct sockaddr_storage got;
            socklen_t gl = sizeof got;
            ENSURE_OUT(getsockname(fd, (struct sockaddr *)&got, &gl) == 0, QTSP_ERR_IO,
                       "getsockname: %s", strerror(errno));
            in_port_t p = got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                    : ((struct sockaddr_in *)&got)->sin_port;
            if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = p;
            else
                ((struct sockaddr_in *)&ss)->sin_port = p;
            *port = ntohs(p);
        }
        fds[made] = fd;
        fd = -1;
    }
    return QTSP_OK;
out:
    if (fd >= 0)
        close(fd);
    for (unsigned i = 0; i < made; i++)
        close(fds[i]);
    return rc;
}

static qtsp_status parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                                int *v6)
{
    ENSURE(s != NULL && *s, QTSP_ERR_INVALID, "empty listen address");
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        ENSURE(close && close[1] == ':', QTSP_ERR_INVALID,
               "listen address '%s' is not [IPv6]:port", s);
        size_t hl = (size_t)(close - s - 1);
        ENSURE(hl < sizeof host, QTSP_ERR_INVALID, "listen address '%s' too long", s);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port = close + 2;
        *v6 = 1;
    } else {
        const char *colon = strrchr(s, ':');
        ENSURE(colon, QTSP_ERR_INVALID, "listen address '%s' has no port", s);
        size_t hl = (size_t)(colon - s);
        ENSURE(hl < sizeof host, QTSP_ERR_INVALID, "listen address '%s' too long", s);
        memcpy(host, s, hl);
        host[hl] = '\0';
        port = colon + 1;
        *v6 = 0;
    }
    char *end = NULL;
    errno = 0;
    long p = strtol(port, &end, 10);
    ENSURE(*port && !errno && end && *end == '\0' && p >= 0 && p <= 65535, QTSP_ERR_INVALID,
           "listen address '%s' has a bad port", s);
    memset(ss, 0, sizeof *ss);
    if (*v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        ENSURE(inet_pton(AF_INET6, host, &a->sin6_addr) == 1, QTSP_ERR_INVALID,
               "listen address '%s': bad IPv6 address", s);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        ENSURE(inet_pton(AF_INET, host, &a->sin_addr) == 1, QTSP_ERR_INVALID,
               "listen address '%s': bad IPv4 address", s);
        *len = sizeof *a;
    }
    return QTSP_OK;
}

static void routes_free(http_route *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].method);
        free(r[i].path);
        free(r[i].content_type);
        free(r[i].name);
    }
    free(r);
}

static char *dup_or_null(const char *s, int *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = 1;
    return d;
}

qtsp_status qtsp_http_start(const qtsp_http_opts *opts, const qtsp_route *routes, size_t n,
                            qtsp_metrics_fn metrics_fn, void *metrics_ctx,
                            qtsp_http_server **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_http_server *srv = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int v6 = 0;
    TRY(parse_listen(opts->listen, &ss, &sslen, &v6));
    ENSURE(opts->workers >= 1 && opts->workers <= 1024, QTSP_ERR_INVALID,
           "http workers must be 1..1024, not %u", opts->workers);
    ENSURE(n < 1024, QTSP_ERR_INVALID, "too many routes (%zu)", n);

    srv = calloc(1, sizeof *srv);
    ENSURE(srv != NULL, QTSP_ERR_NOMEM, "out of memory for the HTTP server");
    srv->quiesced_fd = MHD_INVALID_SOCKET;
    pthread_mutex_init(&srv->dmu, NULL);
    srv->metrics_fn = metrics_fn;
    srv->metrics_ctx = metrics_ctx;
    srv->metrics_hook = opts->metrics_hook;
    srv->metrics_hook_ctx = opts->metrics_hook_ctx;
    srv->routes = calloc(n ? n : 1, sizeof *srv->routes);
    srv->stats = calloc(n + N_BUILTIN, sizeof *srv->stats);
    ENSURE_OUT(srv->routes && srv->stats, QTSP_ERR_NOMEM, "out of memory for routes");
    srv->n_routes = n;
    for (size_t i = 0; i < n; i++) {
        const qtsp_route *r = &routes[i];
        ENSURE_OUT(r->method && r->path && r->path[0] == '/' && r->fn && r->name,
                   QTSP_ERR_INVALID, "route %zu lacks method, /path, handler or name", i);
        int fail = 0;
        http_route *d = &srv->routes[i];
        d->method = dup_or_null(r->method, &fail);
        d->path = dup_or_null(r->path, &fail);
        d->content_type = dup_or_null(r->content_type, &fail);
        d->name = dup_or_null(r->name, &fail);
        ENSURE_OUT(!fail, QTSP_ERR_NOMEM, "out of memory copying routes");
        d->path_len = strlen(d->path);
        d->ct_len = d->content_type ? strlen(d->content_type) : 0;
        d->prefix = r->prefix;
        d->max_body = r->max_body;
        d->fn = r->fn;
        d->ctx = r->ctx;
    }

    /* MHD_ALLOW_SUSPEND_RESUME includes MHD_USE_ITC: a resume from another
     * thread wakes the connection's worker at once. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    unsigned max_conn = opts->max_connections ? (unsigned)opts->max_connections
                                              : HTTP_DEFAULT_CONNECTIONS;
    struct MHD_OptionItem o[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)(void *)mhd_log, NULL},
        {opts->use_listen_fd ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR,
         opts->use_listen_fd ? opts->listen_fd : 0, opts->use_listen_fd ? NULL : &ss},
        /* MHD reads 0 as "never": an idle client would hold a slot forever. */
        {MHD_OPTION_CONNECTION_TIMEOUT,
         opts->conn_timeout_s ? opts->conn_timeout_s : HTTP_DEFAULT_TIMEOUT_S, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, max_conn, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)HTTP_CONN_MEMORY, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)(void *)uri_log, srv},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)(void *)on_completed, srv},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)(void *)on_connection, srv},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {opts->workers > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, opts->workers,
         NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, o,
                                   MHD_OPTION_END);
    ENSURE_OUT(srv->daemon != NULL, QTSP_ERR_IO, "cannot listen on %s", opts->listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon,
                                                           MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    LOG_INFO("http: listening on %s (port %u, %u workers)", opts->listen, srv->port,
             opts->workers);
    *out = srv;
    srv = NULL;
out:
    if (srv) {
        routes_free(srv->routes, srv->n_routes);
        free(srv->stats);
        pthread_mutex_destroy(&srv->dmu);
        free(srv);
    }
    return rc;
}

unsigned qtsp_http_port(const qtsp_http_server *srv) { return srv ? srv->port : 0; }

static void wait_inflight(qtsp_http_server *srv, unsigned ms)
{
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)ms * 1000000ULL;
    while (atomic_load_explicit(&srv->inflight, memory_order_acquire) > 0 &&
           qtsp_mono_ns() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Resumes every deferred request still pending, answering it 503; from
 * here on qtsp_http_defer answers at once. Returns when no handle is linked
 * (an owner that claimed its handle is about to resume it: brief wait). */
static void force_deferred(qtsp_http_server *srv)
{
    size_t forced = 0;
    pthread_mutex_lock(&srv->dmu);
    srv->stopping = 1;
    while (srv->deferred) {
        qtsp_http_deferred *d = srv->deferred;
        int any = 0;
        while (d) {
            qtsp_http_deferred *next = d->next;
            int expect = DF_PENDING;
            if (atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
                d->forced = 1;
                deferred_unlink(srv, d);
                MHD_resume_connection(d->conn);
                forced++;
                any = 1;
            }
            d = next;
        }
        if (!any && srv->deferred) {
            pthread_mutex_unlock(&srv->dmu);
            sched_yield();
            pthread_mutex_lock(&srv->dmu);
        }
    }
    pthread_mutex_unlock(&srv->dmu);
    if (forced)
        LOG_WARN("http: stopping: %zu deferred request(s) not completed in time, answered 503",
                 forced);
}

void qtsp_http_stop_within(qtsp_http_server *srv, unsigned grace_ms)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->draining, 1);
    srv->quiesced_fd = MHD_quiesce_daemon(srv->daemon);
    /* MHD_stop_daemon closes connections at once; first let the requests
     * already being handled answer (bounded wait), deferred ones included. */
    wait_inflight(srv, grace_ms);
    /* MHD 0.9.75 panics in MHD_stop_daemon on a suspended connection. */
    force_deferred(srv);
    if (atomic_load_explicit(&srv->inflight, memory_order_acquire) > 0)
        wait_inflight(srv, HTTP_FORCED_GRACE_MS); /* let the 503s go out */
    MHD_stop_daemon(srv->daemon);
    if (srv->quiesced_fd != MHD_INVALID_SOCKET)
        close(srv->quiesced_fd);
    routes_free(srv->routes, srv->n_routes);
    free(srv->stats);
    pthread_mutex_destroy(&srv->dmu);
    free(srv);
}

void qtsp_http_stop(qtsp_http_server *srv) { qtsp_http_stop_within(srv, HTTP_STOP_GRACE_MS); }

/* RFC 9110 13.1.2: "*" or a list of entity tags (weak ones compare weakly). */
int qtsp_http_etag_matches(const char *hdr, const char *etag)
{
    if (!hdr || !etag || !etag[0])
        return 0;
    size_t el = strlen(etag);
    const char *p = hdr;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == el && memcmp(p, etag, el) == 0)
            return 1;
        p = e;
    }
    return 0;
}
