/* The standards.md "Qualified certificate for a natural person" checklist as
 * CUnit assertions, shared by test_profile (profile engine) and test_ra
 * (certificates issued through the RA). */
#include "tests/lib/qtest_qc.h"

#include <openssl/asn1t.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

const char *qtest_name_entry(X509 *x, int nid, int *type, int *count)
{
    X509_NAME *n = X509_get_subject_name(x);
    *count = 0;
    const char *v = NULL;
    for (int i = 0; i < X509_NAME_entry_count(n); i++) {
        X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != nid)
            continue;
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(e);
        *type = ASN1_STRING_type(s);
        v = (const char *)ASN1_STRING_get0_data(s);
        (*count)++;
    }
    return v;
}

int qtest_oid_is(const ASN1_OBJECT *o, const char *want)
{
    char buf[128];
    OBJ_obj2txt(buf, sizeof buf, o, 1);
    return strcmp(buf, want) == 0;
}

X509_EXTENSION *qtest_ext_by_oid(X509 *x, const char *oid)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int i = X509_get_ext_by_OBJ(x, o, -1);
    ASN1_OBJECT_free(o);
    return i < 0 ? NULL : X509_get_ext(x, i);
}

void qtest_assert_qualified_cert(X509 *q, X509 *issuer, const qtest_qc_expect *e)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    char cn[300], pno[96], url_ocsp[300], url_cai[300], url_crl[300];
    snprintf(cn, sizeof cn, "%s %s", e->given_name, e->surname);
    snprintf(pno, sizeof pno, "PNO%s-%s", e->country, e->national_id);
    snprintf(url_ocsp, sizeof url_ocsp, "%s/ocsp", e->base_url);
    snprintf(url_cai, sizeof url_cai, "%s/certs/issuing-ca.crt", e->base_url);
    snprintf(url_crl, sizeof url_crl, "%s/crl/qualified.crl", e->base_url);
    /* X.509 v3; serial positive, >= 64 bits, < 2^159 */
    CU_ASSERT_EQUAL(X509_get_version(q), X509_VERSION_3);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(q), NULL);
    CU_ASSERT(!BN_is_negative(bn) && !BN_is_zero(bn));
    CU_ASSERT(BN_num_bits(bn) < 160);
    CU_ASSERT(BN_num_bytes(bn) >= 8);
    BN_free(bn);
    /* validity: the profile's calendar years */
    struct tm b, a;
    ASN1_TIME_to_tm(X509_get0_notBefore(q), &b);
    ASN1_TIME_to_tm(X509_get0_notAfter(q), &a);
    b.tm_year += e->validity_years;
    CU_ASSERT_EQUAL(timegm(&a), timegm(&b));

    /* subject: C, givenName, surname, CN (given + surname), serialNumber PNO */
    X509_NAME *n = X509_get_subject_name(q);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(n), 5);
    int order[] = {NID_countryName, NID_givenName, NID_surname, NID_commonName, NID_serialNumber};
    for (int i = 0; i < 5 && i < X509_NAME_entry_count(n); i++)
        CU_ASSERT_EQUAL(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, i))),
                        order[i]);
    int type = 0, count = 0;
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(q, NID_countryName, &type, &count), e->country);
    CU_ASSERT_EQUAL(count, 1);
    CU_ASSERT_EQUAL(type, V_ASN1_PRINTABLESTRING);
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(q, NID_givenName, &type, &count), e->given_name);
    CU_ASSERT_EQUAL(type, V_ASN1_UTF8STRING);
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(q, NID_surname, &type, &count), e->surname);
    CU_ASSERT_EQUAL(type, V_ASN1_UTF8STRING);
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(q, NID_commonName, &type, &count), cn);
    CU_ASSERT_EQUAL(count, 1);
    CU_ASSERT_EQUAL(type, V_ASN1_UTF8STRING);
    const char *sn = qtest_name_entry(q, NID_serialNumber, &type, &count);
    CU_ASSERT_STRING_EQUAL(sn, pno);
    CU_ASSERT_EQUAL(type, V_ASN1_PRINTABLESTRING);
    CU_ASSERT(strncmp(sn, "PNO", 3) == 0 && sn[5] == '-');

    /* keyUsage critical nonRepudiation only; basicConstraints CA false */
    CU_ASSERT_EQUAL(X509_get_key_usage(q), KU_NON_REPUDIATION);
    CU_ASSERT(
        X509_EXTENSION_get_critical(X509_get_ext(q, X509_get_ext_by_NID(q, NID_key_usage, -1))));
    CU_ASSERT(X509_get_extension_flags(q) & EXFLAG_BCONS);
    CU_ASSERT(!(X509_get_extension_flags(q) & EXFLAG_CA));
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(q, NID_ext_key_usage, -1), -1);

    /* certificatePolicies: exactly one 194112 OID (QCP-n-qscd) + own CP with CPS */
    CERTIFICATEPOLICIES *cp = X509_get_ext_d2i(q, NID_certificate_policies, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cp);
    CU_ASSERT_EQUAL(sk_POLICYINFO_num(cp), 2);
    int etsi = 0, own = 0;
    for (int i = 0; i < sk_POLICYINFO_num(cp); i++) {
        POLICYINFO *pi = sk_POLICYINFO_value(cp, i);
        char oid[128];
        OBJ_obj2txt(oid, sizeof oid, pi->policyid, 1);
        if (strncmp(oid, "0.4.0.194112.", 13) == 0) {
            etsi++;
            CU_ASSERT_STRING_EQUAL(oid, "0.4.0.194112.1.2");
        }
        if (strcmp(oid, e->own_policy_oid) == 0) {
            own++;
            CU_ASSERT_EQUAL_FATAL(sk_POLICYQUALINFO_num(pi->qualifiers), 1);
            POLICYQUALINFO *qi = sk_POLICYQUALINFO_value(pi->qualifiers, 0);
            CU_ASSERT_EQUAL(OBJ_obj2nid(qi->pqualid), NID_id_qt_cps);
            CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(qi->d.cpsuri), e->cps_url);
        }
    }
    CU_ASSERT_EQUAL(etsi, 1);
    CU_ASSERT_EQUAL(own, 1);
    CERTIFICATEPOLICIES_free(cp);

    /* qcStatements, non-critical, each statement and its content */
    X509_EXTENSION *qe = qtest_ext_by_oid(q, "1.3.6.1.5.5.7.1.3");
    CU_ASSERT_PTR_NOT_NULL_FATAL(qe);
    CU_ASSERT(!X509_EXTENSION_get_critical(qe));
    ASN1_OCTET_STRING *qv = X509_EXTENSION_get_data(qe);
    const unsigned char *pp = ASN1_STRING_get0_data(qv);
    const unsigned char *end = pp + ASN1_STRING_length(qv);
    ASN1_SEQUENCE_ANY *stmts = d2i_ASN1_SEQUENCE_ANY(NULL, &pp, ASN1_STRING_length(qv));
    CU_ASSERT_PTR_NOT_NULL_FATAL(stmts);
    CU_ASSERT(pp == end);
    CU_ASSERT_EQUAL(sk_ASN1_TYPE_num(stmts), 5);
    int seen_compliance = 0, seen_sscd = 0, seen_type = 0, seen_pds = 0, seen_sem = 0;
    for (int i = 0; i < sk_ASN1_TYPE_num(stmts); i++) {
        ASN1_TYPE *t = sk_ASN1_TYPE_value(stmts, i);
        CU_ASSERT_EQUAL_FATAL(t->type, V_ASN1_SEQUENCE);
        const unsigned char *sp = t->value.sequence->data;
        ASN1_SEQUENCE_ANY *st = d2i_ASN1_SEQUENCE_ANY(NULL, &sp, t->value.sequence->length);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        ASN1_TYPE *id = sk_ASN1_TYPE_value(st, 0);
        CU_ASSERT_EQUAL_FATAL(id->type, V_ASN1_OBJECT);
        ASN1_OBJECT *o = id->value.object;
        CU_ASSERT(!qtest_oid_is(o, "0.4.0.1862.1.7")); /* never QcCClegislation */
        ASN1_TYPE *info = sk_ASN1_TYPE_num(st) > 1 ? sk_ASN1_TYPE_value(st, 1) : NULL;
        ASN1_SEQUENCE_ANY *in = NULL;
        if (info && info->type == V_ASN1_SEQUENCE) {
            const unsigned char *ip = info->value.sequence->data;
            in = d2i_ASN1_SEQUENCE_ANY(NULL, &ip, info->value.sequence->length);
        }
        if (qtest_oid_is(o, "0.4.0.1862.1.1")) {
            seen_compliance++;
            CU_ASSERT_EQUAL(sk_ASN1_TYPE_num(st), 1);
        } else if (qtest_oid_is(o, "0.4.0.1862.1.4")) {
            seen_sscd++;
            CU_ASSERT_EQUAL(sk_ASN1_TYPE_num(st), 1);
        } else if (qtest_oid_is(o, "0.4.0.1862.1.6")) {
            seen_type++;
            CU_ASSERT_PTR_NOT_NULL_FATAL(in);
            CU_ASSERT_EQUAL(sk_ASN1_TYPE_num(in), 1);
            CU_ASSERT(qtest_oid_is(sk_ASN1_TYPE_value(in, 0)->value.object, "0.4.0.1862.1.6.1"));
        } else if (qtest_oid_is(o, "0.4.0.1862.1.5")) {
            seen_pds++;
            CU_ASSERT_PTR_NOT_NULL_FATAL(in);
            CU_ASSERT_EQUAL_FATAL(sk_ASN1_TYPE_num(in), 1);
            ASN1_TYPE *loc = sk_ASN1_TYPE_value(in, 0);
            const unsigned char *lp = loc->value.sequence->data;
            ASN1_SEQUENCE_ANY *l = d2i_ASN1_SEQUENCE_ANY(NULL, &lp, loc->value.sequence->length);
            CU_ASSERT_PTR_NOT_NULL_FATAL(l);
            ASN1_TYPE *url = sk_ASN1_TYPE_value(l, 0), *lang = sk_ASN1_TYPE_value(l, 1);
            CU_ASSERT_EQUAL(url->type, V_ASN1_IA5STRING);
            CU_ASSERT(strncmp((const char *)url->value.ia5string->data, "https://", 8) == 0);
            CU_ASSERT_EQUAL(lang->type, V_ASN1_PRINTABLESTRING);
            CU_ASSERT_EQUAL(lang->value.printablestring->length, 2);
            CU_ASSERT_EQUAL(memcmp(lang->value.printablestring->data, "en", 2), 0);
            sk_ASN1_TYPE_pop_free(l, ASN1_TYPE_free);
        } else if (qtest_oid_is(o, "1.3.6.1.5.5.7.11.2")) {
            seen_sem++;
            CU_ASSERT_PTR_NOT_NULL_FATAL(in);
            CU_ASSERT_EQUAL(sk_ASN1_TYPE_value(in, 0)->type, V_ASN1_OBJECT);
            CU_ASSERT(qtest_oid_is(sk_ASN1_TYPE_value(in, 0)->value.object, "0.4.0.194121.1.1"));
        } else {
            CU_FAIL("unexpected qcStatement");
        }
        sk_ASN1_TYPE_pop_free(in, ASN1_TYPE_free);
        sk_ASN1_TYPE_pop_free(st, ASN1_TYPE_free);
    }
    CU_ASSERT(seen_compliance == 1 && seen_sscd == 1 && seen_type == 1 && seen_pds == 1 &&
              seen_sem == 1);
    sk_ASN1_TYPE_pop_free(stmts, ASN1_TYPE_free);

    /* AIA: OCSP and caIssuers */
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(q, NID_info_access, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(aia);
    int ocsp = 0, cai = 0;
    for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        const char *u =
            (const char *)ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier);
        if (OBJ_obj2nid(ad->method) == NID_ad_OCSP && strcmp(u, url_ocsp) == 0)
            ocsp++;
        if (OBJ_obj2nid(ad->method) == NID_ad_ca_issuers && strcmp(u, url_cai) == 0)
            cai++;
    }
    CU_ASSERT_EQUAL(sk_ACCESS_DESCRIPTION_num(aia), 2);
    CU_ASSERT(ocsp == 1 && cai == 1);
    AUTHORITY_INFO_ACCESS_free(aia);

    /* CRL DP */
    CRL_DIST_POINTS *cdp = X509_get_ext_d2i(q, NID_crl_distribution_points, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cdp);
    CU_ASSERT_EQUAL(sk_DIST_POINT_num(cdp), 1);
    GENERAL_NAMES *fn = sk_DIST_POINT_value(cdp, 0)->distpoint->name.fullname;
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(fn), 1);
    CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(
                               sk_GENERAL_NAME_value(fn, 0)->d.uniformResourceIdentifier),
                           url_crl);
    CRL_DIST_POINTS_free(cdp);

    /* AKI = issuer SKI; SKI present (SHA-1 of the key, RFC 5280 method 1) */
    CU_ASSERT_EQUAL(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(q), X509_get0_subject_key_id(issuer)), 0);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ski);
    unsigned char md[20];
    unsigned int mdlen = 0;
    const unsigned char *pk;
    int pklen;
    X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(q));
    EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL);
    CU_ASSERT_EQUAL(ASN1_STRING_length(ski), 20);
    CU_ASSERT_EQUAL(memcmp(ASN1_STRING_get0_data(ski), md, 20), 0);

    /* forbidden extensions */
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(q, NID_policy_mappings, -1), -1);
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(q, NID_name_constraints, -1), -1);
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(q, NID_policy_constraints, -1), -1);
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(q, NID_inhibit_any_policy, -1), -1);
    CU_ASSERT_EQUAL(X509_get_ext_count(q), 8); /* BC KU SKI AKI CP CRLDP AIA QC */

    /* signed by the P-384 issuing CA: ECDSA with SHA-384 */
    CU_ASSERT_EQUAL(X509_get_signature_nid(q), NID_ecdsa_with_SHA384);
    CU_ASSERT_EQUAL(X509_verify(q, X509_get0_pubkey(issuer)), 1);
}
