/* Unit tests for ca/hsm_wrap.c and ca/subkey.c against a real throw-away
 * SoftHSM2 token and store: the key-storage key, wrapped subscriber keys,
 * the binding checked at every open, the pool mark, and the seam
 * qtsp_subkey_open. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/subkey.h"
#include "core/err.h"
#include "tests/lib/qtest.h"

#define TOKEN "subkey-test"

static char g_dir[512];
static qtsp_hsm *g_hsm;
static qtsp_store *g_store;
static char g_store_dir[600];

static void sha256(const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    CU_ASSERT_EQUAL(EVP_Digest(msg, strlen(msg), out, &n, EVP_sha256(), NULL), 1);
}

static int verify_digest(EVP_PKEY *pub, const unsigned char *dg, size_t dlen,
                         const unsigned char *sig, size_t siglen)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
    int ok = c != NULL && EVP_PKEY_verify_init(c) == 1;
    if (ok && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA)
        ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1;
    ok = ok && EVP_PKEY_verify(c, sig, siglen, dg, dlen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* Signs "x" with k and verifies with pub in software. */
static int signs_for(const qtsp_key *k, EVP_PKEY *pub)
{
    qtsp_sigalg alg;
    if (qtsp_key_sigalg(k, EVP_sha256(), &alg) != QTSP_OK)
        return 0;
    unsigned char dg[32], sig[QTSP_KEY_SIG_MAX];
    size_t siglen = sizeof sig;
    sha256("x", dg);
    if (qtsp_key_sign_digest(k, &alg, dg, 32, sig, &siglen) != QTSP_OK)
        return 0;
    return verify_digest(pub, dg, 32, sig, siglen);
}

static size_t private_keys(void)
{
    size_t n = 0;
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &n) == QTSP_OK);
    return n;
}

typedef struct grep_ctx {
    const char *needle;
    int n;
} grep_ctx;

static qtsp_status grep_audit(void *vctx, uint64_t seq, const char *body, size_t len)
{
    grep_ctx *c = vctx;
    size_t nl = strlen(c->needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(body + i, c->needle, nl) == 0) {
            c->n++;
            break;
        }
    return QTSP_OK;
}

static int audit_count(const char *needle)
{
    grep_ctx c = {needle, 0};
    CU_ASSERT(qtsp_audit_list(g_store, 0, grep_audit, &c) == QTSP_OK);
    return c.n;
}

static void test_setup_makes_three_objects_once_and_audits_it(void)
{
    qtsp_err_clear();
    /* before setup there is no key-storage key: nothing can be wrapped */
    unsigned char *blob = NULL;
    size_t blen = 0;
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_generate_wrapped(g_hsm, QTSP_KEY_EC_P256, &blob, &blen, &pub),
                    QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_subkey_setup(g_hsm, g_store, "test"), QTSP_OK);
    CU_ASSERT_EQUAL(audit_count("\"event\":\"key.storage.setup\""), 1);
    unsigned made = 99;
    CU_ASSERT_EQUAL(qtsp_hsm_wrap_setup(g_hsm, &made), QTSP_OK);
    CU_ASSERT_EQUAL(made, 0);
    CU_ASSERT_EQUAL(qtsp_subkey_setup(g_hsm, g_store, "test"), QTSP_OK);
    CU_ASSERT_EQUAL(audit_count("\"event\":\"key.storage.setup\""), 1); /* nothing new made */
}

static void test_wrapped_keys_sign_and_leave_no_token_object(void)
{
    static const qtsp_keytype types[] = {QTSP_KEY_EC_P256, QTSP_KEY_EC_P384, QTSP_KEY_RSA_3072};
    size_t before = private_keys();
    for (size_t i = 0; i < 3; i++) {
        unsigned char *blob = NULL;
        size_t blen = 0;
        EVP_PKEY *pub = NULL;
        qtsp_err_clear();
        CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate_wrapped(g_hsm, types[i], &blob, &blen, &pub),
                              QTSP_OK);
        if (types[i] == QTSP_KEY_EC_P256)
            CU_ASSERT_EQUAL(blen, 80); /* the SoftHSM2 fact of issue 12 */
        qtsp_key *k = NULL;
        CU_ASSERT_EQUAL_FATAL(qtsp_key_from_wrapped(g_hsm, blob, blen, pub, &k), QTSP_OK);
        CU_ASSERT(signs_for(k, pub));
        CU_ASSERT(signs_for(k, pub)); /* the session object signs again */
        qtsp_key_free(k);
        /* a blob altered by one bit does not unwrap (the wrap's integrity check) */
        blob[blen / 2] ^= 1;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_key_from_wrapped(g_hsm, blob, blen, pub, &k), QTSP_ERR_HSM);
        free(blob);
        EVP_PKEY_free(pub);
    }
    CU_ASSERT_EQUAL(private_keys(), before);
}

static void test_wrapped_key_refuses_bad_input(void)
{
    unsigned char *blob = NULL;
    size_t blen = 0;
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate_wrapped(g_hsm, QTSP_KEY_EC_P256, &blob, &blen, &pub),
                          QTSP_OK);
    qtsp_key *k = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_from_wrapped(g_hsm, blob, 7, pub, &k), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_from_wrapped(g_hsm, blob, blen, NULL, &k), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_from_wrapped(g_hsm, NULL, blen, pub, &k), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(k);
    free(blob);
    EVP_PKEY_free(pub);
}

static void test_mac_verifies_and_refuses_a_change(void)
{
    unsigned char mac[QTSP_HSM_MAC_LEN], mac2[QTSP_HSM_MAC_LEN];
    const unsigned char msg[] = "binding";
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_mac(g_hsm, msg, sizeof msg, mac), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_mac(g_hsm, msg, sizeof msg, mac2), QTSP_OK);
    CU_ASSERT_EQUAL(memcmp(mac, mac2, sizeof mac), 0);
    CU_ASSERT_EQUAL(qtsp_hsm_mac_verify(g_hsm, msg, sizeof msg, mac), QTSP_OK);
    mac[0] ^= 1;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_mac_verify(g_hsm, msg, sizeof msg, mac), QTSP_ERR_STATE);
    mac[0] ^= 1;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_mac_verify(g_hsm, msg, sizeof msg - 1, mac), QTSP_ERR_STATE);
}

static void test_pool_mark_only_moves_forward_and_lives_in_the_token(void)
{
    uint64_t m = 99;
    CU_ASSERT_EQUAL(qtsp_hsm_mark_get(g_hsm, &m), QTSP_OK);
    CU_ASSERT_EQUAL(m, 0);
    CU_ASSERT_EQUAL(qtsp_hsm_mark_advance(g_hsm, 5), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_mark_get(g_hsm, &m), QTSP_OK);
    CU_ASSERT_EQUAL(m, 6);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_mark_advance(g_hsm, 5), QTSP_ERR_STATE); /* handed out already */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_mark_advance(g_hsm, 3), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(qtsp_hsm_mark_advance(g_hsm, 6), QTSP_OK);
    /* another process (pkcs11-tool) reads the value from the token */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "pkcs11-tool --module %s --token-label %s --login --pin %s --list-objects --type data "
             "2>/dev/null | grep -o '%s:[0-9a-f]*'",
             QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN, QTSP_HSM_MARK_LABEL);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char out[64] = "";
    CU_ASSERT_PTR_NOT_NULL(fgets(out, sizeof out, p));
    pclose(p);
    CU_ASSERT_STRING_EQUAL(out, QTSP_HSM_MARK_LABEL ":0000000000000007\n");
}

/* A credential record as ra/ra.c writes it, bound to serial hex. */
static json_t *credential(const char *hex, qtsp_keytype kt, EVP_PKEY **pub_out)
{
    unsigned char serial[20];
    size_t slen = 0;
    CU_ASSERT_FATAL(qtsp_serial_from_hex(hex, serial, &slen) == QTSP_OK);
    unsigned char *blob = NULL;
    size_t blen = 0;
    EVP_PKEY *pub = NULL;
    CU_ASSERT_FATAL(qtsp_hsm_generate_wrapped(g_hsm, kt, &blob, &blen, &pub) == QTSP_OK);
    json_t *key = NULL;
    CU_ASSERT_FATAL(qtsp_subkey_bind(g_hsm, serial, slen, kt, blob, blen, pub, &key) == QTSP_OK);
    free(blob);
    *pub_out = pub;
    return json_pack("{s:s,s:s,s:o,s:b}", "credential_id", hex, "user_id", "u1", "key", key,
                     "enabled", 1);
}

static void test_subkey_open_signs_with_the_credentials_key(void)
{
    EVP_PKEY *pub = NULL, *pub2 = NULL;
    json_t *c = credential("1a2b3c", QTSP_KEY_EC_P256, &pub);
    json_t *c2 = credential("4d5e6f", QTSP_KEY_RSA_3072, &pub2);
    size_t before = private_keys();
    qtsp_key *k = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_subkey_open(g_hsm, c, &k), QTSP_OK);
    CU_ASSERT(signs_for(k, pub));
    CU_ASSERT(EVP_PKEY_eq(qtsp_key_get0_pubkey(k), pub) == 1);
    qtsp_key_free(k);
    CU_ASSERT_EQUAL_FATAL(qtsp_subkey_open(g_hsm, c2, &k), QTSP_OK);
    CU_ASSERT(signs_for(k, pub2));
    CU_ASSERT(!signs_for(k, pub));
    qtsp_key_free(k);
    CU_ASSERT_EQUAL(private_keys(), before); /* session objects, destroyed */
    json_decref(c);
    json_decref(c2);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pub2);
}

static void test_subkey_open_refuses_a_key_bound_to_another_credential(void)
{
    EVP_PKEY *pub = NULL, *pub2 = NULL;
    json_t *a = credential("0a01", QTSP_KEY_EC_P256, &pub);
    json_t *b = credential("0b02", QTSP_KEY_EC_P256, &pub2);
    qtsp_key *k = NULL;
    /* b's record given a's key (a copied or edited store): the token's
     * binding names a's serial */
    json_t *moved = json_deep_copy(b);
    json_object_set_new(moved, "key", json_deep_copy(json_object_get(a, "key")));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, moved, &k), QTSP_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "not bound to it"));
    json_decref(moved);
    /* a's own record renamed to another serial */
    json_t *renamed = json_deep_copy(a);
    json_object_set_new(renamed, "credential_id", json_string("0a02"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, renamed, &k), QTSP_ERR_STATE);
    json_decref(renamed);
    /* a's public key replaced by b's (the binding covers it) */
    json_t *swapped = json_deep_copy(a);
    json_object_set(json_object_get(swapped, "key"), "public_key",
                    json_object_get(json_object_get(b, "key"), "public_key"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, swapped, &k), QTSP_ERR_STATE);
    json_decref(swapped);
    /* the untouched records still open */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, a, &k), QTSP_OK);
    qtsp_key_free(k);
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, b, &k), QTSP_OK);
    qtsp_key_free(k);
    json_decref(a);
    json_decref(b);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pub2);
}

static void test_subkey_open_refuses_terminated_and_malformed_credentials(void)
{
    EVP_PKEY *pub = NULL;
    json_t *c = credential("0c03", QTSP_KEY_EC_P256, &pub);
    qtsp_key *k = NULL;
    /* terminated: disabled, and the key removed */
    json_t *t = json_deep_copy(c);
    json_object_set_new(t, "enabled", json_false());
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, t, &k), QTSP_ERR_STATE);
    json_object_set_new(t, "enabled", json_true());
    json_object_del(t, "key");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, t, &k), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "destroyed at termination"));
    json_decref(t);
    /* malformed key objects */
    static const char *const bad[][2] = {
        {"format", "aes-kwp-v9"}, {"type", "dsa"},     {"blob", "not base64!"},
        {"public_key", "AAAA"},   {"binding", "AAAA"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *m = json_deep_copy(c);
        json_object_set_new(json_object_get(m, "key"), bad[i][0], json_string(bad[i][1]));
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, m, &k), QTSP_ERR_STORE_CORRUPT);
        json_decref(m);
    }
    json_t *m = json_deep_copy(c);
    json_object_set_new(json_object_get(m, "key"), "extra", json_true());
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, m, &k), QTSP_ERR_STORE_CORRUPT);
    json_object_set_new(m, "credential_id", json_string("not-hex"));
    json_object_del(json_object_get(m, "key"), "extra");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, m, &k), QTSP_ERR_STORE_CORRUPT);
    json_decref(m);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, NULL, &k), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(k);
    json_decref(c);
    EVP_PKEY_free(pub);
}

static void test_subkey_open_uses_a_legacy_token_key(void)
{
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(g_hsm, "qc-legacy", QTSP_KEY_EC_P256, &pub), QTSP_OK);
    json_t *c =
        json_pack("{s:s,s:s,s:b}", "credential_id", "0d04", "key_label", "qc-legacy", "enabled", 1);
    qtsp_key *k = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_subkey_open(g_hsm, c, &k), QTSP_OK);
    CU_ASSERT(signs_for(k, pub));
    qtsp_key_free(k);
    /* the legacy key destroyed at termination */
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(g_hsm, "qc-legacy"), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, c, &k), QTSP_ERR_HSM_NO_KEY);
    json_decref(c);
    EVP_PKEY_free(pub);
}

int main(void)
{
    const char *d = qtest_tmpdir("subkey");
    if (d == NULL)
        return 2;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    if (qtest_softhsm_token(g_dir, TOKEN) != 0 ||
        qtsp_hsm_open(QTEST_SOFTHSM_MODULE, TOKEN, QTEST_PIN, &g_hsm) != QTSP_OK) {
        printf("qtest: subkey 0 passed, 1 failed\n");
        qtest_rmtree(g_dir);
        return 1;
    }
    snprintf(g_store_dir, sizeof g_store_dir, "%s/store", g_dir);
    if (qtsp_store_open(g_store_dir, 16, &g_store) != QTSP_OK) {
        printf("qtest: subkey 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_setup_makes_three_objects_once_and_audits_it),
        QTEST(test_wrapped_keys_sign_and_leave_no_token_object),
        QTEST(test_wrapped_key_refuses_bad_input),
        QTEST(test_mac_verifies_and_refuses_a_change),
        QTEST(test_pool_mark_only_moves_forward_and_lives_in_the_token),
        QTEST(test_subkey_open_signs_with_the_credentials_key),
        QTEST(test_subkey_open_refuses_a_key_bound_to_another_credential),
        QTEST(test_subkey_open_refuses_terminated_and_malformed_credentials),
        QTEST(test_subkey_open_uses_a_legacy_token_key),
    };
    int rc = qtest_run("subkey", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtsp_store_close(g_store);
    qtest_rmtree(g_dir);
    return rc;
}
