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

/* The slot of an id in the 64-slot failure table of the first version
 * (djb2 % 64): two ids with the same slot are what the lockout bypass used. */
static size_t old_slot(const char *tok)
{
    size_t h = 5381;
    for (int i = 0; i < 16; i++)
        h = h * 33 + (unsigned char)tok[i];
    return h % 64;
}

static uint64_t argon2_runs(void)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 4096);
    CU_ASSERT_EQUAL(qtsp_operator_metrics(&b), QTSP_OK);
    const char *p = strstr(qtsp_buf_str(&b), "\nqtsp_operator_argon2_total ");
    uint64_t n = p ? strtoull(p + 28, NULL, 10) : 0;
    CU_ASSERT_PTR_NOT_NULL(p);
    qtsp_buf_cleanup(&b);
    return n;
}

static void wrong_of(const char *tok, char *bad, size_t cap)
{
    snprintf(bad, cap, "%s", tok);
    bad[25] = bad[25] == 'A' ? 'B' : 'A';
}

/* Issue 15 defect 3: a second id whose counters fell into the slot of a
 * locked id was never counted, so never locked, and every wrong token for
 * it cost an argon2id. */
static void test_operator_second_id_in_the_same_slot_is_locked_too(void)
{
    qtsp_store *st = open_fresh();
    char toks[40][128];
    int a = -1, b = -1;
    for (int i = 0; i < 40 && b < 0; i++) {
        char name[16];
        snprintf(name, sizeof name, "op%d", i);
        CU_ASSERT_EQUAL_FATAL(
            qtsp_operator_add(st, "cli:root", name, QTSP_ROLE_HOTLINE, toks[i], sizeof toks[i]),
            QTSP_OK);
        for (int j = 0; j < i && b < 0; j++)
            if (old_slot(toks[j]) == old_slot(toks[i])) {
                a = j;
                b = i;
            }
    }
    CU_ASSERT_FATAL(b >= 0);                /* 40 ids in 64 slots: a collision is all but certain */
    g_now_ms = qtsp_now_ms() + 3600 * 1000; /* after any earlier test's lock */
    qtsp_clock_set(test_clock, NULL);
    char bad[160];
    wrong_of(toks[a], bad, sizeof bad);
    for (int i = 0; i < 5; i++)
        expect_auth_fails(st, bad);
    expect_auth_fails(st, toks[a]); /* a is locked */
    wrong_of(toks[b], bad, sizeof bad);
    for (int i = 0; i < 5; i++)
        expect_auth_fails(st, bad);
    /* b is locked as well: its right token is refused, and no wrong token
     * for it costs an argon2id any more */
    expect_auth_fails(st, toks[b]);
    uint64_t before = argon2_runs();
    for (int i = 0; i < 20; i++)
        expect_auth_fails(st, bad);
    CU_ASSERT_EQUAL(argon2_runs(), before);
    CU_ASSERT_EQUAL(qtsp_operator_auth_is_slow(st, bad), 0);
    g_now_ms += 61 * 1000;
    CU_ASSERT_EQUAL(qtsp_operator_auth_is_slow(st, toks[b]), 1);
    qtsp_operator op;
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, toks[b], &op), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_operator_auth_is_slow(st, toks[b]), 0); /* verified: cached */
    qtsp_clock_set(NULL, NULL);
    done(st);
}

/* A token verified before its id got locked keeps working (the hotline
 * under a flood of wrong tokens for its own id); a token never verified
 * does not. */
static void test_operator_verified_token_survives_a_lock_of_its_id(void)
{
    qtsp_store *st = open_fresh();
    char tok[128], bad[160];
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "hana", QTSP_ROLE_HOTLINE, tok, sizeof tok), QTSP_OK);
    qtsp_operator op;
    CU_ASSERT_EQUAL_FATAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    wrong_of(tok, bad, sizeof bad);
    for (int i = 0; i < 6; i++)
        expect_auth_fails(st, bad);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(op.name, "hana");
    done(st);
}

typedef struct seen_ops {
    int n;
    char names[8][65];
    int disabled[8];
} seen_ops;

static qtsp_status seen_fn(void *ctx, const qtsp_operator_info *info)
{
    seen_ops *s = ctx;
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", info->op.name);
        s->disabled[s->n] = info->disabled;
    }
    s->n++;
    return QTSP_OK;
}

static void test_operator_disable_enable_rotate_take_effect_at_once_and_are_audited(void)
{
    qtsp_store *st = open_fresh();
    char tok[128], tok2[128], tok3[128];
    qtsp_operator op;
    qtsp_operator_info info;
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "ivan", QTSP_ROLE_OFFICE, tok, sizeof tok), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(
        qtsp_operator_add(st, "cli:root", "jana", QTSP_ROLE_AUDITOR, tok2, sizeof tok2), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_operator_auth(st, tok, &op), QTSP_OK); /* cached now */

    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", "ivan", 0, &info), QTSP_OK);
    CU_ASSERT_EQUAL(info.disabled, 1);
    expect_auth_fails(st, tok); /* the cached verification does not help */
    CU_ASSERT_EQUAL(qtsp_operator_auth_is_slow(st, tok), 0);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", "ivan", 0, NULL), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", "nobody", 0, NULL),
                    QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", "", 1, NULL), QTSP_ERR_INVALID);
    qtsp_err_clear();
    seen_ops s = {0};
    CU_ASSERT_EQUAL(qtsp_operator_list(st, seen_fn, &s), QTSP_OK);
    CU_ASSERT_EQUAL(s.n, 2);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(s.disabled[i], strcmp(s.names[i], "ivan") == 0);

    /* enable by id */
    char id[17];
    snprintf(id, sizeof id, "%.16s", tok);
    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", id, 1, &info), QTSP_OK);
    CU_ASSERT_EQUAL(info.disabled, 0);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok, &op), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_set_enabled(st, "cli:root", id, 1, NULL), QTSP_ERR_STATE);
    qtsp_err_clear();

    /* rotate: same id, new secret; the old (cached) token is refused */
    CU_ASSERT_EQUAL(qtsp_operator_rotate(st, "cli:root", "ivan", tok3, sizeof tok3, &info),
                    QTSP_OK);
    CU_ASSERT_EQUAL(strncmp(tok3, tok, 17), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(tok3, tok), 0);
    expect_auth_fails(st, tok);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok3, &op), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(op.name, "ivan");
    CU_ASSERT_EQUAL(op.role, QTSP_ROLE_OFFICE);
    CU_ASSERT_EQUAL(qtsp_operator_auth(st, tok2, &op), QTSP_OK); /* others untouched */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_operator_rotate(st, "cli:root", "nobody", tok3, sizeof tok3, NULL),
                    QTSP_ERR_NOT_FOUND);
    qtsp_err_clear();

    /* audited, in order, naming the operator; the chain verifies */
    audit_seen c = {0};
    CU_ASSERT_EQUAL(qtsp_audit_list(st, 3, audit_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 3); /* disable, enable, rotate: refused changes left none */
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"event\":\"operator.rotate\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.body, "\"name\":\"ivan\""));
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 5);
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
        QTEST(test_operator_second_id_in_the_same_slot_is_locked_too),
        QTEST(test_operator_verified_token_survives_a_lock_of_its_id),
        QTEST(test_operator_disable_enable_rotate_take_effect_at_once_and_are_audited),
    };
    return qtest_run("operator", cases, sizeof cases / sizeof cases[0]);
}
