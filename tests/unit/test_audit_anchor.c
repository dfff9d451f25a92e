/* Unit tests for ca/audit_anchor.c: anchoring the audit chain head with a
 * time-stamp and checking the chain against the anchor. The time-stamps
 * come from OpenSSL's own RFC 3161 responder (TS_RESP_CTX) with software
 * keys: a real TSA, not ours (the server's is tested end to end in
 * tests/integration/test_audit_anchor.sh). */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/audit.h"
#include "ca/audit_anchor.h"
#include "ca/store.h"
#include "core/codec.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_cert.h"

static char g_dir[512], g_file[600];

typedef struct tsa {
    EVP_PKEY *root_key, *key;
    X509 *root, *cert;
} tsa;

static void tsa_make(tsa *t, const char *cn)
{
    time_t now = time(NULL);
    static const unsigned char s1[] = {1}, s2[] = {2};
    t->root_key = EVP_EC_gen("P-256");
    t->key = EVP_EC_gen("P-256");
    t->root = qtest_mkcert(NULL, t->root_key, t->root_key, cn, s1, 1, 1, now - 60, now + 86400);
    t->cert =
        qtest_mkcert(t->root, t->root_key, t->key, "anchor TSU", s2, 1, 0, now - 60, now + 86400);
    X509V3_CTX v;
    X509V3_set_ctx(&v, t->root, t->cert, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, NID_ext_key_usage, "critical,timeStamping");
    CU_ASSERT_FATAL(e && X509_add_ext(t->cert, e, -1) == 1);
    X509_EXTENSION_free(e);
    CU_ASSERT_FATAL(X509_sign(t->cert, t->root_key, EVP_sha256()) > 0);
}

static void tsa_free(tsa *t)
{
    X509_free(t->root);
    X509_free(t->cert);
    EVP_PKEY_free(t->root_key);
    EVP_PKEY_free(t->key);
}

/* qtsp_audit_stamp_fn: a TimeStampReq for hash answered by OpenSSL's responder. */
static qtsp_status stamp(void *ctx, const unsigned char hash[QTSP_AUDIT_HASH_LEN], qtsp_buf *out)
{
    tsa *t = ctx;
    qtsp_status rc = QTSP_ERR_CRYPTO;
    TS_REQ *req = TS_REQ_new();
    TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
    X509_ALGOR *alg = X509_ALGOR_new();
    TS_RESP_CTX *rc_ = TS_RESP_CTX_new();
    ASN1_OBJECT *pol = OBJ_txt2obj("1.3.6.1.4.1.99999.7", 1);
    BIO *in = BIO_new(BIO_s_mem());
    TS_RESP *resp = NULL;
    unsigned char *der = NULL;
    if (!req || !mi || !alg || !rc_ || !pol || !in)
        goto out;
    X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL);
    if (!TS_MSG_IMPRINT_set_algo(mi, alg) ||
        !TS_MSG_IMPRINT_set_msg(mi, (unsigned char *)hash, QTSP_AUDIT_HASH_LEN) ||
        !TS_REQ_set_version(req, 1) || !TS_REQ_set_msg_imprint(req, mi) ||
        !TS_REQ_set_cert_req(req, 1) || i2d_TS_REQ_bio(in, req) <= 0)
        goto out;
    if (!TS_RESP_CTX_set_signer_cert(rc_, t->cert) || !TS_RESP_CTX_set_signer_key(rc_, t->key) ||
        !TS_RESP_CTX_set_def_policy(rc_, pol) || !TS_RESP_CTX_add_md(rc_, EVP_sha256()))
        goto out;
    resp = TS_RESP_create_response(rc_, in);
    int n = resp ? i2d_TS_RESP(resp, &der) : 0;
    if (n > 0) {
        qtsp_buf_reset(out);
        rc = qtsp_buf_append(out, der, (size_t)n);
    }
out:
    OPENSSL_free(der);
    TS_RESP_free(resp);
    BIO_free(in);
    ASN1_OBJECT_free(pol);
    TS_RESP_CTX_free(rc_);
    X509_ALGOR_free(alg);
    TS_MSG_IMPRINT_free(mi);
    TS_REQ_free(req);
    if (rc != QTSP_OK)
        rc = qtsp_err_set(QTSP_ERR_CRYPTO, __FILE__, __LINE__, "test TSA failed");
    return rc;
}

static qtsp_status stamp_fails(void *ctx, const unsigned char hash[QTSP_AUDIT_HASH_LEN],
                               qtsp_buf *out)
{
    (void)ctx;
    (void)hash;
    (void)out;
    FAIL(QTSP_ERR_CRYPTO, "the TSA is down");
}

static qtsp_status append_n(qtsp_txn *txn, void *ctx)
{
    int n = *(int *)ctx;
    for (int i = 0; i < n; i++) {
        json_t *d = json_pack("{s:i}", "i", i);
        qtsp_status rc = qtsp_audit_append(txn, "cli:test", "cert.issue", d, NULL);
        json_decref(d);
        TRY(rc);
    }
    return QTSP_OK;
}

static void append(qtsp_store *st, int n)
{
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, append_n, &n), QTSP_OK);
}

static uint64_t count_of(qtsp_store *st)
{
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    return count;
}

static qtsp_store *fresh(void)
{
    qtsp_store *st = qtest_store_fresh("anchor", 4, g_dir, sizeof g_dir);
    snprintf(g_file, sizeof g_file, "%s/audit-anchor.json", g_dir);
    return st;
}

static qtsp_status check(qtsp_store *st, tsa *t, uint64_t *seq)
{
    char what[256];
    return qtsp_audit_anchor_check(st, g_file, count_of(st), t->cert, t->root, seq, what,
                                   sizeof what);
}

static void test_anchor_stamps_the_head_and_verifies(void)
{
    tsa t;
    tsa_make(&t, "anchor root");
    qtsp_store *st = fresh();
    uint64_t seq = 99, at = 0;
    /* an empty log: nothing to anchor, no file */
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    CU_ASSERT_EQUAL(seq, 0);
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_ERR_NOT_FOUND);
    append(st, 5);
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    CU_ASSERT_EQUAL(seq, 5);
    CU_ASSERT_EQUAL(count_of(st), 6); /* the anchor's own record */
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_OK);
    CU_ASSERT_EQUAL(at, 5);
    /* nothing new since: no second anchor */
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    CU_ASSERT_EQUAL(seq, 0);
    CU_ASSERT_EQUAL(count_of(st), 6);
    append(st, 2);
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    CU_ASSERT_EQUAL(seq, 8);
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_OK);
    CU_ASSERT_EQUAL(at, 8);
    qtest_store_done(st, g_dir);
    tsa_free(&t);
}

typedef struct cut_ctx {
    uint64_t keep, last;
} cut_ctx;

/* What an attacker with the store file does: the tail removed, the counter set back. */
static qtsp_status cut_tail(qtsp_txn *txn, void *ctx)
{
    cut_ctx *c = ctx;
    for (uint64_t s = c->keep + 1; s <= c->last; s++) {
        unsigned char k[8];
        qtsp_be64_put(k, s);
        TRY(qtsp_txn_del(txn, QTSP_T_AUDIT, k, sizeof k));
    }
    unsigned char be[8];
    qtsp_be64_put(be, c->keep);
    return qtsp_txn_put(txn, QTSP_T_COUNTERS, "audit_seq", 9, be, sizeof be, 0);
}

static void test_anchor_check_reports_a_truncated_tail(void)
{
    tsa t;
    tsa_make(&t, "anchor root");
    qtsp_store *st = fresh();
    uint64_t seq = 0, at = 0;
    append(st, 10);
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    cut_ctx c = {7, 11};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, cut_tail, &c), QTSP_OK);
    CU_ASSERT_EQUAL(count_of(st), 7); /* the chain alone verifies */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_ERR_AUDIT_BROKEN);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "truncated tail"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "record 10 was anchored"));
    qtsp_err_clear();
    qtest_store_done(st, g_dir);
    tsa_free(&t);
}

static void rewrite_field(const char *field, const char *value)
{
    json_error_t e;
    json_t *a = json_load_file(g_file, 0, &e);
    CU_ASSERT_FATAL(a != NULL);
    json_object_set_new(a, field, json_string(value));
    CU_ASSERT(json_dump_file(a, g_file, JSON_COMPACT) == 0);
    json_decref(a);
}

static void test_anchor_check_refuses_forged_and_foreign_anchors(void)
{
    tsa t, other;
    tsa_make(&t, "anchor root");
    tsa_make(&other, "another root");
    qtsp_store *st = fresh();
    uint64_t seq = 0, at = 0;
    append(st, 3);
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp, &t, &seq), QTSP_OK);
    /* a token from a TSA that is not ours */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(check(st, &other, &at), QTSP_ERR_AUDIT_BROKEN);
    /* another hash than the token covers */
    char zero[64];
    unsigned char z[QTSP_AUDIT_HASH_LEN] = {0};
    qtsp_base64url_encode(z, sizeof z, zero, sizeof zero);
    rewrite_field("chain_hash", zero);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_ERR_AUDIT_BROKEN);
    /* garbage */
    rewrite_field("tsa_response", "not*base64");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_ERR_AUDIT_BROKEN);
    FILE *f = fopen(g_file, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("[1,2]", f);
    fclose(f);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(check(st, &t, &at), QTSP_ERR_AUDIT_BROKEN);
    qtsp_err_clear();
    qtest_store_done(st, g_dir);
    tsa_free(&t);
    tsa_free(&other);
}

static void test_anchor_that_cannot_be_stamped_changes_nothing(void)
{
    qtsp_store *st = fresh();
    uint64_t seq = 7;
    append(st, 4);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_audit_anchor(st, g_file, "system:test", stamp_fails, NULL, &seq),
                    QTSP_ERR_CRYPTO);
    CU_ASSERT_EQUAL(seq, 0);
    CU_ASSERT_EQUAL(count_of(st), 4);
    FILE *f = fopen(g_file, "r");
    CU_ASSERT_PTR_NULL(f);
    if (f)
        fclose(f);
    qtsp_err_clear();
    qtest_store_done(st, g_dir);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_anchor_stamps_the_head_and_verifies),
        QTEST(test_anchor_check_reports_a_truncated_tail),
        QTEST(test_anchor_check_refuses_forged_and_foreign_anchors),
        QTEST(test_anchor_that_cannot_be_stamped_changes_nothing),
    };
    return qtest_run("audit_anchor", cases, sizeof cases / sizeof cases[0]);
}
