#include "core/periodic.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

struct qtsp_periodic {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: kick or stop */
    pthread_t thread;
    qtsp_periodic_fn fn;
    void *ctx;
    int64_t interval_ms, first_ms;
    int kicked, stop;
};

static int passed(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* Waits (mu held) until ms passed, a kick or stop. */
static void wait_next(qtsp_periodic *p, int64_t ms)
{
    if (ms == QTSP_PERIODIC_IDLE) {
        while (!p->kicked && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        return;
    }
    struct timespec dl = qtsp_mono_deadline(ms);
    while (!p->kicked && !p->stop && !passed(&dl))
        pthread_cond_timedwait(&p->cv, &p->mu, &dl);
}

static void *periodic_main(void *arg)
{
    qtsp_periodic *p = arg;
    pthread_mutex_lock(&p->mu);
    int64_t next = p->first_ms;
    for (;;) {
        if (next > 0)
            wait_next(p, next);
        if (p->stop && !p->kicked) /* a kick before stop still gets its run */
            break;
        p->kicked = 0;
        pthread_mutex_unlock(&p->mu);
        next = p->fn(p, p->ctx);
        if (next == QTSP_PERIODIC_INTERVAL || next < 0)
            next = p->interval_ms;
        pthread_mutex_lock(&p->mu);
        if (p->kicked)
            next = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qtsp_status qtsp_periodic_start(const char *name, int64_t interval_ms, int64_t first_ms,
                                qtsp_periodic_fn fn, void *ctx, qtsp_periodic **out)
{
    ENSURE(fn && interval_ms > 0 && first_ms >= 0, QTSP_ERR_INVALID,
           "periodic: no function or a bad interval");
    qtsp_periodic *p = calloc(1, sizeof *p);
    ENSURE(p, QTSP_ERR_NOMEM, "out of memory");
    p->fn = fn;
    p->ctx = ctx;
    p->interval_ms = interval_ms;
    p->first_ms = first_ms;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&p->thread, NULL, periodic_main, p);
    if (e != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        FAIL(QTSP_ERR_INTERNAL, "cannot start the %s thread: %s", name ? name : "periodic",
             strerror(e));
    }
    *out = p;
    return QTSP_OK;
}

void qtsp_periodic_kick(qtsp_periodic *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->kicked = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void qtsp_periodic_stop(qtsp_periodic *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int qtsp_periodic_stopping(qtsp_periodic *p)
{
    pthread_mutex_lock(&p->mu);
    int s = p->stop;
    pthread_mutex_unlock(&p->mu);
    return s;
}

int qtsp_periodic_sleep(qtsp_periodic *p, int64_t ms)
{
    struct timespec dl = qtsp_mono_deadline(ms > 0 ? ms : 0);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !passed(&dl))
        pthread_cond_timedwait(&p->cv, &p->mu, &dl);
    int ok = !p->stop;
    pthread_mutex_unlock(&p->mu);
    return ok;
}
