/* bench/signers' helper (built by bench/signers against build/libqtsp_lib.a):
 *   signers_fill fill HOME N [REAL]
 *       adds N remote-signing credentials with wrapped P-256 keys to HOME's
 *       store (the records ra/ra.c writes: credential id = a random 128-bit
 *       serial, the wrapped key bound to it by the token). REAL (default
 *       min(N, 1000)) distinct keys are generated and wrapped in the token;
 *       the others reuse one of their blobs, each with its own binding
 *       computed by the token (a million real key generations would take
 *       SoftHSM2 most of an hour; what the store holds per signer, and what
 *       a signature costs, is the same). No certificates: the blobs and the
 *       index are what scale. Prints "filled=N real=REAL seconds=S
 *       cpu_seconds=C" (C: this process's CPU time, the token's work included).
 *   signers_fill sign HOME COUNT
 *       COUNT signatures with credentials drawn at random from the store:
 *       read the record, qtsp_subkey_open (binding checked in the token,
 *       unwrap), sign a digest, qtsp_key_free. Prints "signs_per_s=R".
 * The token objects and the audit log are untouched by fill (a bench
 * fixture, not an issuance). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ca/certdb.h"
#include "ca/subkey.h"
#include "cmd/app.h"
#include "core/clock.h"
#include "core/json.h"

#define BATCH 5000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
    fprintf(stderr, "signers_fill: %s: %s\n", what, qtsp_err_message());
    return 1;
}

typedef struct blob {
    unsigned char *b;
    size_t len;
    EVP_PKEY *pub;
} blob;

typedef struct batch_ctx {
    json_t **recs;
    char (*ids)[41];
    size_t n;
} batch_ctx;

static qtsp_status put_batch(qtsp_txn *txn, void *vctx)
{
    batch_ctx *c = vctx;
    for (size_t i = 0; i < c->n; i++) {
        char *text = json_dumps(c->recs[i], JSON_COMPACT);
        ENSURE(text != NULL, QTSP_ERR_NOMEM, "out of memory");
        size_t tl = strlen(text);
        unsigned char *v = malloc(tl + 1);
        if (v == NULL) {
            free(text);
            FAIL(QTSP_ERR_NOMEM, "out of memory");
        }
        v[0] = 1; /* the record version of ra_put_json */
        memcpy(v + 1, text, tl);
        qtsp_status rc = qtsp_txn_put(txn, QTSP_T_CREDENTIALS, c->ids[i], strlen(c->ids[i]), v,
                                      tl + 1, QTSP_PUT_NOOVERWRITE);
        free(v);
        free(text);
        TRY(rc);
    }
    return QTSP_OK;
}

static int fill(qtsp_app *app, long n, long real)
{
    double t0 = now_s();
    blob *blobs = calloc((size_t)real, sizeof *blobs);
    json_t **recs = calloc(BATCH, sizeof *recs);
    char(*ids)[41] = calloc(BATCH, sizeof *ids);
    if (!blobs || !recs || !ids)
        return 1;
    for (long i = 0; i < real; i++)
        if (qtsp_hsm_generate_wrapped(app->hsm, QTSP_KEY_EC_P256, &blobs[i].b, &blobs[i].len,
                                      &blobs[i].pub) != QTSP_OK)
            return die("generate");
    for (long done = 0; done < n;) {
        size_t k = 0;
        for (; k < BATCH && done + (long)k < n; k++) {
            unsigned char serial[16];
            if (qtsp_random(serial, sizeof serial) != QTSP_OK)
                return die("random");
            serial[0] = (serial[0] & 0x7f) | 0x01; /* positive, no leading zero */
            qtsp_serial_to_hex(serial, sizeof serial, ids[k]);
            const blob *b = &blobs[(done + (long)k) % real];
            json_t *key = NULL;
            if (qtsp_subkey_bind(app->hsm, serial, sizeof serial, QTSP_KEY_EC_P256, b->b, b->len,
                                 b->pub, &key) != QTSP_OK)
                return die("bind");
            char user[21];
            snprintf(user, sizeof user, "%020ld", done + (long)k);
            recs[k] = json_pack("{s:s,s:s,s:s,s:o,s:b,s:s}", "credential_id", ids[k], "user_id",
                                user, "subject_id", user, "key", key, "enabled", 1, "created_at",
                                "2026-12-06T00:00:00Z");
        }
        batch_ctx c = {recs, ids, k};
        qtsp_status rc = qtsp_store_write(app->store, put_batch, &c);
        for (size_t i = 0; i < k; i++)
            json_decref(recs[i]);
        if (rc != QTSP_OK)
            return die("store");
        done += (long)k;
    }
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    printf("filled=%ld real=%ld seconds=%.1f cpu_seconds=%.1f\n", n, real, now_s() - t0,
           (double)cpu.tv_sec + cpu.tv_nsec / 1e9);
    return 0;
}

typedef struct pick_ctx {
    uint64_t skip;
    char id[41];
} pick_ctx;

static qtsp_status pick_fn(void *vctx, const void *key, size_t klen, const void *val, size_t vlen,
                           int *stop)
{
    pick_ctx *c = vctx;
    if (klen < sizeof c->id) {
        memcpy(c->id, key, klen);
        c->id[klen] = '\0';
    }
    *stop = 1;
    return QTSP_OK;
}

/* wall and CPU clocks and the page faults of this process */
typedef struct sample {
    double wall, cpu;
    long minflt, majflt;
} sample;

static void take(sample *s)
{
    struct timespec ts;
    struct rusage ru;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    getrusage(RUSAGE_SELF, &ru);
    s->wall = now_s();
    s->cpu = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    s->minflt = ru.ru_minflt;
    s->majflt = ru.ru_majflt;
}

static void add(sample *acc, const sample *a, const sample *b)
{
    acc->wall += b->wall - a->wall;
    acc->cpu += b->cpu - a->cpu;
    acc->minflt += b->minflt - a->minflt;
    acc->majflt += b->majflt - a->majflt;
}

static int sign(qtsp_app *app, long count)
{
    sample pick = {0}, open = {0}, use = {0}, a, b, c, d, t0, t1;
    take(&t0);
    for (long i = 0; i < count; i++) {
        take(&a);
        /* a random credential: the first id at or after a random key */
        unsigned char r[16];
        char start[41];
        if (qtsp_random(r, sizeof r) != QTSP_OK)
            return die("random");
        qtsp_serial_to_hex(r, sizeof r, start);
        pick_ctx pc;
        memset(&pc, 0, sizeof pc);
        qtsp_txn *txn = NULL;
        if (qtsp_store_begin(app->store, 0, &txn) != QTSP_OK)
            return die("begin");
        qtsp_status rc = qtsp_txn_iter(txn, QTSP_T_CREDENTIALS, start, strlen(start), pick_fn, &pc);
        if (rc == QTSP_OK && pc.id[0] == '\0')
            rc = qtsp_txn_iter(txn, QTSP_T_CREDENTIALS, NULL, 0, pick_fn, &pc);
        const void *v = NULL;
        size_t vl = 0;
        if (rc == QTSP_OK)
            rc = qtsp_txn_get0(txn, QTSP_T_CREDENTIALS, pc.id, strlen(pc.id), &v, &vl);
        json_t *cred =
            rc == QTSP_OK && vl > 1 ? json_loadb((const char *)v + 1, vl - 1, 0, NULL) : NULL;
        qtsp_txn_abort(txn);
        if (cred == NULL)
            return die("read a credential");
        take(&b);
        qtsp_key *k = NULL;
        if (qtsp_subkey_open(app->hsm, cred, &k) != QTSP_OK)
            return die("open");
        take(&c);
        qtsp_sigalg alg;
        unsigned char dg[32] = {0}, sig[QTSP_KEY_SIG_MAX];
        size_t sl = sizeof sig;
        memcpy(dg, &i, sizeof i);
        if (qtsp_key_sigalg(k, EVP_sha256(), &alg) != QTSP_OK ||
            qtsp_key_sign_digest(k, &alg, dg, 32, sig, &sl) != QTSP_OK)
            return die("sign");
        qtsp_key_free(k);
        json_decref(cred);
        take(&d);
        add(&pick, &a, &b);
        add(&open, &b, &c);
        add(&use, &c, &d);
    }
    take(&t1);
    double n = (double)count;
    /* wall clock figures move with the machine's load; the CPU figures
     * (this process's user + system time) much less */
    printf("signs_per_s=%.0f open_us=%.0f pick_us=%.0f signs_per_cpu_s=%.0f open_cpu_us=%.0f "
           "pick_cpu_us=%.0f sign_cpu_us=%.0f pick_minflt=%.2f pick_majflt=%.2f "
           "open_minflt=%.2f\n",
           n / (t1.wall - t0.wall), open.wall / n * 1e6, pick.wall / n * 1e6, n / (t1.cpu - t0.cpu),
           open.cpu / n * 1e6, pick.cpu / n * 1e6, use.cpu / n * 1e6, pick.minflt / n,
           pick.majflt / n, open.minflt / n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "fill") != 0 && strcmp(argv[1], "sign") != 0)) {
        fprintf(stderr, "usage: signers_fill fill HOME N [REAL] | sign HOME COUNT\n");
        return 2;
    }
    long n = strtol(argv[3], NULL, 10);
    if (n <= 0)
        return 2;
    qtsp_app app;
    memset(&app, 0, sizeof app);
    if (qtsp_app_open(argv[2], APP_STORE | APP_HSM, &app) != QTSP_OK)
        return die("open the home");
    int rc;
    if (strcmp(argv[1], "fill") == 0) {
        long real = argc > 4 ? strtol(argv[4], NULL, 10) : (n < 1000 ? n : 1000);
        rc = real > 0 && real <= n ? fill(&app, n, real) : 2;
    } else {
        rc = sign(&app, n);
    }
    qtsp_app_close(&app);
    return rc;
}
