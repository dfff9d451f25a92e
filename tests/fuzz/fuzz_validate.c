/* libFuzzer target for the validation service's input (sign/validate.h):
 * whatever POST /api/v1/validate receives as "file" (PDF, CMS DER/PEM, XML,
 * ASiC ZIP), once alone and once with the first byte's worth of it as
 * detached content. Any input must give a report or a clear error, never a
 * crash, a leak or a hang. One self-signed trust anchor, no status store.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it;
 * the committed corpus tests/fuzz/corpus/fuzz_validate holds signatures of
 * each format made by `qtsp sign` (CAdES, PAdES, XAdES at B-LT, ASiC-E). */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"
#include "sign/validate.h"
#include "tests/lib/qtest_cert.h"

static qtsp_validator *g_v;

static void setup(void)
{
    qtsp_log_set_level(QTSP_LOG_ERROR);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = k ? qtest_mkcert(NULL, k, k, "Fuzz Root", (const unsigned char *)"\x01", 1, 1,
                               1700000000, 2000000000)
                : NULL;
    if (!c)
        abort();
    qtsp_validate_anchor a = {c, 1};
    qtsp_validator_opts o = {&a, 1, NULL, NULL, NULL};
    if (qtsp_validator_new(&o, &g_v) != QTSP_OK)
        abort();
    X509_free(c);
    EVP_PKEY_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_v)
        setup();
    for (int with_content = 0; with_content < 2; with_content++) {
        size_t cl = with_content && size ? data[0] % (size + 1) : 0;
        json_t *r = NULL;
        qtsp_err_clear();
        qtsp_status rc =
            qtsp_validate(g_v, data, size, with_content ? data : NULL, cl, 1800000000, &r);
        if (rc == QTSP_OK) {
            qtsp_buf x;
            qtsp_buf_init(&x, (size_t)1 << 24);
            if (!json_is_array(json_object_get(r, "signatures")) ||
                qtsp_validate_report_xml(r, &x) != QTSP_OK)
                abort(); /* a report is always complete */
            qtsp_buf_cleanup(&x);
        } else if (r != NULL) {
            abort(); /* an error leaves nothing behind */
        }
        json_decref(r);
    }
    qtsp_err_clear();
    return 0;
}
