/* RA operators and their bearer tokens.
 *
 * Token: "<id>.<secret>" where id is 16 lower-case hex chars (64 random
 * bits) and secret is 43 chars of unpadded base64url of 32 random bytes
 * (RFC 4648 5). Only argon2id(secret bytes) is stored (RFC 9106), with
 * t=3 passes, m=32 MiB, p=1 (about 90 ms per hash on the build machine),
 * 16-byte random salt, 32-byte tag, in the encoded "$argon2id$..." form.
 *
 * operators[id] v2: 02 | role u8 | flags u8 (1 = disabled) | name_len u8 | name |
 *                   created_at i64 BE | hash_len u16 BE | encoded argon2id hash
 *                (v1, still read: the same without the flags byte)
 * meta["operator_name/" name] = id  (keeps names unique)
 *
 * Verified tokens are cached in memory for 5 minutes, keyed by SHA-256 of
 * the token; a hit still re-reads the operator record (cheap read txn) and
 * requires it enabled and its stored hash unchanged, so a disabled, removed
 * or rotated operator is refused at once in every worker process (they
 * share the store). Operator ids are not secret
 * (they appear in audit actors), so an unknown id is answered without
 * spending an argon2 computation. */
#include "ra/operator.h"

#include <argon2.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ca/audit.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"

#define OP_VERSION 2
#define OP_F_DISABLED 1u
#define OP_F_ALL OP_F_DISABLED
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
    unsigned flags; /* OP_F_* */
    char hash[OP_HASH_MAX + 1];
} op_record;

/* v2 (written): 02 | role | flags | name_len | name | created_at | hash_len | hash;
 * v1 (read): the same without the flags byte. */
static qtsp_status record_encode(const op_record *r, qtsp_buf *out)
{
    size_t nl = strlen(r->op.name), hl = strlen(r->hash);
    unsigned char hdr[4], tail[10];
    hdr[0] = OP_VERSION;
    hdr[1] = (unsigned char)r->op.role;
    hdr[2] = (unsigned char)r->flags;
    hdr[3] = (unsigned char)nl;
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
    ENSURE(len >= 3 && (p[0] == 1 || p[0] == OP_VERSION), QTSP_ERR_STORE_CORRUPT,
           "operator record of unknown version");
    ENSURE(role_valid(p[1]), QTSP_ERR_STORE_CORRUPT, "operator record with unknown role");
    size_t h = 3; /* header length */
    if (p[0] == OP_VERSION) {
        ENSURE(len >= 4 && (p[2] & ~OP_F_ALL) == 0, QTSP_ERR_STORE_CORRUPT,
               "operator record with unknown flags");
        r.flags = p[2];
        h = 4;
    }
    size_t nl = p[h - 1];
    ENSURE(nl >= 1 && nl < sizeof r.op.name && len >= h + nl + 10, QTSP_ERR_STORE_CORRUPT,
           "operator record truncated");
    size_t hl = (size_t)p[h + nl + 8] << 8 | p[h + nl + 9];
    ENSURE(hl >= 1 && hl <= OP_HASH_MAX && len == h + nl + 10 + hl, QTSP_ERR_STORE_CORRUPT,
           "operator record length mismatch");
    snprintf(r.op.id, sizeof r.op.id, "%s", id);
    r.op.role = (qtsp_role)p[1];
    memcpy(r.op.name, p + h, nl);
    r.created_at = (int64_t)qtsp_be64_get(p + h + nl);
    memcpy(r.hash, p + h + nl + 10, hl);
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

/* A new secret for rec: its argon2id hash into rec->hash and the token
 * "<rec id>.<secret>" into token_out. */
static qtsp_status new_secret(op_record *rec, char *token_out, size_t cap)
{
    qtsp_status rc = QTSP_OK;
    unsigned char secret[OP_SECRET_LEN], salt[OP_SALT_LEN];
    char b64[OP_SECRET_B64 + 1];
    TRY_OUT(qtsp_random(secret, sizeof secret));
    TRY_OUT(qtsp_random(salt, sizeof salt));
    int arc = argon2id_hash_encoded(OP_T_COST, OP_M_COST_KIB, OP_PARALLELISM, secret, sizeof secret,
                                    salt, sizeof salt, OP_TAG_LEN, rec->hash, sizeof rec->hash);
    ENSURE_OUT(arc == ARGON2_OK,
               arc == ARGON2_MEMORY_ALLOCATION_ERROR ? QTSP_ERR_NOMEM : QTSP_ERR_INTERNAL,
               "argon2id hashing failed: %s", argon2_error_message(arc));
    qtsp_base64url_encode(secret, sizeof secret, b64, sizeof b64);
    snprintf(token_out, cap, "%s.%s", rec->op.id, b64);
out:
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(b64, sizeof b64);
    return rc;
}

qtsp_status qtsp_operator_add(qtsp_store *st, const char *actor, const char *name, qtsp_role role,
                              char *token_out, size_t cap)
{
    qtsp_status rc = QTSP_OK;
    unsigned char idb[OP_ID_BYTES];
    char tok[128] = "";
    json_t *dj = NULL;
    op_record rec = {0};

    ENSURE(st, QTSP_ERR_INVALID, "no store");
    ENSURE(token_out && cap >= 128, QTSP_ERR_INVALID, "token buffer too small");
    TRY(name_ok(name));
    ENSURE(role_valid((int)role), QTSP_ERR_INVALID, "unknown operator role");

    TRY_OUT(qtsp_random(idb, sizeof idb));
    for (size_t i = 0; i < sizeof idb; i++)
        snprintf(rec.op.id + 2 * i, 3, "%02x", idb[i]);
    snprintf(rec.op.name, sizeof rec.op.name, "%s", name);
    rec.op.role = role;
    rec.created_at = (int64_t)qtsp_now();
    TRY_OUT(new_secret(&rec, tok, sizeof tok));

    dj = json_pack("{s:s, s:s, s:s}", "id", rec.op.id, "name", rec.op.name, "role",
                   qtsp_role_name(role));
    ENSURE_OUT(dj, QTSP_ERR_NOMEM, "cannot build the audit details");

    add_ctx c = {actor, &rec, dj};
    TRY_OUT(qtsp_store_write(st, add_fn, &c));
    snprintf(token_out, cap, "%s", tok);
out:
    OPENSSL_cleanse(tok, sizeof tok);
    json_decref(dj);
    return rc;
}

static qtsp_status load_record_txn(qtsp_txn *txn, const char *id, op_record *out)
{
    const void *v;
    size_t vl;
    TRY(qtsp_txn_get0(txn, QTSP_T_OPERATORS, id, strlen(id), &v, &vl));
    return record_decode(id, v, vl, out);
}

static qtsp_status load_record(qtsp_store *st, const char *id, op_record *out)
{
    qtsp_txn *txn;
    TRY(qtsp_store_begin(st, 0, &txn));
    qtsp_status rc = load_record_txn(txn, id, out);
    qtsp_txn_abort(txn);
    return rc;
}

/* ---- list, disable, enable, rotate ------------------------------------- */

static void info_of(const op_record *r, qtsp_operator_info *out)
{
    memset(out, 0, sizeof *out);
    out->op = r->op;
    out->created_at = r->created_at;
    out->disabled = (r->flags & OP_F_DISABLED) != 0;
}

typedef struct list_ctx {
    qtsp_operator_fn fn;
    void *ctx;
} list_ctx;

static qtsp_status list_one(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                            int *stop)
{
    (void)stop;
    list_ctx *c = vctx;
    char id[24];
    ENSURE(klen > 0 && klen < sizeof id, QTSP_ERR_STORE_CORRUPT, "operator key of %zu bytes", klen);
    memcpy(id, key, klen);
    id[klen] = '\0';
    op_record r;
    TRY(record_decode(id, val, vlen, &r));
    qtsp_operator_info info;
    info_of(&r, &info);
    OPENSSL_cleanse(&r, sizeof r);
    return c->fn(c->ctx, &info);
}

qtsp_status qtsp_operator_list(qtsp_store *st, qtsp_operator_fn fn, void *ctx)
{
    ENSURE(st && fn, QTSP_ERR_INVALID, "no store or callback");
    qtsp_txn *txn;
    TRY(qtsp_store_begin(st, 0, &txn));
    list_ctx c = {fn, ctx};
    qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_OPERATORS, NULL, 0, list_one, &c);
    qtsp_txn_abort(txn);
    return rc;
}

/* The operator record named by who: an operator name, or an id. */
static qtsp_status find_txn(qtsp_txn *txn, const char *who, op_record *out)
{
    ENSURE(who && *who && strlen(who) <= 64, QTSP_ERR_INVALID, "no operator name or id given");
    char key[96];
    snprintf(key, sizeof key, "%s%s", OP_NAME_PREFIX, who);
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_META, key, strlen(key), &v, &vl);
    if (rc == QTSP_OK) {
        char id[24];
        ENSURE(vl > 0 && vl < sizeof id, QTSP_ERR_STORE_CORRUPT, "operator name index corrupt");
        memcpy(id, v, vl);
        id[vl] = '\0';
        return load_record_txn(txn, id, out);
    }
    ENSURE(rc == QTSP_ERR_NOT_FOUND, rc, "cannot look up the operator name");
    if (strlen(who) == OP_ID_HEX && strspn(who, "0123456789abcdef") == OP_ID_HEX) {
        rc = load_record_txn(txn, who, out);
        if (rc != QTSP_ERR_NOT_FOUND)
            return rc;
    }
    FAIL(QTSP_ERR_NOT_FOUND, "no operator named or with id \"%s\"", who);
}

typedef struct change_ctx {
    const char *actor;
    const char *who;
    int op;            /* 0 disable, 1 enable, 2 rotate */
    int by_id;         /* who is an id (rotate's second step), not a name */
    op_record rotated; /* for rotate: the new hash, made before the transaction */
    op_record done;    /* the record as written */
} change_ctx;

static qtsp_status change_fn(qtsp_txn *txn, void *vctx)
{
    change_ctx *c = vctx;
    op_record r;
    if (c->by_id) {
        qtsp_status rc = load_record_txn(txn, c->who, &r);
        ENSURE(rc != QTSP_ERR_NOT_FOUND, QTSP_ERR_NOT_FOUND, "operator %s was removed", c->who);
        TRY(rc);
    } else {
        TRY(find_txn(txn, c->who, &r));
    }
    const char *event = c->op == 0   ? "operator.disable"
                        : c->op == 1 ? "operator.enable"
                                     : "operator.rotate";
    if (c->op == 0) {
        ENSURE(!(r.flags & OP_F_DISABLED), QTSP_ERR_STATE, "operator %s is already disabled",
               r.op.name);
        r.flags |= OP_F_DISABLED;
    } else if (c->op == 1) {
        ENSURE(r.flags & OP_F_DISABLED, QTSP_ERR_STATE, "operator %s is not disabled", r.op.name);
        r.flags &= ~OP_F_DISABLED;
    } else {
        memcpy(r.hash, c->rotated.hash, sizeof r.hash);
    }
    qtsp_status rc = QTSP_OK;
    qtsp_buf val;
    qtsp_buf_init(&val, 512);
    json_t *dj = json_pack("{s:s,s:s,s:s}", "id", r.op.id, "name", r.op.name, "role",
                           qtsp_role_name(r.op.role));
    ENSURE_OUT(dj, QTSP_ERR_NOMEM, "cannot build the audit details");
    TRY_OUT(record_encode(&r, &val));
    TRY_OUT(qtsp_txn_put(txn, QTSP_T_OPERATORS, r.op.id, strlen(r.op.id), val.data, val.len, 0));
    TRY_OUT(qtsp_audit_append(txn, c->actor, event, dj, NULL));
    c->done = r;
out:
    json_decref(dj);
    qtsp_buf_cleanup(&val);
    return rc;
}

qtsp_status qtsp_operator_set_enabled(qtsp_store *st, const char *actor, const char *who,
                                      int enabled, qtsp_operator_info *out)
{
    ENSURE(st && actor, QTSP_ERR_INVALID, "no store or actor");
    change_ctx c = {.actor = actor, .who = who, .op = enabled ? 1 : 0};
    TRY(qtsp_store_write(st, change_fn, &c));
    if (out)
        info_of(&c.done, out);
    return QTSP_OK;
}

qtsp_status qtsp_operator_rotate(qtsp_store *st, const char *actor, const char *who,
                                 char *token_out, size_t cap, qtsp_operator_info *out)
{
    ENSURE(st && actor, QTSP_ERR_INVALID, "no store or actor");
    ENSURE(token_out && cap >= 128, QTSP_ERR_INVALID, "token buffer too small");
    qtsp_status rc = QTSP_OK;
    char tok[128] = "";
    change_ctx c = {.actor = actor, .op = 2};
    /* the id goes into the token: read it, hash the new secret outside the
     * write transaction (argon2id is slow), then write by id */
    qtsp_txn *txn;
    TRY(qtsp_store_begin(st, 0, &txn));
    rc = find_txn(txn, who, &c.rotated);
    qtsp_txn_abort(txn);
    TRY(rc);
    TRY_OUT(new_secret(&c.rotated, tok, sizeof tok));
    c.who = c.rotated.op.id;
    c.by_id = 1;
    TRY_OUT(qtsp_store_write(st, change_fn, &c));
    snprintf(token_out, cap, "%s", tok);
    if (out)
        info_of(&c.done, out);
out:
    OPENSSL_cleanse(tok, sizeof tok);
    OPENSSL_cleanse(&c, sizeof c);
    return rc;
}

/* ---- brute-force and load limits, shared by every worker process -------
 * A wrong secret for a known operator id costs a full argon2id (32 MiB,
 * ~90 ms). `serve` runs several worker processes, so what limits it lives in
 * one shared anonymous mapping made before they fork
 * (qtsp_operator_shared_init), guarded by one process-shared robust mutex:
 *  - failure counters per operator id (open addressing, GUARD_PROBE slots
 *    from the id's hash; a slot is reused only when its id has no recent
 *    failures and no lock), OP_FAIL_MAX failures within OP_LOCK_MS lock the
 *    id for OP_LOCK_MS (a rotation of its secret lifts it); a locked id is
 *    refused before any argon2id; when no
 *    slot can take an id, it is refused too (fail closed, logged);
 *  - the verified-token cache (SHA-256 of tokens that passed argon2id, for
 *    OP_CACHE_TTL_MS), so an operator who authenticated in one worker is
 *    not made to pay argon2id again in another, and keeps working while a
 *    flood of wrong tokens for the same id has it locked;
 *  - counters for /metrics.
 * Unknown and disabled ids are refused after one record read, before the
 * table is consulted. argon2id runs one at a time per process (g_argon_mu);
 * the RA's API layer keeps requests that need it in a bounded slow lane
 * (qtsp_operator_auth_is_slow, core/api.h). */
#define GUARD_FAIL_SLOTS 4096
#define GUARD_PROBE 64
#define GUARD_CACHE_SLOTS 256
#define OP_FAIL_MAX 5
#define OP_LOCK_MS (60 * 1000)

enum {
    ST_OK,
    ST_WRONG,
    ST_LOCKED,
    ST_UNKNOWN,
    ST_DISABLED,
    ST_MALFORMED,
    ST_CACHED,
    ST_FULL,
    ST_N
};
static const char *const k_stat_names[ST_N] = {"ok",       "wrong",     "locked", "unknown",
                                               "disabled", "malformed", "cached", "table_full"};

typedef struct guard_fail {
    char id[OP_ID_HEX + 1]; /* "" = free */
    unsigned char gen[8];   /* of the secret the failures were counted against */
    uint32_t failures;
    int64_t last_ms;      /* last failure */
    int64_t locked_until; /* ms */
} guard_fail;

typedef struct guard_cache {
    unsigned char tok_hash[32];
    unsigned char rec_hash[32]; /* SHA-256 of the stored argon2 string */
    char id[OP_ID_HEX + 1];
    int64_t expires_ms;
} guard_cache;

typedef struct guard_shm {
    pthread_mutex_t mu;
    guard_fail fail[GUARD_FAIL_SLOTS];
    guard_cache cache[GUARD_CACHE_SLOTS];
    uint64_t stats[ST_N];
    uint64_t argon2_runs;
} guard_shm;

static guard_shm *g_guard;
static pthread_once_t g_guard_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_argon_mu = PTHREAD_MUTEX_INITIALIZER;

static void guard_map(void)
{
    void *p =
        mmap(NULL, sizeof(guard_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        LOG_ERROR("operator guard: cannot map %zu bytes: %s", sizeof(guard_shm), strerror(errno));
        return;
    }
    guard_shm *g = p; /* zero-filled */
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int e = pthread_mutex_init(&g->mu, &a);
    pthread_mutexattr_destroy(&a);
    if (e != 0) {
        LOG_ERROR("operator guard: cannot initialise its lock: %s", strerror(e));
        munmap(p, sizeof(guard_shm));
        return;
    }
    g_guard = g;
}

qtsp_status qtsp_operator_shared_init(void)
{
    pthread_once(&g_guard_once, guard_map);
    ENSURE(g_guard != NULL, QTSP_ERR_NOMEM, "cannot map the operator failure table");
    return QTSP_OK;
}

/* Locks the shared table; NULL when it cannot exist (then callers fail
 * closed). A worker that died holding the lock leaves the table usable:
 * every update below leaves it consistent at each store. */
static guard_shm *guard_lock(void)
{
    if (qtsp_operator_shared_init() != QTSP_OK) {
        qtsp_err_clear();
        return NULL;
    }
    int e = pthread_mutex_lock(&g_guard->mu);
    if (e == EOWNERDEAD)
        pthread_mutex_consistent(&g_guard->mu);
    else if (e != 0)
        return NULL;
    return g_guard;
}

static void guard_unlock(guard_shm *g)
{
    pthread_mutex_unlock(&g->mu);
}

static void guard_count(int what)
{
    guard_shm *g = guard_lock();
    if (g) {
        g->stats[what]++;
        guard_unlock(g);
    }
}

/* FNV-1a of the id: which slot its probe starts at. */
static size_t fail_home(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)(h % GUARD_FAIL_SLOTS);
}

static int fail_idle(const guard_fail *f, int64_t now)
{
    return f->id[0] == '\0' ||
           (f->locked_until <= now && (f->failures == 0 || f->last_ms + OP_LOCK_MS <= now));
}

/* The id's slot (g locked): its own, else (create) a free or idle one in
 * its probe window; NULL when none. Counters of an earlier secret of the
 * id (gen: SHA-256 prefix of the stored hash) are dropped: a rotation
 * lifts the lock in every process at once. */
static guard_fail *fail_find(guard_shm *g, const char *id, const unsigned char gen[8], int create,
                             int64_t now)
{
    size_t home = fail_home(id);
    guard_fail *spare = NULL;
    for (size_t k = 0; k < GUARD_PROBE; k++) {
        guard_fail *f = &g->fail[(home + k) % GUARD_FAIL_SLOTS];
        if (strcmp(f->id, id) == 0) {
            if (memcmp(f->gen, gen, sizeof f->gen) != 0) {
                f->failures = 0;
                f->locked_until = 0;
                memcpy(f->gen, gen, sizeof f->gen);
            }
            return f;
        }
        if (!spare && fail_idle(f, now))
            spare = f;
    }
    if (!create || !spare)
        return NULL;
    memset(spare, 0, sizeof *spare);
    snprintf(spare->id, sizeof spare->id, "%s", id);
    memcpy(spare->gen, gen, sizeof spare->gen);
    return spare;
}

/* 1 when id may not be verified now: locked, or no slot would count its
 * failures (fail closed). */
static int id_refused(const char *id, const unsigned char gen[8], int64_t now, int *why)
{
    guard_shm *g = guard_lock();
    if (!g) {
        *why = ST_FULL;
        return 1;
    }
    int refused = 0;
    guard_fail *f = fail_find(g, id, gen, 0, now);
    if (f && f->locked_until > now) {
        refused = 1;
        *why = ST_LOCKED;
    } else if (!f) {
        size_t home = fail_home(id);
        refused = 1;
        for (size_t k = 0; k < GUARD_PROBE && refused; k++)
            refused = !fail_idle(&g->fail[(home + k) % GUARD_FAIL_SLOTS], now);
        *why = ST_FULL;
    }
    guard_unlock(g);
    return refused;
}

static void note_result(const char *id, const unsigned char gen[8], int ok, int64_t now)
{
    guard_shm *g = guard_lock();
    if (!g)
        return;
    guard_fail *f = fail_find(g, id, gen, !ok, now);
    if (f && ok) {
        f->failures = 0;
    } else if (f) {
        if (f->last_ms + OP_LOCK_MS <= now)
            f->failures = 0; /* earlier failures are too old to count */
        f->last_ms = now;
        if (++f->failures >= OP_FAIL_MAX) {
            f->locked_until = now + OP_LOCK_MS;
            f->failures = 0;
            LOG_WARN("operator %s: %d failed authentications, refused for %d s", id, OP_FAIL_MAX,
                     OP_LOCK_MS / 1000);
        }
    } else if (!ok) {
        LOG_WARN("operator %s: failure table full around its slot; refused until slots free", id);
    }
    guard_unlock(g);
}

/* Returns 1 and the id when a live entry for tok_hash exists. */
static int cache_lookup(const unsigned char tok_hash[32], int64_t now, char id[OP_ID_HEX + 1],
                        unsigned char rec_hash[32])
{
    int hit = 0;
    guard_shm *g = guard_lock();
    if (!g)
        return 0;
    for (size_t i = 0; i < GUARD_CACHE_SLOTS; i++) {
        guard_cache *e = &g->cache[i];
        if (e->expires_ms > now && CRYPTO_memcmp(e->tok_hash, tok_hash, 32) == 0) {
            memcpy(id, e->id, OP_ID_HEX + 1);
            memcpy(rec_hash, e->rec_hash, 32);
            hit = 1;
            break;
        }
    }
    guard_unlock(g);
    return hit;
}

static void cache_store(const unsigned char tok_hash[32], const unsigned char rec_hash[32],
                        const char *id, int64_t now)
{
    guard_shm *g = guard_lock();
    if (!g)
        return;
    size_t victim = 0;
    for (size_t i = 0; i < GUARD_CACHE_SLOTS; i++) {
        if (g->cache[i].expires_ms < g->cache[victim].expires_ms)
            victim = i;
        if (g->cache[i].expires_ms <= now) {
            victim = i;
            break;
        }
    }
    guard_cache *e = &g->cache[victim];
    memcpy(e->tok_hash, tok_hash, 32);
    memcpy(e->rec_hash, rec_hash, 32);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->expires_ms = now + OP_CACHE_TTL_MS;
    guard_unlock(g);
}

static void cache_forget(const unsigned char tok_hash[32])
{
    guard_shm *g = guard_lock();
    if (!g)
        return;
    for (size_t i = 0; i < GUARD_CACHE_SLOTS; i++)
        if (CRYPTO_memcmp(g->cache[i].tok_hash, tok_hash, 32) == 0)
            OPENSSL_cleanse(&g->cache[i], sizeof g->cache[i]);
    guard_unlock(g);
}

static int sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned int l = 0;
    return EVP_Digest(p, n, out, &l, EVP_sha256(), NULL) == 1 && l == 32 ? 0 : -1;
}

/* ---- auth --------------------------------------------------------------- */

/* What a token is, short of argon2id. */
typedef struct pre_auth {
    char id[OP_ID_HEX + 1];
    unsigned char secret[OP_SECRET_LEN];
    unsigned char th[32], rh[32];
    op_record rec;
    int verdict; /* ST_* when decided: ST_CACHED accepted; others refused; -1 undecided */
} pre_auth;

/* Everything before argon2id: shape, record (unknown, disabled), the
 * verified-token cache, the lock. Sets p->verdict; errors are store errors. */
static qtsp_status pre_check(qtsp_store *st, const char *token, int64_t now, pre_auth *p)
{
    memset(p, 0, sizeof *p);
    p->verdict = ST_MALFORMED;
    if (!token || strnlen(token, OP_TOKEN_LEN + 1) != OP_TOKEN_LEN || token[OP_ID_HEX] != '.')
        return QTSP_OK;
    for (size_t i = 0; i < OP_ID_HEX; i++) {
        char ch = token[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return QTSP_OK;
        p->id[i] = ch;
    }
    if (secret_decode(token + OP_ID_HEX + 1, p->secret) != 0)
        return QTSP_OK;
    ENSURE(sha256(token, OP_TOKEN_LEN, p->th) == 0, QTSP_ERR_CRYPTO, "SHA-256 failed");
    char cid[OP_ID_HEX + 1];
    unsigned char cached_rh[32];
    int hit = cache_lookup(p->th, now, cid, cached_rh);
    qtsp_status rc = load_record(st, p->id, &p->rec);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        if (hit)
            cache_forget(p->th);
        p->verdict = ST_UNKNOWN;
        return QTSP_OK;
    }
    TRY(rc);
    if (p->rec.flags & OP_F_DISABLED) {
        p->verdict = ST_DISABLED;
        return QTSP_OK;
    }
    ENSURE(sha256(p->rec.hash, strlen(p->rec.hash), p->rh) == 0, QTSP_ERR_CRYPTO, "SHA-256 failed");
    if (hit && strcmp(cid, p->id) == 0 && CRYPTO_memcmp(cached_rh, p->rh, 32) == 0) {
        p->verdict = ST_CACHED;
        return QTSP_OK;
    }
    int why = ST_LOCKED;
    p->verdict = id_refused(p->id, p->rh, now, &why) ? why : -1;
    return QTSP_OK;
}

static void pre_cleanup(pre_auth *p)
{
    OPENSSL_cleanse(p, sizeof *p);
}

int qtsp_operator_auth_is_slow(qtsp_store *st, const char *token)
{
    pre_auth p;
    int slow = pre_check(st, token, qtsp_now_ms(), &p) == QTSP_OK && p.verdict == -1;
    qtsp_err_clear();
    pre_cleanup(&p);
    return slow;
}

#define AUTH_FAIL_OUT() FAIL_OUT(QTSP_ERR_AUTH, "missing, malformed or unknown operator token")

qtsp_status qtsp_operator_auth(qtsp_store *st, const char *token, qtsp_operator *out)
{
    qtsp_status rc = QTSP_OK;
    pre_auth p;
    ENSURE(st && out, QTSP_ERR_INVALID, "no store");
    int64_t now = qtsp_now_ms();
    TRY_OUT(pre_check(st, token, now, &p));
    if (p.verdict == ST_CACHED) {
        guard_count(ST_CACHED);
        *out = p.rec.op;
        goto out;
    }
    if (p.verdict != -1) {
        guard_count(p.verdict);
        AUTH_FAIL_OUT();
    }
    pthread_mutex_lock(&g_argon_mu);
    int why = ST_LOCKED;
    if (id_refused(p.id, p.rh, qtsp_now_ms(),
                   &why)) { /* locked while this request waited its turn */
        pthread_mutex_unlock(&g_argon_mu);
        guard_count(why);
        AUTH_FAIL_OUT();
    }
    int arc = argon2id_verify(p.rec.hash, (const char *)p.secret, sizeof p.secret);
    pthread_mutex_unlock(&g_argon_mu);
    guard_shm *g = guard_lock();
    if (g) {
        g->argon2_runs++;
        g->stats[arc == ARGON2_OK ? ST_OK : ST_WRONG]++;
        guard_unlock(g);
    }
    note_result(p.id, p.rh, arc == ARGON2_OK, now);
    if (arc == ARGON2_VERIFY_MISMATCH)
        AUTH_FAIL_OUT();
    ENSURE_OUT(arc == ARGON2_OK,
               arc == ARGON2_MEMORY_ALLOCATION_ERROR ? QTSP_ERR_NOMEM : QTSP_ERR_STORE_CORRUPT,
               "argon2id verification failed: %s", argon2_error_message(arc));
    cache_store(p.th, p.rh, p.id, now);
    *out = p.rec.op;
out:
    pre_cleanup(&p);
    return rc;
}

qtsp_status qtsp_operator_metrics(qtsp_buf *out)
{
    uint64_t stats[ST_N] = {0}, runs = 0, locked = 0;
    guard_shm *g = guard_lock();
    if (g) {
        memcpy(stats, g->stats, sizeof stats);
        runs = g->argon2_runs;
        int64_t now = qtsp_now_ms();
        for (size_t i = 0; i < GUARD_FAIL_SLOTS; i++)
            locked += g->fail[i].id[0] && g->fail[i].locked_until > now;
        guard_unlock(g);
    }
    TRY(qtsp_buf_printf(out, "# HELP qtsp_operator_auth_total Operator token checks by outcome "
                             "(all worker processes).\n"
                             "# TYPE qtsp_operator_auth_total counter\n"));
    for (int i = 0; i < ST_N; i++)
        TRY(qtsp_buf_printf(out, "qtsp_operator_auth_total{result=\"%s\"} %llu\n", k_stat_names[i],
                            (unsigned long long)stats[i]));
    return qtsp_buf_printf(out,
                           "# HELP qtsp_operator_argon2_total argon2id verifications run.\n"
                           "# TYPE qtsp_operator_argon2_total counter\n"
                           "qtsp_operator_argon2_total %llu\n"
                           "# HELP qtsp_operator_locked Operator ids locked now.\n"
                           "# TYPE qtsp_operator_locked gauge\nqtsp_operator_locked %llu\n",
                           (unsigned long long)runs, (unsigned long long)locked);
}
