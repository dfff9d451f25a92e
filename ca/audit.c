/* Tamper-evident audit log: a SHA-256 hash chain over JSON records
 * (EN 319 411-1 / EN 319 401 7.10 event logging; eIDAS Art. 24(2)(f)).
 *
 * The counter "audit_seq" is the authority for sequence numbers, so a
 * truncated tail (records deleted at the end) is detected by verify, and
 * append refuses to extend a chain whose last record is not seq - 1. */
#include "ca/audit.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"

#define AUDIT_VERSION 1
#define AUDIT_HASH_LEN 32
#define AUDIT_HDR (1 + AUDIT_HASH_LEN)
#define AUDIT_DETAILS_MAX (64 * 1024)
#define AUDIT_BODY_MAX (128 * 1024)
#define AUDIT_FIELD_MAX 128
#define AUDIT_COUNTER "audit_seq"

static qtsp_status chain_hash(const unsigned char prev[AUDIT_HASH_LEN], const void *body,
                              size_t len, unsigned char out[AUDIT_HASH_LEN])
{
    qtsp_status rc = QTSP_OK;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    ENSURE_OUT(md, QTSP_ERR_NOMEM, "audit: out of memory");
    ENSURE_OUT(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
                   EVP_DigestUpdate(md, prev, AUDIT_HASH_LEN) == 1 &&
                   EVP_DigestUpdate(md, body, len) == 1 && EVP_DigestFinal_ex(md, out, &n) == 1 &&
                   n == AUDIT_HASH_LEN,
               QTSP_ERR_CRYPTO, "audit: SHA-256 failed");
out:
    EVP_MD_CTX_free(md);
    return rc;
}

static int text_ok(const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n < 1 || n > AUDIT_FIELD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A copy of v whose objects have their keys in sorted order (jansson keeps
 * insertion order when dumping with JSON_PRESERVE_ORDER): the records' form
 * since the first one. NULL on allocation failure. */
static json_t *sorted_copy(const json_t *v)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < json_array_size(v); i++)
            if (json_array_append_new(a, sorted_copy(json_array_get(v, i))) != 0) {
                json_decref(a);
                a = NULL;
            }
        return a;
    }
    if (!json_is_object(v))
        return json_copy((json_t *)v);
    size_t n = json_object_size(v), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    json_t *o = keys ? json_object() : NULL;
    const char *k;
    json_t *child;
    if (o)
        json_object_foreach((json_t *)v, k, child) keys[i++] = k;
    if (o)
        qsort(keys, n, sizeof *keys, key_cmp);
    for (i = 0; o && i < n; i++)
        if (json_object_set_new(o, keys[i], sorted_copy(json_object_get(v, keys[i]))) != 0) {
            json_decref(o);
            o = NULL;
        }
    free(keys);
    return o;
}

qtsp_status qtsp_audit_append(qtsp_txn *txn, const char *actor, const char *event,
                              const json_t *details_in, uint64_t *seq_out)
{
    qtsp_status rc = QTSP_OK;
    json_t *details = NULL, *body = NULL;
    char *text = NULL;
    unsigned char *rec = NULL;
    qtsp_buf lastk, lastv;
    qtsp_buf_init(&lastk, 8);
    qtsp_buf_init(&lastv, AUDIT_HDR + AUDIT_BODY_MAX);

    ENSURE_OUT(txn, QTSP_ERR_INVALID, "audit: no transaction");
    ENSURE_OUT(text_ok(actor), QTSP_ERR_INVALID, "audit: actor missing or not printable");
    ENSURE_OUT(text_ok(event), QTSP_ERR_INVALID, "audit: event missing or not printable");
    if (details_in) {
        ENSURE_OUT(json_is_object(details_in), QTSP_ERR_INVALID,
                   "audit: details are not a JSON object");
        ENSURE_OUT(json_dumpb(details_in, NULL, 0, JSON_COMPACT) <= AUDIT_DETAILS_MAX,
                   QTSP_ERR_TOO_BIG, "audit: details too big");
        details = sorted_copy(details_in);
    } else {
        details = json_object();
    }
    ENSURE_OUT(details, QTSP_ERR_NOMEM, "audit: out of memory");

    uint64_t seq;
    TRY_OUT(qtsp_txn_counter_next(txn, AUDIT_COUNTER, &seq));
    ENSURE_OUT(seq <= (uint64_t)INT64_MAX, QTSP_ERR_INTERNAL, "audit: sequence overflow");
    unsigned char prev[AUDIT_HASH_LEN] = {0};
    qtsp_status lrc = qtsp_txn_last(txn, QTSP_T_AUDIT, &lastk, &lastv);
    if (lrc == QTSP_ERR_NOT_FOUND) {
        ENSURE_OUT(seq == 1, QTSP_ERR_AUDIT_BROKEN,
                   "audit: log is empty but %llu records were written",
                   (unsigned long long)(seq - 1));
    } else {
        TRY_OUT(lrc);
        ENSURE_OUT(lastk.len == 8 && qtsp_be64_get(lastk.data) == seq - 1, QTSP_ERR_AUDIT_BROKEN,
                   "audit: last record is not %llu, the chain is broken; run audit verify",
                   (unsigned long long)(seq - 1));
        ENSURE_OUT(lastv.len >= AUDIT_HDR && lastv.data[0] == AUDIT_VERSION, QTSP_ERR_AUDIT_BROKEN,
                   "audit: last record %llu is malformed", (unsigned long long)(seq - 1));
        memcpy(prev, lastv.data + 1, AUDIT_HASH_LEN);
    }

    char when[32];
    qtsp_format_rfc3339_ms(qtsp_now_ms(), when, sizeof when);
    body = json_object();
    ENSURE_OUT(body, QTSP_ERR_NOMEM, "audit: out of memory");
    ENSURE_OUT(json_object_set_new(body, "seq", json_integer((json_int_t)seq)) == 0 &&
                   json_object_set_new(body, "time", json_string(when)) == 0 &&
                   json_object_set_new(body, "actor", json_string(actor)) == 0 &&
                   json_object_set_new(body, "event", json_string(event)) == 0 &&
                   json_object_set(body, "details", details) == 0,
               QTSP_ERR_INVALID, "audit: actor or event is not valid UTF-8");
    text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ENSURE_OUT(text, QTSP_ERR_NOMEM, "audit: cannot serialise the record");
    size_t blen = strlen(text);
    ENSURE_OUT(blen <= AUDIT_BODY_MAX, QTSP_ERR_TOO_BIG, "audit: record too big");

    rec = malloc(AUDIT_HDR + blen);
    ENSURE_OUT(rec, QTSP_ERR_NOMEM, "audit: out of memory");
    rec[0] = AUDIT_VERSION;
    TRY_OUT(chain_hash(prev, text, blen, rec + 1));
    memcpy(rec + AUDIT_HDR, text, blen);
    unsigned char key[8];
    qtsp_be64_put(key, seq);
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_AUDIT, key, sizeof key, rec, AUDIT_HDR + blen,
                         QTSP_PUT_NOOVERWRITE | QTSP_PUT_APPEND));
    if (seq_out)
        *seq_out = seq;
out:
    free(rec);
    free(text);
    json_decref(body);
    json_decref(details);
    qtsp_buf_cleanup(&lastk);
    qtsp_buf_cleanup(&lastv);
    return rc;
}

typedef struct verify_ctx {
    uint64_t expect;
    unsigned char prev[AUDIT_HASH_LEN];
    uint64_t bad;
} verify_ctx;

#define BROKEN(c, s, ...)                                                                          \
    do {                                                                                           \
        (c)->bad = (s);                                                                            \
        return qtsp_err_set(QTSP_ERR_AUDIT_BROKEN, __FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

static qtsp_status verify_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                              int *stop)
{
    verify_ctx *c = ctx;
    unsigned long long e = (unsigned long long)c->expect;
    if (klen != 8)
        BROKEN(c, c->expect, "audit record %llu: missing (found a key of %zu bytes)", e, klen);
    uint64_t seq = qtsp_be64_get(key);
    if (seq != c->expect)
        BROKEN(c, c->expect, "audit record %llu: missing (next record is %llu)", e,
               (unsigned long long)seq);
    const unsigned char *v = val;
    if (vlen < AUDIT_HDR)
        BROKEN(c, seq, "audit record %llu: truncated (%zu bytes)", e, vlen);
    if (v[0] != AUDIT_VERSION)
        BROKEN(c, seq, "audit record %llu: unknown version %u", e, v[0]);
    const char *body = (const char *)v + AUDIT_HDR;
    size_t blen = vlen - AUDIT_HDR;
    json_error_t jerr;
    json_t *j = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        BROKEN(c, seq, "audit record %llu: body is not valid JSON (%s)", e, jerr.text);
    json_t *js = json_object_get(j, "seq");
    int seq_ok = json_is_integer(js) && json_integer_value(js) >= 0 &&
                 (uint64_t)json_integer_value(js) == seq;
    int obj_ok = json_is_object(j) && json_is_object(json_object_get(j, "details")) &&
                 json_is_string(json_object_get(j, "actor")) &&
                 json_is_string(json_object_get(j, "event"));
    json_decref(j);
    if (!obj_ok)
        BROKEN(c, seq, "audit record %llu: body lacks actor, event or details", e);
    if (!seq_ok)
        BROKEN(c, seq, "audit record %llu: body carries a different seq", e);
    unsigned char h[AUDIT_HASH_LEN];
    TRY(chain_hash(c->prev, body, blen, h));
    if (CRYPTO_memcmp(h, v + 1, AUDIT_HASH_LEN) != 0)
        BROKEN(c, seq, "audit record %llu: hash does not match (record altered or chain broken)",
               e);
    memcpy(c->prev, v + 1, AUDIT_HASH_LEN);
    c->expect++;
    (void)stop;
    return QTSP_OK;
}

qtsp_status qtsp_audit_verify(qtsp_store *st, uint64_t *count, uint64_t *bad_seq)
{
    qtsp_txn *txn = NULL;
    verify_ctx c = {.expect = 1};
    TRY(qtsp_store_begin(st, 0, &txn));
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_AUDIT, NULL, 0, verify_one, &c);
    uint64_t written = 0;
    if (rc == QTSP_OK)
        rc = qtsp_txn_counter_get(txn, AUDIT_COUNTER, &written);
    qtsp_txn_abort(txn);
    if (rc == QTSP_OK && written != c.expect - 1) {
        c.bad = c.expect;
        rc = qtsp_err_set(QTSP_ERR_AUDIT_BROKEN, __FILE__, __LINE__,
                          "audit record %llu: missing (%llu records were written, %llu found)",
                          (unsigned long long)c.expect, (unsigned long long)written,
                          (unsigned long long)(c.expect - 1));
    }
    if (rc == QTSP_ERR_AUDIT_BROKEN) {
        if (bad_seq)
            *bad_seq = c.bad;
        return rc;
    }
    TRY(rc);
    if (count)
        *count = c.expect - 1;
    return QTSP_OK;
}

typedef struct list_ctx {
    qtsp_audit_fn fn;
    void *ctx;
} list_ctx;

static qtsp_status list_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                            int *stop)
{
    list_ctx *c = ctx;
    ENSURE(klen == 8 && vlen >= AUDIT_HDR, QTSP_ERR_STORE_CORRUPT, "audit: malformed record");
    (void)stop;
    return c->fn(c->ctx, qtsp_be64_get(key), (const char *)val + AUDIT_HDR, vlen - AUDIT_HDR);
}

qtsp_status qtsp_audit_list(qtsp_store *st, uint64_t from, qtsp_audit_fn fn, void *ctx)
{
    ENSURE(fn, QTSP_ERR_INVALID, "audit: no function");
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(st, 0, &txn));
    unsigned char key[8];
    qtsp_be64_put(key, from);
    list_ctx c = {fn, ctx};
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_AUDIT, key, sizeof key, list_one, &c);
    qtsp_txn_abort(txn);
    return rc;
}

/* ---- filtered reads ------------------------------------------------------ */

typedef struct query_ctx {
    const qtsp_audit_filter *f;
    char since[32], until[32]; /* the bounds as the records write time */
    qtsp_audit_fn fn;
    void *ctx;
    size_t matched, scanned;
    uint64_t last;
    int more;
} query_ctx;

static int details_name(const json_t *details, const char *serial)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)details, k, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), serial) == 0)
            return 1;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (json_is_string(e) &&
                                        strcmp(json_string_value(e), serial) == 0) return 1;
    }
    return 0;
}

static int record_matches(const query_ctx *c, const json_t *rec)
{
    const qtsp_audit_filter *f = c->f;
    const char *time = json_string_value(json_object_get(rec, "time"));
    const char *event = json_string_value(json_object_get(rec, "event"));
    const char *actor = json_string_value(json_object_get(rec, "actor"));
    if (!time || !event || !actor)
        return 0;
    if ((f->since_ms && strcmp(time, c->since) < 0) || (f->until_ms && strcmp(time, c->until) > 0))
        return 0;
    if (f->event) {
        size_t n = strlen(f->event);
        if (n && f->event[n - 1] == '.' ? strncmp(event, f->event, n) != 0
                                        : strcmp(event, f->event) != 0)
            return 0;
    }
    if (f->actor && strcmp(actor, f->actor) != 0)
        return 0;
    return !f->serial || details_name(json_object_get(rec, "details"), f->serial);
}

static qtsp_status query_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen,
                             int *stop)
{
    query_ctx *c = ctx;
    ENSURE(klen == 8 && vlen >= AUDIT_HDR, QTSP_ERR_STORE_CORRUPT, "audit: malformed record");
    uint64_t seq = qtsp_be64_get(key);
    if (seq <= c->f->after)
        return QTSP_OK;
    if ((c->f->limit && c->matched == c->f->limit) ||
        (c->f->max_scan && c->scanned == c->f->max_scan)) {
        c->more = 1;
        *stop = 1;
        return QTSP_OK;
    }
    c->scanned++;
    c->last = seq;
    const char *body = (const char *)val + AUDIT_HDR;
    json_error_t err;
    json_t *rec = json_loadb(body, vlen - AUDIT_HDR, 0, &err);
    ENSURE(rec != NULL, QTSP_ERR_STORE_CORRUPT, "audit: record %llu is not JSON",
           (unsigned long long)seq);
    int m = record_matches(c, rec);
    json_decref(rec);
    if (!m)
        return QTSP_OK;
    c->matched++;
    return c->fn(c->ctx, seq, body, vlen - AUDIT_HDR);
}

qtsp_status qtsp_audit_query(qtsp_store *st, const qtsp_audit_filter *f, qtsp_audit_fn fn,
                             void *ctx, uint64_t *next)
{
    ENSURE(f && fn, QTSP_ERR_INVALID, "audit: no filter or function");
    query_ctx c = {.f = f, .fn = fn, .ctx = ctx};
    if (f->since_ms)
        qtsp_format_rfc3339_ms(f->since_ms, c.since, sizeof c.since);
    if (f->until_ms)
        qtsp_format_rfc3339_ms(f->until_ms, c.until, sizeof c.until);
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(st, 0, &txn));
    unsigned char key[8];
    qtsp_be64_put(key, f->after + 1);
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_AUDIT, key, sizeof key, query_one, &c);
    qtsp_txn_abort(txn);
    TRY(rc);
    if (next)
        *next = c.more ? c.last : 0;
    return QTSP_OK;
}

qtsp_status qtsp_audit_head(qtsp_txn *txn, uint64_t *seq, unsigned char hash[QTSP_AUDIT_HASH_LEN])
{
    qtsp_status rc = QTSP_OK;
    qtsp_buf k, v;
    qtsp_buf_init(&k, 64);
    qtsp_buf_init(&v, AUDIT_HDR + AUDIT_BODY_MAX);
    TRY_OUT(qtsp_txn_last(txn, QTSP_T_AUDIT, &k, &v));
    ENSURE_OUT(k.len == 8 && v.len >= AUDIT_HDR && v.data[0] == AUDIT_VERSION,
               QTSP_ERR_AUDIT_BROKEN, "audit: the last record is malformed");
    *seq = qtsp_be64_get(k.data);
    memcpy(hash, v.data + 1, AUDIT_HASH_LEN);
out:
    qtsp_buf_cleanup(&k);
    qtsp_buf_cleanup(&v);
    return rc;
}

qtsp_status qtsp_audit_hash_at(qtsp_txn *txn, uint64_t seq, unsigned char hash[QTSP_AUDIT_HASH_LEN])
{
    unsigned char key[8];
    qtsp_be64_put(key, seq);
    const void *v;
    size_t vl;
    TRY(qtsp_txn_get0(txn, QTSP_T_AUDIT, key, sizeof key, &v, &vl));
    const unsigned char *p = v;
    ENSURE(vl >= AUDIT_HDR && p[0] == AUDIT_VERSION, QTSP_ERR_AUDIT_BROKEN,
           "audit record %llu is malformed", (unsigned long long)seq);
    memcpy(hash, p + 1, AUDIT_HASH_LEN);
    return QTSP_OK;
}
