/* libFuzzer target for the OCSP request path: qtsp_ocsp_respond on the input
 * as DER, and qtsp_ocsp_get_decode on it as a GET path (then respond again).
 * Every answer must be a DER OCSPResponse that OpenSSL parses completely.
 * Links no HTTP server (ocsp/ocsp.c knows no transport) and no store: the
 * statuses come from the in-memory source of tests/lib/qtest_ocsp_mem.h
 * (serial 1 good, 2 on hold, 3 revoked, others never issued; no cache).
 * Built by CMake with clang and -DQTSP_FUZZ=ON (docs/tsa.md, Fuzzing); run
 * by scripts/test.sh for a few seconds. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DQTSP_FUZZ=ON -DQTSP_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_ocsp_request
 *   mkdir -p /tmp/ocsp-corpus && QTSP_FUZZ_SEEDS=/tmp/ocsp-corpus \
 *     build-fuzz/fuzz/fuzz_ocsp_request -runs=0 /tmp/ocsp-corpus
 *   build-fuzz/fuzz/fuzz_ocsp_request -max_total_time=120 -max_len=4096 /tmp/ocsp-corpus
 *
 * The CA and responder keys are fixed (test-only keys below) so that seeds
 * written with QTSP_FUZZ_SEEDS carry CertIDs that match across runs. */
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "ocsp/ocsp_int.h"
#include "tests/lib/qtest_ocsp_mem.h"

/* Test-only P-256 keys: never used outside this fuzzer. */
static const char CA_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgirIMYQbWlxSRDSYJ\n"
                             "IgR+TYfVeJrV8y4T+pe06vgbTzihRANCAARXWHA/rXF/9HkeRA7vnLqE/if1LpiH\n"
                             "mbXp6ilFaLoUuabg/95+YWrs1N1gRwFxIrwi5PeOOh4CZrpXLyQsO33Z\n"
                             "-----END PRIVATE KEY-----\n";
static const char RESP_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzjGtFHhgtFeIq+YA\n"
                               "Onbzr08kIhsIiwLv6OHpWBHD7VOhRANCAASGltUBT9jGqQug4jEjF+l+/s+UA5nx\n"
                               "rVRZ5l4NSRgjbKL9+JksnqnmZ9PLbGth+YaILV8Bys//wgYGSY8QOgZg\n"
                               "-----END PRIVATE KEY-----\n";

static qtsp_ocsp *g_ocsp;
static qtsp_key *g_resp_key; /* lives as long as g_ocsp */
static X509 *g_ca;
#define NOW ((time_t)1790000000) /* 2026-09-21 */

static int64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return (int64_t)NOW * 1000;
}

static EVP_PKEY *load_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    return k;
}

static void ext(X509 *is, X509 *x, int nid, const char *v)
{
    X509V3_CTX c;
    X509V3_set_ctx_nodb(&c);
    X509V3_set_ctx(&c, is, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

static X509 *cert(const char *cn, EVP_PKEY *k, X509 *is, EVP_PKEY *ik, long serial, int resp)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    time_t nb = NOW - 86400 * 30, na = NOW + 86400 * 365;
    X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb);
    X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(is ? is : x));
    X509_set_pubkey(x, k);
    if (resp) {
        ext(is, x, NID_ext_key_usage, "OCSPSigning");
        ext(is, x, NID_id_pkix_OCSP_noCheck, "ignored");
    } else if (!is) {
        ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    }
    X509_sign(x, ik ? ik : k, EVP_sha256());
    return x;
}

/* serial 1 good, 2 on hold for another hour, 3 revoked (keyCompromise) */
static const qtest_ocsp_mem_entry STATUSES[] = {
    {{1}, 1, {.state = QTSP_CERT_VALID}},
    {{2}, 1, {.state = QTSP_CERT_ON_HOLD, .revoked_at = NOW - 10, .hold_until = NOW + 3600}},
    {{3},
     1,
     {.state = QTSP_CERT_REVOKED, .reason = QTSP_REASON_KEY_COMPROMISE, .revoked_at = NOW - 10}},
};
static qtest_ocsp_mem g_statuses = {STATUSES, sizeof STATUSES / sizeof STATUSES[0], 0, 0, 0, 0};

static void write_seed(const char *dir, int n, const unsigned char *p, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/seed%d", dir, n);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, len, f);
        fclose(f);
    }
}

static void seeds(const char *dir)
{
    const EVP_MD *mds[2] = {EVP_sha1(), EVP_sha256()};
    int n = 0;
    for (int m = 0; m < 2; m++)
        for (long s = 1; s <= 5; s++) {
            OCSP_REQUEST *r = OCSP_REQUEST_new();
            ASN1_INTEGER *ai = ASN1_INTEGER_new();
            ASN1_INTEGER_set(ai, s);
            OCSP_request_add0_id(r, OCSP_cert_id_new(mds[m], X509_get_subject_name(g_ca),
                                                     X509_get0_pubkey_bitstr(g_ca), ai));
            if (s == 4) {
                ASN1_INTEGER_set(ai, 1);
                OCSP_request_add0_id(r, OCSP_cert_id_new(mds[m], X509_get_subject_name(g_ca),
                                                         X509_get0_pubkey_bitstr(g_ca), ai));
            }
            if (s % 2)
                OCSP_request_add1_nonce(r, NULL, 16);
            ASN1_INTEGER_free(ai);
            unsigned char *der = NULL;
            int len = i2d_OCSP_REQUEST(r, &der);
            write_seed(dir, n++, der, (size_t)len);
            char b64[4096];
            int bl = EVP_EncodeBlock((unsigned char *)b64, der, len);
            write_seed(dir, n++, (unsigned char *)b64, (size_t)bl);
            OPENSSL_free(der);
            OCSP_REQUEST_free(r);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_clock_set(fixed_clock, NULL);
    qtsp_log_set_level(QTSP_LOG_ERROR);
    EVP_PKEY *cak = load_key(CA_KEY), *rk = load_key(RESP_KEY);
    g_ca = cert("Fuzz CA", cak, NULL, NULL, 1, 0);
    X509 *rc = cert("Fuzz OCSP", rk, g_ca, cak, 2, 1);
    qtsp_ocsp_source src;
    qtest_ocsp_mem_source(&g_statuses, &src);
    if (qtsp_key_from_evp(rk, &g_resp_key) != QTSP_OK ||
        qtsp_ocsp_new_source(NULL, g_ca, rc, g_resp_key, &src, &g_ocsp) != QTSP_OK) {
        fprintf(stderr, "%s\n", qtsp_err_message());
        abort();
    }
    const char *sd = getenv("QTSP_FUZZ_SEEDS");
    if (sd)
        seeds(sd);
    X509_free(rc);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(rk);
    return 0; /* CA and responder live for the process */
}

static void check(const unsigned char *p, size_t len)
{
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    qtsp_ocsp_info info;
    qtsp_err_clear();
    if (qtsp_ocsp_respond(g_ocsp, p, len, &out, &info) != QTSP_OK)
        abort();
    const unsigned char *q = out.data;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &q, (long)out.len);
    if (!r || q != out.data + out.len)
        abort(); /* we must always answer well-formed DER */
    if (OCSP_response_status(r) == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        OCSP_BASICRESP *bs = OCSP_response_get1_basic(r);
        if (!bs || OCSP_resp_count(bs) < 1)
            abort();
        OCSP_BASICRESP_free(bs);
    }
    OCSP_RESPONSE_free(r);
    qtsp_buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    /* the same bytes as a GET path */
    char path[8192];
    if (size < sizeof path) {
        memcpy(path, data, size);
        path[size] = '\0';
        unsigned char der[4096];
        size_t n = 0;
        qtsp_err_clear();
        if (qtsp_ocsp_get_decode(path, der, sizeof der, &n) == QTSP_OK)
            check(der, n);
    }
    return 0;
}
