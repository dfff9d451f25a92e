/* Unit tests for ca/hsm.c against a real throw-away SoftHSM2 token.
 * Each test opens and frees its own qtsp_hsm (one per process at a time)
 * and uses its own key labels. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/hsm.h"
#include "core/err.h"
#include "tests/lib/qtest.h"

#define TOKEN "qtsp-test"

static char g_dir[512];

static qtsp_hsm *open_hsm(void)
{
    qtsp_hsm *hsm = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_hsm_open(QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN, &hsm);
    if (rc != QTSP_OK)
        fprintf(stderr, "open: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    return hsm;
}

static void sha256(const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    CU_ASSERT_EQUAL(EVP_Digest(msg, strlen(msg), out, &n, EVP_sha256(), NULL), 1);
}

/* Verifies sig over a precomputed SHA-256 digest with a software key. */
/* The natural scheme of the test keys: labels with "rsa" are RSA keys. */
#define ALG(label, md)                                                                             \
    (&(qtsp_sigalg){strstr((label), "rsa") ? QTSP_SIG_RSA_PKCS1 : QTSP_SIG_ECDSA, (md), NULL, -1})

static int verify_digest(EVP_PKEY *pub, const unsigned char *dg, size_t dlen,
                         const unsigned char *sig, size_t siglen, const EVP_MD *md)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
    int ok = c != NULL && EVP_PKEY_verify_init(c) == 1;
    if (ok && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA)
        ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, md) == 1;
    ok = ok && EVP_PKEY_verify(c, sig, siglen, dg, dlen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

static void test_keytype_parse_and_name_round_trip(void)
{
    static const char *names[] = {"ec-p256", "ec-p384", "rsa-3072"};
    for (size_t i = 0; i < 3; i++) {
        qtsp_keytype t;
        CU_ASSERT_EQUAL(qtsp_keytype_parse(names[i], &t), QTSP_OK);
        CU_ASSERT_STRING_EQUAL(qtsp_keytype_name(t), names[i]);
    }
    qtsp_keytype t = QTSP_KEY_EC_P256;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_keytype_parse("rsa-1024", &t), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_keytype_parse("EC-P256", &t), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_keytype_parse(NULL, &t), QTSP_ERR_INVALID);
}

static void test_softhsm_create_refuses_existing_token_dir(void)
{
    char hsmdir[600];
    snprintf(hsmdir, sizeof hsmdir, "%s/hsm", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, hsmdir, "other", "5678", "1234"),
                    QTSP_ERR_EXISTS);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, hsmdir, "other", "56", "1234"),
                    QTSP_ERR_INVALID);
}

static void test_softhsm_create_refused_while_module_in_use(void)
{
    qtsp_hsm *hsm = open_hsm();
    char conf_before[600], busy[600];
    snprintf(conf_before, sizeof conf_before, "%s", getenv("SOFTHSM2_CONF"));
    snprintf(busy, sizeof busy, "%s/busy", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, busy, "busy", "5678", "1234"),
                    QTSP_ERR_STATE);
    CU_ASSERT_STRING_EQUAL(getenv("SOFTHSM2_CONF"), conf_before);
    /* the open token is unaffected */
    char serial[32];
    CU_ASSERT_EQUAL(qtsp_hsm_token_info(hsm, NULL, 0, serial, sizeof serial, NULL, 0), QTSP_OK);
    size_t n = 0;
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &n), QTSP_OK);
    qtsp_hsm_free(hsm);
}

/* What `qtsp init` does: create a token, then open it in the same process. */
static void test_softhsm_create_then_open_in_same_process(void)
{
    char conf_before[600], second[600];
    snprintf(conf_before, sizeof conf_before, "%s", getenv("SOFTHSM2_CONF"));
    snprintf(second, sizeof second, "%s/second", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(
        qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, second, "second", "5678", "4321"), QTSP_OK);
    qtsp_hsm *hsm = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "second", "4321", &hsm), QTSP_OK);
    size_t n = 99;
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "k", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    qtsp_key *priv = NULL;
    CU_ASSERT_EQUAL(qtsp_key_from_token(hsm, "k", &priv), QTSP_OK);
    qtsp_key_free(priv);
    qtsp_hsm_free(hsm);
    /* the first token's directory is not visible under this configuration */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_open(QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN, &hsm),
                    QTSP_ERR_HSM_NO_TOKEN);
    CU_ASSERT_EQUAL(setenv("SOFTHSM2_CONF", conf_before, 1), 0);
    hsm = open_hsm();
    qtsp_hsm_free(hsm);
}

static void test_hsm_opens_token_by_label_and_reports_info(void)
{
    qtsp_hsm *hsm = open_hsm();
    char model[32], serial[32], manuf[40];
    CU_ASSERT_EQUAL(
        qtsp_hsm_token_info(hsm, model, sizeof model, serial, sizeof serial, manuf, sizeof manuf),
        QTSP_OK);
    CU_ASSERT_STRING_EQUAL(model, "SoftHSM v2");
    CU_ASSERT_STRING_EQUAL(manuf, "SoftHSM project");
    CU_ASSERT(strlen(serial) > 0);
    CU_ASSERT(serial[strlen(serial) - 1] != ' ');
    qtsp_hsm_free(hsm);
    qtsp_hsm_free(NULL);
}

static void test_hsm_wrong_pin_is_login_error(void)
{
    qtsp_hsm *hsm = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_open(QTEST_SOFTHSM_MODULE, TOKEN, "9999", &hsm), QTSP_ERR_HSM_LOGIN);
    CU_ASSERT_PTR_NULL(hsm);
    /* the right PIN still works afterwards */
    hsm = open_hsm();
    qtsp_hsm_free(hsm);
}

static void test_hsm_unknown_label_is_no_token(void)
{
    qtsp_hsm *hsm = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "no-such-token", QTEST_PIN, &hsm),
                    QTSP_ERR_HSM_NO_TOKEN);
    CU_ASSERT_PTR_NULL(hsm);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_open("/nonexistent/module.so", TOKEN, QTEST_PIN, &hsm), QTSP_ERR_HSM);
    CU_ASSERT_PTR_NULL(hsm);
}

static void test_hsm_generates_p256_p384_rsa3072(void)
{
    qtsp_hsm *hsm = open_hsm();
    size_t before = 0, after = 0;
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &before), QTSP_OK);
    static const struct {
        const char *label;
        qtsp_keytype type;
        int base_id, bits;
    } k[] = {
        {"gen-p256", QTSP_KEY_EC_P256, EVP_PKEY_EC, 256},
        {"gen-p384", QTSP_KEY_EC_P384, EVP_PKEY_EC, 384},
        {"gen-rsa", QTSP_KEY_RSA_3072, EVP_PKEY_RSA, 3072},
    };
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY *pub = NULL;
        qtsp_err_clear();
        CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, k[i].label, k[i].type, &pub), QTSP_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
        CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(pub), k[i].base_id);
        CU_ASSERT_EQUAL(EVP_PKEY_get_bits(pub), k[i].bits);
        /* public_key gives the same key as generate */
        EVP_PKEY *again = NULL;
        CU_ASSERT_EQUAL(qtsp_hsm_public_key(hsm, k[i].label, &again), QTSP_OK);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(pub, again), 1);
        EVP_PKEY_free(again);
        EVP_PKEY_free(pub);
    }
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &after), QTSP_OK);
    CU_ASSERT_EQUAL(after, before + 3);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "gen-bad", (qtsp_keytype)99, NULL), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "", QTSP_KEY_EC_P256, NULL), QTSP_ERR_INVALID);
    qtsp_hsm_free(hsm);
}

static void test_hsm_duplicate_label_exists(void)
{
    qtsp_hsm *hsm = open_hsm();
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "dup", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    size_t before = 0, after = 0;
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &before), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "dup", QTSP_KEY_EC_P384, NULL), QTSP_ERR_EXISTS);
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &after), QTSP_OK);
    CU_ASSERT_EQUAL(after, before);
    qtsp_hsm_free(hsm);
}

/* Looks for label's private key in pkcs11-tool's listing; returns its
 * "Access:" line in access (empty when not found). */
static void pkcs11_tool_access(const char *label, char *access, size_t cap)
{
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd,
             "pkcs11-tool --module %s --token-label %s --login --pin %s --list-objects 2>&1",
             QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN);
    access[0] = '\0';
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int in_priv = 0, match = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, "Object;") != NULL) {
            in_priv = strncmp(line, "Private Key Object", 18) == 0;
            match = 0;
        } else if (in_priv && strncmp(line, "  label:", 8) == 0) {
            const char *v = line + 8;
            while (*v == ' ')
                v++;
            match = strcmp(v, label) == 0;
        } else if (in_priv && match && strncmp(line, "  Access:", 9) == 0) {
            size_t n = strlen(line + 9);
            if (n >= cap)
                n = cap - 1;
            memcpy(access, line + 9, n);
            access[n] = '\0';
        }
    }
    CU_ASSERT_EQUAL(pclose(p), 0);
}

static void test_hsm_private_key_is_sensitive_and_never_extractable(void)
{
    qtsp_hsm *hsm = open_hsm();
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "prot-p256", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "prot-rsa", QTSP_KEY_RSA_3072, NULL), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_check_key_protected(hsm, "prot-p256"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_check_key_protected(hsm, "prot-rsa"), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_check_key_protected(hsm, "prot-none"), QTSP_ERR_HSM_NO_KEY);
    qtsp_hsm_free(hsm);

    /* an outside client sees the same */
    static const char *labels[] = {"prot-p256", "prot-rsa"};
    for (size_t i = 0; i < 2; i++) {
        char access[256];
        pkcs11_tool_access(labels[i], access, sizeof access);
        CU_ASSERT_PTR_NOT_NULL(strstr(access, "sensitive"));
        CU_ASSERT_PTR_NOT_NULL(strstr(access, "never extractable"));
        /* "extractable" appears only as part of "never extractable" */
        const char *e = strstr(access, "extractable");
        CU_ASSERT(e != NULL && e >= access + 6 && strncmp(e - 6, "never ", 6) == 0);
        CU_ASSERT_PTR_NULL(e ? strstr(e + 1, "extractable") : NULL);
    }
}

/* Signs msg with the token-backed EVP_PKEY and verifies in software. */
static void sign_with_key_and_verify(const qtsp_key *priv, EVP_PKEY *pub)
{
    static const char msg[] = "to be signed by the CA key";
    unsigned char sig[512];
    size_t siglen = sizeof sig;
    qtsp_sigalg alg;
    CU_ASSERT_EQUAL(qtsp_key_sigalg(priv, EVP_sha256(), &alg), QTSP_OK);
    CU_ASSERT_EQUAL(
        qtsp_key_sign_data(priv, &alg, (const unsigned char *)msg, strlen(msg), sig, &siglen),
        QTSP_OK);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    CU_ASSERT_EQUAL(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pub), 1);
    CU_ASSERT_EQUAL(EVP_DigestVerify(m, sig, siglen, (const unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(m);
}

static void test_hsm_token_key_signs_and_verifies_in_software(void)
{
    qtsp_hsm *hsm = open_hsm();
    static const struct {
        const char *label;
        qtsp_keytype type;
    } k[] = {
        {"ca-p256", QTSP_KEY_EC_P256},
        {"ca-p384", QTSP_KEY_EC_P384},
        {"ca-rsa", QTSP_KEY_RSA_3072},
    };
    qtsp_key *priv[3] = {NULL};
    EVP_PKEY *pub[3] = {NULL};
    /* Each key is generated after the previous one is in use: the key
     * index must see the new key. */
    for (size_t i = 0; i < 3; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, k[i].label, k[i].type, &pub[i]), QTSP_OK);
        qtsp_status rc = qtsp_key_from_token(hsm, k[i].label, &priv[i]);
        if (rc != QTSP_OK)
            fprintf(stderr, "key_from_token: %s\n", qtsp_err_message());
        CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
        sign_with_key_and_verify(priv[i], pub[i]);
    }
    /* keys obtained before later enumerations still work */
    for (size_t i = 0; i < 3; i++)
        sign_with_key_and_verify(priv[i], pub[i]);
    qtsp_key *none = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_from_token(hsm, "ca-none", &none), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_PTR_NULL(none);
    for (size_t i = 0; i < 3; i++) {
        qtsp_key_free(priv[i]);
        EVP_PKEY_free(pub[i]);
    }
    qtsp_hsm_free(hsm);
}

static void test_hsm_sign_digest_ec_and_rsa_verify_in_software(void)
{
    qtsp_hsm *hsm = open_hsm();
    static const struct {
        const char *label;
        qtsp_keytype type;
    } k[] = {
        {"sd-p256", QTSP_KEY_EC_P256},
        {"sd-p384", QTSP_KEY_EC_P384},
        {"sd-rsa", QTSP_KEY_RSA_3072},
    };
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY *pub = NULL;
        CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, k[i].label, k[i].type, &pub), QTSP_OK);
        const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
        for (size_t j = 0; j < 3; j++) {
            unsigned char dg[64], sig[512];
            unsigned int dlen = 0;
            CU_ASSERT_EQUAL(EVP_Digest("payload", 7, dg, &dlen, mds[j], NULL), 1);
            size_t siglen = sizeof sig;
            qtsp_err_clear();
            qtsp_status rc = qtsp_hsm_sign_digest(hsm, k[i].label, ALG(k[i].label, mds[j]), dg,
                                                  dlen, sig, &siglen);
            if (rc != QTSP_OK)
                fprintf(stderr, "sign_digest: %s\n", qtsp_err_message());
            CU_ASSERT_EQUAL(rc, QTSP_OK);
            CU_ASSERT(verify_digest(pub, dg, dlen, sig, siglen, mds[j]));
            /* a flipped digest does not verify */
            dg[0] ^= 1;
            CU_ASSERT(!verify_digest(pub, dg, dlen, sig, siglen, mds[j]));
        }
        EVP_PKEY_free(pub);
    }
    /* RSA signatures are exactly the modulus size */
    unsigned char dg[32], sig[512];
    sha256("x", dg);
    size_t siglen = sizeof sig;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "sd-rsa", ALG("sd-rsa", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_OK);
    CU_ASSERT_EQUAL(siglen, 384);
    qtsp_hsm_free(hsm);
}

static void test_hsm_sign_digest_rejects_bad_input(void)
{
    qtsp_hsm *hsm = open_hsm();
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, "bad-p256", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, "bad-rsa", QTSP_KEY_RSA_3072, NULL), QTSP_OK);
    unsigned char dg[32], sig[512];
    sha256("x", dg);
    size_t siglen = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-p256", ALG("bad-p256", EVP_sha384()), dg, 32, sig, &siglen),
        QTSP_ERR_INVALID); /* length does not match md */
    qtsp_err_clear();
    siglen = 8;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-p256", ALG("bad-p256", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    siglen = 100;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-rsa", ALG("bad-rsa", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
    siglen = sizeof sig;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-rsa", ALG("bad-rsa", NULL), dg, 32, sig, &siglen),
        QTSP_ERR_INVALID); /* RSA needs md for the DigestInfo */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-rsa", ALG("bad-rsa", EVP_sha1()), dg, 20, sig, &siglen),
        QTSP_ERR_UNSUPPORTED);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-none", ALG("bad-none", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_ERR_HSM_NO_KEY);
    /* the session is still usable after failures */
    siglen = sizeof sig;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "bad-p256", ALG("bad-p256", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_OK);
    qtsp_hsm_free(hsm);
}

static void test_hsm_destroy_removes_key(void)
{
    qtsp_hsm *hsm = open_hsm();
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, "gone", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    unsigned char dg[32], sig[128];
    sha256("x", dg);
    size_t siglen = sizeof sig;
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "gone", ALG("gone", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_OK);
    size_t before = 0, after = 0;
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &before), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "gone"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_count_private_keys(hsm, &after), QTSP_OK);
    CU_ASSERT_EQUAL(after + 1, before);
    siglen = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "gone", ALG("gone", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_ERR_HSM_NO_KEY);
    EVP_PKEY *pub = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(hsm, "gone", &pub), QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "gone"), QTSP_ERR_HSM_NO_KEY);
    /* the label can be reused */
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "gone", QTSP_KEY_EC_P384, NULL), QTSP_OK);
    qtsp_hsm_free(hsm);
}

static int run_pkcs11_tool(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "pkcs11-tool --module %s --token-label %s --login --pin %s %s >/dev/null 2>&1",
             QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN, args);
    return system(cmd);
}

/* Keys made or removed by another process while the hsm is open. */
static void test_hsm_sees_keys_changed_by_another_process(void)
{
    qtsp_hsm *hsm = open_hsm();
    CU_ASSERT_EQUAL_FATAL(
        run_pkcs11_tool("--keypairgen --key-type EC:prime256v1 --label ext --id 657874"), 0);
    unsigned char dg[32], sig[128];
    sha256("x", dg);
    size_t siglen = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "ext", ALG("ext", EVP_sha256()), dg, 32, sig, &siglen), QTSP_OK);
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_public_key(hsm, "ext", &pub), QTSP_OK);
    CU_ASSERT(verify_digest(pub, dg, 32, sig, siglen, EVP_sha256()));
    EVP_PKEY_free(pub);
    CU_ASSERT_EQUAL_FATAL(run_pkcs11_tool("--delete-object --type privkey --label ext"), 0);
    siglen = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_hsm_sign_digest(hsm, "ext", ALG("ext", EVP_sha256()), dg, 32, sig, &siglen),
        QTSP_ERR_HSM_NO_KEY);
    /* destroy still removes the public half */
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "ext"), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "ext"), QTSP_ERR_HSM_NO_KEY);
    qtsp_hsm_free(hsm);
}

/* Keys another process makes in a burst (serve's key-pool filler) are
 * indexed by one rescan at the first miss, not searched for one by one. */
static void test_hsm_rescans_once_for_a_burst_of_foreign_keys(void)
{
    qtsp_hsm *hsm = open_hsm();
    char cmd[160];
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "--keypairgen --key-type EC:prime256v1 --label burst%d --id 6275%02x", i, i);
        CU_ASSERT_EQUAL_FATAL(run_pkcs11_tool(cmd), 0);
    }
    sleep(1); /* the rescan allowance is once a second, counted from open */
    unsigned long long r0, s0, r1, s1;
    qtsp_hsm_lookup_stats(hsm, &r0, &s0);
    unsigned char dg[32], sig[128];
    sha256("burst", dg);
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        char label[16];
        snprintf(label, sizeof label, "burst%d", i);
        size_t siglen = sizeof sig;
        qtsp_err_clear();
        ok += qtsp_hsm_sign_digest(hsm, label, ALG(label, EVP_sha256()), dg, 32, sig, &siglen) ==
              QTSP_OK;
    }
    CU_ASSERT_EQUAL(ok, 3);
    qtsp_hsm_lookup_stats(hsm, &r1, &s1);
    CU_ASSERT_EQUAL(r1 - r0, 1); /* one rescan found all three */
    CU_ASSERT_EQUAL(s1 - s0, 0);
    /* a key unknown to the token: within the second, a search, not a rescan */
    size_t siglen = sizeof sig;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_sign_digest(hsm, "no-such-burst", ALG("no-such-burst", EVP_sha256()),
                                         dg, 32, sig, &siglen),
                    QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    qtsp_hsm_lookup_stats(hsm, &r0, &s0);
    CU_ASSERT_EQUAL(r0, r1);
    CU_ASSERT_EQUAL(s0, s1 + 1);
    for (int i = 0; i < 3; i++) {
        char label[16];
        snprintf(label, sizeof label, "burst%d", i);
        CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, label), QTSP_OK);
    }
    qtsp_hsm_free(hsm);
}

#define THREADS 4
#define SIGS_PER_THREAD 50

typedef struct worker {
    qtsp_hsm *hsm;
    EVP_PKEY *pub;
    int ok;
    unsigned sessions_seen;
} worker;

static void *sign_worker(void *arg)
{
    worker *w = arg;
    w->ok = 1;
    for (int i = 0; i < SIGS_PER_THREAD; i++) {
        unsigned char dg[32], sig[128];
        char msg[64];
        snprintf(msg, sizeof msg, "msg %p %d", (void *)w, i);
        unsigned int n = 0;
        EVP_Digest(msg, strlen(msg), dg, &n, EVP_sha256(), NULL);
        size_t siglen = sizeof sig;
        qtsp_err_clear();
        if (qtsp_hsm_sign_digest(w->hsm, "mt-p256", ALG("mt-p256", EVP_sha256()), dg, 32, sig,
                                 &siglen) != QTSP_OK ||
            !verify_digest(w->pub, dg, 32, sig, siglen, EVP_sha256())) {
            w->ok = 0;
            break;
        }
    }
    w->sessions_seen = qtsp_hsm_session_count(w->hsm);
    return NULL;
}

static void test_hsm_sign_digest_from_four_threads(void)
{
    qtsp_hsm *hsm = open_hsm();
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(hsm, "mt-p256", QTSP_KEY_EC_P256, &pub), QTSP_OK);
    unsigned base = qtsp_hsm_session_count(hsm); /* this thread's session */
    CU_ASSERT_EQUAL(base, 1);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.hsm = hsm, .pub = pub};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, sign_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT(w[i].ok);
        CU_ASSERT(w[i].sessions_seen >= 2 && w[i].sessions_seen <= base + THREADS);
    }
    /* each thread's session was closed when it exited */
    CU_ASSERT_EQUAL(qtsp_hsm_session_count(hsm), base);
    EVP_PKEY_free(pub);
    qtsp_hsm_free(hsm);
}

int main(void)
{
    const char *d = qtest_tmpdir("hsm");
    if (d == NULL)
        return 2;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    if (qtest_softhsm_token(g_dir, TOKEN) != 0) {
        printf("qtest: hsm 0 passed, 1 failed\n");
        qtest_rmtree(g_dir);
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_keytype_parse_and_name_round_trip),
        QTEST(test_softhsm_create_refuses_existing_token_dir),
        QTEST(test_softhsm_create_refused_while_module_in_use),
        QTEST(test_softhsm_create_then_open_in_same_process),
        QTEST(test_hsm_opens_token_by_label_and_reports_info),
        QTEST(test_hsm_wrong_pin_is_login_error),
        QTEST(test_hsm_unknown_label_is_no_token),
        QTEST(test_hsm_generates_p256_p384_rsa3072),
        QTEST(test_hsm_duplicate_label_exists),
        QTEST(test_hsm_private_key_is_sensitive_and_never_extractable),
        QTEST(test_hsm_token_key_signs_and_verifies_in_software),
        QTEST(test_hsm_sign_digest_ec_and_rsa_verify_in_software),
        QTEST(test_hsm_sign_digest_rejects_bad_input),
        QTEST(test_hsm_destroy_removes_key),
        QTEST(test_hsm_sees_keys_changed_by_another_process),
        QTEST(test_hsm_rescans_once_for_a_burst_of_foreign_keys),
        QTEST(test_hsm_sign_digest_from_four_threads),
    };
    int rc = qtest_run("hsm", cases, sizeof cases / sizeof cases[0]);
    qtest_rmtree(g_dir);
    return rc;
}
