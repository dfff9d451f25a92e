/* Throw-away certificates for tests and benches (no CUnit dependency, so
 * bench/crl_fill.c links it too). */
#ifndef QTSP_TESTS_QTEST_CERT_H
#define QTSP_TESTS_QTEST_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

#include "ca/key.h"

/* A v3 certificate C=BG, CN=cn for key, with the given serial (big-endian
 * bytes) and validity, signed with ECDSA-SHA-384 by (issuer, ikey) or
 * self-signed when issuer is NULL (ikey then signs). ca: CA:TRUE with
 * keyCertSign+cRLSign, else CA:FALSE with nonRepudiation; SKI and AKI.
 * NULL on any failure. Caller frees. */
X509 *qtest_mkcert(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *key, const char *cn,
                   const unsigned char *serial, size_t slen, int ca, time_t nb, time_t na);

/* A software P-256 signer for fuzzers and benches: a new key, its
 * self-signed certificate (qtest_mkcert, one-byte serial, valid 2023-11 to
 * 2033-05) and the key's ECDSA-SHA-256 algorithm. 0, or -1 with nothing
 * set (qtsp_err_message() may say why). Caller frees *cert and *key. */
int qtest_soft_signer(const char *cn, unsigned char serial, int ca, X509 **cert, qtsp_key **key,
                      qtsp_sigalg *alg);

#endif
