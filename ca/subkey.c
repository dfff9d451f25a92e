/* Subscriber keys of remote-signing credentials (see ca/subkey.h). */
#include "ca/subkey.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "core/codec.h"
#include "core/json.h"

#define BIND_DOMAIN "qtsp-subkey-binding-v1"
#define B64_MAX(n) (4 * (((n) + 2) / 3) + 1)

qtsp_status qtsp_subkey_mac_input_spki(const char *domain, const unsigned char *id, size_t idlen,
                                       qtsp_keytype kt, const unsigned char *spki, size_t spki_len,
                                       const unsigned char *blob, size_t blen, unsigned char *out,
                                       size_t *len)
{
    size_t dl = domain ? strlen(domain) : 0;
    ENSURE(dl > 0 && dl <= 32 && idlen > 0 && idlen <= 32 && spki && spki_len > 0 && blob &&
               blen > 0,
           QTSP_ERR_INVALID, "binding input incomplete");
    size_t o = 0;
    memcpy(out + o, domain, dl); /* domain | 0 | idlen | id | type | H(spki) | H(blob) */
    o += dl;
    out[o++] = 0;
    out[o++] = (unsigned char)idlen;
    memcpy(out + o, id, idlen);
    o += idlen;
    out[o++] = (unsigned char)kt;
    SHA256(spki, spki_len, out + o);
    o += 32;
    SHA256(blob, blen, out + o);
    o += 32;
    *len = o;
    return QTSP_OK;
}

qtsp_status qtsp_subkey_mac_input(const char *domain, const unsigned char *id, size_t idlen,
                                  qtsp_keytype kt, EVP_PKEY *pub, const unsigned char *blob,
                                  size_t blen, unsigned char *out, size_t *len)
{
    ENSURE(pub != NULL, QTSP_ERR_INVALID, "binding input incomplete");
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der);
    ENSURE(n > 0, QTSP_ERR_CRYPTO, "cannot encode a public key");
    qtsp_status rc =
        qtsp_subkey_mac_input_spki(domain, id, idlen, kt, der, (size_t)n, blob, blen, out, len);
    OPENSSL_free(der);
    return rc;
}

typedef struct setup_ctx {
    qtsp_hsm *hsm;
    unsigned made;
    const char *actor;
} setup_ctx;

/* Inside a write transaction: the store's writer lock makes "absent? make"
 * one step for every process of the home (serve's workers start together). */
static qtsp_status setup_txn(qtsp_txn *txn, void *vctx)
{
    setup_ctx *c = vctx;
    unsigned made = 0;
    TRY(qtsp_hsm_wrap_setup(c->hsm, &made));
    c->made |= made; /* a re-run (map grown) finds them made */
    if (c->made == 0)
        return QTSP_OK;
    json_t *d =
        json_pack("{s:b,s:b,s:b,s:s}", "key_storage_key", (c->made & QTSP_HSM_MADE_KSK) != 0,
                  "binding_key", (c->made & QTSP_HSM_MADE_BINDING) != 0, "pool_mark",
                  (c->made & QTSP_HSM_MADE_MARK) != 0, "wrap_mechanism", "CKM_AES_KEY_WRAP_PAD");
    ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_audit_append(txn, c->actor, "key.storage.setup", d, NULL);
    json_decref(d);
    return rc;
}

qtsp_status qtsp_subkey_setup(qtsp_hsm *hsm, qtsp_store *st, const char *actor)
{
    setup_ctx c = {hsm, 0, actor};
    return qtsp_store_write(st, setup_txn, &c);
}

static qtsp_status set_b64(json_t *o, const char *name, const unsigned char *b, size_t n)
{
    char *s = malloc(B64_MAX(n));
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_base64url_encode(b, n, s, B64_MAX(n));
    int r = json_object_set_new(o, name, json_string(s));
    free(s);
    ENSURE(r == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_subkey_bind(qtsp_hsm *hsm, const unsigned char *serial, size_t slen,
                             qtsp_keytype kt, const unsigned char *blob, size_t blen, EVP_PKEY *pub,
                             json_t **out)
{
    ENSURE(pub != NULL, QTSP_ERR_INVALID, "binding input incomplete");
    unsigned char in[QTSP_SUBKEY_MAC_INPUT_MAX], mac[QTSP_HSM_MAC_LEN];
    size_t inl = 0;
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der); /* once: the MAC covers the bytes stored */
    ENSURE(n > 0, QTSP_ERR_CRYPTO, "cannot encode a public key");
    qtsp_status rc = QTSP_OK;
    json_t *o = NULL;
    TRY_OUT(qtsp_subkey_mac_input_spki(BIND_DOMAIN, serial, slen, kt, der, (size_t)n, blob, blen,
                                       in, &inl));
    TRY_OUT(qtsp_hsm_mac(hsm, in, inl, mac));
    o = json_pack("{s:s,s:s}", "format", QTSP_SUBKEY_FORMAT, "type", qtsp_keytype_name(kt));
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(set_b64(o, "blob", blob, blen));
    TRY_OUT(set_b64(o, "public_key", der, (size_t)n));
    TRY_OUT(set_b64(o, "binding", mac, sizeof mac));
    *out = o;
    o = NULL;
out:
    json_decref(o);
    OPENSSL_free(der);
    return rc;
}

/* A base64url field of the key object into a fresh buffer (caller frees). */
static qtsp_status get_b64(const json_t *k, const char *name, size_t max, unsigned char **out,
                           size_t *len)
{
    const char *s = json_string_value(json_object_get(k, name));
    ENSURE(s != NULL, QTSP_ERR_STORE_CORRUPT, "credential key: '%s' missing", name);
    unsigned char *b = malloc(max);
    ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_base64_decode(s, strlen(s), QTSP_B64_URL, b, max, len);
    if (rc != QTSP_OK) {
        free(b);
        qtsp_err_clear();
        FAIL(QTSP_ERR_STORE_CORRUPT, "credential key: '%s' is not base64url of at most %zu bytes",
             name, max);
    }
    *out = b;
    return QTSP_OK;
}

static qtsp_status open_wrapped(qtsp_hsm *hsm, const char *id, const json_t *k, qtsp_key **out)
{
    static const char *const fields[] = {"format", "type", "blob", "public_key", "binding", NULL};
    const char *fmt = json_string_value(json_object_get(k, "format"));
    ENSURE(json_is_object(k) && fmt && strcmp(fmt, QTSP_SUBKEY_FORMAT) == 0, QTSP_ERR_STORE_CORRUPT,
           "credential %s: key of unknown format", id);
    if (qtsp_json_check_fields(k, fields) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_STORE_CORRUPT, "credential %s: key object with unknown fields", id);
    }
    qtsp_keytype kt;
    if (qtsp_keytype_parse(json_string_value(json_object_get(k, "type")), &kt) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_STORE_CORRUPT, "credential %s: key of unknown type", id);
    }
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    if (qtsp_serial_from_hex(id, serial, &slen) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_STORE_CORRUPT, "credential %.40s: its id is not a serial number", id);
    }
    qtsp_status rc = QTSP_OK;
    unsigned char *blob = NULL, *spki = NULL, *mac = NULL;
    size_t blen = 0, plen = 0, mlen = 0;
    EVP_PKEY *pub = NULL;
    TRY_OUT(get_b64(k, "blob", QTSP_WRAPPED_MAX, &blob, &blen));
    TRY_OUT(get_b64(k, "public_key", 2048, &spki, &plen));
    TRY_OUT(get_b64(k, "binding", QTSP_HSM_MAC_LEN, &mac, &mlen));
    if (mlen != QTSP_HSM_MAC_LEN || qtsp_pubkey_from_spki(spki, plen, &pub) != QTSP_OK) {
        qtsp_err_clear();
        FAIL_OUT(QTSP_ERR_STORE_CORRUPT, "credential %s: unreadable public key or binding", id);
    }
    /* the binding covers the SPKI bytes stored (qtsp_subkey_bind wrote
     * i2d_PUBKEY's), hashed as they are: no re-encoding per signature */
    unsigned char in[QTSP_SUBKEY_MAC_INPUT_MAX];
    size_t inl = 0;
    TRY_OUT(qtsp_subkey_mac_input_spki(BIND_DOMAIN, serial, slen, kt, spki, plen, blob, blen, in,
                                       &inl));
    rc = qtsp_hsm_mac_verify(hsm, in, inl, mac);
    if (rc == QTSP_ERR_STATE) {
        qtsp_err_clear();
        FAIL_OUT(QTSP_ERR_STATE,
                 "credential %s: its key is not bound to it (the token's binding names another "
                 "certificate, or the record was altered)",
                 id);
    }
    TRY_OUT(rc);
    TRY_OUT(qtsp_key_from_wrapped(hsm, blob, blen, pub, out));
out:
    if (blob)
        OPENSSL_cleanse(blob, blen);
    free(blob);
    free(spki);
    free(mac);
    EVP_PKEY_free(pub);
    return rc;
}

qtsp_status qtsp_subkey_open(qtsp_hsm *hsm, const json_t *cred, qtsp_key **out)
{
    ENSURE(hsm != NULL && out != NULL, QTSP_ERR_INVALID, "no token");
    ENSURE(json_is_object(cred), QTSP_ERR_INVALID, "no credential");
    const char *id = json_string_value(json_object_get(cred, "credential_id"));
    ENSURE(id != NULL, QTSP_ERR_STORE_CORRUPT, "credential without credential_id");
    ENSURE(json_is_true(json_object_get(cred, "enabled")), QTSP_ERR_STATE,
           "credential %s is disabled", id);
    const json_t *k = json_object_get(cred, "key");
    if (k != NULL)
        return open_wrapped(hsm, id, k, out);
    const char *label = json_string_value(json_object_get(cred, "key_label"));
    ENSURE(label != NULL && *label != '\0', QTSP_ERR_HSM_NO_KEY,
           "credential %s has no key (destroyed at termination)", id);
    return qtsp_key_from_token(hsm, label, out);
}
