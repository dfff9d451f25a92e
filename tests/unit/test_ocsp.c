/* Unit tests for ocsp/: the responder core against a real LMDB store, a
 * software-key root, issuing CA and delegated responder built here; answers
 * are checked with OpenSSL's parser and with `openssl ocsp` itself. */
#include <openssl/ec.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/signq.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/http.h"
#include "ocsp/ocsp.h"
#include "ocsp/ocsp_http.h"
#include "ocsp/ocsp_int.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_ocsp_mem.h"

static char g_dir[512];
static qtsp_store *g_store;
static EVP_PKEY *g_root_key, *g_ca_key, *g_resp_key;
static X509 *g_root, *g_ca, *g_resp;
static qtsp_ocsp *g_ocsp;
static int64_t g_now_ms;
static time_t g_base;
static long g_next_serial = 0x1000;

static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return g_now_ms;
}

static void set_now(time_t t)
{
    g_now_ms = (int64_t)t * 1000;
}

/* ---- fixtures ----------------------------------------------------------- */

static EVP_PKEY *ec_key(void)
{
    return EVP_EC_gen("P-256");
}

static void add_ext(X509 *issuer, X509 *subj, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, subj, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
    if (!e)
        abort(); /* fixture bug, before CUnit runs */
    X509_add_ext(subj, e, -1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, signed by (issuer, ikey) or self-signed. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial,
                       time_t nb, time_t na, int kind /* 0 CA, 1 responder, 2 end entity */)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb);
    X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"EE", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, key);
    X509 *is = issuer ? issuer : x;
    add_ext(is, x, NID_subject_key_identifier, "hash");
    add_ext(is, x, NID_authority_key_identifier, "keyid:always");
    if (kind == 0) {
        add_ext(is, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(is, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else if (kind == 1) {
        add_ext(is, x, NID_key_usage, "critical,digitalSignature");
        add_ext(is, x, NID_ext_key_usage, "OCSPSigning");
        add_ext(is, x, NID_id_pkix_OCSP_noCheck, "ignored");
    } else {
        add_ext(is, x, NID_key_usage, "critical,digitalSignature");
    }
    X509_sign(x, ikey ? ikey : key, EVP_sha256());
    return x;
}

static void write_pem(const char *name, X509 *x)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    PEM_write_X509(f, x);
    fclose(f);
}

static qtsp_status put_fn(qtsp_txn *txn, void *ctx)
{
    return qtsp_certdb_put(txn, ctx);
}

/* Issues an end-entity certificate valid [nb, na] and stores it; returns the serial. */
static long issue(time_t nb, time_t na)
{
    long serial = g_next_serial++;
    EVP_PKEY *k = ec_key();
    X509 *x = make_cert("subject", k, g_ca, g_ca_key, serial, nb, na, 2);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    rec.serial[0] = (unsigned char)(serial >> 8);
    rec.serial[1] = (unsigned char)serial;
    rec.serial_len = 2;
    snprintf(rec.issuer, sizeof rec.issuer, "issuing");
    snprintf(rec.subject_id, sizeof rec.subject_id, "s%ld", serial);
    snprintf(rec.profile, sizeof rec.profile, "qualified");
    rec.der = der;
    rec.der_len = (size_t)len;
    CU_ASSERT_EQUAL(qtsp_store_write(g_store, put_fn, &rec), QTSP_OK);
    OPENSSL_free(der);
    X509_free(x);
    EVP_PKEY_free(k);
    return serial;
}

static long issue_now(void)
{
    return issue(g_base - 86400, g_base + 365 * 86400);
}

typedef struct set_ctx {
    long serial;
    qtsp_cert_status st;
} set_ctx;

static qtsp_status set_fn(qtsp_txn *txn, void *ctx)
{
    set_ctx *c = ctx;
    unsigned char s[2] = {(unsigned char)(c->serial >> 8), (unsigned char)c->serial};
    return qtsp_certdb_set_status(txn, s, 2, &c->st);
}

static void set_status(long serial, int state, int reason, time_t at, time_t hold_until)
{
    set_ctx c;
    memset(&c, 0, sizeof c);
    c.serial = serial;
    c.st.state = (uint8_t)state;
    c.st.reason = (uint8_t)reason;
    c.st.revoked_at = at;
    c.st.hold_until = hold_until;
    c.st.changed_at = qtsp_now();
    CU_ASSERT_EQUAL(qtsp_store_write(g_store, set_fn, &c), QTSP_OK);
}

static void write_file(const char *name, const char *text)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static int setup(void)
{
    const char *d = qtest_tmpdir("ocsp");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    g_base = time(NULL); /* openssl verifies the chain at the real time */
    set_now(g_base);
    qtsp_clock_set(test_clock, NULL);
    char sp[700];
    snprintf(sp, sizeof sp, "%s/store", g_dir);
    if (qtsp_store_open(sp, 16, &g_store) != QTSP_OK)
        return 1;
    g_root_key = ec_key();
    g_ca_key = ec_key();
    g_resp_key = ec_key();
    time_t ca_nb = g_base - 30 * 86400;
    g_root = make_cert("Root", g_root_key, NULL, NULL, 1, ca_nb, g_base + 3650 * 86400, 0);
    g_ca =
        make_cert("Issuing CA", g_ca_key, g_root, g_root_key, 2, ca_nb, g_base + 1800 * 86400, 0);
    g_resp =
        make_cert("OCSP", g_resp_key, g_ca, g_ca_key, 3, g_base - 86400, g_base + 365 * 86400, 1);
    write_pem("root.pem", g_root);
    write_pem("ca.pem", g_ca);
    write_pem("responder.pem", g_resp);
    write_file("ocsp.yaml", "validity: 24h\nrefresh_percent: 50\nmax_certids: 20\n"
                            "nonce_max_len: 128\nmax_request_bytes: 8192\n");
    snprintf(sp, sizeof sp, "%s/ocsp.yaml", g_dir);
    if (qtsp_ocsp_new(sp, g_ca, g_resp, qtest_key(g_resp_key), g_store, &g_ocsp) != QTSP_OK) {
        fprintf(stderr, "qtsp_ocsp_new: %s\n", qtsp_err_message());
        return 1;
    }
    return 0;
}

static void teardown(void)
{
    qtsp_ocsp_free(g_ocsp);
    qtsp_store_close(g_store);
    X509_free(g_root);
    X509_free(g_ca);
    X509_free(g_resp);
    EVP_PKEY_free(g_root_key);
    EVP_PKEY_free(g_ca_key);
    EVP_PKEY_free(g_resp_key);
    qtsp_clock_set(NULL, NULL);
    qtest_rmtree(g_dir);
}

/* ---- requests and answers ------------------------------------------------ */

static OCSP_CERTID *cid_for(long serial, const EVP_MD *md, X509 *issuer)
{
    ASN1_INTEGER *s = ASN1_INTEGER_new();
    ASN1_INTEGER_set(s, serial);
    OCSP_CERTID *id =
        OCSP_cert_id_new(md, X509_get_subject_name(issuer), X509_get0_pubkey_bitstr(issuer), s);
    ASN1_INTEGER_free(s);
    return id;
}

/* nonce_len < 0: no nonce. */
static size_t make_req(const long *serials, size_t n, const EVP_MD *md, X509 *issuer, int nonce_len,
                       unsigned char **der)
{
    OCSP_REQUEST *r = OCSP_REQUEST_new();
    for (size_t i = 0; i < n; i++)
        OCSP_request_add0_id(r, cid_for(serials[i], md, issuer));
    if (nonce_len >= 0) {
        unsigned char nonce[300];
        for (int i = 0; i < nonce_len; i++)
            nonce[i] = (unsigned char)(i * 7 + 1);
        ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(inner, nonce, nonce_len);
        unsigned char *enc = NULL;
        int elen = i2d_ASN1_OCTET_STRING(inner, &enc);
        ASN1_OCTET_STRING *outer = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(outer, enc, elen);
        X509_EXTENSION *ext = X509_EXTENSION_create_by_NID(NULL, NID_id_pkix_OCSP_Nonce, 0, outer);
        OCSP_REQUEST_add_ext(r, ext, -1);
        X509_EXTENSION_free(ext);
        ASN1_OCTET_STRING_free(outer);
        ASN1_OCTET_STRING_free(inner);
        OPENSSL_free(enc);
    }
    *der = NULL;
    int len = i2d_OCSP_REQUEST(r, der);
    OCSP_REQUEST_free(r);
    return (size_t)len;
}

typedef struct answer {
    qtsp_buf der;
    qtsp_ocsp_info info;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *bs; /* NULL unless successful */
    int status;         /* OCSPResponseStatus */
} answer;

static void ask_der(const unsigned char *req, size_t len, answer *a)
{
    qtsp_buf_init(&a->der, 1 << 20);
    CU_ASSERT_EQUAL_FATAL(qtsp_ocsp_respond(g_ocsp, req, len, &a->der, &a->info), QTSP_OK);
    const unsigned char *p = a->der.data;
    a->resp = d2i_OCSP_RESPONSE(NULL, &p, (long)a->der.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a->resp);
    CU_ASSERT_PTR_EQUAL(p, a->der.data + a->der.len);
    a->status = OCSP_response_status(a->resp);
    a->bs = a->status == OCSP_RESPONSE_STATUS_SUCCESSFUL ? OCSP_response_get1_basic(a->resp) : NULL;
}

static void ask(const long *serials, size_t n, const EVP_MD *md, int nonce_len, answer *a)
{
    unsigned char *req = NULL;
    size_t len = make_req(serials, n, md, g_ca, nonce_len, &req);
    ask_der(req, len, a);
    OPENSSL_free(req);
}

static void answer_free(answer *a)
{
    OCSP_BASICRESP_free(a->bs);
    OCSP_RESPONSE_free(a->resp);
    qtsp_buf_cleanup(&a->der);
}

typedef struct single {
    int status, reason;
    time_t rev, this_upd, next_upd;
    OCSP_SINGLERESP *sr;
} single;

static time_t gt_epoch(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return (time_t)-1;
    return timegm(&tm);
}

static int find(const answer *a, long serial, const EVP_MD *md, single *s)
{
    OCSP_CERTID *id = cid_for(serial, md, g_ca);
    int idx = OCSP_resp_find(a->bs, id, -1);
    OCSP_CERTID_free(id);
    if (idx < 0)
        return 0;
    s->sr = OCSP_resp_get0(a->bs, idx);
    ASN1_GENERALIZEDTIME *rev = NULL, *tu = NULL, *nu = NULL;
    s->reason = -1;
    s->status = OCSP_single_get0_status(s->sr, &s->reason, &rev, &tu, &nu);
    s->rev = rev ? gt_epoch(rev) : 0;
    s->this_upd = gt_epoch(tu);
    s->next_upd = nu ? gt_epoch(nu) : 0;
    return 1;
}

/* Runs cmd through the shell; its output (stdout and what it redirects) in
 * out, NUL-terminated. */
static void run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *pp = popen(cmd, "r");
    size_t n = pp ? fread(out, 1, cap - 1, pp) : 0;
    out[n] = '\0';
    if (pp)
        pclose(pp);
}

/* Runs `openssl ocsp` on the answer; returns its output (static). */
static const char *openssl_ocsp(const answer *a, long serial, const char *extra)
{
    static char outbuf[8192];
    char p[700], cmd[4096];
    snprintf(p, sizeof p, "%s/resp.der", g_dir);
    FILE *f = fopen(p, "wb");
    fwrite(a->der.data, 1, a->der.len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl ocsp -respin resp.der -issuer ca.pem -CAfile root.pem "
             "-verify_other ca.pem -no_nonce %s -serial 0x%lx -resp_text 2>&1",
             g_dir, extra ? extra : "", serial);
    run_capture(cmd, outbuf, sizeof outbuf);
    return outbuf;
}

static void assert_openssl(const answer *a, long serial, const char *extra, const char *expect)
{
    const char *out = openssl_ocsp(a, serial, extra);
    char line[64];
    snprintf(line, sizeof line, "0x%lx: %s", serial, expect);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, line));
    if (!strstr(out, "Response verify OK") || !strstr(out, line))
        fprintf(stderr, "openssl ocsp said:\n%s\n", out);
}

static int has_archive_cutoff(const single *s)
{
    int i = OCSP_SINGLERESP_get_ext_by_NID(s->sr, NID_id_pkix_OCSP_archiveCutoff, -1);
    if (i < 0)
        return 0;
    X509_EXTENSION *e = OCSP_SINGLERESP_get_ext(s->sr, i);
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(e);
    const unsigned char *p = ASN1_STRING_get0_data(v);
    ASN1_GENERALIZEDTIME *t = d2i_ASN1_GENERALIZEDTIME(NULL, &p, ASN1_STRING_length(v));
    time_t got = gt_epoch(t);
    ASN1_GENERALIZEDTIME_free(t);
    return got == gt_epoch(X509_get0_notBefore(g_ca));
}

/* ---- tests --------------------------------------------------------------- */

static void test_ocsp_good_cert_verifies_with_openssl(void)
{
    set_now(g_base);
    long s = issue_now();
    answer a;
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_EQUAL(sg.this_upd, g_base);
    CU_ASSERT_EQUAL(sg.next_upd, g_base + 86400);
    CU_ASSERT(has_archive_cutoff(&sg));
    /* byKey responder id, producedAt = now, responder certificate included */
    const ASN1_OCTET_STRING *kid = NULL;
    const X509_NAME *nm = NULL;
    CU_ASSERT_EQUAL(OCSP_resp_get0_id(a.bs, &kid, &nm), 1);
    CU_ASSERT_PTR_NOT_NULL(kid);
    CU_ASSERT_PTR_NULL(nm);
    CU_ASSERT_EQUAL(gt_epoch(OCSP_resp_get0_produced_at(a.bs)), g_base);
    CU_ASSERT_EQUAL(sk_X509_num(OCSP_resp_get0_certs(a.bs)), 1);
    CU_ASSERT_EQUAL(OBJ_obj2nid(OCSP_resp_get0_tbs_sigalg(a.bs)->algorithm), NID_ecdsa_with_SHA256);
    CU_ASSERT_EQUAL(a.info.cacheable, 1);
    CU_ASSERT_EQUAL(a.info.this_update, g_base);
    CU_ASSERT_EQUAL(a.info.next_update, g_base + 86400);
    CU_ASSERT_EQUAL(strlen(a.info.etag), 42);
    assert_openssl(&a, s, NULL, "good");
    answer_free(&a);
}

static void test_ocsp_sha256_certid_is_answered(void)
{
    set_now(g_base);
    long s = issue_now();
    answer a;
    ask(&s, 1, EVP_sha256(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_FALSE(find(&a, s, EVP_sha1(), &sg)); /* the CertID is echoed as sent */
    assert_openssl(&a, s, "-sha256", "good");
    answer_free(&a);
}

static void test_ocsp_hold_is_revoked_certificate_hold_until_released(void)
{
    set_now(g_base);
    long s = issue_now();
    answer a;
    ask(&s, 1, EVP_sha1(), -1, &a); /* cached good answer */
    answer_free(&a);
    set_status(s, QTSP_CERT_ON_HOLD, QTSP_REASON_CERTIFICATE_HOLD, g_base - 10, g_base + 7 * 86400);
    ask(&s, 1, EVP_sha1(), -1, &a);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_CERTIFICATEHOLD);
    CU_ASSERT_EQUAL(sg.rev, g_base - 10);
    assert_openssl(&a, s, NULL, "revoked");
    CU_ASSERT_PTR_NOT_NULL(strstr(openssl_ocsp(&a, s, NULL), "Reason: certificateHold"));
    answer_free(&a);
    set_status(s, QTSP_CERT_VALID, 0, 0, 0); /* release */
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    assert_openssl(&a, s, NULL, "good");
    answer_free(&a);
}

static void test_ocsp_hold_lapses_exactly_at_hold_until(void)
{
    set_now(g_base);
    long s = issue_now();
    time_t until = g_base + 3600;
    set_status(s, QTSP_CERT_ON_HOLD, QTSP_REASON_CERTIFICATE_HOLD, g_base, until);
    answer a;
    single sg;
    ask(&s, 1, EVP_sha256(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.next_upd, until); /* nextUpdate never beyond the hold */
    CU_ASSERT_EQUAL(a.info.cacheable, 1);
    CU_ASSERT_EQUAL(a.info.next_update, until);
    qtsp_buf first;
    qtsp_buf_init(&first, 1 << 20);
    CU_ASSERT_EQUAL(qtsp_buf_append(&first, a.der.data, a.der.len), QTSP_OK);
    answer_free(&a);

    set_now(until - 1); /* still on hold: the pre-signed answer is served */
    ask(&s, 1, EVP_sha256(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT(a.der.len == first.len && memcmp(a.der.data, first.data, first.len) == 0);
    answer_free(&a);

    set_now(until); /* lapsed, with no status write: the cached answer must not outlive it */
    ask(&s, 1, EVP_sha256(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_EQUAL(sg.this_upd, until);
    answer_free(&a);
    qtsp_buf_cleanup(&first);
    set_now(g_base);
}

static void test_ocsp_revoked_key_compromise_carries_time_and_reason(void)
{
    set_now(g_base);
    long s = issue_now();
    set_status(s, QTSP_CERT_REVOKED, QTSP_REASON_KEY_COMPROMISE, g_base - 3600, 0);
    answer a;
    single sg;
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    CU_ASSERT_EQUAL(sg.rev, g_base - 3600);
    CU_ASSERT_EQUAL(sg.next_upd, g_base + 86400);
    assert_openssl(&a, s, NULL, "revoked");
    CU_ASSERT_PTR_NOT_NULL(strstr(openssl_ocsp(&a, s, NULL), "Reason: keyCompromise"));
    answer_free(&a);
}

static void test_ocsp_never_issued_serial_is_extended_revoked(void)
{
    set_now(g_base);
    long s = 0x7ff0; /* never issued */
    answer a;
    single sg;
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_CERTIFICATEHOLD);
    CU_ASSERT_EQUAL(sg.rev, 0); /* 1970-01-01T00:00:00Z */
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.48.1.9", 1);
    CU_ASSERT(OCSP_BASICRESP_get_ext_by_OBJ(a.bs, oid, -1) >= 0);
    ASN1_OBJECT_free(oid);
    CU_ASSERT_EQUAL(a.info.cacheable, 0); /* may be issued later: never pre-signed */
    assert_openssl(&a, s, NULL, "revoked");
    answer_free(&a);
}

static void test_ocsp_nonce_is_echoed_and_signed_fresh(void)
{
    set_now(g_base);
    long s = issue_now();
    answer cached, a;
    ask(&s, 1, EVP_sha1(), -1, &cached);
    CU_ASSERT_EQUAL(cached.info.cacheable, 1);
    unsigned char *req = NULL;
    size_t len = make_req(&s, 1, EVP_sha1(), g_ca, 32, &req);
    ask_der(req, len, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    const unsigned char *p = req;
    OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    CU_ASSERT_EQUAL(OCSP_check_nonce(r, a.bs), 1);
    OCSP_REQUEST_free(r);
    CU_ASSERT_EQUAL(a.info.cacheable, 0);
    CU_ASSERT_EQUAL(a.info.etag[0], '\0');
    CU_ASSERT(a.der.len != cached.der.len || memcmp(a.der.data, cached.der.data, a.der.len) != 0);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    assert_openssl(&a, s, NULL, "good");
    OPENSSL_free(req);
    answer_free(&a);
    answer_free(&cached);
}

static void test_ocsp_nonce_length_bounds(void)
{
    set_now(g_base);
    long s = issue_now();
    static const struct {
        int len, status;
    } cases[] = {{0, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
                 {1, OCSP_RESPONSE_STATUS_SUCCESSFUL},
                 {128, OCSP_RESPONSE_STATUS_SUCCESSFUL},
                 {129, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *req = NULL;
        size_t len = make_req(&s, 1, EVP_sha1(), g_ca, cases[i].len, &req);
        answer a;
        ask_der(req, len, &a);
        CU_ASSERT_EQUAL(a.status, cases[i].status);
        if (a.bs) {
            const unsigned char *p = req;
            OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)len);
            CU_ASSERT_EQUAL(OCSP_check_nonce(r, a.bs), 1);
            OCSP_REQUEST_free(r);
        }
        OPENSSL_free(req);
        answer_free(&a);
    }
}

static void test_ocsp_two_certids_are_both_answered(void)
{
    set_now(g_base);
    long s[2] = {issue_now(), issue_now()};
    set_status(s[1], QTSP_CERT_REVOKED, QTSP_REASON_SUPERSEDED, g_base - 5, 0);
    answer a;
    single sg;
    ask(s, 2, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_EQUAL(OCSP_resp_count(a.bs), 2);
    CU_ASSERT_FATAL(find(&a, s[0], EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_FATAL(find(&a, s[1], EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_SUPERSEDED);
    CU_ASSERT_EQUAL(a.info.cacheable, 0);
    assert_openssl(&a, s[0], NULL, "good");
    answer_free(&a);
}

static void test_ocsp_too_many_certids_is_malformed(void)
{
    set_now(g_base);
    long s[21];
    for (size_t i = 0; i < 21; i++)
        s[i] = 0x7000 + (long)i;
    answer a;
    ask(s, 20, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_EQUAL(OCSP_resp_count(a.bs), 20);
    answer_free(&a);
    ask(s, 21, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
}

static void test_ocsp_expired_cert_is_answered_with_archive_cutoff(void)
{
    set_now(g_base);
    long s = issue(g_base - 400 * 86400, g_base - 86400);
    set_status(s, QTSP_CERT_REVOKED, QTSP_REASON_CESSATION, g_base - 100 * 86400, 0);
    long g = issue(g_base - 400 * 86400, g_base - 86400);
    long both[2] = {s, g};
    answer a;
    single sg;
    ask(both, 2, EVP_sha256(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_CESSATIONOFOPERATION);
    CU_ASSERT(has_archive_cutoff(&sg));
    CU_ASSERT_FATAL(find(&a, g, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT(has_archive_cutoff(&sg));
    assert_openssl(&a, s, "-sha256", "revoked");
    assert_openssl(&a, g, "-sha256", "good");
    answer_free(&a);
}

static void test_ocsp_status_change_drops_the_cached_answer(void)
{
    set_now(g_base);
    long s = issue_now();
    answer a, b;
    single sg;
    ask(&s, 1, EVP_sha1(), -1, &a);
    set_now(g_base + 5); /* a second ask within freshness is the same pre-signed answer */
    ask(&s, 1, EVP_sha1(), -1, &b);
    CU_ASSERT(a.der.len == b.der.len && memcmp(a.der.data, b.der.data, a.der.len) == 0);
    CU_ASSERT_STRING_EQUAL(a.info.etag, b.info.etag);
    CU_ASSERT_EQUAL(b.info.this_update, g_base);
    answer_free(&a);
    answer_free(&b);
    set_status(s, QTSP_CERT_REVOKED, QTSP_REASON_PRIVILEGE_WITHDRAWN, g_base + 5, 0);
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_PRIVILEGEWITHDRAWN);
    CU_ASSERT_EQUAL(a.info.this_update, g_base + 5);
    answer_free(&a);
    qtsp_buf m;
    qtsp_buf_init(&m, 8192);
    CU_ASSERT_EQUAL(qtsp_ocsp_metrics(g_ocsp, &m), QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&m), "qtsp_ocsp_cache_total{outcome=\"hit\"}"));
    qtsp_buf_cleanup(&m);
    set_now(g_base);
}

static void test_ocsp_cached_answer_is_refreshed_after_half_validity(void)
{
    set_now(g_base);
    long s = issue_now();
    answer a;
    ask(&s, 1, EVP_sha1(), -1, &a);
    answer_free(&a);
    set_now(g_base + 12 * 3600 - 1);
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.info.this_update, g_base);
    answer_free(&a);
    set_now(g_base + 12 * 3600);
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.info.this_update, g_base + 12 * 3600);
    CU_ASSERT_EQUAL(a.info.cacheable, 1);
    answer_free(&a);
    set_now(g_base);
}

static void test_ocsp_malformed_requests_get_malformed_request(void)
{
    set_now(g_base);
    long s = issue_now();
    unsigned char *req = NULL;
    size_t len = make_req(&s, 1, EVP_sha1(), g_ca, -1, &req);
    unsigned char buf[9000];
    memcpy(buf, req, len);
    answer a;
    ask_der(req, len - 1, &a); /* truncated */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    CU_ASSERT_EQUAL(a.info.cacheable, 0);
    answer_free(&a);
    buf[len] = 0;
    ask_der(buf, len + 1, &a); /* trailing byte */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    ask_der(buf, 0, &a); /* empty */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    ask_der(NULL, 0, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    ask_der((const unsigned char *)"hello, world", 12, &a); /* not DER */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    memset(buf, 0x30, sizeof buf);
    ask_der(buf, sizeof buf, &a); /* larger than max_request_bytes */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    static const unsigned char empty_list[] = {0x30, 0x04, 0x30, 0x02, 0x30, 0x00};
    ask_der(empty_list, sizeof empty_list, &a); /* no CertID */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    answer_free(&a);
    OPENSSL_free(req);
}

static void test_ocsp_unknown_issuer_is_unauthorized(void)
{
    set_now(g_base);
    long s = issue_now();
    unsigned char *req = NULL;
    size_t len = make_req(&s, 1, EVP_sha1(), g_root, -1, &req);
    answer a;
    ask_der(req, len, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    CU_ASSERT_EQUAL(a.info.cacheable, 0);
    answer_free(&a);
    OPENSSL_free(req);
    /* a CertID of ours with another hash algorithm alone: nothing matches */
    ask(&s, 1, EVP_sha384(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    answer_free(&a);
}

static void test_ocsp_foreign_certid_beside_ours_is_unknown(void)
{
    set_now(g_base);
    long s = issue_now();
    OCSP_REQUEST *r = OCSP_REQUEST_new();
    OCSP_request_add0_id(r, cid_for(s, EVP_sha1(), g_ca));
    OCSP_request_add0_id(r, cid_for(s, EVP_sha384(), g_ca));
    OCSP_request_add0_id(r, cid_for(s, EVP_sha1(), g_root));
    unsigned char *req = NULL;
    int len = i2d_OCSP_REQUEST(r, &req);
    OCSP_REQUEST_free(r);
    answer a;
    single sg;
    ask_der(req, (size_t)len, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_EQUAL(OCSP_resp_count(a.bs), 3);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha384(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_UNKNOWN);
    CU_ASSERT_EQUAL(OCSP_SINGLERESP_get_ext_count(sg.sr), 0);
    answer_free(&a);
    OPENSSL_free(req);
}

/* Appends tag|len|content (DER length) to out at *n. */
static void wrap(unsigned char tag, const unsigned char *c, size_t len, unsigned char *out,
                 size_t *n)
{
    out[(*n)++] = tag;
    if (len >= 0x100) {
        out[(*n)++] = 0x82;
        out[(*n)++] = (unsigned char)(len >> 8);
    } else if (len >= 0x80) {
        out[(*n)++] = 0x81;
    }
    out[(*n)++] = (unsigned char)len;
    memmove(out + *n, c, len);
    *n += len;
}

static void test_ocsp_odd_hash_parameters_are_echoed_as_valid_der(void)
{
    /* Fuzzer finding: a foreign CertID whose hash parameters are an empty
     * constructed [UNIVERSAL 0]; OpenSSL's re-encoding of it did not parse. */
    static const unsigned char foreign[] = {
        0x30, 0x56, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x00, 0x0c, 0x14, 0x41,
        0x20, 0x00, 0x04, 0x20, 0x40, 0xd0, 0x18, 0x6b, 0xfc, 0x6d, 0x74, 0xb1, 0x7b, 0xe0, 0xaf,
        0xfd, 0xe7, 0xf5, 0x07, 0x3b, 0x18, 0x6c, 0x36, 0xf9, 0x1a, 0x6a, 0x3d, 0xae, 0xfc, 0xf2,
        0x18, 0x36, 0x14, 0x40, 0x20, 0x9f, 0x04, 0x20, 0xc4, 0x9f, 0xb8, 0x31, 0xf4, 0xf0, 0x0e,
        0xe2, 0x9c, 0x1e, 0x0e, 0x71, 0xe0, 0xf0, 0xb2, 0xdc, 0xbe, 0x99, 0xc8, 0x19, 0xc2, 0x5e,
        0xb2, 0x73, 0x01, 0x27, 0x23, 0xdd, 0xd7, 0x23, 0xff, 0x77, 0x02, 0x01, 0x04};
    set_now(g_base);
    long s = issue_now();
    OCSP_CERTID *id = cid_for(s, EVP_sha1(), g_ca);
    unsigned char *ours = NULL;
    int olen = i2d_OCSP_CERTID(id, &ours);
    OCSP_CERTID_free(id);
    unsigned char list[512], tmp[512], req[512];
    size_t ln = 0, tn = 0, rn = 0;
    wrap(0x30, ours, (size_t)olen, list, &ln); /* Request { reqCert } */
    wrap(0x30, foreign, sizeof foreign, list, &ln);
    wrap(0x30, list, ln, tmp, &tn);          /* requestList */
    wrap(0x30, tmp, tn, list, &(size_t){0}); /* TBSRequest */
    size_t tbs_len = tn + (tn >= 0x80 ? 3 : 2);
    wrap(0x30, list, tbs_len, req, &rn); /* OCSPRequest */
    OPENSSL_free(ours);
    answer a;
    single sg;
    ask_der(req, rn, &a); /* ask_der asserts the answer parses completely */
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_EQUAL(OCSP_resp_count(a.bs), 2);
    if (a.bs && OCSP_resp_count(a.bs) == 2) {
        int rs = -1;
        ASN1_GENERALIZEDTIME *r = NULL, *tu = NULL, *nu = NULL;
        CU_ASSERT_EQUAL(OCSP_single_get0_status(OCSP_resp_get0(a.bs, 1), &rs, &r, &tu, &nu),
                        V_OCSP_CERTSTATUS_UNKNOWN);
    }
    answer_free(&a);
}

static void test_ocsp_signed_request_is_accepted_without_checking(void)
{
    set_now(g_base);
    long s = issue_now();
    OCSP_REQUEST *r = OCSP_REQUEST_new();
    OCSP_request_add0_id(r, cid_for(s, EVP_sha1(), g_ca));
    /* signed by some requester unknown to us: RFC 6960 4.1.2 makes it optional */
    EVP_PKEY *k = ec_key();
    X509 *x = make_cert("requester", k, g_root, g_root_key, 77, g_base - 60, g_base + 3600, 2);
    CU_ASSERT_EQUAL(OCSP_request_sign(r, x, k, EVP_sha256(), NULL, 0), 1);
    unsigned char *req = NULL;
    int len = i2d_OCSP_REQUEST(r, &req);
    OCSP_REQUEST_free(r);
    answer a;
    single sg;
    ask_der(req, (size_t)len, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    answer_free(&a);
    OPENSSL_free(req);
    X509_free(x);
    EVP_PKEY_free(k);
}

static qtsp_status put_garbage_fn(qtsp_txn *txn, void *ctx)
{
    long s = *(long *)ctx;
    unsigned char key[4] = {2, (unsigned char)(s >> 8), (unsigned char)s, 1};
    return qtsp_txn_put(txn, QTSP_T_OCSP_CACHE, key, sizeof key, "\x09garbage", 8, 0);
}

static void test_ocsp_unreadable_cache_entry_is_replaced(void)
{
    set_now(g_base);
    long s = issue_now();
    CU_ASSERT_EQUAL(qtsp_store_write(g_store, put_garbage_fn, &s), QTSP_OK);
    answer a;
    single sg;
    ask(&s, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_EQUAL(a.info.cacheable, 1);
    answer_free(&a);
}

static void test_ocsp_get_decode_accepts_all_base64_forms(void)
{
    /* bytes chosen so that base64 contains '+' and '/' and needs padding */
    static const unsigned char raw[] = {0xfb, 0xff, 0xbf, 0x30, 0x03};
    static const char *const forms[] = {"+/+/MAM=", "-_-_MAM=", "-_-_MAM", "%2B%2F%2b%2fMAM%3D",
                                        "+/+/MAM"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        unsigned char out[16];
        size_t n = 0;
        CU_ASSERT_EQUAL(qtsp_ocsp_get_decode(forms[i], out, sizeof out, &n), QTSP_OK);
        CU_ASSERT(n == sizeof raw && memcmp(out, raw, n) == 0);
    }
    static const char *const bad[] = {"", "M", "MA=M", "MA*A", "%2", "%zz", "MAM==", "MA==="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char out[16];
        size_t n = 0;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_ocsp_get_decode(bad[i], out, sizeof out, &n), QTSP_ERR_INVALID);
    }
    unsigned char tiny[2];
    size_t n = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_get_decode("+/+/MAM=", tiny, sizeof tiny, &n), QTSP_ERR_TOO_BIG);
    qtsp_err_clear();
}

static void test_ocsp_get_form_of_a_real_request_is_answered(void)
{
    set_now(g_base);
    long s = issue_now();
    unsigned char *req = NULL;
    size_t len = make_req(&s, 1, EVP_sha1(), g_ca, -1, &req);
    char b64[2048];
    int bl = EVP_EncodeBlock((unsigned char *)b64, req, (int)len);
    b64[bl] = '\0';
    /* URL-safe, unpadded */
    char safe[2048];
    size_t k = 0;
    for (int i = 0; i < bl; i++) {
        if (b64[i] == '=')
            continue;
        safe[k++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    }
    safe[k] = '\0';
    unsigned char der[2048];
    size_t n = 0;
    CU_ASSERT_EQUAL(qtsp_ocsp_get_decode(b64, der, sizeof der, &n), QTSP_OK);
    CU_ASSERT(n == len && memcmp(der, req, len) == 0);
    CU_ASSERT_EQUAL(qtsp_ocsp_get_decode(safe, der, sizeof der, &n), QTSP_OK);
    CU_ASSERT(n == len && memcmp(der, req, len) == 0);
    answer a;
    ask_der(der, n, &a);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    answer_free(&a);
    OPENSSL_free(req);
}

static void test_ocsp_shipped_policy_loads(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/policies/ocsp.yaml", qtest_src_dir());
    qtsp_ocsp *o = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(path, g_ca, g_resp, qtest_key(g_resp_key), g_store, &o), QTSP_OK);
    if (!o)
        fprintf(stderr, "%s\n", qtsp_err_message());
    qtsp_ocsp_free(o);
}

static void test_ocsp_new_rejects_unfit_responder_and_policy(void)
{
    qtsp_ocsp *o = NULL;
    /* the issuing CA itself lacks OCSPSigning and nocheck */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(NULL, g_root, g_ca, qtest_key(g_ca_key), g_store, &o),
                    QTSP_ERR_INVALID);
    /* key does not match */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(NULL, g_ca, g_resp, qtest_key(g_ca_key), g_store, &o),
                    QTSP_ERR_INVALID);
    /* responder not issued by that CA */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(NULL, g_root, g_resp, qtest_key(g_resp_key), g_store, &o),
                    QTSP_ERR_INVALID);
    char p[700];
    write_file("bad.yaml", "validity: 24h\nvaldity: 1h\n");
    snprintf(p, sizeof p, "%s/bad.yaml", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(p, g_ca, g_resp, qtest_key(g_resp_key), g_store, &o),
                    QTSP_ERR_CONFIG);
    write_file("bad2.yaml", "validity: 24h\nnonce_max_len: 16\n");
    snprintf(p, sizeof p, "%s/bad2.yaml", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ocsp_new(p, g_ca, g_resp, qtest_key(g_resp_key), g_store, &o),
                    QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(o);
    qtsp_err_clear();
}

/* ---- HTTP binding, through the real server and real clients -------------- */

static qtsp_http_server *start_http(void)
{
    qtsp_route routes[] = {
        {"POST", "/ocsp", 0, 8192, "application/ocsp-request", qtsp_ocsp_http_post, g_ocsp,
         "ocsp_post"},
        {"GET", "/ocsp/", 1, 0, NULL, qtsp_ocsp_http_get, g_ocsp, "ocsp_get"},
    };
    qtsp_http_opts opts = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 10};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_EQUAL(qtsp_http_start(&opts, routes, 2, qtsp_ocsp_metrics, g_ocsp, &srv), QTSP_OK);
    return srv;
}

/* GET path with curl; returns the HTTP status, headers in hdr, body in body. */
static int curl_get(unsigned port, const char *path, const char *inm, char *hdr, size_t hcap,
                    qtsp_buf *body)
{
    char cmd[4096], hp[700], bp[700];
    snprintf(hp, sizeof hp, "%s/hdr.txt", g_dir);
    snprintf(bp, sizeof bp, "%s/body.bin", g_dir);
    remove(bp);
    snprintf(cmd, sizeof cmd,
             "curl -s --path-as-is -o '%s' -D '%s' -w '%%{http_code}' %s%s%s "
             "'http://127.0.0.1:%u%s'",
             bp, hp, inm ? "-H 'If-None-Match: " : "", inm ? inm : "", inm ? "'" : "", port, path);
    FILE *pp = popen(cmd, "r");
    int code = 0;
    if (fscanf(pp, "%d", &code) != 1)
        code = -1;
    pclose(pp);
    FILE *f = fopen(hp, "r");
    size_t n = f ? fread(hdr, 1, hcap - 1, f) : 0;
    hdr[n] = '\0';
    if (f)
        fclose(f);
    qtsp_buf_reset(body);
    f = fopen(bp, "rb");
    if (f) {
        unsigned char tmp[8192];
        size_t k = fread(tmp, 1, sizeof tmp, f);
        CU_ASSERT_EQUAL(qtsp_buf_append(body, tmp, k), QTSP_OK);
        fclose(f);
    }
    return code;
}

static void b64_forms(const unsigned char *der, size_t len, char *std, char *safe, char *pct,
                      char *bare)
{
    int bl = EVP_EncodeBlock((unsigned char *)std, der, (int)len);
    std[bl] = '\0';
    size_t a = 0, b = 0, c = 0;
    for (int i = 0; i < bl; i++) {
        char ch = std[i];
        if (ch != '=') {
            safe[a++] = ch == '+' ? '-' : ch == '/' ? '_' : ch;
            bare[c++] = ch;
        }
        if (ch == '+' || ch == '/' || ch == '=')
            b += (size_t)snprintf(pct + b, 4, "%%%02X", (unsigned)ch);
        else
            pct[b++] = ch;
    }
    safe[a] = bare[c] = pct[b] = '\0';
}

static void test_ocsp_http_post_answers_openssl_client_with_nonce(void)
{
    set_now(g_base);
    long s = issue_now();
    qtsp_http_server *srv = start_http();
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl ocsp -url http://127.0.0.1:%u/ocsp -issuer ca.pem "
             "-CAfile root.pem -verify_other ca.pem -serial 0x%lx 2>&1",
             g_dir, qtsp_http_port(srv), s);
    char out[8192];
    run_capture(cmd, out, sizeof out);
    char line[64];
    snprintf(line, sizeof line, "0x%lx: good", s);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, line));
    CU_ASSERT_PTR_NULL(strstr(out, "Nonce")); /* nonce sent by default and verified */
    CU_ASSERT_PTR_NULL(strstr(out, "WARNING"));
    if (!strstr(out, "Response verify OK"))
        fprintf(stderr, "openssl ocsp said:\n%s\n", out);
    qtsp_http_stop(srv);
}

static void test_ocsp_http_get_all_forms_with_cache_headers_and_304(void)
{
    set_now(g_base);
    /* find a serial whose request's base64 has '+' or '/' and padding */
    long s = 0;
    unsigned char *req = NULL;
    size_t len = 0;
    char std[2048], safe[2048], pct[4096], bare[2048];
    for (int tries = 0; tries < 200; tries++) {
        s = issue_now();
        OPENSSL_free(req);
        len = make_req(&s, 1, EVP_sha1(), g_ca, -1, &req);
        b64_forms(req, len, std, safe, pct, bare);
        if (strchr(std, '/') && strchr(std, '='))
            break;
    }
    CU_ASSERT_PTR_NOT_NULL(strchr(std, '/'));
    qtsp_http_server *srv = start_http();
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    unsigned port = qtsp_http_port(srv);
    qtsp_buf body, first;
    qtsp_buf_init(&body, 1 << 16);
    qtsp_buf_init(&first, 1 << 16);
    char hdr[4096], path[4200], etag[64] = "";
    const char *forms[] = {std, safe, pct, bare};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "/ocsp/%s", forms[i]);
        CU_ASSERT_EQUAL(curl_get(port, path, NULL, hdr, sizeof hdr, &body), 200);
        CU_ASSERT_PTR_NOT_NULL(strstr(hdr, "application/ocsp-response"));
        CU_ASSERT_PTR_NOT_NULL(strstr(hdr, "max-age=60, public, no-transform, must-revalidate"));
        CU_ASSERT_PTR_NOT_NULL(strstr(hdr, "Last-Modified: "));
        CU_ASSERT_PTR_NOT_NULL(strstr(hdr, "Expires: "));
        const char *e = strstr(hdr, "ETag: ");
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        if (i == 0) {
            snprintf(etag, sizeof etag, "%.*s", (int)strcspn(e + 6, "\r\n"), e + 6);
            CU_ASSERT_EQUAL(qtsp_buf_append(&first, body.data, body.len), QTSP_OK);
        } else {
            CU_ASSERT(body.len == first.len && memcmp(body.data, first.data, body.len) == 0);
        }
    }
    char date[40], want[80];
    qtsp_format_http_date(g_base + 86400, date, sizeof date);
    snprintf(want, sizeof want, "Expires: %s", date);
    CU_ASSERT_PTR_NOT_NULL(strstr(hdr, want));
    answer a;
    ask_der(req, len, &a);
    single sg;
    CU_ASSERT_FATAL(find(&a, s, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT(a.der.len == first.len && memcmp(a.der.data, first.data, first.len) == 0);
    answer_free(&a);

    /* If-None-Match with the ETag: 304 without body */
    snprintf(path, sizeof path, "/ocsp/%s", safe);
    CU_ASSERT_EQUAL(curl_get(port, path, etag, hdr, sizeof hdr, &body), 304);
    CU_ASSERT_EQUAL(body.len, 0);
    CU_ASSERT_EQUAL(curl_get(port, path, "\"00\"", hdr, sizeof hdr, &body), 200);

    /* a nonce answer is not cacheable */
    OPENSSL_free(req);
    len = make_req(&s, 1, EVP_sha1(), g_ca, 16, &req);
    b64_forms(req, len, std, safe, pct, bare);
    snprintf(path, sizeof path, "/ocsp/%s", pct);
    CU_ASSERT_EQUAL(curl_get(port, path, NULL, hdr, sizeof hdr, &body), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(hdr, "no-cache"));
    CU_ASSERT_PTR_NULL(strstr(hdr, "ETag"));

    /* garbage is an OCSP malformedRequest, not an HTTP error */
    CU_ASSERT_EQUAL(curl_get(port, "/ocsp/%%%%not-base64*", NULL, hdr, sizeof hdr, &body), 200);
    CU_ASSERT(body.len == 5 && body.data[4] == OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    qtsp_http_stop(srv);
    OPENSSL_free(req);
    qtsp_buf_cleanup(&body);
    qtsp_buf_cleanup(&first);
}

/* Answers that need a fresh signature go through the signing queue with a
 * key in a real SoftHSM2 token: openssl ocsp verifies them over HTTP; when
 * the key is gone, the deferred request gets internalError, not a hang. */
static void test_ocsp_signing_queue_answers_verify_and_failures_are_internal_error(void)
{
    set_now(g_base);
    char d[700];
    snprintf(d, sizeof d, "%s/token-q", g_dir);
    qtsp_hsm *hsm = NULL;
    EVP_PKEY *pub = NULL;
    qtsp_key *priv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtest_token_key(d, "ocsp-q", "q-ocsp", &hsm, &pub, &priv), 0);
    X509 *rc =
        make_cert("OCSP queued", pub, g_ca, g_ca_key, 33, g_base - 86400, g_base + 365 * 86400, 1);
    write_pem("responder-q.pem", rc);
    qtsp_ocsp *o = NULL;
    CU_ASSERT_FATAL(qtsp_ocsp_new(NULL, g_ca, rc, priv, g_store, &o) == QTSP_OK);
    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    qtsp_ocsp_set_signq(o, q);
    qtsp_route routes[] = {{"POST", "/ocsp", 0, 8192, "application/ocsp-request",
                            qtsp_ocsp_http_post, o, "ocsp_post"}};
    qtsp_http_opts opts = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 10};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_FATAL(qtsp_http_start(&opts, routes, 1, qtsp_ocsp_metrics, o, &srv) == QTSP_OK);
    long s = issue_now();
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl ocsp -url http://127.0.0.1:%u/ocsp -issuer ca.pem "
             "-CAfile root.pem -verify_other ca.pem -serial 0x%lx -serial 0x%lx 2>&1",
             g_dir, qtsp_http_port(srv), s, s + 999999); /* nonce, two CertIDs: signed */
    run_capture(cmd, out, sizeof out);
    char line[64];
    snprintf(line, sizeof line, "0x%lx: good", s);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, line));
    CU_ASSERT_PTR_NULL(strstr(out, "WARNING"));
    if (!strstr(out, "Response verify OK"))
        fprintf(stderr, "openssl ocsp said:\n%s\n", out);
    unsigned long long jobs = 0, batches = 0;
    qtsp_signq_stats(q, &jobs, &batches);
    CU_ASSERT_EQUAL(jobs, 1); /* it went through the queue */
    /* the key goes away: the answer is internalError (2) */
    CU_ASSERT_EQUAL(qtsp_hsm_destroy(hsm, "q-ocsp"), QTSP_OK);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl ocsp -url http://127.0.0.1:%u/ocsp -issuer ca.pem "
             "-CAfile root.pem -serial 0x%lx 2>&1",
             g_dir, qtsp_http_port(srv), s);
    run_capture(cmd, out, sizeof out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "internalerror"));
    if (!strstr(out, "internalerror"))
        fprintf(stderr, "openssl ocsp said:\n%s\n", out);
    qtsp_http_stop(srv);
    qtsp_signq_free(q);
    qtsp_ocsp_free(o);
    X509_free(rc);
    qtsp_key_free(priv);
    EVP_PKEY_free(pub);
    qtsp_hsm_free(hsm);
}

/* qtsp_ocsp_respond_async without any transport: the caller's wait decides
 * whether the answer is queued; done gets the whole OCSPResponse from the
 * signing thread. */
typedef struct async_rec {
    int waits, dones, refuse;
    qtsp_status rc;
    unsigned char der[4096];
    size_t len;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} async_rec;

static void *rec_wait(void *ctx)
{
    async_rec *r = ctx;
    r->waits++;
    return r->refuse ? NULL : r;
}

static void rec_done(void *ctx, qtsp_status rc, const unsigned char *der, size_t len)
{
    async_rec *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    r->len = len <= sizeof r->der ? len : 0;
    if (r->len)
        memcpy(r->der, der, len);
    r->dones++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int parses_as_successful(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    int ok = r && p == der + len && OCSP_response_status(r) == OCSP_RESPONSE_STATUS_SUCCESSFUL;
    OCSP_RESPONSE_free(r);
    return ok;
}

static void test_ocsp_async_queues_only_when_the_caller_waits(void)
{
    set_now(g_base);
    char d[700];
    snprintf(d, sizeof d, "%s/token-async", g_dir);
    qtsp_hsm *hsm = NULL;
    EVP_PKEY *pub = NULL;
    qtsp_key *priv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtest_token_key(d, "ocsp-a", "a-ocsp", &hsm, &pub, &priv), 0);
    X509 *rc =
        make_cert("OCSP async", pub, g_ca, g_ca_key, 34, g_base - 86400, g_base + 365 * 86400, 1);
    qtsp_ocsp *o = NULL;
    CU_ASSERT_FATAL(qtsp_ocsp_new(NULL, g_ca, rc, priv, g_store, &o) == QTSP_OK);
    long s = issue_now();
    unsigned char *req = NULL;
    size_t len = make_req(&s, 1, EVP_sha1(), g_ca, 16, &req); /* nonce: signed fresh */
    async_rec r = {.refuse = 0};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    qtsp_ocsp_async async = {rec_wait, rec_done, &r};
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    qtsp_ocsp_info info;
    int pending = 7;

    /* no queue: inline, wait never asked */
    CU_ASSERT_EQUAL(qtsp_ocsp_respond_async(o, req, len, &out, &info, &async, &pending), QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(r.waits, 0);
    CU_ASSERT(parses_as_successful(out.data, out.len));

    qtsp_signq *q = NULL;
    CU_ASSERT_FATAL(qtsp_signq_new(1, &q) == QTSP_OK);
    qtsp_ocsp_set_signq(o, q);
    /* a caller that cannot wait: inline */
    r.refuse = 1;
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_ocsp_respond_async(o, req, len, &out, &info, &async, &pending), QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(r.waits, 1);
    CU_ASSERT(parses_as_successful(out.data, out.len));
    /* no async at all: inline */
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_ocsp_respond_async(o, req, len, &out, &info, NULL, &pending), QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT(parses_as_successful(out.data, out.len));
    /* a caller that waits: queued, out untouched, done delivers the answer */
    r.refuse = 0;
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_ocsp_respond_async(o, req, len, &out, &info, &async, &pending), QTSP_OK);
    CU_ASSERT_EQUAL(pending, 1);
    CU_ASSERT_EQUAL(out.len, 0);
    pthread_mutex_lock(&r.mu);
    while (r.dones == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    CU_ASSERT_EQUAL(r.waits, 2);
    CU_ASSERT_EQUAL(r.dones, 1);
    CU_ASSERT_EQUAL(r.rc, QTSP_OK);
    CU_ASSERT(parses_as_successful(r.der, r.len));
    /* a cached answer (no nonce, one CertID) never waits */
    unsigned char *plain = NULL;
    size_t plen = make_req(&s, 1, EVP_sha1(), g_ca, -1, &plain);
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_ocsp_respond_async(o, plain, plen, &out, &info, &async, &pending),
                    QTSP_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(r.waits, 2);
    CU_ASSERT(parses_as_successful(out.data, out.len));

    qtsp_signq_free(q);
    qtsp_ocsp_free(o);
    qtsp_buf_cleanup(&out);
    OPENSSL_free(req);
    OPENSSL_free(plain);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    X509_free(rc);
    qtsp_key_free(priv);
    EVP_PKEY_free(pub);
    qtsp_hsm_free(hsm);
}

/* The core over a source that is no store (ocsp/ocsp_int.h): statuses from
 * an in-memory table, one snapshot per request, no cache. */
static void test_ocsp_core_answers_from_a_memory_source(void)
{
    set_now(g_base);
    const qtest_ocsp_mem_entry tab[] = {
        {{0x70, 0x01}, 2, {.state = QTSP_CERT_VALID}},
        {{0x70, 0x02},
         2,
         {.state = QTSP_CERT_ON_HOLD, .revoked_at = g_base - 10, .hold_until = g_base + 3600}},
        {{0x70, 0x03},
         2,
         {.state = QTSP_CERT_REVOKED,
          .reason = QTSP_REASON_KEY_COMPROMISE,
          .revoked_at = g_base - 20}},
    };
    qtest_ocsp_mem m = {tab, 3, 7, 0, 0, 0};
    qtsp_ocsp_source src;
    qtest_ocsp_mem_source(&m, &src);
    qtsp_ocsp *o = NULL, *saved = g_ocsp;
    CU_ASSERT_FATAL(qtsp_ocsp_new_source(NULL, g_ca, g_resp, qtest_key(g_resp_key), &src, &o) ==
                    QTSP_OK);
    g_ocsp = o; /* ask() answers through g_ocsp */
    answer a;
    single sg;
    long good = 0x7001, hold = 0x7002, rev = 0x7003, never = 0x7004;
    ask(&good, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    CU_ASSERT_FATAL(find(&a, good, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    CU_ASSERT_EQUAL(sg.this_upd, g_base);
    CU_ASSERT(has_archive_cutoff(&sg));
    CU_ASSERT_EQUAL(a.info.cacheable, 0); /* no cache: nothing pre-signed */
    CU_ASSERT_STRING_EQUAL(a.info.etag, "");
    CU_ASSERT_EQUAL(m.begins, 1);
    CU_ASSERT_EQUAL(m.ends, 1);
    assert_openssl(&a, good, NULL, "good");
    answer_free(&a);

    long all[] = {good, hold, rev, never};
    ask(all, 4, EVP_sha256(), 8, &a); /* one snapshot for the four */
    CU_ASSERT_EQUAL(m.begins, 2);
    CU_ASSERT_EQUAL(m.ends, 2);
    CU_ASSERT_FATAL(find(&a, hold, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_CERTIFICATEHOLD);
    CU_ASSERT_EQUAL(sg.rev, g_base - 10);
    CU_ASSERT_FATAL(find(&a, rev, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED);
    CU_ASSERT_EQUAL(sg.reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    CU_ASSERT_EQUAL(sg.rev, g_base - 20);
    CU_ASSERT_FATAL(find(&a, never, EVP_sha256(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_REVOKED); /* RFC 6960 2.2 */
    CU_ASSERT_EQUAL(sg.rev, 0);
    answer_free(&a);

    set_now(g_base + 3600); /* the core lapses the hold, not the source */
    ask(&hold, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_FATAL(find(&a, hold, EVP_sha1(), &sg));
    CU_ASSERT_EQUAL(sg.status, V_OCSP_CERTSTATUS_GOOD);
    answer_free(&a);

    m.fail = 1; /* an unreadable source is internalError */
    ask(&good, 1, EVP_sha1(), -1, &a);
    CU_ASSERT_EQUAL(a.status, OCSP_RESPONSE_STATUS_INTERNALERROR);
    CU_ASSERT_EQUAL(m.begins, m.ends);
    answer_free(&a);
    g_ocsp = saved;
    qtsp_ocsp_free(o);
    set_now(g_base);
}

static qtsp_status no_cache_get(void *snap, const unsigned char *key, size_t klen, const void **val,
                                size_t *vlen)
{
    FAIL(QTSP_ERR_NOT_FOUND, "no cache");
}

static void test_ocsp_new_source_rejects_incomplete_sources(void)
{
    qtest_ocsp_mem m = {NULL, 0, 0, 0, 0, 0};
    qtsp_ocsp_source src;
    qtsp_ocsp *o = NULL;
    qtest_ocsp_mem_source(&m, &src);
    src.status = NULL;
    CU_ASSERT_EQUAL(qtsp_ocsp_new_source(NULL, g_ca, g_resp, qtest_key(g_resp_key), &src, &o),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(o);
    qtest_ocsp_mem_source(&m, &src);
    src.cache_get = no_cache_get; /* a cache that cannot be written */
    CU_ASSERT_EQUAL(qtsp_ocsp_new_source(NULL, g_ca, g_resp, qtest_key(g_resp_key), &src, &o),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_ocsp_new_source(NULL, g_ca, g_resp, qtest_key(g_resp_key), NULL, &o),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_ocsp_new(NULL, g_ca, g_resp, qtest_key(g_resp_key), NULL, &o),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(o);
    qtsp_err_clear();
}

int main(void)
{
    if (setup() != 0) {
        fprintf(stderr, "test_ocsp: setup failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_ocsp_good_cert_verifies_with_openssl),
        QTEST(test_ocsp_sha256_certid_is_answered),
        QTEST(test_ocsp_hold_is_revoked_certificate_hold_until_released),
        QTEST(test_ocsp_hold_lapses_exactly_at_hold_until),
        QTEST(test_ocsp_revoked_key_compromise_carries_time_and_reason),
        QTEST(test_ocsp_never_issued_serial_is_extended_revoked),
        QTEST(test_ocsp_nonce_is_echoed_and_signed_fresh),
        QTEST(test_ocsp_nonce_length_bounds),
        QTEST(test_ocsp_two_certids_are_both_answered),
        QTEST(test_ocsp_too_many_certids_is_malformed),
        QTEST(test_ocsp_expired_cert_is_answered_with_archive_cutoff),
        QTEST(test_ocsp_status_change_drops_the_cached_answer),
        QTEST(test_ocsp_cached_answer_is_refreshed_after_half_validity),
        QTEST(test_ocsp_malformed_requests_get_malformed_request),
        QTEST(test_ocsp_unknown_issuer_is_unauthorized),
        QTEST(test_ocsp_foreign_certid_beside_ours_is_unknown),
        QTEST(test_ocsp_odd_hash_parameters_are_echoed_as_valid_der),
        QTEST(test_ocsp_signed_request_is_accepted_without_checking),
        QTEST(test_ocsp_unreadable_cache_entry_is_replaced),
        QTEST(test_ocsp_get_decode_accepts_all_base64_forms),
        QTEST(test_ocsp_get_form_of_a_real_request_is_answered),
        QTEST(test_ocsp_shipped_policy_loads),
        QTEST(test_ocsp_new_rejects_unfit_responder_and_policy),
        QTEST(test_ocsp_http_post_answers_openssl_client_with_nonce),
        QTEST(test_ocsp_signing_queue_answers_verify_and_failures_are_internal_error),
        QTEST(test_ocsp_async_queues_only_when_the_caller_waits),
        QTEST(test_ocsp_http_get_all_forms_with_cache_headers_and_304),
        QTEST(test_ocsp_core_answers_from_a_memory_source),
        QTEST(test_ocsp_new_source_rejects_incomplete_sources),
    };
    int rc = qtest_run("ocsp", cases, sizeof cases / sizeof cases[0]);
    teardown();
    return rc;
}
