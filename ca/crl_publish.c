/* CRL publisher: numbering, files, reload, background thread and the current
 * CRLs; see ca/crl.h for what is published when. */
#include "ca/crl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"
#include "core/periodic.h"

const char *const crl_names[CRL__N] = {"qualified", "qualified-delta", "root"};

/* ---------------------------------------------------------------- files */

static qtsp_status write_atomic(const char *dir, const char *name, const unsigned char *p, size_t n)
{
    char path[CRL_PATH_MAX + 64], tmp[CRL_PATH_MAX + 96];
    int l1 = snprintf(path, sizeof path, "%s/%s.crl", dir, name);
    int l2 = snprintf(tmp, sizeof tmp, "%s/.%s.crl.%ld.tmp", dir, name, (long)getpid());
    ENSURE(l1 > 0 && (size_t)l1 < sizeof path && l2 > 0 && (size_t)l2 < sizeof tmp,
           QTSP_ERR_TOO_BIG, "CRL path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            FAIL(QTSP_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot flush %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return QTSP_OK;
}

typedef struct facts_write {
    unsigned char q[49], r[17];
} facts_write;

static qtsp_status write_facts_fn(qtsp_txn *txn, void *ctx)
{
    facts_write *fw = ctx;
    TRY(qtsp_txn_put(txn, QTSP_T_CRL, "qualified", 9, fw->q, sizeof fw->q, 0));
    TRY(qtsp_txn_put(txn, QTSP_T_CRL, "root", 4, fw->r, sizeof fw->r, 0));
    return QTSP_OK;
}

typedef struct numbers {
    int delta;
    uint64_t full, dlt, root;
} numbers;

static qtsp_status next_numbers_fn(qtsp_txn *txn, void *ctx)
{
    numbers *nb = ctx;
    /* RFC 5280 5.2.4: full and delta CRLs share one sequence */
    TRY(qtsp_txn_counter_next(txn, "crl_number", &nb->full));
    if (nb->delta)
        TRY(qtsp_txn_counter_next(txn, "crl_number", &nb->dlt));
    TRY(qtsp_txn_counter_next(txn, "crl_number_root", &nb->root));
    return QTSP_OK;
}

/* ---------------------------------------------------------------- publish */

static void swap_in(qtsp_crl_publisher *pub, int idx, crl_blob *bl)
{
    pthread_mutex_lock(&pub->lock);
    crl_blob *old = pub->cur[idx];
    pub->cur[idx] = bl;
    pthread_mutex_unlock(&pub->lock);
    crl_blob_unref(old);
}

static int memory_incomplete(qtsp_crl_publisher *pub)
{
    pthread_mutex_lock(&pub->lock);
    int missing =
        !pub->cur[CRL_QUALIFIED] || !pub->cur[CRL_ROOT] || (pub->pol.delta && !pub->cur[CRL_DELTA]);
    pthread_mutex_unlock(&pub->lock);
    return missing;
}

static uint64_t served_number(qtsp_crl_publisher *pub, int idx)
{
    pthread_mutex_lock(&pub->lock);
    uint64_t n = pub->cur[idx] ? pub->cur[idx]->number : 0;
    pthread_mutex_unlock(&pub->lock);
    return n;
}

/* Another process on the same store (qtsp crl publish beside qtsp serve)
 * published CRLs newer than the ones in memory: serve its files, checked
 * against the CA key and the store facts, instead of the older ones.
 * Only CRLs already in memory are replaced (an empty slot means a fresh
 * publication is due anyway). Caller holds publish_lock and the file lock,
 * so the files and the facts belong to the same publication. */
static qtsp_status reload_newer(qtsp_crl_publisher *pub, const crl_facts *f, uint64_t root_number)
{
    uint64_t want[CRL__N] = {f->last_number, pub->pol.delta ? f->last_number + 1 : 0, root_number};
    crl_blob *got[CRL__N] = {NULL, NULL, NULL};
    qtsp_status rc = QTSP_OK;
    int any = 0;
    for (int i = 0; i < CRL__N; i++) {
        uint64_t have = served_number(pub, i);
        if (!f->present || !want[i] || !have || want[i] <= have)
            continue;
        TRY_OUT(crl_read_file(pub->dir, crl_names[i], &pub->lock, &got[i]));
        TRY_OUT(crl_parse_published(&pub->ca[i == CRL_ROOT ? 1 : 0], got[i]));
        ENSURE_OUT(got[i]->number == want[i], QTSP_ERR_STATE,
                   "%s/%s.crl has cRLNumber %llu, the store says %llu", pub->dir, crl_names[i],
                   (unsigned long long)got[i]->number, (unsigned long long)want[i]);
        any = 1;
    }
    for (int i = 0; i < CRL__N; i++)
        if (got[i]) {
            swap_in(pub, i, got[i]);
            got[i] = NULL;
        }
    if (any)
        LOG_INFO("crl: serving qualified #%llu and root #%llu published by another process",
                 (unsigned long long)served_number(pub, CRL_QUALIFIED),
                 (unsigned long long)served_number(pub, CRL_ROOT));
out:
    for (int i = 0; i < CRL__N; i++)
        crl_blob_unref(got[i]);
    return rc;
}

typedef struct forget_ctx {
    const unsigned char *recs;
    size_t from, to, deleted;
    time_t before;
} forget_ctx;

static qtsp_status forget_fn(qtsp_txn *txn, void *ctx)
{
    forget_ctx *c = ctx;
    c->deleted = 0; /* qtsp_store_write may run us again */
    for (size_t i = c->from; i < c->to; i++) {
        const unsigned char *e = c->recs + i * PRUNE_REC;
        int d = 0;
        TRY(qtsp_certdb_revoked_forget(txn, e + 1, e[0], c->before, &d));
        c->deleted += (size_t)d;
    }
    return QTSP_OK;
}

/* After a rebase is published (files and facts): entries released before
 * the new base's thisUpdate are needed by no delta any more (deltas against
 * older bases are superseded), so they leave the revoked index, in batches
 * so no write transaction holds the writer lock for long. Failures are
 * logged only: the entries go at the next rebase. */
static void forget_released(qtsp_crl_publisher *pub, const unsigned char *recs, size_t n,
                            time_t base_time)
{
    size_t total = 0;
    for (size_t from = 0; from < n; from += CRL_PRUNE_BATCH) {
        forget_ctx c = {.recs = recs, .from = from, .before = base_time};
        c.to = n - from < CRL_PRUNE_BATCH ? n : from + CRL_PRUNE_BATCH;
        if (qtsp_store_write(pub->store, forget_fn, &c) != QTSP_OK) {
            LOG_WARN("crl: cannot drop released entries from the revoked index: %s",
                     qtsp_err_message());
            qtsp_err_clear();
            break;
        }
        total += c.deleted;
    }
    if (total)
        LOG_INFO("crl: dropped %zu released entries older than the new base", total);
}

static qtsp_status publish_locked(qtsp_crl_publisher *pub, int force)
{
    qtsp_status rc;
    qtsp_txn *txn = NULL;
    crl_build b;
    memset(&b, 0, sizeof b);
    crl_blob *made[CRL__N] = {NULL, NULL, NULL};
    root_serial roots[CRL_ROOT_LIST_MAX];
    size_t n_roots = 0;
    crl_facts f;
    uint64_t gen = 0;
    time_t now = qtsp_now();

    uint64_t root_number = 0;
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(crl_read_facts(txn, &f));
    TRY_OUT(crl_read_root_number(txn, &root_number));
    TRY_OUT(qtsp_txn_counter_get(txn, "status_gen", &gen));
    qtsp_txn_abort(txn);
    txn = NULL;
    if (reload_newer(pub, &f, root_number) != QTSP_OK) {
        /* keep serving what we have; a publication below or at the next
         * rebase replaces it */
        LOG_WARN("crl: cannot load the CRLs another process published: %s", qtsp_err_message());
        qtsp_err_clear();
    }

    int rebase = force || !f.present || now >= f.base_time + pub->pol.publish_interval ||
                 now < f.base_time /* clock went back */;
    int refresh = rebase || f.status_gen != gen || (f.next_lapse && now >= f.next_lapse) ||
                  memory_incomplete(pub);
    if (!refresh) {
        rc = QTSP_OK;
        goto out;
    }

    numbers nb = {.delta = pub->pol.delta};
    TRY_OUT(qtsp_store_write(pub->store, next_numbers_fn, &nb));

    /* one read transaction: the three CRLs show the same state */
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(qtsp_txn_counter_get(txn, "status_gen", &gen));
    TRY_OUT(crl_read_roots(txn, roots, &n_roots));
    b.kind = KIND_FULL;
    b.ca = &pub->ca[0];
    b.pol = &pub->pol;
    b.delta_url = pub->delta_url;
    b.roots = roots;
    b.n_roots = n_roots;
    b.number = nb.full;
    b.now = now;
    b.next_update = now + pub->pol.next_update;
    b.collect = rebase;
    TRY_OUT(crl_build_sign(txn, &b, &pub->lock, &made[CRL_QUALIFIED]));
    b.collect = 0;
    time_t next_lapse = b.next_lapse;
    uint64_t base_number = rebase ? nb.full : f.base_number;
    time_t base_time = rebase ? now : f.base_time;
    if (pub->pol.delta) {
        b.kind = KIND_DELTA;
        b.number = nb.dlt;
        b.base_number = base_number;
        b.base_time = base_time;
        TRY_OUT(crl_build_sign(txn, &b, &pub->lock, &made[CRL_DELTA]));
    }
    b.kind = KIND_ROOT;
    b.ca = &pub->ca[1];
    b.number = nb.root;
    TRY_OUT(crl_build_sign(txn, &b, &pub->lock, &made[CRL_ROOT]));
    qtsp_txn_abort(txn);
    txn = NULL;

    /* the delta's base goes out first, so a fetcher never sees a delta whose
     * base is not published yet */
    for (int i = 0; i < CRL__N; i++)
        if (made[i])
            TRY_OUT(write_atomic(pub->dir, crl_names[i], made[i]->der, made[i]->len));

    facts_write fw;
    fw.q[0] = CRL_REC_VERSION;
    qtsp_be64_put(fw.q + 1, base_number);
    qtsp_be64_put(fw.q + 9, (uint64_t)base_time);
    qtsp_be64_put(fw.q + 17, nb.full);
    qtsp_be64_put(fw.q + 25, (uint64_t)now);
    qtsp_be64_put(fw.q + 33, gen);
    qtsp_be64_put(fw.q + 41, (uint64_t)next_lapse);
    fw.r[0] = CRL_REC_VERSION;
    qtsp_be64_put(fw.r + 1, nb.root);
    qtsp_be64_put(fw.r + 9, (uint64_t)now);
    TRY_OUT(qtsp_store_write(pub->store, write_facts_fn, &fw));

    for (int i = 0; i < CRL__N; i++)
        if (made[i]) {
            swap_in(pub, i, made[i]);
            made[i] = NULL;
        }
    if (rebase && b.prune_n)
        forget_released(pub, b.prune, b.prune_n, base_time);
    LOG_INFO("crl: published qualified #%llu (%zu bytes), delta #%llu on base #%llu, root #%llu",
             (unsigned long long)nb.full, pub->cur[CRL_QUALIFIED]->len, (unsigned long long)nb.dlt,
             (unsigned long long)base_number, (unsigned long long)nb.root);
    rc = QTSP_OK;
out:
    qtsp_txn_abort(txn);
    for (int i = 0; i < CRL__N; i++)
        crl_blob_unref(made[i]);
    free(b.prune);
    return rc;
}

/* Only picks up what another process published (see reload_newer). */
static qtsp_status reload_locked(qtsp_crl_publisher *pub)
{
    crl_facts f;
    uint64_t root_number = 0;
    qtsp_txn *txn = NULL;
    qtsp_status rc;
    TRY_OUT(qtsp_store_begin(pub->store, 0, &txn));
    TRY_OUT(crl_read_facts(txn, &f));
    TRY_OUT(crl_read_root_number(txn, &root_number));
    qtsp_txn_abort(txn);
    txn = NULL;
    rc = reload_newer(pub, &f, root_number);
out:
    qtsp_txn_abort(txn);
    return rc;
}

/* force: 0 publish what is due, 1 everything with a new base, -1 only
 * reload what another process published. */
static qtsp_status publish_or_reload(qtsp_crl_publisher *pub, int force)
{
    pthread_mutex_lock(&pub->publish_lock);
    /* one publication at a time across processes too: numbers, files and
     * facts of two publishers must not interleave */
    int e = 0;
    while (flock(pub->lock_fd, LOCK_EX) != 0)
        if ((e = errno) != EINTR)
            break;
    qtsp_status rc;
    if (e && e != EINTR)
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot lock %s/.publish.lock: %s",
                          pub->dir, strerror(e));
    else {
        rc = force < 0 ? reload_locked(pub) : publish_locked(pub, force);
        (void)flock(pub->lock_fd, LOCK_UN);
    }
    pthread_mutex_unlock(&pub->publish_lock);
    return rc;
}

qtsp_status qtsp_crl_publish(qtsp_crl_publisher *pub, int force)
{
    ENSURE(pub, QTSP_ERR_INVALID, "no CRL publisher");
    return publish_or_reload(pub, force ? 1 : 0);
}

/* ---------------------------------------------------------------- lifecycle */

qtsp_status qtsp_crl_publisher_new(const char *policy_path, const char *public_dir,
                                   X509 *issuing_ca, const qtsp_key *issuing_key, X509 *root_ca,
                                   const qtsp_key *root_key, const char *base_url,
                                   qtsp_store *store, qtsp_crl_publisher **out)
{
    ENSURE(public_dir && issuing_ca && issuing_key && root_ca && root_key && base_url && store,
           QTSP_ERR_INVALID, "CRL publisher: missing argument");
    qtsp_status rc;
    qtsp_crl_publisher *pub = calloc(1, sizeof *pub);
    ENSURE(pub, QTSP_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&pub->publish_lock, NULL);
    pthread_mutex_init(&pub->lock, NULL);
    pub->store = store;
    pub->lock_fd = -1;

    qtsp_crl_policy_defaults(&pub->pol);
    if (policy_path)
        TRY_OUT(qtsp_crl_policy_load(policy_path, &pub->pol));
    size_t bl = strlen(base_url);
    while (bl > 0 && base_url[bl - 1] == '/')
        bl--;
    int n = snprintf(pub->delta_url, sizeof pub->delta_url, "%.*s/crl/qualified-delta.crl", (int)bl,
                     base_url);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof pub->delta_url, QTSP_ERR_TOO_BIG, "base URL too long");
    n = snprintf(pub->dir, sizeof pub->dir, "%s/crl", public_dir);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof pub->dir, QTSP_ERR_TOO_BIG, "public dir too long");
    if (mkdir(pub->dir, 0755) != 0 && errno != EEXIST)
        FAIL_OUT(QTSP_ERR_IO, "cannot create %s: %s", pub->dir, strerror(errno));
    char lp[CRL_PATH_MAX + 32];
    n = snprintf(lp, sizeof lp, "%s/.publish.lock", pub->dir);
    ENSURE_OUT(n > 0 && (size_t)n < sizeof lp, QTSP_ERR_TOO_BIG, "public dir too long");
    pub->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ENSURE_OUT(pub->lock_fd >= 0, QTSP_ERR_IO, "cannot open %s: %s", lp, strerror(errno));
    TRY_OUT(crl_ca_init(&pub->ca[0], issuing_ca, issuing_key));
    TRY_OUT(crl_ca_init(&pub->ca[1], root_ca, root_key));
    *out = pub;
    pub = NULL;
    rc = QTSP_OK;
out:
    qtsp_crl_publisher_free(pub);
    return rc;
}

static int64_t mono_ms(void)
{
    return (int64_t)(qtsp_mono_ns() / 1000000u);
}

/* Every second: notes a change of revocation status and publishes once a
 * burst of changes has settled (or when the schedule says so). */
static int64_t publisher_round(qtsp_periodic *p, void *arg)
{
    qtsp_crl_publisher *pub = arg;
    qtsp_err_clear();
    uint64_t gen = 0, published = 0;
    int newer = 0;
    qtsp_txn *txn = NULL;
    crl_facts f;
    if (qtsp_store_begin(pub->store, 0, &txn) == QTSP_OK &&
        qtsp_txn_counter_get(txn, "status_gen", &gen) == QTSP_OK &&
        crl_read_facts(txn, &f) == QTSP_OK) {
        /* another process (qtsp crl publish) published newer CRLs */
        published = served_number(pub, CRL_QUALIFIED);
        newer = f.present && published && f.last_number > published;
        int64_t t = mono_ms();
        if (pub->have_seen && gen != pub->seen) {
            if (!pub->pending)
                pub->first_ms = t;
            pub->pending = 1;
            pub->last_ms = t;
        }
        pub->seen = gen;
        pub->have_seen = 1;
    }
    qtsp_txn_abort(txn);

    /* debounce: a burst of changes goes out as one publication, but
     * never later than 4 x debounce after its first change */
    int64_t t = mono_ms(), d = pub->pol.debounce * 1000;
    int settle = pub->pending && (t - pub->last_ms >= d || t - pub->first_ms >= 4 * d);
    if (pub->pending && !settle) {
        if (newer && publish_or_reload(pub, -1) != QTSP_OK)
            LOG_ERROR("crl: reload failed: %s", qtsp_err_message());
        return QTSP_PERIODIC_INTERVAL;
    }
    pub->pending = 0;
    if (qtsp_crl_publish(pub, 0) != QTSP_OK)
        LOG_ERROR("crl: publication failed: %s", qtsp_err_message());
    return QTSP_PERIODIC_INTERVAL;
}

qtsp_status qtsp_crl_start(qtsp_crl_publisher *pub)
{
    ENSURE(pub, QTSP_ERR_INVALID, "no CRL publisher");
    ENSURE(!pub->thread, QTSP_ERR_STATE, "CRL publisher already running");
    pub->have_seen = pub->pending = 0;
    return qtsp_periodic_start("CRL", 1000, 1000, publisher_round, pub, &pub->thread);
}

void qtsp_crl_publisher_free(qtsp_crl_publisher *pub)
{
    if (!pub)
        return;
    qtsp_periodic_stop(pub->thread);
    pub->thread = NULL;
    for (int i = 0; i < CRL__N; i++)
        crl_blob_unref(pub->cur[i]);
    crl_ca_cleanup(&pub->ca[0]);
    crl_ca_cleanup(&pub->ca[1]);
    if (pub->lock_fd >= 0)
        close(pub->lock_fd);
    pthread_mutex_destroy(&pub->publish_lock);
    /* blobs still referenced by responses in flight use pub->lock: the HTTP
     * server must be stopped before the publisher is freed (crl.h) */
    pthread_mutex_destroy(&pub->lock);
    free(pub);
}

/* ---------------------------------------------------------------- serving */

int crl_name_index(const char *name, size_t n)
{
    for (int i = 0; i < CRL__N; i++)
        if (strlen(crl_names[i]) == n && memcmp(crl_names[i], name, n) == 0)
            return i;
    return -1;
}

crl_blob *crl_get_ref(qtsp_crl_publisher *pub, int idx)
{
    pthread_mutex_lock(&pub->lock);
    crl_blob *bl = pub->cur[idx];
    if (bl)
        bl->refs++;
    pthread_mutex_unlock(&pub->lock);
    return bl;
}

qtsp_status qtsp_crl_current(qtsp_crl_publisher *pub, const char *name, uint64_t *number,
                             time_t *this_update)
{
    int idx = crl_name_index(name, strlen(name));
    ENSURE(idx >= 0, QTSP_ERR_NOT_FOUND, "no CRL named %s", name);
    crl_blob *bl = crl_get_ref(pub, idx);
    ENSURE(bl, QTSP_ERR_NOT_FOUND, "CRL %s not published yet", name);
    if (number)
        *number = bl->number;
    if (this_update)
        *this_update = bl->this_update;
    crl_blob_unref(bl);
    return QTSP_OK;
}
