/* The CSC API v2 core (sign/csc.h, docs/csc.md). */
#include "sign/csc.h"

#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/key.h"
#include "ca/subkey.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/json.h"
#include "core/log.h"
#include "core/yaml.h"
#include "ra/activation.h"
#include "ra/ra_int.h"
#include "sign/totp.h"

#define TOKEN_BYTES 32 /* access tokens and SADs: 256 random bits, base64url */
#define TOKEN_CHARS 43
#define KEY_HEX 65       /* hex SHA-256 of a token or SAD, the store key */
#define PASSWORD_MAX 256 /* what a login may send */
#define NEW_PASSWORD_MIN 12
#define NEW_PASSWORD_MAX 128
#define HASH_MAX 64 /* SHA-512 */
#define SAD_LIFETIME_MAX 300
#define DOC_MAX_BODY_DEFAULT (20 << 20)
#define OID_SHA256 "2.16.840.1.101.3.4.2.1"

struct qtsp_csc {
    qtsp_store *store;
    qtsp_hsm *hsm;
    X509 *issuing, *root;
    qtsp_usage *usage;
    const qtsp_ades_services *ades; /* signDoc; NULL: not offered */
    qtsp_archive *archive;
    int64_t doc_max_body, docs_max;
    unsigned char otp_key[QTSP_OTP_KEY_LEN];
    int64_t token_life_s, sad_life_s, max_hashes;
    int64_t login_max, login_lock_s;
    int64_t refusal_window_ms, refusal_burst; /* audit aggregation of login refusals */
    int64_t refusal_account_burst;            /* ... of those about one account */
    int64_t history_page;                     /* GET /api/v1/history without ?limit */
    int64_t otp_window, otp_max, otp_lock_s;
    _Atomic int64_t purged_at_ms; /* the last purge (qtsp_csc_purge) */
};

/* ---- policy ---- */

static qtsp_status load_policy(qtsp_csc *c, const char *path)
{
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const top[] = {
        "version", "access_token_lifetime", "sad_lifetime",  "max_hashes", "history_page", "login",
        "otp",     "documents_max_body",    "documents_max", NULL};
    static const char *const login_keys[] = {"max_failures",
                                             "lockout",
                                             "refusal_audit_window",
                                             "refusal_audit_burst",
                                             "refusal_audit_account_burst",
                                             NULL};
    static const char *const otp_keys[] = {"window", "max_failures", "lockout", NULL};
    int64_t version = 0;
    c->token_life_s = 3600;
    c->sad_life_s = SAD_LIFETIME_MAX;
    c->max_hashes = 1000;
    c->login_max = c->otp_max = 5;
    c->login_lock_s = c->otp_lock_s = 900;
    c->otp_window = 1;
    c->history_page = QTSP_HISTORY_PAGE_DEFAULT;
    int64_t refusal_window_s = 60;
    c->refusal_burst = 20;
    c->refusal_account_burst = 5;
    c->doc_max_body = DOC_MAX_BODY_DEFAULT;
    c->docs_max = 16;
    TRY_OUT(qtsp_ynode_check_keys(root, top));
    /* signDoc: a 10 MB document is 13.4 MB of base64; the builders take at
     * most QTSP_ADES_MAX_DOC */
    TRY_OUT(qtsp_yget_int(root, "documents_max_body", 0, 65536,
                          (int64_t)(QTSP_ADES_MAX_DOC / 3 * 4 + 65536), &c->doc_max_body));
    TRY_OUT(qtsp_yget_int(root, "documents_max", 0, 1, 64, &c->docs_max));
    TRY_OUT(qtsp_yget_int(root, "version", 1, 1, 1, &version));
    TRY_OUT(qtsp_yget_duration(root, "access_token_lifetime", 0, &c->token_life_s));
    TRY_OUT(qtsp_yget_duration(root, "sad_lifetime", 0, &c->sad_life_s));
    TRY_OUT(qtsp_yget_int(root, "max_hashes", 0, 1, 10000, &c->max_hashes));
    TRY_OUT(qtsp_yget_int(root, "history_page", 0, 1, QTSP_HISTORY_PAGE_MAX, &c->history_page));
    if (c->token_life_s < 60 || c->token_life_s > 86400)
        TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(root, "access_token_lifetime"),
                                "access_token_lifetime", "must be 60s..24h"));
    if (c->sad_life_s < 1 || c->sad_life_s > SAD_LIFETIME_MAX)
        TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(root, "sad_lifetime"), "sad_lifetime",
                                "must be 1s..300s"));
    const qtsp_ynode *l = qtsp_ynode_get(root, "login");
    if (l) {
        TRY_OUT(qtsp_ynode_check_keys(l, login_keys));
        TRY_OUT(qtsp_yget_int(l, "max_failures", 0, 1, 100, &c->login_max));
        TRY_OUT(qtsp_yget_duration(l, "lockout", 0, &c->login_lock_s));
        TRY_OUT(qtsp_yget_duration(l, "refusal_audit_window", 0, &refusal_window_s));
        TRY_OUT(qtsp_yget_int(l, "refusal_audit_burst", 0, 1, 100000, &c->refusal_burst));
        TRY_OUT(
            qtsp_yget_int(l, "refusal_audit_account_burst", 0, 1, 1000, &c->refusal_account_burst));
        if (refusal_window_s < 1 || refusal_window_s > 86400)
            TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(l, "refusal_audit_window"),
                                    "refusal_audit_window", "must be 1s..24h"));
    }
    c->refusal_window_ms = refusal_window_s * 1000;
    const qtsp_ynode *o = qtsp_ynode_get(root, "otp");
    if (o) {
        TRY_OUT(qtsp_ynode_check_keys(o, otp_keys));
        TRY_OUT(qtsp_yget_int(o, "window", 0, 0, 2, &c->otp_window));
        TRY_OUT(qtsp_yget_int(o, "max_failures", 0, 1, 100, &c->otp_max));
        TRY_OUT(qtsp_yget_duration(o, "lockout", 0, &c->otp_lock_s));
    }
out:
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status qtsp_csc_new(const qtsp_csc_deps *d, qtsp_csc **out)
{
    ENSURE(d && d->store && d->hsm && d->issuing && d->root && d->policy && d->secrets_dir &&
               d->usage,
           QTSP_ERR_INVALID, "remote signing: incomplete dependencies");
    qtsp_csc *c = calloc(1, sizeof *c);
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    c->store = d->store;
    c->hsm = d->hsm;
    c->issuing = d->issuing;
    c->root = d->root;
    c->usage = d->usage;
    c->ades = d->ades;
    c->archive = d->archive;
    TRY_OUT(load_policy(c, d->policy));
    TRY_OUT(qtsp_otp_key_load(d->secrets_dir, c->otp_key));
out:
    if (rc != QTSP_OK) {
        qtsp_csc_free(c);
        return rc;
    }
    *out = c;
    return QTSP_OK;
}

void qtsp_csc_free(qtsp_csc *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->otp_key, sizeof c->otp_key);
    free(c);
}

/* ---- helpers ---- */

/* User ids and credential ids are lower-case hex made by the RA. */
static int id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n < QTSP_CSC_ID_MAX && strspn(s, "0123456789abcdef") == n;
}

/* The store key of a bearer secret (access token, SAD): hex SHA-256. */
static void secret_key(const char *secret, char out[KEY_HEX])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret, strlen(secret), h);
    qtsp_hex_encode(h, sizeof h, out);
}

/* A fresh bearer secret (256 bits, base64url) and its store key. */
static qtsp_status new_secret(char out[TOKEN_CHARS + 1], char key[KEY_HEX])
{
    unsigned char r[TOKEN_BYTES];
    TRY(qtsp_random(r, sizeof r));
    qtsp_base64url_encode(r, sizeof r, out, TOKEN_CHARS + 1);
    OPENSSL_cleanse(r, sizeof r);
    secret_key(out, key);
    return QTSP_OK;
}

static int secret_form_ok(const char *s)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    return s && strlen(s) == TOKEN_CHARS && strspn(s, alpha) == TOKEN_CHARS;
}

static json_t *b64_json(const unsigned char *in, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    json_t *j = NULL;
    if (qtsp_base64_encode(in, len, t, cap) == QTSP_OK)
        j = json_string(t);
    free(t);
    return j;
}

static void actor_of(const char *user_id, char out[96])
{
    snprintf(out, 96, "signer:%s", user_id);
}

static int64_t jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* An optional boolean field. */
static qtsp_status opt_bool(const json_t *req, const char *name, int dflt, int *out)
{
    const json_t *v = json_object_get(req, name);
    ENSURE(!v || json_is_boolean(v), QTSP_ERR_INVALID, "%s: must be true or false", name);
    *out = v ? json_is_true(v) : dflt;
    return QTSP_OK;
}

/* Failure counters and lock of a signer ('u') or credential ('c'), and the
 * last TOTP step accepted for a credential (RFC 6238 5.2: no replay). */
typedef struct lock_state {
    int64_t fails;
    int64_t locked_until_ms;
    int64_t last_step;
} lock_state;

static void state_key(char kind, const char *id, char out[80])
{
    snprintf(out, 80, "%c:%s", kind, id);
}

static qtsp_status state_get(qtsp_txn *txn, char kind, const char *id, lock_state *s)
{
    char k[80];
    state_key(kind, id, k);
    memset(s, 0, sizeof *s);
    json_t *o = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_CSC_STATE, k, &o);
    if (rc == QTSP_ERR_NOT_FOUND)
        return QTSP_OK;
    TRY(rc);
    s->fails = jint(o, "fails");
    s->locked_until_ms = jint(o, "locked_until_ms");
    s->last_step = jint(o, "last_step");
    json_decref(o);
    return QTSP_OK;
}

static qtsp_status state_put(qtsp_txn *txn, char kind, const char *id, const lock_state *s)
{
    char k[80];
    state_key(kind, id, k);
    json_t *o = json_pack("{s:I,s:I,s:I}", "fails", (json_int_t)s->fails, "locked_until_ms",
                          (json_int_t)s->locked_until_ms, "last_step", (json_int_t)s->last_step);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = ra_put_json(txn, QTSP_T_CSC_STATE, k, o, 0);
    json_decref(o);
    return rc;
}

/* One more wrong secret: locks for lock_s after max in a row. Returns 1 when
 * this failure locked. */
static int state_fail(lock_state *s, int64_t max, int64_t lock_s, int64_t now_ms)
{
    if (++s->fails < max)
        return 0;
    s->fails = 0;
    s->locked_until_ms = now_ms + lock_s * 1000;
    return 1;
}

static qtsp_status audit(qtsp_txn *txn, const char *user_id, const char *event, json_t *details)
{
    char actor[96];
    actor_of(user_id, actor);
    ENSURE(details != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_audit_append(txn, actor, event, details, NULL);
    json_decref(details);
    return rc;
}

static void format_ms(int64_t ms, char out[32])
{
    qtsp_format_rfc3339((time_t)(ms / 1000), out, 32);
}

/* The signer's credential cred_id (a new reference in *out). Unknown ids
 * and other signers' credentials read alike. */
static qtsp_status own_credential(qtsp_txn *txn, const char *user_id, const char *cred_id,
                                  json_t **out)
{
    ENSURE(id_ok(cred_id) && strlen(cred_id) <= 2 * QTSP_SERIAL_MAX, QTSP_ERR_INVALID,
           "credentialID: no such credential");
    json_t *cred = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_CREDENTIALS, cred_id, &cred);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "credentialID: no such credential");
    }
    TRY(rc);
    const char *owner = json_string_value(json_object_get(cred, "user_id"));
    if (!owner || strcmp(owner, user_id) != 0) {
        json_decref(cred);
        FAIL(QTSP_ERR_INVALID, "credentialID: no such credential");
    }
    *out = cred;
    return QTSP_OK;
}

typedef enum cert_use { CERT_OK, CERT_REVOKED, CERT_SUSPENDED, CERT_EXPIRED, CERT_EARLY } cert_use;

static qtsp_status cert_state(qtsp_txn *txn, const char *cred_id, time_t now, cert_use *out)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t sl = 0;
    ENSURE(qtsp_serial_from_hex(cred_id, serial, &sl) == QTSP_OK, QTSP_ERR_STORE_CORRUPT,
           "credential %s: not a serial", cred_id);
    qtsp_cert_status st, eff;
    qtsp_status rc = qtsp_certdb_get_status(txn, serial, sl, &st);
    if (rc == QTSP_ERR_NOT_FOUND)
        FAIL(QTSP_ERR_STORE_CORRUPT, "credential %s: no certificate", cred_id);
    TRY(rc);
    qtsp_cert_status_effective(&st, now, &eff);
    *out = eff.state == QTSP_CERT_REVOKED   ? CERT_REVOKED
           : eff.state == QTSP_CERT_ON_HOLD ? CERT_SUSPENDED
           : now > eff.not_after            ? CERT_EXPIRED
           : now < eff.not_before           ? CERT_EARLY
                                            : CERT_OK;
    return QTSP_OK;
}

/* The credential may sign now: enabled, its certificate valid (EN 319 411-1:
 * no signature with a suspended, revoked or expired certificate). */
static qtsp_status usable(qtsp_txn *txn, const char *cred_id, const json_t *cred, time_t now)
{
    cert_use u;
    TRY(cert_state(txn, cred_id, now, &u));
    ENSURE(u != CERT_REVOKED, QTSP_ERR_STATE, "credential %s: the certificate is revoked", cred_id);
    ENSURE(u != CERT_SUSPENDED, QTSP_ERR_STATE,
           "credential %s: the certificate is suspended (on hold)", cred_id);
    ENSURE(u != CERT_EXPIRED, QTSP_ERR_STATE, "credential %s: the certificate has expired",
           cred_id);
    ENSURE(u != CERT_EARLY, QTSP_ERR_STATE, "credential %s: the certificate is not valid yet",
           cred_id);
    ENSURE(json_is_true(json_object_get(cred, "enabled")), QTSP_ERR_STATE,
           "credential %s: disabled", cred_id);
    return QTSP_OK;
}

static qtsp_status cert_of(qtsp_txn *txn, const char *cred_id, X509 **out)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t sl = 0;
    ENSURE(qtsp_serial_from_hex(cred_id, serial, &sl) == QTSP_OK, QTSP_ERR_STORE_CORRUPT,
           "credential %s: not a serial", cred_id);
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    TRY(qtsp_certdb_get(txn, serial, sl, &rec));
    const unsigned char *p = rec.der;
    X509 *x = d2i_X509(NULL, &p, (long)rec.der_len);
    qtsp_cert_record_cleanup(&rec);
    ENSURE(x != NULL, QTSP_ERR_STORE_CORRUPT, "credential %s: certificate unreadable", cred_id);
    *out = x;
    return QTSP_OK;
}

/* ---- algorithms ---- */

typedef struct hash_alg {
    const char *oid;
    int nid;
} hash_alg;

static const hash_alg k_hashes[] = {
    {"2.16.840.1.101.3.4.2.1", NID_sha256},
    {"2.16.840.1.101.3.4.2.2", NID_sha384},
    {"2.16.840.1.101.3.4.2.3", NID_sha512},
    {"2.16.840.1.101.3.4.2.4", NID_sha224},
};

static const hash_alg *hash_by_oid(const char *oid)
{
    for (size_t i = 0; oid && i < sizeof k_hashes / sizeof k_hashes[0]; i++)
        if (strcmp(k_hashes[i].oid, oid) == 0)
            return &k_hashes[i];
    return NULL;
}

static const hash_alg *hash_by_nid(int nid)
{
    for (size_t i = 0; i < sizeof k_hashes / sizeof k_hashes[0]; i++)
        if (k_hashes[i].nid == nid)
            return &k_hashes[i];
    return NULL;
}

/* signAlgo OIDs (CSC v2 11.11; RFC 5758 3.2, RFC 8017 A.2). hash 0: the
 * request's hashAlgorithmOID says it. */
typedef struct sign_alg {
    const char *oid;
    qtsp_sig_scheme scheme;
    int hash;
    int key; /* EVP_PKEY_EC or EVP_PKEY_RSA */
} sign_alg;

#define OID_RSASSA_PSS "1.2.840.113549.1.1.10"

static const sign_alg k_sign_algs[] = {
    {"1.2.840.10045.4.3.2", QTSP_SIG_ECDSA, NID_sha256, EVP_PKEY_EC},
    {"1.2.840.10045.4.3.3", QTSP_SIG_ECDSA, NID_sha384, EVP_PKEY_EC},
    {"1.2.840.10045.4.3.4", QTSP_SIG_ECDSA, NID_sha512, EVP_PKEY_EC},
    {"1.2.840.10045.4.3.1", QTSP_SIG_ECDSA, NID_sha224, EVP_PKEY_EC},
    {"1.2.840.10045.2.1", QTSP_SIG_ECDSA, 0, EVP_PKEY_EC},
    {"1.2.840.113549.1.1.11", QTSP_SIG_RSA_PKCS1, NID_sha256, EVP_PKEY_RSA},
    {"1.2.840.113549.1.1.12", QTSP_SIG_RSA_PKCS1, NID_sha384, EVP_PKEY_RSA},
    {"1.2.840.113549.1.1.13", QTSP_SIG_RSA_PKCS1, NID_sha512, EVP_PKEY_RSA},
    {"1.2.840.113549.1.1.14", QTSP_SIG_RSA_PKCS1, NID_sha224, EVP_PKEY_RSA},
    {"1.2.840.113549.1.1.1", QTSP_SIG_RSA_PKCS1, 0, EVP_PKEY_RSA},
    {OID_RSASSA_PSS, QTSP_SIG_RSA_PSS, 0, EVP_PKEY_RSA},
};

/* RSASSA-PSS-params (RFC 4055 3.1) of signAlgoParams, base64 DER: hash,
 * MGF1 with its hash, salt length; SHA-1 (the ASN.1 defaults) refused. */
static qtsp_status pss_params(const char *b64, qtsp_sigalg *alg, int *hash_nid)
{
    ENSURE(b64, QTSP_ERR_INVALID, "signAlgoParams: required for RSASSA-PSS");
    unsigned char der[256];
    size_t n = 0;
    if (qtsp_base64_decode(b64, strlen(b64), QTSP_B64_STD | QTSP_B64_PADDING, der, sizeof der,
                           &n) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "signAlgoParams: not base64 of RSASSA-PSS-params");
    }
    const unsigned char *p = der;
    RSA_PSS_PARAMS *pp = d2i_RSA_PSS_PARAMS(NULL, &p, (long)n);
    X509_ALGOR *mgf_hash = NULL;
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(pp != NULL && p == der + n, QTSP_ERR_INVALID,
               "signAlgoParams: not DER RSASSA-PSS-params");
    const hash_alg *h =
        pp->hashAlgorithm ? hash_by_nid(OBJ_obj2nid(pp->hashAlgorithm->algorithm)) : NULL;
    ENSURE_OUT(h != NULL, QTSP_ERR_INVALID,
               "signAlgoParams: hashAlgorithm must be SHA-224, -256, -384 or -512");
    /* MGF1's parameter: the AlgorithmIdentifier of its hash (RFC 8017 B.2.1) */
    ENSURE_OUT(pp->maskGenAlgorithm && OBJ_obj2nid(pp->maskGenAlgorithm->algorithm) == NID_mgf1 &&
                   pp->maskGenAlgorithm->parameter &&
                   pp->maskGenAlgorithm->parameter->type == V_ASN1_SEQUENCE,
               QTSP_ERR_INVALID, "signAlgoParams: maskGenAlgorithm must be MGF1 with a SHA-2 hash");
    mgf_hash =
        ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_ALGOR), pp->maskGenAlgorithm->parameter);
    const hash_alg *mh = mgf_hash ? hash_by_nid(OBJ_obj2nid(mgf_hash->algorithm)) : NULL;
    ENSURE_OUT(mh != NULL, QTSP_ERR_INVALID,
               "signAlgoParams: maskGenAlgorithm must be MGF1 with a SHA-2 hash");
    long salt = pp->saltLength ? ASN1_INTEGER_get(pp->saltLength) : 20;
    ENSURE_OUT(salt >= 0 && salt <= HASH_MAX, QTSP_ERR_INVALID, "signAlgoParams: saltLength 0..%d",
               HASH_MAX);
    ENSURE_OUT(!pp->trailerField || ASN1_INTEGER_get(pp->trailerField) == 1, QTSP_ERR_INVALID,
               "signAlgoParams: trailerField must be 1");
    alg->mgf1_md = EVP_get_digestbynid(mh->nid);
    alg->salt_len = (int)salt;
    *hash_nid = h->nid;
out:
    X509_ALGOR_free(mgf_hash);
    RSA_PSS_PARAMS_free(pp);
    return rc;
}

/* The signature algorithm of a signHash request (or of one of signDoc's
 * documents) and its hash; dflt_hash (a NID, 0 none) when neither signAlgo
 * nor hashAlgorithmOID names one. */
static qtsp_status parse_sign_alg(const json_t *req, int dflt_hash, qtsp_sigalg *alg,
                                  const hash_alg **hash, int *key_type)
{
    const char *oid = NULL, *hoid = NULL, *params = NULL;
    TRY(qtsp_json_get_string(req, "signAlgo", 1, &oid));
    TRY(qtsp_json_get_string(req, "hashAlgorithmOID", 0, &hoid));
    TRY(qtsp_json_get_string(req, "signAlgoParams", 0, &params));
    const sign_alg *sa = NULL;
    for (size_t i = 0; i < sizeof k_sign_algs / sizeof k_sign_algs[0]; i++)
        if (strcmp(k_sign_algs[i].oid, oid) == 0)
            sa = &k_sign_algs[i];
    ENSURE(sa != NULL, QTSP_ERR_INVALID, "signAlgo: %.64s is not supported", oid);
    memset(alg, 0, sizeof *alg);
    alg->scheme = sa->scheme;
    alg->salt_len = -1;
    int nid = sa->hash;
    if (sa->scheme == QTSP_SIG_RSA_PSS)
        TRY(pss_params(params, alg, &nid));
    else
        ENSURE(params == NULL, QTSP_ERR_INVALID, "signAlgoParams: only for RSASSA-PSS");
    const hash_alg *h = hoid ? hash_by_oid(hoid) : NULL;
    ENSURE(!hoid || h, QTSP_ERR_INVALID, "hashAlgorithmOID: %.64s is not supported", hoid);
    if (nid == 0 && !h && dflt_hash)
        nid = dflt_hash;
    if (nid == 0) {
        ENSURE(h != NULL, QTSP_ERR_INVALID, "hashAlgorithmOID: required with signAlgo %s", oid);
        nid = h->nid;
    }
    ENSURE(!h || h->nid == nid, QTSP_ERR_INVALID, "hashAlgorithmOID: does not match signAlgo");
    *hash = hash_by_nid(nid);
    alg->md = EVP_get_digestbynid(nid);
    ENSURE(*hash && alg->md, QTSP_ERR_INVALID, "signAlgo: no such digest");
    *key_type = sa->key;
    return QTSP_OK;
}

/* hashes: n base64 digests of dlen bytes into out (n * dlen bytes, malloc'd)
 * and, sorted, as the hex list a SAD is bound to (*sorted, new reference). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static qtsp_status parse_hashes(const json_t *req, size_t dlen, size_t max, unsigned char **out,
                                size_t *n_out, json_t **sorted)
{
    const json_t *arr = json_object_get(req, "hashes");
    ENSURE(json_is_array(arr), QTSP_ERR_INVALID, "hashes: must be an array of base64 digests");
    size_t n = json_array_size(arr);
    ENSURE(n >= 1 && n <= max, QTSP_ERR_INVALID, "hashes: 1 to %zu", max);
    unsigned char *d = malloc(n * dlen);
    char **hex = calloc(n, sizeof *hex);
    json_t *list = json_array();
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(d && hex && list, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        size_t got = 0;
        ENSURE_OUT(s != NULL, QTSP_ERR_INVALID, "hashes[%zu]: must be a string", i);
        unsigned char buf[HASH_MAX];
        if (qtsp_base64_decode(s, strlen(s), QTSP_B64_STD | QTSP_B64_URL | QTSP_B64_PADDING, buf,
                               sizeof buf, &got) != QTSP_OK)
            got = 0;
        qtsp_err_clear();
        ENSURE_OUT(got == dlen, QTSP_ERR_INVALID,
                   "hashes[%zu]: must be the base64 of a %zu-byte digest", i, dlen);
        memcpy(d + i * dlen, buf, dlen);
        hex[i] = malloc(2 * dlen + 1);
        ENSURE_OUT(hex[i] != NULL, QTSP_ERR_NOMEM, "out of memory");
        qtsp_hex_encode(buf, dlen, hex[i]);
    }
    qsort(hex, n, sizeof *hex, cmp_str);
    for (size_t i = 0; i < n; i++)
        ENSURE_OUT(json_array_append_new(list, json_string(hex[i])) == 0, QTSP_ERR_NOMEM,
                   "out of memory");
    *out = d;
    d = NULL;
    *n_out = n;
    *sorted = list;
    list = NULL;
out:
    for (size_t i = 0; hex && i < n; i++)
        free(hex[i]);
    free(hex);
    free(d);
    json_decref(list);
    return rc;
}

/* ---- info ---- */

qtsp_status qtsp_csc_info(qtsp_csc *c, json_t **out)
{
    json_t *algos = json_array();
    ENSURE(algos != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof k_sign_algs / sizeof k_sign_algs[0]; i++)
        json_array_append_new(algos, json_string(k_sign_algs[i].oid));
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:[s],s:s,s:[s],s:{s:o},s:[s,s,s,s,s,s,s]}", "specs", "2.0.0.2",
        "name", "qtsp", "logo", "", "region", "EU", "lang", "en-US", "authType", "basic",
        "description", "qtsp remote qualified signatures (CSC API v2, SCAL2)",
        "signatureQualifiers", "eu_eidas_qes", "signAlgorithms", "algos", algos, "methods",
        "auth/login", "auth/revoke", "credentials/list", "credentials/info",
        "credentials/authorize", "credentials/sendOTP", "signatures/signHash");
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (c->ades && c->archive)
        json_array_append_new(json_object_get(o, "methods"), json_string("signatures/signDoc"));
    *out = o;
    return QTSP_OK;
}

/* ---- refusals that change nothing: one audit summary per window ----
 * A login with an unknown user id or by a signer who is locked out, and an
 * authorisation of a credential locked after wrong OTPs, change no state;
 * each used to add its own audit record, so a flood of them grew the audit
 * log (and the store) without bound. Now each is counted per window
 * (login.refusal_audit_window, 60 s) in a record of the CSC state table
 * (updated in the refusal's own commit: a crash loses no count), and only
 * the first of the window get their own record (csc.login.failed with
 * reason "unknown user", csc.login.locked, csc.otp.refused); the rest are
 * written as one csc.refused.summary once the window has ended: at the next
 * refusal of that record or at the next housekeeping pass (qtsp_csc_purge,
 * every minute), whichever comes first.
 * The records are kept apart so that noise cannot use up the burst of a
 * real account: unknown user ids share one ("r:login",
 * login.refusal_audit_burst, 20, its summary naming the REFUSAL_IDS most
 * refused ids with counts); a locked-out signer has its own ("r:login:ID")
 * and a locked credential its own ("r:otp:CRED"), each with
 * login.refusal_audit_account_burst (5). Wrong passwords and wrong OTPs are
 * not aggregated: they count towards a lockout, so they are few by
 * construction, and they are what it takes to lock an account. */
typedef enum refusal_kind {
    REFUSED_UNKNOWN_USER, /* login with an unknown user id */
    REFUSED_LOGIN_LOCKED, /* login by a signer locked out */
    REFUSED_OTP_LOCKED,   /* authorize of a credential locked after wrong OTPs */
    REFUSED_KINDS
} refusal_kind;

static const char *const k_refusal_names[REFUSED_KINDS] = {"unknown_user", "login_locked_out",
                                                           "otp_locked"};

#define REFUSAL_IDS 16      /* unknown user ids named in a summary, at most */
#define REFUSAL_KEY_MAX 160 /* "r:otp:" and a credential id */

typedef struct refusal_agg {
    int64_t window_start_ms, recorded, suppressed, first_ms, last_ms;
    int64_t kind[REFUSED_KINDS]; /* of suppressed */
    char user[QTSP_CSC_ID_MAX];  /* the account of a per-account record, else "" */
    char cred[REFUSAL_KEY_MAX];  /* the credential of an "r:otp:" record, else "" */
    /* unknown user ids of suppressed: the most refused, in order of arrival;
     * other_ids counts those not (or no longer) listed */
    int n_ids;
    char id[REFUSAL_IDS][QTSP_CSC_ID_MAX];
    int64_t id_n[REFUSAL_IDS], other_ids;
} refusal_agg;

/* The state record of a refusal of kind k (user_id's, credential cred_id's). */
static void refusal_key(refusal_kind k, const char *user_id, const char *cred_id,
                        char out[REFUSAL_KEY_MAX])
{
    if (k == REFUSED_UNKNOWN_USER)
        snprintf(out, REFUSAL_KEY_MAX, "r:login");
    else if (k == REFUSED_LOGIN_LOCKED)
        snprintf(out, REFUSAL_KEY_MAX, "r:login:%s", user_id);
    else
        snprintf(out, REFUSAL_KEY_MAX, "r:otp:%s", cred_id);
}

static qtsp_status agg_get(qtsp_txn *txn, const char *key, refusal_agg *a)
{
    memset(a, 0, sizeof *a);
    json_t *o = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_CSC_STATE, key, &o);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        return QTSP_OK;
    }
    TRY(rc);
    a->window_start_ms = jint(o, "window_start_ms");
    a->recorded = jint(o, "recorded");
    a->suppressed = jint(o, "suppressed");
    for (int k = 0; k < REFUSED_KINDS; k++)
        a->kind[k] = jint(o, k_refusal_names[k]);
    a->first_ms = jint(o, "first_ms");
    a->last_ms = jint(o, "last_ms");
    a->other_ids = jint(o, "other_ids");
    const char *u = json_string_value(json_object_get(o, "user_id"));
    const char *cr = json_string_value(json_object_get(o, "credential"));
    snprintf(a->user, sizeof a->user, "%s", u ? u : "");
    snprintf(a->cred, sizeof a->cred, "%s", cr ? cr : "");
    json_t *ids = json_object_get(o, "ids"), *e;
    size_t i;
    json_array_foreach(ids, i, e)
    {
        const char *id = json_string_value(json_array_get(e, 0));
        if (!id || a->n_ids == REFUSAL_IDS)
            break;
        snprintf(a->id[a->n_ids], QTSP_CSC_ID_MAX, "%s", id);
        a->id_n[a->n_ids++] = json_integer_value(json_array_get(e, 1));
    }
    json_decref(o);
    return QTSP_OK;
}

/* The counts of a by kind into o (new members). */
static qtsp_status agg_set_kinds(json_t *o, const refusal_agg *a)
{
    for (int k = 0; k < REFUSED_KINDS; k++)
        ENSURE(json_object_set_new(o, k_refusal_names[k], json_integer(a->kind[k])) == 0,
               QTSP_ERR_NOMEM, "out of memory");
    if (a->user[0])
        ENSURE(json_object_set_new(o, "user_id", json_string(a->user)) == 0, QTSP_ERR_NOMEM,
               "out of memory");
    if (a->cred[0])
        ENSURE(json_object_set_new(o, "credential", json_string(a->cred)) == 0, QTSP_ERR_NOMEM,
               "out of memory");
    return QTSP_OK;
}

static qtsp_status agg_put(qtsp_txn *txn, const char *key, const refusal_agg *a)
{
    json_t *ids = json_array();
    for (int i = 0; ids && i < a->n_ids; i++)
        json_array_append_new(ids, json_pack("[s,I]", a->id[i], (json_int_t)a->id_n[i]));
    if (ids && json_array_size(ids) != (size_t)a->n_ids) {
        json_decref(ids);
        ids = NULL;
    }
    json_t *o = !ids
                    ? NULL
                    : json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "window_start_ms",
                                (json_int_t)a->window_start_ms, "recorded", (json_int_t)a->recorded,
                                "suppressed", (json_int_t)a->suppressed, "first_ms",
                                (json_int_t)a->first_ms, "last_ms", (json_int_t)a->last_ms,
                                "other_ids", (json_int_t)a->other_ids, "ids", ids);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = agg_set_kinds(o, a);
    if (rc == QTSP_OK)
        rc = ra_put_json(txn, QTSP_T_CSC_STATE, key, o, 0);
    json_decref(o);
    return rc;
}

/* One more suppressed refusal of the unknown user id id: its count, or a
 * place in the list; when the list is full the least refused (the oldest of
 * those) gives up its place and its count goes to other_ids, so an id
 * refused again and again keeps its place and the list stays bounded. */
static void agg_count_id(refusal_agg *a, const char *id)
{
    for (int i = 0; i < a->n_ids; i++)
        if (!strcmp(a->id[i], id)) {
            a->id_n[i]++;
            return;
        }
    if (a->n_ids == REFUSAL_IDS) {
        int m = 0;
        for (int i = 1; i < a->n_ids; i++)
            if (a->id_n[i] < a->id_n[m])
                m = i;
        a->other_ids += a->id_n[m];
        memmove(a->id[m], a->id[m + 1], (size_t)(a->n_ids - m - 1) * sizeof a->id[0]);
        memmove(&a->id_n[m], &a->id_n[m + 1], (size_t)(a->n_ids - m - 1) * sizeof a->id_n[0]);
        a->n_ids--;
    }
    snprintf(a->id[a->n_ids], QTSP_CSC_ID_MAX, "%s", id);
    a->id_n[a->n_ids++] = 1;
}

static int agg_window_over(const qtsp_csc *c, const refusal_agg *a, int64_t now_ms)
{
    return now_ms >= a->window_start_ms + c->refusal_window_ms || now_ms < a->window_start_ms;
}

/* The unknown ids of a, most refused first, and the rest as other_user_ids. */
static qtsp_status agg_set_ids(json_t *d, const refusal_agg *a)
{
    if (!a->n_ids && !a->other_ids)
        return QTSP_OK;
    int order[REFUSAL_IDS];
    for (int i = 0; i < a->n_ids; i++) { /* insertion sort, stable */
        int j = i;
        for (; j > 0 && a->id_n[order[j - 1]] < a->id_n[i]; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    json_t *ids = json_array();
    ENSURE(ids != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < a->n_ids; i++)
        json_array_append_new(ids, json_pack("{s:s,s:I}", "user_id", a->id[order[i]], "refused",
                                             (json_int_t)a->id_n[order[i]]));
    int ok = json_array_size(ids) == (size_t)a->n_ids;
    ENSURE(json_object_set_new(d, "user_ids", ids) == 0 && ok &&
               json_object_set_new(d, "other_user_ids", json_integer(a->other_ids)) == 0,
           QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* When a's window is over: the summary of what it counted (if anything) to
 * the audit, and a new window from now. *changed says whether a changed. */
static qtsp_status agg_close(qtsp_csc *c, qtsp_txn *txn, refusal_agg *a, int64_t now_ms,
                             int *changed)
{
    *changed = 0;
    if (!agg_window_over(c, a, now_ms))
        return QTSP_OK;
    if (a->suppressed) {
        char ws[32], we[32], f[32], l[32];
        format_ms(a->window_start_ms, ws);
        format_ms(a->window_start_ms + c->refusal_window_ms, we);
        format_ms(a->first_ms, f);
        format_ms(a->last_ms, l);
        json_t *d =
            json_pack("{s:s,s:s,s:I,s:I,s:s,s:s}", "window_start", ws, "window_end", we,
                      "recorded_one_by_one", (json_int_t)a->recorded, "refused_not_recorded",
                      (json_int_t)a->suppressed, "first", f, "last", l);
        ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
        qtsp_status rc = agg_set_kinds(d, a);
        if (rc == QTSP_OK)
            rc = agg_set_ids(d, a);
        if (rc == QTSP_OK)
            rc = qtsp_audit_append(txn, "system:csc", "csc.refused.summary", d, NULL);
        json_decref(d);
        TRY(rc);
    }
    char user[sizeof a->user], cred[sizeof a->cred];
    memcpy(user, a->user, sizeof user);
    memcpy(cred, a->cred, sizeof cred);
    memset(a, 0, sizeof *a);
    memcpy(a->user, user, sizeof user);
    memcpy(a->cred, cred, sizeof cred);
    a->window_start_ms = now_ms;
    *changed = 1;
    return QTSP_OK;
}

/* A refusal without a state change, of kind k, by or about user_id (and
 * the credential cred_id of REFUSED_OTP_LOCKED): its own audit record
 * (details, consumed) while its record's burst lasts, else counted. */
static qtsp_status quiet_refusal(qtsp_csc *c, qtsp_txn *txn, const char *user_id,
                                 const char *cred_id, refusal_kind k, const char *event,
                                 json_t *details, int64_t now_ms)
{
    char key[REFUSAL_KEY_MAX];
    refusal_key(k, user_id, cred_id, key);
    int64_t burst = k == REFUSED_UNKNOWN_USER ? c->refusal_burst : c->refusal_account_burst;
    refusal_agg a;
    int changed;
    qtsp_status rc = agg_get(txn, key, &a);
    if (rc == QTSP_OK)
        rc = agg_close(c, txn, &a, now_ms, &changed);
    if (k != REFUSED_UNKNOWN_USER) {
        snprintf(a.user, sizeof a.user, "%s", user_id);
        snprintf(a.cred, sizeof a.cred, "%s", k == REFUSED_OTP_LOCKED ? cred_id : "");
    }
    if (rc == QTSP_OK && a.recorded < burst) {
        a.recorded++;
        rc = agg_put(txn, key, &a);
        if (rc == QTSP_OK)
            return audit(txn, user_id, event, details); /* consumes details */
    }
    json_decref(details);
    TRY(rc);
    a.suppressed++;
    a.kind[k]++;
    if (k == REFUSED_UNKNOWN_USER)
        agg_count_id(&a, user_id);
    if (!a.first_ms)
        a.first_ms = now_ms;
    a.last_ms = now_ms;
    return agg_put(txn, key, &a);
}

/* ---- sessions ---- */

typedef struct login_ctx {
    qtsp_csc *c;
    const char *user_id;
    int good;          /* the password matched */
    int exists;        /* the signer exists */
    const char *event; /* for the audit when not good */
    char key[KEY_HEX];
    int64_t now_ms;
    qtsp_status result;
    char msg[160];
} login_ctx;

static qtsp_status login_txn(qtsp_txn *txn, void *vctx)
{
    login_ctx *x = vctx;
    qtsp_csc *c = x->c;
    x->result = QTSP_OK;
    lock_state s;
    TRY(state_get(txn, 'u', x->user_id, &s));
    if (x->good && s.locked_until_ms <= x->now_ms) {
        if (s.fails || s.locked_until_ms) {
            s.fails = 0;
            s.locked_until_ms = 0;
            TRY(state_put(txn, 'u', x->user_id, &s));
        }
        if (!x->key[0]) /* a password check only (the change of password) */
            return QTSP_OK;
        json_t *sess =
            json_pack("{s:s,s:I,s:I}", "user_id", x->user_id, "created_ms", (json_int_t)x->now_ms,
                      "expires_ms", (json_int_t)(x->now_ms + c->token_life_s * 1000));
        ENSURE(sess != NULL, QTSP_ERR_NOMEM, "out of memory");
        qtsp_status rc = ra_put_json(txn, QTSP_T_SESSIONS, x->key, sess, QTSP_PUT_NOOVERWRITE);
        json_decref(sess);
        TRY(rc);
        return audit(txn, x->user_id, "csc.login",
                     json_pack("{s:s,s:I}", "user_id", x->user_id, "expires_in",
                               (json_int_t)c->token_life_s));
    }
    char until[32];
    x->result = QTSP_ERR_AUTH;
    if (s.locked_until_ms > x->now_ms) {
        format_ms(s.locked_until_ms, until);
        snprintf(x->msg, sizeof x->msg, "signer locked out until %s", until);
        return quiet_refusal(c, txn, x->user_id, NULL, REFUSED_LOGIN_LOCKED, "csc.login.locked",
                             json_pack("{s:s,s:s}", "user_id", x->user_id, "locked_until", until),
                             x->now_ms);
    }
    snprintf(x->msg, sizeof x->msg, "wrong user id or password");
    if (!x->exists) /* no state for ids that do not exist */
        return quiet_refusal(
            c, txn, x->user_id, NULL, REFUSED_UNKNOWN_USER, "csc.login.failed",
            json_pack("{s:s,s:s}", "user_id", x->user_id, "reason", "unknown user"), x->now_ms);
    int locked = state_fail(&s, c->login_max, c->login_lock_s, x->now_ms);
    TRY(state_put(txn, 'u', x->user_id, &s));
    format_ms(s.locked_until_ms, until);
    return audit(txn, x->user_id, x->event,
                 locked ? json_pack("{s:s,s:s,s:s}", "user_id", x->user_id, "reason",
                                    "wrong password", "locked_until", until)
                        : json_pack("{s:s,s:s,s:I}", "user_id", x->user_id, "reason",
                                    "wrong password", "failures", (json_int_t)s.fails));
}

/* Checks password for user_id and records the attempt; when good and
 * key is set, opens the session key. x->result says how it went. */
static qtsp_status password_attempt(login_ctx *x, const char *password)
{
    qtsp_csc *c = x->c;
    json_t *user = NULL;
    lock_state s;
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(c->store, 0, &txn));
    qtsp_status rc = state_get(txn, 'u', x->user_id, &s);
    if (rc == QTSP_OK) {
        rc = ra_get_json(txn, QTSP_T_USERS, x->user_id, &user);
        if (rc == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            rc = QTSP_OK;
        }
    }
    qtsp_txn_abort(txn);
    TRY(rc);
    x->exists = user != NULL;
    x->event = "csc.login.failed";
    x->now_ms = qtsp_now_ms();
    if (user && s.locked_until_ms <= x->now_ms) { /* locked: refused without a check */
        const char *h = json_string_value(json_object_get(user, "password_hash"));
        rc = h ? qtsp_password_verify(h, password) : QTSP_ERR_STORE_CORRUPT;
        x->good = rc == QTSP_OK;
        if (rc == QTSP_ERR_AUTH) {
            qtsp_err_clear();
            rc = QTSP_OK;
        }
    }
    json_decref(user);
    TRY(rc);
    return qtsp_store_write(c->store, login_txn, x);
}

qtsp_status qtsp_csc_login(qtsp_csc *c, const char *user_id, const char *password, json_t **out)
{
    ENSURE(id_ok(user_id) && password && strlen(password) <= PASSWORD_MAX, QTSP_ERR_AUTH,
           "wrong user id or password");
    login_ctx x = {.c = c, .user_id = user_id};
    char token[TOKEN_CHARS + 1];
    TRY(new_secret(token, x.key));
    qtsp_status rc = password_attempt(&x, password);
    if (rc == QTSP_OK && x.result != QTSP_OK)
        rc = qtsp_err_set(x.result, __FILE__, __LINE__, "%s", x.msg);
    if (rc == QTSP_OK) {
        json_t *o = json_pack("{s:s,s:I}", "access_token", token, "expires_in",
                              (json_int_t)c->token_life_s);
        if (o)
            *out = o;
        else
            rc = qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    OPENSSL_cleanse(token, sizeof token);
    return rc;
}

qtsp_status qtsp_csc_token_check(qtsp_csc *c, const char *token, char *user_id)
{
    ENSURE(secret_form_ok(token), QTSP_ERR_AUTH, "invalid access token");
    char key[KEY_HEX];
    secret_key(token, key);
    json_t *sess = NULL, *user = NULL;
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(c->store, 0, &txn));
    qtsp_status rc = ra_get_json(txn, QTSP_T_SESSIONS, key, &sess);
    const char *uid = NULL;
    if (rc == QTSP_OK) {
        uid = json_string_value(json_object_get(sess, "user_id"));
        rc = uid && id_ok(uid) ? ra_get_json(txn, QTSP_T_USERS, uid, &user) : QTSP_ERR_NOT_FOUND;
    }
    qtsp_txn_abort(txn);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        rc = qtsp_err_set(QTSP_ERR_AUTH, __FILE__, __LINE__, "invalid access token");
    }
    if (rc == QTSP_OK && jint(sess, "expires_ms") <= qtsp_now_ms())
        rc = qtsp_err_set(QTSP_ERR_AUTH, __FILE__, __LINE__, "access token expired");
    if (rc == QTSP_OK && jint(sess, "created_ms") < jint(user, "tokens_after_ms"))
        rc = qtsp_err_set(QTSP_ERR_AUTH, __FILE__, __LINE__,
                          "access token ended (password changed or reset)");
    if (rc == QTSP_OK)
        snprintf(user_id, QTSP_CSC_ID_MAX, "%s", uid);
    json_decref(sess);
    json_decref(user);
    return rc;
}

typedef struct revoke_ctx {
    const char *user_id;
    char key[KEY_HEX];
} revoke_ctx;

static qtsp_status revoke_txn(qtsp_txn *txn, void *vctx)
{
    revoke_ctx *x = vctx;
    json_t *sess = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_SESSIONS, x->key, &sess);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "token: no such access token");
    }
    TRY(rc);
    const char *uid = json_string_value(json_object_get(sess, "user_id"));
    int mine = uid && strcmp(uid, x->user_id) == 0;
    json_decref(sess);
    ENSURE(mine, QTSP_ERR_INVALID, "token: no such access token");
    TRY(qtsp_txn_del(txn, QTSP_T_SESSIONS, x->key, strlen(x->key)));
    return audit(txn, x->user_id, "csc.logout", json_pack("{s:s}", "user_id", x->user_id));
}

qtsp_status qtsp_csc_revoke(qtsp_csc *c, const char *user_id, const char *token)
{
    ENSURE(secret_form_ok(token), QTSP_ERR_INVALID, "token: no such access token");
    revoke_ctx x = {.user_id = user_id};
    secret_key(token, x.key);
    return qtsp_store_write(c->store, revoke_txn, &x);
}

/* ---- credentials ---- */

static const char *cert_status_name(cert_use u)
{
    return u == CERT_REVOKED     ? "revoked"
           : u == CERT_SUSPENDED ? "suspended"
           : u == CERT_EXPIRED   ? "expired"
           : u == CERT_EARLY     ? "not_yet_valid"
                                 : "valid";
}

static json_t *cert_b64(X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    json_t *j = n > 0 ? b64_json(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    return j;
}

static json_t *name_text(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    json_t *j = NULL;
    if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
        char *d = NULL;
        long l = BIO_get_mem_data(b, &d);
        j = json_stringn(d, (size_t)l);
    }
    BIO_free(b);
    return j;
}

/* ASN1 time as CSC writes it: GeneralizedTime text "YYYYMMDDHHMMSSZ". */
static json_t *time_text(const ASN1_TIME *t)
{
    ASN1_GENERALIZEDTIME *g = ASN1_TIME_to_generalizedtime(t, NULL);
    json_t *j =
        g ? json_stringn((const char *)ASN1_STRING_get0_data(g), (size_t)ASN1_STRING_length(g))
          : NULL;
    ASN1_GENERALIZEDTIME_free(g);
    return j;
}

/* The key object of credentials/info (CSC v2 11.5). */
static qtsp_status key_json(EVP_PKEY *pub, int enabled, json_t **out)
{
    int type = EVP_PKEY_get_base_id(pub);
    json_t *algos = json_array();
    ENSURE(algos != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof k_sign_algs / sizeof k_sign_algs[0]; i++)
        if (k_sign_algs[i].key == type)
            json_array_append_new(algos, json_string(k_sign_algs[i].oid));
    json_t *k = json_pack("{s:s,s:o,s:i}", "status", enabled ? "enabled" : "disabled", "algo",
                          algos, "len", EVP_PKEY_get_bits(pub));
    ENSURE(k != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (type == EVP_PKEY_EC) {
        char group[64], oid[64];
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof group, &gl) == 1 &&
            OBJ_obj2txt(oid, sizeof oid, OBJ_nid2obj(OBJ_txt2nid(group)), 1) > 0)
            json_object_set_new(k, "curve", json_string(oid));
    }
    *out = k;
    return QTSP_OK;
}

typedef struct info_opts {
    const char *certificates; /* "none", "single", "chain" */
    int cert_info, auth_info;
} info_opts;

static qtsp_status info_opts_of(const json_t *req, info_opts *o)
{
    const char *c = NULL;
    TRY(qtsp_json_get_string(req, "certificates", 0, &c));
    o->certificates = c ? c : "single";
    ENSURE(strcmp(o->certificates, "none") == 0 || strcmp(o->certificates, "single") == 0 ||
               strcmp(o->certificates, "chain") == 0,
           QTSP_ERR_INVALID, "certificates: none, single or chain");
    TRY(opt_bool(req, "certInfo", 0, &o->cert_info));
    TRY(opt_bool(req, "authInfo", 0, &o->auth_info));
    return QTSP_OK;
}

static qtsp_status cred_info_json(qtsp_csc *c, qtsp_txn *txn, const char *cred_id,
                                  const json_t *cred, const info_opts *io, json_t **out)
{
    X509 *x = NULL;
    TRY(cert_of(txn, cred_id, &x));
    qtsp_status rc = QTSP_OK;
    json_t *o = NULL, *key = NULL, *chain = NULL, *cert = NULL;
    cert_use u;
    TRY_OUT(cert_state(txn, cred_id, qtsp_now(), &u));
    EVP_PKEY *pub = X509_get0_pubkey(x);
    ENSURE_OUT(pub != NULL, QTSP_ERR_STORE_CORRUPT, "credential %s: no public key", cred_id);
    TRY_OUT(key_json(pub, json_is_true(json_object_get(cred, "enabled")), &key));
    chain = json_array();
    ENSURE_OUT(chain != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (strcmp(io->certificates, "none") != 0)
        json_array_append_new(chain, cert_b64(x));
    if (strcmp(io->certificates, "chain") == 0) {
        json_array_append_new(chain, cert_b64(c->issuing));
        json_array_append_new(chain, cert_b64(c->root));
    }
    cert = json_pack("{s:s,s:o}", "status", cert_status_name(u), "certificates", chain);
    chain = NULL;
    ENSURE_OUT(cert != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (io->cert_info) {
        char serial[2 * QTSP_SERIAL_MAX + 1];
        snprintf(serial, sizeof serial, "%s", cred_id);
        json_object_set_new(cert, "issuerDN", name_text(X509_get_issuer_name(x)));
        json_object_set_new(cert, "subjectDN", name_text(X509_get_subject_name(x)));
        json_object_set_new(cert, "serialNumber", json_string(serial));
        json_object_set_new(cert, "validFrom", time_text(X509_get0_notBefore(x)));
        json_object_set_new(cert, "validTo", time_text(X509_get0_notAfter(x)));
    }
    /* SCAL2 (CSC v2 11.5): every authorisation carries the OTP, explicitly */
    o = json_pack("{s:s,s:s,s:o,s:o,s:s,s:s,s:I,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s},s:{s:s}}",
                  "credentialID", cred_id, "description", "qualified signature key (QSCD, remote)",
                  "key", key, "cert", cert, "authMode", "explicit", "SCAL", "2", "multisign",
                  (json_int_t)c->max_hashes, "lang", "en-US", "OTP", "presence", "true", "type",
                  "online", "format", "N", "ID", "totp", "provider", "qtsp", "description",
                  "6-digit TOTP (RFC 6238, SHA-1, 30 s) from the authenticator app set up with the "
                  "otpauth URI given at issuance",
                  "PIN", "presence", "false");
    key = cert = NULL;
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    json_object_set_new(o, "signatureQualifier", json_string("eu_eidas_qes"));
    if (io->auth_info)
        json_object_set_new(o, "auth",
                            json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:s}]}", "mode", "explicit",
                                      "expression", "OTP", "objects", "type", "OTP", "id", "OTP",
                                      "format", "N", "generator", "totp", "label",
                                      "One-time code"));
    *out = o;
    o = NULL;
out:
    json_decref(o);
    json_decref(key);
    json_decref(chain);
    json_decref(cert);
    X509_free(x);
    return rc;
}

qtsp_status qtsp_csc_cred_info(qtsp_csc *c, const char *user_id, const json_t *req, json_t **out)
{
    const char *cred_id = NULL;
    info_opts io;
    TRY(qtsp_json_get_string(req, "credentialID", 1, &cred_id));
    TRY(info_opts_of(req, &io));
    qtsp_txn *txn = NULL;
    json_t *cred = NULL;
    TRY(qtsp_store_begin(c->store, 0, &txn));
    qtsp_status rc = own_credential(txn, user_id, cred_id, &cred);
    if (rc == QTSP_OK)
        rc = cred_info_json(c, txn, cred_id, cred, &io, out);
    qtsp_txn_abort(txn);
    json_decref(cred);
    return rc;
}

qtsp_status qtsp_csc_list(qtsp_csc *c, const char *user_id, const json_t *req, json_t **out)
{
    const char *uid = NULL;
    int cred_info = 0, only_valid = 0;
    info_opts io;
    TRY(qtsp_json_get_string(req, "userID", 0, &uid));
    /* a signer's token lists the signer's own credentials only */
    ENSURE(!uid || strcmp(uid, user_id) == 0, QTSP_ERR_INVALID,
           "userID: not the signer of this access token");
    TRY(opt_bool(req, "credInfo", 0, &cred_info));
    TRY(opt_bool(req, "onlyValid", 0, &only_valid));
    TRY(info_opts_of(req, &io));
    qtsp_txn *txn = NULL;
    json_t *user = NULL, *ids = json_array(), *infos = json_array();
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(ids && infos, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(qtsp_store_begin(c->store, 0, &txn));
    TRY_OUT(ra_get_json(txn, QTSP_T_USERS, user_id, &user));
    const json_t *creds = json_object_get(user, "credentials");
    for (size_t i = 0; i < json_array_size(creds); i++) {
        const char *id = json_string_value(json_array_get(creds, i));
        json_t *cred = NULL;
        ENSURE_OUT(id != NULL, QTSP_ERR_STORE_CORRUPT, "user %s: bad credential list", user_id);
        TRY_OUT(own_credential(txn, user_id, id, &cred));
        if (only_valid && usable(txn, id, cred, qtsp_now()) != QTSP_OK) {
            qtsp_err_clear();
            json_decref(cred);
            continue;
        }
        json_array_append_new(ids, json_string(id));
        if (cred_info) {
            json_t *one = NULL;
            rc = cred_info_json(c, txn, id, cred, &io, &one);
            if (rc == QTSP_OK)
                json_array_append_new(infos, one);
        }
        json_decref(cred);
        TRY_OUT(rc);
    }
    json_t *o = json_pack("{s:O}", "credentialIDs", ids);
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (cred_info)
        json_object_set(o, "credentialInfos", infos);
    *out = o;
out:
    qtsp_txn_abort(txn);
    json_decref(user);
    json_decref(ids);
    json_decref(infos);
    return rc;
}

/* ---- authorize ---- */

typedef struct auth_ctx {
    qtsp_csc *c;
    const char *user_id, *cred_id, *otp, *hash_oid;
    const unsigned char *secret;
    size_t secret_len;
    json_t *hashes; /* sorted hex */
    size_t n;
    char sad_key[KEY_HEX];
    int64_t now_ms;
    qtsp_status result;
    char msg[160];
} auth_ctx;

static qtsp_status authorize_txn(qtsp_txn *txn, void *vctx)
{
    auth_ctx *x = vctx;
    qtsp_csc *c = x->c;
    x->result = QTSP_OK;
    lock_state s;
    char until[32];
    TRY(state_get(txn, 'c', x->cred_id, &s));
    if (s.locked_until_ms > x->now_ms) {
        format_ms(s.locked_until_ms, until);
        x->result = QTSP_ERR_FORBIDDEN;
        snprintf(x->msg, sizeof x->msg, "credential locked after wrong OTPs until %s", until);
        return quiet_refusal(c, txn, x->user_id, x->cred_id, REFUSED_OTP_LOCKED, "csc.otp.refused",
                             json_pack("{s:s,s:s,s:s}", "credential", x->cred_id, "reason",
                                       "locked", "locked_until", until),
                             x->now_ms);
    }
    uint64_t step = 0;
    qtsp_status v = qtsp_totp_verify(x->secret, x->secret_len, x->otp, x->now_ms / 1000,
                                     (unsigned)c->otp_window, (uint64_t)s.last_step, &step);
    if (v == QTSP_ERR_AUTH || v == QTSP_ERR_INVALID) {
        char why[80];
        snprintf(why, sizeof why, "%s", qtsp_err_what());
        qtsp_err_clear();
        int locked = state_fail(&s, c->otp_max, c->otp_lock_s, x->now_ms);
        TRY(state_put(txn, 'c', x->cred_id, &s));
        format_ms(s.locked_until_ms, until);
        x->result = QTSP_ERR_FORBIDDEN;
        if (locked)
            snprintf(x->msg, sizeof x->msg, "%s; credential locked until %s", why, until);
        else
            snprintf(x->msg, sizeof x->msg, "%s", why);
        return audit(txn, x->user_id, locked ? "csc.otp.locked" : "csc.otp.failed",
                     locked ? json_pack("{s:s,s:s,s:s}", "credential", x->cred_id, "reason", why,
                                        "locked_until", until)
                            : json_pack("{s:s,s:s,s:I}", "credential", x->cred_id, "reason", why,
                                        "failures", (json_int_t)s.fails));
    }
    TRY(v);
    s.fails = 0;
    s.last_step = (int64_t)step;
    TRY(state_put(txn, 'c', x->cred_id, &s));
    json_t *sad =
        json_pack("{s:s,s:s,s:s,s:O,s:I,s:I}", "user_id", x->user_id, "credential_id", x->cred_id,
                  "hash_oid", x->hash_oid, "hashes", x->hashes, "created_ms", (json_int_t)x->now_ms,
                  "expires_ms", (json_int_t)(x->now_ms + c->sad_life_s * 1000));
    ENSURE(sad != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = ra_put_json(txn, QTSP_T_SADS, x->sad_key, sad, QTSP_PUT_NOOVERWRITE);
    json_decref(sad);
    TRY(rc);
    char sad_id[17];
    snprintf(sad_id, sizeof sad_id, "%.16s", x->sad_key);
    return audit(txn, x->user_id, "csc.authorize",
                 json_pack("{s:s,s:I,s:s,s:s,s:I}", "credential", x->cred_id, "signatures",
                           (json_int_t)x->n, "hash_algorithm", x->hash_oid, "sad", sad_id,
                           "expires_in", (json_int_t)c->sad_life_s));
}

qtsp_status qtsp_csc_authorize(qtsp_csc *c, const char *user_id, const json_t *req, json_t **out)
{
    const char *cred_id = NULL, *hoid = NULL, *otp = NULL;
    TRY(qtsp_json_get_string(req, "credentialID", 1, &cred_id));
    TRY(qtsp_json_get_string(req, "hashAlgorithmOID", 1, &hoid));
    TRY(qtsp_json_get_string(req, "OTP", 1, &otp));
    const json_t *num = json_object_get(req, "numSignatures");
    ENSURE(json_is_integer(num) && json_integer_value(num) >= 1 &&
               json_integer_value(num) <= c->max_hashes,
           QTSP_ERR_INVALID, "numSignatures: an integer 1..%lld", (long long)c->max_hashes);
    const hash_alg *h = hash_by_oid(hoid);
    ENSURE(h != NULL, QTSP_ERR_INVALID, "hashAlgorithmOID: %.64s is not supported", hoid);
    auth_ctx x = {.c = c, .user_id = user_id, .cred_id = cred_id, .otp = otp, .hash_oid = hoid};
    unsigned char *digests = NULL, secret[QTSP_TOTP_SECRET_MAX];
    json_t *cred = NULL, *user = NULL;
    qtsp_txn *txn = NULL;
    char sad[TOKEN_CHARS + 1];
    qtsp_status rc = QTSP_OK;
    TRY_OUT(parse_hashes(req, (size_t)EVP_MD_get_size(EVP_get_digestbynid(h->nid)),
                         (size_t)c->max_hashes, &digests, &x.n, &x.hashes));
    /* SCAL2 (CSC v2 11.9): numSignatures is the number of hashes */
    ENSURE_OUT(x.n == (size_t)json_integer_value(num), QTSP_ERR_INVALID,
               "numSignatures: %lld, but %zu hashes", (long long)json_integer_value(num), x.n);
    TRY_OUT(qtsp_store_begin(c->store, 0, &txn));
    TRY_OUT(own_credential(txn, user_id, cred_id, &cred));
    TRY_OUT(usable(txn, cred_id, cred, qtsp_now()));
    TRY_OUT(ra_get_json(txn, QTSP_T_USERS, user_id, &user));
    qtsp_txn_abort(txn);
    txn = NULL;
    TRY_OUT(qtsp_otp_unwrap(c->otp_key, user_id, json_object_get(user, "otp"), secret,
                            sizeof secret, &x.secret_len));
    x.secret = secret;
    TRY_OUT(new_secret(sad, x.sad_key));
    x.now_ms = qtsp_now_ms();
    TRY_OUT(qtsp_store_write(c->store, authorize_txn, &x));
    ENSURE_OUT(x.result == QTSP_OK, x.result, "%s", x.msg);
    json_t *o = json_pack("{s:s,s:I}", "SAD", sad, "expiresIn", (json_int_t)c->sad_life_s);
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = o;
out:
    qtsp_txn_abort(txn);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(sad, sizeof sad);
    free(digests);
    json_decref(x.hashes);
    json_decref(cred);
    json_decref(user);
    return rc;
}

/* ---- signHash and signDoc ---- */

/* What signDoc archives and indexes in the signing's transaction. */
typedef struct doc_index {
    size_t n;
    const qtsp_archive_doc *docs;
    const unsigned char (*sha)[32];
    char (*ids)[QTSP_ARCHIVE_ID_LEN + 1];
} doc_index;

typedef struct sign_ctx {
    qtsp_csc *c;
    const char *user_id, *cred_id, *hash_oid, *rp;
    const json_t *req_hashes; /* as the client sent them (the history keeps them) */
    json_t *sorted;           /* sorted hex, what the SAD is bound to */
    size_t n;
    char sad_key[KEY_HEX];
    int64_t now_ms;
    const char *event;    /* the audit event: csc.sign, csc.signdoc */
    const doc_index *idx; /* signDoc only */
} sign_ctx;

/* The SAD fits this request: the caller's, unused, unexpired, for this
 * credential, hash algorithm and exactly these hashes (SCAL2). *rec: the
 * record (new reference) when rec is not NULL. */
static qtsp_status sad_check(qtsp_txn *txn, const sign_ctx *x, json_t **rec)
{
    json_t *s = NULL;
    qtsp_status rc = ra_get_json(txn, QTSP_T_SADS, x->sad_key, &s);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "SAD: unknown");
    }
    TRY(rc);
    const char *uid = json_string_value(json_object_get(s, "user_id"));
    const char *cid = json_string_value(json_object_get(s, "credential_id"));
    const char *hoid = json_string_value(json_object_get(s, "hash_oid"));
    if (!uid || strcmp(uid, x->user_id) != 0)
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "SAD: unknown");
    else if (json_object_get(s, "used_ms"))
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "SAD: already used");
    else if (jint(s, "expires_ms") <= x->now_ms)
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "SAD: expired");
    else if (!cid || strcmp(cid, x->cred_id) != 0)
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                          "SAD: authorised for another credential");
    else if (!hoid || strcmp(hoid, x->hash_oid) != 0)
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                          "SAD: authorised for another hash algorithm");
    else if (!json_equal(json_object_get(s, "hashes"), x->sorted))
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                          x->idx ? "SAD: authorised for other hashes than the SHA-256 of these "
                                   "documents"
                                 : "SAD: authorised for other hashes");
    if (rc == QTSP_OK && rec)
        *rec = s;
    else
        json_decref(s);
    return rc;
}

static qtsp_status sign_txn(qtsp_txn *txn, void *vctx)
{
    sign_ctx *x = vctx;
    json_t *sad = NULL, *cred = NULL;
    TRY(own_credential(txn, x->user_id, x->cred_id, &cred));
    qtsp_status rc = usable(txn, x->cred_id, cred, (time_t)(x->now_ms / 1000));
    json_decref(cred);
    TRY(rc);
    TRY(sad_check(txn, x, &sad));
    json_object_set_new(sad, "used_ms", json_integer(x->now_ms));
    rc = ra_put_json(txn, QTSP_T_SADS, x->sad_key, sad, 0);
    json_decref(sad);
    TRY(rc);
    size_t n = x->n;
    const char **hashes = calloc(n, sizeof *hashes);
    ENSURE(hashes != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        hashes[i] = json_string_value(json_array_get(x->req_hashes, i));
    char sad_id[17];
    snprintf(sad_id, sizeof sad_id, "%.16s", x->sad_key);
    qtsp_signing s = {x->user_id, x->cred_id, x->rp, n, hashes, x->hash_oid, sad_id};
    /* the payer's count, the history and the SAD's consumption: one commit */
    rc = qtsp_usage_charge(x->c->usage, txn, &s);
    free(hashes);
    TRY(rc);
    json_t *d = json_pack("{s:s,s:I,s:s,s:s}", "credential", x->cred_id, "signatures",
                          (json_int_t)n, "hash_algorithm", x->hash_oid, "sad", sad_id);
    if (d && x->rp)
        json_object_set_new(d, "relying_party", json_string(x->rp));
    if (x->idx) { /* signDoc: the archive's index, in the same commit */
        char actor[96];
        actor_of(x->user_id, actor);
        json_t *ids = json_array();
        if (d && ids)
            json_object_set(d, "documents", ids);
        for (size_t i = 0; i < x->idx->n && rc == QTSP_OK; i++) {
            rc = qtsp_archive_index(x->c->archive, txn, actor, &x->idx->docs[i], x->idx->sha[i],
                                    x->idx->ids[i]);
            if (rc == QTSP_OK && ids)
                json_array_append_new(ids, json_string(x->idx->ids[i]));
        }
        json_decref(ids);
        if (rc != QTSP_OK) {
            json_decref(d);
            return rc;
        }
    }
    return audit(txn, x->user_id, x->event, d);
}

/* What the signer's package has left now (qtsp_usage_quota) fits n more
 * signatures; the binding check is qtsp_usage_charge's, in the transaction. */
static qtsp_status quota_precheck(qtsp_csc *c, const char *user_id, size_t n)
{
    json_t *q = NULL;
    TRY(qtsp_usage_quota(c->usage, user_id, &q));
    const json_t *left = json_object_get(q, "signatures_left");
    int ended = json_is_true(json_object_get(q, "ended"));
    long long l = json_is_integer(left) ? (long long)json_integer_value(left) : -1;
    char pkg[64];
    const char *name = json_string_value(json_object_get(q, "package"));
    snprintf(pkg, sizeof pkg, "%s", name ? name : "?");
    json_decref(q);
    ENSURE(!ended, QTSP_ERR_QUOTA, "the package %s has ended", pkg);
    ENSURE(l < 0 || (unsigned long long)l >= n, QTSP_ERR_QUOTA,
           "the package %s has %lld signatures left in this window, %zu asked", pkg, l, n);
    return QTSP_OK;
}

/* Everything that can refuse a signing before the token works: the
 * signer's credential and its certificate now, the SAD (read only), the
 * package (unless a relying party pays). *cred (new reference) and, when
 * cert is not NULL, the certificate (*cert, the caller frees). */
static qtsp_status sign_precheck(qtsp_csc *c, sign_ctx *x, json_t **cred, X509 **cert)
{
    qtsp_txn *txn = NULL;
    json_t *cr = NULL;
    X509 *xc = NULL;
    TRY(qtsp_store_begin(c->store, 0, &txn));
    qtsp_status rc = QTSP_OK;
    TRY_OUT(own_credential(txn, x->user_id, x->cred_id, &cr));
    TRY_OUT(usable(txn, x->cred_id, cr, (time_t)(x->now_ms / 1000)));
    TRY_OUT(sad_check(txn, x, NULL));
    if (cert)
        TRY_OUT(cert_of(txn, x->cred_id, &xc));
    qtsp_txn_abort(txn);
    txn = NULL;
    if (!x->rp) /* a spent package is refused before the token works (charged below) */
        TRY_OUT(quota_precheck(c, x->user_id, x->n));
    *cred = cr;
    cr = NULL;
    if (cert) {
        *cert = xc;
        xc = NULL;
    }
out:
    qtsp_txn_abort(txn);
    json_decref(cr);
    X509_free(xc);
    return rc;
}

/* The credential's key (wrapped, unwrapped inside the token: ca/subkey.h),
 * of the type the signature algorithm needs. */
static qtsp_status open_signing_key(qtsp_csc *c, const json_t *cred, int key_type, qtsp_key **out)
{
    qtsp_key *key = NULL;
    TRY(qtsp_subkey_open(c->hsm, cred, &key));
    if (EVP_PKEY_get_base_id(qtsp_key_get0_pubkey(key)) != key_type) {
        qtsp_key_free(key);
        FAIL(QTSP_ERR_INVALID, "signAlgo: does not fit this credential's key");
    }
    *out = key;
    return QTSP_OK;
}

qtsp_status qtsp_csc_sign_hash(qtsp_csc *c, const char *user_id, const char *rp_header,
                               const json_t *req, json_t **out)
{
    const char *cred_id = NULL, *sad = NULL, *mode = NULL;
    TRY(qtsp_json_get_string(req, "credentialID", 1, &cred_id));
    TRY(qtsp_json_get_string(req, "SAD", 1, &sad));
    TRY(qtsp_json_get_string(req, "operationMode", 0, &mode));
    ENSURE(!mode || strcmp(mode, "S") == 0, QTSP_ERR_INVALID,
           "operationMode: only S (synchronous) is offered");
    qtsp_sigalg alg;
    const hash_alg *h = NULL;
    int key_type = 0;
    TRY(parse_sign_alg(req, 0, &alg, &h, &key_type));
    char rp[128];
    if (rp_header)
        TRY(qtsp_usage_rp_check(c->usage, rp_header, rp, sizeof rp));
    sign_ctx x = {.c = c,
                  .user_id = user_id,
                  .cred_id = cred_id,
                  .hash_oid = h->oid,
                  .rp = rp_header ? rp : NULL,
                  .req_hashes = json_object_get(req, "hashes"),
                  .event = "csc.sign"};
    size_t dlen = (size_t)EVP_MD_get_size(alg.md);
    unsigned char *digests = NULL, *sigs = NULL;
    size_t *sig_lens = NULL;
    json_t *cred = NULL, *arr = NULL;
    qtsp_key *key = NULL;
    qtsp_status rc = QTSP_OK;
    TRY_OUT(parse_hashes(req, dlen, (size_t)c->max_hashes, &digests, &x.n, &x.sorted));
    ENSURE_OUT(secret_form_ok(sad), QTSP_ERR_INVALID, "SAD: unknown");
    secret_key(sad, x.sad_key);
    x.now_ms = qtsp_now_ms();
    TRY_OUT(sign_precheck(c, &x, &cred, NULL));
    TRY_OUT(open_signing_key(c, cred, key_type, &key));
    size_t max = qtsp_key_sig_max(key);
    sigs = malloc(x.n * max);
    sig_lens = calloc(x.n, sizeof *sig_lens);
    ENSURE_OUT(sigs && sig_lens, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < x.n; i++) {
        sig_lens[i] = max;
        TRY_OUT(qtsp_key_sign_digest(key, &alg, digests + i * dlen, dlen, sigs + i * max,
                                     &sig_lens[i]));
    }
    /* the answer leaves only once the SAD is consumed and the signing counted */
    x.now_ms = qtsp_now_ms();
    TRY_OUT(qtsp_store_write(c->store, sign_txn, &x));
    arr = json_array();
    ENSURE_OUT(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < x.n; i++)
        ENSURE_OUT(json_array_append_new(arr, b64_json(sigs + i * max, sig_lens[i])) == 0,
                   QTSP_ERR_NOMEM, "out of memory");
    json_t *o = json_pack("{s:O}", "signatures", arr);
    ENSURE_OUT(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = o;
out:
    qtsp_key_free(key);
    free(digests);
    free(sigs);
    free(sig_lens);
    json_decref(arr);
    json_decref(cred);
    json_decref(x.sorted);
    return rc;
}

/* ---- signDoc ---- */

size_t qtsp_csc_doc_max_body(const qtsp_csc *c)
{
    return (size_t)c->doc_max_body;
}

typedef enum doc_kind { DOC_CADES = 1, DOC_PADES, DOC_XADES } doc_kind;

/* One document of a signDoc request, read and checked. */
typedef struct doc_job {
    doc_kind kind;
    qtsp_ades_level level;
    int attached;      /* CAdES: enveloping */
    int certification; /* PAdES */
    qtsp_xades_packaging packaging;
    qtsp_asic_form container;            /* 0: none */
    const char *name;                    /* borrowed from the request; "" when absent */
    char uri[QTSP_ARCHIVE_NAME_MAX + 3]; /* the name in a container or reference (doc_uri_map) */
    qtsp_sigalg alg;
    int key_type;
    unsigned char *data; /* the decoded document */
    int borrowed;        /* data lies in the request body (not freed here) */
    size_t len;
    unsigned char sha[32];
    qtsp_buf out; /* the signed document or the detached signature */
    unsigned char out_sha[32];
    char format[24]; /* for the archive: "CAdES", "ASiC-S XAdES" ... */
    int detached;    /* the answer goes to SignatureObject */
} doc_job;

static const char *const k_doc_fields[] = {"document",
                                           "signature_format",
                                           "conformance_level",
                                           "signAlgo",
                                           "signAlgoParams",
                                           "hashAlgorithmOID",
                                           "signed_envelope_property",
                                           "name",
                                           "container",
                                           NULL};

/* A short string field of a document (never one of the long strings). */
static qtsp_status doc_string(const json_t *d, const qtsp_json_big *big, size_t i, const char *name,
                              int required, const char **out)
{
    const json_t *v = json_object_get(d, name);
    ENSURE(!qtsp_json_big_is(big, v), QTSP_ERR_INVALID, "documents[%zu].%s: too long", i, name);
    qtsp_status rc = qtsp_json_get_string(d, name, required, out);
    if (rc != QTSP_OK) {
        char what[160];
        snprintf(what, sizeof what, "%s", qtsp_err_what());
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "documents[%zu].%s", i, what);
    }
    return QTSP_OK;
}

/* A file name for the archive (and, mapped by doc_uri_map, inside XAdES
 * and ASiC): printable UTF-8 without '/', '\\' or control characters. */
static int doc_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > QTSP_ARCHIVE_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '/' || ch == '\\')
            return 0;
    }
    return 1;
}

/* The name of the document inside an ASiC container and the reference URI
 * of XAdES Detached (sign/xades.c ades_check_name takes only [A-Za-z0-9._-]):
 * the signer's name with each other character (a UTF-8 sequence counts
 * once) as '_', so "Договор.pdf" is "_______.pdf" and "my file.pdf"
 * "my_file.pdf" (the extension, and so the media type, kept); "document"
 * when absent; "mimetype", which ASiC keeps for itself, "_mimetype". One
 * document per container: the name is unique in it. The archive and
 * Content-Disposition keep the original name. */
static void doc_uri_map(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    if (strcmp(name, "mimetype") == 0)
        out[o++] = '_';
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 1 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '.' || *p == '_' || *p == '-')
            out[o++] = (char)*p;
        else if ((*p & 0xC0) != 0x80) /* continuation bytes: part of the same '_' */
            out[o++] = '_';
    }
    out[o] = '\0';
    if (o == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        snprintf(out, cap, "document");
}

static qtsp_status doc_parse(const json_t *d, const qtsp_json_big *big, size_t i, size_t max_doc,
                             doc_job *j)
{
    ENSURE(json_is_object(d), QTSP_ERR_INVALID, "documents[%zu]: must be an object", i);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)d, key, val)
    {
        int ok = 0;
        for (const char *const *a = k_doc_fields; *a; a++)
            ok |= strcmp(*a, key) == 0;
        ENSURE(ok, QTSP_ERR_INVALID, "documents[%zu].%s: unknown field", i, key);
    }
    const char *fmt = NULL, *lvl = NULL, *env = NULL, *cont = NULL;
    TRY(doc_string(d, big, i, "signature_format", 1, &fmt));
    TRY(doc_string(d, big, i, "conformance_level", 1, &lvl));
    TRY(doc_string(d, big, i, "signed_envelope_property", 0, &env));
    TRY(doc_string(d, big, i, "name", 0, &j->name));
    TRY(doc_string(d, big, i, "container", 0, &cont));
    for (const char *const *f =
             (const char *const[]){"signAlgo", "signAlgoParams", "hashAlgorithmOID", NULL};
         *f; f++)
        TRY(doc_string(d, big, i, *f, strcmp(*f, "signAlgo") == 0, &(const char *){NULL}));
    if (!j->name)
        j->name = "";
    ENSURE(doc_name_ok(j->name), QTSP_ERR_INVALID,
           "documents[%zu].name: at most %d bytes, no '/', '\\' or control characters", i,
           QTSP_ARCHIVE_NAME_MAX);
    doc_uri_map(j->name, j->uri, sizeof j->uri);
    if (qtsp_ades_level_parse(lvl, &j->level) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID,
             "documents[%zu].conformance_level: Ades-B-B, Ades-B-T, Ades-B-LT or Ades-B-LTA", i);
    }
    if (strcmp(fmt, "C") == 0)
        j->kind = DOC_CADES;
    else if (strcmp(fmt, "P") == 0)
        j->kind = DOC_PADES;
    else if (strcmp(fmt, "X") == 0)
        j->kind = DOC_XADES;
    else
        FAIL(QTSP_ERR_INVALID, "documents[%zu].signature_format: C (CAdES), P (PAdES) or X (XAdES)",
             i);
    if (cont) { /* our extension: the document and its signature in an ASiC container */
        if (strcmp(cont, "ASiC-S") == 0)
            j->container = QTSP_ASIC_S;
        else if (strcmp(cont, "ASiC-E") == 0)
            j->container = QTSP_ASIC_E;
        else
            FAIL(QTSP_ERR_INVALID, "documents[%zu].container: ASiC-S or ASiC-E", i);
        ENSURE(j->kind != DOC_PADES, QTSP_ERR_INVALID,
               "documents[%zu].container: an ASiC container holds CAdES (C) or XAdES (X)", i);
        ENSURE(!env || strcmp(env, "Detached") == 0, QTSP_ERR_INVALID,
               "documents[%zu].signed_envelope_property: Detached (or none) in a container", i);
    } else if (j->kind == DOC_CADES) {
        ENSURE(!env || strcmp(env, "Detached") == 0 || strcmp(env, "Attached") == 0,
               QTSP_ERR_INVALID,
               "documents[%zu].signed_envelope_property: Detached or Attached for CAdES", i);
        j->attached = env && strcmp(env, "Attached") == 0;
        j->detached = !j->attached;
    } else if (j->kind == DOC_PADES) {
        ENSURE(!env || strcmp(env, "Certification") == 0 || strcmp(env, "Revision") == 0,
               QTSP_ERR_INVALID,
               "documents[%zu].signed_envelope_property: Certification or Revision for PAdES", i);
        j->certification = env && strcmp(env, "Certification") == 0;
    } else {
        j->packaging = QTSP_XADES_ENVELOPING;
        if (env && strcmp(env, "Enveloped") == 0)
            j->packaging = QTSP_XADES_ENVELOPED;
        else if (env && strcmp(env, "Detached") == 0)
            j->packaging = QTSP_XADES_DETACHED;
        else
            ENSURE(!env || strcmp(env, "Enveloping") == 0, QTSP_ERR_INVALID,
                   "documents[%zu].signed_envelope_property: Enveloped, Enveloping or Detached "
                   "for XAdES",
                   i);
        j->detached = j->packaging == QTSP_XADES_DETACHED;
    }
    const hash_alg *h = NULL;
    if (parse_sign_alg(d, NID_sha256, &j->alg, &h, &j->key_type) != QTSP_OK) {
        char what[160];
        snprintf(what, sizeof what, "%s", qtsp_err_what());
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "documents[%zu].%s", i, what);
    }
    ENSURE(j->alg.scheme != QTSP_SIG_RSA_PSS || j->kind != DOC_XADES, QTSP_ERR_INVALID,
           "documents[%zu].signAlgo: RSASSA-PSS is not offered for XAdES", i);
    snprintf(j->format, sizeof j->format, "%s%s",
             j->container == QTSP_ASIC_S   ? "ASiC-S "
             : j->container == QTSP_ASIC_E ? "ASiC-E "
                                           : "",
             j->kind == DOC_CADES   ? "CAdES"
             : j->kind == DOC_PADES ? "PAdES"
                                    : "XAdES");
    /* the document: strict base64 (RFC 4648 4), decoded once */
    const char *b64 = NULL;
    size_t b64_len = 0;
    ENSURE(qtsp_json_big_get(big, json_object_get(d, "document"), &b64, &b64_len), QTSP_ERR_INVALID,
           "documents[%zu].document: %s", i,
           json_object_get(d, "document") ? "must be a base64 string" : "missing");
    ENSURE(b64_len > 0, QTSP_ERR_INVALID, "documents[%zu].document: empty", i);
    size_t cap = b64_len / 4 * 3 + 3;
    ENSURE(cap <= max_doc + 3, QTSP_ERR_TOO_BIG, "documents[%zu].document: over %zu bytes", i,
           max_doc);
    /* a long string left in the request body is decoded where it lies (the
     * bytes trail the text: no second buffer of megabytes); others are copied */
    size_t raw_len = 0;
    char *raw = qtsp_json_big_take(big, json_object_get(d, "document"), &raw_len);
    if (raw) {
        j->data = (unsigned char *)raw;
        j->borrowed = 1;
        cap = raw_len;
    } else {
        j->data = malloc(cap);
        ENSURE(j->data != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
    if (qtsp_base64_decode(b64, b64_len, QTSP_B64_STD | QTSP_B64_PADDING, j->data, cap, &j->len) !=
        QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "documents[%zu].document: not base64 (RFC 4648 4)", i);
    }
    ENSURE(j->len > 0 && j->len <= max_doc, QTSP_ERR_INVALID,
           "documents[%zu].document: 1 to %zu bytes", i, max_doc);
    ENSURE(EVP_Digest(j->data, j->len, j->sha, NULL, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
           "SHA-256");
    return QTSP_OK;
}

static const char *doc_uri(const doc_job *j)
{
    return j->uri;
}

/* Signs one document into j->out with the builders of sign/ades.h. */
static qtsp_status doc_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *sg, doc_job *j,
                            int64_t now)
{
    qtsp_ades_signer s = *sg;
    s.alg = j->alg;
    qtsp_status rc;
    if (j->container) {
        qtsp_xades_object o = {j->data, j->len, doc_uri(j), qtsp_ades_mime_of(doc_uri(j))};
        qtsp_asic_opts ao = {j->container, j->kind == DOC_XADES ? QTSP_ASIC_XADES : QTSP_ASIC_CADES,
                             j->level, now};
        rc = qtsp_asic_sign(sv, &s, &ao, &o, 1, &j->out);
    } else if (j->kind == DOC_CADES) {
        qtsp_cades_opts co = {j->level, j->attached, now, j->sha};
        rc = qtsp_cades_sign(sv, &s, &co, j->data, j->len, &j->out);
    } else if (j->kind == DOC_PADES) {
        qtsp_pades_opts po = {j->level, j->certification, now};
        rc = qtsp_pades_sign(sv, &s, &po, j->data, j->len, &j->out);
    } else {
        const char *uri = doc_uri(j);
        qtsp_xades_object o = {j->data, j->len, uri,
                               j->packaging == QTSP_XADES_ENVELOPED ? NULL
                                                                    : qtsp_ades_mime_of(uri)};
        qtsp_xades_opts xo = {j->level, j->packaging, now, 0, 0};
        rc = qtsp_xades_sign(sv, &s, &xo, &o, 1, &j->out);
    }
    if (rc == QTSP_ERR_UNSUPPORTED) { /* an algorithm the format does not take: the request's */
        char what[200];
        snprintf(what, sizeof what, "%s", qtsp_err_what());
        qtsp_err_clear();
        FAIL(QTSP_ERR_INVALID, "%s", what);
    }
    return rc;
}

/* The answer, written straight into out: the documents are large and
 * base64 never needs a JSON escape. */
static qtsp_status doc_answer(doc_job *jobs, size_t n, char (*ids)[QTSP_ARCHIVE_ID_LEN + 1],
                              qtsp_buf *out)
{
    size_t need = 128;
    for (size_t i = 0; i < n; i++)
        need += 4 * ((jobs[i].out.len + 2) / 3) + 8 + QTSP_ARCHIVE_ID_LEN + 8;
    TRY(qtsp_buf_reserve(out, need));
    static const char *const key[2] = {"{\"DocumentWithSignature\":[", "],\"SignatureObject\":["};
    for (int pass = 0; pass < 2; pass++) {
        TRY(qtsp_buf_puts(out, key[pass]));
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (jobs[i].detached != pass)
                continue;
            TRY(qtsp_buf_puts(out, first ? "\"" : ",\""));
            first = 0;
            size_t b = 4 * ((jobs[i].out.len + 2) / 3) + 1;
            TRY(qtsp_buf_reserve(out, b));
            TRY(qtsp_base64_encode(jobs[i].out.data, jobs[i].out.len, (char *)out->data + out->len,
                                   b));
            out->len += b - 1;
            TRY(qtsp_buf_puts(out, "\""));
        }
    }
    TRY(qtsp_buf_puts(out, "],\"documentIDs\":["));
    for (size_t i = 0; i < n; i++)
        TRY(qtsp_buf_printf(out, "%s\"%s\"", i ? "," : "", ids[i]));
    return qtsp_buf_puts(out, "]}");
}

/* A refused signDoc: removes the archive files it created that no index
 * entry names; the refusal's error stays the one reported. */
static void discard_written(qtsp_archive *a, const int *wrote, unsigned char (*shas)[32], size_t n)
{
    if (!wrote)
        return;
    qtsp_status code = qtsp_err_code();
    char what[256];
    snprintf(what, sizeof what, "%s", qtsp_err_what());
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        if (wrote[i] && qtsp_archive_discard(a, shas[i]) != QTSP_OK) {
            qtsp_log(QTSP_LOG_WARN, "signDoc: refused, an archive file stays: %s",
                     qtsp_err_message());
            failed = 1;
        }
    if (failed) {
        qtsp_err_clear();
        (void)qtsp_err_set(code, __FILE__, __LINE__, "%s", what);
    }
}

qtsp_status qtsp_csc_sign_doc(qtsp_csc *c, const char *user_id, const char *rp_header,
                              const json_t *req, const qtsp_json_big *big, qtsp_buf *out)
{
    ENSURE(c->ades && c->archive, QTSP_ERR_UNAVAILABLE, "signDoc is not offered by this server");
    static const char *const top[] = {
        "credentialID",       "SAD",        "documents", "operationMode",
        "signatureQualifier", "clientData", NULL};
    TRY(qtsp_json_check_fields(req, top));
    const char *cred_id = NULL, *sad = NULL, *mode = NULL, *qual = NULL;
    const char *const shorts[] = {"credentialID",       "SAD",        "operationMode",
                                  "signatureQualifier", "clientData", NULL};
    for (const char *const *f = shorts; *f; f++)
        ENSURE(!qtsp_json_big_is(big, json_object_get(req, *f)), QTSP_ERR_INVALID, "%s: too long",
               *f);
    TRY(qtsp_json_get_string(req, "credentialID", 1, &cred_id));
    TRY(qtsp_json_get_string(req, "SAD", 1, &sad));
    TRY(qtsp_json_get_string(req, "operationMode", 0, &mode));
    TRY(qtsp_json_get_string(req, "signatureQualifier", 0, &qual));
    ENSURE(!mode || strcmp(mode, "S") == 0, QTSP_ERR_INVALID,
           "operationMode: only S (synchronous) is offered");
    ENSURE(!qual || strcmp(qual, "eu_eidas_qes") == 0, QTSP_ERR_INVALID,
           "signatureQualifier: only eu_eidas_qes");
    const json_t *docs = json_object_get(req, "documents");
    size_t n = json_array_size(docs);
    ENSURE(json_is_array(docs) && n >= 1 && n <= (size_t)c->docs_max, QTSP_ERR_INVALID,
           "documents: an array of 1 to %lld documents", (long long)c->docs_max);
    char rp[128];
    if (rp_header)
        TRY(qtsp_usage_rp_check(c->usage, rp_header, rp, sizeof rp));
    size_t start = out->len;
    doc_job *jobs = calloc(n, sizeof *jobs);
    char(*ids)[QTSP_ARCHIVE_ID_LEN + 1] = calloc(n, sizeof *ids);
    qtsp_archive_doc *adocs = calloc(n, sizeof *adocs);
    unsigned char(*shas)[32] = calloc(n, sizeof *shas);
    char **hex = calloc(n, sizeof *hex);
    json_t *b64s = json_array(), *sorted = json_array(), *cred = NULL;
    X509 *cert = NULL;
    qtsp_key *key = NULL;
    int *wrote = NULL; /* the archive files this request created */
    qtsp_status rc = QTSP_OK;
    sign_ctx x = {.c = c,
                  .user_id = user_id,
                  .cred_id = cred_id,
                  .hash_oid = OID_SHA256,
                  .rp = rp_header ? rp : NULL,
                  .req_hashes = b64s,
                  .sorted = sorted,
                  .n = n,
                  .event = "csc.signdoc"};
    for (size_t i = 0; jobs && i < n; i++)
        qtsp_buf_init(&jobs[i].out, 2 * QTSP_ADES_MAX_DOC + ((size_t)1 << 20));
    ENSURE_OUT(jobs && ids && adocs && shas && hex && b64s && sorted, QTSP_ERR_NOMEM,
               "out of memory");
    /* SCAL2: the SAD covers the SHA-256 of each document as received */
    for (size_t i = 0; i < n; i++) {
        TRY_OUT(doc_parse(json_array_get(docs, i), big, i, QTSP_ADES_MAX_DOC, &jobs[i]));
        char b[48];
        TRY_OUT(qtsp_base64_encode(jobs[i].sha, 32, b, sizeof b));
        hex[i] = malloc(65);
        ENSURE_OUT(hex[i] && json_array_append_new(b64s, json_string(b)) == 0, QTSP_ERR_NOMEM,
                   "out of memory");
        qtsp_hex_encode(jobs[i].sha, 32, hex[i]);
    }
    qsort(hex, n, sizeof *hex, cmp_str);
    for (size_t i = 0; i < n; i++)
        ENSURE_OUT(json_array_append_new(sorted, json_string(hex[i])) == 0, QTSP_ERR_NOMEM,
                   "out of memory");
    ENSURE_OUT(secret_form_ok(sad), QTSP_ERR_INVALID, "SAD: unknown");
    secret_key(sad, x.sad_key);
    x.now_ms = qtsp_now_ms();
    doc_index idx = {n, adocs, (const unsigned char(*)[32])shas, ids};
    x.idx = &idx;
    TRY_OUT(sign_precheck(c, &x, &cred, &cert));
    for (size_t i = 1; i < n; i++)
        ENSURE_OUT(jobs[i].key_type == jobs[0].key_type, QTSP_ERR_INVALID,
                   "documents[%zu].signAlgo: does not fit this credential's key", i);
    /* a full archive refuses before the token works (again with the sizes
     * signed, and in the transaction) */
    TRY_OUT(qtsp_archive_room(c->archive, user_id, n));
    /* several documents: a PDF or an enveloped XML document the builder
     * would refuse is refused before the token signs any of them (one
     * document needs no second reading) */
    for (size_t i = 0; n > 1 && i < n; i++)
        if (jobs[i].kind == DOC_PADES || (jobs[i].kind == DOC_XADES && !jobs[i].container &&
                                          jobs[i].packaging == QTSP_XADES_ENVELOPED)) {
            rc = jobs[i].kind == DOC_PADES
                     ? qtsp_pades_check(jobs[i].data, jobs[i].len, jobs[i].certification)
                     : qtsp_xades_check_enveloped(jobs[i].data, jobs[i].len);
            if (rc != QTSP_OK) {
                char what[200];
                snprintf(what, sizeof what, "%s", qtsp_err_what());
                qtsp_err_clear();
                FAIL_OUT(rc, "documents[%zu]: %s", i, what);
            }
        }
    TRY_OUT(open_signing_key(c, cred, jobs[0].key_type, &key));
    STACK_OF(X509) *chain = sk_X509_new_null();
    ENSURE_OUT(chain != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (sk_X509_push(chain, c->issuing) <= 0 || sk_X509_push(chain, c->root) <= 0) {
        sk_X509_free(chain);
        FAIL_OUT(QTSP_ERR_NOMEM, "out of memory");
    }
    qtsp_ades_signer sg = {key, cert, chain, {0}};
    int64_t now = x.now_ms / 1000;
    /* every document signed in memory first: a later one that fails (a
     * broken PDF) leaves nothing behind */
    uint64_t total = 0;
    for (size_t i = 0; i < n && rc == QTSP_OK; i++) {
        rc = doc_sign(c->ades, &sg, &jobs[i], now);
        total += jobs[i].out.len;
    }
    sk_X509_free(chain);
    TRY_OUT(rc);
    TRY_OUT(qtsp_archive_room(c->archive, user_id, total));
    /* the files before the transaction that indexes them (content-addressed);
     * on a refusal from here on, the files this request created and no
     * entry names are removed */
    wrote = calloc(n, sizeof *wrote);
    ENSURE_OUT(wrote != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        adocs[i] = (qtsp_archive_doc){user_id,
                                      jobs[i].name,
                                      jobs[i].format,
                                      qtsp_ades_level_name(jobs[i].level),
                                      jobs[i].out.data,
                                      jobs[i].out.len,
                                      now};
        TRY_OUT(qtsp_archive_write_new(c->archive, &adocs[i], shas[i], &wrote[i]));
    }
    /* the answer leaves only once the SAD is consumed, the signing counted
     * and the documents indexed */
    x.now_ms = qtsp_now_ms();
    TRY_OUT(qtsp_store_write(c->store, sign_txn, &x));
    memset(wrote, 0, n * sizeof *wrote); /* indexed: kept */
    TRY_OUT(doc_answer(jobs, n, ids, out));
out:
    if (rc != QTSP_OK) {
        out->len = start;
        discard_written(c->archive, wrote, shas, n);
    }
    free(wrote);
    for (size_t i = 0; jobs && i < n; i++) {
        if (!jobs[i].borrowed)
            free(jobs[i].data);
        qtsp_buf_cleanup(&jobs[i].out);
    }
    for (size_t i = 0; hex && i < n; i++)
        free(hex[i]);
    free(hex);
    free(jobs);
    free(ids);
    free(adocs);
    free(shas);
    json_decref(b64s);
    json_decref(sorted);
    json_decref(cred);
    X509_free(cert);
    qtsp_key_free(key);
    return rc;
}

/* ---- the signer's documents ---- */

qtsp_status qtsp_csc_documents(qtsp_csc *c, const char *user_id, size_t limit, const char *after,
                               json_t **out)
{
    ENSURE(c->archive, QTSP_ERR_UNAVAILABLE, "no archive on this server");
    return qtsp_archive_list_page(c->archive, user_id, limit ? limit : (size_t)c->history_page,
                                  after, out);
}

/* A CMS SignedData without eContent is a detached signature (RFC 5652 5.2). */
static int cms_detached(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    int det = cms && CMS_is_detached(cms) == 1;
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return det;
}

qtsp_status qtsp_csc_document_get(qtsp_csc *c, const char *user_id, const char *id, qtsp_buf *out,
                                  const char **media_type, char *name)
{
    ENSURE(c->archive, QTSP_ERR_UNAVAILABLE, "no archive on this server");
    size_t n = id ? strlen(id) : 0;
    ENSURE(n == QTSP_ARCHIVE_ID_LEN && strspn(id, "0123456789abcdef") == n, QTSP_ERR_NOT_FOUND,
           "no such document");
    json_t *rec = NULL;
    size_t start = out->len;
    TRY(qtsp_archive_get(c->archive, user_id, id, out, &rec));
    const char *fmt = json_string_value(json_object_get(rec, "format"));
    const char *given = json_string_value(json_object_get(rec, "name"));
    const char *mt = "application/octet-stream", *ext = "";
    if (!fmt)
        fmt = "";
    if (strncmp(fmt, "ASiC-S", 6) == 0) {
        mt = "application/vnd.etsi.asic-s+zip";
        ext = ".asics";
    } else if (strncmp(fmt, "ASiC-E", 6) == 0) {
        mt = "application/vnd.etsi.asic-e+zip";
        ext = ".asice";
    } else if (strcmp(fmt, "PAdES") == 0) {
        mt = "application/pdf";
        ext = ".pdf";
    } else if (strcmp(fmt, "XAdES") == 0) {
        mt = "application/xml";
        ext = ".xml";
    } else if (strcmp(fmt, "CAdES") == 0) {
        int det = cms_detached(out->data + start, out->len - start);
        mt = det ? "application/pkcs7-signature" : "application/pkcs7-mime";
        ext = det ? ".p7s" : ".p7m";
    }
    const char *base = given && given[0] ? given : id;
    size_t bl = strlen(base), el = strlen(ext);
    int has_ext = bl >= el && el && strcasecmp(base + bl - el, ext) == 0;
    snprintf(name, QTSP_ARCHIVE_NAME_MAX + 8, "%s%s", base, has_ext ? "" : ext);
    *media_type = mt;
    json_decref(rec);
    return QTSP_OK;
}

/* ---- passwords ---- */

typedef struct pw_ctx {
    const char *user_id, *actor, *event;
    const char *password_hash; /* new hash */
    json_t *otp;               /* new wrapped TOTP secret (reset) */
    int64_t now_ms;
} pw_ctx;

static qtsp_status password_txn(qtsp_txn *txn, void *vctx)
{
    pw_ctx *x = vctx;
    json_t *user = NULL;
    TRY(ra_get_json(txn, QTSP_T_USERS, x->user_id, &user));
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(json_object_set_new(user, "password_hash", json_string(x->password_hash)) == 0 &&
                   json_object_set_new(user, "tokens_after_ms", json_integer(x->now_ms)) == 0,
               QTSP_ERR_NOMEM, "out of memory");
    if (x->otp)
        ENSURE_OUT(json_object_set(user, "otp", x->otp) == 0, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(ra_put_json(txn, QTSP_T_USERS, x->user_id, user, 0));
    if (x->otp) { /* lockouts lifted; the replay memory (last step) stays */
        lock_state s;
        TRY_OUT(state_get(txn, 'u', x->user_id, &s));
        s.fails = s.locked_until_ms = 0;
        TRY_OUT(state_put(txn, 'u', x->user_id, &s));
        const json_t *creds = json_object_get(user, "credentials");
        for (size_t i = 0; i < json_array_size(creds); i++) {
            const char *id = json_string_value(json_array_get(creds, i));
            if (!id || !id_ok(id))
                continue;
            TRY_OUT(state_get(txn, 'c', id, &s));
            s.fails = s.locked_until_ms = 0;
            TRY_OUT(state_put(txn, 'c', id, &s));
        }
    }
    json_t *d = json_pack("{s:s}", "user_id", x->user_id);
    ENSURE_OUT(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    rc = qtsp_audit_append(txn, x->actor, x->event, d, NULL);
    json_decref(d);
out:
    json_decref(user);
    return rc;
}

qtsp_status qtsp_csc_password_change(qtsp_csc *c, const char *user_id, const char *old_password,
                                     const char *new_password)
{
    size_t nl = new_password ? strlen(new_password) : 0;
    ENSURE(old_password && strlen(old_password) <= PASSWORD_MAX, QTSP_ERR_INVALID,
           "old_password: at most %d bytes", PASSWORD_MAX);
    ENSURE(nl >= NEW_PASSWORD_MIN && nl <= NEW_PASSWORD_MAX, QTSP_ERR_INVALID,
           "new_password: %d to %d characters", NEW_PASSWORD_MIN, NEW_PASSWORD_MAX);
    ENSURE(strcmp(old_password, new_password) != 0, QTSP_ERR_INVALID,
           "new_password: the same as the old one");
    /* the old password counts like a login attempt (and towards the lockout) */
    login_ctx x = {.c = c, .user_id = user_id};
    qtsp_status rc = password_attempt(&x, old_password);
    TRY(rc);
    if (x.result != QTSP_OK)
        FAIL(QTSP_ERR_FORBIDDEN, "old_password: %s",
             strstr(x.msg, "locked") ? x.msg : "wrong password");
    char hash[160], actor[96];
    TRY(qtsp_password_hash_chosen(new_password, hash, sizeof hash));
    actor_of(user_id, actor);
    pw_ctx p = {user_id, actor, "csc.password.change", hash, NULL, qtsp_now_ms()};
    rc = qtsp_store_write(c->store, password_txn, &p);
    OPENSSL_cleanse(hash, sizeof hash);
    return rc;
}

qtsp_status qtsp_csc_reset(qtsp_csc *c, const char *actor, const char *user_id, json_t **out)
{
    ENSURE(id_ok(user_id), QTSP_ERR_NOT_FOUND, "no signer %.64s", user_id ? user_id : "");
    qtsp_activation act;
    TRY(qtsp_activation_make(c->otp_key, user_id, &act));
    pw_ctx p = {user_id, actor, "signer.reset", act.password_hash, act.otp, qtsp_now_ms()};
    qtsp_status rc = qtsp_store_write(c->store, password_txn, &p);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        rc = qtsp_err_set(QTSP_ERR_NOT_FOUND, __FILE__, __LINE__, "no signer %s", user_id);
    }
    if (rc == QTSP_OK) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "user_id", user_id, "password", act.password,
                              "otpauth_uri", act.otpauth_uri);
        if (o)
            *out = o;
        else
            rc = qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    qtsp_activation_cleanup(&act);
    return rc;
}

/* ---- history, housekeeping ---- */

qtsp_status qtsp_csc_history(qtsp_csc *c, const char *user_id, size_t limit, const char *after,
                             json_t **out)
{
    return qtsp_usage_history_page(c->usage, user_id, limit ? limit : (size_t)c->history_page,
                                   after, out);
}

qtsp_status qtsp_csc_quota(qtsp_csc *c, const char *user_id, json_t **out)
{
    return qtsp_usage_quota(c->usage, user_id, out);
}

/* Ended sessions and SADs, found in a read transaction (the write lock is
 * taken only when there is something to delete), at most once a minute per
 * process: the sweeper calls every second. */
#define PURGE_EVERY_MS 60000

typedef struct purge_ctx {
    qtsp_csc *c;
    size_t n_r; /* refusal records whose window is over (agg_close) */
    char (*rkeys)[REFUSAL_KEY_MAX];
    int64_t now_ms;
    size_t max, total, n[2];
    int t; /* 0 sessions, 1 SADs */
    char (*keys)[KEY_HEX];
} purge_ctx;

static const qtsp_table k_purged[2] = {QTSP_T_SESSIONS, QTSP_T_SADS};

static qtsp_status purge_visit(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen, int *stop)
{
    purge_ctx *p = ctx;
    const unsigned char *v = val;
    if (klen != KEY_HEX - 1 || vlen < 2 || v[0] != 1)
        return QTSP_OK;
    json_error_t err;
    json_t *o = json_loadb((const char *)v + 1, vlen - 1, 0, &err);
    /* a SAD is kept a minute past its end, so a late replay reads "expired" */
    if (o && jint(o, "expires_ms") + 60000 < p->now_ms) {
        memcpy(p->keys[p->total], key, klen);
        p->keys[p->total++][klen] = '\0';
        p->n[p->t]++;
    }
    json_decref(o);
    if (p->total == p->max)
        *stop = 1;
    return QTSP_OK;
}

#define PURGE_REFUSALS_MAX 256 /* refusal records closed per pass */

/* The refusal records ("r:...") whose window is over. */
static qtsp_status purge_visit_refusal(void *ctx, const void *key, size_t klen, const void *val,
                                       size_t vlen, int *stop)
{
    purge_ctx *p = ctx;
    const unsigned char *v = val;
    if (klen < 2 || memcmp(key, "r:", 2) != 0) {
        *stop = 1;
        return QTSP_OK;
    }
    if (klen >= REFUSAL_KEY_MAX || vlen < 2 || v[0] != 1)
        return QTSP_OK;
    json_error_t err;
    json_t *o = json_loadb((const char *)v + 1, vlen - 1, 0, &err);
    refusal_agg a = {.window_start_ms = jint(o, "window_start_ms")};
    if (o && agg_window_over(p->c, &a, p->now_ms)) {
        memcpy(p->rkeys[p->n_r], key, klen);
        p->rkeys[p->n_r++][klen] = '\0';
    }
    json_decref(o);
    if (p->n_r == PURGE_REFUSALS_MAX)
        *stop = 1;
    return QTSP_OK;
}

static qtsp_status purge_txn(qtsp_txn *txn, void *vctx)
{
    purge_ctx *p = vctx;
    /* read again under the write lock: another process may have closed it */
    for (size_t i = 0; i < p->n_r; i++) {
        refusal_agg a;
        int changed;
        TRY(agg_get(txn, p->rkeys[i], &a));
        TRY(agg_close(p->c, txn, &a, p->now_ms, &changed));
        if (!changed) /* a refusal opened a new window meanwhile */
            continue;
        qtsp_status rc = qtsp_txn_del(txn, QTSP_T_CSC_STATE, p->rkeys[i], strlen(p->rkeys[i]));
        if (rc == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            continue;
        }
        TRY(rc);
    }
    size_t k = 0;
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < p->n[t]; i++, k++) {
            qtsp_status rc = qtsp_txn_del(txn, k_purged[t], p->keys[k], strlen(p->keys[k]));
            if (rc == QTSP_ERR_NOT_FOUND) /* another process purged it */
                continue;
            TRY(rc);
        }
    return QTSP_OK;
}

qtsp_status qtsp_csc_purge(qtsp_csc *c, time_t now, size_t max, size_t *n)
{
    ENSURE(max >= 1 && max <= 100000, QTSP_ERR_INVALID, "purge: 1..100000 per call");
    *n = 0;
    int64_t last = atomic_load(&c->purged_at_ms), now_ms = (int64_t)now * 1000;
    if (last && now_ms - last < PURGE_EVERY_MS)
        return QTSP_OK;
    atomic_store(&c->purged_at_ms, now_ms);
    purge_ctx p = {.c = c,
                   .now_ms = now_ms,
                   .max = max,
                   .keys = calloc(max, KEY_HEX),
                   .rkeys = calloc(PURGE_REFUSALS_MAX, REFUSAL_KEY_MAX)};
    if (!p.keys || !p.rkeys) {
        free(p.keys);
        free(p.rkeys);
        return qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    qtsp_txn *txn = NULL;
    qtsp_status rc = qtsp_store_begin(c->store, 0, &txn);
    if (rc == QTSP_OK)
        rc = qtsp_txn_iter(txn, QTSP_T_CSC_STATE, "r:", 2, purge_visit_refusal, &p);
    for (p.t = 0; rc == QTSP_OK && p.t < 2 && p.total < max; p.t++)
        rc = qtsp_txn_iter(txn, k_purged[p.t], NULL, 0, purge_visit, &p);
    qtsp_txn_abort(txn);
    if (rc == QTSP_OK && (p.total || p.n_r))
        rc = qtsp_store_write(c->store, purge_txn, &p);
    free(p.keys);
    free(p.rkeys);
    if (rc == QTSP_OK)
        *n = p.total;
    return rc;
}
