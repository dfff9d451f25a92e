/* Unit tests for ca/audit.c: the hash chain and its verification. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "tests/lib/qtest.h"

static char g_dir[512];

static int64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return 1795000000123LL;
}

static qtsp_store *open_fresh(void)
{
    return qtest_store_fresh("audit", 4, g_dir, sizeof g_dir);
}

static void done(qtsp_store *st)
{
    qtest_store_done(st, g_dir);
}

typedef struct append_ctx {
    int n;
    const char *details;
    uint64_t last_seq;
} append_ctx;

/* Callers pass details as structured data; the tests keep writing them as
 * text and parse it here, the way a caller would build its json_t. Text
 * that does not parse (or repeats a key) never reaches the audit log:
 * QTSP_ERR_INVALID, as qtsp_audit_append answered for it before. */
static qtsp_status append_text(qtsp_txn *txn, const char *actor, const char *event,
                               const char *text, uint64_t *seq)
{
    json_t *d = NULL;
    if (text) {
        json_error_t e;
        d = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
        ENSURE(d != NULL, QTSP_ERR_INVALID, "details are not valid JSON: %s", e.text);
    }
    qtsp_status rc = qtsp_audit_append(txn, actor, event, d, seq);
    json_decref(d);
    return rc;
}

static qtsp_status append_n(qtsp_txn *txn, void *ctx)
{
    append_ctx *c = ctx;
    for (int i = 0; i < c->n; i++) {
        char d[64];
        snprintf(d, sizeof d, "{\"i\":%d,\"serial\":\"0a1b\"}", i);
        TRY(append_text(txn, "cli:root", "cert.issue", c->details ? c->details : d, &c->last_seq));
    }
    return QTSP_OK;
}

static void append_records(qtsp_store *st, int n)
{
    append_ctx c = {.n = n};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, append_n, &c), QTSP_OK);
}

/* Applies fn to the stored record seq in a raw write transaction. */
typedef struct tamper_ctx {
    uint64_t seq;
    size_t offset; /* byte to flip, from the start of the stored value */
    int del;
} tamper_ctx;

static qtsp_status tamper(qtsp_txn *txn, void *ctx)
{
    tamper_ctx *c = ctx;
    unsigned char key[8];
    qtsp_be64_put(key, c->seq);
    if (c->del)
        return qtsp_txn_del(txn, QTSP_T_AUDIT, key, sizeof key);
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    qtsp_status rc = qtsp_txn_get(txn, QTSP_T_AUDIT, key, sizeof key, &b);
    if (rc == QTSP_OK) {
        b.data[c->offset] ^= 0x01;
        rc = qtsp_txn_put(txn, QTSP_T_AUDIT, key, sizeof key, b.data, b.len, 0);
    }
    qtsp_buf_cleanup(&b);
    return rc;
}

static void test_audit_chain_of_records_verifies(void)
{
    qtsp_store *st = open_fresh();
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 0);
    append_records(st, 10);
    append_records(st, 5);
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 15);
    done(st);
}

/* Audit record seq in a read transaction *t left open for the caller
 * (v borrowed until it aborts t). */
static qtsp_status read_record(qtsp_store *st, uint64_t seq, qtsp_txn **t, const unsigned char **v,
                               size_t *vl)
{
    TRY(qtsp_store_begin(st, 0, t));
    unsigned char key[8];
    qtsp_be64_put(key, seq);
    qtsp_status rc = qtsp_txn_get0(*t, QTSP_T_AUDIT, key, 8, (const void **)v, vl);
    if (rc != QTSP_OK)
        qtsp_txn_abort(*t);
    return rc;
}

static void test_audit_record_layout_matches_the_header(void)
{
    qtsp_clock_set(fixed_clock, NULL);
    qtsp_store *st = open_fresh();
    append_ctx c = {.n = 1, .details = "{\"k\":\"v\"}"};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, append_n, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.last_seq, 1);
    qtsp_txn *t;
    const unsigned char *v;
    size_t vl;
    CU_ASSERT_EQUAL_FATAL(read_record(st, 1, &t, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(v[0], 1);
    /* hash_1 = SHA-256(32 zero bytes || body) */
    unsigned char in[4096] = {0}, h[32];
    CU_ASSERT_FATAL(vl - 33 < sizeof in - 32);
    memcpy(in + 32, v + 33, vl - 33);
    unsigned int hl;
    CU_ASSERT(EVP_Digest(in, 32 + vl - 33, h, &hl, EVP_sha256(), NULL) == 1);
    CU_ASSERT_EQUAL(memcmp(h, v + 1, 32), 0);
    json_t *j = json_loadb((const char *)v + 33, vl - 33, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "seq")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "time")),
                           "2026-11-18T11:06:40.123Z");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "actor")), "cli:root");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "event")), "cert.issue");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "details"), "k")),
                           "v");
    json_decref(j);
    qtsp_txn_abort(t);
    qtsp_clock_set(NULL, NULL);
    done(st);
}

typedef struct list_ctx {
    uint64_t first, n;
} list_ctx;

static qtsp_status list_fn(void *ctx, uint64_t seq, const char *body, size_t len)
{
    list_ctx *c = ctx;
    if (c->n == 0)
        c->first = seq;
    c->n++;
    return len > 0 && body[0] == '{' ? QTSP_OK : QTSP_ERR_INTERNAL;
}

static void test_audit_list_starts_at_from(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 7);
    list_ctx c = {0};
    CU_ASSERT_EQUAL(qtsp_audit_list(st, 5, list_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.first, 5);
    CU_ASSERT_EQUAL(c.n, 3);
    done(st);
}

static void check_broken(qtsp_store *st, uint64_t want_bad, const char *want_text)
{
    uint64_t count = 12345, bad = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_ERR_AUDIT_BROKEN);
    CU_ASSERT_EQUAL(bad, want_bad);
    CU_ASSERT_EQUAL(count, 12345); /* not written on failure */
    char seqtxt[32];
    snprintf(seqtxt, sizeof seqtxt, "record %llu", (unsigned long long)want_bad);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), seqtxt));
    if (want_text)
        CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), want_text));
    qtsp_err_clear();
}

static void test_audit_verify_finds_a_flipped_body_byte(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 10);
    /* flip a byte inside the JSON string value of record 6: still valid JSON */
    tamper_ctx c = {.seq = 6, .offset = 33 + 30};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, tamper, &c), QTSP_OK);
    check_broken(st, 6, NULL);
    done(st);
}

static void test_audit_verify_finds_a_flipped_hash_byte(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 4);
    tamper_ctx c = {.seq = 2, .offset = 5};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, tamper, &c), QTSP_OK);
    check_broken(st, 2, "hash does not match");
    done(st);
}

static void test_audit_verify_finds_a_bad_version(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 3);
    tamper_ctx c = {.seq = 3, .offset = 0};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, tamper, &c), QTSP_OK);
    check_broken(st, 3, "version");
    done(st);
}

static void test_audit_verify_finds_a_deleted_record(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 10);
    tamper_ctx c = {.seq = 4, .del = 1};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, tamper, &c), QTSP_OK);
    check_broken(st, 4, "missing");
    done(st);
}

static void test_audit_verify_finds_a_truncated_tail(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 5);
    tamper_ctx c = {.seq = 5, .del = 1};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, tamper, &c), QTSP_OK);
    check_broken(st, 5, "missing");
    /* and no record is appended to a broken chain */
    append_ctx a = {.n = 1};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_write(st, append_n, &a), QTSP_ERR_AUDIT_BROKEN);
    qtsp_err_clear();
    done(st);
}

static qtsp_status append_one(qtsp_txn *txn, void *ctx)
{
    const char *details = ctx;
    return append_text(txn, "system", "test.event", details, NULL);
}

static void test_audit_rejects_details_that_are_not_an_object(void)
{
    qtsp_store *st = open_fresh();
    append_records(st, 2);
    const char *bad[] = {"[1,2]", "\"text\"", "42", "{\"a\":", "{\"a\":1,\"a\":2}", "", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_store_write(st, append_one, (void *)bad[i]), QTSP_ERR_INVALID);
    }
    qtsp_err_clear();
    uint64_t count = 0, badseq = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &badseq), QTSP_OK);
    CU_ASSERT_EQUAL(count, 2);
    /* NULL details: an empty object */
    CU_ASSERT_EQUAL(qtsp_store_write(st, append_one, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &badseq), QTSP_OK);
    CU_ASSERT_EQUAL(count, 3);
    done(st);
}

static qtsp_status append_fields(qtsp_txn *txn, void *ctx)
{
    const char **f = ctx;
    return qtsp_audit_append(txn, f[0], f[1], NULL, NULL);
}

static void test_audit_rejects_empty_actor_or_event(void)
{
    qtsp_store *st = open_fresh();
    const char *cases[][2] = {{"", "x.y"}, {"system", ""}, {NULL, "x.y"}, {"sys\ntem", "x.y"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_store_write(st, append_fields, (void *)cases[i]), QTSP_ERR_INVALID);
    }
    qtsp_err_clear();
    uint64_t count = 9, badseq = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &badseq), QTSP_OK);
    CU_ASSERT_EQUAL(count, 0);
    done(st);
}

/* Details are data: text with quotes, backslashes, control characters and
 * non-ASCII is escaped by the one serialiser, keys are sorted at every
 * level, and the record's bytes are those records have always had. */
static qtsp_status append_structured(qtsp_txn *txn, void *ctx)
{
    json_t *d = json_pack("{s:s,s:s,s:{s:i,s:s},s:[s]}", "reason", "x\",\"y\":\"z", "label",
                          "kp-\"a\\b\n\x01\xc3\xa9", "nested", "z", 1, "a", "b", "list", "q\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    qtsp_status rc = qtsp_audit_append(txn, "system", "key.destroy", d, NULL);
    json_decref(d);
    if (rc == QTSP_OK) {
        d = json_integer(5);
        CU_ASSERT_EQUAL(qtsp_audit_append(txn, "system", "key.destroy", d, NULL), QTSP_ERR_INVALID);
        json_decref(d);
        qtsp_err_clear();
    }
    return rc;
}

static void test_audit_details_are_structured_and_escaped_once(void)
{
    qtsp_clock_set(fixed_clock, NULL);
    qtsp_store *st = open_fresh();
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, append_structured, NULL), QTSP_OK);
    qtsp_txn *t;
    const unsigned char *v;
    size_t vl;
    CU_ASSERT_EQUAL_FATAL(read_record(st, 1, &t, &v, &vl), QTSP_OK);
    const char *want = "{\"seq\":1,\"time\":\"2026-11-18T11:06:40.123Z\",\"actor\":\"system\","
                       "\"event\":\"key.destroy\",\"details\":{\"label\":\"kp-\\\"a\\\\b\\n"
                       "\\u0001\xc3\xa9\",\"list\":[\"q\\\"\"],\"nested\":{\"a\":\"b\",\"z\":1},"
                       "\"reason\":\"x\\\",\\\"y\\\":\\\"z\"}}";
    CU_ASSERT_EQUAL(vl - 33, strlen(want));
    CU_ASSERT(vl - 33 == strlen(want) && memcmp(v + 33, want, vl - 33) == 0);
    qtsp_txn_abort(t);
    uint64_t count = 0, bad = 0;
    CU_ASSERT_EQUAL(qtsp_audit_verify(st, &count, &bad), QTSP_OK);
    CU_ASSERT_EQUAL(count, 1);
    qtsp_clock_set(NULL, NULL);
    done(st);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_audit_chain_of_records_verifies),
        QTEST(test_audit_record_layout_matches_the_header),
        QTEST(test_audit_list_starts_at_from),
        QTEST(test_audit_verify_finds_a_flipped_body_byte),
        QTEST(test_audit_verify_finds_a_flipped_hash_byte),
        QTEST(test_audit_verify_finds_a_bad_version),
        QTEST(test_audit_verify_finds_a_deleted_record),
        QTEST(test_audit_verify_finds_a_truncated_tail),
        QTEST(test_audit_rejects_details_that_are_not_an_object),
        QTEST(test_audit_rejects_empty_actor_or_event),
        QTEST(test_audit_details_are_structured_and_escaped_once),
    };
    return qtest_run("audit", cases, sizeof cases / sizeof cases[0]);
}
