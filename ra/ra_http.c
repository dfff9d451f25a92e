/* RA over HTTP (interface.md "Registration Authority"): bearer-token
 * authentication, JSON in and out, errors {"error","message"} mapped by
 * core/http.c from the returned status. */
#define _XOPEN_SOURCE 700 /* strptime */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/time.h"
#include "core/log.h"
#include "ra/ra_int.h"

#define RA_MAX_BODY (16 * 1024)
#define RA_QUEUE 1024

/* What the RA needs of a request, copied: a deferred request's own data must
 * not be read once the HTTP handler has returned (core/http.h). */
typedef struct ra_call {
    char method[8];
    char path[512];
    char *auth;  /* Authorization header or NULL */
    char *ctype; /* Content-Type header or NULL */
    unsigned char *body;
    size_t body_len;
} ra_call;

static qtsp_status authenticate(qtsp_ra *ra, const ra_call *req, qtsp_actor *who)
{
    const char *h = req->auth;
    ENSURE(h != NULL, QTSP_ERR_AUTH, "missing Authorization: Bearer token");
    ENSURE(strncasecmp(h, "Bearer ", 7) == 0, QTSP_ERR_AUTH,
           "Authorization must be a Bearer token");
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    qtsp_operator op;
    qtsp_status rc = qtsp_operator_auth(ra->d.store, tok, &op);
    if (rc != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "unknown or invalid operator token");
    }
    qtsp_actor_from_operator(&op, who);
    return QTSP_OK;
}

static qtsp_status parse_body(const ra_call *req, json_t **out)
{
    /* checked here, after authentication and the role, so that a caller
     * without a token learns 401 before anything about the body */
    const char *ct = req->ctype;
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    ENSURE(ct && n == 16 && strncasecmp(ct, "application/json", 16) == 0, QTSP_ERR_INVALID,
           "Content-Type must be application/json");
    ENSURE(req->body_len > 0, QTSP_ERR_INVALID, "body: a JSON object is required");
    json_error_t err;
    json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    ENSURE(o != NULL, QTSP_ERR_INVALID, "body: invalid JSON at line %d column %d: %s", err.line,
           err.column, err.text);
    if (!json_is_object(o)) {
        json_decref(o);
        FAIL(QTSP_ERR_INVALID, "body: must be a JSON object");
    }
    *out = o;
    return QTSP_OK;
}

static qtsp_status reply(qtsp_http_resp *resp, int status, json_t *o)
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

static qtsp_status get_string(const json_t *in, const char *name, const char **out)
{
    json_t *v = json_object_get(in, name);
    ENSURE(v != NULL, QTSP_ERR_INVALID, "%s: missing", name);
    ENSURE(json_is_string(v) && json_string_length(v) == strlen(json_string_value(v)),
           QTSP_ERR_INVALID, "%s: must be a string", name);
    *out = json_string_value(v);
    return QTSP_OK;
}

/* Parses a serial path segment; unknown forms are 404 (no such resource). */
static qtsp_status path_serial(const char *seg, size_t n, unsigned char *serial, size_t *slen)
{
    char hex[64];
    ENSURE(n > 0 && n < sizeof hex, QTSP_ERR_NOT_FOUND, "no such certificate");
    memcpy(hex, seg, n);
    hex[n] = '\0';
    if (qtsp_serial_from_hex(hex, serial, slen) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_NOT_FOUND, "no certificate with serial %s", hex);
    }
    return QTSP_OK;
}

static qtsp_status h_enrol(qtsp_ra *ra, const qtsp_actor *who, const ra_call *req,
                           qtsp_http_resp *resp)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER, "enrolment"));
    json_t *in = NULL;
    TRY(parse_body(req, &in));
    char id[40];
    qtsp_status rc = qtsp_ra_enrol(ra, who, in, id);
    json_decref(in);
    TRY(rc);
    return reply(resp, 201, json_pack("{s:s}", "subject_id", id));
}

static qtsp_status h_issue(qtsp_ra *ra, const qtsp_actor *who, const char *subject_id,
                           const ra_call *req, qtsp_http_resp *resp)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER, "issuance"));
    json_t *in = NULL;
    TRY(parse_body(req, &in));
    static const char *const allowed[] = {NULL};
    qtsp_status rc = ra_check_fields(in, allowed);
    json_decref(in);
    TRY(rc);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    TRY(qtsp_ra_issue(ra, who, subject_id, &is));
    rc = reply(resp, 201,
               json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "serial", is.serial_hex, "certificate",
                         is.certificate_pem, "activation", "user_id", is.user_id, "password",
                         is.password, "otpauth_uri", is.otpauth_uri));
    qtsp_issued_cleanup(&is);
    return rc;
}

static qtsp_status h_lifecycle(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                               size_t slen, const char *action, const ra_call *req,
                               qtsp_http_resp *resp)
{
    /* role first: a wrong role is 403 whatever the body says */
    if (strcmp(action, "hold") == 0)
        TRY(ra_require_role(who, QTSP_ROLE_HOTLINE, "hold"));
    else if (strcmp(action, "release") == 0)
        TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "release"));
    else if (strcmp(action, "terminate") == 0)
        TRY(ra_require_role(who, QTSP_ROLE_OFFICE, "termination"));
    else
        FAIL(QTSP_ERR_NOT_FOUND, "no such action %s", action);
    json_t *in = NULL;
    TRY(parse_body(req, &in));
    qtsp_status rc = QTSP_OK;
    char t[32];
    if (strcmp(action, "hold") == 0) {
        static const char *const allowed[] = {"caller_verification", NULL};
        const char *v = NULL;
        TRY_OUT(ra_check_fields(in, allowed));
        TRY_OUT(get_string(in, "caller_verification", &v));
        time_t until = 0;
        TRY_OUT(qtsp_ra_hold(ra, who, serial, slen, v, &until));
        qtsp_format_rfc3339(until, t, sizeof t);
        rc = reply(resp, 200, json_pack("{s:s,s:s}", "status", "on-hold", "hold_until", t));
    } else if (strcmp(action, "release") == 0) {
        static const char *const allowed[] = {NULL};
        TRY_OUT(ra_check_fields(in, allowed));
        TRY_OUT(qtsp_ra_release(ra, who, serial, slen));
        rc = reply(resp, 200, json_pack("{s:s}", "status", "valid"));
    } else {
        static const char *const allowed[] = {"reason", "identity_check", "invalidity_date",
                                              NULL};
        const char *reason_s = NULL, *check = NULL, *inv_s = NULL;
        TRY_OUT(ra_check_fields(in, allowed));
        TRY_OUT(get_string(in, "reason", &reason_s));
        TRY_OUT(get_string(in, "identity_check", &check));
        int reason = -1; /* unknown names are refused by qtsp_ra_terminate with the list */
        if (qtsp_reason_parse(reason_s, &reason) != QTSP_OK) {
            qtsp_err_clear();
            reason = -1;
        }
        time_t inv = 0;
        if (json_object_get(in, "invalidity_date")) {
            TRY_OUT(get_string(in, "invalidity_date", &inv_s));
            struct tm tm;
            memset(&tm, 0, sizeof tm);
            const char *end = strptime(inv_s, "%Y-%m-%dT%H:%M:%SZ", &tm);
            ENSURE_OUT(end && *end == '\0', QTSP_ERR_INVALID,
                       "invalidity_date: RFC 3339 UTC, e.g. 2026-11-24T10:00:00Z");
            inv = (time_t)qtsp_timegm(&tm);
            /* strptime accepts 2026-02-30: formatting back must give the same text */
            char back[32];
            qtsp_format_rfc3339(inv, back, sizeof back);
            ENSURE_OUT(strcmp(back, inv_s) == 0, QTSP_ERR_INVALID,
                       "invalidity_date: %s is not a valid date and time", inv_s);
        }
        TRY_OUT(qtsp_ra_terminate(ra, who, serial, slen, reason, check, inv));
        rc = reply(resp, 200, json_pack("{s:s}", "status", "revoked"));
    }
out:
    json_decref(in);
    return rc;
}

static qtsp_status h_hotline(qtsp_ra *ra, const qtsp_actor *who, const ra_call *req,
                             qtsp_http_resp *resp)
{
    TRY(ra_require_role(who, QTSP_ROLE_HOTLINE, "hold"));
    json_t *in = NULL;
    TRY(parse_body(req, &in));
    qtsp_status rc = QTSP_OK;
    static const char *const allowed[] = {"national_id", "phone", "caller_verification", NULL};
    const char *nid = NULL, *phone = NULL, *v = NULL;
    json_t *held = NULL;
    time_t until = 0;
    TRY_OUT(ra_check_fields(in, allowed));
    TRY_OUT(get_string(in, "national_id", &nid));
    TRY_OUT(get_string(in, "phone", &phone));
    TRY_OUT(get_string(in, "caller_verification", &v));
    TRY_OUT(qtsp_ra_hotline_hold(ra, who, nid, phone, v, &held, &until));
    char t[32];
    qtsp_format_rfc3339(until, t, sizeof t);
    rc = reply(resp, 200, json_pack("{s:o,s:s}", "held", held, "hold_until", t));
out:
    json_decref(in);
    return rc;
}

/* One entry point for everything under /ra/v1/. */
static qtsp_status ra_handle(qtsp_ra *ra, const ra_call *req, qtsp_http_resp *resp)
{
    qtsp_actor who;
    TRY(authenticate(ra, req, &who));
    const char *p = req->path + strlen("/ra/v1/");
    int post = strcmp(req->method, "POST") == 0;
    int get = strcmp(req->method, "GET") == 0;

    if (strcmp(p, "subjects") == 0 && post)
        return h_enrol(ra, &who, req, resp);
    if (strcmp(p, "hotline/hold") == 0 && post)
        return h_hotline(ra, &who, req, resp);
    if (strncmp(p, "subjects/", 9) == 0) {
        const char *id = p + 9;
        const char *slash = strchr(id, '/');
        ENSURE(slash && strcmp(slash, "/certificates") == 0, QTSP_ERR_NOT_FOUND,
               "no such resource");
        char sid[40];
        size_t n = (size_t)(slash - id);
        ENSURE(n > 0 && n < sizeof sid, QTSP_ERR_NOT_FOUND, "no such subject");
        memcpy(sid, id, n);
        sid[n] = '\0';
        if (post)
            return h_issue(ra, &who, sid, req, resp);
        if (get) {
            json_t *o = NULL;
            TRY(qtsp_ra_subject_certs(ra, sid, &o));
            return reply(resp, 200, o);
        }
    }
    if (strncmp(p, "certificates/", 13) == 0) {
        const char *s = p + 13;
        const char *slash = strchr(s, '/');
        unsigned char serial[QTSP_SERIAL_MAX];
        size_t slen = 0;
        TRY(path_serial(s, slash ? (size_t)(slash - s) : strlen(s), serial, &slen));
        if (!slash && get) {
            json_t *o = NULL;
            TRY(qtsp_ra_cert_status(ra, serial, slen, &o));
            return reply(resp, 200, o);
        }
        if (slash && post && !strchr(slash + 1, '/'))
            return h_lifecycle(ra, &who, serial, slen, slash + 1, req, resp);
    }
    FAIL(QTSP_ERR_NOT_FOUND, "no such resource %s %s", req->method, req->path);
}

static void call_free(ra_call *c)
{
    if (c->auth) {
        OPENSSL_cleanse(c->auth, strlen(c->auth));
        free(c->auth);
    }
    free(c->ctype);
    if (c->body) {
        OPENSSL_cleanse(c->body, c->body_len);
        free(c->body);
    }
    memset(c, 0, sizeof *c);
}

static qtsp_status call_from(const qtsp_http_req *req, ra_call *c)
{
    memset(c, 0, sizeof *c);
    ENSURE(strlen(req->method) < sizeof c->method && strlen(req->path) < sizeof c->path,
           QTSP_ERR_NOT_FOUND, "no such resource");
    snprintf(c->method, sizeof c->method, "%s", req->method);
    snprintf(c->path, sizeof c->path, "%s", req->path);
    const char *h = qtsp_http_header(req, "Authorization");
    const char *t = qtsp_http_header(req, "Content-Type");
    c->auth = h ? strdup(h) : NULL;
    c->ctype = t ? strdup(t) : NULL;
    if (req->body_len) {
        c->body = malloc(req->body_len);
        if (c->body) {
            memcpy(c->body, req->body, req->body_len);
            c->body_len = req->body_len;
        }
    }
    if ((h && !c->auth) || (t && !c->ctype) || (req->body_len && !c->body)) {
        call_free(c);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    return QTSP_OK;
}

/* ---- RA worker pool ----------------------------------------------------
 * RA requests block on the token (key generation, signing), on durable
 * commits and on argon2id; on the HTTP worker threads (one per core, sized
 * for OCSP and TSA) they would stall everything else and cap issuance at
 * what two threads can wait for. So each RA request is deferred to a pool of
 * RA threads; the HTTP threads stay free. Without started workers (CLI,
 * tests) or when the queue is full, requests are handled on the spot. */

typedef struct worker_arg {
    qtsp_ra *ra;
    ra_pool *p;
} worker_arg;

typedef struct ra_job {
    ra_call call;
    qtsp_http_deferred *d;
} ra_job;

struct ra_pool {
    worker_arg arg; /* what every worker thread gets */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ra_job q[RA_QUEUE];
    size_t head, count;
    int stopping;
    pthread_t *threads;
    unsigned n;
};

static void *ra_worker(void *arg)
{
    qtsp_ra *ra = ((worker_arg *)arg)->ra;
    ra_pool *p = ((worker_arg *)arg)->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0)
            break; /* stopping and nothing left */
        ra_job job = p->q[p->head];
        p->head = (p->head + 1) % RA_QUEUE;
        p->count--;
        int stopping = p->stopping;
        pthread_mutex_unlock(&p->mu);
        qtsp_err_clear();
        qtsp_status rc;
        if (stopping) {
            /* shutting down: a request not yet started is not carried out
             * (its client may already have been told 503) */
            rc = qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__,
                              "the service is shutting down; try again");
        } else {
            rc = ra_handle(ra, &job.call, qtsp_http_deferred_resp(job.d));
        }
        qtsp_http_complete(job.d, rc);
        call_free(&job.call);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *ra_worker_arg(qtsp_ra *ra, ra_pool *p)
{
    p->arg.ra = ra;
    p->arg.p = p;
    return &p->arg;
}

qtsp_status qtsp_ra_start_workers(qtsp_ra *ra, unsigned n)
{
    ENSURE(!atomic_load(&ra->pool) && n > 0 && n <= 256, QTSP_ERR_INVALID,
           "bad RA worker count %u", n);
    ra_pool *p = calloc(1, sizeof *p);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory");
    p->threads = calloc(n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* workers receive the pool itself; the RA sees it only once they run
     * (published with release semantics, read with acquire in ra_dispatch) */
    for (; p->n < n; p->n++)
        if (pthread_create(&p->threads[p->n], NULL, ra_worker, ra_worker_arg(ra, p)) != 0)
            break;
    if (p->n == 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->threads);
        free(p);
        FAIL(QTSP_ERR_INTERNAL, "cannot start the RA workers");
    }
    atomic_store_explicit(&ra->pool, p, memory_order_release);
    return QTSP_OK;
}

void qtsp_ra_quiesce(qtsp_ra *ra)
{
    ra_pool *p = atomic_load_explicit(&ra->pool, memory_order_acquire);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void ra_pool_stop(qtsp_ra *ra)
{
    ra_pool *p = atomic_load_explicit(&ra->pool, memory_order_acquire);
    if (!p)
        return;
    qtsp_ra_quiesce(ra);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
    atomic_store(&ra->pool, NULL);
}

/* Route handler for everything under /ra/v1/. */
static qtsp_status ra_dispatch(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_ra *ra = ctx;
    ra_call call;
    TRY(call_from(req, &call));
    ra_pool *p = atomic_load_explicit(&ra->pool, memory_order_acquire);
    if (p) {
        pthread_mutex_lock(&p->mu);
        int stopping = p->stopping;
        int room = !stopping && p->count < RA_QUEUE;
        qtsp_http_deferred *d = room ? qtsp_http_defer(req) : NULL;
        if (d) {
            p->q[(p->head + p->count) % RA_QUEUE] = (ra_job){call, d};
            p->count++;
            pthread_cond_signal(&p->cv);
        }
        pthread_mutex_unlock(&p->mu);
        if (d)
            return QTSP_OK;
        if (stopping) {
            call_free(&call);
            FAIL(QTSP_ERR_UNAVAILABLE, "the service is shutting down; try again");
        }
    }
    qtsp_status rc = ra_handle(ra, &call, resp);
    call_free(&call);
    return rc;
}

size_t qtsp_ra_routes(qtsp_ra *ra, qtsp_route *routes, size_t cap)
{
    const qtsp_route r[] = {
        {"POST", "/ra/v1/", 1, RA_MAX_BODY, NULL, ra_dispatch, ra, "ra"},
        {"GET", "/ra/v1/", 1, 0, NULL, ra_dispatch, ra, "ra"},
    };
    size_t n = sizeof r / sizeof r[0];
    if (n > cap)
        n = cap;
    memcpy(routes, r, n * sizeof r[0]);
    return n;
}
