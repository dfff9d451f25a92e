/* The LMDB store. The only file that includes lmdb.h.
 *
 * Design notes (why, not what):
 * - MDB_NOTLS: a read transaction's reader slot belongs to the MDB_txn, not
 *   to the thread, so we can keep one reset read transaction per thread and
 *   renew it for every read (no allocation, no slot search on the OCSP hot
 *   path) and release the slot deterministically when the thread exits or
 *   the store closes.
 * - Map growth: mdb_env_set_mapsize needs every transaction of this process
 *   to be finished. Every transaction holds st->map_lock shared; growing
 *   takes it exclusive. The lock prefers writers so a stream of readers
 *   cannot starve a grow; therefore a thread must never begin a second
 *   transaction while it holds one (enforced: QTSP_ERR_STATE).
 *   Reset read transactions do not count as active: they hold no pointer
 *   into the map and re-read the meta page on renew.
 * - Another process (a CLI verb beside the server) may grow the map: LMDB
 *   then reports MDB_MAP_RESIZED on begin, and we adopt the size recorded in
 *   the file (mdb_env_set_mapsize(env, 0)) and retry.
 * - Commits are durable: no MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP.
 * - NOT_FOUND is an answer, not a failure: it is returned without recording
 *   an error, so an expected miss does not mask a later real failure. */
#define _GNU_SOURCE 1 /* pthread_rwlockattr_setkind_np */

#include "ca/store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/log.h"

#define STORE_MAXDBS 64                   /* 24 tables today; headroom for later ones */
#define STORE_MAXREADERS 1024             /* reader slots shared by all processes */
#define STORE_MAX_GROWS 16                /* per qtsp_store_write call */
#define STORE_MAP_MAX ((uint64_t)1 << 40) /* 1 TiB: never grow beyond */
#define STORE_RESIZE_RETRIES 8
#define STORE_SCHEMA_VERSION 1

static const char *const table_names[QTSP_T__COUNT] = {
    [QTSP_T_META] = "meta",
    [QTSP_T_COUNTERS] = "counters",
    [QTSP_T_AUDIT] = "audit",
    [QTSP_T_OPERATORS] = "operators",
    [QTSP_T_CERTS] = "certs",
    [QTSP_T_STATUS] = "status",
    [QTSP_T_SUBJECTS] = "subjects",
    [QTSP_T_SUBJECT_INDEX] = "subject_index",
    [QTSP_T_SUBJECT_CERTS] = "subject_certs",
    [QTSP_T_OCSP_CACHE] = "ocsp_cache",
    [QTSP_T_REVOKED] = "revoked",
    [QTSP_T_CRL] = "crl",
    [QTSP_T_TSA_JOURNAL] = "tsa_journal",
    [QTSP_T_USERS] = "users",
    [QTSP_T_CREDENTIALS] = "credentials",
    [QTSP_T_SESSIONS] = "sessions",
    [QTSP_T_HISTORY] = "history",
    [QTSP_T_DOCUMENTS] = "documents",
    [QTSP_T_HOLDS] = "holds",
    [QTSP_T_KEYPOOL] = "keypool",
    [QTSP_T_KEY_USE] = "key_use",
    [QTSP_T_RPS] = "relying_parties",
    [QTSP_T_QUOTA] = "quota",
    [QTSP_T_RP_USAGE] = "rp_usage",
    [QTSP_T_SADS] = "sads",
    [QTSP_T_CSC_STATE] = "csc_state",
};

/* Per thread and store: the cached read transaction and whether the thread
 * holds a transaction of this store right now. */
typedef struct rslot rslot;

struct qtsp_txn {
    qtsp_store *st;
    rslot *slot;
    MDB_txn *txn;
    int write;
    int map_full; /* an operation hit MDB_MAP_FULL: the txn is unusable */
};

struct rslot {
    qtsp_store *st;
    MDB_txn *rtxn;   /* reset read txn, or NULL */
    int held;        /* this thread holds a txn of st */
    qtsp_txn handle; /* returned for cached reads */
    rslot *next;
    rslot *prev;
};

struct qtsp_store {
    MDB_env *env;
    MDB_dbi dbi[QTSP_T__COUNT];
    pthread_rwlock_t map_lock;
    uint64_t map_size; /* guarded by map_lock */
    pthread_key_t key;
    pthread_mutex_t slots_mu;
    rslot *slots;
    size_t maxkey;
    uint64_t map_gen;       /* bumped whenever LMDB remaps; guarded by map_lock */
    pthread_mutex_t map_mu; /* the map location found for map_gen */
    uint64_t found_gen;     /* 0 = not looked up yet */
    void *map_base;
    size_t map_len;
    long trim_mark; /* file-backed resident pages after the last trim; guarded by map_mu */
};

const char *qtsp_table_name(qtsp_table t)
{
    if ((unsigned)t >= QTSP_T__COUNT)
        return "?";
    return table_names[t];
}

/* Maps an LMDB return code (not MDB_SUCCESS, not MDB_NOTFOUND) to a status
 * and records it. */
static qtsp_status mdb_fail(qtsp_txn *txn, int rc, const char *file, int line, const char *what)
{
    qtsp_status code = QTSP_ERR_STORE;
    switch (rc) {
    case MDB_MAP_FULL:
        if (txn)
            txn->map_full = 1;
        code = QTSP_ERR_STORE_FULL;
        break;
    case MDB_KEYEXIST:
        code = QTSP_ERR_EXISTS;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        code = QTSP_ERR_STORE_CORRUPT;
        break;
    case ENOMEM:
        code = QTSP_ERR_NOMEM;
        break;
    case ENOSPC:
    case EDQUOT:
    case EIO: /* LMDB's word for a short write of its pages */
        /* the file system cannot take the pages: the write is refused whole
         * (LMDB wrote no meta page); growing the map would not help */
        code = QTSP_ERR_UNAVAILABLE;
        LOG_ERROR("store: the file system of the store refused a write (%s; no space left?): "
                  "writes are refused (HTTP 503) until it takes them again",
                  mdb_strerror(rc));
        break;
    default:
        break;
    }
    return qtsp_err_set(code, file, line, "store: %s: %s", what, mdb_strerror(rc));
}
#define MDB_FAIL(txn, rc, what) mdb_fail((txn), (rc), __FILE__, __LINE__, (what))

/* ---- thread slots ---------------------------------------------------- */

static void slot_unlink(qtsp_store *st, rslot *s)
{
    pthread_mutex_lock(&st->slots_mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        st->slots = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&st->slots_mu);
}

/* Thread exit: release the reader slot. Not called after qtsp_store_close
 * (the key is deleted there first). */
static void slot_destroy(void *p)
{
    rslot *s = p;
    if (!s)
        return;
    slot_unlink(s->st, s);
    if (s->rtxn)
        mdb_txn_abort(s->rtxn);
    free(s);
}

static qtsp_status slot_get(qtsp_store *st, rslot **out)
{
    rslot *s = pthread_getspecific(st->key);
    if (!s) {
        s = calloc(1, sizeof *s);
        ENSURE(s, QTSP_ERR_NOMEM, "store: out of memory for a thread slot");
        s->st = st;
        if (pthread_setspecific(st->key, s) != 0) {
            free(s);
            FAIL(QTSP_ERR_NOMEM, "store: cannot register a thread slot");
        }
        pthread_mutex_lock(&st->slots_mu);
        s->next = st->slots;
        if (st->slots)
            st->slots->prev = s;
        st->slots = s;
        pthread_mutex_unlock(&st->slots_mu);
    }
    *out = s;
    return QTSP_OK;
}

/* ---- map size -------------------------------------------------------- */

static uint64_t env_mapsize(MDB_env *env)
{
    MDB_envinfo info;
    if (mdb_env_info(env, &info) != MDB_SUCCESS)
        return 0;
    return (uint64_t)info.me_mapsize;
}

/* Another process grew the map: adopt the size recorded in the file.
 * Caller holds no transaction. */
static qtsp_status adopt_file_mapsize(qtsp_store *st)
{
    pthread_rwlock_wrlock(&st->map_lock);
    int rc = mdb_env_set_mapsize(st->env, 0);
    if (rc == MDB_SUCCESS)
        st->map_size = env_mapsize(st->env);
    st->map_gen++;
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(NULL, rc, "adopting the map size grown by another process");
    LOG_INFO("store: map resized by another process, now %llu MiB",
             (unsigned long long)(st->map_size >> 20));
    return QTSP_OK;
}

/* Doubles the map unless it has already grown past seen (another thread
 * grew it meanwhile). Caller holds no transaction. */
static qtsp_status grow_from(qtsp_store *st, uint64_t seen)
{
    qtsp_status rc = QTSP_OK;
    pthread_rwlock_wrlock(&st->map_lock);
    if (st->map_size > seen)
        goto out;
    ENSURE_OUT(st->map_size <= STORE_MAP_MAX / 2, QTSP_ERR_STORE_FULL,
               "store: map full at %llu MiB, the limit", (unsigned long long)(st->map_size >> 20));
    uint64_t want = st->map_size * 2;
    int mrc = mdb_env_set_mapsize(st->env, (size_t)want);
    if (mrc != MDB_SUCCESS) {
        rc = MDB_FAIL(NULL, mrc, "growing the map");
        goto out;
    }
    st->map_size = env_mapsize(st->env);
    st->map_gen++;
    LOG_INFO("store: map grown to %llu MiB", (unsigned long long)(st->map_size >> 20));
out:
    pthread_rwlock_unlock(&st->map_lock);
    return rc;
}

qtsp_status qtsp_store_grow(qtsp_store *st)
{
    ENSURE(st, QTSP_ERR_INVALID, "store: no store");
    rslot *s = pthread_getspecific(st->key);
    ENSURE(!s || !s->held, QTSP_ERR_STATE, "store: cannot grow the map inside a transaction");
    pthread_rwlock_rdlock(&st->map_lock);
    uint64_t seen = st->map_size;
    pthread_rwlock_unlock(&st->map_lock);
    return grow_from(st, seen);
}

/* ---- open / close ---------------------------------------------------- */

static qtsp_status open_tables(qtsp_store *st)
{
    MDB_txn *txn = NULL;
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (rc != MDB_MAP_RESIZED || attempt >= STORE_RESIZE_RETRIES)
            break;
        TRY(adopt_file_mapsize(st));
    }
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(NULL, rc, "beginning the table set-up transaction");
    for (int t = 0; t < QTSP_T__COUNT; t++) {
        rc = mdb_dbi_open(txn, table_names[t], MDB_CREATE, &st->dbi[t]);
        if (rc != MDB_SUCCESS) {
            mdb_txn_abort(txn);
            return MDB_FAIL(NULL, rc, "opening a table");
        }
    }
    /* meta "schema": one byte, the layout version of the whole store */
    static const char skey[] = "schema";
    MDB_val k = {sizeof skey - 1, (void *)skey}, v;
    rc = mdb_get(txn, st->dbi[QTSP_T_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        unsigned char ver = STORE_SCHEMA_VERSION;
        v.mv_size = 1;
        v.mv_data = &ver;
        rc = mdb_put(txn, st->dbi[QTSP_T_META], &k, &v, MDB_NOOVERWRITE);
    } else if (rc == MDB_SUCCESS) {
        if (v.mv_size != 1 || *(const unsigned char *)v.mv_data != STORE_SCHEMA_VERSION) {
            mdb_txn_abort(txn);
            FAIL(QTSP_ERR_STORE_CORRUPT, "store: unsupported schema version");
        }
    }
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return MDB_FAIL(NULL, rc, "writing the schema version");
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(NULL, rc, "committing the table set-up");
    return QTSP_OK;
}

qtsp_status qtsp_store_open(const char *dir, size_t map_mib, qtsp_store **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_store *st = NULL;
    int lock_ok = 0, key_ok = 0, mu_ok = 0;
    ENSURE(dir && *dir, QTSP_ERR_INVALID, "store: no directory given");
    ENSURE(map_mib >= 1 && map_mib <= (STORE_MAP_MAX >> 20), QTSP_ERR_INVALID,
           "store: map size %zu MiB out of range", map_mib);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        FAIL(QTSP_ERR_IO, "store: cannot create %s: %s", dir, strerror(errno));

    st = calloc(1, sizeof *st);
    ENSURE(st, QTSP_ERR_NOMEM, "store: out of memory");

    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a grow must not starve behind a stream of OCSP readers */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int prc = pthread_rwlock_init(&st->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    ENSURE_OUT(prc == 0, QTSP_ERR_NOMEM, "store: cannot create the map lock");
    lock_ok = 1;
    ENSURE_OUT(pthread_mutex_init(&st->slots_mu, NULL) == 0, QTSP_ERR_NOMEM,
               "store: cannot create a mutex");
    st->trim_mark = -1;
    if (pthread_mutex_init(&st->map_mu, NULL) != 0) {
        pthread_mutex_destroy(&st->slots_mu);
        FAIL_OUT(QTSP_ERR_NOMEM, "store: cannot create a mutex");
    }
    mu_ok = 1;
    ENSURE_OUT(pthread_key_create(&st->key, slot_destroy) == 0, QTSP_ERR_NOMEM,
               "store: cannot create a thread key");
    key_ok = 1;

    int mrc = mdb_env_create(&st->env);
    if (mrc != MDB_SUCCESS) {
        st->env = NULL;
        FAIL_OUT(QTSP_ERR_STORE, "store: mdb_env_create: %s", mdb_strerror(mrc));
    }
    uint64_t want = (uint64_t)map_mib << 20;
    if ((mrc = mdb_env_set_maxdbs(st->env, STORE_MAXDBS)) != MDB_SUCCESS ||
        (mrc = mdb_env_set_maxreaders(st->env, STORE_MAXREADERS)) != MDB_SUCCESS ||
        (mrc = mdb_env_set_mapsize(st->env, (size_t)want)) != MDB_SUCCESS) {
        rc = MDB_FAIL(NULL, mrc, "configuring the environment");
        goto out;
    }
    /* no MDB_NORDAHEAD: measured with 1M certificates it made cached
     * lookups 3x slower (each fault maps one page instead of a window) and
     * a cold CRL build slower too (docs/crl.md) */
    mrc = mdb_env_open(st->env, dir, MDB_NOTLS, 0600);
    if (mrc != MDB_SUCCESS) {
        rc = qtsp_err_set(mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH ? QTSP_ERR_STORE_CORRUPT
                                                                            : QTSP_ERR_STORE,
                          __FILE__, __LINE__, "store: cannot open %s: %s", dir, mdb_strerror(mrc));
        goto out;
    }
    /* The configured size is a minimum: keep a larger map grown earlier
     * (recorded in the file) instead of shrinking back to it. */
    if ((mrc = mdb_env_set_mapsize(st->env, 0)) != MDB_SUCCESS) {
        rc = MDB_FAIL(NULL, mrc, "reading the recorded map size");
        goto out;
    }
    if (env_mapsize(st->env) < want &&
        (mrc = mdb_env_set_mapsize(st->env, (size_t)want)) != MDB_SUCCESS) {
        rc = MDB_FAIL(NULL, mrc, "setting the map size");
        goto out;
    }
    st->map_size = env_mapsize(st->env);
    st->map_gen = 1;
    st->maxkey = (size_t)mdb_env_get_maxkeysize(st->env);

    int dead = 0;
    if ((mrc = mdb_reader_check(st->env, &dead)) != MDB_SUCCESS) {
        rc = MDB_FAIL(NULL, mrc, "clearing stale readers");
        goto out;
    }
    if (dead > 0)
        LOG_WARN("store: cleared %d reader slots of dead processes", dead);

    TRY_OUT(open_tables(st));
    *out = st;
    st = NULL;
out:
    if (st) {
        if (st->env)
            mdb_env_close(st->env);
        if (key_ok)
            pthread_key_delete(st->key);
        if (mu_ok) {
            pthread_mutex_destroy(&st->slots_mu);
            pthread_mutex_destroy(&st->map_mu);
        }
        if (lock_ok)
            pthread_rwlock_destroy(&st->map_lock);
        free(st);
    }
    return rc;
}

qtsp_status qtsp_store_copy(qtsp_store *st, const char *dir)
{
    ENSURE(st != NULL && dir != NULL, QTSP_ERR_INVALID, "no store or folder");
    /* a read transaction inside LMDB: a consistent snapshot while writers go
     * on; compaction drops free pages and renumbers the rest */
    int r = mdb_env_copy2(st->env, dir, MDB_CP_COMPACT);
    ENSURE(r == 0, QTSP_ERR_STORE, "cannot copy the store to %s: %s", dir, mdb_strerror(r));
    return QTSP_OK;
}

void qtsp_store_close(qtsp_store *st)
{
    if (!st)
        return;
    /* no destructor may run for this store from now on */
    pthread_key_delete(st->key);
    pthread_mutex_lock(&st->slots_mu);
    rslot *s = st->slots;
    st->slots = NULL;
    pthread_mutex_unlock(&st->slots_mu);
    while (s) {
        rslot *next = s->next;
        if (s->held)
            LOG_ERROR("store: closed while a transaction is open");
        if (s->rtxn)
            mdb_txn_abort(s->rtxn);
        free(s);
        s = next;
    }
    mdb_env_close(st->env);
    pthread_mutex_destroy(&st->slots_mu);
    pthread_mutex_destroy(&st->map_mu);
    pthread_rwlock_destroy(&st->map_lock);
    free(st);
}

/* ---- transactions ---------------------------------------------------- */

static qtsp_status begin_read(qtsp_store *st, rslot *s, qtsp_txn **out)
{
    int rc;
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&st->map_lock);
        if (s->rtxn) {
            rc = mdb_txn_renew(s->rtxn);
        } else {
            MDB_txn *t = NULL;
            rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t);
            if (rc == MDB_SUCCESS)
                s->rtxn = t;
        }
        if (rc == MDB_SUCCESS)
            break;
        pthread_rwlock_unlock(&st->map_lock);
        if (rc != MDB_MAP_RESIZED || attempt >= STORE_RESIZE_RETRIES) {
            if (s->rtxn) {
                mdb_txn_abort(s->rtxn);
                s->rtxn = NULL;
            }
            return MDB_FAIL(NULL, rc, "beginning a read transaction");
        }
        TRY(adopt_file_mapsize(st));
    }
    s->held = 1;
    s->handle = (qtsp_txn){.st = st, .slot = s, .txn = s->rtxn, .write = 0};
    *out = &s->handle;
    return QTSP_OK;
}

static qtsp_status begin_write(qtsp_store *st, rslot *s, qtsp_txn **out)
{
    qtsp_txn *h = calloc(1, sizeof *h);
    ENSURE(h, QTSP_ERR_NOMEM, "store: out of memory for a transaction");
    int rc;
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&st->map_lock);
        rc = mdb_txn_begin(st->env, NULL, 0, &h->txn);
        if (rc == MDB_SUCCESS)
            break;
        pthread_rwlock_unlock(&st->map_lock);
        if (rc != MDB_MAP_RESIZED || attempt >= STORE_RESIZE_RETRIES) {
            free(h);
            return MDB_FAIL(NULL, rc, "beginning a write transaction");
        }
        qtsp_status q = adopt_file_mapsize(st);
        if (q != QTSP_OK) {
            free(h);
            return q;
        }
    }
    h->st = st;
    h->slot = s;
    h->write = 1;
    s->held = 1;
    *out = h;
    return QTSP_OK;
}

qtsp_status qtsp_store_begin(qtsp_store *st, int write, qtsp_txn **out)
{
    ENSURE(st && out, QTSP_ERR_INVALID, "store: no store");
    rslot *s = NULL;
    TRY(slot_get(st, &s));
    ENSURE(!s->held, QTSP_ERR_STATE,
           "store: this thread already holds a transaction (one at a time)");
    return write ? begin_write(st, s, out) : begin_read(st, s, out);
}

/* Ends the transaction's hold on the map lock and frees what is ours. */
static void txn_release(qtsp_txn *txn)
{
    qtsp_store *st = txn->st;
    txn->slot->held = 0;
    if (txn->write)
        free(txn);
    pthread_rwlock_unlock(&st->map_lock);
}

void qtsp_txn_abort(qtsp_txn *txn)
{
    if (!txn)
        return;
    if (txn->write)
        mdb_txn_abort(txn->txn);
    else
        mdb_txn_reset(txn->txn); /* keep the reader slot for the next read */
    txn_release(txn);
}

qtsp_status qtsp_txn_commit(qtsp_txn *txn)
{
    ENSURE(txn, QTSP_ERR_INVALID, "store: no transaction");
    if (!txn->write) {
        mdb_txn_reset(txn->txn);
        txn_release(txn);
        return QTSP_OK;
    }
    if (txn->map_full) {
        mdb_txn_abort(txn->txn);
        txn_release(txn);
        FAIL(QTSP_ERR_STORE_FULL, "store: map full");
    }
    int rc = mdb_txn_commit(txn->txn);
    txn_release(txn);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(NULL, rc, "committing");
    return QTSP_OK;
}

qtsp_status qtsp_store_write(qtsp_store *st, qtsp_write_fn fn, void *ctx)
{
    ENSURE(st && fn, QTSP_ERR_INVALID, "store: no store or function");
    int clean = qtsp_err_code() == QTSP_OK;
    for (int grows = 0;; grows++) {
        qtsp_txn *txn;
        TRY(qtsp_store_begin(st, 1, &txn));
        uint64_t seen = st->map_size; /* stable: we hold map_lock shared */
        qtsp_status rc = fn(txn, ctx);
        int full = txn->map_full || rc == QTSP_ERR_STORE_FULL;
        if (rc != QTSP_OK || full) {
            qtsp_txn_abort(txn);
        } else {
            rc = qtsp_txn_commit(txn);
            full = rc == QTSP_ERR_STORE_FULL;
        }
        if (!full)
            return rc;
        if (grows >= STORE_MAX_GROWS)
            LOG_ERROR("store: the map is still full after %d grows: writes are refused (HTTP 503)",
                      grows);
        ENSURE(grows < STORE_MAX_GROWS, QTSP_ERR_STORE_FULL, "store: map still full after %d grows",
               grows);
        /* the map-full failure was handled: do not let it mask later ones */
        if (clean)
            qtsp_err_clear();
        TRY(grow_from(st, seen));
    }
}

/* ---- data access ----------------------------------------------------- */

static qtsp_status check_args(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen)
{
    ENSURE(txn, QTSP_ERR_INVALID, "store: no transaction");
    ENSURE((unsigned)t < QTSP_T__COUNT, QTSP_ERR_INVALID, "store: no table %d", (int)t);
    ENSURE(key && klen >= 1 && klen <= txn->st->maxkey, QTSP_ERR_INVALID,
           "store: key length %zu out of range for %s", klen, table_names[t]);
    return QTSP_OK;
}

qtsp_status qtsp_txn_get0(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen,
                          const void **val, size_t *vlen)
{
    TRY(check_args(txn, t, key, klen));
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn->txn, txn->st->dbi[t], &k, &v);
    if (rc == MDB_NOTFOUND)
        return QTSP_ERR_NOT_FOUND;
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "reading");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return QTSP_OK;
}

qtsp_status qtsp_txn_get(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen, qtsp_buf *out)
{
    const void *v;
    size_t vl;
    TRY(qtsp_txn_get0(txn, t, key, klen, &v, &vl));
    qtsp_buf_reset(out);
    return qtsp_buf_append(out, v, vl);
}

qtsp_status qtsp_txn_put(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen, const void *val,
                         size_t vlen, unsigned flags)
{
    TRY(check_args(txn, t, key, klen));
    ENSURE(txn->write, QTSP_ERR_STATE, "store: write in a read-only transaction");
    ENSURE(val || vlen == 0, QTSP_ERR_INVALID, "store: no value");
    ENSURE(vlen <= UINT32_MAX, QTSP_ERR_TOO_BIG, "store: value too big");
    ENSURE(!txn->map_full, QTSP_ERR_STORE_FULL, "store: map full");
    unsigned mflags = 0;
    if (flags & QTSP_PUT_NOOVERWRITE)
        mflags |= MDB_NOOVERWRITE;
    if (flags & QTSP_PUT_APPEND)
        mflags |= MDB_APPEND;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)(vlen ? val : "")};
    int rc = mdb_put(txn->txn, txn->st->dbi[t], &k, &v, mflags);
    if (rc == MDB_KEYEXIST)
        FAIL(QTSP_ERR_EXISTS, "store: key already present in %s%s", table_names[t],
             (flags & QTSP_PUT_APPEND) && !(flags & QTSP_PUT_NOOVERWRITE) ? " (append out of order)"
                                                                          : "");
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "writing");
    return QTSP_OK;
}

qtsp_status qtsp_txn_del(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen)
{
    TRY(check_args(txn, t, key, klen));
    ENSURE(txn->write, QTSP_ERR_STATE, "store: delete in a read-only transaction");
    ENSURE(!txn->map_full, QTSP_ERR_STORE_FULL, "store: map full");
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn->txn, txn->st->dbi[t], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return QTSP_ERR_NOT_FOUND;
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "deleting");
    return QTSP_OK;
}

/* ---- releasing mapped pages -------------------------------------------
 * LMDB does not expose where it mapped the file (me_mapaddr is only set with
 * MDB_FIXEDMAP), so the mapping is found once per remap in /proc/self/maps:
 * the shared read-only mapping at offset 0 of the data file's device and
 * inode whose length is the map size. Without /proc nothing is released. */

static unsigned long long parse_hex(const char **p)
{
    char *e;
    unsigned long long v = strtoull(*p, &e, 16);
    *p = e;
    return v;
}

/* Caller holds map_lock (the map cannot move) and map_mu. */
static void find_map(qtsp_store *st)
{
    st->map_base = NULL;
    st->map_len = 0;
    st->found_gen = st->map_gen;
    int fd = -1;
    struct stat sb;
    if (mdb_env_get_fd(st->env, &fd) != MDB_SUCCESS || fstat(fd, &sb) != 0)
        return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return;
    char line[4096 + 256];
    while (fgets(line, sizeof line, f)) {
        const char *p = line;
        unsigned long long lo = parse_hex(&p);
        if (*p++ != '-')
            continue;
        unsigned long long hi = parse_hex(&p);
        /* perms "r--s": read-only, shared */
        if (p[0] != ' ' || p[1] != 'r' || p[2] != '-' || p[4] != 's')
            continue;
        p += 6;
        unsigned long long off = parse_hex(&p);
        p++;
        unsigned long long maj = parse_hex(&p);
        if (*p != ':')
            continue;
        p++;
        unsigned long long min = parse_hex(&p);
        char *e;
        unsigned long long ino = strtoull(p, &e, 10);
        if (off == 0 && maj == major(sb.st_dev) && min == minor(sb.st_dev) &&
            ino == (unsigned long long)sb.st_ino && hi > lo && hi - lo == st->map_size) {
            st->map_base = (void *)(uintptr_t)lo;
            st->map_len = (size_t)(hi - lo);
            break;
        }
    }
    fclose(f);
}

/* Caller holds map_lock (shared, e.g. through a transaction): the map
 * cannot move meanwhile. */
static void release_pages_locked(qtsp_store *st)
{
    pthread_mutex_lock(&st->map_mu);
    if (st->found_gen != st->map_gen)
        find_map(st);
    void *base = st->map_base;
    size_t len = st->map_len;
    pthread_mutex_unlock(&st->map_mu);
    /* a read-only MAP_SHARED file mapping (no MDB_WRITEMAP): MADV_DONTNEED
     * only drops page-table entries, the pages stay in the page cache */
    if (base && madvise(base, len, MADV_DONTNEED) != 0)
        LOG_WARN("store: madvise(MADV_DONTNEED) on the map failed: %s", strerror(errno));
}

/* Resident file-backed pages of this process (/proc/self/statm "shared"),
 * -1 if unknown. */
static long resident_file_pages(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = buf, *e;
    long v = -1;
    for (int i = 0; i < 3; i++) { /* size resident shared ... */
        v = strtol(p, &e, 10);
        if (e == p)
            return -1;
        p = e;
    }
    return v;
}

qtsp_status qtsp_store_release_pages(qtsp_store *st)
{
    ENSURE(st, QTSP_ERR_INVALID, "store: no store");
    pthread_rwlock_rdlock(&st->map_lock);
    release_pages_locked(st);
    pthread_rwlock_unlock(&st->map_lock);
    return QTSP_OK;
}

qtsp_status qtsp_store_trim_pages(qtsp_store *st, size_t mib)
{
    ENSURE(st, QTSP_ERR_INVALID, "store: no store");
    long pgsz = sysconf(_SC_PAGESIZE);
    long now = resident_file_pages();
    pthread_mutex_lock(&st->map_mu);
    long mark = st->trim_mark;
    pthread_mutex_unlock(&st->map_mu);
    if (now >= 0 && mark >= 0 && pgsz > 0 &&
        now - mark <= (long)(mib * ((size_t)1 << 20) / (size_t)pgsz))
        return QTSP_OK;
    pthread_rwlock_rdlock(&st->map_lock);
    release_pages_locked(st);
    pthread_rwlock_unlock(&st->map_lock);
    now = resident_file_pages();
    pthread_mutex_lock(&st->map_mu);
    st->trim_mark = now;
    pthread_mutex_unlock(&st->map_mu);
    return QTSP_OK;
}

qtsp_status qtsp_txn_iter(qtsp_txn *txn, qtsp_table t, const void *start, size_t slen,
                          qtsp_iter_fn fn, void *ctx)
{
    return qtsp_txn_iter_ex(txn, t, start, slen, 0, fn, ctx);
}

qtsp_status qtsp_txn_iter_ex(qtsp_txn *txn, qtsp_table t, const void *start, size_t slen,
                             unsigned flags, qtsp_iter_fn fn, void *ctx)
{
    ENSURE(txn && fn, QTSP_ERR_INVALID, "store: no transaction or function");
    ENSURE((flags & ~QTSP_ITER_RELEASE) == 0, QTSP_ERR_INVALID, "store: unknown iteration flags");
    ENSURE((unsigned)t < QTSP_T__COUNT, QTSP_ERR_INVALID, "store: no table %d", (int)t);
    if (start)
        TRY(check_args(txn, t, start, slen));
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->st->dbi[t], &cur);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "opening a cursor");
    MDB_val k = {slen, (void *)start}, v;
    rc = mdb_cursor_get(cur, &k, &v, start ? MDB_SET_RANGE : MDB_FIRST);
    qtsp_status st = QTSP_OK;
    int stop = 0;
    long pgsz = sysconf(_SC_PAGESIZE);
    uintptr_t page = 0, mask = ~(uintptr_t)(pgsz - 1);
    unsigned pages = 0;
    long budget = (long)(QTSP_ITER_RELEASE_MIB * ((size_t)1 << 20) / (size_t)pgsz), mark = -1;
    if (flags & QTSP_ITER_RELEASE)
        mark = resident_file_pages();
    while (rc == MDB_SUCCESS) {
        if (flags & QTSP_ITER_RELEASE) {
            /* every few leaf pages, look at how much of the file is mapped
             * now: each fault maps a whole fault-around window or large
             * folio, far more than the page we read */
            uintptr_t p = (uintptr_t)k.mv_data & mask;
            if (p != page) {
                page = p;
                if (++pages >= 32) {
                    pages = 0;
                    long now = resident_file_pages();
                    if (now < 0 || mark < 0 || now - mark > budget) {
                        release_pages_locked(txn->st);
                        mark = resident_file_pages();
                    }
                }
            }
        }
        st = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size, &stop);
        if (st != QTSP_OK || stop)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (st == QTSP_OK && (flags & QTSP_ITER_RELEASE))
        release_pages_locked(txn->st);
    if (st != QTSP_OK)
        return st;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return MDB_FAIL(txn, rc, "iterating");
    return QTSP_OK;
}

qtsp_status qtsp_txn_last(qtsp_txn *txn, qtsp_table t, qtsp_buf *key, qtsp_buf *val)
{
    ENSURE(txn, QTSP_ERR_INVALID, "store: no transaction");
    ENSURE((unsigned)t < QTSP_T__COUNT, QTSP_ERR_INVALID, "store: no table %d", (int)t);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->st->dbi[t], &cur);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "opening a cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    qtsp_status st = QTSP_OK;
    if (rc == MDB_NOTFOUND) {
        st = QTSP_ERR_NOT_FOUND;
    } else if (rc != MDB_SUCCESS) {
        st = MDB_FAIL(txn, rc, "reading the last entry");
    } else {
        if (key) {
            qtsp_buf_reset(key);
            st = qtsp_buf_append(key, k.mv_data, k.mv_size);
        }
        if (st == QTSP_OK && val) {
            qtsp_buf_reset(val);
            st = qtsp_buf_append(val, v.mv_data, v.mv_size);
        }
    }
    mdb_cursor_close(cur);
    return st;
}

qtsp_status qtsp_txn_count(qtsp_txn *txn, qtsp_table t, uint64_t *out)
{
    ENSURE(txn && out, QTSP_ERR_INVALID, "store: no transaction");
    ENSURE((unsigned)t < QTSP_T__COUNT, QTSP_ERR_INVALID, "store: no table %d", (int)t);
    MDB_stat s;
    int rc = mdb_stat(txn->txn, txn->st->dbi[t], &s);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(txn, rc, "counting");
    *out = (uint64_t)s.ms_entries;
    return QTSP_OK;
}

static qtsp_status counter_key(const char *name, size_t *len)
{
    ENSURE(name, QTSP_ERR_INVALID, "store: no counter name");
    *len = strlen(name);
    ENSURE(*len >= 1 && *len <= 64, QTSP_ERR_INVALID, "store: counter name length out of range");
    return QTSP_OK;
}

qtsp_status qtsp_txn_u64_get(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen,
                             uint64_t *out)
{
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, t, key, klen, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) {
        *out = 0;
        return QTSP_OK;
    }
    TRY(rc);
    ENSURE(vl == 8, QTSP_ERR_STORE_CORRUPT, "store: a counter of %s has %zu bytes, not 8",
           qtsp_table_name(t), vl);
    *out = qtsp_be64_get(v);
    return QTSP_OK;
}

qtsp_status qtsp_txn_u64_add(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen, uint64_t n,
                             uint64_t *out)
{
    ENSURE(txn, QTSP_ERR_INVALID, "store: no transaction");
    ENSURE(txn->write, QTSP_ERR_STATE, "store: counter increment in a read-only transaction");
    uint64_t cur;
    TRY(qtsp_txn_u64_get(txn, t, key, klen, &cur));
    ENSURE(cur <= UINT64_MAX - n, QTSP_ERR_INTERNAL, "store: a counter of %s overflows",
           qtsp_table_name(t));
    unsigned char be[8];
    qtsp_be64_put(be, cur + n);
    TRY(qtsp_txn_put(txn, t, key, klen, be, sizeof be, 0));
    if (out)
        *out = cur + n;
    return QTSP_OK;
}

qtsp_status qtsp_txn_counter_get(qtsp_txn *txn, const char *name, uint64_t *out)
{
    size_t klen = 0;
    TRY(counter_key(name, &klen));
    return qtsp_txn_u64_get(txn, QTSP_T_COUNTERS, name, klen, out);
}

qtsp_status qtsp_txn_counter_next(qtsp_txn *txn, const char *name, uint64_t *out)
{
    size_t klen = 0;
    TRY(counter_key(name, &klen));
    return qtsp_txn_u64_add(txn, QTSP_T_COUNTERS, name, klen, 1, out);
}

qtsp_status qtsp_store_stats(qtsp_store *st, uint64_t *used_bytes, uint64_t *map_bytes)
{
    ENSURE(st, QTSP_ERR_INVALID, "store: no store");
    MDB_envinfo info;
    MDB_stat s;
    pthread_rwlock_rdlock(&st->map_lock);
    int rc = mdb_env_info(st->env, &info);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_stat(st->env, &s);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != MDB_SUCCESS)
        return MDB_FAIL(NULL, rc, "reading statistics");
    if (used_bytes)
        *used_bytes = ((uint64_t)info.me_last_pgno + 1) * s.ms_psize;
    if (map_bytes)
        *map_bytes = (uint64_t)info.me_mapsize;
    return QTSP_OK;
}
