#define _GNU_SOURCE 1 /* ppoll */
#include "core/supervisor.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_hup; /* a SIGHUP taken by qtsp_stop_wait */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

void qtsp_stop_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals (and SIGCHLD) before any thread or worker
     * starts: they are taken with sigtimedwait/sigwaitinfo, never lost. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
}

int qtsp_stop_requested(void)
{
    return g_stop != 0;
}

int qtsp_stop_wait(int timeout_s)
{
    if (g_stop)
        return 1;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    struct timespec ts = {timeout_s, 0};
    int sig = sigtimedwait(&stop, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT)
        g_stop = 1;
    else if (sig == SIGHUP)
        g_hup = 1;
    return g_stop != 0;
}

int qtsp_reload_taken(void)
{
    int r = g_hup != 0;
    g_hup = 0;
    return r;
}

void qtsp_supervisor_ready(int ready_fd)
{
    if (write(ready_fd, "r", 1) != 1)
        LOG_WARN("cannot tell the supervisor this worker is ready: %s", strerror(errno));
    close(ready_fd);
}

typedef struct worker {
    pid_t pid;    /* 0 when not running */
    int ready_fd; /* read end while starting, else -1 */
    time_t started;
    unsigned quick; /* quick deaths in a row */
} worker;

struct qtsp_supervisor {
    qtsp_supervisor_spec s;
    worker *w;
    struct pollfd *pf; /* await_ready's, n of each */
    unsigned *idx;
    unsigned *dead;  /* reap_and_restart's, n */
    pid_t *retiring; /* n: the worker a reload replaced, draining */
};

static void gone(qtsp_supervisor *sv, unsigned i)
{
    if (sv->s.gone)
        sv->s.gone(sv->s.ctx, i);
}

static qtsp_status spawn(qtsp_supervisor *sv, unsigned i)
{
    int p[2];
    ENSURE(pipe(p) == 0, QTSP_ERR_IO, "pipe: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        FAIL(QTSP_ERR_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* the worker: dies with the supervisor; keeps only its own socket */
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        close(p[0]);
        for (unsigned j = 0; j < sv->s.n; j++) {
            if (j != i)
                close(sv->s.listen_fds[j]);
            if (j != i && sv->w[j].ready_fd >= 0)
                close(sv->w[j].ready_fd);
        }
        /* SIGTERM/SIGINT stay blocked for the worker's qtsp_stop_wait */
        int code = sv->s.run(sv->s.ctx, i, sv->s.listen_fds[i], p[1]);
        fflush(stdout);
        fflush(stderr);
        _exit(code);
    }
    close(p[1]);
    sv->w[i].pid = pid;
    sv->w[i].ready_fd = p[0];
    sv->w[i].started = time(NULL);
    return QTSP_OK;
}

/* Kills a worker that cannot be stopped politely (still starting: its
 * SIGTERM waits until it serves, or stuck) and reaps it. */
static void kill_worker(worker *w)
{
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        w->pid = 0;
    }
    if (w->ready_fd >= 0) {
        close(w->ready_fd);
        w->ready_fd = -1;
    }
}

/* Waits until every starting worker has said it is ready (1) or one has
 * failed (0: its exit status is reported, it is reaped). On the deadline
 * or a stop request, the workers still starting are killed (0). */
static int await_ready(qtsp_supervisor *sv)
{
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)QTSP_SUPERVISOR_READY_MS * 1000000ULL;
    for (;;) {
        struct pollfd *pf = sv->pf;
        unsigned *idx = sv->idx, k = 0;
        for (unsigned i = 0; i < sv->s.n; i++)
            if (sv->w[i].ready_fd >= 0) {
                pf[k] = (struct pollfd){sv->w[i].ready_fd, POLLIN, 0};
                idx[k++] = i;
            }
        if (k == 0)
            return 1;
        uint64_t now = qtsp_mono_ns();
        if (now >= deadline || g_stop) {
            LOG_ERROR("%s: %s", sv->s.name,
                      g_stop ? "stopped while a worker was starting"
                             : "a worker did not become ready in time");
            for (unsigned j = 0; j < k; j++)
                kill_worker(&sv->w[idx[j]]);
            return 0;
        }
        /* SIGTERM/SIGINT interrupt the wait (their handler sets g_stop) */
        sigset_t during;
        pthread_sigmask(SIG_SETMASK, NULL, &during);
        sigdelset(&during, SIGTERM);
        sigdelset(&during, SIGINT);
        uint64_t left_ms = (deadline - now) / 1000000ULL + 1;
        struct timespec ts = {(time_t)(left_ms / 1000), (long)(left_ms % 1000) * 1000000L};
        int r = ppoll(pf, k, &ts, &during);
        if (r < 0 && errno != EINTR)
            return 0;
        for (unsigned j = 0; r > 0 && j < k; j++) {
            if (!pf[j].revents)
                continue;
            worker *w = &sv->w[idx[j]];
            char c;
            ssize_t got = read(w->ready_fd, &c, 1);
            close(w->ready_fd);
            w->ready_fd = -1;
            if (got != 1) {
                int st = 0;
                if (waitpid(w->pid, &st, 0) == w->pid)
                    w->pid = 0;
                LOG_ERROR("%s: worker %u failed to start (exit status %d)", sv->s.name, idx[j],
                          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                return 0;
            }
        }
    }
}

/* SIGTERM to every worker; those not gone within the stop wait (a worker
 * drains its requests for at most about 11 s) are killed. */
static void stop_all(qtsp_supervisor *sv)
{
    for (unsigned i = 0; i < sv->s.n; i++)
        if (sv->w[i].pid > 0)
            kill(sv->w[i].pid, SIGTERM);
    for (unsigned i = 0; sv->retiring && i < sv->s.n; i++)
        if (sv->retiring[i] > 0) { /* SIGTERMed already: wait for it too */
            while (waitpid(sv->retiring[i], NULL, 0) < 0 && errno == EINTR)
                ;
            sv->retiring[i] = 0;
        }
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)QTSP_SUPERVISOR_STOP_WAIT_S * 1000000000ULL;
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < sv->s.n; i++) {
            worker *w = &sv->w[i];
            if (w->pid > 0 && waitpid(w->pid, NULL, WNOHANG) == w->pid)
                w->pid = 0;
            left += w->pid > 0;
        }
        if (left == 0 || qtsp_mono_ns() >= deadline)
            break;
        struct timespec ts = {0, 20L * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (unsigned i = 0; i < sv->s.n; i++) {
        if (sv->w[i].pid > 0)
            LOG_ERROR("%s: worker %u did not stop within %d s; killed", sv->s.name, i,
                      QTSP_SUPERVISOR_STOP_WAIT_S);
        kill_worker(&sv->w[i]);
    }
}

/* Starts worker i again and waits until it serves, one worker at a time
 * (workers never log in to the token together). 0 when it keeps failing
 * to start, or cannot be started. */
static int restart(qtsp_supervisor *sv, unsigned i)
{
    worker *w = &sv->w[i];
    while (!g_stop) {
        if (w->quick >= QTSP_SUPERVISOR_QUICK_DEATHS) {
            LOG_ERROR("%s: worker %u died %u times within %d s of starting; stopping", sv->s.name,
                      i, w->quick, QTSP_SUPERVISOR_QUICK_DEATH_S);
            return 0;
        }
        if (w->quick)
            sleep(1); /* do not spin on a worker that cannot start */
        if (spawn(sv, i) != QTSP_OK) {
            LOG_ERROR("%s: cannot restart worker %u: %s", sv->s.name, i, qtsp_err_message());
            return 0;
        }
        if (await_ready(sv)) {
            LOG_INFO("%s: worker %u restarted (pid %ld)", sv->s.name, i, (long)w->pid);
            return 1;
        }
        w->quick++; /* failed to start (reaped by await_ready) */
    }
    return 1;
}

/* SIGHUP: the check, then each slot's worker replaced by a new one started
 * beside it on the same socket (no connection is refused meanwhile). */
static void reload(qtsp_supervisor *sv)
{
    if (!sv->s.check) {
        LOG_WARN("%s: SIGHUP ignored: no reload here", sv->s.name);
        return;
    }
    LOG_INFO("%s: SIGHUP: checking the configuration and the policies", sv->s.name);
    if (!sv->s.check(sv->s.ctx)) {
        LOG_ERROR("%s: reload refused: the configuration does not load (reasons above); the "
                  "workers keep the policies they have",
                  sv->s.name);
        return;
    }
    for (unsigned i = 0; i < sv->s.n && !g_stop; i++) {
        worker old = sv->w[i];
        if (old.pid <= 0 || old.ready_fd >= 0)
            continue; /* dead or restarting: it reads the new files anyway */
        if (spawn(sv, i) != QTSP_OK || !await_ready(sv)) {
            if (sv->w[i].pid > 0)
                kill_worker(&sv->w[i]);
            sv->w[i] = old;
            LOG_ERROR("%s: reload refused: a new worker %u could not start (reason above); "
                      "worker %u and those after it keep the policies they have",
                      sv->s.name, i, i);
            return;
        }
        if (sv->retiring[i] > 0) /* a previous reload's: it was SIGTERMed */
            LOG_WARN("%s: worker %u of an earlier reload is still draining", sv->s.name, i);
        sv->retiring[i] = old.pid;
        sv->w[i].quick = 0;
        kill(old.pid, SIGTERM);
        LOG_INFO("%s: worker %u reloaded (pid %ld replaces %ld, which drains)", sv->s.name, i,
                 (long)sv->w[i].pid, (long)old.pid);
    }
    if (!g_stop && sv->s.reloaded)
        sv->s.reloaded(sv->s.ctx);
    LOG_INFO("%s: reload done: every worker runs the new policies", sv->s.name);
}

/* Reaps dead workers and restarts them. 0 when one keeps dying at start. */
static int reap_and_restart(qtsp_supervisor *sv)
{
    int st;
    pid_t pid;
    unsigned nd = 0, *dead = sv->dead;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (unsigned i = 0; i < sv->s.n; i++)
            if (sv->retiring[i] == pid) {
                sv->retiring[i] = 0;
                LOG_INFO("%s: the replaced worker %u (pid %ld) is gone", sv->s.name, i, (long)pid);
            }
        for (unsigned i = 0; i < sv->s.n; i++) {
            worker *w = &sv->w[i];
            if (w->pid != pid)
                continue;
            w->pid = 0;
            if (w->ready_fd >= 0) {
                close(w->ready_fd);
                w->ready_fd = -1;
            }
            gone(sv, i);
            if (g_stop)
                break;
            int quick = time(NULL) - w->started < QTSP_SUPERVISOR_QUICK_DEATH_S;
            w->quick = quick ? w->quick + 1 : 0;
            if (WIFEXITED(st))
                LOG_ERROR("%s: worker %u (pid %ld) exited with status %d", sv->s.name, i, (long)pid,
                          WEXITSTATUS(st));
            else
                LOG_ERROR("%s: worker %u (pid %ld) was killed by signal %d", sv->s.name, i,
                          (long)pid, WTERMSIG(st));
            dead[nd++] = i;
        }
    }
    for (unsigned k = 0; k < nd && !g_stop; k++)
        if (!restart(sv, dead[k]))
            return 0;
    return 1;
}

void qtsp_supervisor_free(qtsp_supervisor *sv)
{
    if (!sv)
        return;
    free(sv->w);
    free(sv->pf);
    free(sv->idx);
    free(sv->dead);
    free(sv->retiring);
    free(sv);
}

qtsp_status qtsp_supervisor_start(const qtsp_supervisor_spec *spec, qtsp_supervisor **out)
{
    ENSURE(spec && spec->n >= 1 && spec->listen_fds && spec->run, QTSP_ERR_INVALID,
           "supervisor: no workers to run");
    qtsp_supervisor *sv = calloc(1, sizeof *sv);
    ENSURE(sv, QTSP_ERR_NOMEM, "out of memory");
    sv->s = *spec;
    if (!sv->s.name)
        sv->s.name = "supervisor";
    sv->w = calloc(spec->n, sizeof *sv->w);
    sv->pf = calloc(spec->n, sizeof *sv->pf);
    sv->idx = calloc(spec->n, sizeof *sv->idx);
    sv->dead = calloc(spec->n, sizeof *sv->dead);
    sv->retiring = calloc(spec->n, sizeof *sv->retiring);
    if (!sv->w || !sv->pf || !sv->idx || !sv->dead || !sv->retiring) {
        qtsp_supervisor_free(sv);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    for (unsigned i = 0; i < spec->n; i++)
        sv->w[i].ready_fd = -1;
    /* One worker at a time: SoftHSM2 rewrites its token.object at every
     * login, and a process opening the token meanwhile can miss the token
     * ("no token labelled ...", "cannot list the slots"), so workers never
     * open the token concurrently. A restarted worker logs in alone too (the
     * others are logged in already). */
    qtsp_status rc = QTSP_OK;
    for (unsigned i = 0; i < spec->n && rc == QTSP_OK; i++) {
        rc = spawn(sv, i);
        if (rc == QTSP_OK && !await_ready(sv))
            rc = qtsp_err_set(QTSP_ERR_UNAVAILABLE, __FILE__, __LINE__, "a worker failed to start");
        else if (rc != QTSP_OK)
            LOG_ERROR("%s: %s", sv->s.name, qtsp_err_message());
    }
    if (rc != QTSP_OK) {
        stop_all(sv);
        qtsp_supervisor_free(sv);
        return rc;
    }
    *out = sv;
    return QTSP_OK;
}

int qtsp_supervisor_run(qtsp_supervisor *sv)
{
    sigset_t waitset;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGHUP);
    sigaddset(&waitset, SIGCHLD);
    int code = 0;
    while (!g_stop) {
        int sig = sigwaitinfo(&waitset, NULL);
        if (sig == SIGTERM || sig == SIGINT)
            g_stop = 1;
        else if (sig == SIGHUP)
            reload(sv);
        else if (sig == SIGCHLD && !reap_and_restart(sv)) {
            code = 1;
            break;
        }
    }
    LOG_INFO("stopping: %u worker processes finish their requests in flight", sv->s.n);
    stop_all(sv);
    LOG_INFO("stopped");
    return code;
}
