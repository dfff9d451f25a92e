/* Signing packages, relying parties and the usage history of remote signing
 * (issue 13; docs/csc.md "Packages, relying parties, history").
 *
 * A signer (QTSP_T_USERS record, "subject_id") has the package of their
 * subject (QTSP_T_SUBJECTS "package", changed by `qtsp signer package`);
 * policies/packages.yaml gives per package the signatures allowed in one
 * window ("signatures", 0 = unlimited), the window ("period") and how long
 * the package lasts ("validity"), and its price for reports. Windows run
 * from the package's start (enrolment, or the last package change), exact
 * to the second on the injected clock (core/clock.h).
 *
 * A signing is one signature. qtsp_usage_charge runs inside the write
 * transaction that consumes the SAD, so that the count, the history record
 * and the SAD's consumption are committed together or not at all.
 *
 * A relying party (`qtsp rp add NAME`) pays for the signings it requests
 * with its own secret beside the signer's access token; those are counted
 * per relying party and month and not against the signer's package.
 * Thread-safe after qtsp_usage_new (the policy is read-only). */
#ifndef QTSP_SIGN_USAGE_H
#define QTSP_SIGN_USAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/store.h"
#include "core/err.h"

typedef struct qtsp_usage qtsp_usage;

/* Reads policies_dir/packages.yaml. QTSP_ERR_CONFIG naming the field. */
qtsp_status qtsp_usage_new(qtsp_store *st, const char *policies_dir,
                           qtsp_usage **out) QTSP_MUST_USE;
void qtsp_usage_free(qtsp_usage *u);

/* The relying party that authenticates with header (the value of the
 * X-QTSP-Relying-Party request header, "NAME:SECRET"), its name copied into
 * name[cap]. The secret is compared in constant time against its stored
 * hash. QTSP_ERR_AUTH (unknown or wrong), QTSP_ERR_INVALID (malformed). */
qtsp_status qtsp_usage_rp_check(qtsp_usage *u, const char *header, char *name,
                                size_t cap) QTSP_MUST_USE;

/* One authorised signing request, as signHash / signDoc consume it. */
typedef struct qtsp_signing {
    const char *user_id;        /* the signer (QTSP_T_USERS key) */
    const char *credential_id;  /* the credential (certificate serial, hex) */
    const char *relying_party;  /* NULL: the signer's package pays */
    size_t n;                   /* signatures (= hashes) */
    const char *const *hashes;  /* n base64 hashes as the client sent them */
    const char *hash_oid;       /* the hash algorithm's OID, dotted */
    const char *sad_id;         /* which SAD authorised it (for the history) */
} qtsp_signing;

/* Inside txn (a write transaction): checks that the payer (the relying
 * party, else the signer's package: valid now, n more signatures fit in
 * the current window) can pay, counts n signatures, appends the history
 * record (QTSP_T_HISTORY, kept 10 years). QTSP_ERR_QUOTA (HTTP 429) when
 * the package is spent or has ended, nothing written; QTSP_ERR_NOT_FOUND
 * for an unknown signer. */
qtsp_status qtsp_usage_charge(qtsp_usage *u, qtsp_txn *txn, const qtsp_signing *s) QTSP_MUST_USE;

/* The signer's history, newest first, as GET /api/v1/history answers it:
 * {"signings":[{"time","credential","hashes","hash_algorithm",
 * "relying_party"?,"package","window_start","window_end"}...]} (new
 * reference in *out). limit 0 = all. */
qtsp_status qtsp_usage_history(qtsp_usage *u, const char *user_id, size_t limit,
                               json_t **out) QTSP_MUST_USE;

/* The signer's package and what is left of it now:
 * {"package","signatures_left" (null = unlimited),"window_end","valid_until"}. */
qtsp_status qtsp_usage_quota(qtsp_usage *u, const char *user_id, json_t **out) QTSP_MUST_USE;

#endif
