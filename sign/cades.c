/* CAdES baseline signatures (ETSI EN 319 122-1) on ca/cms.h: the signed
 * attributes of B-B, then per level the unsigned attributes
 *   B-T   signature-time-stamp   over the signature value (5.3)
 *   B-LT  certificate-values, revocation-values (OCSP, CRLs) (5.5.1, 5.5.2)
 *   B-LTA archive-time-stamp-v3 with ats-hash-index-v3 (5.5.3, 5.5.2 of
 *         the ATS attribute set)
 * Time-stamps come from our TSA core and OCSP answers from our responder
 * core, in process (sign/ades.c). */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>

#include "ca/cms.h"
#include "core/der.h"
#include "sign/ades_int.h"

/* id-aa-signatureTimeStampToken 1.2.840.113549.1.9.16.2.14 (RFC 3161 App. A) */
static const unsigned char OID_SIG_TST[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                            0x01, 0x09, 0x10, 0x02, 0x0e};
/* id-aa-ets-certValues 1.2.840.113549.1.9.16.2.23 */
static const unsigned char OID_CERT_VALUES[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                                0x01, 0x09, 0x10, 0x02, 0x17};
/* id-aa-ets-revocationValues 1.2.840.113549.1.9.16.2.24 */
static const unsigned char OID_REV_VALUES[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                               0x01, 0x09, 0x10, 0x02, 0x18};
/* id-aa-ets-archiveTimestampV3 0.4.0.1733.2.4 (EN 319 122-1 5.5.3) */
static const unsigned char OID_ATS_V3[] = {0x04, 0x00, 0x8d, 0x45, 0x02, 0x04};
/* id-aa-ATSHashIndex-v3 0.4.0.19122.1.5 (EN 319 122-1 5.5.2) */
static const unsigned char OID_ATS_HASH_INDEX_V3[] = {0x04, 0x00, 0x81, 0x95, 0x32, 0x01, 0x05};
/* eContentType id-data as a whole TLV (what the archive imprint hashes) */
static const unsigned char TLV_ID_DATA[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                            0xf7, 0x0d, 0x01, 0x07, 0x01};

/* Attribute { type, SET { value } } of one value TLV, appended to b. */
static qtsp_status put_attr(qtsp_buf *b, const unsigned char *oid, size_t oid_len,
                            const unsigned char *val, size_t vlen)
{
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, b);
    qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, qtsp_der_tlv_size(oid_len) + qtsp_der_tlv_size(vlen));
    qtsp_der_oid(&w, oid, oid_len);
    qtsp_der_hdr(&w, QTSP_DER_SET, vlen);
    qtsp_der_raw(&w, val, vlen);
    return qtsp_der_w_finish(&w, NULL);
}

/* certificate-values: Attribute { id, SET { SEQUENCE OF Certificate } } */
static qtsp_status cert_values(STACK_OF(X509) * certs, qtsp_buf *b)
{
    qtsp_buf seq;
    qtsp_buf_init(&seq, ADES_TOKEN_MAX * 4);
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, &seq);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        int n = i2d_X509(sk_X509_value(certs, i), NULL);
        unsigned char *p = n > 0 ? qtsp_der_w_take(&w, (size_t)n) : NULL;
        if (!p || i2d_X509(sk_X509_value(certs, i), &p) != n)
            qtsp_der_w_fail(&w, QTSP_ERR_CRYPTO, "certificate encoding");
    }
    qtsp_der_close(&w, m);
    qtsp_status rc = qtsp_der_w_finish(&w, NULL);
    if (rc == QTSP_OK)
        rc = put_attr(b, OID_CERT_VALUES, sizeof OID_CERT_VALUES, seq.data, seq.len);
    qtsp_buf_cleanup(&seq);
    return rc;
}

/* revocation-values: Attribute { id, SET { RevocationValues {
 *   crlVals [0] SEQUENCE OF CertificateList OPTIONAL,
 *   ocspVals [1] SEQUENCE OF BasicOCSPResponse OPTIONAL } } }
 * (EN 319 122-1 5.5.2, tags EXPLICIT as in its ASN.1 module) */
static qtsp_status rev_values(const qtsp_ades_services *sv, const unsigned char *basic,
                              size_t basic_len, qtsp_buf *b)
{
    STACK_OF(X509_CRL) *crls = NULL;
    TRY(ades_crls(sv, &crls));
    qtsp_buf seq;
    qtsp_buf_init(&seq, ADES_TOKEN_MAX * 4);
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, &seq);
    size_t top = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    if (sk_X509_CRL_num(crls) > 0) {
        size_t c0 = qtsp_der_open(&w, QTSP_DER_CTX_C(0));
        size_t cs = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
            X509_CRL *crl = sk_X509_CRL_value(crls, i);
            int n = i2d_X509_CRL(crl, NULL);
            unsigned char *p = n > 0 ? qtsp_der_w_take(&w, (size_t)n) : NULL;
            if (!p || i2d_X509_CRL(crl, &p) != n)
                qtsp_der_w_fail(&w, QTSP_ERR_CRYPTO, "CRL encoding");
        }
        qtsp_der_close(&w, cs);
        qtsp_der_close(&w, c0);
    }
    size_t c1 = qtsp_der_open(&w, QTSP_DER_CTX_C(1));
    size_t os = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&w, basic, basic_len);
    qtsp_der_close(&w, os);
    qtsp_der_close(&w, c1);
    qtsp_der_close(&w, top);
    qtsp_status rc = qtsp_der_w_finish(&w, NULL);
    if (rc == QTSP_OK)
        rc = put_attr(b, OID_REV_VALUES, sizeof OID_REV_VALUES, seq.data, seq.len);
    qtsp_buf_cleanup(&seq);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

static void sha256_update_tlv(EVP_MD_CTX *c, const qtsp_der_r *tlv, int *ok)
{
    *ok = *ok && EVP_DigestUpdate(c, tlv->p, tlv->n) == 1;
}

/* Appends OCTET STRING SHA-256(a || b) to w (b may be empty). */
static void hash_entry(qtsp_der_w *w, const qtsp_der_r *a, const qtsp_der_r *b)
{
    unsigned char h[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    sha256_update_tlv(c, a, &ok);
    if (b)
        sha256_update_tlv(c, b, &ok);
    ok = ok && EVP_DigestFinal_ex(c, h, NULL) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        qtsp_der_w_fail(w, QTSP_ERR_CRYPTO, "SHA-256");
    else
        qtsp_der_tlv(w, QTSP_DER_OCTET_STRING, h, sizeof h);
}

qtsp_status ades_ats_v3_imprint(const unsigned char *cms, size_t cms_len,
                                const unsigned char content_hash[32], qtsp_buf *idx,
                                unsigned char imprint[32])
{
    qtsp_der_r r = {cms, cms_len}, ci, sd0, sd, certs = {0}, crls = {0}, sis, si;
    qtsp_der_r f[6];
    ENSURE(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &ci, NULL) == QTSP_OK &&
               qtsp_der_get(&ci, QTSP_DER_OID, NULL, NULL) == QTSP_OK &&
               qtsp_der_get(&ci, QTSP_DER_CTX_C(0), &sd0, NULL) == QTSP_OK &&
               qtsp_der_get(&sd0, QTSP_DER_SEQUENCE, &sd, NULL) == QTSP_OK &&
               qtsp_der_get(&sd, QTSP_DER_INTEGER, NULL, NULL) == QTSP_OK &&
               qtsp_der_get(&sd, QTSP_DER_SET, NULL, NULL) == QTSP_OK &&
               qtsp_der_get(&sd, QTSP_DER_SEQUENCE, NULL, NULL) == QTSP_OK,
           QTSP_ERR_INVALID, "SignedData does not parse");
    if (qtsp_der_peek(&sd) == QTSP_DER_CTX_C(0))
        TRY(qtsp_der_get(&sd, QTSP_DER_CTX_C(0), &certs, NULL));
    if (qtsp_der_peek(&sd) == QTSP_DER_CTX_C(1))
        TRY(qtsp_der_get(&sd, QTSP_DER_CTX_C(1), &crls, NULL));
    TRY(qtsp_der_get(&sd, QTSP_DER_SET, &sis, NULL));
    TRY(qtsp_der_get(&sis, QTSP_DER_SEQUENCE, &si, NULL));
    for (int i = 0; i < 6; i++)
        TRY(qtsp_der_next(&si, NULL, NULL, &f[i]));

    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, idx);
    size_t top = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_r *lists[2] = {&certs, &crls};
    for (int k = 0; k < 2; k++) {
        size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        qtsp_der_r e;
        while (lists[k]->n && qtsp_der_next(lists[k], NULL, NULL, &e) == QTSP_OK)
            hash_entry(&w, &e, NULL);
        qtsp_der_close(&w, m);
    }
    /* unsignedAttrsHashIndex: per value, H(attrType || value) */
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    if (qtsp_der_peek(&si) == QTSP_DER_CTX_C(1)) {
        qtsp_der_r ua, attr, type, vals, v;
        TRY(qtsp_der_get(&si, QTSP_DER_CTX_C(1), &ua, NULL));
        while (ua.n && qtsp_der_get(&ua, QTSP_DER_SEQUENCE, &attr, NULL) == QTSP_OK) {
            qtsp_der_r oid;
            TRY(qtsp_der_get(&attr, QTSP_DER_OID, &oid, &type));
            TRY(qtsp_der_get(&attr, QTSP_DER_SET, &vals, NULL));
            if (oid.n == sizeof OID_ATS_V3 && memcmp(oid.p, OID_ATS_V3, oid.n) == 0)
                continue; /* the archive time-stamp itself (validation) */
            while (vals.n && qtsp_der_next(&vals, NULL, NULL, &v) == QTSP_OK)
                hash_entry(&w, &type, &v);
        }
    }
    qtsp_der_close(&w, m);
    qtsp_der_close(&w, top);
    TRY(qtsp_der_w_finish(&w, NULL));

    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, TLV_ID_DATA, sizeof TLV_ID_DATA) == 1 &&
             EVP_DigestUpdate(c, content_hash, 32) == 1;
    for (int i = 0; i < 6; i++)
        sha256_update_tlv(c, &f[i], &ok);
    ok = ok && EVP_DigestUpdate(c, idx->data, idx->len) == 1 &&
         EVP_DigestFinal_ex(c, imprint, NULL) == 1;
    EVP_MD_CTX_free(c);
    ENSURE(ok, QTSP_ERR_CRYPTO, "SHA-256");
    return QTSP_OK;
}

/* token (a TimeStampToken without unsigned attributes) with attr added as
 * the unsigned attribute of its SignerInfo, appended to out. */
static qtsp_status token_with_unsigned(const qtsp_buf *token, const qtsp_buf *attr, qtsp_buf *out)
{
    qtsp_der_r r = {token->data, token->len}, ci, oid, sd0, sd, sis, si, e;
    ENSURE(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &ci, NULL) == QTSP_OK &&
               qtsp_der_get(&ci, QTSP_DER_OID, NULL, &oid) == QTSP_OK &&
               qtsp_der_get(&ci, QTSP_DER_CTX_C(0), &sd0, NULL) == QTSP_OK &&
               qtsp_der_get(&sd0, QTSP_DER_SEQUENCE, &sd, NULL) == QTSP_OK,
           QTSP_ERR_INVALID, "time-stamp token does not parse");
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, out);
    size_t m_ci = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&w, oid.p, oid.n);
    size_t m_0 = qtsp_der_open(&w, QTSP_DER_CTX_C(0));
    size_t m_sd = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    unsigned char tag = 0;
    for (;;) {
        ENSURE(sd.n > 0, QTSP_ERR_INVALID, "time-stamp token without signerInfos");
        TRY(qtsp_der_next(&sd, &tag, &sis, &e));
        if (tag == QTSP_DER_SET && sd.n == 0)
            break; /* signerInfos, the last field */
        qtsp_der_raw(&w, e.p, e.n);
    }
    TRY(qtsp_der_get(&sis, QTSP_DER_SEQUENCE, &si, NULL));
    TRY(qtsp_der_done(&sis));
    size_t m_sis = qtsp_der_open(&w, QTSP_DER_SET);
    size_t m_si = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    while (si.n) {
        TRY(qtsp_der_next(&si, &tag, NULL, &e));
        ENSURE(tag != QTSP_DER_CTX_C(1), QTSP_ERR_INVALID,
               "time-stamp token has unsigned attributes");
        qtsp_der_raw(&w, e.p, e.n);
    }
    qtsp_der_hdr(&w, QTSP_DER_CTX_C(1), attr->len);
    qtsp_der_raw(&w, attr->data, attr->len);
    qtsp_der_close(&w, m_si);
    qtsp_der_close(&w, m_sis);
    qtsp_der_close(&w, m_sd);
    qtsp_der_close(&w, m_0);
    qtsp_der_close(&w, m_ci);
    return qtsp_der_w_finish(&w, NULL);
}

/* The unsigned attribute buffers of one signature. */
enum { UA_TST, UA_CERTS, UA_REVS, UA_ATS, UA_N };

qtsp_status ades_cms_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                          const ades_cms_req *r, qtsp_buf *out)
{
    ENSURE(s && s->key && s->cert && r && r->digest, QTSP_ERR_INVALID, "nothing to sign");
    ENSURE(r->level >= QTSP_ADES_B_B && r->level <= QTSP_ADES_B_LTA, QTSP_ERR_INVALID,
           "unknown conformance level");
    qtsp_status rc = QTSP_OK;
    qtsp_cms_signer *cs = NULL;
    STACK_OF(X509) *vcerts = NULL;
    qtsp_buf ua[UA_N], ocsp, tmp, idx, tok;
    for (int i = 0; i < UA_N; i++)
        qtsp_buf_init(&ua[i], ADES_TOKEN_MAX * 4);
    qtsp_buf_init(&ocsp, ADES_TOKEN_MAX);
    qtsp_buf_init(&tmp, ADES_TOKEN_MAX * 8);
    qtsp_buf_init(&idx, ADES_TOKEN_MAX);
    qtsp_buf_init(&tok, ADES_TOKEN_MAX);
    size_t start = out->len;

    qtsp_cms_signer_opts so = {s->cert, s->chain, s->alg, NULL, 0, 1};
    TRY_OUT(qtsp_cms_signer_new(&so, &cs));
    qtsp_cms_attrs a = {r->digest, r->digest_len, r->with_signing_time, r->signing_time, NULL, 0};
    unsigned char attrs[1024], dg[EVP_MAX_MD_SIZE], sig[QTSP_KEY_SIG_MAX];
    size_t attrs_len = 0, sig_len = sizeof sig;
    unsigned int dg_len = 0;
    TRY_OUT(qtsp_cms_signed_attrs(cs, &a, attrs, sizeof attrs, &attrs_len));
    ENSURE_OUT(EVP_Digest(attrs, attrs_len, dg, &dg_len, qtsp_cms_signer_md(cs), NULL) == 1,
               QTSP_ERR_CRYPTO, "digest of the signed attributes");
    TRY_OUT(qtsp_key_sign_digest(s->key, &s->alg, dg, dg_len, sig, &sig_len));

    qtsp_cms_bytes un[UA_N];
    size_t n_un = 0;
    if (r->level >= QTSP_ADES_B_T) {
        /* RFC 3161 App. A: the imprint is the hash of the signature value */
        unsigned char h[32];
        ENSURE_OUT(EVP_Digest(sig, sig_len, h, NULL, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
                   "SHA-256");
        TRY_OUT(ades_timestamp(sv, h, &tok));
        TRY_OUT(put_attr(&ua[UA_TST], OID_SIG_TST, sizeof OID_SIG_TST, tok.data, tok.len));
        un[n_un++] = (qtsp_cms_bytes){ua[UA_TST].data, ua[UA_TST].len};
    }
    if (r->level >= QTSP_ADES_B_LT) {
        size_t boff = 0, blen = 0;
        TRY_OUT(ades_validation_certs(sv, s, &vcerts));
        TRY_OUT(cert_values(vcerts, &ua[UA_CERTS]));
        TRY_OUT(ades_ocsp(sv, s->cert, &ocsp, &boff, &blen));
        TRY_OUT(rev_values(sv, ocsp.data + boff, blen, &ua[UA_REVS]));
        un[n_un++] = (qtsp_cms_bytes){ua[UA_CERTS].data, ua[UA_CERTS].len};
        un[n_un++] = (qtsp_cms_bytes){ua[UA_REVS].data, ua[UA_REVS].len};
    }
    qtsp_cms_parts p = {attrs, attrs_len, sig, sig_len, NULL, 0, 1, un, n_un};
    if (r->level >= QTSP_ADES_B_LTA) {
        /* the archive time-stamp covers what is there so far, content by hash */
        unsigned char ch[32], imprint[32];
        if (r->content_sha256)
            memcpy(ch, r->content_sha256, 32);
        else if (EVP_MD_get_type(qtsp_cms_signer_md(cs)) == NID_sha256)
            memcpy(ch, r->digest, 32);
        else
            FAIL_OUT(QTSP_ERR_INVALID, "B-LTA needs the SHA-256 of the content");
        qtsp_der_w w;
        qtsp_der_w_init_buf(&w, &tmp);
        TRY_OUT(qtsp_cms_write(cs, &p, &w));
        TRY_OUT(qtsp_der_w_finish(&w, NULL));
        TRY_OUT(ades_ats_v3_imprint(tmp.data, tmp.len, ch, &idx, imprint));
        qtsp_buf_reset(&tok);
        TRY_OUT(ades_timestamp(sv, imprint, &tok));
        qtsp_buf_reset(&tmp);
        TRY_OUT(
            put_attr(&tmp, OID_ATS_HASH_INDEX_V3, sizeof OID_ATS_HASH_INDEX_V3, idx.data, idx.len));
        qtsp_buf_reset(&idx);
        TRY_OUT(token_with_unsigned(&tok, &tmp, &idx));
        TRY_OUT(put_attr(&ua[UA_ATS], OID_ATS_V3, sizeof OID_ATS_V3, idx.data, idx.len));
        un[n_un++] = (qtsp_cms_bytes){ua[UA_ATS].data, ua[UA_ATS].len};
        p.n_unsigned = n_un;
    }
    p.content = r->content;
    p.content_len = r->content ? r->content_len : 0;
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, out);
    TRY_OUT(qtsp_cms_write(cs, &p, &w));
    TRY_OUT(qtsp_der_w_finish(&w, NULL));
out:
    if (rc != QTSP_OK && out->len > start)
        out->len = start;
    qtsp_cms_signer_free(cs);
    sk_X509_free(vcerts);
    for (int i = 0; i < UA_N; i++)
        qtsp_buf_cleanup(&ua[i]);
    qtsp_buf_cleanup(&ocsp);
    qtsp_buf_cleanup(&tmp);
    qtsp_buf_cleanup(&idx);
    qtsp_buf_cleanup(&tok);
    return rc;
}

qtsp_status qtsp_cades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_cades_opts *o, const unsigned char *doc, size_t len,
                            qtsp_buf *out)
{
    ENSURE(s && o && (doc || len == 0) && out, QTSP_ERR_INVALID, "nothing to sign");
    ENSURE(len <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID, "document larger than %zu bytes",
           QTSP_ADES_MAX_DOC);
    ENSURE(s->alg.md != NULL, QTSP_ERR_INVALID, "no digest");
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dg_len = 0;
    static const unsigned char empty[1];
    /* one pass over the document where it lies, or none when its SHA-256 is known */
    if (o->sha256 && EVP_MD_get_type(s->alg.md) == NID_sha256) {
        memcpy(dg, o->sha256, 32);
        dg_len = 32;
    } else {
        ENSURE(EVP_Digest(doc ? doc : empty, len, dg, &dg_len, s->alg.md, NULL) == 1,
               QTSP_ERR_CRYPTO, "digest of the document");
    }
    unsigned char h[32];
    ades_cms_req r = {
        dg,      dg_len, o->enveloping ? (doc ? doc : empty) : NULL, len, NULL, 1, o->signing_time,
        o->level};
    if (o->level >= QTSP_ADES_B_LTA && EVP_MD_get_type(s->alg.md) != NID_sha256) {
        /* the archive imprint hashes the content with SHA-256 (sign/ades_int.h) */
        ENSURE(EVP_Digest(doc ? doc : empty, len, h, NULL, EVP_sha256(), NULL) == 1,
               QTSP_ERR_CRYPTO, "SHA-256");
        r.content_sha256 = h;
    }
    return ades_cms_sign(sv, s, &r, out);
}
