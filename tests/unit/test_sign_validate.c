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
#include "sign/ades.h"
#include "sign/validate.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_ades.h"

#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* the shared world (tests/lib/qtest_ades.h); the signer's certificate is qualified */
static qtest_ades_env E;
#define g_root (E.root)
#define g_ca (E.ca)
#define g_signer (E.signer)
#define g_sv (E.sv)
#define g_s (E.s)
#define g_pdf (E.pdf)
#define g_pdf_len (E.pdf_len)
static EVP_PKEY *g_other_key;
static X509 *g_other_root; /* a root nobody trusts */
static STACK_OF(X509) * g_inter;
static qtest_ocsp_mem_entry g_tab[1] = {{{0x51}, 1, {.state = QTSP_CERT_VALID}}};
static int64_t g_now;

/* the status the validator's hook gives for the signer (our "store") */
static qtsp_cert_status g_status;
static int g_status_known;

static const unsigned char DOC[] = "a contract, any bytes: \x00\x01\x02 and more";

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
    if (qtest_ades_env_setup(&E, "v", g_tab, 1, QTEST_CERT_QC) != 0)
        return 1;
    NEED((g_other_key = EVP_EC_gen("P-256")) != NULL);
    g_other_root = qtest_ades_cert("v stranger", g_other_key, NULL, NULL, 1, QTEST_CERT_CA, NULL,
                                   -3600, 86400L * 3650);
    g_inter = sk_X509_new_null();
    NEED(g_inter && sk_X509_push(g_inter, g_ca) > 0);
    return 0;
}

static void teardown(void)
{
    sk_X509_free(g_inter);
    X509_free(g_other_root);
    EVP_PKEY_free(g_other_key);
    qtest_ades_env_teardown(&E);
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
    qtsp_cades_opts o = {level, enveloping, when, NULL};
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
                                  const unsigned char *content, size_t clen);

static void test_validate_xades_and_asic(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    static const char xml[] = "<?xml version=\"1.0\"?>\n<order><item>tea</item></order>\n";
    qtsp_xades_object obj = {(const unsigned char *)xml, sizeof xml - 1, "order.xml", NULL};
    static const qtsp_xades_packaging pk[] = {QTSP_XADES_ENVELOPED, QTSP_XADES_ENVELOPING,
                                              QTSP_XADES_DETACHED};
    for (size_t i = 0; i < 3; i++)
        for (int l = QTSP_ADES_B_B; l <= QTSP_ADES_B_LTA; l += 3) {
            qtsp_xades_opts o = {(qtsp_ades_level)l, pk[i], g_now, 0, 0};
            qtsp_buf b;
            qtsp_buf_init(&b, 1 << 20);
            qtsp_err_clear();
            CU_ASSERT_EQUAL_FATAL(qtsp_xades_sign(&g_sv, &g_s, &o, &obj, 1, &b), QTSP_OK);
            int det = pk[i] == QTSP_XADES_DETACHED;
            EXPECT(v, &b, det ? (const unsigned char *)xml : NULL, det ? sizeof xml - 1 : 0, g_now,
                   "TOTAL-PASSED/");
            if (pk[i] == QTSP_XADES_ENVELOPED) {
                unsigned char *t = memmem(b.data, b.len, "tea", 3);
                CU_ASSERT_PTR_NOT_NULL_FATAL(t);
                t[0] = 'p';
                EXPECT(v, &b, NULL, 0, g_now, "TOTAL-FAILED/HASH_FAILURE");
            }
            if (det)
                EXPECT(v, &b, NULL, 0, g_now, "INDETERMINATE/SIGNED_DATA_NOT_FOUND");
            qtsp_buf_cleanup(&b);
        }
    /* ASiC-E with CAdES (through the manifest) and with XAdES */
    qtsp_xades_object files[2] = {{DOC, sizeof DOC, "a.bin", NULL},
                                  {(const unsigned char *)xml, sizeof xml - 1, "b.xml", NULL}};
    for (int f = QTSP_ASIC_CADES; f <= QTSP_ASIC_XADES; f++) {
        qtsp_asic_opts o = {QTSP_ASIC_E, (qtsp_asic_sigfmt)f, QTSP_ADES_B_T, g_now};
        qtsp_buf b;
        qtsp_buf_init(&b, 1 << 20);
        qtsp_err_clear();
        CU_ASSERT_EQUAL_FATAL(qtsp_asic_sign(&g_sv, &g_s, &o, files, 2, &b), QTSP_OK);
        json_t *r = NULL;
        char got[128];
        run(v, &b, NULL, 0, g_now, got, sizeof got, &r);
        CU_ASSERT_STRING_EQUAL(got, "TOTAL-PASSED/");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "format")), "ASiC-E");
        json_decref(r);
        CU_ASSERT_EQUAL(validate_bytes(v, b.data, b.len, DOC, sizeof DOC), QTSP_ERR_INVALID);
        /* every truncation: refused, never a crash */
        for (size_t n = 4; n < b.len; n += 131)
            (void)validate_bytes(v, b.data, n, NULL, 0);
        qtsp_buf_cleanup(&b);
    }
    static const char dtd[] = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>";
    CU_ASSERT_EQUAL(validate_bytes(v, dtd, sizeof dtd - 1, NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "DOCTYPE"));
    CU_ASSERT_EQUAL(validate_bytes(v, "PK\x03\x04garbage", 11, NULL, 0), QTSP_ERR_INVALID);
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
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "not a PDF, CMS signature"));
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

static void test_validate_report_xml(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    qtsp_buf b, x;
    sign_cades(QTSP_ADES_B_T, 0, g_now, &b);
    unsigned char bad[sizeof DOC];
    memcpy(bad, DOC, sizeof DOC);
    bad[0] ^= 1;
    json_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_validate(v, b.data, b.len, bad, sizeof bad, g_now, &r), QTSP_OK);
    qtsp_buf_init(&x, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_validate_report_xml(r, &x), QTSP_OK);
    const char *t = qtsp_buf_str(&x);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(t, "<vr:ValidationReport xmlns:vr=\"http://uri.etsi.org/19102/v1.2.1#\""));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(t, "<vr:MainIndication>urn:etsi:019102:mainindication:total-failed</"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(t, "<vr:SubIndication>urn:etsi:019102:subindication:HASH_FAILURE</"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "<vr:Signer>v signer</vr:Signer>"));
    /* it parses back as safe XML */
    json_decref(r);
    r = NULL;
    CU_ASSERT_EQUAL(qtsp_validate(v, x.data, x.len, NULL, 0, g_now, &r), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "signatures")), 0);
    json_decref(r);
    CU_ASSERT_EQUAL(qtsp_validate_report_xml(NULL, &x), QTSP_ERR_INVALID);
    qtsp_buf_cleanup(&x);
    qtsp_buf_cleanup(&b);
    qtsp_validator_free(v);
}

/* The XML report signed as enveloped XAdES-B-T (here by the test signer
 * standing in for the validation service): it validates, and a report whose
 * verdict was changed does not. */
static void test_validate_report_signed(void)
{
    good_status();
    qtsp_validator *v = validator(g_root, 0, 1);
    qtsp_buf b, x;
    sign_cades(QTSP_ADES_B_B, 0, g_now, &b);
    unsigned char bad[sizeof DOC];
    memcpy(bad, DOC, sizeof DOC);
    bad[0] ^= 1;
    json_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_validate(v, b.data, b.len, bad, sizeof bad, g_now, &r), QTSP_OK);
    qtsp_buf_init(&x, 1 << 20);
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_validate_report_signed(r, &g_sv, &g_s, g_now, &x), QTSP_OK);
    const char *t = qtsp_buf_str(&x);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "mainindication:total-failed</"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "<xades:SignatureTimeStamp"));
    /* ds:Signature is the last child of vr:ValidationReport */
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "</ds:Signature></vr:ValidationReport>"));
    char got[128];
    json_t *back = NULL;
    run(v, &x, NULL, 0, g_now, got, sizeof got, &back);
    CU_ASSERT_STRING_EQUAL(got, "TOTAL-PASSED/");
    json_t *s0 = json_array_get(json_object_get(back, "signatures"), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s0, "format")), "XAdES");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s0, "level")), "B-T");
    json_decref(back);
    /* the verdict turned round: the signature no longer holds */
    char *p = strstr((char *)x.data, "total-failed");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memcpy(p, "total-passed", 12);
    EXPECT(v, &x, NULL, 0, g_now, "TOTAL-FAILED/HASH_FAILURE");
    /* no key: nothing signed */
    qtsp_ades_signer none;
    memset(&none, 0, sizeof none);
    size_t before = x.len;
    CU_ASSERT_EQUAL(qtsp_validate_report_signed(r, &g_sv, &none, g_now, &x), QTSP_ERR_UNAVAILABLE);
    CU_ASSERT_EQUAL(x.len, before);
    qtsp_err_clear();
    json_decref(r);
    qtsp_buf_cleanup(&x);
    qtsp_buf_cleanup(&b);
    qtsp_validator_free(v);
}

static qtsp_status put_rec(qtsp_txn *txn, void *ctx)
{
    return qtsp_certdb_put(txn, ctx);
}

/* x recorded in st as issued by issuer ("issuing" or "root"). */
static void record_cert(qtsp_store *st, X509 *x, const char *issuer)
{
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    NEED(qtsp_serial_normalize(sn->data, (size_t)sn->length, rec.serial, &rec.serial_len) ==
         QTSP_OK);
    snprintf(rec.issuer, sizeof rec.issuer, "%s", issuer);
    unsigned char *der = NULL;
    int dl = i2d_X509(x, &der);
    NEED(dl > 0);
    rec.der = der;
    rec.der_len = (size_t)dl;
    NEED(qtsp_store_write(st, put_rec, &rec) == QTSP_OK);
    OPENSSL_free(der);
}

/* The store's status hook: the issuing CA's certificates, and the root's own
 * (TSA unit, validation service) only when the root is given and the store
 * says the root issued them. */
static void test_validate_store_status_issuing_and_root(void)
{
    char dir[600];
    qtsp_store *st = qtest_store_fresh("vstore", 4, dir, sizeof dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    record_cert(st, g_signer, "issuing");
    record_cert(st, E.tsa_cert, "root");
    qtsp_validate_store vs = {st, g_ca, g_root};
    qtsp_cert_status out;
    memset(&out, 0, sizeof out);
    CU_ASSERT_EQUAL(qtsp_validate_store_status(&vs, g_signer, g_ca, &out), QTSP_OK);
    CU_ASSERT_EQUAL(out.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(qtsp_validate_store_status(&vs, E.tsa_cert, g_root, &out), QTSP_OK);
    CU_ASSERT_EQUAL(out.state, QTSP_CERT_VALID);
    /* the signer's serial under the root: the store says the issuing CA made it */
    CU_ASSERT_EQUAL(qtsp_validate_store_status(&vs, g_signer, g_root, &out), QTSP_ERR_NOT_FOUND);
    /* a stranger's certificate, and the root unknown to the hook */
    CU_ASSERT_EQUAL(qtsp_validate_store_status(&vs, E.tsa_cert, g_other_root, &out),
                    QTSP_ERR_NOT_FOUND);
    vs.root = NULL;
    CU_ASSERT_EQUAL(qtsp_validate_store_status(&vs, E.tsa_cert, g_root, &out), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    qtest_store_done(st, dir);
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
        QTEST(test_validate_xades_and_asic),
        QTEST(test_validate_refuses_bad_files),
        QTEST(test_validate_report_xml),
        QTEST(test_validate_report_signed),
        QTEST(test_validate_store_status_issuing_and_root),
        QTEST(test_validate_trust_file),
    };
    int rc = qtest_run("sign_validate", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
