/* Unit tests for core/api.c (the JSON API layer) over a real server on
 * loopback: routing with path parameters, the order of the checks, limits,
 * the worker pool and a service's own error shape. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/api.h"
#include "core/http.h"
#include "tests/lib/qtest.h"

/* ---- a minimal client (one request per connection) -------------------- */

typedef struct reply {
    int status;
    char head[4096];
    char body[8192];
} reply;

static int send_req(unsigned port, const char *method, const char *path, const char *auth,
                    const char *ctype, const char *body)
{
    int fd = qtest_connect(port, 10);
    if (fd < 0)
        return -1;
    char req[16384];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n", method,
                     path);
    if (auth)
        n += snprintf(req + n, sizeof req - (size_t)n, "Authorization: Bearer %s\r\n", auth);
    if (ctype)
        n += snprintf(req + n, sizeof req - (size_t)n, "Content-Type: %s\r\n", ctype);
    if (body)
        n += snprintf(req + n, sizeof req - (size_t)n, "Content-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    else
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

static int read_reply(int fd, reply *r)
{
    char buf[16384];
    size_t len = 0;
    ssize_t got;
    while (len + 1 < sizeof buf && (got = recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    memset(r, 0, sizeof *r);
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    size_t hl = (size_t)(sep - buf);
    snprintf(r->head, sizeof r->head, "%.*s", (int)hl, buf);
    snprintf(r->body, sizeof r->body, "%s", sep + 4);
    return 0;
}

static reply R;

static int call(unsigned port, const char *method, const char *path, const char *auth,
                const char *ctype, const char *body)
{
    int fd = send_req(port, method, path, auth, ctype, body);
    return fd < 0 ? -1 : read_reply(fd, &R);
}

static int body_has(const char *s)
{
    return strstr(R.body, s) != NULL;
}
static int head_has(const char *s)
{
    return strstr(R.head, s) != NULL;
}

/* ---- the test service ---------------------------------------------------- */

#define ROLE_WRITER 1u
#define ROLE_ADMIN 2u

static qtsp_status auth_hook(void *ctx, const qtsp_api_req *req, qtsp_principal *out)
{
    const char *h = qtsp_api_header(req, "Authorization");
    ENSURE(h && strncmp(h, "Bearer ", 7) == 0, QTSP_ERR_AUTH, "no token");
    if (strcmp(h + 7, "writer") == 0) {
        snprintf(out->name, sizeof out->name, "test:writer");
        out->roles = ROLE_WRITER;
        return QTSP_OK;
    }
    if (strcmp(h + 7, "reader") == 0 || strcmp(h + 7, "slowreader") == 0) {
        snprintf(out->name, sizeof out->name, "test:reader");
        out->roles = 0;
        return QTSP_OK;
    }
    ENSURE(strcmp(h + 7, "broken") != 0, QTSP_ERR_STORE, "token store unreadable");
    FAIL(QTSP_ERR_AUTH, "unknown token");
}

static qtsp_status h_params(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    return qtsp_api_reply(resp, 200,
                          json_pack("{s:s,s:s,s:s}", "id", qtsp_api_param(req, "id"), "part",
                                    qtsp_api_param(req, "part"), "who", req->who->name));
}

static qtsp_status h_create(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *name = NULL;
    TRY(qtsp_api_string(req, "name", &name));
    return qtsp_api_reply(resp, 201, json_pack("{s:s}", "created", name));
}

static qtsp_status h_public(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    return qtsp_api_reply(resp, 200, json_pack("{s:b}", "anonymous", req->who == NULL));
}

static qtsp_status h_fail(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_http_resp_header(resp, "X-Partial", "dropped on error"));
    FAIL(QTSP_ERR_STATE, "not in this state");
}

/* /slow waits for the gate: it holds a worker as long as the test wants */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_open;
static atomic_int g_slow_running;

static qtsp_status h_slow(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    atomic_fetch_add(&g_slow_running, 1);
    pthread_mutex_lock(&g_mu);
    while (!g_open)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    return qtsp_api_reply(resp, 200, json_pack("{s:s}", "slow", "done"));
}

static void gate(int open)
{
    pthread_mutex_lock(&g_mu);
    g_open = open;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static const char *const k_create_fields[] = {"name", NULL};

static qtsp_status h_query(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    static const char *const allowed[] = {"a", "b", NULL};
    TRY(qtsp_api_query_allow(req, allowed));
    const char *a = qtsp_api_query(req, "a");
    return qtsp_api_reply(resp, 200, json_pack("{s:s}", "a", a ? a : "(none)"));
}

/* the slow lane's classifier: the token "slowreader" is slow to check */
static int slow_hook(void *ctx, const qtsp_api_req *req)
{
    const char *h = qtsp_api_header(req, "Authorization");
    return h && strcmp(h, "Bearer slowreader") == 0;
}

static const qtsp_api_route k_routes[] = {
    {"GET", "/t/v1/items/{id}/parts/{part}", 0, 0, NULL, NULL, 0, h_params},
    {"POST", "/t/v1/items", QTSP_API_BODY, ROLE_WRITER | ROLE_ADMIN, "creation", k_create_fields, 0,
     h_create},
    {"POST", "/t/v1/small", QTSP_API_BODY, ROLE_WRITER, "small", NULL, 32, h_create},
    {"GET", "/t/v1/public", QTSP_API_PUBLIC, 0, NULL, NULL, 0, h_public},
    {"GET", "/t/v1/fail", 0, 0, NULL, NULL, 0, h_fail},
    {"GET", "/t/v1/slow", 0, 0, NULL, NULL, 0, h_slow},
    {"GET", "/t/v1/query", 0, 0, NULL, NULL, 0, h_query},
};

/* CSC API v2 style (CSC 11.1): {"error","error_description"}. */
static qtsp_status csc_error(void *ctx, int status, qtsp_status rc, const char *message,
                             qtsp_http_resp *resp)
{
    const char *code = status == 401   ? "invalid_token"
                       : status == 404 ? "invalid_request"
                                       : "invalid_request";
    json_t *o = json_pack("{s:s,s:s}", "error", code, "error_description", message);
    return qtsp_api_reply(resp, status, o);
}

typedef struct fixture {
    qtsp_api *api;
    qtsp_http_server *srv;
    unsigned port;
} fixture;

static void up(fixture *f, const qtsp_api_opts *extra, unsigned workers)
{
    qtsp_api_opts o = {
        .prefix = "/t/v1/",
        .name = "t",
        .routes = k_routes,
        .n_routes = sizeof k_routes / sizeof k_routes[0],
        .auth = auth_hook,
        .principal_kind = "tester",
        .max_body = 1024,
    };
    if (extra) {
        o.error = extra->error;
        o.queue = extra->queue;
        o.reject_when_full = extra->reject_when_full;
        o.slow = extra->slow;
        o.slow_workers = extra->slow_workers;
        o.slow_queue = extra->slow_queue;
        o.slow_wait_ms = extra->slow_wait_ms;
    }
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_api_new(&o, &f->api), QTSP_OK);
    if (workers)
        CU_ASSERT_EQUAL_FATAL(qtsp_api_start_workers(f->api, workers), QTSP_OK);
    qtsp_route routes[8];
    size_t n = qtsp_api_http_routes(f->api, routes, 8);
    CU_ASSERT_EQUAL(n, 2); /* GET and POST */
    qtsp_http_opts ho = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 10};
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&ho, routes, n, NULL, NULL, &f->srv), QTSP_OK);
    f->port = qtsp_http_port(f->srv);
}

static void down(fixture *f)
{
    qtsp_api_quiesce(f->api);
    qtsp_http_stop(f->srv);
    qtsp_api_free(f->api);
    qtsp_err_clear();
}

/* ---- tests ------------------------------------------------------------- */

static void test_api_path_parameters_reach_the_handler(void)
{
    fixture f;
    up(&f, NULL, 0);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items/abc/parts/42", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT(body_has("\"id\":\"abc\""));
    CU_ASSERT(body_has("\"part\":\"42\""));
    CU_ASSERT(body_has("\"who\":\"test:reader\""));
    /* a parameter is one whole, non-empty segment */
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items//parts/42", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 404);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items/a/b/parts/42", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 404);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items/abc/parts/42/x", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 404);
    down(&f);
}

static void test_api_unknown_route_is_404_after_authentication(void)
{
    fixture f;
    up(&f, NULL, 0);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/nothing", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 404);
    CU_ASSERT(body_has("\"error\":\"not_found\""));
    CU_ASSERT(body_has("no such resource GET /t/v1/nothing"));
    /* without credentials the route table is not revealed */
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/nothing", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 401);
    down(&f);
}

static void test_api_wrong_method_is_405_with_allow(void)
{
    fixture f;
    up(&f, NULL, 0);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 405);
    CU_ASSERT(body_has("\"error\":\"method_not_allowed\""));
    CU_ASSERT(head_has("Allow: POST"));
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/public", NULL, "application/json", "{}"), 0);
    CU_ASSERT_EQUAL(R.status, 401); /* not public for POST: authentication first */
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/public", "reader", "application/json", "{}"), 0);
    CU_ASSERT_EQUAL(R.status, 405);
    CU_ASSERT(head_has("Allow: GET"));
    down(&f);
}

static void test_api_checks_401_then_403_then_media_type_then_body(void)
{
    fixture f;
    up(&f, NULL, 0);
    unsigned p = f.port;
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", NULL, "text/plain", "x"), 0);
    CU_ASSERT_EQUAL(R.status, 401);
    CU_ASSERT(body_has("\"error\":\"unauthenticated\",\"message\":\"no token\""));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "nope", "text/plain", "x"), 0);
    CU_ASSERT_EQUAL(R.status, 401);
    CU_ASSERT(body_has("unknown token"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "reader", "text/plain", "x"), 0);
    CU_ASSERT_EQUAL(R.status, 403);
    CU_ASSERT(body_has("creation is not allowed for this tester's role"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "text/plain", "{}"), 0);
    CU_ASSERT_EQUAL(R.status, 415); /* defect 15.8: was 400 */
    CU_ASSERT(body_has("\"error\":\"unsupported_media\""));
    CU_ASSERT(body_has("Content-Type must be application/json"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "application/json", NULL), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("body: a JSON object is required"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "application/json", "{\"name\":"), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("body: invalid JSON"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "application/json", "[1]"), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("body: must be a JSON object"));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "Application/JSON; charset=utf-8",
                         "{\"name\":\"a\"}"),
                    0);
    CU_ASSERT_EQUAL(R.status, 201);
    CU_ASSERT(body_has("\"created\":\"a\""));
    CU_ASSERT_EQUAL(call(p, "POST", "/t/v1/items", "writer", "application/json", "{\"name\":7}"),
                    0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("name: must be a string"));
    /* a failing authentication hook is a 401, its detail stays in the log */
    CU_ASSERT_EQUAL(call(p, "GET", "/t/v1/items/a/parts/b", "broken", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 401);
    CU_ASSERT(body_has("authentication failed"));
    CU_ASSERT(!body_has("unreadable"));
    down(&f);
}

static void test_api_unknown_field_is_rejected_naming_it(void)
{
    fixture f;
    up(&f, NULL, 0);
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/items", "writer", "application/json",
                         "{\"name\":\"a\",\"shoe_size\":42}"),
                    0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("\"error\":\"invalid\""));
    CU_ASSERT(body_has("shoe_size: unknown field"));
    down(&f);
}

static void test_api_body_over_the_route_limit_is_413_first(void)
{
    fixture f;
    up(&f, NULL, 0);
    char big[64];
    memset(big, 'a', sizeof big);
    snprintf(big, sizeof big, "{\"name\":\"%040d\"}", 0); /* 51 bytes > 32 */
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/small", NULL, "text/plain", big), 0);
    CU_ASSERT_EQUAL(R.status, 413);
    CU_ASSERT(body_has("\"error\":\"too_big\""));
    CU_ASSERT_EQUAL(
        call(f.port, "POST", "/t/v1/small", "writer", "application/json", "{\"name\":\"short\"}"),
        0);
    CU_ASSERT_EQUAL(R.status, 201);
    /* past the API's largest limit core/http refuses before reading */
    static char huge[2048];
    memset(huge, 'x', sizeof huge - 1);
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/items", "writer", "application/json", huge), 0);
    CU_ASSERT_EQUAL(R.status, 413);
    down(&f);
}

static void test_api_public_route_needs_no_credentials(void)
{
    fixture f;
    up(&f, NULL, 0);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/public", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT(body_has("\"anonymous\":true"));
    down(&f);
}

static void test_api_handler_error_drops_partial_response(void)
{
    fixture f;
    up(&f, NULL, 1);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/fail", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 409);
    CU_ASSERT(body_has("{\"error\":\"conflict\",\"message\":\"not in this state\"}"));
    CU_ASSERT(!head_has("X-Partial"));
    down(&f);
}

static void test_api_custom_error_shape(void)
{
    fixture f;
    qtsp_api_opts e = {.error = csc_error};
    up(&f, &e, 1);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/nothing", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 401);
    CU_ASSERT(body_has("{\"error\":\"invalid_token\",\"error_description\":\"no token\"}"));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/nothing", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 404);
    CU_ASSERT(body_has("\"error_description\":\"no such resource GET /t/v1/nothing\""));
    CU_ASSERT(!body_has("\"message\""));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 405);
    CU_ASSERT(head_has("Allow: POST"));
    CU_ASSERT(body_has("\"error_description\""));
    CU_ASSERT_EQUAL(call(f.port, "POST", "/t/v1/small", "writer", "application/json",
                         "{\"name\":\"0123456789012345678901234567\"}"),
                    0);
    CU_ASSERT_EQUAL(R.status, 413);
    CU_ASSERT(body_has("\"error_description\":\"request body too large\""));
    down(&f);
}

static void wait_running(int n)
{
    for (int i = 0; i < 1000 && atomic_load(&g_slow_running) < n; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT_EQUAL(atomic_load(&g_slow_running), n);
}

static void test_api_full_worker_queue_is_503(void)
{
    fixture f;
    qtsp_api_opts e = {.queue = 1, .reject_when_full = 1};
    up(&f, &e, 1);
    gate(0);
    atomic_store(&g_slow_running, 0);
    int a = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL);
    wait_running(1); /* the one worker holds a */
    int b = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000}; /* b reaches the queue */
    nanosleep(&ts, NULL);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/public", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 503);
    CU_ASSERT(body_has("\"error\":\"unavailable\""));
    CU_ASSERT(body_has("busy"));
    gate(1);
    CU_ASSERT_EQUAL(read_reply(a, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT_EQUAL(read_reply(b, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT_EQUAL(atomic_load(&g_slow_running), 2);
    down(&f);
}

static void test_api_full_queue_falls_back_to_the_http_thread(void)
{
    fixture f;
    qtsp_api_opts e = {.queue = 1, .reject_when_full = 0};
    up(&f, &e, 1);
    gate(0);
    atomic_store(&g_slow_running, 0);
    int a = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL);
    wait_running(1);
    int b = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/public", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 200); /* handled on the spot */
    gate(1);
    CU_ASSERT_EQUAL(read_reply(a, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT_EQUAL(read_reply(b, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    down(&f);
}

/* Issue 15 defect 3: requests whose authentication is slow wait in their
 * own bounded lane, run one at a time, never hold the other workers, and
 * are dropped unrun when their client has left. */
static void test_api_slow_lane_leaves_the_fast_lane_free(void)
{
    fixture f;
    qtsp_api_opts e = {.slow = slow_hook, .slow_workers = 1, .slow_queue = 1};
    up(&f, &e, 3);
    gate(0);
    atomic_store(&g_slow_running, 0);
    int a = send_req(f.port, "GET", "/t/v1/slow", "slowreader", NULL, NULL);
    wait_running(1); /* the slow lane's one runner holds a */
    int b = send_req(f.port, "GET", "/t/v1/slow", "slowreader", NULL, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000}; /* b waits in the slow lane */
    nanosleep(&ts, NULL);
    CU_ASSERT_EQUAL(atomic_load(&g_slow_running), 1);
    /* the slow lane is full: 503 at once */
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/slow", "slowreader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 503);
    CU_ASSERT(body_has("busy"));
    /* the fast lane is served meanwhile, by the other workers */
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/items/7/parts/x", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    /* b's client leaves: b is dropped, never run */
    close(b);
    nanosleep(&ts, NULL);
    gate(1);
    CU_ASSERT_EQUAL(read_reply(a, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    for (int i = 0; i < 100; i++) {
        qtsp_buf m;
        qtsp_buf_init(&m, 8192);
        CU_ASSERT_EQUAL(qtsp_api_metrics(f.api, &m), QTSP_OK);
        int dropped = strstr(qtsp_buf_str(&m), "qtsp_api_dropped_total{api=\"t\"} 1") != NULL;
        qtsp_buf_cleanup(&m);
        if (dropped)
            break;
        nanosleep(&ts, NULL);
    }
    qtsp_buf m;
    qtsp_buf_init(&m, 8192);
    CU_ASSERT_EQUAL(qtsp_api_metrics(f.api, &m), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_api_dropped_total{api=\"t\"} 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_api_busy_total{api=\"t\"} 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_api_slow_total{api=\"t\"} 2"));
    qtsp_buf_cleanup(&m);
    CU_ASSERT_EQUAL(atomic_load(&g_slow_running), 1); /* b never ran */
    down(&f);
}

static void test_api_query_arguments_are_checked_by_name(void)
{
    fixture f;
    up(&f, NULL, 1);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/query?a=x%20y", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 200);
    CU_ASSERT(body_has("\"a\":\"x y\""));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/query", "reader", NULL, NULL), 0);
    CU_ASSERT(body_has("(none)"));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/query?a=1&c=2", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("c: not allowed"));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/query?a=1&a=2", "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("more than once"));
    char path[1400] = "/t/v1/query?a=";
    memset(path + strlen(path), 'x', 1100);
    CU_ASSERT_EQUAL(call(f.port, "GET", path, "reader", NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 400);
    CU_ASSERT(body_has("too long"));
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/query?a=1&c=2", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 401); /* authentication first */
    down(&f);
}

static void test_api_quiesced_requests_are_503_and_not_carried_out(void)
{
    fixture f;
    up(&f, NULL, 1);
    gate(0);
    atomic_store(&g_slow_running, 0);
    int a = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL);
    wait_running(1);
    int b = send_req(f.port, "GET", "/t/v1/slow", "reader", NULL, NULL); /* queued */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    qtsp_api_quiesce(f.api);
    CU_ASSERT_EQUAL(call(f.port, "GET", "/t/v1/public", NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(R.status, 503);
    CU_ASSERT(body_has("shutting down"));
    gate(1);
    CU_ASSERT_EQUAL(read_reply(a, &R), 0);
    CU_ASSERT_EQUAL(R.status, 200); /* the running one finishes */
    CU_ASSERT_EQUAL(read_reply(b, &R), 0);
    CU_ASSERT_EQUAL(R.status, 503);
    CU_ASSERT_EQUAL(atomic_load(&g_slow_running), 1);
    down(&f);
}

static qtsp_status h_plain(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    return qtsp_http_resp_set(resp, 200, "text/plain", "x", 1);
}

/* serve --routes: API prefix routes expanded to templates, others as they
 * are (a prefix with "*"), then the built-ins */
static void test_api_list_routes_expands_templates_and_marks_prefixes(void)
{
    fixture f;
    up(&f, NULL, 0);
    qtsp_route routes[8];
    size_t n = qtsp_api_http_routes(f.api, routes, 8);
    routes[n++] = (qtsp_route){"GET", "/ocsp/", 1, 0, NULL, h_plain, NULL, "p"};
    routes[n++] = (qtsp_route){"POST", "/tsa", 0, 10, NULL, h_plain, NULL, "e"};
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(qtsp_api_list_routes(routes, n, m), QTSP_OK);
    fclose(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "GET /t/v1/items/{id}/parts/{part}\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "POST /t/v1/items\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "POST /t/v1/small\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "GET /t/v1/slow\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "GET /ocsp/*\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "POST /tsa\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "GET /health\nGET /metrics\n"));
    /* the API's own prefix route is never listed as such */
    CU_ASSERT_PTR_NULL(strstr(text, "/t/v1/*"));
    CU_ASSERT_PTR_NULL(strstr(text, "GET /t/v1/items\n")); /* POST only */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    /* the table's routes, the 2 others, the 2 built-ins */
    CU_ASSERT_EQUAL(lines, sizeof k_routes / sizeof k_routes[0] + 2 + 2);
    free(text);
    down(&f);
}

static void test_api_new_rejects_malformed_tables(void)
{
    static const qtsp_api_route bad[][1] = {
        {{"GET", "/t/v1/{id", 0, 0, NULL, NULL, 0, h_public}},
        {{"GET", "/t/v1/x{id}", 0, 0, NULL, NULL, 0, h_public}},
        {{"GET", "/t/v1/{}", 0, 0, NULL, NULL, 0, h_public}},
        {{"GET", "/other/x", 0, 0, NULL, NULL, 0, h_public}},
        {{"GET", "/t/v1/x", 0, 0, NULL, NULL, 0, NULL}},
        {{"GET", "/t/v1/{a}/{b}/{c}/{d}/{e}", 0, 0, NULL, NULL, 0, h_public}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_api_opts o = {
            .prefix = "/t/v1/", .name = "t", .routes = bad[i], .n_routes = 1, .auth = auth_hook};
        qtsp_api *api = NULL;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_api_new(&o, &api), QTSP_ERR_INVALID);
        CU_ASSERT_PTR_NULL(api);
    }
    /* a protected route needs a hook */
    qtsp_api_opts o = {.prefix = "/t/v1/", .name = "t", .routes = k_routes, .n_routes = 1};
    qtsp_api *api = NULL;
    CU_ASSERT_EQUAL(qtsp_api_new(&o, &api), QTSP_ERR_INVALID);
    o.prefix = "/t/v1"; /* must end with '/' */
    o.auth = auth_hook;
    CU_ASSERT_EQUAL(qtsp_api_new(&o, &api), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_api_path_parameters_reach_the_handler),
        QTEST(test_api_unknown_route_is_404_after_authentication),
        QTEST(test_api_wrong_method_is_405_with_allow),
        QTEST(test_api_checks_401_then_403_then_media_type_then_body),
        QTEST(test_api_unknown_field_is_rejected_naming_it),
        QTEST(test_api_body_over_the_route_limit_is_413_first),
        QTEST(test_api_public_route_needs_no_credentials),
        QTEST(test_api_handler_error_drops_partial_response),
        QTEST(test_api_custom_error_shape),
        QTEST(test_api_full_worker_queue_is_503),
        QTEST(test_api_full_queue_falls_back_to_the_http_thread),
        QTEST(test_api_quiesced_requests_are_503_and_not_carried_out),
        QTEST(test_api_slow_lane_leaves_the_fast_lane_free),
        QTEST(test_api_query_arguments_are_checked_by_name),
        QTEST(test_api_new_rejects_malformed_tables),
        QTEST(test_api_list_routes_expands_templates_and_marks_prefixes),
    };
    return qtest_run("api", cases, sizeof cases / sizeof cases[0]);
}
