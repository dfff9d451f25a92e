/* RA internals shared by ra/ra.c, ra/lifecycle.c and ra/keypool.c (not by
 * ra/ra_http.c, which uses ra/ra.h only). */
#ifndef QTSP_RA_RA_INT_H
#define QTSP_RA_RA_INT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "ca/profile.h"
#include "core/periodic.h"
#include "ra/activation.h"
#include "ra/ra.h"
#include "sign/usage.h"

/* The key pool (ra/keypool.c): settings from policies/keypool.yaml and the
 * filler thread (core/periodic.h), kicked when a take leaves it low. */
typedef struct ra_keypool {
    int64_t size; /* 0 = disabled */
    int64_t low_water;
    int64_t batch;
    atomic_int stopping;              /* cuts a fill short */
    pthread_mutex_t mu;               /* guards filler: a take kicks it while stop frees it */
    qtsp_periodic *filler;            /* NULL when not started */
    int cleaned;                      /* the filler destroyed the orphans of a crash */
    int first_done;                   /* the filler's first fill succeeded */
    atomic_uint_fast64_t generated;   /* keys put in the pool by this process */
    atomic_uint_fast64_t taken;       /* issuances served from the pool */
    atomic_uint_fast64_t inline_made; /* issuances that generated inline */
    atomic_uint_fast64_t orphans;     /* orphan keys destroyed */
} ra_keypool;

/* policies/identity.yaml (absent: every id type, evidence optional, the
 * three methods, any document type). */
#define RA_MAX_DOC_TYPES 16
typedef struct ra_identity {
    unsigned id_types; /* bits of ra_id_types (ra.c) */
    int evidence_required;
    unsigned methods; /* bits: in-person, remote-video, eid */
    char doc_types[RA_MAX_DOC_TYPES][65];
    size_t n_doc_types; /* 0 = any */
} ra_identity;

struct qtsp_ra {
    qtsp_ra_deps d;
    char base_url[256];
    qtsp_profile *profile;
    qtsp_keytype keytype;
    qtsp_packages packages; /* policies/packages.yaml (sign/usage.h) */
    int64_t max_hold_s;
    int64_t sweep_interval_s;
    ra_identity ident;
    unsigned char otp_key[QTSP_OTP_KEY_LEN];
    ra_keypool kp;
    int kp_ready; /* kp initialised */
};

/* QTSP_ERR_FORBIDDEN unless who has one of roles. */
qtsp_status ra_require_role(const qtsp_actor *who, unsigned roles, const char *what) QTSP_MUST_USE;
/* The subject_index key of an identifier: "CC:id" for PNO (as it always
 * was), "CC:TYPE:id" for the other types. key must hold 128 bytes. */
void ra_id_index_key(const char *country, const char *id_type, const char *id, char key[128]);
/* QTSP_ERR_NOT_FOUND "no certificate with serial <hex>" (the earlier error cleared). */
qtsp_status ra_no_such_cert(const unsigned char *serial, size_t slen) QTSP_MUST_USE;
/* Records: version byte + compact JSON. get: new reference. */
qtsp_status ra_put_json(qtsp_txn *txn, qtsp_table t, const char *key, const json_t *obj,
                        unsigned flags) QTSP_MUST_USE;
qtsp_status ra_get_json(qtsp_txn *txn, qtsp_table t, const char *key, json_t **out) QTSP_MUST_USE;
/* The API's status object (new reference, NULL on allocation failure). */
json_t *ra_status_json(const unsigned char *serial, size_t slen, const qtsp_cert_status *stored,
                       time_t now);

/* The certificate as PEM text (malloc'd; NULL when out of memory). */
char *ra_x509_pem(X509 *x);

/* ---- search indexes (ra/find.c) ---- */
/* Adds (add 1) or removes (0) the e-mail, phone and name search keys of
 * subject record rec (id sid) in txn, a write transaction. */
qtsp_status ra_search_index(qtsp_txn *txn, const json_t *rec, const char *sid,
                            int add) QTSP_MUST_USE;

/* ---- key pool (ra/keypool.c) ---- */
#define RA_POOL_PREFIX "kp-"  /* legacy pool keys: token objects (homes before wrapping) */
#define RA_WPOOL_PREFIX "kw-" /* wrapped pool keys: "kw-" + sequence number (16 hex) */
/* Reads policies_dir/keypool.yaml (absent: pool disabled) and initialises
 * ra->kp (also when disabled). */
qtsp_status ra_keypool_init(qtsp_ra *ra, const char *policies_dir) QTSP_MUST_USE;
void ra_keypool_cleanup(qtsp_ra *ra);

/* A wrapped subscriber key on its way into a credential (ca/subkey.h). */
typedef struct ra_subkey {
    char label[64];      /* pool entry name ("kw-..."), or "kw-inline" */
    unsigned char *blob; /* wrapped private key (owned) */
    size_t blob_len;
    EVP_PKEY *pub; /* owned */
} ra_subkey;
/* Frees what sk owns and zeroes it. */
void ra_subkey_cleanup(ra_subkey *sk);

/* Takes the wrapped key with the lowest sequence number of ra->keytype out
 * of the pool, in one write transaction that also checks its entry's
 * authentication in the token and advances the token's pool mark past it
 * (docs/hsm.md "Bound for ever"). QTSP_ERR_NOT_FOUND (no error recorded)
 * when the pool is empty or disabled. QTSP_ERR_STATE when the pool offered
 * keys the token's mark says were handed out already (a store older than
 * the token: a copied home, a restored backup): they are discarded
 * (audited "keypool.stale") and nothing is taken. *out: caller cleans up. */
qtsp_status ra_keypool_take(qtsp_ra *ra, ra_subkey *out) QTSP_MUST_USE;
/* After a failed issuance with a pool key: records that the key is gone
 * (audited "key.destroy"; it exists nowhere but in the caller's memory).
 * Logs failures. */
void ra_keypool_discard(qtsp_ra *ra, const char *actor, const char *label, const char *why);
/* In the issuance transaction: records that the legacy token key label
 * certifies serial. */
qtsp_status ra_key_use_certified(qtsp_txn *txn, const char *label, const unsigned char *serial,
                                 size_t slen) QTSP_MUST_USE;

#endif
