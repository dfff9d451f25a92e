/* Subscriber keys of remote-signing credentials (docs/hsm.md "Wrapped
 * subscriber keys"). A credential record (QTSP_T_CREDENTIALS, JSON) holds
 * its key either
 *  - wrapped: "key": {"format": "aes-kwp-v1", "type": "ec-p256", "blob":
 *    the private key wrapped under the token's key-storage key, "public_key":
 *    SPKI DER, "binding": HMAC-SHA256 by the token's binding key over the
 *    certificate serial, the key type and the hashes of public key and blob}
 *    (all byte strings base64url), or
 *  - legacy: "key_label", a token object (homes from before wrapped keys).
 * The binding is checked in the token at every open: a blob moved to
 * another credential, or a record altered in the store, does not open.
 * Thread-safe. */
#ifndef QTSP_CA_SUBKEY_H
#define QTSP_CA_SUBKEY_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "ca/hsm.h"
#include "ca/key.h"
#include "ca/store.h"
#include "core/err.h"

#define QTSP_SUBKEY_FORMAT "aes-kwp-v1"
#define QTSP_SUBKEY_MAC_INPUT_MAX 128

/* What the token's binding key authenticates (bytes into out, at most
 * QTSP_SUBKEY_MAC_INPUT_MAX; *len): domain, id (the certificate serial of a
 * bound key, the sequence number of a pool key), key type, SHA-256 of the
 * public key's SPKI DER and of the blob. domain and id are at most 32
 * bytes each. QTSP_ERR_INVALID, QTSP_ERR_CRYPTO. */
qtsp_status qtsp_subkey_mac_input(const char *domain, const unsigned char *id, size_t idlen,
                                  qtsp_keytype kt, EVP_PKEY *pub, const unsigned char *blob,
                                  size_t blen, unsigned char *out, size_t *len) QTSP_MUST_USE;

/* The same with the public key as its SPKI DER (spki_len bytes), hashed as
 * given: what qtsp_subkey_mac_input computes for the SPKI i2d_PUBKEY writes
 * of pub, without re-encoding it (OpenSSL 3.0's i2d_PUBKEY costs about
 * 60 us, as much as a signature). QTSP_ERR_INVALID. */
qtsp_status qtsp_subkey_mac_input_spki(const char *domain, const unsigned char *id, size_t idlen,
                                       qtsp_keytype kt, const unsigned char *spki, size_t spki_len,
                                       const unsigned char *blob, size_t blen, unsigned char *out,
                                       size_t *len) QTSP_MUST_USE;

/* Makes the token's key-storage key, binding key and pool mark when absent
 * (qtsp_hsm_wrap_setup: qtsp init, and the migration of an existing home at
 * its next serve or RA verb) and records what was made in the audit log
 * (event "key.storage.setup", actor), inside one store write transaction
 * (so that the processes of one home never make them twice). QTSP_ERR_HSM,
 * QTSP_ERR_STORE. */
qtsp_status qtsp_subkey_setup(qtsp_hsm *hsm, qtsp_store *st, const char *actor) QTSP_MUST_USE;

/* The credential's "key" object (new reference in *out) for the wrapped key
 * (blob, pub of type kt) bound for ever to the certificate serial: the
 * binding is computed in the token. QTSP_ERR_INVALID, QTSP_ERR_HSM*. */
qtsp_status qtsp_subkey_bind(qtsp_hsm *hsm, const unsigned char *serial, size_t slen,
                             qtsp_keytype kt, const unsigned char *blob, size_t blen, EVP_PKEY *pub,
                             json_t **out) QTSP_MUST_USE;

/* Opens the signing key of a remote-signing credential (cred = its record in
 * QTSP_T_CREDENTIALS, JSON, borrowed) as a qtsp_key that signs inside the
 * token: a wrapped blob is unwrapped into a sensitive, non-extractable,
 * sign-only session object after its binding to the credential's serial
 * (credential_id) is checked in the token; a legacy credential uses its token
 * object (key_label). Free with qtsp_key_free (destroys the session object;
 * see qtsp_key_from_wrapped for the thread). Errors: QTSP_ERR_STATE (the
 * credential is disabled, or its key is not bound to it), QTSP_ERR_HSM_NO_KEY
 * (no key: destroyed at termination), QTSP_ERR_STORE_CORRUPT (malformed
 * record), QTSP_ERR_HSM. */
qtsp_status qtsp_subkey_open(qtsp_hsm *hsm, const json_t *cred, qtsp_key **out) QTSP_MUST_USE;

#endif
