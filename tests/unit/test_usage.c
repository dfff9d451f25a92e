/* Unit tests for sign/usage.c: package windows at their edges on the
 * injected clock, relying-party payment and secrets, the history, and that
 * a charge is part of its caller's transaction (real LMDB in a temp dir,
 * the shipped policies/packages.yaml). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/time.h"
#include "ra/ra_int.h"
#include "sign/usage.h"
#include "tests/lib/qtest.h"

#define DAY INT64_C(86400)
/* 2027-01-01T00:00:00Z */
#define T0 INT64_C(1798761600)

static int64_t g_now_ms;
static int64_t clock_fn(void *ctx)
{
    return g_now_ms;
}
static void at(int64_t t)
{
    g_now_ms = t * 1000;
}

static char g_dir[512];
static qtsp_store *g_st;
static qtsp_usage *g_u;

static void setup(const char *policies)
{
    qtsp_clock_set(clock_fn, NULL);
    at(T0);
    g_st = qtest_store_fresh("usage", 8, g_dir, sizeof g_dir);
    char pol[1024];
    snprintf(pol, sizeof pol, "%s/policies", qtest_src_dir());
    qtsp_status rc = qtsp_usage_new(g_st, policies ? policies : pol, &g_u);
    if (rc != QTSP_OK)
        fprintf(stderr, "usage_new: %s\n", qtsp_err_message());
    CU_ASSERT_FATAL(rc == QTSP_OK);
}

static void teardown(void)
{
    qtsp_usage_free(g_u);
    g_u = NULL;
    qtest_store_done(g_st, g_dir);
    qtsp_clock_set(NULL, NULL);
}

typedef struct signer_ctx {
    const char *user_id, *subject_id, *package;
    int64_t enrolled;
} signer_ctx;

static qtsp_status signer_txn(qtsp_txn *txn, void *vctx)
{
    signer_ctx *c = vctx;
    char when[32];
    qtsp_format_rfc3339((time_t)c->enrolled, when, sizeof when);
    /* the records as ra/ra.c writes them at enrolment and issuance */
    json_t *subj = json_pack("{s:s,s:s,s:s}", "subject_id", c->subject_id, "package", c->package,
                             "enrolled_at", when);
    json_t *user = json_pack("{s:s,s:s,s:s}", "user_id", c->user_id, "subject_id", c->subject_id,
                             "created_at", when);
    qtsp_status rc = ra_put_json(txn, QTSP_T_SUBJECTS, c->subject_id, subj, 0);
    if (rc == QTSP_OK)
        rc = ra_put_json(txn, QTSP_T_USERS, c->user_id, user, 0);
    json_decref(subj);
    json_decref(user);
    return rc;
}

static void add_signer(const char *user_id, const char *subject_id, const char *package,
                       int64_t enrolled)
{
    signer_ctx c = {user_id, subject_id, package, enrolled};
    CU_ASSERT_FATAL(qtsp_store_write(g_st, signer_txn, &c) == QTSP_OK);
}

static void add_rp(const char *name)
{
    char secret[64];
    CU_ASSERT_FATAL(qtsp_usage_rp_add(g_u, "test", name, secret, sizeof secret) == QTSP_OK);
}

typedef struct charge_ctx {
    const qtsp_signing *s;
    int abort_after; /* fail the transaction after a successful charge */
} charge_ctx;

static qtsp_status charge_txn(qtsp_txn *txn, void *vctx)
{
    charge_ctx *c = vctx;
    TRY(qtsp_usage_charge(g_u, txn, c->s));
    if (c->abort_after)
        FAIL(QTSP_ERR_STATE, "the caller's later step failed");
    return QTSP_OK;
}

static const char *const k_hashes[] = {
    "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="};

/* Charges n signatures for user (relying party rp or NULL) in its own
 * write transaction; returns the status. */
static qtsp_status charge_n(const char *user, const char *rp, size_t n)
{
    const char *hashes[QTSP_USAGE_MAX_SIGNATURES + 1];
    for (size_t i = 0; i < n && i <= QTSP_USAGE_MAX_SIGNATURES; i++)
        hashes[i] = k_hashes[i % 3];
    qtsp_signing s = {user, "0a1b2c", rp, n, hashes, "2.16.840.1.101.3.4.2.1", "sad-1"};
    charge_ctx c = {&s, 0};
    qtsp_err_clear();
    return qtsp_store_write(g_st, charge_txn, &c);
}

static json_t *quota(const char *user)
{
    json_t *q = NULL;
    CU_ASSERT_EQUAL(qtsp_usage_quota(g_u, user, &q), QTSP_OK);
    return q;
}

static json_int_t left(const char *user)
{
    json_t *q = quota(user);
    json_t *l = json_object_get(q, "signatures_left");
    json_int_t v = json_is_null(l) ? -1 : json_integer_value(l);
    json_decref(q);
    return v;
}

static int same_time(json_t *o, const char *key, int64_t t)
{
    char want[32];
    qtsp_format_rfc3339((time_t)t, want, sizeof want);
    const char *got = json_string_value(json_object_get(o, key));
    return got && strcmp(got, want) == 0;
}

static uint64_t table_count(qtsp_table t)
{
    qtsp_txn *txn;
    uint64_t n = 0;
    CU_ASSERT_FATAL(qtsp_store_begin(g_st, 0, &txn) == QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_count(txn, t, &n), QTSP_OK);
    qtsp_txn_abort(txn);
    return n;
}

/* ---- the policy ---- */

static qtsp_status load_text(const char *text, qtsp_packages *out)
{
    char path[600];
    snprintf(path, sizeof path, "%s/packages.yaml", g_dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    qtsp_err_clear();
    return qtsp_packages_load(path, out);
}

static void test_usage_policy_has_the_five_packages_and_prices(void)
{
    setup(NULL);
    const qtsp_packages *ps = qtsp_usage_packages(g_u);
    CU_ASSERT_EQUAL(ps->n, 5);
    CU_ASSERT_STRING_EQUAL(ps->currency, "EUR");
    CU_ASSERT_EQUAL(ps->rp_price_cents, 25);
    const qtsp_package *p = qtsp_packages_find(ps, "free");
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_EQUAL(p->signatures, 3);
    CU_ASSERT_EQUAL(p->period_s, 365 * DAY);
    CU_ASSERT_EQUAL(p->price_cents, 0);
    p = qtsp_packages_find(ps, "economical");
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_EQUAL(p->signatures, 7);
    CU_ASSERT_EQUAL(p->period_s, 30 * DAY);
    CU_ASSERT_EQUAL(p->price_cents, 490);
    CU_ASSERT_PTR_NOT_NULL(qtsp_packages_find(ps, "practical"));
    CU_ASSERT_PTR_NOT_NULL(qtsp_packages_find(ps, "unlimited"));
    CU_ASSERT_PTR_NOT_NULL(qtsp_packages_find(ps, "unlimited-plus"));
    CU_ASSERT_PTR_NULL(qtsp_packages_find(ps, "gold"));
    teardown();
}

static void test_usage_policy_refuses_bad_prices_and_keys(void)
{
    setup(NULL);
    qtsp_packages ps;
    const char *head = "version: 1\npackages:\n  a:\n    signatures: 1\n    period: 1d\n"
                       "    validity: 1d\n";
    char t[512];
    snprintf(t, sizeof t, "%s    price: 4.999\n", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "price"));
    snprintf(t, sizeof t, "%s    price: -1\n", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_ERR_CONFIG);
    snprintf(t, sizeof t, "%s    price: 1.\n", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_ERR_CONFIG);
    snprintf(t, sizeof t, "%s    colour: red\n", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_ERR_CONFIG);
    snprintf(t, sizeof t, "currency: euro\n%s", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_ERR_CONFIG);
    CU_ASSERT_EQUAL(load_text("version: 1\npackages:\n  a:\n    signatures: 1\n    period: 0\n"
                              "    validity: 1d\n",
                              &ps),
                    QTSP_ERR_CONFIG);
    /* without prices (a home from before them): loads, prices unknown */
    CU_ASSERT_EQUAL(load_text(head, &ps), QTSP_OK);
    CU_ASSERT_EQUAL(ps.rp_price_cents, -1);
    CU_ASSERT_EQUAL(ps.p[0].price_cents, -1);
    snprintf(t, sizeof t, "relying_party_price: 12.5\n%s    price: 7\n", head);
    CU_ASSERT_EQUAL(load_text(t, &ps), QTSP_OK);
    CU_ASSERT_EQUAL(ps.rp_price_cents, 1250);
    CU_ASSERT_EQUAL(ps.p[0].price_cents, 700);
    teardown();
}

/* ---- windows ---- */

static void test_usage_free_three_a_year_then_quota_then_a_new_year(void)
{
    setup(NULL);
    add_signer("u1", "s1", "free", T0);
    CU_ASSERT_EQUAL(left("u1"), 3);
    at(T0);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 1), QTSP_OK);
    at(T0 + 100 * DAY);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 1), QTSP_OK);
    at(T0 + 365 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 1), QTSP_OK);
    CU_ASSERT_EQUAL(left("u1"), 0);
    uint64_t hist = table_count(QTSP_T_HISTORY);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 1), QTSP_ERR_QUOTA);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "free"));
    CU_ASSERT_EQUAL(table_count(QTSP_T_HISTORY), hist); /* nothing written */
    /* exactly a year after enrolment: a new window of 3 */
    at(T0 + 365 * DAY);
    json_t *q = quota("u1");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "signatures_left")), 3);
    CU_ASSERT(same_time(q, "window_start", T0 + 365 * DAY));
    CU_ASSERT(same_time(q, "window_end", T0 + 730 * DAY));
    CU_ASSERT(json_is_null(json_object_get(q, "valid_until")));
    CU_ASSERT(json_is_false(json_object_get(q, "ended")));
    json_decref(q);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 3), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u1", NULL, 1), QTSP_ERR_QUOTA);
    teardown();
}

static void test_usage_economical_seven_in_thirty_days_then_ended(void)
{
    setup(NULL);
    add_signer("u2", "s2", "economical", T0);
    for (int i = 0; i < 7; i++) {
        at(T0 + i * DAY);
        CU_ASSERT_EQUAL(charge_n("u2", NULL, 1), QTSP_OK);
    }
    at(T0 + 30 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u2", NULL, 1), QTSP_ERR_QUOTA);
    json_t *q = quota("u2");
    CU_ASSERT(same_time(q, "window_end", T0 + 30 * DAY));
    CU_ASSERT(same_time(q, "valid_until", T0 + 30 * DAY));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "used")), 7);
    json_decref(q);
    /* the package lasts 30 days: at the second it ends, nothing is left */
    at(T0 + 30 * DAY);
    CU_ASSERT_EQUAL(charge_n("u2", NULL, 1), QTSP_ERR_QUOTA);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "ended"));
    q = quota("u2");
    CU_ASSERT(json_is_true(json_object_get(q, "ended")));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "signatures_left")), 0);
    json_decref(q);
    teardown();
}

static void test_usage_windows_restart_every_period_within_validity(void)
{
    /* a 7-per-30-days package sold for 90 days: three windows, the count
     * starts again at each edge */
    char dir[600];
    setup(NULL);
    snprintf(dir, sizeof dir, "%s/pol", g_dir);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
    char path[700];
    snprintf(path, sizeof path, "%s/packages.yaml", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("version: 1\npackages:\n  economical:\n    signatures: 7\n    period: 30d\n"
          "    validity: 90d\n",
          f);
    fclose(f);
    qtsp_usage_free(g_u);
    CU_ASSERT_FATAL(qtsp_usage_new(g_st, dir, &g_u) == QTSP_OK);
    add_signer("u3", "s3", "economical", T0 + 5);
    at(T0 + 5);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 7), QTSP_OK);
    at(T0 + 5 + 30 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 1), QTSP_ERR_QUOTA);
    at(T0 + 5 + 30 * DAY);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 7), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 1), QTSP_ERR_QUOTA);
    at(T0 + 5 + 60 * DAY);
    CU_ASSERT_EQUAL(left("u3"), 7);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 8), QTSP_ERR_QUOTA); /* n more must fit */
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 6), QTSP_OK);
    CU_ASSERT_EQUAL(left("u3"), 1);
    at(T0 + 5 + 90 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 1), QTSP_OK);
    at(T0 + 5 + 90 * DAY);
    CU_ASSERT_EQUAL(charge_n("u3", NULL, 1), QTSP_ERR_QUOTA);
    teardown();
}

static void test_usage_unlimited_until_its_validity_ends(void)
{
    setup(NULL);
    add_signer("u4", "s4", "unlimited", T0);
    add_signer("u5", "s5", "unlimited-plus", T0);
    at(T0 + 10);
    CU_ASSERT_EQUAL(charge_n("u4", NULL, QTSP_USAGE_MAX_SIGNATURES), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u4", NULL, QTSP_USAGE_MAX_SIGNATURES), QTSP_OK);
    CU_ASSERT_EQUAL(left("u4"), -1); /* null: unlimited */
    at(T0 + 30 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u4", NULL, 1), QTSP_OK);
    json_t *q = quota("u4");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "used")),
                    2 * QTSP_USAGE_MAX_SIGNATURES + 1);
    CU_ASSERT(json_is_null(json_object_get(q, "signatures")));
    json_decref(q);
    at(T0 + 30 * DAY);
    CU_ASSERT_EQUAL(charge_n("u4", NULL, 1), QTSP_ERR_QUOTA);
    CU_ASSERT_EQUAL(charge_n("u5", NULL, 1), QTSP_OK);
    at(T0 + 365 * DAY - 1);
    CU_ASSERT_EQUAL(charge_n("u5", NULL, 1), QTSP_OK);
    at(T0 + 365 * DAY);
    CU_ASSERT_EQUAL(charge_n("u5", NULL, 1), QTSP_ERR_QUOTA);
    teardown();
}

static void test_usage_practical_hundred_a_year(void)
{
    setup(NULL);
    add_signer("u6", "s6", "practical", T0);
    at(T0 + DAY);
    CU_ASSERT_EQUAL(charge_n("u6", NULL, 99), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u6", NULL, 2), QTSP_ERR_QUOTA);
    CU_ASSERT_EQUAL(charge_n("u6", NULL, 1), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u6", NULL, 1), QTSP_ERR_QUOTA);
    teardown();
}

static void test_usage_quota_is_the_subjects_across_certificates(void)
{
    setup(NULL);
    add_signer("ua", "sx", "free", T0);
    add_signer("ub", "sx", "free", T0); /* a second certificate of the same person */
    CU_ASSERT_EQUAL(charge_n("ua", NULL, 2), QTSP_OK);
    CU_ASSERT_EQUAL(left("ub"), 1);
    CU_ASSERT_EQUAL(charge_n("ub", NULL, 2), QTSP_ERR_QUOTA);
    teardown();
}

/* ---- atomicity ---- */

static void test_usage_charge_in_an_aborted_txn_leaves_nothing(void)
{
    setup(NULL);
    add_signer("u7", "s7", "free", T0);
    add_rp("shop");
    uint64_t counters = table_count(QTSP_T_COUNTERS);
    const char *hashes[] = {k_hashes[0]};
    qtsp_signing s = {"u7", "0a1b2c", NULL, 1, hashes, "2.16.840.1.101.3.4.2.1", "sad-1"};
    charge_ctx c = {&s, 1};
    CU_ASSERT_EQUAL(qtsp_store_write(g_st, charge_txn, &c), QTSP_ERR_STATE);
    s.relying_party = "shop";
    CU_ASSERT_EQUAL(qtsp_store_write(g_st, charge_txn, &c), QTSP_ERR_STATE);
    /* by hand: charge, then abort */
    qtsp_txn *txn;
    CU_ASSERT_FATAL(qtsp_store_begin(g_st, 1, &txn) == QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_usage_charge(g_u, txn, &s), QTSP_OK);
    qtsp_txn_abort(txn);
    CU_ASSERT_EQUAL(table_count(QTSP_T_HISTORY), 0);
    CU_ASSERT_EQUAL(table_count(QTSP_T_QUOTA), 0);
    CU_ASSERT_EQUAL(table_count(QTSP_T_RP_USAGE), 0);
    CU_ASSERT_EQUAL(table_count(QTSP_T_COUNTERS), counters);
    CU_ASSERT_EQUAL(left("u7"), 3);
    /* a refusal inside a transaction that then commits writes nothing */
    CU_ASSERT_EQUAL(charge_n("u7", NULL, 3), QTSP_OK);
    CU_ASSERT_FATAL(qtsp_store_begin(g_st, 1, &txn) == QTSP_OK);
    s.relying_party = NULL;
    CU_ASSERT_EQUAL(qtsp_usage_charge(g_u, txn, &s), QTSP_ERR_QUOTA);
    CU_ASSERT_EQUAL(qtsp_txn_commit(txn), QTSP_OK);
    CU_ASSERT_EQUAL(table_count(QTSP_T_HISTORY), 1);
    json_t *q = quota("u7");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "used")), 3);
    json_decref(q);
    teardown();
}

/* ---- relying parties ---- */

static void test_usage_rp_paid_signings_count_for_the_rp_per_month(void)
{
    setup(NULL);
    add_signer("u8", "s8", "free", T0);
    add_rp("shop");
    add_rp("bank");
    CU_ASSERT_EQUAL(charge_n("u8", NULL, 3), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u8", NULL, 1), QTSP_ERR_QUOTA);
    /* the package is spent; the relying party pays */
    CU_ASSERT_EQUAL(charge_n("u8", "shop", 2), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u8", "shop", 1), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u8", "bank", 1), QTSP_OK);
    at(T0 + 31 * DAY); /* February */
    CU_ASSERT_EQUAL(charge_n("u8", "shop", 4), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u8", "nobody", 1), QTSP_ERR_AUTH);
    json_t *q = quota("u8");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "used")), 3);
    json_decref(q);

    json_t *r = NULL;
    CU_ASSERT_FATAL(qtsp_usage_rp_report(g_u, NULL, &r) == QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "currency")), "EUR");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "price_per_signature")), "0.25");
    json_t *us = json_object_get(r, "usage");
    CU_ASSERT_EQUAL_FATAL(json_array_size(us), 3);
    json_t *e = json_array_get(us, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "relying_party")), "bank");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "month")), "2027-01");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "signatures")), 1);
    e = json_array_get(us, 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "relying_party")), "shop");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "month")), "2027-01");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "signatures")), 3);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "amount")), "0.75");
    e = json_array_get(us, 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "month")), "2027-02");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "signatures")), 4);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "amount")), "1.00");
    json_decref(r);
    CU_ASSERT_FATAL(qtsp_usage_rp_report(g_u, "2027-02", &r) == QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "usage")), 1);
    json_decref(r);
    CU_ASSERT_EQUAL(qtsp_usage_rp_report(g_u, "2027-13", &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_usage_rp_report(g_u, "2027-1", &r), QTSP_ERR_INVALID);
    teardown();
}

static void test_usage_rp_secret_checks(void)
{
    setup(NULL);
    char secret[64], header[200], name[QTSP_RP_NAME_MAX + 1];
    CU_ASSERT_FATAL(qtsp_usage_rp_add(g_u, "cli:test", "shop.example", secret, sizeof secret) ==
                    QTSP_OK);
    CU_ASSERT_EQUAL(strlen(secret), 43);
    snprintf(header, sizeof header, "shop.example:%s", secret);
    CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, header, name, sizeof name), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(name, "shop.example");
    /* the secret is not stored, only its hash */
    json_t *l = NULL;
    CU_ASSERT_FATAL(qtsp_usage_rp_list(g_u, &l) == QTSP_OK);
    char *txt = json_dumps(l, 0);
    CU_ASSERT_PTR_NULL(strstr(txt, secret));
    CU_ASSERT_PTR_NULL(strstr(txt, "secret_hash"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "relying_parties")), 1);
    free(txt);
    json_decref(l);

    /* wrong secret, unknown name: the same refusal */
    snprintf(header, sizeof header, "shop.example:%c%s", secret[0] == 'A' ? 'B' : 'A', secret + 1);
    CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, header, name, sizeof name), QTSP_ERR_AUTH);
    snprintf(header, sizeof header, "shop.other:%s", secret);
    CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, header, name, sizeof name), QTSP_ERR_AUTH);
    /* malformed */
    static const char *const bad[] = {"",
                                      "shop.example",
                                      ":secret",
                                      "shop example:x",
                                      "shop.example:",
                                      "shop.example:se cret",
                                      "shop:é",
                                      "a:b:c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, bad[i], name, sizeof name), QTSP_ERR_INVALID);
    }
    char longname[300];
    memset(longname, 'a', 65);
    snprintf(longname + 65, sizeof longname - 65, ":%s", secret);
    CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, longname, name, sizeof name), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_usage_rp_check(g_u, NULL, name, sizeof name), QTSP_ERR_INVALID);

    /* duplicates and bad names refused, nothing written */
    uint64_t n = table_count(QTSP_T_AUDIT);
    CU_ASSERT_EQUAL(qtsp_usage_rp_add(g_u, "cli:test", "shop.example", secret, sizeof secret),
                    QTSP_ERR_EXISTS);
    CU_ASSERT_EQUAL(qtsp_usage_rp_add(g_u, "cli:test", "a b", secret, sizeof secret),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_usage_rp_add(g_u, "cli:test", "", secret, sizeof secret),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(table_count(QTSP_T_AUDIT), n);
    CU_ASSERT_EQUAL(table_count(QTSP_T_RPS), 1);
    CU_ASSERT_EQUAL(n, 1); /* the one rp.add */
    teardown();
}

/* ---- history ---- */

static void test_usage_history_newest_first_with_every_field(void)
{
    setup(NULL);
    add_signer("ab", "s9", "free", T0);
    add_signer("abc", "s10", "free", T0); /* a user id the first one prefixes */
    add_rp("shop");
    at(T0 + 10);
    CU_ASSERT_EQUAL(charge_n("ab", NULL, 2), QTSP_OK);
    at(T0 + 20);
    CU_ASSERT_EQUAL(charge_n("abc", NULL, 1), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("ab", "shop", 1), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("ab", NULL, 1), QTSP_OK); /* same second: still ordered */
    json_t *h = NULL;
    CU_ASSERT_FATAL(qtsp_usage_history(g_u, "ab", 0, &h) == QTSP_OK);
    json_t *a = json_object_get(h, "signings");
    CU_ASSERT_EQUAL_FATAL(json_array_size(a), 3);
    json_t *e0 = json_array_get(a, 0), *e1 = json_array_get(a, 1), *e2 = json_array_get(a, 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e0, "paid_by")), "package");
    CU_ASSERT_PTR_NULL(json_object_get(e0, "relying_party"));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e1, "relying_party")), "shop");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e1, "paid_by")), "relying_party");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e2, "time")),
                           "2027-01-01T00:00:10.000Z");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e2, "credential")), "0a1b2c");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e2, "hash_algorithm")),
                           "2.16.840.1.101.3.4.2.1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e2, "package")), "free");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e2, "sad_id")), "sad-1");
    CU_ASSERT(same_time(e2, "window_start", T0));
    CU_ASSERT(same_time(e2, "window_end", T0 + 365 * DAY));
    CU_ASSERT(same_time(e2, "retain_until", T0 + 10 + QTSP_USAGE_RETENTION_S));
    json_t *hs = json_object_get(e2, "hashes");
    CU_ASSERT_EQUAL(json_array_size(hs), 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(hs, 1)), k_hashes[1]);
    json_decref(h);
    CU_ASSERT_FATAL(qtsp_usage_history(g_u, "ab", 2, &h) == QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(h, "signings")), 2);
    json_decref(h);
    /* pages: 2 then the rest through the cursor, nothing twice, nothing lost */
    CU_ASSERT_FATAL(qtsp_usage_history_page(g_u, "ab", 2, NULL, &h) == QTSP_OK);
    const char *next = json_string_value(json_object_get(h, "next"));
    CU_ASSERT_FATAL(next != NULL && strlen(next) == 32);
    json_t *p2 = NULL;
    CU_ASSERT_FATAL(qtsp_usage_history_page(g_u, "ab", 2, next, &p2) == QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(json_array_size(json_object_get(p2, "signings")), 1);
    CU_ASSERT_PTR_NULL(json_object_get(p2, "next")); /* the last page */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
                               json_array_get(json_object_get(p2, "signings"), 0), "time")),
                           "2027-01-01T00:00:10.000Z");
    json_decref(p2);
    json_decref(h);
    CU_ASSERT_FATAL(qtsp_usage_history_page(g_u, "ab", 3, NULL, &h) == QTSP_OK);
    CU_ASSERT_PTR_NULL(json_object_get(h, "next")); /* exactly 3: no further page */
    json_decref(h);
    h = NULL;
    CU_ASSERT_EQUAL(qtsp_usage_history_page(g_u, "ab", 2, "zz", &h), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_usage_history_page(g_u, "ab", 2, "0123456789ABCDEF0123456789abcdef", &h),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(h);
    CU_ASSERT_FATAL(qtsp_usage_history(g_u, "abc", 0, &h) == QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(h, "signings")), 1);
    json_decref(h);
    teardown();
}

/* ---- bad input ---- */

static void test_usage_refuses_unknown_signers_and_bad_signings(void)
{
    setup(NULL);
    add_signer("u11", "s11", "free", T0);
    json_t *o = NULL;
    CU_ASSERT_EQUAL(charge_n("nobody", NULL, 1), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_usage_history(g_u, "nobody", 0, &o), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_usage_quota(g_u, "nobody", &o), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_usage_quota(g_u, "", &o), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(charge_n("u11", NULL, 0), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(charge_n("u11", NULL, QTSP_USAGE_MAX_SIGNATURES + 1), QTSP_ERR_INVALID);
    const char *hashes[] = {k_hashes[0], ""};
    qtsp_signing s = {"u11", "0a1b2c", NULL, 2, hashes, "2.16.840.1.101.3.4.2.1", NULL};
    charge_ctx c = {&s, 0};
    CU_ASSERT_EQUAL(qtsp_store_write(g_st, charge_txn, &c), QTSP_ERR_INVALID);
    s.n = 1;
    s.credential_id = "";
    CU_ASSERT_EQUAL(qtsp_store_write(g_st, charge_txn, &c), QTSP_ERR_INVALID);
    s.credential_id = "0a";
    s.hash_oid = NULL;
    CU_ASSERT_EQUAL(qtsp_store_write(g_st, charge_txn, &c), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(table_count(QTSP_T_HISTORY), 0);
    teardown();
}

/* ---- package change ---- */

static int g_pkg_events;
static qtsp_status audit_fn(void *ctx, uint64_t seq, const char *body, size_t len)
{
    json_t *o = json_loadb(body, len, 0, NULL);
    if (o && strcmp(json_string_value(json_object_get(o, "event")), "signer.package") == 0) {
        json_t *d = json_object_get(o, "details");
        if (strcmp(json_string_value(json_object_get(d, "from")), "free") == 0 &&
            strcmp(json_string_value(json_object_get(d, "to")), "economical") == 0 &&
            strcmp(json_string_value(json_object_get(o, "actor")), "cli:office") == 0)
            g_pkg_events++;
    }
    json_decref(o);
    return QTSP_OK;
}

static void test_usage_package_change_restarts_the_window_audited(void)
{
    setup(NULL);
    add_signer("u12", "s12", "free", T0);
    at(T0 + DAY);
    CU_ASSERT_EQUAL(charge_n("u12", NULL, 3), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u12", NULL, 1), QTSP_ERR_QUOTA);
    uint64_t n = table_count(QTSP_T_AUDIT);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_usage_set_package(g_u, "cli:office", "u12", "gold"), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_usage_set_package(g_u, "cli:office", "nobody", "free"),
                    QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(table_count(QTSP_T_AUDIT), n);
    CU_ASSERT_EQUAL(left("u12"), 0);
    at(T0 + 2 * DAY);
    CU_ASSERT_EQUAL(qtsp_usage_set_package(g_u, "cli:office", "u12", "economical"), QTSP_OK);
    json_t *q = quota("u12");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(q, "package")), "economical");
    CU_ASSERT(same_time(q, "package_since", T0 + 2 * DAY));
    CU_ASSERT(same_time(q, "window_end", T0 + 32 * DAY));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(q, "signatures_left")), 7);
    json_decref(q);
    CU_ASSERT_EQUAL(charge_n("u12", NULL, 7), QTSP_OK);
    CU_ASSERT_EQUAL(charge_n("u12", NULL, 1), QTSP_ERR_QUOTA);
    at(T0 + 32 * DAY);
    CU_ASSERT_EQUAL(charge_n("u12", NULL, 1), QTSP_ERR_QUOTA); /* the 30 days are over */
    CU_ASSERT_EQUAL(table_count(QTSP_T_AUDIT), n + 1);
    g_pkg_events = 0;
    CU_ASSERT_EQUAL(qtsp_audit_list(g_st, 1, audit_fn, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(g_pkg_events, 1);
    teardown();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_usage_policy_has_the_five_packages_and_prices),
        QTEST(test_usage_policy_refuses_bad_prices_and_keys),
        QTEST(test_usage_free_three_a_year_then_quota_then_a_new_year),
        QTEST(test_usage_economical_seven_in_thirty_days_then_ended),
        QTEST(test_usage_windows_restart_every_period_within_validity),
        QTEST(test_usage_unlimited_until_its_validity_ends),
        QTEST(test_usage_practical_hundred_a_year),
        QTEST(test_usage_quota_is_the_subjects_across_certificates),
        QTEST(test_usage_charge_in_an_aborted_txn_leaves_nothing),
        QTEST(test_usage_rp_paid_signings_count_for_the_rp_per_month),
        QTEST(test_usage_rp_secret_checks),
        QTEST(test_usage_history_newest_first_with_every_field),
        QTEST(test_usage_refuses_unknown_signers_and_bad_signings),
        QTEST(test_usage_package_change_restarts_the_window_audited),
    };
    return qtest_run("usage", cases, sizeof cases / sizeof cases[0]);
}
