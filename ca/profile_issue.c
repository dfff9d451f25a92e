/* Certificate profile engine: a profile plus a request into a signed
 * certificate (subject, validity, serial, extensions in a fixed order, the
 * signature through the issuer's qtsp_key); see ca/profile.c. */
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

/* ---- issuing ---------------------------------------------------------- */

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

/* EN 319 412-1 5.1.3: type + ISO 3166 country + "-" + identifier; type
 * "PNO" only (CHECK_PNO), or PNO, IDC, PAS, TIN (CHECK_NATURAL_ID). */
static int is_natural_id(const char *s, attr_check check)
{
    int type =
        strncmp(s, "PNO", 3) == 0 ||
        (check == CHECK_NATURAL_ID &&
         (strncmp(s, "IDC", 3) == 0 || strncmp(s, "PAS", 3) == 0 || strncmp(s, "TIN", 3) == 0));
    return strlen(s) >= 7 && type && isupper((unsigned char)s[3]) && isupper((unsigned char)s[4]) &&
           s[5] == '-';
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
        const char *v = req_field(s, &profile_attrs[k]);
        if (!v)
            continue;
        const subj_attr *a = NULL;
        for (size_t i = 0; i < p->nsubject; i++)
            if (p->subject[i].def == &profile_attrs[k])
                a = &p->subject[i];
        ENSURE(a, QTSP_ERR_INVALID, "profile %s does not allow subject attribute %s", p->name,
               profile_attrs[k].name);
        ENSURE(!a->value || strcmp(a->value, v) == 0, QTSP_ERR_INVALID,
               "profile %s fixes subject %s to '%s'; request asks for '%s'", p->name,
               profile_attrs[k].name, a->value, v);
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
        if (a->check != CHECK_NONE)
            ENSURE(is_natural_id(v, a->check), QTSP_ERR_INVALID,
                   "profile %s: serialNumber '%s' is not %s<country>-<id> (EN 319 412-1 5.1.3)",
                   p->name, v, a->check == CHECK_PNO ? "PNO" : "PNO|IDC|PAS|TIN");
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
    TRY_OUT(profile_add_basic_constraints(p, x));
    TRY_OUT(profile_add_key_usage(p, x));
    if (p->eku_present)
        TRY_OUT(profile_add_eku(p, x));
    if (p->ski)
        TRY_OUT(profile_add_ski(x, &own_ski));
    if (p->aki) {
        if (req->issuer)
            TRY_OUT(profile_add_aki(X509_get0_subject_key_id(req->issuer), x));
        else
            TRY_OUT(profile_add_aki(own_ski, x));
    }
    if (p->npolicies)
        TRY_OUT(profile_add_policies(p, req->base_url, x));
    if (p->ncrl_dp)
        TRY_OUT(profile_add_crl_dp(p, req->base_url, x));
    if (p->naia_ocsp + p->naia_ca)
        TRY_OUT(profile_add_aia(p, req->base_url, x));
    if (p->qc_present)
        TRY_OUT(profile_add_qc_statements(p, req->base_url, x));
    if (p->ocsp_no_check) {
        static const unsigned char der_null[] = {0x05, 0x00}; /* RFC 6960 4.2.2.2.1 */
        TRY_OUT(profile_add_ext_der(x, OID_OCSP_NOCHECK, 0, der_null, (int)sizeof der_null));
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
