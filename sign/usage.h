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

/* ---- the package policy (policies/packages.yaml) ----
 * Shared by the RA (enrolment checks the name) and the usage counter.
 * Prices are decimal amounts with at most two decimals, kept in cents;
 * -1 when the file gives none (older homes). */
#define QTSP_MAX_PACKAGES 16
#define QTSP_PACKAGE_NAME_MAX 31
typedef struct qtsp_package {
    char name[QTSP_PACKAGE_NAME_MAX + 1];
    int64_t signatures;  /* per window; 0 = unlimited */
    int64_t period_s;    /* the window, > 0 */
    int64_t validity_s;  /* how long the package lasts; 0 = until changed */
    int64_t price_cents; /* what the signer pays for one validity (-1: none given) */
} qtsp_package;

typedef struct qtsp_packages {
    qtsp_package p[QTSP_MAX_PACKAGES];
    size_t n;
    char currency[4];       /* ISO 4217, "EUR" by default */
    int64_t rp_price_cents; /* per signature a relying party pays (-1: none given) */
} qtsp_packages;

/* Reads path into *out. QTSP_ERR_CONFIG "file:line:col: key: why",
 * QTSP_ERR_IO / QTSP_ERR_TOO_BIG as core/yaml. */
qtsp_status qtsp_packages_load(const char *path, qtsp_packages *out) QTSP_MUST_USE;
/* The package called name, NULL when there is none. */
const qtsp_package *qtsp_packages_find(const qtsp_packages *ps, const char *name);
/* The loaded policy of u (borrowed, immutable). */
const qtsp_packages *qtsp_usage_packages(const qtsp_usage *u);

/* Most signatures one charge may count (one authorisation's hashes). */
#define QTSP_USAGE_MAX_SIGNATURES 1000
/* History records are kept at least this long (EN 319 411-1 retention). */
#define QTSP_USAGE_RETENTION_S (INT64_C(10) * 366 * 86400)

/* Reads policies_dir/packages.yaml (qtsp_packages_load). st is borrowed
 * and must outlive u. QTSP_ERR_CONFIG naming the field. */
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
    const char *user_id;       /* the signer (QTSP_T_USERS key) */
    const char *credential_id; /* the credential (certificate serial, hex) */
    const char *relying_party; /* NULL: the signer's package pays */
    size_t n;                  /* signatures (= hashes) */
    const char *const *hashes; /* n base64 hashes as the client sent them */
    const char *hash_oid;      /* the hash algorithm's OID, dotted */
    const char *sad_id;        /* which SAD authorised it (for the history) */
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

/* One page of the history: as qtsp_usage_history, starting after the record
 * named by the cursor after (NULL: from the newest; else the 32 hex digits
 * of a previous page's "next", QTSP_ERR_INVALID when malformed). When more
 * records follow the page (limit > 0), *out also has "next": the cursor of
 * its last record. A cursor is stable: records written later are newer and
 * never fall after it. */
qtsp_status qtsp_usage_history_page(qtsp_usage *u, const char *user_id, size_t limit,
                                    const char *after, json_t **out) QTSP_MUST_USE;

/* The signer's package and what is left of it now:
 * {"package","signatures_left" (null = unlimited),"window_end","valid_until"}
 * plus "signatures" (per window, null = unlimited), "used" (in this
 * window), "window_start", "package_since" and "ended" (true once the
 * package's validity is over: nothing left). valid_until is null for a
 * package without an end. QTSP_ERR_NOT_FOUND for an unknown signer. */
qtsp_status qtsp_usage_quota(qtsp_usage *u, const char *user_id, json_t **out) QTSP_MUST_USE;

/* ---- office and relying-party administration (the CLI verbs) ---- */

/* Relying party names: 1..64 of A-Z a-z 0-9 . _ - */
#define QTSP_RP_NAME_MAX 64
/* Registers a relying party and writes its secret (43 characters base64url
 * of 256 random bits, NUL-terminated) into secret[cap >= 64]; only its
 * argon2id hash is stored. Audited "rp.add" by actor.
 * QTSP_ERR_INVALID (name), QTSP_ERR_EXISTS (name taken). */
qtsp_status qtsp_usage_rp_add(qtsp_usage *u, const char *actor, const char *name, char *secret,
                              size_t cap) QTSP_MUST_USE;
/* {"relying_parties":[{"name","created_at","created_by"}...]} by name
 * (new reference in *out). */
qtsp_status qtsp_usage_rp_list(qtsp_usage *u, json_t **out) QTSP_MUST_USE;
/* Signings relying parties paid, per relying party and month:
 * {"currency","price_per_signature" (null: none in the policy),
 *  "usage":[{"relying_party","month","signatures","amount"?}...]}
 * ordered by relying party then month; month "YYYY-MM" or NULL for all.
 * QTSP_ERR_INVALID for a malformed month. */
qtsp_status qtsp_usage_rp_report(qtsp_usage *u, const char *month, json_t **out) QTSP_MUST_USE;

/* Office change of the signer's package: the subject's "package" becomes
 * package and "package_since" now, so a new window starts. Audited
 * "signer.package" by actor in the same transaction. QTSP_ERR_INVALID
 * (package not in the policy), QTSP_ERR_NOT_FOUND (user). */
qtsp_status qtsp_usage_set_package(qtsp_usage *u, const char *actor, const char *user_id,
                                   const char *package) QTSP_MUST_USE;

/* Records in the audit that actor read user_id's history (n signings
 * shown): staff reading a signer's personal data. */
qtsp_status qtsp_usage_audit_read(qtsp_usage *u, const char *actor, const char *user_id,
                                  size_t n) QTSP_MUST_USE;

#endif
