/* The levels, and the in-process calls to our TSA and OCSP cores that the
 * levels above B-B need (sign/ades_int.h). No HTTP: the cores take and give
 * DER, as they do for their own HTTP adapters. */
#include <openssl/ocsp.h>
#include <string.h>
#include <strings.h>

#include "core/der.h"
#include "sign/ades_int.h"

qtsp_status ades_crls(const qtsp_ades_services *sv, STACK_OF(X509_CRL) * *out)
{
    if (sv->crls_now)
        return sv->crls_now(sv->crls_ctx, out);
    STACK_OF(X509_CRL) *c = sk_X509_CRL_new_null();
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < sk_X509_CRL_num(sv->crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(sv->crls, i);
        int ok = X509_CRL_up_ref(crl);
        if (ok && sk_X509_CRL_push(c, crl) <= 0) {
            X509_CRL_free(crl);
            ok = 0;
        }
        if (!ok) {
            sk_X509_CRL_pop_free(c, X509_CRL_free);
            FAIL(QTSP_ERR_NOMEM, "out of memory");
        }
    }
    *out = c;
    return QTSP_OK;
}

static const char *const LEVEL_NAME[] = {"", "B-B", "B-T", "B-LT", "B-LTA"};

qtsp_status qtsp_ades_level_parse(const char *s, qtsp_ades_level *out)
{
    ENSURE(s != NULL, QTSP_ERR_INVALID, "conformance_level missing");
    /* CSC API v2 11.11: "Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA" */
    ENSURE(strncasecmp(s, "Ades-", 5) == 0, QTSP_ERR_INVALID,
           "conformance_level must be Ades-B-B, Ades-B-T, Ades-B-LT or Ades-B-LTA");
    for (int l = QTSP_ADES_B_B; l <= QTSP_ADES_B_LTA; l++)
        if (strcmp(s + 5, LEVEL_NAME[l]) == 0) {
            *out = (qtsp_ades_level)l;
            return QTSP_OK;
        }
    FAIL(QTSP_ERR_INVALID, "conformance_level must be Ades-B-B, Ades-B-T, Ades-B-LT or Ades-B-LTA");
}

const char *qtsp_ades_mime_of(const char *name)
{
    static const struct {
        const char *ext, *mime;
    } T[] = {{".xml", "text/xml"},
             {".pdf", "application/pdf"},
             {".txt", "text/plain"},
             {".json", "application/json"},
             {".p7s", "application/pkcs7-signature"}};
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        size_t e = strlen(T[i].ext);
        if (n > e && strcasecmp(name + n - e, T[i].ext) == 0)
            return T[i].mime;
    }
    return "application/octet-stream";
}

const char *qtsp_ades_level_name(qtsp_ades_level l)
{
    return l >= QTSP_ADES_B_B && l <= QTSP_ADES_B_LTA ? LEVEL_NAME[l] : "?";
}

qtsp_status ades_timestamp(const qtsp_ades_services *sv, const unsigned char dgst[32],
                           qtsp_buf *token)
{
    ENSURE(sv && sv->tsa, QTSP_ERR_UNSUPPORTED, "no time-stamping authority for B-T and up");
    qtsp_buf resp;
    qtsp_buf_init(&resp, ADES_TOKEN_MAX);
    qtsp_status rc = qtsp_tsa_stamp_sha256(sv->tsa, dgst, &resp);
    if (rc == QTSP_OK) {
        /* TimeStampResp { status PKIStatusInfo { status, ... }, timeStampToken } */
        qtsp_der_r r = {resp.data, resp.len}, body, st, stc, val, tok;
        uint64_t status = 99;
        if (qtsp_der_get(&r, QTSP_DER_SEQUENCE, &body, NULL) != QTSP_OK ||
            qtsp_der_done(&r) != QTSP_OK ||
            qtsp_der_get(&body, QTSP_DER_SEQUENCE, &st, NULL) != QTSP_OK ||
            (stc = st, qtsp_der_get(&stc, QTSP_DER_INTEGER, &val, NULL)) != QTSP_OK ||
            qtsp_der_read_u64(&val, &status) != QTSP_OK)
            rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                              "time-stamp answer does not parse");
        else if (status > 1)
            rc = qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__,
                              "the TSA refused the time-stamp (PKIStatus %llu)",
                              (unsigned long long)status);
        else if (qtsp_der_get(&body, QTSP_DER_SEQUENCE, NULL, &tok) != QTSP_OK ||
                 qtsp_der_done(&body) != QTSP_OK)
            rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                              "time-stamp answer without its token");
        else
            rc = qtsp_buf_append(token, tok.p, tok.n);
    }
    qtsp_buf_cleanup(&resp);
    return rc;
}

qtsp_status ades_ocsp(const qtsp_ades_services *sv, X509 *cert, qtsp_buf *resp, size_t *basic_off,
                      size_t *basic_len)
{
    ENSURE(sv && sv->ocsp && sv->ocsp_ca, QTSP_ERR_UNSUPPORTED,
           "no OCSP responder for B-LT and up");
    qtsp_status rc = QTSP_OK;
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE * or = NULL;
    OCSP_BASICRESP *bs = NULL;
    unsigned char *der = NULL;
    size_t start = resp->len;
    /* one SHA-1 CertID, no nonce: the responder's pre-signed answer (RFC 5019) */
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), cert, sv->ocsp_ca);
    ENSURE_OUT(id != NULL, QTSP_ERR_CRYPTO, "OCSP CertID");
    req = OCSP_REQUEST_new();
    ENSURE_OUT(req && OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) != NULL, QTSP_ERR_NOMEM,
               "out of memory");
    int n = i2d_OCSP_REQUEST(req, &der);
    ENSURE_OUT(n > 0, QTSP_ERR_CRYPTO, "OCSP request");
    qtsp_buf tmp;
    qtsp_buf_init(&tmp, ADES_TOKEN_MAX);
    rc = qtsp_ocsp_respond(sv->ocsp, der, (size_t)n, &tmp, NULL);
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(resp, tmp.data, tmp.len);
    qtsp_buf_cleanup(&tmp);
    TRY_OUT(rc);

    const unsigned char *p = resp->data + start;
    or = d2i_OCSP_RESPONSE(NULL, &p, (long)(resp->len - start));
    ENSURE_OUT(or &&p == resp->data + resp->len &&
                       OCSP_response_status(or) == OCSP_RESPONSE_STATUS_SUCCESSFUL,
               QTSP_ERR_STATE, "the OCSP responder gave no answer for the signer's certificate");
    bs = OCSP_response_get1_basic(or);
    int status = -1, reason = 0;
    ENSURE_OUT(bs && OCSP_resp_find_status(bs, id, &status, &reason, NULL, NULL, NULL) == 1 &&
                   status == V_OCSP_CERTSTATUS_GOOD,
               QTSP_ERR_STATE, "the signer's certificate is not valid (OCSP status %d)", status);
    /* OCSPResponse { status, [0] EXPLICIT ResponseBytes { type, response OCTET STRING } } */
    qtsp_der_r r = {resp->data + start, resp->len - start}, body, rb, rbs, basic;
    ENSURE_OUT(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &body, NULL) == QTSP_OK &&
                   qtsp_der_get(&body, QTSP_DER_ENUMERATED, NULL, NULL) == QTSP_OK &&
                   qtsp_der_get(&body, QTSP_DER_CTX_C(0), &rb, NULL) == QTSP_OK &&
                   qtsp_der_get(&rb, QTSP_DER_SEQUENCE, &rbs, NULL) == QTSP_OK &&
                   qtsp_der_get(&rbs, QTSP_DER_OID, NULL, NULL) == QTSP_OK &&
                   qtsp_der_get(&rbs, QTSP_DER_OCTET_STRING, &basic, NULL) == QTSP_OK,
               QTSP_ERR_INVALID, "OCSP answer does not parse");
    *basic_off = (size_t)(basic.p - resp->data);
    *basic_len = basic.n;
out:
    if (rc != QTSP_OK)
        resp->len = start;
    OPENSSL_free(der);
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    OCSP_RESPONSE_free(or);
    OCSP_BASICRESP_free(bs);
    return rc;
}

int ades_has_cert(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0)
            return 1;
    return 0;
}

qtsp_status ades_validation_certs(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                                  STACK_OF(X509) * *out)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    ENSURE(sk != NULL, QTSP_ERR_NOMEM, "out of memory");
    STACK_OF(X509) * from[2] = {s->chain, sv ? sv->extra_certs : NULL};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sk_X509_num(from[k]); i++) {
            X509 *x = sk_X509_value(from[k], i);
            if (X509_cmp(x, s->cert) == 0 || ades_has_cert(sk, x))
                continue;
            if (sk_X509_push(sk, x) <= 0) {
                sk_X509_free(sk);
                FAIL(QTSP_ERR_NOMEM, "out of memory");
            }
        }
    *out = sk;
    return QTSP_OK;
}
