/* OCSP responder core (RFC 6960, nonces RFC 9654, lightweight profile
 * RFC 9919 / RFC 5019). Transport-free: qtsp_ocsp_respond takes request DER
 * and returns response DER; the HTTP binding (ocsp/ocsp_http.h) only decodes
 * the GET form, calls it and sets cache headers. Responses are written with
 * core/der.h.
 *
 * Choices (see ocsp/ocsp.c for the clauses):
 * - One issuing CA per responder; CertIDs with SHA-1 or SHA-256 are matched
 *   against its precomputed issuerNameHash/issuerKeyHash. A CertID with
 *   another hash algorithm or another issuer gets "unknown"; a request none
 *   of whose CertIDs is ours gets unauthorized (RFC 6960 2.3).
 * - Up to max_certids (policy) CertIDs per request, all answered; more is
 *   malformedRequest. Signed requests are accepted; their signature is
 *   neither required nor checked (RFC 6960 4.1.2: optional).
 * - Never-issued serials of our CA are answered "revoked" per RFC 6960 2.2
 *   (revocationTime 1970-01-01T00:00:00Z, reason certificateHold, response
 *   extension id-pkix-ocsp-extended-revoke), never "good". Such answers are
 *   signed fresh and not cached (the serial may be issued later).
 * - Every SingleResponse for our CA carries archiveCutoff = issuing CA
 *   notBefore (RFC 6960 4.4.4): status stays available after expiry
 *   (EN 319 411-2).
 * - A request with a nonce gets a freshly signed answer echoing it. A request
 *   without a nonce and with one CertID is answered from the pre-signed
 *   cache in the store table ocsp_cache (shared by every process); a status
 *   change deletes the entries in the same transaction, so it is visible at
 *   once, also for changes made by another process. An answer is stored only
 *   if the counter status_gen did not move since its status was read. A miss
 *   (first request, or past fresh_until = thisUpdate + validity *
 *   refresh_percent, or past the end of a hold) signs and commits the entry
 *   (one durable write). Never-issued serials and multi-CertID requests are
 *   signed every time. No in-process memory cache: the LMDB read path is a
 *   few microseconds and cannot go stale.
 * - CertIDs are echoed rebuilt from their parts (hash OID with NULL
 *   parameters, hashes, serial), which is how RFC 6960 clients match them.
 *
 * Thread-safety: a qtsp_ocsp is immutable after qtsp_ocsp_new and may serve
 * many threads at once (counters are atomic), provided the responder key may
 * be used for signing from several threads (software keys may; for a PKCS#11
 * key that is the signer's promise). */
#ifndef QTSP_OCSP_OCSP_H
#define QTSP_OCSP_OCSP_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

#include "ca/key.h"
#include "ca/signq.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

typedef struct qtsp_ocsp qtsp_ocsp;

/* Loads the policy (policies/ocsp.yaml: validity, refresh_percent,
 * max_certids, nonce_max_len, max_request_bytes) and precomputes the CertID
 * hashes of issuer_ca and the responder's byKey id. responder_cert must be
 * issued by issuer_ca, carry EKU id-kp-OCSPSigning and match responder_key
 * (checked). Answers are signed through responder_key (ca/key.h: a token
 * key in production) with ECDSA or RSA PKCS#1 v1.5 and SHA-256. The
 * certificates, key and store are borrowed (certificates up-referenced; the
 * key and the store must outlive the responder).
 * Errors: QTSP_ERR_CONFIG (policy), QTSP_ERR_INVALID (certificates/key do not
 * fit together), QTSP_ERR_UNSUPPORTED (key not EC or RSA), QTSP_ERR_NOMEM.
 * Caller owns *out (qtsp_ocsp_free). */
qtsp_status qtsp_ocsp_new(const char *policy_path, X509 *issuer_ca, X509 *responder_cert,
                          const qtsp_key *responder_key, qtsp_store *store,
                          qtsp_ocsp **out) QTSP_MUST_USE;
/* NULL is a no-op. */
void qtsp_ocsp_free(qtsp_ocsp *ocsp);

typedef struct qtsp_ocsp_info {
    time_t this_update; /* of the answer (earliest next_update of all singles) */
    time_t next_update;
    int cacheable;        /* 1: a pre-signed answer without nonce (HTTP-cacheable) */
    char etag[48];        /* strong ETag "\"<sha1 hex of the response>\"" when cacheable, else "" */
    int64_t http_max_age; /* policy cap on HTTP caching (seconds), whatever nextUpdate says */
} qtsp_ocsp_info;

/* Answers a DER OCSPRequest. out (reset first) receives a DER OCSPResponse:
 * successful, or malformedRequest (bad DER, trailing bytes, empty, larger
 * than max_request_bytes, too many CertIDs, bad nonce), unauthorized (no
 * CertID for our CA) or internalError (store or signing failure; the cause is
 * logged). info (may be NULL) is filled on every OK return. Returns non-OK
 * (QTSP_ERR_NOMEM / QTSP_ERR_TOO_BIG of out) only when not even an error
 * response could be written. Thread-safe. */
qtsp_status qtsp_ocsp_respond(qtsp_ocsp *ocsp, const unsigned char *req, size_t len, qtsp_buf *out,
                              qtsp_ocsp_info *info) QTSP_MUST_USE;

/* Completion of an answer signed on the signing queue: called exactly once,
 * from a signing thread, with the whole DER OCSPResponse (successful, or
 * internalError when signing failed; borrowed for the call). rc is not OK
 * (der NULL) only when not even an error response could be written. */
typedef void (*qtsp_ocsp_done_fn)(void *done_ctx, qtsp_status rc, const unsigned char *der,
                                  size_t len);

/* How a caller waits for an answer signed later. wait is called on the
 * calling thread, before the signature is queued, and returns the context
 * for done (e.g. the transport's handle of the suspended request), or NULL
 * when the caller cannot wait: the answer is then signed inline. */
typedef struct qtsp_ocsp_async {
    void *(*wait)(void *ctx);
    qtsp_ocsp_done_fn done;
    void *ctx;
} qtsp_ocsp_async;

/* qtsp_ocsp_respond that may finish later: with a signing queue set
 * (qtsp_ocsp_set_signq), an answer that needs a fresh
 * signature (nonce, several CertIDs, never-issued serial) is prepared here
 * and signed on the queue; then *pending = 1, out and info are untouched,
 * and async->done delivers the answer (HTTP-uncacheable). Otherwise
 * *pending = 0 and the call is qtsp_ocsp_respond. async NULL: never
 * pending. Thread-safe. */
qtsp_status qtsp_ocsp_respond_async(qtsp_ocsp *ocsp, const unsigned char *req, size_t len,
                                    qtsp_buf *out, qtsp_ocsp_info *info,
                                    const qtsp_ocsp_async *async, int *pending) QTSP_MUST_USE;

/* Signs answers that are not pre-signed on q (borrowed; must outlive the
 * requests in flight) instead of on the HTTP thread. Set before serving. */
void qtsp_ocsp_set_signq(qtsp_ocsp *ocsp, qtsp_signq *q);

/* Decodes the GET form of a request (RFC 6960 A.1, interface.md): raw is the
 * path after "/ocsp/", URL-encoded or not, base64 in the standard or URL-safe
 * alphabet, padded or not, possibly containing '/'. Writes at most cap bytes.
 * QTSP_ERR_INVALID on bad characters/length, QTSP_ERR_TOO_BIG beyond cap. */
qtsp_status qtsp_ocsp_get_decode(const char *raw, unsigned char *out, size_t cap,
                                 size_t *out_len) QTSP_MUST_USE;

/* Appends Prometheus counters (qtsp_ocsp_requests_total{result=...},
 * qtsp_ocsp_cache_total{outcome=hit|miss|stale}, qtsp_ocsp_signed_total).
 * ctx = qtsp_ocsp *. */
qtsp_status qtsp_ocsp_metrics(void *ctx, qtsp_buf *out) QTSP_MUST_USE;

#endif
