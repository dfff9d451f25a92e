/* Unit tests for ca/certdb.c: records, status transitions and indexes. */
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/certdb.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"
#include "tests/lib/qtest.h"

#define NB 1790000000LL
#define NA 1821536000LL

static char g_dir[512];
static EVP_PKEY *g_key;

static qtsp_store *open_fresh(void)
{
    return qtest_store_fresh("certdb", 4, g_dir, sizeof g_dir);
}

static void done(qtsp_store *st)
{
    qtest_store_done(st, g_dir);
}

/* A self-signed certificate with the given serial; DER in *der (free()). */
static size_t make_cert(const unsigned char *serial, size_t slen, unsigned char **der)
{
    if (!g_key)
        g_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_key);
    X509 *x = X509_new();
    BIGNUM *bn = BN_bin2bn(serial, (int)slen, NULL);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    X509_set_version(x, 2);
    X509_set_serialNumber(x, ai);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)NB);
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)NA);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, g_key);
    CU_ASSERT_FATAL(X509_sign(x, g_key, EVP_sha256()) > 0);
    *der = NULL;
    int len = i2d_X509(x, der);
    CU_ASSERT_FATAL(len > 0);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    X509_free(x);
    return (size_t)len;
}

typedef struct put_ctx {
    qtsp_cert_record rec;
} put_ctx;

static qtsp_status put_fn(qtsp_txn *txn, void *ctx)
{
    return qtsp_certdb_put(txn, &((put_ctx *)ctx)->rec);
}

static qtsp_status put_cert(qtsp_store *st, const unsigned char *serial, size_t slen,
                            const char *subject)
{
    unsigned char *der;
    size_t dl = make_cert(serial, slen, &der);
    put_ctx c = {0};
    memcpy(c.rec.serial, serial, slen);
    c.rec.serial_len = slen;
    snprintf(c.rec.issuer, sizeof c.rec.issuer, "issuing");
    snprintf(c.rec.subject_id, sizeof c.rec.subject_id, "%s", subject);
    snprintf(c.rec.key_label, sizeof c.rec.key_label, "user-key-1");
    snprintf(c.rec.profile, sizeof c.rec.profile, "qualified-natural");
    c.rec.der = der;
    c.rec.der_len = dl;
    qtsp_status rc = qtsp_store_write(st, put_fn, &c);
    free(der);
    return rc;
}

typedef struct status_ctx {
    const unsigned char *serial;
    size_t slen;
    qtsp_cert_status st;
} status_ctx;

static qtsp_status set_fn(qtsp_txn *txn, void *ctx)
{
    status_ctx *c = ctx;
    return qtsp_certdb_set_status(txn, c->serial, c->slen, &c->st);
}

static qtsp_status set_status(qtsp_store *st, const unsigned char *s, size_t sl,
                              qtsp_cert_status cs)
{
    status_ctx c = {s, sl, cs};
    return qtsp_store_write(st, set_fn, &c);
}

static qtsp_cert_status get_status(qtsp_store *st, const unsigned char *s, size_t sl)
{
    qtsp_txn *t;
    qtsp_cert_status cs = {0};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_certdb_get_status(t, s, sl, &cs), QTSP_OK);
    qtsp_txn_abort(t);
    return cs;
}

static int present(qtsp_store *st, qtsp_table tb, const void *k, size_t kl)
{
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    const void *v;
    size_t vl;
    int r = qtsp_txn_get0(t, tb, k, kl, &v, &vl) == QTSP_OK;
    qtsp_txn_abort(t);
    return r;
}

static uint64_t counter(qtsp_store *st, const char *name)
{
    qtsp_txn *t;
    uint64_t v = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_counter_get(t, name, &v), QTSP_OK);
    qtsp_txn_abort(t);
    return v;
}

static void test_certdb_put_and_get_round_trip(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char serial[] = {0x7f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, serial, sizeof serial, "subj-1"), QTSP_OK);

    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_cert_record r;
    CU_ASSERT_EQUAL_FATAL(qtsp_certdb_get(t, serial, sizeof serial, &r), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(r.issuer, "issuing");
    CU_ASSERT_STRING_EQUAL(r.subject_id, "subj-1");
    CU_ASSERT_STRING_EQUAL(r.key_label, "user-key-1");
    CU_ASSERT_STRING_EQUAL(r.profile, "qualified-natural");
    CU_ASSERT_EQUAL(r.serial_len, sizeof serial);
    CU_ASSERT_EQUAL(memcmp(r.serial, serial, sizeof serial), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.der);
    const unsigned char *p = r.der;
    X509 *x = d2i_X509(NULL, &p, (long)r.der_len);
    CU_ASSERT_PTR_NOT_NULL(x);
    X509_free(x);
    qtsp_cert_status cs;
    CU_ASSERT_EQUAL(qtsp_certdb_get_status(t, serial, sizeof serial, &cs), QTSP_OK);
    CU_ASSERT_EQUAL(cs.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(cs.not_before, NB);
    CU_ASSERT_EQUAL(cs.not_after, NA);
    unsigned char other[] = {0x55};
    CU_ASSERT_EQUAL(qtsp_certdb_get(t, other, 1, &r), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_certdb_get_status(t, other, 1, &cs), QTSP_ERR_NOT_FOUND);
    qtsp_txn_abort(t);
    qtsp_cert_record_cleanup(&r);
    qtsp_cert_record_cleanup(NULL);
    done(st);
}

static qtsp_status put_exact(qtsp_txn *txn, void *ctx)
{
    return qtsp_certdb_put(txn, (const qtsp_cert_record *)ctx);
}

static void test_certdb_get_returns_the_der_byte_for_byte(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char serial[] = {0x01, 0x23};
    unsigned char *der;
    size_t dl = make_cert(serial, sizeof serial, &der);
    qtsp_cert_record rec = {
        .serial = {0x01, 0x23}, .serial_len = 2, .issuer = "root", .der = der, .der_len = dl};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, put_exact, &rec), QTSP_OK);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_cert_record r;
    CU_ASSERT_EQUAL_FATAL(qtsp_certdb_get(t, serial, 2, &r), QTSP_OK);
    CU_ASSERT_EQUAL(r.der_len, dl);
    CU_ASSERT_EQUAL(memcmp(r.der, der, dl), 0);
    CU_ASSERT_STRING_EQUAL(r.subject_id, "");
    qtsp_txn_abort(t);
    qtsp_cert_record_cleanup(&r);

    /* trailing bytes, garbage and a serial that is not the certificate's */
    unsigned char *longer = malloc(dl + 1);
    memcpy(longer, der, dl);
    longer[dl] = 0;
    qtsp_cert_record bad = rec;
    bad.serial[1] = 0x24;
    bad.der = longer;
    bad.der_len = dl + 1;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, put_exact, &bad), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "trailing"));
    bad.der_len = dl;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, put_exact, &bad), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "serial"));
    bad.der_len = 10;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, put_exact, &bad), QTSP_ERR_INVALID);
    bad = rec;
    bad.issuer[0] = '\0';
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, put_exact, &bad), QTSP_ERR_INVALID);
    qtsp_err_clear();
    free(longer);
    free(der);
    done(st);
}

static void test_certdb_refuses_a_reused_serial(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char serial[] = {0x42, 0x42};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, serial, 2, "s1"), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(put_cert(st, serial, 2, "s2"), QTSP_ERR_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "4242"));
    /* the same serial with a leading zero byte is the same serial */
    const unsigned char padded[] = {0x00, 0x42, 0x42};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(put_cert(st, padded, 3, "s2"), QTSP_ERR_EXISTS);
    qtsp_err_clear();
    done(st);
}

static void test_certdb_status_transitions_keep_indexes(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char s[] = {0x0a, 0x0b};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s, 2, "subj"), QTSP_OK);
    CU_ASSERT_FALSE(present(st, QTSP_T_REVOKED, s, 2));
    uint64_t gen0 = counter(st, "status_gen");

    /* hold */
    qtsp_cert_status h = {.state = QTSP_CERT_ON_HOLD,
                          .revoked_at = NB + 100,
                          .hold_until = NB + 1000,
                          .changed_at = NB + 100};
    CU_ASSERT_EQUAL_FATAL(set_status(st, s, 2, h), QTSP_OK);
    CU_ASSERT_EQUAL(counter(st, "status_gen"), gen0 + 1);
    qtsp_cert_status cs = get_status(st, s, 2);
    CU_ASSERT_EQUAL(cs.state, QTSP_CERT_ON_HOLD);
    CU_ASSERT_EQUAL(cs.reason, QTSP_REASON_CERTIFICATE_HOLD);
    CU_ASSERT_EQUAL(cs.not_before, NB); /* kept from the certificate */
    CU_ASSERT(present(st, QTSP_T_REVOKED, s, 2));
    unsigned char hk[10];
    qtsp_be64_put(hk, (uint64_t)(NB + 1000));
    memcpy(hk + 8, s, 2);
    CU_ASSERT(present(st, QTSP_T_HOLDS, hk, 10));

    /* extend the hold: the old holds key goes */
    h.hold_until = NB + 2000;
    CU_ASSERT_EQUAL_FATAL(set_status(st, s, 2, h), QTSP_OK);
    CU_ASSERT_FALSE(present(st, QTSP_T_HOLDS, hk, 10));
    qtsp_be64_put(hk, (uint64_t)(NB + 2000));
    CU_ASSERT(present(st, QTSP_T_HOLDS, hk, 10));

    /* release: holds entry removed, revoked entry kept with released=1 */
    qtsp_cert_status v = {.state = QTSP_CERT_VALID, .changed_at = NB + 500};
    CU_ASSERT_EQUAL_FATAL(set_status(st, s, 2, v), QTSP_OK);
    CU_ASSERT_FALSE(present(st, QTSP_T_HOLDS, hk, 10));
    CU_ASSERT(present(st, QTSP_T_REVOKED, s, 2));
    cs = get_status(st, s, 2);
    CU_ASSERT_EQUAL(cs.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(cs.released, 1);
    CU_ASSERT_EQUAL(cs.changed_at, NB + 500);
    CU_ASSERT_EQUAL(counter(st, "status_gen"), gen0 + 3);

    /* revoke: final */
    qtsp_cert_status r = {
        .state = QTSP_CERT_REVOKED, .reason = QTSP_REASON_KEY_COMPROMISE, .revoked_at = NB + 600};
    CU_ASSERT_EQUAL_FATAL(set_status(st, s, 2, r), QTSP_OK);
    cs = get_status(st, s, 2);
    CU_ASSERT_EQUAL(cs.state, QTSP_CERT_REVOKED);
    CU_ASSERT_EQUAL(cs.released, 0);
    CU_ASSERT(cs.changed_at != 0);
    CU_ASSERT(present(st, QTSP_T_REVOKED, s, 2));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(set_status(st, s, 2, v), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(set_status(st, s, 2, h), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(counter(st, "status_gen"), gen0 + 4);
    done(st);
}

static void test_certdb_rejects_bad_status_changes(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char s[] = {0x33};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s, 1, ""), QTSP_OK);
    qtsp_cert_status bad[] = {
        {.state = QTSP_CERT_ON_HOLD}, /* no lapse time */
        {.state = 7},                 /* unknown state */
        {.state = QTSP_CERT_REVOKED, .reason = QTSP_REASON_CERTIFICATE_HOLD},
        {.state = QTSP_CERT_REVOKED, .reason = QTSP_REASON_REMOVE_FROM_CRL},
        {.state = QTSP_CERT_REVOKED, .reason = 7},
        {.state = QTSP_CERT_REVOKED, .reason = 200},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL(set_status(st, s, 1, bad[i]), QTSP_ERR_INVALID);
    }
    const unsigned char never[] = {0x34};
    qtsp_cert_status v = {.state = QTSP_CERT_VALID};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(set_status(st, never, 1, v), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_FALSE(present(st, QTSP_T_REVOKED, s, 1));
    CU_ASSERT_EQUAL(counter(st, "status_gen"), 0);
    done(st);
}

static void test_certdb_hold_lapses_exactly_at_hold_until(void)
{
    qtsp_cert_status held = {.state = QTSP_CERT_ON_HOLD,
                             .reason = 6,
                             .revoked_at = 1000,
                             .hold_until = 5000,
                             .changed_at = 1000};
    qtsp_cert_status e;
    qtsp_cert_status_effective(&held, 4999, &e);
    CU_ASSERT_EQUAL(e.state, QTSP_CERT_ON_HOLD);
    CU_ASSERT_EQUAL(e.released, 0);
    CU_ASSERT_EQUAL(e.changed_at, 1000);
    qtsp_cert_status_effective(&held, 5000, &e);
    CU_ASSERT_EQUAL(e.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(e.released, 1);
    CU_ASSERT_EQUAL(e.changed_at, 5000);
    qtsp_cert_status_effective(&held, 5001, &e);
    CU_ASSERT_EQUAL(e.state, QTSP_CERT_VALID);
    qtsp_cert_status rev = {.state = QTSP_CERT_REVOKED, .reason = 1, .hold_until = 10};
    qtsp_cert_status_effective(&rev, 100000, &e);
    CU_ASSERT_EQUAL(e.state, QTSP_CERT_REVOKED);
}

static void cache_key(const unsigned char *s, size_t sl, unsigned char alg, unsigned char *k,
                      size_t *kl)
{
    k[0] = (unsigned char)sl;
    memcpy(k + 1, s, sl);
    k[1 + sl] = alg;
    *kl = sl + 2;
}

typedef struct cache_put {
    const unsigned char *a, *b;
    size_t al, bl;
} cache_put;

static qtsp_status fill_cache(qtsp_txn *txn, void *ctx)
{
    cache_put *c = ctx;
    unsigned char k[32];
    size_t kl;
    for (unsigned char alg = 1; alg <= 2; alg++) {
        cache_key(c->a, c->al, alg, k, &kl);
        TRY(qtsp_txn_put(txn, QTSP_T_OCSP_CACHE, k, kl, "resp", 4, 0));
        cache_key(c->b, c->bl, alg, k, &kl);
        TRY(qtsp_txn_put(txn, QTSP_T_OCSP_CACHE, k, kl, "resp", 4, 0));
    }
    return QTSP_OK;
}

static void test_certdb_status_change_drops_only_its_ocsp_cache(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char a[] = {0x01, 0x02}, b[] = {0x01, 0x02, 0x03};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, a, 2, ""), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, b, 3, ""), QTSP_OK);
    cache_put c = {a, b, 2, 3};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, fill_cache, &c), QTSP_OK);
    qtsp_cert_status h = {.state = QTSP_CERT_ON_HOLD, .hold_until = NB + 10};
    CU_ASSERT_EQUAL_FATAL(set_status(st, a, 2, h), QTSP_OK);
    unsigned char k[32];
    size_t kl;
    for (unsigned char alg = 1; alg <= 2; alg++) {
        cache_key(a, 2, alg, k, &kl);
        CU_ASSERT_FALSE(present(st, QTSP_T_OCSP_CACHE, k, kl));
        cache_key(b, 3, alg, k, &kl);
        CU_ASSERT(present(st, QTSP_T_OCSP_CACHE, k, kl));
    }
    done(st);
}

static void test_certdb_serial_hex_round_trip(void)
{
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl = 0;
    char hex[41];
    CU_ASSERT_EQUAL(qtsp_serial_from_hex("1a2b", s, &sl), QTSP_OK);
    CU_ASSERT_EQUAL(sl, 2);
    CU_ASSERT_EQUAL(s[0], 0x1a);
    qtsp_serial_to_hex(s, sl, hex);
    CU_ASSERT_STRING_EQUAL(hex, "1a2b");
    /* odd length, upper case and leading zeros accepted; output canonical */
    CU_ASSERT_EQUAL(qtsp_serial_from_hex("00ABC", s, &sl), QTSP_OK);
    CU_ASSERT_EQUAL(sl, 2);
    qtsp_serial_to_hex(s, sl, hex);
    CU_ASSERT_STRING_EQUAL(hex, "abc");
    const char *twenty = "7fffffffffffffffffffffffffffffffffffffff";
    CU_ASSERT_EQUAL(qtsp_serial_from_hex(twenty, s, &sl), QTSP_OK);
    CU_ASSERT_EQUAL(sl, 20);
    qtsp_serial_to_hex(s, sl, hex);
    CU_ASSERT_STRING_EQUAL(hex, twenty);
    const unsigned char padded[] = {0, 0, 0x05};
    qtsp_serial_to_hex(padded, 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "5");

    const char *bad[] = {"",    "0",    "000",
                         "xyz", "12 3", "0x12",
                         "-1",  "1g",   "1ffffffffffffffffffffffffffffffffffffffff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_err_clear();
        sl = 99;
        CU_ASSERT_EQUAL(qtsp_serial_from_hex(bad[i], s, &sl), QTSP_ERR_INVALID);
        CU_ASSERT_EQUAL(sl, 99);
    }
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_serial_from_hex(NULL, s, &sl), QTSP_ERR_INVALID);

    unsigned char in21[21] = {1};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_serial_normalize(in21, 21, s, &sl), QTSP_ERR_INVALID);
    unsigned char in21z[21] = {0, 1};
    CU_ASSERT_EQUAL(qtsp_serial_normalize(in21z, 21, s, &sl), QTSP_OK);
    CU_ASSERT_EQUAL(sl, 20);
    unsigned char zeros[3] = {0};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_serial_normalize(zeros, 3, s, &sl), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_certdb_reason_names_follow_rfc5280(void)
{
    const char *names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", NULL,
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};
    for (int i = 0; i < 11; i++) {
        if (!names[i])
            continue;
        int r = -1;
        CU_ASSERT_EQUAL(qtsp_reason_parse(names[i], &r), QTSP_OK);
        CU_ASSERT_EQUAL(r, i);
        CU_ASSERT_STRING_EQUAL(qtsp_reason_name(i), names[i]);
    }
    int r;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_reason_parse("KeyCompromise", &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_reason_parse("", &r), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_STRING_EQUAL(qtsp_reason_name(7), "unknown");
    CU_ASSERT_STRING_EQUAL(qtsp_reason_name(-1), "unknown");
}

typedef struct serial_list {
    unsigned char s[8][QTSP_SERIAL_MAX];
    size_t l[8];
    int n;
} serial_list;

static qtsp_status list_serial(void *ctx, const unsigned char *s, size_t sl)
{
    serial_list *c = ctx;
    if (c->n < 8) {
        memcpy(c->s[c->n], s, sl);
        c->l[c->n++] = sl;
    }
    return QTSP_OK;
}

static void test_certdb_subject_serials_in_issue_order(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char s1[] = {0x90}, s2[] = {0x10}, s3[] = {0x50}, other[] = {0x20};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s1, 1, "alice"), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s2, 1, "alice"), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, other, 1, "alice2"), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s3, 1, "alice"), QTSP_OK);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    serial_list c = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_subject_serials(t, "alice", list_serial, &c), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(c.n, 3);
    CU_ASSERT_EQUAL(c.s[0][0], 0x90);
    CU_ASSERT_EQUAL(c.s[1][0], 0x10);
    CU_ASSERT_EQUAL(c.s[2][0], 0x50);
    serial_list none = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_subject_serials(t, "bob", list_serial, &none), QTSP_OK);
    CU_ASSERT_EQUAL(none.n, 0);
    qtsp_txn_abort(t);
    done(st);
}

typedef struct rev_list {
    int n;
    int released;
} rev_list;

static qtsp_status list_revoked(void *ctx, const unsigned char *s, size_t sl,
                                const qtsp_cert_status *cs)
{
    rev_list *c = ctx;
    c->n++;
    c->released += cs->released;
    return QTSP_OK;
}

static void test_certdb_due_holds_and_revoked_walk(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char a[] = {0xa0}, b[] = {0xb0}, c[] = {0xc0}, d[] = {0xd0};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, a, 1, ""), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, b, 1, ""), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, c, 1, ""), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, d, 1, ""), QTSP_OK);
    qtsp_cert_status h = {.state = QTSP_CERT_ON_HOLD};
    h.hold_until = 3000;
    CU_ASSERT_EQUAL(set_status(st, a, 1, h), QTSP_OK);
    h.hold_until = 1000;
    CU_ASSERT_EQUAL(set_status(st, b, 1, h), QTSP_OK);
    h.hold_until = 2000;
    CU_ASSERT_EQUAL(set_status(st, c, 1, h), QTSP_OK);
    qtsp_cert_status r = {.state = QTSP_CERT_REVOKED, .reason = QTSP_REASON_SUPERSEDED};
    CU_ASSERT_EQUAL(set_status(st, d, 1, r), QTSP_OK);

    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    serial_list due = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_due_holds(t, 2000, list_serial, &due), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(due.n, 2);
    CU_ASSERT_EQUAL(due.s[0][0], 0xb0);
    CU_ASSERT_EQUAL(due.s[1][0], 0xc0);
    serial_list none = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_due_holds(t, 999, list_serial, &none), QTSP_OK);
    CU_ASSERT_EQUAL(none.n, 0);
    rev_list rl = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_revoked_each(t, list_revoked, &rl), QTSP_OK);
    CU_ASSERT_EQUAL(rl.n, 4);
    CU_ASSERT_EQUAL(rl.released, 0);
    qtsp_txn_abort(t);

    /* release b: still listed, now as released */
    qtsp_cert_status v = {.state = QTSP_CERT_VALID};
    CU_ASSERT_EQUAL(set_status(st, b, 1, v), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    rev_list rl2 = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_revoked_each(t, list_revoked, &rl2), QTSP_OK);
    CU_ASSERT_EQUAL(rl2.n, 4);
    CU_ASSERT_EQUAL(rl2.released, 1);
    serial_list due2 = {0};
    CU_ASSERT_EQUAL(qtsp_certdb_due_holds(t, 2000, list_serial, &due2), QTSP_OK);
    CU_ASSERT_EQUAL(due2.n, 1);
    qtsp_txn_abort(t);
    done(st);
}

typedef struct raw_put {
    qtsp_table t;
    const void *k, *v;
    size_t kl, vl;
} raw_put;

typedef struct forget_ctx {
    const unsigned char *s;
    size_t sl;
    time_t before;
    int deleted;
} forget_ctx;

static qtsp_status forget_fn(qtsp_txn *txn, void *ctx)
{
    forget_ctx *c = ctx;
    return qtsp_certdb_revoked_forget(txn, c->s, c->sl, c->before, &c->deleted);
}

static void test_certdb_revoked_forget_drops_only_released_entries_changed_before(void)
{
    qtsp_store *st = open_fresh();
    static const unsigned char a[] = {0x61, 0x01}, b[] = {0x62, 0x02}, z[] = {0x6f, 0x0f};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, a, sizeof a, "subj-a"), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(put_cert(st, b, sizeof b, "subj-b"), QTSP_OK);
    qtsp_cert_status held = {.state = QTSP_CERT_ON_HOLD,
                             .reason = 6,
                             .revoked_at = 1000,
                             .hold_until = 900000,
                             .changed_at = 1000};
    CU_ASSERT_EQUAL(set_status(st, a, sizeof a, held), QTSP_OK);
    /* still on hold: kept */
    forget_ctx c = {a, sizeof a, 5000, -1};
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.deleted, 0);
    CU_ASSERT(present(st, QTSP_T_REVOKED, a, sizeof a));
    qtsp_cert_status rel = {.state = QTSP_CERT_VALID, .changed_at = 2000};
    CU_ASSERT_EQUAL(set_status(st, a, sizeof a, rel), QTSP_OK);
    /* released at 2000: a base of 2000 still needs nothing, but "before"
     * is strict: kept */
    c.before = 2000;
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.deleted, 0);
    CU_ASSERT(present(st, QTSP_T_REVOKED, a, sizeof a));
    /* a read-only transaction cannot delete */
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    int d = -1;
    CU_ASSERT_EQUAL(qtsp_certdb_revoked_forget(t, a, sizeof a, 2001, &d), QTSP_ERR_STATE);
    qtsp_txn_abort(t);
    qtsp_err_clear();
    c.before = 2001;
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.deleted, 1);
    CU_ASSERT(!present(st, QTSP_T_REVOKED, a, sizeof a));
    /* the status record stays: OCSP still answers good */
    qtsp_cert_status s = get_status(st, a, sizeof a);
    CU_ASSERT_EQUAL(s.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(s.released, 1);
    /* a revoked entry is never forgotten; an absent one is no error */
    qtsp_cert_status rev = {
        .state = QTSP_CERT_REVOKED, .reason = 1, .revoked_at = 1500, .changed_at = 1500};
    CU_ASSERT_EQUAL(set_status(st, b, sizeof b, rev), QTSP_OK);
    forget_ctx cb = {b, sizeof b, 999999, -1};
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &cb), QTSP_OK);
    CU_ASSERT_EQUAL(cb.deleted, 0);
    CU_ASSERT(present(st, QTSP_T_REVOKED, b, sizeof b));
    forget_ctx cz = {z, sizeof z, 999999, -1};
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &cz), QTSP_OK);
    CU_ASSERT_EQUAL(cz.deleted, 0);
    /* a bad serial is refused */
    forget_ctx c0 = {(const unsigned char *)"\0", 1, 999999, -1};
    CU_ASSERT_EQUAL(qtsp_store_write(st, forget_fn, &c0), QTSP_ERR_INVALID);
    qtsp_err_clear();
    done(st);
}

static qtsp_status raw_fn(qtsp_txn *txn, void *ctx)
{
    raw_put *r = ctx;
    return qtsp_txn_put(txn, r->t, r->k, r->kl, r->v, r->vl, 0);
}

static void test_certdb_rejects_corrupt_records(void)
{
    qtsp_store *st = open_fresh();
    const unsigned char s[] = {0x77};
    CU_ASSERT_EQUAL_FATAL(put_cert(st, s, 1, ""), QTSP_OK);
    unsigned char badstatus[52] = {2}; /* unknown version */
    raw_put r = {QTSP_T_STATUS, s, badstatus, 1, sizeof badstatus};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, raw_fn, &r), QTSP_OK);
    qtsp_txn *t;
    qtsp_cert_status cs;
    qtsp_cert_record rec;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_certdb_get_status(t, s, 1, &cs), QTSP_ERR_STORE_CORRUPT);
    qtsp_txn_abort(t);
    badstatus[0] = 1;
    r.vl = 51; /* wrong length */
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, raw_fn, &r), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_certdb_get_status(t, s, 1, &cs), QTSP_ERR_STORE_CORRUPT);
    qtsp_txn_abort(t);
    const unsigned char badcert[] = {1, 3, 'a', 'b'}; /* truncated field */
    raw_put rc = {QTSP_T_CERTS, s, badcert, 1, sizeof badcert};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, raw_fn, &rc), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_certdb_get(t, s, 1, &rec), QTSP_ERR_STORE_CORRUPT);
    qtsp_err_clear();
    qtsp_txn_abort(t);
    done(st);
}

static qtsp_status add_two_root_issued(qtsp_txn *txn, void *ctx)
{
    (void)ctx;
    static const unsigned char a[] = {0x12, 0x34}, b[] = {0x7f, 0x01, 0x02};
    TRY(qtsp_certdb_add_root_issued(txn, a, sizeof a));
    return qtsp_certdb_add_root_issued(txn, b, sizeof b);
}

static void test_certdb_root_issued_list_is_length_prefixed_and_appends(void)
{
    qtsp_store *st = open_fresh();
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, add_two_root_issued, NULL), QTSP_OK);
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(st, 0, &t) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 256);
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_META, "issued_by_root", 14, &v), QTSP_OK);
    static const unsigned char want[] = {2, 0x12, 0x34, 3, 0x7f, 0x01, 0x02};
    CU_ASSERT_EQUAL(v.len, sizeof want);
    CU_ASSERT(v.len == sizeof want && memcmp(v.data, want, sizeof want) == 0);
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(t);
    done(st);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_certdb_root_issued_list_is_length_prefixed_and_appends),
        QTEST(test_certdb_put_and_get_round_trip),
        QTEST(test_certdb_get_returns_the_der_byte_for_byte),
        QTEST(test_certdb_refuses_a_reused_serial),
        QTEST(test_certdb_status_transitions_keep_indexes),
        QTEST(test_certdb_rejects_bad_status_changes),
        QTEST(test_certdb_hold_lapses_exactly_at_hold_until),
        QTEST(test_certdb_status_change_drops_only_its_ocsp_cache),
        QTEST(test_certdb_serial_hex_round_trip),
        QTEST(test_certdb_reason_names_follow_rfc5280),
        QTEST(test_certdb_subject_serials_in_issue_order),
        QTEST(test_certdb_due_holds_and_revoked_walk),
        QTEST(test_certdb_rejects_corrupt_records),
        QTEST(test_certdb_revoked_forget_drops_only_released_entries_changed_before),
    };
    int rc = qtest_run("certdb", cases, sizeof cases / sizeof cases[0]);
    EVP_PKEY_free(g_key);
    return rc;
}
