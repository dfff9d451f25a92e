/* Anchors of the audit chain outside the store (ca/audit_anchor.h). */
#include "ca/audit_anchor.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ts.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/file.h"

#define ANCHOR_META "audit_anchor_record" /* meta: seq (u64 BE) of the last audit.anchor */
#define ANCHOR_FILE_MAX (64 * 1024)
#define TSR_MAX (32 * 1024)

static size_t b64_len(size_t n)
{
    return 4 * ((n + 2) / 3) + 1;
}

/* ---- anchoring ------------------------------------------------------------ */

typedef struct head_ctx {
    uint64_t seq, anchor_rec;
    unsigned char hash[QTSP_AUDIT_HASH_LEN];
} head_ctx;

static qtsp_status read_head(qtsp_store *st, head_ctx *h)
{
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(st, 0, &txn));
    qtsp_status rc = qtsp_audit_head(txn, &h->seq, h->hash);
    if (rc == QTSP_OK) {
        const void *v;
        size_t vl;
        qtsp_status m =
            qtsp_txn_get0(txn, QTSP_T_META, ANCHOR_META, sizeof ANCHOR_META - 1, &v, &vl);
        h->anchor_rec = m == QTSP_OK && vl == 8 ? qtsp_be64_get(v) : 0;
        if (m == QTSP_ERR_NOT_FOUND)
            qtsp_err_clear();
        else if (m != QTSP_OK)
            rc = m;
    }
    qtsp_txn_abort(txn);
    return rc;
}

typedef struct append_ctx {
    const char *actor;
    json_t *details;
} append_ctx;

static qtsp_status append_anchor(qtsp_txn *txn, void *vctx)
{
    append_ctx *c = vctx;
    uint64_t rec = 0;
    TRY(qtsp_audit_append(txn, c->actor, "audit.anchor", c->details, &rec));
    unsigned char be[8];
    qtsp_be64_put(be, rec);
    return qtsp_txn_put(txn, QTSP_T_META, ANCHOR_META, sizeof ANCHOR_META - 1, be, sizeof be, 0);
}

/* A granted TimeStampResp, read whole. */
static qtsp_status check_granted(const qtsp_buf *tsr)
{
    const unsigned char *p = tsr->data;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)tsr->len);
    int ok = r && p == tsr->data + tsr->len && TS_RESP_get_token(r) != NULL;
    if (ok) {
        long s = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r)));
        ok = s == TS_STATUS_GRANTED || s == TS_STATUS_GRANTED_WITH_MODS;
    }
    TS_RESP_free(r);
    ENSURE(ok, QTSP_ERR_CRYPTO, "audit anchor: the TSA did not grant a time-stamp");
    return QTSP_OK;
}

qtsp_status qtsp_audit_anchor(qtsp_store *st, const char *path, const char *actor,
                              qtsp_audit_stamp_fn stamp, void *ctx, uint64_t *seq)
{
    qtsp_status rc = QTSP_OK;
    head_ctx h = {0};
    json_t *d = NULL;
    char *text = NULL, *hash64 = NULL, *tsr64 = NULL;
    qtsp_buf tsr;
    qtsp_buf_init(&tsr, TSR_MAX);
    *seq = 0;
    rc = read_head(st, &h);
    if (rc == QTSP_ERR_NOT_FOUND) { /* an empty log: nothing to anchor */
        qtsp_err_clear();
        return QTSP_OK;
    }
    TRY(rc);
    if (h.seq == h.anchor_rec) /* only the last anchor's own record since it */
        return QTSP_OK;
    TRY_OUT(stamp(ctx, h.hash, &tsr));
    TRY_OUT(check_granted(&tsr));

    hash64 = malloc(b64_len(sizeof h.hash));
    tsr64 = malloc(b64_len(tsr.len));
    ENSURE_OUT(hash64 && tsr64, QTSP_ERR_NOMEM, "out of memory");
    qtsp_base64url_encode(h.hash, sizeof h.hash, hash64, b64_len(sizeof h.hash));
    qtsp_base64url_encode(tsr.data, tsr.len, tsr64, b64_len(tsr.len));
    d = json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)h.seq, "chain_hash", hash64, "tsa_response",
                  tsr64);
    ENSURE_OUT(d, QTSP_ERR_NOMEM, "out of memory");
    append_ctx ac = {actor, d};
    TRY_OUT(qtsp_store_write(st, append_anchor, &ac));

    char when[40];
    qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
    ENSURE_OUT(json_object_set_new(d, "anchored_at", json_string(when)) == 0, QTSP_ERR_NOMEM,
               "out of memory");
    text = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    ENSURE_OUT(text, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(qtsp_file_write_atomic(path, text, strlen(text), 0644));
    *seq = h.seq;
out:
    free(text);
    free(hash64);
    free(tsr64);
    json_decref(d);
    qtsp_buf_cleanup(&tsr);
    return rc;
}

/* ---- checking ------------------------------------------------------------- */

static qtsp_status read_anchor(const char *path, json_t **out)
{
    FILE *f = fopen(path, "r");
    if (!f && errno == ENOENT)
        return QTSP_ERR_NOT_FOUND;
    ENSURE(f, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    char *buf = malloc(ANCHOR_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, ANCHOR_FILE_MAX + 1, f) : 0;
    fclose(f);
    ENSURE(buf, QTSP_ERR_NOMEM, "out of memory");
    json_error_t e;
    json_t *j = n <= ANCHOR_FILE_MAX ? json_loadb(buf, n, JSON_REJECT_DUPLICATES, &e) : NULL;
    free(buf);
    if (!json_is_object(j)) {
        json_decref(j);
        FAIL(QTSP_ERR_AUDIT_BROKEN, "%s is not an audit anchor (JSON object)", path);
    }
    *out = j;
    return QTSP_OK;
}

/* The token in tsr is a granted time-stamp over hash by tsa_cert under root. */
static qtsp_status verify_token(const unsigned char *tsr, size_t len,
                                const unsigned char hash[QTSP_AUDIT_HASH_LEN], X509 *tsa_cert,
                                X509 *root)
{
    qtsp_status rc = QTSP_OK;
    const unsigned char *p = tsr;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)len);
    TS_VERIFY_CTX *v = TS_VERIFY_CTX_new();
    X509_STORE *xs = X509_STORE_new();
    STACK_OF(X509) *certs = sk_X509_new_null();
    unsigned char *imp = OPENSSL_memdup(hash, QTSP_AUDIT_HASH_LEN);
    ENSURE_OUT(r && p == tsr + len, QTSP_ERR_AUDIT_BROKEN,
               "the anchor's tsa_response is not a TimeStampResp");
    ENSURE_OUT(v && xs && certs && imp && X509_STORE_add_cert(xs, root) == 1 &&
                   X509_up_ref(tsa_cert) == 1,
               QTSP_ERR_NOMEM, "out of memory");
    if (sk_X509_push(certs, tsa_cert) <= 0) {
        X509_free(tsa_cert);
        FAIL_OUT(QTSP_ERR_NOMEM, "out of memory");
    }
    /* the anchor may outlive the TSA certificate's validity */
    X509_STORE_set_flags(xs, X509_V_FLAG_NO_CHECK_TIME);
    TS_VERIFY_CTX_set_flags(v, TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_IMPRINT);
    TS_VERIFY_CTX_set_imprint(v, imp, QTSP_AUDIT_HASH_LEN);
    imp = NULL;
    TS_VERIFY_CTX_set_store(v, xs);
    xs = NULL;
    TS_VERIFY_CTX_set_certs(v, certs);
    certs = NULL;
    ERR_clear_error();
    ENSURE_OUT(TS_RESP_verify_response(v, r) == 1, QTSP_ERR_AUDIT_BROKEN,
               "the anchor's time-stamp does not verify over the anchored hash");
out:
    OPENSSL_free(imp);
    sk_X509_pop_free(certs, X509_free);
    X509_STORE_free(xs);
    TS_VERIFY_CTX_free(v);
    TS_RESP_free(r);
    return rc;
}

qtsp_status qtsp_audit_anchor_check(qtsp_store *st, const char *path, uint64_t count,
                                    X509 *tsa_cert, X509 *root, uint64_t *anchored, char *what,
                                    size_t cap)
{
    qtsp_status rc = QTSP_OK;
    json_t *a = NULL;
    unsigned char *tsr = NULL;
    qtsp_txn *txn = NULL;
    TRY(read_anchor(path, &a));
    json_t *js = json_object_get(a, "seq");
    const char *h64 = json_string_value(json_object_get(a, "chain_hash"));
    const char *t64 = json_string_value(json_object_get(a, "tsa_response"));
    const char *at = json_string_value(json_object_get(a, "anchored_at"));
    ENSURE_OUT(json_is_integer(js) && json_integer_value(js) > 0 && h64 && t64,
               QTSP_ERR_AUDIT_BROKEN, "%s lacks seq, chain_hash or tsa_response", path);
    uint64_t seq = (uint64_t)json_integer_value(js);
    unsigned char want[QTSP_AUDIT_HASH_LEN], have[QTSP_AUDIT_HASH_LEN];
    size_t hl = 0, tl = 0;
    ENSURE_OUT(qtsp_base64_decode(h64, strlen(h64), QTSP_B64_URL, want, sizeof want, &hl) ==
                       QTSP_OK &&
                   hl == sizeof want,
               QTSP_ERR_AUDIT_BROKEN, "%s: chain_hash is not a base64url SHA-256", path);
    tsr = malloc(TSR_MAX);
    ENSURE_OUT(tsr, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(qtsp_base64_decode(t64, strlen(t64), QTSP_B64_URL, tsr, TSR_MAX, &tl) == QTSP_OK,
               QTSP_ERR_AUDIT_BROKEN, "%s: tsa_response is not base64url", path);
    TRY_OUT(verify_token(tsr, tl, want, tsa_cert, root));
    /* the attack this is for: the last records removed, the sequence set back */
    ENSURE_OUT(seq <= count, QTSP_ERR_AUDIT_BROKEN,
               "truncated tail: the chain ends at record %llu but record %llu was anchored "
               "(%s, time-stamped): records after %llu were removed",
               (unsigned long long)count, (unsigned long long)seq, at ? at : path,
               (unsigned long long)count);
    TRY_OUT(qtsp_store_begin(st, 0, &txn));
    TRY_OUT(qtsp_audit_hash_at(txn, seq, have));
    ENSURE_OUT(CRYPTO_memcmp(want, have, sizeof want) == 0, QTSP_ERR_AUDIT_BROKEN,
               "record %llu differs from its anchor (%s): the chain was rewritten",
               (unsigned long long)seq, at ? at : path);
    *anchored = seq;
    snprintf(what, cap, "anchored at record %llu (%s), time-stamp verified",
             (unsigned long long)seq, at ? at : "?");
out:
    qtsp_txn_abort(txn);
    free(tsr);
    json_decref(a);
    return rc;
}
