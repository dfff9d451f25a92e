/* Test harness shared by tests/unit: CUnit runner, throw-away homes.
 * Each test binary ends with a line "qtest: NAME N passed, N failed" and
 * exits non-zero when anything failed. */
#ifndef QTSP_TESTS_QTEST_H
#define QTSP_TESTS_QTEST_H

#include <CUnit/CUnit.h>
#include <openssl/types.h>
#include <stddef.h>

#include "ca/hsm.h"
#include "ca/key.h"
#include "ca/store.h"

typedef struct qtest_case {
    const char *name;
    void (*fn)(void);
} qtest_case;

#define QTEST(fn)                                                                                  \
    {                                                                                              \
#fn, fn                                                                                    \
    }

/* Runs the cases as one CUnit suite and prints the summary line. */
int qtest_run(const char *suite, const qtest_case *cases, size_t n);

/* Makes a fresh directory under $TMPDIR (or /tmp) and returns its path
 * (static storage per call; copy it). Removed by qtest_rmtree. */
const char *qtest_tmpdir(const char *tag);
/* The source tree: $QTSP_SRC_DIR, else where this file was compiled from.
 * Static storage. */
const char *qtest_src_dir(void);
/* A TCP connection to 127.0.0.1:port with send/receive timeouts, or -1. */
int qtest_connect(unsigned port, int timeout_s);
/* rm -rf path. */
void qtest_rmtree(const char *path);

/* Creates a throw-away SoftHSM2 token in dir/hsm with the given label and
 * user PIN "1234" (SO PIN "5678") and sets SOFTHSM2_CONF. Returns 0 on success. */
int qtest_softhsm_token(const char *dir, const char *label);

/* A new SoftHSM2 token labelled token in the new directory dir, opened
 * (*hsm), holding an EC P-256 key pair label: *pub (a software copy of the
 * public key) and *key (ca/key.h: signs in the token). Caller frees all
 * three. Returns 0 on success (failures are printed). */
int qtest_token_key(const char *dir, const char *token, const char *label, qtsp_hsm **hsm,
                    EVP_PKEY **pub, qtsp_key **key);

/* The software qtsp_key (qtsp_key_from_evp) for pkey, made on first use
 * and kept (with a reference to pkey) until the test binary exits. NULL for
 * NULL. Not thread-safe. */
const qtsp_key *qtest_key(EVP_PKEY *pkey);

/* Opens a fresh store (map_mib MiB) in a new temp dir named for tag; the
 * dir goes to dir_out. Fails the test fatally when it cannot. */
qtsp_store *qtest_store_fresh(const char *tag, size_t map_mib, char *dir_out, size_t cap);
/* Closes st and removes dir. */
void qtest_store_done(qtsp_store *st, const char *dir);

#define QTEST_SOFTHSM_MODULE "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
#define QTEST_PIN "1234"

#endif
