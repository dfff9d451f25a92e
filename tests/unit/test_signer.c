/* Unit tests for ca/signer.c: the token-label signer and the EVP fallback
 * both produce signatures that verify in software, for EC and RSA keys. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "ca/hsm.h"
#include "ca/signer.h"
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
    };
    int r = qtest_run("signer", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtest_rmtree(g_dir);
    return r;
}
