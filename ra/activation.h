/* Remote-signing activation material created at issuance: the signer's
 * user id, initial password (stored only as an argon2id hash) and TOTP
 * secret (RFC 6238; stored only wrapped with AES-256-GCM under the home's
 * OTP wrapping key DIR/secrets/otp.key, 0600). sign/ reads these back.
 * Thread-safe (no shared mutable state). */
#ifndef QTSP_RA_ACTIVATION_H
#define QTSP_RA_ACTIVATION_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

#define QTSP_OTP_KEY_LEN 32

/* Reads DIR/secrets/otp.key, creating it (32 random bytes, 0600) if absent. */
qtsp_status qtsp_otp_key_load(const char *secrets_dir,
                              unsigned char key[QTSP_OTP_KEY_LEN]) QTSP_MUST_USE;

/* Wraps secret into a new JSON object {"alg","iv","ct","tag"} (base64);
 * aad binds it to its owner (the user id). *out is a new reference. */
qtsp_status qtsp_otp_wrap(const unsigned char key[QTSP_OTP_KEY_LEN], const char *aad,
                          const unsigned char *secret, size_t len, json_t **out) QTSP_MUST_USE;
/* Unwraps into secret[cap]; QTSP_ERR_CRYPTO when the tag does not verify. */
qtsp_status qtsp_otp_unwrap(const unsigned char key[QTSP_OTP_KEY_LEN], const char *aad,
                            const json_t *wrapped, unsigned char *secret, size_t cap,
                            size_t *len) QTSP_MUST_USE;

/* argon2id encoded hash of a password (random salt). out >= 128 bytes. */
qtsp_status qtsp_password_hash(const char *password, char *out, size_t cap) QTSP_MUST_USE;
/* The same for a password a person chose (t=3, m=32 MiB: the operators'
 * parameters; docs/security.md). */
qtsp_status qtsp_password_hash_chosen(const char *password, char *out, size_t cap) QTSP_MUST_USE;
/* Constant-time check (any parameters: they are in the encoding); QTSP_ERR_AUTH when it does not
 * match. */
qtsp_status qtsp_password_verify(const char *encoded, const char *password) QTSP_MUST_USE;

/* Fresh activation data for user_id (issuance, and the office's reset of a
 * signer): a random password (120 bits, base64url) and its argon2id hash, a
 * new TOTP secret wrapped under key (aad user_id) and its otpauth URI. */
typedef struct qtsp_activation {
    char password[24];       /* shown once, never stored */
    char password_hash[160]; /* what the user record keeps */
    json_t *otp;             /* the wrapped TOTP secret (owned) */
    char otpauth_uri[200];   /* shown once: the secret in base32 */
} qtsp_activation;

/* Fills *out (qtsp_activation_cleanup). QTSP_ERR_INVALID (user id empty or
 * over 64 bytes), QTSP_ERR_CRYPTO. */
qtsp_status qtsp_activation_make(const unsigned char key[QTSP_OTP_KEY_LEN], const char *user_id,
                                 qtsp_activation *out) QTSP_MUST_USE;
/* Wipes the secrets and frees the wrapped secret. NULL ok. */
void qtsp_activation_cleanup(qtsp_activation *a);

#endif
