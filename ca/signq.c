/* Signing queue (see signq.h). */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include "ca/signq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct job {
    struct job *next;
    const qtsp_key *key;
    qtsp_sigalg alg;
    unsigned char dgst[64];
    size_t dlen;
    qtsp_signq_done_fn done;
    void *ctx;
    qtsp_status rc;
    size_t siglen;
    unsigned char sig[QTSP_SIGNQ_SIG_MAX];
} job;

struct qtsp_signq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail; /* FIFO */
    int stop;
    unsigned nthreads;
    pthread_t threads[QTSP_SIGNQ_THREADS_MAX];
    _Atomic unsigned long long jobs, batches;
};

/* Jobs held by this thread (qtsp_signq_hold): signed by it at release. */
static _Thread_local qtsp_signq *t_hold;
static _Thread_local job *t_held, *t_held_tail;
static _Thread_local size_t t_held_n;

/* Signs a batch back to back, then runs its callbacks and frees it. */
static void sign_batch(qtsp_signq *q, job *batch)
{
    size_t n = 0;
    for (job *j = batch; j; j = j->next, n++) { /* sign all first: hot caches */
        qtsp_err_clear();
        j->siglen = sizeof j->sig;
        j->rc = qtsp_key_sign_digest(j->key, &j->alg, j->dgst, j->dlen, j->sig, &j->siglen);
        if (j->rc != QTSP_OK) {
            LOG_ERROR("signing queue: %s", qtsp_err_message());
            qtsp_err_clear();
        }
    }
    atomic_fetch_add_explicit(&q->jobs, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->batches, 1, memory_order_relaxed);
    for (job *j = batch, *next; j; j = next) {
        next = j->next;
        j->done(j->ctx, j->rc, j->rc == QTSP_OK ? j->sig : NULL, j->rc == QTSP_OK ? j->siglen : 0);
        free(j);
    }
}

static void *signer_main(void *arg)
{
    qtsp_signq *q = arg;
    pthread_setname_np(pthread_self(), "qtsp-sign"); /* top -H, perf */
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (!q->head)
            break; /* stopping and drained */
        job *batch = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        sign_batch(q, batch);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

qtsp_status qtsp_signq_new(unsigned threads, qtsp_signq **out)
{
    ENSURE(threads >= 1 && threads <= QTSP_SIGNQ_THREADS_MAX, QTSP_ERR_INVALID,
           "signing threads must be 1..%d, not %u", QTSP_SIGNQ_THREADS_MAX, threads);
    qtsp_signq *q = calloc(1, sizeof *q);
    ENSURE(q != NULL, QTSP_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    for (; q->nthreads < threads; q->nthreads++) {
        if (pthread_create(&q->threads[q->nthreads], NULL, signer_main, q) != 0) {
            qtsp_signq_free(q);
            FAIL(QTSP_ERR_INTERNAL, "cannot start a signing thread");
        }
    }
    *out = q;
    return QTSP_OK;
}

void qtsp_signq_free(qtsp_signq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

qtsp_status qtsp_signq_submit(qtsp_signq *q, const qtsp_key *k, const qtsp_sigalg *alg,
                              const unsigned char *dgst, size_t dlen, qtsp_signq_done_fn done,
                              void *ctx)
{
    ENSURE(q && k && alg && dgst && done && dlen >= 1 && dlen <= 64, QTSP_ERR_INVALID,
           "qtsp_signq_submit: bad argument");
    job *j = malloc(sizeof *j);
    ENSURE(j != NULL, QTSP_ERR_NOMEM, "out of memory queueing a signature");
    j->next = NULL;
    j->key = k;
    j->alg = *alg;
    memcpy(j->dgst, dgst, dlen);
    j->dlen = dlen;
    j->done = done;
    j->ctx = ctx;
    if (t_hold == q && t_held_n < QTSP_SIGNQ_HOLD_MAX) { /* this thread signs it at release */
        t_held_n++;
        if (t_held_tail)
            t_held_tail->next = j;
        else
            t_held = j;
        t_held_tail = j;
        return QTSP_OK;
    }
    pthread_mutex_lock(&q->mu);
    if (q->stop) {
        pthread_mutex_unlock(&q->mu);
        free(j);
        FAIL(QTSP_ERR_STATE, "the signing queue is stopping");
    }
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    if (was_empty) /* a busy thread takes the rest when its batch is done */
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return QTSP_OK;
}

void qtsp_signq_hold(qtsp_signq *q)
{
    t_hold = q;
}

size_t qtsp_signq_release(qtsp_signq *q)
{
    job *batch = t_hold == q ? t_held : NULL;
    t_hold = NULL;
    t_held = t_held_tail = NULL;
    t_held_n = 0;
    size_t n = 0;
    for (const job *j = batch; j; j = j->next)
        n++;
    if (batch)
        sign_batch(q, batch);
    return n;
}

void qtsp_signq_stats(qtsp_signq *q, unsigned long long *jobs, unsigned long long *batches)
{
    *jobs = q ? atomic_load_explicit(&q->jobs, memory_order_relaxed) : 0;
    *batches = q ? atomic_load_explicit(&q->batches, memory_order_relaxed) : 0;
}
