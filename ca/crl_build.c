/* Building and signing one CRL (RFC 5280 5.1-5.3) straight from the
 * store's revoked index; see ca/crl_int.h. */
#include "ca/crl_int.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "core/der.h"
#include "core/time.h"

static const unsigned char oid_ce_prefix[2] = {0x55, 0x1d}; /* 2.5.29 */

/* ---------------------------------------------------------------- DER bits */

/* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue } */
static size_t put_ext(unsigned char *out, int ce, int critical, const unsigned char *val,
                      size_t vlen)
{
    size_t content = 5 + (critical ? 3 : 0) + qtsp_der_tlv_size(vlen);
    size_t p = qtsp_der_put_hdr(out, QTSP_DER_SEQUENCE, content);
    out[p++] = QTSP_DER_OID;
    out[p++] = 3;
    out[p++] = oid_ce_prefix[0];
    out[p++] = oid_ce_prefix[1];
    out[p++] = (unsigned char)ce;
    if (critical) {
        out[p++] = QTSP_DER_BOOLEAN;
        out[p++] = 1;
        out[p++] = 0xff;
    }
    p += qtsp_der_put_hdr(out + p, QTSP_DER_OCTET_STRING, vlen);
    memcpy(out + p, val, vlen);
    return p + vlen;
}

/* One revokedCertificates entry (RFC 5280 5.1.2.6, 5.3). reason < 0 or
 * 0 (unspecified) omits reasonCode; hold_oid is added for certificateHold. */
static qtsp_status encode_entry(unsigned char *out, size_t *n, const unsigned char *serial,
                                size_t slen, time_t revoked, int reason,
                                const unsigned char *hold_oid, size_t hold_len, time_t invalidity)
{
    unsigned char exts[128], val[32];
    size_t el = 0, vl;
    if (reason > 0) {
        vl = qtsp_der_put_u64(val, QTSP_DER_ENUMERATED, (uint64_t)reason);
        el += put_ext(exts + el, CE_REASON, 0, val, vl);
    }
    if (reason == QTSP_REASON_CERTIFICATE_HOLD && hold_len) {
        vl = qtsp_der_put_hdr(val, QTSP_DER_OID, hold_len);
        memcpy(val + vl, hold_oid, hold_len);
        el += put_ext(exts + el, CE_HOLD_INSTRUCTION, 0, val, vl + hold_len);
    }
    if (invalidity > 0) {
        TRY(qtsp_der_put_time(val, invalidity, 1, &vl));
        el += put_ext(exts + el, CE_INVALIDITY_DATE, 0, val, vl);
    }
    unsigned char body[96];
    size_t bl = qtsp_der_put_uint(body, QTSP_DER_INTEGER, serial, slen);
    size_t tl;
    TRY(qtsp_der_put_time(body + bl, revoked, 0, &tl));
    bl += tl;
    size_t content = bl + (el ? qtsp_der_tlv_size(el) : 0);
    size_t p = qtsp_der_put_hdr(out, QTSP_DER_SEQUENCE, content);
    memcpy(out + p, body, bl);
    p += bl;
    if (el) {
        p += qtsp_der_put_hdr(out + p, QTSP_DER_SEQUENCE, el);
        memcpy(out + p, exts, el);
        p += el;
    }
    *n = p;
    return QTSP_OK;
}

/* ---------------------------------------------------------------- CA setup */

qtsp_status crl_ca_init(crl_ca *ca, X509 *cert, const qtsp_key *key)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    ENSURE(pub, QTSP_ERR_CRYPTO, "CA certificate without a usable public key");
    TRY(qtsp_key_sigalg(key, NULL, &ca->sigalg));
    ca->md = ca->sigalg.md;
    TRY(qtsp_sigalg_algid(&ca->sigalg, ca->alg, sizeof ca->alg, &ca->alg_len));
    int sz = EVP_PKEY_get_size(pub);
    ENSURE(sz > 0 && sz < 4096, QTSP_ERR_CRYPTO, "cannot size the CA signature");
    ca->sig_max = (size_t)sz;

    int il = i2d_X509_NAME(X509_get_subject_name(cert), &ca->issuer);
    ENSURE(il > 0, QTSP_ERR_CRYPTO, "cannot encode the CA subject");
    ca->issuer_len = (size_t)il;

    /* RFC 5280 5.2.1: AKI keyid = the CA's subjectKeyIdentifier */
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);
    if (ski && ASN1_STRING_length(ski) > 0 && (size_t)ASN1_STRING_length(ski) <= sizeof ca->keyid) {
        ca->keyid_len = (size_t)ASN1_STRING_length(ski);
        memcpy(ca->keyid, ASN1_STRING_get0_data(ski), ca->keyid_len);
    } else {
        unsigned int l = 0; /* RFC 5280 4.2.1.2 method (1) */
        ENSURE(X509_pubkey_digest(cert, EVP_sha1(), ca->keyid, &l) == 1, QTSP_ERR_CRYPTO,
               "cannot compute the CA key identifier");
        ca->keyid_len = l;
    }
    struct tm tm;
    ENSURE(ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm) == 1, QTSP_ERR_CRYPTO,
           "cannot read the CA notBefore");
    ca->not_before = (time_t)qtsp_timegm(&tm);

    ENSURE(X509_up_ref(cert) == 1, QTSP_ERR_CRYPTO, "cannot reference the CA");
    ca->cert = cert;
    ca->key = key;
    return QTSP_OK;
}

void crl_ca_cleanup(crl_ca *ca)
{
    X509_free(ca->cert);
    OPENSSL_free(ca->issuer);
    memset(ca, 0, sizeof *ca);
}

/* ---------------------------------------------------------------- building */

static qtsp_status prune_add(crl_build *b, const unsigned char *serial, size_t slen)
{
    if (b->prune_n >= CRL_PRUNE_MAX) /* the rest goes at the next rebase */
        return QTSP_OK;
    if (b->prune_n == b->prune_cap) {
        size_t nc = b->prune_cap ? b->prune_cap * 2 : 1024;
        unsigned char *np = realloc(b->prune, nc * PRUNE_REC);
        ENSURE(np, QTSP_ERR_NOMEM, "out of memory");
        b->prune = np;
        b->prune_cap = nc;
    }
    unsigned char *e = b->prune + b->prune_n++ * PRUNE_REC;
    e[0] = (unsigned char)slen;
    memcpy(e + 1, serial, slen);
    return QTSP_OK;
}

static int is_root_serial(const crl_build *b, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < b->n_roots; i++)
        if (b->roots[i].n == n && memcmp(b->roots[i].s, s, n) == 0)
            return 1;
    return 0;
}

static qtsp_status on_entry(void *ctx, const unsigned char *serial, size_t slen,
                            const qtsp_cert_status *stored)
{
    crl_build *b = ctx;
    /* released before the new base: no delta will list it again */
    if (b->collect && b->pass == 1 && stored->state == QTSP_CERT_VALID && stored->released &&
        stored->changed_at < b->now && slen <= QTSP_SERIAL_MAX)
        TRY(prune_add(b, serial, slen));
    if (b->kind != KIND_ROOT && is_root_serial(b, serial, slen))
        return QTSP_OK; /* listed on the root CRL instead */
    qtsp_cert_status st;
    qtsp_cert_status_effective(stored, b->now, &st);
    int reason;
    if (b->kind == KIND_DELTA && st.changed_at < b->base_time)
        return QTSP_OK; /* unchanged since the base: RFC 5280 5.2.4 */
    if (st.state == QTSP_CERT_VALID) {
        /* RFC 5280 5.3.1: removeFromCRL only in delta CRLs */
        if (b->kind != KIND_DELTA || !st.released)
            return QTSP_OK;
        reason = QTSP_REASON_REMOVE_FROM_CRL;
    } else if (st.state == QTSP_CERT_ON_HOLD) {
        reason = QTSP_REASON_CERTIFICATE_HOLD;
        if (b->pass == 1 && b->kind == KIND_FULL && st.hold_until > b->now &&
            (b->next_lapse == 0 || st.hold_until < b->next_lapse))
            b->next_lapse = st.hold_until;
    } else if (st.state == QTSP_CERT_REVOKED) {
        reason = st.reason;
        ENSURE(reason >= 0 && reason <= 10 && reason != 7 && reason != QTSP_REASON_REMOVE_FROM_CRL,
               QTSP_ERR_STORE_CORRUPT, "revoked entry with reason %d", reason);
    } else {
        FAIL(QTSP_ERR_STORE_CORRUPT, "status record with state %d", st.state);
    }
    time_t when = st.revoked_at ? (time_t)st.revoked_at : (time_t)st.changed_at;
    unsigned char e[CRL_ENTRY_MAX];
    size_t n;
    TRY(encode_entry(e, &n, serial, slen, when, reason, b->pol->hold_oid, b->pol->hold_oid_len,
                     (time_t)st.invalidity_date));
    if (b->pass == 1) {
        ENSURE(b->entries_len <= CRL_MAX_BYTES - n, QTSP_ERR_TOO_BIG, "CRL too large");
        b->entries_len += n;
        b->count++;
    } else {
        ENSURE((size_t)(b->wend - b->wp) >= n, QTSP_ERR_INTERNAL,
               "CRL entries changed between passes");
        memcpy(b->wp, e, n);
        b->wp += n;
    }
    return QTSP_OK;
}

static qtsp_status each_entry(qtsp_txn *txn, crl_build *b)
{
    if (b->kind != KIND_ROOT)
        return qtsp_certdb_revoked_each(txn, on_entry, b);
    for (size_t i = 0; i < b->n_roots; i++) {
        qtsp_cert_status st;
        qtsp_status rc = qtsp_certdb_get_status(txn, b->roots[i].s, b->roots[i].n, &st);
        if (rc == QTSP_ERR_NOT_FOUND) /* an answer, not recorded (store.h) */
            continue;                 /* listed by init but never stored */
        TRY(rc);
        TRY(on_entry(b, b->roots[i].s, b->roots[i].n, &st));
    }
    return QTSP_OK;
}

/* crlExtensions content (the Extension items, without the SEQUENCE). */
static qtsp_status encode_crl_exts(const crl_build *b, unsigned char *out, size_t *n)
{
    const crl_ca *ca = b->ca;
    unsigned char val[CRL_URL_MAX + 32];
    size_t p = 0, vl;
    /* RFC 5280 5.2.1: AuthorityKeyIdentifier { [0] keyIdentifier } */
    vl = qtsp_der_put_hdr(val, QTSP_DER_SEQUENCE, qtsp_der_tlv_size(ca->keyid_len));
    vl += qtsp_der_put_hdr(val + vl, 0x80, ca->keyid_len);
    memcpy(val + vl, ca->keyid, ca->keyid_len);
    vl += ca->keyid_len;
    p += put_ext(out + p, CE_AKI, 0, val, vl);
    /* RFC 5280 5.2.3 */
    vl = qtsp_der_put_u64(val, QTSP_DER_INTEGER, b->number);
    p += put_ext(out + p, CE_CRL_NUMBER, 0, val, vl);
    if (b->kind == KIND_DELTA) {
        /* RFC 5280 5.2.4: critical, BaseCRLNumber */
        vl = qtsp_der_put_u64(val, QTSP_DER_INTEGER, b->base_number);
        p += put_ext(out + p, CE_DELTA_INDICATOR, 1, val, vl);
    }
    if (b->kind == KIND_FULL && b->pol->delta) {
        /* RFC 5280 5.2.6: freshestCRL = SEQUENCE OF DistributionPoint {
         * [0] distributionPoint { [0] fullName { [6] URI } } } */
        size_t ul = strlen(b->delta_url);
        size_t gn = qtsp_der_tlv_size(ul), fn = qtsp_der_tlv_size(gn), dpn = qtsp_der_tlv_size(fn),
               dp = qtsp_der_tlv_size(dpn);
        vl = qtsp_der_put_hdr(val, QTSP_DER_SEQUENCE, dp);
        vl += qtsp_der_put_hdr(val + vl, QTSP_DER_SEQUENCE, dpn);
        vl += qtsp_der_put_hdr(val + vl, QTSP_DER_CTX_C(0), fn);
        vl += qtsp_der_put_hdr(val + vl, QTSP_DER_CTX_C(0), gn);
        vl += qtsp_der_put_hdr(val + vl, 0x86, ul);
        memcpy(val + vl, b->delta_url, ul);
        vl += ul;
        p += put_ext(out + p, CE_FRESHEST_CRL, 0, val, vl);
    }
    /* X.509 9.6.2.9 / EN 319 411-1: expired certificates stay listed since
     * the CA's notBefore */
    TRY(qtsp_der_put_time(val, ca->not_before, 1, &vl));
    p += put_ext(out + p, CE_EXPIRED_CERTS_ON_CRL, 0, val, vl);
    *n = p;
    return QTSP_OK;
}

void crl_blob_unref(void *arg)
{
    crl_blob *bl = arg;
    if (!bl)
        return;
    pthread_mutex_lock(bl->lock);
    int last = --bl->refs == 0;
    pthread_mutex_unlock(bl->lock);
    if (last) {
        free(bl->mem);
        free(bl);
    }
}

/* Builds and signs one CRL (two passes over the entries in txn). */
qtsp_status crl_build_sign(qtsp_txn *txn, crl_build *b, pthread_mutex_t *lock, crl_blob **out)
{
    qtsp_status rc;
    crl_blob *bl = NULL;
    unsigned char *sig = NULL;
    const crl_ca *ca = b->ca;

    b->pass = 1;
    b->count = b->entries_len = 0;
    b->next_lapse = 0;
    TRY_OUT(each_entry(txn, b));

    unsigned char exts[CRL_EXT_MAX];
    size_t exts_len;
    TRY_OUT(encode_crl_exts(b, exts, &exts_len));
    size_t exts_tlv = qtsp_der_tlv_size(qtsp_der_tlv_size(exts_len)); /* [0] { SEQ } */
    unsigned char t1[17], t2[17];
    size_t t1l, t2l;
    TRY_OUT(qtsp_der_put_time(t1, b->now, 0, &t1l));
    TRY_OUT(qtsp_der_put_time(t2, b->next_update, 0, &t2l));
    size_t tbs_content = 3 + ca->alg_len + ca->issuer_len + t1l + t2l +
                         (b->count ? qtsp_der_tlv_size(b->entries_len) : 0) + exts_tlv;
    ENSURE_OUT(tbs_content < CRL_MAX_BYTES, QTSP_ERR_TOO_BIG, "CRL too large");
    size_t tbs_tlv = qtsp_der_tlv_size(tbs_content);
    size_t sig_tlv_max = qtsp_der_tlv_size(1 + ca->sig_max);
    size_t cap = QTSP_DER_HDR_MAX + tbs_tlv + ca->alg_len + sig_tlv_max;

    bl = calloc(1, sizeof *bl);
    ENSURE_OUT(bl, QTSP_ERR_NOMEM, "out of memory");
    bl->mem = malloc(cap);
    ENSURE_OUT(bl->mem, QTSP_ERR_NOMEM, "out of memory for a CRL of %zu bytes", cap);
    bl->refs = 1;
    bl->lock = lock;

    /* RFC 5280 5.1.2: TBSCertList */
    unsigned char *tbs = bl->mem + QTSP_DER_HDR_MAX, *w = tbs;
    w += qtsp_der_put_hdr(w, QTSP_DER_SEQUENCE, tbs_content);
    *w++ = QTSP_DER_INTEGER; /* version v2 (1) */
    *w++ = 1;
    *w++ = 1;
    memcpy(w, ca->alg, ca->alg_len);
    w += ca->alg_len;
    memcpy(w, ca->issuer, ca->issuer_len);
    w += ca->issuer_len;
    memcpy(w, t1, t1l);
    w += t1l;
    memcpy(w, t2, t2l);
    w += t2l;
    if (b->count) { /* 5.1.2.6: absent when empty */
        w += qtsp_der_put_hdr(w, QTSP_DER_SEQUENCE, b->entries_len);
        b->pass = 2;
        b->wp = w;
        b->wend = w + b->entries_len;
        TRY_OUT(each_entry(txn, b));
        ENSURE_OUT(b->wp == b->wend, QTSP_ERR_INTERNAL, "CRL entries changed between passes");
        w = b->wend;
    }
    w += qtsp_der_put_hdr(w, QTSP_DER_CTX_C(0), qtsp_der_tlv_size(exts_len));
    w += qtsp_der_put_hdr(w, QTSP_DER_SEQUENCE, exts_len);
    memcpy(w, exts, exts_len);
    w += exts_len;
    ENSURE_OUT((size_t)(w - tbs) == tbs_tlv, QTSP_ERR_INTERNAL, "TBSCertList size mismatch");

    /* RFC 5280 5.1.1.3: signature over the DER of tbsCertList */
    sig = malloc(ca->sig_max);
    ENSURE_OUT(sig, QTSP_ERR_NOMEM, "out of memory");
    size_t siglen = ca->sig_max;
    TRY_OUT(qtsp_key_sign_data(ca->key, &ca->sigalg, tbs, tbs_tlv, sig, &siglen));
    memcpy(w, ca->alg, ca->alg_len);
    w += ca->alg_len;
    w += qtsp_der_put_hdr(w, QTSP_DER_BIT_STRING, 1 + siglen);
    *w++ = 0; /* no unused bits */
    memcpy(w, sig, siglen);
    w += siglen;

    size_t content = (size_t)(w - tbs);
    size_t hl = qtsp_der_tlv_size(content) - content;
    unsigned char *start = tbs - hl;
    qtsp_der_put_hdr(start, QTSP_DER_SEQUENCE, content);
    bl->der = start;
    bl->len = content + hl;
    bl->number = b->number;
    bl->this_update = b->now;
    bl->next_update = b->next_update;
    *out = bl;
    bl = NULL;
    rc = QTSP_OK;
out:
    if (bl) {
        free(bl->mem);
        free(bl);
    }
    free(sig);
    return rc;
}
