/* Unit tests for ra/: enrolment validation, issuance with a real SoftHSM2
 * token and LMDB store, and the lifecycle state machine (every allowed and
 * forbidden transition, roles, the lapse at exactly hold_until). */
#define _GNU_SOURCE 1 /* memmem */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/hsm.h"
#include "ca/store.h"
#include "ca/subkey.h"
#include "core/clock.h"
#include "core/http.h"
#include "ra/activation.h"
#include "ra/ra.h"
#include "ra/validate.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_cert.h"
#include "tests/lib/qtest_qc.h"

#define POOL_SIZE 4

static char g_dir[512];
static char g_policies[1024];
static char g_secrets[1024];
static qtsp_store *g_store;
static qtsp_hsm *g_hsm;
static X509 *g_ca;
static EVP_PKEY *g_ca_key;
static qtsp_ra *g_ra;
static qtsp_actor g_officer, g_hotline, g_office, g_auditor;
static int64_t g_clock_ms;
static int g_clock_fixed;

static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return g_clock_ms;
}

static void set_time(time_t t)
{
    g_clock_ms = (int64_t)t * 1000;
    if (!g_clock_fixed) {
        qtsp_clock_set(test_clock, NULL);
        g_clock_fixed = 1;
    }
}

static void real_time(void)
{
    qtsp_clock_set(NULL, NULL);
    g_clock_fixed = 0;
}

static int suite_init(void)
{
    const char *d = qtest_tmpdir("ra");
    if (!d)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    /* the repository's policies, with a small key pool */
    snprintf(g_policies, sizeof g_policies, "%s/policies", g_dir);
    snprintf(g_secrets, sizeof g_secrets, "%s/secrets", g_dir);
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "mkdir -m 700 %s && cp -r %s/policies %s && "
             "printf 'version: 1\nsize: %d\nlow_water: 2\nbatch: 3\n' >%s/keypool.yaml",
             g_secrets, qtest_src_dir(), g_dir, POOL_SIZE, g_policies);
    if (system(cmd) != 0)
        return -1;
    if (qtest_softhsm_token(g_dir, "ra-test") != 0)
        return -1;
    qtsp_err_clear();
    if (qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "ra-test", QTEST_PIN, &g_hsm) != QTSP_OK)
        return -1;
    char store[600];
    snprintf(store, sizeof store, "%s/store", g_dir);
    if (qtsp_store_open(store, 64, &g_store) != QTSP_OK)
        return -1;
    g_ca_key = EVP_EC_gen("P-384");
    /* a software issuing CA is enough: the RA signs through EVP_PKEY whatever
     * holds the key (the integration tests use the token's) */
    time_t now = time(NULL);
    g_ca = qtest_mkcert(NULL, g_ca_key, g_ca_key, "Test Issuing CA",
                        (const unsigned char *)"\x10\x92", 2, 1, now - 86400, now + 86400L * 3650);
    if (!g_ca)
        return -1;
    qtsp_ra_deps deps = {
        g_store, g_hsm, g_ca, qtest_key(g_ca_key), g_policies, g_secrets, "http://127.0.0.1:8080",
        NULL};
    if (qtsp_ra_new(&deps, &g_ra) != QTSP_OK) {
        fprintf(stderr, "ra_new: %s\n", qtsp_err_message());
        return -1;
    }
    qtsp_operator op = {"1", "officer", QTSP_ROLE_RA_OFFICER};
    qtsp_actor_from_operator(&op, &g_officer);
    qtsp_operator hl = {"2", "hotline", QTSP_ROLE_HOTLINE};
    qtsp_actor_from_operator(&hl, &g_hotline);
    qtsp_operator of = {"3", "office", QTSP_ROLE_OFFICE};
    qtsp_actor_from_operator(&of, &g_office);
    qtsp_operator au = {"4", "auditor", QTSP_ROLE_AUDITOR};
    qtsp_actor_from_operator(&au, &g_auditor);
    return 0;
}

static int suite_clean(void)
{
    qtsp_ra_free(g_ra);
    X509_free(g_ca);
    EVP_PKEY_free(g_ca_key);
    qtsp_hsm_free(g_hsm);
    qtsp_store_close(g_store);
    qtest_rmtree(g_dir);
    return 0;
}

/* store fingerprint: audit count + status generation + subjects */
static void store_state(uint64_t out[3])
{
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_txn_count(t, QTSP_T_AUDIT, &out[0]) == QTSP_OK);
    CU_ASSERT(qtsp_txn_counter_get(t, "status_gen", &out[1]) == QTSP_OK);
    CU_ASSERT(qtsp_txn_count(t, QTSP_T_SUBJECTS, &out[2]) == QTSP_OK);
    qtsp_txn_abort(t);
}

static json_t *person(const char *nid, const char *phone)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "given_name", "Мария", "surname", "Иванова",
                     "country", "BG", "national_id", nid, "email", "maria@example.bg", "phone",
                     phone, "package", "free");
}

static qtsp_status enrol(const char *nid, const char *phone, char id[40])
{
    json_t *in = person(nid, phone);
    qtsp_err_clear();
    qtsp_status rc = qtsp_ra_enrol(g_ra, &g_officer, in, id);
    json_decref(in);
    return rc;
}

/* The token label the store records for a certificate. */
static void key_label_of(const unsigned char *serial, size_t slen, char label[64])
{
    qtsp_txn *t = NULL;
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    label[0] = '\0';
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_certdb_get(t, serial, slen, &rec) == QTSP_OK);
    qtsp_txn_abort(t);
    snprintf(label, 64, "%s", rec.key_label);
    qtsp_cert_record_cleanup(&rec);
}

/* The stored credential record of a certificate (new reference), or NULL. */
static json_t *credential_record(const char *hex)
{
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 1 << 16);
    json_t *rec = NULL;
    if (qtsp_txn_get(t, QTSP_T_CREDENTIALS, hex, strlen(hex), &v) == QTSP_OK && v.len > 1)
        rec = json_loadb((const char *)v.data + 1, v.len - 1, 0, NULL);
    qtsp_txn_abort(t);
    qtsp_buf_cleanup(&v);
    qtsp_err_clear();
    return rec;
}

/* The credential's key opens (ca/subkey.h: unwrapped into a sensitive,
 * non-extractable, sign-only session object after the token checked its
 * binding to the serial), is the certificate's key and signs for it. */
static int credential_signs_for(const char *hex, EVP_PKEY *cert_pub)
{
    json_t *cred = credential_record(hex);
    qtsp_key *k = NULL;
    int ok = cred != NULL && qtsp_subkey_open(g_hsm, cred, &k) == QTSP_OK &&
             EVP_PKEY_eq(qtsp_key_get0_pubkey(k), cert_pub) == 1;
    qtsp_sigalg alg;
    unsigned char dg[32] = {1, 2, 3}, sig[QTSP_KEY_SIG_MAX];
    size_t siglen = sizeof sig;
    ok = ok && qtsp_key_sigalg(k, EVP_sha256(), &alg) == QTSP_OK &&
         qtsp_key_sign_digest(k, &alg, dg, 32, sig, &siglen) == QTSP_OK;
    EVP_PKEY_CTX *vc = ok ? EVP_PKEY_CTX_new(cert_pub, NULL) : NULL;
    ok = ok && vc && EVP_PKEY_verify_init(vc) == 1 && EVP_PKEY_verify(vc, sig, siglen, dg, 32) == 1;
    EVP_PKEY_CTX_free(vc);
    qtsp_key_free(k);
    json_decref(cred);
    qtsp_err_clear();
    return ok;
}

/* The certificate of an issuance (caller frees). */
static X509 *issued_cert(const qtsp_issued *is)
{
    BIO *b = BIO_new_mem_buf(is->certificate_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

static void issue_for(const char *nid, const char *phone, unsigned char *serial, size_t *slen,
                      qtsp_issued *is)
{
    char id[40];
    CU_ASSERT_FATAL(enrol(nid, phone, id) == QTSP_OK);
    qtsp_err_clear();
    qtsp_status rc = qtsp_ra_issue(g_ra, &g_officer, id, is);
    if (rc)
        fprintf(stderr, "issue: %s\n", qtsp_err_message());
    CU_ASSERT_FATAL(rc == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_serial_from_hex(is->serial_hex, serial, slen) == QTSP_OK);
}

/* issue_for when only the serial is needed */
static void issue_serial(const char *nid, const char *phone, unsigned char *serial, size_t *slen)
{
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for(nid, phone, serial, slen, &is);
    qtsp_issued_cleanup(&is);
}

static const char *status_of(const unsigned char *serial, size_t slen, char *buf, size_t cap)
{
    json_t *o = NULL;
    qtsp_err_clear();
    if (qtsp_ra_cert_status(g_ra, serial, slen, &o) != QTSP_OK)
        return "error";
    snprintf(buf, cap, "%s", json_string_value(json_object_get(o, "status")));
    json_decref(o);
    return buf;
}

/* The stored subject record (JSON after its version byte), or NULL. */
static json_t *subject_record(const char *id)
{
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 1 << 16);
    CU_ASSERT(qtsp_txn_get(t, QTSP_T_SUBJECTS, id, strlen(id), &v) == QTSP_OK);
    qtsp_txn_abort(t);
    json_t *rec = v.len > 1 ? json_loadb((const char *)v.data + 1, v.len - 1, 0, NULL) : NULL;
    qtsp_buf_cleanup(&v);
    return rec;
}

static void expect_invalid(json_t *in, const char *field)
{
    char id[40];
    uint64_t before[3], after[3];
    store_state(before);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_enrol(g_ra, &g_officer, in, id), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), field));
    store_state(after);
    CU_ASSERT(memcmp(before, after, sizeof before) == 0);
    json_decref(in);
}

static void test_validators_accept_and_reject(void)
{
    CU_ASSERT_EQUAL(qtsp_valid_country("BG"), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_valid_country("XX"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_country("bg"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_national_id("BG", "8001010000"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_valid_national_id("BG", "80010100"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_national_id("DE", "12345678"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_valid_national_id("DE", "12AB"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_phone("+359888123456"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_valid_phone("0888123456"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_phone("+0123456789"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_email("a.b@example.org"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_valid_email("no-at.example.org"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_email("a@nodot"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_name("x", "Ана", 64), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_valid_name("x", "", 64), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_name("x", "a\x01", 64), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_name("x", "\xc3\x28", 64), QTSP_ERR_INVALID);
    char longname[200];
    memset(longname, 'a', 65);
    longname[65] = 0;
    CU_ASSERT_EQUAL(qtsp_valid_name("x", longname, 64), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_enrol_rejects_each_bad_field_and_changes_nothing(void)
{
    json_t *in;
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "given_name", json_string(""));
    expect_invalid(in, "given_name");
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "country", json_string("XX"));
    expect_invalid(in, "country");
    in = person("123", "+359888000001");
    expect_invalid(in, "national_id");
    in = person("8001010001", "0888");
    expect_invalid(in, "phone");
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "email", json_string("nope"));
    expect_invalid(in, "email");
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "package", json_string("platinum"));
    expect_invalid(in, "package");
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "favourite_colour", json_string("blue"));
    expect_invalid(in, "favourite_colour");
    in = person("8001010001", "+359888000001");
    json_object_del(in, "surname");
    expect_invalid(in, "surname");
    in = person("8001010001", "+359888000001");
    json_object_set_new(in, "surname", json_integer(5));
    expect_invalid(in, "surname");
}

static void test_enrol_requires_ra_officer(void)
{
    json_t *in = person("8001010002", "+359888000002");
    char id[40];
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_enrol(g_ra, &g_hotline, in, id), QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_enrol(g_ra, &g_office, in, id), QTSP_ERR_FORBIDDEN);
    json_decref(in);
    qtsp_err_clear();
}

static void test_issue_generates_key_in_token_and_stores_everything(void)
{
    size_t keys_before = 0, keys_after = 0;
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &keys_before) == QTSP_OK);
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010003", "+359888000003", serial, &slen, &is);
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &keys_after) == QTSP_OK);
    CU_ASSERT_EQUAL(keys_after, keys_before); /* generated in the token, kept wrapped */
    CU_ASSERT(slen >= 8);                     /* >= 64 bits */
    CU_ASSERT(strlen(is.password) >= 20);
    CU_ASSERT(strncmp(is.otpauth_uri, "otpauth://totp/", 15) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(is.otpauth_uri, "secret="));
    BIO *b = BIO_new_mem_buf(is.certificate_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_EQUAL(X509_verify(x, g_ca_key), 1);
    char sn[80];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_serialNumber, sn, sizeof sn);
    CU_ASSERT_STRING_EQUAL(sn, "PNOBG-8001010003");
    /* every line of the standards.md qualified-certificate checklist */
    qtest_qc_expect e = {"Мария",
                         "Иванова",
                         "BG",
                         "8001010003",
                         "http://127.0.0.1:8080",
                         "http://127.0.0.1:8080/cps",
                         "1.3.6.1.4.1.65535.1.1",
                         3};
    qtest_assert_qualified_cert(x, g_ca, &e);
    /* the certified public key is the credential's wrapped key's, which
     * opens only as a protected token object and signs */
    char label[64];
    key_label_of(serial, slen, label);
    CU_ASSERT(strncmp(label, "kw-", 3) == 0);
    CU_ASSERT(credential_signs_for(is.serial_hex, X509_get0_pubkey(x)));
    X509_free(x);
    /* records: certificate, user (password hashed, OTP wrapped), credential */
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 1 << 20);
    CU_ASSERT(qtsp_txn_get(t, QTSP_T_USERS, is.user_id, strlen(is.user_id), &v) == QTSP_OK);
    CU_ASSERT_PTR_NULL(strstr(qtsp_buf_str(&v), is.password));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&v), "$argon2id$"));
    const char *sec = strstr(is.otpauth_uri, "secret=") + 7;
    char b32[40];
    snprintf(b32, sizeof b32, "%.32s", sec);
    CU_ASSERT_PTR_NULL(strstr(qtsp_buf_str(&v), b32));
    qtsp_buf_reset(&v);
    CU_ASSERT(qtsp_txn_get(t, QTSP_T_CREDENTIALS, is.serial_hex, strlen(is.serial_hex), &v) ==
              QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&v), "\"enabled\":true"));
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(t);
    char st[32];
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "valid");
    qtsp_issued_cleanup(&is);
}

static void test_issue_unknown_subject_and_wrong_role(void)
{
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    uint64_t before[3], after[3];
    size_t kb = 0, ka = 0;
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &kb) == QTSP_OK);
    store_state(before);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_issue(g_ra, &g_officer, "deadbeefdeadbeefdeadbeef", &is),
                    QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_issue(g_ra, &g_hotline, "deadbeefdeadbeefdeadbeef", &is),
                    QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    store_state(after);
    CU_ASSERT(memcmp(before, after, sizeof before) == 0);
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &ka) == QTSP_OK);
    CU_ASSERT_EQUAL(ka, kb);
}

static void test_same_national_id_with_valid_cert_is_409(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    issue_serial("8001010004", "+359888000004", serial, &slen);
    char id[40];
    CU_ASSERT_EQUAL(enrol("8001010004", "+359888000004", id), QTSP_ERR_EXISTS);
    qtsp_err_clear();
}

static void test_hold_release_transitions(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    issue_serial("8001010005", "+359888000005", serial, &slen);
    char st[32];
    time_t until = 0;
    qtsp_err_clear();
    /* roles: only hotline holds; only ra-officer/office release */
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_office, serial, slen, "dob+pin", &until),
                    QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "", &until), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_officer, serial, slen), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "dob+pin", &until), QTSP_OK);
    CU_ASSERT(until >= qtsp_now() + 48 * 3600 - 2 && until <= qtsp_now() + 48 * 3600);
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "on-hold");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "again", &until), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_hotline, serial, slen), QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_auditor, serial, slen), QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_officer, serial, slen), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "valid");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "second call", &until), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_office, serial, slen), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "valid");
    qtsp_err_clear();
}

static void test_hold_lapses_exactly_at_hold_until(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    issue_serial("8001010006", "+359888000006", serial, &slen);
    time_t t0 = qtsp_now();
    set_time(t0);
    time_t until = 0;
    char st[32];
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "lost phone", &until), QTSP_OK);
    CU_ASSERT_EQUAL(until, t0 + 48 * 3600);
    set_time(until - 1);
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "on-hold");
    size_t n = 9;
    CU_ASSERT_EQUAL(qtsp_ra_sweep_lapses(g_ra, until - 1, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    set_time(until);
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "valid");
    /* release after the lapse is an illegal transition */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_officer, serial, slen), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_sweep_lapses(g_ra, until, &n), QTSP_OK);
    CU_ASSERT(n >= 1);
    /* the lapse is recorded and the stored record is valid again */
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    qtsp_cert_status s;
    CU_ASSERT(qtsp_certdb_get_status(t, serial, slen, &s) == QTSP_OK);
    CU_ASSERT_EQUAL(s.state, QTSP_CERT_VALID);
    CU_ASSERT_EQUAL(s.changed_at, until);
    qtsp_buf k, v;
    qtsp_buf_init(&k, 64);
    qtsp_buf_init(&v, 1 << 16);
    CU_ASSERT(qtsp_txn_last(t, QTSP_T_AUDIT, &k, &v) == QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(memmem(v.data, v.len, "cert.hold.lapse", 15));
    qtsp_buf_cleanup(&k);
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(t);
    /* and it can be held again */
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "again", &until), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_office, serial, slen), QTSP_OK);
    real_time();
    qtsp_err_clear();
}

static void test_terminate_is_final_and_destroys_key(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010007", "+359888000007", serial, &slen, &is);
    char label[64];
    key_label_of(serial, slen, label);
    char hex[41];
    snprintf(hex, sizeof hex, "%s", is.serial_hex);
    X509 *x = issued_cert(&is);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT(credential_signs_for(hex, X509_get0_pubkey(x))); /* before: it signs */
    X509_free(x);
    qtsp_issued_cleanup(&is);
    time_t until;
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "lost", &until), QTSP_OK);
    size_t kb = 0, ka = 0;
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &kb) == QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_hotline, serial, slen, 1, "passport", 0),
                    QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_officer, serial, slen, 1, "passport", 0),
                    QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "", 0), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 6, "passport", 0),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "passport AB123", 0),
                    QTSP_OK);
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &ka) == QTSP_OK);
    CU_ASSERT_EQUAL(ka, kb); /* the key was never a token object */
    /* the wrapped key is gone from the credential; nothing can sign with it */
    json_t *cred = credential_record(hex);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cred);
    CU_ASSERT_PTR_NULL(json_object_get(cred, "key"));
    CU_ASSERT(json_is_false(json_object_get(cred, "enabled")));
    qtsp_key *k = NULL;
    qtsp_err_clear();
    CU_ASSERT_NOT_EQUAL(qtsp_subkey_open(g_hsm, cred, &k), QTSP_OK);
    json_object_set_new(cred, "enabled", json_true()); /* even re-enabled by hand */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_subkey_open(g_hsm, cred, &k), QTSP_ERR_HSM_NO_KEY);
    json_decref(cred);
    CU_ASSERT(strncmp(label, "kw-", 3) == 0);
    char st[32];
    CU_ASSERT_STRING_EQUAL(status_of(serial, slen, st, sizeof st), "revoked");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_office, serial, slen), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "x", &until), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "again", 0),
                    QTSP_ERR_STATE);
    qtsp_err_clear();
    json_t *o = NULL;
    CU_ASSERT_FATAL(qtsp_ra_cert_status(g_ra, serial, slen, &o) == QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "revocation_reason")),
                           "keyCompromise");
    json_decref(o);
    /* signing credential disabled */
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    qtsp_buf v;
    qtsp_buf_init(&v, 1 << 16);
    CU_ASSERT(qtsp_txn_get(t, QTSP_T_CREDENTIALS, hex, strlen(hex), &v) == QTSP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_buf_str(&v), "\"enabled\":false"));
    qtsp_buf_cleanup(&v);
    qtsp_txn_abort(t);
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(g_store, &count, &bad), QTSP_OK);
}

static void test_hotline_hook_holds_every_valid_cert_of_the_subject(void)
{
    char id[40];
    CU_ASSERT_FATAL(enrol("8001010008", "+359888000008", id) == QTSP_OK);
    qtsp_issued a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CU_ASSERT_FATAL(qtsp_ra_issue(g_ra, &g_officer, id, &a) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_ra_issue(g_ra, &g_officer, id, &b) == QTSP_OK);
    json_t *held = NULL;
    time_t until = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_ra_hotline_hold(g_ra, &g_hotline, "8001010008", "+359888999999", "q", &held, &until),
        QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_ra_hotline_hold(g_ra, &g_hotline, "9999999999", "+359888000008", "q", &held, &until),
        QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_ra_hotline_hold(g_ra, &g_office, "8001010008", "+359888000008", "q", &held, &until),
        QTSP_ERR_FORBIDDEN);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hotline_hold(g_ra, &g_hotline, "8001010008", "+359888000008",
                                         "dob + security word", &held, &until),
                    QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(held), 2);
    json_decref(held);
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl;
    char st[32];
    CU_ASSERT(qtsp_serial_from_hex(a.serial_hex, s, &sl) == QTSP_OK);
    CU_ASSERT_STRING_EQUAL(status_of(s, sl, st, sizeof st), "on-hold");
    /* nothing left to hold: 409 */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_ra_hotline_hold(g_ra, &g_hotline, "8001010008", "+359888000008", "q", &held, &until),
        QTSP_ERR_STATE);
    qtsp_err_clear();
    json_t *list = NULL;
    CU_ASSERT(qtsp_ra_subject_certs(g_ra, id, &list) == QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "certificates")), 2);
    json_decref(list);
    qtsp_issued_cleanup(&a);
    qtsp_issued_cleanup(&b);
}

static void test_reenrolment_keeps_the_earlier_registration(void)
{
    char id1[40], id2[40];
    CU_ASSERT_FATAL(enrol("8001010009", "+359888000009", id1) == QTSP_OK);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    CU_ASSERT_FATAL(qtsp_ra_issue(g_ra, &g_officer, id1, &is) == QTSP_OK);
    unsigned char s[QTSP_SERIAL_MAX];
    size_t sl;
    CU_ASSERT(qtsp_serial_from_hex(is.serial_hex, s, &sl) == QTSP_OK);
    qtsp_issued_cleanup(&is);
    CU_ASSERT(qtsp_ra_terminate(g_ra, &g_office, s, sl, 3, "id card", 0) == QTSP_OK);
    json_t *in = person("8001010009", "+359888777777");
    json_object_set_new(in, "email", json_string("new@example.bg"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_enrol(g_ra, &g_officer, in, id2), QTSP_OK);
    json_decref(in);
    CU_ASSERT_STRING_EQUAL(id1, id2);
    json_t *rec = subject_record(id1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "email")), "new@example.bg");
    json_t *h = json_object_get(rec, "history");
    CU_ASSERT_EQUAL(json_array_size(h), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(h, 0), "email")),
                           "maria@example.bg");
    CU_ASSERT_PTR_NOT_NULL(json_object_get(json_array_get(h, 0), "identity_evidence"));
    json_decref(rec);
}

/* How many subjects a search finds (-1 when it fails). */
static int hits(const qtsp_actor *who, const qtsp_ra_search *q)
{
    json_t *out = NULL;
    if (qtsp_ra_subject_search(g_ra, who, q, &out) != QTSP_OK)
        return -1;
    int n = (int)json_array_size(json_object_get(out, "subjects"));
    json_decref(out);
    return n;
}

/* ra/find.c: each search key finds the subject; a re-enrolment moves the
 * keys to the new data; roles and bad input are refused. */
static void test_search_finds_by_each_key_and_follows_reenrolment(void)
{
    char id[40], id2[40];
    json_t *in = person("8001010031", "+359888000031");
    json_object_set_new(in, "email", json_string("Search.Me@Example.bg"));
    json_object_set_new(in, "given_name", json_string("Ивайла"));
    json_object_set_new(in, "surname", json_string("Търсенова"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_enrol(g_ra, &g_officer, in, id), QTSP_OK);
    json_t *out = NULL;
    qtsp_ra_search q = {.email = "search.me@example.BG", .limit = 10};
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_subject_search(g_ra, &g_office, &q, &out), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(out, "subjects")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
                               json_array_get(json_object_get(out, "subjects"), 0), "subject_id")),
                           id);
    json_decref(out);
    qtsp_ra_search qn = {.name = "ТЪРСЕН", .limit = 10}; /* surname first, other case */
    CU_ASSERT_EQUAL(hits(&g_officer, &qn), 1);
    qtsp_ra_search qp = {.phone = "+359888000031", .limit = 10};
    CU_ASSERT_EQUAL(hits(&g_officer, &qp), 1);
    qtsp_ra_search qi = {.national_id = "8001010031", .country = "BG", .limit = 10};
    CU_ASSERT_EQUAL(hits(&g_officer, &qi), 1);
    /* re-enrolment (no valid certificate): the old e-mail no longer finds it */
    json_object_set_new(in, "email", json_string("moved@example.bg"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_enrol(g_ra, &g_officer, in, id2), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(id, id2);
    CU_ASSERT_EQUAL(hits(&g_officer, &q), 0);
    qtsp_ra_search qm = {.email = "moved@example.bg", .limit = 10};
    CU_ASSERT_EQUAL(hits(&g_officer, &qm), 1);
    json_decref(in);
    /* roles and bad input */
    out = NULL;
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_hotline, &q, &out), QTSP_ERR_FORBIDDEN);
    qtsp_ra_search q2 = {.email = "a@b.cd", .phone = "+359888000031", .limit = 10};
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_officer, &q2, &out), QTSP_ERR_INVALID);
    qtsp_ra_search q3 = {.email = "a@b.cd", .limit = 0};
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_officer, &q3, &out), QTSP_ERR_INVALID);
    qtsp_ra_search q4 = {.name = "x", .cursor = "00", .limit = 5};
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_officer, &q4, &out), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(qtsp_ra_subject_get(g_ra, &g_hotline, id, &out), QTSP_ERR_FORBIDDEN);
    CU_ASSERT_EQUAL(qtsp_ra_subject_get(g_ra, &g_office, id, &out), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(out, "id_type")), "PNO");
    json_decref(out);
    CU_ASSERT_EQUAL(qtsp_ra_cert_list(g_ra, &g_hotline, "valid", 10, NULL, &out),
                    QTSP_ERR_FORBIDDEN);
    CU_ASSERT_EQUAL(qtsp_ra_cert_list(g_ra, &g_auditor, "good", 10, NULL, &out), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_ra_cert_list(g_ra, &g_auditor, "valid", 101, NULL, &out),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
}

/* EN 319 412-1 5.1.3: a person without a national personal number enrols
 * with a passport (PAS), and the certificate says so. */
static void test_enrol_with_a_passport_number_certifies_pas(void)
{
    json_t *in = person("AB1234567", "+359888000032");
    json_object_set_new(in, "country", json_string("GB"));
    json_object_set_new(in, "id_type", json_string("PAS"));
    char id[40];
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_enrol(g_ra, &g_officer, in, id), QTSP_OK);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    qtsp_status irc = qtsp_ra_issue(g_ra, &g_officer, id, &is);
    if (irc != QTSP_OK)
        fprintf(stderr, "issue: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(irc, QTSP_OK);
    BIO *b = BIO_new_mem_buf(is.certificate_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    char sn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_serialNumber, sn, sizeof sn);
    CU_ASSERT_STRING_EQUAL(sn, "PASGB-AB1234567");
    X509_free(x);
    qtsp_issued_cleanup(&is);
    json_t *out = NULL;
    qtsp_ra_search q = {.national_id = "AB1234567", .id_type = "PAS", .limit = 5};
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_office, &q, &out), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(out, "subjects")), 1);
    json_decref(out);
    q.id_type = NULL; /* PNO: not the same identifier */
    CU_ASSERT_EQUAL(qtsp_ra_subject_search(g_ra, &g_office, &q, &out), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(out, "subjects")), 0);
    json_decref(out);
    /* bad: unknown type, a document number with lower case or too short */
    json_object_set_new(in, "id_type", json_string("SSN"));
    expect_invalid(json_deep_copy(in), "id_type");
    json_object_set_new(in, "id_type", json_string("IDC"));
    json_object_set_new(in, "national_id", json_string("ab12345"));
    expect_invalid(json_deep_copy(in), "national_id");
    json_object_set_new(in, "national_id", json_string("AB1"));
    expect_invalid(json_deep_copy(in), "national_id");
    json_decref(in);
}

/* Issue 15 defect 7: a deceptive name is refused before anything is stored,
 * and a decomposed name is stored (and certified) composed (NFC). */
static void test_enrol_refuses_deceptive_names_and_stores_nfc(void)
{
    json_t *in = person("7501020018", "+359888123470");
    json_object_set_new(in, "given_name", json_string("Maria \xe2\x80\xaeredneS"));
    expect_invalid(in, "given_name: U+202E (format character) not allowed");
    in = person("7501020018", "+359888123470");
    json_object_set_new(in, "surname", json_string("Test\xef\xbf\xbf"));
    expect_invalid(in, "surname: U+FFFF (noncharacter) not allowed");

    in = person("7501020018", "+359888123470");
    json_object_set_new(in, "given_name", json_string("Zoe\xcc\x88"));
    char id[40];
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_enrol(g_ra, &g_officer, in, id), QTSP_OK);
    json_decref(in);
    json_t *rec = subject_record(id);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "given_name")), "Zo\xc3\xab");
    json_decref(rec);
}

static void test_unknown_serial_is_not_found(void)
{
    unsigned char s[] = {0x12, 0x34};
    time_t until;
    json_t *o = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_cert_status(g_ra, s, 2, &o), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, s, 2, "x", &until), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_release(g_ra, &g_office, s, 2), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, s, 2, 1, "x", 0), QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();
}

static void test_otp_wrap_roundtrip_and_tamper(void)
{
    unsigned char key[32], sec[20], out[64];
    size_t n = 0;
    memset(key, 7, sizeof key);
    memset(sec, 9, sizeof sec);
    json_t *w = NULL;
    CU_ASSERT_FATAL(qtsp_otp_wrap(key, "user1", sec, sizeof sec, &w) == QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_otp_unwrap(key, "user1", w, out, sizeof out, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 20);
    CU_ASSERT(memcmp(out, sec, 20) == 0);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_otp_unwrap(key, "user2", w, out, sizeof out, &n), QTSP_ERR_CRYPTO);
    qtsp_err_clear();
    json_decref(w);
    char h[160];
    CU_ASSERT_FATAL(qtsp_password_hash("s3cret-pass", h, sizeof h) == QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_password_verify(h, "s3cret-pass"), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_password_verify(h, "s3cret-pasS"), QTSP_ERR_AUTH);
    qtsp_err_clear();
}

/* ---- lifecycle webhook (ra/notify.h) ---- */

typedef struct hook_log {
    pthread_mutex_t mu;
    json_t *bodies; /* array of parsed bodies, in arrival order */
} hook_log;

static qtsp_status record_hook(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    hook_log *h = ctx;
    json_t *b = json_loadb((const char *)req->body, req->body_len, 0, NULL);
    pthread_mutex_lock(&h->mu);
    if (b)
        json_array_append_new(h->bodies, b);
    pthread_mutex_unlock(&h->mu);
    return qtsp_http_resp_set(resp, 204, "application/json", NULL, 0);
}

/* Events of the receiver about one serial, as "event" names in order. */
static void events_for(hook_log *h, const char *hex, char *out, size_t cap)
{
    out[0] = '\0';
    pthread_mutex_lock(&h->mu);
    size_t i;
    json_t *b;
    json_array_foreach(h->bodies, i, b)
    {
        json_t *d = json_object_get(b, "data");
        if (strcmp(json_string_value(json_object_get(d, "serial")), hex) != 0)
            continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", len ? " " : "",
                 json_string_value(json_object_get(b, "event")));
    }
    pthread_mutex_unlock(&h->mu);
}

static void test_lifecycle_changes_reach_the_webhook(void)
{
    hook_log log = {PTHREAD_MUTEX_INITIALIZER, json_array()};
    qtsp_route route = {"POST", "/hook", 0, 65536, "application/json", record_hook, &log, "hook"};
    qtsp_http_opts o = {.listen = "127.0.0.1:0", .workers = 1, .conn_timeout_s = 10};
    qtsp_http_server *srv = NULL;
    CU_ASSERT_FATAL(qtsp_http_start(&o, &route, 1, NULL, NULL, &srv) == QTSP_OK);
    char policy[600], secret[1100], text[512];
    snprintf(policy, sizeof policy, "%s/notify.yaml", g_dir);
    snprintf(secret, sizeof secret, "%s/notify.secret", g_secrets);
    snprintf(text, sizeof text,
             "enabled: true\nurl: http://127.0.0.1:%u/hook\nsecret_file: notify.secret\n"
             "backoff_initial: 10ms\nbackoff_max: 50ms\n",
             qtsp_http_port(srv));
    FILE *f = fopen(policy, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    f = fopen(secret, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("ra-test-webhook-secret-0123456789\n", f);
    fclose(f);
    chmod(secret, 0600);
    qtsp_notify *n = NULL;
    CU_ASSERT_FATAL(qtsp_notify_new(policy, g_secrets, &n) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_notify_start(n) == QTSP_OK);
    qtsp_ra *ra = NULL;
    qtsp_ra_deps deps = {
        g_store, g_hsm, g_ca, qtest_key(g_ca_key), g_policies, g_secrets, "http://127.0.0.1:8080",
        n};
    CU_ASSERT_FATAL(qtsp_ra_new(&deps, &ra) == QTSP_OK);

    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010011", "+359888000011", serial, &slen, &is);
    char hex[41];
    snprintf(hex, sizeof hex, "%s", is.serial_hex);
    qtsp_issued_cleanup(&is);
    time_t t0 = qtsp_now(), until = 0;
    set_time(t0);
    size_t k = 0;
    CU_ASSERT_EQUAL(qtsp_ra_hold(ra, &g_hotline, serial, slen, "dob", &until), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ra_release(ra, &g_officer, serial, slen), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ra_hold(ra, &g_hotline, serial, slen, "dob", &until), QTSP_OK);
    set_time(until);
    CU_ASSERT_EQUAL(qtsp_ra_sweep_lapses(ra, until, &k), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ra_hold(ra, &g_hotline, serial, slen, "dob", &until), QTSP_OK);
    /* a refused change sends nothing */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(ra, &g_hotline, serial, slen, "dob", &until), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(ra, &g_office, serial, slen, 1, "passport", 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_notify_flush(n, 10000), QTSP_OK);
    real_time();

    char seen[256];
    events_for(&log, hex, seen, sizeof seen);
    CU_ASSERT_STRING_EQUAL(seen, "cert.hold cert.release cert.hold cert.hold.lapse cert.hold "
                                 "cert.terminate");
    size_t i;
    json_t *b;
    json_array_foreach(log.bodies, i, b)
    {
        json_t *d = json_object_get(b, "data");
        if (strcmp(json_string_value(json_object_get(d, "serial")), hex) != 0)
            continue;
        const char *ev = json_string_value(json_object_get(b, "event"));
        if (strcmp(ev, "cert.hold.lapse") != 0) {
            const char *sid = json_string_value(json_object_get(d, "subject_id"));
            CU_ASSERT(sid != NULL && sid[0] != '\0');
        }
        if (strcmp(ev, "cert.terminate") == 0)
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "reason")),
                                   "keyCompromise");
        if (strcmp(ev, "cert.hold") == 0)
            CU_ASSERT_PTR_NOT_NULL(json_object_get(d, "hold_until"));
    }
    qtsp_ra_free(ra);
    qtsp_notify_free(n);
    qtsp_http_stop(srv);
    json_decref(log.bodies);
    remove(policy);
    remove(secret);
    qtsp_err_clear();
}

/* ---- key pool ---- */

static uint64_t pool_available(void)
{
    uint64_t n = UINT64_MAX;
    CU_ASSERT(qtsp_ra_keypool_available(g_ra, &n) == QTSP_OK);
    return n;
}

static size_t token_keys(void)
{
    size_t n = 0;
    CU_ASSERT(qtsp_hsm_count_private_keys(g_hsm, &n) == QTSP_OK);
    return n;
}

static uint64_t audit_count(void)
{
    qtsp_txn *t = NULL;
    uint64_t n = 0;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_txn_count(t, QTSP_T_AUDIT, &n) == QTSP_OK);
    qtsp_txn_abort(t);
    return n;
}

typedef struct audit_grep {
    const char *event;
    const char *needle;
    int hits;
} audit_grep;

static qtsp_status audit_grep_fn(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)seq;
    audit_grep *g = ctx;
    char ev[80];
    snprintf(ev, sizeof ev, "\"event\":\"%s\"", g->event);
    if (memmem(body, len, ev, strlen(ev)) && memmem(body, len, g->needle, strlen(g->needle)))
        g->hits++;
    return QTSP_OK;
}

/* Audit records from seq `from` on with event and needle in them. */
static int audit_hits(uint64_t from, const char *event, const char *needle)
{
    audit_grep g = {event, needle, 0};
    CU_ASSERT(qtsp_audit_list(g_store, from, audit_grep_fn, &g) == QTSP_OK);
    return g.hits;
}

static int in_table(qtsp_table tb, const char *label)
{
    qtsp_txn *t = NULL;
    const void *v;
    size_t vl;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    int found = qtsp_txn_get0(t, tb, label, strlen(label), &v, &vl) == QTSP_OK;
    qtsp_txn_abort(t);
    return found;
}

static qtsp_status pool_label_fn(void *ctx, const void *key, size_t klen, const void *val,
                                 size_t vlen, int *stop)
{
    json_t *arr = ctx;
    json_array_append_new(arr, json_stringn(key, klen));
    return QTSP_OK;
}

/* The names of the pool's entries (new reference). */
static json_t *pool_labels(void)
{
    json_t *arr = json_array();
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_txn_iter(t, QTSP_T_KEYPOOL, NULL, 0, pool_label_fn, arr) == QTSP_OK);
    qtsp_txn_abort(t);
    return arr;
}

static qtsp_status count_label(void *ctx, const char *label)
{
    (*(int *)ctx)++;
    return QTSP_OK;
}

typedef struct pending_mark {
    const char *key, *label;
} pending_mark;

static qtsp_status put_pending(qtsp_txn *txn, void *ctx)
{
    pending_mark *m = ctx;
    return qtsp_txn_put(txn, QTSP_T_META, m->key, strlen(m->key), m->label, strlen(m->label), 0);
}

/* Defect 15.4: a termination whose revocation committed but whose key
 * destruction was never recorded (a crash between the steps leaves the mark
 * "key.destroy.pending/<serial>") is finished at the next start. */
static void test_pending_key_destruction_is_finished_after_a_restart(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010077", "+359888000077", serial, &slen, &is);
    /* a legacy token key: wrapped keys go with the revocation, never pend */
    char label[64] = "qc-legacy-pending", key[80];
    snprintf(key, sizeof key, "key.destroy.pending/%s", is.serial_hex);
    qtsp_issued_cleanup(&is);
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, label, QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    EVP_PKEY *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_hsm_public_key(g_hsm, label, &p), QTSP_OK);
    EVP_PKEY_free(p);
    p = NULL;
    pending_mark m = {key, label};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(g_store, put_pending, &m), QTSP_OK);
    /* and one whose key the token already lost (destroyed before the crash) */
    pending_mark gone = {"key.destroy.pending/7e57", "qc-no-such-key"};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(g_store, put_pending, &gone), QTSP_OK);
    uint64_t from = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(g_store, &from, &bad), QTSP_OK);

    size_t n = 0;
    CU_ASSERT_EQUAL(qtsp_ra_finish_destructions(g_ra, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, label, &p), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT(!in_table(QTSP_T_META, key));
    CU_ASSERT(!in_table(QTSP_T_META, gone.key));
    CU_ASSERT_EQUAL(audit_hits(from + 1, "key.destroy", "\"key\":\"destroyed\""), 1);
    CU_ASSERT_EQUAL(audit_hits(from + 1, "key.destroy", "\"key\":\"absent\""), 1);
    CU_ASSERT_EQUAL(audit_hits(from + 1, "key.destroy", "system:recovery"), 2);
    /* nothing left: a second run does nothing */
    CU_ASSERT_EQUAL(qtsp_ra_finish_destructions(g_ra, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    uint64_t count = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(g_store, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, from + 2);
}

static void fill_pool(void)
{
    size_t made = 0;
    qtsp_err_clear();
    CU_ASSERT_FATAL(qtsp_ra_keypool_fill(g_ra, &made) == QTSP_OK);
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE);
}

static void test_keypool_filler_fills_to_size_with_audited_protected_keys(void)
{
    uint64_t a0 = audit_count();
    size_t k0 = token_keys();
    uint64_t avail = pool_available();
    CU_ASSERT_FATAL(qtsp_ra_keypool_start(g_ra) == QTSP_OK);
    for (int i = 0; i < 600 && avail < POOL_SIZE; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        avail = pool_available();
    }
    qtsp_ra_keypool_stop(g_ra);
    CU_ASSERT_EQUAL_FATAL(avail, POOL_SIZE);
    CU_ASSERT_EQUAL(token_keys(), k0); /* wrapped: the token gains no object */
    /* one audit record per refill batch (batch: 3), naming every key with
     * its SPKI hash; none per key */
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "keypool.refill", "\"spki_sha256\":\""),
                    (POOL_SIZE + 2) / 3);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.generate", ""), 0);
    json_t *labels = pool_labels();
    CU_ASSERT_EQUAL(json_array_size(labels), POOL_SIZE);
    for (size_t i = 0; i < json_array_size(labels); i++)
        CU_ASSERT_EQUAL(
            audit_hits(a0 + 1, "keypool.refill", json_string_value(json_array_get(labels, i))), 1);
    json_decref(labels);
    /* nothing more to make once full */
    size_t made = 99;
    CU_ASSERT(qtsp_ra_keypool_fill(g_ra, &made) == QTSP_OK);
    CU_ASSERT_EQUAL(made, 0);
    CU_ASSERT_EQUAL(token_keys(), k0);
}

/* Pool keys exist only wrapped (no token object to extract), under
 * sequence-numbered names. */
static void test_keypool_keys_are_never_extractable(void)
{
    fill_pool();
    json_t *labels = pool_labels();
    CU_ASSERT_EQUAL(json_array_size(labels), POOL_SIZE);
    for (size_t i = 0; i < json_array_size(labels); i++)
        CU_ASSERT(strncmp(json_string_value(json_array_get(labels, i)), "kw-", 3) == 0);
    json_decref(labels);
    int n = 0;
    CU_ASSERT(qtsp_hsm_list_labels(g_hsm, "kw-", count_label, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
}

static void test_issue_takes_a_pool_key(void)
{
    fill_pool();
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    uint64_t mark0 = 0, mark1 = 0;
    CU_ASSERT(qtsp_hsm_mark_get(g_hsm, &mark0) == QTSP_OK);
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010101", "+359888000101", serial, &slen, &is);
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE - 1);
    CU_ASSERT_EQUAL(token_keys(), k0); /* no key generated */
    char label[64];
    key_label_of(serial, slen, label);
    CU_ASSERT_FATAL(strncmp(label, "kw-", 3) == 0);
    CU_ASSERT_FALSE(in_table(QTSP_T_KEYPOOL, label));
    /* the token's pool mark passed the key: it is handed out once */
    CU_ASSERT(qtsp_hsm_mark_get(g_hsm, &mark1) == QTSP_OK);
    CU_ASSERT(mark1 > mark0);
    CU_ASSERT_EQUAL(mark1 - 1, strtoull(label + 3, NULL, 16));
    X509 *x = issued_cert(&is);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT(credential_signs_for(is.serial_hex, X509_get0_pubkey(x)));
    X509_free(x);
    /* the certificate's audit record names the key */
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.issue", label), 1);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.issue", "\"key_source\":\"pool\""), 1);
    /* a cleanup leaves the bound key and the pool alone */
    size_t n = 99;
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 0, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(token_keys(), k0);
    qtsp_issued_cleanup(&is);
}

typedef struct raw_rec {
    char label[64];
    unsigned char v[4096];
    size_t vl;
} raw_rec;

static qtsp_status get_raw_fn(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                              int *stop)
{
    raw_rec *r = ctx;
    if (klen < sizeof r->label && vlen <= sizeof r->v) {
        memcpy(r->label, key, klen);
        r->label[klen] = '\0';
        memcpy(r->v, val, vlen);
        r->vl = vlen;
    }
    *stop = 1;
    return QTSP_OK;
}

static qtsp_status put_raw_rec(qtsp_txn *t, void *ctx)
{
    raw_rec *r = ctx;
    return qtsp_txn_put(t, QTSP_T_KEYPOOL, r->label, strlen(r->label), r->v, r->vl, 0);
}

/* A store older than the token (a copied home or a restored backup that
 * shares the token) offers a pool key another store bound since: the
 * token's pool mark refuses it, clearly, and it is never bound twice. */
static void test_stale_store_cannot_bind_a_pool_key_twice(void)
{
    fill_pool();
    /* the pool's next key, as a copy of the store holds it */
    raw_rec copy;
    memset(&copy, 0, sizeof copy);
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_txn_iter(t, QTSP_T_KEYPOOL, "kw-", 3, get_raw_fn, &copy) == QTSP_OK);
    qtsp_txn_abort(t);
    CU_ASSERT_FATAL(copy.vl > 0);
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    issue_serial("8001010601", "+359888000601", serial, &slen);
    char label[64];
    key_label_of(serial, slen, label);
    CU_ASSERT_STRING_EQUAL(label, copy.label); /* the lowest sequence number goes first */
    /* the stale entry comes back (the old store) */
    CU_ASSERT_FATAL(qtsp_store_write(g_store, put_raw_rec, &copy) == QTSP_OK);
    uint64_t a0 = audit_count();
    char id[40];
    CU_ASSERT_FATAL(enrol("8001010602", "+359888000602", id) == QTSP_OK);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_issue(g_ra, &g_officer, id, &is), QTSP_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "older than the token"));
    CU_ASSERT_FALSE(in_table(QTSP_T_KEYPOOL, copy.label));
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "keypool.stale", "\"discarded\":1"), 1);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.issue", ""), 0);
    /* the next issuance takes a fresh key */
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_issue(g_ra, &g_officer, id, &is), QTSP_OK);
    unsigned char s2[QTSP_SERIAL_MAX];
    size_t s2len = 0;
    CU_ASSERT_FATAL(qtsp_serial_from_hex(is.serial_hex, s2, &s2len) == QTSP_OK);
    key_label_of(s2, s2len, label);
    CU_ASSERT(strncmp(label, "kw-", 3) == 0 && strcmp(label, copy.label) != 0);
    qtsp_issued_cleanup(&is);
    /* an entry the token did not authenticate (its sequence number moved)
     * is dropped too */
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    memset(&copy, 0, sizeof copy);
    CU_ASSERT(qtsp_txn_iter(t, QTSP_T_KEYPOOL, "kw-", 3, get_raw_fn, &copy) == QTSP_OK);
    qtsp_txn_abort(t);
    if (copy.vl > 10) {
        copy.v[9] ^= 0x01; /* seq, low byte: the entry renamed by its number */
        CU_ASSERT_FATAL(qtsp_store_write(g_store, put_raw_rec, &copy) == QTSP_OK);
        a0 = audit_count();
        CU_ASSERT_FATAL(enrol("8001010603", "+359888000603", id) == QTSP_OK);
        qtsp_err_clear();
        qtsp_status rc = qtsp_ra_issue(g_ra, &g_officer, id, &is);
        CU_ASSERT(rc == QTSP_OK || rc == QTSP_ERR_STATE);
        CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", "not authenticated by the token") +
                            audit_hits(a0 + 1, "keypool.stale", ""),
                        1);
        if (rc == QTSP_OK)
            qtsp_issued_cleanup(&is);
        qtsp_err_clear();
    }
}

typedef struct issuer_arg {
    char subjects[2][40];
    char labels[2][64];
    int ok;
} issuer_arg;

static void *issuer_main(void *p)
{
    issuer_arg *a = p;
    for (int i = 0; i < 2; i++) {
        qtsp_issued is;
        memset(&is, 0, sizeof is);
        if (qtsp_ra_issue(g_ra, &g_officer, a->subjects[i], &is) != QTSP_OK)
            return NULL;
        unsigned char serial[QTSP_SERIAL_MAX];
        size_t slen = 0;
        if (qtsp_serial_from_hex(is.serial_hex, serial, &slen) != QTSP_OK)
            return NULL;
        qtsp_txn *t = NULL;
        qtsp_cert_record rec;
        memset(&rec, 0, sizeof rec);
        if (qtsp_store_begin(g_store, 0, &t) != QTSP_OK)
            return NULL;
        qtsp_status rc = qtsp_certdb_get(t, serial, slen, &rec);
        qtsp_txn_abort(t);
        if (rc != QTSP_OK)
            return NULL;
        snprintf(a->labels[i], 64, "%s", rec.key_label);
        qtsp_cert_record_cleanup(&rec);
        qtsp_issued_cleanup(&is);
        a->ok++;
    }
    return NULL;
}

static void test_concurrent_issuers_get_different_pool_keys(void)
{
    fill_pool();
    issuer_arg args[2];
    memset(args, 0, sizeof args);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 2; i++) {
            char nid[16], phone[20];
            snprintf(nid, sizeof nid, "80010102%d%d", t, i);
            snprintf(phone, sizeof phone, "+3598880002%d%d", t, i);
            CU_ASSERT_FATAL(enrol(nid, phone, args[t].subjects[i]) == QTSP_OK);
        }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, issuer_main, &args[t]) == 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    CU_ASSERT_EQUAL_FATAL(args[0].ok + args[1].ok, 4);
    const char *all[4] = {args[0].labels[0], args[0].labels[1], args[1].labels[0],
                          args[1].labels[1]};
    for (int i = 0; i < 4; i++) {
        CU_ASSERT(strncmp(all[i], "kw-", 3) == 0);
        for (int j = i + 1; j < 4; j++)
            CU_ASSERT(strcmp(all[i], all[j]) != 0);
    }
    CU_ASSERT_EQUAL(pool_available(), 0);
}

static void test_empty_pool_falls_back_to_inline_generation(void)
{
    CU_ASSERT_EQUAL_FATAL(pool_available(), 0); /* drained by the test before */
    size_t k0 = token_keys();
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010301", "+359888000301", serial, &slen, &is);
    CU_ASSERT_EQUAL(token_keys(), k0); /* generated and wrapped at once */
    char label[64];
    key_label_of(serial, slen, label);
    CU_ASSERT_STRING_EQUAL(label, "kw-inline");
    X509 *x = issued_cert(&is);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT(credential_signs_for(is.serial_hex, X509_get0_pubkey(x)));
    X509_free(x);
    qtsp_issued_cleanup(&is);
}

static qtsp_status put_raw(qtsp_txn *t, void *ctx)
{
    const char **kv = ctx;
    return qtsp_txn_put(t, QTSP_T_SUBJECTS, kv[0], strlen(kv[0]), kv[1], strlen(kv[1]), 0);
}

static void test_failed_issuance_after_reservation_destroys_pool_key(void)
{
    fill_pool();
    json_t *before = pool_labels();
    CU_ASSERT_EQUAL_FATAL(json_array_size(before), POOL_SIZE);
    /* a subject record without names: issuance fails after taking a key */
    const char *kv[2] = {"0badc0de0badc0de0badc0de", "\x01{\"subject_id\":\"0badc0de\"}"};
    CU_ASSERT_FATAL(qtsp_store_write(g_store, put_raw, kv) == QTSP_OK);
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_issue(g_ra, &g_officer, kv[0], &is), QTSP_ERR_STORE_CORRUPT);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE - 1);
    CU_ASSERT_EQUAL(token_keys(), k0);
    /* the taken key is gone from the store (its only copy was the
     * issuer's memory), and its end is in the audit log */
    int gone = 0;
    for (size_t i = 0; i < json_array_size(before); i++) {
        const char *l = json_string_value(json_array_get(before, i));
        if (!in_table(QTSP_T_KEYPOOL, l)) {
            gone++;
            CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", l), 1);
        }
    }
    CU_ASSERT_EQUAL(gone, 1);
    json_decref(before);
}

static qtsp_status put_marker_r(qtsp_txn *t, void *ctx)
{
    const char *label = ctx;
    unsigned char v[10] = {1, 'r'};
    qtsp_be64_put(v + 2, (uint64_t)qtsp_now());
    return qtsp_txn_put(t, QTSP_T_KEY_USE, label, strlen(label), v, sizeof v, 0);
}

static void test_orphan_cleanup_destroys_unassigned_kp_keys_only(void)
{
    fill_pool();
    /* an orphan (filler crashed before its commit) and a fresh reservation */
    const char *orphan = "kp-0000000000000000000000000000beef";
    const char *reserved = "kp-0000000000000000000000000000cafe";
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, orphan, QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, reserved, QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_store_write(g_store, put_marker_r, (void *)reserved) == QTSP_OK);
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    size_t n = 0;
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 600, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(token_keys(), k0 - 1);
    EVP_PKEY *p = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, orphan, &p), QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", orphan), 1);
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE); /* pool untouched */
    /* the reservation outlived the grace period: its issuer is gone */
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 0, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, reserved, &p), QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    CU_ASSERT_FALSE(in_table(QTSP_T_KEY_USE, reserved));
    CU_ASSERT_EQUAL(token_keys(), k0 - 2);
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE);
}

/* A token label is any bytes: the key.destroy record of an orphan whose
 * label holds a quote and a backslash is valid JSON naming it exactly
 * (the cleanup built that record by hand, unescaped, and failed). */
static void test_orphan_with_quotes_in_its_label_is_audited_escaped(void)
{
    const char *orphan = "kp-\"odd\\label";
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, orphan, QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    uint64_t a0 = audit_count();
    size_t n = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_keypool_cleanup(g_ra, 600, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    EVP_PKEY *p = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, orphan, &p), QTSP_ERR_HSM_NO_KEY);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", "\"label\":\"kp-\\\"odd\\\\label\""), 1);
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(g_store, &count, &bad), QTSP_OK);
}

static void test_terminate_destroys_a_pool_key(void)
{
    fill_pool();
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010401", "+359888000401", serial, &slen, &is);
    char label[64], hex[41];
    key_label_of(serial, slen, label);
    CU_ASSERT_FATAL(strncmp(label, "kw-", 3) == 0);
    snprintf(hex, sizeof hex, "%s", is.serial_hex);
    qtsp_issued_cleanup(&is);
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "passport AB1", 0),
                    QTSP_OK);
    CU_ASSERT_EQUAL(token_keys(), k0);
    json_t *cred = credential_record(hex);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cred);
    CU_ASSERT_PTR_NULL(json_object_get(cred, "key"));
    json_decref(cred);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.terminate", "\"key\":\"destroyed\""), 1);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.terminate", "\"key_storage\":\"wrapped\""), 1);
    /* a destroyed certified key is not an orphan, nothing else goes */
    size_t n = 99;
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 0, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
}

/* After a profile change, wrapped pool keys of the old key type are
 * dropped (audited), not counted as available for ever. */
static void test_cleanup_drops_wrapped_pool_keys_of_another_type(void)
{
    fill_pool();
    raw_rec r;
    memset(&r, 0, sizeof r);
    qtsp_txn *t = NULL;
    CU_ASSERT_FATAL(qtsp_store_begin(g_store, 0, &t) == QTSP_OK);
    CU_ASSERT(qtsp_txn_iter(t, QTSP_T_KEYPOOL, "kw-", 3, get_raw_fn, &r) == QTSP_OK);
    qtsp_txn_abort(t);
    CU_ASSERT_FATAL(r.vl > 2);
    snprintf(r.label, sizeof r.label, "kw-fffffffffffffff0");
    r.v[1] = (unsigned char)QTSP_KEY_RSA_3072;
    CU_ASSERT_FATAL(qtsp_store_write(g_store, put_raw_rec, &r) == QTSP_OK);
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE + 1);
    uint64_t a0 = audit_count();
    size_t n = 0;
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 600, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_FALSE(in_table(QTSP_T_KEYPOOL, r.label));
    CU_ASSERT_EQUAL(pool_available(), POOL_SIZE);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", "another key type"), 1);
}

/* A certificate of a home from before wrapping: its key is a token object
 * that the certificate record and the credential name by label. */
typedef struct legacy_ctx {
    const unsigned char *serial;
    size_t slen;
    const char *hex;
    const char *label;
} legacy_ctx;

static qtsp_status make_legacy_txn(qtsp_txn *t, void *vctx)
{
    legacy_ctx *c = vctx;
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    TRY(qtsp_certdb_get(t, c->serial, c->slen, &rec));
    unsigned char key[40 + 1 + QTSP_SERIAL_MAX];
    size_t sjl = strlen(rec.subject_id);
    memcpy(key, rec.subject_id, sjl);
    key[sjl] = 0;
    memcpy(key + sjl + 1, c->serial, c->slen);
    qtsp_status rc = qtsp_txn_del(t, QTSP_T_CERTS, c->serial, c->slen);
    if (rc == QTSP_OK)
        rc = qtsp_txn_del(t, QTSP_T_STATUS, c->serial, c->slen);
    if (rc == QTSP_OK)
        rc = qtsp_txn_del(t, QTSP_T_SUBJECT_CERTS, key, sjl + 1 + c->slen);
    snprintf(rec.key_label, sizeof rec.key_label, "%s", c->label);
    if (rc == QTSP_OK)
        rc = qtsp_certdb_put(t, &rec);
    qtsp_cert_record_cleanup(&rec);
    TRY(rc);
    const void *cv = NULL;
    size_t cvl = 0;
    TRY(qtsp_txn_get0(t, QTSP_T_CREDENTIALS, c->hex, strlen(c->hex), &cv, &cvl));
    json_t *cred = cvl > 1 ? json_loadb((const char *)cv + 1, cvl - 1, 0, NULL) : NULL;
    ENSURE(cred != NULL, QTSP_ERR_NOT_FOUND, "no credential");
    json_object_del(cred, "key");
    json_object_set_new(cred, "key_label", json_string(c->label));
    char *text = json_dumps(cred, JSON_COMPACT);
    json_decref(cred);
    ENSURE(text != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t tl = strlen(text);
    unsigned char *v = malloc(tl + 1);
    if (v != NULL) {
        v[0] = 1;
        memcpy(v + 1, text, tl);
        rc = qtsp_txn_put(t, QTSP_T_CREDENTIALS, c->hex, strlen(c->hex), v, tl + 1, 0);
    }
    free(v);
    free(text);
    return v ? rc : QTSP_ERR_NOMEM;
}

static void test_legacy_token_key_credential_signs_and_terminates(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    issue_for("8001010701", "+359888000701", serial, &slen, &is);
    char hex[41], label[64];
    snprintf(hex, sizeof hex, "%s", is.serial_hex);
    qtsp_issued_cleanup(&is);
    snprintf(label, sizeof label, "qc-%s", hex);
    EVP_PKEY *tokpub = NULL;
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, label, QTSP_KEY_EC_P256, &tokpub) == QTSP_OK);
    legacy_ctx lc = {serial, slen, hex, label};
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(g_store, make_legacy_txn, &lc), QTSP_OK);
    /* it signs with its token key */
    CU_ASSERT(credential_signs_for(hex, tokpub));
    /* termination destroys the token key, as before wrapping */
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "passport CD2", 0),
                    QTSP_OK);
    CU_ASSERT_EQUAL(token_keys(), k0 - 1);
    EVP_PKEY *p = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_hsm_public_key(g_hsm, label, &p), QTSP_ERR_HSM_NO_KEY);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.terminate", "\"key_storage\":\"token\""), 1);
    /* issue 15 defect 4: the revocation first (destruction pending), then the
     * destruction as its own record */
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "cert.terminate", "\"key\":\"destruction pending\""), 1);
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", "\"key\":\"destroyed\""), 1);
    CU_ASSERT_FALSE(credential_signs_for(hex, tokpub));
    EVP_PKEY_free(tokpub);
    qtsp_err_clear();
}

/* A home from before wrapping: its token pool keys ("kp-", v1 entries) are
 * destroyed by the first cleanup, and the pool refills wrapped. */
static qtsp_status put_legacy_pool(qtsp_txn *t, void *ctx)
{
    const char *label = ctx;
    unsigned char v[42] = {1, (unsigned char)QTSP_KEY_EC_P256};
    qtsp_be64_put(v + 34, (uint64_t)qtsp_now());
    return qtsp_txn_put(t, QTSP_T_KEYPOOL, label, strlen(label), v, sizeof v, 0);
}

static void test_legacy_token_pool_keys_give_way_to_wrapped_ones(void)
{
    const char *legacy = "kp-000000000000000000000000000001d1";
    CU_ASSERT_FATAL(qtsp_hsm_generate(g_hsm, legacy, QTSP_KEY_EC_P256, NULL) == QTSP_OK);
    CU_ASSERT_FATAL(qtsp_store_write(g_store, put_legacy_pool, (void *)legacy) == QTSP_OK);
    size_t k0 = token_keys();
    uint64_t a0 = audit_count();
    size_t n = 0;
    CU_ASSERT(qtsp_ra_keypool_cleanup(g_ra, 600, &n) == QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(token_keys(), k0 - 1);
    CU_ASSERT_FALSE(in_table(QTSP_T_KEYPOOL, legacy));
    CU_ASSERT_EQUAL(audit_hits(a0 + 1, "key.destroy", "legacy token pool key"), 1);
    fill_pool();
    CU_ASSERT_EQUAL(token_keys(), k0 - 1);
}

/* Text from the CLI (qtsp ra hold --verification, terminate --identity-check,
 * the hotline hook) that is not UTF-8 is refused naming the field, not
 * reported as "out of memory", and changes nothing. */
static void test_invalid_utf8_is_refused_naming_the_field(void)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    issue_serial("8001010501", "+359888000501", serial, &slen);
    time_t until = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_hold(g_ra, &g_hotline, serial, slen, "caller \xff\xfe", &until),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "caller_verification: not valid UTF-8"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ra_terminate(g_ra, &g_office, serial, slen, 1, "passport \xc3", 0),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "identity_check: not valid UTF-8"));
    qtsp_err_clear();
    json_t *held = NULL;
    CU_ASSERT_EQUAL(qtsp_ra_hotline_hold(g_ra, &g_hotline, "8001010501", "+359888000501",
                                         "\xed\xa0\x80", &held, &until),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "caller_verification: not valid UTF-8"));
    CU_ASSERT_PTR_NULL(held);
    qtsp_err_clear();
    json_t *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_ra_cert_status(g_ra, serial, slen, &st), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "status")), "valid");
    json_decref(st);
}

int main(void)
{
    if (suite_init() != 0) {
        fprintf(stderr, "ra suite set-up failed\n");
        printf("qtest: ra 0 passed, 1 failed\n");
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_validators_accept_and_reject),
        QTEST(test_enrol_rejects_each_bad_field_and_changes_nothing),
        QTEST(test_enrol_requires_ra_officer),
        QTEST(test_issue_generates_key_in_token_and_stores_everything),
        QTEST(test_issue_unknown_subject_and_wrong_role),
        QTEST(test_same_national_id_with_valid_cert_is_409),
        QTEST(test_hold_release_transitions),
        QTEST(test_hold_lapses_exactly_at_hold_until),
        QTEST(test_terminate_is_final_and_destroys_key),
        QTEST(test_pending_key_destruction_is_finished_after_a_restart),
        QTEST(test_hotline_hook_holds_every_valid_cert_of_the_subject),
        QTEST(test_reenrolment_keeps_the_earlier_registration),
        QTEST(test_search_finds_by_each_key_and_follows_reenrolment),
        QTEST(test_enrol_with_a_passport_number_certifies_pas),
        QTEST(test_enrol_refuses_deceptive_names_and_stores_nfc),
        QTEST(test_unknown_serial_is_not_found),
        QTEST(test_lifecycle_changes_reach_the_webhook),
        QTEST(test_otp_wrap_roundtrip_and_tamper),
        QTEST(test_keypool_filler_fills_to_size_with_audited_protected_keys),
        QTEST(test_keypool_keys_are_never_extractable),
        QTEST(test_issue_takes_a_pool_key),
        QTEST(test_concurrent_issuers_get_different_pool_keys),
        QTEST(test_empty_pool_falls_back_to_inline_generation),
        QTEST(test_failed_issuance_after_reservation_destroys_pool_key),
        QTEST(test_orphan_cleanup_destroys_unassigned_kp_keys_only),
        QTEST(test_terminate_destroys_a_pool_key),
        QTEST(test_stale_store_cannot_bind_a_pool_key_twice),
        QTEST(test_legacy_token_pool_keys_give_way_to_wrapped_ones),
        QTEST(test_legacy_token_key_credential_signs_and_terminates),
        QTEST(test_cleanup_drops_wrapped_pool_keys_of_another_type),
        QTEST(test_orphan_with_quotes_in_its_label_is_audited_escaped),
        QTEST(test_invalid_utf8_is_refused_naming_the_field),
    };
    int r = qtest_run("ra", cases, sizeof cases / sizeof cases[0]);
    suite_clean();
    return r;
}
