/* Key generation inside the token, public key export, destroy and the
 * protection check (see ca/hsm.h). */
#include "ca/hsm_int.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

/* ---------- generate ---------- */

/* DER OBJECT IDENTIFIERs for CKA_EC_PARAMS (RFC 5480 2.1.1.1). */
static const unsigned char OID_P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char OID_P384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

qtsp_status hsm_generate_pair(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                              qtsp_keytype type, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
    /* token keys: CKA_TOKEN, never extractable. Session keys (label NULL):
     * extractable only so that hsm_wrap.c can wrap them at once under the
     * key-storage key (docs/hsm.md "Wrapped subscriber keys"); sensitive, so
     * their value is never readable in clear. */
    CK_BBOOL t = CK_TRUE, f = CK_FALSE, tok = label ? CK_TRUE : CK_FALSE;
    CK_BBOOL extractable = label ? CK_FALSE : CK_TRUE;
    CK_ULONG bits = 3072;
    CK_BYTE e65537[] = {0x01, 0x00, 0x01};
    CK_ULONG llen = label ? strlen(label) : 0;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[7] = {
        {CKA_TOKEN, &tok, sizeof tok},
        {CKA_PRIVATE, &f, sizeof f},
        {CKA_VERIFY, &t, sizeof t},
    };
    CK_ULONG npub = 3;
    switch (type) {
    case QTSP_KEY_EC_P256:
        pub[npub++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)OID_P256, sizeof OID_P256};
        break;
    case QTSP_KEY_EC_P384:
        pub[npub++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)OID_P384, sizeof OID_P384};
        break;
    case QTSP_KEY_RSA_3072:
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        pub[npub++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits};
        pub[npub++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, e65537, sizeof e65537};
        break;
    default:
        FAIL(QTSP_ERR_INVALID, "unknown key type %d", (int)type);
    }
    CK_ATTRIBUTE priv[9] = {
        {CKA_TOKEN, &tok, sizeof tok}, {CKA_PRIVATE, &t, sizeof t},
        {CKA_SENSITIVE, &t, sizeof t}, {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_SIGN, &t, sizeof t},      {CKA_DECRYPT, &f, sizeof f},
        {CKA_DERIVE, &f, sizeof f},
    };
    CK_ULONG npriv = 7;
    if (label) {
        pub[npub++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, llen};
        pub[npub++] = (CK_ATTRIBUTE){CKA_ID, (void *)label, llen};
        priv[npriv++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, llen};
        priv[npriv++] = (CK_ATTRIBUTE){CKA_ID, (void *)label, llen};
    }
    CK_RV rv = hsm->fl->C_GenerateKeyPair(s, &mech, pub, npub, priv, npriv, hpub, hpriv);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GenerateKeyPair (%s) failed: %s", qtsp_keytype_name(type),
           hsm_ckr_name(rv));
    return QTSP_OK;
}

qtsp_status qtsp_hsm_generate(qtsp_hsm *hsm, const char *label, qtsp_keytype type,
                              EVP_PKEY **pub_out)
{
    TRY(hsm_check_label(label));
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    qtsp_status rc = QTSP_OK;
    /* The lock makes "label free?" and "generate" one step for this
     * process. The index knows every key that existed at open or was made
     * by this process since: a search of the whole token per new key would
     * cost O(keys). Keys another process adds meanwhile are not seen. */
    pthread_mutex_lock(&hsm->gen_lock);
    ENSURE_OUT(!hsm_idx_has(hsm, label), QTSP_ERR_EXISTS,
               "the token already holds a key labelled '%s'", label);
    CK_OBJECT_HANDLE hpub, hpriv;
    TRY_OUT(hsm_generate_pair(hsm, s, label, type, &hpub, &hpriv));
    CK_KEY_TYPE kt = type == QTSP_KEY_RSA_3072 ? CKK_RSA : CKK_EC;
    TRY_OUT(hsm_idx_put(hsm, label, CKO_PRIVATE_KEY, hpriv, kt));
    TRY_OUT(hsm_idx_put(hsm, label, CKO_PUBLIC_KEY, hpub, kt));
out:
    pthread_mutex_unlock(&hsm->gen_lock);
    if (rc != QTSP_OK)
        return rc;
    LOG_INFO("generated %s key '%s' in the token", qtsp_keytype_name(type), label);
    if (pub_out != NULL)
        TRY(qtsp_hsm_public_key(hsm, label, pub_out));
    return QTSP_OK;
}

/* ---------- public key export ---------- */

static qtsp_status ec_public(const unsigned char *params, size_t plen, const unsigned char *point,
                             size_t ptlen, EVP_PKEY **out)
{
    qtsp_status rc = QTSP_OK;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    const unsigned char *p = params;
    oid = d2i_ASN1_OBJECT(NULL, &p, (long)plen);
    ENSURE_OUT(oid != NULL && p == params + plen, QTSP_ERR_HSM,
               "CKA_EC_PARAMS is not a named-curve OID");
    int nid = OBJ_obj2nid(oid);
    ENSURE_OUT(nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1,
               QTSP_ERR_UNSUPPORTED, "unsupported EC curve in the token");
    /* PKCS#11 2.40 says CKA_EC_POINT is DER OCTET STRING; accept a raw point too. */
    const unsigned char *q = point, *pt = point;
    size_t ptn = ptlen;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptlen);
    if (os != NULL && q == point + ptlen) {
        pt = ASN1_STRING_get0_data(os);
        ptn = (size_t)ASN1_STRING_length(os);
    }
    OSSL_PARAM prm[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)OBJ_nid2sn(nid), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, ptn),
        OSSL_PARAM_construct_end(),
    };
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    ENSURE_OUT(pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
                   EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, prm) == 1,
               QTSP_ERR_CRYPTO, "cannot build the EC public key from the token's point");
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
    return rc;
}

static qtsp_status rsa_public(const unsigned char *n, size_t nlen, const unsigned char *e,
                              size_t elen, EVP_PKEY **out)
{
    qtsp_status rc = QTSP_OK;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *prm = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    ENSURE_OUT(bn != NULL && be != NULL && bld != NULL &&
                   OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
                   OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1 &&
                   (prm = OSSL_PARAM_BLD_to_param(bld)) != NULL,
               QTSP_ERR_NOMEM, "cannot build RSA key parameters");
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    ENSURE_OUT(pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
                   EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, prm) == 1,
               QTSP_ERR_CRYPTO, "cannot build the RSA public key from the token's modulus");
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

qtsp_status hsm_public_of(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_KEY_TYPE kt,
                          const char *name, EVP_PKEY **out)
{
    qtsp_status rc = QTSP_OK;
    unsigned char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (kt == CKK_EC) {
        TRY_OUT(hsm_get_bytes(hsm, s, o, CKA_EC_PARAMS, "CKA_EC_PARAMS", &a, &alen));
        TRY_OUT(hsm_get_bytes(hsm, s, o, CKA_EC_POINT, "CKA_EC_POINT", &b, &blen));
        TRY_OUT(ec_public(a, alen, b, blen, out));
    } else if (kt == CKK_RSA) {
        TRY_OUT(hsm_get_bytes(hsm, s, o, CKA_MODULUS, "CKA_MODULUS", &a, &alen));
        TRY_OUT(hsm_get_bytes(hsm, s, o, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", &b, &blen));
        TRY_OUT(rsa_public(a, alen, b, blen, out));
    } else {
        FAIL_OUT(QTSP_ERR_UNSUPPORTED, "key '%s' has unsupported key type %lu", name, kt);
    }
out:
    free(a);
    free(b);
    return rc;
}

qtsp_status qtsp_hsm_public_key(qtsp_hsm *hsm, const char *label, EVP_PKEY **out)
{
    TRY(hsm_check_label(label));
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE o;
    CK_KEY_TYPE kt;
    TRY(hsm_resolve_live(hsm, s, label, CKO_PUBLIC_KEY, &o, &kt));
    return hsm_public_of(hsm, s, o, kt, label, out);
}

/* ---------- destroy / check ---------- */

qtsp_status qtsp_hsm_destroy(qtsp_hsm *hsm, const char *label)
{
    TRY(hsm_check_label(label));
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_ULONG destroyed = 0;
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    for (size_t c = 0; c < 2; c++) {
        CK_OBJECT_HANDLE objs[8];
        CK_ULONG n = 0;
        CK_KEY_TYPE kt;
        if (hsm_idx_get(hsm, label, classes[c], &objs[0], &kt)) {
            CK_RV rv = hsm->fl->C_DestroyObject(s, objs[0]);
            if (rv == CKR_OK) {
                destroyed++;
                continue;
            }
            ENSURE(hsm_stale_handle(rv), QTSP_ERR_HSM, "C_DestroyObject for '%s' failed: %s", label,
                   hsm_ckr_name(rv));
        }
        /* unknown to the index, or its handle went stale: search */
        TRY(hsm_find_by_label(hsm, s, label, classes[c], objs, 8, &n));
        for (CK_ULONG i = 0; i < n; i++) {
            CK_RV rv = hsm->fl->C_DestroyObject(s, objs[i]);
            ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_DestroyObject for '%s' failed: %s", label,
                   hsm_ckr_name(rv));
            destroyed++;
        }
    }
    hsm_idx_forget(hsm, label);
    ENSURE(destroyed > 0, QTSP_ERR_HSM_NO_KEY, "no key labelled '%s' in the token", label);
    LOG_INFO("destroyed key '%s' in the token", label);
    return QTSP_OK;
}

qtsp_status qtsp_hsm_check_key_protected(qtsp_hsm *hsm, const char *label)
{
    TRY(hsm_check_label(label));
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE o;
    CK_KEY_TYPE kt;
    TRY(hsm_resolve_live(hsm, s, label, CKO_PRIVATE_KEY, &o, &kt));
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, never = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_SENSITIVE, &sens, sizeof sens},
        {CKA_EXTRACTABLE, &extr, sizeof extr},
        {CKA_NEVER_EXTRACTABLE, &never, sizeof never},
    };
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, o, a, 3);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read the protection attributes of '%s': %s", label,
           hsm_ckr_name(rv));
    ENSURE(sens == CK_TRUE, QTSP_ERR_HSM, "key '%s' has CKA_SENSITIVE=false", label);
    ENSURE(extr == CK_FALSE, QTSP_ERR_HSM, "key '%s' has CKA_EXTRACTABLE=true", label);
    ENSURE(never == CK_TRUE, QTSP_ERR_HSM, "key '%s' has CKA_NEVER_EXTRACTABLE=false", label);
    return QTSP_OK;
}
