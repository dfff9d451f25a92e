/* Unit tests for sign/ (CAdES, PAdES, XAdES, ASiC): real cores, no mocks:
 * our TSA (no journal) and our OCSP responder over the in-memory status
 * source, a software signer key. Outputs are checked with OpenSSL
 * (CMS_verify, the TS verifier, EVP_DigestVerify), XML through libxml2's
 * own xmlC14NDocSaveTo over XPath node sets (not the builder's path),
 * containers through libzip; then what must be refused. */
#define _GNU_SOURCE 1 /* memmem */
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <zip.h>

#include "core/buf.h"
#include "core/codec.h"
#include "ocsp/ocsp_int.h"
#include "sign/ades.h"
#include "sign/xml.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_ades.h"
#include "tests/lib/qtest_ocsp_mem.h"

#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* the shared world (tests/lib/qtest_ades.h) under this file's names */
static qtest_ades_env E;
#define g_root_key (E.root_key)
#define g_ca_key (E.ca_key)
#define g_signer_key (E.signer_key)
#define g_root (E.root)
#define g_ca (E.ca)
#define g_tsa_cert (E.tsa_cert)
#define g_resp (E.resp)
#define g_signer (E.signer)
#define g_tsa (E.tsa)
#define g_ocsp (E.ocsp)
#define g_chain (E.chain)
#define g_extra (E.extra)
#define g_sv (E.sv)
#define g_s (E.s)
#define g_pdf (E.pdf)
#define g_pdf_len (E.pdf_len)
#define g_pdf_xref (E.pdf_xref)
static X509 *g_revoked;
static qtest_ocsp_mem_entry g_tab[2] = {
    {{0x51}, 1, {.state = QTSP_CERT_VALID}},
    {{0x52}, 1, {.state = QTSP_CERT_REVOKED, .reason = 1, .revoked_at = 1000}},
};

static const unsigned char DOC[] = "a contract, any bytes: \x00\x01\x02 and more";

/* Where needle last occurs in b (binary-safe), or NULL. */
static const char *find_last(const qtsp_buf *b, size_t from, const char *needle)
{
    const char *last = NULL, *p = (const char *)b->data + from;
    size_t left = b->len - from, n = strlen(needle);
    const char *q;
    while ((q = memmem(p, left, needle, n)) != NULL) {
        last = q;
        left -= (size_t)(q + 1 - p);
        p = q + 1;
    }
    return last;
}

static int setup(void)
{
    if (qtest_ades_env_setup(&E, "ades", g_tab, 2, 0) != 0)
        return 1;
    g_revoked = qtest_ades_cert("ades revoked", g_signer_key, g_ca, g_ca_key, 0x52, 0, NULL, -3600,
                                86400L * 365);
    return 0;
}

static void teardown(void)
{
    X509_free(g_revoked);
    qtest_ades_env_teardown(&E);
}

static CMS_ContentInfo *parse_cms(const unsigned char *p, size_t n)
{
    const unsigned char *q = p;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    CU_ASSERT_EQUAL(q, p + n); /* every byte consumed */
    return cms;
}

/* CMS_verify with the root as the only trust anchor; content NULL when enveloped. */
static int cms_ok(CMS_ContentInfo *cms, const unsigned char *content, size_t n)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, g_root);
    X509_VERIFY_PARAM_set_purpose(X509_STORE_get0_param(st), X509_PURPOSE_ANY);
    BIO *in = content ? BIO_new_mem_buf(content, (int)n) : NULL;
    int ok = CMS_verify(cms, NULL, st, in, NULL, CMS_BINARY) == 1;
    BIO_free(in);
    X509_STORE_free(st);
    return ok;
}

static CMS_SignerInfo *signer0(CMS_ContentInfo *cms)
{
    return sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
}

/* The unsigned attribute with dotted OID, first value as DER (caller frees), or NULL. */
static unsigned char *unsigned_attr(CMS_ContentInfo *cms, const char *oid, int *len)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int i = CMS_unsigned_get_attr_by_OBJ(signer0(cms), o, -1);
    ASN1_OBJECT_free(o);
    if (i < 0)
        return NULL;
    ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(CMS_unsigned_get_attr(signer0(cms), i), 0);
    unsigned char *der = NULL;
    *len = i2d_ASN1_TYPE(t, &der);
    return der;
}

static int signed_attr_count(CMS_ContentInfo *cms, int nid)
{
    int n = 0, i = -1;
    while ((i = CMS_signed_get_attr_by_NID(signer0(cms), nid, i)) >= 0)
        n++;
    return n;
}

static void sign_cades(qtsp_ades_level level, int enveloping, qtsp_buf *out)
{
    qtsp_cades_opts o = {level, enveloping, 1765000000, NULL};
    qtsp_buf_init(out, 1 << 20);
    qtsp_err_clear();
    qtsp_status rc = qtsp_cades_sign(&g_sv, &g_s, &o, DOC, sizeof DOC, out);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
}

/* The TimeStampToken (DER) verifies over data with the root as anchor. */
static int token_covers(const unsigned char *tok, int len, const unsigned char *data, size_t n)
{
    const unsigned char *p = tok;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, len);
    if (!p7)
        return 0;
    TS_VERIFY_CTX *ctx = TS_VERIFY_CTX_new();
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, g_root);
    TS_VERIFY_CTX_set_flags(ctx, TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_DATA);
    TS_VERIFY_CTX_set_store(ctx, st);
    TS_VERIFY_CTX_set_data(ctx, BIO_new_mem_buf(data, (int)n));
    int ok = TS_RESP_verify_token(ctx, p7) == 1;
    TS_VERIFY_CTX_free(ctx);
    PKCS7_free(p7);
    return ok;
}

static void test_ades_level_names_parse(void)
{
    qtsp_ades_level l;
    CU_ASSERT(qtsp_ades_level_parse("Ades-B-B", &l) == QTSP_OK && l == QTSP_ADES_B_B);
    CU_ASSERT(qtsp_ades_level_parse("AdES-B-LTA", &l) == QTSP_OK && l == QTSP_ADES_B_LTA);
    CU_ASSERT_STRING_EQUAL(qtsp_ades_level_name(QTSP_ADES_B_LT), "B-LT");
    CU_ASSERT_EQUAL(qtsp_ades_level_parse("Ades-B-X", &l), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_ades_level_parse("B-B", &l), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_ades_level_parse(NULL, &l), QTSP_ERR_INVALID);
}

static void test_cades_b_b_detached_and_enveloping_verify(void)
{
    for (int env = 0; env < 2; env++) {
        qtsp_buf out;
        sign_cades(QTSP_ADES_B_B, env, &out);
        CMS_ContentInfo *cms = parse_cms(out.data, out.len);
        CU_ASSERT_EQUAL(CMS_is_detached(cms), !env);
        CU_ASSERT(cms_ok(cms, env ? NULL : DOC, sizeof DOC));
        /* EN 319 122-1 5.2: each exactly once */
        CU_ASSERT_EQUAL(signed_attr_count(cms, NID_pkcs9_contentType), 1);
        CU_ASSERT_EQUAL(signed_attr_count(cms, NID_pkcs9_messageDigest), 1);
        CU_ASSERT_EQUAL(signed_attr_count(cms, NID_pkcs9_signingTime), 1);
        CU_ASSERT_EQUAL(signed_attr_count(cms, NID_id_smime_aa_signingCertificateV2), 1);
        CU_ASSERT_EQUAL(CMS_unsigned_get_attr_count(signer0(cms)), -1);
        if (!env) {
            unsigned char other[sizeof DOC];
            memcpy(other, DOC, sizeof DOC);
            other[3] ^= 1;
            CU_ASSERT_FALSE(cms_ok(cms, other, sizeof other));
        }
        CMS_ContentInfo_free(cms);
        qtsp_buf_cleanup(&out);
    }
}

static void test_cades_b_t_carries_a_time_stamp_over_the_signature(void)
{
    qtsp_buf out;
    sign_cades(QTSP_ADES_B_T, 0, &out);
    CMS_ContentInfo *cms = parse_cms(out.data, out.len);
    CU_ASSERT(cms_ok(cms, DOC, sizeof DOC));
    int len = 0;
    unsigned char *tok = unsigned_attr(cms, "1.2.840.113549.1.9.16.2.14", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(signer0(cms));
    CU_ASSERT(token_covers(tok, len, sig->data, (size_t)sig->length));
    CU_ASSERT_FALSE(token_covers(tok, len, DOC, sizeof DOC));
    OPENSSL_free(tok);
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&out);
}

static void test_cades_b_lt_carries_certificates_and_ocsp(void)
{
    qtsp_buf out;
    sign_cades(QTSP_ADES_B_LT, 1, &out);
    CMS_ContentInfo *cms = parse_cms(out.data, out.len);
    CU_ASSERT(cms_ok(cms, NULL, 0));
    int len = 0;
    unsigned char *cv = unsigned_attr(cms, "1.2.840.113549.1.9.16.2.23", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cv);
    /* SEQUENCE OF Certificate: the CA, the root, the TSU, the responder */
    const unsigned char *p = cv;
    long slen = 0;
    int tag = 0, cls = 0, certs = 0;
    CU_ASSERT_EQUAL(ASN1_get_object(&p, &slen, &tag, &cls, len) & 0x80, 0);
    const unsigned char *end = p + slen;
    while (p < end) {
        X509 *x = d2i_X509(NULL, &p, end - p);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        CU_ASSERT_NOT_EQUAL(X509_cmp(x, g_signer), 0);
        X509_free(x);
        certs++;
    }
    CU_ASSERT_EQUAL(certs, 4);
    OPENSSL_free(cv);
    unsigned char *rv = unsigned_attr(cms, "1.2.840.113549.1.9.16.2.24", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rv);
    /* RevocationValues { ocspVals [1] { BasicOCSPResponse } } */
    p = rv;
    CU_ASSERT_EQUAL(ASN1_get_object(&p, &slen, &tag, &cls, len) & 0x80, 0);
    CU_ASSERT_EQUAL(ASN1_get_object(&p, &slen, &tag, &cls, slen) & 0x80, 0);
    CU_ASSERT(cls == V_ASN1_CONTEXT_SPECIFIC && tag == 1);
    CU_ASSERT_EQUAL(ASN1_get_object(&p, &slen, &tag, &cls, slen) & 0x80, 0);
    OCSP_BASICRESP *bs = d2i_OCSP_BASICRESP(NULL, &p, slen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bs);
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), g_signer, g_ca);
    int status = -1;
    CU_ASSERT_EQUAL(OCSP_resp_find_status(bs, id, &status, NULL, NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(status, V_OCSP_CERTSTATUS_GOOD);
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    OPENSSL_free(rv);
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&out);
}

static void test_cades_b_lta_archive_time_stamp_token_is_intact(void)
{
    qtsp_buf out;
    sign_cades(QTSP_ADES_B_LTA, 0, &out);
    CMS_ContentInfo *cms = parse_cms(out.data, out.len);
    CU_ASSERT(cms_ok(cms, DOC, sizeof DOC));
    int len = 0;
    unsigned char *ats = unsigned_attr(cms, "0.4.0.1733.2.4", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ats);
    /* the token's own signature still verifies with ats-hash-index-v3 added */
    CMS_ContentInfo *tok = parse_cms(ats, (size_t)len);
    CU_ASSERT(cms_ok(tok, NULL, 0));
    ASN1_OBJECT *o = OBJ_txt2obj("0.4.0.19122.1.5", 1);
    CU_ASSERT(CMS_unsigned_get_attr_by_OBJ(signer0(tok), o, -1) >= 0);
    ASN1_OBJECT_free(o);
    CMS_ContentInfo_free(tok);
    OPENSSL_free(ats);
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&out);
}

static void test_cades_refuses_revoked_signer_and_missing_services(void)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_append(&out, "keep", 4), QTSP_OK);
    qtsp_ades_signer rv = g_s;
    rv.cert = g_revoked;
    qtsp_cades_opts o = {QTSP_ADES_B_LT, 0, 1765000000, NULL};
    CU_ASSERT_EQUAL(qtsp_cades_sign(&g_sv, &rv, &o, DOC, sizeof DOC, &out), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(out.len, 4); /* nothing appended */
    qtsp_ades_services none = {0};
    o.level = QTSP_ADES_B_T;
    CU_ASSERT_EQUAL(qtsp_cades_sign(&none, &g_s, &o, DOC, sizeof DOC, &out), QTSP_ERR_UNSUPPORTED);
    o.level = QTSP_ADES_B_LT;
    qtsp_ades_services tsa_only = {.tsa = g_tsa};
    CU_ASSERT_EQUAL(qtsp_cades_sign(&tsa_only, &g_s, &o, DOC, sizeof DOC, &out),
                    QTSP_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(out.len, 4);
    o.level = (qtsp_ades_level)9;
    CU_ASSERT_EQUAL(qtsp_cades_sign(&g_sv, &g_s, &o, DOC, sizeof DOC, &out), QTSP_ERR_INVALID);
    qtsp_buf_cleanup(&out);
}

static void sign_pdf(const unsigned char *in, size_t n, qtsp_ades_level level, int cert,
                     qtsp_buf *out, qtsp_status want)
{
    qtsp_pades_opts o = {level, cert, 1765000000};
    qtsp_err_clear();
    qtsp_status rc = qtsp_pades_sign(&g_sv, &g_s, &o, in, n, out);
    if (rc != want)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, want);
}

/* The last /ByteRange of pdf, its two ranges concatenated into data, and
 * the CMS in its /Contents. */
static CMS_ContentInfo *last_signature(const qtsp_buf *pdf, qtsp_buf *data)
{
    const char *br = find_last(pdf, 0, "/ByteRange [");
    CU_ASSERT_PTR_NOT_NULL_FATAL(br);
    unsigned long a = 0, b = 0, c = 0, d = 0;
    CU_ASSERT_EQUAL_FATAL(sscanf(br, "/ByteRange [%lu %lu %lu %lu]", &a, &b, &c, &d), 4);
    CU_ASSERT_EQUAL(a, 0);
    CU_ASSERT_EQUAL(c + d, pdf->len); /* to the end of the file */
    CU_ASSERT_EQUAL(pdf->data[b], '<');
    CU_ASSERT_EQUAL(pdf->data[c - 1], '>');
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_append(data, pdf->data, b), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_append(data, pdf->data + c, d), QTSP_OK);
    size_t hex = c - b - 2;
    unsigned char *der = malloc(hex / 2);
    for (size_t i = 0; i < hex / 2; i++) {
        unsigned v = 0;
        NEED(sscanf((const char *)pdf->data + b + 1 + 2 * i, "%2x", &v) == 1);
        der[i] = (unsigned char)v;
    }
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)(hex / 2));
    free(der);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    return cms;
}

static void test_pades_b_b_is_an_incremental_update_with_exact_byte_range(void)
{
    qtsp_buf out, data;
    qtsp_buf_init(&out, 1 << 20);
    qtsp_buf_init(&data, 1 << 20);
    sign_pdf((const unsigned char *)g_pdf, g_pdf_len, QTSP_ADES_B_B, 0, &out, QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(memcmp(out.data, g_pdf, g_pdf_len), 0); /* the original, untouched */
    CU_ASSERT_PTR_NOT_NULL(find_last(&out, 0, "/SubFilter /ETSI.CAdES.detached"));
    char prev[32];
    snprintf(prev, sizeof prev, "/Prev %zu ", g_pdf_xref); /* continues the original xref */
    CU_ASSERT_PTR_NOT_NULL(find_last(&out, g_pdf_len, prev));
    CMS_ContentInfo *cms = last_signature(&out, &data);
    CU_ASSERT(cms_ok(cms, data.data, data.len));
    CU_ASSERT_EQUAL(signed_attr_count(cms, NID_pkcs9_signingTime), 0); /* EN 319 142-1 5.4.2 */
    CU_ASSERT_EQUAL(signed_attr_count(cms, NID_id_smime_aa_signingCertificateV2), 1);
    data.data[10] ^= 1;
    CU_ASSERT_FALSE(cms_ok(cms, data.data, data.len));
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&out);
    qtsp_buf_cleanup(&data);
}

static void test_pades_second_signature_keeps_the_first_revision(void)
{
    qtsp_buf one, two, data;
    qtsp_buf_init(&one, 1 << 20);
    qtsp_buf_init(&two, 1 << 20);
    qtsp_buf_init(&data, 1 << 20);
    sign_pdf((const unsigned char *)g_pdf, g_pdf_len, QTSP_ADES_B_T, 1, &one, QTSP_OK);
    sign_pdf(one.data, one.len, QTSP_ADES_B_LTA, 0, &two, QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(memcmp(two.data, one.data, one.len), 0);
    CU_ASSERT_PTR_NOT_NULL(find_last(&two, one.len, "/DSS"));
    CU_ASSERT_PTR_NOT_NULL(find_last(&two, one.len, "/ETSI.RFC3161"));
    /* the last revision is the document time-stamp: a token over everything before */
    CMS_ContentInfo *dts = last_signature(&two, &data);
    int tl = i2d_CMS_ContentInfo(dts, NULL);
    unsigned char *tok = NULL;
    CU_ASSERT_EQUAL(i2d_CMS_ContentInfo(dts, &tok), tl);
    CU_ASSERT(token_covers(tok, tl, data.data, data.len));
    OPENSSL_free(tok);
    CMS_ContentInfo_free(dts);
    /* a certified PDF cannot be certified again */
    qtsp_buf three;
    qtsp_buf_init(&three, 1 << 20);
    sign_pdf(one.data, one.len, QTSP_ADES_B_B, 1, &three, QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(three.len, 0);
    qtsp_buf_cleanup(&one);
    qtsp_buf_cleanup(&two);
    qtsp_buf_cleanup(&three);
    qtsp_buf_cleanup(&data);
}

static void test_pades_refuses_what_is_no_pdf(void)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    sign_pdf(DOC, sizeof DOC, QTSP_ADES_B_B, 0, &out, QTSP_ERR_INVALID);
    sign_pdf((const unsigned char *)g_pdf, g_pdf_len / 2, QTSP_ADES_B_B, 0, &out, QTSP_ERR_INVALID);
    char broken[2048];
    memcpy(broken, g_pdf, g_pdf_len);
    char *sx = strstr(broken, "startxref\n") + 10;
    *sx = '9'; /* startxref off the end */
    sign_pdf((const unsigned char *)broken, g_pdf_len, QTSP_ADES_B_B, 0, &out, QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(out.len, 0);
    qtsp_ades_services none = {0};
    qtsp_pades_opts o = {QTSP_ADES_B_T, 0, 0};
    CU_ASSERT_EQUAL(qtsp_pades_sign(&none, &g_s, &o, (const unsigned char *)g_pdf, g_pdf_len, &out),
                    QTSP_ERR_UNSUPPORTED);
    qtsp_buf_cleanup(&out);
}

/* ---- XAdES ---------------------------------------------------------------- */

static const char XML_DOC[] = "<?xml version=\"1.0\"?>\n<inv xmlns=\"urn:x\" xmlns:p=\"urn:p\">"
                              "<!-- c --><p:item n=\"1\">A &amp; B</p:item>\n</inv>\n";

static void sign_xades(qtsp_ades_level level, qtsp_xades_packaging pk, int incl,
                       const qtsp_xades_object *objs, size_t n, qtsp_buf *out)
{
    qtsp_xades_opts o = {level, pk, 1765000000, incl, 0};
    qtsp_buf_init(out, 1 << 22);
    qtsp_err_clear();
    qtsp_status rc = qtsp_xades_sign(&g_sv, &g_s, &o, objs, n, out);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
}

static xmlDocPtr parse_xml(const qtsp_buf *b)
{
    xmlDocPtr d = xmlReadMemory((const char *)b->data, (int)b->len, NULL, NULL, XML_PARSE_NONET);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

/* XPath (prefixes ds, xades, xades141) on d: the node set (caller frees). */
static xmlXPathObjectPtr xp(xmlDocPtr d, const char *expr)
{
    xmlXPathContextPtr c = xmlXPathNewContext(d);
    xmlXPathRegisterNs(c, BAD_CAST "ds", BAD_CAST QTSP_NS_DS);
    xmlXPathRegisterNs(c, BAD_CAST "xades", BAD_CAST QTSP_NS_XADES);
    xmlXPathRegisterNs(c, BAD_CAST "xades141", BAD_CAST QTSP_NS_XADES141);
    xmlXPathObjectPtr r = xmlXPathEvalExpression(BAD_CAST expr, c);
    xmlXPathFreeContext(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    return r;
}

/* The text of the first node of expr, base64-decoded into out (cap). */
static size_t b64_of(xmlDocPtr d, const char *expr, unsigned char *out, size_t cap)
{
    xmlXPathObjectPtr r = xp(d, expr);
    CU_ASSERT_FATAL(r->nodesetval && r->nodesetval->nodeNr >= 1);
    xmlChar *t = xmlNodeGetContent(r->nodesetval->nodeTab[0]);
    xmlXPathFreeObject(r);
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_base64_decode((const char *)t, strlen((const char *)t),
                                             QTSP_B64_STD | QTSP_B64_PADDING, out, cap, &n),
                          QTSP_OK);
    xmlFree(t);
    return n;
}

/* xmlC14NDocSaveTo over the node set (//. | //@* | //namespace::*)[pred]. */
static void c14n_set(xmlDocPtr d, const char *pred, int excl, qtsp_buf *out)
{
    char e[256];
    snprintf(e, sizeof e, "(//. | //@* | //namespace::*)[%s]", pred);
    xmlXPathObjectPtr r = xp(d, e);
    xmlOutputBufferPtr ob = xmlAllocOutputBuffer(NULL);
    CU_ASSERT_FATAL(xmlC14NDocSaveTo(d, r->nodesetval, excl ? XML_C14N_EXCLUSIVE_1_0 : XML_C14N_1_0,
                                     NULL, 0, ob) >= 0);
    CU_ASSERT_EQUAL(qtsp_buf_append(out, xmlOutputBufferGetContent(ob), xmlOutputBufferGetSize(ob)),
                    QTSP_OK);
    xmlOutputBufferClose(ob);
    xmlXPathFreeObject(r);
}

static void sha256(const void *p, size_t n, unsigned char h[32])
{
    CU_ASSERT_FATAL(EVP_Digest(p, n, h, NULL, EVP_sha256(), NULL) == 1);
}

/* Checks the signature: the SignedProperties reference, SignedInfo signed
 * by the signer's key as r || s; data reference 1's digest is want. */
static void check_xades_signature(xmlDocPtr d, int excl, const unsigned char want[32])
{
    unsigned char dv[64], h[32], raw[132];
    qtsp_buf c;
    qtsp_buf_init(&c, 1 << 20);
    CU_ASSERT_EQUAL(b64_of(d, "//ds:SignedInfo/ds:Reference[1]/ds:DigestValue", dv, sizeof dv), 32);
    CU_ASSERT_EQUAL(memcmp(dv, want, 32), 0);
    c14n_set(d, "ancestor-or-self::xades:SignedProperties", excl, &c);
    sha256(c.data, c.len, h);
    CU_ASSERT_EQUAL(b64_of(d,
                           "//ds:Reference[@Type='http://uri.etsi.org/01903#SignedProperties']"
                           "/ds:DigestValue",
                           dv, sizeof dv),
                    32);
    CU_ASSERT_EQUAL(memcmp(dv, h, 32), 0);
    qtsp_buf_reset(&c);
    c14n_set(d, "ancestor-or-self::ds:SignedInfo", excl, &c);
    CU_ASSERT_EQUAL_FATAL(b64_of(d, "//ds:SignatureValue", raw, sizeof raw), 64); /* P-256 r||s */
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    unsigned char *der = NULL;
    int dl = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    CU_ASSERT(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, g_signer_key) == 1 &&
              EVP_DigestVerify(m, der, (size_t)dl, c.data, c.len) == 1);
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    qtsp_buf_cleanup(&c);
}

/* The token in the time-stamp property at expr verifies over data. */
static int token_ok(xmlDocPtr d, const char *expr, const unsigned char *data, size_t n)
{
    static unsigned char tok[1 << 14];
    size_t tl = b64_of(d, expr, tok, sizeof tok);
    const unsigned char *p = tok;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)tl);
    TS_VERIFY_CTX *v = TS_VERIFY_CTX_new();
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, g_root);
    TS_VERIFY_CTX_set_flags(v, TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_DATA);
    TS_VERIFY_CTX_set_store(v, st);
    TS_VERIFY_CTX_set_data(v, BIO_new_mem_buf(data, (int)n));
    int ok = p7 && TS_RESP_verify_token(v, p7) == 1;
    TS_VERIFY_CTX_free(v);
    PKCS7_free(p7);
    return ok;
}

static int count(xmlDocPtr d, const char *expr)
{
    xmlXPathObjectPtr r = xp(d, expr);
    int n = r->nodesetval ? r->nodesetval->nodeNr : 0;
    xmlXPathFreeObject(r);
    return n;
}

static void test_xades_enveloped_b_b_verifies_from_the_parsed_output(void)
{
    for (int incl = 0; incl <= 1; incl++) {
        qtsp_xades_object ob = {(const unsigned char *)XML_DOC, strlen(XML_DOC), NULL, NULL};
        qtsp_buf out, c;
        sign_xades(QTSP_ADES_B_B, QTSP_XADES_ENVELOPED, incl, &ob, 1, &out);
        xmlDocPtr d = parse_xml(&out);
        /* the signature is the root's child */
        CU_ASSERT_EQUAL(count(d, "/*/ds:Signature"), 1);
        CU_ASSERT_EQUAL(count(d, "//ds:Reference[1]/ds:Transforms/ds:Transform"), 3);
        qtsp_buf_init(&c, 1 << 20);
        c14n_set(d, "not(ancestor-or-self::ds:Signature)", !incl, &c);
        CU_ASSERT_PTR_NULL(memmem(c.data, c.len, "<!--", 4)); /* no comments */
        unsigned char h[32];
        sha256(c.data, c.len, h);
        check_xades_signature(d, !incl, h);
        CU_ASSERT_EQUAL(count(d, "//xades:SigningTime[.='2025-12-06T05:46:40Z']"), 1);
        CU_ASSERT_EQUAL(count(d, "//xades:DataObjectFormat[xades:MimeType='text/xml']"), 1);
        CU_ASSERT_EQUAL(count(d, "//xades:UnsignedProperties"), 0);
        /* SigningCertificateV2: SHA-256 of the signer's certificate */
        unsigned char dv[64], ch[32];
        unsigned int hl = 0;
        X509_digest(g_signer, EVP_sha256(), ch, &hl);
        CU_ASSERT_EQUAL(b64_of(d, "//xades:CertDigest/ds:DigestValue", dv, sizeof dv), 32);
        CU_ASSERT_EQUAL(memcmp(dv, ch, 32), 0);
        xmlFreeDoc(d);
        qtsp_buf_cleanup(&c);
        qtsp_buf_cleanup(&out);
    }
}

static void test_xades_detached_b_lta_has_every_property_and_time_stamps(void)
{
    qtsp_xades_object ob[2] = {{DOC, sizeof DOC, "dir/a.bin", "application/x-a"},
                               {(const unsigned char *)"b", 1, "b.txt", NULL}};
    qtsp_buf out, c;
    sign_xades(QTSP_ADES_B_LTA, QTSP_XADES_DETACHED, 0, ob, 2, &out);
    xmlDocPtr d = parse_xml(&out);
    unsigned char h[32];
    sha256(DOC, sizeof DOC, h);
    check_xades_signature(d, 1, h);
    CU_ASSERT_EQUAL(count(d, "//ds:Reference[@URI='dir/a.bin'] | //ds:Reference[@URI='b.txt']"), 2);
    CU_ASSERT_EQUAL(count(d, "//xades:DataObjectFormat"), 2);
    CU_ASSERT_EQUAL(count(d, "//xades:MimeType[.='application/x-a']"), 1);
    /* B-T: over the canonical SignatureValue */
    qtsp_buf_init(&c, 1 << 20);
    c14n_set(d, "ancestor-or-self::ds:SignatureValue", 1, &c);
    CU_ASSERT(token_ok(d, "//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", c.data, c.len));
    CU_ASSERT_FALSE(
        token_ok(d, "//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", c.data, c.len - 1));
    /* B-LT: the TSA unit's and the responder's certificates, one OCSP answer */
    CU_ASSERT_EQUAL(count(d, "//xades:CertificateValues/xades:EncapsulatedX509Certificate"), 2);
    static unsigned char ocsp[1 << 14];
    size_t ol = b64_of(d, "//xades:OCSPValues/xades:EncapsulatedOCSPValue", ocsp, sizeof ocsp);
    const unsigned char *p = ocsp;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)ol);
    CU_ASSERT(r && OCSP_response_status(r) == OCSP_RESPONSE_STATUS_SUCCESSFUL && p == ocsp + ol);
    OCSP_RESPONSE_free(r);
    /* B-LTA: the references' outputs, then the signature's parts */
    qtsp_buf_reset(&c);
    CU_ASSERT_EQUAL(qtsp_buf_append(&c, DOC, sizeof DOC), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_buf_append(&c, "b", 1), QTSP_OK);
    const char *parts[] = {"xades:SignedProperties",   "ds:SignedInfo",
                           "ds:SignatureValue",        "ds:KeyInfo",
                           "xades:SignatureTimeStamp", "xades:CertificateValues",
                           "xades:RevocationValues"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char pred[96];
        snprintf(pred, sizeof pred, "ancestor-or-self::%s", parts[i]);
        c14n_set(d, pred, 1, &c);
    }
    CU_ASSERT(
        token_ok(d, "//xades141:ArchiveTimeStamp/xades:EncapsulatedTimeStamp", c.data, c.len));
    xmlFreeDoc(d);
    qtsp_buf_cleanup(&c);
    qtsp_buf_cleanup(&out);
}

static void test_xades_enveloping_holds_the_object_as_base64(void)
{
    qtsp_xades_object ob = {DOC, sizeof DOC, NULL, NULL};
    qtsp_buf out;
    sign_xades(QTSP_ADES_B_T, QTSP_XADES_ENVELOPING, 0, &ob, 1, &out);
    xmlDocPtr d = parse_xml(&out);
    unsigned char back[256], h[32];
    CU_ASSERT_EQUAL(b64_of(d, "//ds:Object[@Encoding]", back, sizeof back), sizeof DOC);
    CU_ASSERT_EQUAL(memcmp(back, DOC, sizeof DOC), 0);
    sha256(DOC, sizeof DOC, h);
    check_xades_signature(d, 1, h);
    CU_ASSERT_EQUAL(count(d, "//ds:Reference[starts-with(@URI,'#o-')]/ds:Transforms/ds:Transform"
                             "[@Algorithm='http://www.w3.org/2000/09/xmldsig#base64']"),
                    1);
    xmlFreeDoc(d);
    qtsp_buf_cleanup(&out);
}

static void test_xades_refuses_unsafe_xml_bad_names_and_revoked_signers(void)
{
    static const char *bad[] = {
        "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
        "<!DOCTYPE a SYSTEM \"http://127.0.0.1:9/a.dtd\"><a/>",
        "<a><b></a>",
        "just text",
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/>",
        "",
    };
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_append(&out, "keep", 4), QTSP_OK);
    qtsp_xades_opts o = {QTSP_ADES_B_B, QTSP_XADES_ENVELOPED, 1765000000, 0, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_xades_object ob = {(const unsigned char *)bad[i], strlen(bad[i]), NULL, NULL};
        CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &g_s, &o, &ob, 1, &out), QTSP_ERR_INVALID);
        /* the check signDoc runs first gives the same answer, without a key */
        CU_ASSERT_EQUAL(qtsp_xades_check_enveloped(ob.data, ob.len), QTSP_ERR_INVALID);
    }
    CU_ASSERT_EQUAL(qtsp_xades_check_enveloped((const unsigned char *)XML_DOC, strlen(XML_DOC)),
                    QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_xades_check_enveloped(NULL, 1), QTSP_ERR_INVALID);
    xmlDocPtr d = NULL;
    CU_ASSERT_EQUAL(qtsp_xml_parse((const unsigned char *)XML_DOC, strlen(XML_DOC), 10, &d),
                    QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(qtsp_xml_parse((const unsigned char *)XML_DOC, strlen(XML_DOC), 1 << 20, &d),
                    QTSP_OK);
    xmlFreeDoc(d);
    /* detached: names a verifier resolves the same way, each once */
    o.packaging = QTSP_XADES_DETACHED;
    const char *names[] = {"/etc/passwd", "../a", "a//b", "a b", "a?b", "", "./a", NULL};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        qtsp_xades_object ob = {DOC, sizeof DOC, names[i], NULL};
        CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &g_s, &o, &ob, 1, &out), QTSP_ERR_INVALID);
    }
    qtsp_xades_object two[2] = {{DOC, 1, "a", NULL}, {DOC, 2, "a", NULL}};
    CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &g_s, &o, two, 2, &out), QTSP_ERR_INVALID);
    two[0].mime = "text/<x>";
    two[1].uri = "b";
    CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &g_s, &o, two, 2, &out), QTSP_ERR_INVALID);
    o.packaging = QTSP_XADES_ENVELOPED; /* one document only */
    qtsp_xades_object two_xml[2] = {{(const unsigned char *)XML_DOC, strlen(XML_DOC), 0, 0},
                                    {(const unsigned char *)XML_DOC, strlen(XML_DOC), 0, 0}};
    CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &g_s, &o, two_xml, 2, &out), QTSP_ERR_INVALID);
    /* a revoked signer gets no B-LT; no TSA, no B-T */
    qtsp_ades_signer rv = g_s;
    rv.cert = g_revoked;
    o.level = QTSP_ADES_B_LT;
    CU_ASSERT_EQUAL(qtsp_xades_sign(&g_sv, &rv, &o, two_xml, 1, &out), QTSP_ERR_STATE);
    qtsp_ades_services none = {0};
    o.level = QTSP_ADES_B_T;
    CU_ASSERT_EQUAL(qtsp_xades_sign(&none, &g_s, &o, two_xml, 1, &out), QTSP_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(out.len, 4); /* nothing appended by any of these */
    qtsp_buf_cleanup(&out);
}

/* ---- ASiC ----------------------------------------------------------------- */

static zip_t *open_zip(const qtsp_buf *b)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(b->data, b->len, 0, &ze);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    if (!z)
        zip_source_free(src);
    CU_ASSERT_PTR_NOT_NULL_FATAL(z);
    return z;
}

static void zip_read(zip_t *z, const char *name, qtsp_buf *out)
{
    zip_stat_t st;
    CU_ASSERT_EQUAL_FATAL(zip_stat(z, name, 0, &st), 0);
    zip_file_t *f = zip_fopen(z, name, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_reserve(out, st.size), QTSP_OK);
    CU_ASSERT_EQUAL(zip_fread(f, out->data + out->len, st.size), (zip_int64_t)st.size);
    out->len += st.size;
    zip_fclose(f);
}

static void test_asic_s_cades_mimetype_first_stored_and_signature_verifies(void)
{
    qtsp_xades_object f = {DOC, sizeof DOC, "contract.bin", NULL};
    qtsp_asic_opts o = {QTSP_ASIC_S, QTSP_ASIC_CADES, QTSP_ADES_B_T, 1765000000};
    qtsp_buf out, sig;
    qtsp_buf_init(&out, 1 << 22);
    qtsp_buf_init(&sig, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_asic_sign(&g_sv, &g_s, &o, &f, 1, &out), QTSP_OK);
    /* EN 319 162-1 A.1: the local header of "mimetype" first, no extra field */
    CU_ASSERT_EQUAL(memcmp(out.data, "PK\x03\x04", 4), 0);
    CU_ASSERT_EQUAL(memcmp(out.data + 30, "mimetypeapplication/vnd.etsi.asic-s+zip", 39), 0);
    zip_t *z = open_zip(&out);
    CU_ASSERT_EQUAL(zip_get_num_entries(z, 0), 3);
    CU_ASSERT_STRING_EQUAL(zip_get_name(z, 0, 0), "mimetype");
    zip_stat_t st;
    CU_ASSERT_EQUAL(zip_stat_index(z, 0, 0, &st), 0);
    CU_ASSERT_EQUAL(st.comp_method, ZIP_CM_STORE);
    CU_ASSERT_STRING_EQUAL(zip_get_name(z, 1, 0), "contract.bin");
    CU_ASSERT_STRING_EQUAL(zip_get_name(z, 2, 0), "META-INF/signature.p7s");
    zip_read(z, "META-INF/signature.p7s", &sig);
    CMS_ContentInfo *cms = parse_cms(sig.data, sig.len);
    CU_ASSERT(cms_ok(cms, DOC, sizeof DOC));
    CMS_ContentInfo_free(cms);
    zip_close(z);
    qtsp_buf_cleanup(&sig);
    qtsp_buf_cleanup(&out);
}

static void test_asic_e_cades_signs_the_manifest_listing_each_file(void)
{
    qtsp_xades_object f[2] = {
        {DOC, sizeof DOC, "a.bin", NULL},
        {(const unsigned char *)XML_DOC, strlen(XML_DOC), "d/b.xml", "text/xml"}};
    qtsp_asic_opts o = {QTSP_ASIC_E, QTSP_ASIC_CADES, QTSP_ADES_B_B, 1765000000};
    qtsp_buf out, man, sig;
    qtsp_buf_init(&out, 1 << 22);
    qtsp_buf_init(&man, 1 << 20);
    qtsp_buf_init(&sig, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 2, &out), QTSP_OK);
    CU_ASSERT_EQUAL(memcmp(out.data + 30, "mimetypeapplication/vnd.etsi.asic-e+zip", 39), 0);
    zip_t *z = open_zip(&out);
    zip_read(z, "META-INF/ASiCManifest.xml", &man);
    zip_read(z, "META-INF/signature.p7s", &sig);
    CMS_ContentInfo *cms = parse_cms(sig.data, sig.len);
    CU_ASSERT(cms_ok(cms, man.data, man.len));
    CMS_ContentInfo_free(cms);
    xmlDocPtr d = parse_xml(&man);
    unsigned char h[32], dv[64];
    sha256(XML_DOC, strlen(XML_DOC), h);
    CU_ASSERT_EQUAL(b64_of(d, "//*[@URI='d/b.xml']/ds:DigestValue", dv, sizeof dv), 32);
    CU_ASSERT_EQUAL(memcmp(dv, h, 32), 0);
    CU_ASSERT_EQUAL(count(d, "//*[local-name()='SigReference'][@URI='META-INF/signature.p7s']"), 1);
    xmlFreeDoc(d);
    zip_close(z);
    qtsp_buf_cleanup(&man);
    qtsp_buf_cleanup(&sig);
    qtsp_buf_cleanup(&out);
}

static void test_asic_e_xades_signatures_xml_references_each_file(void)
{
    qtsp_xades_object f[2] = {{DOC, sizeof DOC, "a.bin", NULL}, {DOC, 3, "b.bin", NULL}};
    qtsp_asic_opts o = {QTSP_ASIC_E, QTSP_ASIC_XADES, QTSP_ADES_B_B, 1765000000};
    qtsp_buf out, sx;
    qtsp_buf_init(&out, 1 << 22);
    qtsp_buf_init(&sx, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 2, &out), QTSP_OK);
    zip_t *z = open_zip(&out);
    zip_read(z, "META-INF/signatures.xml", &sx);
    xmlDocPtr d = parse_xml(&sx);
    CU_ASSERT_STRING_EQUAL((const char *)xmlDocGetRootElement(d)->name, "XAdESSignatures");
    unsigned char h[32];
    sha256(DOC, sizeof DOC, h);
    check_xades_signature(d, 1, h);
    CU_ASSERT_EQUAL(count(d, "//ds:Reference[@URI='b.bin']"), 1);
    xmlFreeDoc(d);
    zip_close(z);
    qtsp_buf_cleanup(&sx);
    qtsp_buf_cleanup(&out);
}

static void test_asic_refuses_bad_names_and_counts(void)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 22);
    qtsp_asic_opts o = {QTSP_ASIC_S, QTSP_ASIC_CADES, QTSP_ADES_B_B, 1765000000};
    qtsp_xades_object f[2] = {{DOC, sizeof DOC, "a", NULL}, {DOC, 1, "b", NULL}};
    CU_ASSERT_EQUAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 2, &out), QTSP_ERR_INVALID);
    const char *names[] = {"mimetype", "META-INF/x", "../x", "/x", "a b"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        f[0].uri = names[i];
        CU_ASSERT_EQUAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 1, &out), QTSP_ERR_INVALID);
    }
    o.form = QTSP_ASIC_E;
    f[0].uri = f[1].uri = "same";
    CU_ASSERT_EQUAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 2, &out), QTSP_ERR_INVALID);
    f[0].uri = "x";
    o.sigfmt = 7;
    CU_ASSERT_EQUAL(qtsp_asic_sign(&g_sv, &g_s, &o, f, 2, &out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(out.len, 0);
    qtsp_buf_cleanup(&out);
}

int main(void)
{
    if (setup() != 0)
        return 1;
    static const qtest_case cases[] = {
        QTEST(test_ades_level_names_parse),
        QTEST(test_cades_b_b_detached_and_enveloping_verify),
        QTEST(test_cades_b_t_carries_a_time_stamp_over_the_signature),
        QTEST(test_cades_b_lt_carries_certificates_and_ocsp),
        QTEST(test_cades_b_lta_archive_time_stamp_token_is_intact),
        QTEST(test_cades_refuses_revoked_signer_and_missing_services),
        QTEST(test_pades_b_b_is_an_incremental_update_with_exact_byte_range),
        QTEST(test_pades_second_signature_keeps_the_first_revision),
        QTEST(test_pades_refuses_what_is_no_pdf),
        QTEST(test_xades_enveloped_b_b_verifies_from_the_parsed_output),
        QTEST(test_xades_detached_b_lta_has_every_property_and_time_stamps),
        QTEST(test_xades_enveloping_holds_the_object_as_base64),
        QTEST(test_xades_refuses_unsafe_xml_bad_names_and_revoked_signers),
        QTEST(test_asic_s_cades_mimetype_first_stored_and_signature_verifies),
        QTEST(test_asic_e_cades_signs_the_manifest_listing_each_file),
        QTEST(test_asic_e_xades_signatures_xml_references_each_file),
        QTEST(test_asic_refuses_bad_names_and_counts),
    };
    int rc = qtest_run("ades", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
