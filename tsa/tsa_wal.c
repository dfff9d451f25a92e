/* The TSA journal's write-ahead file (tsa_wal.h). Why: a store commit is
 * about seven page writes, an fdatasync and a synchronous meta-page write
 * (≈ 110 µs of CPU here whatever its size), a write into a file whose
 * blocks already exist is one pwrite and one fdatasync (≈ 45 µs); with
 * group commits of a dozen stamps that is 9 against 3 µs per stamp
 * (docs/bench.md, issue 19). The store still gets every entry, in one
 * transaction per fill. */
#define _GNU_SOURCE
#include "tsa/tsa_wal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"

#define HDR 16       /* magic 4, flags 1, key length 1, value length 2, generation 8 */
#define TRAILER 8    /* FNV-1a-64 */
#define KEY_MAX 64   /* a TSA serial is 17 octets */
#define VAL_MAX 1024 /* a journal value is about 90 */
#define FLAG_REPLACE 1u
#define WAL_READ_MAX (64u << 20) /* what a replay reads of a file at most */
#define DIO_BLOCK 4096u          /* O_DIRECT writes: offset, length and memory aligned */
static const unsigned char MAGIC[4] = {'Q', 'T', 'W', '1'};

/* Records in file format and how many (a batch, or what awaits a fill). */
typedef struct recbuf {
    qtsp_buf b;
    size_t n;
} recbuf;

static void recbuf_init(recbuf *r)
{
    qtsp_buf_init(&r->b, WAL_READ_MAX);
    r->n = 0;
}

struct qtsp_tsa_wal {
    int fd;
    /* the same file opened O_DIRECT (-1: none, or it failed once): batches
     * are written around the page cache, in whole blocks, with RWF_DSYNC
     * (which also flushes the device's write cache) */
    int dfd;
    unsigned char *dbuf; /* DIO_BLOCK-aligned staging of a batch's blocks */
    size_t dcap;
    unsigned char *tail; /* the block holding off, as written (DIO_BLOCK bytes) */
    size_t cap;          /* file size */
    qtsp_store *store;

    pthread_mutex_t wmu; /* appends: off, gen, broken, out */
    size_t off;          /* where the next record goes */
    uint64_t gen;
    int broken; /* a write failed: wrap before the next one */
    recbuf out; /* the batch being written */

    pthread_mutex_t mu; /* pending, filling, stop */
    pthread_cond_t cv;  /* filler: pending, flush or stop; flushers: a fill ended */
    recbuf pending;
    int filling, stop, fill_failing;
    /* records only the file holds (a failed fill met no memory to keep
     * them): the file must neither wrap nor be marked read; the next open
     * reads it again */
    int lost;
    unsigned fill_ms;
    pthread_t filler;
    int filler_started;
    _Atomic uint64_t fills;
};

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The value length (u16 BE) of the record at r. */
static size_t val_len(const unsigned char *r)
{
    return (size_t)r[6] << 8 | r[7];
}

/* Appends src's records to dst (src unchanged). */
static qtsp_status recbuf_cat(recbuf *dst, const recbuf *src)
{
    TRY(qtsp_buf_append(&dst->b, src->b.data, src->b.len));
    dst->n += src->n;
    return QTSP_OK;
}

/* The length of the whole record at p (at most n bytes available) of
 * generation gen (any when want_gen is 0), or 0 when there is none. */
static size_t record_at(const unsigned char *p, size_t n, int want_gen, uint64_t gen)
{
    if (n < HDR + TRAILER || memcmp(p, MAGIC, 4) != 0 || (p[4] & ~FLAG_REPLACE) != 0)
        return 0;
    size_t klen = p[5], vlen = val_len(p);
    if (klen == 0 || klen > KEY_MAX || vlen > VAL_MAX || HDR + klen + vlen + TRAILER > n)
        return 0;
    if (want_gen && qtsp_be64_get(p + 8) != gen)
        return 0;
    size_t body = HDR + klen + vlen;
    if (fnv1a(p, body) != qtsp_be64_get(p + body))
        return 0;
    return body + TRAILER;
}

/* ---- the store side ----------------------------------------------------------- */

typedef struct fill_args {
    const recbuf *b;
} fill_args;

/* Puts every record of a->b: absent serials only, "not issued" marks
 * over whatever is there (both idempotent, so a record put twice, or a
 * transaction run again after the map grew, changes nothing more). */
static qtsp_status fill_txn(qtsp_txn *txn, void *ctx)
{
    const recbuf *b = ((fill_args *)ctx)->b;
    for (size_t at = 0; at < b->b.len;) {
        const unsigned char *r = b->b.data + at;
        size_t klen = r[5], vlen = val_len(r);
        int replace = r[4] & FLAG_REPLACE;
        qtsp_status rc = qtsp_txn_put(txn, QTSP_T_TSA_JOURNAL, r + HDR, klen, r + HDR + klen, vlen,
                                      replace ? 0 : QTSP_PUT_NOOVERWRITE);
        if (rc == QTSP_ERR_EXISTS) {
            /* already put (a replay, or filled before a crash); anything
             * else is a serial drawn twice (64 random bits per ms), which
             * can no longer be refused once answered: said loudly */
            qtsp_err_clear();
            const void *v = NULL;
            size_t vl = 0;
            if (qtsp_txn_get0(txn, QTSP_T_TSA_JOURNAL, r + HDR, klen, &v, &vl) == QTSP_OK &&
                (vl != vlen || (vlen > 1 && memcmp((const unsigned char *)v + 1, r + HDR + klen + 1,
                                                   vlen - 1) != 0)))
                LOG_ERROR("tsa: two time-stamp tokens share one serial; the journal keeps the "
                          "first");
            qtsp_err_clear();
        } else if (rc != QTSP_OK) {
            return rc;
        }
        at += HDR + klen + vlen + TRAILER;
    }
    return QTSP_OK;
}

static qtsp_status fill(qtsp_store *store, const recbuf *b)
{
    if (b->b.len == 0)
        return QTSP_OK;
    fill_args a = {b};
    return qtsp_store_write(store, fill_txn, &a);
}

/* Takes pending and puts it into the store (one fill at a time); on
 * failure the records go back in front of pending. Called with mu held;
 * returns with it held. */
static qtsp_status drain_locked(qtsp_tsa_wal *w)
{
    while (w->filling)
        pthread_cond_wait(&w->cv, &w->mu);
    if (w->pending.b.len == 0)
        return QTSP_OK;
    recbuf b = w->pending;
    recbuf_init(&w->pending);
    w->filling = 1;
    pthread_mutex_unlock(&w->mu);
    qtsp_err_clear();
    qtsp_status rc = fill(w->store, &b);
    pthread_mutex_lock(&w->mu);
    w->filling = 0;
    atomic_fetch_add(&w->fills, 1);
    if (rc != QTSP_OK) {
        /* keep the order: what failed, then what came meanwhile */
        if (recbuf_cat(&b, &w->pending) == QTSP_OK) {
            qtsp_buf_cleanup(&w->pending.b);
            w->pending = b;
        } else {
            qtsp_buf_cleanup(&b.b);
            w->lost = 1;
            LOG_ERROR("tsa: out of memory: journal entries stay only in the write-ahead file "
                      "until this process restarts");
        }
    } else {
        qtsp_buf_cleanup(&b.b);
    }
    pthread_cond_broadcast(&w->cv);
    return rc;
}

static void *filler_main(void *arg)
{
    qtsp_tsa_wal *w = arg;
    pthread_setname_np(pthread_self(), "qtsp-tsa-fill");
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (w->pending.b.len == 0) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        /* let a fill's worth of entries gather */
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl); /* cv waits on CLOCK_MONOTONIC */
        uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)w->fill_ms * 1000000ull;
        dl.tv_sec += (time_t)(ns / 1000000000ull);
        dl.tv_nsec = (long)(ns % 1000000000ull);
        while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &dl) != ETIMEDOUT)
            ;
        if (w->stop)
            break;
        qtsp_status rc = drain_locked(w);
        if (rc != QTSP_OK && !w->fill_failing)
            LOG_ERROR("tsa: the journal cannot reach the store (entries kept in the write-ahead "
                      "file, tried again): %s",
                      qtsp_err_message());
        else if (rc == QTSP_OK && w->fill_failing)
            LOG_INFO("tsa: the journal reaches the store again");
        w->fill_failing = rc != QTSP_OK;
        qtsp_err_clear();
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- the file side ------------------------------------------------------------ */

static qtsp_status write_all(int fd, const unsigned char *p, size_t n, size_t off)
{
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        ENSURE(k > 0, QTSP_ERR_IO, "tsa: cannot write the journal file: %s",
               k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
        off += (size_t)k;
    }
    return QTSP_OK;
}

/* The DIO_BLOCK-aligned blocks from the one holding w->off to the one
 * holding the batch's last byte, with the batch (p, n) in place: the bytes
 * before it as the tail block was written, zeros after it (no record there
 * for a reader: its magic is zero). 0: no room. Under wmu. */
static int stage_blocks(qtsp_tsa_wal *w, const unsigned char *p, size_t n, size_t *start,
                        size_t *len)
{
    size_t s = w->off & ~(size_t)(DIO_BLOCK - 1);
    size_t e = (w->off + n + DIO_BLOCK - 1) & ~(size_t)(DIO_BLOCK - 1);
    if (e > w->cap)
        return 0;
    if (e - s > w->dcap) {
        void *nb = NULL;
        size_t want = (e - s) * 2;
        if (posix_memalign(&nb, DIO_BLOCK, want) != 0)
            return 0;
        free(w->dbuf);
        w->dbuf = nb;
        w->dcap = want;
    }
    size_t head = w->off - s;
    memcpy(w->dbuf, w->tail, head);
    memcpy(w->dbuf + head, p, n);
    memset(w->dbuf + head + n, 0, e - s - head - n);
    *start = s;
    *len = e - s;
    return 1;
}

/* Writes a batch's records at w->off and makes them durable: through the
 * O_DIRECT descriptor in whole blocks with RWF_DSYNC when there is one (one
 * system call, no page cache to fill and write back: about a quarter less
 * CPU per commit here, docs/bench.md), else pwrite and fdatasync. Under
 * wmu. */
static qtsp_status write_batch(qtsp_tsa_wal *w, const unsigned char *p, size_t n)
{
    size_t s, len;
    if (w->dfd >= 0 && stage_blocks(w, p, n, &s, &len)) {
        struct iovec v = {w->dbuf, len};
        ssize_t k;
        do
            k = pwritev2(w->dfd, &v, 1, (off_t)s, RWF_DSYNC);
        while (k < 0 && errno == EINTR);
        if (k == (ssize_t)len) {
            memcpy(w->tail, w->dbuf + len - DIO_BLOCK, DIO_BLOCK);
            return QTSP_OK;
        }
        if (k < 0 && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
            FAIL(QTSP_ERR_IO, "tsa: cannot write the journal file: %s", strerror(errno));
        /* a file system or device that takes no such write: pwrite from now on */
        LOG_WARN("tsa: the journal file takes no direct writes (%s): written through the page "
                 "cache from now on",
                 k < 0 ? strerror(errno) : "short write");
        close(w->dfd);
        w->dfd = -1;
    }
    TRY(write_all(w->fd, p, n, w->off));
    if (fdatasync(w->fd) != 0)
        FAIL(QTSP_ERR_IO, "tsa: cannot sync the journal file: %s", strerror(errno));
    return QTSP_OK;
}

/* A generation above every one the file can hold: the clock in µs, or
 * one more than the last. */
static uint64_t next_gen(uint64_t last)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t t = (uint64_t)tv.tv_sec * 1000000ull + (uint64_t)tv.tv_usec;
    return t > last ? t : last + 1;
}

/* Starts the file over at offset 0 with a new generation, once every
 * record before is in the store. Under wmu. */
static qtsp_status wrap(qtsp_tsa_wal *w)
{
    pthread_mutex_lock(&w->mu);
    qtsp_status rc = w->lost ? QTSP_ERR_NOMEM : drain_locked(w);
    pthread_mutex_unlock(&w->mu);
    ENSURE(rc == QTSP_OK, QTSP_ERR_UNAVAILABLE,
           "tsa: the journal file is full and the store takes no entries: %s", qtsp_err_message());
    w->gen = next_gen(w->gen);
    w->off = 0;
    w->broken = 0;
    memset(w->tail, 0, DIO_BLOCK);
    return QTSP_OK;
}

/* Best effort: the record at off loses its magic, which ends the file
 * there for a reader. */
static void unmark(qtsp_tsa_wal *w, size_t off)
{
    static const unsigned char none[4] = {0};
    if (write_all(w->fd, none, sizeof none, off) != QTSP_OK || fdatasync(w->fd) != 0)
        LOG_ERROR("tsa: cannot mark failed journal records in the write-ahead file: %s",
                  qtsp_err_message());
}

static qtsp_status wal_put(void *ctx, const qtsp_tsa_record *recs, size_t n, int replace)
{
    qtsp_tsa_wal *w = ctx;
    qtsp_status rc = QTSP_OK;
    pthread_mutex_lock(&w->wmu);
    qtsp_buf *o = &w->out.b;
    qtsp_buf_reset(o);
    w->out.n = 0;
    for (size_t i = 0; i < n; i++) { /* generation and checksum once the offset is known */
        ENSURE_OUT(recs[i].key_len > 0 && recs[i].key_len <= KEY_MAX && recs[i].val_len <= VAL_MAX,
                   QTSP_ERR_INVALID, "tsa: journal record too big");
        size_t len = HDR + recs[i].key_len + recs[i].val_len + TRAILER;
        TRY_OUT(qtsp_buf_reserve(o, len));
        unsigned char *r = o->data + o->len;
        memcpy(r, MAGIC, 4);
        r[4] = replace ? FLAG_REPLACE : 0;
        r[5] = (unsigned char)recs[i].key_len;
        r[6] = (unsigned char)(recs[i].val_len >> 8);
        r[7] = (unsigned char)recs[i].val_len;
        memcpy(r + HDR, recs[i].key, recs[i].key_len);
        memcpy(r + HDR + recs[i].key_len, recs[i].val, recs[i].val_len);
        o->len += len;
        w->out.n++;
    }
    ENSURE_OUT(o->len <= w->cap, QTSP_ERR_TOO_BIG, "tsa: journal batch bigger than its file");
    if (w->broken || w->off + o->len > w->cap)
        TRY_OUT(wrap(w));
    for (size_t at = 0; at < o->len;) {
        unsigned char *r = o->data + at;
        size_t body = HDR + r[5] + val_len(r);
        qtsp_be64_put(r + 8, w->gen);
        qtsp_be64_put(r + body, fnv1a(r, body));
        at += body + TRAILER;
    }
    rc = write_batch(w, o->data, o->len);
    if (rc != QTSP_OK) {
        /* what reached the file is unknown: its first record loses its
         * magic now (so a crash before the next batch does not read back
         * tokens nobody received), and the next batch starts a new
         * generation */
        unmark(w, w->off);
        w->broken = 1;
        goto out;
    }
    w->off += o->len;
    pthread_mutex_lock(&w->mu);
    rc = recbuf_cat(&w->pending, &w->out);
    if (rc == QTSP_OK && w->pending.n == w->out.n)
        pthread_cond_broadcast(&w->cv); /* the filler starts its wait */
    pthread_mutex_unlock(&w->mu);
    if (rc != QTSP_OK) { /* cannot queue it: into the store now, or the batch fails */
        qtsp_err_clear();
        rc = fill(w->store, &w->out);
        if (rc != QTSP_OK) {
            unmark(w, w->off - o->len);
            w->broken = 1;
        }
    }
out:
    pthread_mutex_unlock(&w->wmu);
    return rc;
}

/* Reads the file and puts the records of its current generation into the
 * store; *gen = that generation (0: none). */
static qtsp_status replay_fd(int fd, size_t cap, qtsp_store *store, size_t *count, uint64_t *gen)
{
    if (cap > WAL_READ_MAX) /* not a file this code made */
        cap = WAL_READ_MAX;
    recbuf b;
    recbuf_init(&b);
    qtsp_status rc = qtsp_buf_reserve(&b.b, cap);
    if (rc != QTSP_OK)
        return rc;
    unsigned char *p = b.b.data;
    size_t got = 0;
    while (got < cap) {
        ssize_t k = pread(fd, p + got, cap - got, (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    *gen = 0;
    if (got >= HDR && memcmp(p, "\0\0\0\0", 4) == 0)
        *gen = qtsp_be64_get(p + 8); /* marked read: its generation still counts */
    size_t at = 0, len;
    if ((len = record_at(p, got, 0, 0)) != 0) {
        *gen = qtsp_be64_get(p + 8);
        do {
            at += len;
            b.n++;
        } while ((len = record_at(p + at, got - at, 1, *gen)) != 0);
    }
    b.b.len = at;
    rc = fill(store, &b);
    qtsp_buf_cleanup(&b.b);
    if (rc == QTSP_OK && count)
        *count = b.n;
    return rc;
}

/* Opens and locks path; *size = its size. QTSP_ERR_STATE when another
 * process holds it, QTSP_ERR_NOT_FOUND when it does not exist (create 0).
 * The lock is taken on the file the path names once locked: a file
 * removed (by a replay) between open and lock is let go and opened again. */
static qtsp_status open_locked(const char *path, int create, int *fd, size_t *size)
{
    for (int attempt = 0;; attempt++) {
        int f = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
        ENSURE(f >= 0, errno == ENOENT ? QTSP_ERR_NOT_FOUND : QTSP_ERR_IO,
               "tsa: cannot open the journal file %s: %s", path, strerror(errno));
        if (flock(f, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(f);
            FAIL(e == EWOULDBLOCK ? QTSP_ERR_STATE : QTSP_ERR_IO,
                 "tsa: the journal file %s is in use by another process", path);
        }
        struct stat st, named;
        if (fstat(f, &st) != 0) {
            close(f);
            FAIL(QTSP_ERR_IO, "tsa: cannot read the journal file %s", path);
        }
        if (stat(path, &named) == 0 && named.st_ino == st.st_ino && named.st_dev == st.st_dev) {
            *fd = f;
            *size = (size_t)st.st_size;
            return QTSP_OK;
        }
        close(f);
        ENSURE(attempt < 8, QTSP_ERR_STATE, "tsa: the journal file %s keeps being replaced", path);
    }
}

int qtsp_tsa_wal_is_name(const char *name)
{
    if (strncmp(name, "tsa-wal-", 8) != 0 || !isdigit((unsigned char)name[8]))
        return 0;
    for (const char *p = name + 8; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            return 0;
    return 1;
}

qtsp_status qtsp_tsa_wal_replay_others(const char *dir, const char *keep, qtsp_store *store,
                                       size_t *n)
{
    DIR *d = opendir(dir);
    ENSURE(d != NULL, QTSP_ERR_IO, "tsa: cannot read %s: %s", dir, strerror(errno));
    qtsp_status rc = QTSP_OK;
    size_t total = 0;
    struct dirent *de;
    while (rc == QTSP_OK && (de = readdir(d))) {
        if (!qtsp_tsa_wal_is_name(de->d_name) || (keep && strcmp(de->d_name, keep) == 0))
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        int fd;
        size_t size, count = 0;
        uint64_t gen;
        rc = open_locked(path, 0, &fd, &size);
        if (rc == QTSP_ERR_STATE || rc == QTSP_ERR_NOT_FOUND) { /* in use, or gone meanwhile */
            qtsp_err_clear();
            rc = QTSP_OK;
            continue;
        }
        if (rc != QTSP_OK) { /* not one of ours (a folder, unreadable): left alone */
            LOG_ERROR("tsa: %s is not a journal file this process can read: %s", path,
                      qtsp_err_message());
            qtsp_err_clear();
            rc = QTSP_OK;
            continue;
        }
        rc = replay_fd(fd, size, store, &count, &gen);
        if (rc == QTSP_OK) {
            total += count;
            if (count)
                LOG_INFO("tsa: %zu journal entries read into the store from %s (left by a process "
                         "that did not close it)",
                         count, path);
            if (unlink(path) != 0)
                rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "tsa: cannot remove %s: %s",
                                  path, strerror(errno));
        }
        close(fd); /* after the unlink: whoever opened it meanwhile sees it gone */
    }
    closedir(d);
    if (rc == QTSP_OK && n)
        *n = total;
    return rc;
}

qtsp_status qtsp_tsa_wal_open_slot(const char *dir, unsigned slot, size_t bytes, unsigned fill_ms,
                                   qtsp_store *store, qtsp_tsa_wal **out)
{
    char name[64], path[4096];
    qtsp_status rc = QTSP_ERR_STATE;
    for (unsigned k = 0; k < 16 && rc == QTSP_ERR_STATE; k++) {
        if (k == 0)
            snprintf(name, sizeof name, "tsa-wal-%u", slot);
        else
            snprintf(name, sizeof name, "tsa-wal-%u.%u", slot, k);
        ENSURE(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path, QTSP_ERR_TOO_BIG,
               "tsa: path too long under %s", dir);
        qtsp_err_clear();
        rc = qtsp_tsa_wal_open(path, bytes, fill_ms, store, out);
    }
    TRY(rc);
    /* files no process holds: a crashed or replaced process's, or a
     * sibling's that has not started yet (it then opens a new one) */
    rc = qtsp_tsa_wal_replay_others(dir, name, store, NULL);
    if (rc != QTSP_OK) {
        qtsp_tsa_wal_close(*out);
        *out = NULL;
    }
    return rc;
}

qtsp_status qtsp_tsa_new_wal(const char *policy_path, X509 *tsa_cert, STACK_OF(X509) * chain,
                             const qtsp_key *key, qtsp_tsa_wal *w, qtsp_tsa **out)
{
    ENSURE(w != NULL, QTSP_ERR_INVALID, "tsa: no journal file");
    qtsp_tsa_policy pol;
    TRY(qtsp_tsa_policy_load(policy_path, &pol));
    qtsp_tsa_journal j = qtsp_tsa_wal_journal(w);
    return qtsp_tsa_new_journal(&pol, tsa_cert, chain, key, &j, out);
}

/* Writes zeros to the whole file, so later writes allocate nothing, and
 * syncs it and its folder (the name must survive a power loss too: a
 * worker answers from this file). */
static qtsp_status preallocate(const char *path, int fd, size_t bytes)
{
    ENSURE(ftruncate(fd, 0) == 0, QTSP_ERR_IO, "tsa: cannot size the journal file: %s",
           strerror(errno));
    unsigned char *z = calloc(1, 1u << 16);
    ENSURE(z != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    for (size_t off = 0; off < bytes && rc == QTSP_OK; off += 1u << 16)
        rc = write_all(fd, z, bytes - off < (1u << 16) ? bytes - off : 1u << 16, off);
    free(z);
    TRY(rc);
    ENSURE(fsync(fd) == 0, QTSP_ERR_IO, "tsa: cannot sync the journal file: %s", strerror(errno));
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s", path);
    ENSURE(n > 0 && (size_t)n < sizeof dir, QTSP_ERR_TOO_BIG, "tsa: path too long");
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ENSURE(dfd >= 0, QTSP_ERR_IO, "tsa: cannot open %s: %s", dir, strerror(errno));
    int ok = fsync(dfd) == 0;
    close(dfd);
    ENSURE(ok, QTSP_ERR_IO, "tsa: cannot sync %s", dir);
    return QTSP_OK;
}

qtsp_status qtsp_tsa_wal_open(const char *path, size_t bytes, unsigned fill_ms, qtsp_store *store,
                              qtsp_tsa_wal **out)
{
    ENSURE(path && store && out && bytes >= 4096 && fill_ms > 0, QTSP_ERR_INVALID,
           "tsa: journal file: bad arguments");
    int fd;
    size_t size;
    TRY(open_locked(path, 1, &fd, &size));
    qtsp_status rc = QTSP_OK;
    qtsp_tsa_wal *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    w->fd = fd;
    w->dfd = -1;
    w->cap = bytes;
    w->store = store;
    w->fill_ms = fill_ms;
    recbuf_init(&w->out);
    recbuf_init(&w->pending);
    pthread_mutex_init(&w->wmu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a clock step never delays a fill */
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    uint64_t gen = 0;
    size_t n = 0;
    if (size > 0) { /* what a previous process left: into the store first */
        TRY_OUT(replay_fd(fd, size, store, &n, &gen));
        if (n)
            LOG_INFO("tsa: %zu journal entries read into the store from %s (left by a process that "
                     "did not close it)",
                     n, path);
    }
    if (size != bytes)
        TRY_OUT(preallocate(path, fd, bytes));
    w->gen = next_gen(gen);
    /* the first batch goes to offset 0: its block starts empty */
    ENSURE_OUT(posix_memalign((void **)&w->tail, DIO_BLOCK, DIO_BLOCK) == 0, QTSP_ERR_NOMEM,
               "out of memory");
    memset(w->tail, 0, DIO_BLOCK);
    if (bytes % DIO_BLOCK == 0) { /* else the last block could not be written whole */
        w->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);
        struct stat a, b;
        if (w->dfd < 0)
            LOG_INFO("tsa: the journal file %s cannot be opened for direct writes (%s): "
                     "written through the page cache",
                     path, strerror(errno));
        else if (fstat(w->fd, &a) != 0 || fstat(w->dfd, &b) != 0 || a.st_ino != b.st_ino ||
                 a.st_dev != b.st_dev) { /* not the file this process locked */
            LOG_INFO("tsa: the journal file %s was replaced while it was opened: written "
                     "through the page cache",
                     path);
            close(w->dfd);
            w->dfd = -1;
        }
    }
    ENSURE_OUT(pthread_create(&w->filler, NULL, filler_main, w) == 0, QTSP_ERR_NOMEM,
               "cannot start the TSA journal filler");
    w->filler_started = 1;
    *out = w;
    return QTSP_OK;
out:
    qtsp_tsa_wal_close(w);
    return rc;
}

qtsp_tsa_journal qtsp_tsa_wal_journal(qtsp_tsa_wal *w)
{
    return (qtsp_tsa_journal){wal_put, w};
}

qtsp_status qtsp_tsa_wal_flush(qtsp_tsa_wal *w)
{
    pthread_mutex_lock(&w->mu);
    qtsp_status rc = drain_locked(w);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

size_t qtsp_tsa_wal_pending(qtsp_tsa_wal *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->pending.n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

qtsp_status qtsp_tsa_wal_metrics(qtsp_tsa_wal *w, qtsp_buf *out)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->pending.n;
    int failing = w->fill_failing;
    pthread_mutex_unlock(&w->mu);
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_unfilled gauge\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_unfilled %zu\n", n));
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_fill_failing gauge\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_fill_failing %d\n", failing));
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_direct_writes gauge\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_direct_writes %d\n", qtsp_tsa_wal_direct(w)));
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_fills_total counter\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_fills_total %llu\n",
                        (unsigned long long)atomic_load(&w->fills)));
    return QTSP_OK;
}

int qtsp_tsa_wal_direct(qtsp_tsa_wal *w)
{
    pthread_mutex_lock(&w->wmu);
    int d = w->dfd >= 0;
    pthread_mutex_unlock(&w->wmu);
    return d;
}

uint64_t qtsp_tsa_wal_fills(qtsp_tsa_wal *w)
{
    return atomic_load(&w->fills);
}

void qtsp_tsa_wal_close(qtsp_tsa_wal *w)
{
    if (!w)
        return;
    if (w->filler_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->filler, NULL);
    }
    if (qtsp_tsa_wal_flush(w) != QTSP_OK) {
        LOG_ERROR("tsa: journal entries stay in the write-ahead file until the next start: %s",
                  qtsp_err_message());
        qtsp_err_clear();
    } else if (w->filler_started && !w->lost) { /* opened in full: old records were read */
        /* everything is in the store: the next open has nothing to read
         * (a first record without its magic ends the file; if this fails
         * the next open reads it again, which changes nothing) */
        unmark(w, 0);
        qtsp_err_clear();
    }
    close(w->fd);
    if (w->dfd >= 0)
        close(w->dfd);
    free(w->dbuf);
    free(w->tail);
    qtsp_buf_cleanup(&w->out.b);
    qtsp_buf_cleanup(&w->pending.b);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->wmu);
    free(w);
}
