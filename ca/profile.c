/* Certificate profile engine: a profile is a YAML file (policies/<name>.yaml);
 * this file turns it plus a request into a signed X.509 v3 certificate.
 * docs/profiles.md is the operator's guide; this is the schema summary.
 *
 * Schema (strict: unknown keys anywhere are QTSP_ERR_CONFIG naming file:line:col)
 *
 *   name: qualified-natural-person     required, [a-z0-9-], at most 64
 *   description: "..."                 optional, free text
 *   key_type: ec-p256                  required: ec-p256 | ec-p384 | rsa-3072; the key
 *                                      the ceremony/RA generates for the subject
 *   allowed_key_types: [ec-p256, rsa-3072]
 *                                      optional, default [key_type]; the subject key
 *                                      presented at issuance must be one of these
 *   validity: 3y                       required: <n>y (calendar years, 1..50) or
 *                                      <n>d (days, 1..36500)
 *   self_signed: false                 optional (default false); true: the request
 *                                      has no issuer certificate
 *   subject:                           required, list in DN order (RDN sequence)
 *     - attr: C                        C | O | organizationIdentifier | CN |
 *                                      givenName | surname | serialNumber
 *       value: BG                      fixed value from the file, or
 *       request: required              request: required | optional (from the request)
 *       check: pno                     optional, serialNumber only: EN 319 412-1 5.1.3
 *                                      "PNO" + 2-letter country + "-" + id
 *       default: given-surname         optional, CN only: "givenName surname" when the
 *                                      request gives no CN
 *   basic_constraints: {critical: true, ca: true, path_len: 1}   required; path_len
 *                                      optional, only with ca: true
 *   key_usage: {critical: true, usages: [keyCertSign, cRLSign]}  required; names:
 *                                      digitalSignature nonRepudiation keyEncipherment
 *                                      dataEncipherment keyAgreement keyCertSign cRLSign
 *   extended_key_usage: {critical: true, purposes: [timeStamping]}  optional; names
 *                                      serverAuth clientAuth codeSigning emailProtection
 *                                      timeStamping OCSPSigning, or dotted OIDs
 *   subject_key_identifier: true       optional bool (RFC 5280 4.2.1.2 method 1)
 *   authority_key_identifier: true     optional bool (keyid = issuer's SKI)
 *   certificate_policies:              optional list, at most 8
 *     - oid: 0.4.0.194112.1.2
 *     - {oid: 1.3.6.1.4.1.65535.1.1, cps: "{base}/cps"}
 *   crl_distribution_points: ["{base}/crl/qualified.crl"]   optional, at most 4
 *   authority_info_access: {ocsp: ["{base}/ocsp"], ca_issuers: [...]}  optional
 *   ocsp_no_check: true                optional bool: id-pkix-ocsp-nocheck, value NULL
 *   qc_statements:                     optional (ETSI EN 319 412-5), never critical
 *     compliance: true                 QcCompliance 0.4.0.1862.1.1
 *     sscd: true                       QcSSCD 0.4.0.1862.1.4
 *     type: [esign]                    QcType 0.4.0.1862.1.6: esign | eseal | web
 *     pds: [{url: "https://...", lang: en}]   QcPDS 0.4.0.1862.1.5
 *     semantics_identifier: 0.4.0.194121.1.1  pkixQCSyntax-v2 1.3.6.1.5.5.7.11.2
 *
 * Deliberately absent (the schema cannot express them): policyMappings,
 * nameConstraints, policyConstraints, inhibitAnyPolicy (EN 319 412-2 forbids
 * them in end-entity certificates) and QcCClegislation (never for EU QTSPs).
 *
 * URLs: "http://", "https://" or "{base}/..."; "{base}" is replaced with
 * req->base_url at issuance. QcPDS URLs must be https after substitution.
 *
 * Load-time rules: keyCertSign iff ca: true; timeStamping must be the only,
 * critical EKU (RFC 3161 2.3); ocsp_no_check needs OCSPSigning (RFC 6960
 * 4.2.2.2.1); at most one 0.4.0.194112 policy OID (EN 319 411-2); no duplicate
 * attributes, usages, purposes or policies.
 *
 * Validity: notBefore = req->not_before or qtsp_now(); notAfter = the same
 * UTC wall-clock time n calendar years (or n days) later, computed with
 * timegm() on a struct tm, nothing subtracted. A 29 February start plus whole
 * years lands on 1 March in a non-leap year (timegm normalisation). notAfter
 * may not exceed the issuer's notAfter.
 *
 * Signature: chosen from the issuer key: ECDSA-SHA256 for P-256,
 * ECDSA-SHA384 for P-384, RSA PKCS#1 v1.5 SHA-256 for RSA, made through
 * the issuer's qtsp_key (ca/key.h: a token key in production); the result is verified with the issuer's public key before it is returned.
 *
 * Name encoding: C and serialNumber are PrintableString (X.520 / RFC 5280
 * upper bounds), all other attributes UTF8String (RFC 5280 4.1.2.6). */
#include "ca/profile.h"

#include <ctype.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/time.h"
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

typedef enum attr_check { CHECK_NONE = 0, CHECK_PNO = 1 } attr_check;

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

static const attr_def k_attrs[] = {
    {"C", NID_countryName, 1, 2, offsetof(qtsp_subject_attrs, country)},
    {"O", NID_organizationName, 0, 64, offsetof(qtsp_subject_attrs, organization)},
    {"organizationIdentifier", NID_organizationIdentifier, 0, 64,
     offsetof(qtsp_subject_attrs, org_identifier)},
    {"CN", NID_commonName, 0, 64, offsetof(qtsp_subject_attrs, common_name)},
    {"givenName", NID_givenName, 0, 64, offsetof(qtsp_subject_attrs, given_name)},
    {"surname", NID_surname, 0, 64, offsetof(qtsp_subject_attrs, surname)},
    {"serialNumber", NID_serialNumber, 1, 64, offsetof(qtsp_subject_attrs, serial_number)},
};
#define NATTRS (sizeof k_attrs / sizeof k_attrs[0])

static const struct {
    const char *name;
    unsigned bit;
} k_usages[] = {
    {"digitalSignature", KU_DIGITAL_SIGNATURE},
    {"nonRepudiation", KU_NON_REPUDIATION},
    {"keyEncipherment", KU_KEY_ENCIPHERMENT},
    {"dataEncipherment", KU_DATA_ENCIPHERMENT},
    {"keyAgreement", KU_KEY_AGREEMENT},
    {"keyCertSign", KU_KEY_CERT_SIGN},
    {"cRLSign", KU_CRL_SIGN},
};

static const struct {
    const char *name;
    const char *oid;
} k_purposes[] = {
    {"serverAuth", "1.3.6.1.5.5.7.3.1"},   {"clientAuth", "1.3.6.1.5.5.7.3.2"},
    {"codeSigning", "1.3.6.1.5.5.7.3.3"},  {"emailProtection", "1.3.6.1.5.5.7.3.4"},
    {"timeStamping", "1.3.6.1.5.5.7.3.8"}, {"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
};
#define OID_TIMESTAMPING "1.3.6.1.5.5.7.3.8"
#define OID_OCSPSIGNING "1.3.6.1.5.5.7.3.9"

/* EN 319 412-5 4.2.3 QcType values. */
static const struct {
    const char *name;
    const char *oid;
} k_qc_types[] = {
    {"esign", "0.4.0.1862.1.6.1"}, {"eseal", "0.4.0.1862.1.6.2"}, {"web", "0.4.0.1862.1.6.3"}};

static const char *const k_key_types[] = {"ec-p256", "ec-p384", "rsa-3072"};

/* ---- loading ---------------------------------------------------------- */

static int is_key_type(const char *s)
{
    for (size_t i = 0; i < sizeof k_key_types / sizeof k_key_types[0]; i++)
        if (strcmp(s, k_key_types[i]) == 0)
            return 1;
    return 0;
}

/* Dotted-decimal OID that OpenSSL can encode: first arc 0..2, no empty arcs. */
static int is_dotted_oid(const char *s)
{
    if (!s || (s[0] < '0' || s[0] > '2') || s[1] != '.')
        return 0;
    size_t arcs = 0, digits = 0;
    for (const char *c = s; *c; c++) {
        if (*c == '.') {
            if (digits == 0)
                return 0;
            arcs++;
            digits = 0;
        } else if (*c >= '0' && *c <= '9') {
            if (++digits > 18)
                return 0;
        } else {
            return 0;
        }
    }
    if (digits == 0 || arcs < 1 || strlen(s) > 100)
        return 0;
    ASN1_OBJECT *o = OBJ_txt2obj(s, 1);
    ASN1_OBJECT_free(o);
    return o != NULL;
}

/* URL template: http(s):// or {base}/, printable ASCII without spaces; "{"
 * only as "{base}". */
static int is_url_template(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_URL_LEN)
        return 0;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0 &&
        strncmp(s, "{base}/", 7) != 0)
        return 0;
    for (const char *c = s; *c; c++) {
        if (*c <= ' ' || *c > '~')
            return 0;
        if (*c == '{') {
            if (strncmp(c, "{base}", 6) != 0)
                return 0;
            c += 5;
        } else if (*c == '}') {
            return 0;
        }
    }
    return 1;
}

static qtsp_status get_bool_default(const qtsp_ynode *map, const char *key, int *out)
{
    *out = 0;
    return qtsp_yget_bool(map, key, 0, out);
}

/* A list of scalars under key (absent: *n = 0). */
static qtsp_status get_scalar_list(const qtsp_ynode *map, const char *key, size_t max,
                                   const char **out, size_t *n, const qtsp_ynode **list_node)
{
    *n = 0;
    const qtsp_ynode *l = qtsp_ynode_get(map, key);
    if (list_node)
        *list_node = l;
    if (!l)
        return QTSP_OK;
    if (qtsp_ynode_kind(l) != QTSP_Y_SEQ)
        return qtsp_ynode_fail(l, key, "must be a list");
    if (qtsp_ynode_count(l) == 0)
        return qtsp_ynode_fail(l, key, "must not be empty");
    if (qtsp_ynode_count(l) > max)
        return qtsp_ynode_fail(l, key, "at most %zu entries", max);
    for (size_t i = 0; i < qtsp_ynode_count(l); i++) {
        const qtsp_ynode *it = qtsp_ynode_item(l, i);
        const char *s = qtsp_ynode_scalar(it);
        if (!s || !*s)
            return qtsp_ynode_fail(it, key, "entries must be non-empty values");
        for (size_t j = 0; j < i; j++)
            if (strcmp(out[j], s) == 0)
                return qtsp_ynode_fail(it, key, "'%s' is listed twice", s);
        out[i] = s;
    }
    *n = qtsp_ynode_count(l);
    return QTSP_OK;
}

static qtsp_status get_url_list(const qtsp_ynode *map, const char *key, const char **out, size_t *n)
{
    const qtsp_ynode *l;
    TRY(get_scalar_list(map, key, MAX_URLS, out, n, &l));
    for (size_t i = 0; i < *n; i++)
        if (!is_url_template(out[i]))
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), key,
                                   "'%s' is not an http(s):// or {base}/ URL", out[i]);
    return QTSP_OK;
}

static qtsp_status load_validity(qtsp_profile *p, const qtsp_ynode *root)
{
    const char *v = NULL;
    TRY(qtsp_yget_str(root, "validity", 1, &v));
    const qtsp_ynode *n = qtsp_ynode_get(root, "validity");
    size_t len = strlen(v);
    int ok = len >= 2 && len <= 6 && (v[len - 1] == 'y' || v[len - 1] == 'd') && v[0] != '0';
    long x = 0;
    for (size_t i = 0; ok && i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            ok = 0;
        else
            x = x * 10 + (v[i] - '0');
    }
    if (ok && v[len - 1] == 'y' && x >= 1 && x <= 50)
        p->validity_years = (int)x;
    else if (ok && v[len - 1] == 'd' && x >= 1 && x <= 36500)
        p->validity_days = (int)x;
    else
        return qtsp_ynode_fail(n, "validity",
                               "'%s': use <n>y (calendar years, 1..50) or <n>d (1..36500)", v);
    return QTSP_OK;
}

static qtsp_status load_subject(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"attr", "value", "request", "check", "default", NULL};
    const qtsp_ynode *l = qtsp_ynode_get(root, "subject");
    if (!l)
        return qtsp_ynode_fail(root, "subject", "required key missing");
    if (qtsp_ynode_kind(l) != QTSP_Y_SEQ || qtsp_ynode_count(l) == 0)
        return qtsp_ynode_fail(l, "subject", "must be a non-empty list of attributes");
    if (qtsp_ynode_count(l) > MAX_SUBJECT)
        return qtsp_ynode_fail(l, "subject", "at most %d attributes", MAX_SUBJECT);
    for (size_t i = 0; i < qtsp_ynode_count(l); i++) {
        const qtsp_ynode *e = qtsp_ynode_item(l, i);
        TRY(qtsp_ynode_check_keys(e, keys));
        subj_attr *a = &p->subject[i];
        const char *name = NULL, *req = NULL, *check = NULL, *def = NULL;
        TRY(qtsp_yget_str(e, "attr", 1, &name));
        for (size_t k = 0; k < NATTRS; k++)
            if (strcmp(k_attrs[k].name, name) == 0)
                a->def = &k_attrs[k];
        if (!a->def)
            return qtsp_ynode_fail(qtsp_ynode_get(e, "attr"), "attr",
                                   "'%s' is not one of C, O, organizationIdentifier, CN, "
                                   "givenName, surname, serialNumber",
                                   name);
        for (size_t j = 0; j < i; j++)
            if (p->subject[j].def == a->def)
                return qtsp_ynode_fail(e, "attr", "%s appears twice (at most one each)", name);
        TRY(qtsp_yget_str(e, "value", 0, &a->value));
        TRY(qtsp_yget_str(e, "request", 0, &req));
        TRY(qtsp_yget_str(e, "check", 0, &check));
        TRY(qtsp_yget_str(e, "default", 0, &def));
        if (!!a->value == !!req)
            return qtsp_ynode_fail(e, name, "give exactly one of value or request");
        if (req && strcmp(req, "required") == 0)
            a->required = 1;
        else if (req && strcmp(req, "optional") != 0)
            return qtsp_ynode_fail(qtsp_ynode_get(e, "request"), "request",
                                   "'%s' must be required or optional", req);
        if (check && (strcmp(check, "pno") != 0 || a->def->nid != NID_serialNumber))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "check"), "check",
                                   "only 'pno' on serialNumber is supported");
        a->check = check ? CHECK_PNO : CHECK_NONE;
        if (def && (strcmp(def, "given-surname") != 0 || a->def->nid != NID_commonName || !req))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "default"), "default",
                                   "only 'given-surname' on a CN taken from the request");
        a->cn_from_names = def != NULL;
        if (a->value && (strlen(a->value) == 0 || strlen(a->value) > a->def->max))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "value"), name,
                                   "value must be 1..%zu characters", a->def->max);
        if (a->value && a->def->nid == NID_countryName &&
            !(isupper((unsigned char)a->value[0]) && isupper((unsigned char)a->value[1])))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "value"), name,
                                   "must be an ISO 3166 alpha-2 code (two capital letters)");
    }
    p->nsubject = qtsp_ynode_count(l);
    return QTSP_OK;
}

static qtsp_status load_basic_constraints(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"critical", "ca", "path_len", NULL};
    const qtsp_ynode *m = qtsp_ynode_get(root, "basic_constraints");
    if (!m)
        return qtsp_ynode_fail(root, "basic_constraints", "required key missing");
    TRY(qtsp_ynode_check_keys(m, keys));
    TRY(qtsp_yget_bool(m, "critical", 1, &p->bc_critical));
    TRY(qtsp_yget_bool(m, "ca", 1, &p->bc_ca));
    int64_t pl = -1;
    TRY(qtsp_yget_int(m, "path_len", 0, 0, 16, &pl));
    if (pl >= 0 && !p->bc_ca)
        return qtsp_ynode_fail(qtsp_ynode_get(m, "path_len"), "path_len",
                               "only allowed with ca: true (RFC 5280 4.2.1.9)");
    p->bc_path_len = (long)pl;
    return QTSP_OK;
}

static qtsp_status load_key_usage(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"critical", "usages", NULL};
    const qtsp_ynode *m = qtsp_ynode_get(root, "key_usage");
    if (!m)
        return qtsp_ynode_fail(root, "key_usage", "required key missing");
    TRY(qtsp_ynode_check_keys(m, keys));
    TRY(qtsp_yget_bool(m, "critical", 1, &p->ku_critical));
    const char *names[MAX_LIST];
    size_t n = 0;
    const qtsp_ynode *l;
    TRY(get_scalar_list(m, "usages", MAX_LIST, names, &n, &l));
    if (n == 0)
        return qtsp_ynode_fail(m, "usages", "required key missing");
    for (size_t i = 0; i < n; i++) {
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof k_usages / sizeof k_usages[0]; k++)
            if (strcmp(k_usages[k].name, names[i]) == 0)
                bit = k_usages[k].bit;
        if (!bit)
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), "usages", "unknown key usage '%s'",
                                   names[i]);
        p->ku_bits |= bit;
    }
    /* RFC 5280 4.2.1.9: keyCertSign asserted iff cA is true */
    if (!!(p->ku_bits & KU_KEY_CERT_SIGN) != !!p->bc_ca)
        return qtsp_ynode_fail(l, "usages",
                               "keyCertSign must be present exactly when "
                               "basic_constraints.ca is true");
    return QTSP_OK;
}

static qtsp_status load_eku(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"critical", "purposes", NULL};
    const qtsp_ynode *m = qtsp_ynode_get(root, "extended_key_usage");
    if (!m)
        return QTSP_OK;
    TRY(qtsp_ynode_check_keys(m, keys));
    p->eku_present = 1;
    TRY(qtsp_yget_bool(m, "critical", 1, &p->eku_critical));
    const char *names[MAX_LIST];
    const qtsp_ynode *l;
    TRY(get_scalar_list(m, "purposes", MAX_LIST, names, &p->neku, &l));
    if (p->neku == 0)
        return qtsp_ynode_fail(m, "purposes", "required key missing");
    for (size_t i = 0; i < p->neku; i++) {
        const char *oid = NULL;
        for (size_t k = 0; k < sizeof k_purposes / sizeof k_purposes[0]; k++)
            if (strcmp(k_purposes[k].name, names[i]) == 0)
                oid = k_purposes[k].oid;
        if (!oid && is_dotted_oid(names[i]))
            oid = names[i];
        if (!oid)
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), "purposes",
                                   "'%s' is neither a known purpose nor a dotted OID", names[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->eku[j], oid) == 0)
                return qtsp_ynode_fail(qtsp_ynode_item(l, i), "purposes", "'%s' twice", names[i]);
        p->eku[i] = oid;
        /* RFC 3161 2.3: a TSU certificate has exactly one, critical, EKU */
        if (strcmp(oid, OID_TIMESTAMPING) == 0 &&
            (l && (qtsp_ynode_count(l) != 1 || !p->eku_critical)))
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), "purposes",
                                   "timeStamping must be the only purpose and critical "
                                   "(RFC 3161 2.3)");
    }
    return QTSP_OK;
}

static qtsp_status load_policies(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"oid", "cps", NULL};
    const qtsp_ynode *l = qtsp_ynode_get(root, "certificate_policies");
    if (!l)
        return QTSP_OK;
    if (qtsp_ynode_kind(l) != QTSP_Y_SEQ || qtsp_ynode_count(l) == 0)
        return qtsp_ynode_fail(l, "certificate_policies", "must be a non-empty list");
    if (qtsp_ynode_count(l) > MAX_LIST)
        return qtsp_ynode_fail(l, "certificate_policies", "at most %d policies", MAX_LIST);
    int etsi = 0;
    for (size_t i = 0; i < qtsp_ynode_count(l); i++) {
        const qtsp_ynode *e = qtsp_ynode_item(l, i);
        TRY(qtsp_ynode_check_keys(e, keys));
        policy *pol = &p->policies[i];
        TRY(qtsp_yget_str(e, "oid", 1, &pol->oid));
        TRY(qtsp_yget_str(e, "cps", 0, &pol->cps));
        if (!is_dotted_oid(pol->oid))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "oid"), "oid",
                                   "'%s' is not a dotted-decimal OID", pol->oid);
        if (pol->cps && !is_url_template(pol->cps))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "cps"), "cps",
                                   "'%s' is not an http(s):// or {base}/ URL", pol->cps);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->policies[j].oid, pol->oid) == 0)
                return qtsp_ynode_fail(e, "oid", "'%s' listed twice", pol->oid);
        /* EN 319 411-2 / 319 412-2: one ETSI certificate policy OID at most */
        if (strncmp(pol->oid, OID_ETSI_CP_PREFIX, strlen(OID_ETSI_CP_PREFIX)) == 0 && etsi++)
            return qtsp_ynode_fail(e, "oid", "only one 0.4.0.194112 policy OID is allowed");
    }
    p->npolicies = qtsp_ynode_count(l);
    return QTSP_OK;
}

static qtsp_status load_aia(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"ocsp", "ca_issuers", NULL};
    const qtsp_ynode *m = qtsp_ynode_get(root, "authority_info_access");
    if (!m)
        return QTSP_OK;
    TRY(qtsp_ynode_check_keys(m, keys));
    TRY(get_url_list(m, "ocsp", p->aia_ocsp, &p->naia_ocsp));
    TRY(get_url_list(m, "ca_issuers", p->aia_ca, &p->naia_ca));
    if (p->naia_ocsp + p->naia_ca == 0)
        return qtsp_ynode_fail(m, "authority_info_access", "needs ocsp or ca_issuers");
    return QTSP_OK;
}

static qtsp_status load_qc(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"compliance",           "sscd", "type", "pds",
                                       "semantics_identifier", NULL};
    static const char *const pds_keys[] = {"url", "lang", NULL};
    const qtsp_ynode *m = qtsp_ynode_get(root, "qc_statements");
    if (!m)
        return QTSP_OK;
    TRY(qtsp_ynode_check_keys(m, keys));
    p->qc_present = 1;
    TRY(get_bool_default(m, "compliance", &p->qc_compliance));
    TRY(get_bool_default(m, "sscd", &p->qc_sscd));
    const char *names[3];
    const qtsp_ynode *l;
    TRY(get_scalar_list(m, "type", 3, names, &p->nqc_types, &l));
    for (size_t i = 0; i < p->nqc_types; i++) {
        p->qc_types[i] = NULL;
        for (size_t k = 0; k < sizeof k_qc_types / sizeof k_qc_types[0]; k++)
            if (strcmp(k_qc_types[k].name, names[i]) == 0)
                p->qc_types[i] = k_qc_types[k].oid;
        if (!p->qc_types[i])
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), "type",
                                   "'%s' must be esign, eseal or web", names[i]);
    }
    const qtsp_ynode *pds = qtsp_ynode_get(m, "pds");
    if (pds) {
        if (qtsp_ynode_kind(pds) != QTSP_Y_SEQ || qtsp_ynode_count(pds) == 0 ||
            qtsp_ynode_count(pds) > MAX_URLS)
            return qtsp_ynode_fail(pds, "pds", "must be a list of 1..%d {url, lang}", MAX_URLS);
        for (size_t i = 0; i < qtsp_ynode_count(pds); i++) {
            const qtsp_ynode *e = qtsp_ynode_item(pds, i);
            TRY(qtsp_ynode_check_keys(e, pds_keys));
            TRY(qtsp_yget_str(e, "url", 1, &p->qc_pds_url[i]));
            TRY(qtsp_yget_str(e, "lang", 1, &p->qc_pds_lang[i]));
            const char *u = p->qc_pds_url[i], *g = p->qc_pds_lang[i];
            /* EN 319 412-5 4.3.4: https URL, ISO 639-1 language code */
            if (!is_url_template(u) || strncmp(u, "http://", 7) == 0)
                return qtsp_ynode_fail(qtsp_ynode_get(e, "url"), "url",
                                       "'%s' must be an https:// (or {base}/) URL", u);
            if (strlen(g) != 2 || !islower((unsigned char)g[0]) || !islower((unsigned char)g[1]))
                return qtsp_ynode_fail(qtsp_ynode_get(e, "lang"), "lang",
                                       "'%s' must be a two-letter ISO 639-1 code", g);
        }
        p->nqc_pds = qtsp_ynode_count(pds);
    }
    TRY(qtsp_yget_str(m, "semantics_identifier", 0, &p->qc_semantics));
    if (p->qc_semantics && !is_dotted_oid(p->qc_semantics))
        return qtsp_ynode_fail(qtsp_ynode_get(m, "semantics_identifier"), "semantics_identifier",
                               "'%s' is not a dotted-decimal OID", p->qc_semantics);
    if (!p->qc_compliance && !p->qc_sscd && !p->nqc_types && !p->nqc_pds && !p->qc_semantics)
        return qtsp_ynode_fail(m, "qc_statements", "no statement selected");
    return QTSP_OK;
}

static qtsp_status load_tree(qtsp_profile *p, const qtsp_ynode *root)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "key_type",
                                       "allowed_key_types",
                                       "validity",
                                       "self_signed",
                                       "subject",
                                       "basic_constraints",
                                       "key_usage",
                                       "extended_key_usage",
                                       "subject_key_identifier",
                                       "authority_key_identifier",
                                       "certificate_policies",
                                       "crl_distribution_points",
                                       "authority_info_access",
                                       "ocsp_no_check",
                                       "qc_statements",
                                       NULL};
    TRY(qtsp_ynode_check_keys(root, keys));
    TRY(qtsp_yget_str(root, "name", 1, &p->name));
    size_t nl = strlen(p->name);
    int ok = nl > 0 && nl <= 64;
    for (const char *c = p->name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            ok = 0;
    if (!ok)
        return qtsp_ynode_fail(qtsp_ynode_get(root, "name"), "name",
                               "use 1..64 characters a-z, 0-9 and '-'");
    const char *desc = NULL;
    TRY(qtsp_yget_str(root, "description", 0, &desc));
    TRY(qtsp_yget_str(root, "key_type", 1, &p->key_type));
    if (!is_key_type(p->key_type))
        return qtsp_ynode_fail(qtsp_ynode_get(root, "key_type"), "key_type",
                               "'%s' must be ec-p256, ec-p384 or rsa-3072", p->key_type);
    const qtsp_ynode *l;
    TRY(get_scalar_list(root, "allowed_key_types", MAX_KEY_TYPES, p->allowed, &p->nallowed, &l));
    int has_default = 0;
    for (size_t i = 0; i < p->nallowed; i++) {
        if (!is_key_type(p->allowed[i]))
            return qtsp_ynode_fail(qtsp_ynode_item(l, i), "allowed_key_types",
                                   "'%s' must be ec-p256, ec-p384 or rsa-3072", p->allowed[i]);
        has_default |= strcmp(p->allowed[i], p->key_type) == 0;
    }
    if (p->nallowed == 0)
        p->allowed[p->nallowed++] = p->key_type;
    else if (!has_default)
        return qtsp_ynode_fail(l, "allowed_key_types", "must include key_type %s", p->key_type);
    TRY(load_validity(p, root));
    TRY(get_bool_default(root, "self_signed", &p->self_signed));
    TRY(load_subject(p, root));
    TRY(load_basic_constraints(p, root));
    TRY(load_key_usage(p, root));
    TRY(load_eku(p, root));
    TRY(get_bool_default(root, "subject_key_identifier", &p->ski));
    TRY(get_bool_default(root, "authority_key_identifier", &p->aki));
    TRY(load_policies(p, root));
    TRY(get_url_list(root, "crl_distribution_points", p->crl_dp, &p->ncrl_dp));
    TRY(load_aia(p, root));
    TRY(get_bool_default(root, "ocsp_no_check", &p->ocsp_no_check));
    /* RFC 6960 4.2.2.2.1: nocheck belongs on a delegated responder certificate */
    int ocsp_signing = 0;
    for (size_t i = 0; i < p->neku; i++)
        ocsp_signing |= strcmp(p->eku[i], OID_OCSPSIGNING) == 0;
    if (p->ocsp_no_check && !ocsp_signing)
        return qtsp_ynode_fail(qtsp_ynode_get(root, "ocsp_no_check"), "ocsp_no_check",
                               "needs extended_key_usage OCSPSigning");
    TRY(load_qc(p, root));
    return QTSP_OK;
}

qtsp_status qtsp_profile_load(const char *path, qtsp_profile **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_profile *p = calloc(1, sizeof *p);
    ENSURE(p, QTSP_ERR_NOMEM, "out of memory loading profile");
    p->bc_path_len = -1;
    TRY_OUT(qtsp_ydoc_load_file(path, &p->doc));
    TRY_OUT(load_tree(p, qtsp_ydoc_root(p->doc)));
    *out = p;
    p = NULL;
out:
    qtsp_profile_free(p);
    return rc;
}

void qtsp_profile_free(qtsp_profile *p)
{
    if (!p)
        return;
    qtsp_ydoc_free(p->doc);
    free(p);
}

const char *qtsp_profile_key_type(const qtsp_profile *p)
{
    return p->key_type;
}
const char *qtsp_profile_name(const qtsp_profile *p)
{
    return p->name;
}

/* ---- issuing ---------------------------------------------------------- */

/* Expands "{base}" in tmpl into out (cap bytes). */
static qtsp_status expand_url(const char *tmpl, const char *base, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *c = tmpl; *c;) {
        const char *piece = c;
        size_t len = 1;
        if (strncmp(c, "{base}", 6) == 0) {
            ENSURE(base, QTSP_ERR_INVALID, "profile URL %s needs a base_url", tmpl);
            piece = base;
            len = strlen(base);
            c += 6;
        } else {
            c++;
        }
        ENSURE(n + len < cap, QTSP_ERR_TOO_BIG, "URL from %s too long", tmpl);
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n] = '\0';
    return QTSP_OK;
}

static qtsp_status check_base_url(const char *base)
{
    if (!base)
        return QTSP_OK;
    size_t n = strlen(base);
    ENSURE((strncmp(base, "http://", 7) == 0 || strncmp(base, "https://", 8) == 0) && n > 8 &&
               n <= 256 && base[n - 1] != '/',
           QTSP_ERR_INVALID, "base_url must be http(s)://host[/path] without trailing slash");
    for (const char *c = base; *c; c++)
        ENSURE(*c > ' ' && *c <= '~' && *c != '{' && *c != '}', QTSP_ERR_INVALID,
               "base_url contains an invalid character");
    return QTSP_OK;
}

/* Key type name of a public key, or NULL when it is none of ours. */
static const char *key_type_of(const EVP_PKEY *k)
{
    int bits = EVP_PKEY_get_bits(k);
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC: {
        char grp[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(k, grp, sizeof grp, &glen) == 1) {
            if (strcmp(grp, "prime256v1") == 0 || strcmp(grp, "P-256") == 0)
                return "ec-p256";
            if (strcmp(grp, "secp384r1") == 0 || strcmp(grp, "P-384") == 0)
                return "ec-p384";
            return NULL;
        }
        return bits == 256 ? "ec-p256" : bits == 384 ? "ec-p384" : NULL;
    }
    case EVP_PKEY_RSA:
        return bits == 3072 ? "rsa-3072" : NULL;
    default:
        return NULL;
    }
}

/* Signature algorithm from the issuer key's public parameters. */
static qtsp_status pick_alg(const qtsp_key *key, qtsp_sigalg *alg)
{
    const EVP_PKEY *issuer_key = qtsp_key_get0_pubkey(key);
    const EVP_MD *md = NULL;
    int bits = EVP_PKEY_get_bits(issuer_key);
    switch (EVP_PKEY_get_base_id(issuer_key)) {
    case EVP_PKEY_EC:
        ENSURE(bits == 256 || bits == 384, QTSP_ERR_UNSUPPORTED,
               "issuer EC key of %d bits: only P-256 and P-384", bits);
        md = bits == 256 ? EVP_sha256() : EVP_sha384();
        break;
    case EVP_PKEY_RSA:
        ENSURE(bits >= 2048, QTSP_ERR_UNSUPPORTED, "issuer RSA key of %d bits is too small", bits);
        md = EVP_sha256();
        break;
    default:
        FAIL(QTSP_ERR_UNSUPPORTED, "issuer key type not supported (EC P-256/P-384 or RSA)");
    }
    return qtsp_key_sigalg(key, md, alg);
}

static const char *req_field(const qtsp_subject_attrs *s, const attr_def *d)
{
    const char *const *f = (const char *const *)(const void *)((const char *)s + d->req_off);
    return *f;
}

/* X.680 PrintableString alphabet. */
static int is_printable(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (!(isalnum(*c) || strchr(" '()+,-./:=?", *c)))
            return 0;
    return 1;
}

/* Well-formed UTF-8 without C0/C1 controls; returns the number of characters or -1. */
static long utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long len = (long)strlen(s), n = 0;
    while (len > 0) {
        unsigned long v = 0;
        int r = UTF8_getc(p, (int)len, &v);
        if (r <= 0 || v < 0x20 || (v >= 0x7f && v < 0xa0))
            return -1;
        p += r;
        len -= r;
        n++;
    }
    return n;
}

/* EN 319 412-1 5.1.3: "PNO" + ISO 3166 country + "-" + identifier. */
static int is_pno(const char *s)
{
    return strlen(s) >= 7 && strncmp(s, "PNO", 3) == 0 && isupper((unsigned char)s[3]) &&
           isupper((unsigned char)s[4]) && s[5] == '-';
}

static qtsp_status add_name_entry(X509_NAME *name, const attr_def *d, const char *v,
                                  const char *profile)
{
    ENSURE(*v, QTSP_ERR_INVALID, "profile %s: subject %s is empty", profile, d->name);
    if (d->printable) {
        ENSURE(is_printable(v) && strlen(v) <= d->max, QTSP_ERR_INVALID,
               "profile %s: subject %s must be PrintableString of at most %zu characters", profile,
               d->name, d->max);
    } else {
        long n = utf8_chars(v);
        ENSURE(n > 0 && (size_t)n <= d->max, QTSP_ERR_INVALID,
               "profile %s: subject %s must be valid UTF-8 of at most %zu characters", profile,
               d->name, d->max);
    }
    if (d->nid == NID_countryName)
        ENSURE(isupper((unsigned char)v[0]) && isupper((unsigned char)v[1]), QTSP_ERR_INVALID,
               "profile %s: subject C must be an ISO 3166 alpha-2 code", profile);
    int type = d->printable ? V_ASN1_PRINTABLESTRING : V_ASN1_UTF8STRING;
    ENSURE(X509_NAME_add_entry_by_NID(name, d->nid, type, (const unsigned char *)v, (int)strlen(v),
                                      -1, 0) == 1,
           QTSP_ERR_CRYPTO, "cannot add subject %s", d->name);
    return QTSP_OK;
}

static qtsp_status build_subject(const qtsp_profile *p, const qtsp_subject_attrs *s,
                                 X509_NAME *name)
{
    char cn[256];
    /* every attribute the request carries must be one the profile takes */
    for (size_t k = 0; k < NATTRS; k++) {
        const char *v = req_field(s, &k_attrs[k]);
        if (!v)
            continue;
        const subj_attr *a = NULL;
        for (size_t i = 0; i < p->nsubject; i++)
            if (p->subject[i].def == &k_attrs[k])
                a = &p->subject[i];
        ENSURE(a, QTSP_ERR_INVALID, "profile %s does not allow subject attribute %s", p->name,
               k_attrs[k].name);
        ENSURE(!a->value || strcmp(a->value, v) == 0, QTSP_ERR_INVALID,
               "profile %s fixes subject %s to '%s'; request asks for '%s'", p->name,
               k_attrs[k].name, a->value, v);
    }
    for (size_t i = 0; i < p->nsubject; i++) {
        const subj_attr *a = &p->subject[i];
        const char *v = a->value ? a->value : req_field(s, a->def);
        if (!v && a->cn_from_names && s->given_name && s->surname) {
            int n = snprintf(cn, sizeof cn, "%s %s", s->given_name, s->surname);
            ENSURE(n > 0 && (size_t)n < sizeof cn, QTSP_ERR_INVALID,
                   "profile %s: names too long for CN", p->name);
            v = cn;
        }
        if (!v) {
            ENSURE(!a->required, QTSP_ERR_INVALID, "profile %s: subject %s is required", p->name,
                   a->def->name);
            continue;
        }
        if (a->check == CHECK_PNO)
            ENSURE(is_pno(v), QTSP_ERR_INVALID,
                   "profile %s: serialNumber '%s' is not PNO<country>-<id> (EN 319 412-1 5.1.3)",
                   p->name, v);
        TRY(add_name_entry(name, a->def, v, p->name));
    }
    ENSURE(X509_NAME_entry_count(name) > 0, QTSP_ERR_INVALID, "profile %s: empty subject", p->name);
    return QTSP_OK;
}

/* RFC 5280 4.1.2.2: positive, at most 20 octets encoded (so < 2^159). */
static qtsp_status set_serial(X509 *x, const unsigned char *b, size_t n)
{
    ENSURE(b && n > 0, QTSP_ERR_INVALID, "serial number missing");
    while (n > 0 && b[0] == 0)
        b++, n--;
    ENSURE(n > 0, QTSP_ERR_INVALID, "serial number must be positive, not zero");
    ENSURE(n < 20 || (n == 20 && b[0] < 0x80), QTSP_ERR_INVALID,
           "serial number longer than 20 octets (must be < 2^159)");
    BIGNUM *bn = BN_bin2bn(b, (int)n, NULL);
    ENSURE(bn, QTSP_ERR_NOMEM, "serial number");
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    ENSURE(ai, QTSP_ERR_NOMEM, "serial number");
    int ok = X509_set_serialNumber(x, ai);
    ASN1_INTEGER_free(ai);
    ENSURE(ok == 1, QTSP_ERR_CRYPTO, "cannot set serial number");
    return QTSP_OK;
}

static qtsp_status set_validity(const qtsp_profile *p, const qtsp_cert_request *req,
                                const X509 *issuer, X509 *x)
{
    time_t nb = req->not_before ? req->not_before : qtsp_now();
    struct tm tm;
    ENSURE(nb > 0 && gmtime_r(&nb, &tm), QTSP_ERR_INVALID, "notBefore out of range");
    tm.tm_year += p->validity_years;
    tm.tm_mday += p->validity_days;
    tm.tm_isdst = 0;
    time_t na = (time_t)qtsp_timegm(&tm);
    ENSURE(na != (time_t)-1 && na > nb, QTSP_ERR_INVALID, "notAfter out of range");
    if (issuer) {
        int day = 0, sec = 0;
        ASN1_TIME *t = ASN1_TIME_set(NULL, na);
        ENSURE(t, QTSP_ERR_CRYPTO, "cannot encode notAfter");
        int ok = ASN1_TIME_diff(&day, &sec, t, X509_get0_notAfter(issuer));
        ASN1_TIME_free(t);
        ENSURE(ok == 1, QTSP_ERR_CRYPTO, "cannot compare with issuer notAfter");
        ENSURE(day > 0 || (day == 0 && sec >= 0), QTSP_ERR_INVALID,
               "profile %s: certificate would outlive its issuer", p->name);
    }
    ENSURE(ASN1_TIME_set(X509_getm_notBefore(x), nb) && ASN1_TIME_set(X509_getm_notAfter(x), na),
           QTSP_ERR_CRYPTO, "cannot set validity");
    return QTSP_OK;
}

static qtsp_status add_ext_i2d(X509 *x, int nid, void *value, int crit, const char *what)
{
    ENSURE(value, QTSP_ERR_NOMEM, "cannot build %s", what);
    ENSURE(X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_APPEND) == 1, QTSP_ERR_CRYPTO,
           "cannot add %s", what);
    return QTSP_OK;
}

/* Adds an extension whose DER value we built ourselves. */
static qtsp_status add_ext_der(X509 *x, const char *oid, int crit, const unsigned char *der,
                               int len)
{
    qtsp_status rc = QTSP_OK;
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    ENSURE_OUT(obj && os && ASN1_OCTET_STRING_set(os, der, len), QTSP_ERR_NOMEM,
               "cannot build extension %s", oid);
    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, crit, os);
    ENSURE_OUT(ext && X509_add_ext(x, ext, -1) == 1, QTSP_ERR_CRYPTO, "cannot add extension %s",
               oid);
out:
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(obj);
    return rc;
}

static GENERAL_NAME *uri_name(const char *url)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (!gn || !s || !ASN1_STRING_set(s, url, (int)strlen(url))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    return gn;
}

static qtsp_status add_key_usage(const qtsp_profile *p, X509 *x)
{
    ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();
    int ok = bs != NULL;
    /* KU_* are the bits of the first two octets in X.509 order, MSB first */
    for (int bit = 0; ok && bit < 9; bit++) {
        unsigned mask = bit < 8 ? (0x80u >> bit) : 0x8000u;
        if (p->ku_bits & mask)
            ok = ASN1_BIT_STRING_set_bit(bs, bit, 1);
    }
    qtsp_status rc = ok ? add_ext_i2d(x, NID_key_usage, bs, p->ku_critical, "keyUsage")
                        : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "keyUsage");
    ASN1_BIT_STRING_free(bs);
    return rc;
}

static qtsp_status add_basic_constraints(const qtsp_profile *p, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ENSURE(bc, QTSP_ERR_NOMEM, "basicConstraints");
    bc->ca = p->bc_ca ? 0xff : 0;
    if (p->bc_path_len >= 0) {
        bc->pathlen = ASN1_INTEGER_new();
        ENSURE_OUT(bc->pathlen && ASN1_INTEGER_set(bc->pathlen, p->bc_path_len), QTSP_ERR_NOMEM,
                   "basicConstraints pathLen");
    }
    rc = add_ext_i2d(x, NID_basic_constraints, bc, p->bc_critical, "basicConstraints");
out:
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

static qtsp_status add_eku(const qtsp_profile *p, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    ENSURE(eku, QTSP_ERR_NOMEM, "extendedKeyUsage");
    for (size_t i = 0; i < p->neku; i++) {
        ASN1_OBJECT *o = OBJ_txt2obj(p->eku[i], 1);
        if (!o || !sk_ASN1_OBJECT_push(eku, o)) {
            ASN1_OBJECT_free(o);
            FAIL_OUT(QTSP_ERR_NOMEM, "extendedKeyUsage");
        }
    }
    rc = add_ext_i2d(x, NID_ext_key_usage, eku, p->eku_critical, "extendedKeyUsage");
out:
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return rc;
}

/* RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value. */
static qtsp_status add_ski(X509 *x, ASN1_OCTET_STRING **ski_out)
{
    const unsigned char *pk = NULL;
    int pklen = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ENSURE(X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(x)) == 1 &&
               EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) == 1,
           QTSP_ERR_CRYPTO, "cannot hash subject public key");
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    if (!ski || !ASN1_OCTET_STRING_set(ski, md, (int)mdlen)) {
        ASN1_OCTET_STRING_free(ski);
        FAIL(QTSP_ERR_NOMEM, "subjectKeyIdentifier");
    }
    qtsp_status rc = add_ext_i2d(x, NID_subject_key_identifier, ski, 0, "subjectKeyIdentifier");
    if (rc == QTSP_OK)
        *ski_out = ski;
    else
        ASN1_OCTET_STRING_free(ski);
    return rc;
}

static qtsp_status add_aki(const ASN1_OCTET_STRING *issuer_ski, X509 *x)
{
    ENSURE(issuer_ski, QTSP_ERR_INVALID,
           "authorityKeyIdentifier: the issuer certificate has no subjectKeyIdentifier");
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ENSURE(akid, QTSP_ERR_NOMEM, "authorityKeyIdentifier");
    akid->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
    qtsp_status rc = akid->keyid ? add_ext_i2d(x, NID_authority_key_identifier, akid, 0,
                                               "authorityKeyIdentifier")
                                 : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "AKI");
    AUTHORITY_KEYID_free(akid);
    return rc;
}

static qtsp_status add_policies(const qtsp_profile *p, const char *base, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    char url[MAX_URL_LEN + 300];
    CERTIFICATEPOLICIES *cp = sk_POLICYINFO_new_null();
    ENSURE(cp, QTSP_ERR_NOMEM, "certificatePolicies");
    for (size_t i = 0; i < p->npolicies; i++) {
        POLICYINFO *pi = POLICYINFO_new();
        if (!pi || !sk_POLICYINFO_push(cp, pi)) {
            POLICYINFO_free(pi);
            FAIL_OUT(QTSP_ERR_NOMEM, "certificatePolicies");
        }
        pi->policyid = OBJ_txt2obj(p->policies[i].oid, 1);
        ENSURE_OUT(pi->policyid, QTSP_ERR_NOMEM, "policy OID");
        if (!p->policies[i].cps)
            continue;
        TRY_OUT(expand_url(p->policies[i].cps, base, url, sizeof url));
        POLICYQUALINFO *q = POLICYQUALINFO_new();
        pi->qualifiers = sk_POLICYQUALINFO_new_null();
        if (!q || !pi->qualifiers || !sk_POLICYQUALINFO_push(pi->qualifiers, q)) {
            POLICYQUALINFO_free(q);
            FAIL_OUT(QTSP_ERR_NOMEM, "policy qualifier");
        }
        q->pqualid = OBJ_nid2obj(NID_id_qt_cps); /* RFC 5280 4.2.1.4 */
        q->d.cpsuri = ASN1_IA5STRING_new();
        ENSURE_OUT(q->d.cpsuri && ASN1_STRING_set(q->d.cpsuri, url, (int)strlen(url)),
                   QTSP_ERR_NOMEM, "CPS URI");
    }
    rc = add_ext_i2d(x, NID_certificate_policies, cp, 0, "certificatePolicies");
out:
    CERTIFICATEPOLICIES_free(cp);
    return rc;
}

static qtsp_status add_crl_dp(const qtsp_profile *p, const char *base, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    char url[MAX_URL_LEN + 300];
    CRL_DIST_POINTS *cdp = sk_DIST_POINT_new_null();
    DIST_POINT *dp = DIST_POINT_new();
    ENSURE_OUT(cdp && dp && sk_DIST_POINT_push(cdp, dp), QTSP_ERR_NOMEM, "CRL DP");
    DIST_POINT *d = dp;
    dp = NULL; /* owned by cdp now */
    d->distpoint = DIST_POINT_NAME_new();
    ENSURE_OUT(d->distpoint, QTSP_ERR_NOMEM, "CRL DP");
    d->distpoint->type = 0; /* fullName */
    d->distpoint->name.fullname = GENERAL_NAMES_new();
    ENSURE_OUT(d->distpoint->name.fullname, QTSP_ERR_NOMEM, "CRL DP");
    /* one distribution point; several URIs are alternative locations of one CRL */
    for (size_t i = 0; i < p->ncrl_dp; i++) {
        TRY_OUT(expand_url(p->crl_dp[i], base, url, sizeof url));
        GENERAL_NAME *gn = uri_name(url);
        if (!gn || !sk_GENERAL_NAME_push(d->distpoint->name.fullname, gn)) {
            GENERAL_NAME_free(gn);
            FAIL_OUT(QTSP_ERR_NOMEM, "CRL DP");
        }
    }
    rc = add_ext_i2d(x, NID_crl_distribution_points, cdp, 0, "cRLDistributionPoints");
out:
    DIST_POINT_free(dp);
    sk_DIST_POINT_pop_free(cdp, DIST_POINT_free);
    return rc;
}

static qtsp_status push_access(AUTHORITY_INFO_ACCESS *aia, int nid, const char *tmpl,
                               const char *base)
{
    char url[MAX_URL_LEN + 300];
    TRY(expand_url(tmpl, base, url, sizeof url));
    ACCESS_DESCRIPTION *ad = ACCESS_DESCRIPTION_new();
    GENERAL_NAME *gn = uri_name(url);
    if (!ad || !gn || !sk_ACCESS_DESCRIPTION_push(aia, ad)) {
        ACCESS_DESCRIPTION_free(ad);
        GENERAL_NAME_free(gn);
        FAIL(QTSP_ERR_NOMEM, "authorityInfoAccess");
    }
    ASN1_OBJECT_free(ad->method);
    ad->method = OBJ_nid2obj(nid);
    GENERAL_NAME_free(ad->location);
    ad->location = gn;
    return QTSP_OK;
}

static qtsp_status add_aia(const qtsp_profile *p, const char *base, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    AUTHORITY_INFO_ACCESS *aia = sk_ACCESS_DESCRIPTION_new_null();
    ENSURE(aia, QTSP_ERR_NOMEM, "authorityInfoAccess");
    for (size_t i = 0; i < p->naia_ocsp; i++)
        TRY_OUT(push_access(aia, NID_ad_OCSP, p->aia_ocsp[i], base));
    for (size_t i = 0; i < p->naia_ca; i++)
        TRY_OUT(push_access(aia, NID_ad_ca_issuers, p->aia_ca[i], base));
    rc = add_ext_i2d(x, NID_info_access, aia, 0, "authorityInfoAccess");
out:
    AUTHORITY_INFO_ACCESS_free(aia);
    return rc;
}

/* ---- qcStatements (RFC 3739 3.2.6, ETSI EN 319 412-5) ------------------
 * QCStatements ::= SEQUENCE OF QCStatement
 * QCStatement  ::= SEQUENCE { statementId OID, statementInfo ANY OPTIONAL }
 * Built as nested SEQUENCE OF ANY (ASN1_SEQUENCE_ANY) and encoded with
 * i2d_ASN1_SEQUENCE_ANY: OpenSSL has no QC types of its own. */

static qtsp_status seq_push_oid(ASN1_SEQUENCE_ANY *sk, const char *oid)
{
    ASN1_TYPE *t = ASN1_TYPE_new();
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    if (!t || !o || !sk_ASN1_TYPE_push(sk, t)) {
        ASN1_TYPE_free(t);
        ASN1_OBJECT_free(o);
        FAIL(QTSP_ERR_NOMEM, "qcStatements OID %s", oid);
    }
    ASN1_TYPE_set(t, V_ASN1_OBJECT, o);
    return QTSP_OK;
}

static qtsp_status seq_push_str(ASN1_SEQUENCE_ANY *sk, int type, const char *s)
{
    ASN1_TYPE *t = ASN1_TYPE_new();
    ASN1_STRING *str = ASN1_STRING_type_new(type);
    if (!t || !str || !ASN1_STRING_set(str, s, (int)strlen(s)) || !sk_ASN1_TYPE_push(sk, t)) {
        ASN1_TYPE_free(t);
        ASN1_STRING_free(str);
        FAIL(QTSP_ERR_NOMEM, "qcStatements string");
    }
    ASN1_TYPE_set(t, type, str);
    return QTSP_OK;
}

/* Encodes inner as a SEQUENCE and appends it to sk; frees inner. */
static qtsp_status seq_push_seq(ASN1_SEQUENCE_ANY *sk, ASN1_SEQUENCE_ANY *inner)
{
    unsigned char *der = NULL;
    int len = inner ? i2d_ASN1_SEQUENCE_ANY(inner, &der) : -1;
    sk_ASN1_TYPE_pop_free(inner, ASN1_TYPE_free);
    ASN1_TYPE *t = ASN1_TYPE_new();
    ASN1_STRING *str = ASN1_STRING_type_new(V_ASN1_SEQUENCE);
    if (len <= 0 || !t || !str || !sk_ASN1_TYPE_push(sk, t)) {
        OPENSSL_free(der);
        ASN1_TYPE_free(t);
        ASN1_STRING_free(str);
        FAIL(QTSP_ERR_NOMEM, "qcStatements sequence");
    }
    ASN1_STRING_set0(str, der, len); /* a V_ASN1_SEQUENCE ASN1_TYPE holds its full TLV */
    ASN1_TYPE_set(t, V_ASN1_SEQUENCE, str);
    return QTSP_OK;
}

/* Statement with only an id, e.g. QcCompliance. */
static qtsp_status push_statement(ASN1_SEQUENCE_ANY *stmts, const char *oid,
                                  ASN1_SEQUENCE_ANY *info)
{
    ASN1_SEQUENCE_ANY *st = sk_ASN1_TYPE_new_null();
    if (!st) {
        sk_ASN1_TYPE_pop_free(info, ASN1_TYPE_free);
        FAIL(QTSP_ERR_NOMEM, "qcStatement");
    }
    qtsp_status rc = seq_push_oid(st, oid);
    if (rc == QTSP_OK && info)
        rc = seq_push_seq(st, info);
    else
        sk_ASN1_TYPE_pop_free(info, ASN1_TYPE_free);
    if (rc != QTSP_OK) {
        sk_ASN1_TYPE_pop_free(st, ASN1_TYPE_free);
        return rc;
    }
    return seq_push_seq(stmts, st);
}

static qtsp_status add_qc_statements(const qtsp_profile *p, const char *base, X509 *x)
{
    qtsp_status rc = QTSP_OK;
    unsigned char *der = NULL;
    char url[MAX_URL_LEN + 300];
    ASN1_SEQUENCE_ANY *stmts = sk_ASN1_TYPE_new_null();
    ASN1_SEQUENCE_ANY *info = NULL;
    ENSURE(stmts, QTSP_ERR_NOMEM, "qcStatements");
    if (p->qc_compliance) /* EN 319 412-5 4.2.1 */
        TRY_OUT(push_statement(stmts, OID_QC_COMPLIANCE, NULL));
    if (p->qc_sscd) /* 4.2.2 */
        TRY_OUT(push_statement(stmts, OID_QC_SSCD, NULL));
    if (p->nqc_types) { /* 4.2.3: QcType ::= SEQUENCE OF OBJECT IDENTIFIER */
        ENSURE_OUT(info = sk_ASN1_TYPE_new_null(), QTSP_ERR_NOMEM, "QcType");
        for (size_t i = 0; i < p->nqc_types; i++)
            TRY_OUT(seq_push_oid(info, p->qc_types[i]));
        rc = push_statement(stmts, OID_QC_TYPE, info);
        info = NULL;
        TRY_OUT(rc);
    }
    if (p->nqc_pds) { /* 4.3.4: PdsLocations ::= SEQUENCE OF {url IA5String, language} */
        ENSURE_OUT(info = sk_ASN1_TYPE_new_null(), QTSP_ERR_NOMEM, "QcPDS");
        for (size_t i = 0; i < p->nqc_pds; i++) {
            TRY_OUT(expand_url(p->qc_pds_url[i], base, url, sizeof url));
            ENSURE_OUT(strncmp(url, "https://", 8) == 0, QTSP_ERR_INVALID,
                       "profile %s: QcPDS URL %s must be https (EN 319 412-5 4.3.4)", p->name, url);
            ASN1_SEQUENCE_ANY *loc = sk_ASN1_TYPE_new_null();
            ENSURE_OUT(loc, QTSP_ERR_NOMEM, "PdsLocation");
            rc = seq_push_str(loc, V_ASN1_IA5STRING, url);
            if (rc == QTSP_OK)
                rc = seq_push_str(loc, V_ASN1_PRINTABLESTRING, p->qc_pds_lang[i]);
            if (rc != QTSP_OK) {
                sk_ASN1_TYPE_pop_free(loc, ASN1_TYPE_free);
                goto out;
            }
            TRY_OUT(seq_push_seq(info, loc));
        }
        rc = push_statement(stmts, OID_QC_PDS, info);
        info = NULL;
        TRY_OUT(rc);
    }
    if (p->qc_semantics) { /* RFC 3739 3.2.6.1 SemanticsInformation; EN 319 412-1 5.1 */
        ENSURE_OUT(info = sk_ASN1_TYPE_new_null(), QTSP_ERR_NOMEM, "SemanticsInformation");
        TRY_OUT(seq_push_oid(info, p->qc_semantics));
        rc = push_statement(stmts, OID_QC_SYNTAX_V2, info);
        info = NULL;
        TRY_OUT(rc);
    }
    int len = i2d_ASN1_SEQUENCE_ANY(stmts, &der);
    ENSURE_OUT(len > 0, QTSP_ERR_CRYPTO, "cannot encode qcStatements");
    rc = add_ext_der(x, OID_QC_STATEMENTS, 0, der, len); /* EN 319 412-5: non-critical */
out:
    OPENSSL_free(der);
    sk_ASN1_TYPE_pop_free(info, ASN1_TYPE_free);
    sk_ASN1_TYPE_pop_free(stmts, ASN1_TYPE_free);
    return rc;
}

static qtsp_status check_request(const qtsp_profile *p, const qtsp_cert_request *req)
{
    ENSURE(req && req->subject_key, QTSP_ERR_INVALID, "profile %s: request has no subject key",
           p->name);
    ENSURE(req->issuer_key, QTSP_ERR_INVALID, "profile %s: request has no issuer key", p->name);
    ENSURE(!req->issuer == !!p->self_signed, QTSP_ERR_INVALID,
           p->self_signed ? "profile %s is self-signed: no issuer certificate expected"
                          : "profile %s needs an issuer certificate",
           p->name);
    if (req->issuer) {
        uint32_t flags = X509_get_extension_flags(req->issuer);
        ENSURE(flags & EXFLAG_CA, QTSP_ERR_INVALID,
               "issuer certificate is not a CA (basicConstraints cA false or absent)");
        ENSURE(!(flags & EXFLAG_KUSAGE) || (X509_get_key_usage(req->issuer) & KU_KEY_CERT_SIGN),
               QTSP_ERR_INVALID, "issuer certificate lacks keyCertSign");
    }
    const char *kt = key_type_of(req->subject_key);
    int ok = 0;
    for (size_t i = 0; kt && i < p->nallowed; i++)
        ok |= strcmp(kt, p->allowed[i]) == 0;
    ENSURE(ok, QTSP_ERR_INVALID, "profile %s: subject key type %s is not allowed", p->name,
           kt ? kt : "(unsupported)");
    TRY(check_base_url(req->base_url));
    return QTSP_OK;
}

qtsp_status qtsp_profile_issue(const qtsp_profile *p, const qtsp_cert_request *req, X509 **out)
{
    qtsp_status rc = QTSP_OK;
    X509 *x = NULL;
    X509_NAME *subject = NULL;
    ASN1_OCTET_STRING *own_ski = NULL;
    qtsp_sigalg alg;

    ENSURE(p && out, QTSP_ERR_INVALID, "profile issue: missing profile");
    TRY(check_request(p, req));
    TRY(pick_alg(req->issuer_key, &alg));
    ERR_clear_error();
    x = X509_new();
    subject = X509_NAME_new();
    ENSURE_OUT(x && subject, QTSP_ERR_NOMEM, "cannot allocate certificate");
    ENSURE_OUT(X509_set_version(x, X509_VERSION_3) == 1, QTSP_ERR_CRYPTO, "version");
    TRY_OUT(set_serial(x, req->serial, req->serial_len));
    TRY_OUT(build_subject(p, &req->subject, subject));
    ENSURE_OUT(X509_set_subject_name(x, subject) == 1 &&
                   X509_set_issuer_name(x, req->issuer ? X509_get_subject_name(req->issuer)
                                                       : subject) == 1,
               QTSP_ERR_CRYPTO, "cannot set names");
    TRY_OUT(set_validity(p, req, req->issuer, x));
    ENSURE_OUT(X509_set_pubkey(x, req->subject_key) == 1, QTSP_ERR_CRYPTO,
               "cannot set subject public key");

    /* extensions in a fixed order */
    TRY_OUT(add_basic_constraints(p, x));
    TRY_OUT(add_key_usage(p, x));
    if (p->eku_present)
        TRY_OUT(add_eku(p, x));
    if (p->ski)
        TRY_OUT(add_ski(x, &own_ski));
    if (p->aki) {
        if (req->issuer)
            TRY_OUT(add_aki(X509_get0_subject_key_id(req->issuer), x));
        else
            TRY_OUT(add_aki(own_ski, x));
    }
    if (p->npolicies)
        TRY_OUT(add_policies(p, req->base_url, x));
    if (p->ncrl_dp)
        TRY_OUT(add_crl_dp(p, req->base_url, x));
    if (p->naia_ocsp + p->naia_ca)
        TRY_OUT(add_aia(p, req->base_url, x));
    if (p->qc_present)
        TRY_OUT(add_qc_statements(p, req->base_url, x));
    if (p->ocsp_no_check) {
        static const unsigned char der_null[] = {0x05, 0x00}; /* RFC 6960 4.2.2.2.1 */
        TRY_OUT(add_ext_der(x, OID_OCSP_NOCHECK, 0, der_null, (int)sizeof der_null));
    }

    X509 *signed_x = NULL;
    TRY_OUT(qtsp_key_sign_x509(req->issuer_key, &alg, x, &signed_x));
    X509_free(x);
    x = signed_x;
    EVP_PKEY *verify_key = req->issuer ? X509_get0_pubkey(req->issuer) : req->subject_key;
    ENSURE_OUT(verify_key && X509_verify(x, verify_key) == 1, QTSP_ERR_CRYPTO,
               "profile %s: signature does not verify with the issuer's public key "
               "(issuer key and certificate do not match?)",
               p->name);
    *out = x;
    x = NULL;
out:
    ASN1_OCTET_STRING_free(own_ski);
    X509_NAME_free(subject);
    X509_free(x);
    return rc;
}
