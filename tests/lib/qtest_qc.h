/* Shared certificate assertions for the unit tests. */
#ifndef QTSP_TESTS_QTEST_QC_H
#define QTSP_TESTS_QTEST_QC_H

#include <CUnit/CUnit.h>
#include <openssl/x509.h>

typedef struct qtest_qc_expect {
    const char *given_name, *surname, *country, *national_id;
    const char *base_url;       /* AIA / CRL DP prefix */
    const char *cps_url;        /* CPS URI of the TSP's own policy */
    const char *own_policy_oid; /* the TSP's CP OID */
    int validity_years;
} qtest_qc_expect;

/* Asserts every line of standards.md "Qualified certificate for a natural
 * person" on q, issued by issuer (CUnit assertions; FATAL ones abort the test). */
void qtest_assert_qualified_cert(X509 *q, X509 *issuer, const qtest_qc_expect *e);

/* The value of the subject attribute nid (last one), its ASN.1 string type
 * and how many there are. Borrowed from x. */
const char *qtest_name_entry(X509 *x, int nid, int *type, int *count);
/* 1 when o is the dotted OID want. */
int qtest_oid_is(const ASN1_OBJECT *o, const char *want);
/* The extension with dotted OID oid, or NULL. Borrowed from x. */
X509_EXTENSION *qtest_ext_by_oid(X509 *x, const char *oid);

#endif
