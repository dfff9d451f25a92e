/* Anchors of the audit chain outside the store (issue 15): removing the last
 * records and setting the sequence back leaves a chain that verifies on its
 * own. So, at an interval and at shutdown, the chain head is time-stamped by
 * our own TSA (in process), the token is kept with the audit (a record
 * "audit.anchor") and the latest anchor is also written outside the store,
 * to DIR/public/audit-anchor.json; `qtsp audit verify` checks the chain
 * against it and reports a truncated tail.
 *
 * The anchor file (JSON): {"seq": N, "chain_hash": b64url(hash_N),
 * "anchored_at": RFC 3339, "tsa_response": b64url(DER TimeStampResp)}; the
 * token's messageImprint is SHA-256 with hash_N as the hashed message. */
#ifndef QTSP_CA_AUDIT_ANCHOR_H
#define QTSP_CA_AUDIT_ANCHOR_H

#include <openssl/x509.h>
#include <stdint.h>

#include "ca/audit.h"
#include "core/buf.h"

/* Gets a DER TimeStampResp (granted) for the SHA-256 imprint hash into out
 * (reset first). */
typedef qtsp_status (*qtsp_audit_stamp_fn)(void *ctx, const unsigned char hash[QTSP_AUDIT_HASH_LEN],
                                           qtsp_buf *out);

/* Anchors the chain head of st: unless the last record is the previous
 * anchor's own record (nothing new), stamps the head's hash through stamp,
 * appends "audit.anchor" {seq, chain_hash, tsa_response} by actor and
 * writes path (atomically: a temporary file renamed over it, mode 0644).
 * *seq = the anchored seq, 0 when there was nothing new. Errors of the
 * store, of stamp (QTSP_ERR_CRYPTO for a rejected stamp) and QTSP_ERR_IO. */
qtsp_status qtsp_audit_anchor(qtsp_store *st, const char *path, const char *actor,
                              qtsp_audit_stamp_fn stamp, void *ctx, uint64_t *seq) QTSP_MUST_USE;

/* Checks st's chain (already verified on its own, count records) against
 * the anchor file path: the anchored record exists (else QTSP_ERR_AUDIT_BROKEN
 * "truncated tail"), has the anchored hash (else QTSP_ERR_AUDIT_BROKEN), and
 * the token is a granted time-stamp over that hash signed by tsa_cert,
 * which chains to root (else QTSP_ERR_AUDIT_BROKEN). *anchored = its seq;
 * QTSP_ERR_NOT_FOUND (nothing set) when there is no anchor file yet.
 * what (cap bytes) receives a one-line summary on success. */
qtsp_status qtsp_audit_anchor_check(qtsp_store *st, const char *path, uint64_t count,
                                    X509 *tsa_cert, X509 *root, uint64_t *anchored, char *what,
                                    size_t cap) QTSP_MUST_USE;

#endif
