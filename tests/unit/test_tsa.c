/* Unit tests for tsa/: tokens checked by OpenSSL's own `openssl ts -verify`
 * and parsed with d2i_TS_RESP; every rejection with its exact failInfo bit;
 * the journal in a real LMDB store. */
#define _GNU_SOURCE 1 /* O_DIRECT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/asn1.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca/hsm.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/time.h"
#include "tests/lib/qtest.h"
#include "tsa/tsa.h"
#include "tsa/tsa_http.h"
#include "tsa/tsa_int.h"
#include "tsa/tsa_wal.h"

#define BASELINE "0.4.0.2023.1.1"

static char g_dir[512];
static EVP_PKEY *g_ca_key, *g_tsa_key;
static X509 *g_ca, *g_tsa_cert;

/* ---- fixtures ------------------------------------------------------------ */

/* Fixture failures outside a CUnit test: stop loudly. */
#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    NEED(ext != NULL);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial, int is_ca)
{
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"BG", -1, -1, 0);
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
        add_ext(c, iss, NID_basic_constraints, "CA:FALSE");
        add_ext(c, iss, NID_key_usage, "critical,digitalSignature,nonRepudiation");
        add_ext(c, iss, NID_ext_key_usage, "critical,timeStamping");
    }
    add_ext(c, iss, NID_subject_key_identifier, "hash");
    NEED(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return c;
}

static void write_pem(const char *name, X509 *c)
{
    char p[600];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    NEED(f != NULL);
    PEM_write_X509(f, c);
    fclose(f);
}

static void write_file(const char *name, const void *data, size_t n)
{
    char p[600];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    NEED(f != NULL);
    NEED(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static size_t read_file(const char *name, unsigned char *buf, size_t cap)
{
    char p[600];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int run(const char *fmt, ...) QTSP_PRINTF(1, 2);
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[2700];
    snprintf(full, sizeof full, "cd '%s' && %s >/dev/null 2>&1", g_dir, cmd);
    return system(full);
}

static void write_policy(const char *name, const char *extra)
{
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "version: 1\npolicy_oid: " BASELINE "\n"
                     "accepted_policies: [" BASELINE ", 1.3.6.1.4.1.99999.1.2]\n"
                     "accuracy: {seconds: 1}\n"
                     "hash_algorithms: [sha256, sha384, sha512, sha3-256, sha3-384, sha3-512]\n"
                     "%s",
                     extra);
    write_file(name, text, (size_t)n);
}

static qtsp_tsa *make_tsa(const char *policy_extra, qtsp_store *store)
{
    char p[600];
    write_policy("policy.yaml", policy_extra);
    path(p, sizeof p, "policy.yaml");
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, g_ca);
    qtsp_tsa *tsa = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_tsa_new(p, g_tsa_cert, chain, qtest_key(g_tsa_key), store, &tsa);
    if (rc != QTSP_OK)
        fprintf(stderr, "qtsp_tsa_new: %s\n", qtsp_err_message());
    sk_X509_free(chain);
    CU_ASSERT_FATAL(rc == QTSP_OK);
    return tsa;
}

static int setup(void)
{
    const char *d = qtest_tmpdir("tsa");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    g_ca_key = EVP_EC_gen("P-256");
    g_tsa_key = EVP_EC_gen("P-256");
    g_ca = make_cert("qtsp test root", g_ca_key, NULL, NULL, 1, 1);
    g_tsa_cert = make_cert("qtsp test TSU", g_tsa_key, g_ca, g_ca_key, 0x1234567, 0);
    write_pem("ca.pem", g_ca);
    write_pem("tsa.pem", g_tsa_cert);
    write_file("data.txt", "hello, time\n", 12);
    return 0;
}

static void teardown(void)
{
    X509_free(g_ca);
    X509_free(g_tsa_cert);
    EVP_PKEY_free(g_ca_key);
    EVP_PKEY_free(g_tsa_key);
    qtest_rmtree(g_dir);
}

/* Answers the query file qname, writes the reply to rname, returns it parsed. */
static TS_RESP *respond_file(qtsp_tsa *tsa, const char *qname, const char *rname)
{
    unsigned char q[8192];
    size_t qn = read_file(qname, q, sizeof q);
    CU_ASSERT_FATAL(qn > 0);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT_FATAL(qtsp_tsa_respond(tsa, q, qn, &out) == QTSP_OK);
    write_file(rname, out.data, out.len);
    const unsigned char *p = out.data;
    TS_RESP *resp = d2i_TS_RESP(NULL, &p, (long)out.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    CU_ASSERT_EQUAL(p, out.data + out.len); /* no trailing bytes */
    qtsp_buf_cleanup(&out);
    return resp;
}

static TS_RESP *respond_bytes(qtsp_tsa *tsa, const unsigned char *q, size_t qn)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT_FATAL(qtsp_tsa_respond(tsa, q, qn, &out) == QTSP_OK);
    const unsigned char *p = out.data;
    TS_RESP *resp = d2i_TS_RESP(NULL, &p, (long)out.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    CU_ASSERT_EQUAL(p, out.data + out.len);
    qtsp_buf_cleanup(&out);
    return resp;
}

/* Asserts status rejection with exactly the failInfo bit. */
static void assert_rejected(TS_RESP *resp, int bit)
{
    TS_STATUS_INFO *si = TS_RESP_get_status_info(resp);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si)), TS_STATUS_REJECTION);
    const ASN1_BIT_STRING *fi = TS_STATUS_INFO_get0_failure_info(si);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fi);
    for (int b = 0; b < 32; b++)
        CU_ASSERT_EQUAL(ASN1_BIT_STRING_get_bit(fi, b), b == bit);
    CU_ASSERT_PTR_NULL(TS_RESP_get_token(resp));
}

/* Answers the query bytes; asserts a rejection with failInfo bit alone. */
static void expect_rejection(qtsp_tsa *tsa, const unsigned char *q, size_t qn, int bit)
{
    TS_RESP *r = respond_bytes(tsa, q, qn);
    assert_rejected(r, bit);
    TS_RESP_free(r);
}

static int oid_is(const ASN1_OBJECT *o, const char *dotted)
{
    char buf[128];
    OBJ_obj2txt(buf, sizeof buf, o, 1);
    return strcmp(buf, dotted) == 0;
}

/* Every line of standards.md "Time-stamps" about the token itself. */
static void assert_token(TS_RESP *resp, TS_REQ *req, int cert_req, const char *policy)
{
    TS_STATUS_INFO *si = TS_RESP_get_status_info(resp);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si)), TS_STATUS_GRANTED);
    TS_TST_INFO *tst = TS_RESP_get_tst_info(resp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tst);
    CU_ASSERT_EQUAL(TS_TST_INFO_get_version(tst), 1);
    CU_ASSERT(oid_is(TS_TST_INFO_get_policy_id(tst), policy));
    const ASN1_INTEGER *serial = TS_TST_INFO_get_serial(tst);
    CU_ASSERT(serial->length <= 20 && serial->length >= 16); /* <= 160 bits */
    CU_ASSERT_EQUAL(serial->type, V_ASN1_INTEGER);           /* positive */
    const ASN1_GENERALIZEDTIME *gt = TS_TST_INFO_get_time(tst);
    CU_ASSERT(gt->length >= 15 && gt->data[gt->length - 1] == 'Z'); /* UTC */
    CU_ASSERT(ASN1_GENERALIZEDTIME_check(gt));
    TS_ACCURACY *acc = TS_TST_INFO_get_accuracy(tst);
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    long secs = TS_ACCURACY_get_seconds(acc) ? ASN1_INTEGER_get(TS_ACCURACY_get_seconds(acc)) : 0;
    long ms = TS_ACCURACY_get_millis(acc) ? ASN1_INTEGER_get(TS_ACCURACY_get_millis(acc)) : 0;
    long us = TS_ACCURACY_get_micros(acc) ? ASN1_INTEGER_get(TS_ACCURACY_get_micros(acc)) : 0;
    CU_ASSERT(secs * 1000000 + ms * 1000 + us <= 1000000 && secs * 1000000 + ms * 1000 + us > 0);
    CU_ASSERT_EQUAL(TS_TST_INFO_get_ordering(tst), 0);
    const ASN1_INTEGER *rn = TS_REQ_get_nonce(req), *tn = TS_TST_INFO_get_nonce(tst);
    if (rn) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(tn);
        CU_ASSERT_EQUAL(ASN1_INTEGER_cmp(rn, tn), 0);
    } else {
        CU_ASSERT_PTR_NULL(tn);
    }
    TS_MSG_IMPRINT *ri = TS_REQ_get_msg_imprint(req), *ti = TS_TST_INFO_get_msg_imprint(tst);
    CU_ASSERT_EQUAL(
        OBJ_cmp(TS_MSG_IMPRINT_get_algo(ri)->algorithm, TS_MSG_IMPRINT_get_algo(ti)->algorithm), 0);
    CU_ASSERT_EQUAL(ASN1_STRING_cmp(TS_MSG_IMPRINT_get_msg(ri), TS_MSG_IMPRINT_get_msg(ti)), 0);
    CU_ASSERT_PTR_NULL(TS_TST_INFO_get_tsa(tst)); /* TSA name: not put */

    /* qcStatements, non-critical, exactly esi4-qtstStatement-1 (EN 319 422 9.1). */
    CU_ASSERT_EQUAL(TS_TST_INFO_get_ext_count(tst), 1);
    X509_EXTENSION *ext = TS_TST_INFO_get_ext(tst, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ext);
    CU_ASSERT(oid_is(X509_EXTENSION_get_object(ext), "1.3.6.1.5.5.7.1.3"));
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
    static const unsigned char qcs[] = {0x30, 0x0b, 0x30, 0x09, 0x06, 0x07, 0x04,
                                        0x00, 0x81, 0x97, 0x5e, 0x01, 0x01};
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    CU_ASSERT_EQUAL(ASN1_STRING_length(v), (int)sizeof qcs);
    CU_ASSERT(ASN1_STRING_length(v) == (int)sizeof qcs &&
              memcmp(ASN1_STRING_get0_data(v), qcs, sizeof qcs) == 0);

    /* SignedData: certificates only with certReq; signingCertificateV2 with
     * the SHA-256 hash of the TSA certificate; ECDSA with SHA-256. */
    PKCS7 *p7 = TS_RESP_get_token(resp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p7);
    STACK_OF(X509) *certs = p7->d.sign->cert;
    if (cert_req) {
        CU_ASSERT_EQUAL(sk_X509_num(certs), 2);
        CU_ASSERT(certs && X509_cmp(sk_X509_value(certs, 0), g_tsa_cert) == 0);
    } else {
        CU_ASSERT(certs == NULL || sk_X509_num(certs) == 0);
    }
    STACK_OF(PKCS7_SIGNER_INFO) *sis = PKCS7_get_signer_info(p7);
    CU_ASSERT_EQUAL_FATAL(sk_PKCS7_SIGNER_INFO_num(sis), 1);
    PKCS7_SIGNER_INFO *si0 = sk_PKCS7_SIGNER_INFO_value(sis, 0);
    X509_ALGOR *dig, *sig;
    PKCS7_SIGNER_INFO_get0_algs(si0, NULL, &dig, &sig);
    CU_ASSERT(oid_is(dig->algorithm, "2.16.840.1.101.3.4.2.1"));
    CU_ASSERT(oid_is(sig->algorithm, "1.2.840.10045.4.3.2"));
    ASN1_TYPE *ct = PKCS7_get_signed_attribute(si0, NID_pkcs9_contentType);
    CU_ASSERT(ct && ct->type == V_ASN1_OBJECT &&
              oid_is(ct->value.object, "1.2.840.113549.1.9.16.1.4"));
    CU_ASSERT_PTR_NOT_NULL(PKCS7_get_signed_attribute(si0, NID_pkcs9_messageDigest));
    ASN1_TYPE *scv2 = PKCS7_get_signed_attribute(si0, NID_id_smime_aa_signingCertificateV2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(scv2);
    CU_ASSERT_EQUAL_FATAL(scv2->type, V_ASN1_SEQUENCE);
    const unsigned char *p = scv2->value.sequence->data;
    ESS_SIGNING_CERT_V2 *sc = d2i_ESS_SIGNING_CERT_V2(NULL, &p, scv2->value.sequence->length);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sc);
    /* Check the hash by hand: SHA-256 of the TSA certificate, hashAlgorithm
     * absent (DEFAULT sha256, RFC 5035). */
    unsigned char h[32];
    unsigned int hl = 0;
    X509_digest(g_tsa_cert, EVP_sha256(), h, &hl);
    unsigned char *der = NULL;
    int dl = i2d_ESS_SIGNING_CERT_V2(sc, &der);
    CU_ASSERT(dl > 40);
    int found = 0;
    for (int i = 0; i + 34 <= dl; i++)
        if (der[i] == 0x04 && der[i + 1] == 32 && memcmp(der + i + 2, h, 32) == 0)
            found = 1;
    CU_ASSERT(found);
    /* no AlgorithmIdentifier before certHash: ESSCertIDv2 starts with the OCTET STRING */
    CU_ASSERT(dl > 6 && der[0] == 0x30 && der[2] == 0x30 && der[4] == 0x30 && der[6] == 0x04);
    OPENSSL_free(der);
    ESS_SIGNING_CERT_V2_free(sc);
}

static TS_REQ *load_req(const char *qname)
{
    unsigned char q[8192];
    size_t qn = read_file(qname, q, sizeof q);
    const unsigned char *p = q;
    TS_REQ *req = d2i_TS_REQ(NULL, &p, (long)qn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(req);
    return req;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_tsa_tokens_verify_with_openssl_for_every_accepted_algorithm(void)
{
    static const char *const algs[] = {"sha256",   "sha384",   "sha512",
                                       "sha3-256", "sha3-384", "sha3-512"};
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        for (int cert_req = 0; cert_req <= 1; cert_req++) {
            for (int nonce = 0; nonce <= 1; nonce++) {
                char opts[64];
                snprintf(opts, sizeof opts, "-%s %s %s", algs[i], cert_req ? "-cert" : "",
                         nonce ? "" : "-no_nonce");
                CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt %s -out q.tsq", opts),
                                      0);
                TS_RESP *resp = respond_file(tsa, "q.tsq", "r.tsr");
                TS_REQ *req = load_req("q.tsq");
                assert_token(resp, req, cert_req, BASELINE);
                /* The verdict of a client nobody in the project wrote. */
                int v1 = run("openssl ts -verify -in r.tsr -data data.txt -CAfile ca.pem "
                             "-untrusted tsa.pem");
                int v2 = run("openssl ts -verify -in r.tsr -queryfile q.tsq -CAfile ca.pem "
                             "-untrusted tsa.pem");
                if (v1 != 0 || v2 != 0)
                    fprintf(stderr, "openssl ts -verify failed for %s\n", opts);
                CU_ASSERT_EQUAL(v1, 0);
                CU_ASSERT_EQUAL(v2, 0);
                if (cert_req) /* the token carries the TSA certificate itself */
                    CU_ASSERT_EQUAL(run("openssl ts -verify -in r.tsr -data data.txt "
                                        "-CAfile ca.pem"),
                                    0);
                TS_REQ_free(req);
                TS_RESP_free(resp);
            }
        }
    }
    qtsp_tsa_free(tsa);
}

static void test_tsa_openssl_rejects_token_for_other_data(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -cert -out q.tsq"), 0);
    TS_RESP_free(respond_file(tsa, "q.tsq", "r.tsr"));
    write_file("other.txt", "other\n", 6);
    CU_ASSERT_NOT_EQUAL(run("openssl ts -verify -in r.tsr -data other.txt -CAfile ca.pem"), 0);
    qtsp_tsa_free(tsa);
}

static void test_tsa_serials_are_unique_and_random(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -out q.tsq"), 0);
    TS_RESP *a = respond_file(tsa, "q.tsq", "a.tsr");
    TS_RESP *b = respond_file(tsa, "q.tsq", "b.tsr");
    const ASN1_INTEGER *sa = TS_TST_INFO_get_serial(TS_RESP_get_tst_info(a));
    const ASN1_INTEGER *sb = TS_TST_INFO_get_serial(TS_RESP_get_tst_info(b));
    CU_ASSERT_NOT_EQUAL(ASN1_INTEGER_cmp(sa, sb), 0);
    CU_ASSERT(sa->length == 16 && (sa->data[0] & 0x80)); /* 128-bit positive */
    /* the first 8 octets are genTime in ms (top bit set): serials grow */
    CU_ASSERT_FATAL(sb->length == 16);
    uint64_t ta = 0, tb = 0;
    for (int i = 0; i < 8; i++) {
        ta = ta << 8 | sa->data[i];
        tb = tb << 8 | sb->data[i];
    }
    ta &= ~(UINT64_C(1) << 63);
    tb &= ~(UINT64_C(1) << 63);
    CU_ASSERT(tb >= ta);
    ASN1_GENERALIZEDTIME *gt =
        (ASN1_GENERALIZEDTIME *)TS_TST_INFO_get_time(TS_RESP_get_tst_info(a));
    struct tm tm;
    CU_ASSERT_FATAL(ASN1_TIME_to_tm(gt, &tm) == 1);
    CU_ASSERT_EQUAL((int64_t)(ta / 1000), (int64_t)timegm(&tm)); /* same second as genTime */
    CU_ASSERT(memcmp(sa->data + 8, sb->data + 8, 8) != 0);       /* 64 random bits */
    TS_RESP_free(a);
    TS_RESP_free(b);
    qtsp_tsa_free(tsa);
}

static int64_t fixed_clock(void *ctx)
{
    return *(int64_t *)ctx;
}

static void test_tsa_gentime_comes_from_injected_clock_in_utc(void)
{
    int64_t t = INT64_C(1795553092120); /* 2026-11-24T20:44:52.12Z */
    qtsp_clock_set(fixed_clock, &t);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -out q.tsq"), 0);
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    const ASN1_GENERALIZEDTIME *gt = TS_TST_INFO_get_time(TS_RESP_get_tst_info(r));
    CU_ASSERT_EQUAL(gt->length, 18);
    CU_ASSERT(memcmp(gt->data, "20261124204452.12Z", 18) == 0);
    TS_RESP_free(r);
    t = INT64_C(1795553092000); /* whole second: no fraction at all (X.690 11.7) */
    r = respond_file(tsa, "q.tsq", "r.tsr");
    gt = TS_TST_INFO_get_time(TS_RESP_get_tst_info(r));
    CU_ASSERT(gt->length == 15 && memcmp(gt->data, "20261124204452Z", 15) == 0);
    TS_RESP_free(r);
    qtsp_clock_set(NULL, NULL);
    qtsp_tsa_free(tsa);
    char g[QTSP_TIME_GEN_MAX];
    CU_ASSERT_EQUAL(qtsp_time_gen(INT64_C(951782400001), g), 19); /* 2000-02-29 */
    CU_ASSERT(memcmp(g, "20000229000000.001Z", 19) == 0);
}

static void test_tsa_grants_accepted_req_policy(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -tspolicy "
                              "1.3.6.1.4.1.99999.1.2 -out q.tsq"),
                          0);
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    TS_REQ *req = load_req("q.tsq");
    assert_token(r, req, 0, "1.3.6.1.4.1.99999.1.2");
    CU_ASSERT_EQUAL(run("openssl ts -verify -in r.tsr -queryfile q.tsq -CAfile ca.pem "
                        "-untrusted tsa.pem"),
                    0);
    TS_REQ_free(req);
    TS_RESP_free(r);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_unaccepted_policy(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -tspolicy 1.2.3.4 "
                              "-out q.tsq"),
                          0);
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    assert_rejected(r, TS_INFO_UNACCEPTED_POLICY);
    TS_RESP_free(r);
    qtsp_tsa_free(tsa);
}

/* Builds a DER TimeStampReq by hand: hash OID content, digest length. */
static size_t build_query(unsigned char *out, const unsigned char *oid, size_t oid_len,
                          size_t digest_len, const char *tail, size_t tail_len, int version)
{
    unsigned char mi[256];
    size_t n = 0;
    mi[n++] = 0x30;
    mi[n++] = (unsigned char)(2 + oid_len + 2);
    mi[n++] = 0x06;
    mi[n++] = (unsigned char)oid_len;
    memcpy(mi + n, oid, oid_len);
    n += oid_len;
    mi[n++] = 0x05;
    mi[n++] = 0x00;
    mi[n++] = 0x04;
    mi[n++] = (unsigned char)digest_len;
    memset(mi + n, 0xab, digest_len);
    n += digest_len;
    unsigned char mseq[300];
    size_t m = 0;
    mseq[m++] = 0x30;
    mseq[m++] = (unsigned char)n;
    memcpy(mseq + m, mi, n);
    m += n;
    size_t body = 3 + m + tail_len;
    size_t o = 0;
    out[o++] = 0x30;
    if (body >= 0x80) {
        out[o++] = 0x81;
    }
    out[o++] = (unsigned char)body;
    out[o++] = 0x02;
    out[o++] = 0x01;
    out[o++] = (unsigned char)version;
    memcpy(out + o, mseq, m);
    o += m;
    memcpy(out + o, tail, tail_len);
    return o + tail_len;
}

static const unsigned char SHA256_OID[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};

static void test_tsa_rejects_md5_imprint(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -md5 -out q.tsq"), 0);
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    assert_rejected(r, TS_INFO_BAD_ALG);
    TS_RESP_free(r);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_sha1_imprint(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha1 -out q.tsq"), 0);
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    assert_rejected(r, TS_INFO_BAD_ALG);
    TS_RESP_free(r);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_unknown_hash_oid(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    static const unsigned char oid[] = {0x2a, 0x03, 0x04, 0x05}; /* 1.2.3.4.5 */
    unsigned char q[512];
    size_t n = build_query(q, oid, sizeof oid, 32, "", 0, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_ALG);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_algorithm_disabled_by_policy(void)
{
    char p[600];
    static const char p2[] = "version: 1\npolicy_oid: " BASELINE "\nhash_algorithms: [sha512]\n"
                             "clock: {require_sync: false}\n";
    write_file("p2.yaml", p2, sizeof p2 - 1);
    path(p, sizeof p, "p2.yaml");
    qtsp_tsa *tsa = NULL;
    CU_ASSERT_FATAL(qtsp_tsa_new(p, g_tsa_cert, NULL, qtest_key(g_tsa_key), NULL, &tsa) == QTSP_OK);
    unsigned char q[512];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "", 0, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_ALG);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_wrong_imprint_length(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    unsigned char q[512];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 31, "", 0, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_DATA_FORMAT);
    n = build_query(q, SHA256_OID, sizeof SHA256_OID, 48, "", 0, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_DATA_FORMAT);
    qtsp_tsa_free(tsa);
}

static void test_tsa_hand_built_query_is_granted(void)
{
    /* The builder itself is sound: a correct query passes (control case). */
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    unsigned char q[512];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "\x02\x01\x05\x01\x01\xff", 6, 1);
    TS_RESP *r = respond_bytes(tsa, q, n);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r))),
                    TS_STATUS_GRANTED);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_TST_INFO_get_nonce(TS_RESP_get_tst_info(r))), 5);
    TS_RESP_free(r);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_malformed_der_as_bad_data_format(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    unsigned char q[600];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "", 0, 1);
    /* garbage */
    expect_rejection(tsa, (const unsigned char *)"hello, this is not DER", 22,
                     TS_INFO_BAD_DATA_FORMAT);
    /* truncated */
    for (size_t cut = 0; cut < n; cut += 7)
        expect_rejection(tsa, q, cut, TS_INFO_BAD_DATA_FORMAT);
    /* trailing bytes */
    q[n] = 0x00;
    expect_rejection(tsa, q, n + 1, TS_INFO_BAD_DATA_FORMAT);
    /* non-minimal nonce INTEGER, empty body, too big */
    n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "\x02\x02\x00\x05", 4, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_DATA_FORMAT);
    expect_rejection(tsa, NULL, 0, TS_INFO_BAD_DATA_FORMAT);
    unsigned char *big = calloc(1, QTSP_TSA_MAX_QUERY + 1);
    expect_rejection(tsa, big, QTSP_TSA_MAX_QUERY + 1, TS_INFO_BAD_DATA_FORMAT);
    free(big);
    /* fields out of order: certReq before nonce */
    n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "\x01\x01\xff\x02\x01\x05", 6, 1);
    expect_rejection(tsa, q, n, TS_INFO_BAD_DATA_FORMAT);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_wrong_version_as_bad_request(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    unsigned char q[512];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "", 0, 2);
    expect_rejection(tsa, q, n, TS_INFO_BAD_REQUEST);
    qtsp_tsa_free(tsa);
}

static void test_tsa_rejects_request_extensions(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    /* [0] { Extension { 1.2.3.4, OCTET STRING {} } } */
    static const char ext[] = "\xa0\x09\x30\x07\x06\x03\x2a\x03\x04\x04\x00";
    unsigned char q[512];
    size_t n = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, ext, sizeof ext - 1, 1);
    expect_rejection(tsa, q, n, TS_INFO_UNACCEPTED_EXTENSION);
    qtsp_tsa_free(tsa);
}

static int g_synced;
static int fake_sync(void *ctx)
{
    return *(int *)ctx;
}

static void test_tsa_rejects_when_clock_unsynchronised_and_sync_required(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: true}\n", NULL);
    qtsp_tsa_set_sync_check(tsa, fake_sync, &g_synced);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -out q.tsq"), 0);
    g_synced = 0;
    TS_RESP *r = respond_file(tsa, "q.tsq", "r.tsr");
    /* RFC 3161 2.4.2: timeNotAvailable, "the TSA's time source is not available" */
    assert_rejected(r, TS_INFO_TIME_NOT_AVAILABLE);
    TS_RESP_free(r);
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT(qtsp_tsa_metrics(tsa, &m) == QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_tsa_clock_synchronised 0\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(qtsp_buf_str(&m), "qtsp_tsa_rejections_total{failinfo=\"timeNotAvailable\"} 1\n"));
    g_synced = 1;
    r = respond_file(tsa, "q.tsq", "r.tsr");
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r))),
                    TS_STATUS_GRANTED);
    TS_RESP_free(r);
    qtsp_buf_reset(&m);
    CU_ASSERT(qtsp_tsa_metrics(tsa, &m) == QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_tsa_clock_synchronised 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_tsa_tokens_issued_total 1\n"));
    qtsp_buf_cleanup(&m);
    qtsp_tsa_free(tsa);
}

static void test_tsa_http_handler_answers_200_timestamp_reply(void)
{
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    qtsp_http_req req;
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = "/tsa";
    req.body = (const unsigned char *)"junk";
    req.body_len = 4;
    qtsp_http_resp resp;
    memset(&resp, 0, sizeof resp);
    qtsp_buf_init(&resp.body, 1 << 20);
    CU_ASSERT(qtsp_tsa_http(tsa, &req, &resp) == QTSP_OK);
    CU_ASSERT_EQUAL(resp.status, 200);
    CU_ASSERT_STRING_EQUAL(resp.content_type, "application/timestamp-reply");
    const unsigned char *p = resp.body.data;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)resp.body.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    assert_rejected(r, TS_INFO_BAD_DATA_FORMAT);
    TS_RESP_free(r);
    qtsp_buf_cleanup(&resp.body);
    qtsp_tsa_free(tsa);
}

static qtsp_status count_journal(qtsp_store *st, uint64_t *n)
{
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(st, 0, &txn));
    qtsp_status rc = qtsp_txn_count(txn, QTSP_T_TSA_JOURNAL, n);
    qtsp_txn_abort(txn);
    return rc;
}

static void test_tsa_journal_records_every_issued_token(void)
{
    char sdir[600];
    path(sdir, sizeof sdir, "store");
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    int64_t t = INT64_C(1795553092120);
    qtsp_clock_set(fixed_clock, &t);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", st);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha384 -out q.tsq"), 0);
    TS_RESP *r1 = respond_file(tsa, "q.tsq", "r1.tsr");
    TS_RESP *r2 = respond_file(tsa, "q.tsq", "r2.tsr");
    /* rejections are not journalled */
    TS_RESP_free(respond_bytes(tsa, (const unsigned char *)"x", 1));
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);

    /* The entry proves what was issued: genTime, policy, hash OID, imprint. */
    TS_TST_INFO *tst = TS_RESP_get_tst_info(r1);
    const ASN1_INTEGER *serial = TS_TST_INFO_get_serial(tst);
    unsigned char key[17] = {0};
    memcpy(key + 17 - serial->length, serial->data, (size_t)serial->length);
    qtsp_txn *txn = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(st, 0, &txn) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 4096);
    CU_ASSERT_FATAL(qtsp_txn_get(txn, QTSP_T_TSA_JOURNAL, key, sizeof key, &v) == QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT_EQUAL(v.data[0], 1); /* format version */
    uint64_t ms = 0;
    for (int i = 0; i < 8; i++)
        ms = (ms << 8) | v.data[1 + i];
    CU_ASSERT_EQUAL(ms, (uint64_t)t);
    static const unsigned char baseline[] = {0x06, 0x06, 0x04, 0x00, 0x8f, 0x67, 0x01, 0x01};
    CU_ASSERT_EQUAL(v.data[9], sizeof baseline);
    CU_ASSERT(memcmp(v.data + 10, baseline, sizeof baseline) == 0);
    size_t o = 10 + sizeof baseline;
    CU_ASSERT_EQUAL(v.data[o], 9); /* sha384 OID content */
    CU_ASSERT_EQUAL(v.data[o + 9], 0x02);
    o += 10;
    CU_ASSERT_EQUAL(v.data[o], 48);
    const ASN1_OCTET_STRING *im = TS_MSG_IMPRINT_get_msg(TS_TST_INFO_get_msg_imprint(tst));
    CU_ASSERT(memcmp(v.data + o + 1, ASN1_STRING_get0_data(im), 48) == 0);
    CU_ASSERT_EQUAL(v.len, o + 1 + 48);
    qtsp_buf_cleanup(&v);
    TS_RESP_free(r1);
    TS_RESP_free(r2);
    qtsp_tsa_free(tsa);
    qtsp_clock_set(NULL, NULL);
    qtsp_store_close(st);
}

typedef struct stamper {
    qtsp_tsa *tsa;
    const unsigned char *q;
    size_t qn;
    int ok;
} stamper;

static void *stamp_many(void *arg)
{
    stamper *s = arg;
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    for (int i = 0; i < 50; i++)
        if (qtsp_tsa_respond(s->tsa, s->q, s->qn, &out) == QTSP_OK && out.len > 100)
            s->ok++;
    qtsp_buf_cleanup(&out);
    return NULL;
}

static void test_tsa_journal_group_commit_from_many_threads(void)
{
    char sdir[600];
    path(sdir, sizeof sdir, "store-mt");
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", st);
    unsigned char q[512];
    size_t qn = build_query(q, SHA256_OID, sizeof SHA256_OID, 32, "", 0, 1);
    pthread_t th[8];
    stamper s[8];
    for (int i = 0; i < 8; i++) {
        s[i] = (stamper){tsa, q, qn, 0};
        pthread_create(&th[i], NULL, stamp_many, &s[i]);
    }
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += s[i].ok;
    }
    CU_ASSERT_EQUAL(ok, 400);
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 400);
    /* one commit per batch: never more commits than tokens */
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT(qtsp_tsa_metrics(tsa, &m) == QTSP_OK);
    const char *c = strstr(qtsp_buf_str(&m), "\nqtsp_tsa_journal_commits_total ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    long commits = strtol(c + strlen("\nqtsp_tsa_journal_commits_total "), NULL, 10);
    CU_ASSERT(commits >= 1 && commits <= 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_tsa_tokens_issued_total 400\n"));
    qtsp_buf_cleanup(&m);
    qtsp_tsa_free(tsa);
    qtsp_store_close(st);
}

/* ---- through a real HTTP server (deferred answers) ------------------------- */

/* POSTs query to /tsa on fd (keep-alive) and reads the reply body into out
 * (cap bytes). Returns the body length, or -1. *status gets the HTTP status. */
static long http_stamp(int fd, const unsigned char *query, size_t qn, unsigned char *out,
                       size_t cap, int *status)
{
    /* the head and the body are two sends: without this each request
     * waited 40 ms for the server's delayed ACK (Nagle) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char head[256];
    int n =
        snprintf(head, sizeof head,
                 "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 qn);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
        send(fd, query, qn, MSG_NOSIGNAL) != (ssize_t)qn)
        return -1;
    char h[4096];
    size_t hl = 0;
    while (hl + 1 < sizeof h) {
        if (recv(fd, h + hl, 1, 0) != 1)
            return -1;
        hl++;
        if (hl >= 4 && memcmp(h + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    h[hl] = '\0';
    const char *cl = strstr(h, "Content-Length: ");
    if (sscanf(h, "HTTP/1.1 %d", status) != 1 || cl == NULL)
        return -1;
    size_t want = strtoul(cl + 16, NULL, 10), got = 0;
    if (want > cap)
        return -1;
    while (got < want) {
        ssize_t r = recv(fd, out + got, want - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return (long)got;
}

/* The journal key of a token: its serial as 17 content octets. */
static int token_key(const unsigned char *der, size_t n, unsigned char key[17])
{
    const unsigned char *p = der;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)n);
    TS_TST_INFO *tst = r ? TS_RESP_get_tst_info(r) : NULL;
    const ASN1_INTEGER *serial = tst ? TS_TST_INFO_get_serial(tst) : NULL;
    int ok = serial && serial->length >= 1 && serial->length <= 17;
    if (ok) {
        memset(key, 0, 17);
        memcpy(key + 17 - serial->length, serial->data, (size_t)serial->length);
    }
    TS_RESP_free(r);
    return ok;
}

static int journal_has(qtsp_store *st, const unsigned char key[17])
{
    qtsp_txn *txn = NULL;
    if (qtsp_store_begin(st, 0, &txn) != QTSP_OK)
        return 0;
    qtsp_buf v;
    qtsp_buf_init(&v, 4096);
    int ok = qtsp_txn_get(txn, QTSP_T_TSA_JOURNAL, key, 17, &v) == QTSP_OK;
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(txn);
    return ok;
}

#define HTTP_CLIENTS 8
#define HTTP_PER_CLIENT 12

typedef struct http_client {
    unsigned port;
    qtsp_store *st;
    const unsigned char *q;
    size_t qn;
    int idx;
    int granted;   /* 200 + parsable token */
    int journaled; /* its entry was in the store right after the reply */
    unsigned char der[HTTP_PER_CLIENT][8192];
    size_t der_len[HTTP_PER_CLIENT];
} http_client;

static void *http_client_main(void *arg)
{
    http_client *c = arg;
    int fd = qtest_connect(c->port, 20);
    for (int i = 0; fd >= 0 && i < HTTP_PER_CLIENT; i++) {
        int status = 0;
        long n = http_stamp(fd, c->q, c->qn, c->der[i], sizeof c->der[i], &status);
        if (n <= 0 || status != 200)
            break;
        c->der_len[i] = (size_t)n;
        unsigned char key[17];
        if (!token_key(c->der[i], (size_t)n, key))
            break;
        c->granted++;
        /* read right after the reply: the commit must already be visible */
        if (journal_has(c->st, key))
            c->journaled++;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static qtsp_http_server *tsa_server(qtsp_tsa *tsa)
{
    qtsp_route r = {"POST",        "/tsa", 0,    QTSP_TSA_MAX_QUERY, "application/timestamp-query",
                    qtsp_tsa_http, tsa,    "tsa"};
    qtsp_http_opts o = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 10};
    qtsp_http_server *srv = NULL;
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_http_start(&o, &r, 1, qtsp_tsa_metrics, tsa, &srv) == QTSP_OK);
    return srv;
}

static void test_tsa_http_tokens_verify_and_are_journalled_before_the_reply(void)
{
    char sdir[600];
    path(sdir, sizeof sdir, "store-http");
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", st);
    qtsp_http_server *srv = tsa_server(tsa);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -cert -out hq.tsq"), 0);
    unsigned char q[1024];
    size_t qn = read_file("hq.tsq", q, sizeof q);
    CU_ASSERT_FATAL(qn > 0);

    static http_client cl[HTTP_CLIENTS];
    pthread_t th[HTTP_CLIENTS];
    for (int i = 0; i < HTTP_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].port = qtsp_http_port(srv);
        cl[i].st = st;
        cl[i].q = q;
        cl[i].qn = qn;
        cl[i].idx = i;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, http_client_main, &cl[i]), 0);
    }
    int granted = 0, journaled = 0;
    for (int i = 0; i < HTTP_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        granted += cl[i].granted;
        journaled += cl[i].journaled;
    }
    CU_ASSERT_EQUAL(granted, HTTP_CLIENTS * HTTP_PER_CLIENT);
    CU_ASSERT_EQUAL(journaled, HTTP_CLIENTS * HTTP_PER_CLIENT);
    /* they went the deferred way (no worker thread waited for the disk) */
    int fd = qtest_connect(qtsp_http_port(srv), 20);
    CU_ASSERT_FATAL(fd >= 0);
    const char *get = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    CU_ASSERT(send(fd, get, strlen(get), MSG_NOSIGNAL) == (ssize_t)strlen(get));
    static char metrics[65536];
    size_t ml = 0;
    ssize_t got;
    while (ml + 1 < sizeof metrics &&
           (got = recv(fd, metrics + ml, sizeof metrics - 1 - ml, 0)) > 0)
        ml += (size_t)got;
    metrics[ml] = '\0';
    close(fd);
    char want_d[64];
    snprintf(want_d, sizeof want_d, "\nqtsp_http_deferred_total %d\n",
             HTTP_CLIENTS * HTTP_PER_CLIENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(metrics, want_d));
    qtsp_http_stop(srv);

    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, (uint64_t)(HTTP_CLIENTS * HTTP_PER_CLIENT));
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    CU_ASSERT(qtsp_tsa_metrics(tsa, &m) == QTSP_OK);
    char want[64];
    snprintf(want, sizeof want, "qtsp_tsa_tokens_issued_total %d\n",
             HTTP_CLIENTS * HTTP_PER_CLIENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), want));
    qtsp_buf_cleanup(&m);

    /* every token, as received over HTTP, passes openssl ts -verify */
    int verified = 0;
    for (int i = 0; i < HTTP_CLIENTS; i++)
        for (int j = 0; j < cl[i].granted; j++) {
            write_file("hr.tsr", cl[i].der[j], cl[i].der_len[j]);
            if (run("openssl ts -verify -in hr.tsr -queryfile hq.tsq -CAfile ca.pem") == 0)
                verified++;
        }
    CU_ASSERT_EQUAL(verified, HTTP_CLIENTS * HTTP_PER_CLIENT);
    qtsp_tsa_free(tsa);
    qtsp_store_close(st);
}

/* Every token gets the same serial (with the clock fixed too, as the serial
 * starts with genTime): the second journal entry collides. */
static qtsp_status same_bytes(void *ctx, unsigned char *buf, size_t n)
{
    memset(buf, 0x5a, n);
    return QTSP_OK;
}

static void test_tsa_http_journal_failure_answers_system_failure(void)
{
    char sdir[600];
    path(sdir, sizeof sdir, "store-http-fail");
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", st);
    qtsp_http_server *srv = tsa_server(tsa);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -out fq.tsq"), 0);
    unsigned char q[1024];
    size_t qn = read_file("fq.tsq", q, sizeof q);
    qtsp_rng_set(same_bytes, NULL);
    int64_t t = INT64_C(1795553092120);
    qtsp_clock_set(fixed_clock, &t);
    int fd = qtest_connect(qtsp_http_port(srv), 20);
    CU_ASSERT_FATAL(fd >= 0);
    static unsigned char der[8192];
    int status = 0;
    long n1 = http_stamp(fd, q, qn, der, sizeof der, &status);
    CU_ASSERT(n1 > 0 && status == 200);
    const unsigned char *p = der;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, n1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r))), 0);
    TS_RESP_free(r);
    /* same serial again: NOOVERWRITE fails the commit, no token leaves */
    long n2 = http_stamp(fd, q, qn, der, sizeof der, &status);
    CU_ASSERT(n2 > 0 && status == 200);
    p = der;
    r = d2i_TS_RESP(NULL, &p, n2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    assert_rejected(r, TS_INFO_SYSTEM_FAILURE);
    CU_ASSERT_PTR_NULL(TS_RESP_get_token(r));
    TS_RESP_free(r);
    close(fd);
    qtsp_rng_set(NULL, NULL);
    qtsp_clock_set(NULL, NULL);
    qtsp_http_stop(srv);
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    qtsp_tsa_free(tsa);
    qtsp_store_close(st);
}

/* The transport-free asynchronous path: what a non-HTTP caller sees. */
typedef struct done_rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waits, calls;
    int can_wait;
    qtsp_status rc;
    unsigned char *der;
    size_t len;
} done_rec;

static void *record_wait(void *ctx)
{
    done_rec *d = ctx;
    d->waits++;
    return d->can_wait ? d : NULL;
}

static void record_done(void *ctx, qtsp_status rc, unsigned char *der, size_t len)
{
    done_rec *d = ctx;
    pthread_mutex_lock(&d->mu);
    d->calls++;
    d->rc = rc;
    d->der = der;
    d->len = len;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* A TSA journalling into a new store named store_name, and a query (made by
 * openssl ts into query_file) read into q (1024 bytes) of *qn bytes. */
static qtsp_tsa *journalled_tsa(const char *store_name, const char *query_file, qtsp_store **st,
                                unsigned char *q, size_t *qn)
{
    char sdir[600];
    path(sdir, sizeof sdir, store_name);
    *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, st) == QTSP_OK);
    qtsp_tsa *tsa = make_tsa("clock: {require_sync: false}\n", *st);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -cert -out %s", query_file),
                          0);
    *qn = read_file(query_file, q, 1024);
    return tsa;
}

static void test_tsa_async_answer_completes_through_callback_after_commit(void)
{
    qtsp_store *st = NULL;
    unsigned char q[1024];
    size_t qn = 0;
    qtsp_tsa *tsa = journalled_tsa("store-job", "jq.tsq", &st, q, &qn);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    done_rec d = {.can_wait = 1};
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    qtsp_tsa_async async = {record_wait, record_done, &d};

    /* a rejection is answered at once: nothing waits */
    int pending = -1;
    CU_ASSERT(qtsp_tsa_respond_async(tsa, (const unsigned char *)"x", 1, &out, &async, &pending) ==
              QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(d.waits, 0);
    const unsigned char *p = out.data;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)out.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    assert_rejected(r, TS_INFO_BAD_DATA_FORMAT);
    TS_RESP_free(r);

    /* a token waits for its journal commit: completed through the callback */
    qtsp_buf_reset(&out);
    CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(pending, 1);
    CU_ASSERT_EQUAL(d.waits, 1);
    CU_ASSERT_EQUAL(out.len, 0); /* untouched */
    pthread_mutex_lock(&d.mu);
    while (d.calls == 0)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    CU_ASSERT_EQUAL(d.calls, 1);
    CU_ASSERT_EQUAL(d.rc, QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d.der);
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1); /* committed before the callback */
    write_file("jr.tsr", d.der, d.len);
    CU_ASSERT_EQUAL(run("openssl ts -verify -in jr.tsr -queryfile jq.tsq -CAfile ca.pem"), 0);
    free(d.der); /* the callee's */

    /* a caller that cannot wait: the call blocks and answers in out */
    d.can_wait = 0;
    CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(d.waits, 2);
    CU_ASSERT_EQUAL(d.calls, 1);
    write_file("jr.tsr", out.data, out.len);
    CU_ASSERT_EQUAL(run("openssl ts -verify -in jr.tsr -queryfile jq.tsq -CAfile ca.pem"), 0);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);
    qtsp_tsa_free(tsa);

    /* without a journal nothing waits: the token is in out at once */
    d.can_wait = 1;
    tsa = make_tsa("clock: {require_sync: false}\n", NULL);
    CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(d.waits, 2);
    write_file("jr.tsr", out.data, out.len);
    CU_ASSERT_EQUAL(run("openssl ts -verify -in jr.tsr -queryfile jq.tsq -CAfile ca.pem"), 0);
    qtsp_tsa_free(tsa);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    qtsp_buf_cleanup(&out);
    qtsp_store_close(st);
}

/* The transport's "every client waits" hint (qtsp_tsa_set_arrivals): asked
 * for started jobs, never after it is cleared; whatever it says, every
 * token is committed before its callback. */
static atomic_int g_hint_calls, g_hint_bad_ctx;
static int g_hint_answer;
/* Runs on the committer's thread too: counts only (CUnit asserts belong
 * to the test's thread). */
static int count_hint(void *ctx)
{
    if (ctx != &g_hint_answer)
        atomic_fetch_add(&g_hint_bad_ctx, 1);
    atomic_fetch_add(&g_hint_calls, 1);
    return *(int *)ctx;
}

static void stamp_async(qtsp_tsa *tsa, const unsigned char *q, size_t qn, done_rec *d)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    qtsp_tsa_async async = {record_wait, record_done, d};
    int pending = 0, calls = d->calls;
    CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(pending, 1);
    pthread_mutex_lock(&d->mu);
    while (d->calls == calls)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
    CU_ASSERT_EQUAL(d->rc, QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->der);
    write_file("hr.tsr", d->der, d->len);
    CU_ASSERT_EQUAL(run("openssl ts -verify -in hr.tsr -queryfile hq.tsq -CAfile ca.pem"), 0);
    free(d->der);
    d->der = NULL;
    qtsp_buf_cleanup(&out);
}

static void test_tsa_arrivals_hint_is_asked_and_can_be_cleared(void)
{
    qtsp_store *st = NULL;
    unsigned char q[1024];
    size_t qn = 0;
    qtsp_tsa *tsa = journalled_tsa("store-hint", "hq.tsq", &st, q, &qn);
    done_rec d = {.can_wait = 1};
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    uint64_t n = 0;

    atomic_store(&g_hint_calls, 0);
    atomic_store(&g_hint_bad_ctx, 0);
    /* asked when an entry is queued (journal_append, under the queue's lock)
     * and while the committer gathers */
    g_hint_answer = 1; /* every client waits: commit at once */
    qtsp_tsa_set_arrivals(tsa, count_hint, &g_hint_answer);
    stamp_async(tsa, q, qn, &d);
    CU_ASSERT(atomic_load(&g_hint_calls) >= 1);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);

    g_hint_answer = 0; /* clients may send more: the committer gathers, then commits */
    int before = atomic_load(&g_hint_calls);
    stamp_async(tsa, q, qn, &d);
    CU_ASSERT(atomic_load(&g_hint_calls) > before);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);

    qtsp_tsa_set_arrivals(tsa, NULL, NULL); /* from here the hint is never called */
    before = atomic_load(&g_hint_calls);
    stamp_async(tsa, q, qn, &d);
    stamp_async(tsa, q, qn, &d);
    CU_ASSERT_EQUAL(atomic_load(&g_hint_calls), before);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(d.calls, 4);
    CU_ASSERT_EQUAL(atomic_load(&g_hint_bad_ctx), 0);

    qtsp_tsa_free(tsa);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    qtsp_store_close(st);
}

/* Completions of held jobs: counted, each token checked and freed. */
typedef struct held_rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, bad;
} held_rec;

static void *held_wait(void *ctx)
{
    return ctx;
}

static void held_done(void *ctx, qtsp_status rc, unsigned char *der, size_t len)
{
    held_rec *h = ctx;
    const unsigned char *p = der;
    TS_RESP *r = rc == QTSP_OK && der ? d2i_TS_RESP(NULL, &p, (long)len) : NULL;
    pthread_mutex_lock(&h->mu);
    h->calls++;
    h->bad +=
        r == NULL || ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r))) != 0;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    TS_RESP_free(r);
    free(der);
}

/* Waits (10 s at most) until h has seen n completions; returns how many. */
static int held_wait_for(held_rec *h, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&h->mu);
    while (h->calls < n && pthread_cond_timedwait(&h->cv, &h->mu, &dl) == 0)
        ;
    int calls = h->calls;
    pthread_mutex_unlock(&h->mu);
    return calls;
}

static uint64_t journal_commits(qtsp_tsa *tsa)
{
    qtsp_buf m;
    qtsp_buf_init(&m, 1 << 16);
    unsigned long long n = 0;
    if (qtsp_tsa_metrics(tsa, &m) == QTSP_OK && qtsp_buf_append(&m, "", 1) == QTSP_OK) {
        const char *at = strstr((const char *)m.data, "\nqtsp_tsa_journal_commits_total ");
        if (!at || sscanf(at, "\nqtsp_tsa_journal_commits_total %llu", &n) != 1)
            n = UINT64_MAX;
    }
    qtsp_buf_cleanup(&m);
    return n;
}

/* qtsp_tsa_hold: the tokens a holder starts wait for its release, then go
 * into one commit without gathering; a thread that does not hold is
 * unaffected; 256 held entries wake the committer without a release. */
static void test_tsa_hold_commits_the_holders_round_at_release(void)
{
    qtsp_store *st = NULL;
    unsigned char q[1024];
    size_t qn = 0;
    qtsp_tsa *tsa = journalled_tsa("store-hold", "hold.tsq", &st, q, &qn);
    held_rec h = {.calls = 0};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    qtsp_tsa_async async = {held_wait, held_done, &h};
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    int pending = 0;
    uint64_t n = 0;

    qtsp_tsa_hold(tsa);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
        CU_ASSERT_EQUAL(pending, 1);
    }
    /* 25 times the longest gathering (2 ms): a woken committer would have
     * committed by now */
    usleep(50 * 1000);
    pthread_mutex_lock(&h.mu);
    CU_ASSERT_EQUAL(h.calls, 0);
    pthread_mutex_unlock(&h.mu);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(journal_commits(tsa), 0);
    qtsp_tsa_release(tsa);
    CU_ASSERT_EQUAL(held_wait_for(&h, 3), 3);
    CU_ASSERT_EQUAL(journal_commits(tsa), 1); /* the round in one commit */
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 3);
    qtsp_tsa_release(tsa); /* not held: nothing happens */

    /* without a hold, a started token is committed without anyone's release */
    CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(held_wait_for(&h, 4), 4);
    CU_ASSERT_EQUAL(journal_commits(tsa), 2);

    /* a holder that never releases: the 256th entry wakes the committer */
    qtsp_tsa_hold(tsa);
    for (int i = 0; i < 256; i++)
        CU_ASSERT_FATAL(qtsp_tsa_respond_async(tsa, q, qn, &out, &async, &pending) == QTSP_OK);
    CU_ASSERT_EQUAL(held_wait_for(&h, 4 + 256), 4 + 256);
    qtsp_tsa_release(tsa);
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 4 + 256);
    CU_ASSERT_EQUAL(h.bad, 0);

    qtsp_tsa_free(tsa);
    qtsp_buf_cleanup(&out);
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cv);
    qtsp_store_close(st);
}

static void test_tsa_policy_file_errors_name_the_line(void)
{
    char p[600];
    static const char bad[] = "version: 1\npolicy_oid: " BASELINE "\naccuracy: {seconds: 2}\n";
    write_file("bad.yaml", bad, sizeof bad - 1);
    path(p, sizeof p, "bad.yaml");
    qtsp_tsa *tsa = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_tsa_new(p, g_tsa_cert, NULL, qtest_key(g_tsa_key), NULL, &tsa),
                    QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "bad.yaml:3"));
    CU_ASSERT_PTR_NULL(tsa);
    static const char md5[] = "version: 1\npolicy_oid: " BASELINE "\nhash_algorithms: [md5]\n";
    write_file("bad.yaml", md5, sizeof md5 - 1);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_tsa_new(p, g_tsa_cert, NULL, qtest_key(g_tsa_key), NULL, &tsa),
                    QTSP_ERR_CONFIG);
    static const char unknown[] = "version: 1\npolicy_oid: " BASELINE "\nordering: true\n";
    write_file("bad.yaml", unknown, sizeof unknown - 1);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_tsa_new(p, g_tsa_cert, NULL, qtest_key(g_tsa_key), NULL, &tsa),
                    QTSP_ERR_CONFIG);
    qtsp_err_clear();
}

static void test_tsa_shipped_policy_loads_and_requires_sync(void)
{
    qtsp_tsa_policy pol;
    qtsp_err_clear();
    /* The source tree is found from this file's path (absolute under CMake). */
    char src[1024];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *cut = strstr(src, "tests/unit/test_tsa.c");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
    snprintf(cut, sizeof src - (size_t)(cut - src), "policies/tsa.yaml");
    qtsp_status rc = qtsp_tsa_policy_load(src, &pol);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    CU_ASSERT_EQUAL(pol.require_sync, 1);
    CU_ASSERT_EQUAL(pol.accuracy_ms, 1000);
    CU_ASSERT_EQUAL(pol.hash_mask, (1u << QTSP_TSA_H__COUNT) - 1);
    static const unsigned char baseline[] = {0x06, 0x06, 0x04, 0x00, 0x8f, 0x67, 0x01, 0x01};
    CU_ASSERT(pol.oid_len == sizeof baseline && memcmp(pol.oid, baseline, sizeof baseline) == 0);
}

static void test_tsa_refuses_key_not_matching_certificate(void)
{
    qtsp_tsa_policy pol;
    qtsp_tsa_policy_defaults(&pol);
    qtsp_tsa *tsa = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_tsa_new_policy(&pol, g_tsa_cert, NULL, qtest_key(g_ca_key), NULL, &tsa),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(tsa);
    qtsp_err_clear();
}

static void test_tsa_signs_with_key_in_softhsm_token(void)
{
    char d[600];
    path(d, sizeof d, "token");
    qtsp_hsm *hsm = NULL;
    EVP_PKEY *pub = NULL;
    qtsp_key *priv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtest_token_key(d, "tsa-test", "qtsp-tsa", &hsm, &pub, &priv), 0);
    X509 *c = make_cert("qtsp HSM TSU", pub, g_ca, g_ca_key, 0x77, 0);
    write_pem("tsa-hsm.pem", c);
    qtsp_tsa_policy pol;
    qtsp_tsa_policy_defaults(&pol);
    pol.require_sync = 0;
    qtsp_tsa *tsa = NULL;
    qtsp_status rc = qtsp_tsa_new_policy(&pol, c, NULL, priv, NULL, &tsa);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_FATAL(rc == QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha512 -cert -out q.tsq"), 0);
    TS_RESP_free(respond_file(tsa, "q.tsq", "r.tsr"));
    CU_ASSERT_EQUAL(run("openssl ts -verify -in r.tsr -queryfile q.tsq -CAfile ca.pem "
                        "-untrusted tsa-hsm.pem"),
                    0);
    CU_ASSERT_EQUAL(run("openssl ts -verify -in r.tsr -data data.txt -CAfile ca.pem"), 0);
    qtsp_tsa_free(tsa);
    X509_free(c);
    qtsp_key_free(priv);
    EVP_PKEY_free(pub);
    qtsp_hsm_free(hsm);
}

/* Counts journal values by their first octet (01 issued, 02 not issued). */
static qtsp_status count_by_state(void *ctx, const void *key, size_t klen, const void *val,
                                  size_t vlen, int *stop)
{
    (void)key;
    (void)klen;
    (void)stop;
    int *n = ctx;
    if (vlen > 0 && ((const unsigned char *)val)[0] <= 2)
        n[((const unsigned char *)val)[0]]++;
    return QTSP_OK;
}

/* Over HTTP with a signing queue: the token is signed on the queue while its
 * journal entry commits; both must succeed before it leaves. A signature
 * that fails after the entry committed answers systemFailure and marks the
 * entry not issued. */
static void test_tsa_signing_queue_tokens_verify_and_failed_ones_are_voided(void)
{
    char d[600], sdir[600];
    path(d, sizeof d, "token-q");
    path(sdir, sizeof sdir, "store-q");
    qtsp_hsm *hsm = NULL;
    EVP_PKEY *pub = NULL;
    qtsp_key *priv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtest_token_key(d, "tsa-q", "q-tsa", &hsm, &pub, &priv), 0);
    X509 *c = make_cert("qtsp queued TSU", pub, g_ca, g_ca_key, 0x78, 0);
    write_pem("tsa-q.pem", c);
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    qtsp_tsa_policy pol;
    qtsp_tsa_policy_defaults(&pol);
    pol.require_sync = 0;
    qtsp_tsa *tsa = NULL;
    CU_ASSERT_FATAL(qtsp_tsa_new_policy(&pol, c, NULL, priv, st, &tsa) == QTSP_OK);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    qtsp_tsa_set_signq(tsa, q);
    qtsp_http_server *srv = tsa_server(tsa);
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha384 -cert -out qq.tsq"), 0);
    unsigned char qb[1024];
    size_t qn = read_file("qq.tsq", qb, sizeof qb);
    int fd = qtest_connect(qtsp_http_port(srv), 20);
    CU_ASSERT_FATAL(fd >= 0);
    static unsigned char der[8192];
    int status = 0, verified = 0;
    for (int i = 0; i < 5; i++) {
        long n = http_stamp(fd, qb, qn, der, sizeof der, &status);
        char rp[600];
        path(rp, sizeof rp, "qq.tsr");
        FILE *f = fopen(rp, "wb");
        if (f) {
            fwrite(der, 1, n > 0 ? (size_t)n : 0, f);
            fclose(f);
        }
        verified += n > 0 && status == 200 &&
                    run("openssl ts -verify -in qq.tsr -queryfile qq.tsq -CAfile ca.pem "
                        "-untrusted tsa-q.pem") == 0;
    }
    CU_ASSERT_EQUAL(verified, 5);
    /* the key goes away: signatures fail from now on */
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "q-tsa"), QTSP_OK);
    long n = http_stamp(fd, qb, qn, der, sizeof der, &status);
    CU_ASSERT(n > 0 && status == 200);
    const unsigned char *p = der;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    assert_rejected(r, TS_INFO_SYSTEM_FAILURE);
    CU_ASSERT_PTR_NULL(TS_RESP_get_token(r));
    TS_RESP_free(r);
    close(fd);
    qtsp_http_stop(srv);
    int states[3] = {0, 0, 0};
    qtsp_txn *txn = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(st, 0, &txn) == QTSP_OK);
    CU_ASSERT(qtsp_txn_iter(txn, QTSP_T_TSA_JOURNAL, NULL, 0, count_by_state, states) == QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT_EQUAL(states[1], 5); /* issued */
    CU_ASSERT_EQUAL(states[2], 1); /* journalled, then not issued */
    qtsp_signq_free(q);
    qtsp_tsa_free(tsa);
    qtsp_store_close(st);
    X509_free(c);
    qtsp_key_free(priv);
    EVP_PKEY_free(pub);
    qtsp_hsm_free(hsm);
}

/* ---- the journal's write-ahead file (tsa_wal.h) ------------------------------ */

#define WAL_NEVER 3600000u /* fill_ms: the filler never fills during a test */

static qtsp_store *open_store(const char *name)
{
    char sdir[600];
    path(sdir, sizeof sdir, name);
    qtsp_store *st = NULL;
    CU_ASSERT_FATAL(qtsp_store_open(sdir, 16, &st) == QTSP_OK);
    return st;
}

static qtsp_tsa_wal *open_wal(const char *name, size_t bytes, qtsp_store *st)
{
    char wp[600];
    path(wp, sizeof wp, name);
    qtsp_tsa_wal *w = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_tsa_wal_open(wp, bytes, WAL_NEVER, st, &w);
    if (rc != QTSP_OK)
        fprintf(stderr, "qtsp_tsa_wal_open: %s\n", qtsp_err_message());
    CU_ASSERT_FATAL(rc == QTSP_OK);
    return w;
}

static qtsp_tsa *wal_tsa(qtsp_tsa_wal *w)
{
    qtsp_tsa_policy pol;
    qtsp_tsa_policy_defaults(&pol);
    pol.require_sync = 0;
    qtsp_tsa_journal j = qtsp_tsa_wal_journal(w);
    qtsp_tsa *tsa = NULL;
    CU_ASSERT_FATAL(qtsp_tsa_new_journal(&pol, g_tsa_cert, NULL, qtest_key(g_tsa_key), &j, &tsa) ==
                    QTSP_OK);
    return tsa;
}

/* Stamps `data.txt` (SHA-256) n times; keys[i] = token i's journal key,
 * each reply also checked by `openssl ts -verify`. Returns how many
 * verified. */
static int wal_stamp(qtsp_tsa *tsa, int n, unsigned char (*keys)[17])
{
    unsigned char q[1024];
    if (run("openssl ts -query -data data.txt -sha256 -cert -out wq.tsq") != 0)
        return 0;
    size_t qn = read_file("wq.tsq", q, sizeof q);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (qtsp_tsa_respond(tsa, q, qn, &out) != QTSP_OK || !token_key(out.data, out.len, keys[i]))
            continue;
        if (i < 3) { /* openssl is slow: the first three */
            write_file("wr.tsr", out.data, out.len);
            if (run("openssl ts -verify -in wr.tsr -queryfile wq.tsq -CAfile ca.pem "
                    "-untrusted tsa.pem") != 0)
                continue;
        }
        ok++;
    }
    qtsp_buf_cleanup(&out);
    return ok;
}

static int journal_count_of(qtsp_store *st, unsigned char (*keys)[17], int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += journal_has(st, keys[i]);
    return c;
}

static int journal_state(qtsp_store *st, const unsigned char key[17])
{
    qtsp_txn *txn = NULL;
    if (qtsp_store_begin(st, 0, &txn) != QTSP_OK)
        return -1;
    qtsp_buf v;
    qtsp_buf_init(&v, 4096);
    int s = qtsp_txn_get(txn, QTSP_T_TSA_JOURNAL, key, 17, &v) == QTSP_OK && v.len ? v.data[0] : -1;
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(txn);
    return s;
}

static void test_tsa_wal_answers_once_in_the_file_and_fills_the_store_behind(void)
{
    qtsp_store *st = open_store("store-wal");
    qtsp_tsa_wal *w = open_wal("wal-a", QTSP_TSA_WAL_BYTES, st);
    qtsp_tsa *tsa = wal_tsa(w);
    unsigned char keys[5][17];
    CU_ASSERT_EQUAL_FATAL(wal_stamp(tsa, 3, keys), 3);
    /* answered: durable in the file, not yet in the store */
    CU_ASSERT_EQUAL(qtsp_tsa_wal_pending(w), 3);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 3), 0);
    qtsp_buf m;
    qtsp_buf_init(&m, 4096);
    CU_ASSERT(qtsp_tsa_wal_metrics(w, &m) == QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_tsa_journal_unfilled 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "\nqtsp_tsa_journal_fill_failing 0\n"));
    qtsp_buf_cleanup(&m);
    CU_ASSERT_EQUAL(qtsp_tsa_wal_flush(w), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_tsa_wal_pending(w), 0);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 3), 3);
    CU_ASSERT_EQUAL_FATAL(wal_stamp(tsa, 2, keys + 3), 2);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 5), 3);
    /* closing puts the rest in, and marks the file as read (its first
     * record loses its magic) */
    qtsp_tsa_free(tsa);
    qtsp_tsa_wal_close(w);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 5), 5);
    unsigned char head[4] = {1, 1, 1, 1};
    CU_ASSERT_EQUAL(read_file("wal-a", head, sizeof head), sizeof head);
    CU_ASSERT(memcmp(head, "\0\0\0\0", 4) == 0);
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 5);
    /* a serial drawn twice with other facts: the journal keeps the first
     * and the filler says so (stderr caught in a file) */
    w = open_wal("wal-a", QTSP_TSA_WAL_BYTES, st);
    qtsp_tsa_journal j = qtsp_tsa_wal_journal(w);
    unsigned char other[] = {1, 'o', 't', 'h', 'e', 'r'};
    qtsp_tsa_record rec = {keys[0], 17, other, sizeof other};
    char lp[600];
    path(lp, sizeof lp, "wal-log.txt");
    fflush(stderr);
    int saved = dup(STDERR_FILENO), lf = open(lp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(saved >= 0 && lf >= 0 && dup2(lf, STDERR_FILENO) >= 0);
    CU_ASSERT_EQUAL(j.put(j.ctx, &rec, 1, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_tsa_wal_flush(w), QTSP_OK);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(lf);
    CU_ASSERT_EQUAL(run("grep -q 'two time-stamp tokens share one serial' wal-log.txt"), 0);
    CU_ASSERT_EQUAL(journal_state(st, keys[0]), 1);
    qtsp_buf v;
    qtsp_buf_init(&v, 4096);
    qtsp_txn *txn = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(st, 0, &txn) == QTSP_OK);
    CU_ASSERT(qtsp_txn_get(txn, QTSP_T_TSA_JOURNAL, keys[0], 17, &v) == QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT(v.len != sizeof other || memcmp(v.data, other, sizeof other) != 0);
    qtsp_buf_cleanup(&v);
    qtsp_tsa_wal_close(w);
    /* one process holds a file: a second open is refused while it is open */
    w = open_wal("wal-a", QTSP_TSA_WAL_BYTES, st);
    char wp[600];
    path(wp, sizeof wp, "wal-a");
    qtsp_tsa_wal *w2 = NULL;
    CU_ASSERT_EQUAL(qtsp_tsa_wal_open(wp, QTSP_TSA_WAL_BYTES, WAL_NEVER, st, &w2), QTSP_ERR_STATE);
    CU_ASSERT_PTR_NULL(w2);
    qtsp_err_clear();
    qtsp_tsa_wal_close(w);
    qtsp_store_close(st);
}

/* A process that stamps n tokens and one "not issued" mark through the
 * file, then dies without closing it (the store never sees them). */
static void crashing_stamper(const char *store, const char *wal, int n)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        qtsp_store *st = NULL;
        char sdir[600], wp[600];
        path(sdir, sizeof sdir, store);
        path(wp, sizeof wp, wal);
        qtsp_tsa_wal *w = NULL;
        if (qtsp_store_open(sdir, 16, &st) != QTSP_OK ||
            qtsp_tsa_wal_open(wp, QTSP_TSA_WAL_BYTES, WAL_NEVER, st, &w) != QTSP_OK)
            _exit(3);
        qtsp_tsa *tsa = wal_tsa(w);
        unsigned char keys[16][17];
        if (wal_stamp(tsa, n, keys) != n)
            _exit(4);
        write_file("crash-keys", keys, sizeof keys[0] * (size_t)n);
        /* the last token's entry rewritten as not issued (how the TSA voids
         * an entry whose signature failed) */
        unsigned char val[] = {2, 'x'};
        qtsp_tsa_record r = {keys[n - 1], 17, val, sizeof val};
        qtsp_tsa_journal j = qtsp_tsa_wal_journal(w);
        _exit(j.put(j.ctx, &r, 1, 1) == QTSP_OK ? 0 : 5);
    }
    int stv = 0;
    CU_ASSERT_FATAL(waitpid(pid, &stv, 0) == pid);
    CU_ASSERT_FATAL(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

static void test_tsa_wal_after_a_crash_the_next_open_puts_every_entry_into_the_store(void)
{
    crashing_stamper("store-crash", "wal-crash", 6);
    unsigned char keys[6][17];
    CU_ASSERT_EQUAL_FATAL(read_file("crash-keys", (unsigned char *)keys, sizeof keys), sizeof keys);
    qtsp_store *st = open_store("store-crash");
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 6), 0); /* the store never saw them */
    /* a torn write: the last record (the mark) loses a byte in the middle */
    char wp[600];
    path(wp, sizeof wp, "wal-crash");
    FILE *f = fopen(wp, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    unsigned char h[16];
    CU_ASSERT_FATAL(fread(h, 1, sizeof h, f) == sizeof h);
    long rec = 16 + h[5] + (h[6] << 8 | h[7]) + 8; /* every record of a token has this size */
    long mark = 6 * rec;
    CU_ASSERT(fseek(f, mark + 20, SEEK_SET) == 0 && fputc(0x5a, f) != EOF);
    fclose(f);
    /* copies for the orphan test below */
    CU_ASSERT_EQUAL(run("mkdir -p wal-dir && cp wal-crash wal-dir/tsa-wal-1 && cp wal-crash "
                        "wal-dir/tsa-wal-4 && "
                        "cp wal-crash wal-dir/tsa-wal-7"),
                    0);

    qtsp_tsa_wal *w = open_wal("wal-crash", QTSP_TSA_WAL_BYTES, st);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 6), 6);
    CU_ASSERT_EQUAL(journal_state(st, keys[5]), 1); /* the torn mark was not read */
    qtsp_tsa_wal_close(w);

    /* another crash, this time with the mark whole: it overwrites */
    crashing_stamper("store-crash", "wal-crash", 2);
    unsigned char more[2][17];
    CU_ASSERT_EQUAL_FATAL(read_file("crash-keys", (unsigned char *)more, sizeof more), sizeof more);
    CU_ASSERT_EQUAL(journal_count_of(st, more, 2), 0);
    qtsp_tsa_wal *w1 = open_wal("wal-crash", QTSP_TSA_WAL_BYTES, st);
    CU_ASSERT_EQUAL(journal_state(st, more[0]), 1);
    CU_ASSERT_EQUAL(journal_state(st, more[1]), 2); /* not issued */
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 6), 6);
    qtsp_tsa_wal_close(w1);
    uint64_t n = 0;
    CU_ASSERT(count_journal(st, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 8);

    /* files nobody holds (a crashed or replaced process's): read into the
     * store and removed; the one kept and a file in use are left alone */
    qtsp_store *st2 = open_store("store-orphans");
    qtsp_tsa_wal *held = open_wal("wal-dir/tsa-wal-7", QTSP_TSA_WAL_BYTES, st2);
    CU_ASSERT_EQUAL(journal_count_of(st2, keys, 6), 6); /* its own open read it */
    char dir[600];
    path(dir, sizeof dir, "wal-dir");
    /* what only looks like one: a folder, and a link (never followed,
     * its target untouched) are left alone, and do not stop the others */
    CU_ASSERT_EQUAL(run("mkdir wal-dir/tsa-wal-9 && printf keep > wal-target && "
                        "ln -s ../wal-target wal-dir/tsa-wal-8"),
                    0);
    size_t got = 0;
    CU_ASSERT_EQUAL(qtsp_tsa_wal_replay_others(dir, "tsa-wal-1", st2, &got), QTSP_OK);
    CU_ASSERT_EQUAL(got, 6); /* tsa-wal-4 */
    CU_ASSERT_EQUAL(run("test -d wal-dir/tsa-wal-9 && test -L wal-dir/tsa-wal-8 && "
                        "test \"$(cat wal-target)\" = keep"),
                    0);
    qtsp_tsa_wal *wl = NULL;
    char lp8[600];
    path(lp8, sizeof lp8, "wal-dir/tsa-wal-8");
    CU_ASSERT_NOT_EQUAL(qtsp_tsa_wal_open(lp8, QTSP_TSA_WAL_BYTES, WAL_NEVER, st2, &wl), QTSP_OK);
    CU_ASSERT_PTR_NULL(wl);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        run("test \"$(cat wal-target)\" = keep && rm -r wal-dir/tsa-wal-8 wal-dir/tsa-wal-9"), 0);
    CU_ASSERT_EQUAL(run("test ! -e wal-dir/tsa-wal-4 && test -e wal-dir/tsa-wal-1 && "
                        "test -e wal-dir/tsa-wal-7"),
                    0);
    /* slot 7 while tsa-wal-7 is held (a reloaded worker's predecessor
     * drains): the next name; and what nobody holds is read and removed */
    qtsp_tsa_wal *w7 = NULL;
    CU_ASSERT_EQUAL(qtsp_tsa_wal_open_slot(dir, 7, QTSP_TSA_WAL_BYTES, WAL_NEVER, st2, &w7),
                    QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(w7);
    CU_ASSERT_EQUAL(run("test -e wal-dir/tsa-wal-7.1 && test ! -e wal-dir/tsa-wal-1 && "
                        "test -e wal-dir/tsa-wal-7"),
                    0);
    qtsp_tsa_wal_close(w7);
    qtsp_tsa_wal_close(held);
    qtsp_store_close(st2);
    qtsp_store_close(st);
}

/* 1 when the test folder's file system takes O_DIRECT opens. */
static int direct_allowed(void)
{
    char p[600];
    path(p, sizeof p, "direct-probe");
    int fd = open(p, O_CREAT | O_WRONLY | O_DIRECT, 0600);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* bytes: 4096 (batches written O_DIRECT in whole blocks, where allowed) or
 * 4196 (not a whole number of blocks: through the page cache). */
static void wal_wraps_only_once_the_store_has_everything(size_t bytes, int direct)
{
    qtsp_store *st = open_store(direct ? "store-wrap" : "store-wrap-pc");
    const char *wname = direct ? "wal-wrap" : "wal-wrap-pc";
    qtsp_tsa_wal *w = open_wal(wname, bytes, st); /* about 35 entries */
    CU_ASSERT_EQUAL(qtsp_tsa_wal_direct(w), direct && direct_allowed());
    qtsp_tsa *tsa = wal_tsa(w);
    static unsigned char keys[100][17];
    unsigned char q[1024];
    CU_ASSERT_EQUAL_FATAL(run("openssl ts -query -data data.txt -sha256 -out wq.tsq"), 0);
    size_t qn = read_file("wq.tsq", q, sizeof q);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    int granted = 0;
    unsigned char first[16] = {0};
    uint64_t fills0 = qtsp_tsa_wal_fills(w);
    for (int i = 0; i < 100; i++) {
        granted +=
            qtsp_tsa_respond(tsa, q, qn, &out) == QTSP_OK && token_key(out.data, out.len, keys[i]);
        if (i == 0)
            CU_ASSERT_EQUAL(read_file(wname, first, sizeof first), sizeof first);
    }
    qtsp_buf_cleanup(&out);
    CU_ASSERT_EQUAL(granted, 100);
    /* the file started over (a new generation at offset 0) after fills */
    unsigned char now[16];
    CU_ASSERT_EQUAL(read_file(wname, now, sizeof now), sizeof now);
    CU_ASSERT(memcmp(first + 8, now + 8, 8) != 0);
    CU_ASSERT(qtsp_tsa_wal_fills(w) >= fills0 + 2);
    /* everything before the current generation is in the store already */
    size_t pending = qtsp_tsa_wal_pending(w);
    CU_ASSERT(pending < 40);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 100), 100 - (int)pending);
    qtsp_tsa_free(tsa);
    qtsp_tsa_wal_close(w);
    CU_ASSERT_EQUAL(journal_count_of(st, keys, 100), 100);
    qtsp_store_close(st);
}

static void test_tsa_wal_wraps_only_once_the_store_has_everything(void)
{
    wal_wraps_only_once_the_store_has_everything(4096, 1);
    wal_wraps_only_once_the_store_has_everything(4196, 0);
}

int main(void)
{
    if (setup() != 0)
        return 2;
    static const qtest_case cases[] = {
        QTEST(test_tsa_tokens_verify_with_openssl_for_every_accepted_algorithm),
        QTEST(test_tsa_openssl_rejects_token_for_other_data),
        QTEST(test_tsa_serials_are_unique_and_random),
        QTEST(test_tsa_gentime_comes_from_injected_clock_in_utc),
        QTEST(test_tsa_grants_accepted_req_policy),
        QTEST(test_tsa_rejects_unaccepted_policy),
        QTEST(test_tsa_rejects_md5_imprint),
        QTEST(test_tsa_rejects_sha1_imprint),
        QTEST(test_tsa_rejects_unknown_hash_oid),
        QTEST(test_tsa_rejects_algorithm_disabled_by_policy),
        QTEST(test_tsa_rejects_wrong_imprint_length),
        QTEST(test_tsa_hand_built_query_is_granted),
        QTEST(test_tsa_rejects_malformed_der_as_bad_data_format),
        QTEST(test_tsa_rejects_wrong_version_as_bad_request),
        QTEST(test_tsa_rejects_request_extensions),
        QTEST(test_tsa_rejects_when_clock_unsynchronised_and_sync_required),
        QTEST(test_tsa_http_handler_answers_200_timestamp_reply),
        QTEST(test_tsa_journal_records_every_issued_token),
        QTEST(test_tsa_journal_group_commit_from_many_threads),
        QTEST(test_tsa_http_tokens_verify_and_are_journalled_before_the_reply),
        QTEST(test_tsa_http_journal_failure_answers_system_failure),
        QTEST(test_tsa_async_answer_completes_through_callback_after_commit),
        QTEST(test_tsa_arrivals_hint_is_asked_and_can_be_cleared),
        QTEST(test_tsa_hold_commits_the_holders_round_at_release),
        QTEST(test_tsa_policy_file_errors_name_the_line),
        QTEST(test_tsa_shipped_policy_loads_and_requires_sync),
        QTEST(test_tsa_refuses_key_not_matching_certificate),
        QTEST(test_tsa_signs_with_key_in_softhsm_token),
        QTEST(test_tsa_signing_queue_tokens_verify_and_failed_ones_are_voided),
        QTEST(test_tsa_wal_answers_once_in_the_file_and_fills_the_store_behind),
        QTEST(test_tsa_wal_after_a_crash_the_next_open_puts_every_entry_into_the_store),
        QTEST(test_tsa_wal_wraps_only_once_the_store_has_everything),
    };
    int rc = qtest_run("tsa", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
