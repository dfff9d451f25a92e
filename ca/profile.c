/* Certificate profile engine: a profile is a YAML file (policies/<name>.yaml);
 * this file loads and validates it, ca/profile_ext.c builds its extensions
 * and ca/profile_issue.c turns it plus a request into a signed X.509 v3
 * certificate.
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
 *                                      "PNO" + 2-letter country + "-" + id;
 *                                      natural-id: the same with PNO, IDC, PAS or TIN
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
 * the issuer's qtsp_key (ca/key.h: a token key in production); the result is verified with the
 * issuer's public key before it is returned.
 *
 * Name encoding: C and serialNumber are PrintableString (X.520 / RFC 5280
 * upper bounds), all other attributes UTF8String (RFC 5280 4.1.2.6). */
#include "ca/profile_int.h"

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

const attr_def profile_attrs[NATTRS] = {
    {"C", NID_countryName, 1, 2, offsetof(qtsp_subject_attrs, country)},
    {"O", NID_organizationName, 0, 64, offsetof(qtsp_subject_attrs, organization)},
    {"organizationIdentifier", NID_organizationIdentifier, 0, 64,
     offsetof(qtsp_subject_attrs, org_identifier)},
    {"CN", NID_commonName, 0, 64, offsetof(qtsp_subject_attrs, common_name)},
    {"givenName", NID_givenName, 0, 64, offsetof(qtsp_subject_attrs, given_name)},
    {"surname", NID_surname, 0, 64, offsetof(qtsp_subject_attrs, surname)},
    {"serialNumber", NID_serialNumber, 1, 64, offsetof(qtsp_subject_attrs, serial_number)},
};

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
            if (strcmp(profile_attrs[k].name, name) == 0)
                a->def = &profile_attrs[k];
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
        if (check && ((strcmp(check, "pno") != 0 && strcmp(check, "natural-id") != 0) ||
                      a->def->nid != NID_serialNumber))
            return qtsp_ynode_fail(qtsp_ynode_get(e, "check"), "check",
                                   "only 'pno' or 'natural-id' on serialNumber is supported");
        a->check = !check ? CHECK_NONE : strcmp(check, "pno") == 0 ? CHECK_PNO : CHECK_NATURAL_ID;
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
