/* The fast lane (core/http_lane.c): every test of test_http.c again with
 * the lane serving POST /echo and POST /defer (and MHD the rest, handed
 * over by the lane), then what only the lane does: hand-off cases,
 * pipelining, a request in pieces, partial writes, a client gone while its
 * request waits, timeouts and limits. Real sockets on 127.0.0.1. */
#define TEST_HTTP_LANE 1
#define TEST_HTTP_NO_MAIN 1
#include "test_http.c"

#include <poll.h>

#include "core/log.h"

static const char k_tsq[] = "application/timestamp-query";

/* A POST /echo request on an open connection. */
static int send_echo(int fd, const char *body)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     k_tsq, strlen(body), body);
    return send_all(fd, req, (size_t)n);
}

/* 1 when the server closes fd within ms (end of stream or a reset). */
static int closed_within(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    char b;
    return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

static long long lane_served(qtsp_http_server *srv)
{
    return metric(srv, "qtsp_http_lane_requests_total");
}

static long long lane_handoffs(qtsp_http_server *srv)
{
    return metric(srv, "qtsp_http_lane_handoffs_total");
}

static void test_lane_serves_simple_posts_and_hands_the_rest_to_mhd(void)
{
    qtsp_http_server *srv = start();
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(send_echo(fd, "abc"), 0);
        CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
        CU_ASSERT_EQUAL(R.status, 200);
        CU_ASSERT(body_is(&R, "abc"));
    }
    char v[128];
    CU_ASSERT(header_of(&R, "Date", v, sizeof v) && strstr(v, " GMT"));
    CU_ASSERT(header_of(&R, "X-Request-Id", v, sizeof v) && is_hex16(v));
    CU_ASSERT(header_of(&R, "Content-Type", v, sizeof v) &&
              strcmp(v, "application/octet-stream") == 0);
    CU_ASSERT_PTR_NULL(header_of(&R, "Connection", v, sizeof v)); /* kept alive */
    CU_ASSERT_EQUAL(lane_served(srv), 2);
    CU_ASSERT_EQUAL(lane_handoffs(srv), 0);
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_requests_total{route=\"echo\",status=\"200\"}"), 2);
    /* a GET on the same connection: MHD answers it, and the rest */
    static const char g[] = "GET /exact HTTP/1.1\r\nHost: t\r\n\r\n";
    CU_ASSERT_EQUAL(send_all(fd, g, sizeof g - 1), 0);
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "exact"));
    CU_ASSERT_EQUAL(lane_handoffs(srv), 1);
    CU_ASSERT_EQUAL(send_echo(fd, "after"), 0);
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "after"));
    CU_ASSERT_EQUAL(lane_served(srv), 2); /* that one was MHD's */
    close(fd);
    qtsp_http_stop(srv);
}

/* What the lane does not parse whole goes to MHD unread, which answers as
 * it always did. */
static void test_lane_hands_off_what_it_does_not_serve(void)
{
    static const struct {
        const char *req;
        int status;
        const char *body; /* expected body, or NULL */
    } cases[] = {
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
         "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         200, "abc"},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
         "Content-Length: 8193\r\n\r\n",
         413, NULL},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
         "abc",
         415, NULL},
        {"POST /echo HTTP/1.1\r\nContent-Type: application/timestamp-query\r\n"
         "Content-Length: 3\r\n\r\nabc",
         200, "abc"}, /* no Host: MHD 0.9.75 serves it */
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
         "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
         400, NULL},
        {"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
         "Content-Length: 3\r\n\r\nabc",
         200, "abc"},
        {"POST /%65cho HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
         "Content-Length: 3\r\n\r\nabc",
         200, "abc"},
        {"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", 405, NULL},
        {"POST /exact HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405, NULL},
    };
    qtsp_http_server *srv = start();
    unsigned port = qtsp_http_port(srv);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(roundtrip(port, cases[i].req, strlen(cases[i].req), &R), 0);
        CU_ASSERT_EQUAL(R.status, cases[i].status);
        if (R.status != cases[i].status)
            fprintf(stderr, "case %zu: %d\n", i, R.status);
        if (cases[i].body)
            CU_ASSERT(body_is(&R, cases[i].body));
    }
    CU_ASSERT_EQUAL(lane_served(srv), 0);
    CU_ASSERT_EQUAL(lane_handoffs(srv), (long long)(sizeof cases / sizeof cases[0]));
    qtsp_http_stop(srv);
}

/* Three requests in one write: the lane reads the next only once the one
 * before is answered, so they are answered in order. */
static void test_lane_pipelined_requests_are_answered_in_order(void)
{
    pending_reset();
    qtsp_http_server *srv = start();
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    char req[1024];
    size_t n = 0;
    for (int i = 1; i <= 3; i++)
        n += (size_t)snprintf(req + n, sizeof req - n,
                              "POST /defer HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 2\r\n\r\np%d",
                              i);
    CU_ASSERT_EQUAL(send_all(fd, req, n), 0);
    for (int i = 1; i <= 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "done:p%d", i);
        CU_ASSERT_FATAL(pending_wait(1));
        usleep(50000);
        CU_ASSERT_EQUAL(pending_count(), 1); /* the next one is not read yet */
        CU_ASSERT(answer_oldest(fd, want));
    }
    CU_ASSERT_EQUAL(lane_served(srv), 3);
    close(fd);
    qtsp_http_stop(srv);
}

/* A request arriving in pieces is served by the lane once whole. */
static void test_lane_request_in_pieces_is_served_when_whole(void)
{
    qtsp_http_server *srv = start();
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    static const char *const parts[] = {"PO",
                                        "ST /ec",
                                        "ho HTTP/1.1\r\nHo",
                                        "st: t\r\nContent-Type: application/timestamp-query\r\n",
                                        "Content-Length: 5\r\n\r\nab",
                                        "cde"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        CU_ASSERT_EQUAL(send_all(fd, parts[i], strlen(parts[i])), 0);
        usleep(20000);
    }
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "abcde"));
    CU_ASSERT_EQUAL(lane_served(srv), 1);
    CU_ASSERT_EQUAL(lane_handoffs(srv), 0);
    close(fd);
    qtsp_http_stop(srv);
}

/* The owner learns that the client left; completing afterwards is safe,
 * and the connection is gone from the lane. */
static void test_lane_client_gone_while_its_request_waits(void)
{
    pending_reset();
    qtsp_http_server *srv = start();
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(defer_one(fd, "bye"));
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_connections"), 1);
    pending p;
    CU_ASSERT_FATAL(pending_take(&p));
    CU_ASSERT_EQUAL(qtsp_http_deferred_gone(p.d), 0);
    close(fd);
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = qtsp_http_deferred_gone(p.d);
        usleep(10000);
    }
    CU_ASSERT(gone);
    complete_echo(&p);
    long long open = 1;
    for (int i = 0; i < 200 && open != 0; i++) {
        usleep(10000);
        open = metric(srv, "qtsp_http_lane_connections");
    }
    CU_ASSERT_EQUAL(open, 0);
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_connections_open"), 0);
    qtsp_http_stop(srv);
}

/* ---- a lane server of its own: large answers, timeouts, limits --------- */

#define BIG_ANSWER ((size_t)8 * 1024 * 1024)
static unsigned char *g_big;

/* g_big outlives every answer: its owner has nothing to free. */
static void keep_big(void *p)
{
    (void)p;
}

/* Answers BIG_ANSWER bytes (zero copy), after a deferral when the body
 * says "defer". */
static qtsp_status h_big(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    (void)ctx;
    qtsp_http_resp *r = resp;
    qtsp_http_deferred *d = NULL;
    if (req->body_len == 5 && memcmp(req->body, "defer", 5) == 0) {
        d = qtsp_http_defer(req);
        if (d == NULL)
            FAIL(QTSP_ERR_INTERNAL, "cannot defer");
        r = qtsp_http_deferred_resp(d);
    }
    memcpy(r->content_type, "application/octet-stream", sizeof "application/octet-stream");
    r->ext_body = g_big;
    r->ext_len = BIG_ANSWER;
    r->free_fn = keep_big; /* owned: the lane may write it after this returns */
    if (d)
        qtsp_http_complete(d, QTSP_OK); /* from the lane thread: posted */
    return QTSP_OK;
}

static const qtsp_route k_lane_routes[] = {
    {"POST", "/echo", 0, 8192, "application/timestamp-query", h_echo, NULL, "echo"},
    {"POST", "/big", 0, 64, "text/plain", h_big, NULL, "big"},
    {"GET", "/exact", 0, 0, NULL, h_name, "exact", "exact"},
};

static qtsp_http_server *start_lane(unsigned timeout_s, size_t max_conn, size_t per_address)
{
    static const char *const fast[] = {"echo", "big", NULL};
    qtsp_http_opts o = {.listen = "127.0.0.1:0",
                        .workers = 1,
                        .conn_timeout_s = timeout_s,
                        .max_connections = max_conn,
                        .per_address = per_address,
                        .fast_routes = fast};
    qtsp_http_server *srv = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&o, k_lane_routes,
                                          sizeof k_lane_routes / sizeof k_lane_routes[0], NULL,
                                          NULL, &srv),
                          QTSP_OK);
    return srv;
}

/* Reads one answer of BIG_ANSWER bytes and checks them. */
static int read_big(int fd)
{
    char head[2048];
    size_t hl = 0;
    while (hl + 1 < sizeof head) {
        if (recv(fd, head + hl, 1, 0) != 1)
            return 0;
        hl++;
        if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[hl] = '\0';
    char want[64];
    snprintf(want, sizeof want, "Content-Length: %zu\r\n", BIG_ANSWER);
    if (strncmp(head, "HTTP/1.1 200 ", 13) != 0 || !strstr(head, want))
        return 0;
    static unsigned char got[BIG_ANSWER];
    size_t n = 0;
    while (n < BIG_ANSWER) {
        ssize_t k = recv(fd, got + n, BIG_ANSWER - n, 0);
        if (k <= 0)
            return 0;
        n += (size_t)k;
    }
    return memcmp(got, g_big, BIG_ANSWER) == 0;
}

/* An answer larger than the socket takes goes out in parts (the rest from
 * the lane thread) while the client reads slowly; the connection then
 * serves on, sync and deferred alike. */
static void test_lane_large_answers_are_written_in_parts(void)
{
    g_big = malloc(BIG_ANSWER);
    CU_ASSERT_FATAL(g_big != NULL);
    for (size_t i = 0; i < BIG_ANSWER; i++)
        g_big[i] = (unsigned char)(i * 7 + (i >> 12));
    qtsp_http_server *srv = start_lane(10, 0, 0);
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    static const char sync_req[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 4\r\n\r\nsync";
    static const char defer_req[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                                    "Content-Length: 5\r\n\r\ndefer";
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(send_all(fd, sync_req, sizeof sync_req - 1), 0);
        CU_ASSERT_EQUAL(send_all(fd, defer_req, sizeof defer_req - 1), 0); /* pipelined */
        usleep(200000); /* the socket fills; the lane waits to write the rest */
        CU_ASSERT(read_big(fd));
        CU_ASSERT(read_big(fd));
    }
    CU_ASSERT_EQUAL(send_echo(fd, "still"), 0);
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "still"));
    CU_ASSERT_EQUAL(lane_served(srv), 5);
    close(fd);
    qtsp_http_stop(srv);
    free(g_big);
    g_big = NULL;
}

/* Idle, trickling and kept-alive connections are closed after the
 * connection timeout; a connection answering within it is not. */
static void test_lane_connections_time_out(void)
{
    qtsp_http_server *srv = start_lane(1, 0, 0);
    unsigned port = qtsp_http_port(srv);
    int idle = qtest_connect(port, 10), half = qtest_connect(port, 10);
    int kept = qtest_connect(port, 10);
    CU_ASSERT_FATAL(idle >= 0 && half >= 0 && kept >= 0);
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: t\r\n";
    CU_ASSERT_EQUAL(send_all(half, head, sizeof head - 1), 0);
    CU_ASSERT_EQUAL(send_echo(kept, "k"), 0);
    CU_ASSERT_EQUAL(read_reply(kept, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "k"));
    CU_ASSERT_FALSE(closed_within(idle, 300));
    CU_ASSERT(closed_within(idle, 3000));
    CU_ASSERT(closed_within(half, 3000));
    CU_ASSERT(closed_within(kept, 3000));
    CU_ASSERT(metric_reaches(srv, "qtsp_http_connections_timed_out_total", 3) >= 3);
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_connections"), 0);
    close(idle);
    close(half);
    close(kept);
    qtsp_http_stop(srv);
}

/* Connections per address count the lane's and MHD's together; so does the
 * connection limit. */
static void test_lane_limits_count_lane_and_mhd_connections(void)
{
    qtsp_http_server *srv = start_lane(10, 0, 2);
    unsigned port = qtsp_http_port(srv);
    int a = qtest_connect(port, 10), b = qtest_connect(port, 10);
    CU_ASSERT_FATAL(a >= 0 && b >= 0);
    CU_ASSERT_EQUAL(send_echo(a, "a"), 0);
    CU_ASSERT_EQUAL(read_reply(a, &R, 0), 0);
    static const char g[] = "GET /exact HTTP/1.1\r\nHost: t\r\n\r\n";
    CU_ASSERT_EQUAL(send_all(b, g, sizeof g - 1), 0); /* b is MHD's now */
    CU_ASSERT_EQUAL(read_reply(b, &R, 0), 0);
    CU_ASSERT(R.status == 200 && body_is(&R, "exact"));
    int c = qtest_connect(port, 10);
    CU_ASSERT_FATAL(c >= 0);
    CU_ASSERT(closed_within(c, 3000)); /* a third from 127.0.0.1 */
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_refused_total"), 1);
    close(c);
    close(b); /* MHD closes its side; the address has room again */
    int d = -1, served = 0;
    for (int i = 0; i < 100 && !served; i++) {
        usleep(20000);
        d = qtest_connect(port, 10);
        served = d >= 0 && send_echo(d, "d") == 0 && read_reply(d, &R, 0) == 0 && R.status == 200;
        if (!served && d >= 0)
            close(d);
    }
    CU_ASSERT(served);
    if (served)
        close(d);
    close(a);
    qtsp_http_stop(srv);
    /* the limit of all connections */
    srv = start_lane(10, 2, (size_t)-1);
    port = qtsp_http_port(srv);
    a = qtest_connect(port, 10);
    b = qtest_connect(port, 10);
    CU_ASSERT_FATAL(a >= 0 && b >= 0);
    CU_ASSERT_EQUAL(send_echo(b, "b"), 0); /* b accepted before c connects */
    CU_ASSERT_EQUAL(read_reply(b, &R, 0), 0);
    c = qtest_connect(port, 10);
    CU_ASSERT_FATAL(c >= 0);
    CU_ASSERT(closed_within(c, 3000));
    CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_refused_total"), 1);
    close(a);
    close(b);
    close(c);
    qtsp_http_stop(srv);
}

/* A stop with idle lane connections closes them at once. */
static void test_lane_stop_closes_idle_connections(void)
{
    qtsp_http_server *srv = start_lane(30, 0, 0);
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(send_echo(fd, "x"), 0);
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    uint64_t t0 = (uint64_t)time(NULL);
    qtsp_http_stop(srv);
    CU_ASSERT((uint64_t)time(NULL) - t0 < 3);
    CU_ASSERT(closed_within(fd, 1000));
    close(fd);
}

/* The round hooks wrap the handlers of each round, on the lane thread; what
 * a handler defers may be completed at the round's end (the signing queue
 * held by the lane, cmd/services.c). */
static atomic_int g_rounds_begun, g_rounds_ended, g_in_round, g_seen_in_round;
static pending g_round_pending;
static int g_round_has;

static void round_begin(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&g_rounds_begun, 1);
    atomic_store(&g_in_round, 1);
}

static void round_end(void *ctx)
{
    (void)ctx;
    atomic_store(&g_in_round, 0);
    atomic_fetch_add(&g_rounds_ended, 1);
    if (g_round_has) { /* what the round deferred is answered now */
        g_round_has = 0;
        complete_echo(&g_round_pending);
    }
}

static qtsp_status h_round(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    (void)ctx;
    (void)resp;
    if (atomic_load(&g_in_round))
        atomic_fetch_add(&g_seen_in_round, 1);
    g_round_pending.d = qtsp_http_defer(req);
    if (g_round_pending.d == NULL)
        FAIL(QTSP_ERR_INTERNAL, "cannot defer");
    snprintf(g_round_pending.body, sizeof g_round_pending.body, "%.*s", (int)req->body_len,
             (const char *)req->body);
    g_round_has = 1;
    return QTSP_OK;
}

static void test_lane_round_hooks_wrap_the_handlers(void)
{
    static const qtsp_route routes[] = {
        {"POST", "/round", 0, 64, "text/plain", h_round, NULL, "round"}};
    static const char *const fast[] = {"round", NULL};
    qtsp_http_opts o = {.listen = "127.0.0.1:0",
                        .workers = 1,
                        .fast_routes = fast,
                        .lane_round_begin = round_begin,
                        .lane_round_end = round_end};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&o, routes, 1, NULL, NULL, &srv), QTSP_OK);
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(send_post(fd, "/round", "r"), 0);
        CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
        CU_ASSERT(R.status == 200 && body_is(&R, "done:r"));
    }
    CU_ASSERT_EQUAL(atomic_load(&g_seen_in_round), 3);
    CU_ASSERT(atomic_load(&g_rounds_ended) >= 3);
    CU_ASSERT(atomic_load(&g_rounds_begun) >= atomic_load(&g_rounds_ended));
    close(fd);
    qtsp_http_stop(srv);
}

/* ---- found by review ---------------------------------------------------- */

static atomic_int g_slow_in, g_slow_out;

/* Defers, then keeps working in the handler (reading the request) for a
 * while: a stop meanwhile must not answer (and free) the request under it. */
static qtsp_status h_slow_defer(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    (void)ctx;
    (void)resp;
    qtsp_http_deferred *d = qtsp_http_defer(req);
    if (d == NULL)
        FAIL(QTSP_ERR_INTERNAL, "cannot defer");
    pthread_mutex_lock(&g_pmu);
    g_pending[g_npending].d = d;
    g_pending[g_npending].body[0] = '\0';
    g_npending++;
    pthread_mutex_unlock(&g_pmu);
    atomic_store(&g_slow_in, 1);
    usleep(500000);
    if (strlen(req->request_id) == 16) /* ASan: a use after free */
        atomic_store(&g_slow_out, 1);
    return QTSP_OK;
}

static const qtsp_route k_rv_routes[] = {
    {"POST", "/defer", 0, 1024, "text/plain", h_defer, NULL, "defer"},
    {"POST", "/slow", 0, 64, "text/plain", h_slow_defer, NULL, "slow"},
    {"POST", "/big", 0, 64, "text/plain", h_big, NULL, "big"},
    {"POST", "/echo", 0, 8192, "application/timestamp-query", h_echo, NULL, "echo"},
};

/* no_io_uring: the lane makes one system call per read and answer. */
static qtsp_http_server *start_rv_uring(unsigned timeout_s, int no_io_uring)
{
    static const char *const fast[] = {"defer", "slow", "big", "echo", NULL};
    qtsp_http_opts o = {.listen = "127.0.0.1:0",
                        .workers = 1,
                        .conn_timeout_s = timeout_s,
                        .fast_routes = fast,
                        .lane_no_io_uring = no_io_uring};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&o, k_rv_routes,
                                          sizeof k_rv_routes / sizeof k_rv_routes[0], NULL, NULL,
                                          &srv),
                          QTSP_OK);
    return srv;
}

static qtsp_http_server *start_rv(unsigned timeout_s)
{
    return start_rv_uring(timeout_s, 0);
}

/* A request of exactly 16 KiB (the lane's largest) with a pipelined one
 * behind it: the second is seen and answered. */
static void test_lane_pipelined_behind_a_largest_request_is_answered(void)
{
    pending_reset();
    qtsp_http_server *srv = start_rv(5);
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    static char req[20000];
    int h = snprintf(req, sizeof req,
                     "POST /defer HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 2\r\nX-Pad: ");
    size_t n = (size_t)h, pad = 16384 - n - 4 - 2;
    memset(req + n, 'a', pad);
    n += pad;
    memcpy(req + n, "\r\n\r\np1", 6);
    n += 6;
    CU_ASSERT_EQUAL(n, 16384);
    n += (size_t)snprintf(req + n, sizeof req - n,
                          "POST /defer HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                          "Content-Length: 2\r\n\r\np2");
    CU_ASSERT_EQUAL(send_all(fd, req, n), 0);
    CU_ASSERT_FATAL(pending_wait(1));
    CU_ASSERT(answer_oldest(fd, "done:p1"));
    CU_ASSERT_FATAL(pending_wait(1));
    CU_ASSERT(answer_oldest(fd, "done:p2"));
    close(fd);
    qtsp_http_stop(srv);
}

/* A client that reads nothing of a large answer meets the timeout. */
static void test_lane_client_reading_nothing_times_out(void)
{
    g_big = calloc(1, BIG_ANSWER);
    CU_ASSERT_FATAL(g_big != NULL);
    qtsp_http_server *srv = start_rv(1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)qtsp_http_port(srv))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    static const char req[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 4\r\n\r\nsync";
    CU_ASSERT_EQUAL(send_all(fd, req, sizeof req - 1), 0);
    long long open = 1;
    for (int i = 0; i < 60 && open != 0; i++) {
        usleep(100000);
        open = metric(srv, "qtsp_http_lane_connections");
    }
    CU_ASSERT_EQUAL(open, 0);
    CU_ASSERT(metric(srv, "qtsp_http_connections_timed_out_total") >= 1);
    close(fd);
    qtsp_http_stop(srv);
    free(g_big);
    g_big = NULL;
}

static void *stop_soon(void *arg)
{
    qtsp_http_stop_within(arg, 100);
    return NULL;
}

/* A stop forces a deferred lane request while its handler still runs: the
 * 503 goes out once the handler has returned, the request intact till then. */
static void test_lane_stop_answers_a_forced_request_after_its_handler(void)
{
    pending_reset();
    atomic_store(&g_slow_in, 0);
    atomic_store(&g_slow_out, 0);
    qtsp_http_server *srv = start_rv(5);
    int fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(send_post(fd, "/slow", "s"), 0);
    for (int i = 0; i < 5000 && !atomic_load(&g_slow_in); i++)
        usleep(1000);
    pthread_t t;
    CU_ASSERT_FATAL(pthread_create(&t, NULL, stop_soon, srv) == 0);
    CU_ASSERT_EQUAL(read_reply(fd, &R, 0), 0);
    CU_ASSERT_EQUAL(R.status, 503);
    CU_ASSERT_EQUAL(atomic_load(&g_slow_out), 1); /* the handler had finished */
    pthread_join(t, NULL);
    pending p;
    while (pending_take(&p))
        qtsp_http_complete(p.d, QTSP_OK); /* the owner, late: nothing is sent */
    close(fd);
}

/* ---- answers written in one io_uring submission ---------------------------- */

/* 1 when srv's lane reads and writes with io_uring (the kernel allows it
 * and it was not turned off); read once the lane served a request. Not
 * probed here with a ring of the test's own: closing a ring sends its
 * creator task work that interrupts that thread's next blocking call. */
static int lane_uses_io_uring(qtsp_http_server *srv)
{
    return metric(srv, "qtsp_http_lane_io_uring") == 1;
}

/* Eight deferred requests completed while the lane is busy in a handler go
 * out together after it: one submission writes the eight answers, each to
 * its own connection; an 8 MiB answer in a batch is written in parts (the
 * rest by the lane as the client reads); and with io_uring off (or not
 * allowed) every answer is the same, written one by one. */
static void test_lane_answers_completed_together_go_out_in_one_batch(void)
{
    g_big = malloc(BIG_ANSWER);
    CU_ASSERT_FATAL(g_big != NULL);
    for (size_t i = 0; i < BIG_ANSWER; i++)
        g_big[i] = (unsigned char)(i * 5 + (i >> 10));
    for (int off = 0; off < 2; off++) {
        pending_reset();
        atomic_store(&g_slow_in, 0);
        qtsp_http_server *srv = start_rv_uring(10, off);
        unsigned port = qtsp_http_port(srv);
        int fd[8];
        for (int i = 0; i < 8; i++) {
            char body[8];
            snprintf(body, sizeof body, "b%d", i);
            fd[i] = qtest_connect(port, 10);
            CU_ASSERT_FATAL(fd[i] >= 0);
            CU_ASSERT_FATAL(defer_one(fd[i], body));
        }
        int batching = lane_uses_io_uring(srv);
        if (off) {
            CU_ASSERT_EQUAL(batching, 0);
        } else if (!batching) {
            fprintf(stderr, "  (io_uring not allowed here: only the one-by-one path is tested)\n");
        }
        int slow = qtest_connect(port, 10);
        CU_ASSERT_FATAL(slow >= 0);
        CU_ASSERT_EQUAL(send_post(slow, "/slow", "s"), 0);
        for (int i = 0; i < 5000 && !atomic_load(&g_slow_in); i++)
            usleep(1000);
        CU_ASSERT_FATAL(atomic_load(&g_slow_in));
        for (int i = 0; i < 8; i++) { /* the lane sleeps in /slow's handler meanwhile */
            pending p;
            CU_ASSERT_FATAL(pending_take(&p));
            if (i == 3) /* an error answer: its JSON body lives on the lane's stack */
                qtsp_http_complete(p.d, qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__,
                                                     "the owner gave up"));
            else
                complete_echo(&p);
        }
        for (int i = 0; i < 8; i++) {
            char want[16];
            snprintf(want, sizeof want, "done:b%d", i);
            CU_ASSERT_EQUAL(read_reply(fd[i], &R, 0), 0);
            if (i == 3) {
                CU_ASSERT(R.status == 503 && body_has(&R, "\"error\":\"unavailable\""));
            } else {
                CU_ASSERT(R.status == 200 && body_is(&R, want));
            }
        }
        CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_batches_total"), batching ? 1 : 0);
        CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_batched_answers_total"), batching ? 8 : 0);
        pending p;
        CU_ASSERT_FATAL(pending_take(&p)); /* /slow's */
        complete_echo(&p);
        CU_ASSERT_EQUAL(read_reply(slow, &R, 0), 0);
        CU_ASSERT(R.status == 200 && body_is(&R, "done:"));
        /* a large answer completed on the lane thread, then a small one */
        static const char big_req[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                      "text/plain\r\nContent-Length: 5\r\n\r\ndefer";
        CU_ASSERT_EQUAL(send_all(fd[0], big_req, sizeof big_req - 1), 0);
        usleep(200000); /* the socket fills; the lane waits to write the rest */
        CU_ASSERT(read_big(fd[0]));
        CU_ASSERT(defer_one(fd[0], "after"));
        CU_ASSERT(answer_oldest(fd[0], "done:after"));
        CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_batched_answers_total"),
                        batching ? 11 : 0); /* + /slow's, /big's, "after" */
        for (int i = 0; i < 8; i++)
            close(fd[i]);
        close(slow);
        qtsp_http_stop(srv);
    }
    free(g_big);
    g_big = NULL;
}

/* Eight requests that arrive while the lane is busy in a handler are read
 * in the next round's batch (one peek and one read submission), each
 * served on its own connection; so is a request with a pipelined one
 * behind it (the second read on by itself), while a request in pieces, one
 * for MHD, one larger than a batch's look and a malformed one (a header
 * line without a colon: MHD answers 400) go their own way, and a client
 * that closes is closed; with io_uring off the same, read one by one. */
static void test_lane_requests_of_a_round_are_read_in_one_batch(void)
{
    for (int off = 0; off < 2; off++) {
        pending_reset();
        atomic_store(&g_slow_in, 0);
        qtsp_http_server *srv = start_rv_uring(10, off);
        unsigned port = qtsp_http_port(srv);
        int fd[14];
        for (int i = 0; i < 14; i++) {
            fd[i] = qtest_connect(port, 10);
            CU_ASSERT_FATAL(fd[i] >= 0);
        }
        int slow = qtest_connect(port, 10);
        CU_ASSERT_FATAL(slow >= 0);
        usleep(100000); /* the lane has taken the connections: /slow comes alone */
        int batching = lane_uses_io_uring(srv);
        if (off)
            CU_ASSERT_EQUAL(batching, 0);
        CU_ASSERT_EQUAL(send_post(slow, "/slow", "s"), 0);
        for (int i = 0; i < 5000 && !atomic_load(&g_slow_in); i++)
            usleep(1000);
        CU_ASSERT_FATAL(atomic_load(&g_slow_in));
        for (int i = 0; i < 8; i++) { /* the lane sleeps in /slow's handler meanwhile */
            char body[8];
            snprintf(body, sizeof body, "r%d", i);
            CU_ASSERT_EQUAL(send_echo(fd[i], body), 0);
        }
        static const char two[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                  "application/timestamp-query\r\nContent-Length: 3\r\n\r\none"
                                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                  "application/timestamp-query\r\nContent-Length: 3\r\n\r\ntwo";
        CU_ASSERT_EQUAL(send_all(fd[8], two, sizeof two - 1), 0);
        static const char part[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                   "application/timestamp-query\r\nContent-Length: 4\r\n\r\nha";
        CU_ASSERT_EQUAL(send_all(fd[9], part, sizeof part - 1), 0);
        static const char get[] = "GET /exact HTTP/1.1\r\nHost: t\r\n\r\n";
        CU_ASSERT_EQUAL(send_all(fd[10], get, sizeof get - 1), 0);
        static char big[3200];
        int hl = snprintf(big, sizeof big,
                          "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
                          "Content-Length: 3000\r\n\r\n",
                          k_tsq);
        memset(big + hl, 'b', 3000);
        CU_ASSERT_EQUAL(send_all(fd[11], big, (size_t)hl + 3000), 0);
        static const char bad[] = "POST /echo HTTP/1.1\r\nHost: t\r\nno colon here\r\n"
                                  "Content-Type: application/timestamp-query\r\n"
                                  "Content-Length: 2\r\n\r\nxx";
        CU_ASSERT_EQUAL(send_all(fd[12], bad, sizeof bad - 1), 0);
        CU_ASSERT_EQUAL(shutdown(fd[13], SHUT_WR), 0);
        pending p;
        usleep(600000); /* /slow's handler returns; the next round reads them all */
        for (int i = 0; i < 8; i++) {
            char want[16];
            snprintf(want, sizeof want, "r%d", i);
            CU_ASSERT_EQUAL(read_reply(fd[i], &R, 0), 0);
            CU_ASSERT(R.status == 200 && body_is(&R, want));
        }
        CU_ASSERT_EQUAL(read_reply(fd[8], &R, 0), 0);
        CU_ASSERT(R.status == 200 && body_is(&R, "one"));
        CU_ASSERT_EQUAL(read_reply(fd[8], &R, 0), 0);
        CU_ASSERT(R.status == 200 && body_is(&R, "two"));
        CU_ASSERT_EQUAL(send_all(fd[9], "lf", 2), 0);
        CU_ASSERT_EQUAL(read_reply(fd[9], &R, 0), 0);
        CU_ASSERT(R.status == 200 && body_is(&R, "half"));
        CU_ASSERT_EQUAL(read_reply(fd[10], &R, 0), 0);
        CU_ASSERT_EQUAL(R.status, 404); /* MHD's answer: no such route here */
        CU_ASSERT_EQUAL(read_reply(fd[12], &R, 0), 0);
        CU_ASSERT_EQUAL(R.status, 400);
        CU_ASSERT_EQUAL(lane_handoffs(srv), 2); /* the GET and the malformed POST */
        CU_ASSERT(closed_within(fd[13], 2000)); /* closed in that round */
        CU_ASSERT_EQUAL(read_reply(fd[11], &R, 0), 0);
        CU_ASSERT(R.status == 200 && R.body_len == 3000 && R.body[0] == 'b');
        /* the eight and the pipelined pair's first */
        CU_ASSERT_EQUAL(metric(srv, "qtsp_http_lane_batched_reads_total"), batching ? 9 : 0);
        CU_ASSERT_TRUE_FATAL(pending_take(&p)); /* /slow's */
        complete_echo(&p);
        CU_ASSERT_EQUAL(read_reply(slow, &R, 0), 0);
        for (int i = 0; i < 14; i++)
            close(fd[i]);
        close(slow);
        qtsp_http_stop(srv);
    }
}

static atomic_int g_flood_stop;
static int g_flood_fd;

static void *flood_writer(void *arg)
{
    (void)arg;
    static char buf[64 * 1024];
    static const char one[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: "
                              "application/timestamp-query\r\nContent-Length: 1\r\n\r\nx";
    size_t n = 0;
    while (n + sizeof one - 1 < sizeof buf) {
        memcpy(buf + n, one, sizeof one - 1);
        n += sizeof one - 1;
    }
    while (!atomic_load(&g_flood_stop) && send_all(g_flood_fd, buf, n) == 0)
        ;
    return NULL;
}

static void *flood_reader(void *arg)
{
    (void)arg;
    static char buf[256 * 1024];
    while (!atomic_load(&g_flood_stop) && recv(g_flood_fd, buf, sizeof buf, 0) > 0)
        ;
    return NULL;
}

/* A client pipelining requests in 64 KiB writes is served without a stall
 * (a request cut at the end of a large segment goes to MHD with the rest). */
static void test_lane_pipelining_flood_never_stalls(void)
{
    qtsp_log_set_level(QTSP_LOG_WARN); /* not 100 000 access lines in the test log */
    qtsp_http_server *srv = start_rv(30);
    atomic_store(&g_flood_stop, 0);
    g_flood_fd = qtest_connect(qtsp_http_port(srv), 10);
    CU_ASSERT_FATAL(g_flood_fd >= 0);
    pthread_t w, r;
    CU_ASSERT_FATAL(pthread_create(&w, NULL, flood_writer, NULL) == 0);
    CU_ASSERT_FATAL(pthread_create(&r, NULL, flood_reader, NULL) == 0);
    const char *m = "qtsp_http_requests_total{route=\"echo\",status=\"200\"}";
    usleep(1000000);
    long long a = metric(srv, m);
    usleep(1000000);
    long long b = metric(srv, m);
    CU_ASSERT(a > 100);
    CU_ASSERT(b > a); /* still answering a second later */
    atomic_store(&g_flood_stop, 1);
    shutdown(g_flood_fd, SHUT_RDWR);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    close(g_flood_fd);
    qtsp_http_stop(srv);
    qtsp_log_set_level(QTSP_LOG_INFO);
}

static const qtest_case k_lane_cases[] = {
    QTEST(test_lane_serves_simple_posts_and_hands_the_rest_to_mhd),
    QTEST(test_lane_hands_off_what_it_does_not_serve),
    QTEST(test_lane_pipelined_requests_are_answered_in_order),
    QTEST(test_lane_request_in_pieces_is_served_when_whole),
    QTEST(test_lane_client_gone_while_its_request_waits),
    QTEST(test_lane_large_answers_are_written_in_parts),
    QTEST(test_lane_connections_time_out),
    QTEST(test_lane_limits_count_lane_and_mhd_connections),
    QTEST(test_lane_stop_closes_idle_connections),
    QTEST(test_lane_round_hooks_wrap_the_handlers),
    QTEST(test_lane_pipelined_behind_a_largest_request_is_answered),
    QTEST(test_lane_client_reading_nothing_times_out),
    QTEST(test_lane_stop_answers_a_forced_request_after_its_handler),
    QTEST(test_lane_pipelining_flood_never_stalls),
    QTEST(test_lane_answers_completed_together_go_out_in_one_batch),
    QTEST(test_lane_requests_of_a_round_are_read_in_one_batch),
};

int main(void)
{
    size_t n = sizeof k_http_cases / sizeof k_http_cases[0];
    size_t m = sizeof k_lane_cases / sizeof k_lane_cases[0];
    qtest_case *all = malloc((n + m) * sizeof *all);
    if (all == NULL)
        return 2;
    memcpy(all, k_http_cases, n * sizeof *all);
    memcpy(all + n, k_lane_cases, m * sizeof *all);
    int rc = qtest_run("http_lane", all, n + m);
    free(all);
    return rc;
}
