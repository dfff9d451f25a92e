/* Unit tests for ca/store.c on a real LMDB environment in a temp dir. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"
#include "tests/lib/qtest.h"

static char g_dir[512];

static qtsp_store *open_fresh(size_t map_mib)
{
    return qtest_store_fresh("store", map_mib, g_dir, sizeof g_dir);
}

static qtsp_store *reopen(qtsp_store *st)
{
    qtsp_store_close(st);
    char path[600];
    snprintf(path, sizeof path, "%s/store", g_dir);
    qtsp_store *n = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_open(path, 1, &n), QTSP_OK);
    return n;
}

static void done(qtsp_store *st)
{
    qtest_store_done(st, g_dir);
}

static void test_store_table_names_match_the_header(void)
{
    CU_ASSERT_STRING_EQUAL(qtsp_table_name(QTSP_T_META), "meta");
    CU_ASSERT_STRING_EQUAL(qtsp_table_name(QTSP_T_SUBJECT_CERTS), "subject_certs");
    CU_ASSERT_STRING_EQUAL(qtsp_table_name(QTSP_T_HOLDS), "holds");
    CU_ASSERT_STRING_EQUAL(qtsp_table_name(QTSP_T__COUNT), "?");
}

static void test_store_be64_round_trip(void)
{
    unsigned char b[8];
    qtsp_be64_put(b, 0x0102030405060708ull);
    CU_ASSERT_EQUAL(b[0], 1);
    CU_ASSERT_EQUAL(b[7], 8);
    CU_ASSERT_EQUAL(qtsp_be64_get(b), 0x0102030405060708ull);
}

static void test_store_open_refuses_bad_arguments(void)
{
    qtsp_store *st = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_open("", 1, &st), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_open("/tmp/x", 0, &st), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_open("/nonexistent-dir/a/b", 1, &st), QTSP_ERR_IO);
    CU_ASSERT_PTR_NULL(st);
    qtsp_err_clear();
    qtsp_store_close(NULL);
}

static void test_store_put_get_del_roundtrip(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "k1", 2, "value1", 6, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "k2", 2, "", 0, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);

    qtsp_buf b;
    qtsp_buf_init(&b, 100);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_CERTS, "k1", 2, &b), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(qtsp_buf_str(&b), "value1");
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_CERTS, "k2", 2, &b), QTSP_OK);
    CU_ASSERT_EQUAL(b.len, 0);
    /* tables are separate */
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_STATUS, "k1", 2, &b), QTSP_ERR_NOT_FOUND);
    /* writes refused in a read transaction */
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "k3", 2, "x", 1, 0), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_CERTS, "", 0, &b), QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_txn_abort(t);

    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_del(t, QTSP_T_CERTS, "k1", 2), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_del(t, QTSP_T_CERTS, "k1", 2), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_get(t, QTSP_T_CERTS, "k1", 2, &b), QTSP_ERR_NOT_FOUND);
    qtsp_txn_abort(t);
    qtsp_buf_cleanup(&b);
    done(st);
}

static void test_store_abort_discards_writes(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_META, "gone", 4, "x", 1, 0), QTSP_OK);
    qtsp_txn_abort(t);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    const void *v;
    size_t vl;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_META, "gone", 4, &v, &vl), QTSP_ERR_NOT_FOUND);
    qtsp_txn_abort(t);
    done(st);
}

static void test_store_nooverwrite_reports_exists(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "a", 1, "1", 1, QTSP_PUT_NOOVERWRITE), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "a", 1, "2", 1, QTSP_PUT_NOOVERWRITE),
                    QTSP_ERR_EXISTS);
    qtsp_err_clear();
    /* plain put overwrites */
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "a", 1, "3", 1, 0), QTSP_OK);
    /* append out of order is refused */
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "b", 1, "1", 1, QTSP_PUT_APPEND), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_CERTS, "0", 1, "1", 1, QTSP_PUT_APPEND),
                    QTSP_ERR_EXISTS);
    qtsp_err_clear();
    const void *v;
    size_t vl;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_CERTS, "a", 1, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL(vl, 1);
    CU_ASSERT_EQUAL(memcmp(v, "3", 1), 0);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);
    done(st);
}

typedef struct collect {
    char keys[16][8];
    int n;
    int stop_after;
} collect;

static qtsp_status collect_fn(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                              int *stop)
{
    collect *c = ctx;
    if (c->n < 16 && klen < 8) {
        memcpy(c->keys[c->n], key, klen);
        c->keys[c->n][klen] = 0;
        c->n++;
    }
    if (c->stop_after && c->n >= c->stop_after)
        *stop = 1;
    return QTSP_OK;
}

static qtsp_status failing_fn(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                              int *stop)
{
    return QTSP_ERR_QUOTA;
}

static void test_store_iter_last_count(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    const char *keys[] = {"d", "a", "c", "b", "e"};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_HOLDS, keys[i], 1, "v", 1, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);

    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    collect c = {0};
    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_HOLDS, NULL, 0, collect_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 5);
    CU_ASSERT_STRING_EQUAL(c.keys[0], "a");
    CU_ASSERT_STRING_EQUAL(c.keys[4], "e");

    collect c2 = {.stop_after = 2};
    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_HOLDS, "bb", 2, collect_fn, &c2), QTSP_OK);
    CU_ASSERT_EQUAL(c2.n, 2);
    CU_ASSERT_STRING_EQUAL(c2.keys[0], "c");
    CU_ASSERT_STRING_EQUAL(c2.keys[1], "d");

    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_HOLDS, NULL, 0, failing_fn, NULL), QTSP_ERR_QUOTA);

    qtsp_buf k, v;
    qtsp_buf_init(&k, 16);
    qtsp_buf_init(&v, 16);
    CU_ASSERT_EQUAL(qtsp_txn_last(t, QTSP_T_HOLDS, &k, &v), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(qtsp_buf_str(&k), "e");
    CU_ASSERT_STRING_EQUAL(qtsp_buf_str(&v), "v");
    CU_ASSERT_EQUAL(qtsp_txn_last(t, QTSP_T_HOLDS, NULL, &v), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_last(t, QTSP_T_CRL, &k, &v), QTSP_ERR_NOT_FOUND);

    uint64_t n = 99;
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_HOLDS, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_CRL, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 0);
    qtsp_txn_abort(t);
    qtsp_buf_cleanup(&k);
    qtsp_buf_cleanup(&v);
    done(st);
}

static void test_store_get0_is_a_borrowed_view(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_put(t, QTSP_T_OCSP_CACHE, "s", 1, "response-bytes", 14, 0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    const void *v = NULL;
    size_t vl = 0;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_OCSP_CACHE, "s", 1, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL(vl, 14);
    CU_ASSERT_EQUAL(memcmp(v, "response-bytes", 14), 0);
    qtsp_txn_abort(t);
    done(st);
}

static void test_store_counters_increase_and_survive_reopen(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t;
    uint64_t v = 99;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_counter_get(t, "c", &v), QTSP_OK);
    CU_ASSERT_EQUAL(v, 0);
    uint64_t prev = 0;
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(qtsp_txn_counter_next(t, "c", &v), QTSP_OK);
        CU_ASSERT(v > prev);
        prev = v;
    }
    CU_ASSERT_EQUAL(prev, 5);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_counter_next(t, "", &v), QTSP_ERR_INVALID);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);

    /* stored as u64 big-endian */
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    const void *raw;
    size_t rl;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_COUNTERS, "c", 1, &raw, &rl), QTSP_OK);
    CU_ASSERT_EQUAL(rl, 8);
    CU_ASSERT_EQUAL(((const unsigned char *)raw)[7], 5);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_txn_counter_next(t, "c", &v), QTSP_ERR_STATE);
    qtsp_err_clear();
    qtsp_txn_abort(t);

    st = reopen(st);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_counter_next(t, "c", &v), QTSP_OK);
    CU_ASSERT_EQUAL(v, 6);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);
    done(st);
}

static void test_store_one_transaction_per_thread(void)
{
    qtsp_store *st = open_fresh(4);
    qtsp_txn *t, *t2 = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_store_begin(st, 1, &t2), QTSP_ERR_STATE);
    CU_ASSERT_EQUAL(qtsp_store_grow(st), QTSP_ERR_STATE);
    qtsp_err_clear();
    CU_ASSERT_PTR_NULL(t2);
    qtsp_txn_abort(t);
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t2), QTSP_OK);
    qtsp_txn_abort(t2);
    done(st);
}

#define BIG_VAL 4096
#define BIG_PER_TXN 256 /* 1 MiB per transaction */
#define BIG_TXNS 20     /* 20 MiB in all */

typedef struct big_ctx {
    int txn_no;
    int runs;
} big_ctx;

static qtsp_status write_big(qtsp_txn *txn, void *ctx)
{
    big_ctx *c = ctx;
    c->runs++;
    unsigned char val[BIG_VAL];
    for (int i = 0; i < BIG_PER_TXN; i++) {
        unsigned char key[8];
        qtsp_be64_put(key, (uint64_t)(c->txn_no * BIG_PER_TXN + i));
        memset(val, (c->txn_no * BIG_PER_TXN + i) & 0xff, sizeof val);
        TRY(qtsp_txn_put(txn, QTSP_T_DOCUMENTS, key, sizeof key, val, sizeof val, 0));
    }
    return QTSP_OK;
}

static qtsp_status write_huge(qtsp_txn *txn, void *ctx)
{
    /* 8 MiB in one transaction on a 1 MiB map: several doublings in one call */
    unsigned char val[BIG_VAL];
    memset(val, 0x5a, sizeof val);
    for (int i = 0; i < 2048; i++) {
        unsigned char key[9] = {'h'};
        qtsp_be64_put(key + 1, (uint64_t)i);
        TRY(qtsp_txn_put(txn, QTSP_T_HISTORY, key, sizeof key, val, sizeof val, 0));
    }
    (void)ctx;
    return QTSP_OK;
}

static void test_store_write_grows_a_full_map(void)
{
    qtsp_store *st = open_fresh(1);
    uint64_t used, map0, map1;
    CU_ASSERT_EQUAL(qtsp_store_stats(st, &used, &map0), QTSP_OK);
    CU_ASSERT_EQUAL(map0, 1u << 20);
    int reruns = 0;
    qtsp_err_clear();
    for (int n = 0; n < BIG_TXNS; n++) {
        big_ctx c = {.txn_no = n};
        CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, write_big, &c), QTSP_OK);
        reruns += c.runs - 1;
    }
    CU_ASSERT(reruns > 0);
    /* a handled map-full does not stay recorded as this thread's failure */
    CU_ASSERT_EQUAL(qtsp_err_code(), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_write(st, write_huge, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_stats(st, &used, &map1), QTSP_OK);
    CU_ASSERT(map1 >= 28u << 20);
    CU_ASSERT(used <= map1);

    st = reopen(st); /* opened with 1 MiB again: keeps the grown map */
    uint64_t map2;
    CU_ASSERT_EQUAL(qtsp_store_stats(st, &used, &map2), QTSP_OK);
    CU_ASSERT(map2 >= map1);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_DOCUMENTS, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, BIG_PER_TXN * BIG_TXNS);
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_HISTORY, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2048);
    int bad = 0;
    for (int i = 0; i < BIG_PER_TXN * BIG_TXNS; i++) {
        unsigned char key[8];
        qtsp_be64_put(key, (uint64_t)i);
        const void *v;
        size_t vl;
        if (qtsp_txn_get0(t, QTSP_T_DOCUMENTS, key, sizeof key, &v, &vl) != QTSP_OK ||
            vl != BIG_VAL || ((const unsigned char *)v)[BIG_VAL - 1] != (i & 0xff))
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    qtsp_txn_abort(t);
    done(st);
}

static void test_store_explicit_grow_doubles(void)
{
    qtsp_store *st = open_fresh(2);
    uint64_t m0, m1;
    CU_ASSERT_EQUAL(qtsp_store_stats(st, NULL, &m0), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_grow(st), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_stats(st, NULL, &m1), QTSP_OK);
    CU_ASSERT_EQUAL(m1, 2 * m0);
    done(st);
}

/* A CLI process beside the server grows the map: this process must adopt
 * the new size (MDB_MAP_RESIZED) instead of failing. */
static void test_store_adopts_a_map_grown_by_another_process(void)
{
    qtsp_store *st = open_fresh(1);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK); /* cache a read txn */
    qtsp_txn_abort(t);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char path[600];
        snprintf(path, sizeof path, "%s/store", g_dir);
        qtsp_store *other = NULL;
        int ok = qtsp_store_open(path, 1, &other) == QTSP_OK;
        ok = ok && qtsp_store_write(other, write_huge, NULL) == QTSP_OK;
        qtsp_store_close(other);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(qtsp_txn_count(t, QTSP_T_HISTORY, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 2048);
    qtsp_txn_abort(t);
    big_ctx c = {.txn_no = 0};
    CU_ASSERT_EQUAL(qtsp_store_write(st, write_big, &c), QTSP_OK);
    uint64_t map;
    CU_ASSERT_EQUAL(qtsp_store_stats(st, NULL, &map), QTSP_OK);
    CU_ASSERT(map >= 8u << 20);
    done(st);
}

/* ---- concurrency ---- */

typedef struct reader_arg {
    qtsp_store *st;
    _Atomic int *stop;
    int errors;
    long reads;
} reader_arg;

typedef struct big_fill {
    int from, to;
} big_fill;

static qtsp_status big_fill_fn(qtsp_txn *txn, void *ctx)
{
    big_fill *b = ctx;
    for (int i = b->from; i < b->to; i++) {
        unsigned char k[4], v[200];
        qtsp_be64_put(v, (uint64_t)i * 7919u);
        memset(v + 8, (unsigned char)i, sizeof v - 8);
        k[0] = (unsigned char)(i >> 24);
        k[1] = (unsigned char)(i >> 16);
        k[2] = (unsigned char)(i >> 8);
        k[3] = (unsigned char)i;
        TRY(qtsp_txn_put(txn, QTSP_T_REVOKED, k, sizeof k, v, sizeof v, QTSP_PUT_APPEND));
    }
    return QTSP_OK;
}

typedef struct big_check {
    int n, bad;
} big_check;

static qtsp_status big_check_fn(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen, int *stop)
{
    big_check *c = ctx;
    const unsigned char *k = key, *v = val;
    int i = k[0] << 24 | k[1] << 16 | k[2] << 8 | k[3];
    if (klen != 4 || vlen != 200 || i != c->n || qtsp_be64_get(v) != (uint64_t)i * 7919u ||
        v[199] != (unsigned char)i)
        c->bad++;
    c->n++;
    (void)stop;
    return QTSP_OK;
}

/* resident file-backed pages of this process, -1 without /proc */
static long file_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size, res, shared;
    int n = fscanf(f, "%ld %ld %ld", &size, &res, &shared);
    fclose(f);
    return n == 3 ? shared : -1;
}

static void test_store_iter_release_visits_everything_intact(void)
{
    qtsp_store *st = open_fresh(16);
    /* ~20000 * 200 bytes: well over QTSP_ITER_RELEASE_PAGES pages, so the
     * walk drops its mappings several times on the way */
    big_fill b = {0, 20000};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, big_fill_fn, &b), QTSP_OK);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    big_check c = {0, 0};
    CU_ASSERT_EQUAL(
        qtsp_txn_iter_ex(t, QTSP_T_REVOKED, NULL, 0, QTSP_ITER_RELEASE, big_check_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 20000);
    CU_ASSERT_EQUAL(c.bad, 0);
    /* a borrowed view taken before a release stays readable after it */
    unsigned char k[4] = {0, 0, 0x27, 0x0f}; /* 9999 */
    const void *v;
    size_t vl;
    CU_ASSERT_EQUAL(qtsp_txn_get0(t, QTSP_T_REVOKED, k, sizeof k, &v, &vl), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_release_pages(st), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_be64_get(v), 9999u * 7919u);
    /* the release really unmaps the file: touch it all, then release */
    long before = file_pages(), after;
    c = (big_check){0, 0};
    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_REVOKED, NULL, 0, big_check_fn, &c), QTSP_OK);
    long touched = file_pages();
    CU_ASSERT_EQUAL(qtsp_store_release_pages(st), QTSP_OK);
    after = file_pages();
    if (before >= 0) {                     /* /proc mounted */
        CU_ASSERT(touched - before > 256); /* > 1 MiB of 4 MiB mapped by the walk */
        CU_ASSERT(touched - after > 256);
    }
    CU_ASSERT_EQUAL(qtsp_txn_iter_ex(t, QTSP_T_REVOKED, NULL, 0, 0x80, big_check_fn, &c),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
    qtsp_txn_abort(t);
    /* in a write transaction too (dirty pages are not in the map) */
    b = (big_fill){20000, 20100};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 1, &t), QTSP_OK);
    CU_ASSERT_EQUAL(big_fill_fn(t, &b), QTSP_OK);
    c = (big_check){0, 0};
    CU_ASSERT_EQUAL(
        qtsp_txn_iter_ex(t, QTSP_T_REVOKED, NULL, 0, QTSP_ITER_RELEASE, big_check_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_txn_commit(t), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 20100);
    CU_ASSERT_EQUAL(c.bad, 0);
    done(st);
}

/* the server's periodic trim: nothing under the budget, a drop over it */
static void test_store_trim_pages_only_over_budget(void)
{
    qtsp_store *st = open_fresh(16);
    big_fill b = {0, 20000};
    CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, big_fill_fn, &b), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_store_trim_pages(st, 1), QTSP_OK); /* first call: drops, sets the mark */
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    big_check c = {0, 0};
    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_REVOKED, NULL, 0, big_check_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 20000);
    long touched = file_pages();
    /* a budget larger than the whole walk: the mappings stay */
    CU_ASSERT_EQUAL(qtsp_store_trim_pages(st, 64), QTSP_OK);
    long kept = file_pages();
    /* 1 MiB: the walk mapped more, so they go */
    CU_ASSERT_EQUAL(qtsp_store_trim_pages(st, 1), QTSP_OK);
    long after = file_pages();
    if (touched >= 0) {
        CU_ASSERT(touched - kept < 64);
        CU_ASSERT(kept - after > 256);
    }
    /* the data is intact after the drop */
    c = (big_check){0, 0};
    CU_ASSERT_EQUAL(qtsp_txn_iter(t, QTSP_T_REVOKED, NULL, 0, big_check_fn, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.n, 20000);
    CU_ASSERT_EQUAL(c.bad, 0);
    qtsp_txn_abort(t);
    CU_ASSERT_EQUAL(qtsp_store_trim_pages(NULL, 1), QTSP_ERR_INVALID);
    qtsp_err_clear();
    done(st);
}

static void *reader_main(void *p)
{
    reader_arg *a = p;
    while (!*a->stop || a->reads < 200) {
        qtsp_txn *t;
        if (qtsp_store_begin(a->st, 0, &t) != QTSP_OK) {
            a->errors++;
            continue;
        }
        /* invariant kept by the writer: "a" and "b" always hold equal values */
        const void *va, *vb;
        size_t la, lb;
        qtsp_status ra = qtsp_txn_get0(t, QTSP_T_STATUS, "a", 1, &va, &la);
        qtsp_status rb = qtsp_txn_get0(t, QTSP_T_STATUS, "b", 1, &vb, &lb);
        if (ra != rb || (ra == QTSP_OK && (la != 8 || lb != 8 || memcmp(va, vb, 8) != 0)))
            a->errors++;
        qtsp_txn_abort(t);
        a->reads++;
    }
    return NULL;
}

static qtsp_status pair_write(qtsp_txn *txn, void *ctx)
{
    uint64_t v;
    TRY(qtsp_txn_counter_next(txn, "pair", &v));
    unsigned char be[8];
    qtsp_be64_put(be, v);
    TRY(qtsp_txn_put(txn, QTSP_T_STATUS, "a", 1, be, 8, 0));
    /* padding makes the map grow under the readers now and then */
    unsigned char pad[2048] = {0};
    unsigned char key[8];
    qtsp_be64_put(key, v);
    TRY(qtsp_txn_put(txn, QTSP_T_HISTORY, key, 8, pad, sizeof pad, 0));
    TRY(qtsp_txn_put(txn, QTSP_T_STATUS, "b", 1, be, 8, 0));
    (void)ctx;
    return QTSP_OK;
}

static void test_store_readers_see_consistent_snapshots_while_writing(void)
{
    qtsp_store *st = open_fresh(1);
    _Atomic int stop = 0;
    enum { NREADERS = 4 };
    pthread_t th[NREADERS];
    reader_arg args[NREADERS];
    for (int i = 0; i < NREADERS; i++) {
        args[i] = (reader_arg){.st = st, .stop = &stop};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    }
    for (int i = 0; i < 2000; i++)
        CU_ASSERT_EQUAL_FATAL(qtsp_store_write(st, pair_write, NULL), QTSP_OK);
    stop = 1;
    int errors = 0;
    long reads = 0;
    for (int i = 0; i < NREADERS; i++) {
        pthread_join(th[i], NULL);
        errors += args[i].errors;
        reads += args[i].reads;
    }
    CU_ASSERT_EQUAL(errors, 0);
    CU_ASSERT(reads >= 200 * NREADERS);
    qtsp_txn *t;
    CU_ASSERT_EQUAL_FATAL(qtsp_store_begin(st, 0, &t), QTSP_OK);
    uint64_t v;
    CU_ASSERT_EQUAL(qtsp_txn_counter_get(t, "pair", &v), QTSP_OK);
    CU_ASSERT_EQUAL(v, 2000);
    qtsp_txn_abort(t);
    done(st);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_store_table_names_match_the_header),
        QTEST(test_store_be64_round_trip),
        QTEST(test_store_open_refuses_bad_arguments),
        QTEST(test_store_put_get_del_roundtrip),
        QTEST(test_store_abort_discards_writes),
        QTEST(test_store_nooverwrite_reports_exists),
        QTEST(test_store_iter_last_count),
        QTEST(test_store_get0_is_a_borrowed_view),
        QTEST(test_store_counters_increase_and_survive_reopen),
        QTEST(test_store_one_transaction_per_thread),
        QTEST(test_store_write_grows_a_full_map),
        QTEST(test_store_explicit_grow_doubles),
        QTEST(test_store_adopts_a_map_grown_by_another_process),
        QTEST(test_store_readers_see_consistent_snapshots_while_writing),
        QTEST(test_store_iter_release_visits_everything_intact),
        QTEST(test_store_trim_pages_only_over_budget),
    };
    return qtest_run("store", cases, sizeof cases / sizeof cases[0]);
}
