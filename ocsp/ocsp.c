/* OCSP responder core: request parsing with OpenSSL, response DER written by
 * hand (core/der.h) so that producedAt/thisUpdate follow
 * the injected clock and the signed path does nothing but one qtsp_key signature
 * besides a few hundred bytes of copying. See ocsp/ocsp.h for the choices. */
#include "ocsp/ocsp_int.h"

#include <openssl/crypto.h>
#include <openssl/ocsp.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/certdb.h"
#include "ca/key.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/der.h"
#include "core/log.h"
#include "core/time.h"
#include "core/yaml.h"

/* RFC 6960 4.2.1 OCSPResponseStatus */
enum {
    RS_SUCCESSFUL = 0,
    RS_MALFORMED = 1,
    RS_INTERNAL = 2,
    RS_UNAUTHORIZED = 6,
};

#define CACHE_VERSION 1
#define CACHE_HDR (1 + 8 + 8 + 8 + 20)
#define NONCE_ABS_MAX 128 /* RFC 9654 2.1 */
#define HASH_SHA1 1       /* ocsp_cache key suffix, ca/certdb.h */
#define HASH_SHA256 2

/* DER of the OIDs we write (contents and tag). */
static const unsigned char OID_BASIC[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                          0x05, 0x07, 0x30, 0x01, 0x01};
static const unsigned char OID_NONCE[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                          0x05, 0x07, 0x30, 0x01, 0x02};
static const unsigned char OID_ARCHIVE_CUTOFF[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                                   0x05, 0x07, 0x30, 0x01, 0x06};
static const unsigned char OID_EXTENDED_REVOKE[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                                    0x05, 0x07, 0x30, 0x01, 0x09};

struct qtsp_ocsp {
    qtsp_ocsp_source src; /* statuses and pre-signed answers (ocsp_int.h) */
    X509 *issuer;
    X509 *responder;
    const qtsp_key *key; /* borrowed */
    qtsp_sigalg alg;     /* ECDSA or RSA PKCS#1 v1.5 with SHA-256 */
    unsigned char name_sha1[SHA_DIGEST_LENGTH], key_sha1[SHA_DIGEST_LENGTH];
    unsigned char name_sha256[SHA256_DIGEST_LENGTH], key_sha256[SHA256_DIGEST_LENGTH];
    unsigned char responder_key_id[SHA_DIGEST_LENGTH]; /* RFC 6960 4.2.1 KeyHash */
    unsigned char *responder_der;
    size_t responder_der_len;
    unsigned char sig_alg[QTSP_KEY_ALGID_MAX]; /* AlgorithmIdentifier DER */
    size_t sig_alg_len;
    size_t sig_max;
    qtsp_signq *signq; /* NULL: answers needing a signature are signed inline */
    EVP_MD *sha256;    /* fetched once: SHA256() fetches on every call */
    time_t archive_cutoff;
    /* policy */
    int64_t validity;
    int64_t refresh_percent;
    int64_t max_certids;
    int64_t nonce_max_len;
    int64_t max_request_bytes;
    int64_t http_max_age;
    /* metrics */
    _Atomic uint64_t n_ok, n_malformed, n_unauthorized, n_internal;
    _Atomic uint64_t n_hit, n_miss, n_stale, n_signed;
};

/* GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 4.1.2.5.2) of t, clamped to
 * 1970..9999 (times come from our clock and store). */
static void d_gtime(qtsp_der_w *d, int64_t t)
{
    if (t < 0)
        t = 0;
    if (t > QTSP_TIME_MAX)
        t = QTSP_TIME_MAX;
    qtsp_der_gentime(d, t * 1000);
}

/* ------------------------------------------------------------------------ */
/* Construction */

static qtsp_status load_policy(qtsp_ocsp *o, const char *path)
{
    o->validity = 24 * 3600;
    o->refresh_percent = 50;
    o->max_certids = 20;
    o->nonce_max_len = NONCE_ABS_MAX;
    o->max_request_bytes = 8192;
    o->http_max_age = 60;
    if (!path)
        return QTSP_OK;
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {
        "validity",          "refresh_percent", "max_certids", "nonce_max_len",
        "max_request_bytes", "http_max_age",    NULL};
    qtsp_status rc;
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_duration(root, "validity", 1, &o->validity));
    if (o->validity < 60 || o->validity > 7 * 86400) {
        rc = qtsp_ynode_fail(qtsp_ynode_get(root, "validity"), "validity",
                             "must be between 1m and 7d");
        goto out;
    }
    TRY_OUT(qtsp_yget_int(root, "refresh_percent", 0, 1, 100, &o->refresh_percent));
    TRY_OUT(qtsp_yget_int(root, "max_certids", 0, 1, 32, &o->max_certids));
    /* RFC 9654 2.1: responders accept at least 32 octets, at most 128 exist */
    TRY_OUT(qtsp_yget_int(root, "nonce_max_len", 0, 32, NONCE_ABS_MAX, &o->nonce_max_len));
    TRY_OUT(qtsp_yget_int(root, "max_request_bytes", 0, 256, 65536, &o->max_request_bytes));
    TRY_OUT(qtsp_yget_duration(root, "http_max_age", 0, &o->http_max_age));
    if (o->http_max_age > o->validity) {
        rc = qtsp_ynode_fail(qtsp_ynode_get(root, "http_max_age"), "http_max_age",
                             "must not exceed validity");
        goto out;
    }
out:
    qtsp_ydoc_free(doc);
    return rc;
}

static qtsp_status precompute(qtsp_ocsp *o)
{
    /* RFC 6960 4.1.1: issuerNameHash over the DER of the issuer's subject,
     * issuerKeyHash over the subjectPublicKey BIT STRING value. */
    unsigned char *name = NULL;
    int nlen = i2d_X509_NAME(X509_get_subject_name(o->issuer), &name);
    ENSURE(nlen > 0, QTSP_ERR_CRYPTO, "cannot encode the issuing CA name");
    SHA1(name, (size_t)nlen, o->name_sha1);
    SHA256(name, (size_t)nlen, o->name_sha256);
    OPENSSL_free(name);
    const ASN1_BIT_STRING *k = X509_get0_pubkey_bitstr(o->issuer);
    ENSURE(k, QTSP_ERR_INVALID, "issuing CA has no public key");
    SHA1(ASN1_STRING_get0_data(k), (size_t)ASN1_STRING_length(k), o->key_sha1);
    SHA256(ASN1_STRING_get0_data(k), (size_t)ASN1_STRING_length(k), o->key_sha256);
    const ASN1_BIT_STRING *rk = X509_get0_pubkey_bitstr(o->responder);
    ENSURE(rk, QTSP_ERR_INVALID, "responder certificate has no public key");
    SHA1(ASN1_STRING_get0_data(rk), (size_t)ASN1_STRING_length(rk), o->responder_key_id);

    unsigned char *cert = NULL;
    int clen = i2d_X509(o->responder, &cert);
    ENSURE(clen > 0, QTSP_ERR_CRYPTO, "cannot encode the responder certificate");
    o->responder_der = cert;
    o->responder_der_len = (size_t)clen;
    int64_t cutoff = 0;
    TRY(qtsp_asn1_time_to_epoch(X509_get0_notBefore(o->issuer), &cutoff));
    o->archive_cutoff = (time_t)cutoff;
    return QTSP_OK;
}

static qtsp_status check_certs(qtsp_ocsp *o)
{
    ENSURE(X509_check_issued(o->issuer, o->responder) == X509_V_OK, QTSP_ERR_INVALID,
           "responder certificate is not issued by the issuing CA");
    /* RFC 6960 4.2.2.2: a delegated responder carries id-kp-OCSPSigning */
    ENSURE((X509_get_extension_flags(o->responder) & EXFLAG_XKUSAGE) &&
               (X509_get_extended_key_usage(o->responder) & XKU_OCSP_SIGN),
           QTSP_ERR_INVALID, "responder certificate lacks extended key usage OCSPSigning");
    /* RFC 6960 4.2.2.2.1: id-pkix-ocsp-nocheck (standards.md) */
    ENSURE(X509_get_ext_by_NID(o->responder, NID_id_pkix_OCSP_noCheck, -1) >= 0, QTSP_ERR_INVALID,
           "responder certificate lacks id-pkix-ocsp-nocheck");
    ENSURE(EVP_PKEY_eq(X509_get0_pubkey(o->responder), qtsp_key_get0_pubkey(o->key)) == 1,
           QTSP_ERR_INVALID, "responder key does not match the responder certificate");
    TRY(qtsp_key_sigalg(o->key, EVP_sha256(), &o->alg));
    TRY(qtsp_sigalg_algid(&o->alg, o->sig_alg, sizeof o->sig_alg, &o->sig_alg_len));
    int sz = EVP_PKEY_get_size(qtsp_key_get0_pubkey(o->key));
    ENSURE(sz > 0 && sz <= 1024, QTSP_ERR_UNSUPPORTED, "unexpected signature size %d", sz);
    o->sig_max = (size_t)sz;
    return QTSP_OK;
}

qtsp_status qtsp_ocsp_new_source(const char *policy_path, X509 *issuer_ca, X509 *responder_cert,
                                 const qtsp_key *responder_key, const qtsp_ocsp_source *src,
                                 qtsp_ocsp **out)
{
    ENSURE(issuer_ca && responder_cert && responder_key && src && out, QTSP_ERR_INVALID,
           "OCSP responder needs issuing CA, responder certificate, key and status source");
    ENSURE(src->begin && src->end && src->gen && src->status && !src->cache_get == !src->cache_put,
           QTSP_ERR_INVALID, "incomplete OCSP status source");
    qtsp_status rc;
    qtsp_ocsp *o = calloc(1, sizeof *o);
    ENSURE(o, QTSP_ERR_NOMEM, "out of memory");
    o->src = *src;
    if (!X509_up_ref(issuer_ca) || !X509_up_ref(responder_cert)) {
        free(o);
        FAIL(QTSP_ERR_CRYPTO, "X509_up_ref failed");
    }
    o->issuer = issuer_ca;
    o->responder = responder_cert;
    o->key = responder_key;
    TRY_OUT(load_policy(o, policy_path));
    TRY_OUT(check_certs(o));
    TRY_OUT(precompute(o));
    o->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ENSURE_OUT(o->sha256 != NULL, QTSP_ERR_CRYPTO, "SHA-256 is not available");
    *out = o;
    return QTSP_OK;
out:
    qtsp_ocsp_free(o);
    return rc;
}

void qtsp_ocsp_free(qtsp_ocsp *o)
{
    if (!o)
        return;
    X509_free(o->issuer);
    X509_free(o->responder);
    OPENSSL_free(o->responder_der);
    EVP_MD_free(o->sha256);
    free(o);
}

/* ------------------------------------------------------------------------ */
/* Request */

typedef enum one_kind { ONE_FOREIGN = 0, ONE_OURS = 1, ONE_NEVER_ISSUED = 2 } one_kind;

typedef struct one {
    OCSP_CERTID *cid; /* borrowed from the request */
    one_kind kind;
    int hash; /* HASH_SHA1 / HASH_SHA256 when ours */
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t serial_len;
    qtsp_cert_status st; /* effective status at now, when ONE_OURS */
} one;

typedef struct parsed {
    OCSP_REQUEST *req;
    size_t req_len;
    size_t n;
    one ones[32];
    int has_nonce;
    unsigned char nonce[NONCE_ABS_MAX];
    size_t nonce_len;
} parsed;

static int octets_eq(const ASN1_OCTET_STRING *s, const unsigned char *v, size_t n)
{
    return s && (size_t)ASN1_STRING_length(s) == n && memcmp(ASN1_STRING_get0_data(s), v, n) == 0;
}

/* Returns RS_SUCCESSFUL or the error status to answer with. */
static int classify(const qtsp_ocsp *o, parsed *pr)
{
    size_t ours = 0;
    for (size_t i = 0; i < pr->n; i++) {
        one *e = &pr->ones[i];
        ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
        ASN1_OBJECT *alg = NULL;
        ASN1_INTEGER *ser = NULL;
        if (OCSP_id_get0_info(&nh, &alg, &kh, &ser, e->cid) != 1 || !alg || !ser)
            return RS_MALFORMED;
        int nid = OBJ_obj2nid(alg);
        if (nid == NID_sha1 && octets_eq(nh, o->name_sha1, sizeof o->name_sha1) &&
            octets_eq(kh, o->key_sha1, sizeof o->key_sha1))
            e->hash = HASH_SHA1;
        else if (nid == NID_sha256 && octets_eq(nh, o->name_sha256, sizeof o->name_sha256) &&
                 octets_eq(kh, o->key_sha256, sizeof o->key_sha256))
            e->hash = HASH_SHA256;
        else
            continue; /* other issuer or hash algorithm: unknown */
        ours++;
        /* Serials we issue are positive and at most 20 octets (RFC 5280
         * 4.1.2.2); anything else was never issued by us. */
        e->kind = ONE_NEVER_ISSUED;
        if (ASN1_STRING_type(ser) == V_ASN1_INTEGER &&
            qtsp_serial_normalize(ASN1_STRING_get0_data(ser), (size_t)ASN1_STRING_length(ser),
                                  e->serial, &e->serial_len) == QTSP_OK)
            e->kind = ONE_OURS;
        else
            qtsp_err_clear();
    }
    return ours ? RS_SUCCESSFUL : RS_UNAUTHORIZED;
}

static int parse_nonce(const qtsp_ocsp *o, parsed *pr)
{
    int idx = OCSP_REQUEST_get_ext_by_NID(pr->req, NID_id_pkix_OCSP_Nonce, -1);
    if (idx < 0)
        return RS_SUCCESSFUL;
    if (OCSP_REQUEST_get_ext_by_NID(pr->req, NID_id_pkix_OCSP_Nonce, idx) >= 0)
        return RS_MALFORMED; /* two nonces */
    X509_EXTENSION *ext = OCSP_REQUEST_get_ext(pr->req, idx);
    ASN1_OCTET_STRING *v = ext ? X509_EXTENSION_get_data(ext) : NULL;
    if (!v)
        return RS_MALFORMED;
    /* RFC 9654 2.1: extnValue holds Nonce ::= OCTET STRING (SIZE(1..128)) */
    const unsigned char *p = ASN1_STRING_get0_data(v);
    long vlen = ASN1_STRING_length(v);
    const unsigned char *end = p + vlen;
    ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &p, vlen);
    int rs = RS_MALFORMED;
    if (inner && p == end && ASN1_STRING_length(inner) >= 1 &&
        ASN1_STRING_length(inner) <= o->nonce_max_len) {
        pr->nonce_len = (size_t)ASN1_STRING_length(inner);
        memcpy(pr->nonce, ASN1_STRING_get0_data(inner), pr->nonce_len);
        pr->has_nonce = 1;
        rs = RS_SUCCESSFUL;
    }
    ASN1_OCTET_STRING_free(inner);
    return rs;
}

static int parse_request(const qtsp_ocsp *o, const unsigned char *req, size_t len, parsed *pr)
{
    if (!req || len == 0 || len > (size_t)o->max_request_bytes)
        return RS_MALFORMED;
    const unsigned char *p = req;
    pr->req_len = len;
    pr->req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    if (!pr->req || p != req + len)
        return RS_MALFORMED; /* every d2i consumes exactly its input */
    /* RFC 6960 4.1.1: the request is DER; OpenSSL's d2i also reads BER
     * indefinite and non-minimal lengths (defect 15.8). */
    if (qtsp_der_check_tree(req, len, 16) != QTSP_OK) {
        qtsp_err_clear();
        return RS_MALFORMED;
    }
    int n = OCSP_request_onereq_count(pr->req);
    if (n <= 0 || n > o->max_certids)
        return RS_MALFORMED;
    pr->n = (size_t)n;
    for (size_t i = 0; i < pr->n; i++) {
        pr->ones[i].cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(pr->req, (int)i));
        if (!pr->ones[i].cid)
            return RS_MALFORMED;
    }
    int rs = parse_nonce(o, pr);
    if (rs != RS_SUCCESSFUL)
        return rs;
    return classify(o, pr);
}

/* ------------------------------------------------------------------------ */
/* Cache (source's cache, the store table ocsp_cache; value format version 1):
 *   version u8 | thisUpdate i64 BE | nextUpdate i64 BE | fresh_until i64 BE |
 *   SHA-1 of the DER (ETag) [20] | OCSPResponse DER */

static size_t cache_key(const one *e, unsigned char key[QTSP_SERIAL_MAX + 2])
{
    key[0] = (unsigned char)e->serial_len;
    memcpy(key + 1, e->serial, e->serial_len);
    key[1 + e->serial_len] = (unsigned char)e->hash;
    return e->serial_len + 2;
}

static void etag_format(const unsigned char sha1[20], char out[48])
{
    static const char hx[] = "0123456789abcdef";
    out[0] = '"';
    for (size_t i = 0; i < 20; i++) {
        out[1 + 2 * i] = hx[sha1[i] >> 4];
        out[2 + 2 * i] = hx[sha1[i] & 15];
    }
    out[41] = '"';
    out[42] = '\0';
}

/* 1 on a fresh hit (out and info filled), 0 on miss or stale. */
static int cache_lookup(qtsp_ocsp *o, void *snap, const one *e, time_t now, qtsp_buf *out,
                        qtsp_ocsp_info *info, qtsp_status *rc)
{
    unsigned char key[QTSP_SERIAL_MAX + 2];
    size_t klen = cache_key(e, key);
    const void *v;
    size_t vlen;
    *rc = QTSP_OK;
    if (o->src.cache_get(snap, key, klen, &v, &vlen) != QTSP_OK) {
        qtsp_err_clear();
        atomic_fetch_add_explicit(&o->n_miss, 1, memory_order_relaxed);
        return 0;
    }
    const unsigned char *b = v;
    if (vlen <= CACHE_HDR || b[0] != CACHE_VERSION) {
        atomic_fetch_add_explicit(&o->n_stale, 1, memory_order_relaxed);
        return 0; /* unknown format: re-sign and overwrite */
    }
    int64_t tu = (int64_t)qtsp_be64_get(b + 1), nu = (int64_t)qtsp_be64_get(b + 9),
            fresh = (int64_t)qtsp_be64_get(b + 17);
    if ((int64_t)now >= fresh || (int64_t)now < tu) {
        atomic_fetch_add_explicit(&o->n_stale, 1, memory_order_relaxed);
        return 0;
    }
    *rc = qtsp_buf_append(out, b + CACHE_HDR, vlen - CACHE_HDR);
    if (*rc != QTSP_OK)
        return 0;
    if (info) {
        info->this_update = (time_t)tu;
        info->next_update = (time_t)nu;
        info->cacheable = 1;
        etag_format(b + 25, info->etag);
    }
    atomic_fetch_add_explicit(&o->n_hit, 1, memory_order_relaxed);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Response */

static qtsp_status write_error(qtsp_buf *out, int status, qtsp_ocsp_info *info)
{
    /* OCSPResponse without responseBytes (RFC 6960 4.2.1) */
    const unsigned char der_err[] = {0x30, 0x03, 0x0a, 0x01, (unsigned char)status};
    qtsp_buf_reset(out);
    TRY(qtsp_buf_append(out, der_err, sizeof der_err));
    if (info)
        memset(info, 0, sizeof *info);
    return QTSP_OK;
}

/* Extension ::= SEQUENCE { extnID, extnValue OCTET STRING } (RFC 5280
 * 4.1): opens it after the OID (a whole TLV); the caller writes the value
 * and closes both marks (value first). */
static size_t d_ext_open(qtsp_der_w *d, const unsigned char *oid, size_t oid_len, size_t *val)
{
    size_t ext = qtsp_der_open(d, QTSP_DER_SEQUENCE);
    qtsp_der_raw(d, oid, oid_len);
    *val = qtsp_der_open(d, QTSP_DER_OCTET_STRING);
    return ext;
}

typedef struct times {
    int64_t next_min; /* earliest nextUpdate of our singles */
    int64_t fresh;    /* cache freshness limit */
} times;

/* The CertID rewritten from its parsed parts with NULL hash parameters
 * (what RFC 9919 / OpenSSL send). Not i2d_OCSP_CERTID: OpenSSL re-encodes
 * some odd ANY parameters into DER it cannot parse back (found by fuzzing);
 * clients match CertIDs by hash OID, hashes and serial (RFC 6960 4.1.1). */
static void d_certid(qtsp_der_w *d, OCSP_CERTID *cid)
{
    ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
    ASN1_OBJECT *alg = NULL;
    ASN1_INTEGER *ser = NULL;
    unsigned char *oid = NULL, *num = NULL;
    int olen = 0, nlen = 0;
    if (OCSP_id_get0_info(&nh, &alg, &kh, &ser, cid) != 1 || !nh || !kh ||
        (olen = i2d_ASN1_OBJECT(alg, &oid)) <= 0 || (nlen = i2d_ASN1_INTEGER(ser, &num)) <= 0) {
        qtsp_der_w_fail(d, QTSP_ERR_CRYPTO, "cannot re-encode a CertID");
    } else {
        size_t c = qtsp_der_open(d, QTSP_DER_SEQUENCE);
        size_t a = qtsp_der_open(d, QTSP_DER_SEQUENCE);
        qtsp_der_raw(d, oid, (size_t)olen);
        qtsp_der_null(d);
        qtsp_der_close(d, a);
        qtsp_der_tlv(d, QTSP_DER_OCTET_STRING, ASN1_STRING_get0_data(nh),
                     (size_t)ASN1_STRING_length(nh));
        qtsp_der_tlv(d, QTSP_DER_OCTET_STRING, ASN1_STRING_get0_data(kh),
                     (size_t)ASN1_STRING_length(kh));
        qtsp_der_raw(d, num, (size_t)nlen);
        qtsp_der_close(d, c);
    }
    OPENSSL_free(oid);
    OPENSSL_free(num);
}

/* RevokedInfo ::= SEQUENCE { revocationTime, revocationReason [0] EXPLICIT
 * CRLReason } as [1] IMPLICIT (RFC 6960 4.2.1). */
static void d_revoked(qtsp_der_w *d, int64_t at, unsigned reason)
{
    size_t ri = qtsp_der_open(d, QTSP_DER_CTX_C(1));
    d_gtime(d, at);
    size_t r = qtsp_der_open(d, QTSP_DER_CTX_C(0));
    qtsp_der_u64(d, QTSP_DER_ENUMERATED, reason);
    qtsp_der_close(d, r);
    qtsp_der_close(d, ri);
}

/* RFC 6960 4.2.1 SingleResponse */
static void d_single(const qtsp_ocsp *o, qtsp_der_w *d, const one *e, time_t now, times *tm)
{
    size_t sr = qtsp_der_open(d, QTSP_DER_SEQUENCE);
    d_certid(d, e->cid);
    int64_t next = (int64_t)now + o->validity;
    int64_t fresh = (int64_t)now + o->validity * o->refresh_percent / 100;
    if (e->kind == ONE_FOREIGN) {
        qtsp_der_raw(d, "\x82\x00", 2); /* unknown [2] IMPLICIT NULL */
    } else if (e->kind == ONE_NEVER_ISSUED) {
        /* RFC 6960 2.2 extended revoked: 1970-01-01, certificateHold */
        d_revoked(d, 0, QTSP_REASON_CERTIFICATE_HOLD);
    } else if (e->st.state == QTSP_CERT_VALID) {
        qtsp_der_raw(d, "\x80\x00", 2); /* good [0] IMPLICIT NULL */
    } else {
        d_revoked(d, e->st.revoked_at,
                  e->st.state == QTSP_CERT_ON_HOLD ? (unsigned)QTSP_REASON_CERTIFICATE_HOLD
                                                   : (unsigned)e->st.reason);
        if (e->st.state == QTSP_CERT_ON_HOLD) {
            /* the lapse must show at once: no answer outlives the hold */
            if (next > e->st.hold_until)
                next = e->st.hold_until;
            if (fresh > e->st.hold_until)
                fresh = e->st.hold_until;
        }
    }
    d_gtime(d, now);
    size_t nu = qtsp_der_open(d, QTSP_DER_CTX_C(0));
    d_gtime(d, next);
    qtsp_der_close(d, nu);
    if (e->kind != ONE_FOREIGN) {
        /* RFC 6960 4.4.4 archiveCutoff: status kept since the CA's start */
        size_t exts = qtsp_der_open(d, QTSP_DER_CTX_C(1));
        size_t seq = qtsp_der_open(d, QTSP_DER_SEQUENCE);
        size_t val, ext = d_ext_open(d, OID_ARCHIVE_CUTOFF, sizeof OID_ARCHIVE_CUTOFF, &val);
        d_gtime(d, o->archive_cutoff);
        qtsp_der_close(d, val);
        qtsp_der_close(d, ext);
        qtsp_der_close(d, seq);
        qtsp_der_close(d, exts);
        if (next < tm->next_min)
            tm->next_min = next;
        if (fresh < tm->fresh)
            tm->fresh = fresh;
    }
    qtsp_der_close(d, sr);
}

/* RFC 6960 4.2.1 ResponseData (v1, byKey) */
static void d_tbs(const qtsp_ocsp *o, qtsp_der_w *d, const parsed *pr, time_t now, times *tm)
{
    size_t rd = qtsp_der_open(d, QTSP_DER_SEQUENCE);
    size_t rid = qtsp_der_open(d, QTSP_DER_CTX_C(2)); /* byKey [2] KeyHash */
    qtsp_der_tlv(d, QTSP_DER_OCTET_STRING, o->responder_key_id, sizeof o->responder_key_id);
    qtsp_der_close(d, rid);
    d_gtime(d, now); /* producedAt */
    size_t rs = qtsp_der_open(d, QTSP_DER_SEQUENCE);
    int never = 0;
    for (size_t i = 0; i < pr->n; i++) {
        d_single(o, d, &pr->ones[i], now, tm);
        never |= pr->ones[i].kind == ONE_NEVER_ISSUED;
    }
    qtsp_der_close(d, rs);
    if (pr->has_nonce || never) {
        size_t re = qtsp_der_open(d, QTSP_DER_CTX_C(1));
        size_t seq = qtsp_der_open(d, QTSP_DER_SEQUENCE);
        size_t val, ext;
        if (pr->has_nonce) {
            /* RFC 9654 2.1: echo the Nonce OCTET STRING */
            ext = d_ext_open(d, OID_NONCE, sizeof OID_NONCE, &val);
            qtsp_der_tlv(d, QTSP_DER_OCTET_STRING, pr->nonce, pr->nonce_len);
            qtsp_der_close(d, val);
            qtsp_der_close(d, ext);
        }
        if (never) { /* RFC 6960 4.4.8: extnValue NULL */
            ext = d_ext_open(d, OID_EXTENDED_REVOKE, sizeof OID_EXTENDED_REVOKE, &val);
            qtsp_der_null(d);
            qtsp_der_close(d, val);
            qtsp_der_close(d, ext);
        }
        qtsp_der_close(d, seq);
        qtsp_der_close(d, re);
    }
    qtsp_der_close(d, rd);
}

static qtsp_status sign_tbs(const qtsp_ocsp *o, const unsigned char *tbs, size_t tlen,
                            unsigned char *sig, size_t *slen)
{
    size_t n = o->sig_max;
    if (qtsp_key_sign_data(o->key, &o->alg, tbs, tlen, sig, &n) != QTSP_OK)
        FAIL(QTSP_ERR_CRYPTO, "signing the OCSP response failed: %s", qtsp_err_what());
    *slen = n;
    return QTSP_OK;
}

/* Builds the ResponseData of a successful answer into a malloc'd buffer
 * (*tbuf, content at (*tbuf)[0..*tlen)). */
static qtsp_status build_tbs(const qtsp_ocsp *o, const parsed *pr, time_t now, unsigned char **tbuf,
                             size_t *tlen, times *tm)
{
    /* CertIDs are echoed, so their size follows the request's (bounded by
     * max_request_bytes); the rest is at most ~300 bytes per single. */
    size_t cap = 1024 + pr->req_len + pr->n * 384;
    unsigned char *b = malloc(cap);
    ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_der_w t;
    qtsp_der_w_init(&t, b, cap);
    tm->next_min = INT64_MAX;
    tm->fresh = INT64_MAX;
    d_tbs(o, &t, pr, now, tm);
    qtsp_status rc = qtsp_der_w_finish(&t, tlen);
    if (rc != QTSP_OK) {
        free(b);
        return rc;
    }
    *tbuf = b;
    return QTSP_OK;
}

/* The successful OCSPResponse around tbs and its signature, into out (reset
 * first; after hdr zero bytes, the cache header, when hdr is set). */
static qtsp_status assemble(const qtsp_ocsp *o, const unsigned char *tbs, size_t tlen,
                            const unsigned char *sig, size_t slen, size_t hdr, qtsp_buf *out)
{
    size_t cap = hdr + tlen + o->responder_der_len + slen + 128;
    qtsp_buf_reset(out);
    if (cap <= out->max)
        TRY(qtsp_buf_reserve(out, cap)); /* one allocation at most */
    qtsp_der_w f;
    qtsp_der_w_init_buf(&f, out);
    unsigned char *h = qtsp_der_w_take(&f, hdr);
    if (h && hdr)
        memset(h, 0, hdr);
    size_t resp = qtsp_der_open(&f, QTSP_DER_SEQUENCE);
    qtsp_der_u64(&f, QTSP_DER_ENUMERATED, RS_SUCCESSFUL);
    size_t rb = qtsp_der_open(&f, QTSP_DER_CTX_C(0));
    size_t rbs = qtsp_der_open(&f, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&f, OID_BASIC, sizeof OID_BASIC);
    size_t os = qtsp_der_open(&f, QTSP_DER_OCTET_STRING);
    size_t basic = qtsp_der_open(&f, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&f, tbs, tlen);
    qtsp_der_raw(&f, o->sig_alg, o->sig_alg_len);
    qtsp_der_bits(&f, sig, slen);
    /* RFC 6960 4.2.2.2: include the delegated cert */
    size_t certs = qtsp_der_open(&f, QTSP_DER_CTX_C(0));
    size_t seq = qtsp_der_open(&f, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&f, o->responder_der, o->responder_der_len);
    qtsp_der_close(&f, seq);
    qtsp_der_close(&f, certs);
    qtsp_der_close(&f, basic);
    qtsp_der_close(&f, os);
    qtsp_der_close(&f, rbs);
    qtsp_der_close(&f, rb);
    qtsp_der_close(&f, resp);
    return qtsp_der_w_finish(&f, NULL);
}

/* Builds and signs the successful OCSPResponse into out (or into the bytes
 * after the cache header when hdr is set). */
static qtsp_status build_signed(qtsp_ocsp *o, const parsed *pr, time_t now, qtsp_buf *out,
                                size_t hdr, times *tm)
{
    unsigned char *tbs = NULL;
    size_t tlen = 0, slen = 0;
    unsigned char sig[1024];
    TRY(build_tbs(o, pr, now, &tbs, &tlen, tm));
    qtsp_status rc = sign_tbs(o, tbs, tlen, sig, &slen);
    if (rc == QTSP_OK) {
        atomic_fetch_add_explicit(&o->n_signed, 1, memory_order_relaxed);
        rc = assemble(o, tbs, tlen, sig, slen, hdr, out);
    }
    free(tbs);
    return rc;
}

/* ---- answers signed on the signing queue (ca/signq.h) ---- */

static void count_result(qtsp_ocsp *o, int rs);

void qtsp_ocsp_set_signq(qtsp_ocsp *o, qtsp_signq *q)
{
    o->signq = q;
}

#define QUEUED_MAX ((size_t)1 << 24) /* an answer signed on the queue */

typedef struct queued {
    qtsp_ocsp *o;
    qtsp_ocsp_done_fn done;
    void *done_ctx;
    unsigned char *tbs;
    size_t tlen;
} queued;

static void queued_done(void *ctx, qtsp_status rc, const unsigned char *sig, size_t slen)
{
    queued *q = ctx;
    qtsp_buf out;
    qtsp_buf_init(&out, QUEUED_MAX);
    int rs = RS_SUCCESSFUL;
    if (rc == QTSP_OK) {
        atomic_fetch_add_explicit(&q->o->n_signed, 1, memory_order_relaxed);
        if ((rc = assemble(q->o, q->tbs, q->tlen, sig, slen, 0, &out)) != QTSP_OK) {
            LOG_ERROR("ocsp: %s", qtsp_err_message());
            qtsp_err_clear();
        }
    } /* a signing failure was logged by the queue */
    if (rc != QTSP_OK) {
        rs = RS_INTERNAL;
        rc = write_error(&out, rs, NULL);
    }
    count_result(q->o, rs);
    q->done(q->done_ctx, rc, out.data, out.len);
    qtsp_buf_cleanup(&out);
    free(q->tbs);
    free(q);
}

/* Queues the signature of the answer to pr once the caller agreed to wait
 * (async->wait). 0 when it cannot (no queue, the caller cannot wait):
 * answer inline. */
static int sign_queued(qtsp_ocsp *o, const parsed *pr, time_t now, const qtsp_ocsp_async *async)
{
    if (!o->signq || !async || !async->wait || !async->done)
        return 0;
    queued *q = calloc(1, sizeof *q);
    times tm;
    unsigned char md[SHA256_DIGEST_LENGTH];
    if (!q || build_tbs(o, pr, now, &q->tbs, &q->tlen, &tm) != QTSP_OK ||
        EVP_Digest(q->tbs, q->tlen, md, NULL, o->sha256, NULL) != 1 ||
        !(q->done_ctx = async->wait(async->ctx))) {
        qtsp_err_clear();
        if (q)
            free(q->tbs);
        free(q);
        return 0;
    }
    q->o = o;
    q->done = async->done;
    if (qtsp_signq_submit(o->signq, o->key, &o->alg, md, sizeof md, queued_done, q) !=
        QTSP_OK) /* stopping: the waiting caller still needs its answer */
        queued_done(q, QTSP_ERR_STATE, NULL, 0);
    return 1;
}

/* Reads statuses; returns RS_* and, for a single cacheable CertID, may
 * answer from the cache (*hit = 1). */
static int read_statuses(qtsp_ocsp *o, parsed *pr, time_t now, int try_cache, qtsp_buf *out,
                         qtsp_ocsp_info *info, uint64_t *gen, int *hit, qtsp_status *orc)
{
    void *snap = NULL;
    *hit = 0;
    *orc = QTSP_OK;
    if (o->src.begin(o->src.ctx, &snap) != QTSP_OK) {
        LOG_ERROR("ocsp: cannot read the store: %s", qtsp_err_message());
        qtsp_err_clear();
        return RS_INTERNAL;
    }
    int rs = RS_SUCCESSFUL;
    if (try_cache && o->src.cache_get && cache_lookup(o, snap, &pr->ones[0], now, out, info, orc)) {
        *hit = 1;
        goto out;
    }
    if (*orc != QTSP_OK)
        goto out;
    if (o->src.gen(snap, gen) != QTSP_OK) {
        LOG_ERROR("ocsp: cannot read status_gen: %s", qtsp_err_message());
        qtsp_err_clear();
        rs = RS_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < pr->n; i++) {
        one *e = &pr->ones[i];
        if (e->kind != ONE_OURS)
            continue;
        qtsp_cert_status stored;
        qtsp_status rc = o->src.status(snap, e->serial, e->serial_len, &stored);
        if (rc == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            e->kind = ONE_NEVER_ISSUED; /* RFC 6960 2.2: never "good" */
            continue;
        }
        if (rc != QTSP_OK) {
            LOG_ERROR("ocsp: cannot read a status: %s", qtsp_err_message());
            qtsp_err_clear();
            rs = RS_INTERNAL;
            goto out;
        }
        qtsp_cert_status_effective(&stored, now, &e->st); /* hold lapses at hold_until */
    }
out:
    o->src.end(snap);
    return rs;
}

static void count_result(qtsp_ocsp *o, int rs)
{
    _Atomic uint64_t *c = rs == RS_SUCCESSFUL     ? &o->n_ok
                          : rs == RS_MALFORMED    ? &o->n_malformed
                          : rs == RS_UNAUTHORIZED ? &o->n_unauthorized
                                                  : &o->n_internal;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

qtsp_status qtsp_ocsp_respond(qtsp_ocsp *o, const unsigned char *req, size_t len, qtsp_buf *out,
                              qtsp_ocsp_info *info)
{
    return qtsp_ocsp_respond_async(o, req, len, out, info, NULL, NULL);
}

qtsp_status qtsp_ocsp_respond_async(qtsp_ocsp *o, const unsigned char *req, size_t len,
                                    qtsp_buf *out, qtsp_ocsp_info *info,
                                    const qtsp_ocsp_async *async, int *pending)
{
    ENSURE(o && out, QTSP_ERR_INVALID, "qtsp_ocsp_respond: missing argument");
    if (pending)
        *pending = 0;
    if (info)
        info->http_max_age = o->http_max_age;
    parsed *pr = calloc(1, sizeof *pr);
    if (!pr)
        return write_error(out, RS_INTERNAL, info);
    qtsp_status rc = QTSP_OK;
    time_t now = qtsp_now();
    qtsp_buf_reset(out);
    int rs = parse_request(o, req, len, pr);
    if (rs != RS_SUCCESSFUL)
        goto fail;
    /* RFC 9919 / RFC 5019: one CertID without nonce may be pre-signed */
    int cacheable = !pr->has_nonce && pr->n == 1 && pr->ones[0].kind == ONE_OURS;
    uint64_t gen = 0;
    int hit = 0;
    rs = read_statuses(o, pr, now, cacheable, out, info, &gen, &hit, &rc);
    if (rc != QTSP_OK) { /* the pre-signed answer did not fit into out */
        LOG_ERROR("ocsp: %s", qtsp_err_message());
        qtsp_err_clear();
        rc = QTSP_OK;
        rs = RS_INTERNAL;
    }
    if (rs != RS_SUCCESSFUL)
        goto fail;
    if (hit)
        goto done;
    cacheable = cacheable && pr->ones[0].kind == ONE_OURS; /* not if never issued */
    if (!cacheable && pending && sign_queued(o, pr, now, async)) {
        *pending = 1; /* answered (and counted) by queued_done */
        OCSP_REQUEST_free(pr->req);
        free(pr);
        return QTSP_OK;
    }
    times tm;
    size_t hdr = cacheable ? CACHE_HDR : 0;
    if (build_signed(o, pr, now, out, hdr, &tm) != QTSP_OK) {
        LOG_ERROR("ocsp: %s", qtsp_err_message());
        qtsp_err_clear();
        rs = RS_INTERNAL;
        goto fail;
    }
    unsigned char sha1[SHA_DIGEST_LENGTH];
    int stored = 0;
    if (cacheable) {
        unsigned char *h = out->data;
        SHA1(h + hdr, out->len - hdr, sha1);
        h[0] = CACHE_VERSION;
        qtsp_be64_put(h + 1, (uint64_t)now);
        qtsp_be64_put(h + 9, (uint64_t)tm.next_min);
        qtsp_be64_put(h + 17, (uint64_t)tm.fresh);
        memcpy(h + 25, sha1, sizeof sha1);
        unsigned char key[QTSP_SERIAL_MAX + 2];
        size_t klen = cache_key(&pr->ones[0], key);
        /* no cache (cache_put NULL): the answer is not HTTP-cacheable either */
        if (o->src.cache_put &&
            o->src.cache_put(o->src.ctx, gen, key, klen, h, out->len, &stored) != QTSP_OK) {
            stored = 0;
            /* serve the answer anyway; the next request retries the cache */
            LOG_WARN("ocsp: cannot store the pre-signed answer: %s", qtsp_err_message());
            qtsp_err_clear();
        }
        memmove(out->data, out->data + hdr, out->len - hdr);
        out->len -= hdr;
        out->data[out->len] = '\0';
    }
    if (info) {
        info->this_update = now;
        info->next_update = tm.next_min == INT64_MAX ? now + o->validity : (time_t)tm.next_min;
        info->cacheable = stored;
        if (stored)
            etag_format(sha1, info->etag);
        else
            info->etag[0] = '\0';
    }
    goto done;
fail:
    rc = write_error(out, rs, info);
done:
    count_result(o, rs);
    OCSP_REQUEST_free(pr->req);
    free(pr);
    return rc;
}

qtsp_status qtsp_ocsp_metrics(void *ctx, qtsp_buf *out)
{
    qtsp_ocsp *o = ctx;
    ENSURE(o && out, QTSP_ERR_INVALID, "qtsp_ocsp_metrics: missing argument");
    TRY(qtsp_buf_printf(
        out,
        "# TYPE qtsp_ocsp_requests_total counter\n"
        "qtsp_ocsp_requests_total{result=\"successful\"} %llu\n"
        "qtsp_ocsp_requests_total{result=\"malformedRequest\"} %llu\n"
        "qtsp_ocsp_requests_total{result=\"unauthorized\"} %llu\n"
        "qtsp_ocsp_requests_total{result=\"internalError\"} %llu\n"
        "# TYPE qtsp_ocsp_cache_total counter\n"
        "qtsp_ocsp_cache_total{outcome=\"hit\"} %llu\n"
        "qtsp_ocsp_cache_total{outcome=\"miss\"} %llu\n"
        "qtsp_ocsp_cache_total{outcome=\"stale\"} %llu\n"
        "# TYPE qtsp_ocsp_signed_total counter\n"
        "qtsp_ocsp_signed_total %llu\n",
        (unsigned long long)atomic_load(&o->n_ok), (unsigned long long)atomic_load(&o->n_malformed),
        (unsigned long long)atomic_load(&o->n_unauthorized),
        (unsigned long long)atomic_load(&o->n_internal), (unsigned long long)atomic_load(&o->n_hit),
        (unsigned long long)atomic_load(&o->n_miss), (unsigned long long)atomic_load(&o->n_stale),
        (unsigned long long)atomic_load(&o->n_signed)));
    return QTSP_OK;
}

/* ------------------------------------------------------------------------ */
/* GET form (RFC 6960 A.1.1): url-encoding of base64 of the DER. */

qtsp_status qtsp_ocsp_get_decode(const char *raw, unsigned char *out, size_t cap, size_t *out_len)
{
    ENSURE(raw && out, QTSP_ERR_INVALID, "no OCSP GET request");
    size_t rl = strlen(raw);
    /* cap bytes are at most 4/3 cap base64 characters, each at most "%XX" */
    ENSURE(cap < SIZE_MAX / 8 && rl <= 4 * cap + 16, QTSP_ERR_TOO_BIG,
           "OCSP GET request too large");
    char *txt = malloc(rl + 1);
    ENSURE(txt != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t tl = 0;
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < rl; i++) {
        if (raw[i] == '%') {
            int hi = qtsp_hex_value((unsigned char)raw[i + 1]); /* NUL-terminated */
            int lo = hi < 0 ? -1 : qtsp_hex_value((unsigned char)raw[i + 2]);
            ENSURE_OUT(hi >= 0 && lo >= 0, QTSP_ERR_INVALID, "bad percent-encoding in OCSP GET");
            txt[tl++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            txt[tl++] = raw[i];
        }
    }
    /* RFC 6960 A.1: base64, standard or URL-safe alphabet, padding optional */
    TRY_OUT(qtsp_base64_decode(txt, tl, QTSP_B64_STD | QTSP_B64_URL | QTSP_B64_PADDING, out, cap,
                               out_len));
    ENSURE_OUT(*out_len > 0, QTSP_ERR_INVALID, "empty OCSP GET request");
out:
    free(txt);
    return rc;
}
