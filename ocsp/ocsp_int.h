/* OCSP internals shared by ocsp/ocsp.c, ocsp/ocsp_store.c, the fuzzer and the
 * unit tests: where the responder core reads statuses and keeps its
 * pre-signed answers (a seam: the core links no store). */
#ifndef QTSP_OCSP_OCSP_INT_H
#define QTSP_OCSP_OCSP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "ca/certdb.h"
#include "ocsp/ocsp.h"

/* Where the statuses come from. Every request opens one read snapshot
 * (begin ... end) and reads in it, in this order: cache_get (a single
 * CertID without nonce), gen, then status per serial of our CA. All calls
 * come from the serving threads at once: must be thread-safe. ctx must
 * outlive the responder. Errors are set with the err.h idiom.
 * - begin: opens a snapshot; *snap goes to the calls below and to end.
 * - end: closes it (borrowed pointers from cache_get die here).
 * - gen: the status generation of the snapshot (counter "status_gen": every
 *   status change moves it and drops the changed serial's cached answers).
 * - status: the stored status of serial (normalised, 1..20 bytes);
 *   QTSP_ERR_NOT_FOUND for a serial never issued.
 * - cache_get: the cached value under key (docs/ocsp.md, ca/certdb.h
 *   ocsp_cache keys), borrowed until end; QTSP_ERR_NOT_FOUND when absent.
 *   NULL: no cache (every answer is signed, none is cacheable).
 * - cache_put: stores val under key in its own durable write, but only if
 *   the generation is still gen (*stored = 1), else nothing (*stored = 0).
 *   NULL together with cache_get. */
typedef struct qtsp_ocsp_source {
    qtsp_status (*begin)(void *ctx, void **snap);
    void (*end)(void *snap);
    qtsp_status (*gen)(void *snap, uint64_t *gen);
    qtsp_status (*status)(void *snap, const unsigned char *serial, size_t len,
                          qtsp_cert_status *out);
    qtsp_status (*cache_get)(void *snap, const unsigned char *key, size_t klen, const void **val,
                             size_t *vlen);
    qtsp_status (*cache_put)(void *ctx, uint64_t gen, const unsigned char *key, size_t klen,
                             const unsigned char *val, size_t vlen, int *stored);
    void *ctx;
} qtsp_ocsp_source;

/* The responder core: qtsp_ocsp_new reading through src (copied; begin,
 * end, gen and status required, cache_get and cache_put both or neither).
 * Errors and ownership as qtsp_ocsp_new. */
qtsp_status qtsp_ocsp_new_source(const char *policy_path, X509 *issuer_ca, X509 *responder_cert,
                                 const qtsp_key *responder_key, const qtsp_ocsp_source *src,
                                 qtsp_ocsp **out) QTSP_MUST_USE;

/* The source over a store (ocsp/ocsp_store.c): statuses from ca/certdb,
 * pre-signed answers in the table ocsp_cache. st is borrowed. */
void qtsp_ocsp_store_source(qtsp_store *st, qtsp_ocsp_source *out);

#endif
