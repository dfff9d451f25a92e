/* Certificate profiles are data: policies/<name>.yaml says what a
 * certificate carries; this engine turns a profile + a request into a signed
 * X509. The ceremony's CA, OCSP and TSA certificates and the qualified
 * natural-person certificates all go through it.
 * A loaded profile is immutable and may be shared between threads. */
#ifndef QTSP_CA_PROFILE_H
#define QTSP_CA_PROFILE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

#include "ca/key.h"
#include "core/err.h"

typedef struct qtsp_profile qtsp_profile;

/* Loads and validates a profile file (schema: docs/profiles.md). Errors:
 * QTSP_ERR_CONFIG "file:line:col: key: why" for syntax, unknown keys and
 * inconsistent entries; QTSP_ERR_IO unreadable; QTSP_ERR_TOO_BIG > 1 MiB.
 * *out owned by the caller. */
qtsp_status qtsp_profile_load(const char *path, qtsp_profile **out) QTSP_MUST_USE;
void qtsp_profile_free(qtsp_profile *p);

/* Key type name from the profile ("ec-p256", ...), see qtsp_keytype_parse. */
const char *qtsp_profile_key_type(const qtsp_profile *p);
const char *qtsp_profile_name(const qtsp_profile *p);

/* Subject attributes; unused ones NULL. UTF-8. */
typedef struct qtsp_subject_attrs {
    const char *country;        /* C */
    const char *organization;   /* O */
    const char *org_identifier; /* organizationIdentifier (2.5.4.97) */
    const char *common_name;    /* CN; for natural persons built from names when NULL */
    const char *given_name;
    const char *surname;
    const char *serial_number; /* e.g. "PNOBG-8001010000" */
} qtsp_subject_attrs;

typedef struct qtsp_cert_request {
    qtsp_subject_attrs subject;
    EVP_PKEY *subject_key;       /* public key to certify */
    X509 *issuer;                /* NULL: self-signed with issuer_key */
    const qtsp_key *issuer_key;  /* signs (ca/key.h; a token key in production) */
    const unsigned char *serial; /* big-endian, positive, <= 20 bytes */
    size_t serial_len;
    time_t not_before;    /* 0 = now (injected clock) */
    const char *base_url; /* for AIA / CRL DP, no trailing slash */
} qtsp_cert_request;

/* Builds and signs a certificate. *out owned by the caller, written only on
 * success. Thread-safe for a shared profile. Errors: QTSP_ERR_INVALID for a
 * bad request (zero or > 20-octet serial, subject attribute missing, not
 * allowed or malformed, subject key type not allowed, issuer not a CA,
 * issuer given to a self-signed profile or missing otherwise, notAfter past
 * the issuer's, bad base_url); QTSP_ERR_UNSUPPORTED for an issuer key type
 * we cannot sign with; QTSP_ERR_CRYPTO when signing fails or the signature
 * does not verify with the issuer's public key. base_url may be NULL when
 * the profile has no "{base}" URL. */
qtsp_status qtsp_profile_issue(const qtsp_profile *p, const qtsp_cert_request *req,
                               X509 **out) QTSP_MUST_USE;

#endif
