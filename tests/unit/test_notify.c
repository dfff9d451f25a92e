/* Unit tests for ra/notify.c: real webhook deliveries over loopback to a
 * receiver built on core/http.h, signatures checked with OpenSSL's HMAC. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/http.h"
#include "ra/notify.h"
#include "tests/lib/qtest.h"

#define SECRET "0123456789abcdef-test-secret"
#define MAX_REQS 16

/* ---- a recording receiver ---------------------------------------------- */

typedef struct rec_req {
    char body[4096];
    char content_type[64], event[80], delivery[80], timestamp[32], signature[100];
} rec_req;

typedef struct receiver {
    pthread_mutex_t mu;
    int script[8]; /* statuses of the first answers; 200 after them */
    size_t n_script;
    size_t n; /* requests seen */
    rec_req req[MAX_REQS];
    qtsp_http_server *srv;
} receiver;

static void copy_header(const qtsp_http_req *req, const char *name, char *out, size_t cap)
{
    const char *v = qtsp_http_header(req, name);
    snprintf(out, cap, "%s", v ? v : "");
}

static qtsp_status hook(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    receiver *r = ctx;
    pthread_mutex_lock(&r->mu);
    size_t i = r->n++;
    if (i < MAX_REQS) {
        rec_req *q = &r->req[i];
        snprintf(q->body, sizeof q->body, "%.*s", (int)req->body_len, (const char *)req->body);
        copy_header(req, "Content-Type", q->content_type, sizeof q->content_type);
        copy_header(req, "X-Qtsp-Event", q->event, sizeof q->event);
        copy_header(req, "X-Qtsp-Delivery", q->delivery, sizeof q->delivery);
        copy_header(req, "X-Qtsp-Timestamp", q->timestamp, sizeof q->timestamp);
        copy_header(req, "X-Qtsp-Signature", q->signature, sizeof q->signature);
    }
    int status = i < r->n_script ? r->script[i] : 200;
    pthread_mutex_unlock(&r->mu);
    return qtsp_http_resp_set(resp, status, "application/json", "{}", 2);
}

static void receiver_start(receiver *r, const int *script, size_t n_script)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    if (n_script)
        memcpy(r->script, script, n_script * sizeof *script);
    r->n_script = n_script;
    static qtsp_route route = {"POST", "/hook", 0,     64 * 1024, "application/json",
                               hook,   NULL,    "hook"};
    route.ctx = r;
    qtsp_http_opts o = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 10};
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&o, &route, 1, NULL, NULL, &r->srv), QTSP_OK);
}

static void receiver_stop(receiver *r)
{
    qtsp_http_stop(r->srv);
    pthread_mutex_destroy(&r->mu);
}

static size_t receiver_count(receiver *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* A loopback port with nothing listening (connections are refused). */
static unsigned dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A listening socket that never accepts: requests hang until their timeout. */
static int blackhole(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- a throw-away home ---------------------------------------------------- */

typedef struct home {
    char dir[512], policy[600], secrets[600];
} home;

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void home_make(home *h, const char *policy_text, int with_secret)
{
    snprintf(h->dir, sizeof h->dir, "%s", qtest_tmpdir("notify"));
    snprintf(h->policy, sizeof h->policy, "%s/notify.yaml", h->dir);
    snprintf(h->secrets, sizeof h->secrets, "%s/secrets", h->dir);
    mkdir(h->secrets, 0700);
    if (policy_text)
        write_file(h->policy, policy_text, 0644);
    if (with_secret) {
        char p[700];
        snprintf(p, sizeof p, "%s/notify.secret", h->secrets);
        write_file(p, SECRET "\n", 0600);
    }
}

/* An enabled policy for url with small backoffs. */
static void policy_for(char *out, size_t cap, const char *url, int retries, const char *extra)
{
    snprintf(out, cap,
             "version: 1\nenabled: true\nurl: %s\nsecret_file: notify.secret\n"
             "timeout: 5s\nretries: %d\nbackoff_initial: 10ms\nbackoff_max: 40ms\n%s",
             url, retries, extra ? extra : "");
}

static void receiver_url(const receiver *r, char *out, size_t cap)
{
    snprintf(out, cap, "http://127.0.0.1:%u/hook", qtsp_http_port(r->srv));
}

static qtsp_notify *notifier(const home *h)
{
    qtsp_notify *n = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_notify_new(h->policy, h->secrets, &n);
    if (rc != QTSP_OK)
        fprintf(stderr, "notify_new: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL(rc, QTSP_OK);
    return n;
}

static void expect_signature_ok(const rec_req *q)
{
    char msg[4200];
    snprintf(msg, sizeof msg, "%s.%s", q->timestamp, q->body);
    unsigned char md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)msg, strlen(msg), md,
         &mdlen);
    char want[80] = "sha256=";
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(want + 7 + 2 * i, 3, "%02x", md[i]);
    CU_ASSERT_STRING_EQUAL(q->signature, want);
}

static qtsp_status send_hold(qtsp_notify *n, const char *serial)
{
    json_t *d = json_pack("{s:s,s:s,s:s}", "serial", serial, "subject_id", "subj-1", "hold_until",
                          "2026-11-26T21:00:00Z");
    qtsp_status rc = qtsp_notify_event(n, QTSP_NOTIFY_HOLD, d);
    json_decref(d);
    return rc;
}

/* ---- tests --------------------------------------------------------------- */

static void test_notify_delivers_signed_json_event(void)
{
    receiver r;
    receiver_start(&r, NULL, 0);
    char url[128], pol[1024];
    receiver_url(&r, url, sizeof url);
    policy_for(pol, sizeof pol, url, 2, NULL);
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    int64_t before = qtsp_now();
    CU_ASSERT_EQUAL(send_hold(n, "01AB"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 10000), QTSP_OK);
    int64_t after = qtsp_now();

    CU_ASSERT_EQUAL_FATAL(receiver_count(&r), 1);
    const rec_req *q = &r.req[0];
    CU_ASSERT_STRING_EQUAL(q->content_type, "application/json");
    CU_ASSERT_STRING_EQUAL(q->event, "cert.hold");
    expect_signature_ok(q);
    long long ts = strtoll(q->timestamp, NULL, 10);
    CU_ASSERT(ts >= before && ts <= after);

    json_error_t err;
    json_t *b = json_loads(q->body, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    const char *id = json_string_value(json_object_get(b, "id"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(id);
    CU_ASSERT_EQUAL(strlen(id), 32);
    CU_ASSERT_EQUAL(strspn(id, "0123456789abcdef"), 32);
    CU_ASSERT_STRING_EQUAL(id, q->delivery);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "event")), "cert.hold");
    const char *t = json_string_value(json_object_get(b, "time"));
    CU_ASSERT(t && strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
    json_t *d = json_object_get(b, "data");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "serial")), "01AB");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "subject_id")), "subj-1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "hold_until")),
                           "2026-11-26T21:00:00Z");
    CU_ASSERT_EQUAL(json_object_size(b), 4);
    json_decref(b);

    /* a tampered body or another secret does not verify */
    rec_req bad = *q;
    bad.body[strlen(bad.body) - 2] ^= 1;
    char msg[4200];
    snprintf(msg, sizeof msg, "%s.%s", bad.timestamp, bad.body);
    unsigned char md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)msg, strlen(msg), md,
         &mdlen);
    char hex[65];
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    CU_ASSERT(strcmp(q->signature + 7, hex) != 0);

    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.delivered, 1);
    CU_ASSERT_EQUAL(s.attempts_failed, 0);
    CU_ASSERT_EQUAL(s.failed, 0);
    CU_ASSERT_EQUAL(s.dropped, 0);
    CU_ASSERT_EQUAL(s.queued, 0);

    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT_EQUAL(qtsp_notify_metrics(n, &m), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_delivered_total 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_queue_length 0\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_enabled 1\n"));
    CU_ASSERT_PTR_NULL(strstr(qtsp_buf_str(&m), SECRET));
    qtsp_buf_cleanup(&m);

    qtsp_notify_free(n);
    receiver_stop(&r);
    qtest_rmtree(h.dir);
}

static void test_notify_retries_500_then_delivers_once(void)
{
    static const int script[] = {500, 500};
    receiver r;
    receiver_start(&r, script, 2);
    char url[128], pol[1024];
    receiver_url(&r, url, sizeof url);
    policy_for(pol, sizeof pol, url, 5, NULL);
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    CU_ASSERT_EQUAL(send_hold(n, "02CD"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 10000), QTSP_OK);

    CU_ASSERT_EQUAL_FATAL(receiver_count(&r), 3);
    /* the same delivery id each time, each attempt signed afresh */
    CU_ASSERT_STRING_EQUAL(r.req[0].delivery, r.req[1].delivery);
    CU_ASSERT_STRING_EQUAL(r.req[1].delivery, r.req[2].delivery);
    CU_ASSERT_STRING_EQUAL(r.req[0].body, r.req[2].body);
    for (int i = 0; i < 3; i++)
        expect_signature_ok(&r.req[i]);
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.delivered, 1);
    CU_ASSERT_EQUAL(s.attempts_failed, 2);
    CU_ASSERT_EQUAL(s.failed, 0);
    qtsp_notify_free(n);
    receiver_stop(&r);
    qtest_rmtree(h.dir);
}

static void test_notify_dead_receiver_fails_after_retries(void)
{
    char url[128], pol[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook", dead_port());
    policy_for(pol, sizeof pol, url, 3, NULL);
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    CU_ASSERT_EQUAL(send_hold(n, "03EF"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 10000), QTSP_OK);
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.delivered, 0);
    CU_ASSERT_EQUAL(s.attempts_failed, 4); /* first attempt + 3 retries */
    CU_ASSERT_EQUAL(s.failed, 1);
    CU_ASSERT_EQUAL(s.dropped, 0);
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT_EQUAL(qtsp_notify_metrics(n, &m), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_failed_total 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_attempts_failed_total 4\n"));
    qtsp_buf_cleanup(&m);
    qtsp_notify_free(n);
    qtest_rmtree(h.dir);
}

static void test_notify_full_queue_drops_oldest_and_keeps_order(void)
{
    receiver r;
    receiver_start(&r, NULL, 0);
    char url[128], pol[1024];
    receiver_url(&r, url, sizeof url);
    policy_for(pol, sizeof pol, url, 1, "queue_size: 3\n");
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    /* not started yet: nothing is consumed while we fill it */
    for (int i = 1; i <= 5; i++) {
        json_t *d = json_pack("{s:s,s:i}", "serial", "04AA", "n", i);
        CU_ASSERT_EQUAL(qtsp_notify_event(n, i % 2 ? QTSP_NOTIFY_HOLD : QTSP_NOTIFY_RELEASE, d),
                        QTSP_OK);
        json_decref(d);
    }
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.dropped, 2);
    CU_ASSERT_EQUAL(s.queued, 3);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 100), QTSP_ERR_STATE); /* not started */
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 10000), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(receiver_count(&r), 3);
    for (int i = 0; i < 3; i++) {
        json_t *b = json_loads(r.req[i].body, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(b, "data"), "n")),
                        i + 3);
        json_decref(b);
    }
    CU_ASSERT_STRING_EQUAL(r.req[0].event, "cert.hold");
    CU_ASSERT_STRING_EQUAL(r.req[1].event, "cert.release");
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.delivered, 3);
    CU_ASSERT_EQUAL(s.dropped, 2);
    qtsp_notify_free(n);
    receiver_stop(&r);
    qtest_rmtree(h.dir);
}

static void expect_disabled(qtsp_notify *n)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(send_hold(n, "05AB"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 0), QTSP_OK);
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.delivered + s.attempts_failed + s.failed + s.dropped + s.queued, 0);
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT_EQUAL(qtsp_notify_metrics(n, &m), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_notify_enabled 0\n"));
    qtsp_buf_cleanup(&m);
    qtsp_notify_free(n);
}

static void test_notify_disabled_accepts_events_and_does_nothing(void)
{
    /* enabled: false, no secret file needed */
    home h;
    home_make(&h,
              "version: 1\nenabled: false\nurl: https://example.org/hook\n"
              "secret_file: notify.secret\n",
              0);
    expect_disabled(notifier(&h));
    /* the shipped policy */
    char shipped[1100];
    snprintf(shipped, sizeof shipped, "%s/policies/notify.yaml", qtest_src_dir());
    qtsp_notify *n = NULL;
    CU_ASSERT_EQUAL(qtsp_notify_new(shipped, h.secrets, &n), QTSP_OK);
    expect_disabled(n);
    /* no policy file at all, or no path */
    char absent[700];
    snprintf(absent, sizeof absent, "%s/none.yaml", h.dir);
    n = NULL;
    CU_ASSERT_EQUAL(qtsp_notify_new(absent, h.secrets, &n), QTSP_OK);
    expect_disabled(n);
    n = NULL;
    CU_ASSERT_EQUAL(qtsp_notify_new(NULL, NULL, &n), QTSP_OK);
    expect_disabled(n);
    qtest_rmtree(h.dir);
}

static void expect_config_error(const char *policy, int with_secret, const char *needle)
{
    home h;
    home_make(&h, policy, with_secret);
    qtsp_notify *n = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_notify_new(h.policy, h.secrets, &n), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(n);
    const char *msg = qtsp_err_message();
    if (!strstr(msg, needle))
        fprintf(stderr, "expected '%s' in: %s\n", needle, msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, needle));
    CU_ASSERT_PTR_NULL(strstr(msg, SECRET));
    qtest_rmtree(h.dir);
}

static void test_notify_unknown_key_is_config_error_with_position(void)
{
    expect_config_error("version: 1\nenabled: false\nurl: https://example.org/\n"
                        "retires: 3\n",
                        1, "notify.yaml:4:");
}

static void test_notify_rejects_bad_values(void)
{
    expect_config_error("enabled: true\nurl: ftp://example.org/\nsecret_file: notify.secret\n", 1,
                        "notify.yaml:2:");
    expect_config_error("enabled: true\nurl: http://\nsecret_file: notify.secret\n", 1,
                        "notify.yaml:2:");
    expect_config_error("enabled: true\nsecret_file: notify.secret\n", 1, "url");
    expect_config_error("enabled: true\nurl: https://example.org/\n", 1, "secret_file");
    expect_config_error("enabled: true\nurl: https://example.org/\nsecret_file: notify.secret\n"
                        "backoff_initial: 10s\nbackoff_max: 1s\n",
                        1, "notify.yaml:5:");
    expect_config_error("enabled: true\nurl: https://example.org/\nsecret_file: notify.secret\n"
                        "timeout: 5 seconds\n",
                        1, "notify.yaml:4:");
    expect_config_error("enabled: true\nurl: https://example.org/\nsecret_file: notify.secret\n"
                        "queue_size: 0\n",
                        1, "notify.yaml:4:");
    expect_config_error("enabled: yes please\n", 1, "notify.yaml:1:");
    expect_config_error("version: 2\n", 1, "notify.yaml:1:");
    expect_config_error("enabled: true\nurl: https://example.org/\nsecret_file: ../notify.secret\n",
                        1, "notify.yaml:3:");
    expect_config_error("enabled: true\nurl: https://example.org/\nsecret_file: /etc/passwd\n", 1,
                        "notify.yaml:3:");
}

static void test_notify_missing_or_weak_secret_is_error(void)
{
    const char *pol = "enabled: true\nurl: https://example.org/\nsecret_file: notify.secret\n";
    expect_config_error(pol, 0, "notify.yaml:3:");

    home h;
    home_make(&h, pol, 0);
    char p[700];
    snprintf(p, sizeof p, "%s/notify.secret", h.secrets);
    qtsp_notify *n = NULL;
    write_file(p, "short\n", 0600);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_notify_new(h.policy, h.secrets, &n), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "at least 16 bytes"));
    write_file(p, SECRET "\n", 0644);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_notify_new(h.policy, h.secrets, &n), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "chmod 600"));
    CU_ASSERT_PTR_NULL(n);
    chmod(p, 0600);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_notify_new(h.policy, h.secrets, &n), QTSP_OK);
    qtsp_notify_free(n);
    qtest_rmtree(h.dir);
}

static void test_notify_rejects_bad_event_name_and_data(void)
{
    home h;
    home_make(&h, "enabled: true\nurl: https://example.org/\nsecret_file: notify.secret\n", 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    json_t *arr = json_array();
    CU_ASSERT_EQUAL(qtsp_notify_event(n, "", NULL), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, NULL, NULL), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, "cert.hold\r\nX-Evil: 1", NULL), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, "Cert.Hold", NULL), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, QTSP_NOTIFY_HOLD, arr), QTSP_ERR_INVALID);
    json_decref(arr);
    /* a body past the limit */
    char *big = malloc(QTSP_NOTIFY_MAX_BODY + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'a', QTSP_NOTIFY_MAX_BODY);
    big[QTSP_NOTIFY_MAX_BODY] = '\0';
    json_t *d = json_pack("{s:s}", "reason", big);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, QTSP_NOTIFY_TERMINATE, d), QTSP_ERR_TOO_BIG);
    json_decref(d);
    free(big);
    CU_ASSERT_EQUAL(qtsp_notify_event(n, QTSP_NOTIFY_TERMINATE, NULL), QTSP_OK);
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    CU_ASSERT_EQUAL(s.queued, 1);
    qtsp_notify_free(n); /* never started: the queued event is dropped and counted */
    qtest_rmtree(h.dir);
}

static void test_notify_free_is_prompt_with_hanging_receiver(void)
{
    unsigned port = 0;
    int fd = blackhole(&port);
    CU_ASSERT_FATAL(fd >= 0);
    char url[128], pol[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook", port);
    snprintf(pol, sizeof pol,
             "enabled: true\nurl: %s\nsecret_file: notify.secret\ntimeout: 60s\nretries: 5\n"
             "backoff_initial: 30s\nbackoff_max: 60s\nshutdown_grace: 200ms\n",
             url);
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(send_hold(n, "06AB"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 100), QTSP_ERR_STATE); /* first one hangs */
    uint64_t t0 = qtsp_mono_ns();
    qtsp_notify_free(n);
    uint64_t ms = (qtsp_mono_ns() - t0) / 1000000u;
    /* a bound, not a benchmark: the grace is 200 ms, the request timeout 60 s */
    CU_ASSERT(ms < 3000);
    close(fd);
    qtest_rmtree(h.dir);
}

static void test_notify_free_is_prompt_during_backoff(void)
{
    char url[128], pol[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook", dead_port());
    snprintf(pol, sizeof pol,
             "enabled: true\nurl: %s\nsecret_file: notify.secret\nretries: 5\n"
             "backoff_initial: 60s\nbackoff_max: 60s\nshutdown_grace: 2s\n",
             url);
    home h;
    home_make(&h, pol, 1);
    qtsp_notify *n = notifier(&h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(qtsp_notify_start(n), QTSP_OK);
    CU_ASSERT_EQUAL(send_hold(n, "07AB"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 200), QTSP_ERR_STATE); /* waiting to retry */
    uint64_t t0 = qtsp_mono_ns();
    qtsp_notify_free(n); /* the retry would be past the grace: give up at once */
    uint64_t ms = (qtsp_mono_ns() - t0) / 1000000u;
    CU_ASSERT(ms < 1500);
    qtest_rmtree(h.dir);
}

int main(void)
{
    /* loopback only: no proxy between us and the receiver */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    static const qtest_case cases[] = {
        QTEST(test_notify_delivers_signed_json_event),
        QTEST(test_notify_retries_500_then_delivers_once),
        QTEST(test_notify_dead_receiver_fails_after_retries),
        QTEST(test_notify_full_queue_drops_oldest_and_keeps_order),
        QTEST(test_notify_disabled_accepts_events_and_does_nothing),
        QTEST(test_notify_unknown_key_is_config_error_with_position),
        QTEST(test_notify_rejects_bad_values),
        QTEST(test_notify_missing_or_weak_secret_is_error),
        QTEST(test_notify_rejects_bad_event_name_and_data),
        QTEST(test_notify_free_is_prompt_with_hanging_receiver),
        QTEST(test_notify_free_is_prompt_during_backoff),
    };
    return qtest_run("notify", cases, sizeof cases / sizeof cases[0]);
}
