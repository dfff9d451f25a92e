/* Unit tests for sign/archive: documents kept byte for byte and content-
 * addressed, each signer sees only their own, the quota, the sweeper
 * (nothing before the retention ends; after it the index, the file and an
 * audit record), and the policy file's errors. Real LMDB in a temp dir. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/audit.h"
#include "sign/archive.h"
#include "tests/lib/qtest.h"

static char g_dir[512];
static qtsp_store *g_store;

static void write_policy(const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static qtsp_archive *make(const char *quota, const char *sub)
{
    char text[256], pol[600], dir[600];
    snprintf(text, sizeof text, "version: 1\nretention_years: 10\nquota_bytes: %s\n", quota);
    write_policy("archive.yaml", text);
    snprintf(pol, sizeof pol, "%s/archive.yaml", g_dir);
    snprintf(dir, sizeof dir, "%s/%s", g_dir, sub);
    qtsp_archive *a = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_archive_new(pol, dir, g_store, &a);
    if (rc != QTSP_OK)
        fprintf(stderr, "%s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    return a;
}

static qtsp_archive_doc doc(const char *owner, const void *data, size_t len, int64_t when)
{
    return (qtsp_archive_doc){owner, "contract.pdf", "PAdES", "B-LT", data, len, when};
}

/* Records in the (verified) audit chain. */
static size_t audit_count(void)
{
    uint64_t n = 0, bad = 0;
    CU_ASSERT_EQUAL_FATAL(qtsp_audit_verify(g_store, &n, &bad), QTSP_OK);
    return (size_t)n;
}

static void test_archive_returns_byte_identical_documents_to_their_owner_only(void)
{
    qtsp_archive *a = make("1048576", "a1");
    unsigned char data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    size_t before = audit_count();
    qtsp_archive_doc d = doc("alice", data, sizeof data, 1765000000);
    char id[QTSP_ARCHIVE_ID_LEN + 1];
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &d, id), QTSP_OK);
    CU_ASSERT_EQUAL(strlen(id), QTSP_ARCHIVE_ID_LEN);
    CU_ASSERT_EQUAL(audit_count(), before + 1); /* document.archive */

    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    json_t *rec = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_get(a, "alice", id, &out, &rec), QTSP_OK);
    CU_ASSERT_EQUAL(out.len, sizeof data);
    CU_ASSERT_EQUAL(memcmp(out.data, data, sizeof data), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "name")), "contract.pdf");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "signed_at")),
                           "2025-12-06T05:46:40Z");
    json_decref(rec);
    /* another signer: not found, nothing appended */
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "bob", id, &out, NULL), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(out.len, 0);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "alice", "0123456789abcdef01234567", &out, NULL),
                    QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "alice", "../../etc/passwd", &out, NULL),
                    QTSP_ERR_NOT_FOUND);

    json_t *list = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_list(a, "alice", &list), QTSP_OK);
    json_t *docs = json_object_get(list, "documents");
    CU_ASSERT_EQUAL(json_array_size(docs), 1);
    json_t *e = json_array_get(docs, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), id);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "size")), (json_int_t)sizeof data);
    CU_ASSERT_PTR_NOT_NULL(json_object_get(e, "sha256"));
    CU_ASSERT_PTR_NULL(json_object_get(e, "owner"));
    json_decref(list);
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_list(a, "bob", &list), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "documents")), 0);
    json_decref(list);
    /* a prefix of another owner's name sees nothing either */
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_list(a, "alic", &list), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "documents")), 0);
    json_decref(list);

    /* a changed file is detected, not served */
    char path[700];
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_get(a, "alice", id, &out, &rec), QTSP_OK);
    const char *hx = json_string_value(json_object_get(rec, "sha256"));
    snprintf(path, sizeof path, "%s/a1/%.2s/%s", g_dir, hx, hx);
    json_decref(rec);
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputc('X', f);
    fclose(f);
    qtsp_buf_reset(&out);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "alice", id, &out, NULL), QTSP_ERR_IO);
    CU_ASSERT_EQUAL(out.len, 0);
    qtsp_buf_cleanup(&out);
    qtsp_archive_free(a);
}

static void test_archive_quota_refuses_and_changes_nothing(void)
{
    qtsp_archive *a = make("2048", "a2");
    unsigned char data[1500] = {1};
    char id[QTSP_ARCHIVE_ID_LEN + 1];
    qtsp_archive_doc d = doc("carol", data, sizeof data, 1765000000);
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &d, id), QTSP_OK);
    size_t before = audit_count();
    data[0] = 2;
    CU_ASSERT_EQUAL(qtsp_archive_put(a, "test", &d, id), QTSP_ERR_QUOTA);
    CU_ASSERT_EQUAL(audit_count(), before);
    json_t *list = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_list(a, "carol", &list), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "documents")), 1);
    json_decref(list);
    /* another signer has their own quota */
    d.owner = "dave";
    CU_ASSERT_EQUAL(qtsp_archive_put(a, "test", &d, id), QTSP_OK);
    /* bad input */
    d.owner = "";
    CU_ASSERT_EQUAL(qtsp_archive_put(a, "test", &d, id), QTSP_ERR_INVALID);
    d.owner = "eve";
    d.len = 0;
    CU_ASSERT_EQUAL(qtsp_archive_put(a, "test", &d, id), QTSP_ERR_INVALID);
    qtsp_archive_free(a);
}

static void test_archive_sweeper_removes_only_what_outlived_its_retention(void)
{
    qtsp_archive *a = make("1048576", "a3");
    int64_t t0 = 1700000000, ret = qtsp_archive_retention(a); /* before the other tests' */
    CU_ASSERT(ret >= INT64_C(10) * 365 * 86400);
    unsigned char x[100] = {9}, y[100] = {8};
    char idx[QTSP_ARCHIVE_ID_LEN + 1], idy[QTSP_ARCHIVE_ID_LEN + 1], idz[QTSP_ARCHIVE_ID_LEN + 1];
    qtsp_archive_doc dx = doc("frank", x, sizeof x, t0), dy = doc("frank", y, sizeof y, t0 + 100);
    qtsp_archive_doc dz = doc("gina", x, sizeof x, t0 + 200); /* same bytes as dx */
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &dx, idx), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &dy, idy), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &dz, idz), QTSP_OK);
    size_t n = 99, before = audit_count();
    /* one second before the end of the retention: nothing goes */
    CU_ASSERT_EQUAL(qtsp_archive_sweep(a, t0 + ret - 1, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(audit_count(), before);
    /* at its end: the first document only; its file stays (gina's names it) */
    CU_ASSERT_EQUAL(qtsp_archive_sweep(a, t0 + ret, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(audit_count(), before + 1); /* document.expire */
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "frank", idx, &out, NULL), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "frank", idy, &out, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "gina", idz, &out, NULL), QTSP_OK);
    /* later: all gone, and the files too */
    CU_ASSERT_EQUAL(qtsp_archive_sweep(a, t0 + ret + 1000, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "gina", idz, &out, NULL), QTSP_ERR_NOT_FOUND);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s/a3' -type f)\"", g_dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    /* the quota was given back */
    unsigned char big[1000] = {3};
    qtsp_archive_doc db = doc("frank", big, sizeof big, t0);
    CU_ASSERT_EQUAL(qtsp_archive_put(a, "test", &db, idx), QTSP_OK);
    qtsp_buf_cleanup(&out);
    qtsp_archive_free(a);
}

/* A refused request's files: discard removes a file no entry names, keeps
 * an indexed one; an index whose file was discarded meanwhile writes it
 * again; room refuses past the quota. */
static void test_archive_discard_removes_only_unindexed_files(void)
{
    qtsp_archive *a = make("10000", "a5");
    static const unsigned char one[] = "signed once", two[] = "signed twice";
    qtsp_archive_doc d1 = doc("erin", one, sizeof one - 1, 1765000000),
                     d2 = doc("erin", two, sizeof two - 1, 1765000000);
    unsigned char s1[32], s2[32];
    int created = -1;
    char id[QTSP_ARCHIVE_ID_LEN + 1], hx[65], path[1200];
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &d1, id), QTSP_OK);
    /* the same bytes again: not created, kept by discard (indexed) */
    CU_ASSERT_EQUAL(qtsp_archive_write_new(a, &d1, s1, &created), QTSP_OK);
    CU_ASSERT_EQUAL(created, 0);
    CU_ASSERT_EQUAL(qtsp_archive_discard(a, s1), QTSP_OK);
    qtsp_hex_encode(s1, 32, hx);
    snprintf(path, sizeof path, "%s/a5/%.2s/%s", g_dir, hx, hx);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    /* new bytes: created, removed by discard */
    CU_ASSERT_EQUAL(qtsp_archive_write_new(a, &d2, s2, &created), QTSP_OK);
    CU_ASSERT_EQUAL(created, 1);
    qtsp_hex_encode(s2, 32, hx);
    snprintf(path, sizeof path, "%s/a5/%.2s/%s", g_dir, hx, hx);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(qtsp_archive_discard(a, s2), QTSP_OK);
    CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);
    /* another request found the file before the discard: put writes it again */
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &d2, id), QTSP_OK);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 16);
    CU_ASSERT_EQUAL(qtsp_archive_get(a, "erin", id, &out, NULL), QTSP_OK);
    CU_ASSERT(out.len == sizeof two - 1 && memcmp(out.data, two, out.len) == 0);
    qtsp_buf_cleanup(&out);
    /* room: what is archived plus what comes */
    CU_ASSERT_EQUAL(qtsp_archive_room(a, "erin", 10000 - (sizeof one - 1) - (sizeof two - 1)),
                    QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_archive_room(a, "erin", 10000), QTSP_ERR_QUOTA);
    CU_ASSERT_EQUAL(qtsp_archive_room(a, "nobody-yet", 10000), QTSP_OK);
    qtsp_err_clear();
    qtsp_archive_free(a);
}

/* The list in pages: limit, "next" while more follow, ?after= continues,
 * every document once; a malformed cursor is refused. */
static void test_archive_list_pages_follow_next(void)
{
    qtsp_archive *a = make("1048576", "a6");
    char ids[5][QTSP_ARCHIVE_ID_LEN + 1];
    for (int i = 0; i < 5; i++) {
        unsigned char data[16];
        memset(data, 'a' + i, sizeof data);
        qtsp_archive_doc d = doc("grace", data, sizeof data, 1765000000);
        CU_ASSERT_EQUAL_FATAL(qtsp_archive_put(a, "test", &d, ids[i]), QTSP_OK);
    }
    char after[QTSP_ARCHIVE_ID_LEN + 1] = "";
    int seen[5] = {0}, pages = 0;
    size_t total = 0;
    for (;;) {
        json_t *l = NULL;
        CU_ASSERT_EQUAL_FATAL(qtsp_archive_list_page(a, "grace", 2, after[0] ? after : NULL, &l),
                              QTSP_OK);
        json_t *docs = json_object_get(l, "documents");
        const char *next = json_string_value(json_object_get(l, "next"));
        pages++;
        total += json_array_size(docs);
        CU_ASSERT(json_array_size(docs) == (pages < 3 ? 2u : 1u));
        for (size_t i = 0; i < json_array_size(docs); i++)
            for (int k = 0; k < 5; k++)
                seen[k] += strcmp(json_string_value(json_object_get(json_array_get(docs, i), "id")),
                                  ids[k]) == 0;
        if (!next) {
            json_decref(l);
            break;
        }
        CU_ASSERT_STRING_EQUAL(next, json_string_value(json_object_get(
                                         json_array_get(docs, json_array_size(docs) - 1), "id")));
        snprintf(after, sizeof after, "%s", next);
        json_decref(l);
        CU_ASSERT_FATAL(pages < 5);
    }
    CU_ASSERT_EQUAL(pages, 3);
    CU_ASSERT_EQUAL(total, 5);
    for (int k = 0; k < 5; k++)
        CU_ASSERT_EQUAL(seen[k], 1);
    json_t *l = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_list_page(a, "grace", 5, NULL, &l), QTSP_OK);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "documents")), 5);
    CU_ASSERT_PTR_NULL(json_object_get(l, "next")); /* exactly a page: no next */
    json_decref(l);
    CU_ASSERT_EQUAL(qtsp_archive_list_page(a, "grace", 2, "../../x", &l), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_archive_list_page(a, "grace", 2, "0123456789ABCDEF01234567", &l),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_archive_free(a);
}

static void test_archive_policy_errors_name_the_line(void)
{
    char pol[600], dir[600];
    snprintf(pol, sizeof pol, "%s/bad.yaml", g_dir);
    snprintf(dir, sizeof dir, "%s/a4", g_dir);
    const char *bad[] = {
        "version: 1\nretention_years: 0\nquota_bytes: 4096\n",
        "version: 1\nretention_years: 10\n",
        "version: 1\nretention_years: 10\nquota_bytes: 4096\nsurprise: 1\n",
        "version: 2\nretention_years: 10\nquota_bytes: 4096\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_policy("bad.yaml", bad[i]);
        qtsp_archive *a = NULL;
        CU_ASSERT_EQUAL(qtsp_archive_new(pol, dir, g_store, &a), QTSP_ERR_CONFIG);
        CU_ASSERT_PTR_NULL(a);
    }
    /* the shipped policy: 10 years */
    snprintf(pol, sizeof pol, "%s/policies/archive.yaml", qtest_src_dir());
    qtsp_archive *a = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_archive_new(pol, dir, g_store, &a), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_archive_retention(a), INT64_C(10) * 31556952);
    qtsp_archive_free(a);
}

int main(void)
{
    const char *d = qtest_tmpdir("archive");
    char sd[600];
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    snprintf(sd, sizeof sd, "%s/store", g_dir);
    if (qtsp_store_open(sd, 64, &g_store) != QTSP_OK) {
        fprintf(stderr, "store: %s\n", qtsp_err_message());
        return 1;
    }
    static const qtest_case cases[] = {
        QTEST(test_archive_returns_byte_identical_documents_to_their_owner_only),
        QTEST(test_archive_quota_refuses_and_changes_nothing),
        QTEST(test_archive_sweeper_removes_only_what_outlived_its_retention),
        QTEST(test_archive_discard_removes_only_unindexed_files),
        QTEST(test_archive_list_pages_follow_next),
        QTEST(test_archive_policy_errors_name_the_line),
    };
    int rc = qtest_run("archive", cases, sizeof cases / sizeof cases[0]);
    qtsp_store_close(g_store);
    qtest_rmtree(g_dir);
    return rc;
}
