/* RA operators and their bearer tokens.
 *
 * Token: "<id>.<secret>" where id is 16 lower-case hex chars (64 random
 * bits) and secret is 43 chars of unpadded base64url of 32 random bytes
 * (RFC 4648 5). Only argon2id(secret bytes) is stored (RFC 9106), with
 * t=3 passes, m=32 MiB, p=1 (about 90 ms per hash on the build machine),
 * 16-byte random salt, 32-byte tag, in the encoded "$argon2id$..." form.
 *
 * operators[id] v1: 01 | role u8 | name_len u8 | name | created_at i64 BE |
 *                   hash_len u16 BE | encoded argon2id hash
 * meta["operator_name/" name] = id  (keeps names unique)
 *
 * Verified tokens are cached in memory for 5 minutes, keyed by SHA-256 of
 * the token; a hit still re-reads the operator record (cheap read txn) and
 * requires its stored hash to be unchanged, so a removed or re-keyed
 * operator is not served from the cache. Operator ids are not secret
 * (they appear in audit actors), so an unknown id is answered without
 * spending an argon2 computation. */
#include "ra/operator.h"

#include <argon2.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ca/audit.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"

#define OP_VERSION 1
#define OP_T_COST 3
#define OP_M_COST_KIB (32 * 1024)
#define OP_PARALLELISM 1
#define OP_SALT_LEN 16
#define OP_TAG_LEN 32
#define OP_SECRET_LEN 32
#define OP_ID_BYTES 8
#define OP_ID_HEX (2 * OP_ID_BYTES)
#define OP_SECRET_B64 43
#define OP_TOKEN_LEN (OP_ID_HEX + 1 + OP_SECRET_B64)
#define OP_HASH_MAX 256
#define OP_NAME_PREFIX "operator_name/"
#define OP_CACHE_SLOTS 64
#define OP_CACHE_TTL_MS (5 * 60 * 1000)

qtsp_status qtsp_role_parse(const char *s, qtsp_role *out)
{
    static const struct {
        const char *name;
        qtsp_role role;
    } roles[] = {{"ra-officer", QTSP_ROLE_RA_OFFICER},
                 {"hotline", QTSP_ROLE_HOTLINE},
                 {"office", QTSP_ROLE_OFFICE},
                 {"auditor", QTSP_ROLE_AUDITOR}};
    ENSURE(s, QTSP_ERR_INVALID, "no role given");
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(s, roles[i].name) == 0) {
            *out = roles[i].role;
            return QTSP_OK;
        }
    }
    FAIL(QTSP_ERR_INVALID, "unknown role (ra-officer, hotline, office, auditor)");
}

const char *qtsp_role_name(qtsp_role r)
{
    switch (r) {
    case QTSP_ROLE_RA_OFFICER:
        return "ra-officer";
    case QTSP_ROLE_HOTLINE:
        return "hotline";
    case QTSP_ROLE_OFFICE:
        return "office";
    case QTSP_ROLE_AUDITOR:
        return "auditor";
    }
    return "unknown";
}

static int role_valid(int r)
{
    return r == QTSP_ROLE_RA_OFFICER || r == QTSP_ROLE_HOTLINE || r == QTSP_ROLE_OFFICE ||
           r == QTSP_ROLE_AUDITOR;
}

/* Decodes exactly 43 base64url chars (no padding) into 32 bytes; rejects
 * non-canonical input. Returns 0 on success. */
static int secret_decode(const char *in, unsigned char out[OP_SECRET_LEN])
{
    size_t n = 0;
    if (qtsp_base64_decode(in, OP_SECRET_B64, QTSP_B64_URL, out, OP_SECRET_LEN, &n) != QTSP_OK) {
        qtsp_err_clear();
        return -1;
    }
    return n == OP_SECRET_LEN ? 0 : -1;
}

/* ---- record ------------------------------------------------------------- */

typedef struct op_record {
    qtsp_operator op;
    int64_t created_at;
    char hash[OP_HASH_MAX + 1];
} op_record;

static qtsp_status record_encode(const op_record *r, qtsp_buf *out)
{
    size_t nl = strlen(r->op.name), hl = strlen(r->hash);
    unsigned char hdr[3], tail[10];
    hdr[0] = OP_VERSION;
    hdr[1] = (unsigned char)r->op.role;
    hdr[2] = (unsigned char)nl;
    qtsp_be64_put(tail, (uint64_t)r->created_at);
    tail[8] = (unsigned char)(hl >> 8);
    tail[9] = (unsigned char)hl;
    TRY(qtsp_buf_append(out, hdr, sizeof hdr));
    TRY(qtsp_buf_append(out, r->op.name, nl));
    TRY(qtsp_buf_append(out, tail, sizeof tail));
    return qtsp_buf_append(out, r->hash, hl);
}

static qtsp_status record_decode(const char *id, const unsigned char *p, size_t len, op_record *out)
{
    op_record r = {0};
    ENSURE(len >= 3 && p[0] == OP_VERSION, QTSP_ERR_STORE_CORRUPT,
           "operator record of unknown version");
    ENSURE(role_valid(p[1]), QTSP_ERR_STORE_CORRUPT, "operator record with unknown role");
    size_t nl = p[2];
    ENSURE(nl >= 1 && nl < sizeof r.op.name && len >= 3 + nl + 10, QTSP_ERR_STORE_CORRUPT,
           "operator record truncated");
    size_t hl = (size_t)p[3 + nl + 8] << 8 | p[3 + nl + 9];
    ENSURE(hl >= 1 && hl <= OP_HASH_MAX && len == 3 + nl + 10 + hl, QTSP_ERR_STORE_CORRUPT,
           "operator record length mismatch");
    snprintf(r.op.id, sizeof r.op.id, "%s", id);
    r.op.role = (qtsp_role)p[1];
    memcpy(r.op.name, p + 3, nl);
    r.created_at = (int64_t)qtsp_be64_get(p + 3 + nl);
    memcpy(r.hash, p + 3 + nl + 10, hl);
    ENSURE(strlen(r.op.name) == nl && strlen(r.hash) == hl, QTSP_ERR_STORE_CORRUPT,
           "operator record has a NUL inside a field");
    *out = r;
    return QTSP_OK;
}

/* ---- add ---------------------------------------------------------------- */

typedef struct add_ctx {
    const char *actor;
    const op_record *rec;
    const json_t *details;
} add_ctx;

static qtsp_status add_fn(qtsp_txn *txn, void *ctx)
{
    qtsp_status rc = QTSP_OK;
    const add_ctx *c = ctx;
    qtsp_buf key, val;
    qtsp_buf_init(&key, 256);
    qtsp_buf_init(&val, 512);
    TRY_OUT(qtsp_buf_puts(&key, OP_NAME_PREFIX));
    TRY_OUT(qtsp_buf_puts(&key, c->rec->op.name));
    const void *v;
    size_t vl;
    rc = qtsp_txn_get0(txn, QTSP_T_META, key.data, key.len, &v, &vl);
    if (rc == QTSP_OK)
        FAIL_OUT(QTSP_ERR_EXISTS, "an operator named \"%s\" already exists", c->rec->op.name);
    ENSURE_OUT(rc == QTSP_ERR_NOT_FOUND, rc, "cannot look up the operator name");
    size_t idl = strlen(c->rec->op.id);
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_META, key.data, key.len, c->rec->op.id, idl,
                         QTSP_PUT_NOOVERWRITE));
    TRY_OUT(record_encode(c->rec, &val));
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_OPERATORS, c->rec->op.id, idl, val.data, val.len,
                         QTSP_PUT_NOOVERWRITE));
    TRY_OUT(qtsp_audit_append(txn, c->actor, "operator.add", c->details, NULL));
out:
    qtsp_buf_cleanup(&key);
    qtsp_buf_cleanup(&val);
    return rc;
}

static qtsp_status name_ok(const char *name)
{
    ENSURE(name, QTSP_ERR_INVALID, "no operator name");
    size_t n = strnlen(name, 65);
    ENSURE(n >= 1 && n <= 64, QTSP_ERR_INVALID, "operator name must have 1 to 64 characters");
    ENSURE(name[0] != ' ' && name[n - 1] != ' ', QTSP_ERR_INVALID,
           "operator name must not start or end with a space");
    for (size_t i = 0; i < n; i++)
        ENSURE(name[i] >= 0x20 && name[i] <= 0x7e, QTSP_ERR_INVALID,
               "operator name must be printable ASCII");
    return QTSP_OK;
}

qtsp_status qtsp_operator_add(qtsp_store *st, const char *actor, const char *name, qtsp_role role,
                              char *token_out, size_t cap)
{
    qtsp_status rc = QTSP_OK;
    unsigned char idb[OP_ID_BYTES], secret[OP_SECRET_LEN], salt[OP_SALT_LEN];
    char b64[OP_SECRET_B64 + 1];
    json_t *dj = NULL;
    op_record rec = {0};

    ENSURE(st, QTSP_ERR_INVALID, "no store");
    ENSURE(token_out && cap >= 128, QTSP_ERR_INVALID, "token buffer too small");
    TRY(name_ok(name));
    ENSURE(role_valid((int)role), QTSP_ERR_INVALID, "unknown operator role");

    TRY_OUT(qtsp_random(idb, sizeof idb));
    TRY_OUT(qtsp_random(secret, sizeof secret));
    TRY_OUT(qtsp_random(salt, sizeof salt));
    for (size_t i = 0; i < sizeof idb; i++)
        snprintf(rec.op.id + 2 * i, 3, "%02x", idb[i]);
    snprintf(rec.op.name, sizeof rec.op.name, "%s", name);
    rec.op.role = role;
    rec.created_at = (int64_t)qtsp_now();
    int arc = argon2id_hash_encoded(OP_T_COST, OP_M_COST_KIB, OP_PARALLELISM, secret, sizeof secret,
                                    salt, sizeof salt, OP_TAG_LEN, rec.hash, sizeof rec.hash);
    ENSURE_OUT(arc == ARGON2_OK,
               arc == ARGON2_MEMORY_ALLOCATION_ERROR ? QTSP_ERR_NOMEM : QTSP_ERR_INTERNAL,
               "argon2id hashing failed: %s", argon2_error_message(arc));

    dj = json_pack("{s:s, s:s, s:s}", "id", rec.op.id, "name", rec.op.name, "role",
                   qtsp_role_name(role));
    ENSURE_OUT(dj, QTSP_ERR_NOMEM, "cannot build the audit details");

    add_ctx c = {actor, &rec, dj};
    TRY_OUT(qtsp_store_write(st, add_fn, &c));

    qtsp_base64url_encode(secret, sizeof secret, b64, sizeof b64);
    snprintf(token_out, cap, "%s.%s", rec.op.id, b64);
out:
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(b64, sizeof b64);
    json_decref(dj);
    return rc;
}

/* ---- auth and the verified-token cache -------------------------------- */

typedef struct cache_entry {
    unsigned char tok_hash[32];
    unsigned char rec_hash[32]; /* SHA-256 of the stored argon2 string */
    char id[24];
    int64_t expires_ms;
} cache_entry;

static pthread_mutex_t g_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_entry g_cache[OP_CACHE_SLOTS];

static int sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned int l = 0;
    return EVP_Digest(p, n, out, &l, EVP_sha256(), NULL) == 1 && l == 32 ? 0 : -1;
}

/* Returns 1 and the id when a live entry for tok_hash exists. */
static int cache_lookup(const unsigned char tok_hash[32], int64_t now, char id[24],
                        unsigned char rec_hash[32])
{
    int hit = 0;
    pthread_mutex_lock(&g_cache_mu);
    for (size_t i = 0; i < OP_CACHE_SLOTS; i++) {
        cache_entry *e = &g_cache[i];
        if (e->expires_ms > now && CRYPTO_memcmp(e->tok_hash, tok_hash, 32) == 0) {
            memcpy(id, e->id, 24);
            memcpy(rec_hash, e->rec_hash, 32);
            hit = 1;
            break;
        }
    }
    pthread_mutex_unlock(&g_cache_mu);
    return hit;
}

static void cache_store(const unsigned char tok_hash[32], const unsigned char rec_hash[32],
                        const char *id, int64_t now)
{
    pthread_mutex_lock(&g_cache_mu);
    size_t victim = 0;
    for (size_t i = 0; i < OP_CACHE_SLOTS; i++) {
        if (g_cache[i].expires_ms < g_cache[victim].expires_ms)
            victim = i;
        if (g_cache[i].expires_ms <= now) {
            victim = i;
            break;
        }
    }
    cache_entry *e = &g_cache[victim];
    memcpy(e->tok_hash, tok_hash, 32);
    memcpy(e->rec_hash, rec_hash, 32);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->expires_ms = now + OP_CACHE_TTL_MS;
    pthread_mutex_unlock(&g_cache_mu);
}

static void cache_forget(const unsigned char tok_hash[32])
{
    pthread_mutex_lock(&g_cache_mu);
    for (size_t i = 0; i < OP_CACHE_SLOTS; i++)
        if (CRYPTO_memcmp(g_cache[i].tok_hash, tok_hash, 32) == 0)
            OPENSSL_cleanse(&g_cache[i], sizeof g_cache[i]);
    pthread_mutex_unlock(&g_cache_mu);
}

static qtsp_status load_record(qtsp_store *st, const char *id, op_record *out)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(st, 0, &txn));
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_OPERATORS, id, strlen(id), &v, &vl);
    if (rc == QTSP_OK)
        rc = record_decode(id, v, vl, out);
    qtsp_txn_abort(txn);
    return rc;
}

#define AUTH_FAIL_OUT() FAIL_OUT(QTSP_ERR_AUTH, "missing, malformed or unknown operator token")

/* ---- brute-force and load limits --------------------------------------
 * A wrong secret for a known operator id costs a full argon2id (32 MiB,
 * ~90 ms) on the HTTP workers that also serve OCSP and TSA. So: one argon2id
 * verification at a time, and an operator id with OP_FAIL_MAX consecutive
 * failures is refused without verification for OP_LOCK_MS. */
#define OP_FAIL_SLOTS 64
#define OP_FAIL_MAX 5
#define OP_LOCK_MS (60 * 1000)

static struct {
    char id[24];
    unsigned failures;
    int64_t locked_until;
} g_fail[OP_FAIL_SLOTS];
static pthread_mutex_t g_fail_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_argon_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t fail_slot(const char *id)
{
    size_t h = 5381;
    for (const char *p = id; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return h % OP_FAIL_SLOTS;
}

static int id_locked(const char *id, int64_t now)
{
    pthread_mutex_lock(&g_fail_mu);
    size_t i = fail_slot(id);
    int locked = strcmp(g_fail[i].id, id) == 0 && g_fail[i].locked_until > now;
    pthread_mutex_unlock(&g_fail_mu);
    return locked;
}

static void note_result(const char *id, int ok, int64_t now)
{
    pthread_mutex_lock(&g_fail_mu);
    size_t i = fail_slot(id);
    if (strcmp(g_fail[i].id, id) != 0) {
        /* never evict an id that has failures or is locked: another id's
         * traffic must not reset someone else's lock */
        if (g_fail[i].failures > 0 || g_fail[i].locked_until > now) {
            pthread_mutex_unlock(&g_fail_mu);
            return;
        }
        snprintf(g_fail[i].id, sizeof g_fail[i].id, "%s", id);
        g_fail[i].failures = 0;
        g_fail[i].locked_until = 0;
    }
    if (ok) {
        g_fail[i].failures = 0;
    } else if (++g_fail[i].failures >= OP_FAIL_MAX) {
        g_fail[i].locked_until = now + OP_LOCK_MS;
        g_fail[i].failures = 0;
        LOG_WARN("operator %s: %d failed authentications, refused for %d s", id, OP_FAIL_MAX,
                 OP_LOCK_MS / 1000);
    }
    pthread_mutex_unlock(&g_fail_mu);
}

qtsp_status qtsp_operator_auth(qtsp_store *st, const char *token, qtsp_operator *out)
{
    qtsp_status rc = QTSP_OK;
    unsigned char secret[OP_SECRET_LEN], th[32], rh[32], cached_rh[32];
    char id[24] = {0}, cid[24];
    op_record rec;
    ENSURE(st && out, QTSP_ERR_INVALID, "no store");

    if (!token || strnlen(token, OP_TOKEN_LEN + 1) != OP_TOKEN_LEN || token[OP_ID_HEX] != '.')
        AUTH_FAIL_OUT();
    for (size_t i = 0; i < OP_ID_HEX; i++) {
        char ch = token[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            AUTH_FAIL_OUT();
        id[i] = ch;
    }
    if (secret_decode(token + OP_ID_HEX + 1, secret) != 0)
        AUTH_FAIL_OUT();
    ENSURE_OUT(sha256(token, OP_TOKEN_LEN, th) == 0, QTSP_ERR_CRYPTO, "SHA-256 failed");

    int64_t now = qtsp_now_ms();
    int hit = cache_lookup(th, now, cid, cached_rh);
    rc = load_record(st, id, &rec);
    if (rc == QTSP_ERR_NOT_FOUND) {
        if (hit)
            cache_forget(th);
        AUTH_FAIL_OUT();
    }
    TRY_OUT(rc);
    ENSURE_OUT(sha256(rec.hash, strlen(rec.hash), rh) == 0, QTSP_ERR_CRYPTO, "SHA-256 failed");
    if (hit && strcmp(cid, id) == 0 && CRYPTO_memcmp(cached_rh, rh, 32) == 0) {
        *out = rec.op;
        goto out;
    }
    if (id_locked(id, now))
        AUTH_FAIL_OUT();
    pthread_mutex_lock(&g_argon_mu);
    if (id_locked(id, now)) { /* locked while this request waited its turn */
        pthread_mutex_unlock(&g_argon_mu);
        AUTH_FAIL_OUT();
    }
    int arc = argon2id_verify(rec.hash, (const char *)secret, sizeof secret);
    pthread_mutex_unlock(&g_argon_mu);
    note_result(id, arc == ARGON2_OK, now);
    if (arc == ARGON2_VERIFY_MISMATCH)
        AUTH_FAIL_OUT();
    ENSURE_OUT(arc == ARGON2_OK,
               arc == ARGON2_MEMORY_ALLOCATION_ERROR ? QTSP_ERR_NOMEM : QTSP_ERR_STORE_CORRUPT,
               "argon2id verification failed: %s", argon2_error_message(arc));
    cache_store(th, rh, id, now);
    *out = rec.op;
out:
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(th, sizeof th);
    OPENSSL_cleanse(cached_rh, sizeof cached_rh);
    return rc;
}
