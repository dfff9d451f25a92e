/* The key object (ca/key.h): argument checks, hashing, AlgorithmIdentifiers
 * and X.509 signing shared by every backend, and the software backend. The
 * token backend lives with the token code (ca/hsm_sign.c). */
#include "ca/key.h"

#include <openssl/asn1t.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct qtsp_key {
    const qtsp_key_ops *ops;
    void *ctx;
    EVP_PKEY *pub;
    X509 *cert;
    STACK_OF(X509) * chain;
};

qtsp_status qtsp_key_new(const qtsp_key_ops *ops, void *ctx, EVP_PKEY *pub, qtsp_key **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_key *k = NULL;
    ENSURE_OUT(ops && ops->sign_digest && pub && out, QTSP_ERR_INVALID,
               "a key needs a backend and a public key");
    int type = EVP_PKEY_get_base_id(pub);
    ENSURE_OUT(type == EVP_PKEY_EC || type == EVP_PKEY_RSA, QTSP_ERR_UNSUPPORTED,
               "%s key: only EC and RSA keys are supported", ops->name);
    k = calloc(1, sizeof *k);
    ENSURE_OUT(k != NULL, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(EVP_PKEY_up_ref(pub) == 1, QTSP_ERR_CRYPTO, "EVP_PKEY_up_ref failed");
    k->ops = ops;
    k->ctx = ctx;
    k->pub = pub;
    *out = k;
    return QTSP_OK;
out:
    free(k);
    if (ops && ops->free)
        ops->free(ctx);
    return rc;
}

void qtsp_key_free(qtsp_key *k)
{
    if (!k)
        return;
    if (k->ops->free)
        k->ops->free(k->ctx);
    EVP_PKEY_free(k->pub);
    X509_free(k->cert);
    sk_X509_pop_free(k->chain, X509_free);
    free(k);
}

/* The SPKI prefixes i2d_PUBKEY writes for EC keys on named curves
 * (SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING 04|X|Y }),
 * RFC 5480 2. */
static const struct {
    const char *group;
    size_t point_len;
    unsigned char prefix[27];
    size_t prefix_len;
} EC_SPKI[] = {
    {"prime256v1",
     65,
     {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
      0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00},
     26},
    {"secp384r1",
     97,
     {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
      0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00},
     23},
};

qtsp_status qtsp_pubkey_from_spki(const unsigned char *der, size_t len, EVP_PKEY **out)
{
    ENSURE(der != NULL && out != NULL && len > 0 && len <= 16384, QTSP_ERR_INVALID,
           "no public key, or one of more than 16 KiB");
    for (size_t i = 0; i < sizeof EC_SPKI / sizeof EC_SPKI[0]; i++) {
        size_t pl = EC_SPKI[i].prefix_len;
        if (len != pl + EC_SPKI[i].point_len || memcmp(der, EC_SPKI[i].prefix, pl) != 0 ||
            der[pl] != 0x04)
            continue;
        OSSL_PARAM prm[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)EC_SPKI[i].group,
                                             0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(der + pl),
                                              EC_SPKI[i].point_len),
            OSSL_PARAM_construct_end(),
        };
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        /* fromdata decodes the point with EC_POINT_oct2point: off the curve fails */
        int ok = pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
                 EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, prm) == 1;
        EVP_PKEY_CTX_free(pctx);
        ENSURE(ok, QTSP_ERR_INVALID, "public key: an EC point not on %s", EC_SPKI[i].group);
        *out = pkey;
        return QTSP_OK;
    }
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)len);
    if (pkey == NULL || p != der + len) {
        EVP_PKEY_free(pkey);
        FAIL(QTSP_ERR_INVALID, "not a SubjectPublicKeyInfo of %zu bytes", len);
    }
    *out = pkey;
    return QTSP_OK;
}

EVP_PKEY *qtsp_key_get0_pubkey(const qtsp_key *k)
{
    return k->pub;
}

X509 *qtsp_key_get0_cert(const qtsp_key *k)
{
    return k->cert;
}

STACK_OF(X509) * qtsp_key_get0_chain(const qtsp_key *k)
{
    return k->chain;
}

size_t qtsp_key_sig_max(const qtsp_key *k)
{
    int n = EVP_PKEY_get_size(k->pub);
    return n > 0 ? (size_t)n : 0;
}

qtsp_status qtsp_key_set1_cert(qtsp_key *k, X509 *cert, STACK_OF(X509) * chain)
{
    ENSURE(cert != NULL, QTSP_ERR_INVALID, "no certificate");
    EVP_PKEY *cpub = X509_get0_pubkey(cert);
    ENSURE(cpub && EVP_PKEY_eq(cpub, k->pub) == 1, QTSP_ERR_INVALID,
           "the certificate does not certify this key");
    STACK_OF(X509) *c = NULL;
    if (chain) {
        c = X509_chain_up_ref(chain);
        ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
    ENSURE(X509_up_ref(cert) == 1, QTSP_ERR_CRYPTO, "X509_up_ref failed");
    X509_free(k->cert);
    sk_X509_pop_free(k->chain, X509_free);
    k->cert = cert;
    k->chain = c;
    return QTSP_OK;
}

/* ---------- algorithms ---------- */

static bool md_supported(const EVP_MD *md)
{
    if (!md)
        return false;
    switch (EVP_MD_get_type(md)) {
    case NID_sha224:
    case NID_sha256:
    case NID_sha384:
    case NID_sha512:
        return true;
    default:
        return false;
    }
}

qtsp_status qtsp_key_sigalg(const qtsp_key *k, const EVP_MD *md, qtsp_sigalg *out)
{
    qtsp_sigalg a = {0, md ? md : EVP_sha256(), NULL, -1};
    if (EVP_PKEY_get_base_id(k->pub) == EVP_PKEY_EC) {
        a.scheme = QTSP_SIG_ECDSA;
        int bits = EVP_PKEY_get_bits(k->pub);
        if (!md) /* RFC 5758 3.2 */
            a.md = bits <= 256 ? EVP_sha256() : bits <= 384 ? EVP_sha384() : EVP_sha512();
    } else if (EVP_PKEY_get_base_id(k->pub) == EVP_PKEY_RSA) {
        a.scheme = QTSP_SIG_RSA_PKCS1;
    } else {
        FAIL(QTSP_ERR_UNSUPPORTED, "key type %d is not supported", EVP_PKEY_get_base_id(k->pub));
    }
    *out = a;
    return QTSP_OK;
}

/* Checks alg against k and fills in PSS defaults. */
static qtsp_status sigalg_resolve(const qtsp_key *k, const qtsp_sigalg *alg, qtsp_sigalg *out)
{
    ENSURE(alg != NULL, QTSP_ERR_INVALID, "no signature algorithm");
    ENSURE(md_supported(alg->md), QTSP_ERR_UNSUPPORTED, "digest %s is not supported for signing",
           alg->md ? EVP_MD_get0_name(alg->md) : "(none)");
    int type = k ? EVP_PKEY_get_base_id(k->pub) : 0;
    qtsp_sigalg a = *alg;
    switch (a.scheme) {
    case QTSP_SIG_ECDSA:
        ENSURE(!k || type == EVP_PKEY_EC, QTSP_ERR_INVALID, "ECDSA needs an EC key");
        break;
    case QTSP_SIG_RSA_PKCS1:
        ENSURE(!k || type == EVP_PKEY_RSA, QTSP_ERR_INVALID, "RSA PKCS#1 v1.5 needs an RSA key");
        break;
    case QTSP_SIG_RSA_PSS:
        ENSURE(!k || type == EVP_PKEY_RSA, QTSP_ERR_INVALID, "RSA-PSS needs an RSA key");
        if (!a.mgf1_md)
            a.mgf1_md = a.md;
        ENSURE(md_supported(a.mgf1_md), QTSP_ERR_UNSUPPORTED, "MGF1 digest %s is not supported",
               EVP_MD_get0_name(a.mgf1_md));
        if (a.salt_len < 0)
            a.salt_len = EVP_MD_get_size(a.md);
        break;
    default:
        FAIL(QTSP_ERR_UNSUPPORTED, "unknown signature scheme %d", (int)a.scheme);
    }
    *out = a;
    return QTSP_OK;
}

/* RFC 4055 3.1: RSASSA-PSS-params with every field explicit but the
 * trailer field (always 1); the hash identifiers in them with NULL
 * parameters (RFC 4055 2.1, RFC 8017 A.2.3; X509_ALGOR_set_md would leave
 * them absent). */
static qtsp_status pss_algor(const qtsp_sigalg *a, X509_ALGOR *alg)
{
    qtsp_status rc = QTSP_OK;
    RSA_PSS_PARAMS *pss = RSA_PSS_PARAMS_new();
    X509_ALGOR *mgfmd = X509_ALGOR_new();
    ASN1_STRING *mgfparam = NULL, *params = NULL;
    ENSURE_OUT(pss && mgfmd, QTSP_ERR_NOMEM, "out of memory");
    pss->hashAlgorithm = X509_ALGOR_new();
    pss->maskGenAlgorithm = X509_ALGOR_new();
    pss->saltLength = ASN1_INTEGER_new();
    ENSURE_OUT(pss->hashAlgorithm && pss->maskGenAlgorithm && pss->saltLength, QTSP_ERR_NOMEM,
               "out of memory");
    ENSURE_OUT(X509_ALGOR_set0(pss->hashAlgorithm, OBJ_nid2obj(EVP_MD_get_type(a->md)), V_ASN1_NULL,
                               NULL) == 1 &&
                   X509_ALGOR_set0(mgfmd, OBJ_nid2obj(EVP_MD_get_type(a->mgf1_md)), V_ASN1_NULL,
                                   NULL) == 1,
               QTSP_ERR_CRYPTO, "cannot encode the PSS digests");
    ENSURE_OUT(ASN1_item_pack(mgfmd, ASN1_ITEM_rptr(X509_ALGOR), &mgfparam) != NULL,
               QTSP_ERR_CRYPTO, "cannot encode MGF1");
    ENSURE_OUT(X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE,
                               mgfparam) == 1,
               QTSP_ERR_CRYPTO, "cannot encode MGF1");
    mgfparam = NULL;
    ENSURE_OUT(ASN1_INTEGER_set(pss->saltLength, a->salt_len) == 1, QTSP_ERR_CRYPTO,
               "cannot encode the salt length");
    ENSURE_OUT(ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), &params) != NULL,
               QTSP_ERR_CRYPTO, "cannot encode the PSS parameters");
    ENSURE_OUT(X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, params) == 1,
               QTSP_ERR_CRYPTO, "cannot encode the PSS parameters");
    params = NULL;
out:
    ASN1_STRING_free(mgfparam);
    ASN1_STRING_free(params);
    X509_ALGOR_free(mgfmd);
    RSA_PSS_PARAMS_free(pss);
    return rc;
}

/* alg as an X509_ALGOR (caller frees). */
static qtsp_status sigalg_algor(const qtsp_sigalg *alg, X509_ALGOR **out)
{
    qtsp_sigalg a;
    TRY(sigalg_resolve(NULL, alg, &a));
    qtsp_status rc = QTSP_OK;
    X509_ALGOR *x = X509_ALGOR_new();
    ENSURE(x != NULL, QTSP_ERR_NOMEM, "out of memory");
    int nid = NID_undef, md = EVP_MD_get_type(a.md);
    if (a.scheme == QTSP_SIG_ECDSA) {
        /* RFC 5758 3.2: parameters absent */
        ENSURE_OUT(OBJ_find_sigid_by_algs(&nid, md, NID_X9_62_id_ecPublicKey) == 1,
                   QTSP_ERR_UNSUPPORTED, "no ECDSA OID for %s", EVP_MD_get0_name(a.md));
        ENSURE_OUT(X509_ALGOR_set0(x, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL) == 1, QTSP_ERR_CRYPTO,
                   "cannot encode the algorithm");
    } else if (a.scheme == QTSP_SIG_RSA_PKCS1) {
        /* RFC 8017 A.2.4: parameters NULL */
        ENSURE_OUT(OBJ_find_sigid_by_algs(&nid, md, NID_rsaEncryption) == 1, QTSP_ERR_UNSUPPORTED,
                   "no RSA OID for %s", EVP_MD_get0_name(a.md));
        ENSURE_OUT(X509_ALGOR_set0(x, OBJ_nid2obj(nid), V_ASN1_NULL, NULL) == 1, QTSP_ERR_CRYPTO,
                   "cannot encode the algorithm");
    } else {
        TRY_OUT(pss_algor(&a, x));
    }
    *out = x;
    x = NULL;
out:
    X509_ALGOR_free(x);
    return rc;
}

qtsp_status qtsp_sigalg_algid(const qtsp_sigalg *alg, unsigned char *out, size_t cap, size_t *len)
{
    X509_ALGOR *x = NULL;
    TRY(sigalg_algor(alg, &x));
    int n = i2d_X509_ALGOR(x, NULL);
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(n > 0, QTSP_ERR_CRYPTO, "cannot encode the algorithm");
    ENSURE_OUT((size_t)n <= cap, QTSP_ERR_TOO_BIG, "AlgorithmIdentifier needs %d bytes", n);
    unsigned char *p = out;
    i2d_X509_ALGOR(x, &p);
    *len = (size_t)n;
out:
    X509_ALGOR_free(x);
    return rc;
}

/* ---------- signing ---------- */

qtsp_status qtsp_key_sign_digest(const qtsp_key *k, const qtsp_sigalg *alg,
                                 const unsigned char *dgst, size_t dlen, unsigned char *sig,
                                 size_t *siglen)
{
    ENSURE(k != NULL, QTSP_ERR_INVALID, "no key");
    qtsp_sigalg a;
    TRY(sigalg_resolve(k, alg, &a));
    ENSURE(dgst != NULL && dlen == (size_t)EVP_MD_get_size(a.md), QTSP_ERR_INVALID,
           "digest length %zu does not match %s", dlen, EVP_MD_get0_name(a.md));
    ENSURE(sig != NULL && siglen != NULL, QTSP_ERR_INVALID, "no signature buffer");
    size_t n = *siglen;
    TRY(k->ops->sign_digest(k->ctx, &a, dgst, dlen, sig, &n));
    *siglen = n;
    return QTSP_OK;
}

qtsp_status qtsp_key_sign_data(const qtsp_key *k, const qtsp_sigalg *alg, const unsigned char *data,
                               size_t len, unsigned char *sig, size_t *siglen)
{
    ENSURE(alg != NULL && md_supported(alg->md), QTSP_ERR_UNSUPPORTED,
           "no supported digest to sign with");
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    ENSURE(EVP_Digest(data, len, dg, &dl, alg->md, NULL) == 1, QTSP_ERR_CRYPTO, "digest failed");
    return qtsp_key_sign_digest(k, alg, dg, dl, sig, siglen);
}

qtsp_status qtsp_key_sign_x509(const qtsp_key *k, const qtsp_sigalg *alg, X509 *x, X509 **out)
{
    qtsp_status rc = QTSP_OK;
    X509_ALGOR *a = NULL;
    unsigned char *tbs = NULL, *der = NULL;
    unsigned char sig[QTSP_KEY_SIG_MAX];
    ERR_clear_error();
    TRY(sigalg_algor(alg, &a));
    /* OpenSSL gives the two AlgorithmIdentifiers (RFC 5280 4.1.1.2 and
     * 4.1.2.3, which must match) only as const; they belong to x, which
     * the caller handed us to sign, as X509_sign itself does. */
    const X509_ALGOR *tbs_alg = X509_get0_tbs_sigalg(x), *sig_alg = NULL;
    const ASN1_BIT_STRING *bits = NULL;
    X509_get0_signature(&bits, &sig_alg, x);
    ENSURE_OUT(X509_ALGOR_copy((X509_ALGOR *)tbs_alg, a) == 1 &&
                   X509_ALGOR_copy((X509_ALGOR *)sig_alg, a) == 1,
               QTSP_ERR_CRYPTO, "cannot set the signature algorithm");
    int tl = i2d_re_X509_tbs(x, &tbs);
    ENSURE_OUT(tl > 0, QTSP_ERR_CRYPTO, "cannot encode the TBSCertificate");
    size_t sl = sizeof sig;
    TRY_OUT(qtsp_key_sign_data(k, alg, tbs, (size_t)tl, sig, &sl));
    ASN1_BIT_STRING *b = (ASN1_BIT_STRING *)bits;
    ENSURE_OUT(ASN1_BIT_STRING_set(b, sig, (int)sl) == 1, QTSP_ERR_NOMEM, "out of memory");
    b->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    b->flags |= ASN1_STRING_FLAG_BITS_LEFT; /* no unused bits */
    /* a fresh object: x's cached hash and extension flags predate signing */
    int dl = i2d_X509(x, &der);
    ENSURE_OUT(dl > 0, QTSP_ERR_CRYPTO, "cannot encode the certificate");
    const unsigned char *p = der;
    X509 *signed_x = d2i_X509(NULL, &p, dl);
    ENSURE_OUT(signed_x != NULL && p == der + dl, QTSP_ERR_CRYPTO,
               "the signed certificate does not parse");
    *out = signed_x;
out:
    OPENSSL_cleanse(sig, sizeof sig);
    OPENSSL_free(tbs);
    OPENSSL_free(der);
    X509_ALGOR_free(a);
    return rc;
}

/* ---------- software backend ---------- */

static qtsp_status evp_sign_digest(void *ctx, const qtsp_sigalg *a, const unsigned char *dgst,
                                   size_t dlen, unsigned char *sig, size_t *siglen)
{
    EVP_PKEY *pkey = ctx;
    qtsp_status rc = QTSP_OK;
    ERR_clear_error();
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    ENSURE(pc != NULL, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(EVP_PKEY_sign_init(pc) == 1 && EVP_PKEY_CTX_set_signature_md(pc, a->md) == 1,
               QTSP_ERR_CRYPTO, "cannot start signing");
    if (a->scheme == QTSP_SIG_RSA_PKCS1) {
        ENSURE_OUT(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1, QTSP_ERR_CRYPTO,
                   "cannot select PKCS#1 v1.5");
    } else if (a->scheme == QTSP_SIG_RSA_PSS) {
        ENSURE_OUT(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
                       EVP_PKEY_CTX_set_rsa_mgf1_md(pc, a->mgf1_md) == 1 &&
                       EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, a->salt_len) == 1,
                   QTSP_ERR_CRYPTO, "cannot select RSA-PSS");
    }
    size_t need = 0;
    ENSURE_OUT(EVP_PKEY_sign(pc, NULL, &need, dgst, dlen) == 1, QTSP_ERR_CRYPTO,
               "cannot size the signature");
    unsigned char tmp[QTSP_KEY_SIG_MAX];
    ENSURE_OUT(need <= sizeof tmp, QTSP_ERR_TOO_BIG, "signature too large (%zu)", need);
    size_t n = sizeof tmp;
    ENSURE_OUT(EVP_PKEY_sign(pc, tmp, &n, dgst, dlen) == 1, QTSP_ERR_CRYPTO, "signing failed");
    ENSURE_OUT(n <= *siglen, QTSP_ERR_TOO_BIG, "signature buffer too small (%zu < %zu)", *siglen,
               n);
    memcpy(sig, tmp, n);
    *siglen = n;
out:
    EVP_PKEY_CTX_free(pc);
    return rc;
}

static void evp_free(void *ctx)
{
    EVP_PKEY_free(ctx);
}

static const qtsp_key_ops EVP_OPS = {"software", evp_sign_digest, evp_free};

qtsp_status qtsp_key_from_evp(EVP_PKEY *pkey, qtsp_key **out)
{
    ENSURE(pkey != NULL && out != NULL, QTSP_ERR_INVALID, "no key");
    ENSURE(EVP_PKEY_up_ref(pkey) == 1, QTSP_ERR_CRYPTO, "EVP_PKEY_up_ref failed");
    /* the private key doubles as the public key: EVP_PKEY_eq compares the
     * public parts */
    return qtsp_key_new(&EVP_OPS, pkey, pkey, out);
}
