/* Validation of CMS signatures (CAdES, and the CMS inside PAdES) after ETSI
 * EN 319 102-1: identification of the signing certificate (5.2.3), the
 * chain to a trust anchor (5.2.6), the cryptographic verification (5.2.7),
 * the revocation status at the signing time with the proofs of existence
 * the time-stamps give (5.2.6, 5.5, 5.6), and the result as an indication
 * with its sub-indication (5.1.3). docs/validation.md has the table of
 * cases and the choices made where the standard leaves room. */
#include "sign/validate.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/der.h"
#include "sign/ades_int.h"
#include "sign/validate_int.h"

/* id-aa-ets-archiveTimestampV3 0.4.0.1733.2.4 (EN 319 122-1 5.5.3) */
static const unsigned char OID_ATS_V3[] = {0x04, 0x00, 0x8d, 0x45, 0x02, 0x04};
/* ETSI EN 319 412-5: QcCompliance, QcSSCD, QcType and its types */
static const unsigned char OID_QC_COMPLIANCE[] = {0x04, 0x00, 0x8e, 0x46, 0x01, 0x01};
static const unsigned char OID_QC_SSCD[] = {0x04, 0x00, 0x8e, 0x46, 0x01, 0x04};
static const unsigned char OID_QC_TYPE[] = {0x04, 0x00, 0x8e, 0x46, 0x01, 0x06};

/* ---- the validator ------------------------------------------------------ */

qtsp_status qtsp_validator_new(const qtsp_validator_opts *o, qtsp_validator **out)
{
    ENSURE(o && o->anchors && o->n_anchors > 0, QTSP_ERR_INVALID, "no trust anchor");
    qtsp_validator *v = calloc(1, sizeof *v);
    ENSURE(v != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    v->store = X509_STORE_new();
    v->anchors = sk_X509_new_null();
    v->anchor_revocation = calloc(o->n_anchors, 1);
    v->intermediates = o->intermediates ? X509_chain_up_ref(o->intermediates) : sk_X509_new_null();
    ENSURE_OUT(v->store && v->anchors && v->anchor_revocation && v->intermediates, QTSP_ERR_NOMEM,
               "out of memory");
    for (size_t i = 0; i < o->n_anchors; i++) {
        X509 *x = o->anchors[i].cert;
        ENSURE_OUT(x != NULL, QTSP_ERR_INVALID, "trust anchor %zu missing", i);
        ENSURE_OUT(X509_STORE_add_cert(v->store, x) == 1 && X509_up_ref(x) == 1, QTSP_ERR_NOMEM,
                   "out of memory");
        if (sk_X509_push(v->anchors, x) <= 0) {
            X509_free(x);
            FAIL_OUT(QTSP_ERR_NOMEM, "out of memory");
        }
        v->anchor_revocation[i] = o->anchors[i].revocation_checked ? 1 : 0;
    }
    v->status = o->status;
    v->status_ctx = o->status_ctx;
out:
    if (rc != QTSP_OK) {
        qtsp_validator_free(v);
        return rc;
    }
    *out = v;
    return QTSP_OK;
}

void qtsp_validator_free(qtsp_validator *v)
{
    if (!v)
        return;
    X509_STORE_free(v->store);
    sk_X509_pop_free(v->anchors, X509_free);
    sk_X509_pop_free(v->intermediates, X509_free);
    free(v->anchor_revocation);
    free(v);
}

STACK_OF(X509) * qtsp_validator_intermediates(const qtsp_validator *v)
{
    return v->intermediates;
}

/* ---- small helpers ----------------------------------------------------- */

json_t *val_time_json(int64_t t)
{
    char s[32];
    qtsp_format_rfc3339((time_t)t, s, sizeof s);
    return json_string(s);
}

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    int64_t e = 0;
    if (!t || qtsp_asn1_time_to_epoch(t, &e) != QTSP_OK) {
        qtsp_err_clear();
        return 0;
    }
    return e;
}

/* The subject's CN, else the whole subject, into out. */
static void subject_name(X509 *x, char *out, size_t cap)
{
    X509_NAME *n = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    unsigned char *u = NULL;
    if (i >= 0 &&
        ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i))) >= 0 && u) {
        snprintf(out, cap, "%s", (const char *)u);
        OPENSSL_free(u);
        return;
    }
    X509_NAME_oneline(n, out, (int)cap);
}

static json_t *name_json(X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return json_null();
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *d = NULL;
    long l = BIO_get_mem_data(b, &d);
    json_t *j = json_stringn(d ? d : "", l > 0 ? (size_t)l : 0);
    BIO_free(b);
    return j ? j : json_null();
}

static json_t *cert_json(X509 *x)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    char hex[2 * 20 + 1] = "";
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    if (h) {
        size_t k = 0;
        for (const char *p = h; *p && k + 1 < sizeof hex; p++)
            hex[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
        hex[k] = '\0';
    }
    OPENSSL_free(h);
    BN_free(bn);
    return json_pack("{s:o,s:o,s:s,s:o,s:o}", "subject", name_json(X509_get_subject_name(x)),
                     "issuer", name_json(X509_get_issuer_name(x)), "serial", hex, "not_before",
                     val_time_json(asn1_epoch(X509_get0_notBefore(x))), "not_after",
                     val_time_json(asn1_epoch(X509_get0_notAfter(x))));
}

static int oid_is(const qtsp_der_r *o, const unsigned char *want, size_t n)
{
    return o->n == n && memcmp(o->p, want, n) == 0;
}

/* EN 319 412-5 QCStatements of x. */
typedef struct qc_info {
    int compliance, sscd;
    char type[16]; /* "esign", "eseal", "web" or "" */
} qc_info;

static void qc_statements(X509 *x, qc_info *qc)
{
    memset(qc, 0, sizeof *qc);
    int i = X509_get_ext_by_NID(x, NID_qcStatements, -1);
    if (i < 0)
        return;
    ASN1_OCTET_STRING *d = X509_EXTENSION_get_data(X509_get_ext(x, i));
    qtsp_der_r r = {ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d)}, seq, st, oid, info;
    if (qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL) != QTSP_OK) {
        qtsp_err_clear();
        return;
    }
    while (seq.n && qtsp_der_get(&seq, QTSP_DER_SEQUENCE, &st, NULL) == QTSP_OK) {
        if (qtsp_der_get(&st, QTSP_DER_OID, &oid, NULL) != QTSP_OK)
            break;
        if (oid_is(&oid, OID_QC_COMPLIANCE, sizeof OID_QC_COMPLIANCE))
            qc->compliance = 1;
        else if (oid_is(&oid, OID_QC_SSCD, sizeof OID_QC_SSCD))
            qc->sscd = 1;
        else if (oid_is(&oid, OID_QC_TYPE, sizeof OID_QC_TYPE) &&
                 qtsp_der_get(&st, QTSP_DER_SEQUENCE, &info, NULL) == QTSP_OK) {
            qtsp_der_r t;
            static const char *const names[] = {"esign", "eseal", "web"};
            if (qtsp_der_get(&info, QTSP_DER_OID, &t, NULL) == QTSP_OK &&
                t.n == sizeof OID_QC_TYPE + 1 &&
                memcmp(t.p, OID_QC_TYPE, sizeof OID_QC_TYPE) == 0 && t.p[t.n - 1] >= 1 &&
                t.p[t.n - 1] <= 3)
                snprintf(qc->type, sizeof qc->type, "%s", names[t.p[t.n - 1] - 1]);
        }
    }
    qtsp_err_clear();
}

/* ---- the result of one signature ------------------------------------------ */

static const char *const IND_NAME[] = {"TOTAL-PASSED", "INDETERMINATE", "TOTAL-FAILED"};

/* A failure outranks an indeterminate result; of the same rank the first
 * found stays (the order of the checks is the standard's). */
void val_verdict(val_result *r, int ind, const char *sub, const char *fmt, ...)
{
    if (ind <= r->ind)
        return;
    r->ind = ind;
    r->sub = sub;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

/* ---- time-stamps ------------------------------------------------------- */

/* val_timestamp, or with sha256 (not NULL) the SHA-256 imprint itself
 * instead of the data. */
static int tst_verify(const qtsp_validator *v, const unsigned char *tok, size_t len,
                      const unsigned char *const *chunk, const size_t *chunk_len, size_t n_chunks,
                      const unsigned char *sha256, STACK_OF(X509) * pool, int64_t *gen, char *why,
                      size_t cap)
{
    int ok = 0;
    const unsigned char *p = tok;
    PKCS7 *p7 = len <= ADES_TOKEN_MAX ? d2i_PKCS7(NULL, &p, (long)len) : NULL;
    TS_TST_INFO *ti = NULL;
    TS_VERIFY_CTX *c = NULL;
    EVP_MD_CTX *mc = NULL;
    unsigned char imprint[EVP_MAX_MD_SIZE];
    unsigned int ilen = 0;
    if (!p7 || p != tok + len) {
        snprintf(why, cap, "the time-stamp token does not parse");
        goto out;
    }
    ti = PKCS7_to_TS_TST_INFO(p7);
    if (!ti) {
        snprintf(why, cap, "the time-stamp token holds no TSTInfo");
        goto out;
    }
    X509_ALGOR *alg = TS_MSG_IMPRINT_get_algo(TS_TST_INFO_get_msg_imprint(ti));
    const ASN1_OBJECT *aobj = NULL;
    X509_ALGOR_get0(&aobj, NULL, NULL, alg);
    const EVP_MD *md = EVP_get_digestbyobj(aobj);
    int nid = md ? EVP_MD_get_type(md) : NID_undef;
    if (nid != NID_sha256 && nid != NID_sha384 && nid != NID_sha512) {
        snprintf(why, cap, "the time-stamp imprint uses a digest other than SHA-256/384/512");
        goto out;
    }
    int dok = 1;
    if (sha256) {
        if (nid != NID_sha256) {
            snprintf(why, cap, "the time-stamp imprint is not SHA-256");
            goto out;
        }
        memcpy(imprint, sha256, 32);
        ilen = 32;
    } else {
        mc = EVP_MD_CTX_new();
        dok = mc && EVP_DigestInit_ex(mc, md, NULL) == 1;
        for (size_t i = 0; i < n_chunks; i++)
            dok = dok && EVP_DigestUpdate(mc, chunk[i], chunk_len[i]) == 1;
        dok = dok && EVP_DigestFinal_ex(mc, imprint, &ilen) == 1;
    }
    c = TS_VERIFY_CTX_new();
    unsigned char *im = dok ? OPENSSL_memdup(imprint, ilen) : NULL;
    STACK_OF(X509) *certs = X509_chain_up_ref(pool);
    if (!c || !im || !certs || X509_STORE_up_ref(v->store) != 1) {
        OPENSSL_free(im);
        sk_X509_pop_free(certs, X509_free);
        snprintf(why, cap, "out of memory");
        goto out;
    }
    TS_VERIFY_CTX_set_flags(c, TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_SIGNER | TS_VFY_IMPRINT);
    TS_VERIFY_CTX_set_store(c, v->store);
    TS_VERIFY_CTX_set_certs(c, certs);
    TS_VERIFY_CTX_set_imprint(c, im, ilen);
    ERR_clear_error();
    if (TS_RESP_verify_token(c, p7) != 1) {
        unsigned long e = ERR_peek_last_error();
        snprintf(why, cap, "the time-stamp does not verify (%s)",
                 e ? ERR_reason_error_string(e) : "unknown");
        goto out;
    }
    *gen = asn1_epoch(TS_TST_INFO_get_time(ti));
    ok = *gen > 0;
    if (!ok)
        snprintf(why, cap, "the time-stamp has no usable genTime");
out:
    ERR_clear_error();
    EVP_MD_CTX_free(mc);
    TS_VERIFY_CTX_free(c);
    TS_TST_INFO_free(ti);
    PKCS7_free(p7);
    return ok;
}

int val_timestamp(const qtsp_validator *v, const unsigned char *tok, size_t len,
                  const unsigned char *const *chunk, const size_t *chunk_len, size_t n_chunks,
                  STACK_OF(X509) * pool, int64_t *gen, char *why, size_t cap)
{
    return tst_verify(v, tok, len, chunk, chunk_len, n_chunks, NULL, pool, gen, why, cap);
}

int val_timestamp_sha256(const qtsp_validator *v, const unsigned char *tok, size_t len,
                         const unsigned char imprint[32], STACK_OF(X509) * pool, int64_t *gen,
                         char *why, size_t cap)
{
    return tst_verify(v, tok, len, NULL, NULL, 0, imprint, pool, gen, why, cap);
}

qtsp_status val_ts_json(json_t *arr, const char *type, int ok, int64_t t, const char *why)
{
    json_t *o = json_pack("{s:s,s:b}", "type", type, "valid", ok);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (ok)
        json_object_set_new(o, "time", val_time_json(t));
    else
        json_object_set_new(o, "message", json_string(why));
    ENSURE(json_array_append_new(arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* ---- what the signature's attributes carry ------------------------------ */

void val_pool_add(val_ctx *c, X509 *x)
{
    if (sk_X509_num(c->pool) >= VAL_MAX_CERTS * 2 || X509_up_ref(x) != 1)
        return;
    if (sk_X509_push(c->pool, x) <= 0)
        X509_free(x);
}

/* certificate-values: SEQUENCE OF Certificate */
static void take_cert_values(val_ctx *c, const unsigned char *p, size_t n)
{
    qtsp_der_r r = {p, n}, seq, e;
    if (qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL) != QTSP_OK)
        goto out;
    for (int k = 0; seq.n && k < VAL_MAX_CERTS; k++) {
        if (qtsp_der_next(&seq, NULL, NULL, &e) != QTSP_OK)
            break;
        const unsigned char *q = e.p;
        X509 *x = d2i_X509(NULL, &q, (long)e.n);
        if (x && q == e.p + e.n)
            val_pool_add(c, x);
        X509_free(x);
    }
out:
    qtsp_err_clear();
}

/* revocation-values: SEQUENCE { crlVals [0] OPTIONAL, ocspVals [1] SEQUENCE OF
 * BasicOCSPResponse OPTIONAL } (EN 319 122-1 5.5.2) */
static void take_rev_values(val_ctx *c, const unsigned char *p, size_t n)
{
    qtsp_der_r r = {p, n}, seq, o1, os, e;
    if (qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL) != QTSP_OK)
        goto out;
    if (qtsp_der_peek(&seq) == QTSP_DER_CTX_C(0) &&
        qtsp_der_get(&seq, QTSP_DER_CTX_C(0), NULL, NULL) != QTSP_OK)
        goto out;
    if (qtsp_der_peek(&seq) != QTSP_DER_CTX_C(1) ||
        qtsp_der_get(&seq, QTSP_DER_CTX_C(1), &o1, NULL) != QTSP_OK ||
        qtsp_der_get(&o1, QTSP_DER_SEQUENCE, &os, NULL) != QTSP_OK)
        goto out;
    for (int k = 0; os.n && k < VAL_MAX_OCSP; k++) {
        if (qtsp_der_next(&os, NULL, NULL, &e) != QTSP_OK)
            break;
        const unsigned char *q = e.p;
        OCSP_BASICRESP *b = d2i_OCSP_BASICRESP(NULL, &q, (long)e.n);
        if (b && q == e.p + e.n && sk_OCSP_BASICRESP_push(c->ocsps, b) > 0)
            b = NULL;
        OCSP_BASICRESP_free(b);
    }
out:
    qtsp_err_clear();
}

/* The DER of the one value of an attribute (a SEQUENCE: its whole TLV). */
static int attr_value(X509_ATTRIBUTE *a, const unsigned char **p, size_t *n)
{
    if (X509_ATTRIBUTE_count(a) != 1)
        return 0;
    ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(a, 0);
    if (!t || t->type != V_ASN1_SEQUENCE)
        return 0;
    *p = t->value.sequence->data;
    *n = (size_t)t->value.sequence->length;
    return 1;
}

/* signing-certificate-v2 (RFC 5035): the first ESSCertIDv2 must name cert. */
static int signing_cert_matches(CMS_SignerInfo *si, X509 *cert, int *present)
{
    *present = 0;
    int i = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, -1);
    if (i < 0)
        return 1;
    *present = 1;
    const unsigned char *p;
    size_t n;
    if (!attr_value(CMS_signed_get_attr(si, i), &p, &n))
        return 0;
    qtsp_der_r r = {p, n}, sc, certs, id, alg, oid, hash;
    const EVP_MD *md = EVP_sha256();
    int ok = qtsp_der_get(&r, QTSP_DER_SEQUENCE, &sc, NULL) == QTSP_OK &&
             qtsp_der_get(&sc, QTSP_DER_SEQUENCE, &certs, NULL) == QTSP_OK &&
             qtsp_der_get(&certs, QTSP_DER_SEQUENCE, &id, NULL) == QTSP_OK;
    if (ok && qtsp_der_peek(&id) == QTSP_DER_SEQUENCE) {
        ok = qtsp_der_get(&id, QTSP_DER_SEQUENCE, &alg, NULL) == QTSP_OK &&
             qtsp_der_get(&alg, QTSP_DER_OID, &oid, NULL) == QTSP_OK;
        if (ok) {
            ASN1_OBJECT *o = NULL;
            unsigned char tlv[64];
            if (oid.n + 2 <= sizeof tlv && oid.n < 128) {
                tlv[0] = QTSP_DER_OID;
                tlv[1] = (unsigned char)oid.n;
                memcpy(tlv + 2, oid.p, oid.n);
                const unsigned char *q = tlv;
                o = d2i_ASN1_OBJECT(NULL, &q, (long)(oid.n + 2));
            }
            md = o ? EVP_get_digestbyobj(o) : NULL;
            ASN1_OBJECT_free(o);
            ok = md != NULL;
        }
    }
    ok = ok && qtsp_der_get(&id, QTSP_DER_OCTET_STRING, &hash, NULL) == QTSP_OK;
    qtsp_err_clear();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    return ok && X509_digest(cert, md, h, &hl) == 1 && hl == hash.n && memcmp(h, hash.p, hl) == 0;
}

/* ---- revocation ------------------------------------------------------------ */

/* The best embedded OCSP answer for c->cert: 1 with its status when one
 * verifies and covers the time t (thisUpdate at or after t, or t within
 * thisUpdate..nextUpdate), or says revoked. */
static int embedded_status(val_ctx *c, X509 *issuer, int64_t t, int *status, int *reason,
                           int64_t *rev_time, int64_t *this_upd)
{
    int found = 0;
    const EVP_MD *mds[2] = {EVP_sha1(), EVP_sha256()};
    int n0 = sk_OCSP_BASICRESP_num(c->ocsps), n1 = sk_OCSP_BASICRESP_num(c->in->ocsps);
    for (int i = 0; i < n0 + (n1 > 0 ? n1 : 0) && !found; i++) {
        OCSP_BASICRESP *bs = i < n0 ? sk_OCSP_BASICRESP_value(c->ocsps, i)
                                    : sk_OCSP_BASICRESP_value(c->in->ocsps, i - n0);
        ERR_clear_error();
        if (OCSP_basic_verify(bs, c->pool, c->v->store, 0) != 1)
            continue;
        for (int k = 0; k < 2 && !found; k++) {
            OCSP_CERTID *id = OCSP_cert_to_id(mds[k], c->cert, issuer);
            int st = -1, rs = -1;
            ASN1_GENERALIZEDTIME *rt = NULL, *tu = NULL, *nu = NULL;
            if (id && OCSP_resp_find_status(bs, id, &st, &rs, &rt, &tu, &nu) == 1) {
                int64_t tu_e = asn1_epoch(tu), nu_e = nu ? asn1_epoch(nu) : 0;
                if (st == V_OCSP_CERTSTATUS_REVOKED ||
                    (st == V_OCSP_CERTSTATUS_GOOD &&
                     (tu_e >= t || (tu_e <= t && nu_e != 0 && t <= nu_e)))) {
                    *status = st;
                    *reason = rs;
                    *rev_time = st == V_OCSP_CERTSTATUS_REVOKED ? asn1_epoch(rt) : 0;
                    *this_upd = tu_e;
                    found = 1;
                }
            }
            OCSP_CERTID_free(id);
        }
    }
    ERR_clear_error();
    return found;
}

/* Judges a period [b0, b1] in which the certificate was not valid (b1 0:
 * open ended) against the claimed signing time and the proof of existence. */
static void judge_period(val_ctx *c, int64_t b0, int64_t b1, int hold, int ongoing)
{
    const char *what = hold ? "on hold" : "revoked";
    char at[32];
    qtsp_format_rfc3339((time_t)b0, at, sizeof at);
    if (c->poe && c->poe < b0)
        return; /* the signature existed before (EN 319 102-1 5.6.2.1) */
    /* both ends count as inside: the times have seconds only, and a
     * signature made in the second the hold ended cannot be placed */
    if (c->claimed && c->claimed >= b0 && (b1 == 0 || c->claimed <= b1)) {
        val_verdict(&c->r, IND_FAILED, "REVOKED",
                    "the signing certificate was %s (since %s) when the signature was made", what,
                    at);
        return;
    }
    if (b1 != 0 && c->claimed > b1)
        return; /* made after the hold ended */
    if (hold && !ongoing)
        return; /* a past hold that the signing time lies outside of */
    if (hold)
        val_verdict(&c->r, IND_INDETERMINATE, "TRY_LATER",
                    "the signing certificate is on hold since %s and no proof shows the signature "
                    "existed before",
                    at);
    else
        val_verdict(&c->r, IND_INDETERMINATE, "REVOKED_NO_POE",
                    "the signing certificate is revoked since %s and no proof shows the signature "
                    "existed before",
                    at);
}

static qtsp_status check_revocation(val_ctx *c, X509 *issuer)
{
    static const char *const ocsp_state[] = {"good", "revoked", "unknown"};
    int64_t t = c->poe ? c->poe : (c->claimed ? c->claimed : c->now);
    int st = -1, reason = -1;
    int64_t rev = 0, tu = 0;
    if (embedded_status(c, issuer, t, &st, &reason, &rev, &tu)) {
        int hold = st == V_OCSP_CERTSTATUS_REVOKED && reason == OCSP_REVOKED_STATUS_CERTIFICATEHOLD;
        c->revocation =
            json_pack("{s:s,s:s,s:o}", "source", "embedded-ocsp", "status",
                      hold ? "on-hold" : ocsp_state[st], "this_update", val_time_json(tu));
        ENSURE(c->revocation != NULL, QTSP_ERR_NOMEM, "out of memory");
        if (st == V_OCSP_CERTSTATUS_REVOKED) {
            json_object_set_new(c->revocation, "revocation_time", val_time_json(rev));
            judge_period(c, rev, 0, hold, 1);
        }
        return QTSP_OK;
    }
    qtsp_cert_status s;
    qtsp_status rc =
        c->v->status ? c->v->status(c->v->status_ctx, c->cert, issuer, &s) : QTSP_ERR_NOT_FOUND;
    if (rc == QTSP_OK) {
        qtsp_cert_status e;
        qtsp_cert_status_effective(&s, (time_t)c->now, &e);
        const char *name = e.state == QTSP_CERT_REVOKED   ? "revoked"
                           : e.state == QTSP_CERT_ON_HOLD ? "on-hold"
                                                          : "good";
        c->revocation = json_pack("{s:s,s:s}", "source", "own-status", "status", name);
        ENSURE(c->revocation != NULL, QTSP_ERR_NOMEM, "out of memory");
        if (e.state != QTSP_CERT_VALID) {
            json_object_set_new(c->revocation, "revocation_time", val_time_json(e.revoked_at));
            json_object_set_new(c->revocation, "reason", json_string(qtsp_reason_name(e.reason)));
        }
        if (e.state == QTSP_CERT_REVOKED)
            judge_period(c, e.revoked_at, 0, 0, 1);
        else if (e.state == QTSP_CERT_ON_HOLD)
            judge_period(c, e.revoked_at, 0, 1, 1);
        else if (e.released && e.revoked_at > 0) {
            json_object_set_new(c->revocation, "last_hold",
                                json_pack("{s:o,s:o}", "from", val_time_json(e.revoked_at), "until",
                                          val_time_json(e.changed_at)));
            judge_period(c, e.revoked_at, e.changed_at, 1, 0);
        }
        return QTSP_OK;
    }
    if (rc != QTSP_ERR_NOT_FOUND)
        return rc; /* our store failed: an error, not a verdict */
    qtsp_err_clear();
    if (!c->anchor_rev) {
        c->revocation = json_pack("{s:s,s:s}", "source", "none", "status", "not-checked");
        ENSURE(c->revocation != NULL, QTSP_ERR_NOMEM, "out of memory");
        return QTSP_OK;
    }
    c->revocation = json_pack("{s:s,s:s}", "source", "none", "status", "unknown");
    ENSURE(c->revocation != NULL, QTSP_ERR_NOMEM, "out of memory");
    val_verdict(
        &c->r, IND_INDETERMINATE, "TRY_LATER",
        "no revocation data for the signing certificate (none in the file, not one of ours)");
    return QTSP_OK;
}

/* ---- chain ----------------------------------------------------------------- */

static void build_chain(val_ctx *c)
{
    X509_STORE_CTX *x = X509_STORE_CTX_new();
    if (!x || X509_STORE_CTX_init(x, c->v->store, c->cert, c->pool) != 1) {
        val_verdict(&c->r, IND_INDETERMINATE, "CERTIFICATE_CHAIN_GENERAL_FAILURE", "out of memory");
        X509_STORE_CTX_free(x);
        return;
    }
    /* times are judged against the proofs of existence below, not now */
    X509_STORE_CTX_set_flags(x, X509_V_FLAG_NO_CHECK_TIME);
    ERR_clear_error();
    if (X509_verify_cert(x) == 1) {
        c->chain = X509_STORE_CTX_get1_chain(x);
        X509 *top = sk_X509_value(c->chain, sk_X509_num(c->chain) - 1);
        for (int i = 0; i < sk_X509_num(c->v->anchors); i++)
            if (X509_cmp(sk_X509_value(c->v->anchors, i), top) == 0)
                c->anchor_rev = c->v->anchor_revocation[i];
    } else {
        int e = X509_STORE_CTX_get_error(x);
        if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
            e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
            e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
            e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
            val_verdict(&c->r, IND_INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND",
                        "no chain from the signing certificate to a trust anchor (%s)",
                        X509_verify_cert_error_string(e));
        else
            val_verdict(&c->r, IND_INDETERMINATE, "CERTIFICATE_CHAIN_GENERAL_FAILURE",
                        "the chain of the signing certificate does not verify (%s)",
                        X509_verify_cert_error_string(e));
    }
    ERR_clear_error();
    X509_STORE_CTX_free(x);
}

/* ---- one SignerInfo --------------------------------------------------------- */

int val_digest(const EVP_MD *md, const unsigned char *const *chunk, const size_t *len, size_t n,
               unsigned char *out, unsigned int *olen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m && EVP_DigestInit_ex(m, md, NULL) == 1;
    for (size_t i = 0; i < n; i++)
        ok = ok && EVP_DigestUpdate(m, chunk[i], len[i]) == 1;
    ok = ok && EVP_DigestFinal_ex(m, out, olen) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

/* The unsigned attributes: time-stamps (checked here), certificate and
 * revocation values (taken into the pools). */
static qtsp_status unsigned_attrs(val_ctx *c, const unsigned char *const *chunk, const size_t *clen,
                                  size_t n_chunks)
{
    ASN1_OBJECT *ats = NULL;
    unsigned char tlv[2 + sizeof OID_ATS_V3] = {QTSP_DER_OID, sizeof OID_ATS_V3};
    memcpy(tlv + 2, OID_ATS_V3, sizeof OID_ATS_V3);
    const unsigned char *q = tlv;
    ats = d2i_ASN1_OBJECT(NULL, &q, sizeof tlv);
    ENSURE(ats != NULL, QTSP_ERR_NOMEM, "out of memory");
    int n = CMS_unsigned_get_attr_count((CMS_SignerInfo *)c->si);
    /* values first: the time-stamps may need their certificates */
    for (int i = 0; i < n; i++) {
        X509_ATTRIBUTE *a = CMS_unsigned_get_attr((CMS_SignerInfo *)c->si, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
        const unsigned char *p;
        size_t len;
        if (!attr_value(a, &p, &len))
            continue;
        if (nid == NID_id_smime_aa_ets_certValues) {
            take_cert_values(c, p, len);
            c->has_ltv |= 1;
        } else if (nid == NID_id_smime_aa_ets_revocationValues) {
            take_rev_values(c, p, len);
            c->has_ltv |= 2;
        }
    }
    ASN1_OCTET_STRING *sv = CMS_SignerInfo_get0_signature((CMS_SignerInfo *)c->si);
    for (int i = 0; i < n; i++) {
        X509_ATTRIBUTE *a = CMS_unsigned_get_attr((CMS_SignerInfo *)c->si, i);
        ASN1_OBJECT *o = X509_ATTRIBUTE_get0_object(a);
        const unsigned char *p;
        size_t len;
        char why[160] = "";
        int64_t t = 0;
        if (OBJ_obj2nid(o) == NID_id_smime_aa_timeStampToken) {
            c->has_tst = 1;
            if (!attr_value(a, &p, &len)) {
                TRY(val_ts_json(c->timestamps, "signature", 0, 0, "malformed attribute"));
                continue;
            }
            /* RFC 3161 App. A: over the signature value */
            const unsigned char *ch[1] = {ASN1_STRING_get0_data(sv)};
            size_t cl[1] = {(size_t)ASN1_STRING_length(sv)};
            int ok = val_timestamp(c->v, p, len, ch, cl, 1, c->pool, &t, why, sizeof why);
            if (ok && (!c->poe || t < c->poe))
                c->poe = t;
            TRY(val_ts_json(c->timestamps, "signature", ok, t, why));
        } else if (OBJ_cmp(o, ats) == 0) {
            c->has_ats = 1;
            int ok = 0;
            if (!attr_value(a, &p, &len)) {
                snprintf(why, sizeof why, "malformed attribute");
            } else {
                /* EN 319 122-1 5.5.3: recompute the imprint the signer stamped */
                unsigned char ch[32], imprint[32];
                unsigned int hl = 0;
                const unsigned char *content[2];
                size_t content_len[2], nc = n_chunks;
                memcpy(content, chunk, sizeof content);
                memcpy(content_len, clen, sizeof content_len);
                /* the bytes as received: a re-encoding may sort the SETs */
                qtsp_buf idx;
                qtsp_buf_init(&idx, ADES_TOKEN_MAX);
                if (val_digest(EVP_sha256(), content, content_len, nc, ch, &hl) &&
                    ades_ats_v3_imprint(c->in->cms, c->in->cms_len, ch, &idx, imprint) == QTSP_OK) {
                    ok = tst_verify(c->v, p, len, NULL, NULL, 0, imprint, c->pool, &t, why,
                                    sizeof why);
                } else {
                    snprintf(why, sizeof why, "the archive time-stamp's data cannot be rebuilt");
                }
                qtsp_err_clear();
                qtsp_buf_cleanup(&idx);
            }
            if (ok && (!c->poe || t < c->poe))
                c->poe = t;
            TRY(val_ts_json(c->timestamps, "archive", ok, t, why));
        }
    }
    ASN1_OBJECT_free(ats);
    return QTSP_OK;
}

int val_md_allowed(const EVP_MD *md)
{
    int nid = md ? EVP_MD_get_type(md) : NID_undef;
    return nid == NID_sha256 || nid == NID_sha384 || nid == NID_sha512;
}

static const char *level_of(const val_ctx *c)
{
    const val_sig *s = c->in;
    if (strcmp(s->format, "PAdES") == 0) {
        for (size_t i = 0; i < s->n_poes; i++)
            if (s->poes[i].covers >= s->end && s->poes[i].ok && s->dss)
                return "B-LTA";
        return s->dss && c->has_tst ? "B-LT" : c->has_tst ? "B-T" : "B-B";
    }
    if (c->has_ats)
        return "B-LTA";
    if (c->has_ltv == 3 && c->has_tst)
        return "B-LT";
    return c->has_tst ? "B-T" : "B-B";
}

/* The report entry of c. */
qtsp_status val_entry(val_ctx *c, json_t *sigs)
{
    qc_info qc;
    char signer[256] = "";
    json_t *o = json_object();
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    memset(&qc, 0, sizeof qc);
    if (c->cert) {
        qc_statements(c->cert, &qc);
        subject_name(c->cert, signer, sizeof signer);
    }
    int fail = json_object_set_new(o, "indication", json_string(IND_NAME[c->r.ind]));
    if (c->r.sub)
        fail |= json_object_set_new(o, "sub_indication", json_string(c->r.sub));
    if (c->r.msg[0])
        fail |= json_object_set_new(o, "message", json_string(c->r.msg));
    fail |= json_object_set_new(o, "format", json_string(c->in->format));
    fail |= json_object_set_new(o, "level", json_string(level_of(c)));
    fail |= json_object_set_new(o, "signer", c->cert ? json_string(signer) : json_null());
    fail |= json_object_set_new(o, "signing_time",
                                c->claimed ? val_time_json(c->claimed) : json_null());
    if (c->poe)
        fail |= json_object_set_new(o, "best_signature_time", val_time_json(c->poe));
    fail |= json_object_set_new(o, "qualified", json_boolean(qc.compliance && c->chain));
    fail |= json_object_set_new(o, "qc",
                                json_pack("{s:b,s:b,s:s*}", "compliance", qc.compliance, "sscd",
                                          qc.sscd, "type", qc.type[0] ? qc.type : NULL));
    if (c->cert)
        fail |= json_object_set_new(o, "certificate", cert_json(c->cert));
    json_t *chain = json_array();
    for (int i = 0; chain && c->chain && i < sk_X509_num(c->chain); i++)
        json_array_append_new(chain, name_json(X509_get_subject_name(sk_X509_value(c->chain, i))));
    fail |= json_object_set_new(o, "chain", chain ? chain : json_null());
    fail |= json_object_set(o, "timestamps", c->timestamps);
    if (c->revocation)
        fail |= json_object_set(o, "revocation", c->revocation);
    if (c->in->pades)
        fail |= json_object_set_new(o, "covers_whole_file", json_boolean(c->in->whole_file));
    if (c->in->container)
        fail |= json_object_set_new(o, "container", json_string(c->in->container));
    if (fail || json_array_append_new(sigs, o) != 0) {
        json_decref(o);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    return QTSP_OK;
}

qtsp_status val_ctx_init(val_ctx *c, const qtsp_validator *v, const val_sig *in, int64_t now)
{
    memset(c, 0, sizeof *c);
    c->v = v;
    c->in = in;
    c->now = now;
    c->claimed = in->claimed_time;
    c->pool = sk_X509_new_null();
    c->ocsps = sk_OCSP_BASICRESP_new_null();
    c->timestamps = json_array();
    if (!c->pool || !c->ocsps || !c->timestamps) {
        val_ctx_cleanup(c);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < sk_X509_num(in->certs); i++)
        val_pool_add(c, sk_X509_value(in->certs, i));
    for (int i = 0; i < sk_X509_num(v->intermediates); i++)
        val_pool_add(c, sk_X509_value(v->intermediates, i));
    return QTSP_OK;
}

void val_ctx_cleanup(val_ctx *c)
{
    sk_X509_pop_free(c->pool, X509_free);
    sk_X509_pop_free(c->chain, X509_free);
    sk_OCSP_BASICRESP_pop_free(c->ocsps, OCSP_BASICRESP_free);
    json_decref(c->timestamps);
    json_decref(c->revocation);
    memset(c, 0, sizeof *c);
}

qtsp_status val_conclude(val_ctx *c, json_t *sigs)
{
    const val_sig *s = c->in;
    for (size_t i = 0; i < s->n_poes; i++) {
        const val_poe *d = &s->poes[i];
        if (d->covers < s->end)
            continue;
        if (d->ok && (!c->poe || d->time < c->poe))
            c->poe = d->time;
        TRY(val_ts_json(c->timestamps, "document", d->ok, d->time, d->why));
    }
    /* 5.2.6: chain, revocation, validity */
    build_chain(c);
    if (c->chain && sk_X509_num(c->chain) >= 2)
        TRY(check_revocation(c, sk_X509_value(c->chain, 1)));
    int64_t nb = asn1_epoch(X509_get0_notBefore(c->cert)),
            na = asn1_epoch(X509_get0_notAfter(c->cert));
    char at[32];
    if (c->claimed && c->claimed < nb)
        val_verdict(&c->r, IND_FAILED, "NOT_YET_VALID",
                    "the claimed signing time lies before the signing certificate's validity");
    if (c->now > na && !(c->poe && c->poe <= na && c->poe >= nb)) {
        qtsp_format_rfc3339((time_t)na, at, sizeof at);
        val_verdict(&c->r, IND_INDETERMINATE, "OUT_OF_BOUNDS_NO_POE",
                    "the signing certificate expired at %s and no time-stamp proves the "
                    "signature existed before",
                    at);
    }
    if (c->now < nb)
        val_verdict(&c->r, IND_INDETERMINATE, "OUT_OF_BOUNDS_NO_POE",
                    "the signing certificate is not yet valid");
    return val_entry(c, sigs);
}

static qtsp_status check_signer(const qtsp_validator *v, const val_sig *s, CMS_ContentInfo *cms,
                                CMS_SignerInfo *si, const ASN1_OCTET_STRING *econtent, int64_t now,
                                json_t *sigs)
{
    qtsp_status rc = QTSP_OK;
    val_ctx c;
    TRY(val_ctx_init(&c, v, s, now));
    c.cms = cms;
    c.si = si;
    STACK_OF(X509) *cms_certs = CMS_get1_certs(cms);
    for (int i = 0; i < sk_X509_num(cms_certs); i++)
        val_pool_add(&c, sk_X509_value(cms_certs, i));
    /* the signed data */
    const unsigned char *chunk[2] = {s->chunk[0], s->chunk[1]};
    size_t clen[2] = {s->chunk_len[0], s->chunk_len[1]}, nc = s->n_chunks;
    if (nc == 0 && econtent) {
        chunk[0] = ASN1_STRING_get0_data(econtent);
        clen[0] = (size_t)ASN1_STRING_length(econtent);
        nc = 1;
    }
    /* claimed signing time: signing-time (CAdES) or /M (PAdES) */
    const ASN1_TIME *st =
        CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(NID_pkcs9_signingTime), -3, V_ASN1_UTCTIME);
    if (!st)
        st = CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(NID_pkcs9_signingTime), -3,
                                         V_ASN1_GENERALIZEDTIME);
    if (st && !c.claimed)
        c.claimed = asn1_epoch(st);
    ERR_clear_error();

    /* EN 319 102-1 5.2.3: identification of the signing certificate */
    for (int i = 0; i < sk_X509_num(c.pool) && !c.cert; i++)
        if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(c.pool, i)) == 0)
            c.cert = sk_X509_value(c.pool, i);
    int ess = 0;
    if (!c.cert) {
        val_verdict(&c.r, IND_INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND",
                    "the signing certificate is not in the file");
        TRY_OUT(val_entry(&c, sigs));
        goto out;
    }
    if (!signing_cert_matches(si, c.cert, &ess)) {
        val_verdict(&c.r, IND_INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND",
                    "signing-certificate-v2 does not name the certificate that signed");
        TRY_OUT(val_entry(&c, sigs));
        goto out;
    }

    /* 5.2.7: cryptographic verification: the data's digest, then the signature */
    X509_ALGOR *dig = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
    const ASN1_OBJECT *dobj = NULL;
    X509_ALGOR_get0(&dobj, NULL, NULL, dig);
    const EVP_MD *md = EVP_get_digestbyobj(dobj);
    const ASN1_OCTET_STRING *mdv = CMS_signed_get0_data_by_OBJ(
        si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING);
    ERR_clear_error();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    if (!val_md_allowed(md))
        val_verdict(&c.r, IND_INDETERMINATE, "CRYPTO_CONSTRAINTS_FAILURE_NO_POE",
                    "digest algorithm not accepted (SHA-256, SHA-384, SHA-512 are)");
    else if (!mdv)
        val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE", "no message-digest signed attribute");
    else if (nc == 0)
        val_verdict(&c.r, IND_INDETERMINATE, "SIGNED_DATA_NOT_FOUND",
                    "a detached signature: send the signed content as 'content'");
    else if (!val_digest(md, chunk, clen, nc, h, &hl))
        FAIL_OUT(QTSP_ERR_CRYPTO, "digest of the signed data");
    else if ((size_t)ASN1_STRING_length(mdv) != hl ||
             CRYPTO_memcmp(ASN1_STRING_get0_data(mdv), h, hl) != 0)
        val_verdict(&c.r, IND_FAILED, "HASH_FAILURE",
                    "the signed data's digest differs from the message-digest attribute");
    ERR_clear_error();
    if (CMS_SignerInfo_set1_signer_cert(si, c.cert), CMS_SignerInfo_verify(si) != 1)
        val_verdict(&c.r, IND_FAILED, "SIG_CRYPTO_FAILURE",
                    "the signature value does not verify with the signing certificate's key");
    ERR_clear_error();

    /* time-stamps, certificate and revocation values */
    TRY_OUT(unsigned_attrs(&c, chunk, clen, nc));
    TRY_OUT(val_conclude(&c, sigs));
out:
    sk_X509_pop_free(cms_certs, X509_free);
    val_ctx_cleanup(&c);
    return rc;
}

qtsp_status val_cms(const qtsp_validator *v, const val_sig *s, int64_t now, json_t *sigs)
{
    const unsigned char *p = s->cms;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)s->cms_len);
    qtsp_status rc = QTSP_OK;
    ERR_clear_error();
    ENSURE_OUT(cms && p == s->cms + s->cms_len, QTSP_ERR_INVALID,
               "not a CMS signature (DER ContentInfo)");
    ENSURE_OUT(OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed, QTSP_ERR_INVALID,
               "the CMS is not SignedData");
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    ENSURE_OUT(sk_CMS_SignerInfo_num(sis) > 0, QTSP_ERR_INVALID, "the CMS has no signer");
    ENSURE_OUT(sk_CMS_SignerInfo_num(sis) <= VAL_MAX_SIGS, QTSP_ERR_TOO_BIG, "more than %d signers",
               VAL_MAX_SIGS);
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    const ASN1_OCTET_STRING *econtent = pos ? *pos : NULL;
    ENSURE_OUT(!(econtent && s->n_chunks), QTSP_ERR_INVALID,
               "the signature envelops its content: send no detached content");
    for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++)
        TRY_OUT(check_signer(v, s, cms, sk_CMS_SignerInfo_value(sis, i), econtent, now, sigs));
out:
    ERR_clear_error();
    CMS_ContentInfo_free(cms);
    return rc;
}

qtsp_status val_format_failure(json_t *sigs, const char *message)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:n,s:n,s:b}", "indication", "TOTAL-FAILED",
                          "sub_indication", "FORMAT_FAILURE", "message", message, "format", "PAdES",
                          "signer", "signing_time", "qualified", 0);
    ENSURE(o != NULL && json_array_append_new(sigs, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* XML: '<' first, after an optional UTF-8 byte order mark and white space */
static int looks_xml(const unsigned char *p, size_t n)
{
    size_t i = n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf ? 3 : 0;
    while (i < n && i < 1024 && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i < n && p[i] == '<';
}

qtsp_status qtsp_validate(const qtsp_validator *v, const unsigned char *file, size_t len,
                          const unsigned char *content, size_t content_len, int64_t now,
                          json_t **out)
{
    ENSURE(v && out, QTSP_ERR_INVALID, "nothing to validate");
    ENSURE(file && len > 0, QTSP_ERR_INVALID, "file: empty");
    ENSURE(len <= QTSP_VALIDATE_MAX_FILE && content_len <= QTSP_VALIDATE_MAX_FILE, QTSP_ERR_TOO_BIG,
           "file larger than %zu bytes", QTSP_VALIDATE_MAX_FILE);
    qtsp_status rc = QTSP_OK;
    json_t *sigs = json_array();
    unsigned char *der = NULL;
    BIO *b = NULL;
    const char *format = "CAdES";
    ENSURE_OUT(sigs != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (len >= 5 && memcmp(file, "%PDF-", 5) == 0) {
        ENSURE_OUT(content == NULL, QTSP_ERR_INVALID,
                   "content: a PDF signs itself; send no detached content");
        format = "PAdES";
        TRY_OUT(val_pdf(v, file, len, now, sigs));
    } else if (len >= 4 && memcmp(file, "PK\x03\x04", 4) == 0) {
        ENSURE_OUT(content == NULL, QTSP_ERR_INVALID,
                   "content: a container holds its files; send no detached content");
        TRY_OUT(val_asic(v, file, len, now, sigs, &format));
    } else if (looks_xml(file, len)) {
        format = "XAdES";
        TRY_OUT(val_xml(v, file, len, content, content_len, NULL, NULL, NULL, now, sigs));
    } else {
        val_sig s;
        memset(&s, 0, sizeof s);
        s.format = "CAdES";
        s.cms = file;
        s.cms_len = len;
        if (len >= 10 && memcmp(file, "-----BEGIN", 10) == 0) {
            /* RFC 7468 "CMS" or "PKCS7" */
            char *name = NULL, *header = NULL;
            long n = 0;
            b = BIO_new_mem_buf(file, (int)len);
            int ok = b && PEM_read_bio(b, &name, &header, &der, &n) == 1 && n > 0 &&
                     (strcmp(name, "CMS") == 0 || strcmp(name, "PKCS7") == 0);
            OPENSSL_free(name);
            OPENSSL_free(header);
            ERR_clear_error();
            ENSURE_OUT(ok, QTSP_ERR_INVALID, "file: PEM that holds no CMS signature");
            s.cms = der;
            s.cms_len = (size_t)n;
        } else {
            ENSURE_OUT(file[0] == QTSP_DER_SEQUENCE, QTSP_ERR_INVALID,
                       "file: not a PDF, CMS signature (DER, PEM), XML document or ZIP container");
        }
        if (content) {
            s.chunk[0] = content;
            s.chunk_len[0] = content_len;
            s.n_chunks = 1;
        }
        TRY_OUT(val_cms(v, &s, now, sigs));
    }
    json_t *r = json_pack("{s:s,s:o,s:O}", "format", format, "validation_time", val_time_json(now),
                          "signatures", sigs);
    ENSURE_OUT(r != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = r;
out:
    json_decref(sigs);
    OPENSSL_free(der);
    BIO_free(b);
    return rc;
}
