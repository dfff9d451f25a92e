/* Throw-away certificates for tests and benches (no CUnit dependency, so
 * bench/crl_fill.c links it too). */
#ifndef QTSP_TESTS_QTEST_CERT_H
#define QTSP_TESTS_QTEST_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

/* A v3 certificate C=BG, CN=cn for key, with the given serial (big-endian
 * bytes) and validity, signed with ECDSA-SHA-384 by (issuer, ikey) or
 * self-signed when issuer is NULL (ikey then signs). ca: CA:TRUE with
 * keyCertSign+cRLSign, else CA:FALSE with nonRepudiation; SKI and AKI.
 * NULL on any failure. Caller frees. */
X509 *qtest_mkcert(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *key, const char *cn,
                   const unsigned char *serial, size_t slen, int ca, time_t nb, time_t na);

#endif
