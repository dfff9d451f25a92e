/* Unit tests for ca/issue.c: serials, SPKI fingerprints, a token key made
 * and certified in one step (removed again when certifying fails), and the
 * issuance record transaction (certificates, the root CRL's scope, one audit
 * event). */
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/issue.h"
#include "tests/lib/qtest.h"

#define BASE "http://127.0.0.1:8080"

static char g_dir[512];
static qtsp_hsm *g_hsm;

static qtsp_profile *policy(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/policies/%s.yaml", qtest_src_dir(), name);
    qtsp_profile *p = NULL;
    qtsp_err_clear();
    if (qtsp_profile_load(path, &p) != QTSP_OK)
        fprintf(stderr, "profile %s: %s\n", name, qtsp_err_message());
    return p;
}

static void test_issue_serial_is_positive_127_bits_and_random(void)
{
    unsigned char a[16], b[16];
    for (int i = 0; i < 200; i++) {
        CU_ASSERT_EQUAL_FATAL(qtsp_issue_serial(a), QTSP_OK);
        CU_ASSERT(a[0] != 0 && (a[0] & 0x80) == 0);
    }
    CU_ASSERT_EQUAL(qtsp_issue_serial(b), QTSP_OK);
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);
}

static void test_issue_spki_fingerprint_is_sha256_of_the_spki(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char hex[65];
    CU_ASSERT_EQUAL_FATAL(qtsp_spki_sha256_hex(k, hex), QTSP_OK);
    unsigned char *der = NULL, md[32];
    int n = i2d_PUBKEY(k, &der);
    SHA256(der, (size_t)n, md);
    char want[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", md[i]);
    CU_ASSERT_STRING_EQUAL(hex, want);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
}

static void test_issue_token_key_self_signed_then_by_issuer(void)
{
    qtsp_profile *root_p = policy("root-ca"), *tsa_p = policy("tsa-unit");
    CU_ASSERT_FATAL(root_p && tsa_p);
    qtsp_issued_key root, tsa;
    qtsp_err_clear();
    qtsp_status rc = qtsp_issue_token_key(g_hsm, root_p, "i-root", NULL, NULL, BASE, &root);
    if (rc != QTSP_OK)
        fprintf(stderr, "issue: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    CU_ASSERT_EQUAL(X509_verify(root.cert, root.pub), 1);
    CU_ASSERT_EQUAL(X509_check_issued(root.cert, root.cert), X509_V_OK);
    CU_ASSERT_EQUAL(strlen(root.fingerprint), 64);
    CU_ASSERT_EQUAL(qtsp_hsm_check_key_protected(g_hsm, "i-root"), QTSP_OK);
    qtsp_key *rk = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_key_from_token(g_hsm, "i-root", &rk), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_issue_token_key(g_hsm, tsa_p, "i-tsa", root.cert, rk, BASE, &tsa),
                          QTSP_OK);
    CU_ASSERT_EQUAL(X509_verify(tsa.cert, root.pub), 1);
    CU_ASSERT_EQUAL(X509_check_issued(root.cert, tsa.cert), X509_V_OK);
    /* the serial in the certificate is the one reported */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(tsa.cert);
    CU_ASSERT(sn->length == 16 && memcmp(sn->data, tsa.serial, 16) == 0);
    qtsp_issued_key_cleanup(&tsa);
    qtsp_issued_key_cleanup(&root);
    qtsp_key_free(rk);
    qtsp_profile_free(root_p);
    qtsp_profile_free(tsa_p);
}

static void test_issue_token_key_failure_removes_the_key(void)
{
    qtsp_profile *root_p = policy("root-ca");
    CU_ASSERT_FATAL(root_p != NULL);
    qtsp_issued_key k, other;
    memset(&k, 0x5a, sizeof k);
    CU_ASSERT_EQUAL_FATAL(qtsp_issue_token_key(g_hsm, root_p, "f-root", NULL, NULL, BASE, &other),
                          QTSP_OK);
    qtsp_key *ok = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_key_from_token(g_hsm, "f-root", &ok), QTSP_OK);
    /* a self-signed profile given an issuer: certifying fails, the new key goes */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_issue_token_key(g_hsm, root_p, "f-bad", other.cert, ok, BASE, &k),
                    QTSP_ERR_INVALID);
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, "f-bad", &pub), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_EQUAL(k.cert, (X509 *)(void *)0x5a5a5a5a5a5a5a5aull); /* untouched */
    /* a label taken: refused, and the existing key stays */
    CU_ASSERT_EQUAL(qtsp_issue_token_key(g_hsm, root_p, "f-root", NULL, NULL, BASE, &k),
                    QTSP_ERR_EXISTS);
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, "f-root", &pub), QTSP_OK);
    EVP_PKEY_free(pub);
    /* an issuer certificate without its key */
    CU_ASSERT_EQUAL(qtsp_issue_token_key(g_hsm, root_p, "f-x", other.cert, NULL, NULL, &k),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_issued_key_cleanup(&other);
    qtsp_key_free(ok);
    qtsp_profile_free(root_p);
}

typedef struct rec_ctx {
    qtsp_cert_record recs[3];
    size_t n;
    const json_t *details;
} rec_ctx;

static qtsp_status rec_txn(qtsp_txn *txn, void *vctx)
{
    rec_ctx *c = vctx;
    return qtsp_issue_record(txn, c->recs, c->n, "tester", "cert.issue", c->details);
}

static void fill(qtsp_cert_record *r, const char *issuer, X509 *x, unsigned char **der)
{
    memset(r, 0, sizeof *r);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    CU_ASSERT_EQUAL_FATAL(
        qtsp_serial_normalize(sn->data, (size_t)sn->length, r->serial, &r->serial_len), QTSP_OK);
    snprintf(r->issuer, sizeof r->issuer, "%s", issuer);
    snprintf(r->key_label, sizeof r->key_label, "k");
    snprintf(r->profile, sizeof r->profile, "p");
    int n = i2d_X509(x, der);
    r->der = *der;
    r->der_len = (size_t)n;
}

static void test_issue_record_stores_scopes_and_audits_once(void)
{
    char sdir[600];
    qtsp_store *st = qtest_store_fresh("issue", 8, sdir, sizeof sdir);
    qtsp_profile *root_p = policy("root-ca"), *tsa_p = policy("tsa-unit");
    qtsp_issued_key root, tsa;
    CU_ASSERT_EQUAL_FATAL(qtsp_issue_token_key(g_hsm, root_p, "r-root", NULL, NULL, BASE, &root),
                          QTSP_OK);
    qtsp_key *rk = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_key_from_token(g_hsm, "r-root", &rk), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_issue_token_key(g_hsm, tsa_p, "r-tsa", root.cert, rk, BASE, &tsa),
                          QTSP_OK);
    unsigned char *d0 = NULL, *d1 = NULL;
    json_t *why = json_pack("{s:s}", "why", "test");
    CU_ASSERT_PTR_NOT_NULL_FATAL(why);
    rec_ctx c = {.n = 2, .details = why};
    fill(&c.recs[0], "root", root.cert, &d0);
    fill(&c.recs[1], "root", tsa.cert, &d1);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, rec_txn, &c), QTSP_OK);
    /* both stored; only the TSU (not the self-signed root) in the root CRL's scope */
    qtsp_txn *txn = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &txn), QTSP_OK);
    for (size_t i = 0; i < 2; i++) {
        qtsp_cert_record got;
        CU_ASSERT_EQUAL(qtsp_certdb_get(txn, c.recs[i].serial, c.recs[i].serial_len, &got),
                        QTSP_OK);
        qtsp_cert_record_cleanup(&got);
    }
    const void *v = NULL;
    size_t vl = 0;
    CU_ASSERT_EQUAL(qtsp_txn_get0(txn, QTSP_T_META, "issued_by_root", 14, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL(vl, 1 + c.recs[1].serial_len);
    CU_ASSERT(vl == 1 + c.recs[1].serial_len &&
              memcmp((const unsigned char *)v + 1, c.recs[1].serial, c.recs[1].serial_len) == 0);
    qtsp_txn_abort(txn);
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    /* the same serial again: refused, and nothing of it is kept (one transaction) */
    qtsp_err_clear();
    CU_ASSERT_NOT_EQUAL(qtsp_store_write(st, rec_txn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    /* a record whose DER does not parse */
    rec_ctx badc = {.n = 1, .details = NULL};
    badc.recs[0] = c.recs[1];
    badc.recs[0].serial[0] ^= 1;
    badc.recs[0].der_len = 10;
    CU_ASSERT_EQUAL(qtsp_store_write(st, rec_txn, &badc), QTSP_ERR_INVALID);
    qtsp_err_clear();
    json_decref(why);
    OPENSSL_free(d0);
    OPENSSL_free(d1);
    qtsp_issued_key_cleanup(&root);
    qtsp_issued_key_cleanup(&tsa);
    qtsp_key_free(rk);
    qtsp_profile_free(root_p);
    qtsp_profile_free(tsa_p);
    qtest_store_done(st, sdir);
}

int main(void)
{
    const char *d = qtest_tmpdir("issue");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    if (qtest_softhsm_token(g_dir, "issue-test") != 0 ||
        qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "issue-test", QTEST_PIN, &g_hsm) != QTSP_OK) {
        printf("qtest: issue 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_issue_serial_is_positive_127_bits_and_random),
        QTEST(test_issue_spki_fingerprint_is_sha256_of_the_spki),
        QTEST(test_issue_token_key_self_signed_then_by_issuer),
        QTEST(test_issue_token_key_failure_removes_the_key),
        QTEST(test_issue_record_stores_scopes_and_audits_once),
    };
    int r = qtest_run("issue", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtest_rmtree(g_dir);
    return r;
}
