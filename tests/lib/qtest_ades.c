/* The AdES test world (tests/lib/qtest_ades.h). */
#include "tests/lib/qtest_ades.h"

#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/qtest.h"

#define NEED(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fixture failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    NEED(ext != NULL);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

/* EN 319 412-5: QcCompliance, QcSSCD, QcType { esign } */
static void add_qc(X509 *c)
{
    static const unsigned char qc[] = {
        0x30, 0x29, 0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01, 0x30, 0x08, 0x06,
        0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04, 0x30, 0x13, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46,
        0x01, 0x06, 0x30, 0x09, 0x06, 0x07, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x01};
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    NEED(os && ASN1_OCTET_STRING_set(os, qc, sizeof qc));
    X509_EXTENSION *ext = X509_EXTENSION_create_by_NID(NULL, NID_qcStatements, 0, os);
    NEED(ext != NULL);
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
}

X509 *qtest_ades_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial,
                      unsigned flags, const char *eku, long nb, long na)
{
    X509 *c = X509_new();
    NEED(c != NULL);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), nb);
    X509_gmtime_adj(X509_getm_notAfter(c), na);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_NAME_free(n);
    X509_set_pubkey(c, key);
    X509 *iss = issuer ? issuer : c;
    if (flags & QTEST_CERT_CA) {
        add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c, iss, NID_key_usage, "critical,digitalSignature,nonRepudiation");
        if (eku)
            add_ext(c, iss, NID_ext_key_usage, eku);
        if (eku && strcmp(eku, "OCSPSigning") == 0)
            add_ext(c, iss, NID_id_pkix_OCSP_noCheck, "ignored"); /* RFC 6960 4.2.2.2.1 */
        if (flags & QTEST_CERT_QC)
            add_qc(c);
    }
    add_ext(c, iss, NID_subject_key_identifier, "hash");
    NEED(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
    return c;
}

static int synced(void *ctx)
{
    (void)ctx;
    return 1;
}

int qtest_ades_env_setup(qtest_ades_env *e, const char *prefix, const qtest_ocsp_mem_entry *tab,
                         size_t n, unsigned signer_flags)
{
    memset(e, 0, sizeof *e);
    EVP_PKEY **k[] = {&e->root_key, &e->ca_key, &e->tsa_key, &e->resp_key, &e->signer_key};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        NEED((*k[i] = EVP_EC_gen("P-256")) != NULL);
    long year = 86400L * 365;
    char cn[5][96];
    static const char *const what[5] = {"root", "issuing CA", "TSU", "OCSP", "signer"};
    for (int i = 0; i < 5; i++)
        snprintf(cn[i], sizeof cn[i], "%s %s", prefix, what[i]);
    e->root =
        qtest_ades_cert(cn[0], e->root_key, NULL, NULL, 1, QTEST_CERT_CA, NULL, -3600, 10 * year);
    e->ca = qtest_ades_cert(cn[1], e->ca_key, e->root, e->root_key, 2, QTEST_CERT_CA, NULL, -3600,
                            5 * year);
    e->tsa_cert = qtest_ades_cert(cn[2], e->tsa_key, e->root, e->root_key, 3, 0,
                                  "critical,timeStamping", -3600, year);
    e->resp =
        qtest_ades_cert(cn[3], e->resp_key, e->ca, e->ca_key, 4, 0, "OCSPSigning", -3600, year);
    e->signer = qtest_ades_cert(cn[4], e->signer_key, e->ca, e->ca_key, 0x51, signer_flags, NULL,
                                -3600, year);

    char pol[1024];
    snprintf(pol, sizeof pol, "%s/policies/tsa.yaml", qtest_src_dir());
    e->tsa_chain = sk_X509_new_null();
    NEED(e->tsa_chain && sk_X509_push(e->tsa_chain, e->root) > 0);
    if (qtsp_tsa_new(pol, e->tsa_cert, e->tsa_chain, qtest_key(e->tsa_key), NULL, &e->tsa) !=
        QTSP_OK) {
        fprintf(stderr, "qtsp_tsa_new: %s\n", qtsp_err_message());
        return 1;
    }
    qtsp_tsa_set_sync_check(e->tsa, synced, NULL);
    e->mem = (qtest_ocsp_mem){tab, n, 1, 0, 0, 0};
    qtsp_ocsp_source src;
    qtest_ocsp_mem_source(&e->mem, &src);
    if (qtsp_ocsp_new_source(NULL, e->ca, e->resp, qtest_key(e->resp_key), &src, &e->ocsp) !=
        QTSP_OK) {
        fprintf(stderr, "qtsp_ocsp_new: %s\n", qtsp_err_message());
        return 1;
    }
    e->chain = sk_X509_new_null();
    e->extra = sk_X509_new_null();
    NEED(e->chain && e->extra && sk_X509_push(e->chain, e->ca) > 0 &&
         sk_X509_push(e->chain, e->root) > 0 && sk_X509_push(e->extra, e->tsa_cert) > 0 &&
         sk_X509_push(e->extra, e->resp) > 0);
    e->sv = (qtsp_ades_services){
        .tsa = e->tsa, .ocsp = e->ocsp, .ocsp_ca = e->ca, .extra_certs = e->extra};
    e->s = (qtsp_ades_signer){qtest_key(e->signer_key), e->signer, e->chain, {0}};
    NEED(qtsp_key_sigalg(e->s.key, EVP_sha256(), &e->s.alg) == QTSP_OK);

    /* the PDF, with exact offsets */
    const char *objs[] = {
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
        "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n",
        "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n",
    };
    size_t off[3], len = (size_t)snprintf(e->pdf, sizeof e->pdf, "%%PDF-1.4\n");
    for (int i = 0; i < 3; i++) {
        off[i] = len;
        len += (size_t)snprintf(e->pdf + len, sizeof e->pdf - len, "%s", objs[i]);
    }
    size_t xref = len;
    len += (size_t)snprintf(e->pdf + len, sizeof e->pdf - len,
                            "xref\n0 4\n0000000000 65535 f \n%010zu 00000 n \n%010zu 00000 n \n"
                            "%010zu 00000 n \ntrailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%zu\n"
                            "%%%%EOF\n",
                            off[0], off[1], off[2], xref);
    e->pdf_len = len;
    e->pdf_xref = xref;
    return 0;
}

void qtest_ades_env_teardown(qtest_ades_env *e)
{
    qtsp_tsa_free(e->tsa);
    qtsp_ocsp_free(e->ocsp);
    sk_X509_free(e->chain);
    sk_X509_free(e->extra);
    sk_X509_free(e->tsa_chain);
    X509 *c[] = {e->root, e->ca, e->tsa_cert, e->resp, e->signer};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        X509_free(c[i]);
    EVP_PKEY *k[] = {e->root_key, e->ca_key, e->tsa_key, e->resp_key, e->signer_key};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        EVP_PKEY_free(k[i]);
}
