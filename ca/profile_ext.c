/* Certificate profile engine: the X.509 v3 extensions (see ca/profile.c for
 * the schema, ca/profile_int.h for the builders). */
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

/* ---- extensions ------------------------------------------------------- */

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

static qtsp_status add_ext_i2d(X509 *x, int nid, void *value, int crit, const char *what)
{
    ENSURE(value, QTSP_ERR_NOMEM, "cannot build %s", what);
    ENSURE(X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_APPEND) == 1, QTSP_ERR_CRYPTO,
           "cannot add %s", what);
    return QTSP_OK;
}

/* Adds an extension whose DER value we built ourselves. */
qtsp_status profile_add_ext_der(X509 *x, const char *oid, int crit, const unsigned char *der,
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

qtsp_status profile_add_key_usage(const qtsp_profile *p, X509 *x)
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

qtsp_status profile_add_basic_constraints(const qtsp_profile *p, X509 *x)
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

qtsp_status profile_add_eku(const qtsp_profile *p, X509 *x)
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
qtsp_status profile_add_ski(X509 *x, ASN1_OCTET_STRING **ski_out)
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

qtsp_status profile_add_aki(const ASN1_OCTET_STRING *issuer_ski, X509 *x)
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

qtsp_status profile_add_policies(const qtsp_profile *p, const char *base, X509 *x)
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

qtsp_status profile_add_crl_dp(const qtsp_profile *p, const char *base, X509 *x)
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

qtsp_status profile_add_aia(const qtsp_profile *p, const char *base, X509 *x)
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

qtsp_status profile_add_qc_statements(const qtsp_profile *p, const char *base, X509 *x)
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
    rc = profile_add_ext_der(x, OID_QC_STATEMENTS, 0, der, len); /* EN 319 412-5: non-critical */
out:
    OPENSSL_free(der);
    sk_ASN1_TYPE_pop_free(info, ASN1_TYPE_free);
    sk_ASN1_TYPE_pop_free(stmts, ASN1_TYPE_free);
    return rc;
}
