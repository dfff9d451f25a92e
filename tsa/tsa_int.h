/* TSA internals shared by the tsa/ sources, the fuzzer and the unit tests. */
#ifndef QTSP_TSA_TSA_INT_H
#define QTSP_TSA_TSA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tsa/tsa.h"

#define QTSP_TSA_MAX_OID 64     /* DER TLV bytes of a policy OID */
#define QTSP_TSA_MAX_POLICIES 8 /* accepted reqPolicy values */

/* Imprint hash algorithms known to the parser. Bits of qtsp_tsa_policy.hash_mask. */
typedef enum qtsp_tsa_hash {
    QTSP_TSA_H_SHA256 = 0,
    QTSP_TSA_H_SHA384,
    QTSP_TSA_H_SHA512,
    QTSP_TSA_H_SHA3_256,
    QTSP_TSA_H_SHA3_384,
    QTSP_TSA_H_SHA3_512,
    QTSP_TSA_H__COUNT
} qtsp_tsa_hash;

/* The policy file, parsed. Policy OIDs are full DER TLVs (06 len ...). */
typedef struct qtsp_tsa_policy {
    unsigned char oid[QTSP_TSA_MAX_OID]; /* policy put in tokens by default */
    size_t oid_len;
    unsigned char accepted[QTSP_TSA_MAX_POLICIES][QTSP_TSA_MAX_OID]; /* incl. oid */
    size_t accepted_len[QTSP_TSA_MAX_POLICIES];
    size_t n_accepted;
    unsigned accuracy_ms; /* 1..1000 (RFC 3161 2.4.2, EN 319 422: <= 1 s) */
    unsigned hash_mask;   /* 1u << qtsp_tsa_hash */
    int require_sync;     /* reject with timeNotAvailable when unsynchronised */
} qtsp_tsa_policy;

/* Name in policy files ("sha256", "sha3-512") of an algorithm. */
const char *qtsp_tsa_hash_name(qtsp_tsa_hash h);

/* The built-in defaults: baseline policy 0.4.0.2023.1.1 only, accuracy 1 s,
 * the six SHA-2/SHA-3 algorithms, require_sync on. */
void qtsp_tsa_policy_defaults(qtsp_tsa_policy *pol);

/* Adds a dotted OID to pol->accepted (and sets pol->oid when it is the
 * first). QTSP_ERR_INVALID / QTSP_ERR_TOO_BIG. */
qtsp_status qtsp_tsa_policy_add_oid(qtsp_tsa_policy *pol, const char *dotted) QTSP_MUST_USE;

/* Loads a policy file over the defaults. QTSP_ERR_CONFIG with file:line:col. */
qtsp_status qtsp_tsa_policy_load(const char *path, qtsp_tsa_policy *pol) QTSP_MUST_USE;

/* qtsp_tsa_new with an already-parsed policy (copied). tsa/tsa_store.c. */
qtsp_status qtsp_tsa_new_policy(const qtsp_tsa_policy *pol, X509 *tsa_cert, STACK_OF(X509) * chain,
                                const qtsp_key *key, qtsp_store *store,
                                qtsp_tsa **out) QTSP_MUST_USE;

/* One journal record: key = the token's serial (content octets), value as
 * docs/tsa.md "Journal" describes. Borrowed for the call. */
typedef struct qtsp_tsa_record {
    const unsigned char *key;
    size_t key_len;
    const unsigned char *val;
    size_t val_len;
} qtsp_tsa_record;

/* Where the journal is kept (a seam: tsa/tsa_store.c keeps it in a
 * qtsp_store; the core links no store). put writes the n records in one
 * transaction and returns once it is durable; replace 0: a key already
 * present fails the whole transaction (nothing written), replace 1: it is
 * overwritten. Called from the committer thread and, to void an entry,
 * from the thread completing a job: must be thread-safe. */
typedef struct qtsp_tsa_journal {
    qtsp_status (*put)(void *ctx, const qtsp_tsa_record *recs, size_t n, int replace);
    void *ctx; /* must outlive the TSA */
} qtsp_tsa_journal;

/* The TSA core: qtsp_tsa_new_policy with the journal kept by journal
 * (copied; NULL or put NULL: no journal, no committer thread). */
qtsp_status qtsp_tsa_new_journal(const qtsp_tsa_policy *pol, X509 *tsa_cert, STACK_OF(X509) * chain,
                                 const qtsp_key *key, const qtsp_tsa_journal *journal,
                                 qtsp_tsa **out) QTSP_MUST_USE;

/* What the parser found in a TimeStampReq; pointers borrow from the query. */
typedef struct qtsp_tsa_req {
    const unsigned char *imprint; /* whole MessageImprint TLV */
    size_t imprint_len;
    const unsigned char *hash_oid; /* OID content bytes */
    size_t hash_oid_len;
    const unsigned char *hashed; /* hashedMessage content */
    size_t hashed_len;
    int hash;                    /* qtsp_tsa_hash, or -1 */
    const unsigned char *policy; /* reqPolicy TLV or NULL */
    size_t policy_len;
    const unsigned char *nonce; /* nonce TLV or NULL */
    size_t nonce_len;
    int cert_req;
} qtsp_tsa_req;

/* Parses a TimeStampReq against pol. Returns -1 and fills *req when the
 * request can be granted, else the failInfo bit to reject with (and the
 * thread's error record is cleared: a rejection is an answer, not an
 * error). Never reads outside query[0..len). Thread-safe. */
int qtsp_tsa_parse_query(const qtsp_tsa_policy *pol, const unsigned char *query, size_t len,
                         qtsp_tsa_req *req);

#endif
