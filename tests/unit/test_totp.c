/* Unit tests for sign/totp.c: the test vectors of RFC 4226 (HOTP,
 * appendix D) and RFC 6238 (TOTP with SHA-1, appendix B), the window of
 * one step either side, replay refusal, malformed codes. */
#include <string.h>

#include "core/err.h"
#include "sign/totp.h"
#include "tests/lib/qtest.h"

/* RFC 4226 appendix D and RFC 6238 appendix B: the ASCII secret below */
static const unsigned char k_secret[] = "12345678901234567890";
#define SECRET_LEN 20

static void test_totp_hotp_vectors_of_rfc4226(void)
{
    static const char *const want[] = {"755224", "287082", "359152", "969429", "338314",
                                       "254676", "287922", "162583", "399871", "520489"};
    for (uint64_t c = 0; c < 10; c++) {
        char got[9];
        CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, c, 6, got), QTSP_OK);
        CU_ASSERT_STRING_EQUAL(got, want[c]);
    }
}

static void test_totp_sha1_vectors_of_rfc6238(void)
{
    static const struct {
        int64_t t;
        const char *code;
    } v[] = {{59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
             {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000LL, "65353130"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char got[9];
        CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, qtsp_totp_step(v[i].t), 8, got),
                              QTSP_OK);
        CU_ASSERT_STRING_EQUAL(got, v[i].code);
    }
}

static void test_totp_accepts_one_step_either_side(void)
{
    int64_t now = 1234567890; /* step 41152263 */
    uint64_t step = qtsp_totp_step(now), m = 0;
    char code[7];
    for (int d = -1; d <= 1; d++) {
        CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, step + d, 6, code), QTSP_OK);
        CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, 0, &m), QTSP_OK);
        CU_ASSERT_EQUAL(m, step + d);
    }
    for (int d = -3; d <= 3; d += 6) { /* two steps off: refused */
        CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, step + d, 6, code), QTSP_OK);
        CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, 0, &m), QTSP_ERR_AUTH);
        qtsp_err_clear();
    }
}

static void test_totp_refuses_a_code_used_before(void)
{
    int64_t now = 2000000000;
    uint64_t step = qtsp_totp_step(now), m = 0;
    char code[7];
    CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, step, 6, code), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, 0, &m), QTSP_OK);
    /* the same code again, and the previous step's code, after step was used */
    CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, m, &m), QTSP_ERR_AUTH);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "OTP: code already used");
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, step - 1, 6, code), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, step, &m), QTSP_ERR_AUTH);
    qtsp_err_clear();
    /* the next step's code is still good */
    CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(k_secret, SECRET_LEN, step + 1, 6, code), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, code, now, 1, step, &m), QTSP_OK);
    CU_ASSERT_EQUAL(m, step + 1);
}

static void test_totp_refuses_malformed_codes(void)
{
    uint64_t m = 0;
    static const char *const bad[] = {"", "12345", "1234567", "12a456", " 23456", "-12345"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, bad[i], 59, 1, 0, &m),
                        QTSP_ERR_INVALID);
        qtsp_err_clear();
    }
    CU_ASSERT_EQUAL(qtsp_totp_verify(k_secret, SECRET_LEN, NULL, 59, 1, 0, &m), QTSP_ERR_INVALID);
    qtsp_err_clear();
    char out[9];
    CU_ASSERT_EQUAL(qtsp_totp_code(k_secret, 0, 1, 6, out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_totp_code(k_secret, SECRET_LEN, 1, 5, out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_totp_code(k_secret, SECRET_LEN, 1, 9, out), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_totp_hotp_vectors_of_rfc4226),      QTEST(test_totp_sha1_vectors_of_rfc6238),
        QTEST(test_totp_accepts_one_step_either_side), QTEST(test_totp_refuses_a_code_used_before),
        QTEST(test_totp_refuses_malformed_codes),
    };
    return qtest_run("totp", cases, sizeof cases / sizeof cases[0]);
}
