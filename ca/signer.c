#include "ca/signer.h"

#include <openssl/evp.h>

static qtsp_status token_key_sign(void *ctx, const EVP_MD *md, const unsigned char *dgst,
                                  size_t dlen, unsigned char *sig, size_t *siglen)
{
    qtsp_token_key *k = ctx;
    return qtsp_hsm_sign_digest(k->hsm, k->label, md, dgst, dlen, sig, siglen);
}

void qtsp_signer_for_token_key(qtsp_token_key *k, qtsp_signer *s)
{
    s->fn = token_key_sign;
    s->ctx = k;
}

qtsp_status qtsp_sign_data(const qtsp_signer *s, EVP_PKEY *pkey, const EVP_MD *md,
                           const unsigned char *data, size_t len, unsigned char *sig,
                           size_t *siglen)
{
    if (s && s->fn) {
        unsigned char dg[EVP_MAX_MD_SIZE];
        unsigned int dl = 0;
        ENSURE(EVP_Digest(data, len, dg, &dl, md, NULL) == 1, QTSP_ERR_CRYPTO, "digest failed");
        return s->fn(s->ctx, md, dg, dl, sig, siglen);
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    ENSURE(mctx != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t n = *siglen;
    int ok = EVP_DigestSignInit(mctx, NULL, md, NULL, pkey) == 1 &&
             EVP_DigestSign(mctx, sig, &n, data, len) == 1;
    EVP_MD_CTX_free(mctx);
    ENSURE(ok, QTSP_ERR_CRYPTO, "signing failed");
    *siglen = n;
    return QTSP_OK;
}
