/* The tamper-evident audit log (EN 319 411-1; eIDAS Art. 24(2)(f)).
 * Each record is appended to QTSP_T_AUDIT in the same write transaction as
 * the state change it records, so a change and its audit line commit or
 * fail together. Record i carries hash_i = SHA-256(hash_{i-1} || body_i),
 * hash_0 = 32 zero bytes; `qtsp audit verify` re-walks the chain.
 *
 * Stored value: version (1 byte = 1) | hash (32) | body, where body is a JSON
 * object {"seq","time","actor","event","details"}. Key: seq as u64 BE. */
#ifndef QTSP_CA_AUDIT_H
#define QTSP_CA_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "ca/store.h"
#include "core/err.h"

/* Appends one record in txn (a write transaction). actor: who
 * ("operator:alice", "cli:root", "system"); event: dotted name
 * ("cert.issue", "cert.hold", ...); details: a JSON object (borrowed, not
 * modified) or NULL for {}. It is serialised here, once, with its keys
 * sorted at every level (the form the records have always had), so callers
 * never build JSON text. Never put secrets in details. *seq_out (may be
 * NULL) receives the record's sequence number.
 * QTSP_ERR_INVALID: details not a JSON object, actor/event empty, with
 * control characters or not UTF-8. QTSP_ERR_TOO_BIG: details over 64 KiB.
 * QTSP_ERR_AUDIT_BROKEN: the last stored record is not seq-1 (the chain was
 * truncated); nothing is appended to a broken chain. */
qtsp_status qtsp_audit_append(qtsp_txn *txn, const char *actor, const char *event,
                              const json_t *details, uint64_t *seq_out) QTSP_MUST_USE;

/* Re-walks the whole chain. OK with *count = number of records; on a break,
 * QTSP_ERR_AUDIT_BROKEN with *bad_seq = the first record that does not verify
 * and the reason in the error message. */
qtsp_status qtsp_audit_verify(qtsp_store *st, uint64_t *count, uint64_t *bad_seq) QTSP_MUST_USE;

#define QTSP_AUDIT_HASH_LEN 32

/* The last record: its seq and chain hash (hash_seq). QTSP_ERR_NOT_FOUND
 * for an empty log; QTSP_ERR_AUDIT_BROKEN for a malformed record. */
qtsp_status qtsp_audit_head(qtsp_txn *txn, uint64_t *seq,
                            unsigned char hash[QTSP_AUDIT_HASH_LEN]) QTSP_MUST_USE;

/* The chain hash stored with record seq. QTSP_ERR_NOT_FOUND when there is
 * no such record; QTSP_ERR_AUDIT_BROKEN for a malformed one. */
qtsp_status qtsp_audit_hash_at(qtsp_txn *txn, uint64_t seq,
                               unsigned char hash[QTSP_AUDIT_HASH_LEN]) QTSP_MUST_USE;

/* Visits records with seq >= from in order; body is the JSON text (borrowed,
 * not NUL-terminated). fn runs inside a read transaction of this thread: it
 * must not begin another one on st. */
typedef qtsp_status (*qtsp_audit_fn)(void *ctx, uint64_t seq, const char *body, size_t len);
qtsp_status qtsp_audit_list(qtsp_store *st, uint64_t from, qtsp_audit_fn fn,
                            void *ctx) QTSP_MUST_USE;

/* A filtered, paged read of the audit (the auditor's API, `audit list`).
 * Every set criterion must hold: time within [since_ms, until_ms] (0 =
 * open), event equal (or, when it ends with '.', a prefix: "cert."),
 * actor equal, serial equal to a string value of details (or an element of
 * an array value: a hotline hold's "held"). Records with seq > after are
 * visited in order; at most limit match (0 = no limit) and at most
 * max_scan are examined (0 = no limit). */
typedef struct qtsp_audit_filter {
    int64_t since_ms, until_ms;
    const char *event, *actor, *serial;
    uint64_t after;
    size_t limit, max_scan;
} qtsp_audit_filter;

/* fn (as for qtsp_audit_list) per matching record. *next (may be NULL):
 * the seq to pass as `after` for the next page, 0 when the end was reached.
 * QTSP_ERR_STORE_CORRUPT for a record that is not JSON. */
qtsp_status qtsp_audit_query(qtsp_store *st, const qtsp_audit_filter *f, qtsp_audit_fn fn,
                             void *ctx, uint64_t *next) QTSP_MUST_USE;

#endif
