/* Unit tests for core/: error idiom, buffer, clock helpers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/err.h"
#include "core/log.h"
#include "core/procmetrics.h"
#include "tests/lib/qtest.h"

static qtsp_status fails_at_depth(int depth)
{
    if (depth == 0)
        FAIL(QTSP_ERR_INVALID, "innermost failure %d", 42);
    TRY(fails_at_depth(depth - 1));
    return QTSP_OK;
}

static void test_err_records_first_failure_with_location(void)
{
    qtsp_err_clear();
    CU_ASSERT_EQUAL(fails_at_depth(3), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "innermost failure 42");
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "test_core.c:"));
    /* a later failure does not overwrite the first */
    qtsp_status rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "second");
    CU_ASSERT_EQUAL(rc, QTSP_ERR_IO);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "innermost failure 42");
    qtsp_err_clear();
    CU_ASSERT_STRING_EQUAL(qtsp_err_message(), "");
}

static void test_buf_refuses_to_grow_past_max(void)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 10);
    CU_ASSERT_EQUAL(qtsp_buf_append(&b, "0123456789", 10), QTSP_OK);
    CU_ASSERT_EQUAL(b.len, 10);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_buf_append(&b, "x", 1), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(b.len, 10);
    CU_ASSERT_STRING_EQUAL(qtsp_buf_str(&b), "0123456789");
    qtsp_buf_cleanup(&b);
    CU_ASSERT_PTR_NULL(b.data);
}

static void test_buf_printf_and_take(void)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 1000);
    CU_ASSERT_EQUAL(qtsp_buf_printf(&b, "%s-%d", "abc", 7), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_buf_printf(&b, "/%03d", 5), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(qtsp_buf_str(&b), "abc-7/005");
    size_t n = 0;
    unsigned char *p = qtsp_buf_take(&b, &n);
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_EQUAL(b.len, 0);
    free(p);
    qtsp_err_clear();
    qtsp_buf_init(&b, 4);
    CU_ASSERT_EQUAL(qtsp_buf_printf(&b, "%s", "12345"), QTSP_ERR_TOO_BIG);
    qtsp_buf_cleanup(&b);
}

static void test_parse_duration_units(void)
{
    int64_t s = 0;
    CU_ASSERT_EQUAL(qtsp_parse_duration("48h", &s), QTSP_OK);
    CU_ASSERT_EQUAL(s, 48 * 3600);
    CU_ASSERT_EQUAL(qtsp_parse_duration("4s", &s), QTSP_OK);
    CU_ASSERT_EQUAL(s, 4);
    CU_ASSERT_EQUAL(qtsp_parse_duration("2d", &s), QTSP_OK);
    CU_ASSERT_EQUAL(s, 172800);
    CU_ASSERT_EQUAL(qtsp_parse_duration("90", &s), QTSP_OK);
    CU_ASSERT_EQUAL(s, 90);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_parse_duration("48x", &s), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_parse_duration("-1h", &s), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_parse_duration("", &s), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static int64_t fixed_clock(void *ctx)
{
    return *(int64_t *)ctx;
}

static void test_injected_clock_and_formats(void)
{
    int64_t t = 1795034692123; /* 2026-11-18T... */
    qtsp_clock_set(fixed_clock, &t);
    CU_ASSERT_EQUAL(qtsp_now_ms(), t);
    CU_ASSERT_EQUAL(qtsp_now(), 1795034692);
    char a[40], b[40], c[40];
    qtsp_format_rfc3339(qtsp_now(), a, sizeof a);
    qtsp_format_rfc3339_ms(qtsp_now_ms(), b, sizeof b);
    qtsp_format_http_date(qtsp_now(), c, sizeof c);
    CU_ASSERT_STRING_EQUAL(a, "2026-11-18T20:44:52Z");
    CU_ASSERT_STRING_EQUAL(b, "2026-11-18T20:44:52.123Z");
    CU_ASSERT_STRING_EQUAL(c, "Wed, 18 Nov 2026 20:44:52 GMT");
    qtsp_clock_set(NULL, NULL);
    CU_ASSERT(qtsp_now() > 1700000000);
}

static qtsp_status counting_rng(void *ctx, unsigned char *buf, size_t n)
{
    int *calls = ctx;
    (*calls)++;
    memset(buf, 0xab, n);
    return QTSP_OK;
}

/* qtsp_random_public: a per-thread pool, never handing out the same octets
 * twice, not even across a fork (the child's pool is emptied, so parent and
 * child draw different serials); an injected source and large requests
 * bypass the pool. */
static void test_random_public_pool_is_fresh_after_fork(void)
{
    unsigned char a[8], b[8];
    CU_ASSERT_FATAL(qtsp_random_public(a, sizeof a) == QTSP_OK); /* the pool is filled */
    CU_ASSERT_FATAL(qtsp_random_public(b, sizeof b) == QTSP_OK);
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        unsigned char c[8] = {0};
        int ok = qtsp_random_public(c, sizeof c) == QTSP_OK;
        _exit(ok && write(fds[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
    }
    close(fds[1]);
    unsigned char child[8] = {0}, parent[8];
    CU_ASSERT_EQUAL(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    close(fds[0]);
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_FATAL(qtsp_random_public(parent, sizeof parent) == QTSP_OK);
    CU_ASSERT(memcmp(child, parent, sizeof parent) != 0); /* the same pool would give the same */

    int calls = 0;
    qtsp_rng_set(counting_rng, &calls);
    CU_ASSERT(qtsp_random_public(a, sizeof a) == QTSP_OK);
    CU_ASSERT_EQUAL(calls, 1);
    CU_ASSERT_EQUAL(a[0], 0xab);
    qtsp_rng_set(NULL, NULL);
    unsigned char big[65] = {0};
    CU_ASSERT(qtsp_random_public(big, sizeof big) == QTSP_OK); /* past the pool's limit */
    int zeros = 0;
    for (size_t i = 0; i < sizeof big; i++)
        zeros += big[i] == 0;
    CU_ASSERT(zeros < 16);
}

static void test_codec_rfc4648_vectors_and_canonical_decoding(void)
{
    char out[64];
    qtsp_base32_encode((const unsigned char *)"foobar", 6, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "MZXW6YTBOI");
    qtsp_base64url_encode((const unsigned char *)"foobar", 6, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "Zm9vYmFy");
    qtsp_base64url_encode((const unsigned char *)"\xfb\xff", 2, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "-_8");
    /* RFC 4648 10: standard alphabet with padding */
    static const char *const std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i <= 6; i++) {
        CU_ASSERT_EQUAL(qtsp_base64_encode((const unsigned char *)"foobar", i, out, sizeof out),
                        QTSP_OK);
        CU_ASSERT_STRING_EQUAL(out, std[i]);
    }
    CU_ASSERT_EQUAL(qtsp_base64_encode((const unsigned char *)"\xfb\xff", 2, out, sizeof out),
                    QTSP_OK);
    CU_ASSERT_STRING_EQUAL(out, "+/8=");
    CU_ASSERT_EQUAL(qtsp_base64_encode((const unsigned char *)"foo", 3, out, 4), QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    unsigned char b[16];
    size_t n = 0;
    const unsigned all = QTSP_B64_STD | QTSP_B64_URL | QTSP_B64_PADDING;
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8=", 4, all, b, sizeof b, &n), QTSP_OK);
    CU_ASSERT(n == 2 && memcmp(b, "fo", 2) == 0);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8", 3, all, b, sizeof b, &n), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_base64_decode("-_8", 3, QTSP_B64_URL, b, sizeof b, &n), QTSP_OK);
    CU_ASSERT(n == 2 && b[0] == 0xfb && b[1] == 0xff);
    CU_ASSERT_EQUAL(qtsp_base64_decode("+/8", 3, QTSP_B64_STD, b, sizeof b, &n), QTSP_OK);
    CU_ASSERT(n == 2 && b[0] == 0xfb && b[1] == 0xff);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_base64_decode("+/8", 3, QTSP_B64_URL, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm9", 3, all, b, sizeof b, &n),
                    QTSP_ERR_INVALID); /* leftover bits */
    CU_ASSERT_EQUAL(qtsp_base64_decode("Z", 1, all, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8=A", 5, all, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8=", 4, QTSP_B64_STD, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm9vYmFy", 8, all, b, 5, &n), QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hex_value('f'), 15);
    CU_ASSERT_EQUAL(qtsp_hex_value('G'), -1);
}

/* A truncated output stops the encoder; the input left unread must not
 * accumulate (a shift past 31 under UBSan). */
static void test_codec_truncated_output_is_a_prefix(void)
{
    unsigned char in[64];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 37 + 11);
    char full[128], cut[8];
    qtsp_base64url_encode(in, sizeof in, full, sizeof full);
    qtsp_base64url_encode(in, sizeof in, cut, sizeof cut);
    CU_ASSERT_EQUAL(strlen(cut), sizeof cut - 1);
    CU_ASSERT(strncmp(full, cut, sizeof cut - 1) == 0);
    qtsp_base32_encode(in, sizeof in, full, sizeof full);
    qtsp_base32_encode(in, sizeof in, cut, sizeof cut);
    CU_ASSERT_EQUAL(strlen(cut), sizeof cut - 1);
    CU_ASSERT(strncmp(full, cut, sizeof cut - 1) == 0);
    qtsp_base32_encode(in, sizeof in, cut, 1);
    CU_ASSERT_STRING_EQUAL(cut, "");
}

static void test_json_escape_quotes_controls_and_stops_whole(void)
{
    char out[64];
    size_t n = qtsp_json_escape(out, sizeof out, 0, "a\"b\\c\n\x7f");
    out[n] = '\0';
    CU_ASSERT_STRING_EQUAL(out, "a\\\"b\\\\c\\u000a\\u007f");
    n = qtsp_json_escape(out, 10, 0, "abcdefghijkl");
    CU_ASSERT(n <= 9);
}

static void *log_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        qtsp_log_access("0123456789abcdef", NULL, "GET", "/ocsp/xyz", 200, 1234, 0.05);
    return NULL;
}

static void test_buffered_access_log_writes_every_line_whole(void)
{
    char path[] = "/tmp/qtsp-log-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    qtsp_log_set_buffered(1);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, log_worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL); /* thread exit writes its buffer */
    qtsp_log_access("fedcba9876543210", NULL, "POST", "/tsa", 200, 10, 0.1);
    qtsp_log_set_buffered(0); /* flushes the main thread's lines */
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[1024];
    int n = 0, good = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        good += strstr(line, " info access id=") != NULL && line[strlen(line) - 1] == '\n';
    }
    fclose(f);
    unlink(path);
    CU_ASSERT_EQUAL(n, 4001);
    CU_ASSERT_EQUAL(good, 4001);
}

/* ---- procmetrics: the /metrics of serve --processes N ---- */

static void test_procmetrics_merges_families_once_with_process_labels(void)
{
    const char *a = "# HELP qtsp_x_total Things.\n# TYPE qtsp_x_total counter\n"
                    "qtsp_x_total{route=\"a\"} 3\nqtsp_x_total{route=\"b\"} 4\n"
                    "# HELP qtsp_g A gauge.\n# TYPE qtsp_g gauge\nqtsp_g 7\n"
                    "# TYPE qtsp_h histogram\nqtsp_h_bucket{le=\"+Inf\"} 2\nqtsp_h_sum 0.5\n"
                    "qtsp_h_count 2\n";
    const char *b = "# HELP qtsp_x_total Things.\n# TYPE qtsp_x_total counter\n"
                    "qtsp_x_total{route=\"a\"} 5\n"
                    "# HELP qtsp_only_b Only in b.\n# TYPE qtsp_only_b gauge\nqtsp_only_b{} 1\n"
                    "# HELP qtsp_g A gauge.\n# TYPE qtsp_g gauge\nqtsp_g 8";
    const char *texts[] = {a, NULL, b};
    size_t lens[] = {strlen(a), 0, strlen(b)};
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    CU_ASSERT_FATAL(qtsp_procmetrics_merge_texts(texts, lens, 3, &out) == QTSP_OK);
    const char *want =
        "# HELP qtsp_x_total Things.\n# TYPE qtsp_x_total counter\n"
        "qtsp_x_total{process=\"0\",route=\"a\"} 3\nqtsp_x_total{process=\"0\",route=\"b\"} 4\n"
        "qtsp_x_total{process=\"2\",route=\"a\"} 5\n"
        "# HELP qtsp_g A gauge.\n# TYPE qtsp_g gauge\nqtsp_g{process=\"0\"} 7\n"
        "qtsp_g{process=\"2\"} 8\n"
        "# TYPE qtsp_h histogram\nqtsp_h_bucket{process=\"0\",le=\"+Inf\"} 2\n"
        "qtsp_h_sum{process=\"0\"} 0.5\nqtsp_h_count{process=\"0\"} 2\n"
        "# HELP qtsp_only_b Only in b.\n# TYPE qtsp_only_b gauge\nqtsp_only_b{process=\"2\"} 1\n";
    CU_ASSERT_STRING_EQUAL((const char *)out.data, want);
    if (strcmp((const char *)out.data, want) != 0)
        fprintf(stderr, "got:\n%s\n", (const char *)out.data);
    qtsp_buf_cleanup(&out);
}

static void test_procmetrics_slots_are_shared_with_forked_workers(void)
{
    qtsp_procmetrics *pm = NULL;
    CU_ASSERT_FATAL(qtsp_procmetrics_new(2, &pm) == QTSP_OK);
    CU_ASSERT(qtsp_procmetrics_new(0, &pm) == QTSP_ERR_INVALID);
    qtsp_err_clear();
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        const char *t = "# TYPE qtsp_w gauge\nqtsp_w 1\n";
        _exit(qtsp_procmetrics_publish(pm, 1, t, strlen(t)) == QTSP_OK ? 0 : 1);
    }
    int st = 0;
    CU_ASSERT_FATAL(waitpid(pid, &st, 0) == pid);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *mine = "# TYPE qtsp_w gauge\nqtsp_w 0\n";
    CU_ASSERT(qtsp_procmetrics_publish(pm, 0, mine, strlen(mine)) == QTSP_OK);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT(qtsp_procmetrics_merge(pm, &out) == QTSP_OK);
    CU_ASSERT_STRING_EQUAL(
        (const char *)out.data,
        "# TYPE qtsp_w gauge\nqtsp_w{process=\"0\"} 0\nqtsp_w{process=\"1\"} 1\n");
    /* a worker that exited is cleared; an oversized text empties its slot */
    qtsp_procmetrics_clear(pm, 1);
    static char big[QTSP_PROCMETRICS_SLOT + 1];
    memset(big, 'x', sizeof big);
    CU_ASSERT(qtsp_procmetrics_publish(pm, 0, big, sizeof big) == QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    CU_ASSERT(qtsp_procmetrics_publish(pm, 2, mine, strlen(mine)) == QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_buf_reset(&out);
    CU_ASSERT(qtsp_procmetrics_merge(pm, &out) == QTSP_OK);
    CU_ASSERT_EQUAL(out.len, 0);
    qtsp_buf_cleanup(&out);
    qtsp_procmetrics_free(pm);
}

/* Access lines carry the injected time to the millisecond (the date part is
 * cached per second and thread) and the latency with three decimals. */
static void test_access_line_time_and_latency_format(void)
{
    char path[] = "/tmp/qtsp-log-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int64_t t = INT64_C(1795034692123); /* 2026-11-18T20:44:52.123Z */
    qtsp_clock_set(fixed_clock, &t);
    qtsp_log_access("0000000000000001", NULL, "GET", "/a", 200, 1, 1.5);
    t += 5; /* same second */
    qtsp_log_access("0000000000000002", NULL, "GET", "/b", 200, 1, 0.0004);
    t += 1000; /* next second: the cached date is renewed */
    qtsp_log_access("0000000000000003", NULL, "GET", "/c", 200, 1, 12.3456);
    t = INT64_C(1795034692000) + 86400 * 1000; /* next day, .000 */
    qtsp_log_access("0000000000000004", NULL, "GET", "/d", 200, 1, 0);
    qtsp_clock_set(NULL, NULL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static const char *const want[] = {
        "2026-11-18T20:44:52.123Z info access id=0000000000000001 method=GET path=\"/a\" "
        "status=200 bytes=1 ms=1.500\n",
        "2026-11-18T20:44:52.128Z info access id=0000000000000002 method=GET path=\"/b\" "
        "status=200 bytes=1 ms=0.000\n",
        "2026-11-18T20:44:53.128Z info access id=0000000000000003 method=GET path=\"/c\" "
        "status=200 bytes=1 ms=12.346\n",
        "2026-11-19T20:44:52.000Z info access id=0000000000000004 method=GET path=\"/d\" "
        "status=200 bytes=1 ms=0.000\n",
    };
    char line[512];
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
        CU_ASSERT_STRING_EQUAL(line, want[i]);
    }
    CU_ASSERT_PTR_NULL(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
}

/* The client address, when known, ends the line (text and JSON). */
static void test_access_line_carries_the_client_address(void)
{
    char path[] = "/tmp/qtsp-log-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    qtsp_log_access("0000000000000005", "192.0.2.7", "GET", "/a", 200, 1, 1);
    qtsp_log_set_format(QTSP_LOG_JSON);
    qtsp_log_access("0000000000000006", "2001:db8::1", "GET", "/b", 404, 2, 1);
    qtsp_log_access("0000000000000007", "", "GET", "/c", 404, 2, 1);
    qtsp_log_set_format(QTSP_LOG_TEXT);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, " id=0000000000000005 method=GET "));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, " ms=1.000 client=192.0.2.7\n"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"ms\":1.000,\"client\":\"2001:db8::1\"}\n"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    CU_ASSERT_PTR_NULL(strstr(line, "client")); /* empty: no field */
    fclose(f);
    unlink(path);
}

/* A request target longer than the line still gives one JSON object with
 * every field: the escaped path is capped as in text mode. */
static void test_json_access_line_with_long_path_is_whole_json(void)
{
    char path[] = "/tmp/qtsp-log-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    size_t plen = 6000;
    char *target = malloc(plen + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(target);
    for (size_t i = 0; i < plen; i++)
        target[i] = i % 7 == 0 ? '"' : (i % 11 == 0 ? '\x01' : 'a');
    target[0] = '/';
    target[plen] = '\0';
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    qtsp_log_set_format(QTSP_LOG_JSON);
    qtsp_log_access("0000000000000009", NULL, "GET", target, 414, 77, 2.5);
    qtsp_log(QTSP_LOG_WARN, "%s", target + 1);
    qtsp_log_set_format(QTSP_LOG_TEXT);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    free(target);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[8192];
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL(j);
    if (j) {
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "msg")), "access");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "request_id")),
                               "0000000000000009");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "method")), "GET");
        const char *p = json_string_value(json_object_get(j, "path"));
        CU_ASSERT(p && p[0] == '/' && strlen(p) > 64);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "status")), 414);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "bytes")), 77);
        CU_ASSERT(json_real_value(json_object_get(j, "ms")) == 2.5);
        CU_ASSERT_PTR_NOT_NULL(json_object_get(j, "time"));
        json_decref(j);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    j = json_loads(line, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL(j);
    if (j) {
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "level")), "warn");
        CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(j, "msg")));
        json_decref(j);
    }
    CU_ASSERT_PTR_NULL(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_err_records_first_failure_with_location),
        QTEST(test_buf_refuses_to_grow_past_max),
        QTEST(test_buf_printf_and_take),
        QTEST(test_parse_duration_units),
        QTEST(test_injected_clock_and_formats),
        QTEST(test_random_public_pool_is_fresh_after_fork),
        QTEST(test_codec_rfc4648_vectors_and_canonical_decoding),
        QTEST(test_codec_truncated_output_is_a_prefix),
        QTEST(test_json_access_line_with_long_path_is_whole_json),
        QTEST(test_buffered_access_log_writes_every_line_whole),
        QTEST(test_access_line_time_and_latency_format),
        QTEST(test_access_line_carries_the_client_address),
        QTEST(test_json_escape_quotes_controls_and_stops_whole),
        QTEST(test_procmetrics_merges_families_once_with_process_labels),
        QTEST(test_procmetrics_slots_are_shared_with_forked_workers),
    };
    return qtest_run("core", cases, sizeof cases / sizeof cases[0]);
}
