/* CRL publisher; see ca/crl.h for what is published when. */
#include "ca/crl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/certdb.h"
#include "core/clock.h"
#include "core/der.h"
#include "core/log.h"
#include "core/time.h"
#include "core/yaml.h"

#define CRL_ENTRY_MAX 192     /* one encoded revokedCertificates entry */
#define CRL_EXT_MAX 1024      /* crlExtensions */
#define CRL_ROOT_LIST_MAX 256 /* serials in meta "issued_by_root" */
#define CRL_URL_MAX 512
#define CRL_PATH_MAX 1024
#define CRL_REC_VERSION 1
#define CRL_MAX_BYTES ((size_t)3 << 30) /* keeps every length under 2^32 */
#define CRL_PRUNE_MAX 200000 /* released entries forgotten per rebase */
#define CRL_PRUNE_BATCH 10000 /* per write transaction */
#define CRL_FILE_MAX ((size_t)1 << 32) /* a published file we read back */

enum { CRL_QUALIFIED = 0, CRL_DELTA = 1, CRL_ROOT = 2, CRL__N = 3 };
static const char *const crl_names[CRL__N] = {"qualified", "qualified-delta", "root"};

/* OIDs (DER content) */
static const unsigned char oid_ce_prefix[2] = {0x55, 0x1d}; /* 2.5.29 */
enum {
    CE_CRL_NUMBER = 20,        /* 2.5.29.20 */
    CE_REASON = 21,            /* 2.5.29.21 */
    CE_HOLD_INSTRUCTION = 23,  /* 2.5.29.23 */
    CE_INVALIDITY_DATE = 24,   /* 2.5.29.24 */
    CE_DELTA_INDICATOR = 27,   /* 2.5.29.27 */
    CE_AKI = 35,               /* 2.5.29.35 */
    CE_FRESHEST_CRL = 46,      /* 2.5.29.46 */
    CE_EXPIRED_CERTS_ON_CRL = 60, /* 2.5.29.60 (X.509 (2016) 9.6.2.9) */
};
/* id-holdinstruction-none/callissuer/reject: 1.2.840.10040.2.{1,2,3} */
static const unsigned char oid_hold_base[6] = {0x2a, 0x86, 0x48, 0xce, 0x38, 0x02};

typedef struct crl_blob {
    int refs; /* guarded by the publisher's lock */
    pthread_mutex_t *lock;
    unsigned char *mem;
    const unsigned char *der;
    size_t len;
    uint64_t number;
    time_t this_update, next_update;
} crl_blob;

typedef struct crl_ca {
    X509 *cert;
    EVP_PKEY *key;
    const EVP_MD *md;
    unsigned char alg[16]; /* AlgorithmIdentifier DER */
    size_t alg_len;
    unsigned char *issuer; /* Name DER */
    size_t issuer_len;
    unsigned char keyid[64];
    size_t keyid_len;
    time_t not_before;
    size_t sig_max;
} crl_ca;

typedef struct root_serial {
    unsigned char s[QTSP_SERIAL_MAX];
    size_t n;
} root_serial;

typedef struct crl_facts {
    int present;
    uint64_t base_number;
    time_t base_time;
    uint64_t last_number;
    time_t last_time;
    uint64_t status_gen;
    time_t next_lapse; /* 0 = none */
} crl_facts;

struct qtsp_crl_publisher {
    qtsp_crl_policy pol;
    char dir[CRL_PATH_MAX]; /* public/crl */
    char delta_url[CRL_URL_MAX];
    crl_ca ca[2]; /* 0 issuing, 1 root */
    qtsp_store *store;
    pthread_mutex_t publish_lock; /* one publication at a time */
    pthread_mutex_t lock;         /* cur[] and blob refcounts */
    crl_blob *cur[CRL__N];
    int lock_fd; /* DIR/public/crl/.publish.lock: one publisher across processes */
    /* background thread */
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    pthread_t thread;
    int running, stop;
};

/* ---------------------------------------------------------------- policy */

void qtsp_crl_policy_defaults(qtsp_crl_policy *pol)
{
    memset(pol, 0, sizeof *pol);
    pol->next_update = 24 * 3600;
    pol->publish_interval = 3600;
    pol->debounce = 2;
    pol->http_max_age = 60;
    memcpy(pol->hold_oid, oid_hold_base, sizeof oid_hold_base);
    pol->hold_oid[sizeof oid_hold_base] = 2; /* callissuer */
    pol->hold_oid_len = sizeof oid_hold_base + 1;
    pol->delta = 1;
}

qtsp_status qtsp_crl_policy_load(const char *path, qtsp_crl_policy *out)
{
    static const char *const keys[] = {"next_update", "publish_interval", "debounce",
                                       "http_max_age", "hold_instruction", "delta", NULL};
    qtsp_crl_policy pol;
    qtsp_crl_policy_defaults(&pol);
    qtsp_ydoc *doc = NULL;
    qtsp_status rc;
    TRY_OUT(qtsp_ydoc_load_file(path, &doc));
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_duration(root, "next_update", 0, &pol.next_update));
    TRY_OUT(qtsp_yget_duration(root, "publish_interval", 0, &pol.publish_interval));
    TRY_OUT(qtsp_yget_duration(root, "debounce", 0, &pol.debounce));
    TRY_OUT(qtsp_yget_duration(root, "http_max_age", 0, &pol.http_max_age));
    TRY_OUT(qtsp_yget_bool(root, "delta", 0, &pol.delta));
    const qtsp_ynode *n;
    /* EN 319 411-1 CSS-6.3.9-05: nextUpdate at most 24 h after thisUpdate */
    if (pol.next_update < 1 || pol.next_update > 24 * 3600) {
        n = qtsp_ynode_get(root, "next_update");
        rc = qtsp_ynode_fail(n ? n : root, "next_update", "must be between 1s and 24h");
        goto out;
    }
    if (pol.publish_interval < 1 || pol.publish_interval >= pol.next_update) {
        n = qtsp_ynode_get(root, "publish_interval");
        rc = qtsp_ynode_fail(n ? n : root, "publish_interval",
                             "must be at least 1s and less than next_update");
        goto out;
    }
    if (pol.debounce < 0 || pol.debounce > 60) {
        n = qtsp_ynode_get(root, "debounce");
        rc = qtsp_ynode_fail(n ? n : root, "debounce", "must be between 0s and 60s");
        goto out;
    }
    if (pol.http_max_age < 0 || pol.http_max_age > 3600) {
        n = qtsp_ynode_get(root, "http_max_age");
        rc = qtsp_ynode_fail(n ? n : root, "http_max_age", "must be between 0s and 1h");
        goto out;
    }
    const char *hold = NULL;
    TRY_OUT(qtsp_yget_str(root, "hold_instruction", 0, &hold));
    if (hold) {
        unsigned char last;
        if (strcmp(hold, "none") == 0)
            last = 1;
        else if (strcmp(hold, "callissuer") == 0)
            last = 2;
        else if (strcmp(hold, "reject") == 0)
            last = 3;
        else {
            rc = qtsp_ynode_fail(qtsp_ynode_get(root, "hold_instruction"), "hold_instruction",
                                 "must be none, callissuer or reject");
            goto out;
        }
        pol.hold_oid[sizeof oid_hold_base] = last;
    }
    *out = pol;
    rc = QTSP_OK;
out:
    qtsp_ydoc_free(doc);
    return rc;
}

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
                                const unsigned char *hold_oid, size_t hold_len,
                                time_t invalidity)
{
    unsigned char exts[128], val[32];
    size_t el = 0, vl;
    if (reason > 0) {
        val[0] = QTSP_DER_ENUMERATED;
        val[1] = 1;
        val[2] = (unsigned char)reason;
        el += put_ext(exts + el, CE_REASON, 0, val, 3);
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

static qtsp_status ca_init(crl_ca *ca, X509 *cert, EVP_PKEY *key)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    ENSURE(pub, QTSP_ERR_CRYPTO, "CA certificate without a usable public key");
    static const unsigned char ecdsa[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                          0x48, 0xce, 0x3d, 0x04, 0x03};
    static const unsigned char rsa256[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                           0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
    int type = EVP_PKEY_get_base_id(pub), bits = EVP_PKEY_get_bits(pub);
    if (type == EVP_PKEY_EC) {
        /* RFC 5758 3.2: ecdsa-with-SHA256/384/512 by curve size */
        unsigned char last;
        if (bits <= 256) {
            ca->md = EVP_sha256();
            last = 2;
        } else if (bits <= 384) {
            ca->md = EVP_sha384();
            last = 3;
        } else {
            ca->md = EVP_sha512();
            last = 4;
        }
        memcpy(ca->alg, ecdsa, sizeof ecdsa);
        ca->alg[sizeof ecdsa] = last;
        ca->alg_len = sizeof ecdsa + 1;
    } else if (type == EVP_PKEY_RSA) {
        ca->md = EVP_sha256();
        memcpy(ca->alg, rsa256, sizeof rsa256);
        ca->alg_len = sizeof rsa256;
    } else {
        FAIL(QTSP_ERR_UNSUPPORTED, "CA key type %d not supported for CRL signing", type);
    }
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

    ENSURE(X509_up_ref(cert) == 1 && EVP_PKEY_up_ref(key) == 1, QTSP_ERR_CRYPTO,
           "cannot reference the CA");
    ca->cert = cert;
    ca->key = key;
    return QTSP_OK;
}

static void ca_cleanup(crl_ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    OPENSSL_free(ca->issuer);
    memset(ca, 0, sizeof *ca);
}

/* ---------------------------------------------------------------- building */

typedef enum { KIND_FULL, KIND_DELTA, KIND_ROOT } crl_kind;

typedef struct crl_build {
    crl_kind kind;
    const crl_ca *ca;
    const qtsp_crl_policy *pol;
    const char *delta_url;
    const root_serial *roots;
    size_t n_roots;
    uint64_t number, base_number;
    time_t now, next_update, base_time;
    /* pass 1 results */
    size_t count, entries_len;
    time_t next_lapse;
    /* pass 2 */
    int pass;
    unsigned char *wp, *wend;
    /* rebase: released entries changed before now, to forget afterwards
     * (len u8 | serial, repeated; at most CRL_PRUNE_MAX) */
    int collect;
    unsigned char *prune;
    size_t prune_n, prune_cap;
} crl_build;

#define PRUNE_REC (1 + QTSP_SERIAL_MAX)

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
        ENSURE(reason >= 0 && reason <= 10 && reason != 7 &&
                   reason != QTSP_REASON_REMOVE_FROM_CRL,
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
        size_t gn = qtsp_der_tlv_size(ul), fn = qtsp_der_tlv_size(gn),
               dpn = qtsp_der_tlv_size(fn), dp = qtsp_der_tlv_size(dpn);
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

static void blob_unref(void *arg)
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
static qtsp_status build_crl(qtsp_txn *txn, crl_build *b, pthread_mutex_t *lock,
                             crl_blob **out)
{
    qtsp_status rc;
    crl_blob *bl = NULL;
    EVP_MD_CTX *mctx = NULL;
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
    ERR_clear_error();
    mctx = EVP_MD_CTX_new();
    sig = malloc(ca->sig_max);
    ENSURE_OUT(mctx && sig, QTSP_ERR_NOMEM, "out of memory");
    size_t siglen = ca->sig_max;
    ENSURE_OUT(EVP_DigestSignInit(mctx, NULL, ca->md, NULL, ca->key) == 1, QTSP_ERR_CRYPTO,
               "cannot start signing the CRL");
    for (size_t off = 0; off < tbs_tlv; off += (size_t)1 << 20) {
        size_t chunk = tbs_tlv - off < ((size_t)1 << 20) ? tbs_tlv - off : (size_t)1 << 20;
        ENSURE_OUT(EVP_DigestSignUpdate(mctx, tbs + off, chunk) == 1, QTSP_ERR_CRYPTO,
                   "cannot hash the CRL");
    }
    ENSURE_OUT(EVP_DigestSignFinal(mctx, sig, &siglen) == 1 && siglen <= ca->sig_max,
               QTSP_ERR_CRYPTO, "cannot sign the CRL");
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
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* ---------------------------------------------------------------- files */

static qtsp_status write_atomic(const char *dir, const char *name, const unsigned char *p,
                                size_t n)
{
    char path[CRL_PATH_MAX + 64], tmp[CRL_PATH_MAX + 96];
    int l1 = snprintf(path, sizeof path, "%s/%s.crl", dir, name);
    int l2 = snprintf(tmp, sizeof tmp, "%s/.%s.crl.%ld.tmp", dir, name, (long)getpid());
    ENSURE(l1 > 0 && (size_t)l1 < sizeof path && l2 > 0 && (size_t)l2 < sizeof tmp,
           QTSP_ERR_TOO_BIG, "CRL path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            FAIL(QTSP_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot flush %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return QTSP_OK;
}

/* Reads back a CRL this publisher (or another process on the same store)
 * wrote: the whole file into a blob. */
static qtsp_status read_file(const char *dir, const char *name, pthread_mutex_t *lock,
                             crl_blob **out)
{
    char path[CRL_PATH_MAX + 64];
    int l = snprintf(path, sizeof path, "%s/%s.crl", dir, name);
    ENSURE(l > 0 && (size_t)l < sizeof path, QTSP_ERR_TOO_BIG, "CRL path too long");
    qtsp_status rc;
    crl_blob *bl = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    ENSURE_OUT(fstat(fd, &sb) == 0, QTSP_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    ENSURE_OUT(S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size < CRL_FILE_MAX,
               QTSP_ERR_INVALID, "%s is not a CRL file of a sane size", path);
    bl = calloc(1, sizeof *bl);
    ENSURE_OUT(bl, QTSP_ERR_NOMEM, "out of memory");
    bl->len = (size_t)sb.st_size;
    bl->mem = malloc(bl->len);
    ENSURE_OUT(bl->mem, QTSP_ERR_NOMEM, "out of memory for %s", path);
    for (size_t off = 0; off < bl->len;) {
        ssize_t k = read(fd, bl->mem + off, bl->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        ENSURE_OUT(k > 0, QTSP_ERR_IO, "cannot read %s: %s", path,
                   k < 0 ? strerror(errno) : "file shrank");
        off += (size_t)k;
    }
    bl->der = bl->mem;
    bl->refs = 1;
    bl->lock = lock;
    *out = bl;
    bl = NULL;
    rc = QTSP_OK;
out:
    close(fd);
    if (bl) {
        free(bl->mem);
        free(bl);
    }
    return rc;
}

/* Checks that der is a CRL of ca (issuer, signature algorithm, signature
 * over tbsCertList, RFC 5280 5.1) and reads cRLNumber, thisUpdate and
 * nextUpdate. Every TLV must end where its parent does (core/der.h). */
static qtsp_status parse_published(const crl_ca *ca, crl_blob *bl)
{
    qtsp_status rc;
    EVP_MD_CTX *mctx = NULL;
    qtsp_der_r in = {bl->der, bl->len}, crl, tbs, tbs_tlv, v, a;
    unsigned char tag = 0;
    TRY(qtsp_der_get(&in, QTSP_DER_SEQUENCE, &crl, NULL));
    TRY(qtsp_der_done(&in));
    TRY(qtsp_der_get(&crl, QTSP_DER_SEQUENCE, &tbs, &tbs_tlv));
    /* TBSCertList */
    TRY(qtsp_der_get(&tbs, QTSP_DER_INTEGER, &v, NULL));
    ENSURE(v.n == 1 && v.p[0] == 1, QTSP_ERR_INVALID, "CRL: not v2");
    TRY(qtsp_der_get(&tbs, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->alg_len && memcmp(a.p, ca->alg, ca->alg_len) == 0, QTSP_ERR_INVALID,
           "CRL: signature algorithm is not the CA's");
    TRY(qtsp_der_get(&tbs, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->issuer_len && memcmp(a.p, ca->issuer, ca->issuer_len) == 0,
           QTSP_ERR_INVALID, "CRL: issuer is not the CA");
    int64_t tu, nu = 0;
    TRY(qtsp_der_next(&tbs, &tag, &v, NULL));
    TRY(qtsp_der_read_time(tag, &v, &tu)); /* thisUpdate */
    uint64_t number = 0;
    int have_number = 0;
    while (tbs.n) {
        TRY(qtsp_der_next(&tbs, &tag, &v, NULL));
        if (tag == QTSP_DER_UTCTIME || tag == QTSP_DER_GENTIME) {
            TRY(qtsp_der_read_time(tag, &v, &nu));
        } else if (tag == QTSP_DER_CTX_C(0)) { /* crlExtensions */
            qtsp_der_r exts;
            TRY(qtsp_der_get(&v, QTSP_DER_SEQUENCE, &exts, NULL));
            TRY(qtsp_der_done(&v));
            while (exts.n) {
                qtsp_der_r e, oid, val;
                TRY(qtsp_der_get(&exts, QTSP_DER_SEQUENCE, &e, NULL));
                TRY(qtsp_der_get(&e, QTSP_DER_OID, &oid, NULL));
                if (qtsp_der_peek(&e) == QTSP_DER_BOOLEAN)
                    TRY(qtsp_der_get(&e, QTSP_DER_BOOLEAN, &val, NULL));
                TRY(qtsp_der_get(&e, QTSP_DER_OCTET_STRING, &val, NULL));
                TRY(qtsp_der_done(&e));
                if (oid.n == 3 && oid.p[0] == 0x55 && oid.p[1] == 0x1d &&
                    oid.p[2] == CE_CRL_NUMBER) {
                    qtsp_der_r m;
                    TRY(qtsp_der_get(&val, QTSP_DER_INTEGER, &m, NULL));
                    TRY(qtsp_der_done(&val));
                    TRY(qtsp_der_read_u64(&m, &number));
                    have_number = 1;
                }
            }
        } else {
            ENSURE(tag == QTSP_DER_SEQUENCE, QTSP_ERR_INVALID, "CRL: unexpected field");
        }
    }
    ENSURE(have_number && nu > tu, QTSP_ERR_INVALID, "CRL: no cRLNumber or nextUpdate");
    /* signatureAlgorithm, signatureValue */
    TRY(qtsp_der_get(&crl, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->alg_len && memcmp(a.p, ca->alg, ca->alg_len) == 0, QTSP_ERR_INVALID,
           "CRL: signature algorithm is not the CA's");
    qtsp_der_r sig;
    TRY(qtsp_der_get(&crl, QTSP_DER_BIT_STRING, &sig, NULL));
    ENSURE(crl.n == 0 && sig.n >= 2 && sig.p[0] == 0, QTSP_ERR_INVALID,
           "CRL: malformed signature");
    ERR_clear_error();
    mctx = EVP_MD_CTX_new();
    ENSURE_OUT(mctx, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(EVP_DigestVerifyInit(mctx, NULL, ca->md, NULL, X509_get0_pubkey(ca->cert)) == 1,
               QTSP_ERR_CRYPTO, "cannot start verifying the CRL");
    size_t tl = tbs_tlv.n;
    for (size_t off = 0; off < tl; off += (size_t)1 << 20) {
        size_t chunk = tl - off < ((size_t)1 << 20) ? tl - off : (size_t)1 << 20;
        ENSURE_OUT(EVP_DigestVerifyUpdate(mctx, tbs_tlv.p + off, chunk) == 1, QTSP_ERR_CRYPTO,
                   "cannot hash the CRL");
    }
    ENSURE_OUT(EVP_DigestVerifyFinal(mctx, sig.p + 1, sig.n - 1) == 1, QTSP_ERR_CRYPTO,
               "CRL signature does not verify with the CA key");
    bl->number = number;
    bl->this_update = (time_t)tu;
    bl->next_update = (time_t)nu;
    rc = QTSP_OK;
out:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* ---------------------------------------------------------------- store facts */

static qtsp_status read_facts(qtsp_txn *txn, crl_facts *f)
{
    memset(f, 0, sizeof *f);
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_CRL, "qualified", 9, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* nothing published yet */
        return QTSP_OK;
    TRY(rc);
    const unsigned char *p = v;
    ENSURE(vl == 49 && p[0] == CRL_REC_VERSION, QTSP_ERR_STORE_CORRUPT,
           "crl record of unknown format");
    f->present = 1;
    f->base_number = qtsp_be64_get(p + 1);
    f->base_time = (time_t)qtsp_be64_get(p + 9);
    f->last_number = qtsp_be64_get(p + 17);
    f->last_time = (time_t)qtsp_be64_get(p + 25);
    f->status_gen = qtsp_be64_get(p + 33);
    f->next_lapse = (time_t)qtsp_be64_get(p + 41);
    return QTSP_OK;
}

/* cRLNumber of the last root CRL (store table "crl", key "root"), 0 if none. */
static qtsp_status read_root_number(qtsp_txn *txn, uint64_t *number)
{
    *number = 0;
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_CRL, "root", 4, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* nothing published yet */
        return QTSP_OK;
    TRY(rc);
    const unsigned char *p = v;
    ENSURE(vl == 17 && p[0] == CRL_REC_VERSION, QTSP_ERR_STORE_CORRUPT,
           "crl root record of unknown format");
    *number = qtsp_be64_get(p + 1);
    return QTSP_OK;
}

static qtsp_status read_roots(qtsp_txn *txn, root_serial *out, size_t *n)
{
    *n = 0;
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_META, "issued_by_root", 14, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* no CA-side certificates recorded yet */
        return QTSP_OK;
    TRY(rc);
    const unsigned char *p = v;
    size_t off = 0, k = 0;
    while (off < vl) {
        size_t l = p[off++];
        ENSURE(l >= 1 && l <= QTSP_SERIAL_MAX && l <= vl - off, QTSP_ERR_STORE_CORRUPT,
               "meta issued_by_root malformed");
        ENSURE(k < CRL_ROOT_LIST_MAX, QTSP_ERR_TOO_BIG, "meta issued_by_root too long");
        TRY(qtsp_serial_normalize(p + off, l, out[k].s, &out[k].n));
        off += l;
        k++;
    }
    /* numeric order for the root CRL: length, then bytes */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0; j--) {
            root_serial *a = &out[j - 1], *b = &out[j];
            if (a->n < b->n || (a->n == b->n && memcmp(a->s, b->s, a->n) <= 0))
                break;
            root_serial t = *a;
            *a = *b;
            *b = t;
        }
    *n = k;
    return QTSP_OK;
}

typedef struct facts_write {
    unsigned char q[49], r[17];
} facts_write;

static qtsp_status write_facts_fn(qtsp_txn *txn, void *ctx)
{
    facts_write *fw = ctx;
    TRY(qtsp_txn_put(txn, QTSP_T_CRL, "qualified", 9, fw->q, sizeof fw->q, 0));
    TRY(qtsp_txn_put(txn, QTSP_T_CRL, "root", 4, fw->r, sizeof fw->r, 0));
    return QTSP_OK;
}

typedef struct numbers {
    int delta;
    uint64_t full, dlt, root;
} numbers;

static qtsp_status next_numbers_fn(qtsp_txn *txn, void *ctx)
{
    numbers *nb = ctx;
    /* RFC 5280 5.2.4: full and delta CRLs share one sequence */
    TRY(qtsp_txn_counter_next(txn, "crl_number", &nb->full));
    if (nb->delta)
        TRY(qtsp_txn_counter_next(txn, "crl_number", &nb->dlt));
    TRY(qtsp_txn_counter_next(txn, "crl_number_root", &nb->root));
    return QTSP_OK;
}

/* ---------------------------------------------------------------- publish */

static void swap_in(qtsp_crl_publisher *pub, int idx, crl_blob *bl)
{
    pthread_mutex_lock(&pub->lock);
    crl_blob *old = pub->cur[idx];
    pub->cur[idx] = bl;
    pthread_mutex_unlock(&pub->lock);
    blob_unref(old);
}

static int memory_incomplete(qtsp_crl_publisher *pub)
{
    pthread_mutex_lock(&pub->lock);
    int missing = !pub->cur[CRL_QUALIFIED] || !pub->cur[CRL_ROOT] ||
                  (pub->pol.delta && !pub->cur[CRL_DELTA]);
    pthread_mutex_unlock(&pub->lock);
    return missing;
}

static uint64_t served_number(qtsp_crl_publisher *pub, int idx)
{
    pthread_mutex_lock(&pub->lock);
    uint64_t n = pub->cur[idx] ? pub->cur[idx]->number : 0;
    pthread_mutex_unlock(&pub->lock);
    return n;
}

/* Another process on the same store (qtsp crl publish beside qtsp serve)
 * published CRLs newer than the ones in memory: serve its files, checked
 * against the CA key and the store facts, instead of the older ones.
 * Only CRLs already in memory are replaced (an empty slot means a fresh
 * publication is due anyway). Caller holds publish_lock and the file lock,
 * so the files and the facts belong to the same publication. */
static qtsp_status reload_newer(qtsp_crl_publisher *pub, const crl_facts *f, uint64_t root_number)
{
    uint64_t want[CRL__N] = {f->last_number, pub->pol.delta ? f->last_number + 1 : 0,
                             root_number};
    crl_blob *got[CRL__N] = {NULL, NULL, NULL};
    qtsp_status rc = QTSP_OK;
    int any = 0;
    for (int i = 0; i < CRL__N; i++) {
        uint64_t have = served_number(pub, i);
        if (!f->present || !want[i] || !have || want[i] <= have)
            continue;
        TRY_OUT(read_file(pub->dir, crl_names[i], &pub->lock, &got[i]));
        TRY_OUT(parse_published(&pub->ca[i == CRL_ROOT ? 1 : 0], got[i]));
        ENSURE_OUT(got[i]->number == want[i], QTSP_ERR_STATE,
                   "%s/%s.crl has cRLNumber %llu, the store says %llu", pub->dir, crl_names[i],
                   (unsigned long long)got[i]->number, (unsigned long long)want[i]);
        any = 1;
    }
    for (int i = 0; i < CRL__N; i++)
        if (got[i]) {
            swap_in(pub, i, got[i]);
            got[i] = NULL;
        }
    if (any)
        LOG_INFO("crl: serving qualified #%llu and root #%llu published by another process",
                 (unsigned long long)served_number(pub, CRL_QUALIFIED),
                 (unsigned long long)served_number(pub, CRL_ROOT));
out:
    for (int i = 0; i < CRL__N; i++)
        blob_unref(got[i]);
    return rc;
}

typedef struct forget_ctx {
    const unsigned char *recs;
    size_t from, to, deleted;
    time_t before;
} forget_ctx;

static qtsp_status forget_fn(qtsp_txn *txn, void *ctx)
{
    forget_ctx *c = ctx;
    c->deleted = 0; /* qtsp_store_write may run us again */
    for (size_t i = c->from; i < c->to; i++) {
        const unsigned char *e = c->recs + i * PRUNE_REC;
        int d = 0;
        TRY(qtsp_certdb_revoked_forget(txn, e + 1, e[0], c->before, &d));
        c->deleted += (size_t)d;
    }
    return QTSP_OK;
}

/* After a rebase is published (files and facts): entries released before
 * the new base's thisUpdate are needed by no delta any more (deltas against
 * older bases are superseded), so they leave the revoked index, in batches
 * so no write transaction holds the writer lock for long. Failures are
 * logged only: the entries go at the next rebase. */
static void forget_released(qtsp_crl_publisher *pub, const unsigned char *recs, size_t n,
                            time_t base_time)
{
    size_t total = 0;
    for (size_t from = 0; from < n; from += CRL_PRUNE_BATCH) {
        forget_ctx c = {.recs = recs, .from = from, .before = base_time};
        c.to = n - from < CRL_PRUNE_BATCH ? n : from + CRL_PRUNE_BATCH;
        if (qtsp_store_write(pub->store, forget_fn, &c) != QTSP_OK) {
            LOG_WARN("crl: cannot drop released entries from the revoked index: %s",
                     qtsp_err_message());
            qtsp_err_clear();
            break;
        }
        total += c.deleted;
    }
    if (total)
        LOG_INFO("crl: dropped %zu released entries older than the new base", total);
}

static qtsp_status publish_locked(qtsp_crl_publisher *pub, int force)
{
    qtsp_status rc;
    qtsp_txn *txn = NULL;
    crl_build b;
    memset(&b, 0, sizeof b);
    crl_blob *made[CRL__N] = {NULL, NULL, NULL};
    root_serial roots[CRL_ROOT_LIST_MAX];
    size_t n_roots = 0;
    crl_facts f;
    uint64_t gen = 0;
    time_t now = qtsp_now();

    uint64_t root_number = 0;
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(read_facts(txn, &f));
    TRY_OUT(read_root_number(txn, &root_number));
    TRY_OUT(qtsp_txn_counter_get(txn, "status_gen", &gen));
    qtsp_txn_abort(txn);
    txn = NULL;
    if (reload_newer(pub, &f, root_number) != QTSP_OK) {
        /* keep serving what we have; a publication below or at the next
         * rebase replaces it */
        LOG_WARN("crl: cannot load the CRLs another process published: %s",
                 qtsp_err_message());
        qtsp_err_clear();
    }

    int rebase = force || !f.present || now >= f.base_time + pub->pol.publish_interval ||
                 now < f.base_time /* clock went back */;
    int refresh = rebase || f.status_gen != gen || (f.next_lapse && now >= f.next_lapse) ||
                  memory_incomplete(pub);
    if (!refresh) {
        rc = QTSP_OK;
        goto out;
    }

    numbers nb = {.delta = pub->pol.delta};
    TRY_OUT(qtsp_store_write(pub->store, next_numbers_fn, &nb));

    /* one read transaction: the three CRLs show the same state */
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(qtsp_txn_counter_get(txn, "status_gen", &gen));
    TRY_OUT(read_roots(txn, roots, &n_roots));
    b.kind = KIND_FULL;
    b.ca = &pub->ca[0];
    b.pol = &pub->pol;
    b.delta_url = pub->delta_url;
    b.roots = roots;
    b.n_roots = n_roots;
    b.number = nb.full;
    b.now = now;
    b.next_update = now + pub->pol.next_update;
    b.collect = rebase;
    TRY_OUT(build_crl(txn, &b, &pub->lock, &made[CRL_QUALIFIED]));
    b.collect = 0;
    time_t next_lapse = b.next_lapse;
    uint64_t base_number = rebase ? nb.full : f.base_number;
    time_t base_time = rebase ? now : f.base_time;
    if (pub->pol.delta) {
        b.kind = KIND_DELTA;
        b.number = nb.dlt;
        b.base_number = base_number;
        b.base_time = base_time;
        TRY_OUT(build_crl(txn, &b, &pub->lock, &made[CRL_DELTA]));
    }
    b.kind = KIND_ROOT;
    b.ca = &pub->ca[1];
    b.number = nb.root;
    TRY_OUT(build_crl(txn, &b, &pub->lock, &made[CRL_ROOT]));
    qtsp_txn_abort(txn);
    txn = NULL;

    /* the delta's base goes out first, so a fetcher never sees a delta whose
     * base is not published yet */
    for (int i = 0; i < CRL__N; i++)
        if (made[i])
            TRY_OUT(write_atomic(pub->dir, crl_names[i], made[i]->der, made[i]->len));

    facts_write fw;
    fw.q[0] = CRL_REC_VERSION;
    qtsp_be64_put(fw.q + 1, base_number);
    qtsp_be64_put(fw.q + 9, (uint64_t)base_time);
    qtsp_be64_put(fw.q + 17, nb.full);
    qtsp_be64_put(fw.q + 25, (uint64_t)now);
    qtsp_be64_put(fw.q + 33, gen);
    qtsp_be64_put(fw.q + 41, (uint64_t)next_lapse);
    fw.r[0] = CRL_REC_VERSION;
    qtsp_be64_put(fw.r + 1, nb.root);
    qtsp_be64_put(fw.r + 9, (uint64_t)now);
    TRY_OUT(qtsp_store_write(pub->store, write_facts_fn, &fw));

    for (int i = 0; i < CRL__N; i++)
        if (made[i]) {
            swap_in(pub, i, made[i]);
            made[i] = NULL;
        }
    if (rebase && b.prune_n)
        forget_released(pub, b.prune, b.prune_n, base_time);
    LOG_INFO("crl: published qualified #%llu (%zu bytes), delta #%llu on base #%llu, root #%llu",
             (unsigned long long)nb.full, pub->cur[CRL_QUALIFIED]->len,
             (unsigned long long)nb.dlt, (unsigned long long)base_number,
             (unsigned long long)nb.root);
    rc = QTSP_OK;
out:
    qtsp_txn_abort(txn);
    for (int i = 0; i < CRL__N; i++)
        blob_unref(made[i]);
    free(b.prune);
    return rc;
}

/* Only picks up what another process published (see reload_newer). */
static qtsp_status reload_locked(qtsp_crl_publisher *pub)
{
    crl_facts f;
    uint64_t root_number = 0;
    qtsp_txn *txn = NULL;
    qtsp_status rc;
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(read_facts(txn, &f));
    TRY_OUT(read_root_number(txn, &root_number));
    qtsp_txn_abort(txn);
    txn = NULL;
    rc = reload_newer(pub, &f, root_number);
out:
    qtsp_txn_abort(txn);
    return rc;
}

/* force: 0 publish what is due, 1 everything with a new base, -1 only
 * reload what another process published. */
static qtsp_status publish_or_reload(qtsp_crl_publisher *pub, int force)
{
    pthread_mutex_lock(&pub->publish_lock);
    /* one publication at a time across processes too: numbers, files and
     * facts of two publishers must not interleave */
    int e = 0;
    while (flock(pub->lock_fd, LOCK_EX) != 0)
        if ((e = errno) != EINTR)
            break;
    qtsp_status rc;
    if (e && e != EINTR)
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot lock %s/.publish.lock: %s",
                          pub->dir, strerror(e));
    else {
        rc = force < 0 ? reload_locked(pub) : publish_locked(pub, force);
        (void)flock(pub->lock_fd, LOCK_UN);
    }
    pthread_mutex_unlock(&pub->publish_lock);
    return rc;
}

qtsp_status qtsp_crl_publish(qtsp_crl_publisher *pub, int force)
{
    ENSURE(pub, QTSP_ERR_INVALID, "no CRL publisher");
    return publish_or_reload(pub, force ? 1 : 0);
}

/* ---------------------------------------------------------------- lifecycle */

qtsp_status qtsp_crl_publisher_new(const char *policy_path, const char *public_dir,
                                   X509 *issuing_ca, EVP_PKEY *issuing_key, X509 *root_ca,
                                   EVP_PKEY *root_key, const char *base_url, qtsp_store *store,
                                   qtsp_crl_publisher **out)
{
    ENSURE(public_dir && issuing_ca && issuing_key && root_ca && root_key && base_url && store,
           QTSP_ERR_INVALID, "CRL publisher: missing argument");
    qtsp_status rc;
    qtsp_crl_publisher *pub = calloc(1, sizeof *pub);
    ENSURE(pub, QTSP_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&pub->publish_lock, NULL);
    pthread_mutex_init(&pub->lock, NULL);
    pthread_mutex_init(&pub->tlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pub->tcond, &ca);
    pthread_condattr_destroy(&ca);
    pub->store = store;
    pub->lock_fd = -1;

    qtsp_crl_policy_defaults(&pub->pol);
    if (policy_path)
        TRY_OUT(qtsp_crl_policy_load(policy_path, &pub->pol));
    size_t bl = strlen(base_url);
    while (bl > 0 && base_url[bl - 1] == '/')
        bl--;
    int n = snprintf(pub->delta_url, sizeof pub->delta_url, "%.*s/crl/qualified-delta.crl",
                     (int)bl, base_url);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof pub->delta_url, QTSP_ERR_TOO_BIG, "base URL too long");
    n = snprintf(pub->dir, sizeof pub->dir, "%s/crl", public_dir);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof pub->dir, QTSP_ERR_TOO_BIG, "public dir too long");
    if (mkdir(pub->dir, 0755) != 0 && errno != EEXIST)
        FAIL_OUT(QTSP_ERR_IO, "cannot create %s: %s", pub->dir, strerror(errno));
    char lp[CRL_PATH_MAX + 32];
    n = snprintf(lp, sizeof lp, "%s/.publish.lock", pub->dir);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof lp, QTSP_ERR_TOO_BIG, "public dir too long");
    pub->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ENSURE_OUT(pub->lock_fd >= 0, QTSP_ERR_IO, "cannot open %s: %s", lp, strerror(errno));
    TRY_OUT(ca_init(&pub->ca[0], issuing_ca, issuing_key));
    TRY_OUT(ca_init(&pub->ca[1], root_ca, root_key));
    *out = pub;
    pub = NULL;
    rc = QTSP_OK;
out:
    qtsp_crl_publisher_free(pub);
    return rc;
}

static int64_t mono_ms(void)
{
    return (int64_t)(qtsp_mono_ns() / 1000000u);
}

static void *publisher_thread(void *arg)
{
    qtsp_crl_publisher *pub = arg;
    uint64_t seen = 0;
    int have_seen = 0, pending = 0;
    int64_t first_ms = 0, last_ms = 0;
    for (;;) {
        pthread_mutex_lock(&pub->tlock);
        if (!pub->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&pub->tcond, &pub->tlock, &ts);
        }
        int stop = pub->stop;
        pthread_mutex_unlock(&pub->tlock);
        if (stop)
            break;

        qtsp_err_clear();
        uint64_t gen = 0, published = 0;
        int newer = 0;
        qtsp_txn *txn = NULL;
        crl_facts f;
        if (qtsp_store_begin(pub->store, 0, &txn) == QTSP_OK &&
            qtsp_txn_counter_get(txn, "status_gen", &gen) == QTSP_OK &&
            read_facts(txn, &f) == QTSP_OK) {
            /* another process (qtsp crl publish) published newer CRLs */
            published = served_number(pub, CRL_QUALIFIED);
            newer = f.present && published && f.last_number > published;
            int64_t t = mono_ms();
            if (have_seen && gen != seen) {
                if (!pending)
                    first_ms = t;
                pending = 1;
                last_ms = t;
            }
            seen = gen;
            have_seen = 1;
        }
        qtsp_txn_abort(txn);

        /* debounce: a burst of changes goes out as one publication, but
         * never later than 4 x debounce after its first change */
        int64_t t = mono_ms(), d = pub->pol.debounce * 1000;
        int settle = pending && (t - last_ms >= d || t - first_ms >= 4 * d);
        if (pending && !settle) {
            if (newer && publish_or_reload(pub, -1) != QTSP_OK)
                LOG_ERROR("crl: reload failed: %s", qtsp_err_message());
            continue;
        }
        pending = 0;
        if (qtsp_crl_publish(pub, 0) != QTSP_OK)
            LOG_ERROR("crl: publication failed: %s", qtsp_err_message());
    }
    return NULL;
}

qtsp_status qtsp_crl_start(qtsp_crl_publisher *pub)
{
    ENSURE(pub, QTSP_ERR_INVALID, "no CRL publisher");
    ENSURE(!pub->running, QTSP_ERR_STATE, "CRL publisher already running");
    pub->stop = 0;
    int e = pthread_create(&pub->thread, NULL, publisher_thread, pub);
    ENSURE(e == 0, QTSP_ERR_INTERNAL, "cannot start the CRL thread: %s", strerror(e));
    pub->running = 1;
    return QTSP_OK;
}

void qtsp_crl_publisher_free(qtsp_crl_publisher *pub)
{
    if (!pub)
        return;
    if (pub->running) {
        pthread_mutex_lock(&pub->tlock);
        pub->stop = 1;
        pthread_cond_signal(&pub->tcond);
        pthread_mutex_unlock(&pub->tlock);
        pthread_join(pub->thread, NULL);
        pub->running = 0;
    }
    for (int i = 0; i < CRL__N; i++)
        blob_unref(pub->cur[i]);
    ca_cleanup(&pub->ca[0]);
    ca_cleanup(&pub->ca[1]);
    if (pub->lock_fd >= 0)
        close(pub->lock_fd);
    pthread_cond_destroy(&pub->tcond);
    pthread_mutex_destroy(&pub->tlock);
    pthread_mutex_destroy(&pub->publish_lock);
    /* blobs still referenced by responses in flight use pub->lock: the HTTP
     * server must be stopped before the publisher is freed (crl.h) */
    pthread_mutex_destroy(&pub->lock);
    free(pub);
}

/* ---------------------------------------------------------------- serving */

static int name_index(const char *name, size_t n)
{
    for (int i = 0; i < CRL__N; i++)
        if (strlen(crl_names[i]) == n && memcmp(crl_names[i], name, n) == 0)
            return i;
    return -1;
}

static crl_blob *get_ref(qtsp_crl_publisher *pub, int idx)
{
    pthread_mutex_lock(&pub->lock);
    crl_blob *bl = pub->cur[idx];
    if (bl)
        bl->refs++;
    pthread_mutex_unlock(&pub->lock);
    return bl;
}

qtsp_status qtsp_crl_current(qtsp_crl_publisher *pub, const char *name, uint64_t *number,
                             time_t *this_update)
{
    int idx = name_index(name, strlen(name));
    ENSURE(idx >= 0, QTSP_ERR_NOT_FOUND, "no CRL named %s", name);
    crl_blob *bl = get_ref(pub, idx);
    ENSURE(bl, QTSP_ERR_NOT_FOUND, "CRL %s not published yet", name);
    if (number)
        *number = bl->number;
    if (this_update)
        *this_update = bl->this_update;
    blob_unref(bl);
    return QTSP_OK;
}

qtsp_status qtsp_crl_http_get(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_crl_publisher *pub = ctx;
    static const char prefix[] = "/crl/";
    const char *path = req->path ? req->path : "";
    ENSURE(strncmp(path, prefix, sizeof prefix - 1) == 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    const char *name = path + sizeof prefix - 1;
    size_t nl = strlen(name);
    ENSURE(nl > 4 && strcmp(name + nl - 4, ".crl") == 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    int idx = name_index(name, nl - 4);
    ENSURE(idx >= 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    crl_blob *bl = get_ref(pub, idx);
    ENSURE(bl, QTSP_ERR_NOT_FOUND, "CRL not published yet");

    qtsp_status rc;
    char etag[64], lm[40], ex[40], cc[64];
    snprintf(etag, sizeof etag, "\"%s-%llx\"", crl_names[idx], (unsigned long long)bl->number);
    qtsp_format_http_date(bl->this_update, lm, sizeof lm);
    qtsp_format_http_date(bl->next_update, ex, sizeof ex);
    int64_t age = (int64_t)(bl->next_update - qtsp_now());
    if (age > pub->pol.http_max_age)
        age = pub->pol.http_max_age;
    if (age < 0)
        age = 0;
    snprintf(cc, sizeof cc, "public, max-age=%lld, no-transform", (long long)age);
    TRY_OUT(qtsp_http_resp_header(resp, "ETag", etag));
    TRY_OUT(qtsp_http_resp_header(resp, "Last-Modified", lm));
    TRY_OUT(qtsp_http_resp_header(resp, "Expires", ex));
    TRY_OUT(qtsp_http_resp_header(resp, "Cache-Control", cc));
    const char *inm = qtsp_http_header(req, "If-None-Match");
    snprintf(resp->content_type, sizeof resp->content_type, "application/pkix-crl");
    if (inm && qtsp_http_etag_matches(inm, etag)) {
        resp->status = 304;
        rc = QTSP_OK;
        goto out;
    }
    resp->status = 200;
    resp->ext_body = bl->der;
    resp->ext_len = bl->len;
    resp->free_fn = blob_unref;
    resp->free_ctx = bl;
    return QTSP_OK;
out:
    blob_unref(bl);
    return rc;
}
