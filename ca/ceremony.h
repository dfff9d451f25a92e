/* The key ceremony (EN 319 411-1 6.5.1): the root CA, issuing CA, OCSP
 * responder, TSA unit and validation service keys made in the token and
 * certified with their profiles (root self-signed; issuing CA, TSA unit and
 * validation service by the root; OCSP responder by the issuing CA), the
 * ceremony report and its record in the store and the audit log. The home
 * folder, the token's creation and the files written are the CLI's
 * (cmd/init.c). Not thread-safe. */
#ifndef QTSP_CA_CEREMONY_H
#define QTSP_CA_CEREMONY_H

#include "ca/hsm.h"
#include "ca/issue.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

enum {
    QTSP_CEREMONY_ROOT,
    QTSP_CEREMONY_ISSUING,
    QTSP_CEREMONY_OCSP,
    QTSP_CEREMONY_TSA,
    QTSP_CEREMONY_VALIDATION, /* signs validation reports (docs/validation.md) */
    QTSP_CEREMONY_KEYS
};

typedef struct qtsp_ceremony_key {
    const char *role;      /* "root-ca", "issuing-ca", "ocsp", "tsa", "validation" */
    const char *profile;   /* policies/<profile> */
    const char *cert_file; /* public/<cert_file> */
    char label[64];        /* token label */
    qtsp_issued_key made;  /* after qtsp_ceremony_make_keys */
} qtsp_ceremony_key;

typedef struct qtsp_ceremony {
    qtsp_ceremony_key keys[QTSP_CEREMONY_KEYS]; /* in the order above */
} qtsp_ceremony;

/* Fills c with the five roles and their token labels. */
void qtsp_ceremony_init(qtsp_ceremony *c, const char *root_label, const char *issuing_label,
                        const char *ocsp_label, const char *tsa_label,
                        const char *validation_label);
/* Frees the certificates and keys made. */
void qtsp_ceremony_cleanup(qtsp_ceremony *c);

/* Generates the five keys in hsm and certifies them with the profiles in
 * policies_dir (qtsp_issue_token_key); base_url for AIA / CRL DP. Keys made
 * before a failure stay in the token (the caller removes the token or
 * reports them). Errors of the profiles, the token and signing. */
qtsp_status qtsp_ceremony_make_keys(qtsp_ceremony *c, qtsp_hsm *hsm, const char *policies_dir,
                                    const char *base_url) QTSP_MUST_USE;

/* What the report says besides the keys. */
typedef struct qtsp_ceremony_facts {
    const char *actor; /* who ran it */
    const char *token_label;
    const char *token_where; /* "embedded SoftHSM2" or the module path */
    const char *home;
    const char *base_url;
    int clock_synced;                             /* adjtimex said synchronised */
    char model[64], serial[64], manufacturer[64]; /* qtsp_hsm_token_info */
} qtsp_ceremony_facts;

/* The human-readable report into report (appended) and the audit details
 * (a JSON object, caller json_decrefs) of a ceremony whose keys are made. */
qtsp_status qtsp_ceremony_report(const qtsp_ceremony *c, const qtsp_ceremony_facts *f,
                                 qtsp_buf *report, json_t **details) QTSP_MUST_USE;

/* Records the five certificates and the audit event ceremony.keys (with
 * details) by actor in one transaction (qtsp_issue_record). */
qtsp_status qtsp_ceremony_record(const qtsp_ceremony *c, qtsp_store *store, const char *actor,
                                 const json_t *details) QTSP_MUST_USE;

#endif
