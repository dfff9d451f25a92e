/* Unit tests for ca/signer.c: the token-label signer and the EVP fallback
 * both produce signatures that verify in software, for EC and RSA keys. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "ca/hsm.h"
#include "ca/signer.h"
#include "ca/signq.h"
#include "tests/lib/qtest.h"

static char g_dir[512];
static qtsp_hsm *g_hsm;

static int verify(EVP_PKEY *pub, const EVP_MD *md, const unsigned char *data, size_t len,
                  const unsigned char *sig, size_t sl)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(c, NULL, md, NULL, pub) == 1 &&
             EVP_DigestVerify(c, sig, sl, data, len) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

static void check_token_type(const char *label, qtsp_keytype kt, const EVP_MD *md)
{
    EVP_PKEY *pub = NULL;
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, label, kt, &pub) == QTSP_OK);
    qtsp_token_key k = {g_hsm, ""};
    snprintf(k.label, sizeof k.label, "%s", label);
    qtsp_signer s;
    qtsp_signer_for_token_key(&k, &s);
    const unsigned char msg[] = "the TBSResponseData bytes";
    unsigned char sig[512];
    size_t sl = sizeof sig;
    CU_ASSERT_EQUAL(qtsp_sign_data(&s, NULL, md, msg, sizeof msg, sig, &sl), QTSP_OK);
    CU_ASSERT(verify(pub, md, msg, sizeof msg, sig, sl));
    CU_ASSERT(!verify(pub, md, msg, sizeof msg - 1, sig, sl)); /* other data: no */
    /* too small a buffer is an error, not an overflow */
    sl = 8;
    qtsp_err_clear();
    CU_ASSERT_NOT_EQUAL(qtsp_sign_data(&s, NULL, md, msg, sizeof msg, sig, &sl), QTSP_OK);
    qtsp_err_clear();
    EVP_PKEY_free(pub);
}

static void test_signer_token_key_signs_ec_p256(void)
{
    check_token_type("sig-p256", QTSP_KEY_EC_P256, EVP_sha256());
}

static void test_signer_token_key_signs_ec_p384(void)
{
    check_token_type("sig-p384", QTSP_KEY_EC_P384, EVP_sha384());
}

static void test_signer_token_key_signs_rsa(void)
{
    check_token_type("sig-rsa", QTSP_KEY_RSA_3072, EVP_sha256());
}

static void test_signer_without_fn_uses_the_evp_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    const unsigned char msg[] = "data";
    unsigned char sig[128];
    size_t sl = sizeof sig;
    qtsp_signer none = {NULL, NULL};
    CU_ASSERT_EQUAL(qtsp_sign_data(&none, k, EVP_sha256(), msg, sizeof msg, sig, &sl), QTSP_OK);
    CU_ASSERT(verify(k, EVP_sha256(), msg, sizeof msg, sig, sl));
    sl = sizeof sig;
    CU_ASSERT_EQUAL(qtsp_sign_data(NULL, k, EVP_sha256(), msg, sizeof msg, sig, &sl), QTSP_OK);
    CU_ASSERT(verify(k, EVP_sha256(), msg, sizeof msg, sig, sl));
    EVP_PKEY_free(k);
}

static void test_signer_unknown_label_fails_cleanly(void)
{
    qtsp_token_key k = {g_hsm, "no-such-key"};
    qtsp_signer s;
    qtsp_signer_for_token_key(&k, &s);
    unsigned char sig[128];
    size_t sl = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_sign_data(&s, NULL, EVP_sha256(), (const unsigned char *)"x", 1, sig, &sl),
                    QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
}

/* ---- the signing queue (ca/signq.h) ---- */

typedef struct sq_result {
    int calls;
    qtsp_status rc;
    unsigned char sig[QTSP_SIGNQ_SIG_MAX];
    size_t sl;
} sq_result;

static void sq_done(void *ctx, qtsp_status rc, const unsigned char *sig, size_t sl)
{
    sq_result *r = ctx;
    r->calls++;
    r->rc = rc;
    r->sl = sig ? sl : 0;
    if (sig)
        memcpy(r->sig, sig, sl);
}

static void test_signq_signs_every_job_once_with_the_token_key(void)
{
    EVP_PKEY *pub = NULL;
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, "sq-p256", QTSP_KEY_EC_P256, &pub) == QTSP_OK);
    qtsp_token_key k = {g_hsm, "sq-p256"};
    qtsp_signer s;
    qtsp_signer_for_token_key(&k, &s);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(2, &q) == QTSP_OK);
    enum { N = 200 };
    static sq_result res[N];
    unsigned char msg[N][8];
    memset(res, 0, sizeof res);
    for (int i = 0; i < N; i++) {
        unsigned char md[32];
        snprintf((char *)msg[i], sizeof msg[i], "m%05d", i);
        SHA256(msg[i], sizeof msg[i], md);
        CU_ASSERT_EQUAL(qtsp_signq_submit(q, &s, EVP_sha256(), md, sizeof md, sq_done, &res[i]),
                        QTSP_OK);
    }
    qtsp_signq_free(q); /* signs what is still queued, then returns */
    int ok = 0, once = 0;
    for (int i = 0; i < N; i++) {
        once += res[i].calls == 1;
        ok += res[i].rc == QTSP_OK && verify(pub, EVP_sha256(), msg[i], sizeof msg[i], res[i].sig,
                                             res[i].sl);
    }
    CU_ASSERT_EQUAL(once, N);
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT(!verify(pub, EVP_sha256(), msg[1], sizeof msg[1], res[0].sig, res[0].sl));
    EVP_PKEY_free(pub);
}

static void test_signq_reports_signer_failure_and_refuses_bad_jobs(void)
{
    qtsp_token_key k = {g_hsm, "no-such-key"};
    qtsp_signer s;
    qtsp_signer_for_token_key(&k, &s);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    unsigned char md[32] = {1};
    sq_result r = {0};
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, &s, EVP_sha256(), md, sizeof md, sq_done, &r), QTSP_OK);
    /* no digest, oversized digest, no callback, a signer without fn: refused */
    qtsp_signer none = {NULL, NULL};
    unsigned char big[65] = {0};
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, &s, EVP_sha256(), md, 0, sq_done, &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, &s, NULL, big, sizeof big, sq_done, &r),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, &s, EVP_sha256(), md, sizeof md, NULL, &r),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, &none, EVP_sha256(), md, sizeof md, sq_done, &r),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_signq_free(q);
    CU_ASSERT_EQUAL(r.calls, 1);
    CU_ASSERT_EQUAL(r.rc, QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_EQUAL(r.sl, 0);
    unsigned long long jobs = 1, batches = 1;
    qtsp_signq_stats(NULL, &jobs, &batches);
    CU_ASSERT(jobs == 0 && batches == 0);
    CU_ASSERT_EQUAL(qtsp_signq_new(0, &q), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

int main(void)
{
    const char *d = qtest_tmpdir("signer");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    if (qtest_softhsm_token(g_dir, "signer-test") != 0 ||
        qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "signer-test", QTEST_PIN, &g_hsm) != QTSP_OK) {
        printf("qtest: signer 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_signer_token_key_signs_ec_p256),
        QTEST(test_signer_token_key_signs_ec_p384),
        QTEST(test_signer_token_key_signs_rsa),
        QTEST(test_signer_without_fn_uses_the_evp_key),
        QTEST(test_signer_unknown_label_fails_cleanly),
        QTEST(test_signq_signs_every_job_once_with_the_token_key),
        QTEST(test_signq_reports_signer_failure_and_refuses_bad_jobs),
    };
    int r = qtest_run("signer", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtest_rmtree(g_dir);
    return r;
}
