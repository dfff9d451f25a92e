/* The JSON API layer (core/api.h, docs/api.md).
 *
 * A request is matched against the route table on the HTTP thread (cheap:
 * string compares), copied into an api_call (a deferred request's own data
 * must not be read once the HTTP handler returned, core/http.h), and then
 * either deferred to a worker thread or processed on the spot. Everything
 * that may be slow (the authentication hook: argon2id; the handler: token
 * key generation, durable commits) runs in api_process. Errors are shaped
 * here, always, so a service that chose its own shape never gets the
 * contract's from core/http. */
#include "core/api.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/session.h"

#define API_DEFAULT_BODY ((size_t)16 * 1024)
#define API_DEFAULT_QUEUE 1024
#define API_QUEUE_MAX 65536
#define API_PATH_MAX 512 /* longer paths name no resource */
#define API_PARAM_MAX 128
#define API_PARAM_NAME 32
#define API_HEADERS_MAX 16
#define API_HTTP_ROUTES 8 /* distinct methods, and routes of their own */
#define API_WORKERS_MAX 256
#define API_SLOW_QUEUE 64
#define API_SLOW_WAIT_MS 10000

/* A request, copied, with what routing found. */
typedef struct api_call {
    char method[16];
    char path[API_PATH_MAX];
    size_t n_hdr;
    char *hdr_name[API_HEADERS_MAX]; /* static names (borrowed) */
    char *hdr_value[API_HEADERS_MAX];
    unsigned char *body;
    size_t body_len;
    const qtsp_api_route *route; /* NULL: no route for method + path */
    int path_known;              /* some route has this path (405) */
    char allow[64];
    size_t n_params;
    char pname[QTSP_API_MAX_PARAMS][API_PARAM_NAME];
    char pval[QTSP_API_MAX_PARAMS][API_PARAM_MAX + 1];
    size_t n_query;
    char *qname[QTSP_API_MAX_QUERY];
    char *qvalue[QTSP_API_MAX_QUERY];
    char query_err[160]; /* why the query string is refused, "" when it is not */
    int via_tls;         /* qtsp_http_via_tls of the request */
    /* a portal session (core/session.h) that did not open: why, and the
     * status it gets (401, or 403 for a missing CSRF token) */
    qtsp_status session_rc;
    char session_err[96];
    char *set_cookie; /* the session re-sealed with this call's activity */
} api_call;

typedef struct api_job {
    api_call *call;
    qtsp_http_deferred *d;
    uint64_t queued_ns; /* qtsp_mono_ns at enqueue */
} api_job;

/* A bounded FIFO of jobs (urgent ones go to its head). */
typedef struct api_lane {
    api_job *q;
    size_t cap, head, count;
} api_lane;

typedef struct api_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    api_lane fast, slow;
    unsigned slow_running, slow_max;
    int stopping;
    pthread_t *threads;
    unsigned n;
} api_pool;

struct qtsp_api {
    qtsp_api_opts o;
    char *prefix, *name, *kind;
    size_t max_body;
    const char *copy[API_HEADERS_MAX]; /* request headers copied into calls */
    size_t n_copy;
    qtsp_route http[API_HTTP_ROUTES];
    size_t n_http;
    api_pool *_Atomic pool;        /* NULL until qtsp_api_start_workers */
    const qtsp_sessions *sessions; /* portal sessions taken as credentials, or NULL */
    _Atomic uint64_t busy, dropped, slow_total;
};

/* ---- route templates -------------------------------------------------- */

/* A template is well formed: absolute, parameters are whole segments
 * "{name}" with a name of 1..31 characters, at most QTSP_API_MAX_PARAMS. */
static int tmpl_ok(const char *t)
{
    if (t == NULL || t[0] != '/')
        return 0;
    size_t params = 0;
    for (const char *p = t; *p; p++) {
        if (*p == '}')
            return 0;
        if (*p != '{')
            continue;
        const char *end = strchr(p, '}');
        size_t nl = end ? (size_t)(end - p - 1) : 0;
        if (!end || p[-1] != '/' || (end[1] != '/' && end[1] != '\0') || nl == 0 ||
            nl >= API_PARAM_NAME || memchr(p + 1, '/', nl) || memchr(p + 1, '{', nl) ||
            ++params > QTSP_API_MAX_PARAMS)
            return 0;
        p = end;
    }
    return 1;
}

/* Matches path against template t, filling c's parameters. */
static int tmpl_match(const char *t, const char *path, api_call *c)
{
    c->n_params = 0;
    const char *p = path;
    while (*t && *p) {
        if (*t != '{') {
            if (*t++ != *p++)
                return 0;
            continue;
        }
        const char *end = strchr(t, '}');
        size_t nl = (size_t)(end - t - 1);
        size_t vl = strcspn(p, "/");
        if (vl == 0 || vl > API_PARAM_MAX)
            return 0;
        memcpy(c->pname[c->n_params], t + 1, nl);
        c->pname[c->n_params][nl] = '\0';
        memcpy(c->pval[c->n_params], p, vl);
        c->pval[c->n_params][vl] = '\0';
        c->n_params++;
        t = end + 1;
        p += vl;
    }
    return *t == '\0' && *p == '\0';
}

static int method_is(const char *m, const char *want)
{
    return strcmp(m, want) == 0 || (strcmp(m, "HEAD") == 0 && strcmp(want, "GET") == 0);
}

/* The route for method + path; otherwise path_known and allow for a 405. */
static void route_find(const qtsp_api *api, api_call *c)
{
    c->route = NULL;
    c->path_known = 0;
    c->allow[0] = '\0';
    for (size_t i = 0; i < api->o.n_routes; i++) {
        const qtsp_api_route *r = &api->o.routes[i];
        if (!tmpl_match(r->path, c->path, c))
            continue;
        if (method_is(c->method, r->method)) {
            c->route = r;
            return;
        }
        c->path_known = 1;
        size_t al = strlen(c->allow);
        if (strstr(c->allow, r->method) == NULL && al + strlen(r->method) + 3 < sizeof c->allow)
            snprintf(c->allow + al, sizeof c->allow - al, "%s%s", al ? ", " : "", r->method);
    }
    c->n_params = 0;
}

/* ---- requests --------------------------------------------------------- */

static void call_free(api_call *c)
{
    if (c == NULL)
        return;
    if (c->set_cookie) {
        OPENSSL_cleanse(c->set_cookie, strlen(c->set_cookie));
        free(c->set_cookie);
    }
    for (size_t i = 0; i < c->n_hdr; i++) {
        OPENSSL_cleanse(c->hdr_value[i], strlen(c->hdr_value[i]));
        free(c->hdr_value[i]);
    }
    if (c->body) {
        OPENSSL_cleanse(c->body, c->body_len);
        free(c->body);
    }
    for (size_t i = 0; i < c->n_query; i++) {
        free(c->qname[i]);
        free(c->qvalue[i]);
    }
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

/* Copies one query-string argument into c (bounded; a refusal is noted
 * in c->query_err and checked after authentication). */
static int query_copy(void *ctx, const char *name, const char *value)
{
    api_call *c = ctx;
    if (c->query_err[0])
        return 1;
    if (c->n_query >= QTSP_API_MAX_QUERY) {
        snprintf(c->query_err, sizeof c->query_err, "at most %d query-string arguments",
                 QTSP_API_MAX_QUERY);
        return 1;
    }
    if (strlen(value) > QTSP_API_QUERY_VALUE_MAX || strlen(name) > 64) {
        snprintf(c->query_err, sizeof c->query_err, "query-string argument %.64s: too long", name);
        return 1;
    }
    for (size_t i = 0; i < c->n_query; i++)
        if (strcmp(c->qname[i], name) == 0) {
            snprintf(c->query_err, sizeof c->query_err,
                     "query-string argument %.64s: given more than once", name);
            return 1;
        }
    c->qname[c->n_query] = strdup(name);
    c->qvalue[c->n_query] = strdup(value);
    if (!c->qname[c->n_query] || !c->qvalue[c->n_query]) {
        free(c->qname[c->n_query]);
        free(c->qvalue[c->n_query]);
        snprintf(c->query_err, sizeof c->query_err, "out of memory");
        return 1;
    }
    c->n_query++;
    return 0;
}

static const char *call_header(const api_call *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n_hdr; i++)
        if (strcasecmp(c->hdr_name[i], name) == 0)
            return c->hdr_value[i];
    return NULL;
}

/* A portal session in place of an Authorization header (core/session.h):
 * with the page's CSRF token it becomes "Authorization: Bearer <token>" for
 * the authentication hook, and the answer re-seals it (idle timeout).
 * Without the token, or when it does not open, the call fails
 * authentication with the reason. 0, or -1 out of memory. */
static int session_to_bearer(const qtsp_api *api, api_call *c)
{
    const char *cookie = call_header(c, "Cookie");
    if (!api->sessions || call_header(c, "Authorization") || !cookie ||
        !strstr(cookie, QTSP_SESSION_COOKIE "="))
        return 0;
    qtsp_session s;
    qtsp_status rc = qtsp_session_open(api->sessions, cookie, qtsp_now(), &s);
    if (rc != QTSP_OK) {
        c->session_rc = rc;
        snprintf(c->session_err, sizeof c->session_err, "%s", qtsp_err_what());
        qtsp_err_clear();
        return 0;
    }
    int ret = 0;
    char *cookie_out = NULL, *bearer = NULL;
    if (!qtsp_session_csrf_ok(&s, call_header(c, QTSP_SESSION_CSRF_HEADER))) {
        c->session_rc = QTSP_ERR_FORBIDDEN;
        snprintf(c->session_err, sizeof c->session_err,
                 "the request lacks the page's " QTSP_SESSION_CSRF_HEADER " token");
        goto out;
    }
    cookie_out = malloc(QTSP_SESSION_SET_COOKIE_MAX);
    size_t blen = strlen(s.token) + 8;
    bearer = malloc(blen);
    if (!cookie_out || !bearer || c->n_hdr >= API_HEADERS_MAX) {
        ret = -1;
        goto out;
    }
    if (qtsp_session_set_cookie(api->sessions, &s, c->via_tls, cookie_out,
                                QTSP_SESSION_SET_COOKIE_MAX) != QTSP_OK) {
        qtsp_err_clear();
        ret = -1;
        goto out;
    }
    snprintf(bearer, blen, "Bearer %s", s.token);
    c->hdr_name[c->n_hdr] = "Authorization";
    c->hdr_value[c->n_hdr++] = bearer;
    bearer = NULL;
    c->set_cookie = cookie_out;
    cookie_out = NULL;
out:
    if (bearer) {
        OPENSSL_cleanse(bearer, strlen(s.token) + 8);
        free(bearer);
    }
    free(cookie_out);
    OPENSSL_cleanse(&s, sizeof s);
    return ret;
}

/* Copies what the layer and the handler may read of req. NOT_FOUND for a
 * path too long to name a resource. */
static qtsp_status call_from(const qtsp_api *api, const qtsp_http_req *req, api_call **out)
{
    ENSURE(strlen(req->method) < sizeof((api_call *)0)->method &&
               strlen(req->path) < sizeof((api_call *)0)->path,
           QTSP_ERR_NOT_FOUND, "no such resource");
    api_call *c = calloc(1, sizeof *c);
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    snprintf(c->method, sizeof c->method, "%s", req->method);
    snprintf(c->path, sizeof c->path, "%s", req->path);
    int fail = 0;
    for (size_t i = 0; i < api->n_copy; i++) {
        const char *v = qtsp_http_header(req, api->copy[i]);
        if (v == NULL)
            continue;
        c->hdr_name[c->n_hdr] = (char *)api->copy[i];
        c->hdr_value[c->n_hdr] = strdup(v);
        if (c->hdr_value[c->n_hdr] == NULL) {
            fail = 1;
            break;
        }
        c->n_hdr++;
    }
    c->via_tls = qtsp_http_via_tls(req);
    if (!fail && session_to_bearer(api, c) != 0)
        fail = 1;
    if (!fail && req->internal)
        qtsp_http_query_each(req, query_copy, c);
    if (!fail && req->body_len && req->internal) { /* the server's request: no copy */
        c->body = qtsp_http_take_body(req, &c->body_len);
        fail = c->body == NULL;
    } else if (!fail && req->body_len) {
        c->body = malloc(req->body_len);
        if (c->body) {
            memcpy(c->body, req->body, req->body_len);
            c->body_len = req->body_len;
        } else {
            fail = 1;
        }
    }
    if (fail) {
        call_free(c);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return QTSP_OK;
}

const char *qtsp_api_param(const qtsp_api_req *req, const char *name)
{
    const api_call *c = req ? req->internal : NULL;
    for (size_t i = 0; c && name && i < c->n_params; i++)
        if (strcmp(c->pname[i], name) == 0)
            return c->pval[i];
    return NULL;
}

const char *qtsp_api_query(const qtsp_api_req *req, const char *name)
{
    const api_call *c = req ? req->internal : NULL;
    for (size_t i = 0; c && name && i < c->n_query; i++)
        if (strcmp(c->qname[i], name) == 0)
            return c->qvalue[i];
    return NULL;
}

qtsp_status qtsp_api_query_allow(const qtsp_api_req *req, const char *const *allowed)
{
    const api_call *c = req->internal;
    ENSURE(c->query_err[0] == '\0', QTSP_ERR_INVALID, "%s", c->query_err);
    for (size_t i = 0; i < c->n_query; i++) {
        int ok = 0;
        for (const char *const *q = allowed; q && *q && !ok; q++)
            ok = strcmp(*q, c->qname[i]) == 0;
        ENSURE(ok, QTSP_ERR_INVALID, "query-string argument %.64s: not allowed here", c->qname[i]);
    }
    return QTSP_OK;
}

const char *qtsp_api_header(const qtsp_api_req *req, const char *name)
{
    return call_header(req ? req->internal : NULL, name);
}

int qtsp_api_via_tls(const qtsp_api_req *req)
{
    const api_call *c = req ? req->internal : NULL;
    return c ? c->via_tls : 0;
}

void qtsp_api_set_sessions(qtsp_api *api, const qtsp_sessions *ss)
{
    api->sessions = ss;
}

const char *qtsp_api_bearer(const qtsp_api_req *req)
{
    const char *h = qtsp_api_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    return tok;
}

qtsp_status qtsp_api_string(const qtsp_api_req *req, const char *name, const char **out)
{
    return qtsp_json_get_string(req->body, name, 1, out);
}

qtsp_status qtsp_api_reply(qtsp_http_resp *resp, int status, json_t *o)
{
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    ENSURE(txt != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_http_resp_set(resp, status, "application/json", txt, strlen(txt));
    OPENSSL_cleanse(txt, strlen(txt));
    free(txt);
    return rc;
}

/* ---- errors ----------------------------------------------------------- */

/* Answers an error in the API's shape into resp (reset first). When even
 * that fails, returns rc so that core/http answers in the contract's. */
static qtsp_status answer_error(qtsp_api *api, const api_call *c, int status, qtsp_status rc,
                                qtsp_http_resp *resp)
{
    const char *what = qtsp_err_what();
    const char *msg = status == 500 ? "internal error" : *what ? what : qtsp_strerror(rc);
    if (status == 500)
        LOG_ERROR("api %s: %s %s: %s", api->name, c ? c->method : "-", c ? c->path : "-",
                  qtsp_err_message());
    char keep[256];
    snprintf(keep, sizeof keep, "%s", msg);
    qtsp_http_resp_reset(resp);
    qtsp_err_clear();
    qtsp_status arc = api->o.error ? api->o.error(api->o.ctx, status, rc, keep, resp)
                                   : qtsp_http_resp_error(resp, status, keep);
    if (arc == QTSP_OK && status == 405 && c && c->allow[0])
        arc = qtsp_http_resp_header(resp, "Allow", c->allow);
    if (arc != QTSP_OK) {
        LOG_ERROR("api %s: cannot shape a %d error: %s", api->name, status, qtsp_err_message());
        qtsp_http_resp_reset(resp);
        return qtsp_err_set(rc, __FILE__, __LINE__, "%s", keep);
    }
    return QTSP_OK;
}

static qtsp_status answer_rc(qtsp_api *api, const api_call *c, qtsp_status rc, qtsp_http_resp *resp)
{
    return rc == QTSP_OK ? QTSP_OK : answer_error(api, c, qtsp_http_status_for(rc), rc, resp);
}

/* ---- processing ------------------------------------------------------- */

static qtsp_status authenticate(qtsp_api *api, qtsp_api_req *req, qtsp_principal *who)
{
    const api_call *c = req->internal;
    ENSURE(c->session_rc == QTSP_OK, c->session_rc, "%s", c->session_err);
    ENSURE(api->o.auth != NULL, QTSP_ERR_AUTH, "authentication required");
    memset(who, 0, sizeof *who);
    qtsp_status rc = api->o.auth(api->o.ctx, req, who);
    if (rc == QTSP_ERR_AUTH)
        return rc;
    if (rc != QTSP_OK) {
        LOG_WARN("api %s: authentication hook failed: %s", api->name, qtsp_err_message());
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "authentication failed");
    }
    req->who = who;
    return QTSP_OK;
}

/* RFC 9110 8.3.1: the media type, without parameters, case-insensitive. */
static int is_json_type(const char *ct)
{
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    return ct && n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

static qtsp_status parse_body(const api_call *c, json_t **out)
{
    ENSURE(is_json_type(qtsp_api_header(&(qtsp_api_req){.internal = c}, "Content-Type")),
           QTSP_ERR_UNSUPPORTED, "Content-Type must be application/json"); /* RFC 9110 15.5.16 */
    return qtsp_json_parse_object((const char *)c->body, c->body_len, out);
}

static qtsp_status parse_body_big(const api_call *c, json_t **out, qtsp_json_big *big)
{
    ENSURE(is_json_type(qtsp_api_header(&(qtsp_api_req){.internal = c}, "Content-Type")),
           QTSP_ERR_UNSUPPORTED, "Content-Type must be application/json"); /* RFC 9110 15.5.16 */
    return qtsp_json_parse_object_big((char *)c->body, c->body_len, QTSP_API_BIG_MIN, out, big);
}

/* Everything after routing, in the order of core/api.h. */
static qtsp_status process(qtsp_api *api, const api_call *c, qtsp_http_resp *resp)
{
    const qtsp_api_route *rt = c->route;
    qtsp_api_req req = {c->method, c->path, NULL, NULL, c->body, c->body_len, c, NULL};
    qtsp_principal who;
    if (rt == NULL || !(rt->flags & QTSP_API_PUBLIC))
        TRY(authenticate(api, &req, &who));
    if (rt == NULL) {
        if (c->path_known)
            return answer_error(api, c, 405, QTSP_ERR_INVALID, resp);
        FAIL(QTSP_ERR_NOT_FOUND, "no such resource %s %s", c->method, c->path);
    }
    ENSURE(rt->roles == 0 || (rt->flags & QTSP_API_PUBLIC) || (who.roles & rt->roles),
           QTSP_ERR_FORBIDDEN, "%s is not allowed for this %s's role",
           rt->what ? rt->what : "this request", api->kind);
    qtsp_json_big big;
    memset(&big, 0, sizeof big);
    if (rt->flags & QTSP_API_BODY) {
        if (rt->flags & QTSP_API_BIG_STRINGS) {
            TRY(parse_body_big(c, &req.body, &big));
            req.big = &big;
        } else {
            TRY(parse_body(c, &req.body));
        }
        if (rt->fields) {
            qtsp_status frc = qtsp_json_check_fields(req.body, rt->fields);
            if (frc != QTSP_OK) {
                json_decref(req.body);
                qtsp_json_big_cleanup(&big);
                return frc;
            }
        }
    }
    qtsp_status rc = rt->fn(api->o.ctx, &req, resp);
    json_decref(req.body);
    qtsp_json_big_cleanup(&big);
    OPENSSL_cleanse(&who, sizeof who);
    return rc;
}

/* Runs a call to its answer in resp (an error in the API's shape). */
static qtsp_status run(qtsp_api *api, const api_call *c, qtsp_http_resp *resp)
{
    qtsp_err_clear();
    qtsp_status rc = process(api, c, resp);
    rc = answer_rc(api, c, rc, resp);
    /* the session's new activity time, also on an error answer: the person
     * was there */
    if (rc == QTSP_OK && c->set_cookie &&
        qtsp_http_resp_header(resp, "Set-Cookie", c->set_cookie) != QTSP_OK)
        qtsp_err_clear();
    return rc;
}

/* ---- the worker pool ---------------------------------------------------
 * Requests that block on the token, on durable commits or on argon2id
 * would stall the HTTP workers (one per core, sized for OCSP and TSA) and
 * cap the service at what those threads can wait for. So each request is
 * deferred to the pool; the HTTP threads stay free. */

static void lane_push(api_lane *l, api_job j, int urgent)
{
    if (urgent) {
        l->head = (l->head + l->cap - 1) % l->cap;
        l->q[l->head] = j;
    } else {
        l->q[(l->head + l->count) % l->cap] = j;
    }
    l->count++;
}

static api_job lane_pop(api_lane *l)
{
    api_job j = l->q[l->head];
    l->head = (l->head + 1) % l->cap;
    l->count--;
    return j;
}

/* A slow job not worth running: its client left, or it waited so long
 * that the client has most likely given up. */
static int stale(const qtsp_api *api, const api_job *j)
{
    unsigned wait_ms = api->o.slow_wait_ms ? api->o.slow_wait_ms : API_SLOW_WAIT_MS;
    return qtsp_mono_ns() - j->queued_ns > (uint64_t)wait_ms * 1000000u ||
           qtsp_http_deferred_gone(j->d);
}

static void *worker_main(void *arg)
{
    qtsp_api *api = arg;
    api_pool *p = atomic_load_explicit(&api->pool, memory_order_acquire);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int can_slow = p->slow.count > 0 && p->slow_running < p->slow_max;
        while (p->fast.count == 0 && !can_slow && !p->stopping) {
            pthread_cond_wait(&p->cv, &p->mu);
            can_slow = p->slow.count > 0 && p->slow_running < p->slow_max;
        }
        if (p->fast.count == 0 && p->slow.count == 0)
            break; /* stopping and nothing left */
        int slow = p->fast.count == 0;
        if (slow && !can_slow && !p->stopping)
            continue;
        api_job job = slow ? lane_pop(&p->slow) : lane_pop(&p->fast);
        if (slow)
            p->slow_running++;
        int stopping = p->stopping;
        pthread_mutex_unlock(&p->mu);
        qtsp_http_resp *resp = qtsp_http_deferred_resp(job.d);
        qtsp_status rc;
        if (stopping || (slow && stale(api, &job))) {
            /* not carried out: its client may already have been told 503,
             * or is gone */
            if (!stopping)
                atomic_fetch_add(&api->dropped, 1);
            qtsp_err_clear();
            rc = answer_rc(api, job.call,
                           qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__, "%s",
                                        stopping ? "the service is shutting down; try again"
                                                 : "the service is busy; try again"),
                           resp);
        } else {
            rc = run(api, job.call, resp);
        }
        qtsp_http_complete(job.d, rc);
        call_free(job.call);
        pthread_mutex_lock(&p->mu);
        if (slow) {
            p->slow_running--;
            pthread_cond_broadcast(&p->cv); /* a slow job may run now */
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_free(api_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->fast.q);
    free(p->slow.q);
    free(p);
}

qtsp_status qtsp_api_start_workers(qtsp_api *api, unsigned n)
{
    ENSURE(api && !atomic_load(&api->pool) && n > 0 && n <= API_WORKERS_MAX, QTSP_ERR_INVALID,
           "bad API worker count %u", n);
    api_pool *p = calloc(1, sizeof *p);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory");
    p->fast.cap = api->o.queue ? api->o.queue : API_DEFAULT_QUEUE;
    p->slow.cap = api->o.slow_queue ? api->o.slow_queue : API_SLOW_QUEUE;
    p->slow_max = api->o.slow_workers ? api->o.slow_workers : 1;
    if (p->slow_max > n)
        p->slow_max = n;
    p->fast.q = calloc(p->fast.cap, sizeof *p->fast.q);
    p->slow.q = calloc(p->slow.cap, sizeof *p->slow.q);
    p->threads = calloc(n, sizeof *p->threads);
    if (!p->fast.q || !p->slow.q || !p->threads) {
        free(p->fast.q);
        free(p->slow.q);
        free(p->threads);
        free(p);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* published before the threads start (they read it); requests see it
     * at once, and queued ones wait for the threads */
    atomic_store_explicit(&api->pool, p, memory_order_release);
    for (; p->n < n; p->n++)
        if (pthread_create(&p->threads[p->n], NULL, worker_main, api) != 0)
            break;
    if (p->n == 0) {
        atomic_store(&api->pool, NULL);
        pool_free(p);
        FAIL(QTSP_ERR_INTERNAL, "cannot start the %s workers", api->name);
    }
    return QTSP_OK;
}

void qtsp_api_quiesce(qtsp_api *api)
{
    api_pool *p = api ? atomic_load_explicit(&api->pool, memory_order_acquire) : NULL;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Queues c with a deferred handle, in the slow lane when slow. 1 queued
 * (c passes to the pool), 0 not (answer on the spot), -1 refused: *why
 * says why (503). A full slow lane always refuses: its work must never run
 * on an HTTP thread. */
static int enqueue(qtsp_api *api, api_pool *p, const qtsp_http_req *req, api_call *c, int slow,
                   const char **why)
{
    pthread_mutex_lock(&p->mu);
    int r = 0;
    api_lane *l = slow ? &p->slow : &p->fast;
    if (p->stopping) {
        r = -1;
        *why = "the service is shutting down; try again";
    } else if (l->count >= l->cap) {
        r = api->o.reject_when_full || slow ? -1 : 0;
        *why = "the service is busy; try again";
        if (slow)
            atomic_fetch_add(&api->busy, 1);
    } else {
        qtsp_http_deferred *d = qtsp_http_defer(req);
        if (d) {
            int urgent = !slow && c->route && (c->route->flags & QTSP_API_URGENT);
            lane_push(l, (api_job){c, d, qtsp_mono_ns()}, urgent);
            if (slow)
                atomic_fetch_add(&api->slow_total, 1);
            pthread_cond_broadcast(&p->cv);
            r = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

/* core/http route handler for everything under the prefix. */
static qtsp_status dispatch(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_api *api = ctx;
    api_call *c = NULL;
    qtsp_status rc = call_from(api, req, &c);
    if (rc != QTSP_OK)
        return answer_rc(api, NULL, rc, resp);
    route_find(api, c);
    size_t max = c->route && c->route->max_body ? c->route->max_body : api->max_body;
    if (c->route && !c->route->max_body && (c->route->flags & QTSP_API_BIG_STRINGS) &&
        api->o.big_max_body)
        max = api->o.big_max_body;
    if (c->body_len > max) {
        rc = qtsp_err_set(QTSP_ERR_TOO_BIG, __FILE__, __LINE__, "request body too large");
        rc = answer_rc(api, c, rc, resp);
        call_free(c);
        return rc;
    }
    api_pool *p = atomic_load_explicit(&api->pool, memory_order_acquire);
    if (p) {
        const char *why = NULL;
        /* authentication that will be slow (argon2id), also a public route's
         * own (a login), waits in its own lane */
        int slow = api->o.slow && api->o.slow(api->o.ctx, &(qtsp_api_req){.internal = c});
        int q = enqueue(api, p, req, c, slow, &why);
        if (q == 1)
            return QTSP_OK;
        if (q < 0) {
            rc = answer_rc(api, c,
                           qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__, "%s", why), resp);
            call_free(c);
            return rc;
        }
    }
    rc = run(api, c, resp);
    call_free(c);
    return rc;
}

/* ---- setup ------------------------------------------------------------ */

qtsp_status qtsp_api_new(const qtsp_api_opts *o, qtsp_api **out)
{
    ENSURE(o && o->prefix && o->prefix[0] == '/' && o->prefix[strlen(o->prefix) - 1] == '/' &&
               o->name && *o->name && o->routes && o->n_routes > 0,
           QTSP_ERR_INVALID, "API options lack a /prefix/, a name or routes");
    ENSURE(o->queue <= API_QUEUE_MAX && o->slow_queue <= API_QUEUE_MAX, QTSP_ERR_INVALID,
           "API queue of %zu/%zu entries", o->queue, o->slow_queue);
    size_t plen = strlen(o->prefix);
    for (size_t i = 0; i < o->n_routes; i++) {
        const qtsp_api_route *r = &o->routes[i];
        ENSURE(r->method && r->fn && tmpl_ok(r->path) && strncmp(r->path, o->prefix, plen) == 0,
               QTSP_ERR_INVALID, "API %s: route %zu (%s) is malformed or outside %s", o->name, i,
               r->path ? r->path : "-", o->prefix);
        ENSURE(o->auth || (r->flags & QTSP_API_PUBLIC), QTSP_ERR_INVALID,
               "API %s: route %s needs authentication but there is no hook", o->name, r->path);
    }
    qtsp_api *api = calloc(1, sizeof *api);
    ENSURE(api != NULL, QTSP_ERR_NOMEM, "out of memory");
    api->o = *o;
    api->prefix = strdup(o->prefix);
    api->name = strdup(o->name);
    api->kind = strdup(o->principal_kind ? o->principal_kind : "caller");
    api->max_body = o->max_body ? o->max_body : API_DEFAULT_BODY;
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(api->prefix && api->name && api->kind, QTSP_ERR_NOMEM, "out of memory");
    static const char *const base[] = {"Authorization", "Content-Type", "Cookie",
                                       QTSP_SESSION_CSRF_HEADER};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        api->copy[api->n_copy++] = base[i];
    for (const char *const *h = o->headers; h && *h; h++) {
        ENSURE_OUT(api->n_copy < API_HEADERS_MAX, QTSP_ERR_INVALID,
                   "API %s: more than %d request headers", o->name, API_HEADERS_MAX);
        api->copy[api->n_copy++] = *h;
    }
    /* one core/http prefix route per method, limited to the largest body;
     * a route with long strings gets an exact route of its own */
    for (size_t i = 0; i < o->n_routes; i++) {
        const qtsp_api_route *r = &o->routes[i];
        size_t max = r->max_body ? r->max_body : api->max_body;
        if (!(r->flags & QTSP_API_BODY) && !r->max_body)
            max = 0;
        if (r->flags & QTSP_API_BIG_STRINGS) {
            if (!r->max_body && o->big_max_body)
                max = o->big_max_body;
            ENSURE_OUT(api->n_http < API_HTTP_ROUTES && !strchr(r->path, '{') &&
                           (r->flags & QTSP_API_BODY),
                       QTSP_ERR_INVALID, "API %s: route %s cannot have its own limit", o->name,
                       r->path);
            api->http[api->n_http++] =
                (qtsp_route){r->method, r->path, 0, max, NULL, dispatch, api, api->name};
            continue;
        }
        size_t k = 0;
        while (k < api->n_http &&
               (!api->http[k].prefix || strcmp(api->http[k].method, r->method) != 0))
            k++;
        if (k == api->n_http) {
            ENSURE_OUT(k < API_HTTP_ROUTES, QTSP_ERR_INVALID, "API %s: too many methods", o->name);
            api->http[k] =
                (qtsp_route){r->method, api->prefix, 1, 0, NULL, dispatch, api, api->name};
            api->n_http++;
        }
        if (max > api->http[k].max_body)
            api->http[k].max_body = max;
    }
out:
    if (rc != QTSP_OK) {
        qtsp_api_free(api);
        return rc;
    }
    *out = api;
    return QTSP_OK;
}

qtsp_status qtsp_api_metrics(qtsp_api *api, qtsp_buf *out)
{
    size_t fast = 0, slow = 0;
    api_pool *p = atomic_load_explicit(&api->pool, memory_order_acquire);
    if (p) {
        pthread_mutex_lock(&p->mu);
        fast = p->fast.count;
        slow = p->slow.count;
        pthread_mutex_unlock(&p->mu);
    }
    return qtsp_buf_printf(
        out,
        "# HELP qtsp_api_queued Requests waiting for an API worker, by lane.\n"
        "# TYPE qtsp_api_queued gauge\n"
        "qtsp_api_queued{api=\"%s\",lane=\"fast\"} %zu\n"
        "qtsp_api_queued{api=\"%s\",lane=\"slow\"} %zu\n"
        "# HELP qtsp_api_slow_total Requests queued in the slow lane (slow authentication).\n"
        "# TYPE qtsp_api_slow_total counter\nqtsp_api_slow_total{api=\"%s\"} %llu\n"
        "# HELP qtsp_api_busy_total Requests refused 503 because the slow lane was full.\n"
        "# TYPE qtsp_api_busy_total counter\nqtsp_api_busy_total{api=\"%s\"} %llu\n"
        "# HELP qtsp_api_dropped_total Slow-lane requests dropped unrun (client gone or "
        "waited too long).\n"
        "# TYPE qtsp_api_dropped_total counter\nqtsp_api_dropped_total{api=\"%s\"} %llu\n",
        api->name, fast, api->name, slow, api->name,
        (unsigned long long)atomic_load(&api->slow_total), api->name,
        (unsigned long long)atomic_load(&api->busy), api->name,
        (unsigned long long)atomic_load(&api->dropped));
}

size_t qtsp_api_http_routes(qtsp_api *api, qtsp_route *routes, size_t cap)
{
    size_t n = api->n_http < cap ? api->n_http : cap;
    memcpy(routes, api->http, n * sizeof *routes);
    return n;
}

qtsp_status qtsp_api_list_routes(const qtsp_route *routes, size_t n, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        const qtsp_route *r = &routes[i];
        if (r->fn != dispatch) {
            fprintf(f, "%s %s%s\n", r->method, r->path, r->prefix ? "*" : "");
            continue;
        }
        if (!r->prefix) { /* a route of its own (QTSP_API_BIG_STRINGS) */
            fprintf(f, "%s %s\n", r->method, r->path);
            continue;
        }
        const qtsp_api *api = r->ctx;
        for (size_t k = 0; k < api->o.n_routes; k++)
            if (strcmp(api->o.routes[k].method, r->method) == 0 &&
                !(api->o.routes[k].flags & QTSP_API_BIG_STRINGS))
                fprintf(f, "%s %s\n", r->method, api->o.routes[k].path);
    }
    for (size_t i = 0; qtsp_http_builtin_path(i); i++)
        fprintf(f, "GET %s\n", qtsp_http_builtin_path(i));
    ENSURE(fflush(f) == 0 && !ferror(f), QTSP_ERR_IO, "cannot write the route list");
    return QTSP_OK;
}

void qtsp_api_free(qtsp_api *api)
{
    if (api == NULL)
        return;
    api_pool *p = atomic_load_explicit(&api->pool, memory_order_acquire);
    if (p) {
        qtsp_api_quiesce(api);
        for (unsigned i = 0; i < p->n; i++)
            pthread_join(p->threads[i], NULL);
        pool_free(p);
    }
    free(api->prefix);
    free(api->name);
    free(api->kind);
    free(api);
}
