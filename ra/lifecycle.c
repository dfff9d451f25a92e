/* Certificate lifecycle: hold (suspension), release, termination, hold
 * lapse (EN 319 411-1 6.2.4, 6.3.9-6.3.10; RFC 5280 certificateHold).
 *
 *   valid --hold--> on-hold --release--> valid
 *   on-hold --(hold_until reached)--> valid (lapse, recorded by the sweeper)
 *   valid|on-hold --terminate--> revoked (final; key destroyed)
 *
 * Each change is one write transaction with its audit record; certdb drops
 * the pre-signed OCSP answers and bumps status_gen in that transaction, so
 * OCSP shows the change at once and the CRL publisher within seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "ra/ra_int.h"
#include "ra/validate.h"

#define MAX_VERIFICATION 512

static qtsp_status audit_json(qtsp_txn *txn, const char *actor, const char *event, json_t *d)
{
    ENSURE(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_audit_append(txn, actor, event, d, NULL);
    json_decref(d);
    return rc;
}

/* Tells the webhook after the change is committed (never inside a store
 * transaction: it may be retried). Best effort: a failure to queue is
 * logged and does not undo the change; the audit log is the record.
 * data is stolen. */
static void ra_notify(qtsp_ra *ra, const char *event, json_t *data)
{
    if (ra->d.notify && data && qtsp_notify_event(ra->d.notify, event, data) != QTSP_OK) {
        LOG_WARN("notify: %s not queued: %s", event, qtsp_err_message());
        qtsp_err_clear();
    }
    json_decref(data);
}

static qtsp_status not_found(const unsigned char *serial, size_t slen)
{
    char hex[41];
    qtsp_serial_to_hex(serial, slen, hex);
    qtsp_err_clear();
    FAIL(QTSP_ERR_NOT_FOUND, "no certificate with serial %s", hex);
}

/* Reads the stored status; NOT_FOUND for unknown and CA-side certificates
 * (the RA manages only subscriber certificates). */
static qtsp_status load_subscriber(qtsp_txn *txn, const unsigned char *serial, size_t slen,
                                   qtsp_cert_status *st, qtsp_cert_record *rec)
{
    qtsp_status rc = qtsp_certdb_get(txn, serial, slen, rec);
    if (rc == QTSP_ERR_NOT_FOUND)
        return not_found(serial, slen);
    TRY(rc);
    if (rec->subject_id[0] == '\0') {
        qtsp_cert_record_cleanup(rec);
        return not_found(serial, slen);
    }
    rc = qtsp_certdb_get_status(txn, serial, slen, st);
    if (rc != QTSP_OK)
        qtsp_cert_record_cleanup(rec);
    return rc;
}

static qtsp_status check_text(const char *field, const char *s)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "%s: required", field);
    ENSURE(strlen(s) <= MAX_VERIFICATION, QTSP_ERR_INVALID, "%s: at most %d characters", field,
           MAX_VERIFICATION);
    /* it goes into the audit record: reject invalid UTF-8 here, by name,
     * rather than fail later as "out of memory" (json_string gives NULL) */
    json_t *j = NULL;
    TRY(qtsp_json_new_string(field, s, &j));
    json_decref(j);
    return QTSP_OK;
}

/* ---- hold ---- */

typedef struct hold_one {
    const unsigned char *serial;
    size_t slen;
} hold_one;

typedef struct hold_ctx {
    const qtsp_actor *who;
    const char *verification;
    const char *channel; /* "serial" or "hotline" */
    hold_one *items;
    size_t n;
    time_t now, until;
    int skip_invalid; /* hotline: hold what can be held, skip the rest */
    size_t held;
    int *held_flags;
    char (*subject_ids)[40]; /* per item, for the webhook */
} hold_ctx;

static qtsp_status hold_txn(qtsp_txn *txn, void *vctx)
{
    hold_ctx *c = vctx;
    c->held = 0;
    for (size_t i = 0; i < c->n; i++) {
        c->held_flags[i] = 0;
        qtsp_cert_status st, eff;
        qtsp_cert_record rec;
        TRY(load_subscriber(txn, c->items[i].serial, c->items[i].slen, &st, &rec));
        snprintf(c->subject_ids[i], sizeof c->subject_ids[i], "%s", rec.subject_id);
        qtsp_cert_record_cleanup(&rec);
        qtsp_cert_status_effective(&st, c->now, &eff);
        int holdable = eff.state == QTSP_CERT_VALID && eff.not_after > c->now;
        if (!holdable && c->skip_invalid)
            continue;
        ENSURE(eff.state == QTSP_CERT_VALID, QTSP_ERR_STATE,
               eff.state == QTSP_CERT_ON_HOLD ? "the certificate is already on hold"
                                              : "the certificate is revoked (terminated)");
        ENSURE(eff.not_after > c->now, QTSP_ERR_STATE, "the certificate has expired");
        qtsp_cert_status ns = st;
        ns.state = QTSP_CERT_ON_HOLD;
        ns.reason = QTSP_REASON_CERTIFICATE_HOLD;
        ns.revoked_at = c->now;
        ns.hold_until = c->until;
        ns.invalidity_date = 0;
        ns.changed_at = c->now;
        ns.released = 0;
        TRY(qtsp_certdb_set_status(txn, c->items[i].serial, c->items[i].slen, &ns));
        char hex[41], until[32];
        qtsp_serial_to_hex(c->items[i].serial, c->items[i].slen, hex);
        qtsp_format_rfc3339(c->until, until, sizeof until);
        TRY(audit_json(txn, c->who->name, "cert.hold",
                       json_pack("{s:s,s:s,s:s,s:s}", "serial", hex, "hold_until", until,
                                 "caller_verification", c->verification, "channel", c->channel)));
        c->held_flags[i] = 1;
        c->held++;
    }
    return QTSP_OK;
}

static void notify_holds(qtsp_ra *ra, const hold_ctx *c)
{
    char until[32];
    qtsp_format_rfc3339(c->until, until, sizeof until);
    for (size_t i = 0; i < c->n; i++) {
        if (!c->held_flags[i])
            continue;
        char hex[41];
        qtsp_serial_to_hex(c->items[i].serial, c->items[i].slen, hex);
        ra_notify(ra, QTSP_NOTIFY_HOLD,
                  json_pack("{s:s,s:s,s:s,s:s}", "serial", hex, "subject_id", c->subject_ids[i],
                            "hold_until", until, "channel", c->channel));
    }
}

qtsp_status qtsp_ra_hold(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                         size_t slen, const char *caller_verification, time_t *hold_until)
{
    TRY(ra_require_role(who, QTSP_ROLE_HOTLINE, "hold"));
    TRY(check_text("caller_verification", caller_verification));
    hold_one item = {serial, slen};
    int flag = 0;
    char sid[1][40] = {""};
    time_t now = qtsp_now();
    hold_ctx c = {
        who, caller_verification, "serial", &item, 1, now, now + ra->max_hold_s, 0, 0, &flag, sid};
    TRY(qtsp_store_write(ra->d.store, hold_txn, &c));
    notify_holds(ra, &c);
    *hold_until = c.until;
    return QTSP_OK;
}

/* ---- hotline hook ---- */

/* Every serial of the person, however many (defect 15.2: an emergency hold
 * never fails closed); the hold itself skips revoked and expired ones. */
typedef struct collect_one {
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t len;
} collect_one;

typedef struct collect_ctx {
    collect_one *v;
    size_t n, cap;
    size_t limit; /* 0: none; else QTSP_ERR_TOO_BIG past it (a sweep batch) */
} collect_ctx;

static qtsp_status collect(void *vctx, const unsigned char *serial, size_t slen)
{
    collect_ctx *c = vctx;
    ENSURE(slen <= QTSP_SERIAL_MAX, QTSP_ERR_STORE_CORRUPT, "serial too long in the subject index");
    ENSURE(c->limit == 0 || c->n < c->limit, QTSP_ERR_TOO_BIG, "more than a batch");
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        collect_one *v = reallocarray(c->v, cap, sizeof *v);
        ENSURE(v != NULL, QTSP_ERR_NOMEM, "out of memory");
        c->v = v;
        c->cap = cap;
    }
    memcpy(c->v[c->n].serial, serial, slen);
    c->v[c->n++].len = slen;
    return QTSP_OK;
}

qtsp_status qtsp_ra_hotline_hold(qtsp_ra *ra, const qtsp_actor *who, const char *national_id,
                                 const char *phone, const char *caller_verification, json_t **held,
                                 time_t *hold_until)
{
    TRY(ra_require_role(who, QTSP_ROLE_HOTLINE, "hold"));
    TRY(check_text("national_id", national_id));
    TRY(check_text("phone", phone));
    TRY(check_text("caller_verification", caller_verification));
    ENSURE(strlen(national_id) <= 32, QTSP_ERR_INVALID, "national_id: too long");
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_status rc = QTSP_OK;
    collect_ctx cc_ = {0}, *cc = &cc_;
    hold_one *items = NULL;
    int *flags = NULL;
    char(*sids)[40] = NULL;
    json_t *arr = NULL;
    /* the caller gives no country: try every code (the index key is CC:id) */
    int matched = 0;
    for (const char *p = qtsp_country_codes(); p[0] && p[1] && !matched; p += p[2] ? 3 : 2) {
        char key[48], sid[48];
        snprintf(key, sizeof key, "%.2s:%s", p, national_id);
        qtsp_buf b;
        qtsp_buf_init(&b, 64);
        qtsp_status r = qtsp_txn_get(txn, QTSP_T_SUBJECT_INDEX, key, strlen(key), &b);
        snprintf(sid, sizeof sid, "%s", qtsp_buf_str(&b));
        qtsp_buf_cleanup(&b);
        if (r == QTSP_ERR_NOT_FOUND) {
            qtsp_err_clear();
            continue;
        }
        TRY_OUT(r);
        json_t *subj = NULL;
        TRY_OUT(ra_get_json(txn, QTSP_T_SUBJECTS, sid, &subj));
        const char *reg = json_string_value(json_object_get(subj, "phone"));
        int same =
            reg && strlen(reg) == strlen(phone) && CRYPTO_memcmp(reg, phone, strlen(phone)) == 0;
        json_decref(subj);
        if (!same)
            continue;
        matched = 1;
        TRY_OUT(qtsp_certdb_subject_serials(txn, sid, collect, cc));
    }
    qtsp_txn_abort(txn);
    txn = NULL;
    /* one answer for "no such person" and "wrong phone": no enumeration */
    ENSURE_OUT(matched, QTSP_ERR_NOT_FOUND, "no subject with that national id and phone number");
    items = calloc(cc->n + 1, sizeof *items);
    flags = calloc(cc->n + 1, sizeof *flags);
    sids = calloc(cc->n + 1, sizeof *sids);
    ENSURE_OUT(items && flags && sids, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cc->n; i++) {
        items[i].serial = cc->v[i].serial;
        items[i].slen = cc->v[i].len;
    }
    time_t now = qtsp_now();
    hold_ctx c = {who, caller_verification,  "hotline", items, cc->n,
                  now, now + ra->max_hold_s, 1,         0,     flags,
                  sids};
    TRY_OUT(qtsp_store_write(ra->d.store, hold_txn, &c));
    notify_holds(ra, &c);
    ENSURE_OUT(c.held > 0, QTSP_ERR_STATE, "the subject has no valid certificate to hold");
    arr = json_array();
    ENSURE_OUT(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cc->n; i++) {
        if (!flags[i])
            continue;
        char hex[41];
        qtsp_serial_to_hex(items[i].serial, items[i].slen, hex);
        json_array_append_new(arr, json_string(hex));
    }
    *held = arr;
    arr = NULL;
    *hold_until = c.until;
out:
    qtsp_txn_abort(txn);
    json_decref(arr);
    free(cc->v);
    free(items);
    free(flags);
    free(sids);
    return rc;
}

/* A termination's key destruction not yet recorded (defect 15.4): meta
 * "key.destroy.pending/<serial hex>" -> key label, written with the
 * revocation, deleted with the record of the destruction. */
#define PENDING_PREFIX "key.destroy.pending/"

/* ---- release ---- */

typedef struct change_ctx {
    const qtsp_actor *who;
    const unsigned char *serial;
    size_t slen;
    time_t now;
    int reason;
    const char *identity_check;
    time_t invalidity;
    char key_label[64];
    const char *key_outcome;
    int wrapped;         /* the credential holds a wrapped key (ca/subkey.h) */
    char subject_id[40]; /* for the webhook */
    char pending_key[sizeof PENDING_PREFIX + 2 * QTSP_SERIAL_MAX];
    size_t pending_klen;
} change_ctx;

/* The stored and the effective status of c's certificate (subscriber
 * certificates only), noting its subject for the webhook. */
static qtsp_status load_change(qtsp_txn *txn, change_ctx *c, qtsp_cert_status *st,
                               qtsp_cert_status *eff)
{
    qtsp_cert_record rec;
    TRY(load_subscriber(txn, c->serial, c->slen, st, &rec));
    snprintf(c->subject_id, sizeof c->subject_id, "%s", rec.subject_id);
    qtsp_cert_record_cleanup(&rec);
    qtsp_cert_status_effective(st, c->now, eff);
    return QTSP_OK;
}

static qtsp_status release_txn(qtsp_txn *txn, void *vctx)
{
    change_ctx *c = vctx;
    qtsp_cert_status st, eff;
    TRY(load_change(txn, c, &st, &eff));
    ENSURE(eff.state == QTSP_CERT_ON_HOLD, QTSP_ERR_STATE,
           eff.state == QTSP_CERT_REVOKED ? "the certificate is revoked (terminated) for good"
                                          : "the certificate is not on hold");
    qtsp_cert_status ns = st;
    ns.state = QTSP_CERT_VALID;
    ns.reason = 0;
    ns.hold_until = 0;
    ns.changed_at = c->now;
    ns.released = 1;
    TRY(qtsp_certdb_set_status(txn, c->serial, c->slen, &ns));
    char hex[41];
    qtsp_serial_to_hex(c->serial, c->slen, hex);
    return audit_json(txn, c->who->name, "cert.release", json_pack("{s:s}", "serial", hex));
}

qtsp_status qtsp_ra_release(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                            size_t slen)
{
    TRY(ra_require_role(who, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "release"));
    change_ctx c;
    memset(&c, 0, sizeof c);
    c.who = who;
    c.serial = serial;
    c.slen = slen;
    c.now = qtsp_now();
    TRY(qtsp_store_write(ra->d.store, release_txn, &c));
    char hex[41];
    qtsp_serial_to_hex(serial, slen, hex);
    ra_notify(ra, QTSP_NOTIFY_RELEASE,
              json_pack("{s:s,s:s}", "serial", hex, "subject_id", c.subject_id));
    return QTSP_OK;
}

/* ---- termination ---- */

/* Disables the signing credential and removes its wrapped key: the blob is
 * the key's only copy outside backups (docs/security.md "Termination").
 * *removed: 1 when a wrapped key was removed. */
static qtsp_status disable_credential(qtsp_txn *txn, const char *serial_hex, time_t now,
                                      int *removed)
{
    json_t *cred = NULL;
    *removed = 0;
    qtsp_status rc = ra_get_json(txn, QTSP_T_CREDENTIALS, serial_hex, &cred);
    if (rc == QTSP_ERR_NOT_FOUND) {
        qtsp_err_clear();
        return QTSP_OK;
    }
    TRY(rc);
    char when[32];
    qtsp_format_rfc3339(now, when, sizeof when);
    json_object_set_new(cred, "enabled", json_false());
    json_object_set_new(cred, "disabled_at", json_string(when));
    json_object_set_new(cred, "disabled_reason", json_string("terminated"));
    if (json_object_get(cred, "key") != NULL) {
        json_object_del(cred, "key");
        json_object_set_new(cred, "key_destroyed_at", json_string(when));
        *removed = 1;
    }
    rc = ra_put_json(txn, QTSP_T_CREDENTIALS, serial_hex, cred, 0);
    json_decref(cred);
    return rc;
}

static qtsp_status terminate_txn(qtsp_txn *txn, void *vctx)
{
    change_ctx *c = vctx;
    qtsp_cert_status st, eff;
    TRY(load_change(txn, c, &st, &eff));
    ENSURE(eff.state != QTSP_CERT_REVOKED, QTSP_ERR_STATE, "the certificate is already terminated");
    qtsp_cert_status ns = st;
    ns.state = QTSP_CERT_REVOKED;
    ns.reason = (uint8_t)c->reason;
    ns.revoked_at = c->now;
    ns.hold_until = 0;
    ns.invalidity_date = c->invalidity;
    ns.changed_at = c->now;
    ns.released = 0;
    TRY(qtsp_certdb_set_status(txn, c->serial, c->slen, &ns));
    char hex[41];
    qtsp_serial_to_hex(c->serial, c->slen, hex);
    int removed = 0;
    TRY(disable_credential(txn, hex, c->now, &removed));
    /* a wrapped key goes with this transaction: destroyed exactly when the
     * revocation commits */
    ENSURE(removed || !c->wrapped, QTSP_ERR_STATE,
           "the credential of %s changed during the termination; try again", hex);
    /* a token key is destroyed after the commit: until that is recorded it
     * is "destruction pending" (defect 15.4) */
    if (!c->wrapped && c->key_label[0])
        TRY(qtsp_txn_put(txn, QTSP_T_META, c->pending_key, c->pending_klen, c->key_label,
                         strlen(c->key_label), 0));
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "serial", hex, "reason",
                          qtsp_reason_name(c->reason), "identity_check", c->identity_check,
                          "key_label", c->key_label, "key", c->key_outcome, "key_storage",
                          c->wrapped ? "wrapped" : "token", "previous_status",
                          eff.state == QTSP_CERT_ON_HOLD ? "on-hold" : "valid");
    if (d && c->invalidity) {
        char t[32];
        qtsp_format_rfc3339(c->invalidity, t, sizeof t);
        json_object_set_new(d, "invalidity_date", json_string(t));
    }
    return audit_json(txn, c->who->name, "cert.terminate", d);
}

typedef struct destroyed_ctx {
    const char *actor, *hex, *label, *outcome;
} destroyed_ctx;

static qtsp_status destroyed_txn(qtsp_txn *txn, void *vctx)
{
    destroyed_ctx *c = vctx;
    char key[sizeof PENDING_PREFIX + 2 * QTSP_SERIAL_MAX];
    int kl = snprintf(key, sizeof key, "%s%s", PENDING_PREFIX, c->hex);
    qtsp_status rc = qtsp_txn_del(txn, QTSP_T_META, key, (size_t)kl);
    if (rc == QTSP_ERR_NOT_FOUND) { /* another worker recorded it first */
        qtsp_err_clear();
        return QTSP_OK;
    }
    TRY(rc);
    return audit_json(
        txn, c->actor, "key.destroy",
        json_pack("{s:s,s:s,s:s}", "serial", c->hex, "key_label", c->label, "key", c->outcome));
}

/* Destroys a terminated certificate's key (one call: what destroying means
 * is the key store's business) and records it: audit "key.destroy" and the
 * pending mark gone, in one transaction. An absent key counts as destroyed
 * (a retry after the token deleted it). On failure the mark stays. */
static qtsp_status finish_destruction(qtsp_ra *ra, const char *actor, const char *hex,
                                      const char *label)
{
    qtsp_status rc = qtsp_hsm_destroy(ra->d.hsm, label);
    destroyed_ctx c = {actor, hex, label, "destroyed"};
    if (rc == QTSP_ERR_HSM_NO_KEY) {
        qtsp_err_clear();
        c.outcome = "absent";
    } else if (rc != QTSP_OK) {
        return rc;
    }
    return qtsp_store_write(ra->d.store, destroyed_txn, &c);
}

/* The reasons an office may give (interface contract; RFC 5280 5.3.1). */
static int terminate_reason_ok(int r)
{
    return r == QTSP_REASON_KEY_COMPROMISE || r == QTSP_REASON_AFFILIATION_CHANGED ||
           r == QTSP_REASON_SUPERSEDED || r == QTSP_REASON_CESSATION ||
           r == QTSP_REASON_PRIVILEGE_WITHDRAWN;
}

qtsp_status qtsp_ra_terminate(qtsp_ra *ra, const qtsp_actor *who, const unsigned char *serial,
                              size_t slen, int reason, const char *identity_check,
                              time_t invalidity_date)
{
    TRY(ra_require_role(who, QTSP_ROLE_OFFICE, "termination"));
    ENSURE(terminate_reason_ok(reason), QTSP_ERR_INVALID,
           "reason: one of keyCompromise, affiliationChanged, superseded, cessationOfOperation, "
           "privilegeWithdrawn");
    TRY(check_text("identity_check", identity_check));
    time_t now = qtsp_now();
    ENSURE(invalidity_date <= now, QTSP_ERR_INVALID, "invalidity_date: must not be in the future");
    change_ctx c;
    memset(&c, 0, sizeof c);
    c.who = who;
    c.serial = serial;
    c.slen = slen;
    c.now = now;
    c.reason = reason;
    c.identity_check = identity_check;
    c.invalidity = invalidity_date;

    /* 1. Is it ours and not yet terminated? Which key? */
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ra->d.store, 0, &txn));
    qtsp_cert_status st, eff;
    qtsp_cert_record rec;
    json_t *cred = NULL;
    char hex[41];
    qtsp_serial_to_hex(serial, slen, hex);
    qtsp_status rc = load_subscriber(txn, serial, slen, &st, &rec);
    if (rc == QTSP_OK) {
        qtsp_status crc = ra_get_json(txn, QTSP_T_CREDENTIALS, hex, &cred);
        if (crc == QTSP_ERR_NOT_FOUND)
            qtsp_err_clear();
        else if (crc != QTSP_OK) {
            qtsp_cert_record_cleanup(&rec);
            rc = crc;
        }
    }
    qtsp_txn_abort(txn);
    TRY(rc);
    c.wrapped = cred != NULL && json_object_get(cred, "key") != NULL;
    json_decref(cred);
    snprintf(c.key_label, sizeof c.key_label, "%s", rec.key_label);
    qtsp_cert_record_cleanup(&rec);
    qtsp_cert_status_effective(&st, now, &eff);
    ENSURE(eff.state != QTSP_CERT_REVOKED, QTSP_ERR_STATE, "the certificate is already terminated");
    /* RFC 5280 5.3.2: the key cannot have been compromised before it was certified */
    ENSURE(invalidity_date == 0 || invalidity_date >= st.not_before, QTSP_ERR_INVALID,
           "invalidity_date: must not be before the certificate's notBefore");

    /* 2. The revocation (final), the disabled credential and the audit
     * record, in one transaction: from here on OCSP and the CRL say revoked.
     * A wrapped key is removed in it too. A token key is marked "destruction
     * pending" in it and destroyed after (step 3). If this fails nothing has
     * changed (the key is still there, the certificate valid) and the office
     * can try again: no failure leaves "key gone, status good" (defect 15.4). */
    c.pending_klen =
        (size_t)snprintf(c.pending_key, sizeof c.pending_key, "%s%s", PENDING_PREFIX, hex);
    int token_key = !c.wrapped && c.key_label[0];
    c.key_outcome = c.wrapped ? "destroyed" : token_key ? "destruction pending" : "absent";
    rc = qtsp_store_write(ra->d.store, terminate_txn, &c);
    if (rc != QTSP_OK)
        return rc;

    /* 3. Destroy a token key and record it. If that fails (token, store), the
     * destruction stays pending and the sweeper finishes it, also after a
     * restart (qtsp_ra_finish_destructions): the termination stands. */
    if (token_key && finish_destruction(ra, who->name, hex, c.key_label) != QTSP_OK) {
        LOG_ERROR("termination of %s: the key %s is still to be destroyed (retried by the "
                  "sweeper): %s",
                  hex, c.key_label, qtsp_err_message());
        qtsp_err_clear();
    }
    json_t *nd = json_pack("{s:s,s:s,s:s}", "serial", hex, "subject_id", c.subject_id, "reason",
                           qtsp_reason_name(reason));
    if (nd && invalidity_date) {
        char t[32];
        qtsp_format_rfc3339(invalidity_date, t, sizeof t);
        json_object_set_new(nd, "invalidity_date", json_string(t));
    }
    ra_notify(ra, QTSP_NOTIFY_TERMINATE, nd);
    return QTSP_OK;
}

typedef struct pending_list {
    char hex[16][2 * QTSP_SERIAL_MAX + 1];
    char label[16][64];
    size_t n;
} pending_list;

static qtsp_status pending_each(void *ctx, const void *key, size_t klen, const void *val,
                                size_t vlen, int *stop)
{
    pending_list *l = ctx;
    size_t pl = sizeof PENDING_PREFIX - 1;
    if (klen < pl || memcmp(key, PENDING_PREFIX, pl) != 0 || l->n == 16) {
        *stop = 1;
        return QTSP_OK;
    }
    if (klen - pl >= sizeof l->hex[0] || vlen == 0 || vlen >= sizeof l->label[0])
        return QTSP_OK; /* not ours to read: left alone */
    memcpy(l->hex[l->n], (const char *)key + pl, klen - pl);
    l->hex[l->n][klen - pl] = '\0';
    memcpy(l->label[l->n], val, vlen);
    l->label[l->n][vlen] = '\0';
    l->n++;
    return QTSP_OK;
}

qtsp_status qtsp_ra_finish_destructions(qtsp_ra *ra, size_t *n)
{
    *n = 0;
    for (;;) {
        pending_list l = {.n = 0};
        qtsp_txn *txn = NULL;
        TRY(qtsp_store_begin(ra->d.store, 0, &txn));
        qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_META, PENDING_PREFIX, sizeof PENDING_PREFIX - 1,
                                       pending_each, &l);
        qtsp_txn_abort(txn);
        TRY(rc);
        for (size_t i = 0; i < l.n; i++) {
            TRY(finish_destruction(ra, "system:recovery", l.hex[i], l.label[i]));
            ++*n;
        }
        if (l.n < 16)
            return QTSP_OK;
    }
}

/* ---- lapse sweeper ---- */

#define SWEEP_BATCH 64 /* lapses per write transaction */

typedef struct sweep_ctx {
    time_t now;
    collect_ctx *due;
    size_t n;
    int lapsed[SWEEP_BATCH]; /* per due item, for the webhook */
    time_t lapsed_at[SWEEP_BATCH];
} sweep_ctx;

static qtsp_status sweep_txn(qtsp_txn *txn, void *vctx)
{
    sweep_ctx *c = vctx;
    c->due->n = 0;
    c->n = 0;
    qtsp_status rc = qtsp_certdb_due_holds(txn, c->now, collect, c->due);
    if (rc == QTSP_ERR_TOO_BIG) /* more than a batch: the next sweep takes the rest */
        qtsp_err_clear();
    else
        TRY(rc);
    for (size_t i = 0; i < c->due->n; i++) {
        c->lapsed[i] = 0;
        qtsp_cert_status st;
        TRY(qtsp_certdb_get_status(txn, c->due->v[i].serial, c->due->v[i].len, &st));
        if (st.state != QTSP_CERT_ON_HOLD || st.hold_until > c->now)
            continue;
        qtsp_cert_status ns = st;
        ns.state = QTSP_CERT_VALID;
        ns.reason = 0;
        ns.changed_at = st.hold_until; /* the lapse happened at hold_until, exactly */
        ns.hold_until = 0;
        ns.released = 1;
        TRY(qtsp_certdb_set_status(txn, c->due->v[i].serial, c->due->v[i].len, &ns));
        char hex[41], at[32];
        qtsp_serial_to_hex(c->due->v[i].serial, c->due->v[i].len, hex);
        qtsp_format_rfc3339((time_t)st.hold_until, at, sizeof at);
        TRY(audit_json(txn, "system:hold-sweeper", "cert.hold.lapse",
                       json_pack("{s:s,s:s}", "serial", hex, "lapsed_at", at)));
        c->lapsed[i] = 1;
        c->lapsed_at[i] = (time_t)st.hold_until;
        c->n++;
    }
    return QTSP_OK;
}

qtsp_status qtsp_ra_sweep_lapses(qtsp_ra *ra, time_t now, size_t *n)
{
    collect_ctx due_ = {.limit = SWEEP_BATCH}, *due = &due_;
    sweep_ctx c = {now, due, 0, {0}, {0}};
    qtsp_status rc = qtsp_store_write(ra->d.store, sweep_txn, &c);
    for (size_t i = 0; rc == QTSP_OK && i < due->n; i++) {
        if (!c.lapsed[i])
            continue;
        char hex[41], at[32];
        qtsp_serial_to_hex(due->v[i].serial, due->v[i].len, hex);
        qtsp_format_rfc3339(c.lapsed_at[i], at, sizeof at);
        ra_notify(ra, QTSP_NOTIFY_HOLD_LAPSE,
                  json_pack("{s:s,s:s}", "serial", hex, "lapsed_at", at));
    }
    free(due->v);
    TRY(rc);
    *n = c.n;
    return QTSP_OK;
}

int64_t qtsp_ra_sweep_interval_s(const qtsp_ra *ra)
{
    return ra->sweep_interval_s;
}
