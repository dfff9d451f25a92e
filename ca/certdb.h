/* Certificates and their status in the store (tables certs, status,
 * revoked, holds, subject_certs, ocsp_cache). The record formats live here
 * and nowhere else. Lifecycle rules (who may hold, release, terminate) are
 * the RA's (ra/lifecycle.c); this module only stores and indexes.
 *
 * Serials are keys as big-endian bytes without leading zero bytes (1..20).
 * Times are seconds since the epoch (0 = unset). */
#ifndef QTSP_CA_CERTDB_H
#define QTSP_CA_CERTDB_H

#include <openssl/asn1.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

#define QTSP_SERIAL_MAX 20
#define QTSP_CERT_ISSUER_MAX 16

typedef enum qtsp_cert_state {
    QTSP_CERT_VALID = 0,
    QTSP_CERT_ON_HOLD = 1, /* revoked with reason certificateHold until hold_until */
    QTSP_CERT_REVOKED = 2, /* final */
} qtsp_cert_state;

/* RFC 5280 5.3.1 CRLReason values used here. */
enum {
    QTSP_REASON_UNSPECIFIED = 0,
    QTSP_REASON_KEY_COMPROMISE = 1,
    QTSP_REASON_CA_COMPROMISE = 2,
    QTSP_REASON_AFFILIATION_CHANGED = 3,
    QTSP_REASON_SUPERSEDED = 4,
    QTSP_REASON_CESSATION = 5,
    QTSP_REASON_CERTIFICATE_HOLD = 6,
    QTSP_REASON_REMOVE_FROM_CRL = 8,
    QTSP_REASON_PRIVILEGE_WITHDRAWN = 9,
};

/* "keyCompromise" -> 1 ... (the names of RFC 5280); QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_reason_parse(const char *name, int *out) QTSP_MUST_USE;
const char *qtsp_reason_name(int reason);

typedef struct qtsp_cert_status {
    uint8_t state;  /* qtsp_cert_state as stored */
    uint8_t reason; /* when revoked/on hold */
    int64_t not_before;
    int64_t not_after;
    int64_t revoked_at;      /* revocation or hold time */
    int64_t hold_until;      /* lapse instant of a hold */
    int64_t invalidity_date; /* RFC 5280 5.3.2, 0 = unknown */
    int64_t changed_at;      /* last status change (for delta CRLs) */
    uint8_t released;        /* 1: was on hold, released (or lapsed) at changed_at */
} qtsp_cert_status;

typedef struct qtsp_cert_record {
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t serial_len;
    char issuer[16];     /* "issuing" (qualified CA) or "root" (QTSP_CERT_ISSUER_MAX) */
    char subject_id[40]; /* "" for CA-side certificates */
    char key_label[64];  /* token key label of the certified key */
    char profile[64];
    const unsigned char *der; /* borrowed by put; owned copy from get (free with record_cleanup) */
    size_t der_len;
} qtsp_cert_record;

/* Normalises serial bytes (strips leading zeros). QTSP_ERR_INVALID for zero
 * or more than 20 bytes. out must hold QTSP_SERIAL_MAX. */
qtsp_status qtsp_serial_normalize(const unsigned char *in, size_t len, unsigned char *out,
                                  size_t *out_len) QTSP_MUST_USE;
/* Lower-case hex without leading zeros <-> bytes (interface.md serial form). */
qtsp_status qtsp_serial_from_hex(const char *hex, unsigned char *out,
                                 size_t *out_len) QTSP_MUST_USE;
void qtsp_serial_to_hex(const unsigned char *s, size_t len, char *out /* >= 41 */);

/* An ASN1_TIME (UTCTime or GeneralizedTime) as seconds since the epoch.
 * QTSP_ERR_INVALID for an unreadable time. */
qtsp_status qtsp_asn1_time_to_epoch(const ASN1_TIME *t, int64_t *out) QTSP_MUST_USE;

/* Stores a newly issued certificate with status valid (not_before/not_after
 * taken from the DER) and its subject index. QTSP_ERR_EXISTS if the serial
 * was ever used. QTSP_ERR_INVALID if the DER does not parse exactly, or its
 * serial is not rec->serial, or a text field is empty (issuer) or too long. */
qtsp_status qtsp_certdb_put(qtsp_txn *txn, const qtsp_cert_record *rec) QTSP_MUST_USE;

/* Notes that the root CA issued serial (the issuing CA, a TSA unit): the
 * root CRL covers exactly these, the qualified CRLs never do. */
qtsp_status qtsp_certdb_add_root_issued(qtsp_txn *txn, const unsigned char *serial,
                                        size_t slen) QTSP_MUST_USE;

/* Reads the record; the DER is copied (free with qtsp_cert_record_cleanup). */
qtsp_status qtsp_certdb_get(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                            qtsp_cert_record *out) QTSP_MUST_USE;
void qtsp_cert_record_cleanup(qtsp_cert_record *rec);

/* The issuer field of serial's record ("issuing" or "root") into out, read
 * without copying the DER (the OCSP hot path). QTSP_ERR_NOT_FOUND for a
 * serial never issued, QTSP_ERR_STORE_CORRUPT for an unreadable record. */
qtsp_status qtsp_certdb_get_issuer(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   char out[QTSP_CERT_ISSUER_MAX]) QTSP_MUST_USE;

/* Stored status. QTSP_ERR_NOT_FOUND for a serial never issued. */
qtsp_status qtsp_certdb_get_status(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   qtsp_cert_status *out) QTSP_MUST_USE;

/* The status as it is at time now: an on-hold record whose hold_until <= now
 * reads as valid (released=1, changed_at=hold_until). Pure function. */
void qtsp_cert_status_effective(const qtsp_cert_status *stored, time_t now, qtsp_cert_status *out);

/* Writes a new status and keeps the indexes in step in the same transaction:
 * revoked (entries for the CRL, released ones kept with released=1 for the
 * delta CRL), holds (lapse queue), ocsp_cache (every entry of the serial
 * dropped), and bumps the counter "status_gen".
 * ocsp_cache keys are: 1 byte serial length | serial | 1 byte CertID hash
 * (1 = SHA-1, 2 = SHA-256); values belong to ocsp/.
 * Stored as given, except: not_before/not_after are kept from the
 * certificate; changed_at 0 becomes now; ON_HOLD needs hold_until > 0 and
 * gets reason certificateHold; VALID after ON_HOLD gets released=1.
 * QTSP_ERR_STATE when the certificate is revoked (final); QTSP_ERR_INVALID
 * for REVOKED with reason certificateHold, removeFromCRL or an unknown one;
 * QTSP_ERR_NOT_FOUND for a serial never issued. */
qtsp_status qtsp_certdb_set_status(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   const qtsp_cert_status *st) QTSP_MUST_USE;

/* Serials of a subject, in issue order: fn is called per serial. */
typedef qtsp_status (*qtsp_serial_fn)(void *ctx, const unsigned char *serial, size_t slen);
qtsp_status qtsp_certdb_subject_serials(qtsp_txn *txn, const char *subject_id, qtsp_serial_fn fn,
                                        void *ctx) QTSP_MUST_USE;

/* Entries of the revoked index (for CRLs) in serial order; st borrowed. */
typedef qtsp_status (*qtsp_revoked_fn)(void *ctx, const unsigned char *serial, size_t slen,
                                       const qtsp_cert_status *st);
qtsp_status qtsp_certdb_revoked_each(qtsp_txn *txn, qtsp_revoked_fn fn, void *ctx) QTSP_MUST_USE;

/* Status records in key order (serial bytes), from the first serial after
 * `after` (NULL: from the start): of every certificate (revoked_only 0) or
 * of the revoked index only (1: revoked, on hold, and released entries a
 * delta CRL still needs). For paged listings: fn sets *stop to end; a
 * non-OK return of fn ends the walk and is returned. st borrowed. */
typedef qtsp_status (*qtsp_status_visit_fn)(void *ctx, const unsigned char *serial, size_t slen,
                                            const qtsp_cert_status *st, int *stop);
qtsp_status qtsp_certdb_status_scan(qtsp_txn *txn, int revoked_only, const unsigned char *after,
                                    size_t alen, qtsp_status_visit_fn fn, void *ctx) QTSP_MUST_USE;

/* Forgets a released entry of the revoked index that no CRL needs any more:
 * once a full CRL with thisUpdate `before` is the base of every delta, an
 * entry released (valid, released=1) before it is never listed again
 * (RFC 5280 5.2.4: deltas only carry changes since their base). Deletes
 * revoked[serial] only if it is still valid, released and changed_at <
 * before; anything else (held again, revoked, changed since, absent) is
 * left alone with *deleted = 0. The status record is not touched. Write
 * transaction (QTSP_ERR_STATE otherwise). */
qtsp_status qtsp_certdb_revoked_forget(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                       time_t before, int *deleted) QTSP_MUST_USE;

/* Holds whose hold_until <= now, earliest first (for the lapse sweeper).
 * At most 10000 per call; fn may change the status (the list is collected
 * before fn is called). */
qtsp_status qtsp_certdb_due_holds(qtsp_txn *txn, time_t now, qtsp_serial_fn fn,
                                  void *ctx) QTSP_MUST_USE;

#endif
