/* Certificate and status records and their indexes.
 *
 * Record formats (all integers big-endian, version byte first):
 *   certs[serial]   v1: 01 | issuer_len u8 | issuer | subject_len u8 | subject_id |
 *                       label_len u8 | key_label | profile_len u8 | profile |
 *                       der_len u32 | der
 *   status[serial]  v1: 01 | state u8 | reason u8 | released u8 | not_before i64 |
 *                       not_after i64 | revoked_at i64 | hold_until i64 |
 *                       invalidity_date i64 | changed_at i64           (52 bytes)
 *   revoked[serial] the status record as above
 *   holds[hold_until u64 | serial]          -> ""
 *   subject_certs[subject_id | 00 | serial] -> issue sequence u64 (counter "cert_seq")
 *   ocsp_cache[len u8 | serial | hash alg u8] -> owned by ocsp/ */
#include "ca/certdb.h"

#include <ctype.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/time.h"

#define CERT_VERSION 1
#define STATUS_VERSION 1
#define STATUS_LEN 52
#define CERT_DER_MAX (256 * 1024)
#define SUBJECT_SERIALS_MAX 10000
#define DUE_HOLDS_MAX 10000

/* ---- reasons ----------------------------------------------------------- */

/* RFC 5280 5.3.1 */
static const char *const reason_names[] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", NULL /* 7 unused */,
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
};
#define REASON_COUNT (int)(sizeof reason_names / sizeof reason_names[0])

qtsp_status qtsp_reason_parse(const char *name, int *out)
{
    ENSURE(name, QTSP_ERR_INVALID, "no revocation reason given");
    for (int i = 0; i < REASON_COUNT; i++) {
        if (reason_names[i] && strcmp(name, reason_names[i]) == 0) {
            *out = i;
            return QTSP_OK;
        }
    }
    FAIL(QTSP_ERR_INVALID, "unknown revocation reason");
}

const char *qtsp_reason_name(int reason)
{
    if (reason < 0 || reason >= REASON_COUNT || !reason_names[reason])
        return "unknown";
    return reason_names[reason];
}

/* ---- encodings --------------------------------------------------------- */

static void put_i64(unsigned char *p, int64_t v)
{
    qtsp_be64_put(p, (uint64_t)v);
}
static int64_t get_i64(const unsigned char *p)
{
    return (int64_t)qtsp_be64_get(p);
}

static void status_encode(const qtsp_cert_status *s, unsigned char out[STATUS_LEN])
{
    out[0] = STATUS_VERSION;
    out[1] = s->state;
    out[2] = s->reason;
    out[3] = s->released;
    put_i64(out + 4, s->not_before);
    put_i64(out + 12, s->not_after);
    put_i64(out + 20, s->revoked_at);
    put_i64(out + 28, s->hold_until);
    put_i64(out + 36, s->invalidity_date);
    put_i64(out + 44, s->changed_at);
}

static qtsp_status status_decode(const unsigned char *p, size_t len, qtsp_cert_status *out)
{
    ENSURE(len == STATUS_LEN, QTSP_ERR_STORE_CORRUPT, "status record has %zu bytes, not %d", len,
           STATUS_LEN);
    ENSURE(p[0] == STATUS_VERSION, QTSP_ERR_STORE_CORRUPT, "status record of unknown version %u",
           p[0]);
    ENSURE(p[1] <= QTSP_CERT_REVOKED && p[3] <= 1, QTSP_ERR_STORE_CORRUPT,
           "status record with unknown state");
    qtsp_cert_status s = {0};
    s.state = p[1];
    s.reason = p[2];
    s.released = p[3];
    s.not_before = get_i64(p + 4);
    s.not_after = get_i64(p + 12);
    s.revoked_at = get_i64(p + 20);
    s.hold_until = get_i64(p + 28);
    s.invalidity_date = get_i64(p + 36);
    s.changed_at = get_i64(p + 44);
    *out = s;
    return QTSP_OK;
}

/* A NUL-terminated field of at most cap-1 bytes without control bytes. */
static qtsp_status field_ok(const char *f, size_t cap, int may_be_empty, const char *what,
                            size_t *len)
{
    size_t n = strnlen(f, cap);
    ENSURE(n < cap, QTSP_ERR_INVALID, "certificate %s is too long", what);
    ENSURE(n > 0 || may_be_empty, QTSP_ERR_INVALID, "certificate %s is empty", what);
    for (size_t i = 0; i < n; i++)
        ENSURE((unsigned char)f[i] >= 0x20 && f[i] != 0x7f, QTSP_ERR_INVALID,
               "certificate %s has control characters", what);
    *len = n;
    return QTSP_OK;
}

static qtsp_status get_field(const unsigned char **p, size_t *left, char *dst, size_t cap)
{
    ENSURE(*left >= 1, QTSP_ERR_STORE_CORRUPT, "certificate record truncated");
    size_t n = **p;
    ENSURE(n < cap && *left >= 1 + n, QTSP_ERR_STORE_CORRUPT, "certificate record field overflows");
    memcpy(dst, *p + 1, n);
    dst[n] = '\0';
    ENSURE(strlen(dst) == n, QTSP_ERR_STORE_CORRUPT, "certificate record field has a NUL");
    *p += 1 + n;
    *left -= 1 + n;
    return QTSP_OK;
}

static qtsp_status cert_decode(const unsigned char *p, size_t len, qtsp_cert_record *out)
{
    qtsp_cert_record r = {0};
    ENSURE(len >= 1 && p[0] == CERT_VERSION, QTSP_ERR_STORE_CORRUPT,
           "certificate record of unknown version");
    p++;
    len--;
    TRY(get_field(&p, &len, r.issuer, sizeof r.issuer));
    TRY(get_field(&p, &len, r.subject_id, sizeof r.subject_id));
    TRY(get_field(&p, &len, r.key_label, sizeof r.key_label));
    TRY(get_field(&p, &len, r.profile, sizeof r.profile));
    ENSURE(len >= 4, QTSP_ERR_STORE_CORRUPT, "certificate record truncated");
    size_t dl = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    ENSURE(len == 4 + dl && dl > 0, QTSP_ERR_STORE_CORRUPT, "certificate record length mismatch");
    unsigned char *der = malloc(dl);
    ENSURE(der, QTSP_ERR_NOMEM, "out of memory");
    memcpy(der, p + 4, dl);
    r.der = der;
    r.der_len = dl;
    *out = r;
    return QTSP_OK;
}

/* ---- helpers ------------------------------------------------------------ */

static qtsp_status del_if_present(qtsp_txn *txn, qtsp_table t, const void *k, size_t kl)
{
    qtsp_status rc = qtsp_txn_del(txn, t, k, kl);
    return rc == QTSP_ERR_NOT_FOUND ? QTSP_OK : rc;
}

static void hold_key(int64_t until, const unsigned char *s, size_t sl, unsigned char *k, size_t *kl)
{
    qtsp_be64_put(k, (uint64_t)until);
    memcpy(k + 8, s, sl);
    *kl = 8 + sl;
}

/* ---- put / get --------------------------------------------------------- */

qtsp_status qtsp_certdb_put(qtsp_txn *txn, const qtsp_cert_record *rec)
{
    qtsp_status rc = QTSP_OK;
    X509 *x = NULL;
    BIGNUM *bn = NULL;
    unsigned char *val = NULL;
    ENSURE(txn && rec, QTSP_ERR_INVALID, "no certificate record");
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t sl;
    TRY(qtsp_serial_normalize(rec->serial, rec->serial_len, serial, &sl));
    size_t il, sjl, kll, pl;
    TRY(field_ok(rec->issuer, sizeof rec->issuer, 0, "issuer", &il));
    TRY(field_ok(rec->subject_id, sizeof rec->subject_id, 1, "subject id", &sjl));
    TRY(field_ok(rec->key_label, sizeof rec->key_label, 1, "key label", &kll));
    TRY(field_ok(rec->profile, sizeof rec->profile, 1, "profile", &pl));
    ENSURE(rec->der && rec->der_len > 0 && rec->der_len <= CERT_DER_MAX, QTSP_ERR_INVALID,
           "certificate DER missing or too big");

    const unsigned char *p = rec->der;
    x = d2i_X509(NULL, &p, (long)rec->der_len);
    ENSURE_OUT(x, QTSP_ERR_INVALID, "certificate DER does not parse");
    ENSURE_OUT(p == rec->der + rec->der_len, QTSP_ERR_INVALID,
               "certificate DER has trailing bytes");
    /* the key must be the certificate's own serial (RFC 5280 4.1.2.2) */
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    ENSURE_OUT(bn && !BN_is_negative(bn), QTSP_ERR_INVALID, "certificate serial is not positive");
    unsigned char cs[QTSP_SERIAL_MAX];
    int csl = BN_num_bytes(bn);
    ENSURE_OUT(csl >= 1 && csl <= QTSP_SERIAL_MAX && BN_bn2bin(bn, cs) == csl &&
                   (size_t)csl == sl && memcmp(cs, serial, sl) == 0,
               QTSP_ERR_INVALID, "record serial differs from the certificate's serial");

    qtsp_cert_status s = {.state = QTSP_CERT_VALID, .changed_at = (int64_t)qtsp_now()};
    TRY_OUT(qtsp_asn1_time_to_epoch(X509_get0_notBefore(x), &s.not_before));
    TRY_OUT(qtsp_asn1_time_to_epoch(X509_get0_notAfter(x), &s.not_after));

    size_t vlen = 1 + 1 + il + 1 + sjl + 1 + kll + 1 + pl + 4 + rec->der_len;
    val = malloc(vlen);
    ENSURE_OUT(val, QTSP_ERR_NOMEM, "out of memory");
    unsigned char *w = val;
    *w++ = CERT_VERSION;
    const char *fields[] = {rec->issuer, rec->subject_id, rec->key_label, rec->profile};
    size_t lens[] = {il, sjl, kll, pl};
    for (int i = 0; i < 4; i++) {
        *w++ = (unsigned char)lens[i];
        memcpy(w, fields[i], lens[i]);
        w += lens[i];
    }
    *w++ = (unsigned char)(rec->der_len >> 24);
    *w++ = (unsigned char)(rec->der_len >> 16);
    *w++ = (unsigned char)(rec->der_len >> 8);
    *w++ = (unsigned char)rec->der_len;
    memcpy(w, rec->der, rec->der_len);

    const void *ev;
    size_t evl;
    rc = qtsp_txn_get0(txn, QTSP_T_CERTS, serial, sl, &ev, &evl);
    if (rc == QTSP_OK) {
        char hex[2 * QTSP_SERIAL_MAX + 1];
        qtsp_serial_to_hex(serial, sl, hex);
        FAIL_OUT(QTSP_ERR_EXISTS, "serial %s was already used", hex);
    }
    ENSURE_OUT(rc == QTSP_ERR_NOT_FOUND, rc, "cannot look up the serial");
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_CERTS, serial, sl, val, vlen, QTSP_PUT_NOOVERWRITE));
    unsigned char sv[STATUS_LEN];
    status_encode(&s, sv);
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_STATUS, serial, sl, sv, sizeof sv, QTSP_PUT_NOOVERWRITE));
    if (sjl > 0) {
        unsigned char key[40 + 1 + QTSP_SERIAL_MAX];
        memcpy(key, rec->subject_id, sjl);
        key[sjl] = 0;
        memcpy(key + sjl + 1, serial, sl);
        uint64_t seq;
        TRY_OUT(qtsp_txn_counter_next(txn, "cert_seq", &seq));
        unsigned char be[8];
        qtsp_be64_put(be, seq);
        TRY_OUT(qtsp_txn_put(txn, QTSP_T_SUBJECT_CERTS, key, sjl + 1 + sl, be, sizeof be,
                             QTSP_PUT_NOOVERWRITE));
    }
out:
    free(val);
    BN_free(bn);
    X509_free(x);
    return rc;
}

/* The stored record of serial (borrowed, as qtsp_txn_get0), with the
 * normalised serial in s[*sl]. */
static qtsp_status cert_get0(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                             unsigned char s[QTSP_SERIAL_MAX], size_t *sl, const void **v,
                             size_t *vl)
{
    TRY(qtsp_serial_normalize(serial, slen, s, sl));
    return qtsp_txn_get0(txn, QTSP_T_CERTS, s, *sl, v, vl);
}

qtsp_status qtsp_certdb_get(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                            qtsp_cert_record *out)
{
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl, vl;
    const void *v;
    TRY(cert_get0(txn, serial, slen, s, &sl, &v, &vl));
    qtsp_cert_record r;
    TRY(cert_decode(v, vl, &r));
    memcpy(r.serial, s, sl);
    r.serial_len = sl;
    *out = r;
    return QTSP_OK;
}

void qtsp_cert_record_cleanup(qtsp_cert_record *rec)
{
    if (!rec)
        return;
    free((void *)rec->der);
    rec->der = NULL;
    rec->der_len = 0;
}

qtsp_status qtsp_certdb_get_issuer(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   char out[QTSP_CERT_ISSUER_MAX])
{
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl, vl;
    const void *v;
    TRY(cert_get0(txn, serial, slen, s, &sl, &v, &vl));
    const unsigned char *p = v;
    ENSURE(vl >= 1 && p[0] == CERT_VERSION, QTSP_ERR_STORE_CORRUPT,
           "certificate record of unknown version");
    p++;
    vl--;
    return get_field(&p, &vl, out, QTSP_CERT_ISSUER_MAX); /* the first field */
}

qtsp_status qtsp_certdb_get_status(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   qtsp_cert_status *out)
{
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl;
    TRY(qtsp_serial_normalize(serial, slen, s, &sl));
    const void *v;
    size_t vl;
    TRY(qtsp_txn_get0(txn, QTSP_T_STATUS, s, sl, &v, &vl));
    return status_decode(v, vl, out);
}

/* ---- status changes ----------------------------------------------------- */

qtsp_status qtsp_certdb_set_status(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   const qtsp_cert_status *st)
{
    ENSURE(txn && st, QTSP_ERR_INVALID, "no status");
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl;
    TRY(qtsp_serial_normalize(serial, slen, s, &sl));
    qtsp_cert_status old;
    TRY(qtsp_certdb_get_status(txn, s, sl, &old));

    ENSURE(st->state <= QTSP_CERT_REVOKED, QTSP_ERR_INVALID, "unknown certificate state %u",
           st->state);
    ENSURE(old.state != QTSP_CERT_REVOKED || st->state == QTSP_CERT_REVOKED, QTSP_ERR_STATE,
           "certificate is revoked; revocation is final");
    qtsp_cert_status n = *st;
    /* validity comes from the certificate, never from the caller */
    n.not_before = old.not_before;
    n.not_after = old.not_after;
    if (n.changed_at == 0)
        n.changed_at = (int64_t)qtsp_now();
    switch (n.state) {
    case QTSP_CERT_ON_HOLD:
        ENSURE(n.hold_until > 0, QTSP_ERR_INVALID, "a hold needs a lapse time");
        n.reason = QTSP_REASON_CERTIFICATE_HOLD; /* RFC 5280 5.3.1 */
        n.released = 0;
        break;
    case QTSP_CERT_REVOKED:
        ENSURE(n.reason < REASON_COUNT && reason_names[n.reason] &&
                   n.reason != QTSP_REASON_CERTIFICATE_HOLD &&
                   n.reason != QTSP_REASON_REMOVE_FROM_CRL,
               QTSP_ERR_INVALID, "reason %u is not a revocation reason", n.reason);
        n.released = 0;
        break;
    default: /* valid */
        if (old.state == QTSP_CERT_ON_HOLD)
            n.released = 1;
        break;
    }

    unsigned char k[8 + QTSP_SERIAL_MAX];
    size_t kl;
    if (old.state == QTSP_CERT_ON_HOLD) {
        hold_key(old.hold_until, s, sl, k, &kl);
        TRY(del_if_present(txn, QTSP_T_HOLDS, k, kl));
    }
    if (n.state == QTSP_CERT_ON_HOLD) {
        hold_key(n.hold_until, s, sl, k, &kl);
        TRY(qtsp_txn_put(txn, QTSP_T_HOLDS, k, kl, "", 0, 0));
    }

    unsigned char sv[STATUS_LEN];
    status_encode(&n, sv);
    /* revoked index: what a CRL lists; released holds stay with released=1
     * so a delta CRL can carry removeFromCRL (RFC 5280 5.3.1) */
    if (n.state != QTSP_CERT_VALID || n.released) {
        TRY(qtsp_txn_put(txn, QTSP_T_REVOKED, s, sl, sv, sizeof sv, 0));
    } else {
        const void *v;
        size_t vl;
        qtsp_status g = qtsp_txn_get0(txn, QTSP_T_REVOKED, s, sl, &v, &vl);
        if (g == QTSP_OK)
            TRY(qtsp_txn_del(txn, QTSP_T_REVOKED, s, sl));
        else if (g != QTSP_ERR_NOT_FOUND)
            return g;
    }
    TRY(qtsp_txn_put(txn, QTSP_T_STATUS, s, sl, sv, sizeof sv, 0));

    /* pre-signed OCSP answers for this serial are stale now */
    unsigned char ck[1 + QTSP_SERIAL_MAX + 1];
    ck[0] = (unsigned char)sl;
    memcpy(ck + 1, s, sl);
    for (unsigned char alg = 1; alg <= 2; alg++) {
        ck[1 + sl] = alg;
        TRY(del_if_present(txn, QTSP_T_OCSP_CACHE, ck, sl + 2));
    }
    return qtsp_txn_counter_next(txn, "status_gen", NULL);
}

/* ---- walks -------------------------------------------------------------- */

typedef struct subj_entry {
    uint64_t seq;
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen;
} subj_entry;

typedef struct subj_ctx {
    const unsigned char *prefix;
    size_t plen;
    subj_entry *v;
    size_t n, cap;
} subj_ctx;

static qtsp_status subj_collect(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen, int *stop)
{
    subj_ctx *c = ctx;
    if (klen <= c->plen || memcmp(key, c->prefix, c->plen) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    size_t sl = klen - c->plen;
    ENSURE(sl <= QTSP_SERIAL_MAX && vlen == 8, QTSP_ERR_STORE_CORRUPT,
           "subject_certs entry malformed");
    ENSURE(c->n < SUBJECT_SERIALS_MAX, QTSP_ERR_TOO_BIG, "subject has too many certificates");
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8;
        subj_entry *nv = realloc(c->v, nc * sizeof *nv);
        ENSURE(nv, QTSP_ERR_NOMEM, "out of memory");
        c->v = nv;
        c->cap = nc;
    }
    subj_entry *e = &c->v[c->n++];
    e->seq = qtsp_be64_get(val);
    memcpy(e->serial, (const unsigned char *)key + c->plen, sl);
    e->slen = sl;
    return QTSP_OK;
}

static int subj_cmp(const void *a, const void *b)
{
    uint64_t x = ((const subj_entry *)a)->seq, y = ((const subj_entry *)b)->seq;
    return x < y ? -1 : x > y;
}

qtsp_status qtsp_certdb_subject_serials(qtsp_txn *txn, const char *subject_id, qtsp_serial_fn fn,
                                        void *ctx)
{
    ENSURE(subject_id && fn, QTSP_ERR_INVALID, "no subject id");
    size_t n = strnlen(subject_id, 40);
    ENSURE(n >= 1 && n < 40, QTSP_ERR_INVALID, "subject id length out of range");
    unsigned char prefix[41];
    memcpy(prefix, subject_id, n);
    prefix[n] = 0;
    subj_ctx c = {.prefix = prefix, .plen = n + 1};
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_SUBJECT_CERTS, prefix, n + 1, subj_collect, &c);
    if (rc == QTSP_OK) {
        if (c.n > 1)
            qsort(c.v, c.n, sizeof *c.v, subj_cmp);
        for (size_t i = 0; i < c.n && rc == QTSP_OK; i++)
            rc = fn(ctx, c.v[i].serial, c.v[i].slen);
    }
    free(c.v);
    return rc;
}

typedef struct revoked_ctx {
    qtsp_revoked_fn fn;
    void *ctx;
} revoked_ctx;

static qtsp_status revoked_one(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen, int *stop)
{
    revoked_ctx *c = ctx;
    ENSURE(klen >= 1 && klen <= QTSP_SERIAL_MAX, QTSP_ERR_STORE_CORRUPT, "revoked entry malformed");
    qtsp_cert_status s;
    TRY(status_decode(val, vlen, &s));
    (void)stop;
    return c->fn(c->ctx, key, klen, &s);
}

qtsp_status qtsp_certdb_revoked_each(qtsp_txn *txn, qtsp_revoked_fn fn, void *ctx)
{
    ENSURE(fn, QTSP_ERR_INVALID, "no function");
    revoked_ctx c = {fn, ctx};
    /* a full walk (CRL build): do not keep the visited pages mapped */
    return qtsp_txn_iter_ex(txn, QTSP_T_REVOKED, NULL, 0, QTSP_ITER_RELEASE, revoked_one, &c);
}

typedef struct scan_ctx {
    qtsp_status_visit_fn fn;
    void *ctx;
    const unsigned char *after;
    size_t alen;
} scan_ctx;

static qtsp_status scan_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                            int *stop)
{
    scan_ctx *c = ctx;
    ENSURE(klen >= 1 && klen <= QTSP_SERIAL_MAX, QTSP_ERR_STORE_CORRUPT, "status key malformed");
    if (c->after && klen == c->alen && memcmp(key, c->after, klen) == 0)
        return QTSP_OK; /* the cursor itself */
    qtsp_cert_status s;
    TRY(status_decode(val, vlen, &s));
    return c->fn(c->ctx, key, klen, &s, stop);
}

qtsp_status qtsp_certdb_status_scan(qtsp_txn *txn, int revoked_only, const unsigned char *after,
                                    size_t alen, qtsp_status_visit_fn fn, void *ctx)
{
    ENSURE(fn && (after == NULL || (alen >= 1 && alen <= QTSP_SERIAL_MAX)), QTSP_ERR_INVALID,
           "bad status scan arguments");
    scan_ctx c = {fn, ctx, after, alen};
    return qtsp_txn_iter(txn, revoked_only ? QTSP_T_REVOKED : QTSP_T_STATUS, after,
                         after ? alen : 0, scan_one, &c);
}

qtsp_status qtsp_certdb_revoked_forget(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                       time_t before, int *deleted)
{
    ENSURE(txn && deleted, QTSP_ERR_INVALID, "no transaction");
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl;
    TRY(qtsp_serial_normalize(serial, slen, s, &sl));
    *deleted = 0;
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_REVOKED, s, sl, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* already gone */
        return QTSP_OK;
    TRY(rc);
    qtsp_cert_status st;
    TRY(status_decode(v, vl, &st));
    /* re-checked in the write transaction: the entry may have changed since
     * the CRL build read it */
    if (st.state != QTSP_CERT_VALID || !st.released || st.changed_at >= (int64_t)before)
        return QTSP_OK;
    TRY(qtsp_txn_del(txn, QTSP_T_REVOKED, s, sl));
    *deleted = 1;
    return QTSP_OK;
}

typedef struct due_ctx {
    int64_t now;
    qtsp_buf out; /* len u8 | serial, repeated */
    size_t n;
} due_ctx;

static qtsp_status due_collect(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen, int *stop)
{
    due_ctx *c = ctx;
    ENSURE(klen > 8 && klen <= 8 + QTSP_SERIAL_MAX, QTSP_ERR_STORE_CORRUPT, "hold entry malformed");
    int64_t until = (int64_t)qtsp_be64_get(key);
    if (until > c->now || c->n >= DUE_HOLDS_MAX) {
        *stop = 1;
        return QTSP_OK;
    }
    unsigned char l = (unsigned char)(klen - 8);
    TRY(qtsp_buf_append(&c->out, &l, 1));
    TRY(qtsp_buf_append(&c->out, (const unsigned char *)key + 8, l));
    c->n++;
    (void)val;
    (void)vlen;
    return QTSP_OK;
}

qtsp_status qtsp_certdb_due_holds(qtsp_txn *txn, time_t now, qtsp_serial_fn fn, void *ctx)
{
    ENSURE(fn, QTSP_ERR_INVALID, "no function");
    due_ctx c = {.now = (int64_t)now};
    qtsp_buf_init(&c.out, DUE_HOLDS_MAX * (1 + QTSP_SERIAL_MAX));
    /* collect first: fn may change the holds index (the sweeper releases) */
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_HOLDS, NULL, 0, due_collect, &c);
    for (size_t off = 0; rc == QTSP_OK && off < c.out.len;) {
        size_t l = c.out.data[off];
        rc = fn(ctx, c.out.data + off + 1, l);
        off += 1 + l;
    }
    qtsp_buf_cleanup(&c.out);
    return rc;
}

/* meta "issued_by_root": (1 byte length | serial) for each certificate the
 * root issued (issuing CA, TSA units), read by the root CRL (ca/crl_build.c). */
#define ROOT_ISSUED_KEY "issued_by_root"
#define ROOT_ISSUED_MAX 4096

qtsp_status qtsp_certdb_add_root_issued(qtsp_txn *txn, const unsigned char *serial, size_t slen)
{
    ENSURE(slen > 0 && slen <= QTSP_SERIAL_MAX, QTSP_ERR_INVALID, "bad serial length %zu", slen);
    qtsp_buf v;
    qtsp_buf_init(&v, ROOT_ISSUED_MAX);
    qtsp_status rc =
        qtsp_txn_get(txn, QTSP_T_META, ROOT_ISSUED_KEY, sizeof ROOT_ISSUED_KEY - 1, &v);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        rc = QTSP_OK;
    }
    unsigned char l = (unsigned char)slen;
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(&v, &l, 1);
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(&v, serial, slen);
    if (rc == QTSP_OK)
        rc = qtsp_txn_put(txn, QTSP_T_META, ROOT_ISSUED_KEY, sizeof ROOT_ISSUED_KEY - 1, v.data,
                          v.len, 0);
    qtsp_buf_cleanup(&v);
    return rc;
}
