/* The signed-document archive (sign/archive.h): content-addressed files,
 * an index in QTSP_T_DOCUMENTS, a per-signer quota, and a sweeper on
 * core/periodic that removes what outlived its retention (audited). */
#include "sign/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/config.h"
#include "core/file.h"
#include "core/log.h"
#include "core/periodic.h"
#include "core/yaml.h"

#define OWNER_MAX 64
#define SWEEP_BATCH 1000
#define KEY_MAX (1 + OWNER_MAX + 1 + QTSP_ARCHIVE_ID_LEN)

struct qtsp_archive {
    char dir[QTSP_PATH_MAX];
    qtsp_store *store;
    int64_t retention_s;
    uint64_t quota;
    int64_t sweep_s;
    qtsp_periodic *sweeper;
};

int64_t qtsp_archive_retention(const qtsp_archive *a)
{
    return a->retention_s;
}

uint64_t qtsp_archive_quota(const qtsp_archive *a)
{
    return a->quota;
}

static qtsp_status load_policy(qtsp_archive *a, const char *path)
{
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {"version", "retention_years", "quota_bytes",
                                       "sweep_interval", NULL};
    int64_t years = 10, quota = INT64_C(1) << 30, version = 1;
    a->sweep_s = 3600;
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_int(root, "version", 1, 1, 1, &version));
    /* EN 319 411-1 / eIDAS Art. 24(2)(h): kept at least as long as required; 100 y bound */
    TRY_OUT(qtsp_yget_int(root, "retention_years", 1, 1, 100, &years));
    TRY_OUT(qtsp_yget_int(root, "quota_bytes", 1, 1024, INT64_C(1) << 50, &quota));
    TRY_OUT(qtsp_yget_duration(root, "sweep_interval", 0, &a->sweep_s));
    if (a->sweep_s < 1)
        a->sweep_s = 1;
    /* calendar years: 365.2425 days on average */
    a->retention_s = years * INT64_C(31556952);
    a->quota = (uint64_t)quota;
out:
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status qtsp_archive_new(const char *policy_path, const char *dir, qtsp_store *store,
                             qtsp_archive **out)
{
    ENSURE(dir && store && strlen(dir) + 80 < QTSP_PATH_MAX, QTSP_ERR_INVALID,
           "archive directory missing or too long");
    qtsp_archive *a = calloc(1, sizeof *a);
    ENSURE(a != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    a->store = store;
    TRY_OUT(load_policy(a, policy_path));
    ENSURE_OUT(mkdir(dir, 0750) == 0 || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s", dir,
               strerror(errno));
    *out = a;
    return QTSP_OK;
out:
    free(a);
    return rc;
}

void qtsp_archive_free(qtsp_archive *a)
{
    if (!a)
        return;
    qtsp_periodic_stop(a->sweeper);
    free(a);
}

/* DIR/<hh>/<hex> (and the directory alone when dir_only). */
static void file_path(const qtsp_archive *a, const char *hexsum, int dir_only, char *out,
                      size_t cap)
{
    if (dir_only)
        snprintf(out, cap, "%s/%.2s", a->dir, hexsum);
    else
        snprintf(out, cap, "%s/%.2s/%s", a->dir, hexsum, hexsum);
}

/* Writes d's file at DIR/<hh>/<hex> unless a file of its size is there;
 * *created (may be NULL) tells whether this call wrote it. */
static qtsp_status write_file(qtsp_archive *a, const qtsp_archive_doc *d, const char *hx,
                              int *created)
{
    char path[QTSP_PATH_MAX + 80];
    if (created)
        *created = 0;
    file_path(a, hx, 1, path, sizeof path);
    ENSURE(mkdir(path, 0750) == 0 || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s", path,
           strerror(errno));
    file_path(a, hx, 0, path, sizeof path);
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size == d->len)
        return QTSP_OK; /* content-addressed: already there */
    TRY(qtsp_file_write_atomic(path, d->data, d->len, 0640));
    if (created)
        *created = 1;
    return QTSP_OK;
}

qtsp_status qtsp_archive_write_new(qtsp_archive *a, const qtsp_archive_doc *d,
                                   unsigned char sha256[32], int *created)
{
    if (created)
        *created = 0;
    ENSURE(d && d->data && d->len > 0, QTSP_ERR_INVALID, "empty document");
    ENSURE(EVP_Digest(d->data, d->len, sha256, NULL, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
           "SHA-256");
    char hx[65];
    qtsp_hex_encode(sha256, 32, hx);
    return write_file(a, d, hx, created);
}

qtsp_status qtsp_archive_write(qtsp_archive *a, const qtsp_archive_doc *d, unsigned char sha256[32])
{
    return qtsp_archive_write_new(a, d, sha256, NULL);
}

static qtsp_status get_u64(qtsp_txn *txn, const void *key, size_t klen, uint64_t *v)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 16);
    qtsp_status rc = qtsp_txn_get(txn, QTSP_T_DOCUMENTS, key, klen, &b);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        *v = 0;
        rc = QTSP_OK;
    } else if (rc == QTSP_OK) {
        if (b.len == 8)
            *v = qtsp_be64_get(b.data);
        else
            rc = qtsp_err_set(QTSP_ERR_STORE_CORRUPT, __FILE__, __LINE__, "archive counter");
    }
    qtsp_buf_cleanup(&b);
    return rc;
}

/* Sets (v > 0) or deletes (v == 0) a counter. */
static qtsp_status put_u64(qtsp_txn *txn, const void *key, size_t klen, uint64_t v)
{
    if (v == 0) {
        qtsp_status rc = qtsp_txn_del(txn, QTSP_T_DOCUMENTS, key, klen);
        if (rc == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            rc = QTSP_OK;
        }
        return rc;
    }
    unsigned char b[8];
    qtsp_be64_put(b, v);
    return qtsp_txn_put(txn, QTSP_T_DOCUMENTS, key, klen, b, 8, 0);
}

static qtsp_status check_owner(const char *owner)
{
    size_t n = owner ? strlen(owner) : 0;
    ENSURE(n > 0 && n <= OWNER_MAX, QTSP_ERR_INVALID, "document owner missing or too long");
    for (size_t i = 0; i < n; i++)
        ENSURE((unsigned char)owner[i] > 0x20 && (unsigned char)owner[i] < 0x7f, QTSP_ERR_INVALID,
               "document owner has odd characters");
    return QTSP_OK;
}

/* 'o' owner 0 id */
static size_t owner_key(unsigned char *k, const char *owner, const char *id)
{
    size_t n = strlen(owner);
    k[0] = 'o';
    memcpy(k + 1, owner, n);
    k[1 + n] = 0;
    if (!id)
        return 2 + n;
    memcpy(k + 2 + n, id, QTSP_ARCHIVE_ID_LEN);
    return 2 + n + QTSP_ARCHIVE_ID_LEN;
}

/* 'x' expires id */
static size_t expiry_key(unsigned char *k, uint64_t expires, const char *id)
{
    k[0] = 'x';
    qtsp_be64_put(k + 1, expires);
    memcpy(k + 9, id, QTSP_ARCHIVE_ID_LEN);
    return 9 + QTSP_ARCHIVE_ID_LEN;
}

qtsp_status qtsp_archive_index(qtsp_archive *a, qtsp_txn *txn, const char *actor,
                               const qtsp_archive_doc *d, const unsigned char sha256[32], char *id)
{
    TRY(check_owner(d->owner));
    const char *name = d->name ? d->name : "";
    ENSURE(strlen(name) <= QTSP_ARCHIVE_NAME_MAX, QTSP_ERR_INVALID, "document name too long");
    ENSURE(d->format && d->level && d->len > 0, QTSP_ERR_INVALID, "document format or level");
    unsigned char qkey[1 + OWNER_MAX] = {'q'}, hkey[33] = {'h'};
    size_t qlen = 1 + strlen(d->owner);
    memcpy(qkey + 1, d->owner, qlen - 1);
    memcpy(hkey + 1, sha256, 32);
    uint64_t used = 0, refs = 0;
    TRY(get_u64(txn, qkey, qlen, &used));
    ENSURE(used + d->len <= a->quota && used + d->len >= used, QTSP_ERR_QUOTA,
           "the signer's archive is full (%llu of %llu bytes used)", (unsigned long long)used,
           (unsigned long long)a->quota);
    TRY(get_u64(txn, hkey, sizeof hkey, &refs));
    char hx[65];
    qtsp_hex_encode(sha256, 32, hx);
    /* the file is there: a refused request that wrote the same bytes removes
     * them in a write transaction when no entry names them (qtsp_archive_discard),
     * so a file found by qtsp_archive_write may be gone since; written again
     * here, under the same writer lock */
    TRY(write_file(a, d, hx, NULL));

    unsigned char rnd[QTSP_ARCHIVE_ID_LEN / 2];
    TRY(qtsp_random(rnd, sizeof rnd));
    char docid[QTSP_ARCHIVE_ID_LEN + 1], when[32];
    qtsp_hex_encode(rnd, sizeof rnd, docid);
    qtsp_format_rfc3339((time_t)d->signed_at, when, sizeof when);
    int64_t expires = d->signed_at + a->retention_s;
    json_t *rec =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "id", docid, "owner", d->owner, "name",
                  name, "format", d->format, "level", d->level, "signed_at", when, "sha256", hx,
                  "size", (json_int_t)d->len, "expires", (json_int_t)expires);
    ENSURE(rec != NULL, QTSP_ERR_INVALID, "document name is not UTF-8");
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    qtsp_status rc = QTSP_OK;
    unsigned char k[KEY_MAX];
    ENSURE_OUT(text != NULL, QTSP_ERR_NOMEM, "out of memory");
    k[0] = 'd';
    memcpy(k + 1, docid, QTSP_ARCHIVE_ID_LEN);
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_DOCUMENTS, k, 1 + QTSP_ARCHIVE_ID_LEN, text, strlen(text),
                         QTSP_PUT_NOOVERWRITE));
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_DOCUMENTS, k, owner_key(k, d->owner, docid), "", 0, 0));
    TRY_OUT(
        qtsp_txn_put(txn, QTSP_T_DOCUMENTS, k, expiry_key(k, (uint64_t)expires, docid), "", 0, 0));
    TRY_OUT(put_u64(txn, hkey, sizeof hkey, refs + 1));
    TRY_OUT(put_u64(txn, qkey, qlen, used + d->len));
    /* the audit record names the document, not its content */
    json_object_del(rec, "name");
    TRY_OUT(qtsp_audit_append(txn, actor, "document.archive", rec, NULL));
    memcpy(id, docid, sizeof docid);
out:
    free(text);
    json_decref(rec);
    return rc;
}

typedef struct put_ctx {
    qtsp_archive *a;
    const char *actor;
    const qtsp_archive_doc *d;
    const unsigned char *sha;
    char *id;
} put_ctx;

static qtsp_status put_txn(qtsp_txn *txn, void *vctx)
{
    put_ctx *c = vctx;
    return qtsp_archive_index(c->a, txn, c->actor, c->d, c->sha, c->id);
}

qtsp_status qtsp_archive_put(qtsp_archive *a, const char *actor, const qtsp_archive_doc *d,
                             char *id)
{
    unsigned char sha[32];
    TRY(check_owner(d->owner));
    TRY(qtsp_archive_write(a, d, sha));
    put_ctx c = {a, actor, d, sha, id};
    return qtsp_store_write(a->store, put_txn, &c);
}

typedef struct discard_ctx {
    qtsp_archive *a;
    const unsigned char *sha;
} discard_ctx;

static qtsp_status discard_txn(qtsp_txn *txn, void *vctx)
{
    discard_ctx *c = vctx;
    unsigned char hkey[33] = {'h'};
    memcpy(hkey + 1, c->sha, 32);
    uint64_t refs = 0;
    TRY(get_u64(txn, hkey, sizeof hkey, &refs));
    if (refs > 0)
        return QTSP_OK; /* an earlier request's document: kept */
    char hx[65], path[QTSP_PATH_MAX + 80];
    qtsp_hex_encode(c->sha, 32, hx);
    file_path(c->a, hx, 0, path, sizeof path);
    ENSURE(unlink(path) == 0 || errno == ENOENT, QTSP_ERR_IO, "cannot remove %s: %s", path,
           strerror(errno));
    return QTSP_OK;
}

qtsp_status qtsp_archive_discard(qtsp_archive *a, const unsigned char sha256[32])
{
    discard_ctx c = {a, sha256};
    return qtsp_store_write(a->store, discard_txn, &c);
}

qtsp_status qtsp_archive_room(qtsp_archive *a, const char *owner, uint64_t bytes)
{
    TRY(check_owner(owner));
    unsigned char qkey[1 + OWNER_MAX] = {'q'};
    size_t qlen = 1 + strlen(owner);
    memcpy(qkey + 1, owner, qlen - 1);
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(a->store, 0, &txn));
    uint64_t used = 0;
    qtsp_status rc = get_u64(txn, qkey, qlen, &used);
    qtsp_txn_abort(txn);
    TRY(rc);
    ENSURE(used + bytes <= a->quota && used + bytes >= used, QTSP_ERR_QUOTA,
           "the signer's archive is full (%llu of %llu bytes used)", (unsigned long long)used,
           (unsigned long long)a->quota);
    return QTSP_OK;
}

/* The record of id (new reference). QTSP_ERR_NOT_FOUND. */
static qtsp_status get_rec(qtsp_txn *txn, const char *id, json_t **out)
{
    ENSURE(id && strlen(id) == QTSP_ARCHIVE_ID_LEN, QTSP_ERR_NOT_FOUND, "no such document");
    for (size_t i = 0; i < QTSP_ARCHIVE_ID_LEN; i++)
        ENSURE(qtsp_hex_value((unsigned char)id[i]) >= 0, QTSP_ERR_NOT_FOUND, "no such document");
    unsigned char k[1 + QTSP_ARCHIVE_ID_LEN] = {'d'};
    memcpy(k + 1, id, QTSP_ARCHIVE_ID_LEN);
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 16);
    qtsp_status rc = qtsp_txn_get(txn, QTSP_T_DOCUMENTS, k, sizeof k, &b);
    if (rc == QTSP_OK) {
        json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
        if (j && json_is_object(j))
            *out = j;
        else {
            json_decref(j);
            rc = qtsp_err_set(QTSP_ERR_STORE_CORRUPT, __FILE__, __LINE__, "document record %s", id);
        }
    } else if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        rc = qtsp_err_set(QTSP_ERR_NOT_FOUND, __FILE__, __LINE__, "no such document");
    }
    qtsp_buf_cleanup(&b);
    return rc;
}

typedef struct list_ctx {
    qtsp_txn *txn;
    const unsigned char *prefix;
    size_t plen, limit;
    const char *after; /* the cursor (an id), or NULL */
    json_t *arr;
    int more; /* a document beyond limit exists */
    char last[QTSP_ARCHIVE_ID_LEN + 1];
} list_ctx;

static qtsp_status list_one(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                            int *stop)
{
    (void)val;
    (void)vlen;
    list_ctx *c = vctx;
    if (klen != c->plen + QTSP_ARCHIVE_ID_LEN || memcmp(key, c->prefix, c->plen) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    char id[QTSP_ARCHIVE_ID_LEN + 1];
    memcpy(id, (const char *)key + c->plen, QTSP_ARCHIVE_ID_LEN);
    id[QTSP_ARCHIVE_ID_LEN] = '\0';
    if (c->after && strcmp(id, c->after) == 0)
        return QTSP_OK; /* the cursor's own document was on the previous page */
    if (c->limit && json_array_size(c->arr) >= c->limit) {
        c->more = 1;
        *stop = 1;
        return QTSP_OK;
    }
    json_t *rec = NULL;
    TRY(get_rec(c->txn, id, &rec));
    json_object_del(rec, "owner");
    json_object_del(rec, "expires");
    ENSURE(json_array_append_new(c->arr, rec) == 0, QTSP_ERR_NOMEM, "out of memory");
    memcpy(c->last, id, sizeof id);
    return QTSP_OK;
}

qtsp_status qtsp_archive_list_page(qtsp_archive *a, const char *owner, size_t limit,
                                   const char *after, json_t **out)
{
    TRY(check_owner(owner));
    unsigned char start[KEY_MAX];
    size_t plen = owner_key(start, owner, NULL), slen = plen;
    if (after) { /* an id: 24 hex digits from a previous page's "next" */
        ENSURE(strlen(after) == QTSP_ARCHIVE_ID_LEN &&
                   strspn(after, "0123456789abcdef") == QTSP_ARCHIVE_ID_LEN,
               QTSP_ERR_INVALID, "after: not a cursor of this list (%d hex digits from \"next\")",
               QTSP_ARCHIVE_ID_LEN);
        slen = owner_key(start, owner, after);
    }
    json_t *arr = json_array();
    ENSURE(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    list_ctx c = {NULL, start, plen, limit, after, arr, 0, {0}};
    qtsp_status rc = qtsp_store_begin(a->store, 0, &c.txn);
    if (rc == QTSP_OK) {
        rc = qtsp_txn_iter(c.txn, QTSP_T_DOCUMENTS, start, slen, list_one, &c);
        qtsp_txn_abort(c.txn);
    }
    if (rc != QTSP_OK) {
        json_decref(arr);
        return rc;
    }
    *out = c.more ? json_pack("{s:o,s:s}", "documents", arr, "next", c.last)
                  : json_pack("{s:o}", "documents", arr);
    ENSURE(*out != NULL, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_archive_list(qtsp_archive *a, const char *owner, json_t **out)
{
    return qtsp_archive_list_page(a, owner, 0, NULL, out);
}

static qtsp_status read_whole(const char *path, size_t want, qtsp_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ENSURE(fd >= 0, QTSP_ERR_IO, "archived file missing: %s", path);
    qtsp_status rc = qtsp_buf_reserve(out, want);
    size_t done = 0;
    while (rc == QTSP_OK && done < want) {
        ssize_t r = read(fd, out->data + out->len + done, want - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot read %s", path);
        else
            done += (size_t)r;
    }
    close(fd);
    if (rc == QTSP_OK)
        out->len += done;
    return rc;
}

qtsp_status qtsp_archive_get(qtsp_archive *a, const char *owner, const char *id, qtsp_buf *out,
                             json_t **rec_out)
{
    TRY(check_owner(owner));
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(a->store, 0, &txn));
    json_t *rec = NULL;
    qtsp_status rc = get_rec(txn, id, &rec);
    qtsp_txn_abort(txn);
    TRY(rc);
    const char *who = json_string_value(json_object_get(rec, "owner"));
    const char *hx = json_string_value(json_object_get(rec, "sha256"));
    json_int_t size = json_integer_value(json_object_get(rec, "size"));
    size_t start = out->len;
    /* another signer's document is not found, like an unknown one */
    ENSURE_OUT(who && strcmp(who, owner) == 0, QTSP_ERR_NOT_FOUND, "no such document");
    ENSURE_OUT(hx && strlen(hx) == 64 && size > 0, QTSP_ERR_STORE_CORRUPT, "document record %s",
               id);
    char path[QTSP_PATH_MAX + 80];
    file_path(a, hx, 0, path, sizeof path);
    TRY_OUT(read_whole(path, (size_t)size, out));
    unsigned char sha[32];
    char got[65];
    ENSURE_OUT(EVP_Digest(out->data + start, (size_t)size, sha, NULL, EVP_sha256(), NULL) == 1,
               QTSP_ERR_CRYPTO, "SHA-256");
    qtsp_hex_encode(sha, 32, got);
    ENSURE_OUT(strcmp(got, hx) == 0, QTSP_ERR_IO, "archived file %s was changed", path);
    if (rec_out) {
        *rec_out = rec;
        rec = NULL;
    }
out:
    if (rc != QTSP_OK)
        out->len = start;
    json_decref(rec);
    return rc;
}

/* ---- the sweeper ---------------------------------------------------------- */

typedef struct sweep_ctx {
    uint64_t now;
    char ids[SWEEP_BATCH][QTSP_ARCHIVE_ID_LEN + 1];
    size_t n;
    char gone[SWEEP_BATCH][65]; /* files no entry names any more */
    size_t n_gone;
} sweep_ctx;

static qtsp_status due_one(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                           int *stop)
{
    (void)val;
    (void)vlen;
    sweep_ctx *c = vctx;
    const unsigned char *k = key;
    if (klen != 9 + QTSP_ARCHIVE_ID_LEN || k[0] != 'x' || qtsp_be64_get(k + 1) > c->now ||
        c->n == SWEEP_BATCH) {
        *stop = 1;
        return QTSP_OK;
    }
    memcpy(c->ids[c->n], k + 9, QTSP_ARCHIVE_ID_LEN);
    c->ids[c->n][QTSP_ARCHIVE_ID_LEN] = '\0';
    c->n++;
    return QTSP_OK;
}

static qtsp_status sweep_txn(qtsp_txn *txn, void *vctx)
{
    sweep_ctx *c = vctx;
    c->n = c->n_gone = 0;
    unsigned char start = 'x';
    TRY(qtsp_txn_iter(txn, QTSP_T_DOCUMENTS, &start, 1, due_one, c));
    for (size_t i = 0; i < c->n; i++) {
        json_t *rec = NULL;
        TRY(get_rec(txn, c->ids[i], &rec));
        const char *owner = json_string_value(json_object_get(rec, "owner"));
        const char *hx = json_string_value(json_object_get(rec, "sha256"));
        json_int_t size = json_integer_value(json_object_get(rec, "size"));
        json_int_t expires = json_integer_value(json_object_get(rec, "expires"));
        qtsp_status rc = QTSP_OK;
        unsigned char k[KEY_MAX], sha[32];
        size_t sl = 0;
        ENSURE_OUT(owner && hx && strlen(hx) == 64 && check_owner(owner) == QTSP_OK,
                   QTSP_ERR_STORE_CORRUPT, "document record %s", c->ids[i]);
        for (size_t j = 0; j < 32; j++)
            sha[j] = (unsigned char)(qtsp_hex_value((unsigned char)hx[2 * j]) << 4 |
                                     qtsp_hex_value((unsigned char)hx[2 * j + 1]));
        sl = 32;
        k[0] = 'd';
        memcpy(k + 1, c->ids[i], QTSP_ARCHIVE_ID_LEN);
        TRY_OUT(qtsp_txn_del(txn, QTSP_T_DOCUMENTS, k, 1 + QTSP_ARCHIVE_ID_LEN));
        TRY_OUT(qtsp_txn_del(txn, QTSP_T_DOCUMENTS, k, owner_key(k, owner, c->ids[i])));
        TRY_OUT(
            qtsp_txn_del(txn, QTSP_T_DOCUMENTS, k, expiry_key(k, (uint64_t)expires, c->ids[i])));
        uint64_t v = 0;
        k[0] = 'q';
        memcpy(k + 1, owner, strlen(owner));
        TRY_OUT(get_u64(txn, k, 1 + strlen(owner), &v));
        TRY_OUT(put_u64(txn, k, 1 + strlen(owner), v > (uint64_t)size ? v - (uint64_t)size : 0));
        k[0] = 'h';
        memcpy(k + 1, sha, sl);
        TRY_OUT(get_u64(txn, k, 1 + sl, &v));
        TRY_OUT(put_u64(txn, k, 1 + sl, v > 0 ? v - 1 : 0));
        if (v <= 1)
            snprintf(c->gone[c->n_gone++], 65, "%s", hx);
        json_object_del(rec, "name");
        TRY_OUT(qtsp_audit_append(txn, "system:archive-sweeper", "document.expire", rec, NULL));
    out:
        json_decref(rec);
        TRY(rc);
    }
    return QTSP_OK;
}

qtsp_status qtsp_archive_sweep(qtsp_archive *a, int64_t now, size_t *removed)
{
    sweep_ctx *c = calloc(1, sizeof *c);
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    c->now = now > 0 ? (uint64_t)now : 0;
    qtsp_status rc = qtsp_store_write(a->store, sweep_txn, c);
    if (rc == QTSP_OK) {
        for (size_t i = 0; i < c->n_gone; i++) {
            char path[QTSP_PATH_MAX + 80];
            file_path(a, c->gone[i], 0, path, sizeof path);
            if (unlink(path) != 0 && errno != ENOENT)
                LOG_WARN("archive: cannot remove %s: %s", path, strerror(errno));
        }
        if (c->n)
            LOG_INFO("archive: %zu document(s) past their retention removed", c->n);
        if (removed)
            *removed = c->n;
    }
    free(c);
    return rc;
}

static int64_t sweep_run(qtsp_periodic *p, void *ctx)
{
    (void)p;
    qtsp_archive *a = ctx;
    size_t n = 0;
    qtsp_err_clear();
    if (qtsp_archive_sweep(a, (int64_t)qtsp_now(), &n) != QTSP_OK) {
        LOG_WARN("archive: sweep failed: %s", qtsp_err_message());
        return QTSP_PERIODIC_INTERVAL;
    }
    return n == SWEEP_BATCH ? 0 : QTSP_PERIODIC_INTERVAL; /* more due: at once */
}

qtsp_status qtsp_archive_start(qtsp_archive *a)
{
    ENSURE(a->sweeper == NULL, QTSP_ERR_STATE, "archive sweeper already running");
    return qtsp_periodic_start("archive sweeper", a->sweep_s * 1000, 0, sweep_run, a, &a->sweeper);
}
