/* The key pool: subscriber keys generated ahead of issuance so that an
 * issuance does not wait for C_GenerateKeyPair (SoftHSM2 makes ~40-100
 * P-256 keys/s).
 *
 * Pool keys are wrapped (ca/hsm.h, docs/hsm.md): generated as session
 * objects, wrapped at once under the token's key-storage key and kept in
 * the store only; the token gains no object per key. Why it is safe: a pool
 * key is generated exactly like an inline one and leaves the token only
 * encrypted under a key that never leaves it; an unassigned key signs
 * nothing; its generation is in the audit log (one "keypool.refill" record
 * per batch: labels and SPKI SHA-256) before any certificate can name it;
 * each entry carries a sequence number authenticated by the token's binding
 * key, and taking it advances the token's pool mark past it, so that a key
 * is handed out once even to two stores that share the token (a copied
 * home, a restored backup: "Bound for ever" in docs/hsm.md). The take is a
 * store write transaction (LMDB serialises them, also across processes).
 *
 * Tables (records start with a version byte):
 *   keypool: "kw-" + seq (16 hex) -> 2 | key type | seq (u64 BE) |
 *            created (u64 BE) | MAC (32) | SPKI len (u16 BE) | SPKI DER |
 *            blob len (u16 BE) | wrapped private key
 *            legacy (homes before wrapping): "kp-" + 32 hex -> 1 | key type |
 *            SPKI SHA-256 (32) | created (u64 BE), a token key; destroyed by
 *            the orphan cleanup at the first start (the pool refills wrapped)
 *   key_use: legacy token keys only: label -> 1 | 'r' | reserved at (u64 BE)
 *                                               1 | 'c' | certified at | serial
 *   counters "keypool_seq": the next sequence number to give out */
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/audit.h"
#include "ca/subkey.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/json.h"
#include "core/log.h"
#include "core/yaml.h"
#include "ra/ra_int.h"

#define POOL_FILE "keypool.yaml"
#define POOL_REC_VERSION 1 /* legacy token pool keys, and key_use markers */
#define POOL_REC_LEN (1 + 1 + 32 + 8)
#define WPOOL_REC_VERSION 2
#define WPOOL_HDR_LEN (1 + 1 + 8 + 8 + QTSP_HSM_MAC_LEN)
#define POOL_MAC_DOMAIN "qtsp-keypool-v1"
#define SEQ_COUNTER "keypool_seq"
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

static void hex32(const unsigned char in[32], char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

void ra_subkey_cleanup(ra_subkey *sk)
{
    if (sk->blob) {
        OPENSSL_cleanse(sk->blob, sk->blob_len);
        free(sk->blob);
    }
    EVP_PKEY_free(sk->pub);
    memset(sk, 0, sizeof *sk);
}

static void seq_label(uint64_t seq, char out[64])
{
    snprintf(out, 64, "%s%016llx", RA_WPOOL_PREFIX, (unsigned long long)seq);
}

/* The token-authenticated bytes of a pool entry: its sequence number, key
 * type, public key and blob. */
static qtsp_status pool_mac_input(uint64_t seq, qtsp_keytype kt, const unsigned char *spki,
                                  size_t spki_len, const unsigned char *blob, size_t blen,
                                  unsigned char *out, size_t *len)
{
    unsigned char id[8];
    qtsp_be64_put(id, seq);
    return qtsp_subkey_mac_input_spki(POOL_MAC_DOMAIN, id, sizeof id, kt, spki, spki_len, blob,
                                      blen, out, len);
}

/* A wrapped pool record, parsed; pointers into the record. */
typedef struct wpool_rec {
    qtsp_keytype kt;
    uint64_t seq;
    const unsigned char *mac, *spki, *blob;
    size_t spki_len, blob_len;
} wpool_rec;

static int wpool_parse(const unsigned char *v, size_t vl, wpool_rec *r)
{
    if (vl < WPOOL_HDR_LEN + 4 || v[0] != WPOOL_REC_VERSION)
        return 0;
    r->kt = (qtsp_keytype)v[1];
    r->seq = qtsp_be64_get(v + 2);
    r->mac = v + 18;
    size_t o = WPOOL_HDR_LEN;
    r->spki_len = ((size_t)v[o] << 8) | v[o + 1];
    o += 2;
    if (r->spki_len == 0 || o + r->spki_len + 2 > vl)
        return 0;
    r->spki = v + o;
    o += r->spki_len;
    r->blob_len = ((size_t)v[o] << 8) | v[o + 1];
    o += 2;
    if (r->blob_len == 0 || r->blob_len > QTSP_WRAPPED_MAX || o + r->blob_len != vl)
        return 0;
    r->blob = v + o;
    return 1;
}

/* ---- taking a key ---- */

typedef struct take_ctx {
    qtsp_ra *ra;
    const char *actor;
    int found, advanced; /* advanced: the token's mark passed adv_seq in this take */
    uint64_t adv_seq;
    size_t stale, bad;
    uint64_t mark;
    char label[64];
    unsigned char *rec; /* copy of the picked record */
    size_t rec_len;
    uint64_t left;
    ra_subkey out;
} take_ctx;

static qtsp_status take_pick(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                             int *stop)
{
    take_ctx *c = vctx;
    const unsigned char *v = val;
    wpool_rec r;
    if (klen >= sizeof c->label || klen < 3 || memcmp(key, RA_WPOOL_PREFIX, 3) != 0) {
        *stop = 1; /* past the wrapped entries */
        return QTSP_OK;
    }
    if (!wpool_parse(v, vlen, &r) || r.kt != c->ra->keytype)
        return QTSP_OK; /* another key type: left for a pool of that type */
    c->rec = malloc(vlen);
    ENSURE(c->rec != NULL, QTSP_ERR_NOMEM, "out of memory");
    memcpy(c->rec, val, vlen);
    c->rec_len = vlen;
    memcpy(c->label, key, klen);
    c->label[klen] = '\0';
    c->found = 1;
    *stop = 1;
    return QTSP_OK;
}

static qtsp_status audit_pool(qtsp_txn *txn, const char *actor, const char *event, json_t *d)
{
    ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_audit_append(txn, actor, event, d, NULL);
    json_decref(d);
    return rc;
}

/* Picks the lowest sequence number; entries the token's mark has passed are
 * stale (handed out through another store sharing this token): all of them
 * go, audited, and nothing is taken. */
static qtsp_status take_txn(qtsp_txn *txn, void *vctx)
{
    take_ctx *c = vctx;
    qtsp_ra *ra = c->ra;
    c->found = 0;
    c->stale = c->bad = 0;
    ra_subkey_cleanup(&c->out);
    TRY(qtsp_hsm_mark_get(ra->d.hsm, &c->mark));
    for (;;) {
        free(c->rec);
        c->rec = NULL;
        c->found = 0;
        TRY(qtsp_txn_iter(txn, QTSP_T_KEYPOOL, RA_WPOOL_PREFIX, 3, take_pick, c));
        if (!c->found)
            break;
        wpool_rec r;
        (void)wpool_parse(c->rec, c->rec_len, &r);
        /* a re-run of this transaction (map grown) finds its own key */
        if (r.seq >= c->mark || (c->advanced && r.seq == c->adv_seq))
            break;
        TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, c->label, strlen(c->label)));
        c->stale++;
    }
    if (c->stale > 0) {
        c->found = 0;
        return audit_pool(
            txn, c->actor, "keypool.stale",
            json_pack("{s:I,s:I,s:s}", "discarded", (json_int_t)c->stale, "pool_mark",
                      (json_int_t)c->mark, "reason",
                      "the token's pool mark says these keys were handed out already: the store "
                      "is older than the token (a copied home or a restored backup)"));
    }
    if (!c->found)
        return QTSP_OK;
    wpool_rec r;
    (void)wpool_parse(c->rec, c->rec_len, &r);
    TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, c->label, strlen(c->label)));
    EVP_PKEY *pub = NULL;
    unsigned char in[QTSP_SUBKEY_MAC_INPUT_MAX];
    size_t inl = 0;
    qtsp_status rc =
        qtsp_pubkey_from_spki(r.spki, r.spki_len, &pub) == QTSP_OK
            ? pool_mac_input(r.seq, r.kt, r.spki, r.spki_len, r.blob, r.blob_len, in, &inl)
            : QTSP_ERR_STORE_CORRUPT;
    if (rc == QTSP_OK)
        rc = qtsp_hsm_mac_verify(ra->d.hsm, in, inl, r.mac);
    if (rc == QTSP_ERR_STATE || rc == QTSP_ERR_STORE_CORRUPT) {
        /* not an entry the token made: dropped, audited */
        EVP_PKEY_free(pub);
        qtsp_err_clear();
        c->found = 0;
        c->bad = 1;
        return audit_pool(txn, c->actor, "key.destroy",
                          json_pack("{s:s,s:s}", "label", c->label, "reason",
                                    "pool entry not authenticated by the token"));
    }
    if (rc == QTSP_OK && !(c->advanced && r.seq == c->adv_seq)) {
        rc = qtsp_hsm_mark_advance(ra->d.hsm, r.seq); /* the token: handed out, once */
        c->advanced = rc == QTSP_OK;
        c->adv_seq = r.seq;
    }
    if (rc != QTSP_OK) {
        EVP_PKEY_free(pub);
        return rc;
    }
    c->out.pub = pub;
    c->out.blob = malloc(r.blob_len);
    ENSURE(c->out.blob != NULL, QTSP_ERR_NOMEM, "out of memory");
    memcpy(c->out.blob, r.blob, r.blob_len);
    c->out.blob_len = r.blob_len;
    snprintf(c->out.label, sizeof c->out.label, "%s", c->label);
    return qtsp_txn_count(txn, QTSP_T_KEYPOOL, &c->left);
}

static void wake_filler(qtsp_ra *ra)
{
    pthread_mutex_lock(&ra->kp.mu);
    qtsp_periodic_kick(ra->kp.filler);
    pthread_mutex_unlock(&ra->kp.mu);
}

qtsp_status ra_keypool_take(qtsp_ra *ra, ra_subkey *out)
{
    if (ra->kp.size == 0)
        return QTSP_ERR_NOT_FOUND;
    take_ctx c;
    memset(&c, 0, sizeof c);
    c.ra = ra;
    c.actor = POOL_ACTOR;
    qtsp_status rc = qtsp_store_write(ra->d.store, take_txn, &c);
    free(c.rec);
    if (rc != QTSP_OK) {
        ra_subkey_cleanup(&c.out);
        return rc;
    }
    if (c.stale > 0) {
        wake_filler(ra);
        FAIL(QTSP_ERR_STATE,
             "the key pool offered %zu key(s) that the token's pool mark (%llu) says were handed "
             "out already: this store is older than the token (a copied home, or a restored "
             "backup, sharing the token with another store). They were discarded and no key is "
             "bound twice; issue again",
             c.stale, (unsigned long long)c.mark);
    }
    if (!c.found) {
        wake_filler(ra);
        return QTSP_ERR_NOT_FOUND;
    }
    if (c.left < (uint64_t)ra->kp.low_water)
        wake_filler(ra);
    atomic_fetch_add(&ra->kp.taken, 1);
    *out = c.out;
    return QTSP_OK;
}

typedef struct discard_ctx {
    const char *actor;
    const json_t *details;
} discard_ctx;

static qtsp_status discard_txn(qtsp_txn *txn, void *vctx)
{
    discard_ctx *c = vctx;
    return qtsp_audit_append(txn, c->actor, "key.destroy", c->details, NULL);
}

void ra_keypool_discard(qtsp_ra *ra, const char *actor, const char *label, const char *why)
{
    json_t *d = json_pack("{s:s,s:s}", "label", label, "reason", why);
    discard_ctx c = {actor, d};
    /* keep the first error (the caller's) intact: this is cleanup */
    if (!d || qtsp_store_write(ra->d.store, discard_txn, &c) != QTSP_OK)
        LOG_ERROR("could not record the destruction of pool key %s", label);
    json_decref(d);
}

/* ---- filling ---- */

typedef struct gen_key {
    uint64_t seq;
    unsigned char *rec; /* the keypool record */
    size_t rec_len;
    unsigned char spki_hash[32];
} gen_key;

typedef struct fill_ctx {
    const gen_key *keys;
    size_t n;
    qtsp_keytype kt;
    uint64_t first; /* seq_txn: the first sequence number of the batch */
    uint64_t mark;
} fill_ctx;

/* Reserves n sequence numbers, none below the token's mark (a restored
 * store's counter may be behind it). */
static qtsp_status seq_txn(qtsp_txn *txn, void *vctx)
{
    fill_ctx *c = vctx;
    const void *v = NULL;
    size_t vl = 0;
    uint64_t next = 0;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_COUNTERS, SEQ_COUNTER, strlen(SEQ_COUNTER), &v, &vl);
    if (rc == QTSP_OK) {
        ENSURE(vl == 8, QTSP_ERR_STORE_CORRUPT, "counter %s is malformed", SEQ_COUNTER);
        next = qtsp_be64_get(v);
    } else if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
    } else {
        return rc;
    }
    if (next < c->mark)
        next = c->mark;
    unsigned char b[8];
    qtsp_be64_put(b, next + c->n);
    TRY(qtsp_txn_put(txn, QTSP_T_COUNTERS, SEQ_COUNTER, strlen(SEQ_COUNTER), b, 8, 0));
    c->first = next;
    return QTSP_OK;
}

/* One audit record for the whole batch (issue 16: no flood). */
static qtsp_status fill_txn(qtsp_txn *txn, void *vctx)
{
    fill_ctx *c = vctx;
    json_t *keys = json_array();
    ENSURE(keys != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < c->n; i++) {
        char label[64], hex[65];
        seq_label(c->keys[i].seq, label);
        TRY_OUT(qtsp_txn_put(txn, QTSP_T_KEYPOOL, label, strlen(label), c->keys[i].rec,
                             c->keys[i].rec_len, QTSP_PUT_NOOVERWRITE));
        hex32(c->keys[i].spki_hash, hex);
        ENSURE_OUT(json_array_append_new(
                       keys, json_pack("{s:s,s:s}", "label", label, "spki_sha256", hex)) == 0,
                   QTSP_ERR_NOMEM, "out of memory");
    }
    json_t *d = json_pack("{s:s,s:I,s:s,s:s,s:O}", "key_type", qtsp_keytype_name(c->kt), "count",
                          (json_int_t)c->n, "purpose", "key pool", "storage",
                          "wrapped (" QTSP_SUBKEY_FORMAT ")", "keys", keys);
    TRY_OUT(audit_pool(txn, POOL_ACTOR, "keypool.refill", d));
out:
    json_decref(keys);
    return rc;
}

/* One wrapped key with its authenticated pool record. */
static qtsp_status gen_one(qtsp_ra *ra, uint64_t seq, gen_key *k)
{
    unsigned char *blob = NULL, *der = NULL;
    size_t blen = 0;
    EVP_PKEY *pub = NULL;
    TRY(qtsp_hsm_generate_wrapped(ra->d.hsm, ra->keytype, &blob, &blen, &pub));
    qtsp_status rc = QTSP_OK;
    unsigned char in[QTSP_SUBKEY_MAC_INPUT_MAX], mac[QTSP_HSM_MAC_LEN];
    size_t inl = 0;
    int n = i2d_PUBKEY(pub, &der);
    ENSURE_OUT(n > 0 && n < 65536, QTSP_ERR_CRYPTO, "cannot encode a public key");
    TRY_OUT(pool_mac_input(seq, ra->keytype, der, (size_t)n, blob, blen, in, &inl));
    TRY_OUT(qtsp_hsm_mac(ra->d.hsm, in, inl, mac));
    k->rec_len = WPOOL_HDR_LEN + 2 + (size_t)n + 2 + blen;
    k->rec = malloc(k->rec_len);
    ENSURE_OUT(k->rec != NULL, QTSP_ERR_NOMEM, "out of memory");
    unsigned char *v = k->rec;
    v[0] = WPOOL_REC_VERSION;
    v[1] = (unsigned char)ra->keytype;
    qtsp_be64_put(v + 2, seq);
    qtsp_be64_put(v + 10, (uint64_t)qtsp_now());
    memcpy(v + 18, mac, sizeof mac);
    size_t o = WPOOL_HDR_LEN;
    v[o++] = (unsigned char)(n >> 8);
    v[o++] = (unsigned char)n;
    memcpy(v + o, der, (size_t)n);
    o += (size_t)n;
    v[o++] = (unsigned char)(blen >> 8);
    v[o++] = (unsigned char)blen;
    memcpy(v + o, blob, blen);
    k->seq = seq;
    SHA256(der, (size_t)n, k->spki_hash);
out:
    OPENSSL_cleanse(blob, blen);
    free(blob);
    OPENSSL_free(der);
    EVP_PKEY_free(pub);
    return rc;
}

static void free_batch(gen_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (keys[i].rec)
            OPENSSL_cleanse(keys[i].rec, keys[i].rec_len);
        free(keys[i].rec);
        keys[i].rec = NULL;
    }
}

/* Commits keys[0..n) to the pool (one audit record). */
static qtsp_status commit_batch(qtsp_ra *ra, const gen_key *keys, size_t n)
{
    if (n == 0)
        return QTSP_OK;
    fill_ctx c = {keys, n, ra->keytype, 0, 0};
    TRY(qtsp_store_write(ra->d.store, fill_txn, &c));
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
        fill_ctx sc = {NULL, n, ra->keytype, 0, 0};
        TRY_OUT(qtsp_hsm_mark_get(ra->d.hsm, &sc.mark));
        TRY_OUT(qtsp_store_write(ra->d.store, seq_txn, &sc));
        qtsp_status grc = QTSP_OK;
        while (got < n && !atomic_load(&ra->kp.stopping) &&
               (grc = gen_one(ra, sc.first + got, &keys[got])) == QTSP_OK)
            got++;
        /* the keys made so far are committed even if generation failed or
         * stop was requested (unused sequence numbers are simply skipped) */
        qtsp_status crc = commit_batch(ra, keys, got);
        free_batch(keys, got);
        TRY_OUT(crc);
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
        if (vl == POOL_REC_LEN && p[0] == POOL_REC_VERSION) {
            TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, label, ll));
            *why = "legacy token pool key (the pool now holds wrapped keys)";
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

/* Wrapped entries of another key type than the profile's (the profile
 * changed): never taken, they would count as available for ever. */
typedef struct other_ctx {
    qtsp_keytype kt;
    label_list *doomed;
} other_ctx;

static qtsp_status other_pick(void *vctx, const void *key, size_t klen, const void *val,
                              size_t vlen, int *stop)
{
    other_ctx *c = vctx;
    wpool_rec r;
    if (klen < 3 || klen >= 64 || memcmp(key, RA_WPOOL_PREFIX, 3) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    if (wpool_parse(val, vlen, &r) && r.kt == c->kt)
        return QTSP_OK;
    char label[64];
    memcpy(label, key, klen);
    label[klen] = '\0';
    return collect_label(c->doomed, label);
}

static qtsp_status other_txn(qtsp_txn *txn, void *vctx)
{
    other_ctx *c = vctx;
    label_list_free(c->doomed);
    memset(c->doomed, 0, sizeof *c->doomed);
    TRY(qtsp_txn_iter(txn, QTSP_T_KEYPOOL, RA_WPOOL_PREFIX, 3, other_pick, c));
    for (size_t i = 0; i < c->doomed->n; i++) {
        TRY(qtsp_txn_del(txn, QTSP_T_KEYPOOL, c->doomed->v[i], strlen(c->doomed->v[i])));
        TRY(audit_pool(txn, POOL_ACTOR, "key.destroy",
                       json_pack("{s:s,s:s}", "label", c->doomed->v[i], "reason",
                                 "pool key of another key type than the profile's")));
    }
    return QTSP_OK;
}

qtsp_status qtsp_ra_keypool_cleanup(qtsp_ra *ra, int64_t grace_s, size_t *n)
{
    label_list l = {NULL, 0, 0};
    qtsp_status rc = QTSP_OK;
    orphan_ctx c = {&l, NULL, ra->keytype, grace_s, 0};
    label_list other = {NULL, 0, 0};
    other_ctx oc = {ra->keytype, &other};
    TRY_OUT(qtsp_store_write(ra->d.store, other_txn, &oc));
    size_t destroyed = other.n;
    TRY_OUT(qtsp_hsm_list_labels(ra->d.hsm, RA_POOL_PREFIX, collect_label, &l));
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
    label_list_free(&other);
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
