/* CRL publisher (RFC 5280 5, EN 319 411-1 6.3.9): builds and signs the full
 * and delta CRLs of the issuing CA and the root CA's CRL straight from the
 * store's revoked index, writes them to DIR/public/crl/ and serves them
 * from memory (over HTTP through ca/crl_http.h).
 *
 * Published CRLs (names are the file and URL names):
 *   qualified.crl        full CRL of the issuing CA; carries freshestCRL
 *                        -> {base}/crl/qualified-delta.crl
 *   qualified-delta.crl  delta CRL (deltaCRLIndicator, critical) against the
 *                        current base full CRL
 *   root.crl             CRL of the root CA for the certificates it issued
 *                        (serials in meta "issued_by_root")
 * Every CRL is v2 with AKI (keyid), cRLNumber, thisUpdate = now, nextUpdate =
 * now + policy next_update (<= 24 h) and ExpiredCertsOnCRL (2.5.29.60) = the
 * CA's notBefore: revoked certificates are never dropped when they expire.
 * No issuingDistributionPoint and no CRL DP extension on the CRL itself (both
 * optional in RFC 5280; the certificates carry the CRL DP).
 *
 * Entries (RFC 5280 5.3):
 *   - reasonCode on every entry except unspecified (0), which is omitted as
 *     RFC 5280 5.3.1 recommends;
 *   - certificateHold entries also carry holdInstructionCode (policy,
 *     default id-holdinstruction-callissuer 1.2.840.10040.2.2);
 *   - invalidityDate (GeneralizedTime) when known;
 *   - removeFromCRL (8) only in delta CRLs, for holds released or lapsed
 *     since the base; its revocationDate is the original hold time.
 * Entry order: qualified CRLs emit the store's revoked index order, i.e.
 * byte-wise on the normalised big-endian serial (numeric order among serials
 * of the same length, which random 64+ bit serials nearly always are); the
 * root CRL emits numeric order (length, then bytes).
 *
 * Numbering: the issuing CA's full and delta CRLs share the store counter
 * "crl_number" (RFC 5280 5.2.4), the root CRL uses "crl_number_root"; both
 * survive restarts. What is due:
 *   - rebase: no base yet, or the base is publish_interval old, or force:
 *     a new full CRL (the new base), a delta against it, and the root CRL;
 *   - refresh: the store counter "status_gen" moved since the last
 *     publication, or a hold listed on the last full CRL has lapsed: a new
 *     full CRL, a delta against the existing base (so releases show as
 *     removeFromCRL) and the root CRL. The base stays until the next rebase.
 * Facts of the last publication live in the store table "crl" (key
 * "qualified": base number and thisUpdate, last number, thisUpdate,
 * status_gen, next lapse; key "root"): format version byte 1 first.
 *
 * Streaming: each CRL is encoded in two passes over the revoked index in one
 * read transaction (pass 1 sizes revokedCertificates, pass 2 writes the DER
 * into the final buffer), then signed through the CA's qtsp_key (ca/key.h),
 * written to a temp file, fsynced and renamed. Memory is the CRL's DER
 * (about 49 bytes per entry) plus the previous CRL while it is still served.
 *
 * Files: ca/crl_int.h lists them; HTTP lives in ca/crl_http.{h,c} only.
 *
 * Thread safety: publications are serialised by a lock; qtsp_crl_http_get
 * (ca/crl_http.h) may run on any number of threads at once (it takes a reference on the
 * current DER, never a torn copy). */
#ifndef QTSP_CA_CRL_H
#define QTSP_CA_CRL_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "ca/store.h"
#include "core/err.h"

typedef struct qtsp_crl_publisher qtsp_crl_publisher;

/* policies/crl.yaml */
typedef struct qtsp_crl_policy {
    int64_t next_update;        /* seconds, 1 .. 86400 (EN 319 411-1: <= 24 h) */
    int64_t publish_interval;   /* seconds, < next_update: rebase cadence */
    int64_t debounce;           /* seconds a status change may wait, 0 .. 60 */
    int64_t http_max_age;       /* Cache-Control max-age, seconds, 0 .. 3600 */
    unsigned char hold_oid[16]; /* DER content of the holdInstructionCode OID */
    size_t hold_oid_len;
    int delta; /* publish delta CRLs (and freshestCRL) */
} qtsp_crl_policy;

/* Defaults: 24h / 1h / 2s / 60s / callissuer / delta on. */
void qtsp_crl_policy_defaults(qtsp_crl_policy *pol);
/* Loads policies/crl.yaml over the defaults. Keys: next_update,
 * publish_interval, debounce, http_max_age, hold_instruction (none |
 * callissuer | reject), delta. QTSP_ERR_CONFIG naming file:line:col and the
 * key (e.g. next_update above 24h, publish_interval >= next_update). */
qtsp_status qtsp_crl_policy_load(const char *path, qtsp_crl_policy *out) QTSP_MUST_USE;

/* Creates a publisher. policy_path: policies/crl.yaml (NULL = defaults).
 * public_dir: DIR/public (CRLs go to public_dir/crl/, created 0755 if
 * missing). The certificates are up-referenced (caller keeps its own); the
 * keys (ca/key.h, token keys in production) are borrowed and must outlive
 * the publisher. base_url without trailing slash.
 * store is borrowed and must outlive the publisher. Nothing is published
 * yet: call qtsp_crl_publish or qtsp_crl_start. QTSP_ERR_CONFIG,
 * QTSP_ERR_UNSUPPORTED (key type), QTSP_ERR_IO, QTSP_ERR_NOMEM. */
qtsp_status qtsp_crl_publisher_new(const char *policy_path, const char *public_dir,
                                   X509 *issuing_ca, const qtsp_key *issuing_key, X509 *root_ca,
                                   const qtsp_key *root_key, const char *base_url,
                                   qtsp_store *store, qtsp_crl_publisher **out) QTSP_MUST_USE;

/* Publishes what is due (see above), or everything with a new base when
 * force is set. Thread-safe (serialised). Store, crypto and I/O errors; on
 * failure the previously published CRLs stay in place. The calling thread
 * must not hold a store transaction. */
qtsp_status qtsp_crl_publish(qtsp_crl_publisher *pub, int force) QTSP_MUST_USE;

/* Starts the background thread: once a second it reads "status_gen"; after
 * a change it waits for the policy debounce (quiet period, at most 4x
 * debounce in total) and publishes; it also publishes when a rebase or a
 * hold lapse is due, and right away when nothing is in memory yet. Errors
 * are logged and retried on the next tick. QTSP_ERR_STATE if running. */
qtsp_status qtsp_crl_start(qtsp_crl_publisher *pub) QTSP_MUST_USE;

/* Stops the thread (if started) and frees. NULL is a no-op. HTTP handlers
 * must be stopped first; responses in flight keep their own reference. */
void qtsp_crl_publisher_free(qtsp_crl_publisher *pub);

/* cRLNumber and thisUpdate of the CRL currently served under name
 * ("qualified", "qualified-delta", "root"). QTSP_ERR_NOT_FOUND when none. */
qtsp_status qtsp_crl_current(qtsp_crl_publisher *pub, const char *name, uint64_t *number,
                             time_t *this_update) QTSP_MUST_USE;

#endif
