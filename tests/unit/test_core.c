/* Unit tests for core/: error idiom, buffer, clock helpers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/err.h"
#include "core/log.h"
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

static int64_t fixed_clock(void *ctx) { return *(int64_t *)ctx; }

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

static void test_codec_rfc4648_vectors_and_canonical_decoding(void)
{
    char out[64];
    qtsp_base32_encode((const unsigned char *)"foobar", 6, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "MZXW6YTBOI");
    qtsp_base64url_encode((const unsigned char *)"foobar", 6, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "Zm9vYmFy");
    qtsp_base64url_encode((const unsigned char *)"\xfb\xff", 2, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "-_8");
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
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm9", 3, all, b, sizeof b, &n), QTSP_ERR_INVALID); /* leftover bits */
    CU_ASSERT_EQUAL(qtsp_base64_decode("Z", 1, all, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8=A", 5, all, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm8=", 4, QTSP_B64_STD, b, sizeof b, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_base64_decode("Zm9vYmFy", 8, all, b, 5, &n), QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hex_value('f'), 15);
    CU_ASSERT_EQUAL(qtsp_hex_value('G'), -1);
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
        qtsp_log_access("0123456789abcdef", "GET", "/ocsp/xyz", 200, 1234, 0.05);
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
    qtsp_log_access("fedcba9876543210", "POST", "/tsa", 200, 10, 0.1);
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

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_err_records_first_failure_with_location),
        QTEST(test_buf_refuses_to_grow_past_max),
        QTEST(test_buf_printf_and_take),
        QTEST(test_parse_duration_units),
        QTEST(test_injected_clock_and_formats),
        QTEST(test_codec_rfc4648_vectors_and_canonical_decoding),
        QTEST(test_buffered_access_log_writes_every_line_whole),
        QTEST(test_json_escape_quotes_controls_and_stops_whole),
    };
    return qtest_run("core", cases, sizeof cases / sizeof cases[0]);
}
