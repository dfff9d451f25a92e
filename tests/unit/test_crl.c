/* Unit tests for ca/crl*.c: real LMDB in a temp dir,
 * software P-384 root and issuing CA, CRLs checked with OpenSSL's API and
 * with the openssl command (crl, verify -crl_check). */
#include <ctype.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/certdb.h"
#include "ca/crl.h"
#include "ca/crl_http.h"
#include "ca/store.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/http.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_cert.h"

/* ---------------------------------------------------------------- fixture */

static int64_t g_now_ms;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return g_now_ms;
}

typedef struct fx {
    char dir[512], pub[600], store_dir[600], policy[600], chain[600];
    qtsp_store *store;
    EVP_PKEY *root_key, *ica_key, *leaf_key;
    X509 *root, *ica;
    qtsp_crl_publisher *pub_;
    time_t t0;
} fx;

/* qtest_mkcert, failing the test when it cannot */
static X509 *mkcert(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *key, const char *cn,
                    const unsigned char *serial, size_t slen, int ca, time_t nb, time_t na)
{
    X509 *x = qtest_mkcert(issuer, ikey, key, cn, serial, slen, ca, nb, na);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    return x;
}

static qtsp_status put_fn(qtsp_txn *txn, void *ctx)
{
    return qtsp_certdb_put(txn, ctx);
}

static void store_cert(fx *f, X509 *x, const char *issuer)
{
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    const ASN1_INTEGER *ai = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    rec.serial_len = (size_t)BN_bn2bin(bn, rec.serial);
    BN_free(bn);
    snprintf(rec.issuer, sizeof rec.issuer, "%s", issuer);
    unsigned char *der = NULL;
    int l = i2d_X509(x, &der);
    rec.der = der;
    rec.der_len = (size_t)l;
    CU_ASSERT_EQUAL(qtsp_store_write(f->store, put_fn, &rec), QTSP_OK);
    OPENSSL_free(der);
}

typedef struct status_set {
    const unsigned char *s;
    size_t n;
    qtsp_cert_status st;
} status_set;

static qtsp_status status_fn(qtsp_txn *txn, void *ctx)
{
    status_set *ss = ctx;
    return qtsp_certdb_set_status(txn, ss->s, ss->n, &ss->st);
}

static void set_status(fx *f, const unsigned char *s, size_t n, int state, int reason,
                       time_t hold_until, time_t invalidity)
{
    status_set ss = {s, n, {0}};
    ss.st.state = (uint8_t)state;
    ss.st.reason = (uint8_t)reason;
    ss.st.revoked_at = state == QTSP_CERT_VALID ? 0 : qtsp_now();
    ss.st.hold_until = hold_until;
    ss.st.invalidity_date = invalidity;
    ss.st.changed_at = qtsp_now();
    CU_ASSERT_EQUAL(qtsp_store_write(f->store, status_fn, &ss), QTSP_OK);
}

/* a leaf issued by the issuing CA, stored */
static X509 *leaf(fx *f, const unsigned char *s, size_t n, time_t na)
{
    X509 *x = mkcert(f->ica, f->ica_key, f->leaf_key, "leaf", s, n, 0, f->t0 - 86400, na);
    store_cert(f, x, "issuing");
    return x;
}

static qtsp_status meta_fn(qtsp_txn *txn, void *ctx)
{
    const unsigned char *v = ctx;
    return qtsp_txn_put(txn, QTSP_T_META, "issued_by_root", 14, v + 1, v[0], 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs(text, fp);
    fclose(fp);
}

static const unsigned char ICA_SERIAL[] = {0x10, 0x01};

static void fx_open_publisher(fx *f)
{
    CU_ASSERT_EQUAL_FATAL(qtsp_crl_publisher_new(f->policy, f->pub, f->ica, qtest_key(f->ica_key),
                                                 f->root, qtest_key(f->root_key),
                                                 "http://127.0.0.1:8080/", f->store, &f->pub_),
                          QTSP_OK);
}

static void fx_setup(fx *f)
{
    memset(f, 0, sizeof *f);
    qtsp_clock_set(NULL, NULL);
    f->t0 = qtsp_now();
    g_now_ms = (int64_t)f->t0 * 1000;
    qtsp_clock_set(fake_clock, NULL);
    qtsp_err_clear();
    const char *d = qtest_tmpdir("crl");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    snprintf(f->dir, sizeof f->dir, "%s", d);
    snprintf(f->pub, sizeof f->pub, "%s/public", f->dir);
    snprintf(f->store_dir, sizeof f->store_dir, "%s/store", f->dir);
    snprintf(f->policy, sizeof f->policy, "%s/crl.yaml", f->dir);
    snprintf(f->chain, sizeof f->chain, "%s/chain.pem", f->dir);
    mkdir(f->pub, 0755);
    write_file(f->policy, "next_update: 24h\npublish_interval: 1h\ndebounce: 1s\n"
                          "hold_instruction: callissuer\ndelta: true\n");
    CU_ASSERT_EQUAL_FATAL(qtsp_store_open(f->store_dir, 64, &f->store), QTSP_OK);
    f->root_key = EVP_EC_gen("P-384");
    f->ica_key = EVP_EC_gen("P-384");
    f->leaf_key = EVP_EC_gen("P-256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->root_key && f->ica_key && f->leaf_key);
    f->root = mkcert(NULL, f->root_key, f->root_key, "Test Root", (const unsigned char *)"\x01", 1,
                     1, f->t0 - 10 * 86400, f->t0 + 3650 * 86400);
    f->ica = mkcert(f->root, f->root_key, f->ica_key, "Test Issuing CA", ICA_SERIAL,
                    sizeof ICA_SERIAL, 1, f->t0 - 5 * 86400, f->t0 + 1825 * 86400);
    store_cert(f, f->ica, "root");
    unsigned char meta[] = {3, 2, 0x10, 0x01};
    CU_ASSERT_EQUAL(qtsp_store_write(f->store, meta_fn, meta), QTSP_OK);
    FILE *fp = fopen(f->chain, "w");
    PEM_write_X509(fp, f->root);
    PEM_write_X509(fp, f->ica);
    fclose(fp);
    fx_open_publisher(f);
}

static void fx_teardown(fx *f)
{
    qtsp_crl_publisher_free(f->pub_);
    qtsp_store_close(f->store);
    X509_free(f->root);
    X509_free(f->ica);
    EVP_PKEY_free(f->root_key);
    EVP_PKEY_free(f->ica_key);
    EVP_PKEY_free(f->leaf_key);
    qtest_rmtree(f->dir);
    qtsp_clock_set(NULL, NULL);
}

static void advance(int64_t s)
{
    g_now_ms += s * 1000;
}

/* Loads DIR/public/crl/name.crl; d2i must consume all of it. */
static X509_CRL *load_crl(fx *f, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/crl/%s.crl", f->pub, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    const unsigned char *p = buf;
    X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)n);
    CU_ASSERT_PTR_NOT_NULL(c);
    CU_ASSERT_EQUAL(p, buf + n);
    return c;
}

/* openssl crl ... -CAfile chain.pem -noout: "verify OK" */
static int openssl_verifies(fx *f, const char *name)
{
    char cmd[2000];
    snprintf(cmd, sizeof cmd,
             "openssl crl -in '%s/crl/%s.crl' -inform DER -CAfile '%s' -noout 2>&1 | "
             "grep -q '^verify OK'",
             f->pub, name, f->chain);
    return system(cmd) == 0;
}

static uint64_t ext_int(X509_CRL *c, int nid, int *crit)
{
    ASN1_INTEGER *ai = X509_CRL_get_ext_d2i(c, nid, crit, NULL);
    if (!ai)
        return 0;
    uint64_t v = 0;
    ASN1_INTEGER_get_uint64(&v, ai);
    ASN1_INTEGER_free(ai);
    return v;
}

static X509_REVOKED *find_entry(X509_CRL *c, const unsigned char *s, size_t n)
{
    STACK_OF(X509_REVOKED) *sk = X509_CRL_get_REVOKED(c);
    for (int i = 0; i < sk_X509_REVOKED_num(sk); i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(sk, i);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), NULL);
        unsigned char b[32];
        int bl = BN_bn2bin(bn, b);
        BN_free(bn);
        if ((size_t)bl == n && memcmp(b, s, n) == 0)
            return r;
    }
    return NULL;
}

static int entry_reason(X509_REVOKED *r)
{
    ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, NULL, NULL);
    if (!e)
        return -1;
    int v = (int)ASN1_ENUMERATED_get(e);
    ASN1_ENUMERATED_free(e);
    return v;
}

static int n_entries(X509_CRL *c)
{
    STACK_OF(X509_REVOKED) *sk = X509_CRL_get_REVOKED(c);
    return sk ? sk_X509_REVOKED_num(sk) : 0;
}

static int has_ext_oid(X509_CRL *c, const char *oid)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int i = X509_CRL_get_ext_by_OBJ(c, o, -1);
    ASN1_OBJECT_free(o);
    return i >= 0;
}

/* ---------------------------------------------------------------- CRL tests */

static const unsigned char S1[] = {0x51, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
static const unsigned char S2[] = {0x52, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22};
static const unsigned char S3[] = {0x53, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33};

static void test_crl_empty_full_and_delta_verify(void)
{
    fx f;
    fx_setup(&f);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    CU_ASSERT(openssl_verifies(&f, "qualified"));
    CU_ASSERT(openssl_verifies(&f, "qualified-delta"));
    CU_ASSERT(openssl_verifies(&f, "root"));
    X509_CRL *c = load_crl(&f, "qualified"), *d = load_crl(&f, "qualified-delta");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c && d);
    CU_ASSERT_EQUAL(X509_CRL_get_version(c), 1); /* v2 */
    CU_ASSERT_PTR_NULL(X509_CRL_get_REVOKED(c)); /* absent when empty (5.1.2.6) */
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_CRL_get_issuer(c), X509_get_subject_name(f.ica)), 0);
    /* AKI keyid = the CA's SKI */
    AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(c, NID_authority_key_identifier, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(aki);
    CU_ASSERT_EQUAL(ASN1_OCTET_STRING_cmp(aki->keyid, X509_get0_subject_key_id(f.ica)), 0);
    AUTHORITY_KEYID_free(aki);
    /* thisUpdate = now, nextUpdate = now + 24h */
    int day, sec;
    ASN1_TIME *now = ASN1_TIME_set(NULL, f.t0);
    CU_ASSERT_EQUAL(ASN1_TIME_compare(X509_CRL_get0_lastUpdate(c), now), 0);
    ASN1_TIME_diff(&day, &sec, X509_CRL_get0_lastUpdate(c), X509_CRL_get0_nextUpdate(c));
    CU_ASSERT(day == 1 && sec == 0);
    ASN1_TIME_free(now);
    int crit = -1;
    uint64_t nfull = ext_int(c, NID_crl_number, &crit);
    CU_ASSERT_EQUAL(nfull, 1);
    CU_ASSERT_EQUAL(crit, 0);
    /* the delta: own number, critical deltaCRLIndicator = the full's number */
    CU_ASSERT_EQUAL(ext_int(d, NID_crl_number, NULL), 2);
    crit = -1;
    CU_ASSERT_EQUAL(ext_int(d, NID_delta_crl, &crit), nfull);
    CU_ASSERT_EQUAL(crit, 1);
    CU_ASSERT_EQUAL(ext_int(c, NID_delta_crl, NULL), 0);
    /* freshestCRL on the full one only, pointing at the delta */
    STACK_OF(DIST_POINT) *fr = X509_CRL_get_ext_d2i(c, NID_freshest_crl, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fr);
    DIST_POINT *dp = sk_DIST_POINT_value(fr, 0);
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
    CU_ASSERT_EQUAL(gn->type, GEN_URI);
    CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                           "http://127.0.0.1:8080/crl/qualified-delta.crl");
    sk_DIST_POINT_pop_free(fr, DIST_POINT_free);
    CU_ASSERT_PTR_NULL(X509_CRL_get_ext_d2i(d, NID_freshest_crl, NULL, NULL));
    /* ExpiredCertsOnCRL on every CRL */
    CU_ASSERT(has_ext_oid(c, "2.5.29.60"));
    CU_ASSERT(has_ext_oid(d, "2.5.29.60"));
    X509_CRL_free(c);
    X509_CRL_free(d);
    fx_teardown(&f);
}

static void test_crl_held_entry_has_hold_instruction(void)
{
    fx f;
    fx_setup(&f);
    X509 *x = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    set_status(&f, S1, sizeof S1, QTSP_CERT_ON_HOLD, QTSP_REASON_CERTIFICATE_HOLD, f.t0 + 48 * 3600,
               0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    CU_ASSERT(openssl_verifies(&f, "qualified"));
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    X509_REVOKED *r = find_entry(c, S1, sizeof S1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 6);
    ASN1_OBJECT *hi = X509_REVOKED_get_ext_d2i(r, NID_hold_instruction_code, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hi);
    char txt[64];
    OBJ_obj2txt(txt, sizeof txt, hi, 1);
    CU_ASSERT_STRING_EQUAL(txt, "1.2.840.10040.2.2");
    ASN1_OBJECT_free(hi);
    CU_ASSERT_PTR_NULL(X509_REVOKED_get_ext_d2i(r, NID_invalidity_date, NULL, NULL));
    X509_CRL_free(c);
    X509_free(x);
    fx_teardown(&f);
}

static void test_crl_terminated_has_key_compromise_and_invalidity_date(void)
{
    fx f;
    fx_setup(&f);
    X509 *x = leaf(&f, S2, sizeof S2, f.t0 + 86400 * 365);
    set_status(&f, S2, sizeof S2, QTSP_CERT_REVOKED, QTSP_REASON_KEY_COMPROMISE, 0, f.t0 - 3600);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    X509_REVOKED *r = find_entry(c, S2, sizeof S2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 1);
    ASN1_TIME *rd = ASN1_TIME_set(NULL, f.t0);
    CU_ASSERT_EQUAL(ASN1_TIME_compare(X509_REVOKED_get0_revocationDate(r), rd), 0);
    ASN1_TIME_free(rd);
    ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(r, NID_invalidity_date, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inv);
    ASN1_TIME *want = ASN1_TIME_set(NULL, f.t0 - 3600);
    CU_ASSERT_EQUAL(ASN1_TIME_compare(inv, want), 0);
    ASN1_TIME_free(want);
    ASN1_GENERALIZEDTIME_free(inv);
    CU_ASSERT_PTR_NULL(X509_REVOKED_get_ext_d2i(r, NID_hold_instruction_code, NULL, NULL));
    /* no removeFromCRL anywhere in a full CRL */
    X509_CRL_free(c);
    X509_free(x);
    fx_teardown(&f);
}

static void test_crl_unspecified_reason_is_omitted(void)
{
    fx f;
    fx_setup(&f);
    X509 *x = leaf(&f, S3, sizeof S3, f.t0 + 86400 * 365);
    set_status(&f, S3, sizeof S3, QTSP_CERT_REVOKED, QTSP_REASON_UNSPECIFIED, 0, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    X509_REVOKED *r = find_entry(c, S3, sizeof S3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), -1);
    CU_ASSERT_EQUAL(X509_REVOKED_get_ext_count(r), 0);
    X509_CRL_free(c);
    X509_free(x);
    fx_teardown(&f);
}

static void test_crl_release_leaves_full_and_shows_remove_from_crl_in_delta(void)
{
    fx f;
    fx_setup(&f);
    X509 *a = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    X509 *b = leaf(&f, S2, sizeof S2, f.t0 + 86400 * 365);
    set_status(&f, S1, sizeof S1, QTSP_CERT_ON_HOLD, 6, f.t0 + 48 * 3600, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK); /* base */
    uint64_t base = 0;
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &base, NULL), QTSP_OK);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL(find_entry(c, S1, sizeof S1));
    X509_CRL_free(c);

    /* nothing changed: nothing due */
    advance(5);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(n, base);

    set_status(&f, S1, sizeof S1, QTSP_CERT_VALID, 0, 0, 0); /* released */
    set_status(&f, S2, sizeof S2, QTSP_CERT_REVOKED, QTSP_REASON_SUPERSEDED, 0, 0);
    advance(5);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT(openssl_verifies(&f, "qualified"));
    CU_ASSERT(openssl_verifies(&f, "qualified-delta"));
    c = load_crl(&f, "qualified");
    X509_CRL *d = load_crl(&f, "qualified-delta");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c && d);
    CU_ASSERT(ext_int(c, NID_crl_number, NULL) > base);
    CU_ASSERT_PTR_NULL(find_entry(c, S1, sizeof S1));
    CU_ASSERT_PTR_NOT_NULL(find_entry(c, S2, sizeof S2));
    CU_ASSERT_EQUAL(n_entries(c), 1);
    /* delta against the old base */
    CU_ASSERT_EQUAL(ext_int(d, NID_delta_crl, NULL), base);
    CU_ASSERT(ext_int(d, NID_crl_number, NULL) > ext_int(c, NID_crl_number, NULL));
    X509_REVOKED *r = find_entry(d, S1, sizeof S1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 8);
    r = find_entry(d, S2, sizeof S2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 4);
    X509_CRL_free(c);
    X509_CRL_free(d);

    /* the next rebase drops the release from the delta: removeFromCRL only
     * relative to a base that listed the hold */
    advance(3600);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    d = load_crl(&f, "qualified-delta");
    CU_ASSERT_EQUAL(n_entries(d), 0);
    CU_ASSERT_EQUAL(ext_int(d, NID_delta_crl, NULL), ext_int(d, NID_crl_number, NULL) - 1);
    X509_CRL_free(d);
    X509_free(a);
    X509_free(b);
    fx_teardown(&f);
}

static void test_crl_lapsed_hold_leaves_full_and_shows_remove_from_crl_in_delta(void)
{
    fx f;
    fx_setup(&f);
    X509 *a = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    set_status(&f, S1, sizeof S1, QTSP_CERT_ON_HOLD, 6, f.t0 + 100, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    uint64_t base = 0;
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &base, NULL), QTSP_OK);
    advance(200); /* past hold_until; no status write happened */
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    X509_CRL *c = load_crl(&f, "qualified"), *d = load_crl(&f, "qualified-delta");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c && d);
    CU_ASSERT(ext_int(c, NID_crl_number, NULL) > base);
    CU_ASSERT_PTR_NULL(find_entry(c, S1, sizeof S1));
    CU_ASSERT_EQUAL(ext_int(d, NID_delta_crl, NULL), base);
    X509_REVOKED *r = find_entry(d, S1, sizeof S1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 8);
    X509_CRL_free(c);
    X509_CRL_free(d);
    X509_free(a);
    fx_teardown(&f);
}

static void test_crl_held_entry_stays_across_rebases_until_released(void)
{
    fx f;
    fx_setup(&f);
    X509 *a = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    set_status(&f, S1, sizeof S1, QTSP_CERT_ON_HOLD, 6, f.t0 + 48 * 3600, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    for (int i = 0; i < 3; i++) {
        advance(3600 * 2); /* past publish_interval: a rebase each time */
        CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
        X509_CRL *c = load_crl(&f, "qualified");
        X509_REVOKED *r = c ? find_entry(c, S1, sizeof S1) : NULL;
        CU_ASSERT_PTR_NOT_NULL(r);
        CU_ASSERT(r && entry_reason(r) == 6);
        ASN1_TIME *tu = ASN1_TIME_set(NULL, (time_t)(g_now_ms / 1000));
        CU_ASSERT(c && ASN1_TIME_compare(X509_CRL_get0_lastUpdate(c), tu) == 0);
        ASN1_TIME_free(tu);
        X509_CRL_free(c);
    }
    X509_free(a);
    fx_teardown(&f);
}

static void test_crl_number_increases_and_survives_reopen(void)
{
    fx f;
    fx_setup(&f);
    uint64_t n1, n2, n3, r1, r2;
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n1, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "root", &r1, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n2, NULL), QTSP_OK);
    CU_ASSERT(n2 > n1);
    qtsp_crl_publisher_free(f.pub_);
    f.pub_ = NULL;
    qtsp_store_close(f.store);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_open(f.store_dir, 64, &f.store), QTSP_OK);
    fx_open_publisher(&f);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n3, NULL), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK); /* memory empty: due */
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n3, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "root", &r2, NULL), QTSP_OK);
    CU_ASSERT(n3 > n2);
    CU_ASSERT(r2 > r1);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_EQUAL(ext_int(c, NID_crl_number, NULL), n3);
    X509_CRL_free(c);
    fx_teardown(&f);
}

static void test_crl_expired_revoked_cert_stays_listed(void)
{
    fx f;
    fx_setup(&f);
    X509 *x = leaf(&f, S3, sizeof S3, f.t0 + 60);
    set_status(&f, S3, sizeof S3, QTSP_CERT_REVOKED, QTSP_REASON_CESSATION, 0, 0);
    advance(86400 * 2); /* the certificate has expired */
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    X509_REVOKED *r = find_entry(c, S3, sizeof S3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(entry_reason(r), 5);
    /* ExpiredCertsOnCRL = GeneralizedTime of the issuing CA's notBefore */
    ASN1_OBJECT *o = OBJ_txt2obj("2.5.29.60", 1);
    int i = X509_CRL_get_ext_by_OBJ(c, o, -1);
    ASN1_OBJECT_free(o);
    CU_ASSERT_FATAL(i >= 0);
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(X509_CRL_get_ext(c, i));
    const unsigned char *p = ASN1_STRING_get0_data(v);
    ASN1_GENERALIZEDTIME *gt = d2i_ASN1_GENERALIZEDTIME(NULL, &p, ASN1_STRING_length(v));
    CU_ASSERT_PTR_NOT_NULL_FATAL(gt);
    CU_ASSERT_EQUAL(p, ASN1_STRING_get0_data(v) + ASN1_STRING_length(v));
    CU_ASSERT_EQUAL(ASN1_TIME_compare(gt, X509_get0_notBefore(f.ica)), 0);
    ASN1_GENERALIZEDTIME_free(gt);
    X509_CRL_free(c);
    X509_free(x);
    fx_teardown(&f);
}

typedef struct order_ctx {
    unsigned char s[16][QTSP_SERIAL_MAX];
    size_t n[16], k;
} order_ctx;

static qtsp_status order_fn(void *ctx, const unsigned char *s, size_t n, const qtsp_cert_status *st)
{
    order_ctx *o = ctx;
    (void)st;
    if (o->k < 16) {
        memcpy(o->s[o->k], s, n);
        o->n[o->k++] = n;
    }
    return QTSP_OK;
}

static void test_crl_entries_follow_revoked_index_order(void)
{
    fx f;
    fx_setup(&f);
    /* mixed lengths and values, inserted out of order */
    static const unsigned char s[][9] = {
        {8, 0x7f, 1, 2, 3, 4, 5, 6, 7}, {8, 0x12, 1, 2, 3, 4, 5, 6, 7}, {3, 0xff, 0x01, 0x02, 0},
        {8, 0x40, 9, 9, 9, 9, 9, 9, 9}, {1, 0x05, 0, 0, 0, 0, 0, 0, 0},
    };
    X509 *xs[5];
    for (int i = 0; i < 5; i++) {
        xs[i] = leaf(&f, s[i] + 1, s[i][0], f.t0 + 86400 * 365);
        set_status(&f, s[i] + 1, s[i][0], QTSP_CERT_REVOKED, QTSP_REASON_SUPERSEDED, 0, 0);
    }
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    order_ctx o = {.k = 0};
    qtsp_txn *txn = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(f.store, 0, &txn), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_certdb_revoked_each(txn, order_fn, &o), QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT_EQUAL_FATAL(o.k, 5);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_EQUAL_FATAL(n_entries(c), 5);
    STACK_OF(X509_REVOKED) *sk = X509_CRL_get_REVOKED(c);
    for (int i = 0; i < 5; i++) {
        BIGNUM *bn =
            ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(sk, i)), NULL);
        unsigned char b[32];
        int bl = BN_bn2bin(bn, b);
        BN_free(bn);
        CU_ASSERT((size_t)bl == o.n[i] && memcmp(b, o.s[i], o.n[i]) == 0);
    }
    /* documented order: byte-wise on the normalised serial, numeric among
     * equal lengths: 0x12.. < 0x40.. < 0x7f.. */
    CU_ASSERT(o.n[0] == 1 || o.s[0][0] <= o.s[1][0]);
    for (int i = 1; i < 5; i++) {
        size_t m = o.n[i - 1] < o.n[i] ? o.n[i - 1] : o.n[i];
        int cmp = memcmp(o.s[i - 1], o.s[i], m);
        CU_ASSERT(cmp < 0 || (cmp == 0 && o.n[i - 1] < o.n[i]));
    }
    X509_CRL_free(c);
    for (int i = 0; i < 5; i++)
        X509_free(xs[i]);
    fx_teardown(&f);
}

static void test_crl_root_lists_revoked_issuing_ca_and_qualified_does_not(void)
{
    fx f;
    fx_setup(&f);
    set_status(&f, ICA_SERIAL, sizeof ICA_SERIAL, QTSP_CERT_REVOKED, QTSP_REASON_CA_COMPROMISE, 0,
               0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    CU_ASSERT(openssl_verifies(&f, "root"));
    X509_CRL *r = load_crl(&f, "root"), *q = load_crl(&f, "qualified"),
             *d = load_crl(&f, "qualified-delta");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r && q && d);
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_CRL_get_issuer(r), X509_get_subject_name(f.root)), 0);
    X509_REVOKED *e = find_entry(r, ICA_SERIAL, sizeof ICA_SERIAL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(entry_reason(e), 2);
    CU_ASSERT_PTR_NULL(find_entry(q, ICA_SERIAL, sizeof ICA_SERIAL));
    CU_ASSERT_PTR_NULL(find_entry(d, ICA_SERIAL, sizeof ICA_SERIAL));
    CU_ASSERT_EQUAL(ext_int(r, NID_crl_number, NULL), 1); /* own sequence */
    CU_ASSERT(has_ext_oid(r, "2.5.29.60"));
    X509_CRL_free(r);
    X509_CRL_free(q);
    X509_CRL_free(d);
    fx_teardown(&f);
}

static void test_crl_openssl_verify_rejects_revoked_leaf(void)
{
    fx f;
    fx_setup(&f);
    X509 *good = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    X509 *bad = leaf(&f, S2, sizeof S2, f.t0 + 86400 * 365);
    set_status(&f, S2, sizeof S2, QTSP_CERT_REVOKED, QTSP_REASON_KEY_COMPROMISE, 0, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    char p1[700], p2[700], cmd[3000];
    snprintf(p1, sizeof p1, "%s/good.pem", f.dir);
    snprintf(p2, sizeof p2, "%s/bad.pem", f.dir);
    FILE *fp = fopen(p1, "w");
    PEM_write_X509(fp, good);
    fclose(fp);
    fp = fopen(p2, "w");
    PEM_write_X509(fp, bad);
    fclose(fp);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl crl -inform DER -in public/crl/qualified.crl -out q.pem && "
             "openssl crl -inform DER -in public/crl/root.crl -out r.pem && cat q.pem r.pem > "
             "crls.pem",
             f.dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl verify -crl_check_all -CAfile chain.pem -CRLfile crls.pem "
             "good.pem >/dev/null 2>&1",
             f.dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl verify -crl_check -CAfile chain.pem -CRLfile crls.pem bad.pem "
             "2>&1 | grep -q 'certificate revoked'",
             f.dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    X509_free(good);
    X509_free(bad);
    fx_teardown(&f);
}

static void test_crl_policy_rejects_next_update_above_24h(void)
{
    qtsp_crl_policy pol;
    const char *d = qtest_tmpdir("crlpol");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(path, sizeof path, "%s/crl.yaml", dir);
    write_file(path, "next_update: 25h\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(path, &pol), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "next_update"));
    qtsp_err_clear();
    write_file(path, "next_update: 2h\npublish_interval: 2h\n");
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(path, &pol), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "publish_interval"));
    qtsp_err_clear();
    write_file(path, "hold_instruction: shout\n");
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(path, &pol), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "hold_instruction"));
    qtsp_err_clear();
    write_file(path, "next_update: 12h\nsurprise: 1\n");
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(path, &pol), QTSP_ERR_CONFIG);
    qtsp_err_clear();
    write_file(path, "next_update: 12h\npublish_interval: 30m\ndebounce: 3s\n"
                     "hold_instruction: reject\ndelta: false\n");
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(path, &pol), QTSP_OK);
    CU_ASSERT_EQUAL(pol.next_update, 12 * 3600);
    CU_ASSERT_EQUAL(pol.publish_interval, 1800);
    CU_ASSERT_EQUAL(pol.debounce, 3);
    CU_ASSERT_EQUAL(pol.delta, 0);
    CU_ASSERT_EQUAL(pol.hold_oid[pol.hold_oid_len - 1], 3);
    /* the shipped policy loads */
    char shipped[1024];
    const char *me = __FILE__; /* absolute in CMake builds: <src>/tests/unit/test_crl.c */
    const char *cut = strstr(me, "tests/unit/test_crl.c");
    snprintf(shipped, sizeof shipped, "%.*spolicies/crl.yaml", cut ? (int)(cut - me) : 0, me);
    CU_ASSERT_EQUAL(qtsp_crl_policy_load(shipped, &pol), QTSP_OK);
    CU_ASSERT(pol.next_update <= 24 * 3600);
    qtest_rmtree(dir);
}

/* ---------------------------------------------------------------- HTTP */

static int curl_status(unsigned port, const char *path, const char *extra, char *hdrs, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -D - %s 'http://127.0.0.1:%u%s' 2>/dev/null",
             extra, port, path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(hdrs, 1, cap - 1, p);
    hdrs[n] = 0;
    pclose(p);
    for (size_t i = 0; i < n; i++) /* header names compare case-insensitively */
        hdrs[i] = (char)tolower((unsigned char)hdrs[i]);
    int st = 0;
    sscanf(hdrs, "http/%*s %d", &st);
    return st;
}

static void test_crl_http_serves_der_with_cache_headers_and_304(void)
{
    fx f;
    fx_setup(&f);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    qtsp_route routes[] = {{"GET", "/crl/", 1, 0, NULL, qtsp_crl_http_get, f.pub_, "crl"}};
    qtsp_http_opts o = {.listen = "127.0.0.1:0", .workers = 2, .conn_timeout_s = 5};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_http_start(&o, routes, 1, NULL, NULL, &srv), QTSP_OK);
    unsigned port = qtsp_http_port(srv);
    char h[4096], cmd[1024];
    CU_ASSERT_EQUAL(curl_status(port, "/crl/qualified.crl", "", h, sizeof h), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(h, "content-type: application/pkix-crl"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h, "last-modified: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(h, "expires: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(h, "cache-control: public, max-age=60"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h, "etag: \"qualified-1\""));
    CU_ASSERT_EQUAL(
        curl_status(port, "/crl/qualified.crl", "-H 'If-None-Match: \"qualified-1\"'", h, sizeof h),
        304);
    CU_ASSERT_EQUAL(
        curl_status(port, "/crl/qualified.crl", "-H 'If-None-Match: \"qualified-0\"'", h, sizeof h),
        200);
    CU_ASSERT_EQUAL(curl_status(port, "/crl/nope.crl", "", h, sizeof h), 404);
    CU_ASSERT_EQUAL(curl_status(port, "/crl/qualified", "", h, sizeof h), 404);
    CU_ASSERT_EQUAL(curl_status(port, "/crl/root.crl", "", h, sizeof h), 200);
    /* the body is exactly the published file */
    snprintf(cmd, sizeof cmd,
             "curl -s 'http://127.0.0.1:%u/crl/qualified-delta.crl' | cmp -s - "
             "'%s/crl/qualified-delta.crl'",
             port, f.pub);
    CU_ASSERT_EQUAL(system(cmd), 0);
    qtsp_http_stop(srv);
    fx_teardown(&f);
}

static void test_crl_thread_publishes_status_change_within_seconds(void)
{
    fx f;
    fx_setup(&f);
    qtsp_clock_set(NULL, NULL); /* real time for the background thread */
    X509 *x = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    CU_ASSERT_EQUAL(qtsp_crl_start(f.pub_), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_start(f.pub_), QTSP_ERR_STATE);
    qtsp_err_clear();
    uint64_t n0 = 0, n = 0;
    for (int i = 0; i < 50 && qtsp_crl_current(f.pub_, "qualified", &n0, NULL) != QTSP_OK; i++)
        usleep(100000);
    qtsp_err_clear();
    CU_ASSERT_FATAL(n0 > 0);
    set_status(&f, S1, sizeof S1, QTSP_CERT_REVOKED, QTSP_REASON_KEY_COMPROMISE, 0, 0);
    int seen = 0;
    for (int i = 0; i < 80 && !seen; i++) { /* debounce 1s + 1s tick */
        usleep(100000);
        if (qtsp_crl_current(f.pub_, "qualified", &n, NULL) == QTSP_OK && n > n0)
            seen = 1;
    }
    CU_ASSERT(seen);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NOT_NULL(c ? find_entry(c, S1, sizeof S1) : NULL);
    X509_CRL_free(c);
    X509_free(x);
    fx_teardown(&f);
}

static int in_revoked_index(fx *f, const unsigned char *s, size_t n)
{
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(f->store, 0, &t), QTSP_OK);
    const void *v;
    size_t vl;
    int r = qtsp_txn_get0(t, QTSP_T_REVOKED, s, n, &v, &vl) == QTSP_OK;
    qtsp_txn_abort(t);
    return r;
}

static void test_crl_rebase_forgets_released_entries_from_index_and_delta(void)
{
    fx f;
    fx_setup(&f);
    X509 *a = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    X509 *b = leaf(&f, S2, sizeof S2, f.t0 + 86400 * 365);
    set_status(&f, S1, sizeof S1, QTSP_CERT_ON_HOLD, 6, f.t0 + 48 * 3600, 0);
    set_status(&f, S2, sizeof S2, QTSP_CERT_ON_HOLD, 6, f.t0 + 48 * 3600, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK); /* base listing both holds */
    advance(5);
    set_status(&f, S1, sizeof S1, QTSP_CERT_VALID, 0, 0, 0); /* released */
    advance(5);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK); /* refresh: same base */
    X509_CRL *d = load_crl(&f, "qualified-delta");
    X509_REVOKED *r = d ? find_entry(d, S1, sizeof S1) : NULL;
    CU_ASSERT_PTR_NOT_NULL(r);
    CU_ASSERT(r && entry_reason(r) == 8);
    X509_CRL_free(d);
    CU_ASSERT(in_revoked_index(&f, S1, sizeof S1)); /* the delta still needs it */

    /* rebase: no delta will be against a base that listed the hold */
    advance(3600);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT(!in_revoked_index(&f, S1, sizeof S1));
    CU_ASSERT(in_revoked_index(&f, S2, sizeof S2)); /* still on hold */
    d = load_crl(&f, "qualified-delta");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(n_entries(d), 0);
    X509_CRL_free(d);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_PTR_NULL(c ? find_entry(c, S1, sizeof S1) : NULL);
    CU_ASSERT_PTR_NOT_NULL(c ? find_entry(c, S2, sizeof S2) : NULL);
    X509_CRL_free(c);

    /* released after the rebase: kept until the next one, shown in the delta */
    advance(5);
    set_status(&f, S2, sizeof S2, QTSP_CERT_VALID, 0, 0, 0);
    advance(5);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT(in_revoked_index(&f, S2, sizeof S2));
    d = load_crl(&f, "qualified-delta");
    r = d ? find_entry(d, S2, sizeof S2) : NULL;
    CU_ASSERT(r && entry_reason(r) == 8);
    CU_ASSERT_PTR_NULL(d ? find_entry(d, S1, sizeof S1) : NULL);
    X509_CRL_free(d);
    advance(3600);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT(!in_revoked_index(&f, S2, sizeof S2));
    CU_ASSERT(openssl_verifies(&f, "qualified"));
    CU_ASSERT(openssl_verifies(&f, "qualified-delta"));
    X509_free(a);
    X509_free(b);
    fx_teardown(&f);
}

static qtsp_crl_publisher *second_publisher(fx *f)
{
    qtsp_crl_publisher *p = NULL;
    CU_ASSERT_EQUAL(qtsp_crl_publisher_new(f->policy, f->pub, f->ica, qtest_key(f->ica_key),
                                           f->root, qtest_key(f->root_key),
                                           "http://127.0.0.1:8080/", f->store, &p),
                    QTSP_OK);
    return p;
}

static void test_crl_publisher_serves_what_another_publisher_published(void)
{
    fx f;
    fx_setup(&f);
    X509 *x = leaf(&f, S1, sizeof S1, f.t0 + 86400 * 365);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 1), QTSP_OK);
    uint64_t n1 = 0, n2 = 0, n = 0, r1 = 0, r2 = 0, r = 0, dn = 0;
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n1, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "root", &r1, NULL), QTSP_OK);

    /* the other one (qtsp crl publish beside qtsp serve) */
    qtsp_crl_publisher *other = second_publisher(&f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    advance(5);
    set_status(&f, S1, sizeof S1, QTSP_CERT_REVOKED, QTSP_REASON_KEY_COMPROMISE, 0, 0);
    CU_ASSERT_EQUAL(qtsp_crl_publish(other, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(other, "qualified", &n2, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(other, "root", &r2, NULL), QTSP_OK);
    CU_ASSERT(n2 > n1 && r2 > r1);

    /* the first one picks up the files instead of publishing again */
    advance(1);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified-delta", &dn, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "root", &r, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(n, n2);
    CU_ASSERT_EQUAL(dn, n2 + 1);
    CU_ASSERT_EQUAL(r, r2);
    X509_CRL *c = load_crl(&f, "qualified");
    CU_ASSERT_EQUAL(ext_int(c, NID_crl_number, NULL), n2); /* no number was burnt */
    CU_ASSERT_PTR_NOT_NULL(c ? find_entry(c, S1, sizeof S1) : NULL);
    X509_CRL_free(c);

    /* a file that does not verify with the CA key is not served */
    CU_ASSERT_EQUAL(qtsp_crl_publish(other, 1), QTSP_OK);
    uint64_t n3 = 0;
    CU_ASSERT_EQUAL(qtsp_crl_current(other, "qualified", &n3, NULL), QTSP_OK);
    char path[700];
    snprintf(path, sizeof path, "%s/crl/qualified.crl", f.pub);
    FILE *fp = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fseek(fp, -3, SEEK_END); /* inside the signature */
    int ch = fgetc(fp);
    fseek(fp, -3, SEEK_END);
    fputc(ch ^ 0x01, fp);
    fclose(fp);
    CU_ASSERT_EQUAL(qtsp_crl_publish(f.pub_, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(f.pub_, "qualified", &n, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(n, n2);
    qtsp_err_clear();
    qtsp_crl_publisher_free(other);
    X509_free(x);
    fx_teardown(&f);
}

static void test_crl_thread_picks_up_another_publication_within_seconds(void)
{
    fx f;
    fx_setup(&f);
    qtsp_clock_set(NULL, NULL); /* real time for the background thread */
    CU_ASSERT_EQUAL(qtsp_crl_start(f.pub_), QTSP_OK);
    uint64_t n0 = 0, n = 0, n2 = 0;
    for (int i = 0; i < 50 && qtsp_crl_current(f.pub_, "qualified", &n0, NULL) != QTSP_OK; i++)
        usleep(100000);
    qtsp_err_clear();
    CU_ASSERT_FATAL(n0 > 0);
    qtsp_crl_publisher *other = second_publisher(&f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    CU_ASSERT_EQUAL(qtsp_crl_publish(other, 1), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_crl_current(other, "qualified", &n2, NULL), QTSP_OK);
    CU_ASSERT(n2 > n0);
    int seen = 0;
    for (int i = 0; i < 25 && !seen; i++) { /* one tick: about a second */
        usleep(100000);
        if (qtsp_crl_current(f.pub_, "qualified", &n, NULL) == QTSP_OK && n == n2)
            seen = 1;
    }
    CU_ASSERT(seen);
    qtsp_crl_publisher_free(other);
    fx_teardown(&f);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_crl_empty_full_and_delta_verify),
        QTEST(test_crl_held_entry_has_hold_instruction),
        QTEST(test_crl_terminated_has_key_compromise_and_invalidity_date),
        QTEST(test_crl_unspecified_reason_is_omitted),
        QTEST(test_crl_release_leaves_full_and_shows_remove_from_crl_in_delta),
        QTEST(test_crl_lapsed_hold_leaves_full_and_shows_remove_from_crl_in_delta),
        QTEST(test_crl_held_entry_stays_across_rebases_until_released),
        QTEST(test_crl_number_increases_and_survives_reopen),
        QTEST(test_crl_expired_revoked_cert_stays_listed),
        QTEST(test_crl_entries_follow_revoked_index_order),
        QTEST(test_crl_root_lists_revoked_issuing_ca_and_qualified_does_not),
        QTEST(test_crl_openssl_verify_rejects_revoked_leaf),
        QTEST(test_crl_policy_rejects_next_update_above_24h),
        QTEST(test_crl_http_serves_der_with_cache_headers_and_304),
        QTEST(test_crl_thread_publishes_status_change_within_seconds),
        QTEST(test_crl_rebase_forgets_released_entries_from_index_and_delta),
        QTEST(test_crl_publisher_serves_what_another_publisher_published),
        QTEST(test_crl_thread_picks_up_another_publication_within_seconds),
    };
    return qtest_run("crl", cases, sizeof cases / sizeof cases[0]);
}
