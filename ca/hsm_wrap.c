/* Wrapped subscriber keys (see ca/hsm.h): the key-storage key, generation
 * + wrap, unwrap into a sign-only session object (the "wrapped" backend of
 * ca/key.h), the binding key's HMAC and the pool mark. */
#include "ca/hsm_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/log.h"

/* ---------- the three objects ---------- */

/* The one object of class cls whose CKA_LABEL (or, for the mark, whose
 * CKA_APPLICATION) is name, cached in *slot (under wrap_lock).
 * QTSP_ERR_HSM_NO_KEY when absent. */
static qtsp_status wrap_object(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *name,
                               CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *slot, CK_OBJECT_HANDLE *out)
{
    pthread_mutex_lock(&hsm->wrap_lock);
    CK_OBJECT_HANDLE h = *slot;
    pthread_mutex_unlock(&hsm->wrap_lock);
    if (h != CK_INVALID_HANDLE) {
        *out = h;
        return QTSP_OK;
    }
    CK_ATTRIBUTE tmpl[] = {
        {cls == CKO_DATA ? CKA_APPLICATION : CKA_LABEL, (void *)name, strlen(name)},
        {CKA_CLASS, &cls, sizeof cls},
    };
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;
    CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, 2);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", hsm_ckr_name(rv));
    rv = hsm->fl->C_FindObjects(s, objs, 2, &n);
    hsm->fl->C_FindObjectsFinal(s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", hsm_ckr_name(rv));
    ENSURE(n > 0, QTSP_ERR_HSM_NO_KEY,
           "the token has no '%s' (run qtsp init on a new home; an existing home gets it at the "
           "next serve or RA verb)",
           name);
    ENSURE(n == 1, QTSP_ERR_HSM, "the token holds several objects named '%s'", name);
    pthread_mutex_lock(&hsm->wrap_lock);
    *slot = objs[0];
    pthread_mutex_unlock(&hsm->wrap_lock);
    *out = objs[0];
    return QTSP_OK;
}

/* Forgets a cached handle the token no longer knows. */
static void wrap_forget(qtsp_hsm *hsm, CK_OBJECT_HANDLE *slot)
{
    pthread_mutex_lock(&hsm->wrap_lock);
    *slot = CK_INVALID_HANDLE;
    pthread_mutex_unlock(&hsm->wrap_lock);
}

static qtsp_status make_secret(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label, bool ksk)
{
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = ksk ? CKK_AES : CKK_GENERIC_SECRET;
    CK_ULONG len = 32;
    CK_ULONG llen = strlen(label);
    /* wrap/unwrap only, or sign/verify (HMAC) only: one job per key */
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof cls},         {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len},     {CKA_TOKEN, &t, sizeof t},
        {CKA_PRIVATE, &t, sizeof t},           {CKA_SENSITIVE, &t, sizeof t},
        {CKA_EXTRACTABLE, &f, sizeof f},       {CKA_WRAP, ksk ? &t : &f, sizeof t},
        {CKA_UNWRAP, ksk ? &t : &f, sizeof t}, {CKA_SIGN, ksk ? &f : &t, sizeof t},
        {CKA_VERIFY, ksk ? &f : &t, sizeof t}, {CKA_ENCRYPT, &f, sizeof f},
        {CKA_DECRYPT, &f, sizeof f},           {CKA_DERIVE, &f, sizeof f},
        {CKA_LABEL, (void *)label, llen},      {CKA_ID, (void *)label, llen},
    };
    CK_MECHANISM mech = {ksk ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    CK_RV rv = hsm->fl->C_GenerateKey(s, &mech, a, sizeof a / sizeof a[0], &h);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GenerateKey (%s) failed: %s", label, hsm_ckr_name(rv));
    LOG_INFO("made '%s' in the token", label);
    return QTSP_OK;
}

/* The mark's value lives in its CKA_LABEL, "qtsp-pool-mark:<16 hex>": the
 * one attribute of a data object that SoftHSM2 lets a user change
 * (CKA_VALUE is read-only there: CKR_ATTRIBUTE_READ_ONLY); the object is
 * found by CKA_APPLICATION. */
#define MARK_LABEL_LEN (sizeof QTSP_HSM_MARK_LABEL + 16)

static void mark_label(uint64_t v, char out[MARK_LABEL_LEN + 1])
{
    snprintf(out, MARK_LABEL_LEN + 1, "%s:%016llx", QTSP_HSM_MARK_LABEL, (unsigned long long)v);
}

static qtsp_status make_mark(qtsp_hsm *hsm, CK_SESSION_HANDLE s)
{
    CK_BBOOL t = CK_TRUE;
    CK_OBJECT_CLASS cls = CKO_DATA;
    char label[MARK_LABEL_LEN + 1];
    mark_label(0, label);
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_TOKEN, &t, sizeof t},
        {CKA_PRIVATE, &t, sizeof t},
        {CKA_MODIFIABLE, &t, sizeof t},
        {CKA_LABEL, label, MARK_LABEL_LEN},
        {CKA_APPLICATION, (void *)QTSP_HSM_MARK_LABEL, sizeof QTSP_HSM_MARK_LABEL - 1},
    };
    CK_OBJECT_HANDLE h;
    CK_RV rv = hsm->fl->C_CreateObject(s, a, sizeof a / sizeof a[0], &h);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_CreateObject (%s) failed: %s", QTSP_HSM_MARK_LABEL,
           hsm_ckr_name(rv));
    LOG_INFO("made '%s' in the token", QTSP_HSM_MARK_LABEL);
    return QTSP_OK;
}

qtsp_status qtsp_hsm_wrap_setup(qtsp_hsm *hsm, unsigned *made)
{
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    unsigned m = 0;
    CK_OBJECT_HANDLE h;
    static const struct {
        const char *label;
        CK_OBJECT_CLASS cls;
        unsigned bit;
    } objs[] = {
        {QTSP_HSM_KSK_LABEL, CKO_SECRET_KEY, QTSP_HSM_MADE_KSK},
        {QTSP_HSM_BINDING_LABEL, CKO_SECRET_KEY, QTSP_HSM_MADE_BINDING},
        {QTSP_HSM_MARK_LABEL, CKO_DATA, QTSP_HSM_MADE_MARK},
    };
    CK_OBJECT_HANDLE *slots[] = {&hsm->ksk, &hsm->bind, &hsm->mark};
    for (size_t i = 0; i < 3; i++) {
        qtsp_status rc = wrap_object(hsm, s, objs[i].label, objs[i].cls, slots[i], &h);
        if (rc == QTSP_OK)
            continue;
        if (rc != QTSP_ERR_HSM_NO_KEY)
            return rc;
        qtsp_err_clear();
        if (objs[i].cls == CKO_DATA)
            TRY(make_mark(hsm, s));
        else
            TRY(make_secret(hsm, s, objs[i].label, i == 0));
        m |= objs[i].bit;
    }
    if (made)
        *made = m;
    return QTSP_OK;
}

/* ---------- generation + wrap ---------- */

static const CK_MECHANISM KWP = {CKM_AES_KEY_WRAP_PAD, NULL, 0};

qtsp_status qtsp_hsm_generate_wrapped(qtsp_hsm *hsm, qtsp_keytype type, unsigned char **blob,
                                      size_t *blob_len, EVP_PKEY **pub)
{
    ENSURE(blob != NULL && blob_len != NULL && pub != NULL, QTSP_ERR_INVALID, "no output");
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE ksk;
    TRY(wrap_object(hsm, s, QTSP_HSM_KSK_LABEL, CKO_SECRET_KEY, &hsm->ksk, &ksk));
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
    TRY(hsm_generate_pair(hsm, s, NULL, type, &hpub, &hpriv));
    qtsp_status rc = QTSP_OK;
    unsigned char *w = NULL;
    EVP_PKEY *pk = NULL;
    CK_KEY_TYPE kt = type == QTSP_KEY_RSA_3072 ? CKK_RSA : CKK_EC;
    TRY_OUT(hsm_public_of(hsm, s, hpub, kt, "new subscriber key", &pk));
    /* the private key leaves the token only here, encrypted under the
     * key-storage key, and the session object goes at once */
    CK_ULONG wl = 0;
    CK_RV rv = hsm->fl->C_WrapKey(s, (CK_MECHANISM_PTR)&KWP, ksk, hpriv, NULL, &wl);
    if (hsm_stale_handle(rv))
        wrap_forget(hsm, &hsm->ksk);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_WrapKey (length) failed: %s", hsm_ckr_name(rv));
    ENSURE_OUT(wl > 0 && wl <= QTSP_WRAPPED_MAX, QTSP_ERR_HSM, "wrapped key of %lu bytes", wl);
    w = malloc(wl);
    ENSURE_OUT(w != NULL, QTSP_ERR_NOMEM, "out of memory");
    rv = hsm->fl->C_WrapKey(s, (CK_MECHANISM_PTR)&KWP, ksk, hpriv, w, &wl);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_WrapKey failed: %s", hsm_ckr_name(rv));
out:
    if (hpriv != CK_INVALID_HANDLE && hsm->fl->C_DestroyObject(s, hpriv) != CKR_OK)
        LOG_ERROR("could not destroy a generated session key (it goes with the session)");
    if (hpub != CK_INVALID_HANDLE)
        hsm->fl->C_DestroyObject(s, hpub);
    if (rc != QTSP_OK) {
        free(w);
        EVP_PKEY_free(pk);
        return rc;
    }
    *blob = w;
    *blob_len = wl;
    *pub = pk;
    return QTSP_OK;
}

/* ---------- unwrap: the "wrapped" backend of ca/key.h ---------- */

typedef struct wrapped_key {
    qtsp_hsm *hsm;
    CK_OBJECT_HANDLE h;
    CK_KEY_TYPE kt;
} wrapped_key;

static qtsp_status wrapped_sign(void *ctx, const qtsp_sigalg *alg, const unsigned char *dgst,
                                size_t dlen, unsigned char *sig, size_t *siglen)
{
    wrapped_key *w = ctx;
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(w->hsm, &s));
    return hsm_sign_object(w->hsm, s, w->h, w->kt, "(unwrapped subscriber key)", alg, dgst, dlen,
                           sig, siglen);
}

static void wrapped_free(void *ctx)
{
    wrapped_key *w = ctx;
    if (w == NULL)
        return;
    CK_SESSION_HANDLE s;
    if (w->h != CK_INVALID_HANDLE && hsm_thread_session(w->hsm, &s) == QTSP_OK) {
        CK_RV rv = w->hsm->fl->C_DestroyObject(s, w->h);
        if (rv != CKR_OK)
            LOG_ERROR("could not destroy an unwrapped subscriber key: %s", hsm_ckr_name(rv));
    }
    free(w);
}

static const qtsp_key_ops WRAPPED_OPS = {"wrapped", wrapped_sign, wrapped_free};

qtsp_status qtsp_key_from_wrapped(qtsp_hsm *hsm, const unsigned char *blob, size_t blob_len,
                                  EVP_PKEY *pub, qtsp_key **out)
{
    ENSURE(hsm != NULL && out != NULL && pub != NULL, QTSP_ERR_INVALID, "no token or key");
    ENSURE(blob != NULL && blob_len >= 16 && blob_len <= QTSP_WRAPPED_MAX && blob_len % 8 == 0,
           QTSP_ERR_INVALID, "a wrapped key is 16..%d bytes, a multiple of 8", QTSP_WRAPPED_MAX);
    CK_KEY_TYPE kt;
    int id = EVP_PKEY_get_base_id(pub);
    ENSURE(id == EVP_PKEY_EC || id == EVP_PKEY_RSA, QTSP_ERR_UNSUPPORTED,
           "wrapped keys are EC or RSA");
    kt = id == EVP_PKEY_EC ? CKK_EC : CKK_RSA;
    int max = EVP_PKEY_get_size(pub);
    ENSURE(max > 0 && (size_t)max <= QTSP_KEY_SIG_MAX, QTSP_ERR_UNSUPPORTED,
           "signatures of %d bytes exceed the %d-byte limit", max, QTSP_KEY_SIG_MAX);
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE ksk;
    TRY(wrap_object(hsm, s, QTSP_HSM_KSK_LABEL, CKO_SECRET_KEY, &hsm->ksk, &ksk));
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof cls},    {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &f, sizeof f},        {CKA_PRIVATE, &t, sizeof t},
        {CKA_SENSITIVE, &t, sizeof t},    {CKA_EXTRACTABLE, &f, sizeof f},
        {CKA_SIGN, &t, sizeof t},         {CKA_DECRYPT, &f, sizeof f},
        {CKA_DERIVE, &f, sizeof f},       {CKA_UNWRAP, &f, sizeof f},
        {CKA_SIGN_RECOVER, &f, sizeof f},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = hsm->fl->C_UnwrapKey(s, (CK_MECHANISM_PTR)&KWP, ksk, (CK_BYTE_PTR)blob, blob_len, a,
                                    sizeof a / sizeof a[0], &h);
    if (hsm_stale_handle(rv))
        wrap_forget(hsm, &hsm->ksk);
    /* a blob that does not decrypt under this token's key (another token's,
     * or altered) fails the key wrap's integrity check */
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_UnwrapKey failed: %s (not this token's wrapped key?)",
           hsm_ckr_name(rv));
    /* what the token made of the template: a key that could leave the
     * token again, or do more than sign, is not used */
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, tok = CK_TRUE, dec = CK_TRUE, sign = CK_FALSE;
    CK_ATTRIBUTE chk[] = {
        {CKA_SENSITIVE, &sens, sizeof sens}, {CKA_EXTRACTABLE, &extr, sizeof extr},
        {CKA_TOKEN, &tok, sizeof tok},       {CKA_DECRYPT, &dec, sizeof dec},
        {CKA_SIGN, &sign, sizeof sign},
    };
    rv = hsm->fl->C_GetAttributeValue(s, h, chk, sizeof chk / sizeof chk[0]);
    wrapped_key *w = NULL;
    if (rv != CKR_OK || !sens || extr || tok || dec || !sign ||
        (w = calloc(1, sizeof *w)) == NULL) {
        hsm->fl->C_DestroyObject(s, h);
        ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read the unwrapped key's attributes: %s",
               hsm_ckr_name(rv));
        ENSURE(w != NULL || !(sens && !extr && !tok && !dec && sign), QTSP_ERR_NOMEM,
               "out of memory");
        FAIL(QTSP_ERR_HSM, "the token unwrapped a key that is not sensitive, non-extractable and "
                           "sign-only session object");
    }
    w->hsm = hsm;
    w->h = h;
    w->kt = kt;
    return qtsp_key_new(&WRAPPED_OPS, w, pub, out);
}

/* ---------- the binding key ---------- */

static qtsp_status mac_op(qtsp_hsm *hsm, bool verify, const unsigned char *data, size_t len,
                          unsigned char *mac)
{
    ENSURE(data != NULL && mac != NULL, QTSP_ERR_INVALID, "no data");
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE k;
    TRY(wrap_object(hsm, s, QTSP_HSM_BINDING_LABEL, CKO_SECRET_KEY, &hsm->bind, &k));
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_RV rv = verify ? hsm->fl->C_VerifyInit(s, &mech, k) : hsm->fl->C_SignInit(s, &mech, k);
    if (hsm_stale_handle(rv))
        wrap_forget(hsm, &hsm->bind);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "HMAC init failed: %s", hsm_ckr_name(rv));
    if (verify) {
        rv = hsm->fl->C_Verify(s, (CK_BYTE_PTR)data, len, mac, QTSP_HSM_MAC_LEN);
        ENSURE(rv != CKR_SIGNATURE_INVALID && rv != CKR_SIGNATURE_LEN_RANGE, QTSP_ERR_STATE,
               "the token's binding does not verify");
        ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "HMAC verify failed: %s", hsm_ckr_name(rv));
        return QTSP_OK;
    }
    CK_ULONG ml = QTSP_HSM_MAC_LEN;
    rv = hsm->fl->C_Sign(s, (CK_BYTE_PTR)data, len, mac, &ml);
    ENSURE(rv == CKR_OK && ml == QTSP_HSM_MAC_LEN, QTSP_ERR_HSM, "HMAC failed: %s",
           hsm_ckr_name(rv));
    return QTSP_OK;
}

qtsp_status qtsp_hsm_mac(qtsp_hsm *hsm, const unsigned char *data, size_t len,
                         unsigned char mac[QTSP_HSM_MAC_LEN])
{
    return mac_op(hsm, false, data, len, mac);
}

qtsp_status qtsp_hsm_mac_verify(qtsp_hsm *hsm, const unsigned char *data, size_t len,
                                const unsigned char mac[QTSP_HSM_MAC_LEN])
{
    return mac_op(hsm, true, data, len, (unsigned char *)mac);
}

/* ---------- the pool mark ---------- */

static qtsp_status mark_read(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, uint64_t *out)
{
    char v[MARK_LABEL_LEN + 1];
    CK_ATTRIBUTE a = {CKA_LABEL, v, MARK_LABEL_LEN};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, h, &a, 1);
    if (hsm_stale_handle(rv))
        wrap_forget(hsm, &hsm->mark);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read %s: %s", QTSP_HSM_MARK_LABEL, hsm_ckr_name(rv));
    const size_t pl = sizeof QTSP_HSM_MARK_LABEL - 1;
    uint64_t m = 0;
    int ok = a.ulValueLen == MARK_LABEL_LEN && memcmp(v, QTSP_HSM_MARK_LABEL ":", pl + 1) == 0;
    for (size_t i = pl + 1; ok && i < MARK_LABEL_LEN; i++) {
        int d = qtsp_hex_value((unsigned char)v[i]);
        ok = d >= 0;
        m = (m << 4) | (uint64_t)(d < 0 ? 0 : d);
    }
    ENSURE(ok, QTSP_ERR_HSM, "the token's %s has an unreadable value", QTSP_HSM_MARK_LABEL);
    *out = m;
    return QTSP_OK;
}

qtsp_status qtsp_hsm_mark_get(qtsp_hsm *hsm, uint64_t *out)
{
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE h;
    TRY(wrap_object(hsm, s, QTSP_HSM_MARK_LABEL, CKO_DATA, &hsm->mark, &h));
    return mark_read(hsm, s, h, out);
}

qtsp_status qtsp_hsm_mark_advance(qtsp_hsm *hsm, uint64_t seq)
{
    ENSURE(seq < UINT64_MAX, QTSP_ERR_INVALID, "pool sequence number out of range");
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE h;
    TRY(wrap_object(hsm, s, QTSP_HSM_MARK_LABEL, CKO_DATA, &hsm->mark, &h));
    qtsp_status rc = QTSP_OK;
    pthread_mutex_lock(&hsm->gen_lock);
    uint64_t m = 0;
    TRY_OUT(mark_read(hsm, s, h, &m));
    ENSURE_OUT(seq >= m, QTSP_ERR_STATE,
               "pool key #%llu was handed out before (the token's pool mark is at %llu)",
               (unsigned long long)seq, (unsigned long long)m);
    char v[MARK_LABEL_LEN + 1];
    mark_label(seq + 1, v);
    CK_ATTRIBUTE a = {CKA_LABEL, v, MARK_LABEL_LEN};
    CK_RV rv = hsm->fl->C_SetAttributeValue(s, h, &a, 1);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "cannot write %s: %s", QTSP_HSM_MARK_LABEL,
               hsm_ckr_name(rv));
out:
    pthread_mutex_unlock(&hsm->gen_lock);
    return rc;
}
