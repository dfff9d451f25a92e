/* qtsp token bench: measures the token's own key-generation and signing
 * rates (the ceilings of issuance, OCSP and TSA), with throw-away keys that
 * are destroyed afterwards. Output: one line of key=value pairs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"
#include "core/log.h"

typedef struct sign_job {
    const qtsp_key *key;
    long n;
    qtsp_status rc;
} sign_job;

static void *sign_worker(void *arg)
{
    sign_job *j = arg;
    unsigned char dg[32] = {1, 2, 3}, sig[QTSP_KEY_SIG_MAX];
    qtsp_sigalg alg;
    j->rc = qtsp_key_sigalg(j->key, EVP_sha256(), &alg);
    for (long i = 0; i < j->n && j->rc == QTSP_OK; i++) {
        size_t sl = sizeof sig;
        dg[31] = (unsigned char)i;
        j->rc = qtsp_key_sign_digest(j->key, &alg, dg, sizeof dg, sig, &sl);
    }
    return NULL;
}

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("token", "missing or wrong arguments (see qtsp token --help)");
    fprintf(f, "usage: qtsp token bench [--home DIR] [--keys N] [--signs N] [--threads T]\n"
               "                        [--type ec-p256|ec-p384|rsa-3072]\n\n"
               "Generates N throw-away keys in the token (then destroys them) and makes N\n"
               "signatures with T threads; prints keygen_per_s and signs_per_s.\n");
    return f == stdout ? 0 : 2;
}

int cmd_token(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "bench") != 0)
        return usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
    const char *home = cmd_default_home(), *keys_s = "20", *signs_s = "20000", *thr_s = "1";
    const char *type_s = "ec-p256";
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--keys", &keys_s) ||
            cmd_opt(argc, argv, &i, "--signs", &signs_s) ||
            cmd_opt(argc, argv, &i, "--threads", &thr_s) ||
            cmd_opt(argc, argv, &i, "--type", &type_s))
            continue;
        return usage(stderr);
    }
    long nkeys = strtol(keys_s, NULL, 10), nsigns = strtol(signs_s, NULL, 10);
    long threads = strtol(thr_s, NULL, 10);
    if (nkeys < 1 || nkeys > 100000 || nsigns < 0 || threads < 1 || threads > 64)
        return cmd_usage_error("token bench", "--keys 1..100000, --signs >= 0, --threads 1..64");
    qtsp_err_clear();
    qtsp_keytype kt;
    if (qtsp_keytype_parse(type_s, &kt) != QTSP_OK)
        return cmd_fail("token bench");
    qtsp_log_set_level(QTSP_LOG_WARN);
    qtsp_app app;
    if (qtsp_app_open(home, APP_HSM, &app) != QTSP_OK)
        return cmd_fail("token bench");
    qtsp_status rc = QTSP_OK;
    char(*labels)[48] = calloc((size_t)nkeys, sizeof *labels);
    long made = 0;
    if (!labels) {
        qtsp_app_close(&app);
        return cmd_usage_error("token bench", "out of memory");
    }
    uint64_t t0 = qtsp_mono_ns();
    for (; made < nkeys && rc == QTSP_OK; made++) {
        snprintf(labels[made], sizeof labels[made], "bench-%d-%ld", (int)getpid(), made);
        rc = qtsp_hsm_generate(app.hsm, labels[made], kt, NULL);
    }
    if (rc != QTSP_OK)
        made--;
    double kg_s = (double)(qtsp_mono_ns() - t0) / 1e9;
    double sg_s = 0;
    qtsp_key *key = NULL;
    if (rc == QTSP_OK && nsigns > 0)
        rc = qtsp_key_from_token(app.hsm, labels[0], &key);
    if (rc == QTSP_OK && nsigns > 0) {
        pthread_t tid[64];
        sign_job jobs[64];
        t0 = qtsp_mono_ns();
        for (long i = 0; i < threads; i++) {
            jobs[i] = (sign_job){key, nsigns / threads, QTSP_OK};
            pthread_create(&tid[i], NULL, sign_worker, &jobs[i]);
        }
        for (long i = 0; i < threads; i++) {
            pthread_join(tid[i], NULL);
            if (jobs[i].rc != QTSP_OK)
                rc = jobs[i].rc;
        }
        sg_s = (double)(qtsp_mono_ns() - t0) / 1e9;
    }
    qtsp_key_free(key);
    for (long i = 0; i < made; i++)
        if (qtsp_hsm_destroy(app.hsm, labels[i]) != QTSP_OK)
            qtsp_err_clear();
    free(labels);
    qtsp_app_close(&app);
    if (rc != QTSP_OK)
        return cmd_fail("token bench");
    long done = nsigns / threads * threads;
    printf("type=%s keys=%ld keygen_per_s=%.1f signs=%ld threads=%ld signs_per_s=%.0f\n", type_s,
           nkeys, (double)nkeys / kg_s, done, threads, sg_s > 0 ? (double)done / sg_s : 0.0);
    return 0;
}
