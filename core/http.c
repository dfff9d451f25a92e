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
 * The other jobs live beside it (core/http_int.h): routing (http_route.c),
 * responses and headers (http_resp.c), deferred answers (http_defer.c),
 * metrics (http_metrics.c), listening sockets (http_listen.c).
 *
 * Limits: the request line and headers must fit MHD's per-connection memory
 * pool (HTTP_CONN_MEMORY = 16 KiB); a longer URL or header block gets MHD's
 * own 414/431 answer. Bodies are limited per route (max_body). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include "core/http_int.h"
#include "core/log.h"

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

void http_addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    out[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            inet_ntop(AF_INET, a6->s6_addr + 12, out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a6, out, (socklen_t)cap);
    }
}

static const struct sockaddr *peer_sockaddr(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ci->client_addr : NULL;
}

/* X-Real-IP from a trusted proxy replaces the peer as the logged client;
 * only a well-formed address is taken (normalised), anything else is
 * ignored. */
void http_rq_client(http_rq *rq, const char *real_ip, const char *proto)
{
    const qtsp_http_server *srv = rq->srv;
    int trusted = 0;
    for (size_t i = 0; i < srv->n_trusted && !trusted; i++)
        trusted = strcmp(srv->trusted[i], rq->client) == 0;
    if (!trusted)
        return;
    rq->via_tls = proto && strcasecmp(proto, "https") == 0;
    char a[46];
    if (qtsp_http_ip_normalize(real_ip, a))
        memcpy(rq->client, a, sizeof a);
}

static void client_from_proxy(struct MHD_Connection *conn, http_rq *rq)
{
    http_rq_client(rq, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Real-IP"),
                   MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Proto"));
}

/* ---- sending ---------------------------------------------------------- */

void http_rq_finish(http_rq *rq, int status, size_t bytes)
{
    rq->status = status;
    rq->bytes = bytes;
    rq->state = RQ_ANSWERED;
    uint64_t ns = qtsp_mono_ns() - rq->t0_ns;
    if (!rq->counted) {
        rq->counted = 1;
        http_stats_record(rq->srv, rq->stat_idx, status, ns);
    }
    qtsp_log_access(rq->id, rq->client, rq->method, rq->raw, status, bytes, (double)ns / 1e6);
}

static void free_cb(void *p)
{
    free(p);
}

/* Queues a response; takes over data (freed with fr(fr_ctx), may be NULL). */
static enum MHD_Result send_response(struct MHD_Connection *conn, http_rq *rq, int status,
                                     const char *ctype, const void *data, size_t len,
                                     void (*fr)(void *), void *fr_ctx, const qtsp_http_resp *extra,
                                     const char *allow)
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
    if (rq->close || atomic_load_explicit(&rq->srv->draining, memory_order_relaxed))
        ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    const char *hn, *hv;
    for (size_t pos = 0; extra && ok && http_resp_next_header(extra, &pos, &hn, &hv);)
        ok = MHD_add_response_header(r, hn, hv) == MHD_YES;
    if (!ok) {
        MHD_destroy_response(r);
        LOG_ERROR("http: request %s: cannot add response headers", rq->id);
        return MHD_NO;
    }
    enum MHD_Result q = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (q == MHD_YES)
        http_rq_finish(rq, status, len);
    else
        LOG_ERROR("http: request %s: MHD refused the %d response", rq->id, status);
    return q;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, http_rq *rq, int status,
                                  const char *message, const char *allow)
{
    char body[640];
    size_t n = http_error_body(status, message, body, sizeof body);
    char *copy = malloc(n);
    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, body, n);
    return send_response(conn, rq, status, "application/json", copy, n, free_cb, copy, NULL, allow);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn, http_rq *rq)
{
    qtsp_buf out;
    qtsp_buf_init(&out, HTTP_METRICS_MAX);
    qtsp_err_clear();
    qtsp_status rc = http_metrics_render(rq->srv, &out);
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

/* ---- the handler ------------------------------------------------------ */

/* Sends a response filled by a handler or a deferred request's owner;
 * takes over its contents. */
static enum MHD_Result send_resp(struct MHD_Connection *conn, http_rq *rq, qtsp_http_resp *resp)
{
    if (resp->status < 100 || resp->status > 599) {
        LOG_ERROR("http: request %s: HTTP status %d set by route %s", rq->id, resp->status,
                  rq->route ? rq->route->name : "-");
        http_resp_discard(resp);
        return send_error(conn, rq, 500, "internal error", NULL);
    }
    resp->content_type[sizeof resp->content_type - 1] = '\0';
    enum MHD_Result r;
    if (resp->ext_body) {
        qtsp_buf_cleanup(&resp->body);
        r = send_response(conn, rq, resp->status, resp->content_type, resp->ext_body, resp->ext_len,
                          resp->free_fn, resp->free_ctx, resp, NULL);
    } else {
        size_t len = 0;
        unsigned char *p = qtsp_buf_take(&resp->body, &len);
        r = send_response(conn, rq, resp->status, resp->content_type, p, len, free_cb, p, resp,
                          NULL);
    }
    qtsp_buf_cleanup(&resp->headers);
    resp->n_headers = 0;
    return r;
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
        http_resp_discard(&d->resp);
        int status = qtsp_http_status_for(d->rc);
        r = send_error(conn, rq, status, http_error_message(status, d->rc, d->what), NULL);
    } else {
        r = send_resp(conn, rq, &d->resp);
    }
    http_deferred_release(d);
    return r;
}

/* After a handler that called qtsp_http_defer: its return value and resp
 * are ignored; the answer comes when the connection is resumed. */
static enum MHD_Result handler_deferred(struct MHD_Connection *conn, http_rq *rq, qtsp_status rc,
                                        qtsp_http_resp *resp)
{
    http_resp_discard(resp);
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
    http_resp_init(&resp);

    qtsp_err_clear();
    qtsp_status rc = rt->fn(rt->ctx, &req, &resp);
    if (rq->deferred)
        return handler_deferred(conn, rq, rc, &resp);
    if (rc == QTSP_OK && (resp.status < 100 || resp.status > 599))
        rc = qtsp_err_set(QTSP_ERR_INTERNAL, __FILE__, __LINE__, "route %s set HTTP status %d",
                          rt->name, resp.status);
    if (rc != QTSP_OK) {
        http_resp_discard(&resp);
        int status = qtsp_http_status_for(rc);
        if (status == 500)
            LOG_ERROR("http: request %s %s %s: %s", rq->id, method, rq->raw, qtsp_err_message());
        return send_error(conn, rq, status, http_error_message(status, rc, qtsp_err_what()), NULL);
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

static enum MHD_Result count_content_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        ++*(int *)cls;
    return MHD_YES;
}

/* RFC 9112 6.3 (3, 5): a request with both Content-Length and
 * Transfer-Encoding, or with Content-Length more than once, has no single
 * framing that every hop would agree on (request smuggling); MHD 0.9.75
 * accepts both shapes (chunked wins; the first length wins). Refused with
 * 400 and the connection closed (never read on as a next request). */
static const char *framing_error(struct MHD_Connection *conn, const char *cl, const char *te)
{
    if (cl && te)
        return "Content-Length together with Transfer-Encoding";
    int n = 0;
    if (cl)
        MHD_get_connection_values(conn, MHD_HEADER_KIND, count_content_length, &n);
    return n > 1 ? "Content-Length given more than once" : NULL;
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
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    int body_expected = (cl && strcmp(cl, "0") != 0) || te != NULL;
    http_conn_phase(srv, rq->conn, 1); /* headers in time: now the body is due */
    const char *smuggle = framing_error(conn, cl, te);
    if (smuggle) {
        atomic_fetch_add_explicit(&srv->smuggling_refused, 1, memory_order_relaxed);
        rq->state = RQ_BODY;
        rq->close = 1;
        return send_error(conn, rq, 400, smuggle, NULL);
    }
    /* MHD decodes %00 into a NUL that ends the path early: ".../SER%00"
     * would be served as ".../SER" (defect 15.8). */
    if (strstr(rq->raw, "%00")) {
        rq->state = RQ_BODY;
        rq->pending = 400;
        rq->pend_msg = "the path contains an encoded NUL byte";
        return body_expected ? answer_pending(conn, rq) : MHD_YES;
    }
    int known = 0;
    client_from_proxy(conn, rq);
    const http_route *rt = http_route_find(srv, method, url, rq->allow, sizeof rq->allow, &known);
    rq->state = RQ_BODY;
    if (rt == NULL) {
        int is_get = http_method_is(method, "GET");
        if (!known && strcmp(url, qtsp_http_builtin_path(BI_HEALTH)) == 0) {
            rq->stat_idx = srv->n_routes + BI_HEALTH;
            rq->pending = PEND_HEALTH;
        } else if (!known && strcmp(url, qtsp_http_builtin_path(BI_METRICS)) == 0) {
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
    unsigned long long announced = 0;
    if (cl) {
        /* MHD has validated the digits already; a value past the limit is
         * answered before any body byte is read. */
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno || end == cl || v > rt->max_body)
            return send_error(conn, rq, 413, "request body too large", NULL);
        announced = v;
    }
    if (te != NULL && rt->max_body == 0)
        return send_error(conn, rq, 413, "request body too large", NULL);
    if (rt->content_type && (body_expected || http_has_body_method(method))) {
        const char *ct =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!http_media_type_is(ct, rt->content_type, rt->ct_len)) {
            if (body_expected)
                return send_error(conn, rq, 415, "unsupported content type", NULL);
            rq->pending = 415;
            rq->pend_msg = "unsupported content type";
            return MHD_YES;
        }
    }
    /* Nothing is reserved from the announced length (a client claiming
     * 20 MB and sending nothing holds nothing): the buffer grows as bytes
     * arrive (body_grow). An announced large body that cannot fit in what
     * is left of the budget now is refused before it is read. */
    if (announced > QTSP_HTTP_LARGE_BODY &&
        atomic_load_explicit(&srv->large_bytes, memory_order_relaxed) + (size_t)announced >
            srv->large_budget) {
        atomic_fetch_add_explicit(&srv->large_refused, 1, memory_order_relaxed);
        return send_error(conn, rq, 503, "too many large uploads at once; try again", NULL);
    }
    rq->body_limit = announced ? (size_t)announced : rt->max_body;
    qtsp_buf_init(&rq->body, rt->max_body);
    return MHD_YES;
}

/* Makes room in rq->body for n more bytes (the caller has checked the
 * route limit). The capacity doubles from HTTP_BODY_FIRST, capped at the
 * announced length (or the route limit for a chunked body): a 10 MB body
 * costs about ten reallocs, not one per chunk, and memory follows the bytes
 * received. Once the capacity passes QTSP_HTTP_LARGE_BODY, it is charged to
 * the process's large-body budget at each growth, chunked or not. Returns 0,
 * or 503 (over the budget, or out of memory: nothing grown). */
static int body_grow(http_rq *rq, size_t n)
{
    qtsp_buf *b = &rq->body;
    size_t need = b->len + n + 1; /* + NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : HTTP_BODY_FIRST;
    while (cap < need)
        cap *= 2;
    if (cap > rq->body_limit + 1)
        cap = rq->body_limit + 1;
    if (cap < need)
        return 503; /* cannot happen: MHD delivers no more than announced */
    qtsp_http_server *srv = rq->srv;
    if (cap > QTSP_HTTP_LARGE_BODY) {
        size_t add = cap - rq->large;
        size_t held = atomic_fetch_add_explicit(&srv->large_bytes, add, memory_order_relaxed);
        if (held + add > srv->large_budget) {
            atomic_fetch_sub_explicit(&srv->large_bytes, add, memory_order_relaxed);
            atomic_fetch_add_explicit(&srv->large_refused, 1, memory_order_relaxed);
            return 503;
        }
        rq->large = cap;
    }
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL)
        return 503; /* the charge, if any, is released at the end */
    b->data = p;
    b->cap = cap;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
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
            qtsp_http_server *srv = rq->srv;
            if (rq->discarded == 0 && rq->pending == PEND_ROUTE) {
                if (n > max || rq->body.len > max - n) {
                    rq->pending = 413;
                    rq->pend_msg = "request body too large";
                } else if (body_grow(rq, n) == 0) {
                    memcpy(rq->body.data + rq->body.len, upload_data, n);
                    rq->body.len += n;
                    rq->body.data[rq->body.len] = '\0';
                    return MHD_YES;
                } else {
                    rq->pending = 503;
                    rq->pend_msg = "too many large uploads at once; try again";
                }
            }
            /* A body past the limit, or past the large-body budget.
             * MHD 0.9.75 cannot queue a response in the middle of a body
             * (MHD_queue_response refuses until the whole request is in),
             * so the rest is read and dropped (not stored) up to
             * HTTP_DISCARD_MAX, then 413 or 503 is sent at its end; a
             * longer body gets the connection closed. */
            qtsp_buf_cleanup(&rq->body);
            if (rq->large) {
                atomic_fetch_sub_explicit(&srv->large_bytes, rq->large, memory_order_relaxed);
                rq->large = 0;
            }
            rq->discarded += n;
            if (rq->discarded > HTTP_DISCARD_MAX) {
                LOG_WARN("http: request %s: body %s, closing the connection", rq->id,
                         rq->pending == 413 ? "past the route limit"
                                            : "past the large-body budget");
                return MHD_NO;
            }
            return MHD_YES;
        }
        http_conn_phase(rq->srv, rq->conn, 0); /* the whole request is in */
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

http_rq *http_rq_new(qtsp_http_server *srv, const char *raw, size_t n)
{
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
    rq->large = 0;
    rq->body_limit = 0;
    rq->pending = PEND_ROUTE;
    rq->pend_msg = "";
    rq->allow[0] = '\0';
    rq->method[0] = '\0';
    rq->deferred = NULL;
    rq->via_tls = 0;
    rq->client[0] = '\0';
    rq->conn = NULL;
    rq->lane = NULL;
    rq->close = 0;
    make_request_id(rq->id);
    memcpy(rq->raw, raw, n);
    rq->raw[n] = '\0';
    atomic_fetch_add_explicit(&srv->inflight, 1, memory_order_relaxed);
    return rq;
}

void http_rq_free(http_rq *rq)
{
    qtsp_http_server *srv = rq->srv;
    qtsp_buf_cleanup(&rq->body);
    if (rq->large)
        atomic_fetch_sub_explicit(&srv->large_bytes, rq->large, memory_order_relaxed);
    free(rq);
    atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_release);
}

/* Called with the request target before MHD percent-decodes it. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_rq *rq = http_rq_new(cls, uri, strcspn(uri, "?"));
    if (rq == NULL)
        return NULL;
    http_addr_text(peer_sockaddr(conn), rq->client, sizeof rq->client);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    rq->conn = ci ? ci->socket_context : NULL;
    return rq;
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
        http_deferred_abandon(srv, rq->deferred);
    http_conn_served(rq->conn);
    http_conn_phase(srv, rq->conn, 1); /* a kept-alive connection's next request is due */
    if (rq->state != RQ_ANSWERED)
        /* The client went away (or MHD answered itself); one line anyway. */
        qtsp_log_access(rq->id, rq->client, rq->method[0] ? rq->method : "-", rq->raw, 0, 0,
                        (double)(qtsp_mono_ns() - rq->t0_ns) / 1e6);
    http_rq_free(rq);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    qtsp_http_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add_explicit(&srv->conns_open, 1, memory_order_relaxed);
        if (srv->lane)
            http_lane_addr_add(srv, peer_sockaddr(conn));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? http_conn_track(srv, ci->connect_fd) : NULL;
    } else {
        atomic_fetch_sub_explicit(&srv->conns_open, 1, memory_order_relaxed);
        if (srv->lane)
            http_lane_addr_del(srv, peer_sockaddr(conn));
        http_conn_untrack(srv, *socket_context); /* before MHD closes the socket */
        *socket_context = NULL;
    }
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

unsigned char *qtsp_http_take_body(const qtsp_http_req *req, size_t *len)
{
    *len = 0;
    http_rq *rq = req->internal;
    if (!rq || !rq->body.len)
        return NULL;
    return qtsp_buf_take(&rq->body, len);
}

/* A fast-lane request (no MHD connection) has none: fast routes use none. */
const char *qtsp_http_header(const qtsp_http_req *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name) : NULL;
}

int qtsp_http_via_tls(const qtsp_http_req *req)
{
    const http_rq *rq = req ? req->internal : NULL;
    return rq ? rq->via_tls : 0;
}

const char *qtsp_http_query(const qtsp_http_req *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

typedef struct query_visit {
    int (*fn)(void *ctx, const char *name, const char *value);
    void *ctx;
} query_visit;

static enum MHD_Result query_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    query_visit *v = cls;
    return v->fn(v->ctx, key, value ? value : "") ? MHD_NO : MHD_YES;
}

size_t qtsp_http_query_each(const qtsp_http_req *req,
                            int (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    query_visit v = {fn, ctx};
    if (req->conn == NULL)
        return 0;
    int n = MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_one, &v);
    return n > 0 ? (size_t)n : 0;
}

const char *http_reason(int status)
{
    const char *r = MHD_get_reason_phrase_for((unsigned)status);
    return r && *r ? r : "Unknown";
}

int http_mhd_add(qtsp_http_server *srv, int fd, const struct sockaddr *sa, socklen_t len)
{
    return MHD_add_connection(srv->daemon, fd, sa, len) == MHD_YES;
}

void http_conn_suspend(struct MHD_Connection *conn)
{
    MHD_suspend_connection(conn);
}

void http_conn_resume(struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
}

int http_conn_peer_closed(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return 0;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

qtsp_status qtsp_http_start(const qtsp_http_opts *opts, const qtsp_route *routes, size_t n,
                            qtsp_metrics_fn metrics_fn, void *metrics_ctx, qtsp_http_server **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_http_server *srv = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int v6 = 0;
    TRY(http_parse_listen(opts->listen, &ss, &sslen, &v6));
    ENSURE(opts->workers >= 1 && opts->workers <= 1024, QTSP_ERR_INVALID,
           "http workers must be 1..1024, not %u", opts->workers);
    ENSURE(n < 1024, QTSP_ERR_INVALID, "too many routes (%zu)", n);

    srv = calloc(1, sizeof *srv);
    ENSURE(srv != NULL, QTSP_ERR_NOMEM, "out of memory for the HTTP server");
    srv->quiesced_fd = MHD_INVALID_SOCKET;
    pthread_mutex_init(&srv->dmu, NULL);
    pthread_mutex_init(&srv->cmu, NULL);
    srv->metrics_fn = metrics_fn;
    srv->metrics_ctx = metrics_ctx;
    srv->metrics_hook = opts->metrics_hook;
    srv->metrics_hook_ctx = opts->metrics_hook_ctx;
    for (size_t i = 0; opts->trusted_proxies && opts->trusted_proxies[i]; i++) {
        const char *a = opts->trusted_proxies[i];
        ENSURE_OUT(i < HTTP_TRUSTED_MAX && qtsp_http_ip_normalize(a, srv->trusted[i]),
                   QTSP_ERR_INVALID, "trusted proxy %s: not an IP address (at most %d)", a,
                   HTTP_TRUSTED_MAX);
        srv->n_trusted = i + 1;
    }
    srv->stats = calloc(n + N_BUILTIN, sizeof *srv->stats);
    ENSURE_OUT(srv->stats, QTSP_ERR_NOMEM, "out of memory for routes");
    TRY_OUT(http_routes_copy(routes, n, &srv->routes));
    srv->n_routes = n;
    size_t largest = 0;
    for (size_t i = 0; i < n; i++)
        if (routes[i].max_body > largest)
            largest = routes[i].max_body;
    srv->large_budget = opts->large_body_budget ? opts->large_body_budget : 3 * largest;

    /* MHD_ALLOW_SUSPEND_RESUME includes MHD_USE_ITC: a resume from another
     * thread wakes the connection's worker at once. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    unsigned max_conn =
        opts->max_connections ? (unsigned)opts->max_connections : HTTP_DEFAULT_CONNECTIONS;
    /* one address cannot take every slot (defect 15.6): MHD accepts its
     * connections past the limit and closes them at once */
    unsigned per_addr = opts->per_address == (size_t)-1 ? 0
                        : opts->per_address             ? (unsigned)opts->per_address
                                                        : HTTP_DEFAULT_PER_ADDRESS;
    unsigned timeout_s = opts->conn_timeout_s ? opts->conn_timeout_s : HTTP_DEFAULT_TIMEOUT_S;
    TRY_OUT(http_deadlines_start(srv, timeout_s));
    /* the lane serves only what it can parse whole: POST with a body of
     * the route's media type, on an exact path */
    int lane = 0;
    for (size_t i = 0; i < n; i++) {
        http_route *r = &srv->routes[i];
        for (size_t j = 0; opts->fast_routes && opts->fast_routes[j]; j++)
            r->fast |= strcmp(opts->fast_routes[j], r->name) == 0 && !r->prefix &&
                       strcmp(r->method, "POST") == 0 && r->content_type && r->max_body > 0;
        lane |= r->fast;
    }
    /* with the lane, MHD has no listening socket: it gets its connections
     * from the lane (MHD_add_connection, woken through its ITC) */
    int lane_fd = -1;
    struct MHD_OptionItem listen_opt = {MHD_OPTION_SOCK_ADDR, 0, &ss};
    if (lane) {
        flags |= MHD_USE_NO_LISTEN_SOCKET;
        /* a place holder: MHD has no listening socket to give a backlog */
        listen_opt = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
        if (opts->use_listen_fd)
            lane_fd = opts->listen_fd;
        else
            TRY_OUT(http_listen_bind(opts->listen, 1, 0, &lane_fd, NULL));
    } else if (opts->use_listen_fd) {
        listen_opt = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, opts->listen_fd, NULL};
    }
    struct MHD_OptionItem o[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)(void *)mhd_log, NULL},
        listen_opt,
        /* MHD reads 0 as "never": an idle client would hold a slot forever. */
        {MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, max_conn, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_addr, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)HTTP_CONN_MEMORY, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)(void *)uri_log, srv},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)(void *)on_completed, srv},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)(void *)on_connection, srv},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {opts->workers > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, opts->workers, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, o,
                                   MHD_OPTION_END);
    if (srv->daemon == NULL && lane_fd >= 0 && !opts->use_listen_fd)
        close(lane_fd);
    ENSURE_OUT(srv->daemon != NULL, QTSP_ERR_IO, "cannot listen on %s", opts->listen);
    if (lane) {
        rc = http_lane_start(srv, lane_fd, opts, timeout_s, max_conn,
                             per_addr ? per_addr : (size_t)-1);
        if (rc != QTSP_OK) {
            MHD_stop_daemon(srv->daemon);
            goto out;
        }
        srv->port = http_lane_port(srv);
    } else {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
        srv->port = info ? info->port : 0;
    }
    LOG_INFO("http: listening on %s (port %u, %u workers%s)", opts->listen, srv->port,
             opts->workers, lane ? ", fast lane" : "");
    *out = srv;
    srv = NULL;
out:
    if (srv) {
        http_deadlines_stop(srv);
        pthread_mutex_destroy(&srv->cmu);
        http_routes_free(srv->routes, srv->n_routes);
        free(srv->stats);
        pthread_mutex_destroy(&srv->dmu);
        free(srv);
    }
    return rc;
}

int qtsp_http_ip_normalize(const char *text, char out[46])
{
    unsigned char bin[16];
    out[0] = '\0';
    int v6 = text && strchr(text, ':') != NULL;
    if (!text || inet_pton(v6 ? AF_INET6 : AF_INET, text, bin) != 1)
        return 0;
    return inet_ntop(v6 ? AF_INET6 : AF_INET, bin, out, 46) != NULL;
}

const char *qtsp_http_builtin_path(size_t i)
{
    static const char *const paths[] = {[BI_HEALTH] = "/health", [BI_METRICS] = "/metrics"};
    return i < sizeof paths / sizeof paths[0] ? paths[i] : NULL;
}

unsigned qtsp_http_port(const qtsp_http_server *srv)
{
    return srv ? srv->port : 0;
}

static void wait_inflight(qtsp_http_server *srv, unsigned ms)
{
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)ms * 1000000ULL;
    while (atomic_load_explicit(&srv->inflight, memory_order_acquire) > 0 &&
           qtsp_mono_ns() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void qtsp_http_stop_within(qtsp_http_server *srv, unsigned grace_ms)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->draining, 1);
    if (srv->lane)
        http_lane_quiesce(srv);
    else
        srv->quiesced_fd = MHD_quiesce_daemon(srv->daemon);
    /* MHD_stop_daemon closes connections at once; first let the requests
     * already being handled answer (bounded wait), deferred ones included. */
    wait_inflight(srv, grace_ms);
    /* MHD 0.9.75 panics in MHD_stop_daemon on a suspended connection. */
    http_force_deferred(srv);
    if (atomic_load_explicit(&srv->inflight, memory_order_acquire) > 0)
        wait_inflight(srv, HTTP_FORCED_GRACE_MS); /* let the 503s go out */
    if (srv->lane)
        http_lane_stop(srv); /* no hand-off to MHD after this */
    MHD_stop_daemon(srv->daemon);
    http_lane_free(srv);
    if (srv->quiesced_fd != MHD_INVALID_SOCKET)
        close(srv->quiesced_fd);
    http_deadlines_stop(srv);
    pthread_mutex_destroy(&srv->cmu);
    http_routes_free(srv->routes, srv->n_routes);
    free(srv->stats);
    pthread_mutex_destroy(&srv->dmu);
    free(srv);
}

void qtsp_http_stop(qtsp_http_server *srv)
{
    qtsp_http_stop_within(srv, HTTP_STOP_GRACE_MS);
}
