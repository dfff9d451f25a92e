/* Internals shared by the token files: ca/hsm.c (module, token, login),
 * hsm_session.c (per-thread sessions), hsm_index.c (lookup by label, the key
 * index, rescans), hsm_keys.c (generation, public keys, destroy, checks),
 * hsm_sign.c (C_Sign, the token backend of ca/key.h), hsm_wrap.c (the
 * key-storage key, wrapped subscriber keys, the binding key and the pool
 * mark). Only these files
 * include libp11.h and the PKCS#11 header. */
#ifndef QTSP_CA_HSM_INT_H
#define QTSP_CA_HSM_INT_H

#include <libp11.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ca/hsm.h"
#include "core/err.h"

#define HSM_LABEL_MAX 128 /* CKA_LABEL we accept for keys */
#define HSM_PIN_MAX 255
#define HSM_ATTR_MAX 2048 /* largest public attribute we read (RSA-16384 fits) */
#define HSM_SIG_MAX 1024  /* raw signature from C_Sign (RSA up to 8192 bits) */
#define HSM_FIND_BATCH 256

/* One label's objects, as learnt by this process (see "key index"). */
typedef struct key_entry {
    struct key_entry *next;
    uint64_t hash;
    CK_OBJECT_HANDLE priv, pub; /* CK_INVALID_HANDLE when unknown */
    CK_KEY_TYPE kt;
    char label[];
} key_entry;

typedef struct hsm_session {
    qtsp_hsm *hsm;
    CK_SESSION_HANDLE h;
    struct hsm_session *prev, *next;
} hsm_session;

struct qtsp_hsm {
    PKCS11_CTX *ctx;
    PKCS11_SLOT *slots;
    unsigned nslots;
    PKCS11_SLOT *slot;       /* borrowed from slots */
    void *dl;                /* our reference to the module */
    CK_FUNCTION_LIST_PTR fl; /* the module's function list */
    CK_SLOT_ID slot_id;
    pthread_mutex_t lock;     /* libp11 key lists, session list */
    pthread_mutex_t gen_lock; /* "label free?" + generate as one step */
    pthread_key_t tls;        /* this thread's hsm_session */
    bool tls_ok;
    bool loaded;           /* PKCS11_CTX_load succeeded */
    hsm_session *sessions; /* all open per-thread sessions, under lock */
    atomic_uint nsessions;
    pthread_rwlock_t idx_lock; /* key index */
    bool idx_ok;
    key_entry **idx;
    size_t idx_nb, idx_n;
    _Atomic uint64_t idx_rescan_ns;             /* last rescan after a miss (qtsp_mono_ns) */
    _Atomic uint64_t idx_rescans, idx_searches; /* after misses: whole-token rescans, searches */
    pthread_mutex_t wrap_lock;        /* the wrapping objects' handles below, the mark's update */
    CK_OBJECT_HANDLE ksk, bind, mark; /* hsm_wrap.c; CK_INVALID_HANDLE until found */
};

/* PKCS#11 return value as its CKR_ name (static string). */
const char *hsm_ckr_name(CK_RV rv);

/* QTSP_ERR_INVALID unless label is 1..HSM_LABEL_MAX printable bytes. */
qtsp_status hsm_check_label(const char *label) QTSP_MUST_USE;

/* Closes a per-thread session (pthread key destructor; also at free). */
void hsm_session_release(void *p);

/* The calling thread's session, opened on first use. */
qtsp_status hsm_thread_session(qtsp_hsm *hsm, CK_SESSION_HANDLE *out) QTSP_MUST_USE;

/* Up to max objects of class cls (any with CK_UNAVAILABLE_INFORMATION)
 * labelled label; *n how many. A token search: O(objects). */
qtsp_status hsm_find_by_label(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                              CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *objs, CK_ULONG max,
                              CK_ULONG *n) QTSP_MUST_USE;

/* A variable-length attribute in a fresh buffer (caller frees). */
qtsp_status hsm_get_bytes(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                          CK_ATTRIBUTE_TYPE type, const char *name, unsigned char **out,
                          size_t *len) QTSP_MUST_USE;

/* The key index (hsm_index.c): lookup, presence, insert, eviction, load
 * (one token scan, retried), release. Thread-safe (idx_lock). */
bool hsm_idx_get(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h,
                 CK_KEY_TYPE *kt);
bool hsm_idx_has(qtsp_hsm *hsm, const char *label);
qtsp_status hsm_idx_put(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE o,
                        CK_KEY_TYPE kt) QTSP_MUST_USE;
void hsm_idx_forget(qtsp_hsm *hsm, const char *label);
void hsm_idx_free(qtsp_hsm *hsm);
qtsp_status hsm_idx_load(qtsp_hsm *hsm, CK_SESSION_HANDLE s) QTSP_MUST_USE;

/* label's object of class cls: from the index unless fresh, else searched
 * (and remembered). QTSP_ERR_HSM_NO_KEY. */
qtsp_status hsm_resolve(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_CLASS cls,
                        bool fresh, CK_OBJECT_HANDLE *h, CK_KEY_TYPE *kt) QTSP_MUST_USE;

/* Generates a key pair with C_GenerateKeyPair on session s (hsm_keys.c).
 * label non-NULL: token objects labelled label (CKA_LABEL = CKA_ID), never
 * extractable. label NULL: session objects without a label whose private
 * key is sensitive but extractable, to be wrapped at once (hsm_wrap.c).
 * Private key: CKA_PRIVATE, CKA_SENSITIVE, CKA_SIGN, no decrypt or derive. */
qtsp_status hsm_generate_pair(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                              qtsp_keytype type, CK_OBJECT_HANDLE *hpub,
                              CK_OBJECT_HANDLE *hpriv) QTSP_MUST_USE;

/* The public key object o (of key type kt) as a software EVP_PKEY (caller
 * frees); name for messages. QTSP_ERR_UNSUPPORTED, QTSP_ERR_HSM. */
qtsp_status hsm_public_of(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_KEY_TYPE kt,
                          const char *name, EVP_PKEY **out) QTSP_MUST_USE;

/* Signs dgst with the private key object key (key type kt) on session s
 * (hsm_sign.c): as qtsp_hsm_sign_digest, label only names the key in
 * messages. QTSP_ERR_HSM_NO_KEY when the handle is not (or no longer) valid. */
qtsp_status hsm_sign_object(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                            CK_KEY_TYPE kt, const char *label, const qtsp_sigalg *alg,
                            const unsigned char *dgst, size_t dlen, unsigned char *sig,
                            size_t *siglen) QTSP_MUST_USE;

/* The token no longer knows a remembered handle. */
bool hsm_stale_handle(CK_RV rv);

/* hsm_resolve() plus a check that a remembered handle is still valid. */
qtsp_status hsm_resolve_live(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                             CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h,
                             CK_KEY_TYPE *kt) QTSP_MUST_USE;

#endif
