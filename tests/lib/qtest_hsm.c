#include "tests/lib/qtest.h"

#include <stdio.h>
#include <stdlib.h>
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
                    EVP_PKEY **pub, qtsp_key **key)
{
    *hsm = NULL;
    *pub = NULL;
    *key = NULL;
    if (mkdir(dir, 0700) != 0 || qtest_softhsm_token(dir, token) != 0)
        return -1;
    qtsp_err_clear();
    if (qtsp_hsm_open(QTEST_SOFTHSM_MODULE, token, QTEST_PIN, hsm) != QTSP_OK ||
        qtsp_hsm_generate(*hsm, label, QTSP_KEY_EC_P256, pub) != QTSP_OK ||
        qtsp_key_from_token(*hsm, label, key) != QTSP_OK) {
        fprintf(stderr, "qtest_token_key: %s\n", qtsp_err_message());
        EVP_PKEY_free(*pub);
        qtsp_hsm_free(*hsm);
        *hsm = NULL;
        *pub = NULL;
        return -1;
    }
    return 0;
}

/* qtest_key's cache: released at exit (before the leak check, which runs
 * from an earlier-registered handler). */
typedef struct cached_key {
    EVP_PKEY *pkey;
    qtsp_key *key;
} cached_key;
static cached_key *g_keys;
static size_t g_nkeys, g_capkeys;

static void keys_free(void)
{
    for (size_t i = 0; i < g_nkeys; i++)
        qtsp_key_free(g_keys[i].key);
    free(g_keys);
    g_keys = NULL;
    g_nkeys = g_capkeys = 0;
}

const qtsp_key *qtest_key(EVP_PKEY *pkey)
{
    if (!pkey)
        return NULL;
    for (size_t i = 0; i < g_nkeys; i++)
        if (g_keys[i].pkey == pkey)
            return g_keys[i].key;
    if (g_nkeys == g_capkeys) {
        size_t cap = g_capkeys ? 2 * g_capkeys : 16;
        cached_key *n = realloc(g_keys, cap * sizeof *n);
        if (!n)
            abort();
        if (!g_keys)
            atexit(keys_free);
        g_keys = n;
        g_capkeys = cap;
    }
    qtsp_key *k = NULL;
    if (qtsp_key_from_evp(pkey, &k) != QTSP_OK) {
        fprintf(stderr, "qtest_key: %s\n", qtsp_err_message());
        abort();
    }
    g_keys[g_nkeys].pkey = pkey;
    g_keys[g_nkeys++].key = k;
    return k;
}
