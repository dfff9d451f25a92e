/* The AdES test world shared by tests/unit/test_ades.c (the builders) and
 * tests/unit/test_sign_validate.c (the validator): a root, an issuing CA, a
 * TSA unit and a delegated OCSP responder with software keys, our TSA core
 * (no journal) and our OCSP core over an in-memory status table, a signer
 * (serial 0x51) with its chain, and a one-page PDF. No CUnit in it. */
#ifndef QTSP_TESTS_QTEST_ADES_H
#define QTSP_TESTS_QTEST_ADES_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "sign/ades.h"
#include "tests/lib/qtest_ocsp_mem.h"

#define QTEST_CERT_CA 1u /* CA:TRUE, keyCertSign + cRLSign */
#define QTEST_CERT_QC 2u /* end entity with QcCompliance, QcSSCD, QcType esign */

/* A v3 certificate CN=cn for key, issued by (issuer, ikey) or self-signed,
 * valid from now + nb to now + na seconds; an end entity has keyUsage
 * digitalSignature + nonRepudiation and, when eku is given, that
 * extendedKeyUsage (with ocsp-nocheck for "OCSPSigning"). Aborts on
 * failure (a fixture). Caller frees. */
X509 *qtest_ades_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial,
                      unsigned flags, const char *eku, long nb, long na);

typedef struct qtest_ades_env {
    EVP_PKEY *root_key, *ca_key, *tsa_key, *resp_key, *signer_key;
    X509 *root, *ca, *tsa_cert, *resp, *signer;
    qtsp_tsa *tsa;
    qtsp_ocsp *ocsp;
    STACK_OF(X509) * chain, *extra, *tsa_chain;
    qtsp_ades_services sv; /* tsa, ocsp for ca, extra = TSA and OCSP certificates */
    qtsp_ades_signer s;    /* signer_key, signer (0x51, CN "<prefix> signer"), SHA-256 */
    qtest_ocsp_mem mem;
    char pdf[2048]; /* a one-page PDF with a classic cross-reference table */
    size_t pdf_len, pdf_xref;
} qtest_ades_env;

/* Builds the world; names start with prefix; tab[0..n) is the responder's
 * status table (borrowed); signer_flags: QTEST_CERT_QC or 0. 0 on success
 * (failures printed). */
int qtest_ades_env_setup(qtest_ades_env *e, const char *prefix, const qtest_ocsp_mem_entry *tab,
                         size_t n, unsigned signer_flags);
void qtest_ades_env_teardown(qtest_ades_env *e);

#endif
