/* The key pool: subject key pairs pre-generated in the token so that
 * issuance does not wait for C_GenerateKeyPair (SoftHSM2 makes ~40-100
 * P-256 keys/s; a certificate otherwise costs ~1 ms of store commit).
 *
 * Why it is safe: a pool key is generated exactly like an inline one
 * (in the token, sensitive, never extractable) and never leaves it; an
 * unassigned key is used for nothing; its generation is in the audit log
 * (label + SPKI SHA-256) before any certificate can name it; each key is
 * handed to one issuer only, because the reservation is a store write
 * transaction (LMDB serialises them, also across processes).
 *
 * Tables (records start with a version byte):
 *   keypool: label -> 1 | key type | SPKI SHA-256 (32) | created (u64 BE)
 *   key_use: label -> 1 | 'r' | reserved at (u64 BE)            reserved
 *                     1 | 'c' | certified at (u64 BE) | serial   bound */
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/yaml.h"
#include "ra/ra_int.h"

#define POOL_FILE "keypool.yaml"
#define POOL_REC_VERSION 1
#define POOL_REC_LEN (1 + 1 + 32 + 8)
#define USE_HDR_LEN (1 + 1 + 8)
#define POOL_MAX 100000
#define POOL_BATCH_MAX 256
#define POOL_ACTOR "system:keypool"
#define ORPHAN_GRACE_S 600

qtsp_status ra_keypool_init(qtsp_ra *ra, const char *policies_dir)
{
    pthread_mutex_init(&ra->kp.mu, NULL);
    ra->kp_ready = 1;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", policies_dir, POOL_FILE);
    if (access(path, F_OK) != 0)
        return QTSP_OK; /* homes made before the pool existed: no pool */
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {"version", "size", "low_water", "batch", NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    int64_t size = 0, batch = 16;
    TRY_OUT(qtsp_yget_int(root, "size", 1, 0, POOL_MAX, &size));
    int64_t low = size - size / 4;
    TRY_OUT(qtsp_yget_int(root, "low_water", 0, 0, POOL_MAX, &low));
    if (low > size) /* e.g. size set to 0 to disable the pool: low_water follows */
        low = size;
    TRY_OUT(qtsp_yget_int(root, "batch", 0, 1, POOL_BATCH_MAX, &batch));
    ra->kp.size = size;
    ra->kp.low_water = low;
    ra->kp.batch = batch;
out:
    qtsp_ydoc_free(doc);
    return rc;
}

void ra_keypool_cleanup(qtsp_ra *ra)
{
    qtsp_ra_keypool_stop(ra);
    pthread_mutex_destroy(&ra->kp.mu);
}

static qtsp_status spki_sha256(EVP_PKEY *pub, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der);
    ENSURE(n > 0, QTSP_ERR_CRYPTO, "cannot encode a public key");
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return QTSP_OK;
}

static void hex32(const unsigned char in[32], char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static qtsp_status put_marker(qtsp_txn *txn, const char *label, unsigned char state,
                              const unsigned char *serial, size_t slen)
{
    unsigned char v[USE_HDR_LEN + 20];
    ENSURE(slen <= 20, QTSP_ERR_INVALID, "serial too long");
    v[0] = POOL_REC_VERSION;
    v[1] = state;
    qtsp_be64_put(v + 2, (uint64_t)qtsp_now());
    if (slen)
        memcpy(v + USE_HDR_LEN, serial, slen);
    return qtsp_txn_put(txn, QTSP_T_KEY_USE, label, strlen(label), v, USE_HDR_LEN + slen, 0);
}

qtsp_status ra_key_use_certified(qtsp_txn *txn, const char *label, const unsigned char *serial,
                                 size_t slen)
{
    return put_marker(txn, label, 'c', serial, slen);
}

/* ---- taking a key ---- */

typedef struct take_ctx {
    qtsp_keytype kt;
    int found;
    char label[64];
    unsigned char spki_hash[32];
    uint64_t left;
} take_ctx;

static qtsp_status take_pick(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                             int *stop)
{
    take_ctx *c = vctx;
    const unsigned char *v = val;
    if (klen >= sizeof c->label || vlen != POOL_REC_LEN || v[0] != POOL_REC_VERSION ||
        v[1] != (unsigned char)c->kt)
        return QTSP_OK; /* another key type (the cleanup removes those) */
    memcpy(c->label, key, klen);
    c->label[klen] = '\0';
    memcpy(c->spki_hash, v + 2, 32);
    c->found = 1;
    *stop = 1;
    return QTSP_OK;
}

static qtsp_status take_txn(qtsp_txn *txn, void *vctx)
{
    take_ctx *c = vctx;
    c->found = 0;
    TRY(qtsp_txn_iter(txn, QTSP_T_KEYPOOL, NULL, 0, take_pick, c));
    if (!c->found)
        return QTSP_OK;
    TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, c->label, strlen(c->label)));
    TRY(put_marker(txn, c->label, 'r', NULL, 0));
    return qtsp_txn_count(txn, QTSP_T_KEYPOOL, &c->left);
}

static void wake_filler(qtsp_ra *ra)
{
    pthread_mutex_lock(&ra->kp.mu);
    qtsp_periodic_kick(ra->kp.filler);
    pthread_mutex_unlock(&ra->kp.mu);
}

qtsp_status ra_keypool_take(qtsp_ra *ra, char label[64], EVP_PKEY **pub)
{
    if (ra->kp.size == 0)
        return QTSP_ERR_NOT_FOUND;
    take_ctx c;
    memset(&c, 0, sizeof c);
    c.kt = ra->keytype;
    TRY(qtsp_store_write(ra->d.store, take_txn, &c));
    if (!c.found) {
        wake_filler(ra);
        return QTSP_ERR_NOT_FOUND;
    }
    if (c.left < (uint64_t)ra->kp.low_water)
        wake_filler(ra);
    /* the certificate binds the token's key, checked against what the
     * filler recorded when it made it */
    EVP_PKEY *k = NULL;
    unsigned char h[32];
    qtsp_status rc = QTSP_OK;
    TRY_OUT(qtsp_hsm_public_key(ra->d.hsm, c.label, &k));
    TRY_OUT(spki_sha256(k, h));
    ENSURE_OUT(memcmp(h, c.spki_hash, 32) == 0, QTSP_ERR_HSM,
               "pool key %s in the token is not the key recorded at generation", c.label);
    atomic_fetch_add(&ra->kp.taken, 1);
    snprintf(label, 64, "%s", c.label);
    *pub = k;
    return QTSP_OK;
out:
    EVP_PKEY_free(k);
    ra_keypool_discard(ra, POOL_ACTOR, c.label, "pool key unusable");
    return rc;
}

typedef struct discard_ctx {
    const char *actor;
    const char *label;
    const json_t *details;
} discard_ctx;

static qtsp_status discard_txn(qtsp_txn *txn, void *vctx)
{
    discard_ctx *c = vctx;
    qtsp_status rc = qtsp_txn_del(txn, QTSP_T_KEY_USE, c->label, strlen(c->label));
    if (rc == QTSP_ERR_NOT_FOUND)
        rc = QTSP_OK;
    TRY(rc);
    return qtsp_audit_append(txn, c->actor, "key.destroy", c->details, NULL);
}

void ra_keypool_discard(qtsp_ra *ra, const char *actor, const char *label, const char *why)
{
    json_t *d = json_pack("{s:s,s:s}", "label", label, "reason", why);
    discard_ctx c = {actor, label, d};
    /* keep the first error (the caller's) intact: this is cleanup */
    if (!d || qtsp_store_write(ra->d.store, discard_txn, &c) != QTSP_OK)
        LOG_ERROR("could not record the destruction of pool key %s", label);
    json_decref(d);
    if (qtsp_hsm_destroy(ra->d.hsm, label) != QTSP_OK)
        LOG_ERROR("could not destroy pool key %s after a failed issuance", label);
}

/* ---- filling ---- */

typedef struct gen_key {
    char label[64];
    unsigned char spki_hash[32];
} gen_key;

typedef struct fill_ctx {
    const gen_key *keys;
    size_t n;
    qtsp_keytype kt;
} fill_ctx;

static qtsp_status fill_txn(qtsp_txn *txn, void *vctx)
{
    fill_ctx *c = vctx;
    for (size_t i = 0; i < c->n; i++) {
        unsigned char v[POOL_REC_LEN];
        v[0] = POOL_REC_VERSION;
        v[1] = (unsigned char)c->kt;
        memcpy(v + 2, c->keys[i].spki_hash, 32);
        qtsp_be64_put(v + 34, (uint64_t)qtsp_now());
        TRY(qtsp_txn_put(txn, QTSP_T_KEYPOOL, c->keys[i].label, strlen(c->keys[i].label), v,
                         sizeof v, QTSP_PUT_NOOVERWRITE));
        char hex[65];
        hex32(c->keys[i].spki_hash, hex);
        json_t *d = json_pack("{s:s,s:s,s:s,s:s}", "key_type", qtsp_keytype_name(c->kt), "label",
                              c->keys[i].label, "purpose", "key pool", "spki_sha256", hex);
        ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
        qtsp_status rc = qtsp_audit_append(txn, POOL_ACTOR, "key.generate", d, NULL);
        json_decref(d);
        TRY(rc);
    }
    return QTSP_OK;
}

static qtsp_status gen_one(qtsp_ra *ra, gen_key *k)
{
    unsigned char r[16];
    TRY(qtsp_random(r, sizeof r));
    memcpy(k->label, RA_POOL_PREFIX, sizeof RA_POOL_PREFIX);
    size_t off = sizeof RA_POOL_PREFIX - 1;
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(k->label + off + 2 * i, 3, "%02x", r[i]);
    EVP_PKEY *pub = NULL;
    TRY(qtsp_hsm_generate(ra->d.hsm, k->label, ra->keytype, &pub));
    qtsp_status rc = spki_sha256(pub, k->spki_hash);
    EVP_PKEY_free(pub);
    if (rc != QTSP_OK && qtsp_hsm_destroy(ra->d.hsm, k->label) != QTSP_OK)
        LOG_ERROR("could not destroy key %s", k->label);
    return rc;
}

/* Commits keys[0..n) to the pool; destroys them when that fails. */
static qtsp_status commit_batch(qtsp_ra *ra, const gen_key *keys, size_t n)
{
    if (n == 0)
        return QTSP_OK;
    fill_ctx c = {keys, n, ra->keytype};
    qtsp_status rc = qtsp_store_write(ra->d.store, fill_txn, &c);
    if (rc != QTSP_OK) {
        for (size_t i = 0; i < n; i++)
            if (qtsp_hsm_destroy(ra->d.hsm, keys[i].label) != QTSP_OK)
                LOG_ERROR("could not destroy uncommitted pool key %s", keys[i].label);
        return rc;
    }
    atomic_fetch_add(&ra->kp.generated, n);
    return QTSP_OK;
}

qtsp_status qtsp_ra_keypool_available(qtsp_ra *ra, uint64_t *out)
{
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_status rc = qtsp_txn_count(txn, QTSP_T_KEYPOOL, out);
    qtsp_txn_abort(txn);
    return rc;
}

qtsp_status qtsp_ra_keypool_fill(qtsp_ra *ra, size_t *made)
{
    size_t total = 0;
    qtsp_status rc = QTSP_OK;
    gen_key *keys = NULL;
    if (ra->kp.size > 0) {
        keys = calloc((size_t)ra->kp.batch, sizeof *keys);
        ENSURE(keys != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
    while (ra->kp.size > 0 && !atomic_load(&ra->kp.stopping)) {
        uint64_t avail = 0;
        TRY_OUT(qtsp_ra_keypool_available(ra, &avail));
        if (avail >= (uint64_t)ra->kp.size)
            break;
        uint64_t want = (uint64_t)ra->kp.size - avail;
        size_t n = want < (uint64_t)ra->kp.batch ? (size_t)want : (size_t)ra->kp.batch, got = 0;
        qtsp_status grc = QTSP_OK;
        while (got < n && !atomic_load(&ra->kp.stopping) &&
               (grc = gen_one(ra, &keys[got])) == QTSP_OK)
            got++;
        /* the keys made so far are committed even if generation failed or
         * stop was requested, so none is left unrecorded */
        TRY_OUT(commit_batch(ra, keys, got));
        total += got;
        TRY_OUT(grc);
    }
out:
    free(keys);
    if (made)
        *made = total;
    return rc;
}

/* ---- orphans ---- */

typedef struct label_list {
    char **v;
    size_t n, cap;
} label_list;

static qtsp_status collect_label(void *vctx, const char *label)
{
    label_list *l = vctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        ENSURE(v != NULL, QTSP_ERR_NOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    ENSURE((l->v[l->n] = strdup(label)) != NULL, QTSP_ERR_NOMEM, "out of memory");
    l->n++;
    return QTSP_OK;
}

static void label_list_free(label_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

typedef struct orphan_ctx {
    const label_list *labels;
    unsigned char *doomed; /* per label: 0 keep, 1 destroy */
    qtsp_keytype kt;
    int64_t grace_s;
    size_t n;
} orphan_ctx;

/* What to do with one token key: 0 keep, else the reason it goes. */
static qtsp_status classify(qtsp_txn *txn, const orphan_ctx *c, const char *label, time_t now,
                            const char **why)
{
    const void *v = NULL;
    size_t vl = 0;
    size_t ll = strlen(label);
    *why = NULL;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_KEYPOOL, label, ll, &v, &vl);
    if (rc == QTSP_OK) {
        const unsigned char *p = v;
        if (vl == POOL_REC_LEN && p[0] == POOL_REC_VERSION && p[1] != (unsigned char)c->kt) {
            TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, label, ll));
            *why = "pool key of another key type than the profile's";
        }
        return QTSP_OK;
    }
    if (rc != QTSP_ERR_NOT_FOUND)
        return rc;
    rc = qtsp_txn_get0(txn, QTSP_T_KEY_USE, label, ll, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) {
        *why = "unassigned key not in the pool";
        return QTSP_OK;
    }
    TRY(rc);
    const unsigned char *p = v;
    ENSURE(vl >= USE_HDR_LEN && p[0] == POOL_REC_VERSION && (p[1] == 'r' || p[1] == 'c'),
           QTSP_ERR_STORE_CORRUPT, "key_use record of %s is malformed", label);
    if (p[1] == 'c')
        return QTSP_OK;
    int64_t at = (int64_t)qtsp_be64_get(p + 2);
    if ((int64_t)now - at < c->grace_s)
        return QTSP_OK; /* an issuance may still be under way */
    TRY(qtsp_txn_del(txn, QTSP_T_KEY_USE, label, ll));
    *why = "reserved but no certificate stored";
    return QTSP_OK;
}

/* Classifies and audits inside one write transaction, so no issuer can
 * take or bind a key between the decision and its record. */
static qtsp_status orphan_txn(qtsp_txn *txn, void *vctx)
{
    orphan_ctx *c = vctx;
    time_t now = qtsp_now();
    c->n = 0;
    for (size_t i = 0; i < c->labels->n; i++) {
        const char *label = c->labels->v[i], *why = NULL;
        c->doomed[i] = 0;
        TRY(classify(txn, c, label, now, &why));
        if (!why)
            continue;
        /* the label comes from the token: any bytes; the record escapes them */
        json_t *d = json_object();
        ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
        qtsp_status rc = qtsp_json_set_string(d, "label", label);
        if (rc == QTSP_OK)
            rc = qtsp_json_set_string(d, "reason", why);
        if (rc == QTSP_OK)
            rc = qtsp_audit_append(txn, POOL_ACTOR, "key.destroy", d, NULL);
        json_decref(d);
        TRY(rc);
        c->doomed[i] = 1;
        c->n++;
    }
    return QTSP_OK;
}

qtsp_status qtsp_ra_keypool_cleanup(qtsp_ra *ra, int64_t grace_s, size_t *n)
{
    label_list l = {NULL, 0, 0};
    qtsp_status rc = QTSP_OK;
    orphan_ctx c = {&l, NULL, ra->keytype, grace_s, 0};
    TRY_OUT(qtsp_hsm_list_labels(ra->d.hsm, RA_POOL_PREFIX, collect_label, &l));
    size_t destroyed = 0;
    if (l.n > 0) {
        c.doomed = calloc(l.n, 1);
        ENSURE_OUT(c.doomed != NULL, QTSP_ERR_NOMEM, "out of memory");
        TRY_OUT(qtsp_store_write(ra->d.store, orphan_txn, &c));
        /* recorded first: a key that survives a failed destroy is found
         * again as an orphan on the next start */
        for (size_t i = 0; i < l.n; i++) {
            if (!c.doomed[i])
                continue;
            qtsp_status drc = qtsp_hsm_destroy(ra->d.hsm, l.v[i]);
            if (drc == QTSP_OK || drc == QTSP_ERR_HSM_NO_KEY) {
                qtsp_err_clear();
                destroyed++;
                LOG_WARN("destroyed orphan pool key %s", l.v[i]);
            } else {
                LOG_ERROR("could not destroy orphan pool key %s: %s", l.v[i], qtsp_err_message());
            }
        }
    }
    atomic_fetch_add(&ra->kp.orphans, destroyed);
    if (n)
        *n = destroyed;
out:
    free(c.doomed);
    label_list_free(&l);
    return rc;
}

/* ---- the filler thread ---- */

/* One round of the filler: refills below the low-water mark (and once at
 * start); every second, 5 s after a failure, at once when a take kicks it. */
static int64_t fill_once(qtsp_periodic *p, void *arg)
{
    qtsp_ra *ra = arg;
    qtsp_err_clear();
    uint64_t avail = 0;
    int failed = 0;
    if (qtsp_ra_keypool_available(ra, &avail) != QTSP_OK) {
        failed = 1;
    } else if (!ra->kp.first_done || avail < (uint64_t)ra->kp.low_water) {
        size_t made = 0;
        failed = qtsp_ra_keypool_fill(ra, &made) != QTSP_OK;
        if (made)
            LOG_INFO("key pool: %zu key(s) generated", made);
        ra->kp.first_done = !failed;
    }
    if (failed)
        LOG_ERROR("key pool: %s", qtsp_err_message());
    return failed ? 5000 : QTSP_PERIODIC_INTERVAL;
}

/* The filler: in its first round, orphans left by a crash are destroyed
 * before any fill. */
static int64_t filler_round(qtsp_periodic *p, void *arg)
{
    qtsp_ra *ra = arg;
    if (!ra->kp.cleaned) {
        ra->kp.cleaned = 1;
        qtsp_err_clear();
        size_t n = 0;
        if (qtsp_ra_keypool_cleanup(ra, ORPHAN_GRACE_S, &n) != QTSP_OK)
            LOG_ERROR("key pool: orphan cleanup failed: %s", qtsp_err_message());
        else if (n)
            LOG_WARN("key pool: destroyed %zu orphan key(s)", n);
    }
    return fill_once(p, arg);
}

qtsp_status qtsp_ra_keypool_start(qtsp_ra *ra)
{
    if (ra->kp.size == 0 || ra->kp.filler)
        return QTSP_OK;
    atomic_store(&ra->kp.stopping, 0);
    ra->kp.cleaned = ra->kp.first_done = 0;
    qtsp_periodic *p = NULL;
    pthread_mutex_lock(&ra->kp.mu);
    qtsp_status rc = qtsp_periodic_start("key pool filler", 1000, 0, filler_round, ra, &p);
    ra->kp.filler = p;
    pthread_mutex_unlock(&ra->kp.mu);
    return rc;
}

void qtsp_ra_keypool_stop(qtsp_ra *ra)
{
    if (!ra || !ra->kp.filler)
        return;
    atomic_store(&ra->kp.stopping, 1);
    pthread_mutex_lock(&ra->kp.mu);
    qtsp_periodic *p = ra->kp.filler;
    ra->kp.filler = NULL;
    pthread_mutex_unlock(&ra->kp.mu);
    qtsp_periodic_stop(p);
    atomic_store(&ra->kp.stopping, 0); /* direct fills work again */
}

qtsp_status qtsp_ra_metrics(qtsp_ra *ra, qtsp_buf *out)
{
    uint64_t avail = 0;
    TRY(qtsp_ra_keypool_available(ra, &avail));
    return qtsp_buf_printf(
        out,
        "# HELP qtsp_keypool_available Pre-generated subject keys ready in the token.\n"
        "# TYPE qtsp_keypool_available gauge\nqtsp_keypool_available %llu\n"
        "# HELP qtsp_keypool_size Configured key pool size (0 = disabled).\n"
        "# TYPE qtsp_keypool_size gauge\nqtsp_keypool_size %lld\n"
        "# HELP qtsp_keypool_generated_total Keys generated into the pool.\n"
        "# TYPE qtsp_keypool_generated_total counter\nqtsp_keypool_generated_total %llu\n"
        "# HELP qtsp_keypool_taken_total Issuances served from the pool.\n"
        "# TYPE qtsp_keypool_taken_total counter\nqtsp_keypool_taken_total %llu\n"
        "# HELP qtsp_keypool_inline_total Issuances that generated their key inline.\n"
        "# TYPE qtsp_keypool_inline_total counter\nqtsp_keypool_inline_total %llu\n"
        "# HELP qtsp_keypool_orphans_destroyed_total Orphan pool keys destroyed.\n"
        "# TYPE qtsp_keypool_orphans_destroyed_total counter\n"
        "qtsp_keypool_orphans_destroyed_total %llu\n",
        (unsigned long long)avail, (long long)ra->kp.size,
        (unsigned long long)atomic_load(&ra->kp.generated),
        (unsigned long long)atomic_load(&ra->kp.taken),
        (unsigned long long)atomic_load(&ra->kp.inline_made),
        (unsigned long long)atomic_load(&ra->kp.orphans));
}
