/* Internals shared by the profile engine's files: ca/profile.c (YAML
 * loading and validation), ca/profile_ext.c (the X.509 extension builders)
 * and ca/profile_issue.c (subject, validity, certificate assembly and
 * signing). */
#ifndef QTSP_CA_PROFILE_INT_H
#define QTSP_CA_PROFILE_INT_H

#include <openssl/x509.h>
#include <stddef.h>

#include "ca/profile.h"
#include "core/err.h"
#include "core/yaml.h"

#define MAX_SUBJECT 8
#define MAX_LIST 8
#define MAX_URLS 4
#define MAX_URL_LEN 512
#define MAX_KEY_TYPES 3

/* ETSI EN 319 412-5 / EN 319 412-1 / RFC 3739 object identifiers. */
#define OID_QC_STATEMENTS "1.3.6.1.5.5.7.1.3"
#define OID_QC_COMPLIANCE "0.4.0.1862.1.1"
#define OID_QC_SSCD "0.4.0.1862.1.4"
#define OID_QC_PDS "0.4.0.1862.1.5"
#define OID_QC_TYPE "0.4.0.1862.1.6"
#define OID_QC_SYNTAX_V2 "1.3.6.1.5.5.7.11.2"
#define OID_OCSP_NOCHECK "1.3.6.1.5.5.7.48.1.5"
#define OID_ETSI_CP_PREFIX "0.4.0.194112."

typedef enum attr_check { CHECK_NONE = 0, CHECK_PNO = 1, CHECK_NATURAL_ID = 2 } attr_check;

/* One subject attribute: what it is and where its value comes from. */
typedef struct subj_attr {
    const struct attr_def *def;
    const char *value; /* fixed value from the file, or NULL */
    int required;      /* from request: must be present */
    attr_check check;
    int cn_from_names; /* CN: "givenName surname" when absent */
} subj_attr;

typedef struct policy {
    const char *oid;
    const char *cps; /* NULL or URL template */
} policy;

struct qtsp_profile {
    qtsp_ydoc *doc; /* owns every borrowed string below */
    const char *name;
    const char *key_type;
    const char *allowed[MAX_KEY_TYPES];
    size_t nallowed;
    int validity_years;
    int validity_days;
    int self_signed;
    subj_attr subject[MAX_SUBJECT];
    size_t nsubject;
    int bc_critical, bc_ca;
    long bc_path_len; /* -1: absent */
    int ku_critical;
    unsigned ku_bits; /* KU_* from x509v3.h */
    int eku_present, eku_critical;
    const char *eku[MAX_LIST]; /* dotted OIDs */
    size_t neku;
    int ski, aki;
    policy policies[MAX_LIST];
    size_t npolicies;
    const char *crl_dp[MAX_URLS];
    size_t ncrl_dp;
    const char *aia_ocsp[MAX_URLS];
    size_t naia_ocsp;
    const char *aia_ca[MAX_URLS];
    size_t naia_ca;
    int ocsp_no_check;
    int qc_present, qc_compliance, qc_sscd;
    const char *qc_types[3];
    size_t nqc_types;
    const char *qc_pds_url[MAX_URLS];
    const char *qc_pds_lang[MAX_URLS];
    size_t nqc_pds;
    const char *qc_semantics; /* NULL: no pkixQCSyntax-v2 statement */
};

typedef struct attr_def {
    const char *name;
    int nid;
    int printable;  /* PrintableString (else UTF8String) */
    size_t max;     /* upper bound in characters (RFC 5280 appendix A) */
    size_t req_off; /* offset of the field in qtsp_subject_attrs */
} attr_def;

/* The subject attributes a profile may name (RFC 5280 appendix A bounds). */
#define NATTRS 7
extern const attr_def profile_attrs[NATTRS];

/* Extension builders (profile_ext.c): each adds its extension to x as the
 * profile p says; base is the request's base URL for "{base}" templates.
 * QTSP_ERR_INVALID (bad URL), QTSP_ERR_NOMEM, QTSP_ERR_CRYPTO. */
qtsp_status profile_add_ext_der(X509 *x, const char *oid, int crit, const unsigned char *der,
                                int len) QTSP_MUST_USE;
qtsp_status profile_add_key_usage(const qtsp_profile *p, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_basic_constraints(const qtsp_profile *p, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_eku(const qtsp_profile *p, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_ski(X509 *x, ASN1_OCTET_STRING **ski_out) QTSP_MUST_USE;
qtsp_status profile_add_aki(const ASN1_OCTET_STRING *issuer_ski, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_policies(const qtsp_profile *p, const char *base, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_crl_dp(const qtsp_profile *p, const char *base, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_aia(const qtsp_profile *p, const char *base, X509 *x) QTSP_MUST_USE;
qtsp_status profile_add_qc_statements(const qtsp_profile *p, const char *base,
                                      X509 *x) QTSP_MUST_USE;

#endif
