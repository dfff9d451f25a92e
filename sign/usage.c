/* Signing packages, relying parties and the usage history (issue 13,
 * docs/csc.md "Packages, relying parties, history").
 *
 * Records (the RA's format: version byte + compact JSON, ra/ra_int.h):
 *   relying_parties  name -> {"name","secret_hash","created_at","created_by"}
 *   history          user|0|be64(~time_ms)|be64(~seq) -> the signing
 *                    (inverted so a forward walk gives the newest first)
 * Counters (u64 big-endian values):
 *   quota            subject|0|be64(window start) -> signatures the package paid
 *   rp_usage         relying party|0|"YYYY-MM" -> signatures it paid
 * The quota is the subject's (the package is enrolled with the person, and
 * every certificate of that person draws on it). */
#include "sign/usage.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/json.h"
#include "core/time.h"
#include "core/yaml.h"
#include "ra/activation.h"
#include "ra/ra_int.h"

#define USER_ID_MAX 64
#define CRED_ID_MAX 64
#define HASH_B64_MAX 256
#define OID_MAX 64
#define SAD_ID_MAX 128
#define RP_SECRET_BYTES 32
#define RP_SECRET_MAX 128
#define PRICE_MAX_CENTS INT64_C(100000000000) /* 1e9 in units */

struct qtsp_usage {
    qtsp_store *st;
    qtsp_packages pk;
};

/* ---- the policy ---- */

/* "12", "4.9", "4.90": a non-negative amount with at most two decimals. */
static qtsp_status parse_price(const qtsp_ynode *map, const char *key, int64_t *cents)
{
    const qtsp_ynode *n = qtsp_ynode_get(map, key);
    if (!n)
        return QTSP_OK;
    const char *s = qtsp_ynode_scalar(n);
    int64_t units = 0, frac = 0;
    size_t i = 0, fd = 0;
    for (; s && s[i] >= '0' && s[i] <= '9' && units <= PRICE_MAX_CENTS / 100; i++)
        units = units * 10 + (s[i] - '0');
    int ok = s && i > 0 && units <= PRICE_MAX_CENTS / 100;
    if (ok && s[i] == '.') {
        for (i++; s[i] >= '0' && s[i] <= '9' && fd < 2; i++, fd++)
            frac = frac * 10 + (s[i] - '0');
        ok = fd > 0;
    }
    if (!ok || s[i] != '\0')
        return qtsp_ynode_fail(n, key, "must be an amount like 4.90 (at most two decimals)");
    *cents = units * 100 + (fd == 1 ? frac * 10 : frac);
    return QTSP_OK;
}

qtsp_status qtsp_packages_load(const char *path, qtsp_packages *out)
{
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    qtsp_packages *ps = calloc(1, sizeof *ps);
    ENSURE_OUT(ps != NULL, QTSP_ERR_NOMEM, "out of memory");
    snprintf(ps->currency, sizeof ps->currency, "EUR");
    ps->rp_price_cents = -1;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const top[] = {"version", "currency", "relying_party_price", "packages",
                                      NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, top));
    const char *cur = NULL;
    TRY_OUT(qtsp_yget_str(root, "currency", 0, &cur));
    if (cur) {
        if (strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
            TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(root, "currency"), "currency",
                                    "must be an ISO 4217 code like EUR"));
        snprintf(ps->currency, sizeof ps->currency, "%s", cur);
    }
    TRY_OUT(parse_price(root, "relying_party_price", &ps->rp_price_cents));
    const qtsp_ynode *pk = qtsp_ynode_get(root, "packages");
    ENSURE_OUT(pk && qtsp_ynode_kind(pk) == QTSP_Y_MAP && qtsp_ynode_count(pk) > 0, QTSP_ERR_CONFIG,
               "%s: packages: must be a non-empty map", path);
    ENSURE_OUT(qtsp_ynode_count(pk) <= QTSP_MAX_PACKAGES, QTSP_ERR_CONFIG,
               "%s: packages: at most %d", path, QTSP_MAX_PACKAGES);
    for (size_t i = 0; i < qtsp_ynode_count(pk); i++) {
        const qtsp_ynode *p = qtsp_ynode_value(pk, i);
        const char *name = qtsp_ynode_key(pk, i);
        static const char *const keys[] = {"signatures", "period", "validity", "price", NULL};
        TRY_OUT(qtsp_ynode_check_keys(p, keys));
        if (!name || !*name || strlen(name) > QTSP_PACKAGE_NAME_MAX)
            TRY_OUT(qtsp_ynode_fail(p, name, "package names have 1 to %d characters",
                                    QTSP_PACKAGE_NAME_MAX));
        qtsp_package *dst = &ps->p[ps->n++];
        snprintf(dst->name, sizeof dst->name, "%s", name);
        dst->price_cents = -1;
        TRY_OUT(qtsp_yget_int(p, "signatures", 1, 0, 1000000, &dst->signatures));
        TRY_OUT(qtsp_yget_duration(p, "period", 1, &dst->period_s));
        TRY_OUT(qtsp_yget_duration(p, "validity", 1, &dst->validity_s));
        if (dst->period_s <= 0)
            TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(p, "period"), "period", "must be at least 1s"));
        TRY_OUT(parse_price(p, "price", &dst->price_cents));
    }
    *out = *ps;
out:
    free(ps);
    qtsp_ydoc_free(doc);
    return rc;
}

const qtsp_package *qtsp_packages_find(const qtsp_packages *ps, const char *name)
{
    for (size_t i = 0; name && i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0)
            return &ps->p[i];
    return NULL;
}

qtsp_status qtsp_usage_new(qtsp_store *st, const char *policies_dir, qtsp_usage **out)
{
    ENSURE(st && policies_dir, QTSP_ERR_INVALID, "usage: no store or policies");
    qtsp_usage *u = calloc(1, sizeof *u);
    ENSURE(u != NULL, QTSP_ERR_NOMEM, "out of memory");
    char path[1200];
    snprintf(path, sizeof path, "%s/packages.yaml", policies_dir);
    qtsp_status rc = qtsp_packages_load(path, &u->pk);
    if (rc != QTSP_OK) {
        free(u);
        return rc;
    }
    u->st = st;
    *out = u;
    return QTSP_OK;
}

void qtsp_usage_free(qtsp_usage *u)
{
    free(u);
}

const qtsp_packages *qtsp_usage_packages(const qtsp_usage *u)
{
    return &u->pk;
}

/* ---- the signer's package and window ---- */

typedef struct plan {
    char subject_id[48];
    char package[QTSP_PACKAGE_NAME_MAX + 1];
    const qtsp_package *p; /* NULL: the subject's package left the policy */
    int64_t since;         /* package start */
    int64_t ws, we;        /* current window [ws, we) */
    int64_t valid_until;   /* 0: no end */
    int ended;
    uint64_t used; /* signatures counted in [ws, we) */
} plan;

/* Windows of length P from the start S, the last one cut at the end of
 * validity: window k is [S + kP, min(S + (k+1)P, S + V)). Exact to the
 * second; before S (a clock set back) the first window applies. */
static void window_at(plan *pl, int64_t now)
{
    const qtsp_package *p = pl->p;
    pl->valid_until = p->validity_s > 0 ? pl->since + p->validity_s : 0;
    pl->ended = pl->valid_until && now >= pl->valid_until;
    int64_t t = now < pl->since ? pl->since : now;
    if (pl->ended)
        t = pl->valid_until - 1; /* the last window, for the record */
    int64_t k = (t - pl->since) / p->period_s;
    pl->ws = pl->since + k * p->period_s;
    pl->we = pl->ws + p->period_s;
    if (pl->valid_until && pl->we > pl->valid_until)
        pl->we = pl->valid_until;
}

static size_t quota_key(const char *subject_id, int64_t ws, unsigned char *key)
{
    size_t n = strlen(subject_id);
    memcpy(key, subject_id, n);
    key[n] = 0;
    qtsp_be64_put(key + n + 1, (uint64_t)ws);
    return n + 9;
}

static int id_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static qtsp_status no_user(const char *user_id)
{
    qtsp_err_clear();
    FAIL(QTSP_ERR_NOT_FOUND, "no signer %s", user_id);
}

/* The signer's subject, package and current window, read in txn. */
static qtsp_status plan_of(qtsp_usage *u, qtsp_txn *txn, const char *user_id, int64_t now, plan *pl)
{
    if (!id_ok(user_id, USER_ID_MAX))
        return no_user(user_id ? user_id : "");
    memset(pl, 0, sizeof *pl);
    json_t *user = NULL, *subj = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_USERS, user_id, &user);
    if (rc == QTSP_ERR_NOT_FOUND)
        return no_user(user_id);
    TRY(rc);
    const char *sid = json_string_value(json_object_get(user, "subject_id"));
    ENSURE_OUT(sid && strlen(sid) < sizeof pl->subject_id, QTSP_ERR_STORE_CORRUPT,
               "signer %s has no subject", user_id);
    snprintf(pl->subject_id, sizeof pl->subject_id, "%s", sid);
    TRY_OUT(ra_get_json(txn, QTSP_T_SUBJECTS, pl->subject_id, &subj));
    const char *pkg = json_string_value(json_object_get(subj, "package"));
    const char *since = json_string_value(json_object_get(subj, "package_since"));
    if (!since)
        since = json_string_value(json_object_get(subj, "enrolled_at"));
    ENSURE_OUT(pkg && since, QTSP_ERR_STORE_CORRUPT, "subject %s has no package or enrolment time",
               pl->subject_id);
    time_t t0;
    TRY_OUT(qtsp_parse_rfc3339("package_since", since, &t0));
    pl->since = (int64_t)t0;
    snprintf(pl->package, sizeof pl->package, "%s", pkg);
    pl->p = qtsp_packages_find(&u->pk, pkg);
    if (pl->p) {
        window_at(pl, now);
        unsigned char key[sizeof pl->subject_id + 9];
        TRY_OUT(qtsp_txn_u64_get(txn, QTSP_T_QUOTA, key, quota_key(pl->subject_id, pl->ws, key),
                                 &pl->used));
    }
out:
    json_decref(user);
    json_decref(subj);
    return rc;
}

static qtsp_status set_time(json_t *o, const char *name, int64_t t)
{
    char s[32];
    qtsp_format_rfc3339((time_t)t, s, sizeof s);
    ENSURE(json_object_set_new(o, name, json_string(s)) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* ---- relying parties ---- */

static int rp_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > QTSP_RP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* An argon2id hash of nothing anyone knows, verified for unknown names so
 * that a wrong name costs what a wrong secret costs. */
static char g_dummy_hash[160];
static pthread_once_t g_dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy_hash(void)
{
    unsigned char r[16];
    char pw[32];
    g_dummy_hash[0] = '\0';
    if (qtsp_random(r, sizeof r) == QTSP_OK) {
        qtsp_base64url_encode(r, sizeof r, pw, sizeof pw);
        if (qtsp_password_hash(pw, g_dummy_hash, sizeof g_dummy_hash) != QTSP_OK)
            g_dummy_hash[0] = '\0';
        OPENSSL_cleanse(pw, sizeof pw);
    }
    qtsp_err_clear();
}

qtsp_status qtsp_usage_rp_check(qtsp_usage *u, const char *header, char *name, size_t cap)
{
    ENSURE(header, QTSP_ERR_INVALID, "X-QTSP-Relying-Party: missing");
    const char *colon = strchr(header, ':');
    size_t nl = colon ? (size_t)(colon - header) : 0;
    ENSURE(colon && rp_name_ok(header, nl), QTSP_ERR_INVALID,
           "X-QTSP-Relying-Party: must be NAME:SECRET (name of 1 to %d letters, digits, . _ -)",
           QTSP_RP_NAME_MAX);
    const char *secret = colon + 1;
    size_t sl = strlen(secret);
    ENSURE(sl > 0 && sl <= RP_SECRET_MAX &&
               strspn(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                              "wxyz0123456789-_") == sl,
           QTSP_ERR_INVALID, "X-QTSP-Relying-Party: the secret is malformed");
    ENSURE(cap > nl, QTSP_ERR_INVALID, "relying party name buffer too small");
    char nm[QTSP_RP_NAME_MAX + 1];
    memcpy(nm, header, nl);
    nm[nl] = '\0';

    char hash[160] = "";
    qtsp_txn *txn;
    TRY(qtsp_store_begin(u->st, 0, &txn));
    json_t *rec = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_RPS, nm, &rec);
    qtsp_txn_abort(txn);
    if (rc == QTSP_OK) {
        const char *h = json_string_value(json_object_get(rec, "secret_hash"));
        snprintf(hash, sizeof hash, "%s", h ? h : "");
        json_decref(rec);
    } else if (rc != QTSP_ERR_NOT_FOUND) {
        return rc;
    }
    qtsp_err_clear();
    if (rc != QTSP_OK || !hash[0]) {
        pthread_once(&g_dummy_once, make_dummy_hash);
        snprintf(hash, sizeof hash, "%s", g_dummy_hash);
    }
    /* the dummy never verifies: nobody knows its password */
    rc = hash[0] ? qtsp_password_verify(hash, secret) : QTSP_ERR_AUTH;
    OPENSSL_cleanse(hash, sizeof hash);
    if (rc != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "unknown relying party or wrong secret");
    }
    memcpy(name, nm, nl + 1);
    return QTSP_OK;
}

typedef struct rp_add_ctx {
    const char *actor, *name;
    json_t *rec;
} rp_add_ctx;

static qtsp_status rp_add_txn(qtsp_txn *txn, void *vctx)
{
    rp_add_ctx *c = vctx;
    qtsp_status rc = ra_put_json(txn, QTSP_T_RPS, c->name, c->rec, QTSP_PUT_NOOVERWRITE);
    if (rc == QTSP_ERR_EXISTS) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_EXISTS, "a relying party called %s exists already", c->name);
    }
    TRY(rc);
    json_t *d = json_pack("{s:s}", "name", c->name);
    ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    rc = qtsp_audit_append(txn, c->actor, "rp.add", d, NULL);
    json_decref(d);
    return rc;
}

qtsp_status qtsp_usage_rp_add(qtsp_usage *u, const char *actor, const char *name, char *secret,
                              size_t cap)
{
    ENSURE(secret && cap >= 64, QTSP_ERR_INVALID, "secret buffer too small");
    ENSURE(name && rp_name_ok(name, strlen(name)), QTSP_ERR_INVALID,
           "name: 1 to %d letters, digits, '.', '_' or '-'", QTSP_RP_NAME_MAX);
    unsigned char r[RP_SECRET_BYTES];
    char sec[64], hash[160];
    TRY(qtsp_random(r, sizeof r));
    qtsp_base64url_encode(r, sizeof r, sec, sizeof sec);
    OPENSSL_cleanse(r, sizeof r);
    qtsp_status rc = qtsp_password_hash(sec, hash, sizeof hash);
    json_t *rec = NULL;
    if (rc == QTSP_OK) {
        char when[32];
        qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
        rec = json_pack("{s:s,s:s,s:s,s:s}", "name", name, "secret_hash", hash, "created_at", when,
                        "created_by", actor);
        rc = rec ? QTSP_OK : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    if (rc == QTSP_OK) {
        rp_add_ctx c = {actor, name, rec};
        rc = qtsp_store_write(u->st, rp_add_txn, &c);
    }
    if (rc == QTSP_OK)
        snprintf(secret, cap, "%s", sec);
    json_decref(rec);
    OPENSSL_cleanse(sec, sizeof sec);
    OPENSSL_cleanse(hash, sizeof hash);
    return rc;
}

static qtsp_status rp_list_one(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen, int *stop)
{
    const unsigned char *p = val;
    ENSURE(vlen >= 1 && p[0] == 1, QTSP_ERR_STORE_CORRUPT, "a relying party record is malformed");
    json_t *o = json_loadb((const char *)p + 1, vlen - 1, 0, NULL);
    ENSURE(o && json_is_object(o), QTSP_ERR_STORE_CORRUPT, "a relying party record is not JSON");
    json_object_del(o, "secret_hash");
    ENSURE(json_array_append_new(ctx, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

static qtsp_status read_walk(qtsp_usage *u, qtsp_table t, const void *start, size_t slen,
                             qtsp_iter_fn fn, void *ctx)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(u->st, 0, &txn));
    qtsp_status rc = qtsp_txn_iter(txn, t, start, slen, fn, ctx);
    qtsp_txn_abort(txn);
    return rc;
}

/* *out = {name: arr} on success; arr is consumed either way. */
static qtsp_status wrap_array(json_t **out, const char *name, json_t *arr, qtsp_status rc)
{
    if (rc == QTSP_OK) {
        json_t *o = json_pack("{s:o}", name, arr);
        ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
        *out = o;
        return QTSP_OK;
    }
    json_decref(arr);
    return rc;
}

qtsp_status qtsp_usage_rp_list(qtsp_usage *u, json_t **out)
{
    json_t *arr = json_array();
    ENSURE(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = read_walk(u, QTSP_T_RPS, NULL, 0, rp_list_one, arr);
    return wrap_array(out, "relying_parties", arr, rc);
}

static int month_ok(const char *m)
{
    return m && strlen(m) == 7 && strspn(m, "0123456789") == 4 && m[4] == '-' &&
           strspn(m + 5, "0123456789") == 2 &&
           ((m[5] == '0' && m[6] >= '1') || (m[5] == '1' && m[6] <= '2'));
}

typedef struct report_ctx {
    const qtsp_usage *u;
    const char *month;
    json_t *arr;
} report_ctx;

static qtsp_status report_one(void *vctx, const void *key, size_t klen, const void *val,
                              size_t vlen, int *stop)
{
    report_ctx *c = vctx;
    const char *k = key;
    ENSURE(klen > 8 && k[klen - 8] == '\0' && vlen == 8, QTSP_ERR_STORE_CORRUPT,
           "an rp_usage record is malformed");
    char month[8];
    memcpy(month, k + klen - 7, 7);
    month[7] = '\0';
    if (c->month && strcmp(month, c->month) != 0)
        return QTSP_OK;
    uint64_t n = qtsp_be64_get(val);
    json_t *o = json_pack("{s:s%,s:s,s:I}", "relying_party", k, klen - 8, "month", month,
                          "signatures", (json_int_t)n);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (c->u->pk.rp_price_cents >= 0) {
        /* cents as a decimal string: no binary floating point in money */
        uint64_t cents = n * (uint64_t)c->u->pk.rp_price_cents;
        char amt[32];
        snprintf(amt, sizeof amt, "%llu.%02llu", (unsigned long long)(cents / 100),
                 (unsigned long long)(cents % 100));
        json_object_set_new(o, "amount", json_string(amt));
    }
    ENSURE(json_array_append_new(c->arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_usage_rp_report(qtsp_usage *u, const char *month, json_t **out)
{
    ENSURE(!month || month_ok(month), QTSP_ERR_INVALID, "month: must be YYYY-MM");
    report_ctx c = {u, month, json_array()};
    ENSURE(c.arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = read_walk(u, QTSP_T_RP_USAGE, NULL, 0, report_one, &c);
    json_t *o = NULL;
    TRY(wrap_array(&o, "usage", c.arr, rc));
    json_object_set_new(o, "currency", json_string(u->pk.currency));
    if (u->pk.rp_price_cents >= 0) {
        char p[32];
        snprintf(p, sizeof p, "%lld.%02lld", (long long)(u->pk.rp_price_cents / 100),
                 (long long)(u->pk.rp_price_cents % 100));
        json_object_set_new(o, "price_per_signature", json_string(p));
    } else {
        json_object_set_new(o, "price_per_signature", json_null());
    }
    *out = o;
    return QTSP_OK;
}

/* ---- charging ---- */

static qtsp_status check_signing(const qtsp_signing *s)
{
    ENSURE(s, QTSP_ERR_INVALID, "no signing");
    ENSURE(id_ok(s->credential_id, CRED_ID_MAX), QTSP_ERR_INVALID, "credentialID: malformed");
    ENSURE(s->n >= 1 && s->n <= QTSP_USAGE_MAX_SIGNATURES && s->hashes, QTSP_ERR_INVALID,
           "numSignatures: 1 to %d", QTSP_USAGE_MAX_SIGNATURES);
    for (size_t i = 0; i < s->n; i++)
        ENSURE(id_ok(s->hashes[i], HASH_B64_MAX), QTSP_ERR_INVALID, "hashes: malformed entry %zu",
               i);
    ENSURE(id_ok(s->hash_oid, OID_MAX), QTSP_ERR_INVALID, "hashAlgorithmOID: malformed");
    ENSURE(!s->sad_id || id_ok(s->sad_id, SAD_ID_MAX), QTSP_ERR_INVALID, "SAD id: malformed");
    ENSURE(!s->relying_party || rp_name_ok(s->relying_party, strlen(s->relying_party)),
           QTSP_ERR_INVALID, "relying party: malformed name");
    return QTSP_OK;
}

static qtsp_status history_record(const qtsp_signing *s, const plan *pl, int64_t now_ms,
                                  json_t **out)
{
    json_t *h = json_array();
    ENSURE(h != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++)
        if (json_array_append_new(h, json_string(s->hashes[i])) != 0) {
            json_decref(h);
            FAIL(QTSP_ERR_NOMEM, "out of memory");
        }
    json_t *o = json_pack("{s:s,s:s,s:o,s:s,s:s,s:s}", "user_id", s->user_id, "credential",
                          s->credential_id, "hashes", h, "hash_algorithm", s->hash_oid, "package",
                          pl->package, "paid_by", s->relying_party ? "relying_party" : "package");
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    int64_t now = now_ms / 1000;
    char t[32];
    qtsp_format_rfc3339_ms(now_ms, t, sizeof t);
    ENSURE_OUT(json_object_set_new(o, "time", json_string(t)) == 0, QTSP_ERR_NOMEM,
               "out of memory");
    if (s->relying_party)
        TRY_OUT(qtsp_json_set_string(o, "relying_party", s->relying_party));
    if (s->sad_id)
        TRY_OUT(qtsp_json_set_string(o, "sad_id", s->sad_id));
    if (pl->p) {
        TRY_OUT(set_time(o, "window_start", pl->ws));
        TRY_OUT(set_time(o, "window_end", pl->we));
    }
    TRY_OUT(set_time(o, "retain_until", now + QTSP_USAGE_RETENTION_S));
    *out = o;
    return QTSP_OK;
out:
    json_decref(o);
    return rc;
}

static size_t history_prefix(const char *user_id, unsigned char *key)
{
    size_t n = strlen(user_id);
    memcpy(key, user_id, n);
    key[n] = 0;
    return n + 1;
}

qtsp_status qtsp_usage_charge(qtsp_usage *u, qtsp_txn *txn, const qtsp_signing *s)
{
    TRY(check_signing(s));
    int64_t now_ms = qtsp_now_ms();
    int64_t now = now_ms / 1000;
    plan pl;
    TRY(plan_of(u, txn, s->user_id, now, &pl));
    unsigned char qkey[sizeof pl.subject_id + 9];
    size_t qlen = quota_key(pl.subject_id, pl.ws, qkey);
    unsigned char rkey[QTSP_RP_NAME_MAX + 9];
    size_t rlen = 0;

    /* every check before the first write: a refusal leaves txn as it was */
    if (s->relying_party) {
        const void *v;
        size_t vl;
        qtsp_status rc =
            qtsp_txn_get0(txn, QTSP_T_RPS, s->relying_party, strlen(s->relying_party), &v, &vl);
        if (rc == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            FAIL(QTSP_ERR_AUTH, "no relying party %s", s->relying_party);
        }
        TRY(rc);
        struct tm tm;
        TRY(qtsp_gmtime(now, &tm));
        rlen = strlen(s->relying_party);
        memcpy(rkey, s->relying_party, rlen);
        rkey[rlen++] = 0;
        char month[32];
        int ml = snprintf(month, sizeof month, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
        ENSURE(ml == 7, QTSP_ERR_TIME, "the clock is outside years 0..9999");
        memcpy(rkey + rlen, month, 7);
        rlen += 7;
    } else {
        ENSURE(pl.p != NULL, QTSP_ERR_QUOTA,
               "the package %s is no longer offered (policies/packages.yaml)", pl.package);
        if (pl.ended) {
            char t[32];
            qtsp_format_rfc3339((time_t)pl.valid_until, t, sizeof t);
            FAIL(QTSP_ERR_QUOTA, "the package %s ended at %s", pl.package, t);
        }
        if (pl.p->signatures > 0 && pl.used + s->n > (uint64_t)pl.p->signatures) {
            char t[32];
            qtsp_format_rfc3339((time_t)pl.we, t, sizeof t);
            FAIL(QTSP_ERR_QUOTA, "the package %s allows %lld signatures until %s; %llu left",
                 pl.package, (long long)pl.p->signatures, t,
                 (unsigned long long)(pl.used >= (uint64_t)pl.p->signatures
                                          ? 0
                                          : (uint64_t)pl.p->signatures - pl.used));
        }
    }
    json_t *rec = NULL;
    TRY(history_record(s, &pl, now_ms, &rec));
    qtsp_status rc = QTSP_OK;
    if (s->relying_party)
        TRY_OUT(qtsp_txn_u64_add(txn, QTSP_T_RP_USAGE, rkey, rlen, s->n, NULL));
    else
        TRY_OUT(qtsp_txn_u64_add(txn, QTSP_T_QUOTA, qkey, qlen, s->n, NULL));
    uint64_t seq;
    TRY_OUT(qtsp_txn_counter_next(txn, "history", &seq));
    unsigned char hkey[USER_ID_MAX + 17];
    size_t hl = history_prefix(s->user_id, hkey);
    qtsp_be64_put(hkey + hl, ~(uint64_t)now_ms);
    qtsp_be64_put(hkey + hl + 8, ~seq);
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    ENSURE_OUT(txt != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t tl = strlen(txt);
    qtsp_buf b;
    qtsp_buf_init(&b, tl + 1);
    unsigned char ver = 1;
    rc = qtsp_buf_append(&b, &ver, 1);
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(&b, txt, tl);
    if (rc == QTSP_OK)
        rc = qtsp_txn_put(txn, QTSP_T_HISTORY, hkey, hl + 16, b.data, b.len, QTSP_PUT_NOOVERWRITE);
    qtsp_buf_cleanup(&b);
    free(txt);
out:
    json_decref(rec);
    return rc;
}

/* ---- reading ---- */

typedef struct hist_ctx {
    const unsigned char *prefix;
    size_t plen, limit;
    const unsigned char *after; /* the cursor's key (prefix + 16 bytes), or NULL */
    json_t *arr;
    int more;               /* a record beyond limit exists */
    unsigned char last[16]; /* the key suffix of the last record taken */
} hist_ctx;

static qtsp_status hist_one(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                            int *stop)
{
    hist_ctx *c = vctx;
    if (klen != c->plen + 16 || memcmp(key, c->prefix, c->plen) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    if (c->after && memcmp(key, c->after, klen) == 0)
        return QTSP_OK; /* the cursor's own record was on the previous page */
    if (c->limit && json_array_size(c->arr) >= c->limit) {
        c->more = 1;
        *stop = 1;
        return QTSP_OK;
    }
    const unsigned char *p = val;
    ENSURE(vlen >= 1 && p[0] == 1, QTSP_ERR_STORE_CORRUPT, "a history record is malformed");
    json_t *o = json_loadb((const char *)p + 1, vlen - 1, 0, NULL);
    ENSURE(o && json_is_object(o), QTSP_ERR_STORE_CORRUPT, "a history record is not JSON");
    ENSURE(json_array_append_new(c->arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
    memcpy(c->last, (const unsigned char *)key + c->plen, 16);
    return QTSP_OK;
}

qtsp_status qtsp_usage_history_page(qtsp_usage *u, const char *user_id, size_t limit,
                                    const char *after, json_t **out)
{
    if (!id_ok(user_id, USER_ID_MAX))
        return no_user(user_id ? user_id : "");
    unsigned char start[USER_ID_MAX + 17];
    size_t plen = history_prefix(user_id, start), slen = plen;
    if (after) { /* 32 hex digits: the 16-byte key suffix of the previous page's last record */
        ENSURE(strlen(after) == 32 && strspn(after, "0123456789abcdef") == 32, QTSP_ERR_INVALID,
               "after: not a cursor of this history (32 hex digits from \"next\")");
        for (size_t i = 0; i < 16; i++)
            start[plen + i] = (unsigned char)(qtsp_hex_value(after[2 * i]) << 4 |
                                              qtsp_hex_value(after[2 * i + 1]));
        slen = plen + 16;
    }
    hist_ctx c = {start, plen, limit, after ? start : NULL, json_array(), 0, {0}};
    ENSURE(c.arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_txn *txn;
    qtsp_status rc = qtsp_store_begin(u->st, 0, &txn);
    if (rc == QTSP_OK) {
        const void *v;
        size_t vl;
        rc = qtsp_txn_get0(txn, QTSP_T_USERS, user_id, strlen(user_id), &v, &vl);
        if (rc == QTSP_ERR_NOT_FOUND)
            rc = no_user(user_id);
        if (rc == QTSP_OK)
            rc = qtsp_txn_iter(txn, QTSP_T_HISTORY, start, slen, hist_one, &c);
        qtsp_txn_abort(txn);
    }
    TRY(wrap_array(out, "signings", c.arr, rc));
    if (c.more) {
        char next[33];
        qtsp_hex_encode(c.last, 16, next);
        if (qtsp_json_set_string(*out, "next", next) != QTSP_OK) {
            json_decref(*out);
            *out = NULL;
            FAIL(QTSP_ERR_NOMEM, "out of memory");
        }
    }
    return QTSP_OK;
}

qtsp_status qtsp_usage_history(qtsp_usage *u, const char *user_id, size_t limit, json_t **out)
{
    return qtsp_usage_history_page(u, user_id, limit, NULL, out);
}

qtsp_status qtsp_usage_quota(qtsp_usage *u, const char *user_id, json_t **out)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(u->st, 0, &txn));
    plan pl;
    qtsp_status rc = plan_of(u, txn, user_id, qtsp_now(), &pl);
    qtsp_txn_abort(txn);
    TRY(rc);
    json_t *o = json_pack("{s:s,s:I}", "package", pl.package, "used", (json_int_t)pl.used);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(set_time(o, "package_since", pl.since));
    if (!pl.p) {
        /* the policy no longer offers it: nothing can be paid from it */
        json_object_set_new(o, "ended", json_true());
        json_object_set_new(o, "signatures_left", json_integer(0));
        goto done;
    }
    int64_t lim = pl.p->signatures;
    json_object_set_new(o, "ended", json_boolean(pl.ended));
    json_object_set_new(o, "signatures", lim ? json_integer(lim) : json_null());
    json_object_set_new(
        o, "signatures_left",
        pl.ended ? json_integer(0)
        : lim == 0
            ? json_null()
            : json_integer(pl.used >= (uint64_t)lim ? 0 : (json_int_t)((uint64_t)lim - pl.used)));
    TRY_OUT(set_time(o, "window_start", pl.ws));
    TRY_OUT(set_time(o, "window_end", pl.we));
    if (pl.valid_until)
        TRY_OUT(set_time(o, "valid_until", pl.valid_until));
    else
        json_object_set_new(o, "valid_until", json_null());
done:
    *out = o;
    return QTSP_OK;
out:
    json_decref(o);
    return rc;
}

/* ---- package change ---- */

typedef struct pkg_ctx {
    qtsp_usage *u;
    const char *actor, *user_id, *package;
} pkg_ctx;

static qtsp_status set_package_txn(qtsp_txn *txn, void *vctx)
{
    pkg_ctx *c = vctx;
    json_t *user = NULL, *subj = NULL, *d = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_USERS, c->user_id, &user);
    if (rc == QTSP_ERR_NOT_FOUND)
        return no_user(c->user_id);
    TRY(rc);
    const char *sid = json_string_value(json_object_get(user, "subject_id"));
    ENSURE_OUT(sid != NULL, QTSP_ERR_STORE_CORRUPT, "signer %s has no subject", c->user_id);
    TRY_OUT(ra_get_json(txn, QTSP_T_SUBJECTS, sid, &subj));
    const char *from = json_string_value(json_object_get(subj, "package"));
    d = json_pack("{s:s,s:s,s:s?,s:s}", "user_id", c->user_id, "subject_id", sid, "from", from,
                  "to", c->package);
    ENSURE_OUT(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    char when[32];
    qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
    json_object_set_new(d, "since", json_string(when));
    json_object_set_new(subj, "package", json_string(c->package));
    json_object_set_new(subj, "package_since", json_string(when));
    TRY_OUT(ra_put_json(txn, QTSP_T_SUBJECTS, sid, subj, 0));
    TRY_OUT(qtsp_audit_append(txn, c->actor, "signer.package", d, NULL));
out:
    json_decref(user);
    json_decref(subj);
    json_decref(d);
    return rc;
}

qtsp_status qtsp_usage_set_package(qtsp_usage *u, const char *actor, const char *user_id,
                                   const char *package)
{
    ENSURE(qtsp_packages_find(&u->pk, package) != NULL, QTSP_ERR_INVALID,
           "package: unknown package '%s' (see policies/packages.yaml)", package ? package : "");
    if (!id_ok(user_id, USER_ID_MAX))
        return no_user(user_id ? user_id : "");
    pkg_ctx c = {u, actor, user_id, package};
    return qtsp_store_write(u->st, set_package_txn, &c);
}

/* ---- staff reading the history ---- */

typedef struct read_ctx {
    const char *actor;
    json_t *d;
} read_ctx;

static qtsp_status audit_read_txn(qtsp_txn *txn, void *vctx)
{
    read_ctx *c = vctx;
    return qtsp_audit_append(txn, c->actor, "signer.history.read", c->d, NULL);
}

qtsp_status qtsp_usage_audit_read(qtsp_usage *u, const char *actor, const char *user_id, size_t n)
{
    ENSURE(id_ok(user_id, USER_ID_MAX), QTSP_ERR_INVALID, "user id: malformed");
    read_ctx c = {actor, json_pack("{s:s,s:I}", "user_id", user_id, "signings", (json_int_t)n)};
    ENSURE(c.d != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_store_write(u->st, audit_read_txn, &c);
    json_decref(c.d);
    return rc;
}
