/* libFuzzer target for the TimeStampReq parser and the whole responder.
 * Links no HTTP server and no store.
 * Built by CMake with clang and -DQTSP_FUZZ=ON (docs/tsa.md, Fuzzing); run
 * by scripts/test.sh for a few seconds. By hand, from the source tree:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DQTSP_FUZZ=ON -DQTSP_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_tsa_query
 *   mkdir -p corpus && build-fuzz/fuzz/fuzz_tsa_query -max_len=4200 -max_total_time=120 corpus
 *
 * Seed the corpus with `openssl ts -query -data FILE -sha256 -cert -out corpus/q1`.
 * Every input must yield a DER TimeStampResp that OpenSSL parses, consuming
 * exactly its bytes, and a granted token only for a well-formed query. */
#include <openssl/evp.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "core/log.h"
#include "tsa/tsa_int.h"

static qtsp_tsa *g_tsa;
static qtsp_tsa_policy g_pol;

static int always_synced(void *ctx)
{
    (void)ctx;
    return 1;
}

static qtsp_tsa *make(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), 42);
    X509_gmtime_adj(X509_getm_notBefore(c), 0);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz TSU", -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, n);
    X509_NAME_free(n);
    X509_set_pubkey(c, k);
    X509_sign(c, k, EVP_sha256());
    qtsp_tsa_policy pol;
    qtsp_tsa_policy_defaults(&pol);
    if (qtsp_tsa_policy_add_oid(&pol, "1.3.6.1.4.1.99999.1") != QTSP_OK)
        abort();
    qtsp_tsa *tsa = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, c);
    static qtsp_key *key; /* lives as long as the TSA */
    if (qtsp_key_from_evp(k, &key) != QTSP_OK ||
        qtsp_tsa_new_journal(&pol, c, chain, key, NULL, &tsa) != QTSP_OK)
        abort();
    qtsp_tsa_set_sync_check(tsa, always_synced, NULL);
    sk_X509_free(chain);
    X509_free(c);
    EVP_PKEY_free(k);
    return tsa;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tsa) {
        qtsp_log_set_level(QTSP_LOG_ERROR);
        g_tsa = make();
        qtsp_tsa_policy_defaults(&g_pol);
    }
    qtsp_tsa_req req;
    (void)qtsp_tsa_parse_query(&g_pol, data, size, &req);
    qtsp_buf out;
    qtsp_buf_init(&out, 1 << 20);
    if (qtsp_tsa_respond(g_tsa, data, size, &out) != QTSP_OK)
        abort();
    const unsigned char *p = out.data;
    TS_RESP *resp = d2i_TS_RESP(NULL, &p, (long)out.len);
    if (!resp || p != out.data + out.len)
        abort(); /* every answer is one well-formed TimeStampResp */
    long status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp)));
    if (status == TS_STATUS_GRANTED) {
        /* granted only for what OpenSSL also parses as a TimeStampReq */
        const unsigned char *q = data;
        TS_REQ *r = d2i_TS_REQ(NULL, &q, (long)size);
        if (!r || TS_RESP_get_tst_info(resp) == NULL)
            abort();
        TS_REQ_free(r);
    }
    TS_RESP_free(resp);
    qtsp_buf_cleanup(&out);
    return 0;
}
