/* CA-side issuance (see ca/issue.h). */
#include "ca/issue.h"

#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/log.h"

qtsp_status qtsp_issue_serial(unsigned char s[16])
{
    do {
        TRY(qtsp_random(s, 16));
        s[0] &= 0x7f;
    } while (s[0] == 0);
    return QTSP_OK;
}

qtsp_status qtsp_spki_sha256_hex(EVP_PKEY *pub, char out[65])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der);
    ENSURE(n > 0, QTSP_ERR_CRYPTO, "cannot encode public key");
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(der, (size_t)n, md);
    OPENSSL_free(der);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return QTSP_OK;
}

void qtsp_issued_key_cleanup(qtsp_issued_key *k)
{
    X509_free(k->cert);
    EVP_PKEY_free(k->pub);
    memset(k, 0, sizeof *k);
}

qtsp_status qtsp_issue_token_key(qtsp_hsm *hsm, const qtsp_profile *prof, const char *label,
                                 X509 *issuer, const qtsp_key *issuer_key, const char *base_url,
                                 qtsp_issued_key *out)
{
    ENSURE(hsm && prof && label && out && !issuer == !issuer_key, QTSP_ERR_INVALID,
           "issuing a token key needs a token, a profile, a label and both or none of the "
           "issuer certificate and key");
    qtsp_keytype kt;
    TRY(qtsp_keytype_parse(qtsp_profile_key_type(prof), &kt));
    qtsp_issued_key k;
    memset(&k, 0, sizeof k);
    qtsp_key *self = NULL;
    TRY(qtsp_hsm_generate(hsm, label, kt, &k.pub));
    qtsp_status rc = QTSP_OK;
    TRY_OUT(qtsp_hsm_check_key_protected(hsm, label));
    if (!issuer_key) {
        TRY_OUT(qtsp_key_from_token(hsm, label, &self));
        issuer_key = self;
    }
    TRY_OUT(qtsp_issue_serial(k.serial));
    qtsp_cert_request req;
    memset(&req, 0, sizeof req);
    req.subject_key = k.pub;
    req.issuer = issuer;
    req.issuer_key = issuer_key;
    req.serial = k.serial;
    req.serial_len = sizeof k.serial;
    req.base_url = base_url;
    TRY_OUT(qtsp_profile_issue(prof, &req, &k.cert));
    TRY_OUT(qtsp_spki_sha256_hex(k.pub, k.fingerprint));
    *out = k;
    memset(&k, 0, sizeof k);
out:
    qtsp_key_free(self);
    if (rc != QTSP_OK) {
        qtsp_issued_key_cleanup(&k);
        /* keep the first failure: the key is removed on a best-effort basis */
        if (qtsp_hsm_destroy(hsm, label) != QTSP_OK)
            LOG_ERROR("could not destroy the key %s after a failed issuance", label);
    }
    return rc;
}

qtsp_status qtsp_issue_record(qtsp_txn *txn, const qtsp_cert_record *recs, size_t n,
                              const char *actor, const char *event, const json_t *details)
{
    for (size_t i = 0; i < n; i++) {
        const qtsp_cert_record *r = &recs[i];
        TRY(qtsp_certdb_put(txn, r));
        if (strcmp(r->issuer, "root") != 0)
            continue;
        /* the root CRL covers what the root issued to another key (the
         * issuing CA, a TSA unit), not the root's own certificate */
        const unsigned char *p = r->der;
        X509 *x = d2i_X509(NULL, &p, (long)r->der_len);
        ENSURE(x != NULL, QTSP_ERR_INVALID, "issued certificate does not parse");
        int self_signed = X509_check_issued(x, x) == X509_V_OK;
        X509_free(x);
        if (!self_signed)
            TRY(qtsp_certdb_add_root_issued(txn, r->serial, r->serial_len));
    }
    return qtsp_audit_append(txn, actor, event, details, NULL);
}
