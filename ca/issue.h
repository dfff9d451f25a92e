/* Issuing a certificate on the CA side: a fresh key in the token certified
 * by a profile (the key ceremony, rekey), and the one transaction that
 * records issued certificates with their audit event (the ceremony, rekey
 * and the RA's issuance). */
#ifndef QTSP_CA_ISSUE_H
#define QTSP_CA_ISSUE_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/key.h"
#include "ca/profile.h"
#include "ca/store.h"
#include "core/err.h"

/* 127 random bits, positive, as a 16-byte big-endian serial (EN 319 412-1,
 * CA/B: at least 64 bits from a CSPRNG). */
qtsp_status qtsp_issue_serial(unsigned char s[16]) QTSP_MUST_USE;

/* Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo of pub. */
qtsp_status qtsp_spki_sha256_hex(EVP_PKEY *pub, char out[65]) QTSP_MUST_USE;

/* What qtsp_issue_token_key made: the certificate, the public key, the
 * serial and the SPKI fingerprint. Caller frees cert and pub. */
typedef struct qtsp_issued_key {
    X509 *cert;
    EVP_PKEY *pub;
    unsigned char serial[16];
    char fingerprint[65];
} qtsp_issued_key;

/* Generates a key of the profile's key type in the token under label
 * (checked sensitive and never extractable), and certifies it with prof,
 * signed by issuer_key as issuer (both NULL: self-signed with the new key).
 * On failure the key made here is destroyed again and *out is untouched.
 * Errors of qtsp_hsm_generate, qtsp_profile_issue and the token. */
qtsp_status qtsp_issue_token_key(qtsp_hsm *hsm, const qtsp_profile *prof, const char *label,
                                 X509 *issuer, const qtsp_key *issuer_key, const char *base_url,
                                 qtsp_issued_key *out) QTSP_MUST_USE;
void qtsp_issued_key_cleanup(qtsp_issued_key *k);

/* In txn: stores each of the n records (qtsp_certdb_put), notes those the
 * root issued to another key (issuer "root", not self-signed) in the root
 * CRL's scope, then appends one audit event by actor with details (a JSON
 * object, borrowed, or NULL; qtsp_audit_append). Errors of the store, certdb
 * and audit. */
qtsp_status qtsp_issue_record(qtsp_txn *txn, const qtsp_cert_record *recs, size_t n,
                              const char *actor, const char *event,
                              const json_t *details) QTSP_MUST_USE;

#endif
