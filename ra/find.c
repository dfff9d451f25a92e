/* Finding things in the RA (issue 16): subjects by national id, name,
 * e-mail or phone; a subject's record; certificates by status; a
 * certificate's DER. Transport-free (ra/ra_http.c maps the routes).
 *
 * Search indexes share the table subject_index with the national-id index
 * ("CC:id" -> subject id), under prefixes that no country code has:
 *   "email:" lower-case(email) NUL subject id       -> subject id
 *   "phone:" phone NUL subject id                    -> subject id
 *   "name:"  fold(given " " surname) NUL subject id  -> subject id
 *   "name:"  fold(surname " " given) NUL subject id  -> subject id
 * fold = NFC + Unicode case folding (utf8proc), so a name search is a
 * case-insensitive prefix match on either order. Kept in the enrolment's
 * transaction; subjects enrolled before the indexes existed are indexed
 * once when the RA opens (meta "subject_search_index").
 *
 * Pages: at most QTSP_RA_PAGE_MAX results; an opaque cursor ("next", hex of
 * the last key visited) continues. A certificate listing examines at most
 * RA_SCAN_MAX status records per page (a page may then hold fewer results
 * and still give "next"), so a request's work is bounded however many
 * certificates the store holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/certdb.h"
#include "core/clock.h"
#include "core/codec.h"
#include "ra/ra_int.h"
#include "ra/validate.h"

#define RA_SCAN_MAX 10000
#define SEARCH_META "subject_search_index"
#define KEY_MAX 600

/* ---- index keys --------------------------------------------------------- */

static qtsp_status index_key(qtsp_buf *k, const char *prefix, const char *value, const char *sid)
{
    qtsp_buf_reset(k);
    TRY(qtsp_buf_puts(k, prefix));
    TRY(qtsp_buf_puts(k, value));
    if (sid) {
        TRY(qtsp_buf_append(k, "", 1));
        TRY(qtsp_buf_puts(k, sid));
    }
    ENSURE(k->len <= KEY_MAX, QTSP_ERR_TOO_BIG, "index key too long");
    return QTSP_OK;
}

/* The search keys of a subject record, one at a time: fn(key). */
static qtsp_status each_key(const json_t *rec, const char *sid,
                            qtsp_status (*fn)(qtsp_txn *, const qtsp_buf *, const char *),
                            qtsp_txn *txn)
{
    const char *given = json_string_value(json_object_get(rec, "given_name"));
    const char *surname = json_string_value(json_object_get(rec, "surname"));
    const char *email = json_string_value(json_object_get(rec, "email"));
    const char *phone = json_string_value(json_object_get(rec, "phone"));
    qtsp_status rc = QTSP_OK;
    qtsp_buf k;
    qtsp_buf_init(&k, KEY_MAX + 1);
    char v[1200];
    if (email) {
        size_t n = strlen(email) < sizeof v ? strlen(email) : sizeof v - 1;
        for (size_t i = 0; i < n; i++)
            v[i] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
        v[n] = '\0';
        TRY_OUT(index_key(&k, "email:", v, sid));
        TRY_OUT(fn(txn, &k, sid));
    }
    if (phone) {
        TRY_OUT(index_key(&k, "phone:", phone, sid));
        TRY_OUT(fn(txn, &k, sid));
    }
    if (given && surname) {
        char both[600];
        snprintf(both, sizeof both, "%s %s", given, surname);
        TRY_OUT(qtsp_fold_name(both, v, sizeof v));
        TRY_OUT(index_key(&k, "name:", v, sid));
        TRY_OUT(fn(txn, &k, sid));
        snprintf(both, sizeof both, "%s %s", surname, given);
        TRY_OUT(qtsp_fold_name(both, v, sizeof v));
        TRY_OUT(index_key(&k, "name:", v, sid));
        TRY_OUT(fn(txn, &k, sid));
    }
out:
    qtsp_buf_cleanup(&k);
    return rc;
}

static qtsp_status put_key(qtsp_txn *txn, const qtsp_buf *k, const char *sid)
{
    return qtsp_txn_put(txn, QTSP_T_SUBJECT_INDEX, k->data, k->len, sid, strlen(sid), 0);
}

static qtsp_status del_key(qtsp_txn *txn, const qtsp_buf *k, const char *sid)
{
    (void)sid;
    qtsp_status rc = qtsp_txn_del(txn, QTSP_T_SUBJECT_INDEX, k->data, k->len);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        return QTSP_OK;
    }
    return rc;
}

qtsp_status ra_search_index(qtsp_txn *txn, const json_t *rec, const char *sid, int add)
{
    return each_key(rec, sid, add ? put_key : del_key, txn);
}

typedef struct backfill_ctx {
    qtsp_txn *txn;
    size_t n;
} backfill_ctx;

static qtsp_status backfill_one(void *vctx, const void *key, size_t klen, const void *val,
                                size_t vlen, int *stop)
{
    (void)stop;
    backfill_ctx *c = vctx;
    const unsigned char *p = val;
    char sid[48];
    ENSURE(klen > 0 && klen < sizeof sid && vlen >= 1, QTSP_ERR_STORE_CORRUPT,
           "subject record malformed");
    memcpy(sid, key, klen);
    sid[klen] = '\0';
    json_error_t err;
    json_t *rec = json_loadb((const char *)p + 1, vlen - 1, 0, &err);
    ENSURE(rec != NULL, QTSP_ERR_STORE_CORRUPT, "subject %s is not JSON", sid);
    qtsp_status rc = ra_search_index(c->txn, rec, sid, 1);
    json_decref(rec);
    c->n++;
    return rc;
}

static qtsp_status backfill_txn(qtsp_txn *txn, void *vctx)
{
    backfill_ctx *c = vctx;
    c->txn = txn;
    c->n = 0;
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_META, SEARCH_META, strlen(SEARCH_META), &v, &vl);
    if (rc == QTSP_OK)
        return QTSP_OK; /* another process did it */
    ENSURE(rc == QTSP_ERR_NOT_FOUND, rc, "cannot read meta");
    qtsp_err_clear();
    TRY(qtsp_txn_iter(txn, QTSP_T_SUBJECTS, NULL, 0, backfill_one, c));
    return qtsp_txn_put(txn, QTSP_T_META, SEARCH_META, strlen(SEARCH_META), "1", 1, 0);
}

qtsp_status qtsp_ra_search_prepare(qtsp_ra *ra)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_META, SEARCH_META, strlen(SEARCH_META), &v, &vl);
    qtsp_txn_abort(txn);
    if (rc == QTSP_OK)
        return QTSP_OK;
    ENSURE(rc == QTSP_ERR_NOT_FOUND, rc, "cannot read meta");
    qtsp_err_clear();
    backfill_ctx c = {0};
    return qtsp_store_write(ra->d.store, backfill_txn, &c);
}

/* ---- cursors ------------------------------------------------------------ */

static qtsp_status cursor_decode(const char *cur, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = strlen(cur);
    ENSURE(n > 0 && n % 2 == 0 && n / 2 <= cap, QTSP_ERR_INVALID, "cursor: not one of ours");
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = cur[2 * i + (size_t)j];
            int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            ENSURE(d >= 0, QTSP_ERR_INVALID, "cursor: not one of ours");
            v = v * 16 + (unsigned)d;
        }
        out[i] = (unsigned char)v;
    }
    *len = n / 2;
    return QTSP_OK;
}

static json_t *cursor_encode(const void *key, size_t len)
{
    char *hex = malloc(2 * len + 1);
    if (!hex)
        return NULL;
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)key)[i]);
    json_t *s = json_string(hex);
    free(hex);
    return s;
}

static qtsp_status check_limit(size_t limit)
{
    ENSURE(limit >= 1 && limit <= QTSP_RA_PAGE_MAX, QTSP_ERR_INVALID, "limit: 1 to %d",
           QTSP_RA_PAGE_MAX);
    return QTSP_OK;
}

/* ---- subjects ----------------------------------------------------------- */

/* What a listing shows of a subject (no history, no evidence). */
static json_t *subject_summary(const json_t *rec)
{
    static const char *const keys[] = {"subject_id", "given_name",  "surname", "country",
                                       "id_type",    "national_id", "email",   "phone",
                                       "package",    "enrolled_at", NULL};
    json_t *o = json_object();
    for (size_t i = 0; o && keys[i]; i++) {
        json_t *v = json_object_get(rec, keys[i]);
        if (v)
            json_object_set(o, keys[i], v);
    }
    if (o && !json_object_get(o, "id_type"))
        json_object_set_new(o, "id_type", json_string("PNO"));
    return o;
}

qtsp_status qtsp_ra_subject_get(qtsp_ra *ra, const qtsp_actor *who, const char *sid, json_t **out)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "reading a subject"));
    ENSURE(sid && strlen(sid) < 40, QTSP_ERR_NOT_FOUND, "no such subject");
    qtsp_txn *txn;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    json_t *rec = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_SUBJECTS, sid, &rec);
    qtsp_txn_abort(txn);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_NOT_FOUND, "no subject %s", sid);
    }
    TRY(rc);
    if (!json_object_get(rec, "id_type"))
        json_object_set_new(rec, "id_type", json_string("PNO"));
    *out = rec;
    return QTSP_OK;
}

typedef struct search_ctx {
    qtsp_txn *txn;
    const char *prefix;
    size_t plen;
    size_t limit;
    json_t *arr;
    json_t *next; /* cursor of the last key in the page */
    int more;     /* another match follows the page */
} search_ctx;

static qtsp_status search_one(void *vctx, const void *key, size_t klen, const void *val,
                              size_t vlen, int *stop)
{
    search_ctx *c = vctx;
    if (klen < c->plen || memcmp(key, c->prefix, c->plen) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    if (json_array_size(c->arr) == c->limit) {
        c->more = 1;
        *stop = 1;
        return QTSP_OK;
    }
    char sid[48];
    ENSURE(vlen > 0 && vlen < sizeof sid, QTSP_ERR_STORE_CORRUPT, "index entry malformed");
    memcpy(sid, val, vlen);
    sid[vlen] = '\0';
    json_t *rec = NULL;
    TRY(ra_get_json(c->txn, QTSP_T_SUBJECTS, sid, &rec));
    json_t *o = subject_summary(rec);
    json_decref(rec);
    ENSURE(o && json_array_append_new(c->arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    json_decref(c->next);
    c->next = cursor_encode(key, klen);
    ENSURE(c->next, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* Subjects whose key in subject_index starts with prefix, after cursor. */
static qtsp_status search_prefix(qtsp_txn *txn, const qtsp_buf *prefix, const char *cursor,
                                 size_t limit, json_t *arr, json_t **next)
{
    unsigned char start[KEY_MAX + 64];
    size_t slen = 0;
    if (cursor) {
        TRY(cursor_decode(cursor, start, sizeof start - 1, &slen));
        ENSURE(slen >= prefix->len && memcmp(start, prefix->data, prefix->len) == 0,
               QTSP_ERR_INVALID, "cursor: does not belong to this search");
        start[slen++] = 0; /* the first key after the cursor */
    } else {
        memcpy(start, prefix->data, prefix->len);
        slen = prefix->len;
    }
    search_ctx c = {txn, (const char *)prefix->data, prefix->len, limit, arr, NULL, 0};
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_SUBJECT_INDEX, start, slen, search_one, &c);
    if (rc != QTSP_OK || !c.more) {
        json_decref(c.next);
        c.next = NULL;
    }
    TRY(rc);
    *next = c.next;
    return QTSP_OK;
}

qtsp_status qtsp_ra_subject_search(qtsp_ra *ra, const qtsp_actor *who, const qtsp_ra_search *q,
                                   json_t **out)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "searching subjects"));
    int n = !!q->national_id + !!q->name + !!q->email + !!q->phone;
    ENSURE(n == 1, QTSP_ERR_INVALID,
           "give exactly one of national_id (with country), name, email or phone");
    ENSURE(!q->country || q->national_id, QTSP_ERR_INVALID, "country: only with national_id");
    TRY(check_limit(q->limit));
    qtsp_status rc = QTSP_OK;
    qtsp_buf prefix;
    qtsp_buf_init(&prefix, KEY_MAX + 1);
    char v[1200];
    const char *country = q->country;
    if (q->national_id) {
        if (country)
            TRY_OUT(qtsp_valid_country(country));
        ENSURE_OUT(strlen(q->national_id) >= 1 && strlen(q->national_id) <= 64 &&
                       !strchr(q->national_id, ':'),
                   QTSP_ERR_INVALID, "national_id: 1 to 64 characters");
        ENSURE_OUT(q->cursor == NULL, QTSP_ERR_INVALID,
                   "cursor: a national id search has one page");
        ENSURE_OUT(!q->id_type || strcmp(q->id_type, "PNO") == 0 ||
                       strcmp(q->id_type, "IDC") == 0 || strcmp(q->id_type, "PAS") == 0 ||
                       strcmp(q->id_type, "TIN") == 0,
                   QTSP_ERR_INVALID, "id_type: PNO, IDC, PAS or TIN");
    } else if (q->id_type) {
        FAIL_OUT(QTSP_ERR_INVALID, "id_type: only with national_id");
    } else if (q->email) {
        ENSURE_OUT(strlen(q->email) >= 1 && strlen(q->email) <= 254, QTSP_ERR_INVALID,
                   "email: 1 to 254 characters");
        size_t i = 0;
        for (; q->email[i]; i++)
            v[i] =
                (char)((q->email[i] >= 'A' && q->email[i] <= 'Z') ? q->email[i] + 32 : q->email[i]);
        v[i] = '\0';
        TRY_OUT(index_key(&prefix, "email:", v, ""));
    } else if (q->phone) {
        TRY_OUT(qtsp_valid_phone(q->phone));
        TRY_OUT(index_key(&prefix, "phone:", q->phone, ""));
    } else {
        TRY_OUT(qtsp_valid_name("name", q->name, 129));
        TRY_OUT(qtsp_fold_name(q->name, v, sizeof v));
        TRY_OUT(index_key(&prefix, "name:", v, NULL)); /* a prefix of the name */
    }
    json_t *arr = json_array(), *next = NULL;
    ENSURE_OUT(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_txn *txn = NULL;
    rc = qtsp_store_begin(ra->d.store, 0, &txn);
    if (rc == QTSP_OK && q->national_id) {
        /* "CC:id" (ra.c); without a country, every code */
        const char *codes = country ? country : qtsp_country_codes();
        for (const char *p = codes; rc == QTSP_OK && p[0] && p[1]; p += p[2] ? 3 : 2) {
            char key[128], cc[3] = {p[0], p[1], 0}, sid[48];
            ra_id_index_key(cc, q->id_type, q->national_id, key);
            const void *val;
            size_t vl;
            rc = qtsp_txn_get0(txn, QTSP_T_SUBJECT_INDEX, key, strlen(key), &val, &vl);
            if (rc == QTSP_ERR_NOT_FOUND) {
                qtsp_err_clear();
                rc = QTSP_OK;
                if (country)
                    break;
                continue;
            }
            if (rc != QTSP_OK || vl == 0 || vl >= sizeof sid)
                break;
            memcpy(sid, val, vl);
            sid[vl] = '\0';
            json_t *rec = NULL;
            rc = ra_get_json(txn, QTSP_T_SUBJECTS, sid, &rec);
            if (rc == QTSP_OK) {
                json_t *o = subject_summary(rec);
                json_decref(rec);
                if (!o || json_array_append_new(arr, o) != 0)
                    rc = qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
            }
            if (country || json_array_size(arr) >= q->limit)
                break;
        }
    } else if (rc == QTSP_OK) {
        rc = search_prefix(txn, &prefix, q->cursor, q->limit, arr, &next);
    }
    qtsp_txn_abort(txn);
    if (rc != QTSP_OK) {
        json_decref(arr);
        goto out;
    }
    json_t *o = json_pack("{s:o}", "subjects", arr);
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (next)
        json_object_set_new(o, "next", next);
    *out = o;
out:
    qtsp_buf_cleanup(&prefix);
    return rc;
}

/* ---- certificates ------------------------------------------------------- */

typedef struct list_ctx {
    const char *want;
    size_t limit;
    time_t now;
    size_t scanned;
    json_t *arr;
    unsigned char last[QTSP_SERIAL_MAX];
    size_t last_len;
    int more;
} list_ctx;

static qtsp_status list_one(void *vctx, const unsigned char *serial, size_t slen,
                            const qtsp_cert_status *st, int *stop)
{
    list_ctx *c = vctx;
    if (json_array_size(c->arr) == c->limit || c->scanned == RA_SCAN_MAX) {
        c->more = 1;
        *stop = 1;
        return QTSP_OK;
    }
    c->scanned++;
    memcpy(c->last, serial, slen);
    c->last_len = slen;
    json_t *o = ra_status_json(serial, slen, st, c->now);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (strcmp(json_string_value(json_object_get(o, "status")), c->want) != 0) {
        json_decref(o);
        return QTSP_OK;
    }
    ENSURE(json_array_append_new(c->arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_ra_cert_list(qtsp_ra *ra, const qtsp_actor *who, const char *status, size_t limit,
                              const char *cursor, json_t **out)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE | QTSP_ROLE_AUDITOR,
                        "listing certificates"));
    ENSURE(status && (strcmp(status, "valid") == 0 || strcmp(status, "on-hold") == 0 ||
                      strcmp(status, "revoked") == 0 || strcmp(status, "expired") == 0),
           QTSP_ERR_INVALID, "status: valid, on-hold, revoked or expired");
    TRY(check_limit(limit));
    unsigned char after[QTSP_SERIAL_MAX];
    size_t alen = 0;
    if (cursor) {
        TRY(cursor_decode(cursor, after, sizeof after, &alen));
        ENSURE(alen >= 1, QTSP_ERR_INVALID, "cursor: not one of ours");
    }
    list_ctx c = {.want = status, .limit = limit, .now = qtsp_now(), .arr = json_array()};
    ENSURE(c.arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    /* held and revoked certificates are all in the revoked index (small);
     * valid and expired ones only in the status table */
    int revoked_only = strcmp(status, "on-hold") == 0 || strcmp(status, "revoked") == 0;
    qtsp_txn *txn;
    qtsp_status rc = qtsp_store_begin(ra->d.store, 0, &txn);
    if (rc == QTSP_OK) {
        rc = qtsp_certdb_status_scan(txn, revoked_only, cursor ? after : NULL, alen, list_one, &c);
        qtsp_txn_abort(txn);
    }
    if (rc != QTSP_OK) {
        json_decref(c.arr);
        return rc;
    }
    json_t *o = json_pack("{s:s,s:o}", "status", status, "certificates", c.arr);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (c.more && c.last_len)
        json_object_set_new(o, "next", cursor_encode(c.last, c.last_len));
    *out = o;
    return QTSP_OK;
}

qtsp_status qtsp_ra_cert_get(qtsp_ra *ra, const unsigned char *serial, size_t slen, int pem,
                             qtsp_buf *out)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    qtsp_status rc = qtsp_certdb_get(txn, serial, slen, &rec);
    qtsp_txn_abort(txn);
    if (rc == QTSP_ERR_NOT_FOUND)
        return ra_no_such_cert(serial, slen);
    TRY(rc);
    qtsp_buf_reset(out);
    if (!pem) {
        rc = qtsp_buf_append(out, rec.der, rec.der_len);
    } else {
        const unsigned char *p = rec.der;
        X509 *x = d2i_X509(NULL, &p, (long)rec.der_len);
        char *txt = x ? ra_x509_pem(x) : NULL;
        rc = txt ? qtsp_buf_puts(out, txt)
                 : qtsp_err_set(QTSP_ERR_CRYPTO, __FILE__, __LINE__, "cannot encode PEM");
        free(txt);
        X509_free(x);
    }
    qtsp_cert_record_cleanup(&rec);
    return rc;
}

qtsp_status qtsp_ra_audit_query(qtsp_ra *ra, const qtsp_audit_filter *f, qtsp_audit_fn fn,
                                void *ctx, uint64_t *next)
{
    return qtsp_audit_query(ra->d.store, f, fn, ctx, next);
}
