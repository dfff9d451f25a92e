/* Unit tests for ca/profile: the shipped policies/<name>.yaml files build a working
 * root -> issuing -> {OCSP, qualified} and root -> TSA chain with software
 * keys; the qualified certificate is checked against every line of the
 * standards checklist, and by openssl verify / certtool. Negative cases for
 * the schema and the request. */
#include <openssl/asn1.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ca/hsm.h"
#include "ca/profile.h"
#include "core/clock.h"
#include "core/err.h"
#include "tests/lib/qtest.h"
#include "tests/lib/qtest_qc.h"

#define BASE "http://qtsp.test:8080"

/* 2026-03-01T12:00:00Z: the injected clock for every test */
static int64_t fixed_clock(void *ctx)
{
    (void)ctx;
    struct tm tm = {.tm_year = 126, .tm_mon = 2, .tm_mday = 1, .tm_hour = 12};
    return (int64_t)timegm(&tm) * 1000;
}

static qtsp_profile *load_policy(const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/policies/%s.yaml", qtest_src_dir(), name);
    qtsp_profile *p = NULL;
    qtsp_err_clear();
    if (qtsp_profile_load(path, &p) != QTSP_OK)
        fprintf(stderr, "load %s: %s\n", path, qtsp_err_message());
    return p;
}

static const unsigned char k_serial[16] = {0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                           0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01};

typedef struct chain {
    int built;
    char dir[512];
    EVP_PKEY *root_key, *issuing_key, *ocsp_key, *tsa_key, *qual_key;
    X509 *root, *issuing, *ocsp, *tsa, *qual;
} chain;
static chain g;

static X509 *issue_k(const char *profile, const qtsp_subject_attrs *subj, EVP_PKEY *key,
                     X509 *issuer, const qtsp_key *issuer_key)
{
    qtsp_profile *p = load_policy(profile);
    if (!p)
        return NULL;
    qtsp_cert_request r = {.subject_key = key,
                           .issuer = issuer,
                           .issuer_key = issuer_key,
                           .serial = k_serial,
                           .serial_len = sizeof k_serial,
                           .base_url = BASE};
    if (subj)
        r.subject = *subj;
    X509 *x = NULL;
    qtsp_err_clear();
    if (qtsp_profile_issue(p, &r, &x) != QTSP_OK)
        fprintf(stderr, "issue %s: %s\n", profile, qtsp_err_message());
    qtsp_profile_free(p);
    return x;
}

static X509 *issue(const char *profile, const qtsp_subject_attrs *subj, EVP_PKEY *key, X509 *issuer,
                   EVP_PKEY *issuer_key)
{
    return issue_k(profile, subj, key, issuer, qtest_key(issuer_key));
}

static int write_pem(const char *name, X509 *x)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    int ok = PEM_write_X509(f, x);
    fclose(f);
    return ok;
}

static const qtsp_subject_attrs k_person = {.country = "BG",
                                            .given_name = "Иван",
                                            .surname = "Петров",
                                            .serial_number = "PNOBG-8001010000"};

static chain *chain_get(void)
{
    if (g.built)
        return &g;
    g.built = 1;
    snprintf(g.dir, sizeof g.dir, "%s", qtest_tmpdir("profile"));
    g.root_key = EVP_EC_gen("P-384");
    g.issuing_key = EVP_EC_gen("P-384");
    g.ocsp_key = EVP_EC_gen("P-256");
    g.tsa_key = EVP_EC_gen("P-256");
    g.qual_key = EVP_EC_gen("P-256");
    g.root = issue("root-ca", NULL, g.root_key, NULL, g.root_key);
    if (g.root)
        g.issuing = issue("issuing-ca", NULL, g.issuing_key, g.root, g.root_key);
    if (g.issuing) {
        g.ocsp = issue("ocsp-responder", NULL, g.ocsp_key, g.issuing, g.issuing_key);
        g.qual = issue("qualified-natural-person", &k_person, g.qual_key, g.issuing, g.issuing_key);
    }
    if (g.root)
        g.tsa = issue("tsa-unit", NULL, g.tsa_key, g.root, g.root_key);
    if (g.root && g.issuing && g.ocsp && g.tsa && g.qual) {
        write_pem("root.pem", g.root);
        write_pem("issuing.pem", g.issuing);
        write_pem("ocsp.pem", g.ocsp);
        write_pem("tsa.pem", g.tsa);
        write_pem("qual.pem", g.qual);
    }
    return &g;
}

static void chain_free(void)
{
    if (!g.built)
        return;
    EVP_PKEY *keys[] = {g.root_key, g.issuing_key, g.ocsp_key, g.tsa_key, g.qual_key};
    X509 *certs[] = {g.root, g.issuing, g.ocsp, g.tsa, g.qual};
    for (size_t i = 0; i < 5; i++) {
        EVP_PKEY_free(keys[i]);
        X509_free(certs[i]);
    }
    if (!getenv("QTSP_KEEP_TMP"))
        qtest_rmtree(g.dir);
}

/* Runs cmd, returns exit status; output (stdout+stderr) into out. */
static int run(const char *cmd, char *out, size_t cap)
{
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *f = popen(full, "r");
    if (!f)
        return -1;
    size_t n = 0;
    out[0] = '\0';
    while (n + 1 < cap) {
        size_t r = fread(out + n, 1, cap - 1 - n, f);
        if (r == 0)
            break;
        n += r;
    }
    out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof sink, f) > 0) {
    }
    return pclose(f);
}

static void test_profile_shipped_chain_builds(void)
{
    chain *c = chain_get();
    CU_ASSERT_PTR_NOT_NULL(c->root);
    CU_ASSERT_PTR_NOT_NULL(c->issuing);
    CU_ASSERT_PTR_NOT_NULL(c->ocsp);
    CU_ASSERT_PTR_NOT_NULL(c->tsa);
    CU_ASSERT_PTR_NOT_NULL(c->qual);
}

static void test_profile_root_and_issuing_ca(void)
{
    chain *c = chain_get();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->issuing);
    int type = 0, count = 0;
    /* root: self-signed, P-384 / SHA-384, subject from the file */
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_get_subject_name(c->root), X509_get_issuer_name(c->root)),
                    0);
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(c->root, NID_commonName, &type, &count),
                           "qtsp Root CA");
    CU_ASSERT_EQUAL(type, V_ASN1_UTF8STRING);
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(c->root, NID_organizationIdentifier, &type, &count),
                           "NTRBG-000000000");
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(c->root, NID_organizationName, &type, &count),
                           "qtsp demo QTSP");
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(c->root, NID_countryName, &type, &count), "BG");
    CU_ASSERT_EQUAL(type, V_ASN1_PRINTABLESTRING);
    CU_ASSERT_EQUAL(X509_get_signature_nid(c->root), NID_ecdsa_with_SHA384);
    CU_ASSERT(X509_get_extension_flags(c->root) & EXFLAG_CA);
    CU_ASSERT_EQUAL(X509_get_pathlen(c->root), 1);
    CU_ASSERT_EQUAL(X509_get_key_usage(c->root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CU_ASSERT_PTR_NOT_NULL(X509_get0_subject_key_id(c->root));
    CU_ASSERT(X509_EXTENSION_get_critical(
        X509_get_ext(c->root, X509_get_ext_by_NID(c->root, NID_basic_constraints, -1))));
    CU_ASSERT(X509_EXTENSION_get_critical(
        X509_get_ext(c->root, X509_get_ext_by_NID(c->root, NID_key_usage, -1))));
    const ASN1_TIME *nb = X509_get0_notBefore(c->root), *na = X509_get0_notAfter(c->root);
    struct tm b, a;
    ASN1_TIME_to_tm(nb, &b);
    ASN1_TIME_to_tm(na, &a);
    CU_ASSERT_EQUAL(a.tm_year - b.tm_year, 20);
    CU_ASSERT_EQUAL(timegm(&b), fixed_clock(NULL) / 1000);

    /* issuing: pathLen 0, AKI = root SKI, CRL DP, AIA caIssuers, anyPolicy */
    CU_ASSERT_EQUAL(X509_get_pathlen(c->issuing), 0);
    CU_ASSERT_EQUAL(X509_get_key_usage(c->issuing), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CU_ASSERT_EQUAL(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c->issuing),
                                          X509_get0_subject_key_id(c->root)),
                    0);
    CU_ASSERT_EQUAL(X509_get_signature_nid(c->issuing), NID_ecdsa_with_SHA384);
    CU_ASSERT_EQUAL(X509_check_issued(c->root, c->issuing), X509_V_OK);
    CERTIFICATEPOLICIES *cp = X509_get_ext_d2i(c->issuing, NID_certificate_policies, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cp);
    CU_ASSERT_EQUAL(sk_POLICYINFO_num(cp), 1);
    CU_ASSERT(qtest_oid_is(sk_POLICYINFO_value(cp, 0)->policyid, "2.5.29.32.0"));
    CERTIFICATEPOLICIES_free(cp);
    char out[8192], cmd[1024];
    snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in %s/issuing.pem", g.dir);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "URI:" BASE "/crl/root.crl"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "CA Issuers - URI:" BASE "/certs/root-ca.crt"));
}

static void test_profile_qualified_cert_meets_standards_checklist(void)
{
    chain *c = chain_get();
    X509 *q = c->qual;
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    /* X.509 v3; serial as requested, positive */
    CU_ASSERT_EQUAL(X509_get_version(q), X509_VERSION_3);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(q), NULL);
    unsigned char sb[32];
    CU_ASSERT_EQUAL(BN_bn2bin(bn, sb), (int)sizeof k_serial);
    CU_ASSERT_EQUAL(memcmp(sb, k_serial, sizeof k_serial), 0);
    CU_ASSERT(!BN_is_negative(bn));
    BN_free(bn);

    /* validity: exactly 3 calendar years from the injected clock */
    struct tm b, a;
    ASN1_TIME_to_tm(X509_get0_notBefore(q), &b);
    ASN1_TIME_to_tm(X509_get0_notAfter(q), &a);
    CU_ASSERT_EQUAL(timegm(&b), fixed_clock(NULL) / 1000);
    struct tm want = {.tm_year = 129, .tm_mon = 2, .tm_mday = 1, .tm_hour = 12};
    CU_ASSERT_EQUAL(timegm(&a), timegm(&want));

    qtest_qc_expect e = {
        "Иван", "Петров", "BG", "8001010000", BASE, BASE "/cps", "1.3.6.1.4.1.65535.1.1", 3};
    qtest_assert_qualified_cert(q, c->issuing, &e);
}

static void test_profile_ocsp_responder_has_eku_and_nocheck(void)
{
    chain *c = chain_get();
    X509 *o = c->ocsp;
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_EQUAL(X509_get_extended_key_usage(o), XKU_OCSP_SIGN);
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(o, NID_ext_key_usage, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(eku);
    CU_ASSERT_EQUAL(sk_ASN1_OBJECT_num(eku), 1);
    CU_ASSERT(qtest_oid_is(sk_ASN1_OBJECT_value(eku, 0), "1.3.6.1.5.5.7.3.9"));
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    X509_EXTENSION *nc = qtest_ext_by_oid(o, "1.3.6.1.5.5.7.48.1.5");
    CU_ASSERT_PTR_NOT_NULL_FATAL(nc);
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(nc);
    CU_ASSERT_EQUAL(ASN1_STRING_length(v), 2);
    CU_ASSERT_EQUAL(memcmp(ASN1_STRING_get0_data(v), "\x05\x00", 2), 0);
    CU_ASSERT_EQUAL(X509_get_key_usage(o), KU_DIGITAL_SIGNATURE);
    CU_ASSERT(!(X509_get_extension_flags(o) & EXFLAG_CA));
    CU_ASSERT_EQUAL(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(o), X509_get0_subject_key_id(c->issuing)),
        0);
    CU_ASSERT_PTR_NOT_NULL(X509_get0_subject_key_id(o));
    struct tm b, a;
    ASN1_TIME_to_tm(X509_get0_notBefore(o), &b);
    ASN1_TIME_to_tm(X509_get0_notAfter(o), &a);
    CU_ASSERT_EQUAL(a.tm_year - b.tm_year, 1);
    CU_ASSERT_EQUAL(X509_check_issued(c->issuing, o), X509_V_OK);
}

static void test_profile_tsa_eku_critical_and_only_timestamping(void)
{
    chain *c = chain_get();
    X509 *t = c->tsa;
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    int i = X509_get_ext_by_NID(t, NID_ext_key_usage, -1);
    CU_ASSERT_FATAL(i >= 0);
    CU_ASSERT(X509_EXTENSION_get_critical(X509_get_ext(t, i)));
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(t, NID_ext_key_usage, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(eku);
    CU_ASSERT_EQUAL(sk_ASN1_OBJECT_num(eku), 1);
    CU_ASSERT(qtest_oid_is(sk_ASN1_OBJECT_value(eku, 0), "1.3.6.1.5.5.7.3.8"));
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    CU_ASSERT_EQUAL(X509_get_key_usage(t), KU_DIGITAL_SIGNATURE);
    CU_ASSERT(!(X509_get_extension_flags(t) & EXFLAG_CA));
    CU_ASSERT_EQUAL(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(t), X509_get0_subject_key_id(c->root)), 0);
    CU_ASSERT_EQUAL(X509_check_issued(c->root, t), X509_V_OK);
    CU_ASSERT_EQUAL(X509_get_signature_nid(t), NID_ecdsa_with_SHA384);
}

static void test_profile_openssl_verify_accepts_leaves(void)
{
    chain *c = chain_get();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->qual);
    char cmd[2048], out[4096];
    long at = (long)(fixed_clock(NULL) / 1000) + 86400;
    const char *leaves[] = {"qual.pem", "ocsp.pem", "tsa.pem", "issuing.pem"};
    const char *purpose[] = {"", "", "-purpose timestampsign", ""};
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd,
                 "cd %s && openssl verify -attime %ld -x509_strict %s -CAfile root.pem "
                 "-untrusted issuing.pem %s",
                 g.dir, at, purpose[i], leaves[i]);
        int st = run(cmd, out, sizeof out);
        if (st != 0)
            fprintf(stderr, "%s\n%s\n", cmd, out);
        CU_ASSERT_EQUAL(st, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, ": OK"));
    }
    /* a leaf is not accepted without its issuing CA */
    snprintf(cmd, sizeof cmd, "cd %s && openssl verify -attime %ld -CAfile root.pem qual.pem",
             g.dir, at);
    CU_ASSERT_NOT_EQUAL(run(cmd, out, sizeof out), 0);
}

static void test_profile_certtool_and_openssl_text_parse_qualified(void)
{
    chain *c = chain_get();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->qual);
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "certtool -i --infile %s/qual.pem", g.dir);
    int st = run(cmd, out, sizeof out);
    if (st != 0)
        fprintf(stderr, "%s\n", out);
    CU_ASSERT_EQUAL(st, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "1.3.6.1.5.5.7.1.3"));
    CU_ASSERT_PTR_NULL(strstr(out, "error"));
    snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in %s/qual.pem", g.dir);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Non Repudiation"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "0.4.0.194112.1.2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "OCSP - URI:" BASE "/ocsp"));
}

/* ---- negative cases --------------------------------------------------- */

static const char *k_min_profile = "name: t\n"
                                   "key_type: ec-p256\n"
                                   "validity: 1y\n"
                                   "self_signed: true\n"
                                   "subject:\n"
                                   "  - {attr: CN, value: x}\n"
                                   "basic_constraints: {critical: true, ca: true}\n"
                                   "key_usage: {critical: true, usages: [keyCertSign]}\n";

/* Writes text (with an optional replacement of one line) to a temp file and
 * loads it; returns the status and leaves the message in the err state. */
static qtsp_status load_text(const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/p.yaml", chain_get()->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return QTSP_ERR_IO;
    fputs(text, f);
    fclose(f);
    qtsp_profile *p = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_profile_load(path, &p);
    qtsp_profile_free(p);
    return rc;
}

static int msg_has(const char *want)
{
    if (strstr(qtsp_err_what(), want))
        return 1;
    fprintf(stderr, "message '%s' lacks '%s'\n", qtsp_err_what(), want);
    return 0;
}

static void test_profile_minimal_loads(void)
{
    char path[700];
    CU_ASSERT_EQUAL(load_text(k_min_profile, path, sizeof path), QTSP_OK);
}

static void test_profile_unknown_key_names_file_line(void)
{
    char text[2048], path[700], want[800];
    snprintf(text, sizeof text, "%spolicy_mappings: [1.2.3]\n", k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:9:1: policy_mappings: unknown key", path);
    CU_ASSERT(msg_has(want));
    snprintf(text, sizeof text, "%s", k_min_profile);
    char *kuline = strstr(text, "key_usage:");
    snprintf(kuline, sizeof text - (size_t)(kuline - text),
             "key_usage: {critical: true, usages: [keyCertSign], extra: 1}\n");
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:8:", path);
    CU_ASSERT(msg_has(want) && msg_has("extra: unknown key"));
}

static void test_profile_rejects_bad_oid(void)
{
    char text[2048], path[700];
    snprintf(text, sizeof text, "%scertificate_policies:\n  - oid: 1.2.x.4\n", k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("p.yaml:10:") && msg_has("not a dotted-decimal OID"));
    snprintf(text, sizeof text, "%scertificate_policies:\n  - oid: 7.1\n", k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    snprintf(text, sizeof text,
             "%scertificate_policies:\n  - oid: 0.4.0.194112.1.2\n  - oid: 0.4.0.194112.1.0\n",
             k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("only one 0.4.0.194112"));
    snprintf(text, sizeof text, "%sextended_key_usage: {critical: false, purposes: [1.3..6]}\n",
             k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
}

static void test_profile_rejects_bad_validity(void)
{
    const char *bad[] = {"3w", "0y", "51y", "y", "-1y", "36501d", "3 y", "1.5y"};
    char text[2048], path[700];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s", k_min_profile);
        char *v = strstr(text, "validity: 1y");
        char tail[1024];
        snprintf(tail, sizeof tail, "%s", v + strlen("validity: 1y"));
        snprintf(v, sizeof text - (size_t)(v - text), "validity: \"%s\"%s", bad[i], tail);
        CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
        CU_ASSERT(msg_has("p.yaml:3:11: validity:"));
    }
}

static void test_profile_rejects_missing_key_type(void)
{
    char text[2048], path[700];
    snprintf(text, sizeof text, "%s", k_min_profile);
    char *k = strstr(text, "key_type: ec-p256\n");
    memmove(k, k + 18, strlen(k + 18) + 1);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("key_type: required key missing"));
    snprintf(text, sizeof text, "%s", k_min_profile);
    k = strstr(text, "ec-p256");
    memcpy(k, "ec-p521", 7);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("p.yaml:2:11: key_type:"));
}

static void test_profile_rejects_inconsistent_schema(void)
{
    char text[2048], path[700];
    /* TSA EKU that is not critical */
    snprintf(text, sizeof text,
             "name: t\nkey_type: ec-p256\nvalidity: 1y\nsubject:\n  - {attr: CN, value: x}\n"
             "basic_constraints: {critical: true, ca: false}\n"
             "key_usage: {critical: true, usages: [digitalSignature]}\n"
             "extended_key_usage: {critical: false, purposes: [timeStamping]}\n");
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("RFC 3161"));
    /* keyCertSign without ca */
    snprintf(text, sizeof text,
             "name: t\nkey_type: ec-p256\nvalidity: 1y\nsubject:\n  - {attr: CN, value: x}\n"
             "basic_constraints: {critical: true, ca: false}\n"
             "key_usage: {critical: true, usages: [keyCertSign]}\n");
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    /* http PDS */
    snprintf(text, sizeof text, "%sqc_statements:\n  pds: [{url: \"http://x/pds\", lang: en}]\n",
             k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    /* duplicate subject attribute (one CN at most) */
    snprintf(text, sizeof text, "%s", k_min_profile);
    char *s = strstr(text, "  - {attr: CN, value: x}\n");
    char tail[1024];
    snprintf(tail, sizeof tail, "%s", s);
    snprintf(s, sizeof text - (size_t)(s - text), "  - {attr: CN, value: y}\n%s", tail);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    CU_ASSERT(msg_has("appears twice"));
    /* unknown subject attribute, bad URL, nocheck without OCSPSigning */
    snprintf(text, sizeof text, "%s", k_min_profile);
    s = strstr(text, "attr: CN");
    memcpy(s, "attr: XX", 8);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    snprintf(text, sizeof text, "%scrl_distribution_points: [\"ftp://x/c.crl\"]\n", k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
    snprintf(text, sizeof text, "%socsp_no_check: true\n", k_min_profile);
    CU_ASSERT_EQUAL(load_text(text, path, sizeof path), QTSP_ERR_CONFIG);
}

static qtsp_status issue_qual(const qtsp_subject_attrs *s, EVP_PKEY *key, X509 *issuer,
                              EVP_PKEY *issuer_key, const unsigned char *serial, size_t slen,
                              X509 **out)
{
    qtsp_profile *p = load_policy("qualified-natural-person");
    if (!p)
        return QTSP_ERR_CONFIG;
    qtsp_cert_request r = {.subject = *s,
                           .subject_key = key,
                           .issuer = issuer,
                           .issuer_key = qtest_key(issuer_key),
                           .serial = serial,
                           .serial_len = slen,
                           .base_url = BASE};
    qtsp_err_clear();
    qtsp_status rc = qtsp_profile_issue(p, &r, out);
    qtsp_profile_free(p);
    return rc;
}

static void test_profile_rejects_bad_serials(void)
{
    chain *c = chain_get();
    X509 *x = NULL;
    unsigned char zero[4] = {0};
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->issuing_key, zero, 4, &x),
                    QTSP_ERR_INVALID);
    CU_ASSERT(msg_has("zero"));
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->issuing_key, zero, 0, &x),
                    QTSP_ERR_INVALID);
    unsigned char big[21];
    memset(big, 0x11, sizeof big);
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->issuing_key, big, 21, &x),
                    QTSP_ERR_INVALID);
    big[0] = 0x80; /* 20 octets with the top bit set would need 21 encoded */
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->issuing_key, big, 20, &x),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NULL(x);
    big[0] = 0x7f;
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->issuing_key, big, 20, &x),
                    QTSP_OK);
    X509_free(x);
}

static void test_profile_rejects_bad_requests(void)
{
    chain *c = chain_get();
    X509 *x = NULL;
    qtsp_subject_attrs s = k_person;
    /* an attribute the profile does not take */
    s.organization = "ACME";
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    CU_ASSERT(msg_has("does not allow subject attribute O"));
    /* serialNumber not in PNO form */
    s = k_person;
    s.serial_number = "8001010000";
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    /* missing required givenName */
    s = k_person;
    s.given_name = NULL;
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    /* bad country */
    s = k_person;
    s.country = "bg";
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    /* invalid UTF-8 */
    s = k_person;
    s.surname = "\xc3\x28";
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    /* P-384 subject key is not allowed by the qualified profile */
    CU_ASSERT_EQUAL(
        issue_qual(&k_person, c->root_key, c->issuing, c->issuing_key, k_serial, 16, &x),
        QTSP_ERR_INVALID);
    /* issuer that is not a CA */
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->ocsp, c->ocsp_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    CU_ASSERT(msg_has("not a CA"));
    /* no issuer for a non-self-signed profile; no subject key */
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, NULL, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(issue_qual(&k_person, NULL, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_ERR_INVALID);
    /* issuer key does not match the issuer certificate */
    CU_ASSERT_EQUAL(issue_qual(&k_person, c->qual_key, c->issuing, c->root_key, k_serial, 16, &x),
                    QTSP_ERR_CRYPTO);
    CU_ASSERT_PTR_NULL(x);
    /* explicit CN is used as given */
    s = k_person;
    s.common_name = "Ivan Petrov";
    CU_ASSERT_EQUAL(issue_qual(&s, c->qual_key, c->issuing, c->issuing_key, k_serial, 16, &x),
                    QTSP_OK);
    int type = 0, count = 0;
    CU_ASSERT_STRING_EQUAL(qtest_name_entry(x, NID_commonName, &type, &count), "Ivan Petrov");
    X509_free(x);
    x = NULL;
    /* fixed attribute of a CA profile cannot be overridden */
    qtsp_profile *p = load_policy("root-ca");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    qtsp_cert_request r = {.subject = {.common_name = "Evil Root"},
                           .subject_key = c->root_key,
                           .issuer_key = qtest_key(c->root_key),
                           .serial = k_serial,
                           .serial_len = 16};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_ERR_INVALID);
    /* self-signed profile given an issuer */
    r.subject.common_name = NULL;
    r.issuer = c->root;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_ERR_INVALID);
    qtsp_profile_free(p);
    CU_ASSERT_PTR_NULL(x);
}

static void test_profile_signature_follows_issuer_key(void)
{
    chain *c = chain_get();
    char path[700];
    const char *text = "name: t\nkey_type: ec-p256\nallowed_key_types: [ec-p256, rsa-3072]\n"
                       "validity: 30d\nself_signed: true\n"
                       "subject:\n  - {attr: CN, value: x}\n"
                       "basic_constraints: {critical: true, ca: true}\n"
                       "key_usage: {critical: true, usages: [keyCertSign]}\n"
                       "subject_key_identifier: true\nauthority_key_identifier: true\n";
    CU_ASSERT_EQUAL_FATAL(load_text(text, path, sizeof path), QTSP_OK);
    qtsp_profile *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_profile_load(path, &p), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(qtsp_profile_name(p), "t");
    CU_ASSERT_STRING_EQUAL(qtsp_profile_key_type(p), "ec-p256");
    X509 *x = NULL;
    qtsp_cert_request r = {.subject_key = c->qual_key,
                           .issuer_key = qtest_key(c->qual_key),
                           .serial = k_serial,
                           .serial_len = 16};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_OK);
    CU_ASSERT_EQUAL(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    /* 30 days exactly; self-signed AKI = own SKI */
    int days = 0, secs = 0;
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
    CU_ASSERT(days == 30 && secs == 0);
    CU_ASSERT_EQUAL(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(x)), 0);
    X509_free(x);
    x = NULL;
    EVP_PKEY *rsa = EVP_RSA_gen(3072);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rsa);
    r.subject_key = rsa;
    r.issuer_key = qtest_key(rsa);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_OK);
    CU_ASSERT_EQUAL(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    X509_free(x);
    x = NULL;
    /* base_url with a trailing slash is refused */
    r.base_url = "http://x/";
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_ERR_INVALID);
    EVP_PKEY_free(rsa);
    qtsp_profile_free(p);
}

static void test_profile_validity_calendar_years_from_leap_day(void)
{
    chain *c = chain_get();
    X509 *x = NULL;
    struct tm leap = {.tm_year = 124, .tm_mon = 1, .tm_mday = 29, .tm_hour = 8}; /* 2024-02-29 */
    qtsp_profile *p = load_policy("qualified-natural-person");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    qtsp_cert_request r = {.subject = k_person,
                           .subject_key = c->qual_key,
                           .issuer = c->issuing,
                           .issuer_key = qtest_key(c->issuing_key),
                           .serial = k_serial,
                           .serial_len = 16,
                           .not_before = timegm(&leap),
                           .base_url = BASE};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_OK);
    struct tm a;
    ASN1_TIME_to_tm(X509_get0_notAfter(x), &a);
    CU_ASSERT(a.tm_year == 127 && a.tm_mon == 2 && a.tm_mday == 1 && a.tm_hour == 8);
    X509_free(x);
    x = NULL;
    /* starting 9 years after the issuing CA: would outlive it */
    struct tm late = {.tm_year = 135, .tm_mon = 0, .tm_mday = 1};
    r.not_before = timegm(&late);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &x), QTSP_ERR_INVALID);
    CU_ASSERT(msg_has("outlive"));
    qtsp_profile_free(p);
}

/* The issuer keys live in a SoftHSM2 token (ca/key.h token keys): the engine
 * signs through the key interface without touching private key material. */
static void test_profile_signs_with_pkcs11_token_keys(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", qtest_tmpdir("profile-hsm"));
    CU_ASSERT_EQUAL_FATAL(qtest_softhsm_token(dir, "qtsp-profile"), 0);
    qtsp_hsm *hsm = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_hsm_open(QTEST_SOFTHSM_MODULE, "qtsp-profile", QTEST_PIN, &hsm);
    if (rc != QTSP_OK)
        fprintf(stderr, "hsm open: %s\n", qtsp_err_message());
    CU_ASSERT_EQUAL_FATAL(rc, QTSP_OK);
    EVP_PKEY *root_pub = NULL, *iss_pub = NULL;
    qtsp_key *root_priv = NULL, *iss_priv = NULL;
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "root", QTSP_KEY_EC_P384, &root_pub), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_key_from_token(hsm, "root", &root_priv), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_hsm_generate(hsm, "issuing", QTSP_KEY_EC_P256, &iss_pub), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_key_from_token(hsm, "issuing", &iss_priv), QTSP_OK);
    X509 *root = NULL, *iss = NULL, *leaf = NULL;
    if (root_priv && iss_priv) {
        root = issue_k("root-ca", NULL, root_pub, NULL, root_priv);
        CU_ASSERT_PTR_NOT_NULL(root);
        if (root)
            iss = issue_k("issuing-ca", NULL, iss_pub, root, root_priv);
        /* issuing-ca wants ec-p384: a P-256 token key is refused by the profile */
        CU_ASSERT_PTR_NULL(iss);
        qtsp_profile *p = load_policy("tsa-unit");
        qtsp_cert_request r = {.subject_key = iss_pub,
                               .issuer = root,
                               .issuer_key = root_priv,
                               .serial = k_serial,
                               .serial_len = sizeof k_serial,
                               .base_url = BASE};
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_profile_issue(p, &r, &leaf), QTSP_OK);
        qtsp_profile_free(p);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(leaf);
    CU_ASSERT_EQUAL(X509_get_signature_nid(root), NID_ecdsa_with_SHA384);
    CU_ASSERT_EQUAL(X509_verify(root, root_pub), 1);
    CU_ASSERT_EQUAL(X509_verify(leaf, root_pub), 1);
    CU_ASSERT_EQUAL(X509_check_issued(root, leaf), X509_V_OK);
    X509_free(root);
    X509_free(iss);
    X509_free(leaf);
    EVP_PKEY_free(root_pub);
    qtsp_key_free(root_priv);
    EVP_PKEY_free(iss_pub);
    qtsp_key_free(iss_priv);
    qtsp_hsm_free(hsm);
    qtest_rmtree(dir);
}

int main(void)
{
    qtsp_clock_set(fixed_clock, NULL);
    static const qtest_case cases[] = {
        QTEST(test_profile_shipped_chain_builds),
        QTEST(test_profile_root_and_issuing_ca),
        QTEST(test_profile_qualified_cert_meets_standards_checklist),
        QTEST(test_profile_ocsp_responder_has_eku_and_nocheck),
        QTEST(test_profile_tsa_eku_critical_and_only_timestamping),
        QTEST(test_profile_openssl_verify_accepts_leaves),
        QTEST(test_profile_certtool_and_openssl_text_parse_qualified),
        QTEST(test_profile_minimal_loads),
        QTEST(test_profile_unknown_key_names_file_line),
        QTEST(test_profile_rejects_bad_oid),
        QTEST(test_profile_rejects_bad_validity),
        QTEST(test_profile_rejects_missing_key_type),
        QTEST(test_profile_rejects_inconsistent_schema),
        QTEST(test_profile_rejects_bad_serials),
        QTEST(test_profile_rejects_bad_requests),
        QTEST(test_profile_signature_follows_issuer_key),
        QTEST(test_profile_validity_calendar_years_from_leap_day),
        QTEST(test_profile_signs_with_pkcs11_token_keys),
    };
    int rc = qtest_run("profile", cases, sizeof cases / sizeof cases[0]);
    chain_free();
    return rc;
}
