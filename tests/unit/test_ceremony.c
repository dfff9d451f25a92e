/* Unit tests for ca/ceremony.c: the five keys made and certified in a real
 * SoftHSM2 token with the shipped profiles (root self-signed, issuing CA,
 * TSA unit and validation service by the root, OCSP responder by the
 * issuing CA), the report, the record (five certificates, one ceremony.keys
 * audit event), and refusals. */
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/ceremony.h"
#include "tests/lib/qtest.h"

#define BASE "http://127.0.0.1:8080"

static char g_dir[512], g_policies[1024];
static qtsp_hsm *g_hsm;

static void test_ceremony_makes_certifies_reports_and_records(void)
{
    qtsp_ceremony c;
    qtsp_ceremony_init(&c, "c-root", "c-issuing", "c-ocsp", "c-tsa", "c-validation");
    CU_ASSERT_STRING_EQUAL(c.keys[QTSP_CEREMONY_OCSP].role, "ocsp");
    CU_ASSERT_STRING_EQUAL(c.keys[QTSP_CEREMONY_TSA].cert_file, "tsa.crt");
    qtsp_err_clear();
    qtsp_status rc = qtsp_ceremony_make_keys(&c, g_hsm, g_policies, BASE);
    if (rc != QTSP_OK)
        fprintf(stderr, "make_keys: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    X509 *root = c.keys[QTSP_CEREMONY_ROOT].made.cert;
    X509 *iss = c.keys[QTSP_CEREMONY_ISSUING].made.cert;
    CU_ASSERT_EQUAL(X509_check_issued(root, root), X509_V_OK);
    CU_ASSERT_EQUAL(X509_check_issued(root, iss), X509_V_OK);
    CU_ASSERT_EQUAL(X509_check_issued(iss, c.keys[QTSP_CEREMONY_OCSP].made.cert), X509_V_OK);
    CU_ASSERT_EQUAL(X509_check_issued(root, c.keys[QTSP_CEREMONY_TSA].made.cert), X509_V_OK);
    CU_ASSERT_EQUAL(X509_check_issued(root, c.keys[QTSP_CEREMONY_VALIDATION].made.cert), X509_V_OK);
    CU_ASSERT_STRING_EQUAL(c.keys[QTSP_CEREMONY_VALIDATION].cert_file, "validation.crt");
    CU_ASSERT_EQUAL(X509_verify(iss, c.keys[QTSP_CEREMONY_ROOT].made.pub), 1);
    CU_ASSERT_EQUAL(X509_verify(c.keys[QTSP_CEREMONY_OCSP].made.cert, X509_get0_pubkey(iss)), 1);
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++)
        CU_ASSERT_EQUAL(qtsp_hsm_check_key_protected(g_hsm, c.keys[i].label), QTSP_OK);

    qtsp_ceremony_facts f = {.actor = "alice",
                             .token_label = "cer-test",
                             .token_where = "embedded SoftHSM2",
                             .home = "/home/q",
                             .base_url = BASE,
                             .clock_synced = 1};
    snprintf(f.model, sizeof f.model, "SoftHSM v2");
    qtsp_buf report;
    qtsp_buf_init(&report, 1 << 20);
    json_t *details = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_ceremony_report(&c, &f, &report, &details), QTSP_OK);
    char *dtxt = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dtxt);
    CU_ASSERT_EQUAL_FATAL(qtsp_buf_append(&report, "", 1), QTSP_OK);
    const char *txt = (const char *)report.data;
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "qtsp key ceremony report"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "run by:            alice"));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, c.keys[QTSP_CEREMONY_TSA].made.fingerprint));
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "synchronised (adjtimex)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dtxt, "\"role\":\"issuing-ca\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(dtxt, "\"operator\":\"alice\""));

    char sdir[600];
    qtsp_store *st = qtest_store_fresh("ceremony", 8, sdir, sizeof sdir);
    CU_ASSERT_EQUAL(qtsp_ceremony_record(&c, st, "alice", details), QTSP_OK);
    qtsp_txn *txn = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &txn), QTSP_OK);
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++) {
        qtsp_cert_record got;
        CU_ASSERT_EQUAL(qtsp_certdb_get(txn, c.keys[i].made.serial, 16, &got), QTSP_OK);
        CU_ASSERT_STRING_EQUAL(got.issuer, i == QTSP_CEREMONY_OCSP ? "issuing" : "root");
        CU_ASSERT_STRING_EQUAL(got.key_label, c.keys[i].label);
        qtsp_cert_record_cleanup(&got);
    }
    /* the root CRL covers the issuing CA, the TSU and the validation service */
    const void *v = NULL;
    size_t vl = 0;
    CU_ASSERT_EQUAL(qtsp_txn_get0(txn, QTSP_T_META, "issued_by_root", 14, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL(vl, 3 * 17);
    qtsp_txn_abort(txn);
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    /* recorded once only */
    qtsp_err_clear();
    CU_ASSERT_NOT_EQUAL(qtsp_ceremony_record(&c, st, "alice", details), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    qtsp_err_clear();
    qtest_store_done(st, sdir);
    free(dtxt);
    json_decref(details);
    qtsp_buf_cleanup(&report);
    qtsp_ceremony_cleanup(&c);
    qtsp_ceremony_cleanup(&c); /* twice is harmless */
}

static void test_ceremony_refuses_taken_labels_and_missing_policies(void)
{
    qtsp_ceremony c;
    qtsp_ceremony_init(&c, "d-root", "d-issuing", "d-ocsp", "d-tsa", "d-validation");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ceremony_make_keys(&c, g_hsm, "/nonexistent/policies", BASE), QTSP_ERR_IO);
    EVP_PKEY *pub = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, "d-root", &pub), QTSP_ERR_HSM_NO_KEY);
    qtsp_ceremony_cleanup(&c);
    /* the root label is taken: nothing new is certified */
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_generate(g_hsm, "e-root", QTSP_KEY_EC_P256, NULL), QTSP_OK);
    qtsp_ceremony_init(&c, "e-root", "e-issuing", "e-ocsp", "e-tsa", "e-validation");
    CU_ASSERT_EQUAL(qtsp_ceremony_make_keys(&c, g_hsm, g_policies, BASE), QTSP_ERR_EXISTS);
    CU_ASSERT_PTR_NULL(c.keys[QTSP_CEREMONY_ROOT].made.cert);
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, "e-issuing", &pub), QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    qtsp_ceremony_cleanup(&c);
}

int main(void)
{
    const char *d = qtest_tmpdir("ceremony");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    snprintf(g_policies, sizeof g_policies, "%s/policies", qtest_src_dir());
    if (qtest_softhsm_token(g_dir, "cer-test") != 0 ||
        qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "cer-test", QTEST_PIN, &g_hsm) != QTSP_OK) {
        printf("qtest: ceremony 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_ceremony_makes_certifies_reports_and_records),
        QTEST(test_ceremony_refuses_taken_labels_and_missing_policies),
    };
    int r = qtest_run("ceremony", cases, sizeof cases / sizeof cases[0]);
    qtsp_hsm_free(g_hsm);
    qtest_rmtree(g_dir);
    return r;
}
