/* Unit tests for ca/key.c and the token backend (ca/hsm_sign.c), and for the
 * signing queue that signs through keys (ca/signq.c): token keys in a real
 * SoftHSM2 token and software keys sign ECDSA P-256/P-384, RSA PKCS#1 v1.5
 * and RSA-PSS, checked with OpenSSL against the public key; bad input is
 * refused; a third backend plugs in without the callers knowing. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ca/hsm.h"
#include "ca/key.h"
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

/* EVP_PKEY_verify of a digest signature with alg's padding and parameters. */
static int verify_digest(EVP_PKEY *pub, const qtsp_sigalg *alg, const unsigned char *dg,
                         size_t dlen, const unsigned char *sig, size_t sl)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    int ok = c && EVP_PKEY_verify_init(c) == 1 && EVP_PKEY_CTX_set_signature_md(c, alg->md) == 1;
    if (ok && alg->scheme == QTSP_SIG_RSA_PKCS1)
        ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1;
    if (ok && alg->scheme == QTSP_SIG_RSA_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(c, alg->mgf1_md ? alg->mgf1_md : alg->md) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(c, alg->salt_len < 0 ? RSA_PSS_SALTLEN_DIGEST
                                                                   : alg->salt_len) == 1;
    ok = ok && EVP_PKEY_verify(c, sig, sl, dg, dlen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* Signs a digest with k and alg, checks it verifies, and that a flipped
 * digest does not. */
static void sign_and_check(const qtsp_key *k, const qtsp_sigalg *alg)
{
    unsigned char dg[EVP_MAX_MD_SIZE], sig[QTSP_KEY_SIG_MAX];
    unsigned int dlen = 0;
    CU_ASSERT_FATAL(EVP_Digest("payload", 7, dg, &dlen, alg->md, NULL) == 1);
    size_t sl = sizeof sig;
    qtsp_err_clear();
    qtsp_status rc = qtsp_key_sign_digest(k, alg, dg, dlen, sig, &sl);
    if (rc != QTSP_OK)
        fprintf(stderr, "sign_digest: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    CU_ASSERT(verify_digest(qtsp_key_get0_pubkey(k), alg, dg, dlen, sig, sl));
    dg[0] ^= 1;
    CU_ASSERT(!verify_digest(qtsp_key_get0_pubkey(k), alg, dg, dlen, sig, sl));
}

static qtsp_key *token_key(const char *label, qtsp_keytype kt, EVP_PKEY **pub)
{
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, label, kt, pub) == QTSP_OK);
    qtsp_key *k = NULL;
    CU_ASSERT_FATAL(qtsp_key_from_token(g_hsm, label, &k) == QTSP_OK);
    CU_ASSERT(EVP_PKEY_eq(qtsp_key_get0_pubkey(k), *pub) == 1);
    return k;
}

static void check_token_type(const char *label, qtsp_keytype kt, const EVP_MD *md)
{
    EVP_PKEY *pub = NULL;
    qtsp_key *k = token_key(label, kt, &pub);
    qtsp_sigalg alg;
    CU_ASSERT_EQUAL_FATAL(qtsp_key_sigalg(k, md, &alg), QTSP_OK);
    sign_and_check(k, &alg);
    const unsigned char msg[] = "the TBSResponseData bytes";
    unsigned char sig[512];
    size_t sl = sizeof sig;
    CU_ASSERT_EQUAL(qtsp_key_sign_data(k, &alg, msg, sizeof msg, sig, &sl), QTSP_OK);
    CU_ASSERT(verify(pub, md, msg, sizeof msg, sig, sl));
    CU_ASSERT(!verify(pub, md, msg, sizeof msg - 1, sig, sl)); /* other data: no */
    /* too small a buffer is an error, not an overflow */
    sl = 8;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_sign_data(k, &alg, msg, sizeof msg, sig, &sl), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(sl, 8); /* written only on success */
    qtsp_err_clear();
    qtsp_key_free(k);
    EVP_PKEY_free(pub);
}

static void test_key_token_signs_ecdsa_p256(void)
{
    check_token_type("sig-p256", QTSP_KEY_EC_P256, EVP_sha256());
}

static void test_key_token_signs_ecdsa_p384(void)
{
    check_token_type("sig-p384", QTSP_KEY_EC_P384, EVP_sha384());
}

static void test_key_token_signs_rsa_pkcs1(void)
{
    check_token_type("sig-rsa", QTSP_KEY_RSA_3072, EVP_sha256());
}

static void test_key_token_signs_rsa_pss(void)
{
    EVP_PKEY *pub = NULL;
    qtsp_key *k = token_key("sig-pss", QTSP_KEY_RSA_3072, &pub);
    qtsp_sigalg a = {QTSP_SIG_RSA_PSS, EVP_sha256(), NULL, -1};
    sign_and_check(k, &a);
    /* SoftHSM2 wants the MGF1 digest to be the message digest (its
     * CKR_ARGUMENTS_BAD otherwise); the software backend takes any */
    qtsp_sigalg b = {QTSP_SIG_RSA_PSS, EVP_sha384(), EVP_sha384(), 20};
    sign_and_check(k, &b);
    qtsp_sigalg c = {QTSP_SIG_RSA_PSS, EVP_sha512(), NULL, 0};
    sign_and_check(k, &c);
    /* PKCS#1 v1.5 of SHA-384 and SHA-512 too */
    qtsp_sigalg d = {QTSP_SIG_RSA_PKCS1, EVP_sha512(), NULL, -1};
    sign_and_check(k, &d);
    qtsp_key_free(k);
    EVP_PKEY_free(pub);
}

static void test_key_refuses_wrong_digest_length_and_scheme(void)
{
    EVP_PKEY *pub = NULL;
    qtsp_key *k = token_key("bad-len", QTSP_KEY_EC_P256, &pub);
    unsigned char dg[64] = {0}, sig[256];
    size_t sl = sizeof sig;
    qtsp_sigalg a = {QTSP_SIG_ECDSA, EVP_sha256(), NULL, -1};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &a, dg, 20, sig, &sl), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &a, dg, 48, sig, &sl), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &a, NULL, 32, sig, &sl), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(sl, sizeof sig);
    qtsp_sigalg rsa = {QTSP_SIG_RSA_PKCS1, EVP_sha256(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &rsa, dg, 32, sig, &sl), QTSP_ERR_INVALID);
    qtsp_sigalg sha1 = {QTSP_SIG_ECDSA, EVP_sha1(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &sha1, dg, 20, sig, &sl), QTSP_ERR_UNSUPPORTED);
    qtsp_sigalg bad = {(qtsp_sig_scheme)9, EVP_sha256(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, &bad, dg, 32, sig, &sl), QTSP_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(qtsp_key_sign_digest(k, NULL, dg, 32, sig, &sl), QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_key_free(k);
    EVP_PKEY_free(pub);
}

static void test_key_unknown_label_is_refused(void)
{
    qtsp_key *k = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_from_token(g_hsm, "no-such-key", &k), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_PTR_NULL(k);
    CU_ASSERT_EQUAL(qtsp_key_from_token(g_hsm, "", &k), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_key_software_signs_ec_rsa_and_pss(void)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
    CU_ASSERT_FATAL(ec && rsa);
    qtsp_key *ke = NULL, *kr = NULL;
    CU_ASSERT_FATAL(qtsp_key_from_evp(ec, &ke) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_key_from_evp(rsa, &kr) == QTSP_OK);
    qtsp_sigalg a;
    CU_ASSERT_EQUAL(qtsp_key_sigalg(ke, NULL, &a), QTSP_OK);
    CU_ASSERT(a.scheme == QTSP_SIG_ECDSA && EVP_MD_get_type(a.md) == NID_sha256);
    sign_and_check(ke, &a);
    CU_ASSERT_EQUAL(qtsp_key_sigalg(kr, NULL, &a), QTSP_OK);
    CU_ASSERT(a.scheme == QTSP_SIG_RSA_PKCS1 && EVP_MD_get_type(a.md) == NID_sha256);
    sign_and_check(kr, &a);
    qtsp_sigalg pss = {QTSP_SIG_RSA_PSS, EVP_sha256(), NULL, 32};
    sign_and_check(kr, &pss);
    qtsp_sigalg pss2 = {QTSP_SIG_RSA_PSS, EVP_sha384(), EVP_sha256(), 20};
    sign_and_check(kr, &pss2);
    const unsigned char msg[] = "data";
    unsigned char sig[256];
    size_t sl = sizeof sig;
    CU_ASSERT_EQUAL(qtsp_key_sigalg(ke, NULL, &a), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_key_sign_data(ke, &a, msg, sizeof msg, sig, &sl), QTSP_OK);
    CU_ASSERT(verify(ec, EVP_sha256(), msg, sizeof msg, sig, sl));
    qtsp_key_free(ke);
    qtsp_key_free(kr);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* qtsp_pubkey_from_spki: the EC fast path gives the key d2i_PUBKEY gives
 * (P-256, P-384), RSA goes through d2i_PUBKEY, and a point off the curve, a
 * truncated or padded SPKI and a compressed point's prefix are refused or
 * read the slow way, never misread. */
static void check_spki_round_trip(EVP_PKEY *k)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    CU_ASSERT_FATAL(n > 0);
    EVP_PKEY *got = NULL;
    CU_ASSERT_EQUAL(qtsp_pubkey_from_spki(der, (size_t)n, &got), QTSP_OK);
    CU_ASSERT(got != NULL && EVP_PKEY_eq(got, k) == 1);
    EVP_PKEY_free(got);
    got = NULL;
    CU_ASSERT_EQUAL(qtsp_pubkey_from_spki(der, (size_t)n - 1, &got), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(got);
    qtsp_err_clear();
    unsigned char *pad = OPENSSL_malloc((size_t)n + 1);
    CU_ASSERT_FATAL(pad != NULL);
    memcpy(pad, der, (size_t)n);
    pad[n] = 0;
    CU_ASSERT_EQUAL(qtsp_pubkey_from_spki(pad, (size_t)n + 1, &got), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(got);
    qtsp_err_clear();
    OPENSSL_free(pad);
    OPENSSL_free(der);
}

static void test_key_pubkey_from_spki_reads_ec_and_rsa_exactly(void)
{
    EVP_PKEY *p256 = EVP_EC_gen("P-256"), *p384 = EVP_EC_gen("P-384"), *rsa = EVP_RSA_gen(2048);
    CU_ASSERT_FATAL(p256 && p384 && rsa);
    check_spki_round_trip(p256);
    check_spki_round_trip(p384);
    check_spki_round_trip(rsa);
    /* a P-256 SPKI whose point is not on the curve (Y changed) */
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(p256, &der);
    CU_ASSERT_FATAL(n == 91);
    der[90] ^= 1;
    EVP_PKEY *got = NULL;
    CU_ASSERT_EQUAL(qtsp_pubkey_from_spki(der, (size_t)n, &got), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(got);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_pubkey_from_spki(der, 0, &got), QTSP_ERR_INVALID);
    qtsp_err_clear();
    OPENSSL_free(der);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
}

/* The AlgorithmIdentifiers the OCSP, TSA and CRL writers used to carry as
 * constants, and an RSASSA-PSS one OpenSSL reads back. */
static void test_key_algorithm_identifiers(void)
{
    static const unsigned char ecdsa256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                             0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    static const unsigned char rsa256[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                           0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
    unsigned char out[QTSP_KEY_ALGID_MAX];
    size_t n = 0;
    qtsp_sigalg a = {QTSP_SIG_ECDSA, EVP_sha256(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&a, out, sizeof out, &n), QTSP_OK);
    CU_ASSERT(n == sizeof ecdsa256 && memcmp(out, ecdsa256, n) == 0);
    a.md = EVP_sha384();
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&a, out, sizeof out, &n), QTSP_OK);
    CU_ASSERT(n == sizeof ecdsa256 && out[n - 1] == 0x03);
    qtsp_sigalg r = {QTSP_SIG_RSA_PKCS1, EVP_sha256(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&r, out, sizeof out, &n), QTSP_OK);
    CU_ASSERT(n == sizeof rsa256 && memcmp(out, rsa256, n) == 0);
    qtsp_sigalg p = {QTSP_SIG_RSA_PSS, EVP_sha384(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&p, out, sizeof out, &n), QTSP_OK);
    const unsigned char *q = out;
    X509_ALGOR *x = d2i_X509_ALGOR(NULL, &q, (long)n);
    CU_ASSERT_FATAL(x != NULL && q == out + n);
    const ASN1_OBJECT *oid = NULL;
    X509_ALGOR_get0(&oid, NULL, NULL, x);
    CU_ASSERT_EQUAL(OBJ_obj2nid(oid), NID_rsassaPss);
    X509_ALGOR_free(x);
    /* RFC 4055 3.1 with the hash identifiers of 2.1 (NULL parameters), as
     * CMS SignerInfos carried them before ca/cms used this function */
    static const unsigned char pss256[] = {
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
        0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
        0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20};
    p.md = EVP_sha256();
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&p, out, sizeof out, &n), QTSP_OK);
    CU_ASSERT(n == sizeof pss256 && memcmp(out, pss256, n) == 0);
    /* too small an output, unknown digest */
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&r, out, 4, &n), QTSP_ERR_TOO_BIG);
    qtsp_sigalg m = {QTSP_SIG_RSA_PKCS1, EVP_md5(), NULL, -1};
    CU_ASSERT_EQUAL(qtsp_sigalg_algid(&m, out, sizeof out, &n), QTSP_ERR_UNSUPPORTED);
    qtsp_err_clear();
}

static X509 *self_cert(EVP_PKEY *pub, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_set_subject_name(x, nm);
    X509_set_issuer_name(x, nm);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pub);
    X509_NAME_free(nm);
    return x;
}

/* Certificates signed through the key (the CA's path): ECDSA in the token,
 * RSA-PSS in the token; OpenSSL verifies both with the public key. */
static void test_key_signs_certificates(void)
{
    static const struct {
        const char *label;
        qtsp_keytype kt;
        qtsp_sig_scheme scheme;
        int nid;
    } c[] = {{"x509-p384", QTSP_KEY_EC_P384, QTSP_SIG_ECDSA, NID_ecdsa_with_SHA384},
             {"x509-pss", QTSP_KEY_RSA_3072, QTSP_SIG_RSA_PSS, NID_rsassaPss}};
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *pub = NULL;
        qtsp_key *k = token_key(c[i].label, c[i].kt, &pub);
        qtsp_sigalg alg;
        CU_ASSERT_EQUAL_FATAL(qtsp_key_sigalg(k, NULL, &alg), QTSP_OK);
        alg.scheme = c[i].scheme;
        X509 *tbs = self_cert(pub, c[i].label), *x = NULL;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_key_sign_x509(k, &alg, tbs, &x), QTSP_OK);
        CU_ASSERT_FATAL(x != NULL);
        CU_ASSERT_EQUAL(X509_get_signature_nid(x), c[i].nid);
        CU_ASSERT_EQUAL(X509_verify(x, pub), 1);
        /* the certificate and its chain go with the key */
        CU_ASSERT_PTR_NULL(qtsp_key_get0_cert(k));
        STACK_OF(X509) *chain = sk_X509_new_null();
        sk_X509_push(chain, x);
        CU_ASSERT_EQUAL(qtsp_key_set1_cert(k, x, chain), QTSP_OK);
        sk_X509_free(chain);
        CU_ASSERT_PTR_EQUAL(qtsp_key_get0_cert(k), x);
        CU_ASSERT_EQUAL(sk_X509_num(qtsp_key_get0_chain(k)), 1);
        X509_free(tbs);
        X509_free(x);
        qtsp_key_free(k); /* frees the certificate and chain it holds */
        EVP_PKEY_free(pub);
    }
    /* a certificate for another key is refused */
    EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
    qtsp_key *ka = NULL;
    CU_ASSERT_FATAL(qtsp_key_from_evp(a, &ka) == QTSP_OK);
    X509 *xb = self_cert(b, "other");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_key_set1_cert(ka, xb, NULL), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(qtsp_key_get0_cert(ka));
    qtsp_err_clear();
    X509_free(xb);
    qtsp_key_free(ka);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

/* ---- a third backend: callers sign through it unchanged ---- */

typedef struct counting {
    EVP_PKEY *pkey;
    int signs, freed;
} counting;

static qtsp_status counting_sign(void *ctx, const qtsp_sigalg *alg, const unsigned char *dgst,
                                 size_t dlen, unsigned char *sig, size_t *siglen)
{
    counting *c = ctx;
    c->signs++;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, c->pkey, NULL);
    int ok = pc && EVP_PKEY_sign_init(pc) == 1 && EVP_PKEY_CTX_set_signature_md(pc, alg->md) == 1 &&
             EVP_PKEY_sign(pc, sig, siglen, dgst, dlen) == 1;
    EVP_PKEY_CTX_free(pc);
    ENSURE(ok, QTSP_ERR_CRYPTO, "counting backend failed");
    return QTSP_OK;
}

static void counting_free(void *ctx)
{
    ((counting *)ctx)->freed++;
}

static void queued_ok(void *ctx, qtsp_status rc, const unsigned char *sig, size_t siglen)
{
    *(int *)ctx = rc == QTSP_OK && sig != NULL && siglen > 0;
}

static void test_key_third_backend_plugs_in(void)
{
    static const qtsp_key_ops OPS = {"counting", counting_sign, counting_free};
    counting c = {EVP_EC_gen("P-256"), 0, 0};
    qtsp_key *k = NULL;
    CU_ASSERT_FATAL(qtsp_key_new(&OPS, &c, c.pkey, &k) == QTSP_OK);
    qtsp_sigalg a;
    CU_ASSERT_EQUAL(qtsp_key_sigalg(k, NULL, &a), QTSP_OK);
    sign_and_check(k, &a);
    /* and through the signing queue, as OCSP and the TSA use it */
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    unsigned char md[32] = {9};
    int queued = 0;
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &a, md, sizeof md, queued_ok, &queued), QTSP_OK);
    qtsp_signq_free(q);
    CU_ASSERT_EQUAL(queued, 1);
    CU_ASSERT_EQUAL(c.signs, 2);
    qtsp_key_free(k);
    CU_ASSERT_EQUAL(c.freed, 1);
    /* a backend without a public key: refused, ctx released */
    CU_ASSERT_EQUAL(qtsp_key_new(&OPS, &c, NULL, &k), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(c.freed, 2);
    qtsp_err_clear();
    EVP_PKEY_free(c.pkey);
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
    qtsp_key *k = NULL;
    CU_ASSERT_FATAL(qtsp_key_from_token(g_hsm, "sq-p256", &k) == QTSP_OK);
    qtsp_sigalg alg;
    CU_ASSERT_FATAL(qtsp_key_sigalg(k, EVP_sha256(), &alg) == QTSP_OK);
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
        CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, sizeof md, sq_done, &res[i]), QTSP_OK);
    }
    qtsp_signq_free(q); /* signs what is still queued, then returns */
    int ok = 0, once = 0;
    for (int i = 0; i < N; i++) {
        once += res[i].calls == 1;
        ok += res[i].rc == QTSP_OK &&
              verify(pub, EVP_sha256(), msg[i], sizeof msg[i], res[i].sig, res[i].sl);
    }
    CU_ASSERT_EQUAL(once, N);
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT(!verify(pub, EVP_sha256(), msg[1], sizeof msg[1], res[0].sig, res[0].sl));
    qtsp_key_free(k);
    EVP_PKEY_free(pub);
}

/* Held jobs are signed by the holding thread at release, in order, and
 * never by a signing thread; another thread's jobs are not held. */
typedef struct held_job {
    sq_result r;
    pthread_t by;
} held_job;

static void held_done(void *ctx, qtsp_status rc, const unsigned char *sig, size_t sl)
{
    held_job *h = ctx;
    h->by = pthread_self();
    sq_done(&h->r, rc, sig, sl);
}

typedef struct other_submit {
    qtsp_signq *q;
    const qtsp_key *k;
    const qtsp_sigalg *alg;
    held_job *h;
    qtsp_status rc;
} other_submit;

static void *submit_from_other(void *arg)
{
    other_submit *o = arg;
    unsigned char md[32] = {7};
    o->rc = qtsp_signq_submit(o->q, o->k, o->alg, md, sizeof md, held_done, o->h);
    return NULL;
}

static void test_signq_hold_signs_on_the_holding_thread_at_release(void)
{
    EVP_PKEY *pub = NULL;
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, "sq-hold", QTSP_KEY_EC_P256, &pub) == QTSP_OK);
    qtsp_key *k = NULL;
    CU_ASSERT_FATAL(qtsp_key_from_token(g_hsm, "sq-hold", &k) == QTSP_OK);
    qtsp_sigalg alg;
    CU_ASSERT_FATAL(qtsp_key_sigalg(k, EVP_sha256(), &alg) == QTSP_OK);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    enum { N = QTSP_SIGNQ_HOLD_MAX + 2 }; /* the last two past the cap */
    static held_job h[N], other;
    unsigned char msg[N][8];
    memset(h, 0, sizeof h);
    memset(&other, 0, sizeof other);
    qtsp_signq_hold(q);
    for (int i = 0; i < N; i++) {
        unsigned char md[32];
        snprintf((char *)msg[i], sizeof msg[i], "h%05d", i);
        SHA256(msg[i], sizeof msg[i], md);
        CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, sizeof md, held_done, &h[i]), QTSP_OK);
    }
    /* another thread's job goes to the signing thread meanwhile */
    other_submit o = {q, k, &alg, &other, QTSP_ERR_INTERNAL};
    pthread_t t;
    CU_ASSERT_FATAL(pthread_create(&t, NULL, submit_from_other, &o) == 0);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(o.rc, QTSP_OK);
    for (int i = 0; i < 2000 && (other.r.calls == 0 || h[N - 1].r.calls == 0); i++)
        usleep(1000);
    CU_ASSERT_EQUAL(other.r.calls, 1);
    CU_ASSERT(!pthread_equal(other.by, pthread_self()));
    for (int i = 0; i < N; i++) /* held: nobody signed them; past the cap: the thread did */
        CU_ASSERT_EQUAL(h[i].r.calls, i < QTSP_SIGNQ_HOLD_MAX ? 0 : 1);
    CU_ASSERT(!pthread_equal(h[N - 1].by, pthread_self()));
    CU_ASSERT_EQUAL(qtsp_signq_release(q), (size_t)QTSP_SIGNQ_HOLD_MAX);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(h[i].r.calls, 1);
        CU_ASSERT(pthread_equal(h[i].by, pthread_self()) == (i < QTSP_SIGNQ_HOLD_MAX));
        CU_ASSERT(h[i].r.rc == QTSP_OK &&
                  verify(pub, EVP_sha256(), msg[i], sizeof msg[i], h[i].r.sig, h[i].r.sl));
    }
    /* released: the next job is the signing thread's again */
    CU_ASSERT_EQUAL(qtsp_signq_release(q), 0);
    held_job after;
    memset(&after, 0, sizeof after);
    unsigned char md[32] = {3};
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, sizeof md, held_done, &after), QTSP_OK);
    qtsp_signq_free(q);
    CU_ASSERT_EQUAL(after.r.calls, 1);
    CU_ASSERT(!pthread_equal(after.by, pthread_self()));
    qtsp_key_free(k);
    EVP_PKEY_free(pub);
}

static void test_signq_reports_signer_failure_and_refuses_bad_jobs(void)
{
    /* a token key whose object is destroyed after the key was made */
    qtsp_key *k = NULL;
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, "sq-gone", QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_key_from_token(g_hsm, "sq-gone", &k) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_hsm_destroy(g_hsm, "sq-gone") == QTSP_OK);
    qtsp_sigalg alg;
    CU_ASSERT_FATAL(qtsp_key_sigalg(k, EVP_sha256(), &alg) == QTSP_OK);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    unsigned char md[32] = {1};
    sq_result r = {0};
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, sizeof md, sq_done, &r), QTSP_OK);
    /* no digest, oversized digest, no callback, no key, no algorithm: refused */
    unsigned char big[65] = {0};
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, 0, sq_done, &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, big, sizeof big, sq_done, &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, &alg, md, sizeof md, NULL, &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, NULL, &alg, md, sizeof md, sq_done, &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_signq_submit(q, k, NULL, md, sizeof md, sq_done, &r), QTSP_ERR_INVALID);
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
    qtsp_key_free(k);
}

int main(void)
{
    const char *d = qtest_tmpdir("key");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    if (qtest_softhsm_token(g_dir, "key-test") != 0 ||
        qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "key-test", QTEST_PIN, &g_hsm) != QTSP_OK) {
        printf("qtest: key 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_key_token_signs_ecdsa_p256),
        QTEST(test_key_token_signs_ecdsa_p384),
        QTEST(test_key_token_signs_rsa_pkcs1),
        QTEST(test_key_token_signs_rsa_pss),
        QTEST(test_key_refuses_wrong_digest_length_and_scheme),
        QTEST(test_key_unknown_label_is_refused),
        QTEST(test_key_software_signs_ec_rsa_and_pss),
        QTEST(test_key_pubkey_from_spki_reads_ec_and_rsa_exactly),
        QTEST(test_key_algorithm_identifiers),
        QTEST(test_key_signs_certificates),
        QTEST(test_key_third_backend_plugs_in),
        QTEST(test_signq_signs_every_job_once_with_the_token_key),
        QTEST(test_signq_hold_signs_on_the_holding_thread_at_release),
        QTEST(test_signq_reports_signer_failure_and_refuses_bad_jobs),
    };
    int r = qtest_run("key", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtest_rmtree(g_dir);
    return r;
}
