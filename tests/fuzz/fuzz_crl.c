/* libFuzzer target for the CRL reader (ca/crl_read.c crl_parse_published):
 * at start every process reads the CRLs of DIR/public back (whoever can
 * write there can hand it any bytes) and checks issuer, algorithm,
 * signature, cRLNumber and the update times on the core/der reader. Any
 * input must be refused or accepted without reading outside its bytes; an
 * accepted one must be a CRL OpenSSL parses and whose signature verifies
 * with the CA key. Links no store and no token (a software CA key).
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it.
 * QTSP_FUZZ_SEEDS=DIR writes a valid CRL of the fixed test CA there (the
 * committed corpus tests/fuzz/corpus/fuzz_crl was made that way). */
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/crl_int.h"
#include "ca/key.h"
#include "core/log.h"
#include "tests/lib/qtest_cert.h"

/* Test-only P-256 key (the OCSP fuzzer's CA key): never used elsewhere. */
static const char CA_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgirIMYQbWlxSRDSYJ\n"
                             "IgR+TYfVeJrV8y4T+pe06vgbTzihRANCAARXWHA/rXF/9HkeRA7vnLqE/if1LpiH\n"
                             "mbXp6ilFaLoUuabg/95+YWrs1N1gRwFxIrwi5PeOOh4CZrpXLyQsO33Z\n"
                             "-----END PRIVATE KEY-----\n";

static crl_ca g_ca;
static qtsp_key *g_key;
static X509 *g_cert;
static EVP_PKEY *g_pkey;

/* A valid CRL of the CA with two entries, as the publisher writes them. */
static void write_seed(const char *dir)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(g_cert));
    ASN1_TIME *t = ASN1_TIME_set(NULL, 1800000000);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_set(t, 1800086400);
    X509_CRL_set1_nextUpdate(crl, t);
    for (long s = 5; s <= 6; s++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        ASN1_INTEGER_set(sn, s);
        X509_REVOKED_set_serialNumber(r, sn);
        ASN1_TIME_set(t, 1799990000);
        X509_REVOKED_set_revocationDate(r, t);
        X509_CRL_add0_revoked(crl, r);
        ASN1_INTEGER_free(sn);
    }
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    ASN1_INTEGER_set(num, 7);
    X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0);
    ASN1_INTEGER_free(num);
    X509_CRL_sort(crl);
    X509_CRL_sign(crl, g_pkey, EVP_sha256());
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(crl, &der);
    char path[4096];
    snprintf(path, sizeof path, "%s/crl1", dir);
    FILE *f = fopen(path, "wb");
    if (f && n > 0)
        fwrite(der, 1, (size_t)n, f);
    if (f)
        fclose(f);
    OPENSSL_free(der);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR);
    BIO *b = BIO_new_mem_buf(CA_KEY, -1);
    g_pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    g_cert = g_pkey ? qtest_mkcert(NULL, g_pkey, g_pkey, "Fuzz CA", (const unsigned char *)"\x01",
                                   1, 1, 1700000000, 2000000000)
                    : NULL;
    if (!g_cert || qtsp_key_from_evp(g_pkey, &g_key) != QTSP_OK ||
        crl_ca_init(&g_ca, g_cert, g_key) != QTSP_OK) {
        fprintf(stderr, "fuzz_crl: %s\n", qtsp_err_message());
        abort();
    }
    const char *sd = getenv("QTSP_FUZZ_SEEDS");
    if (sd)
        write_seed(sd);
    return 0; /* the CA lives for the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crl_blob bl;
    memset(&bl, 0, sizeof bl);
    bl.mem = malloc(size ? size : 1); /* its own allocation: ASan sees any overread */
    if (!bl.mem)
        return 0;
    memcpy(bl.mem, data, size);
    bl.der = bl.mem;
    bl.len = size;
    qtsp_err_clear();
    if (crl_parse_published(&g_ca, &bl) == QTSP_OK) {
        const unsigned char *p = bl.der;
        X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)size);
        if (!c || p != bl.der + size || X509_CRL_verify(c, g_pkey) != 1 || bl.number == 0 ||
            bl.next_update <= bl.this_update)
            abort(); /* accepted something that is not a valid CRL of ours */
        X509_CRL_free(c);
    }
    qtsp_err_clear();
    free(bl.mem);
    return 0;
}
