/* Unit tests for ra/operator.c: tokens, argon2id storage, auth, audit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/store.h"
#include "core/clock.h"
#include "core/err.h"
#include "ra/operator.h"
#include "tests/lib/qtest.h"

static char g_dir[512];

static qtsp_store *open_fresh(void)
{
    return qtest_store_fresh("operator", 4, g_dir, sizeof g_dir);
}

static void done(qtsp_store *st)
{
    qtest_store_done(st, g_dir);
}

static void test_operator_roles_parse_and_name(void)
{
    const char *names[] = {"ra-officer", "hotline", "office", "auditor"};
    for (int i = 0; i < 4; i++) {
        qtsp_role r;
        CU_ASSERT_EQUAL(qtsp_role_parse(names[i], &r), QTSP_OK);
        CU_ASSERT_EQUAL(r, 1 << i);
        CU_ASSERT_STRING_EQUAL(qtsp_role_name(r), names[i]);
    }
    qtsp_role r;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_role_parse("admin", &r), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_role_parse(NULL, &r), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_operator_add_prints_a_token_that_authenticates(void)
{
    qtsp_store *st = open_fresh();
    char tok[128];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "alice", QTSP_ROLE_HOTLINE, tok, sizeof tok), QTSP_OK);
    /* <16 hex>.<43 base64url> */
    CU_ASSERT_EQUAL(strlen(tok), 60);
    CU_ASSERT_EQUAL(tok[16], '.');
    CU_ASSERT_EQUAL(strspn(tok, "0123456789abcdef"), 16);
    CU_ASSERT_EQUAL(strspn(tok + 17, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-_"),
                    43);
    qtsp_operator op;
    CU_ASSERT_EQUAL_FATAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(op.name, "alice");
    CU_ASSERT_EQUAL(op.role, QTSP_ROLE_HOTLINE);
    CU_ASSERT_EQUAL(strncmp(op.id, tok, 16), 0);
    CU_ASSERT_EQUAL(strlen(op.id), 16);
    /* second time through the verified-token cache */
    memset(&op, 0, sizeof op);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(op.name, "alice");

    char tok2[128];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "bob", QTSP_ROLE_OFFICE, tok2, sizeof tok2), QTSP_OK);
    CU_ASSERT_NOT_EQUAL(strcmp(tok, tok2), 0);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok2, &op), QTSP_OK);
    CU_ASSERT_EQUAL(op.role, QTSP_ROLE_OFFICE);
    done(st);
}

static void expect_auth_fails(qtsp_store *st, const char *tok)
{
    qtsp_operator op = {.name = "untouched"};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_ERR_AUTH);
    CU_ASSERT_STRING_EQUAL(op.name, "untouched");
    qtsp_err_clear();
}

static void test_operator_auth_rejects_wrong_unknown_and_garbage(void)
{
    qtsp_store *st = open_fresh();
    char tok[128], t[160];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "carol", QTSP_ROLE_RA_OFFICER, tok, sizeof tok), QTSP_OK);
    /* wrong secret (one character changed, still canonical base64url) */
    snprintf(t, sizeof t, "%s", tok);
    t[20] = t[20] == 'A' ? 'B' : 'A';
    expect_auth_fails(st, t);
    /* unknown id */
    snprintf(t, sizeof t, "%s", tok);
    t[0] = t[0] == '0' ? '1' : '0';
    expect_auth_fails(st, t);
    /* non-canonical last character (unused bits set) */
    snprintf(t, sizeof t, "%s", tok);
    t[59] = t[59] == 'B' ? 'C' : 'B';
    expect_auth_fails(st, t);
    /* malformed shapes */
    expect_auth_fails(st, NULL);
    expect_auth_fails(st, "");
    expect_auth_fails(st, "garbage");
    expect_auth_fails(st, ".");
    snprintf(t, sizeof t, "%s", tok);
    t[16] = ':';
    expect_auth_fails(st, t);
    snprintf(t, sizeof t, "%sA", tok); /* too long */
    expect_auth_fails(st, t);
    snprintf(t, sizeof t, "%.59s", tok); /* too short */
    expect_auth_fails(st, t);
    snprintf(t, sizeof t, "%s", tok);
    t[3] = 'G'; /* not hex */
    expect_auth_fails(st, t);
    snprintf(t, sizeof t, "%s", tok);
    t[30] = '+'; /* base64, not base64url */
    expect_auth_fails(st, t);
    /* the real one still works */
    qtsp_operator op;
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    done(st);
}

static int64_t g_now_ms;
static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return g_now_ms;
}

static void test_operator_repeated_failures_lock_the_id_for_a_minute(void)
{
    qtsp_store *st = open_fresh();
    char tok[128], bad[160];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "dave", QTSP_ROLE_OFFICE, tok, sizeof tok), QTSP_OK);
    g_now_ms = qtsp_now_ms();
    qtsp_clock_set(test_clock, NULL);
    snprintf(bad, sizeof bad, "%s", tok);
    bad[25] = bad[25] == 'A' ? 'B' : 'A';
    for (int i = 0; i < 5; i++)
        expect_auth_fails(st, bad);
    /* locked: even the right token is refused, without running argon2id */
    expect_auth_fails(st, tok);
    g_now_ms += 59 * 1000;
    expect_auth_fails(st, tok);
    g_now_ms += 2 * 1000;
    qtsp_operator op;
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(op.name, "dave");
    qtsp_clock_set(NULL, NULL);
    done(st);
}

static void test_operator_add_refuses_duplicate_and_bad_names(void)
{
    qtsp_store *st = open_fresh();
    char tok[128] = "unchanged";
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "dave", QTSP_ROLE_AUDITOR, tok, sizeof tok), QTSP_OK);
    snprintf(tok, sizeof tok, "unchanged");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_add(st, "cli:root", "dave", QTSP_ROLE_HOTLINE, tok, sizeof tok),
                    QTSP_ERR_EXISTS);
    CU_ASSERT_STRING_EQUAL(tok, "unchanged");
    char long_name[80];
    memset(long_name, 'x', 65);
    long_name[65] = 0;
    const char *bad[] = {"", " lead", "trail ", "tab\tname", long_name, NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL(
            qtsp_operator_add(st, "cli:root", bad[i], QTSP_ROLE_HOTLINE, tok, sizeof tok),
            QTSP_ERR_INVALID);
    }
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_add(st, "cli:root", "erin", (qtsp_role)3, tok, sizeof tok),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_operator_add(st, "cli:root", "erin", QTSP_ROLE_HOTLINE, tok, 64),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    long_name[64] = 0; /* exactly 64 is fine */
    CU_ASSERT_EQUAL(
        qtsp_operator_add(st, "cli:root", long_name, QTSP_ROLE_HOTLINE, tok, sizeof tok), QTSP_OK);
    qtsp_txn *t;
    uint64_t n = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_OPERATORS, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);
    qtsp_txn_abort(t);
    done(st);
}

typedef struct scan_ctx {
    const unsigned char *needle;
    size_t nlen;
    int found;
    int records;
} scan_ctx;

static qtsp_status scan_fn(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                           int *stop)
{
    scan_ctx *c = ctx;
    c->records++;
    const unsigned char *v = val;
    for (size_t i = 0; i + c->nlen <= vlen; i++)
        if (memcmp(v + i, c->needle, c->nlen) == 0)
            c->found = 1;
    return QTSP_OK;
}

static int b64v(int ch)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = strchr(a, ch);
    return p ? (int)(p - a) : -1;
}

static void test_operator_record_holds_no_token_material(void)
{
    qtsp_store *st = open_fresh();
    char tok[128];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "frank", QTSP_ROLE_HOTLINE, tok, sizeof tok), QTSP_OK);
    /* the secret as text, its first 12 characters, and as raw bytes */
    unsigned char raw[32];
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (int i = 17; i < 60 && o < 32; i++) {
        acc = acc << 6 | (unsigned)b64v(tok[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    CU_ASSERT_EQUAL_FATAL(o, 32);
    scan_ctx cs[] = {{(const unsigned char *)tok + 17, 43, 0, 0},
                     {(const unsigned char *)tok + 17, 12, 0, 0},
                     {raw, 32, 0, 0},
                     {raw, 8, 0, 0},
                     {(const unsigned char *)tok, 60, 0, 0}};
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_OPERATORS, NULL, 0, scan_fn, &cs[i]), QTSP_OK);
        CU_ASSERT_EQUAL(cs[i].records, 1);
        CU_ASSERT_EQUAL(cs[i].found, 0);
        cs[i].records = 0;
        CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_AUDIT, NULL, 0, scan_fn, &cs[i]), QTSP_OK);
        CU_ASSERT_EQUAL(cs[i].found, 0);
    }
    /* the record carries an argon2id hash */
    const void *v;
    size_t vl;
    char id[17];
    memcpy(id, tok, 16);
    id[16] = 0;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_OPERATORS, id, 16, &v, &vl), QTSP_OK);
    scan_ctx a = {(const unsigned char *)"$argon2id$v=19$m=32768,t=3,p=1$", 31, 0, 0};
    int st_ = 0;
    CU_ASSERT_EQUAL(scan_fn(&a, id, 16, v, vl, &st_), QTSP_OK);
    CU_ASSERT_EQUAL(a.found, 1);
    qtsp_txn_abort(t);
    done(st);
}

typedef struct audit_seen {
    int n;
    char body[1024];
} audit_seen;

static qtsp_status audit_fn(void *ctx, uint64_t seq, const char *body, size_t len)
{
    audit_seen *c = ctx;
    c->n++;
    snprintf(c->body, sizeof c->body, "%.*s", (int)len, body);
    return QTSP_OK;
}

static void test_operator_add_is_audited(void)
{
    qtsp_store *st = open_fresh();
    char tok[128];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "grace \"g\"", QTSP_ROLE_AUDITOR, tok, sizeof tok),
        QTSP_OK);
    audit_seen c = {0};
    CU_ASSERT_EQUAL(qtsp_audit_list(st, 1, audit_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(c.n, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"event\":\"operator.add\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"actor\":\"cli:root\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"name\":\"grace \\\"g\\\"\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"role\":\"auditor\""));
    char idfield[40];
    snprintf(idfield, sizeof idfield, "\"id\":\"%.16s\"", tok);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, idfield));
    /* a refused add leaves no audit record */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(
        qtsp_operator_add(st, "cli:root", "grace \"g\"", QTSP_ROLE_AUDITOR, tok, sizeof tok),
        QTSP_ERR_EXISTS);
    qtsp_err_clear();
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    done(st);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_operator_roles_parse_and_name),
        QTEST(test_operator_add_prints_a_token_that_authenticates),
        QTEST(test_operator_auth_rejects_wrong_unknown_and_garbage),
        QTEST(test_operator_repeated_failures_lock_the_id_for_a_minute),
        QTEST(test_operator_add_refuses_duplicate_and_bad_names),
        QTEST(test_operator_record_holds_no_token_material),
        QTEST(test_operator_add_is_audited),
    };
    return qtest_run("operator", cases, sizeof cases / sizeof cases[0]);
}
