/* Signature validation (ETSI EN 319 102-1) of CAdES and PAdES files, with
 * the indications TOTAL-PASSED / TOTAL-FAILED / INDETERMINATE and their
 * sub-indications; docs/validation.md says which sub-indication each case
 * gives and why. Transport-free: bytes in, a JSON report out; the HTTP
 * route (sign/validate_http.c) and `qtsp validate` only carry them.
 *
 * What a signature is checked against:
 *   - the trust anchors given at qtsp_validator_new (the home's root by
 *     default, more from policies/trust.yaml);
 *   - revocation data in the file (CAdES revocation-values, PAdES DSS
 *     OCSP answers) when it covers the signing time, else our own status
 *     store through the status hook (certificates of our issuing CA).
 *     Nothing is ever fetched from a URL found in the file;
 *   - the time-stamps in the file (signature time-stamp, CAdES archive
 *     time-stamp v3, PAdES document time-stamps): proofs of existence.
 *
 * Thread safety: a qtsp_validator is immutable once made; any number of
 * threads may validate with it at once (the status hook must allow it). */
#ifndef QTSP_SIGN_VALIDATE_H
#define QTSP_SIGN_VALIDATE_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/certdb.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

/* Largest file (and detached content) accepted. */
#define QTSP_VALIDATE_MAX_FILE ((size_t)32 << 20)

/* Our own status of cert (issued by issuer): QTSP_OK with *out as stored
 * (qtsp_cert_status), QTSP_ERR_NOT_FOUND when cert is not one of ours (no
 * status known), another error when the lookup failed. */
typedef qtsp_status (*qtsp_validate_status_fn)(void *ctx, X509 *cert, X509 *issuer,
                                               qtsp_cert_status *out);

/* A trust anchor. */
typedef struct qtsp_validate_anchor {
    X509 *cert;             /* borrowed for qtsp_validator_new (up-referenced) */
    int revocation_checked; /* 0: signers under it pass without revocation data */
} qtsp_validate_anchor;

typedef struct qtsp_validator_opts {
    const qtsp_validate_anchor *anchors;
    size_t n_anchors; /* >= 1 */
    /* certificates that help build chains (our issuing CA, TSA, OCSP
     * responder); never trusted by themselves. May be NULL. */
    STACK_OF(X509) * intermediates;
    qtsp_validate_status_fn status; /* may be NULL: only the file's data */
    void *status_ctx;
} qtsp_validator_opts;

typedef struct qtsp_validator qtsp_validator;

/* QTSP_ERR_INVALID without anchors, QTSP_ERR_NOMEM. *out is the caller's
 * (qtsp_validator_free). */
qtsp_status qtsp_validator_new(const qtsp_validator_opts *o, qtsp_validator **out) QTSP_MUST_USE;
void qtsp_validator_free(qtsp_validator *v);
/* The intermediates v holds (its own references, in the order given). */
STACK_OF(X509) * qtsp_validator_intermediates(const qtsp_validator *v);

/* Most trust anchors policies/trust.yaml may list. */
#define QTSP_VALIDATE_MAX_ANCHORS 16

/* Loads the trust anchors of policies/trust.yaml (path):
 *   anchors:
 *     - file: public/root-ca.crt   # PEM certificate; relative to home
 *       revocation: required       # or none: no revocation data needed
 * into out[0..cap-1] (*n of them; certificates are the caller's: X509_free
 * each). A missing file (a home made before the validation service) gives
 * home/public/root-ca.crt with revocation required. Errors: QTSP_ERR_CONFIG
 * (the file names the line), QTSP_ERR_IO / QTSP_ERR_INVALID (a certificate
 * file that cannot be read), QTSP_ERR_TOO_BIG (more than cap). */
qtsp_status qtsp_validate_load_trust(const char *path, const char *home, qtsp_validate_anchor *out,
                                     size_t cap, size_t *n) QTSP_MUST_USE;

/* A status hook over our own store: certificates issued by issuing (the
 * signers') and by root (the TSA unit's, the validation service's). */
typedef struct qtsp_validate_store {
    qtsp_store *store;
    X509 *issuing;
    X509 *root; /* may be NULL: only the issuing CA's certificates */
} qtsp_validate_store;

/* qtsp_validate_status_fn over ctx (a qtsp_validate_store): the stored
 * status of cert when issuer is our issuing CA (or our root) and the store
 * has the serial as one that CA issued, QTSP_ERR_NOT_FOUND otherwise, the
 * store's errors. Thread-safe (a read transaction per call). */
qtsp_status qtsp_validate_store_status(void *ctx, X509 *cert, X509 *issuer,
                                       qtsp_cert_status *out) QTSP_MUST_USE;

/* Validates every signature of file (len bytes): a PDF (PAdES: each
 * /ETSI.CAdES.detached or adbe.pkcs7.detached signature, document
 * time-stamps as proofs) or a CMS SignedData in DER or PEM (CAdES;
 * content is the detached content, or NULL for an enveloping signature).
 * now: the validation time (seconds). *out (the caller's) is the report:
 *   {"format":"PAdES"|"CAdES","validation_time":RFC 3339,
 *    "signatures":[{"indication","sub_indication"?,"message"?,"signer",
 *      "signing_time","qualified","qc":{...},"level","certificate":{...},
 *      "chain":[...],"timestamps":[...],"revocation":{...}, ...}]}
 * A signature that does not verify is a report entry, not an error.
 * Errors (the file as a whole is unusable, with a message for the client):
 * QTSP_ERR_INVALID (neither PDF nor CMS, a PDF that does not parse, a CMS
 * that is not SignedData, content given to an enveloping signature),
 * QTSP_ERR_TOO_BIG (over QTSP_VALIDATE_MAX_FILE), QTSP_ERR_NOMEM. */
qtsp_status qtsp_validate(const qtsp_validator *v, const unsigned char *file, size_t len,
                          const unsigned char *content, size_t content_len, int64_t now,
                          json_t **out) QTSP_MUST_USE;

/* The report (as qtsp_validate made it) as XML in the style of ETSI TS
 * 119 102-2 (sign/validate_report.c), UTF-8, appended to out.
 * QTSP_ERR_INVALID (no report), QTSP_ERR_NOMEM / QTSP_ERR_TOO_BIG of out. */
qtsp_status qtsp_validate_report_xml(const json_t *report, qtsp_buf *out) QTSP_MUST_USE;

/* The XML report of qtsp_validate_report_xml signed by the validation
 * service as an enveloped XAdES signature (EN 319 132-1; ds:Signature the
 * last child of vr:ValidationReport, as TS 119 102-2 places it): B-T with a
 * signature time-stamp of sv->tsa when sv is given, else B-B; signing_time
 * the SigningTime. Appended to out. Errors of qtsp_validate_report_xml and
 * qtsp_xades_sign (sign/ades.h). Thread-safe as those are. */
struct qtsp_ades_services;
struct qtsp_ades_signer;
qtsp_status qtsp_validate_report_signed(const json_t *report, const struct qtsp_ades_services *sv,
                                        const struct qtsp_ades_signer *signer, int64_t signing_time,
                                        qtsp_buf *out) QTSP_MUST_USE;

#endif
