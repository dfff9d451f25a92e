/* The key interface (style.md "narrow seams"): every signature qtsp makes
 * (certificates, CRLs, OCSP responses, time-stamp tokens, subscribers'
 * signatures) goes through a qtsp_key. A key signs a digest with the
 * algorithm given as a parameter, and carries its public key and, once set,
 * its certificate and chain.
 *
 * Backends are small tables of functions (qtsp_key_ops): a key in the
 * PKCS#11 token reached by label (qtsp_key_from_token, ca/hsm_sign.c), a
 * software EVP_PKEY (qtsp_key_from_evp, tests and tools), and whatever
 * comes next (a subscriber key wrapped under a token key, a remote signer)
 * through qtsp_key_new, without touching callers.
 *
 * Thread safety: signing and the get0 accessors may be called from any
 * number of threads at once; qtsp_key_set1_cert must happen before the key
 * is shared. */
#ifndef QTSP_CA_KEY_H
#define QTSP_CA_KEY_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "core/err.h"

#define QTSP_KEY_SIG_MAX 1024 /* DER ECDSA or RSA up to 8192 bits */
#define QTSP_KEY_ALGID_MAX 96 /* AlgorithmIdentifier DER, RSASSA-PSS included */

typedef struct qtsp_key qtsp_key;
typedef struct qtsp_hsm qtsp_hsm;

typedef enum qtsp_sig_scheme {
    QTSP_SIG_ECDSA = 1,     /* output: DER ECDSA-Sig-Value (RFC 5480 2.2) */
    QTSP_SIG_RSA_PKCS1 = 2, /* RSASSA-PKCS1-v1_5 (RFC 8017 8.2) */
    QTSP_SIG_RSA_PSS = 3,   /* RSASSA-PSS (RFC 8017 8.1) */
} qtsp_sig_scheme;

/* A signature algorithm: scheme and digest; for PSS also the MGF1 digest
 * and the salt length. */
typedef struct qtsp_sigalg {
    qtsp_sig_scheme scheme;
    const EVP_MD *md;      /* SHA-224/256/384/512 */
    const EVP_MD *mgf1_md; /* PSS: NULL = md */
    int salt_len;          /* PSS: bytes; < 0 = the digest length */
} qtsp_sigalg;

/* A backend. sign_digest: dgst (dlen bytes, already checked to be
 * alg->md's size) signed with alg; sig holds *siglen bytes on entry, the
 * length on return; QTSP_ERR_TOO_BIG when it does not fit. free: releases
 * ctx (may be NULL). Both may be called from several threads. */
typedef struct qtsp_key_ops {
    const char *name; /* "token", "software", ... for messages */
    qtsp_status (*sign_digest)(void *ctx, const qtsp_sigalg *alg, const unsigned char *dgst,
                               size_t dlen, unsigned char *sig, size_t *siglen);
    void (*free)(void *ctx);
} qtsp_key_ops;

/* A key over a backend: ops (static, borrowed), ctx (owned: ops->free runs
 * on it when the key is freed, also when this fails), pub the public key
 * (up-ref'd). QTSP_ERR_INVALID, QTSP_ERR_NOMEM. */
qtsp_status qtsp_key_new(const qtsp_key_ops *ops, void *ctx, EVP_PKEY *pub,
                         qtsp_key **out) QTSP_MUST_USE;

/* A key signing with a software private key (up-ref'd; EC or RSA). */
qtsp_status qtsp_key_from_evp(EVP_PKEY *pkey, qtsp_key **out) QTSP_MUST_USE;

/* The token's key labelled label: signed by C_Sign on the calling thread's
 * PKCS#11 session (no token enumeration). hsm is borrowed and must outlive
 * the key. QTSP_ERR_HSM_NO_KEY when the token has no such key. */
qtsp_status qtsp_key_from_token(qtsp_hsm *hsm, const char *label, qtsp_key **out) QTSP_MUST_USE;

/* Releases the key, its certificate and chain. NULL is a no-op. */
void qtsp_key_free(qtsp_key *k);

/* The natural algorithm of k with md: ECDSA for EC keys, RSASSA-PKCS1-v1_5
 * for RSA keys. md NULL: SHA-256, or for EC keys the digest matching the
 * curve size (RFC 5758 3.2: P-384 -> SHA-384, larger -> SHA-512).
 * QTSP_ERR_UNSUPPORTED for other key types. */
qtsp_status qtsp_key_sigalg(const qtsp_key *k, const EVP_MD *md, qtsp_sigalg *out) QTSP_MUST_USE;

/* Signs a digest made with alg->md. dlen must be the digest's size
 * (QTSP_ERR_INVALID otherwise, also for a scheme that does not fit the key
 * type). sig holds *siglen bytes; *siglen is the length on return (written
 * only on success). QTSP_ERR_TOO_BIG, QTSP_ERR_CRYPTO, QTSP_ERR_HSM*. */
qtsp_status qtsp_key_sign_digest(const qtsp_key *k, const qtsp_sigalg *alg,
                                 const unsigned char *dgst, size_t dlen, unsigned char *sig,
                                 size_t *siglen) QTSP_MUST_USE;

/* Hashes data with alg->md in software, then qtsp_key_sign_digest. */
qtsp_status qtsp_key_sign_data(const qtsp_key *k, const qtsp_sigalg *alg, const unsigned char *data,
                               size_t len, unsigned char *sig, size_t *siglen) QTSP_MUST_USE;

/* Signs the certificate x (its TBSCertificate as it stands) with alg:
 * sets both signature AlgorithmIdentifiers, re-encodes, signs, and
 * returns the signed certificate as a fresh object in *out (caller frees;
 * x is left as it was before signing or half-signed, free it). */
qtsp_status qtsp_key_sign_x509(const qtsp_key *k, const qtsp_sigalg *alg, X509 *x,
                               X509 **out) QTSP_MUST_USE;

/* Largest signature k makes, in bytes (for buffers). */
size_t qtsp_key_sig_max(const qtsp_key *k);

/* The AlgorithmIdentifier DER of alg (RFC 5758 3.2 ECDSA without
 * parameters, RFC 8017 A.2.4 with NULL parameters, RFC 4055 3.1 PSS with
 * explicit RSASSA-PSS-params) into out (cap bytes). QTSP_ERR_UNSUPPORTED,
 * QTSP_ERR_TOO_BIG. */
qtsp_status qtsp_sigalg_algid(const qtsp_sigalg *alg, unsigned char *out, size_t cap,
                              size_t *len) QTSP_MUST_USE;

/* The public key of a SubjectPublicKeyInfo (RFC 5280 4.1.2.7; DER, len
 * bytes, consumed exactly) into *out (caller frees). An EC key on P-256 or
 * P-384 in the one DER form i2d_PUBKEY writes (named curve, uncompressed
 * point) is built from its point directly: OpenSSL 3.0's d2i_PUBKEY walks
 * its decoder registry for every call (about 100 us, a tenth of a wrapped
 * key's signature); the point is still checked to be on the curve. Other
 * keys go through d2i_PUBKEY. QTSP_ERR_INVALID (not a public key we read).
 * Thread-safe. */
qtsp_status qtsp_pubkey_from_spki(const unsigned char *der, size_t len,
                                  EVP_PKEY **out) QTSP_MUST_USE;

/* The public key (borrowed; valid while k lives). */
EVP_PKEY *qtsp_key_get0_pubkey(const qtsp_key *k);

/* The certificate and its chain (issuer first), NULL until set. Borrowed. */
X509 *qtsp_key_get0_cert(const qtsp_key *k);
STACK_OF(X509) * qtsp_key_get0_chain(const qtsp_key *k);

/* Sets the certificate (up-ref'd; must certify k's public key, else
 * QTSP_ERR_INVALID) and chain (may be NULL; certificates up-ref'd),
 * replacing earlier ones. Not thread-safe: before the key is shared. */
qtsp_status qtsp_key_set1_cert(qtsp_key *k, X509 *cert, STACK_OF(X509) * chain) QTSP_MUST_USE;

#endif
