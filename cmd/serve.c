/* qtsp serve: every service on one HTTP listener.
 *
 * One process by default. With --processes N (or http.processes) a
 * supervisor binds N listening sockets to the same address with
 * SO_REUSEPORT and forks N worker processes, each a whole server (every
 * service, its own token login, store handle and HTTP threads) serving one
 * socket; the kernel spreads connections over them. SoftHSM2 serialises
 * the threads of one process on its internal locks, so signing throughput
 * grows with processes rather than threads. Worker 0 also runs the jobs
 * that must run once (hold sweeper, key-pool filler); /metrics merges every
 * worker's figures (core/procmetrics.h). A worker that dies is restarted on
 * the same socket (connections wait in its backlog meanwhile); five quick
 * deaths in a row stop the whole server with exit status 1.
 *
 * SIGTERM/SIGINT: stop accepting, finish requests in flight, close the
 * store, exit 0 (the supervisor forwards the signal and waits for every
 * worker). */
#define _GNU_SOURCE 1 /* ppoll */
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

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/home_lock.h"
#include "cmd/services.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/log.h"
#include "core/procmetrics.h"

#define READY_TIMEOUT_MS (10 * 60 * 1000) /* a worker's start: token login, key index */
#define QUICK_DEATH_S 10                  /* a worker dying this soon after start ... */
#define QUICK_DEATHS_MAX 5                /* ... this many times in a row stops serve */
#define METRICS_PUBLISH_S 1
#define STOP_WAIT_S 30 /* for the workers to drain at stop; then SIGKILL */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("serve", "missing or wrong arguments (see qtsp serve --help)");
    fprintf(f, "usage: qtsp serve [--home DIR] [--listen HOST:PORT] [--processes N]\n"
               "                  [--log-format text|json]\n\n"
               "Runs the OCSP responder, TSA, CRL publisher, RA and certificate endpoints.\n"
               "Prints 'listening on http://HOST:PORT' when ready. --processes N (default:\n"
               "http.processes in qtsp.yaml, 1; 0 = one per core) runs N worker processes\n"
               "sharing the port.\n");
    return f == stdout ? 0 : 2;
}

/* A worker process of the supervisor (NULL in single-process mode). */
typedef struct worker_ctx {
    unsigned index;
    int listen_fd;
    int ready_fd; /* write end: one byte once serving, then closed */
    qtsp_procmetrics *pm;
    qtsp_http_server *srv; /* set once started */
} worker_ctx;

static void publish_metrics(worker_ctx *w)
{
    qtsp_buf own;
    qtsp_buf_init(&own, QTSP_PROCMETRICS_SLOT);
    if (qtsp_http_metrics_text(w->srv, &own) != QTSP_OK ||
        qtsp_procmetrics_publish(w->pm, w->index, (const char *)own.data, own.len) != QTSP_OK) {
        LOG_WARN("serve: cannot publish this worker's metrics: %s", qtsp_err_message());
        qtsp_err_clear();
    }
    qtsp_buf_cleanup(&own);
}

/* /metrics of a worker: its own text, fresh, and the others' last ones. */
static qtsp_status metrics_hook(void *ctx, const char *own, size_t len, qtsp_buf *out)
{
    worker_ctx *w = ctx;
    TRY(qtsp_procmetrics_publish(w->pm, w->index, own, len));
    return qtsp_procmetrics_merge(w->pm, out);
}

/* Prints "listening on http://HOST:PORT" (stdout, flushed). */
static void say_listening(const char *listen, unsigned port)
{
    char host[128];
    snprintf(host, sizeof host, "%s", listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    printf("listening on http://%s:%u\n", host, port);
    fflush(stdout);
}

/* Runs one whole server until SIGTERM/SIGINT (blocked by the caller and
 * waited for here). Returns the exit status. */
static int serve_one(const char *home, const char *listen, const char *log_format,
                     qtsp_log_format lf, long nproc, worker_ctx *w)
{
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("serve");
    if (nproc >= 0) /* --processes: also sizes the automatic thread count */
        qtsp_config_set_processes(&app.cfg, nproc);
    if (log_format)
        qtsp_log_set_format(lf);
    qtsp_log_set_buffered(1);
    if (listen)
        snprintf(app.cfg.listen, sizeof app.cfg.listen, "%s", listen);

    qtsp_services *svc = NULL;
    qtsp_http_server *srv = NULL;
    qtsp_status rc = qtsp_services_new(&app, &svc);
    if (rc == QTSP_OK) {
        qtsp_http_opts opts = {.listen = app.cfg.listen,
                               .workers = (unsigned)app.cfg.http_workers,
                               .conn_timeout_s = (unsigned)app.cfg.http_conn_timeout_s};
        if (w) {
            opts.use_listen_fd = 1;
            opts.listen_fd = w->listen_fd;
            opts.metrics_hook = metrics_hook;
            opts.metrics_hook_ctx = w;
        }
        rc = qtsp_http_start(&opts, qtsp_services_routes(svc), qtsp_services_route_count(svc),
                             qtsp_services_metrics, svc, &srv);
    }
    if (rc == QTSP_OK)
        rc = qtsp_services_start(svc, !w || w->index == 0);
    if (rc != QTSP_OK) {
        qtsp_http_stop(srv);
        qtsp_log_set_buffered(0);
        qtsp_services_free(svc);
        qtsp_app_close(&app);
        return cmd_fail("serve");
    }
    if (w) {
        w->srv = srv;
        publish_metrics(w);
        LOG_INFO("qtsp worker %u (pid %ld) serving %s%s", w->index, (long)getpid(),
                 app.cfg.home, w->index == 0 ? " (runs the sweeper and the key pool)" : "");
        if (write(w->ready_fd, "r", 1) != 1)
            LOG_WARN("serve: cannot tell the supervisor this worker is ready: %s",
                     strerror(errno));
        close(w->ready_fd);
    } else {
        say_listening(app.cfg.listen, qtsp_http_port(srv));
        LOG_INFO("qtsp serving %s on %s (port %u)", app.cfg.home, app.cfg.listen,
                 qtsp_http_port(srv));
    }

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    while (!g_stop) {
        struct timespec ts = {METRICS_PUBLISH_S, 0};
        int sig = sigtimedwait(&stop, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            g_stop = 1;
        else if (w && sig < 0 && errno == EAGAIN)
            publish_metrics(w);
    }

    LOG_INFO("stopping: finishing requests in flight");
    qtsp_services_quiesce(svc);
    qtsp_http_stop(srv);
    qtsp_log_set_buffered(0);
    qtsp_services_free(svc);
    qtsp_app_close(&app);
    LOG_INFO("stopped");
    return 0;
}

/* ---- supervisor ------------------------------------------------------------ */

typedef struct worker {
    pid_t pid;        /* 0 when not running */
    int ready_fd;     /* read end while starting, else -1 */
    time_t started;
    unsigned quick;   /* quick deaths in a row */
} worker;

typedef struct supervisor {
    const char *home, *listen, *log_format;
    qtsp_log_format lf;
    long nproc;
    unsigned n;
    int *fds;
    worker *w;
    qtsp_procmetrics *pm;
} supervisor;

static qtsp_status spawn(supervisor *sv, unsigned i)
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
        for (unsigned j = 0; j < sv->n; j++) {
            if (j != i)
                close(sv->fds[j]);
            if (j != i && sv->w[j].ready_fd >= 0)
                close(sv->w[j].ready_fd);
        }
        /* SIGTERM/SIGINT stay blocked for serve_one's sigtimedwait */
        worker_ctx ctx = {i, sv->fds[i], p[1], sv->pm, NULL};
        int code = serve_one(sv->home, sv->listen, sv->log_format, sv->lf, sv->nproc, &ctx);
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
static int await_ready(supervisor *sv)
{
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)READY_TIMEOUT_MS * 1000000ULL;
    for (;;) {
        struct pollfd pf[QTSP_PROCMETRICS_MAX];
        unsigned idx[QTSP_PROCMETRICS_MAX], k = 0;
        for (unsigned i = 0; i < sv->n; i++)
            if (sv->w[i].ready_fd >= 0) {
                pf[k] = (struct pollfd){sv->w[i].ready_fd, POLLIN, 0};
                idx[k++] = i;
            }
        if (k == 0)
            return 1;
        uint64_t now = qtsp_mono_ns();
        if (now >= deadline || g_stop) {
            LOG_ERROR("serve: %s", g_stop ? "stopped while a worker was starting"
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
                LOG_ERROR("serve: worker %u failed to start (exit status %d)", idx[j],
                          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                return 0;
            }
        }
    }
}

/* SIGTERM to every worker; those not gone within STOP_WAIT_S (a worker
 * drains its requests for at most about 11 s) are killed. */
static void stop_all(supervisor *sv)
{
    for (unsigned i = 0; i < sv->n; i++)
        if (sv->w[i].pid > 0)
            kill(sv->w[i].pid, SIGTERM);
    uint64_t deadline = qtsp_mono_ns() + (uint64_t)STOP_WAIT_S * 1000000000ULL;
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < sv->n; i++) {
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
    for (unsigned i = 0; i < sv->n; i++) {
        if (sv->w[i].pid > 0)
            LOG_ERROR("serve: worker %u did not stop within %d s; killed", i, STOP_WAIT_S);
        kill_worker(&sv->w[i]);
    }
}

/* Starts worker i again and waits until it serves, one worker at a time
 * (workers never log in to the token together). 0 when it keeps failing
 * to start, or cannot be started. */
static int restart(supervisor *sv, unsigned i)
{
    worker *w = &sv->w[i];
    while (!g_stop) {
        if (w->quick >= QUICK_DEATHS_MAX) {
            LOG_ERROR("serve: worker %u died %u times within %d s of starting; stopping", i,
                      w->quick, QUICK_DEATH_S);
            return 0;
        }
        if (w->quick)
            sleep(1); /* do not spin on a worker that cannot start */
        if (spawn(sv, i) != QTSP_OK) {
            LOG_ERROR("serve: cannot restart worker %u: %s", i, qtsp_err_message());
            return 0;
        }
        if (await_ready(sv)) {
            LOG_INFO("serve: worker %u restarted (pid %ld)", i, (long)w->pid);
            return 1;
        }
        w->quick++; /* failed to start (reaped by await_ready) */
    }
    return 1;
}

/* Reaps dead workers and restarts them. 0 when one keeps dying at start. */
static int reap_and_restart(supervisor *sv)
{
    int st;
    pid_t pid;
    unsigned dead[QTSP_PROCMETRICS_MAX], nd = 0;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (unsigned i = 0; i < sv->n; i++) {
            worker *w = &sv->w[i];
            if (w->pid != pid)
                continue;
            w->pid = 0;
            if (w->ready_fd >= 0) {
                close(w->ready_fd);
                w->ready_fd = -1;
            }
            qtsp_procmetrics_clear(sv->pm, i);
            if (g_stop)
                break;
            int quick = time(NULL) - w->started < QUICK_DEATH_S;
            w->quick = quick ? w->quick + 1 : 0;
            if (WIFEXITED(st))
                LOG_ERROR("serve: worker %u (pid %ld) exited with status %d", i, (long)pid,
                          WEXITSTATUS(st));
            else
                LOG_ERROR("serve: worker %u (pid %ld) was killed by signal %d", i, (long)pid,
                          WTERMSIG(st));
            dead[nd++] = i;
        }
    }
    for (unsigned k = 0; k < nd && !g_stop; k++)
        if (!restart(sv, dead[k]))
            return 0;
    return 1;
}

static int supervise(const char *home, const char *listen, const char *log_format,
                     qtsp_log_format lf, long nproc, const qtsp_config *cfg)
{
    supervisor sv = {home, listen, log_format, lf, nproc, (unsigned)cfg->http_processes, NULL,
                     NULL, NULL};
    const char *addr = listen ? listen : cfg->listen;
    unsigned port = 0;
    int code = 1;
    sv.fds = calloc(sv.n, sizeof *sv.fds);
    sv.w = calloc(sv.n, sizeof *sv.w);
    if (!sv.fds || !sv.w) {
        free(sv.fds);
        free(sv.w);
        fprintf(stderr, "qtsp: serve: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < sv.n; i++)
        sv.w[i].ready_fd = -1;
    if (qtsp_procmetrics_new(sv.n, &sv.pm) != QTSP_OK ||
        qtsp_http_listen_shared(addr, sv.n, sv.fds, &port) != QTSP_OK) {
        qtsp_procmetrics_free(sv.pm);
        free(sv.fds);
        free(sv.w);
        return cmd_fail("serve");
    }
    /* One worker at a time: SoftHSM2 rewrites its token.object at every
     * login, and a process opening the token meanwhile can miss the token
     * ("no token labelled ...", "cannot list the slots"), so workers never
     * open the token concurrently. A restarted worker logs in alone too (the
     * others are logged in already). */
    unsigned started = 0;
    int ready = 1;
    for (; started < sv.n && ready; started++) {
        if (spawn(&sv, started) != QTSP_OK)
            break;
        ready = await_ready(&sv);
    }
    if (started < sv.n || !ready) {
        if (ready)
            LOG_ERROR("serve: %s", qtsp_err_message());
        stop_all(&sv);
        goto out;
    }
    say_listening(addr, port);
    LOG_INFO("qtsp serving %s on %s (port %u) with %u worker processes of %lld threads", home,
             addr, port, sv.n, (long long)cfg->http_workers);

    sigset_t waitset;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGCHLD);
    code = 0;
    while (!g_stop) {
        int sig = sigwaitinfo(&waitset, NULL);
        if (sig == SIGTERM || sig == SIGINT)
            g_stop = 1;
        else if (sig == SIGCHLD && !reap_and_restart(&sv)) {
            code = 1;
            break;
        }
    }
    LOG_INFO("stopping: %u worker processes finish their requests in flight", sv.n);
    stop_all(&sv);
    LOG_INFO("stopped");
out:
    for (unsigned i = 0; i < sv.n; i++)
        close(sv.fds[i]);
    qtsp_procmetrics_free(sv.pm);
    free(sv.fds);
    free(sv.w);
    return code;
}

int cmd_serve(int argc, char **argv)
{
    const char *home = cmd_default_home(), *listen = NULL, *log_format = NULL, *procs = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--listen", &listen) ||
            cmd_opt(argc, argv, &i, "--log-format", &log_format) ||
            cmd_opt(argc, argv, &i, "--processes", &procs))
            continue;
        fprintf(stderr, "qtsp: serve: unknown argument %s (see qtsp serve --help)\n", argv[i]);
        return 2;
    }
    qtsp_err_clear();
    qtsp_log_format lf = QTSP_LOG_TEXT;
    if (log_format && qtsp_log_parse_format(log_format, &lf) != QTSP_OK)
        return cmd_usage_error("serve", "--log-format must be text or json");
    long nproc = -1;
    if (procs) {
        char *end = NULL;
        errno = 0;
        nproc = strtol(procs, &end, 10);
        if (errno || !end || *end || end == procs || nproc < 0 || nproc > QTSP_PROCMETRICS_MAX)
            return cmd_usage_error("serve", "--processes must be 0..64 (0 = one per core)");
    }
    qtsp_config cfg;
    if (qtsp_config_load(home, &cfg) != QTSP_OK || cmd_home_lock_serve(cfg.home) != QTSP_OK)
        return cmd_fail("serve");
    if (nproc >= 0)
        qtsp_config_set_processes(&cfg, nproc);
    if (cfg.http_processes > QTSP_PROCMETRICS_MAX)
        return cmd_usage_error("serve", "at most 64 processes");
    qtsp_log_set_format(log_format ? lf : cfg.log_json ? QTSP_LOG_JSON : QTSP_LOG_TEXT);

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
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, NULL);

    if (cfg.http_processes <= 1)
        return serve_one(home, listen, log_format, lf, nproc, NULL);
    return supervise(home, listen, log_format, lf, nproc, &cfg);
}
