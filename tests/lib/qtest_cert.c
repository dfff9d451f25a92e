#include "tests/lib/qtest_cert.h"

#include <openssl/bn.h>
#include <openssl/x509v3.h>

int qtest_soft_signer(const char *cn, unsigned char serial, int ca, X509 **cert, qtsp_key **key,
                      qtsp_sigalg *alg)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *c = pk ? qtest_mkcert(NULL, pk, pk, cn, &serial, 1, ca, 1700000000, 2000000000) : NULL;
    qtsp_key *k = NULL;
    int ok = c && qtsp_key_from_evp(pk, &k) == QTSP_OK &&
             qtsp_key_sigalg(k, EVP_sha256(), alg) == QTSP_OK;
    EVP_PKEY_free(pk); /* the key holds its own reference */
    if (!ok) {
        qtsp_key_free(k);
        X509_free(c);
        return -1;
    }
    *cert = c;
    *key = k;
    return 0;
}

X509 *qtest_mkcert(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *key, const char *cn,
                   const unsigned char *serial, size_t slen, int ca, time_t nb, time_t na)
{
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    BIGNUM *bn = BN_bin2bn(serial, (int)slen, NULL);
    int ok =
        x && nm && bn && X509_set_version(x, 2) &&
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
        X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"BG", -1, -1, 0) &&
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
        X509_set_subject_name(x, nm) &&
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm) &&
        ASN1_TIME_set(X509_getm_notBefore(x), nb) && ASN1_TIME_set(X509_getm_notAfter(x), na) &&
        X509_set_pubkey(x, key);
    BN_free(bn);
    X509_NAME_free(nm);
    X509V3_CTX ctx;
    if (ok)
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    const char *exts[][2] = {
        {"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
        {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,nonRepudiation"},
        {"subjectKeyIdentifier", "hash"},
        {"authorityKeyIdentifier", "keyid:always"},
    };
    for (size_t i = 0; ok && i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        ok = e && X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (!ok || X509_sign(x, ikey, EVP_sha384()) <= 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}
