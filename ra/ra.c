/* Registration Authority core: enrolment, issuance, status (EN 319 411-1
 * 6.2 identification and 6.3 certificate life-cycle). */
#include "ra/ra.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/audit.h"
#include "ca/issue.h"
#include "ca/profile.h"
#include "ca/subkey.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/json.h"
#include "core/log.h"
#include "core/yaml.h"
#include "ra/activation.h"
#include "ra/ra_int.h"
#include "ra/validate.h"

#define RECORD_VERSION 1
#define PROFILE_FILE "qualified-natural-person.yaml"

void qtsp_actor_from_operator(const qtsp_operator *op, qtsp_actor *out)
{
    snprintf(out->name, sizeof out->name, "operator:%s", op->name);
    out->roles = (unsigned)op->role;
}

void qtsp_actor_all_roles(const char *name, qtsp_actor *out)
{
    snprintf(out->name, sizeof out->name, "%s", name);
    out->roles = QTSP_ROLE_RA_OFFICER | QTSP_ROLE_HOTLINE | QTSP_ROLE_OFFICE | QTSP_ROLE_AUDITOR;
}

qtsp_status qtsp_ra_operator_auth(qtsp_ra *ra, const char *token, qtsp_actor *who)
{
    qtsp_operator op;
    if (qtsp_operator_auth(ra->d.store, token, &op) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "unknown or invalid operator token");
    }
    qtsp_actor_from_operator(&op, who);
    return QTSP_OK;
}

int qtsp_ra_operator_auth_is_slow(qtsp_ra *ra, const char *token)
{
    return qtsp_operator_auth_is_slow(ra->d.store, token);
}

qtsp_status ra_require_role(const qtsp_actor *who, unsigned roles, const char *what)
{
    ENSURE(who->roles & roles, QTSP_ERR_FORBIDDEN, "%s is not allowed for this operator's role",
           what);
    return QTSP_OK;
}

/* EN 319 412-1 5.1.3 semantics identifier types, in bit order. */
static const char *const k_id_types[] = {"PNO", "IDC", "PAS", "TIN"};
static const char *const k_methods[] = {"in-person", "remote-video", "eid"};

static int name_bit(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

void ra_id_index_key(const char *country, const char *id_type, const char *id, char key[128])
{
    if (!id_type || strcmp(id_type, "PNO") == 0)
        snprintf(key, 128, "%s:%s", country, id);
    else
        snprintf(key, 128, "%s:%s:%s", country, id_type, id);
}

/* A list of names from a sequence, each one of names[0..n) (bits), or free
 * strings into ident->doc_types when names is NULL. */
static qtsp_status load_list(const qtsp_ynode *root, const char *key, const char *const *names,
                             size_t n, unsigned *bits, ra_identity *free_out)
{
    const qtsp_ynode *l = qtsp_ynode_get(root, key);
    if (!l)
        return QTSP_OK;
    if (qtsp_ynode_kind(l) != QTSP_Y_SEQ)
        return qtsp_ynode_fail(l, key, "must be a list");
    if (bits)
        *bits = 0;
    for (size_t i = 0; i < qtsp_ynode_count(l); i++) {
        const qtsp_ynode *it = qtsp_ynode_item(l, i);
        const char *v = qtsp_ynode_kind(it) == QTSP_Y_SCALAR ? qtsp_ynode_scalar(it) : NULL;
        if (names) {
            int b = name_bit(names, n, v);
            if (b < 0)
                return qtsp_ynode_fail(it, key, "unknown value");
            *bits |= 1u << b;
        } else {
            if (!v || !*v || strlen(v) > 64 || free_out->n_doc_types == RA_MAX_DOC_TYPES)
                return qtsp_ynode_fail(it, key, "1 to 64 characters, at most %d entries",
                                       RA_MAX_DOC_TYPES);
            snprintf(free_out->doc_types[free_out->n_doc_types++], 65, "%s", v);
        }
    }
    if (bits && *bits == 0)
        return qtsp_ynode_fail(l, key, "must not be empty");
    return QTSP_OK;
}

static qtsp_status load_identity(qtsp_ra *ra, const char *path)
{
    ra_identity *id = &ra->ident;
    id->id_types = 0xf;
    id->methods = 0x7;
    if (access(path, F_OK) != 0)
        return QTSP_OK; /* a home made before the policy existed: the defaults */
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {"version",        "id_types", "evidence_required",
                                       "document_types", "methods",  NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(load_list(root, "id_types", k_id_types, 4, &id->id_types, NULL));
    TRY_OUT(load_list(root, "methods", k_methods, 3, &id->methods, NULL));
    TRY_OUT(load_list(root, "document_types", NULL, 0, NULL, id));
    TRY_OUT(qtsp_yget_bool(root, "evidence_required", 0, &id->evidence_required));
out:
    qtsp_ydoc_free(doc);
    return rc;
}

static qtsp_status load_suspension(qtsp_ra *ra, const char *path)
{
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {"version", "max_hold", "sweep_interval", NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_duration(root, "max_hold", 1, &ra->max_hold_s));
    if (ra->max_hold_s <= 0 || ra->max_hold_s > 366 * 86400)
        TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(root, "max_hold"), "max_hold",
                                "must be between 1s and 366d"));
    ra->sweep_interval_s = 1;
    TRY_OUT(qtsp_yget_duration(root, "sweep_interval", 0, &ra->sweep_interval_s));
    if (ra->sweep_interval_s < 1)
        ra->sweep_interval_s = 1;
out:
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status qtsp_ra_new(const qtsp_ra_deps *deps, qtsp_ra **out)
{
    qtsp_ra *ra = calloc(1, sizeof *ra);
    ENSURE(ra != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    ra->d = *deps;
    snprintf(ra->base_url, sizeof ra->base_url, "%s", deps->base_url);
    ra->d.base_url = ra->base_url;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", deps->policies_dir, PROFILE_FILE);
    TRY_OUT(qtsp_profile_load(path, &ra->profile));
    TRY_OUT(qtsp_keytype_parse(qtsp_profile_key_type(ra->profile), &ra->keytype));
    snprintf(path, sizeof path, "%s/packages.yaml", deps->policies_dir);
    TRY_OUT(qtsp_packages_load(path, &ra->packages));
    snprintf(path, sizeof path, "%s/suspension.yaml", deps->policies_dir);
    TRY_OUT(load_suspension(ra, path));
    snprintf(path, sizeof path, "%s/identity.yaml", deps->policies_dir);
    TRY_OUT(load_identity(ra, path));
    TRY_OUT(qtsp_otp_key_load(deps->secrets_dir, ra->otp_key));
    TRY_OUT(ra_keypool_init(ra, deps->policies_dir));
    /* subscriber keys are wrapped under the token's key-storage key: made
     * here for homes from before it (the migration, audited once) */
    TRY_OUT(qtsp_subkey_setup(deps->hsm, deps->store, "system:key-storage"));
out:
    if (rc != QTSP_OK) {
        qtsp_ra_free(ra);
        return rc;
    }
    *out = ra;
    return QTSP_OK;
}

void qtsp_ra_free(qtsp_ra *ra)
{
    if (!ra)
        return;
    if (ra->kp_ready)
        ra_keypool_cleanup(ra);
    qtsp_profile_free(ra->profile);
    OPENSSL_cleanse(ra->otp_key, sizeof ra->otp_key);
    free(ra);
}

/* ---- records: version byte + compact JSON ---- */

qtsp_status ra_put_json(qtsp_txn *txn, qtsp_table t, const char *key, const json_t *obj,
                        unsigned flags)
{
    char *txt = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    ENSURE(txt != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t n = strlen(txt);
    qtsp_buf b;
    qtsp_buf_init(&b, n + 1);
    unsigned char v = RECORD_VERSION;
    qtsp_status rc = qtsp_buf_append(&b, &v, 1);
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(&b, txt, n);
    if (rc == QTSP_OK)
        rc = qtsp_txn_put(txn, t, key, strlen(key), b.data, b.len, flags);
    OPENSSL_cleanse(txt, n);
    free(txt);
    qtsp_buf_cleanup(&b);
    return rc;
}

qtsp_status ra_get_json(qtsp_txn *txn, qtsp_table t, const char *key, json_t **out)
{
    const void *v = NULL;
    size_t vl = 0;
    TRY(qtsp_txn_get0(txn, t, key, strlen(key), &v, &vl));
    const unsigned char *p = v;
    ENSURE(vl >= 1 && p[0] == RECORD_VERSION, QTSP_ERR_STORE_CORRUPT,
           "record %s of table %s has an unknown version", key, qtsp_table_name(t));
    json_error_t err;
    json_t *o = json_loadb((const char *)p + 1, vl - 1, JSON_REJECT_DUPLICATES, &err);
    ENSURE(o && json_is_object(o), QTSP_ERR_STORE_CORRUPT, "record %s of table %s is not JSON", key,
           qtsp_table_name(t));
    *out = o;
    return QTSP_OK;
}

/* ---- enrolment ---- */

static qtsp_status random_hex_id(char *out, size_t bytes)
{
    unsigned char b[20];
    TRY(qtsp_random(b, bytes));
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return QTSP_OK;
}

typedef struct enrol_ctx {
    json_t *rec;
    const char *index_key;
    const char *subject_id;
    const qtsp_actor *who;
    char existing[40];
    time_t now;
} enrol_ctx;

static qtsp_status has_live_cert(void *vctx, const unsigned char *serial, size_t slen);

typedef struct live_ctx {
    qtsp_txn *txn;
    time_t now;
    int live;
} live_ctx;

static qtsp_status has_live_cert(void *vctx, const unsigned char *serial, size_t slen)
{
    live_ctx *c = vctx;
    qtsp_cert_status st, eff;
    TRY(qtsp_certdb_get_status(c->txn, serial, slen, &st));
    qtsp_cert_status_effective(&st, c->now, &eff);
    if (eff.state != QTSP_CERT_REVOKED && eff.not_after > c->now)
        c->live = 1;
    return QTSP_OK;
}

static qtsp_status enrol_txn(qtsp_txn *txn, void *vctx)
{
    enrol_ctx *c = vctx;
    qtsp_buf existing;
    qtsp_buf_init(&existing, 64);
    qtsp_status rc =
        qtsp_txn_get(txn, QTSP_T_SUBJECT_INDEX, c->index_key, strlen(c->index_key), &existing);
    if (rc == QTSP_OK) {
        snprintf(c->existing, sizeof c->existing, "%s", qtsp_buf_str(&existing));
        qtsp_buf_cleanup(&existing);
        live_ctx lc = {txn, c->now, 0};
        TRY(qtsp_certdb_subject_serials(txn, c->existing, has_live_cert, &lc));
        ENSURE(!lc.live, QTSP_ERR_EXISTS,
               "national_id: already enrolled as subject %s with a valid certificate", c->existing);
        /* re-enrolment of a known person: same subject id, new identity data
         * and evidence; the earlier registration records are kept in
         * "history" (EN 319 411-1: registration records are retained) */
        json_t *prev = NULL;
        TRY(ra_get_json(txn, QTSP_T_SUBJECTS, c->existing, &prev));
        json_t *hist = json_object_get(prev, "history");
        hist = json_is_array(hist) ? json_incref(hist) : json_array();
        json_object_del(prev, "history");
        json_array_append_new(hist, prev);
        json_object_set_new(c->rec, "history", hist);    /* owns prev now */
        TRY(ra_search_index(txn, prev, c->existing, 0)); /* the old data's keys */
        json_object_set_new(c->rec, "subject_id", json_string(c->existing));
        TRY(ra_put_json(txn, QTSP_T_SUBJECTS, c->existing, c->rec, 0));
        TRY(ra_search_index(txn, c->rec, c->existing, 1));
    } else {
        qtsp_buf_cleanup(&existing);
        if (rc != QTSP_ERR_NOT_FOUND)
            return rc;
        qtsp_err_clear();
        TRY(ra_put_json(txn, QTSP_T_SUBJECTS, c->subject_id, c->rec, QTSP_PUT_NOOVERWRITE));
        TRY(qtsp_txn_put(txn, QTSP_T_SUBJECT_INDEX, c->index_key, strlen(c->index_key),
                         c->subject_id, strlen(c->subject_id), QTSP_PUT_NOOVERWRITE));
        TRY(ra_search_index(txn, c->rec, c->subject_id, 1));
        c->existing[0] = '\0';
    }
    json_t *ev = json_object_get(c->rec, "identity_evidence");
    json_t *d = json_pack(
        "{s:s,s:s,s:s,s:s,s:O}", "subject_id", c->existing[0] ? c->existing : c->subject_id,
        "country", json_string_value(json_object_get(c->rec, "country")), "id_type",
        json_string_value(json_object_get(c->rec, "id_type")), "package",
        json_string_value(json_object_get(c->rec, "package")), "identity_evidence", ev);
    ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    rc = qtsp_audit_append(txn, c->who->name, c->existing[0] ? "subject.reenrol" : "subject.enrol",
                           d, NULL);
    json_decref(d);
    return rc;
}

qtsp_status qtsp_ra_enrol(qtsp_ra *ra, const qtsp_actor *who, const json_t *in, char subject_id[40])
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER, "enrolment"));
    static const char *const allowed[] = {"given_name",        "surname", "country", "national_id",
                                          "id_type",           "email",   "phone",   "package",
                                          "identity_evidence", NULL};
    TRY(qtsp_json_check_fields(in, allowed));
    const char *given, *surname, *country, *nid, *email, *phone, *package;
    TRY(qtsp_json_get_string(in, "given_name", 1, &given));
    TRY(qtsp_json_get_string(in, "surname", 1, &surname));
    TRY(qtsp_json_get_string(in, "country", 1, &country));
    TRY(qtsp_json_get_string(in, "national_id", 1, &nid));
    TRY(qtsp_json_get_string(in, "email", 1, &email));
    TRY(qtsp_json_get_string(in, "phone", 1, &phone));
    TRY(qtsp_json_get_string(in, "package", 1, &package));
    char given_nfc[4 * 64 + 1], surname_nfc[4 * 64 + 1]; /* stored and certified in NFC */
    TRY(qtsp_valid_name_nfc("given_name", given, 64, given_nfc, sizeof given_nfc));
    TRY(qtsp_valid_name_nfc("surname", surname, 64, surname_nfc, sizeof surname_nfc));
    given = given_nfc;
    surname = surname_nfc;
    TRY(qtsp_valid_country(country));
    /* EN 319 412-1 5.1.3: PNO (default), IDC, PAS or TIN, as the policy allows */
    const char *id_type = "PNO";
    TRY(qtsp_json_get_string(in, "id_type", 0, &id_type));
    if (!id_type)
        id_type = "PNO";
    int tb = name_bit(k_id_types, 4, id_type);
    ENSURE(tb >= 0 && (ra->ident.id_types & (1u << tb)), QTSP_ERR_INVALID,
           "id_type: %s is not accepted (policies/identity.yaml id_types)",
           tb >= 0 ? id_type : "this");
    if (tb == 0)
        TRY(qtsp_valid_national_id(country, nid));
    else
        TRY(qtsp_valid_document_id(nid));
    TRY(qtsp_valid_email(email));
    TRY(qtsp_valid_phone(phone));
    ENSURE(qtsp_packages_find(&ra->packages, package) != NULL, QTSP_ERR_INVALID,
           "package: unknown package '%s' (see policies/packages.yaml)", package);
    /* CN = given name + surname must fit the 64-character ub-common-name */
    char cn[sizeof given_nfc + sizeof surname_nfc]; /* both, a space and the NUL */
    snprintf(cn, sizeof cn, "%s %s", given, surname);
    TRY(qtsp_valid_name("given_name + surname", cn, 64));

    /* identity evidence (EN 319 411-1 6.2.2): optional object; the accepting
     * operator is always recorded */
    const char *doc_type = "unspecified", *doc_number = "", *method = "in-person";
    json_t *ev_in = json_object_get(in, "identity_evidence");
    ENSURE(ev_in || !ra->ident.evidence_required, QTSP_ERR_INVALID,
           "identity_evidence: required (policies/identity.yaml evidence_required)");
    if (ev_in) {
        static const char *const ev_allowed[] = {"document_type", "document_number", "method",
                                                 NULL};
        ENSURE(json_is_object(ev_in), QTSP_ERR_INVALID, "identity_evidence: must be an object");
        TRY(qtsp_json_check_fields(ev_in, ev_allowed));
        const char *s;
        TRY(qtsp_json_get_string(ev_in, "document_type", 1, &s));
        TRY(qtsp_valid_name("identity_evidence.document_type", s, 64));
        int known = ra->ident.n_doc_types == 0;
        for (size_t i = 0; i < ra->ident.n_doc_types && !known; i++)
            known = strcmp(ra->ident.doc_types[i], s) == 0;
        ENSURE(known, QTSP_ERR_INVALID,
               "identity_evidence.document_type: %s is not accepted (policies/identity.yaml)", s);
        doc_type = s;
        TRY(qtsp_json_get_string(ev_in, "document_number", 1, &s));
        TRY(qtsp_valid_name("identity_evidence.document_number", s, 64));
        doc_number = s;
        TRY(qtsp_json_get_string(ev_in, "method", 0, &s));
        if (s) {
            int mb = name_bit(k_methods, 3, s);
            ENSURE(mb >= 0 && (ra->ident.methods & (1u << mb)), QTSP_ERR_INVALID,
                   "identity_evidence.method: not accepted (in-person, remote-video or eid, as "
                   "policies/identity.yaml methods allows)");
            method = s;
        }
    }

    char id[40];
    TRY(random_hex_id(id, 12));
    char when[32];
    time_t now = qtsp_now();
    qtsp_format_rfc3339(now, when, sizeof when);
    json_t *rec = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s}}", "subject_id", id,
        "given_name", given, "surname", surname, "country", country, "national_id", nid, "email",
        email, "phone", phone, "package", package, "enrolled_at", when, "enrolled_by", who->name,
        "identity_evidence", "document_type", doc_type, "document_number", doc_number, "method",
        method, "accepted_by", who->name, "accepted_at", when);
    ENSURE(rec != NULL, QTSP_ERR_NOMEM, "out of memory");
    json_object_set_new(rec, "id_type", json_string(id_type));
    char index_key[128];
    ra_id_index_key(country, id_type, nid, index_key);
    enrol_ctx c = {rec, index_key, id, who, "", now};
    qtsp_status rc = qtsp_store_write(ra->d.store, enrol_txn, &c);
    json_decref(rec);
    TRY(rc);
    snprintf(subject_id, 40, "%s", c.existing[0] ? c.existing : id);
    return QTSP_OK;
}

/* ---- issuance ---- */

void qtsp_issued_cleanup(qtsp_issued *is)
{
    free(is->certificate_pem);
    if (is->otpauth_uri) {
        OPENSSL_cleanse(is->otpauth_uri, strlen(is->otpauth_uri));
        free(is->otpauth_uri);
    }
    OPENSSL_cleanse(is, sizeof *is);
}

typedef struct issue_ctx {
    qtsp_cert_record rec;
    json_t *user;
    const char *user_id;
    json_t *credential;
    const char *credential_id;
    const json_t *details;
    const char *actor;
} issue_ctx;

static qtsp_status issue_txn(qtsp_txn *txn, void *vctx)
{
    issue_ctx *c = vctx;
    TRY(ra_put_json(txn, QTSP_T_USERS, c->user_id, c->user, QTSP_PUT_NOOVERWRITE));
    TRY(ra_put_json(txn, QTSP_T_CREDENTIALS, c->credential_id, c->credential,
                    QTSP_PUT_NOOVERWRITE));
    return qtsp_issue_record(txn, &c->rec, 1, c->actor, "cert.issue", c->details);
}

char *ra_x509_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, x) != 1) {
        BIO_free(b);
        return NULL;
    }
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(b);
    return s;
}

qtsp_status qtsp_ra_issue(qtsp_ra *ra, const qtsp_actor *who, const char *subject_id,
                          qtsp_issued *out)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER, "issuance"));
    ENSURE(subject_id && strlen(subject_id) > 0 && strlen(subject_id) < 40 &&
               strspn(subject_id, "0123456789abcdef") == strlen(subject_id),
           QTSP_ERR_NOT_FOUND, "no subject %s", subject_id ? subject_id : "");
    qtsp_status rc = QTSP_OK;
    json_t *subj = NULL, *user = NULL, *credential = NULL;
    qtsp_activation act;
    memset(&act, 0, sizeof act);
    EVP_PKEY *pub = NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    json_t *details = NULL, *key = NULL;
    int key_made = 0, from_pool = 0;
    ra_subkey sk;
    memset(&sk, 0, sizeof sk);
    qtsp_issued res;
    memset(&res, 0, sizeof res);

    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    rc = ra_get_json(txn, QTSP_T_SUBJECTS, subject_id, &subj);
    qtsp_txn_abort(txn);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_NOT_FOUND, "no subject %s", subject_id);
    }
    TRY(rc);

    unsigned char serial[16];
    TRY_OUT(qtsp_issue_serial(serial));
    qtsp_serial_to_hex(serial, sizeof serial, res.serial_hex);

    /* a ready wrapped key from the pool; generated (and wrapped) here when
     * the pool is empty */
    rc = ra_keypool_take(ra, &sk);
    if (rc == QTSP_OK) {
        from_pool = 1;
    } else if (rc == QTSP_ERR_NOT_FOUND) {
        rc = QTSP_OK;
        snprintf(sk.label, sizeof sk.label, "%sinline", RA_WPOOL_PREFIX);
        TRY_OUT(qtsp_hsm_generate_wrapped(ra->d.hsm, ra->keytype, &sk.blob, &sk.blob_len, &sk.pub));
        if (ra->kp.size > 0)
            atomic_fetch_add(&ra->kp.inline_made, 1);
    } else {
        goto out;
    }
    key_made = 1;
    pub = sk.pub;
    sk.pub = NULL;
    /* bound for ever to this serial: the token's binding key authenticates
     * serial, key type, public key and blob (ca/subkey.h) */
    TRY_OUT(qtsp_subkey_bind(ra->d.hsm, serial, sizeof serial, ra->keytype, sk.blob, sk.blob_len,
                             pub, &key));

    const char *given = json_string_value(json_object_get(subj, "given_name"));
    const char *surname = json_string_value(json_object_get(subj, "surname"));
    const char *country = json_string_value(json_object_get(subj, "country"));
    const char *nid = json_string_value(json_object_get(subj, "national_id"));
    ENSURE_OUT(given && surname && country && nid, QTSP_ERR_STORE_CORRUPT,
               "subject %s record incomplete", subject_id);
    const char *id_type = json_string_value(json_object_get(subj, "id_type"));
    char cn[300], pno[64];
    snprintf(cn, sizeof cn, "%s %s", given, surname);
    /* ETSI EN 319 412-1 5.1.3: type (PNO, IDC, PAS, TIN) + country + '-' + identifier */
    snprintf(pno, sizeof pno, "%s%s-%s", id_type ? id_type : "PNO", country, nid);
    qtsp_cert_request req;
    memset(&req, 0, sizeof req);
    req.subject.country = country;
    req.subject.given_name = given;
    req.subject.surname = surname;
    req.subject.common_name = cn;
    req.subject.serial_number = pno;
    req.subject_key = pub;
    req.issuer = ra->d.issuing_ca;
    req.issuer_key = ra->d.issuing_key;
    req.serial = serial;
    req.serial_len = sizeof serial;
    req.base_url = ra->base_url;
    TRY_OUT(qtsp_profile_issue(ra->profile, &req, &cert));
    int dl = i2d_X509(cert, &der);
    ENSURE_OUT(dl > 0, QTSP_ERR_CRYPTO, "cannot encode the certificate");

    /* activation for remote signing */
    TRY_OUT(random_hex_id(res.user_id, 10));
    TRY_OUT(qtsp_activation_make(ra->otp_key, res.user_id, &act));
    snprintf(res.password, sizeof res.password, "%s", act.password);
    res.otpauth_uri = strdup(act.otpauth_uri);
    ENSURE_OUT(res.otpauth_uri != NULL, QTSP_ERR_NOMEM, "out of memory");
    char when[32];
    qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
    user = json_pack("{s:s,s:s,s:s,s:O,s:s,s:[s]}", "user_id", res.user_id, "subject_id",
                     subject_id, "password_hash", act.password_hash, "otp", act.otp, "created_at",
                     when, "credentials", res.serial_hex);
    ENSURE_OUT(user != NULL, QTSP_ERR_NOMEM, "out of memory");
    /* the remote-signing credential (CSC credentialID = serial hex) */
    credential = json_pack("{s:s,s:s,s:s,s:O,s:b,s:s}", "credential_id", res.serial_hex, "user_id",
                           res.user_id, "subject_id", subject_id, "key", key, "enabled", 1,
                           "created_at", when);
    ENSURE_OUT(credential != NULL, QTSP_ERR_NOMEM, "out of memory");
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "serial", res.serial_hex, "subject_id", subject_id,
                  "key_label", sk.label, "key_source", from_pool ? "pool" : "generated", "user_id",
                  res.user_id, "profile", qtsp_profile_name(ra->profile));
    ENSURE_OUT(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    details = d;

    issue_ctx c;
    memset(&c, 0, sizeof c);
    memcpy(c.rec.serial, serial, sizeof serial);
    c.rec.serial_len = sizeof serial;
    snprintf(c.rec.issuer, sizeof c.rec.issuer, "issuing");
    snprintf(c.rec.subject_id, sizeof c.rec.subject_id, "%s", subject_id);
    snprintf(c.rec.key_label, sizeof c.rec.key_label, "%s", sk.label);
    snprintf(c.rec.profile, sizeof c.rec.profile, "%s", qtsp_profile_name(ra->profile));
    c.rec.der = der;
    c.rec.der_len = (size_t)dl;
    c.user = user;
    c.user_id = res.user_id;
    c.credential = credential;
    c.credential_id = res.serial_hex;
    c.details = details;
    c.actor = who->name;
    /* everything the answer needs is ready before the commit: a committed
     * issuance must never lose its one-time activation secrets */
    res.certificate_pem = ra_x509_pem(cert);
    ENSURE_OUT(res.certificate_pem != NULL, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(qtsp_store_write(ra->d.store, issue_txn, &c));
    key_made = 0; /* committed: the key now belongs to the certificate */
    *out = res;
    memset(&res, 0, sizeof res);
out:
    if (key_made && from_pool)
        ra_keypool_discard(ra, who->name, sk.label, "issuance failed");
    ra_subkey_cleanup(&sk); /* the blob lived only here: the key is gone */
    json_decref(key);
    qtsp_activation_cleanup(&act);
    qtsp_issued_cleanup(&res);
    json_decref(details);
    json_decref(user);
    json_decref(credential);
    json_decref(subj);
    OPENSSL_free(der);
    X509_free(cert);
    EVP_PKEY_free(pub);
    return rc;
}

/* ---- status ---- */

json_t *ra_status_json(const unsigned char *serial, size_t slen, const qtsp_cert_status *stored,
                       time_t now)
{
    qtsp_cert_status eff;
    qtsp_cert_status_effective(stored, now, &eff);
    char hex[41];
    qtsp_serial_to_hex(serial, slen, hex);
    const char *status = eff.state == QTSP_CERT_REVOKED         ? "revoked"
                         : eff.not_after && now > eff.not_after ? "expired"
                         : eff.state == QTSP_CERT_ON_HOLD       ? "on-hold"
                                                                : "valid";
    json_t *o = json_pack("{s:s,s:s}", "serial", hex, "status", status);
    if (!o)
        return NULL;
    char t[32];
    qtsp_format_rfc3339((time_t)eff.not_before, t, sizeof t);
    json_object_set_new(o, "not_before", json_string(t));
    qtsp_format_rfc3339((time_t)eff.not_after, t, sizeof t);
    json_object_set_new(o, "not_after", json_string(t));
    if (eff.state == QTSP_CERT_ON_HOLD && strcmp(status, "on-hold") == 0) {
        qtsp_format_rfc3339((time_t)eff.hold_until, t, sizeof t);
        json_object_set_new(o, "hold_until", json_string(t));
    }
    if (eff.state == QTSP_CERT_REVOKED) {
        json_object_set_new(o, "revocation_reason", json_string(qtsp_reason_name(eff.reason)));
        qtsp_format_rfc3339((time_t)eff.revoked_at, t, sizeof t);
        json_object_set_new(o, "revoked_at", json_string(t));
    }
    return o;
}

qtsp_status ra_no_such_cert(const unsigned char *serial, size_t slen)
{
    char hex[41];
    qtsp_serial_to_hex(serial, slen, hex);
    qtsp_err_clear();
    FAIL(QTSP_ERR_NOT_FOUND, "no certificate with serial %s", hex);
}

qtsp_status qtsp_ra_cert_status(qtsp_ra *ra, const unsigned char *serial, size_t slen, json_t **out)
{
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_cert_status st;
    qtsp_status rc = qtsp_certdb_get_status(txn, serial, slen, &st);
    qtsp_txn_abort(txn);
    if (rc == QTSP_ERR_NOT_FOUND)
        return ra_no_such_cert(serial, slen);
    TRY(rc);
    json_t *o = ra_status_json(serial, slen, &st, qtsp_now());
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = o;
    return QTSP_OK;
}

typedef struct list_ctx {
    qtsp_txn *txn;
    json_t *arr;
    time_t now;
} list_ctx;

static qtsp_status list_one(void *vctx, const unsigned char *serial, size_t slen)
{
    list_ctx *c = vctx;
    qtsp_cert_status st;
    TRY(qtsp_certdb_get_status(c->txn, serial, slen, &st));
    json_t *o = ra_status_json(serial, slen, &st, c->now);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    json_array_append_new(c->arr, o);
    return QTSP_OK;
}

qtsp_status qtsp_ra_subject_certs(qtsp_ra *ra, const char *subject_id, json_t **out)
{
    qtsp_txn *txn = NULL;
    json_t *subj = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_status rc = ra_get_json(txn, QTSP_T_SUBJECTS, subject_id, &subj);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_txn_abort(txn);
        qtsp_err_clear();
        FAIL(QTSP_ERR_NOT_FOUND, "no subject %s", subject_id);
    }
    json_decref(subj);
    json_t *arr = json_array();
    list_ctx c = {txn, arr, qtsp_now()};
    if (rc == QTSP_OK)
        rc = arr ? qtsp_certdb_subject_serials(txn, subject_id, list_one, &c) : QTSP_ERR_NOMEM;
    qtsp_txn_abort(txn);
    if (rc != QTSP_OK) {
        json_decref(arr);
        return rc;
    }
    json_t *o = json_pack("{s:s,s:o}", "subject_id", subject_id, "certificates", arr);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = o;
    return QTSP_OK;
}
