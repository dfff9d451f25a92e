/* Signing in the token: C_Sign on the thread's session with CKM_ECDSA,
 * CKM_RSA_PKCS (DigestInfo built here) or CKM_RSA_PKCS_PSS, and the token
 * backend of the key interface (ca/key.h). */
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
#include "core/der.h"
#include "core/log.h"

/* ---------- fast signing ---------- */

/* DigestInfo prefixes for PKCS#1 v1.5 signatures (RFC 8017 9.2, note 1). */
static const unsigned char DI_SHA224[] = {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x04, 0x05, 0x00, 0x04, 0x1c};
static const unsigned char DI_SHA256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char DI_SHA384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char DI_SHA512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x03, 0x05, 0x00, 0x04, 0x40};

/* What RSA signing needs to know of each digest: the DigestInfo prefix
 * (PKCS#1 v1.5) and the PKCS#11 digest and MGF1 mechanisms (PSS). */
typedef struct rsa_digest {
    int nid;
    const unsigned char *di;
    size_t di_len;
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
} rsa_digest;

static const rsa_digest RSA_DIGESTS[] = {
    {NID_sha224, DI_SHA224, sizeof DI_SHA224, CKM_SHA224, CKG_MGF1_SHA224},
    {NID_sha256, DI_SHA256, sizeof DI_SHA256, CKM_SHA256, CKG_MGF1_SHA256},
    {NID_sha384, DI_SHA384, sizeof DI_SHA384, CKM_SHA384, CKG_MGF1_SHA384},
    {NID_sha512, DI_SHA512, sizeof DI_SHA512, CKM_SHA512, CKG_MGF1_SHA512},
};

static qtsp_status rsa_digest_of(const EVP_MD *md, const rsa_digest **out)
{
    ENSURE(md != NULL, QTSP_ERR_INVALID, "RSA signing needs the digest algorithm");
    for (size_t i = 0; i < sizeof RSA_DIGESTS / sizeof RSA_DIGESTS[0]; i++)
        if (RSA_DIGESTS[i].nid == EVP_MD_get_type(md)) {
            *out = &RSA_DIGESTS[i];
            return QTSP_OK;
        }
    FAIL(QTSP_ERR_UNSUPPORTED, "digest %s is not supported for RSA signing", EVP_MD_get0_name(md));
}

/* PKCS#11 CKM_ECDSA gives r || s; X.509 and CMS want ECDSA-Sig-Value
 * ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 2.2 / RFC 3279 2.2.3). */
static qtsp_status ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen, unsigned char *out,
                                    size_t cap, size_t *outlen)
{
    ENSURE(rawlen > 0 && rawlen % 2 == 0 && rawlen <= 2 * 66, QTSP_ERR_HSM,
           "unexpected ECDSA signature length %zu from the token", rawlen);
    size_t half = rawlen / 2;
    size_t body = qtsp_der_uint_size(raw, half) + qtsp_der_uint_size(raw + half, half);
    size_t n = qtsp_der_tlv_size(body);
    ENSURE(n <= cap, QTSP_ERR_TOO_BIG, "signature buffer too small (%zu < %zu)", cap, n);
    size_t o = qtsp_der_put_hdr(out, QTSP_DER_SEQUENCE, body);
    o += qtsp_der_put_uint(out + o, QTSP_DER_INTEGER, raw, half);
    o += qtsp_der_put_uint(out + o, QTSP_DER_INTEGER, raw + half, half);
    *outlen = o;
    return QTSP_OK;
}

static qtsp_status map_key_rv(CK_RV rv, const char *what, const char *label)
{
    if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
        FAIL(QTSP_ERR_HSM_NO_KEY, "%s: key '%s' is gone", what, label);
    FAIL(QTSP_ERR_HSM, "%s with key '%s' failed: %s", what, label, hsm_ckr_name(rv));
}

qtsp_status hsm_sign_object(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                            CK_KEY_TYPE kt, const char *label, const qtsp_sigalg *alg,
                            const unsigned char *dgst, size_t dlen, unsigned char *sig,
                            size_t *siglen)
{
    ENSURE(alg != NULL, QTSP_ERR_INVALID, "no signature algorithm");
    const EVP_MD *md = alg->md;
    ENSURE(dgst != NULL && dlen > 0 && dlen <= 64, QTSP_ERR_INVALID, "digest must be 1..64 bytes");
    ENSURE(md == NULL || (size_t)EVP_MD_get_size(md) == dlen, QTSP_ERR_INVALID,
           "digest length %zu does not match %s", dlen, EVP_MD_get0_name(md));
    ENSURE(sig != NULL && siglen != NULL, QTSP_ERR_INVALID, "no signature buffer");
    unsigned char in[128];
    size_t inlen;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_RSA_PKCS_PSS_PARAMS pss = {0, 0, 0};
    if (kt == CKK_EC) {
        ENSURE(alg->scheme == QTSP_SIG_ECDSA, QTSP_ERR_INVALID, "key '%s' is an EC key", label);
        memcpy(in, dgst, dlen);
        inlen = dlen;
    } else if (kt == CKK_RSA && alg->scheme == QTSP_SIG_RSA_PKCS1) {
        const rsa_digest *rd = NULL;
        TRY(rsa_digest_of(md, &rd));
        memcpy(in, rd->di, rd->di_len);
        memcpy(in + rd->di_len, dgst, dlen);
        inlen = rd->di_len + dlen;
        mech.mechanism = CKM_RSA_PKCS;
    } else if (kt == CKK_RSA && alg->scheme == QTSP_SIG_RSA_PSS) {
        /* PKCS#11 3.0 2.1.15: the input is the digest, hashAlg its digest */
        const rsa_digest *rd = NULL, *mgf = NULL;
        TRY(rsa_digest_of(md, &rd));
        TRY(rsa_digest_of(alg->mgf1_md ? alg->mgf1_md : md, &mgf));
        pss.hashAlg = rd->hash;
        pss.mgf = mgf->mgf;
        pss.sLen = alg->salt_len < 0 ? dlen : (CK_ULONG)alg->salt_len;
        memcpy(in, dgst, dlen);
        inlen = dlen;
        mech.mechanism = CKM_RSA_PKCS_PSS;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof pss;
    } else if (kt == CKK_RSA) {
        FAIL(QTSP_ERR_INVALID, "key '%s' is an RSA key", label);
    } else {
        FAIL(QTSP_ERR_UNSUPPORTED, "key '%s' has unsupported key type %lu", label, kt);
    }

    CK_RV rv = hsm->fl->C_SignInit(s, &mech, key);
    if (rv != CKR_OK)
        return map_key_rv(rv, "C_SignInit", label);
    unsigned char raw[HSM_SIG_MAX];
    CK_ULONG rawlen = sizeof raw;
    rv = hsm->fl->C_Sign(s, in, inlen, raw, &rawlen);
    if (rv != CKR_OK)
        return map_key_rv(rv, "C_Sign", label);
    if (kt == CKK_EC)
        return ecdsa_raw_to_der(raw, rawlen, sig, *siglen, siglen);
    ENSURE(rawlen <= *siglen, QTSP_ERR_TOO_BIG, "signature buffer too small (%zu < %lu)", *siglen,
           rawlen);
    memcpy(sig, raw, rawlen);
    *siglen = rawlen;
    return QTSP_OK;
}

qtsp_status qtsp_hsm_sign_digest(qtsp_hsm *hsm, const char *label, const qtsp_sigalg *alg,
                                 const unsigned char *dgst, size_t dlen, unsigned char *sig,
                                 size_t *siglen)
{
    TRY(hsm_check_label(label));
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_HANDLE key;
    CK_KEY_TYPE kt;
    TRY(hsm_resolve(hsm, s, label, CKO_PRIVATE_KEY, false, &key, &kt));
    qtsp_status rc = hsm_sign_object(hsm, s, key, kt, label, alg, dgst, dlen, sig, siglen);
    if (rc != QTSP_ERR_HSM_NO_KEY)
        return rc;
    /* destroyed and perhaps re-made by someone else: look it up again */
    qtsp_err_clear();
    CK_KEY_TYPE kt2;
    TRY(hsm_resolve(hsm, s, label, CKO_PRIVATE_KEY, true, &key, &kt2));
    ENSURE(kt2 == kt, QTSP_ERR_HSM, "key '%s' changed type in the token", label);
    return hsm_sign_object(hsm, s, key, kt, label, alg, dgst, dlen, sig, siglen);
}

/* ---------- the token backend of ca/key.h ---------- */

typedef struct token_key {
    qtsp_hsm *hsm;
    char label[HSM_LABEL_MAX + 1];
} token_key;

static qtsp_status token_sign_digest(void *ctx, const qtsp_sigalg *alg, const unsigned char *dgst,
                                     size_t dlen, unsigned char *sig, size_t *siglen)
{
    token_key *t = ctx;
    return qtsp_hsm_sign_digest(t->hsm, t->label, alg, dgst, dlen, sig, siglen);
}

static const qtsp_key_ops TOKEN_OPS = {"token", token_sign_digest, free};

qtsp_status qtsp_key_from_token(qtsp_hsm *hsm, const char *label, qtsp_key **out)
{
    ENSURE(hsm != NULL && out != NULL, QTSP_ERR_INVALID, "no token");
    TRY(hsm_check_label(label));
    EVP_PKEY *pub = NULL;
    TRY(qtsp_hsm_public_key(hsm, label, &pub));
    /* a signature that cannot fit would leave C_Sign's operation active
     * (CKR_BUFFER_TOO_SMALL) and the thread's session unable to sign again */
    int max = EVP_PKEY_get_size(pub);
    if (max <= 0 || (size_t)max > QTSP_KEY_SIG_MAX) {
        EVP_PKEY_free(pub);
        FAIL(QTSP_ERR_UNSUPPORTED, "key %s: signatures of %d bytes exceed the %d-byte limit", label,
             max, QTSP_KEY_SIG_MAX);
    }
    token_key *t = calloc(1, sizeof *t);
    if (t == NULL) {
        EVP_PKEY_free(pub);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    t->hsm = hsm;
    snprintf(t->label, sizeof t->label, "%s", label);
    qtsp_status rc = qtsp_key_new(&TOKEN_OPS, t, pub, out);
    EVP_PKEY_free(pub);
    return rc;
}
