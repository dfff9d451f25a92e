/* Unit tests for sign/validate.c and sign/validate_pdf.c: signatures made
 * by our own builders (sign/ades.h) with real cores (our TSA, our OCSP
 * responder over the in-memory status table, software keys) are validated
 * with a status table standing in for the store; then each rule of
 * docs/validation.md: tampering, revocation and holds against the signing
 * time and the proofs of existence, an untrusted chain, expiry, missing
 * revocation data, bad files. */
#define _GNU_SOURCE 1 /* memmem */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/buf.h"
#include "ocsp/ocsp_int.h"
#include "sign/ades.h"
#include "sign/validate.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_ocsp_mem.h"

#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static EVP_PKEY *g_root_key, *g_ca_key, *g_tsa_key, *g_resp_key, *g_signer_key, *g_other_key;
static X509 *g_root, *g_ca, *g_tsa_cert, *g_resp, *g_signer, *g_other_root;
static qtsp_tsa *g_tsa;
static qtsp_ocsp *g_ocsp;
static STACK_OF(X509) * g_chain, *g_extra, *g_tsa_chain, *g_inter;
static qtsp_ades_services g_sv;
static qtsp_ades_signer g_s;
static qtest_ocsp_mem g_mem;
static qtest_ocsp_mem_entry g_tab[1] = {{{0x51}, 1, {.state = QTSP_CERT_VALID}}};
static int64_t g_now;

/* the status the validator's hook gives for the signer (our "store") */
static qtsp_cert_status g_status;
static int g_status_known;

static const unsigned char DOC[] = "a contract, any bytes: \x00\x01\x02 and more";
static char g_pdf[2048];
static size_t g_pdf_len;

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    NEED(ext != NULL);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

/* EN 319 412-5 QcCompliance, QcSSCD, QcType esign as DER */
static void add_qc(X509 *c)
{
    /* QcType { SEQUENCE { OID esign 0.4.0.1862.1.6.1 } } */
    static const unsigned char full[] = {
        0x30, 0x29, 0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01, 0x30, 0x08, 0x06,
        0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04, 0x30, 0x13, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46,
        0x01, 0x06, 0x30, 0x09, 0x06, 0x07, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x01};
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    NEED(os && ASN1_OCTET_STRING_set(os, full, sizeof full));
    X509_EXTENSION *ext = X509_EXTENSION_create_by_NID(NULL, NID_qcStatements, 0, os);
    NEED(ext != NULL);
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial,
                       int is_ca, const char *eku, long nb, long na)
{
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), nb);
    X509_gmtime_adj(X509_getm_notAfter(c), na);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_NAME_free(n);
    X509_set_pubkey(c, key);
    X509 *iss = issuer ? issuer : c;
    if (is_ca) {
        add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c, iss, NID_key_usage, "critical,digitalSignature,nonRepudiation");
        if (eku)
            add_ext(c, iss, NID_ext_key_usage, eku);
        if (eku && strcmp(eku, "OCSPSigning") == 0)
            add_ext(c, iss, NID_id_pkix_OCSP_noCheck, "ignored");
        if (!eku)
            add_qc(c);
    }
    add_ext(c, iss, NID_subject_key_identifier, "hash");
    NEED(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
    return c;
}

static int synced(void *ctx)
{
    (void)ctx;
    return 1;
}

static qtsp_status status_hook(void *ctx, X509 *cert, X509 *issuer, qtsp_cert_status *out)
{
    (void)ctx;
    if (!g_status_known || X509_cmp(issuer, g_ca) != 0 || X509_cmp(cert, g_signer) != 0)
        FAIL(QTSP_ERR_NOT_FOUND, "not ours");
    *out = g_status;
    return QTSP_OK;
}

static int setup(void)
{
    g_now = (int64_t)time(NULL);
    EVP_PKEY **k[] = {&g_root_key, &g_ca_key, &g_tsa_key, &g_resp_key, &g_signer_key, &g_other_key};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        NEED((*k[i] = EVP_EC_gen("P-256")) != NULL);
    long year = 86400L * 365;
    g_root = make_cert("v root", g_root_key, NULL, NULL, 1, 1, NULL, -3600, 10 * year);
    g_other_root = make_cert("v stranger", g_other_key, NULL, NULL, 1, 1, NULL, -3600, 10 * year);
    g_ca = make_cert("v issuing CA", g_ca_key, g_root, g_root_key, 2, 1, NULL, -3600, 5 * year);
    g_tsa_cert = make_cert("v TSU", g_tsa_key, g_root, g_root_key, 3, 0, "critical,timeStamping",
                           -3600, year);
    g_resp = make_cert("v OCSP", g_resp_key, g_ca, g_ca_key, 4, 0, "OCSPSigning", -3600, year);
    g_signer = make_cert("v signer", g_signer_key, g_ca, g_ca_key, 0x51, 0, NULL, -3600, year);

    char pol[1024];
    snprintf(pol, sizeof pol, "%s/policies/tsa.yaml", qtest_src_dir());
    g_tsa_chain = sk_X509_new_null();
    NEED(g_tsa_chain && sk_X509_push(g_tsa_chain, g_root) > 0);
    if (qtsp_tsa_new(pol, g_tsa_cert, g_tsa_chain, qtest_key(g_tsa_key), NULL, &g_tsa) != QTSP_OK) {
        fprintf(stderr, "qtsp_tsa_new: %s\n", qtsp_err_message());
        return 1;
    }
    qtsp_tsa_set_sync_check(g_tsa, synced, NULL);
    g_mem = (qtest_ocsp_mem){g_tab, 1, 1, 0, 0, 0};
    qtsp_ocsp_source src;
    qtest_ocsp_mem_source(&g_mem, &src);
    if (qtsp_ocsp_new_source(NULL, g_ca, g_resp, qtest_key(g_resp_key), &src, &g_ocsp) != QTSP_OK) {
        fprintf(stderr, "qtsp_ocsp_new: %s\n", qtsp_err_message());
        return 1;
    }
    g_chain = sk_X509_new_null();
    g_extra = sk_X509_new_null();
    g_inter = sk_X509_new_null();
    NEED(g_chain && g_extra && g_inter && sk_X509_push(g_chain, g_ca) > 0 &&
         sk_X509_push(g_chain, g_root) > 0 && sk_X509_push(g_extra, g_tsa_cert) > 0 &&
         sk_X509_push(g_extra, g_resp) > 0 && sk_X509_push(g_inter, g_ca) > 0);
    g_sv = (qtsp_ades_services){g_tsa, g_ocsp, g_ca, g_extra, NULL};
    g_s = (qtsp_ades_signer){qtest_key(g_signer_key), g_signer, g_chain, {0}};
    NEED(qtsp_key_sigalg(g_s.key, EVP_sha256(), &g_s.alg) == QTSP_OK);

    const char *objs[] = {
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
        "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n",
        "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n",
    };
    size_t off[3], n = (size_t)snprintf(g_pdf, sizeof g_pdf, "%%PDF-1.4\n");
    for (int i = 0; i < 3; i++) {
        off[i] = n;
        n += (size_t)snprintf(g_pdf + n, sizeof g_pdf - n, "%s", objs[i]);
    }
    size_t xref = n;
    n += (size_t)snprintf(g_pdf + n, sizeof g_pdf - n,
                          "xref\n0 4\n0000000000 65535 f \n%010zu 00000 n \n%010zu 00000 n \n"
                          "%010zu 00000 n \ntrailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%zu\n"
                          "%%%%EOF\n",
                          off[0], off[1], off[2], xref);
    g_pdf_len = n;
    return 0;
}

static void teardown(void)
{
    qtsp_tsa_free(g_tsa);
    qtsp_ocsp_free(g_ocsp);
    sk_X509_free(g_chain);
    sk_X509_free(g_extra);
    sk_X509_free(g_tsa_chain);
    sk_X509_free(g_inter);
    X509 *c[] = {g_root, g_ca, g_tsa_cert, g_resp, g_signer, g_other_root};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        X509_free(c[i]);
    EVP_PKEY *k[] = {g_root_key, g_ca_key, g_tsa_key, g_resp_key, g_signer_key, g_other_key};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        EVP_PKEY_free(k[i]);
}

/* A validator trusting anchor (revocation checked unless rev_none), our
 * status hook when with_status. */
static qtsp_validator *validator(X509 *anchor, int rev_none, int with_status)
{
    qtsp_validate_anchor a = {anchor, !rev_none};
    qtsp_validator_opts o = {&a, 1, g_inter, with_status ? status_hook : NULL, NULL};
    qtsp_validator *v = NULL;
    NEED(qtsp_validator_new(&o, &v) == QTSP_OK);
    return v;
}

static void sign_cades(qtsp_ades_level level, int enveloping, int64_t when, qtsp_buf *out)
{
    qtsp_cades_opts o = {level, enveloping, when};
    qtsp_buf_init(out, 1 << 20);
    qtsp_err_clear();
    qtsp_status rc = qtsp_cades_sign(&g_sv, &g_s, &o, DOC, sizeof DOC, out);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
}

static void sign_pades(qtsp_ades_level level, qtsp_buf *out)
{
    qtsp_pades_opts o = {level, 0, g_now};
    qtsp_buf_init(out, 1 << 20);
    qtsp_err_clear();
    qtsp_status rc = qtsp_pades_sign(&g_sv, &g_s, &o, (const unsigned char *)g_pdf, g_pdf_len, out);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
}

/* The report of one signature: "INDICATION/SUB" into out; the report in *rep. */
static void run(const qtsp_validator *v, const qtsp_buf *f, const unsigned char *content,
                size_t clen, int64_t now, char *out, size_t cap, json_t **rep)
{
    json_t *r = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_validate(v, f->data, f->len, content, clen, now, &r);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    json_t *s = json_array_get(json_object_get(r, "signatures"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const char *sub = json_string_value(json_object_get(s, "sub_indication"));
    snprintf(out, cap, "%s/%s", json_string_value(json_object_get(s, "indication")),
             sub ? sub : "");
    if (rep)
        *rep = r;
    else
        json_decref(r);
}

#define EXPECT(v, f, content, clen, now, want)                                                     \
    do {                                                                                           \
        char got_[128];                                                                            \
        run(v, f, content, clen, now, got_, sizeof got_, NULL);                                    \
        if (strcmp(got_, want) != 0)                                                               \
            fprintf(stderr, "%s:%d: expected %s, got %s\n", __FILE__, __LINE__, want, got_);       \
        CU_ASSERT_STRING_EQUAL(got_, want);                                                        \
    } while (0)

static void good_status(void)
{
    memset(&g_status, 0, sizeof g_status);
    g_status.state = QTSP_CERT_VALID;
    g_status_known = 1;
}

static void test_validate_cades_levels_pass(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    static const char *const levels[] = {"B-B", "B-T", "B-LT", "B-LTA"};
    for (int l = QTSP_ADES_B_B; l <= QTSP_ADES_B_LTA; l++)
        for (int env = 0; env < 2; env++) {
            qtsp_buf b;
            sign_cades((qtsp_ades_level)l, env, g_now, &b);
            json_t *r = NULL;
            char got[128];
            run(v, &b, env ? NULL : DOC, env ? 0 : sizeof DOC, g_now, got, sizeof got, &r);
            CU_ASSERT_STRING_EQUAL(got, "TOTAL-PASSED/");
            json_t *s = json_array_get(json_object_get(r, "signatures"), 0);
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "level")), levels[l - 1]);
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "signer")), "v signer");
            CU_ASSERT(json_is_true(json_object_get(s, "qualified")));
            CU_ASSERT_STRING_EQUAL(
                json_string_value(json_object_get(json_object_get(s, "qc"), "type")), "esign");
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "format")), "CAdES");
            const char *src =
                json_string_value(json_object_get(json_object_get(s, "revocation"), "source"));
            CU_ASSERT_STRING_EQUAL(src, l >= QTSP_ADES_B_LT ? "embedded-ocsp" : "own-status");
            json_decref(r);
            qtsp_buf_cleanup(&b);
        }
    qtsp_validator_free(v);
}

static void test_validate_b_lt_needs_no_store(void)
{
    /* B-LT: the file's OCSP answer suffices, no status hook */
    qtsp_validator *v = validator(g_root, 0, 0);
    qtsp_buf b;
    sign_cades(QTSP_ADES_B_LT, 0, g_now, &b);
    EXPECT(v, &b, DOC, sizeof DOC, g_now, "TOTAL-PASSED/");
    qtsp_buf_cleanup(&b);
    /* B-B: no revocation data at all: try later; under an anchor that needs none: passed */
    sign_cades(QTSP_ADES_B_B, 0, g_now, &b);
    EXPECT(v, &b, DOC, sizeof DOC, g_now, "INDETERMINATE/TRY_LATER");
    qtsp_validator_free(v);
    v = validator(g_root, 1, 0);
    EXPECT(v, &b, DOC, sizeof DOC, g_now, "TOTAL-PASSED/");
    qtsp_validator_free(v);
    qtsp_buf_cleanup(&b);
}

static void test_validate_tampering(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    qtsp_buf b;
    sign_cades(QTSP_ADES_B_T, 0, g_now, &b);
    unsigned char bad[sizeof DOC];
    memcpy(bad, DOC, sizeof DOC);
    bad[3] ^= 1;
    EXPECT(v, &b, bad, sizeof bad, g_now, "TOTAL-FAILED/HASH_FAILURE");
    EXPECT(v, &b, NULL, 0, g_now, "INDETERMINATE/SIGNED_DATA_NOT_FOUND");
    qtsp_buf_cleanup(&b);
    /* the last byte of a B-B CMS lies in the signature value */
    sign_cades(QTSP_ADES_B_B, 0, g_now, &b);
    b.data[b.len - 2] ^= 1;
    EXPECT(v, &b, DOC, sizeof DOC, g_now, "TOTAL-FAILED/SIG_CRYPTO_FAILURE");
    qtsp_buf_cleanup(&b);
    /* PDF: a byte inside the signed range */
    sign_pades(QTSP_ADES_B_LT, &b);
    EXPECT(v, &b, NULL, 0, g_now, "TOTAL-PASSED/");
    b.data[100] ^= 1;
    EXPECT(v, &b, NULL, 0, g_now, "TOTAL-FAILED/HASH_FAILURE");
    qtsp_buf_cleanup(&b);
    qtsp_validator_free(v);
}

static void test_validate_revocation_against_signing_time(void)
{
    qtsp_validator *v = validator(g_root, 0, 1);
    qtsp_buf bb, bt;
    sign_cades(QTSP_ADES_B_B, 0, g_now, &bb);
    sign_cades(QTSP_ADES_B_T, 0, g_now, &bt);
    memset(&g_status, 0, sizeof g_status);
    g_status_known = 1;
    g_status.state = QTSP_CERT_REVOKED;
    g_status.reason = QTSP_REASON_KEY_COMPROMISE;
    /* revoked before the claimed signing time: the signature says it was made after */
    g_status.revoked_at = g_now - 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now, "TOTAL-FAILED/REVOKED");
    EXPECT(v, &bt, DOC, sizeof DOC, g_now, "TOTAL-FAILED/REVOKED");
    /* revoked after: without a proof of existence, indeterminate; the time-stamp proves it */
    g_status.revoked_at = g_now + 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now + 20, "INDETERMINATE/REVOKED_NO_POE");
    EXPECT(v, &bt, DOC, sizeof DOC, g_now + 20, "TOTAL-PASSED/");
    /* on hold since before: failed; hold after the time-stamp: passed; B-B: try later */
    g_status.state = QTSP_CERT_ON_HOLD;
    g_status.reason = QTSP_REASON_CERTIFICATE_HOLD;
    g_status.hold_until = g_now + 3600;
    g_status.revoked_at = g_now - 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now, "TOTAL-FAILED/REVOKED");
    g_status.revoked_at = g_now + 10;
    EXPECT(v, &bt, DOC, sizeof DOC, g_now + 20, "TOTAL-PASSED/");
    EXPECT(v, &bb, DOC, sizeof DOC, g_now + 20, "INDETERMINATE/TRY_LATER");
    /* a released hold: only a signing time inside it fails */
    g_status.state = QTSP_CERT_VALID;
    g_status.released = 1;
    g_status.revoked_at = g_now - 10;
    g_status.changed_at = g_now + 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now + 20, "TOTAL-FAILED/REVOKED");
    g_status.revoked_at = g_now + 5;
    g_status.changed_at = g_now + 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now + 20, "TOTAL-PASSED/");
    /* a hold that lapsed by itself reads as released (qtsp_cert_status_effective) */
    g_status.state = QTSP_CERT_ON_HOLD;
    g_status.released = 0;
    g_status.revoked_at = g_now - 10;
    g_status.hold_until = g_now + 10;
    EXPECT(v, &bb, DOC, sizeof DOC, g_now + 20, "TOTAL-FAILED/REVOKED");
    qtsp_buf_cleanup(&bb);
    qtsp_buf_cleanup(&bt);
    qtsp_validator_free(v);
}

static void test_validate_chain_and_validity(void)
{
    good_status();
    qtsp_buf bb, bt;
    sign_cades(QTSP_ADES_B_B, 0, g_now, &bb);
    sign_cades(QTSP_ADES_B_T, 0, g_now, &bt);
    qtsp_validator *v = validator(g_other_root, 0, 1);
    EXPECT(v, &bb, DOC, sizeof DOC, g_now, "INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND");
    qtsp_validator_free(v);
    v = validator(g_root, 0, 1);
    /* two years on, the signer's certificate has expired: a time-stamp keeps it valid */
    int64_t later = g_now + 2 * 365 * 86400L;
    EXPECT(v, &bb, DOC, sizeof DOC, later, "INDETERMINATE/OUT_OF_BOUNDS_NO_POE");
    EXPECT(v, &bt, DOC, sizeof DOC, later, "TOTAL-PASSED/");
    qtsp_buf_cleanup(&bb);
    /* a claimed signing time before the certificate's validity */
    sign_cades(QTSP_ADES_B_B, 0, g_now - 86400, &bb);
    EXPECT(v, &bb, DOC, sizeof DOC, g_now, "TOTAL-FAILED/NOT_YET_VALID");
    qtsp_buf_cleanup(&bb);
    qtsp_buf_cleanup(&bt);
    qtsp_validator_free(v);
}

static void test_validate_pades_levels(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    static const char *const levels[] = {"B-B", "B-T", "B-LT", "B-LTA"};
    for (int l = QTSP_ADES_B_B; l <= QTSP_ADES_B_LTA; l++) {
        qtsp_buf b;
        sign_pades((qtsp_ades_level)l, &b);
        json_t *r = NULL;
        char got[128];
        run(v, &b, NULL, 0, g_now, got, sizeof got, &r);
        CU_ASSERT_STRING_EQUAL(got, "TOTAL-PASSED/");
        json_t *s = json_array_get(json_object_get(r, "signatures"), 0);
        CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "signatures")), 1);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "level")), levels[l - 1]);
        CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(s, "signing_time")));
        CU_ASSERT(json_is_true(json_object_get(s, "covers_whole_file")) == (l <= QTSP_ADES_B_T));
        json_decref(r);
        /* B-LTA: a byte after the DSS breaks the document time-stamp, not the signature */
        if (l == QTSP_ADES_B_LTA) {
            unsigned char *at = memmem(b.data, b.len, "/OCSPs", 6);
            CU_ASSERT_PTR_NOT_NULL_FATAL(at);
            at[5] ^= 1;
            run(v, &b, NULL, 0, g_now, got, sizeof got, &r);
            CU_ASSERT_STRING_EQUAL(got, "TOTAL-PASSED/");
            s = json_array_get(json_object_get(r, "signatures"), 0);
            json_t *ts = json_array_get(json_object_get(s, "timestamps"), 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ts);
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ts, "type")), "document");
            CU_ASSERT(json_is_false(json_object_get(ts, "valid")));
            json_decref(r);
        }
        qtsp_buf_cleanup(&b);
    }
    qtsp_validator_free(v);
}

static qtsp_status validate_bytes(const qtsp_validator *v, const void *p, size_t n,
                                  const unsigned char *content, size_t clen)
{
    json_t *r = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_validate(v, p, n, content, clen, g_now, &r);
    json_decref(r);
    return rc;
}

static void test_validate_refuses_bad_files(void)
{
    qtsp_validator *v = validator(g_root, 0, 1);
    CU_ASSERT_EQUAL(validate_bytes(v, "garbage", 7, NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "neither a PDF nor a CMS"));
    CU_ASSERT_EQUAL(validate_bytes(v, g_pdf, 0, NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(validate_bytes(v, g_pdf, g_pdf_len / 2, NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "does not parse"));
    CU_ASSERT_EQUAL(validate_bytes(v, "\x30\x03\x02\x01\x01", 5, NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(
        validate_bytes(v, "-----BEGIN CMS-----\nAAAA\n-----END CMS-----\n", 43, NULL, 0),
        QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(validate_bytes(v, g_pdf, g_pdf_len, DOC, sizeof DOC), QTSP_ERR_INVALID);
    unsigned char *big = calloc(1, QTSP_VALIDATE_MAX_FILE + 1);
    NEED(big != NULL);
    CU_ASSERT_EQUAL(validate_bytes(v, big, QTSP_VALIDATE_MAX_FILE + 1, NULL, 0), QTSP_ERR_TOO_BIG);
    free(big);
    /* an unsigned PDF: a report with no signatures */
    json_t *r = NULL;
    CU_ASSERT_EQUAL(qtsp_validate(v, (const unsigned char *)g_pdf, g_pdf_len, NULL, 0, g_now, &r),
                    QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "signatures")), 0);
    json_decref(r);
    /* an enveloping signature with content as well */
    qtsp_buf b;
    sign_cades(QTSP_ADES_B_B, 1, g_now, &b);
    CU_ASSERT_EQUAL(validate_bytes(v, b.data, b.len, DOC, sizeof DOC), QTSP_ERR_INVALID);
    /* every truncation of a CMS is refused or judged, never a crash */
    for (size_t n = 1; n < b.len; n += 7)
        (void)validate_bytes(v, b.data, n, NULL, 0);
    qtsp_buf_cleanup(&b);
    /* every truncation of a signed PDF */
    sign_pades(QTSP_ADES_B_LT, &b);
    for (size_t n = 1; n < b.len; n += 97)
        (void)validate_bytes(v, b.data, n, NULL, 0);
    qtsp_buf_cleanup(&b);
    qtsp_validator_free(v);
}

static void test_validate_trust_file(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", qtest_tmpdir("trust"));
    char path[700], pem[700];
    snprintf(pem, sizeof pem, "%s/public", dir);
    NEED(mkdir(pem, 0755) == 0);
    snprintf(pem, sizeof pem, "%s/public/root-ca.crt", dir);
    FILE *f = fopen(pem, "w");
    NEED(f && PEM_write_X509(f, g_root) == 1);
    fclose(f);
    qtsp_validate_anchor a[4];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/trust.yaml", dir);
    /* no file: the home's root */
    CU_ASSERT_EQUAL_FATAL(qtsp_validate_load_trust(path, dir, a, 4, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(X509_cmp(a[0].cert, g_root), 0);
    CU_ASSERT_EQUAL(a[0].revocation_checked, 1);
    X509_free(a[0].cert);
    f = fopen(path, "w");
    fprintf(f, "anchors:\n  - file: public/root-ca.crt\n  - file: %s\n    revocation: none\n", pem);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(qtsp_validate_load_trust(path, dir, a, 4, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(a[1].revocation_checked, 0);
    X509_free(a[0].cert);
    X509_free(a[1].cert);
    CU_ASSERT_EQUAL(qtsp_validate_load_trust(path, dir, a, 1, &n), QTSP_ERR_TOO_BIG);
    f = fopen(path, "w");
    fprintf(f, "anchors:\n  - file: public/missing.crt\n");
    fclose(f);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_validate_load_trust(path, dir, a, 4, &n), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "cannot open"));
    f = fopen(path, "w");
    fprintf(f, "anchors:\n  - file: public/root-ca.crt\n    revocation: sometimes\n");
    fclose(f);
    CU_ASSERT_EQUAL(qtsp_validate_load_trust(path, dir, a, 4, &n), QTSP_ERR_CONFIG);
    f = fopen(path, "w");
    fprintf(f, "anchor: []\n");
    fclose(f);
    CU_ASSERT_EQUAL(qtsp_validate_load_trust(path, dir, a, 4, &n), QTSP_ERR_CONFIG);
    qtest_rmtree(dir);
}

int main(void)
{
    if (setup() != 0)
        return 1;
    static const qtest_case cases[] = {
        QTEST(test_validate_cades_levels_pass),
        QTEST(test_validate_b_lt_needs_no_store),
        QTEST(test_validate_tampering),
        QTEST(test_validate_revocation_against_signing_time),
        QTEST(test_validate_chain_and_validity),
        QTEST(test_validate_pades_levels),
        QTEST(test_validate_refuses_bad_files),
        QTEST(test_validate_trust_file),
    };
    int rc = qtest_run("sign_validate", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
