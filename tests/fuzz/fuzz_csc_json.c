/* libFuzzer target for the CSC API v2 request bodies (issue 15): the body
 * as core/api reads it (qtsp_json_parse_object), then the transport-free
 * core of the route (sign/csc.c) as the signer "u1" of a real store (LMDB
 * in a private folder holding that signer and its credential "0a", without
 * a certificate): credentials/authorize (numSignatures, hashes, hash OID,
 * OTP), signatures/signHash (signAlgo, RSA-PSS signAlgoParams DER, hashes,
 * SAD) with the X-QTSP-Relying-Party header (sign/usage.c), credentials/list
 * and credentials/info (option fields), auth/revoke (token), and
 * signatures/signDoc (documents: formats, levels, envelopes, names,
 * containers, base64) with its body read as core/api reads signDoc's
 * (qtsp_json_parse_object_big, long strings left in the body, here from
 * 64 bytes so that short inputs take that path too). Any input must
 * be answered or refused with an error, never crash or leak; nothing is
 * written to the store (every route stops at the missing certificate or
 * SAD before its write transaction).
 * Input: byte 0 picks the route (low 3 bits; 5 is signDoc) and, for signHash, whether the
 * bytes up to the first newline are the relying-party header (bit 3); the
 * rest is the JSON body.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it;
 * seeds: tests/fuzz/corpus/fuzz_csc_json. */
#include <jansson.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"
#include "ra/ra_int.h"
#include "sign/archive.h"
#include "sign/csc.h"
#include "sign/usage.h"

static qtsp_csc *g_csc;
/* signDoc never reaches a builder here (no certificate): empty services */
static qtsp_ades_services g_ades;
/* The token is reached only through a valid SAD, which this store never
 * holds: the service needs a non-NULL handle, never this one's contents. */
static char g_no_hsm;

#define RP_HEADER_MAX 256

static qtsp_status seed_txn(qtsp_txn *txn, void *ctx)
{
    (void)ctx;
    json_t *u =
        json_pack("{s:s,s:s,s:[s]}", "user_id", "u1", "subject_id", "s1", "credentials", "0a");
    json_t *c = json_pack("{s:s,s:s,s:b}", "credential_id", "0a", "user_id", "u1", "enabled", 1);
    json_t *s = json_pack("{s:s,s:s,s:s}", "subject_id", "s1", "package", "free", "enrolled_at",
                          "2026-01-01T00:00:00Z");
    qtsp_status rc = u && c && s ? QTSP_OK : QTSP_ERR_NOMEM;
    if (rc == QTSP_OK)
        rc = ra_put_json(txn, QTSP_T_USERS, "u1", u, 0);
    if (rc == QTSP_OK)
        rc = ra_put_json(txn, QTSP_T_CREDENTIALS, "0a", c, 0);
    if (rc == QTSP_OK)
        rc = ra_put_json(txn, QTSP_T_SUBJECTS, "s1", s, 0);
    json_decref(u);
    json_decref(c);
    json_decref(s);
    return rc;
}

static char g_dir[256];

/* libFuzzer ends with exit(): the private folder goes with the process */
static void remove_dir(void)
{
    static const char *const files[] = {
        "store/data.mdb", "store/lock.mdb", "store", "secrets/otp.key", "secrets", "archive", ""};
    char path[300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
        if (unlink(path) != 0)
            (void)rmdir(path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR + 1);
    char *dir = g_dir;
    snprintf(dir, sizeof g_dir, "%s/qtsp-fuzz-csc-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    atexit(remove_dir);
    char store_dir[300], secrets[300], policies[600], signing[640];
    snprintf(store_dir, sizeof store_dir, "%s/store", dir);
    snprintf(secrets, sizeof secrets, "%s/secrets", dir);
    if (mkdir(secrets, 0700) != 0)
        abort();
    /* the shipped policies (signing.yaml, packages.yaml) of this tree */
    snprintf(policies, sizeof policies, "%s", __FILE__);
    char *slash = strrchr(policies, '/');
    if (!slash)
        abort();
    snprintf(slash, sizeof policies - (size_t)(slash - policies), "/../../policies");
    qtsp_store *st = NULL;
    qtsp_usage *u = NULL;
    if (qtsp_store_open(store_dir, 16, &st) != QTSP_OK || qtsp_store_write(st, seed_txn, NULL) ||
        qtsp_usage_new(st, policies, &u) != QTSP_OK) {
        fprintf(stderr, "fuzz_csc_json: setup: %s\n", qtsp_err_message());
        abort();
    }
    static X509 *chain;
    chain = X509_new();
    snprintf(signing, sizeof signing, "%s/signing.yaml", policies);
    char arch_pol[sizeof policies + 32], arch_dir[sizeof g_dir + 32];
    snprintf(arch_pol, sizeof arch_pol, "%s/archive.yaml", policies);
    snprintf(arch_dir, sizeof arch_dir, "%s/archive", g_dir);
    qtsp_archive *ar = NULL;
    if (qtsp_archive_new(arch_pol, arch_dir, st, &ar) != QTSP_OK) {
        fprintf(stderr, "fuzz_csc_json: archive: %s\n", qtsp_err_message());
        abort();
    }
    qtsp_csc_deps d = {
        st, (qtsp_hsm *)(void *)&g_no_hsm, chain, chain, signing, secrets, u, &g_ades, ar};
    if (qtsp_csc_new(&d, &g_csc) != QTSP_OK) {
        fprintf(stderr, "fuzz_csc_json: csc: %s\n", qtsp_err_message());
        abort();
    }
    return 0; /* store, usage and service live as long as the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned route = data[0] & 7u;
    int with_header = (data[0] & 8u) != 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    char header[RP_HEADER_MAX + 1];
    if (route == 1 && with_header) {
        const char *nl = memchr(p, '\n', n < RP_HEADER_MAX ? n : RP_HEADER_MAX);
        if (!nl)
            return 0;
        size_t hl = (size_t)(nl - p);
        memcpy(header, p, hl);
        header[hl] = '\0';
        if (strlen(header) != hl) /* a header line holds no NUL */
            return 0;
        p = nl + 1;
        n -= hl + 1;
    }
    qtsp_err_clear();
    json_t *req = NULL, *out = NULL;
    if (route == 5) { /* signDoc: the body as core/api reads it, mutable */
        char *body = malloc(n ? n : 1);
        if (!body)
            return 0;
        memcpy(body, p, n);
        qtsp_json_big big;
        qtsp_buf ans;
        qtsp_buf_init(&ans, 1 << 20);
        if (qtsp_json_parse_object_big(body, n, 64, &req, &big) == QTSP_OK) {
            /* no certificate, no SAD: never signed, nothing answered */
            if (qtsp_csc_sign_doc(g_csc, "u1", NULL, req, &big, &ans) == QTSP_OK || ans.len)
                abort();
            json_decref(req);
            qtsp_json_big_cleanup(&big);
        }
        qtsp_buf_cleanup(&ans);
        free(body);
        qtsp_err_clear();
        return 0;
    }
    if (qtsp_json_parse_object(p, n, &req) != QTSP_OK)
        return 0;
    qtsp_status rc = QTSP_OK;
    const char *tok = NULL;
    switch (route) {
    case 0:
        rc = qtsp_csc_authorize(g_csc, "u1", req, &out);
        break;
    case 1:
        rc = qtsp_csc_sign_hash(g_csc, "u1", with_header ? header : NULL, req, &out);
        break;
    case 2:
        rc = qtsp_csc_list(g_csc, "u1", req, &out);
        break;
    case 3:
        rc = qtsp_csc_cred_info(g_csc, "u1", req, &out);
        break;
    case 4:
        if (qtsp_json_get_string(req, "token", 1, &tok) == QTSP_OK)
            rc = qtsp_csc_revoke(g_csc, "u1", tok);
        break;
    default:
        break;
    }
    /* nothing here can be authorised or signed: no certificate, no SAD */
    if (rc == QTSP_OK && out && (route == 0 || route == 1))
        abort();
    json_decref(out);
    json_decref(req);
    qtsp_err_clear();
    return 0;
}
