/* The JSON API layer over core/http.h: what every JSON service (the RA now,
 * remote signing and the portal next) would otherwise repeat. A service
 * declares a table of routes (method + path template with {parameters}),
 * gives an authentication hook and, optionally, its error shape; the layer
 * routes, authenticates, checks the route's roles, the media type, the
 * body's size and fields, runs the handler and shapes the errors. With
 * worker threads, requests are deferred to a bounded queue so that slow work
 * (argon2id, token key generation) never holds an HTTP worker.
 *
 * Order of the checks (each a JSON error, interface.md "Errors"):
 *   413 body over the route's limit (before anything is read or checked),
 *   401 authentication (also for unknown paths: the route table is not
 *       revealed to callers without credentials),
 *   404 no such path / 405 path known, other method (Allow header),
 *   403 role, then for body routes 400 Content-Type (must be
 *   application/json), 400 empty body, 400 broken JSON, 400 not an object,
 *   400 field not allowed (message names it), then the handler.
 * See docs/api.md. */
#ifndef QTSP_CORE_API_H
#define QTSP_CORE_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "core/err.h"
#include "core/http.h"
#include "core/json.h"

typedef struct qtsp_api qtsp_api;

/* Who calls, as the authentication hook establishes it. */
typedef struct qtsp_principal {
    char name[160]; /* as the audit log names it, e.g. "operator:alice" */
    unsigned roles; /* role bits; their meaning is the service's */
    char id[128];   /* the service's own identifier (operator id, credential, session) */
} qtsp_principal;

#define QTSP_API_MAX_PARAMS 4

/* A request as a handler sees it: copied from the HTTP request, so it stays
 * valid on a worker thread after the HTTP handler returned. Borrowed for
 * the handler's call. */
typedef struct qtsp_api_req {
    const char *method;
    const char *path;
    const qtsp_principal *who; /* NULL on public routes */
    json_t *body;              /* the parsed object on body routes, else NULL; borrowed */
    const unsigned char *raw;  /* the body as received (NULL when empty) */
    size_t raw_len;
    const void *internal;
    /* QTSP_API_BIG_STRINGS routes: the long strings of body, left in raw
     * (core/json.h qtsp_json_big_get); NULL on other routes */
    const qtsp_json_big *big;
} qtsp_api_req;

/* A path parameter by name ("serial" for "{serial}"), NUL-terminated and
 * percent-decoded as core/http decodes paths; NULL when the route has none
 * of that name. Never empty, never contains '/'. */
const char *qtsp_api_param(const qtsp_api_req *req, const char *name);
/* A query-string argument (percent-decoded; "" for "?flag"), NULL when
 * absent. */
const char *qtsp_api_query(const qtsp_api_req *req, const char *name);
/* For handlers that read the query string: QTSP_ERR_INVALID (400, naming
 * it) for an argument not in allowed (NULL-terminated), one given twice,
 * more than QTSP_API_MAX_QUERY, or a value over QTSP_API_QUERY_VALUE_MAX
 * bytes. Routes that do not call it ignore their query string. */
qtsp_status qtsp_api_query_allow(const qtsp_api_req *req, const char *const *allowed) QTSP_MUST_USE;
/* A request header the API copies (Authorization, Content-Type, Cookie and
 * qtsp_api_opts.headers), case-insensitive; NULL when absent. */
const char *qtsp_api_header(const qtsp_api_req *req, const char *name);
/* The token of "Authorization: Bearer <token>" (RFC 6750 2.1; scheme
 * case-insensitive, spaces after it skipped), NULL when the header is absent
 * or another scheme. Borrowed like qtsp_api_header. */
const char *qtsp_api_bearer(const qtsp_api_req *req);
/* 1 when the request came through TLS (qtsp_http_via_tls): cookies the
 * handler sets get Secure. */
int qtsp_api_via_tls(const qtsp_api_req *req);
/* A required string field of the body (qtsp_json_get_string): QTSP_ERR_INVALID
 * "<name>: missing", "<name>: must be a string", "... must not contain NUL".
 * *out borrowed for the handler's call. */
qtsp_status qtsp_api_string(const qtsp_api_req *req, const char *name,
                            const char **out) QTSP_MUST_USE;

/* A handler fills resp (qtsp_api_reply for JSON) or returns an error status,
 * which the layer answers in the API's error shape (core/http.h mapping:
 * INVALID 400, AUTH 401, FORBIDDEN 403, NOT_FOUND 404, EXISTS/STATE 409,
 * TOO_BIG 413, ...; message qtsp_err_what(), hidden for 500). */
typedef qtsp_status (*qtsp_api_fn)(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp);

enum {
    QTSP_API_PUBLIC = 1 << 0, /* no authentication: who is NULL */
    QTSP_API_BODY = 1 << 1,   /* requires an application/json object body */
    /* queued ahead of the other fast-lane requests (the hotline's hold) */
    QTSP_API_URGENT = 1 << 2,
    /* with QTSP_API_BODY: strings of QTSP_API_BIG_MIN bytes or more are not
     * copied by the JSON parser but left in the body (req->big), and the
     * route (a literal path) gets its own core/http route with its own
     * body limit, so the API's other routes keep theirs before any byte
     * is read (signDoc's documents) */
    QTSP_API_BIG_STRINGS = 1 << 3,
};

#define QTSP_API_BIG_MIN 4096

typedef struct qtsp_api_route {
    const char *method; /* "GET", "POST", ... (HEAD is answered like GET) */
    /* Absolute template: literal segments and whole-segment parameters,
     * e.g. "/ra/v1/certificates/{serial}/hold"; at most QTSP_API_MAX_PARAMS. */
    const char *path;
    unsigned flags;            /* QTSP_API_* */
    unsigned roles;            /* any of these bits; 0 = any authenticated caller */
    const char *what;          /* the action, for 403 "<what> is not allowed ..." */
    const char *const *fields; /* allowed body fields, NULL-terminated; NULL = not checked */
    /* bytes; 0 = the API's max_body on QTSP_API_BODY routes, no body on
     * others (core/http answers 413 for one) */
    size_t max_body;
    qtsp_api_fn fn;
} qtsp_api_route;

#define QTSP_API_MAX_QUERY 8
#define QTSP_API_QUERY_VALUE_MAX 1024

/* Establishes the caller from the request's headers (qtsp_api_header):
 * QTSP_OK with *out filled, or QTSP_ERR_AUTH with the message the client
 * gets (any other error is answered 401 "authentication failed" and logged).
 * Runs on a worker thread when the API has workers (may be slow). */
typedef qtsp_status (*qtsp_api_auth_fn)(void *ctx, const qtsp_api_req *req, qtsp_principal *out);

/* Fills resp with an error in the service's own shape (e.g. CSC API v2
 * {"error","error_description"}). status: the HTTP status already mapped;
 * rc: the failure; message: for the client (generic for 500). Must set
 * resp's status (qtsp_http_resp_set). The layer adds Allow to a 405. */
typedef qtsp_status (*qtsp_api_error_fn)(void *ctx, int status, qtsp_status rc, const char *message,
                                         qtsp_http_resp *resp);

typedef struct qtsp_api_opts {
    const char *prefix;           /* the paths it serves, e.g. "/ra/v1/" (ends with '/') */
    const char *name;             /* metrics label, e.g. "ra" */
    const qtsp_api_route *routes; /* borrowed: must outlive the API (a static table) */
    size_t n_routes;
    void *ctx;                  /* passed to handlers and hooks */
    qtsp_api_auth_fn auth;      /* NULL: every route must be public */
    qtsp_api_error_fn error;    /* NULL: the contract's {"error","message"} */
    const char *principal_kind; /* in the 403 message: "operator"; NULL "caller" */
    size_t max_body;            /* default route body limit; 0 = 16 KiB */
    size_t big_max_body;        /* QTSP_API_BIG_STRINGS routes without max_body; 0 = max_body */
    const char *const *headers; /* more request headers to copy, NULL-terminated */
    /* Worker pool (qtsp_api_start_workers): queue length (0 = 1024), and
     * what a full queue does: 0 = the request is handled on the HTTP thread
     * (the RA: nothing is refused under a burst), 1 = 503. */
    size_t queue;
    int reject_when_full;
    /* Optional slow lane, for requests whose authentication is slow by
     * design (argon2id of a token not verified recently, or a public login
     * route's password check; asked for every request): slow(ctx, req)
     * tells, cheaply on the HTTP thread (req has headers and params only),
     * whether this one will be. Slow requests wait in their own FIFO of
     * slow_queue entries (0 = 64; full: 503 at once, never run on the HTTP
     * thread); at most slow_workers (0 = 1) of them run at a time, so the
     * other workers stay free for the fast lane, which is always served
     * first; one whose client has gone, or that waited slow_wait_ms
     * (0 = 10 s), is dropped unrun (503). */
    int (*slow)(void *ctx, const qtsp_api_req *req);
    unsigned slow_workers;
    size_t slow_queue;
    unsigned slow_wait_ms;
} qtsp_api_opts;

/* Checks and copies the options (not the route table). QTSP_ERR_INVALID for
 * a malformed template, a route outside the prefix, a protected route
 * without auth hook. *out owned by the caller (qtsp_api_free). */
qtsp_status qtsp_api_new(const qtsp_api_opts *opts, qtsp_api **out) QTSP_MUST_USE;
/* Stops the workers (as qtsp_api_quiesce, then joins them: requests being
 * handled finish) and frees. Call after the HTTP server stopped. NULL ok. */
void qtsp_api_free(qtsp_api *api);

/* The core/http routes to register (one prefix route per method), written
 * to routes[0..cap-1]; returns how many. They point into api. */
size_t qtsp_api_http_routes(qtsp_api *api, qtsp_route *routes, size_t cap);

/* Lets the web portal's sessions (core/session.h) stand for credentials on
 * this API: a request without Authorization but with the session cookie
 * and the matching X-QTSP-CSRF header is authenticated as if it carried
 * "Authorization: Bearer <the session's token>", and its answer re-seals
 * the session (Set-Cookie) with the new activity time. A session that does
 * not open (idle, too old, forged) is 401 with the reason; one without the
 * CSRF token 403. ss (borrowed, must outlive the API) may be NULL: off.
 * Call before serving. */
typedef struct qtsp_sessions qtsp_sessions;
void qtsp_api_set_sessions(qtsp_api *api, const qtsp_sessions *ss);

/* Writes one line "METHOD PATH" for each route a core/http server started
 * with routes[0..n-1] answers: the prefix routes of an API
 * (qtsp_api_http_routes) expanded to the API's templates of that method,
 * other prefix routes as "PATH*", exact routes as they are, then core/http's
 * built-ins (GET). What `serve --routes` prints (docs/openapi.yaml's test).
 * QTSP_ERR_IO when f cannot be written. */
qtsp_status qtsp_api_list_routes(const qtsp_route *routes, size_t n, FILE *f) QTSP_MUST_USE;

/* Starts n worker threads (1..256); requests are then deferred to them.
 * Once only. QTSP_ERR_INTERNAL when no thread starts. */
qtsp_status qtsp_api_start_workers(qtsp_api *api, unsigned n) QTSP_MUST_USE;
/* First step of shutdown, before the HTTP server stops: queued requests
 * not yet started are answered 503 and never carried out, new ones get 503;
 * those running finish. Thread-safe; NULL ok. */
void qtsp_api_quiesce(qtsp_api *api);

/* Prometheus text: qtsp_api_queued{lane}, qtsp_api_slow_total,
 * qtsp_api_busy_total, qtsp_api_dropped_total (this process). Thread-safe. */
qtsp_status qtsp_api_metrics(qtsp_api *api, qtsp_buf *out) QTSP_MUST_USE;

/* Serialises o (stolen; NULL is QTSP_ERR_NOMEM) into resp with status as
 * application/json. The text is wiped after copying (it may hold secrets). */
qtsp_status qtsp_api_reply(qtsp_http_resp *resp, int status, json_t *o) QTSP_MUST_USE;

#endif
