#include "tests/lib/qtest.h"

#include <stdio.h>
#include <sys/stat.h>

#include "ca/hsm.h"
#include "core/err.h"

int qtest_softhsm_token(const char *dir, const char *label)
{
    char hsm[600];
    snprintf(hsm, sizeof hsm, "%s/hsm", dir);
    qtsp_err_clear();
    qtsp_status rc = qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, hsm, label, "5678", QTEST_PIN);
    if (rc != QTSP_OK) {
        fprintf(stderr, "qtest_softhsm_token: %s\n", qtsp_err_message());
        return -1;
    }
    return 0;
}

int qtest_token_key(const char *dir, const char *token, const char *label, qtsp_hsm **hsm,
                    EVP_PKEY **pub, EVP_PKEY **priv)
{
    *hsm = NULL;
    *pub = *priv = NULL;
    if (mkdir(dir, 0700) != 0 || qtest_softhsm_token(dir, token) != 0)
        return -1;
    qtsp_err_clear();
    if (qtsp_hsm_open(QTEST_SOFTHSM_MODULE, token, QTEST_PIN, hsm) != QTSP_OK ||
        qtsp_hsm_generate(*hsm, label, QTSP_KEY_EC_P256, pub) != QTSP_OK ||
        qtsp_hsm_private_key(*hsm, label, priv) != QTSP_OK) {
        fprintf(stderr, "qtest_token_key: %s\n", qtsp_err_message());
        EVP_PKEY_free(*pub);
        qtsp_hsm_free(*hsm);
        *hsm = NULL;
        *pub = NULL;
        return -1;
    }
    return 0;
}
