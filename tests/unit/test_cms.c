/* Unit tests for ca/cms: SignedData built in two phases with software EC and
 * RSA keys (ECDSA, PKCS#1 v1.5, PSS; SHA-256/384/512), parsed with
 * d2i_CMS_ContentInfo (consuming every byte) and checked by OpenSSL's
 * CMS_verify; then what must be refused. */
#define _GNU_SOURCE 1 /* memmem */
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/cms.h"
#include "core/buf.h"
#include "core/der.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_cert.h"

static EVP_PKEY *g_ca_key, *g_ec_key, *g_rsa_key;
static X509 *g_ca, *g_ec_cert, *g_rsa_cert;

static const unsigned char CONTENT[] = "the document to be signed, as bytes";
/* id-ct-TSTInfo, a content type other than id-data */
static const unsigned char OID_TSTINFO[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                            0x01, 0x09, 0x10, 0x01, 0x04};
/* Attribute { 1.3.6.1.4.1.99999.7, SET { UTF8String "x" } } */
static const unsigned char ATTR_PRIVATE[] = {0x30, 0x10, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01,
                                             0x86, 0x8d, 0x1f, 0x07, 0x31, 0x03, 0x0c, 0x01, 0x78};
/* Attribute { messageDigest, SET { OCTET STRING 00 } }: written by the builder only */
static const unsigned char ATTR_MD[] = {0x30, 0x10, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                        0x0d, 0x01, 0x09, 0x04, 0x31, 0x03, 0x04, 0x01, 0x00};

#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int setup(void)
{
    static const unsigned char s1[] = {1}, s2[] = {2}, s3[] = {3};
    time_t now = time(NULL);
    g_ca_key = EVP_EC_gen("P-384");
    g_ec_key = EVP_EC_gen("P-256");
    g_rsa_key = EVP_RSA_gen(2048);
    NEED(g_ca_key && g_ec_key && g_rsa_key);
    g_ca = qtest_mkcert(NULL, g_ca_key, g_ca_key, "CMS test CA", s1, 1, 1, now - 3600, now + 86400);
    g_ec_cert =
        qtest_mkcert(g_ca, g_ca_key, g_ec_key, "CMS EC signer", s2, 1, 0, now - 3600, now + 86400);
    g_rsa_cert = qtest_mkcert(g_ca, g_ca_key, g_rsa_key, "CMS RSA signer", s3, 1, 0, now - 3600,
                              now + 86400);
    NEED(g_ca && g_ec_cert && g_rsa_cert);
    return 0;
}

static void teardown(void)
{
    X509_free(g_ca);
    X509_free(g_ec_cert);
    X509_free(g_rsa_cert);
    EVP_PKEY_free(g_ca_key);
    EVP_PKEY_free(g_ec_key);
    EVP_PKEY_free(g_rsa_key);
}

/* What a test builds. */
typedef struct spec {
    const EVP_MD *md;
    qtsp_sig_scheme sig;
    int rsa;
    int detached;
    int with_certs;
    int with_chain;
    int scv2;
    int with_time;
    const unsigned char *ctype;
    size_t ctype_len;
    const qtsp_cms_bytes *extra;
    size_t n_extra;
    const qtsp_cms_bytes *unsig;
    size_t n_unsig;
} spec;

static qtsp_cms_signer *make_signer(const spec *sp)
{
    STACK_OF(X509) *chain = NULL;
    if (sp->with_chain) {
        chain = sk_X509_new_null();
        NEED(chain && sk_X509_push(chain, g_ca) > 0);
    }
    qtsp_cms_signer_opts o = {sp->rsa ? g_rsa_cert : g_ec_cert,
                              chain,
                              {sp->sig, sp->md, NULL, -1},
                              sp->ctype,
                              sp->ctype_len,
                              sp->scv2};
    qtsp_cms_signer *s = NULL;
    qtsp_status rc = qtsp_cms_signer_new(&o, &s);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    sk_X509_free(chain);
    return s;
}

/* Signs data with the spec's key the way a token would (hash, then sign). */
static int sign(const spec *sp, const qtsp_cms_signer *s, const unsigned char *data, size_t n,
                unsigned char *sig, size_t *siglen)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = c && EVP_DigestSignInit(c, &pc, qtsp_cms_signer_md(s), NULL,
                                     sp->rsa ? g_rsa_key : g_ec_key) == 1;
    if (ok && sp->sig == QTSP_SIG_RSA_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestSign(c, sig, siglen, data, n) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* Builds the ContentInfo of sp over CONTENT into out (both phases). */
static qtsp_status build(const spec *sp, qtsp_buf *out)
{
    qtsp_cms_signer *s = make_signer(sp);
    ENSURE(s != NULL, QTSP_ERR_INTERNAL, "no signer");
    unsigned char dg[64], attrs[2048], sig[1024];
    unsigned int dl = 0;
    NEED(EVP_Digest(CONTENT, sizeof CONTENT, dg, &dl, qtsp_cms_signer_md(s), NULL) == 1);
    CU_ASSERT_EQUAL(dl, qtsp_cms_signer_md_len(s));
    qtsp_cms_attrs a = {dg, dl, sp->with_time, INT64_C(1795553092), sp->extra, sp->n_extra};
    size_t alen = 0, siglen = sizeof sig;
    qtsp_status rc = qtsp_cms_signed_attrs(s, &a, attrs, sizeof attrs, &alen);
    if (rc == QTSP_OK) {
        CU_ASSERT_EQUAL(alen, qtsp_cms_signed_attrs_size(s, &a));
        NEED(sign(sp, s, attrs, alen, sig, &siglen));
        qtsp_cms_parts p = {
            attrs,          alen,           sig,       siglen,     sp->detached ? NULL : CONTENT,
            sizeof CONTENT, sp->with_certs, sp->unsig, sp->n_unsig};
        qtsp_der_w w;
        qtsp_der_w_init_buf(&w, out);
        rc = qtsp_cms_write(s, &p, &w);
        size_t n = 0;
        if (rc == QTSP_OK)
            rc = qtsp_der_w_finish(&w, &n);
        if (rc == QTSP_OK)
            CU_ASSERT_EQUAL(n, qtsp_cms_size(s, &p));
    }
    qtsp_cms_signer_free(s);
    return rc;
}

static CMS_ContentInfo *parse(const qtsp_buf *b)
{
    const unsigned char *p = b->data;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)b->len);
    CU_ASSERT_PTR_NOT_NULL(cms);
    CU_ASSERT(p == b->data + b->len); /* every byte consumed */
    return cms;
}

/* CMS_verify against the test CA; certs: extra certificates (untrusted). */
static int verify(CMS_ContentInfo *cms, const unsigned char *detached, size_t dlen,
                  STACK_OF(X509) * certs)
{
    X509_STORE *st = X509_STORE_new();
    NEED(st && X509_STORE_add_cert(st, g_ca) == 1);
    BIO *dc = detached ? BIO_new_mem_buf(detached, (int)dlen) : NULL;
    BIO *out = BIO_new(BIO_s_mem());
    int ok = CMS_verify(cms, certs, st, dc, out, CMS_BINARY) == 1;
    if (ok && !detached) { /* the encapsulated content came back */
        char *mem = NULL;
        long n = BIO_get_mem_data(out, &mem);
        ok = n == (long)sizeof CONTENT && memcmp(mem, CONTENT, sizeof CONTENT) == 0;
    }
    BIO_free(dc);
    BIO_free(out);
    X509_STORE_free(st);
    return ok;
}

static int build_verify(const spec *sp)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    qtsp_status rc = build(sp, &b);
    CU_ASSERT_EQUAL(rc, QTSP_OK);
    int ok = 0;
    if (rc == QTSP_OK) {
        CMS_ContentInfo *cms = parse(&b);
        ok = cms && verify(cms, sp->detached ? CONTENT : NULL, sizeof CONTENT, NULL);
        CMS_ContentInfo_free(cms);
    }
    qtsp_buf_cleanup(&b);
    return ok;
}

static void test_cms_ecdsa_sha256_signed_data_verifies_with_openssl(void)
{
    spec sp = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .with_certs = 1, .scv2 = 1};
    CU_ASSERT(build_verify(&sp));
}

static void test_cms_every_digest_and_signature_algorithm_verifies(void)
{
    static const qtsp_sig_scheme sigs[] = {QTSP_SIG_ECDSA, QTSP_SIG_RSA_PKCS1, QTSP_SIG_RSA_PSS};
    const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
    for (int md = 0; md < 3; md++)
        for (size_t i = 0; i < 3; i++) {
            spec sp = {.md = mds[md],
                       .sig = sigs[i],
                       .rsa = sigs[i] != QTSP_SIG_ECDSA,
                       .with_certs = 1,
                       .scv2 = 1,
                       .with_time = 1};
            int ok = build_verify(&sp);
            if (!ok)
                fprintf(stderr, "md %d sig %d does not verify\n", md, (int)sigs[i]);
            CU_ASSERT(ok);
        }
}

static void test_cms_detached_content_verifies_only_with_that_content(void)
{
    spec sp = {
        .md = EVP_sha384(), .sig = QTSP_SIG_RSA_PSS, .rsa = 1, .detached = 1, .with_certs = 1};
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&sp, &b) == QTSP_OK);
    CMS_ContentInfo *cms = parse(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    CU_ASSERT(CMS_is_detached(cms) == 1);
    CU_ASSERT(verify(cms, CONTENT, sizeof CONTENT, NULL));
    static const unsigned char other[] = "another document";
    CU_ASSERT(!verify(cms, other, sizeof other, NULL));
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);
}

static void test_cms_signed_attributes_content_type_time_and_caller_attribute(void)
{
    qtsp_cms_bytes extra = {ATTR_PRIVATE, sizeof ATTR_PRIVATE};
    spec sp = {.md = EVP_sha256(),
               .sig = QTSP_SIG_ECDSA,
               .with_certs = 1,
               .scv2 = 1,
               .with_time = 1,
               .ctype = OID_TSTINFO,
               .ctype_len = sizeof OID_TSTINFO,
               .extra = &extra,
               .n_extra = 1};
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&sp, &b) == QTSP_OK);
    CMS_ContentInfo *cms = parse(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    CU_ASSERT_EQUAL(OBJ_obj2nid(CMS_get0_eContentType(cms)), NID_id_smime_ct_TSTInfo);
    CU_ASSERT(verify(cms, NULL, 0, NULL));
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    CU_ASSERT_EQUAL_FATAL(sk_CMS_SignerInfo_num(sis), 1);
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
    CU_ASSERT_EQUAL(CMS_signed_get_attr_count(si), 5);
    CU_ASSERT(CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1) >= 0);
    CU_ASSERT(CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, -1) >= 0);
    CU_ASSERT(CMS_signed_get_attr_by_NID(si, NID_pkcs9_contentType, -1) >= 0);
    CU_ASSERT(CMS_signed_get_attr_by_NID(si, NID_pkcs9_messageDigest, -1) >= 0);
    CU_ASSERT_EQUAL(CMS_unsigned_get_attr_count(si), -1);
    /* SignedData version 3 (eContentType is not id-data): the bytes after
     * ContentInfo, OID, [0] and SignedData headers start 02 01 03 */
    const unsigned char v3[] = {0x02, 0x01, 0x03};
    CU_ASSERT(memmem(b.data, 40, v3, 3) != NULL);
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);

    /* id-data: version 1 */
    spec d = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA};
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&d, &b) == QTSP_OK);
    const unsigned char v1[] = {0x02, 0x01, 0x01, 0x31};
    CU_ASSERT(memmem(b.data, 40, v1, 4) != NULL);
    qtsp_buf_cleanup(&b);
}

/* X.690 11.6 order of the SET OF components. */
static void test_cms_signed_attributes_are_in_der_set_order(void)
{
    qtsp_cms_bytes extra = {ATTR_PRIVATE, sizeof ATTR_PRIVATE};
    spec sp = {.md = EVP_sha512(),
               .sig = QTSP_SIG_ECDSA,
               .scv2 = 1,
               .with_time = 1,
               .extra = &extra,
               .n_extra = 1};
    qtsp_cms_signer *s = make_signer(&sp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    unsigned char dg[64] = {0}, attrs[2048];
    qtsp_cms_attrs a = {dg, 64, 1, INT64_C(1795553092), &extra, 1};
    size_t len = 0;
    CU_ASSERT_FATAL(qtsp_cms_signed_attrs(s, &a, attrs, sizeof attrs, &len) == QTSP_OK);
    qtsp_der_r r = {attrs, len}, set, prev = {NULL, 0}, cur;
    CU_ASSERT_FATAL(qtsp_der_get(&r, QTSP_DER_SET, &set, NULL) == QTSP_OK);
    CU_ASSERT(qtsp_der_done(&r) == QTSP_OK);
    int n = 0, ordered = 1;
    while (set.n) {
        CU_ASSERT_FATAL(qtsp_der_get(&set, QTSP_DER_SEQUENCE, NULL, &cur) == QTSP_OK);
        if (prev.p) {
            size_t m = prev.n < cur.n ? prev.n : cur.n;
            int c = memcmp(prev.p, cur.p, m);
            if (c > 0 || (c == 0 && prev.n > cur.n))
                ordered = 0;
        }
        prev = cur;
        n++;
    }
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT(ordered);
    qtsp_cms_signer_free(s);
}

static void test_cms_certificates_optional_chain_after_signer(void)
{
    spec sp = {.md = EVP_sha256(), .sig = QTSP_SIG_RSA_PKCS1, .rsa = 1};
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&sp, &b) == QTSP_OK);
    CMS_ContentInfo *cms = parse(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    STACK_OF(X509) *got = CMS_get1_certs(cms);
    CU_ASSERT(got == NULL || sk_X509_num(got) == 0); /* none in the message */
    sk_X509_pop_free(got, X509_free);
    CU_ASSERT(!verify(cms, NULL, 0, NULL)); /* the signer is unknown */
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, g_rsa_cert);
    CU_ASSERT(verify(cms, NULL, 0, certs)); /* given from outside */
    sk_X509_free(certs);
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);

    spec ch = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .with_certs = 1, .with_chain = 1};
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&ch, &b) == QTSP_OK);
    cms = parse(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    got = CMS_get1_certs(cms);
    CU_ASSERT_EQUAL_FATAL(sk_X509_num(got), 2);
    CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(got, 0), g_ec_cert), 0);
    CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(got, 1), g_ca), 0);
    sk_X509_pop_free(got, X509_free);
    CU_ASSERT(verify(cms, NULL, 0, NULL));
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);
}

static void test_cms_unsigned_attribute_is_carried_and_not_signed(void)
{
    qtsp_cms_bytes ua = {ATTR_PRIVATE, sizeof ATTR_PRIVATE};
    spec sp = {
        .md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .with_certs = 1, .unsig = &ua, .n_unsig = 1};
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&sp, &b) == QTSP_OK);
    CMS_ContentInfo *cms = parse(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cms);
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    CU_ASSERT_EQUAL(CMS_unsigned_get_attr_count(si), 1);
    CU_ASSERT(verify(cms, NULL, 0, NULL));
    CMS_ContentInfo_free(cms);
    /* the unsigned attribute's bytes are outside the signature: change its value */
    unsigned char *x = memmem(b.data, b.len, ATTR_PRIVATE, sizeof ATTR_PRIVATE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    x[sizeof ATTR_PRIVATE - 1] = 'y';
    cms = parse(&b);
    CU_ASSERT(cms && verify(cms, NULL, 0, NULL));
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);
}

static void test_cms_tampered_content_or_signature_fails(void)
{
    spec sp = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .with_certs = 1, .scv2 = 1};
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    CU_ASSERT_FATAL(build(&sp, &b) == QTSP_OK);
    unsigned char *c = memmem(b.data, b.len, CONTENT, sizeof CONTENT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c[0] ^= 1;
    CMS_ContentInfo *cms = parse(&b);
    CU_ASSERT(cms && !verify(cms, NULL, 0, NULL));
    CMS_ContentInfo_free(cms);
    c[0] ^= 1;
    b.data[b.len - 3] ^= 0x40; /* inside the ECDSA signature */
    cms = parse(&b);
    CU_ASSERT(cms == NULL || !verify(cms, NULL, 0, NULL));
    CMS_ContentInfo_free(cms);
    qtsp_buf_cleanup(&b);
}

static void test_cms_signer_refuses_algorithm_not_fitting_key(void)
{
    qtsp_cms_signer *s = NULL;
    qtsp_cms_signer_opts o = {g_ec_cert, NULL, {QTSP_SIG_RSA_PKCS1, EVP_sha256(), NULL, -1},
                              NULL,      0,    0};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_UNSUPPORTED);
    o.alg.scheme = QTSP_SIG_RSA_PSS;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_UNSUPPORTED);
    o.cert = g_rsa_cert;
    o.alg.scheme = QTSP_SIG_ECDSA;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_UNSUPPORTED);
    o.alg.scheme = (qtsp_sig_scheme)7;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_INVALID);
    o.alg.scheme = QTSP_SIG_RSA_PKCS1;
    o.alg.md = EVP_sha224(); /* no digest CMS writes here */
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_UNSUPPORTED);
    o.alg.md = NULL;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_UNSUPPORTED);
    o.alg.md = EVP_sha256();
    o.cert = NULL;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_INVALID);
    static const unsigned char bad_oid[] = {0x2a, 0x86}; /* last subidentifier unfinished */
    o.cert = g_rsa_cert;
    o.ctype = bad_oid;
    o.ctype_len = sizeof bad_oid;
    CU_ASSERT_EQUAL(qtsp_cms_signer_new(&o, &s), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(s);
    qtsp_err_clear();
}

static void test_cms_signed_attrs_refuses_bad_input(void)
{
    spec sp = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .scv2 = 1};
    qtsp_cms_signer *s = make_signer(&sp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    unsigned char dg[64] = {0}, out[1024];
    size_t len = 0;
    qtsp_err_clear();
    qtsp_cms_attrs a = {dg, 48, 0, 0, NULL, 0}; /* SHA-384 length for a SHA-256 signer */
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs_size(s, &a), 0);
    a.digest_len = 32;
    qtsp_cms_bytes md = {ATTR_MD, sizeof ATTR_MD};
    a.extra = &md;
    a.n_extra = 1;
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_ERR_INVALID);
    unsigned char trailing[sizeof ATTR_PRIVATE + 1];
    memcpy(trailing, ATTR_PRIVATE, sizeof ATTR_PRIVATE);
    trailing[sizeof ATTR_PRIVATE] = 0;
    qtsp_cms_bytes tr = {trailing, sizeof trailing};
    a.extra = &tr;
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_ERR_INVALID);
    qtsp_cms_bytes many[QTSP_CMS_MAX_ATTRS + 1];
    for (size_t i = 0; i <= QTSP_CMS_MAX_ATTRS; i++)
        many[i] = (qtsp_cms_bytes){ATTR_PRIVATE, sizeof ATTR_PRIVATE};
    a.extra = many;
    a.n_extra = QTSP_CMS_MAX_ATTRS + 1;
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_ERR_INVALID);
    a.n_extra = 0;
    a.with_signing_time = 1;
    a.signing_time = INT64_C(-700000000); /* 1947: before signingTime's range */
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_ERR_INVALID);
    a.with_signing_time = 0;
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, 40, &len), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(len, 0); /* untouched */
    CU_ASSERT_EQUAL(qtsp_cms_signed_attrs(s, &a, out, sizeof out, &len), QTSP_OK);
    qtsp_err_clear();
    qtsp_cms_signer_free(s);
}

static void test_cms_write_refuses_bad_parts_and_reports_short_buffer(void)
{
    spec sp = {.md = EVP_sha256(), .sig = QTSP_SIG_ECDSA, .with_certs = 1};
    qtsp_cms_signer *s = make_signer(&sp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    unsigned char dg[32] = {0}, attrs[512], sig[16] = {1}, out[4096];
    size_t alen = 0;
    qtsp_cms_attrs a = {dg, 32, 0, 0, NULL, 0};
    CU_ASSERT_FATAL(qtsp_cms_signed_attrs(s, &a, attrs, sizeof attrs, &alen) == QTSP_OK);
    qtsp_der_w w;
    qtsp_err_clear();
    qtsp_cms_parts p = {attrs, alen, sig, sizeof sig, CONTENT, sizeof CONTENT, 1, NULL, 0};
    qtsp_cms_parts bad = p;
    bad.sig = NULL;
    qtsp_der_w_init(&w, out, sizeof out);
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &bad, &w), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(w.len, 0);
    CU_ASSERT_EQUAL(qtsp_cms_size(s, &bad), 0);
    bad = p;
    attrs[0] = QTSP_DER_SEQUENCE; /* not a SET */
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &bad, &w), QTSP_ERR_INVALID);
    attrs[0] = QTSP_DER_SET;
    bad.attrs_len = alen - 1; /* truncated */
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &bad, &w), QTSP_ERR_INVALID);
    bad = p;
    qtsp_cms_bytes md = {ATTR_MD, sizeof ATTR_MD};
    bad.unsigned_attrs = &md; /* messageDigest may only be signed */
    bad.n_unsigned = 1;
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &bad, &w), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(w.len, 0);
    /* a fixed buffer too small: the writer keeps the failure */
    qtsp_der_w_init(&w, out, qtsp_cms_size(s, &p) / 2);
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &p, &w), QTSP_OK);
    size_t n = 0;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &n), QTSP_ERR_TOO_BIG);
    qtsp_der_w_init(&w, out, sizeof out);
    CU_ASSERT_EQUAL(qtsp_cms_write(s, &p, &w), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, qtsp_cms_size(s, &p));
    qtsp_err_clear();
    qtsp_cms_signer_free(s);
}

int main(void)
{
    if (setup() != 0)
        return 2;
    static const qtest_case cases[] = {
        QTEST(test_cms_ecdsa_sha256_signed_data_verifies_with_openssl),
        QTEST(test_cms_every_digest_and_signature_algorithm_verifies),
        QTEST(test_cms_detached_content_verifies_only_with_that_content),
        QTEST(test_cms_signed_attributes_content_type_time_and_caller_attribute),
        QTEST(test_cms_signed_attributes_are_in_der_set_order),
        QTEST(test_cms_certificates_optional_chain_after_signer),
        QTEST(test_cms_unsigned_attribute_is_carried_and_not_signed),
        QTEST(test_cms_tampered_content_or_signature_fails),
        QTEST(test_cms_signer_refuses_algorithm_not_fitting_key),
        QTEST(test_cms_signed_attrs_refuses_bad_input),
        QTEST(test_cms_write_refuses_bad_parts_and_reports_short_buffer),
    };
    int rc = qtest_run("cms", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
