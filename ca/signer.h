/* The signer interface (style.md "narrow seams"): services sign through a
 * qtsp_signer, which is a key in the token reached by label through a
 * per-thread PKCS#11 session (qtsp_hsm_sign_digest: no libp11 session pool,
 * no C_FindObjects), or — when no signer is set — the EVP_PKEY itself
 * (software keys in tests, or libp11's EVP_PKEY). Thread-safe. */
#ifndef QTSP_CA_SIGNER_H
#define QTSP_CA_SIGNER_H

#include <openssl/evp.h>
#include <stddef.h>

#include "ca/hsm.h"
#include "core/err.h"

/* Signs a digest made with md. ECDSA: DER ECDSA-Sig-Value; RSA: PKCS#1 v1.5.
 * sig holds *siglen bytes on entry; *siglen is the length on return. */
typedef qtsp_status (*qtsp_digest_sign_fn)(void *ctx, const EVP_MD *md, const unsigned char *dgst,
                                           size_t dlen, unsigned char *sig, size_t *siglen);

typedef struct qtsp_signer {
    qtsp_digest_sign_fn fn; /* NULL: sign with the EVP_PKEY */
    void *ctx;
} qtsp_signer;

/* Hashes data with md in software and signs the digest through s->fn, or
 * (s NULL or s->fn NULL) signs with EVP_DigestSign on pkey.
 * QTSP_ERR_CRYPTO / QTSP_ERR_HSM on failure. */
qtsp_status qtsp_sign_data(const qtsp_signer *s, EVP_PKEY *pkey, const EVP_MD *md,
                           const unsigned char *data, size_t len, unsigned char *sig,
                           size_t *siglen) QTSP_MUST_USE;

/* A key in the token by label, as a qtsp_signer (ctx = the qtsp_token_key,
 * which must outlive the signer's users). */
typedef struct qtsp_token_key {
    qtsp_hsm *hsm;
    char label[64];
} qtsp_token_key;

/* Fills s to sign with k. */
void qtsp_signer_for_token_key(qtsp_token_key *k, qtsp_signer *s);

#endif
