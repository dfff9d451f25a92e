/* Unit tests for sign/csc.c, the CSC API v2 core, over a real SoftHSM2
 * token, a real store and credentials issued by the real RA (ra/ra.c),
 * with the injected clock (core/clock.h) so that lockouts, token and SAD
 * lifetimes, TOTP steps and certificate expiry are exact: login and its
 * lockout, tokens, authorize with TOTP (replay, lockout, unlock), signHash
 * with ECDSA, RSA PKCS#1 v1.5 and RSA-PSS (each verified in software), the
 * SAD's binding (hashes, credential, caller, single use, expiry), certificate
 * states, quota, password change and office reset, the audit, and signDoc
 * (the SAD bound to the documents, CMS verified, the archive per signer). */
#define _GNU_SOURCE 1 /* memmem */
#include <dirent.h>
#include <jansson.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/store.h"
#include "core/clock.h"
#include "core/codec.h"
#include "ra/ra.h"
#include "sign/archive.h"
#include "sign/csc.h"
#include "sign/totp.h"
#include "sign/usage.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_cert.h"

static char g_dir[512], g_policies[1024], g_rsa_policies[1024], g_secrets[1024];
static qtsp_store *g_store;
static qtsp_hsm *g_hsm;
static X509 *g_ca;
static EVP_PKEY *g_ca_key;
static qtsp_ra *g_ra, *g_ra_rsa;
static qtsp_usage *g_usage;
static qtsp_csc *g_csc;
static qtsp_archive *g_archive;
static qtsp_ades_services g_ades; /* B-B only: no TSA, no OCSP */
static qtsp_actor g_officer;
static int64_t g_now_ms;

static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return g_now_ms;
}

static void advance(int64_t seconds)
{
    g_now_ms += seconds * 1000;
}

/* A signer as issuance made them. */
typedef struct signer {
    char user_id[QTSP_CSC_ID_MAX], password[64], cred[64];
    unsigned char secret[32];
    size_t secret_len;
    EVP_PKEY *pub;
} signer;

static int b32_value(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= '2' && c <= '7' ? c - '2' + 26 : -1;
}

static size_t b32_decode(const char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b32_value(s[i]);
        if (v < 0)
            break;
        acc = (acc << 5) | (unsigned)v;
        bits += 5;
        if (bits >= 8) {
            out[o++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return o;
}

/* package: "practical" (100 a year) unless the test is about the quota */
static void issue_in(qtsp_ra *ra, const char *nid, const char *package, signer *s)
{
    memset(s, 0, sizeof *s);
    json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "given_name", "Eva", "surname", "Test",
                           "country", "DE", "national_id", nid, "email", "e@example.de", "phone",
                           "+4915100000000", "package", package);
    char sid[40];
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_enrol(ra, &g_officer, in, sid), QTSP_OK);
    json_decref(in);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    qtsp_status rc = qtsp_ra_issue(ra, &g_officer, sid, &is);
    if (rc != QTSP_OK)
        fprintf(stderr, "issue: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    snprintf(s->user_id, sizeof s->user_id, "%s", is.user_id);
    snprintf(s->password, sizeof s->password, "%s", is.password);
    snprintf(s->cred, sizeof s->cred, "%s", is.serial_hex);
    const char *sec = strstr(is.otpauth_uri, "secret=") + 7;
    s->secret_len = b32_decode(sec, strcspn(sec, "&"), s->secret);
    BIO *b = BIO_new_mem_buf(is.certificate_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    s->pub = X509_get_pubkey(x);
    X509_free(x);
    qtsp_issued_cleanup(&is);
}

static void issue(qtsp_ra *ra, const char *nid, signer *s)
{
    issue_in(ra, nid, "practical", s);
}

static void signer_done(signer *s)
{
    EVP_PKEY_free(s->pub);
    OPENSSL_cleanse(s, sizeof *s);
}

/* The TOTP code of now + offset steps. */
static void code_at(const signer *s, int offset, char out[7])
{
    uint64_t step = qtsp_totp_step(g_now_ms / 1000) + (uint64_t)(int64_t)offset;
    CU_ASSERT_EQUAL_FATAL(qtsp_totp_code(s->secret, s->secret_len, step, 6, out), QTSP_OK);
}

static char *login(const signer *s, const char *password)
{
    json_t *o = NULL;
    if (qtsp_csc_login(g_csc, s->user_id, password, &o) != QTSP_OK) {
        qtsp_err_clear();
        return NULL;
    }
    char *t = strdup(json_string_value(json_object_get(o, "access_token")));
    json_decref(o);
    return t;
}

/* n SHA-256 digests of "tag-i", into dg (n * 32) and a JSON array of base64. */
static json_t *digests(const char *tag, size_t n, unsigned char *dg)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char m[64];
        snprintf(m, sizeof m, "%s-%zu", tag, i);
        unsigned int l = 0;
        EVP_Digest(m, strlen(m), dg + 32 * i, &l, EVP_sha256(), NULL);
        char b[64];
        CU_ASSERT_EQUAL(qtsp_base64_encode(dg + 32 * i, 32, b, sizeof b), QTSP_OK);
        json_array_append_new(a, json_string(b));
    }
    return a;
}

#define SHA256_OID "2.16.840.1.101.3.4.2.1"

/* authorize: the status; *sad (malloc'd) on success. */
static qtsp_status authorize(const signer *s, const char *cred, json_t *hashes, const char *otp,
                             char **sad)
{
    json_t *req = json_pack("{s:s,s:I,s:O,s:s,s:s}", "credentialID", cred, "numSignatures",
                            (json_int_t)json_array_size(hashes), "hashes", hashes,
                            "hashAlgorithmOID", SHA256_OID, "OTP", otp);
    json_t *o = NULL;
    qtsp_status rc = qtsp_csc_authorize(g_csc, s->user_id, req, &o);
    json_decref(req);
    if (rc == QTSP_OK) {
        CU_ASSERT(json_integer_value(json_object_get(o, "expiresIn")) <= 300);
        *sad = strdup(json_string_value(json_object_get(o, "SAD")));
        json_decref(o);
    }
    return rc;
}

/* signHash: the status; the signatures (new reference) in *sigs. */
static qtsp_status sign_hash(const signer *s, const char *cred, const char *sad, json_t *hashes,
                             const char *algo, const char *params, const char *rp, json_t **sigs)
{
    json_t *req = json_pack("{s:s,s:s,s:O,s:s,s:s}", "credentialID", cred, "SAD", sad, "hashes",
                            hashes, "hashAlgorithmOID", SHA256_OID, "signAlgo", algo);
    if (params)
        json_object_set_new(req, "signAlgoParams", json_string(params));
    json_t *o = NULL;
    qtsp_status rc = qtsp_csc_sign_hash(g_csc, s->user_id, rp, req, &o);
    json_decref(req);
    if (rc == QTSP_OK) {
        *sigs = json_incref(json_object_get(o, "signatures"));
        json_decref(o);
    }
    return rc;
}

/* Every signature verifies over its digest with pub (pad: RSA padding). */
static int verify_all(EVP_PKEY *pub, json_t *sigs, const unsigned char *dg, int pad)
{
    for (size_t i = 0; i < json_array_size(sigs); i++) {
        const char *b = json_string_value(json_array_get(sigs, i));
        unsigned char sig[1024];
        size_t sl = 0;
        if (qtsp_base64_decode(b, strlen(b), QTSP_B64_STD | QTSP_B64_PADDING, sig, sizeof sig,
                               &sl) != QTSP_OK)
            return 0;
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
        int ok = c && EVP_PKEY_verify_init(c) == 1;
        if (ok && pad) {
            ok = EVP_PKEY_CTX_set_rsa_padding(c, pad) == 1 &&
                 EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1;
            if (ok && pad == RSA_PKCS1_PSS_PADDING)
                ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(c, 32) == 1 &&
                     EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1;
        }
        ok = ok && EVP_PKEY_verify(c, sig, sl, dg + 32 * i, 32) == 1;
        EVP_PKEY_CTX_free(c);
        if (!ok)
            return 0;
    }
    return json_array_size(sigs) > 0;
}

/* Number of audit records with event. */
static size_t g_hits;
static const char *g_event;
static qtsp_status count_event(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)ctx;
    (void)seq;
    char pat[96];
    snprintf(pat, sizeof pat, "\"event\":\"%s\"", g_event);
    char *t = strndup(body, len);
    if (t && strstr(t, pat))
        g_hits++;
    free(t);
    return QTSP_OK;
}

static size_t audit_count(const char *event)
{
    g_hits = 0;
    g_event = event;
    CU_ASSERT_EQUAL(qtsp_audit_list(g_store, 1, count_event, NULL), QTSP_OK);
    return g_hits;
}

/* The body of the last audit record with event g_event (and the text ctx
 * when not NULL), into g_last. */
static char g_last[4096];
static qtsp_status find_last(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)seq;
    char pat[96];
    snprintf(pat, sizeof pat, "\"event\":\"%s\"", g_event);
    char *t = strndup(body, len);
    if (t && strstr(t, pat) && (!ctx || strstr(t, ctx)))
        snprintf(g_last, sizeof g_last, "%s", t);
    free(t);
    return QTSP_OK;
}

static void test_csc_login_lockout_and_tokens(void)
{
    signer s;
    issue(g_ra, "7001010001", &s);
    char *tok = login(&s, s.password);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    char uid[QTSP_CSC_ID_MAX];
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, tok, uid), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(uid, s.user_id);
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, "not-a-token", uid), QTSP_ERR_AUTH);
    qtsp_err_clear();
    /* five wrong passwords lock: the right one is then refused, for 15 minutes */
    size_t failed0 = audit_count("csc.login.failed");
    for (int i = 0; i < 5; i++)
        CU_ASSERT_PTR_NULL(login(&s, "wrong"));
    CU_ASSERT_EQUAL(audit_count("csc.login.failed"), failed0 + 5);
    CU_ASSERT_PTR_NULL(login(&s, s.password));
    CU_ASSERT(audit_count("csc.login.locked") >= 1);
    advance(15 * 60 + 1);
    char *tok2 = login(&s, s.password);
    CU_ASSERT_PTR_NOT_NULL(tok2);
    /* the first token ran out meanwhile? no: 1 h; after the hour it has */
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, tok, uid), QTSP_OK);
    advance(3600);
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, tok, uid), QTSP_ERR_AUTH);
    qtsp_err_clear();
    /* revoke: the signer's own token only */
    char *tok3 = login(&s, s.password);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok3);
    CU_ASSERT_EQUAL(qtsp_csc_revoke(g_csc, "0000", tok3), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_csc_revoke(g_csc, s.user_id, tok3), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, tok3, uid), QTSP_ERR_AUTH);
    qtsp_err_clear();
    free(tok);
    free(tok2);
    free(tok3);
    signer_done(&s);
}

static void test_csc_authorize_and_sign_ecdsa_with_every_binding(void)
{
    signer a, b;
    issue(g_ra, "7001010002", &a);
    issue(g_ra, "7001010003", &b);
    unsigned char dg[64], dx[64];
    json_t *h = digests("a", 2, dg), *hx = digests("x", 2, dx), *sigs = NULL;
    char otp[7], *sad = NULL, *sad2 = NULL;
    code_at(&a, 0, otp);
    /* another signer's credential reads as unknown */
    CU_ASSERT_EQUAL(authorize(&a, b.cred, h, otp, &sad), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    /* the same code once only */
    CU_ASSERT_EQUAL(authorize(&a, a.cred, h, otp, &sad2), QTSP_ERR_FORBIDDEN);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "OTP: code already used");
    qtsp_err_clear();
    /* the SAD is bound to the hashes, the algorithm fits the key, the caller */
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, hx, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "SAD: authorised for other hashes");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.113549.1.1.11", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(sign_hash(&b, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                          QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(sigs), 2);
    CU_ASSERT(verify_all(a.pub, sigs, dg, 0));
    json_decref(sigs);
    /* single use */
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "SAD: already used");
    qtsp_err_clear();
    /* a SAD expires after 300 s */
    advance(30);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, hx, otp, &sad2), QTSP_OK);
    advance(301);
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad2, hx, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "SAD: expired");
    qtsp_err_clear();
    CU_ASSERT(audit_count("csc.sign") >= 1);
    free(sad);
    free(sad2);
    json_decref(h);
    json_decref(hx);
    signer_done(&a);
    signer_done(&b);
}

static void test_csc_wrong_otps_lock_the_credential_for_15_minutes(void)
{
    signer a;
    issue(g_ra, "7001010004", &a);
    unsigned char dg[32];
    json_t *h = digests("l", 1, dg);
    char otp[7], *sad = NULL;
    size_t failed0 = audit_count("csc.otp.failed"), locked0 = audit_count("csc.otp.locked");
    for (int i = 0; i < 5; i++) {
        code_at(&a, 100 + i, otp); /* far from now: wrong */
        CU_ASSERT_EQUAL(authorize(&a, a.cred, h, otp, &sad), QTSP_ERR_FORBIDDEN);
        qtsp_err_clear();
    }
    CU_ASSERT_EQUAL(audit_count("csc.otp.failed"), failed0 + 4);
    CU_ASSERT_EQUAL(audit_count("csc.otp.locked"), locked0 + 1);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL(authorize(&a, a.cred, h, otp, &sad), QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    advance(15 * 60 + 1);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    free(sad);
    json_decref(h);
    signer_done(&a);
}

static void test_csc_refuses_held_revoked_and_expired_certificates(void)
{
    signer a;
    issue(g_ra, "7001010005", &a);
    unsigned char dg[32], serial[QTSP_SERIAL_MAX];
    size_t sl = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_serial_from_hex(a.cred, serial, &sl), QTSP_OK);
    json_t *h = digests("h", 1, dg), *sigs = NULL;
    char otp[7], *sad = NULL, *sad2 = NULL;
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    /* expired: the SAD and any new authorisation refused past notAfter */
    int64_t saved = g_now_ms;
    advance(4LL * 366 * 86400);
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_STATE);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what() + strlen(qtsp_err_what()) - 7, "expired");
    qtsp_err_clear();
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL(authorize(&a, a.cred, h, otp, &sad2), QTSP_ERR_STATE);
    qtsp_err_clear();
    g_now_ms = saved;
    /* held */
    time_t until = 0;
    qtsp_operator hl = {"2", "hotline", QTSP_ROLE_HOTLINE};
    qtsp_actor hotline;
    qtsp_actor_from_operator(&hl, &hotline);
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_hold(g_ra, &hotline, serial, sl, "code word", &until), QTSP_OK);
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "suspended"));
    qtsp_err_clear();
    /* released: the same SAD signs (a refusal consumes nothing) */
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_release(g_ra, &g_officer, serial, sl), QTSP_OK);
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_OK);
    CU_ASSERT(verify_all(a.pub, sigs, dg, 0));
    json_decref(sigs);
    free(sad);
    json_decref(h);
    signer_done(&a);
}

/* RSASSA-PSS-params: SHA-256, MGF1 SHA-256, salt 32 (RFC 4055 3.1). */
static const unsigned char k_pss_sha256[] = {
    0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
    0x04, 0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48,
    0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20};

static void test_csc_rsa_pkcs1_and_pss(void)
{
    signer r;
    issue(g_ra_rsa, "7001010006", &r);
    CU_ASSERT_EQUAL_FATAL(EVP_PKEY_get_base_id(r.pub), EVP_PKEY_RSA);
    unsigned char dg[64];
    json_t *h = digests("r", 2, dg), *sigs = NULL;
    char otp[7], *sad = NULL, params[128];
    code_at(&r, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&r, r.cred, h, otp, &sad), QTSP_OK);
    CU_ASSERT_EQUAL(sign_hash(&r, r.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID); /* ECDSA on an RSA key */
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(sign_hash(&r, r.cred, sad, h, "1.2.840.113549.1.1.11", NULL, NULL, &sigs),
                          QTSP_OK);
    CU_ASSERT(verify_all(r.pub, sigs, dg, RSA_PKCS1_PADDING));
    json_decref(sigs);
    free(sad);
    advance(30);
    code_at(&r, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&r, r.cred, h, otp, &sad), QTSP_OK);
    CU_ASSERT_EQUAL(sign_hash(&r, r.cred, sad, h, "1.2.840.113549.1.1.10", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID); /* PSS needs its parameters */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(sign_hash(&r, r.cred, sad, h, "1.2.840.113549.1.1.10", "MAA=", NULL, &sigs),
                    QTSP_ERR_INVALID); /* SHA-1 defaults refused */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_base64_encode(k_pss_sha256, sizeof k_pss_sha256, params, sizeof params),
                    QTSP_OK);
    qtsp_status prc = sign_hash(&r, r.cred, sad, h, "1.2.840.113549.1.1.10", params, NULL, &sigs);
    if (prc != QTSP_OK)
        fprintf(stderr, "PSS: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(prc, QTSP_OK);
    CU_ASSERT(verify_all(r.pub, sigs, dg, RSA_PKCS1_PSS_PADDING));
    json_decref(sigs);
    free(sad);
    json_decref(h);
    signer_done(&r);
}

static void test_csc_free_package_signs_three_then_429_and_history(void)
{
    signer a;
    issue_in(g_ra, "7001010007", "free", &a);
    unsigned char dg[96], d4[32];
    json_t *h = digests("q", 3, dg), *h4 = digests("q4", 1, d4), *sigs = NULL;
    char otp[7], *sad = NULL;
    advance(30);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                          QTSP_OK);
    json_decref(sigs);
    free(sad);
    advance(30);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h4, otp, &sad), QTSP_OK);
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h4, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_QUOTA);
    qtsp_err_clear();
    json_t *hist = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_history(g_csc, a.user_id, 0, NULL, &hist), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(hist, "signings")), 1);
    json_decref(hist);
    /* nothing consumed: the same SAD, paid by a relying party, signs */
    char secret[64], header[160];
    CU_ASSERT_EQUAL_FATAL(qtsp_usage_rp_add(g_usage, "cli:test", "acme", secret, sizeof secret),
                          QTSP_OK);
    CU_ASSERT_EQUAL(
        sign_hash(&a, a.cred, sad, h4, "1.2.840.10045.4.3.2", NULL, "acme:wrong", &sigs),
        QTSP_ERR_AUTH);
    qtsp_err_clear();
    snprintf(header, sizeof header, "acme:%s", secret);
    CU_ASSERT_EQUAL_FATAL(
        sign_hash(&a, a.cred, sad, h4, "1.2.840.10045.4.3.2", NULL, header, &sigs), QTSP_OK);
    CU_ASSERT(verify_all(a.pub, sigs, d4, 0));
    json_decref(sigs);
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_history(g_csc, a.user_id, 0, NULL, &hist), QTSP_OK);
    json_t *sg = json_object_get(hist, "signings");
    CU_ASSERT_EQUAL(json_array_size(sg), 2);
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_array_get(sg, 0), "relying_party")), "acme");
    json_decref(hist);
    free(sad);
    json_decref(h);
    json_decref(h4);
    signer_done(&a);
}

static void test_csc_password_change_and_reset(void)
{
    signer a;
    issue(g_ra, "7001010008", &a);
    char *tok = login(&a, a.password);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    CU_ASSERT_EQUAL(qtsp_csc_password_change(g_csc, a.user_id, a.password, "short"),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_csc_password_change(g_csc, a.user_id, "wrong", "a long new password"),
                    QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    advance(1);
    CU_ASSERT_EQUAL(qtsp_csc_password_change(g_csc, a.user_id, a.password, "a long new password"),
                    QTSP_OK);
    /* a chosen password gets the memory-hard parameters (docs/security.md) */
    qtsp_txn *txn = NULL;
    qtsp_buf rec;
    qtsp_buf_init(&rec, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(g_store, 0, &txn), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_get(txn, QTSP_T_USERS, a.user_id, strlen(a.user_id), &rec), QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT_PTR_NOT_NULL(memmem(rec.data, rec.len, "$m=32768,t=3,", 13));
    qtsp_buf_cleanup(&rec);
    char uid[QTSP_CSC_ID_MAX];
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, tok, uid), QTSP_ERR_AUTH); /* ended */
    qtsp_err_clear();
    CU_ASSERT_PTR_NULL(login(&a, a.password));
    char *t2 = login(&a, "a long new password");
    CU_ASSERT_PTR_NOT_NULL(t2);
    json_t *o = NULL;
    advance(1);
    CU_ASSERT_EQUAL(qtsp_csc_reset(g_csc, "cli:test", "ffff", &o), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_reset(g_csc, "cli:test", a.user_id, &o), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_csc_token_check(g_csc, t2, uid), QTSP_ERR_AUTH);
    qtsp_err_clear();
    CU_ASSERT_PTR_NULL(login(&a, "a long new password"));
    char *t3 = login(&a, json_string_value(json_object_get(o, "password")));
    CU_ASSERT_PTR_NOT_NULL(t3);
    CU_ASSERT(audit_count("signer.reset") >= 1);
    CU_ASSERT(audit_count("csc.password.change") >= 1);
    json_decref(o);
    free(tok);
    free(t2);
    free(t3);
    signer_done(&a);
}

static void test_csc_list_and_info_show_own_credentials_only(void)
{
    signer a, b;
    issue(g_ra, "7001010009", &a);
    issue(g_ra, "7001010010", &b);
    json_t *req = json_pack("{s:b}", "credInfo", 1), *o = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_list(g_csc, a.user_id, req, &o), QTSP_OK);
    json_t *ids = json_object_get(o, "credentialIDs");
    CU_ASSERT_EQUAL(json_array_size(ids), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(ids, 0)), a.cred);
    json_t *info = json_array_get(json_object_get(o, "credentialInfos"), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "SCAL")), "2");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "authMode")), "explicit");
    json_decref(o);
    json_decref(req);
    req = json_pack("{s:s}", "credentialID", b.cred);
    CU_ASSERT_EQUAL(qtsp_csc_cred_info(g_csc, a.user_id, req, &o), QTSP_ERR_INVALID);
    qtsp_err_clear();
    json_decref(req);
    req = json_pack("{s:s}", "userID", b.user_id);
    CU_ASSERT_EQUAL(qtsp_csc_list(g_csc, a.user_id, req, &o), QTSP_ERR_INVALID);
    qtsp_err_clear();
    json_decref(req);
    signer_done(&a);
    signer_done(&b);
}

static void test_csc_purge_removes_ended_sessions_and_sads(void)
{
    signer a;
    issue(g_ra, "7001010011", &a);
    char *tok = login(&a, a.password), otp[7], *sad = NULL;
    unsigned char dg[32];
    json_t *h = digests("p", 1, dg);
    advance(30);
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    size_t n = 0;
    advance(7200);
    CU_ASSERT_EQUAL(qtsp_csc_purge(g_csc, (time_t)(g_now_ms / 1000), 1000, &n), QTSP_OK);
    CU_ASSERT(n >= 2); /* this test's token and SAD, and what earlier tests left */
    json_t *sigs = NULL;
    CU_ASSERT_EQUAL(sign_hash(&a, a.cred, sad, h, "1.2.840.10045.4.3.2", NULL, NULL, &sigs),
                    QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "SAD: unknown");
    qtsp_err_clear();
    /* at most once a minute */
    CU_ASSERT_EQUAL(qtsp_csc_purge(g_csc, (time_t)(g_now_ms / 1000) + 1, 1000, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    free(tok);
    free(sad);
    json_decref(h);
    signer_done(&a);
}

/* CSC state records of refused attempts ("r:..."), for the purge check. */
static qtsp_status count_refusal_records(void *ctx, const void *key, size_t klen, const void *val,
                                         size_t vlen, int *stop)
{
    (void)val;
    (void)vlen;
    if (klen < 2 || memcmp(key, "r:", 2) != 0)
        *stop = 1;
    else
        (*(size_t *)ctx)++;
    return QTSP_OK;
}

static size_t refusal_records(void)
{
    size_t n = 0;
    qtsp_txn *txn = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(g_store, 0, &txn), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_iter(txn, QTSP_T_CSC_STATE, "r:", 2, count_refusal_records, &n),
                    QTSP_OK);
    qtsp_txn_abort(txn);
    return n;
}

/* Refusals without a state change (logins with unknown user ids or by a
 * locked-out signer, authorisations of a credential locked after wrong
 * OTPs): per 60 s window the first 20 unknown-id refusals each have their
 * own audit record, and the first 5 of each locked account or credential,
 * whatever the unknown ids did; the rest are counted and recorded as one
 * summary per record when the window ends (at the next such refusal, or at
 * the purge), the unknown ids' naming the most refused ids with counts; a
 * wrong password or a wrong OTP is always recorded on its own. */
static void test_csc_login_refusals_flood_one_summary_per_window(void)
{
    advance(3600); /* a window of its own */
    size_t failed0 = audit_count("csc.login.failed"), sum0 = audit_count("csc.refused.summary");
    json_t *o = NULL;
    char uid[32];
    /* 500 unknown ids: one id every 4th time (125), 375 others once each */
    for (int i = 0; i < 500; i++) {
        snprintf(uid, sizeof uid, i % 4 ? "dead%08x" : "cafe0001", (unsigned)i);
        CU_ASSERT_EQUAL(qtsp_csc_login(g_csc, uid, "password", &o), QTSP_ERR_AUTH);
        qtsp_err_clear();
    }
    CU_ASSERT_EQUAL(audit_count("csc.login.failed"), failed0 + 20);
    CU_ASSERT_EQUAL(audit_count("csc.refused.summary"), sum0);
    /* a signer locked out after that flood: its first refusals have their own records */
    signer s;
    issue(g_ra, "7001010021", &s);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_PTR_NULL(login(&s, "wrong"));
    CU_ASSERT_EQUAL(audit_count("csc.login.failed"), failed0 + 25); /* wrong passwords: each */
    size_t locked0 = audit_count("csc.login.locked");
    for (int i = 0; i < 50; i++)
        CU_ASSERT_PTR_NULL(login(&s, s.password));
    CU_ASSERT_EQUAL(audit_count("csc.login.locked"), locked0 + 5); /* its own burst */
    /* more unknown ids do not take them away: the next locked refusal is counted, not hidden */
    CU_ASSERT_EQUAL(qtsp_csc_login(g_csc, "cafe0001", "password", &o), QTSP_ERR_AUTH);
    qtsp_err_clear();
    /* a credential locked after wrong OTPs: each wrong code recorded, its first refusals too */
    unsigned char dg[32];
    json_t *h = digests("q", 1, dg);
    char otp[7], *sad = NULL;
    size_t otpf0 = audit_count("csc.otp.failed") + audit_count("csc.otp.locked");
    size_t refused0 = audit_count("csc.otp.refused");
    for (int i = 0; i < 5; i++) {
        code_at(&s, 100 + i, otp);
        CU_ASSERT_EQUAL(authorize(&s, s.cred, h, otp, &sad), QTSP_ERR_FORBIDDEN);
        qtsp_err_clear();
    }
    CU_ASSERT_EQUAL(audit_count("csc.otp.failed") + audit_count("csc.otp.locked"), otpf0 + 5);
    code_at(&s, 0, otp);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL(authorize(&s, s.cred, h, otp, &sad), QTSP_ERR_FORBIDDEN);
        qtsp_err_clear();
    }
    CU_ASSERT_EQUAL(audit_count("csc.otp.refused"), refused0 + 5);
    json_decref(h);
    CU_ASSERT(refusal_records() >= 3); /* unknown ids, the signer, the credential */
    /* the window ends: the purge writes one summary per record */
    advance(61);
    size_t n;
    CU_ASSERT_EQUAL(qtsp_csc_purge(g_csc, (time_t)(g_now_ms / 1000), 1000, &n), QTSP_OK);
    CU_ASSERT_EQUAL(audit_count("csc.refused.summary"), sum0 + 3);
    CU_ASSERT_EQUAL(refusal_records(), 0); /* closed records are removed */
    g_event = "csc.refused.summary";
    /* unknown ids: 481 not recorded, cafe0001 the most refused (121 of them), 15 others
     * named (1 each), the other 345 counted */
    g_last[0] = '\0';
    CU_ASSERT_EQUAL(qtsp_audit_list(g_store, 1, find_last, "\"unknown_user\":481"), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"refused_not_recorded\":481"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"login_locked_out\":0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"other_user_ids\":345"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(g_last, "\"user_ids\":[{\"refused\":121,\"user_id\":\"cafe0001\"},{\"refused\":1,"));
    int named = 0;
    for (const char *p = g_last; (p = strstr(p, "\"user_id\":\"dead")) != NULL; p++)
        named++;
    CU_ASSERT_EQUAL(named, 15);
    /* the locked-out signer: 45 not recorded, under its own user id */
    char want[128];
    snprintf(want, sizeof want, "\"user_id\":\"%s\"", s.user_id);
    g_last[0] = '\0';
    CU_ASSERT_EQUAL(qtsp_audit_list(g_store, 1, find_last, "\"login_locked_out\":45"), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"refused_not_recorded\":45"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"unknown_user\":0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, want));
    CU_ASSERT_PTR_NULL(strstr(g_last, "user_ids"));
    /* the locked credential: 2 not recorded, naming it and its signer */
    snprintf(want, sizeof want, "\"credential\":\"%s\"", s.cred);
    g_last[0] = '\0';
    CU_ASSERT_EQUAL(qtsp_audit_list(g_store, 1, find_last, "\"otp_locked\":2"), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, "\"refused_not_recorded\":2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_last, want));
    /* a new window: its first refusals have their own records again, no second summary */
    CU_ASSERT_EQUAL(qtsp_csc_login(g_csc, "beef", "password", &o), QTSP_ERR_AUTH);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(audit_count("csc.login.failed"), failed0 + 26);
    CU_ASSERT_PTR_NULL(login(&s, s.password)); /* still locked out: recorded again */
    CU_ASSERT_EQUAL(audit_count("csc.login.locked"), locked0 + 6);
    advance(61);
    CU_ASSERT_EQUAL(qtsp_csc_login(g_csc, "beef", "password", &o), QTSP_ERR_AUTH);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(audit_count("csc.refused.summary"), sum0 + 3); /* nothing was counted */
    CU_ASSERT_EQUAL(audit_count("csc.login.failed"), failed0 + 27);
    signer_done(&s);
}

static int suite_init(void)
{
    const char *d = qtest_tmpdir("csc");
    if (!d)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    snprintf(g_policies, sizeof g_policies, "%s/policies", g_dir);
    snprintf(g_rsa_policies, sizeof g_rsa_policies, "%s/rsa", g_dir);
    snprintf(g_secrets, sizeof g_secrets, "%s/secrets", g_dir);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "mkdir -m 700 %s && cp -r %s/policies %s && "
             "printf 'version: 1\\nsize: 0\\n' >%s/keypool.yaml && cp -r %s %s && "
             "sed -i 's/^key_type: .*/key_type: rsa-3072/' %s/qualified-natural-person.yaml",
             g_secrets, qtest_src_dir(), g_dir, g_policies, g_policies, g_rsa_policies,
             g_rsa_policies);
    if (system(cmd) != 0)
        return -1;
    if (qtest_softhsm_token(g_dir, "csc-test") != 0)
        return -1;
    qtsp_err_clear();
    if (qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "csc-test", QTEST_PIN, &g_hsm) != QTSP_OK)
        return -1;
    char store[600];
    snprintf(store, sizeof store, "%s/store", g_dir);
    if (qtsp_store_open(store, 64, &g_store) != QTSP_OK)
        return -1;
    g_now_ms = (int64_t)time(NULL) * 1000;
    qtsp_clock_set(test_clock, NULL);
    g_ca_key = EVP_EC_gen("P-384");
    time_t now = time(NULL);
    g_ca = qtest_mkcert(NULL, g_ca_key, g_ca_key, "Test Issuing CA",
                        (const unsigned char *)"\x10\x93", 2, 1, now - 86400, now + 86400L * 3650);
    if (!g_ca)
        return -1;
    qtsp_ra_deps deps = {
        g_store, g_hsm, g_ca, qtest_key(g_ca_key), g_policies, g_secrets, "http://127.0.0.1:8080",
        NULL};
    qtsp_ra_deps rdeps = deps;
    rdeps.policies_dir = g_rsa_policies;
    if (qtsp_ra_new(&deps, &g_ra) != QTSP_OK || qtsp_ra_new(&rdeps, &g_ra_rsa) != QTSP_OK ||
        qtsp_usage_new(g_store, g_policies, &g_usage) != QTSP_OK) {
        fprintf(stderr, "set-up: %s\n", qtsp_err_message());
        return -1;
    }
    char signing[1100];
    snprintf(signing, sizeof signing, "%s/signing.yaml", g_policies);
    char arch_pol[1100], arch_dir[600];
    snprintf(arch_pol, sizeof arch_pol, "%s/archive.yaml", g_policies);
    snprintf(arch_dir, sizeof arch_dir, "%s/archive", g_dir);
    if (qtsp_archive_new(arch_pol, arch_dir, g_store, &g_archive) != QTSP_OK) {
        fprintf(stderr, "archive: %s\n", qtsp_err_message());
        return -1;
    }
    qtsp_csc_deps cd = {g_store,   g_hsm,   g_ca,    g_ca,     signing,
                        g_secrets, g_usage, &g_ades, g_archive};
    if (qtsp_csc_new(&cd, &g_csc) != QTSP_OK) {
        fprintf(stderr, "csc_new: %s\n", qtsp_err_message());
        return -1;
    }
    qtsp_operator op = {"1", "officer", QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE};
    qtsp_actor_from_operator(&op, &g_officer);
    return 0;
}

static void suite_clean(void)
{
    qtsp_csc_free(g_csc);
    qtsp_archive_free(g_archive);
    qtsp_usage_free(g_usage);
    qtsp_ra_free(g_ra);
    qtsp_ra_free(g_ra_rsa);
    X509_free(g_ca);
    EVP_PKEY_free(g_ca_key);
    qtsp_store_close(g_store);
    qtsp_hsm_free(g_hsm);
    qtsp_clock_set(NULL, NULL);
    qtest_rmtree(g_dir);
}

/* signDoc: the SAD binds the SHA-256 of each document; a mismatch, a
 * replay, a level without its service change nothing; the signed document
 * verifies (CMS) and is archived for its signer only, byte for byte; the
 * request's long strings may stay in the body (core/json.h). */
static json_t *doc_hash(const unsigned char *doc, size_t len)
{
    unsigned char h[32];
    char b[64];
    EVP_Digest(doc, len, h, NULL, EVP_sha256(), NULL);
    CU_ASSERT_EQUAL(qtsp_base64_encode(h, 32, b, sizeof b), QTSP_OK);
    return json_pack("[s]", b);
}

static qtsp_status sign_doc(const signer *s, const char *sad, const unsigned char *doc, size_t len,
                            const char *level, qtsp_buf *out)
{
    char *b = malloc(4 * (len / 3 + 2) + 1);
    CU_ASSERT_EQUAL_FATAL(qtsp_base64_encode(doc, len, b, 4 * (len / 3 + 2) + 1), QTSP_OK);
    json_t *req = json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:s,s:s}]}", "credentialID", s->cred,
                            "SAD", sad, "documents", "document", b, "signature_format", "C",
                            "conformance_level", level, "signAlgo", "1.2.840.10045.4.3.2",
                            "signed_envelope_property", "Detached", "name", "contract.txt");
    free(b);
    qtsp_status rc = qtsp_csc_sign_doc(g_csc, s->user_id, NULL, req, NULL, out);
    json_decref(req);
    return rc;
}

static void test_csc_sign_doc_binds_the_documents_and_archives_them(void)
{
    signer a, b;
    issue(g_ra, "7100000001", &a);
    issue(g_ra, "7100000002", &b);
    static const unsigned char doc[] = "the contract, version 1";
    static const unsigned char other[] = "the contract, version 2";
    json_t *h = doc_hash(doc, sizeof doc - 1);
    char otp[7], *sad = NULL;
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    size_t signed_before = audit_count("csc.signdoc");
    /* another document than the SAD's */
    CU_ASSERT_EQUAL(sign_doc(&a, sad, other, sizeof other - 1, "Ades-B-B", &out), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "other hashes"));
    /* B-T without a TSA: refused before anything is consumed */
    CU_ASSERT_EQUAL(sign_doc(&a, sad, doc, sizeof doc - 1, "Ades-B-T", &out), QTSP_ERR_INVALID);
    /* b cannot use a's SAD */
    CU_ASSERT_EQUAL(sign_doc(&b, sad, doc, sizeof doc - 1, "Ades-B-B", &out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(out.len, 0);
    CU_ASSERT_EQUAL(audit_count("csc.signdoc"), signed_before);
    json_t *l = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_documents(g_csc, a.user_id, 0, NULL, &l), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "documents")), 0);
    json_decref(l);
    /* the right document */
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(sign_doc(&a, sad, doc, sizeof doc - 1, "Ades-B-B", &out), QTSP_OK);
    CU_ASSERT_EQUAL(audit_count("csc.signdoc"), signed_before + 1);
    json_t *ans = json_loadb((const char *)out.data, out.len, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(ans, "DocumentWithSignature")), 0);
    const char *p7 = json_string_value(json_array_get(json_object_get(ans, "SignatureObject"), 0));
    const char *id = json_string_value(json_array_get(json_object_get(ans, "documentIDs"), 0));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(id);
    unsigned char der[8192];
    size_t dl = 0;
    CU_ASSERT_EQUAL_FATAL(
        qtsp_base64_decode(p7, strlen(p7), QTSP_B64_STD | QTSP_B64_PADDING, der, sizeof der, &dl),
        QTSP_OK);
    const unsigned char *pp = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &pp, (long)dl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    BIO *content = BIO_new_mem_buf(doc, (int)sizeof doc - 1);
    CU_ASSERT_EQUAL(
        CMS_verify(cms, NULL, NULL, content, NULL, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY), 1);
    BIO_free(content);
    CMS_ContentInfo_free(cms);
    /* the archive: a's own, byte for byte; b gets "not found" */
    qtsp_buf got;
    qtsp_buf_init(&got, 1 << 20);
    const char *mt = NULL;
    char name[QTSP_ARCHIVE_NAME_MAX + 8];
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_document_get(g_csc, a.user_id, id, &got, &mt, name), QTSP_OK);
    CU_ASSERT(got.len == dl && memcmp(got.data, der, dl) == 0);
    CU_ASSERT_STRING_EQUAL(mt, "application/pkcs7-signature");
    CU_ASSERT_STRING_EQUAL(name, "contract.txt.p7s");
    qtsp_buf_reset(&got);
    CU_ASSERT_EQUAL(qtsp_csc_document_get(g_csc, b.user_id, id, &got, &mt, name),
                    QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_documents(g_csc, b.user_id, 0, NULL, &l), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "documents")), 0);
    json_decref(l);
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_documents(g_csc, a.user_id, 0, NULL, &l), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "documents")), 1);
    json_decref(l);
    /* the SAD once only */
    qtsp_buf_reset(&out);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(sign_doc(&a, sad, doc, sizeof doc - 1, "Ades-B-B", &out), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "SAD: already used");
    free(sad);
    /* a long document left in the request body (the HTTP path) */
    static unsigned char longdoc[6000];
    memset(longdoc, 'x', sizeof longdoc);
    json_decref(h);
    h = doc_hash(longdoc, sizeof longdoc);
    code_at(&a, 1, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    char *b64 = malloc(8100);
    CU_ASSERT_EQUAL_FATAL(qtsp_base64_encode(longdoc, sizeof longdoc, b64, 8100), QTSP_OK);
    size_t cap = strlen(b64) + 1024;
    char *body = malloc(cap);
    snprintf(body, cap,
             "{\"credentialID\":\"%s\",\"SAD\":\"%s\",\"documents\":[{\"document\":\"%s\","
             "\"signature_format\":\"C\",\"conformance_level\":\"Ades-B-B\",\"signAlgo\":"
             "\"1.2.840.10045.4.3.2\",\"signed_envelope_property\":\"Attached\"}]}",
             a.cred, sad, b64);
    json_t *req = NULL;
    qtsp_json_big big;
    CU_ASSERT_EQUAL_FATAL(qtsp_json_parse_object_big(body, strlen(body), 4096, &req, &big),
                          QTSP_OK);
    CU_ASSERT_EQUAL(big.n, 1);
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_csc_sign_doc(g_csc, a.user_id, NULL, req, &big, &out), QTSP_OK);
    json_decref(ans);
    ans = json_loadb((const char *)out.data, out.len, 0, NULL);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(ans, "DocumentWithSignature")), 1);
    json_decref(req);
    qtsp_json_big_cleanup(&big);
    free(body);
    free(b64);
    free(sad);
    json_decref(ans);
    json_decref(h);
    qtsp_buf_cleanup(&out);
    qtsp_buf_cleanup(&got);
    signer_done(&a);
    signer_done(&b);
    qtsp_err_clear();
}

/* Files under DIR/archive (two levels: <hh>/<hex>). */
static size_t archive_files(void)
{
    char d[600];
    snprintf(d, sizeof d, "%s/archive", g_dir);
    size_t n = 0;
    DIR *top = opendir(d);
    if (!top)
        return 0;
    struct dirent *e;
    while ((e = readdir(top)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) != 2)
            continue;
        char sub[900];
        snprintf(sub, sizeof sub, "%s/%s", d, e->d_name);
        DIR *dd = opendir(sub);
        struct dirent *f;
        while (dd && (f = readdir(dd)) != NULL)
            n += f->d_name[0] != '.';
        if (dd)
            closedir(dd);
    }
    closedir(top);
    return n;
}

/* A document request of signDoc (all fields borrowed into a new object). */
static json_t *doc_req(const unsigned char *doc, size_t len, const char *fmt, const char *env)
{
    char *b = malloc(4 * (len / 3 + 2) + 1);
    CU_ASSERT_EQUAL_FATAL(qtsp_base64_encode(doc, len, b, 4 * (len / 3 + 2) + 1), QTSP_OK);
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s}", "document", b, "signature_format", fmt,
                          "conformance_level", "Ades-B-B", "signAlgo", "1.2.840.10045.4.3.2",
                          "name", "contract.pdf");
    if (env)
        json_object_set_new(d, "signed_envelope_property", json_string(env));
    free(b);
    return d;
}

/* req is refused 400 by the reading check of its second document, before
 * the token signs the first: nothing answered, no archive file (files
 * there before). */
static void refused_at_second(const signer *a, json_t *req, qtsp_buf *out, size_t files)
{
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_csc_sign_doc(g_csc, a->user_id, NULL, req, NULL, out), QTSP_ERR_INVALID);
    CU_ASSERT(strncmp(qtsp_err_what(), "documents[1]: ", 14) == 0);
    CU_ASSERT_EQUAL(out->len, 0);
    CU_ASSERT_EQUAL(archive_files(), files);
}

/* A request whose second document is a broken PDF is refused before the
 * token signs (qtsp_pades_check), leaves no file in the archive, consumes
 * no SAD and charges nothing; the SAD then works once for the same bytes
 * signed as CAdES. */
static void test_csc_sign_doc_refused_midway_leaves_nothing(void)
{
    signer a;
    issue(g_ra, "7100000003", &a);
    static const unsigned char good[] = "the good document";
    static const unsigned char broken[] = "%PDF-1.7 broken, no objects, no xref";
    json_t *h = doc_hash(good, sizeof good - 1), *h2 = doc_hash(broken, sizeof broken - 1);
    json_array_extend(h, h2);
    json_decref(h2);
    char otp[7], *sad = NULL;
    code_at(&a, 0, otp);
    CU_ASSERT_EQUAL_FATAL(authorize(&a, a.cred, h, otp, &sad), QTSP_OK);
    size_t files = archive_files(), signed_before = audit_count("csc.signdoc"),
           archived_before = audit_count("document.archive");
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    json_t *req = json_pack("{s:s,s:s,s:[o,o]}", "credentialID", a.cred, "SAD", sad, "documents",
                            doc_req(good, sizeof good - 1, "C", "Detached"),
                            doc_req(broken, sizeof broken - 1, "P", NULL));
    for (int round = 0; round < 3; round++) /* resent: each refused the same way */
        refused_at_second(&a, req, &out, files);
    json_decref(req);
    /* the same for an enveloped XAdES document that is not XML
     * (qtsp_xades_check_enveloped; the same bytes: the SAD binds them) */
    req = json_pack("{s:s,s:s,s:[o,o]}", "credentialID", a.cred, "SAD", sad, "documents",
                    doc_req(good, sizeof good - 1, "C", "Detached"),
                    doc_req(broken, sizeof broken - 1, "X", "Enveloped"));
    refused_at_second(&a, req, &out, files);
    json_decref(req);
    CU_ASSERT_EQUAL(audit_count("csc.signdoc"), signed_before);
    CU_ASSERT_EQUAL(audit_count("document.archive"), archived_before);
    json_t *l = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_csc_documents(g_csc, a.user_id, 0, NULL, &l), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "documents")), 0);
    json_decref(l);
    /* the SAD was not consumed: the same bytes, both as CAdES */
    req = json_pack("{s:s,s:s,s:[o,o]}", "credentialID", a.cred, "SAD", sad, "documents",
                    doc_req(good, sizeof good - 1, "C", "Detached"),
                    doc_req(broken, sizeof broken - 1, "C", "Attached"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_csc_sign_doc(g_csc, a.user_id, NULL, req, NULL, &out), QTSP_OK);
    CU_ASSERT_EQUAL(archive_files(), files + 2);
    CU_ASSERT_EQUAL(audit_count("csc.signdoc"), signed_before + 1);
    CU_ASSERT_EQUAL(audit_count("document.archive"), archived_before + 2);
    /* and once only */
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_csc_sign_doc(g_csc, a.user_id, NULL, req, NULL, &out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(archive_files(), files + 2);
    json_decref(req);
    json_decref(h);
    free(sad);
    qtsp_buf_cleanup(&out);
    signer_done(&a);
    qtsp_err_clear();
}

int main(void)
{
    if (suite_init() != 0) {
        fprintf(stderr, "csc suite set-up failed\n");
        printf("qtest: csc 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_csc_login_lockout_and_tokens),
        QTEST(test_csc_authorize_and_sign_ecdsa_with_every_binding),
        QTEST(test_csc_wrong_otps_lock_the_credential_for_15_minutes),
        QTEST(test_csc_refuses_held_revoked_and_expired_certificates),
        QTEST(test_csc_rsa_pkcs1_and_pss),
        QTEST(test_csc_free_package_signs_three_then_429_and_history),
        QTEST(test_csc_password_change_and_reset),
        QTEST(test_csc_list_and_info_show_own_credentials_only),
        QTEST(test_csc_purge_removes_ended_sessions_and_sads),
        QTEST(test_csc_login_refusals_flood_one_summary_per_window),
        QTEST(test_csc_sign_doc_binds_the_documents_and_archives_them),
        QTEST(test_csc_sign_doc_refused_midway_leaves_nothing),
    };
    int rc = qtest_run("csc", cases, sizeof cases / sizeof cases[0]);
    suite_clean();
    return rc;
}
