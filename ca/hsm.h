/* Keys in a PKCS#11 token. Only the token files (ca/hsm*.c, through
 * ca/hsm_int.h) include libp11.h and pkcs11.h. Every private key is
 * generated inside the token with CKA_SENSITIVE=true, CKA_EXTRACTABLE=false
 * and never leaves it; services sign through the key interface (ca/key.h,
 * qtsp_key_from_token), never with the token's objects directly.
 *
 * One qtsp_hsm per process. Thread-safe: signing from several threads uses
 * one PKCS#11 session per thread (ca/hsm_session.c). */
#ifndef QTSP_CA_HSM_H
#define QTSP_CA_HSM_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "core/err.h"

typedef struct qtsp_hsm qtsp_hsm;

typedef enum qtsp_keytype {
    QTSP_KEY_EC_P256 = 1,
    QTSP_KEY_EC_P384 = 2,
    QTSP_KEY_RSA_3072 = 3,
} qtsp_keytype;

/* "ec-p256", "ec-p384", "rsa-3072" -> type. QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_keytype_parse(const char *s, qtsp_keytype *out) QTSP_MUST_USE;
const char *qtsp_keytype_name(qtsp_keytype t);

/* Creates and initialises an embedded SoftHSM2 token: writes
 * dir/softhsm2.conf (tokendir dir/tokens, file backend), sets SOFTHSM2_CONF
 * for this process, and runs C_InitToken + C_InitPIN with the given PINs.
 * Refuses (QTSP_ERR_EXISTS) when dir/tokens already holds a token, and
 * (QTSP_ERR_STATE) when the module is already initialised in this process
 * (an open qtsp_hsm): SoftHSM2 reads SOFTHSM2_CONF only at C_Initialize.
 * On failure SOFTHSM2_CONF is restored. Call qtsp_hsm_open afterwards in
 * the same process as usual. Not thread-safe (setenv). */
qtsp_status qtsp_softhsm_create(const char *module, const char *dir, const char *label,
                                const char *so_pin, const char *user_pin) QTSP_MUST_USE;

/* Loads the module, finds the token by label, logs in as user with pin.
 * QTSP_ERR_HSM_NO_TOKEN, QTSP_ERR_HSM_LOGIN, QTSP_ERR_HSM. For SoftHSM2 the
 * caller sets SOFTHSM2_CONF before. *out is owned by the caller.
 * Reads the label, type and handles of every key once (an index kept in
 * memory, so later operations never scan the token). */
qtsp_status qtsp_hsm_open(const char *module, const char *token_label, const char *pin,
                          qtsp_hsm **out) QTSP_MUST_USE;
/* Logs out and releases everything. NULL is a no-op. Never C_Finalize()s
 * while libp11 may still use the module. */
void qtsp_hsm_free(qtsp_hsm *hsm);

/* Token model, serial number and manufacturer (trimmed), for the ceremony report. */
qtsp_status qtsp_hsm_token_info(qtsp_hsm *hsm, char *model, size_t model_cap, char *serial,
                                size_t serial_cap, char *manufacturer,
                                size_t manufacturer_cap) QTSP_MUST_USE;

/* Generates a key pair inside the token under label (also used as CKA_ID).
 * Private key: CKA_PRIVATE, CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_SIGN, CKA_TOKEN.
 * QTSP_ERR_EXISTS when label is taken (checked against the in-memory index:
 * keys present at open or made/seen by this process since; a key another
 * process adds later under the same label is not detected). *pub_out (may
 * be NULL) receives the public key as a software EVP_PKEY (caller frees). */
qtsp_status qtsp_hsm_generate(qtsp_hsm *hsm, const char *label, qtsp_keytype type,
                              EVP_PKEY **pub_out) QTSP_MUST_USE;

/* The public key for label as a software EVP_PKEY (caller frees). */
qtsp_status qtsp_hsm_public_key(qtsp_hsm *hsm, const char *label, EVP_PKEY **out) QTSP_MUST_USE;

/* Signs a precomputed digest with the key label through C_Sign on the
 * thread's session, without enumerating the token: the primitive under the
 * token backend of ca/key.h (callers sign through a qtsp_key). alg->scheme
 * must fit the key: ECDSA (result DER ECDSA-Sig-Value), RSA PKCS#1 v1.5
 * (DigestInfo built here from alg->md) or RSA-PSS (CKM_RSA_PKCS_PSS with
 * alg->md, MGF1 alg->mgf1_md or alg->md, salt alg->salt_len or the digest
 * length). sig must hold *siglen bytes; *siglen receives the length.
 * QTSP_ERR_INVALID (bad lengths, scheme not fitting the key),
 * QTSP_ERR_UNSUPPORTED (digest), QTSP_ERR_TOO_BIG, QTSP_ERR_HSM_NO_KEY,
 * QTSP_ERR_HSM. Thread-safe. */
qtsp_status qtsp_hsm_sign_digest(qtsp_hsm *hsm, const char *label, const qtsp_sigalg *alg,
                                 const unsigned char *dgst, size_t dlen, unsigned char *sig,
                                 size_t *siglen) QTSP_MUST_USE;

/* Destroys the private and public objects with label. QTSP_ERR_HSM_NO_KEY
 * if there is none. */
qtsp_status qtsp_hsm_destroy(qtsp_hsm *hsm, const char *label) QTSP_MUST_USE;

/* Calls fn(ctx, label) for every key label starting with prefix that the
 * in-memory index knows (keys present at open, made or looked up by this
 * process since; keys another process added later are not listed). The
 * labels are copied first, so fn may generate or destroy keys. A non-OK
 * return from fn ends the walk and is returned. No token search. */
typedef qtsp_status (*qtsp_label_fn)(void *ctx, const char *label);
qtsp_status qtsp_hsm_list_labels(qtsp_hsm *hsm, const char *prefix, qtsp_label_fn fn,
                                 void *ctx) QTSP_MUST_USE;

/* Number of private-key objects in the token. */
qtsp_status qtsp_hsm_count_private_keys(qtsp_hsm *hsm, size_t *out) QTSP_MUST_USE;

/* Checks that label's private key has CKA_SENSITIVE=true, CKA_EXTRACTABLE=false,
 * CKA_NEVER_EXTRACTABLE=true. QTSP_ERR_HSM with the failing attribute named. */
qtsp_status qtsp_hsm_check_key_protected(qtsp_hsm *hsm, const char *label) QTSP_MUST_USE;

/* Number of per-thread PKCS#11 sessions qtsp has open (for /metrics);
 * libp11's own session pool is not counted. A thread's session closes when
 * the thread exits. */
unsigned qtsp_hsm_session_count(const qtsp_hsm *hsm);

/* Key lookups that missed the index (a key made by another process, or
 * none): whole-token rescans (at most one a second) and searches by label
 * (the misses in between). Each costs O(objects in the token). */
void qtsp_hsm_lookup_stats(qtsp_hsm *hsm, unsigned long long *rescans,
                           unsigned long long *searches);

/* ---------- wrapped subscriber keys (ca/hsm_wrap.c, docs/hsm.md) ----------
 * A subscriber key is generated as a session object, wrapped at once under
 * the token's key-storage key (CKM_AES_KEY_WRAP_PAD) and destroyed; the
 * blob lives in the store. Per signature it is unwrapped into a sensitive,
 * non-extractable, sign-only session object. The token also holds a binding
 * key (HMAC-SHA256) that authenticates what the store says about a blob,
 * and the pool mark, a counter of pool keys handed out. These three objects
 * are all the token gains: the object count does not grow with issuance. */
#define QTSP_HSM_KSK_LABEL "qtsp-key-storage"
#define QTSP_HSM_BINDING_LABEL "qtsp-key-binding"
#define QTSP_HSM_MARK_LABEL "qtsp-pool-mark"
#define QTSP_WRAPPED_MAX 4096 /* a wrapped RSA-3072 private key is ~1.8 KB */
#define QTSP_HSM_MAC_LEN 32
#define QTSP_HSM_MADE_KSK 1u
#define QTSP_HSM_MADE_BINDING 2u
#define QTSP_HSM_MADE_MARK 4u

/* Makes whichever of the three objects the token lacks: the key-storage
 * key (AES-256; CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_WRAP and CKA_UNWRAP
 * only), the binding key (generic secret, 256 bits, sensitive, never
 * extractable, CKA_SIGN/CKA_VERIFY only) and the pool mark (private data
 * object, value 0). *made (may be NULL) gets the QTSP_HSM_MADE_* bits of what
 * was made now. Idempotent; another process making them at the same moment
 * may leave two of one kind (QTSP_ERR_HSM "several ..." at next use): run it
 * from one process (init, or serve's start before its workers fork).
 * QTSP_ERR_HSM. Thread-safe. */
qtsp_status qtsp_hsm_wrap_setup(qtsp_hsm *hsm, unsigned *made) QTSP_MUST_USE;

/* Generates a subscriber key pair of type as session objects, wraps the
 * private key under the key-storage key and destroys both objects.
 * *blob (malloc'd, caller frees) and *blob_len the wrapped key, *pub the
 * public key (caller frees). QTSP_ERR_HSM_NO_KEY (no key-storage key),
 * QTSP_ERR_HSM. Thread-safe. */
qtsp_status qtsp_hsm_generate_wrapped(qtsp_hsm *hsm, qtsp_keytype type, unsigned char **blob,
                                      size_t *blob_len, EVP_PKEY **pub) QTSP_MUST_USE;

/* Unwraps blob into a session object of the calling thread's session
 * (CKA_TOKEN false, CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_SIGN only) and
 * returns a key over it (pub: its public key, up-ref'd; that the blob holds
 * pub's private key is the caller's to know, see ca/subkey.h's binding).
 * qtsp_key_free destroys the session object: free it on a thread of this
 * process while the opening thread lives (its session holds the object).
 * QTSP_ERR_INVALID, QTSP_ERR_HSM_NO_KEY, QTSP_ERR_HSM. Thread-safe. */
qtsp_status qtsp_key_from_wrapped(qtsp_hsm *hsm, const unsigned char *blob, size_t blob_len,
                                  EVP_PKEY *pub, qtsp_key **out) QTSP_MUST_USE;

/* HMAC-SHA256 of data with the binding key, computed in the token. */
qtsp_status qtsp_hsm_mac(qtsp_hsm *hsm, const unsigned char *data, size_t len,
                         unsigned char mac[QTSP_HSM_MAC_LEN]) QTSP_MUST_USE;
/* Checks mac over data in the token (C_Verify). QTSP_ERR_STATE when it
 * does not verify. */
qtsp_status qtsp_hsm_mac_verify(qtsp_hsm *hsm, const unsigned char *data, size_t len,
                                const unsigned char mac[QTSP_HSM_MAC_LEN]) QTSP_MUST_USE;

/* The pool mark: every pool key with a sequence number below it has been
 * handed out (or given up). get: its value. advance: hands out seq, i.e.
 * sets the mark to seq + 1 when seq >= the mark, else QTSP_ERR_STATE (that
 * key was handed out before: the caller's store is older than the token).
 * Read and written in the token (one data object), so every store that uses
 * the token sees the same mark. Thread-safe in a process; across processes
 * the caller serialises (e.g. inside a store write transaction). */
qtsp_status qtsp_hsm_mark_get(qtsp_hsm *hsm, uint64_t *out) QTSP_MUST_USE;
qtsp_status qtsp_hsm_mark_advance(qtsp_hsm *hsm, uint64_t seq) QTSP_MUST_USE;

#endif
