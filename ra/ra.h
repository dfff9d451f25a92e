/* The Registration Authority: enrolment of natural persons, issuance of
 * qualified certificates with keys generated in the token, and the
 * certificate lifecycle (hold, release, termination). Transport-free: the
 * HTTP handlers in ra/ra_http.c and the CLI verbs call these functions, so
 * both follow the same rules. Every state change is one store transaction
 * with its audit record. Thread-safe. */
#ifndef QTSP_RA_RA_H
#define QTSP_RA_RA_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"
#include "ra/notify.h"
#include "ra/operator.h"

typedef struct qtsp_ra qtsp_ra;

typedef struct qtsp_ra_deps {
    qtsp_store *store;
    qtsp_hsm *hsm;
    X509 *issuing_ca;            /* borrowed; outlives the RA */
    const qtsp_key *issuing_key; /* signs (ca/key.h); borrowed */
    const char *policies_dir;    /* DIR/policies */
    const char *secrets_dir;     /* DIR/secrets (OTP wrapping key) */
    const char *base_url;
    qtsp_notify *notify; /* lifecycle webhook, borrowed; NULL = none */
} qtsp_ra_deps;

/* Loads the policies (qualified-natural-person.yaml, packages.yaml,
 * suspension.yaml) and the OTP wrapping key (created 0600 when absent). */
qtsp_status qtsp_ra_new(const qtsp_ra_deps *deps, qtsp_ra **out) QTSP_MUST_USE;
void qtsp_ra_free(qtsp_ra *ra);

/* Who acts: an authenticated operator, or the CLI / the system (role checks
 * are skipped for CLI actors, who hold the home's files anyway; audit names
 * them). */
typedef struct qtsp_actor {
    char name[160]; /* audit actor, e.g. "operator:alice" or "cli:root@host" */
    unsigned roles; /* qtsp_role bits the actor has */
} qtsp_actor;

void qtsp_actor_from_operator(const qtsp_operator *op, qtsp_actor *out);
/* An actor with every role (CLI, system sweeper). */
void qtsp_actor_all_roles(const char *name, qtsp_actor *out);
/* The operator holding a bearer token (qtsp_operator_auth): *who filled.
 * QTSP_ERR_AUTH "unknown or invalid operator token" for any token that
 * does not resolve. Slow on purpose (argon2id); thread-safe. */
qtsp_status qtsp_ra_operator_auth(qtsp_ra *ra, const char *token, qtsp_actor *who) QTSP_MUST_USE;
/* 1 when qtsp_ra_operator_auth of token would run argon2id
 * (qtsp_operator_auth_is_slow). Cheap; thread-safe. */
int qtsp_ra_operator_auth_is_slow(qtsp_ra *ra, const char *token);

/* Enrols a subject from a JSON object (see docs/ra.md for fields). Errors:
 * QTSP_ERR_INVALID naming the field, QTSP_ERR_FORBIDDEN (role),
 * QTSP_ERR_EXISTS (same national id with a valid certificate). */
qtsp_status qtsp_ra_enrol(qtsp_ra *ra, const qtsp_actor *who, const json_t *in,
                          char subject_id[40]) QTSP_MUST_USE;

typedef struct qtsp_issued {
    char serial_hex[41];
    char *certificate_pem; /* caller frees (free) */
    char user_id[40];
    char password[48]; /* shown once; wipe after use */
    char *otpauth_uri; /* shown once; caller frees (OPENSSL_clear_free-safe: free) */
} qtsp_issued;
void qtsp_issued_cleanup(qtsp_issued *is);

/* Issues a qualified certificate for subject_id: key pair taken from the
 * key pool (or, when it is empty, generated in the token), certificate from
 * the profile, stored, audited (naming the key label), activation created.
 * On failure after the key was taken or made, the key is destroyed.
 * QTSP_ERR_NOT_FOUND for an unknown subject. */
qtsp_status qtsp_ra_issue(qtsp_ra *ra, const qtsp_actor *who, const char *subject_id,
                          qtsp_issued *out) QTSP_MUST_USE;

/* Status as the API shows it: {"serial","status","hold_until"?,"revocation_reason"?, ...}.
 * *out is a new reference. */
qtsp_status qtsp_ra_cert_status(qtsp_ra *ra, const unsigned char *serial, size_t slen,
                                json_t **out) QTSP_MUST_USE;

/* Certificates of a subject: {"subject_id","certificates":[status objects]}. */
qtsp_status qtsp_ra_subject_certs(qtsp_ra *ra, const char *subject_id, json_t **out) QTSP_MUST_USE;

/* ---- finding things (ra/find.c, docs/ra.md "Finding things") ---- */
#define QTSP_RA_PAGE_MAX 100

/* A subject's whole record (identity data, evidence, earlier
 * registrations in "history"), id_type "PNO" when not recorded. Roles
 * ra-officer, office. QTSP_ERR_NOT_FOUND. *out new reference. */
qtsp_status qtsp_ra_subject_get(qtsp_ra *ra, const qtsp_actor *who, const char *subject_id,
                                json_t **out) QTSP_MUST_USE;

/* Indexes, once per store, subjects enrolled before the search indexes
 * existed (meta "subject_search_index"; a write transaction over every
 * subject the first time, a read afterwards). serve calls it at start. */
qtsp_status qtsp_ra_search_prepare(qtsp_ra *ra) QTSP_MUST_USE;

/* Exactly one of national_id (country optional: else every country;
 * id_type PNO default, IDC, PAS, TIN),
 * name (case-insensitive prefix of "given surname" or "surname given"),
 * email (exact, case-insensitive) or phone (exact); limit 1..QTSP_RA_PAGE_MAX;
 * cursor NULL or a previous answer's "next". */
typedef struct qtsp_ra_search {
    const char *country, *national_id, *name, *email, *phone;
    const char *cursor;
    size_t limit;
    const char *id_type;
} qtsp_ra_search;
/* {"subjects":[{"subject_id","given_name","surname","country","id_type",
 * "national_id","email","phone","package","enrolled_at"}…],"next"?}. Roles
 * ra-officer, office. QTSP_ERR_INVALID naming the field. */
qtsp_status qtsp_ra_subject_search(qtsp_ra *ra, const qtsp_actor *who, const qtsp_ra_search *q,
                                   json_t **out) QTSP_MUST_USE;

/* {"status","certificates":[status objects],"next"?}: certificates whose
 * status (as qtsp_ra_cert_status shows it) is status ("valid", "on-hold",
 * "revoked", "expired"), in serial-key order; at most limit (1..100) and at
 * most 10,000 records examined per call. Roles ra-officer, office, auditor. */
qtsp_status qtsp_ra_cert_list(qtsp_ra *ra, const qtsp_actor *who, const char *status, size_t limit,
                              const char *cursor, json_t **out) QTSP_MUST_USE;

/* The audit, filtered and paged (qtsp_audit_query on the RA's store). */
qtsp_status qtsp_ra_audit_query(qtsp_ra *ra, const qtsp_audit_filter *f, qtsp_audit_fn fn,
                                void *ctx, uint64_t *next) QTSP_MUST_USE;

/* The certificate, DER (pem 0) or PEM (1), into out (reset first).
 * QTSP_ERR_NOT_FOUND. */
qtsp_status qtsp_ra_cert_get(qtsp_ra *ra, const unsigned char *serial, size_t slen, int pem,
                             qtsp_buf *out) QTSP_MUST_USE;

/* Lifecycle (ra/lifecycle.c). hold: valid -> on-hold until now + max_hold
 * (role hotline). release: on-hold -> valid (ra-officer, office).
 * terminate: valid|on-hold -> revoked, final; destroys the subject's key in
 * the token and disables its signing credential (office): the revocation
 * commits first (audit cert.terminate, key "destruction pending"), then the
 * key is destroyed and that recorded (audit key.destroy); a destruction that
 * fails stays pending for qtsp_ra_finish_destructions. Illegal
 * transitions: QTSP_ERR_STATE. */
qtsp_status qtsp_ra_hold(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                         size_t slen, const char *caller_verification,
                         time_t *hold_until) QTSP_MUST_USE;
qtsp_status qtsp_ra_release(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                            size_t slen) QTSP_MUST_USE;
qtsp_status qtsp_ra_terminate(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                              size_t slen, int reason, const char *identity_check,
                              time_t invalidity_date) QTSP_MUST_USE;
/* Hotline hook: holds every valid certificate of the subject identified by
 * national id + registered phone (or suspension code). *held is a new JSON
 * array of serial strings. QTSP_ERR_NOT_FOUND when nothing matches (the
 * answer does not tell which of the two did not match). */
qtsp_status qtsp_ra_hotline_hold(qtsp_ra *ra, const qtsp_actor *who, const char *national_id,
                                 const char *phone, const char *caller_verification, json_t **held,
                                 time_t *hold_until) QTSP_MUST_USE;
/* Finishes the key destructions of terminations whose revocation committed
 * but whose destruction was not recorded (a token or store failure, a crash:
 * meta "key.destroy.pending/<serial>"): destroys each key (absent counts as
 * destroyed) and records audit "key.destroy" by "system:recovery". *n =
 * how many. Run at start and by the sweeper. Errors of the token or store;
 * what is left stays pending. */
qtsp_status qtsp_ra_finish_destructions(qtsp_ra *ra, size_t *n) QTSP_MUST_USE;
/* Records lapses of holds due at now (audit + status refresh). *n = count. */
qtsp_status qtsp_ra_sweep_lapses(qtsp_ra *ra, time_t now, size_t *n) QTSP_MUST_USE;
/* How often the server sweeps (suspension.yaml sweep_interval, >= 1 s). */
int64_t qtsp_ra_sweep_interval_s(const qtsp_ra *ra);

/* ---- key pool (ra/keypool.c, docs/ra.md "Key pool") ----
 * Subject key pairs pre-generated in the token (labels "kp-<hex>",
 * sensitive, never extractable) and recorded unassigned in the store table
 * keypool; issuance takes one instead of generating (see qtsp_ra_issue).
 * Size from policies/keypool.yaml (absent or size 0: no pool). */

/* Starts the filler thread (no-op when the pool is disabled or it runs
 * already): first destroys orphan kp- keys (qtsp_ra_keypool_cleanup with a
 * 10-minute grace), then fills the pool to size and tops it up whenever it
 * falls below the low-water mark. Not thread-safe against stop. */
qtsp_status qtsp_ra_keypool_start(qtsp_ra *ra) QTSP_MUST_USE;
/* Stops and joins the filler (it commits the keys of its current batch
 * first; at most one key generation of delay). Idempotent; qtsp_ra_free
 * calls it too. */
void qtsp_ra_keypool_stop(qtsp_ra *ra);
/* Generates keys until the pool holds its size, committing every batch
 * with one "key.generate" audit record per key (label, key type, SPKI
 * SHA-256). *made (may be NULL) = keys added. Returns early, OK, when stop
 * was requested. What the filler thread runs; tests call it directly. */
qtsp_status qtsp_ra_keypool_fill(qtsp_ra *ra, size_t *made) QTSP_MUST_USE;
/* Destroys kp- keys the token index knows that are neither in the pool, nor
 * bound to a certificate, nor reserved less than grace_s seconds ago (an
 * issuer crashed between reservation and storing the certificate, or the
 * filler between generation and commit). Pool entries of another key type
 * than the profile's are destroyed too. Audited ("key.destroy", reason),
 * committed before the keys are destroyed. *n (may be NULL) = destroyed. */
qtsp_status qtsp_ra_keypool_cleanup(qtsp_ra *ra, int64_t grace_s, size_t *n) QTSP_MUST_USE;
/* Keys ready in the pool (any key type). */
qtsp_status qtsp_ra_keypool_available(qtsp_ra *ra, uint64_t *out) QTSP_MUST_USE;
/* Prometheus text: qtsp_keypool_available, _size, _generated_total,
 * _taken_total, _inline_total, _orphans_destroyed_total. */
qtsp_status qtsp_ra_metrics(qtsp_ra *ra, qtsp_buf *out) QTSP_MUST_USE;

#endif
