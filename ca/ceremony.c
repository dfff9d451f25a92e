/* The key ceremony (see ca/ceremony.h). */
#include "ca/ceremony.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "ca/certdb.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"

void qtsp_ceremony_init(qtsp_ceremony *c, const char *root_label, const char *issuing_label,
                        const char *ocsp_label, const char *tsa_label, const char *validation_label)
{
    static const struct {
        const char *role, *profile, *cert_file;
    } roles[QTSP_CEREMONY_KEYS] = {
        {"root-ca", "root-ca.yaml", "root-ca.crt"},
        {"issuing-ca", "issuing-ca.yaml", "issuing-ca.crt"},
        {"ocsp", "ocsp-responder.yaml", "ocsp.crt"},
        {"tsa", "tsa-unit.yaml", "tsa.crt"},
        {"validation", "validation-service.yaml", "validation.crt"},
    };
    const char *labels[QTSP_CEREMONY_KEYS] = {root_label, issuing_label, ocsp_label, tsa_label,
                                              validation_label};
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++) {
        c->keys[i].role = roles[i].role;
        c->keys[i].profile = roles[i].profile;
        c->keys[i].cert_file = roles[i].cert_file;
        snprintf(c->keys[i].label, sizeof c->keys[i].label, "%s", labels[i]);
    }
}

void qtsp_ceremony_cleanup(qtsp_ceremony *c)
{
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++)
        qtsp_issued_key_cleanup(&c->keys[i].made);
}

qtsp_status qtsp_ceremony_make_keys(qtsp_ceremony *c, qtsp_hsm *hsm, const char *policies_dir,
                                    const char *base_url)
{
    /* root, then issuing (by root), OCSP (by issuing), TSA and validation
     * service (by root) */
    static const int issuer_of[QTSP_CEREMONY_KEYS] = {-1, QTSP_CEREMONY_ROOT, QTSP_CEREMONY_ISSUING,
                                                      QTSP_CEREMONY_ROOT, QTSP_CEREMONY_ROOT};
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++) {
        qtsp_ceremony_key *k = &c->keys[i];
        char path[QTSP_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", policies_dir, k->profile);
        qtsp_profile *prof = NULL;
        qtsp_key *issuer_key = NULL;
        X509 *issuer = NULL;
        TRY(qtsp_profile_load(path, &prof));
        qtsp_status rc = QTSP_OK;
        if (issuer_of[i] >= 0) {
            const qtsp_ceremony_key *ik = &c->keys[issuer_of[i]];
            issuer = ik->made.cert;
            rc = qtsp_key_from_token(hsm, ik->label, &issuer_key);
        }
        if (rc == QTSP_OK)
            rc = qtsp_issue_token_key(hsm, prof, k->label, issuer, issuer_key, base_url, &k->made);
        char kt[32];
        snprintf(kt, sizeof kt, "%s", qtsp_profile_key_type(prof));
        qtsp_key_free(issuer_key);
        qtsp_profile_free(prof);
        TRY(rc);
        LOG_INFO("ceremony: generated %s key '%s' (%s) sha256:%s", k->role, k->label, kt,
                 k->made.fingerprint);
    }
    return QTSP_OK;
}

qtsp_status qtsp_ceremony_report(const qtsp_ceremony *c, const qtsp_ceremony_facts *f,
                                 qtsp_buf *report, json_t **details_out)
{
    qtsp_status rc = QTSP_OK;
    char when[32];
    qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
    json_t *details = json_object();
    json_t *jkeys = json_array();
    if (!details || !jkeys) {
        json_decref(details);
        json_decref(jkeys);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    json_object_set_new(details, "date", json_string(when));
    json_object_set_new(details, "operator", json_string(f->actor));
    json_object_set_new(details, "token_model", json_string(f->model));
    json_object_set_new(details, "token_serial", json_string(f->serial));
    json_object_set_new(details, "token_manufacturer", json_string(f->manufacturer));
    json_object_set_new(details, "token_label", json_string(f->token_label));
    json_object_set_new(details, "clock_synchronised", json_boolean(f->clock_synced));
    json_object_set_new(details, "keys", jkeys);
    TRY_OUT(qtsp_buf_printf(report,
                            "qtsp key ceremony report\n"
                            "date:              %s\n"
                            "run by:            %s\n"
                            "token:             %s %s, serial %s, label %s (%s)\n"
                            "home:              %s\n"
                            "base URL:          %s\n"
                            "clock:             %s\n\nkeys (generated in the token, sensitive, "
                            "never extractable):\n",
                            when, f->actor, f->manufacturer, f->model, f->serial, f->token_label,
                            f->token_where, f->home, f->base_url,
                            f->clock_synced
                                ? "synchronised (adjtimex)"
                                : "NOT synchronised (adjtimex): TSA require_sync relaxed"));
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++) {
        const qtsp_ceremony_key *k = &c->keys[i];
        char sn[41], subj[256];
        const ASN1_INTEGER *s = X509_get0_serialNumber(k->made.cert);
        unsigned char norm[QTSP_SERIAL_MAX];
        size_t nl = 0;
        TRY_OUT(qtsp_serial_normalize(s->data, (size_t)s->length, norm, &nl));
        qtsp_serial_to_hex(norm, nl, sn);
        X509_NAME_oneline(X509_get_subject_name(k->made.cert), subj, sizeof subj);
        json_t *jk = json_object();
        ENSURE_OUT(jk != NULL, QTSP_ERR_NOMEM, "out of memory");
        json_object_set_new(jk, "role", json_string(k->role));
        json_object_set_new(jk, "label", json_string(k->label));
        json_object_set_new(jk, "spki_sha256", json_string(k->made.fingerprint));
        json_object_set_new(jk, "certificate_serial", json_string(sn));
        json_object_set_new(jk, "subject", json_string(subj));
        json_array_append_new(jkeys, jk);
        TRY_OUT(qtsp_buf_printf(report,
                                "- %-11s label %-18s SPKI SHA-256 %s\n"
                                "  certificate serial %s\n  subject %s\n",
                                k->role, k->label, k->made.fingerprint, sn, subj));
    }
    *details_out = details;
    details = NULL;
out:
    json_decref(details);
    return rc;
}

typedef struct record_ctx {
    qtsp_cert_record recs[QTSP_CEREMONY_KEYS];
    const char *actor;
    const json_t *details;
} record_ctx;

static qtsp_status record_txn(qtsp_txn *txn, void *vctx)
{
    record_ctx *c = vctx;
    return qtsp_issue_record(txn, c->recs, QTSP_CEREMONY_KEYS, c->actor, "ceremony.keys",
                             c->details);
}

qtsp_status qtsp_ceremony_record(const qtsp_ceremony *c, qtsp_store *store, const char *actor,
                                 const json_t *details)
{
    record_ctx rc_;
    memset(&rc_, 0, sizeof rc_);
    rc_.actor = actor;
    rc_.details = details;
    unsigned char *der[QTSP_CEREMONY_KEYS] = {NULL};
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++) {
        const qtsp_ceremony_key *k = &c->keys[i];
        qtsp_cert_record *rec = &rc_.recs[i];
        const ASN1_INTEGER *sn = X509_get0_serialNumber(k->made.cert);
        TRY_OUT(qtsp_serial_normalize(sn->data, (size_t)sn->length, rec->serial, &rec->serial_len));
        /* the root and what it signs are the root's; the OCSP responder the
         * issuing CA's */
        snprintf(rec->issuer, sizeof rec->issuer, "%s",
                 i == QTSP_CEREMONY_OCSP ? "issuing" : "root");
        snprintf(rec->key_label, sizeof rec->key_label, "%s", k->label);
        snprintf(rec->profile, sizeof rec->profile, "%s", k->profile);
        int dl = i2d_X509(k->made.cert, &der[i]);
        ENSURE_OUT(dl > 0, QTSP_ERR_CRYPTO, "cannot encode certificate");
        rec->der = der[i];
        rec->der_len = (size_t)dl;
    }
    rc = qtsp_store_write(store, record_txn, &rc_);
out:
    for (size_t i = 0; i < QTSP_CEREMONY_KEYS; i++)
        OPENSSL_free(der[i]);
    return rc;
}
