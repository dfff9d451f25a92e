/* qtsp serve: every service on one HTTP listener.
 *
 * One worker process per core by default (http.processes: 0); with one
 * process (--processes 1, or a one-core box) it serves in this process.
 * With N > 1 a supervisor (core/supervisor.h) binds N listening sockets to
 * the same address with SO_REUSEPORT and forks N worker processes, each a
 * whole server (every service, its own token login, store handle and HTTP
 * threads) serving one socket; the kernel spreads connections over them.
 * SoftHSM2 serialises the threads of one process on its internal locks, so
 * signing throughput grows with processes rather than threads. Worker 0
 * also runs the jobs that must run once (hold sweeper, key-pool filler);
 * /metrics merges every worker's figures (core/procmetrics.h). A worker
 * that dies is restarted on the same socket (connections wait in its
 * backlog meanwhile); five quick deaths in a row stop the whole server
 * with exit status 1.
 *
 * SIGTERM/SIGINT: stop accepting, finish requests in flight, close the
 * store, exit 0 (the supervisor forwards the signal and waits for every
 * worker). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/home_lock.h"
#include "cmd/services.h"
#include "core/api.h"
#include "core/http.h"
#include "core/log.h"
#include "core/procmetrics.h"
#include "core/supervisor.h"
#include "ra/operator.h"

#define METRICS_PUBLISH_S 1

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("serve", "missing or wrong arguments (see qtsp serve --help)");
    fprintf(f, "usage: qtsp serve [--home DIR] [--listen HOST:PORT] [--processes N]\n"
               "                  [--log-format text|json]\n"
               "       qtsp serve [--home DIR] --routes\n\n"
               "Runs the OCSP responder, TSA, CRL publisher, RA and certificate endpoints.\n"
               "Prints 'listening on http://HOST:PORT' when ready. --processes N (default:\n"
               "http.processes in qtsp.yaml, 0 = one per core) runs N worker processes\n"
               "sharing the port; 1 serves in a single process. --routes prints the\n"
               "routes this server answers (METHOD PATH, one a line; PATH* = prefix) and\n"
               "exits without serving.\n");
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

/* Records the policies this server loaded (cmd_record_served_digest). */
static void record_digest(const qtsp_config *cfg)
{
    if (cmd_record_served_digest(cfg) != QTSP_OK) {
        LOG_WARN("serve: cannot record the policy digest: %s", qtsp_err_message());
        qtsp_err_clear();
    }
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
    if (qtsp_app_open(home, APP_STORE | APP_KEYS | APP_NO_DIGEST_CHECK, &app) != QTSP_OK)
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
    app.worker = w ? (int)w->index : 0;
    qtsp_status rc = qtsp_services_new(&app, &svc);
    if (rc == QTSP_OK) {
        const char *proxies[QTSP_CONFIG_PROXIES_MAX + 1] = {NULL};
        for (size_t i = 0; i < app.cfg.http_n_trusted_proxies; i++)
            proxies[i] = app.cfg.http_trusted_proxies[i];
        qtsp_http_opts opts = {
            .listen = app.cfg.listen,
            .workers = (unsigned)app.cfg.http_workers,
            .conn_timeout_s = (unsigned)app.cfg.http_conn_timeout_s,
            .trusted_proxies = proxies,
            .max_connections = (size_t)app.cfg.http_max_connections,
            .per_address = app.cfg.http_per_address ? (size_t)app.cfg.http_per_address : (size_t)-1,
            .fast_routes = app.cfg.http_fast_lane ? qtsp_services_fast_routes() : NULL,
            /* with one signing thread per process (the default) the lane
             * signs its rounds itself; with more, they sign in parallel */
            .lane_round_begin = app.cfg.http_workers == 1 ? qtsp_services_lane_round_begin : NULL,
            .lane_round_end = app.cfg.http_workers == 1 ? qtsp_services_lane_round_end : NULL,
            .lane_round_ctx = svc,
            .lane_no_io_uring = !app.cfg.http_io_uring};
        if (w) {
            opts.use_listen_fd = 1;
            opts.listen_fd = w->listen_fd;
            opts.metrics_hook = metrics_hook;
            opts.metrics_hook_ctx = w;
        }
        rc = qtsp_http_start(&opts, qtsp_services_routes(svc), qtsp_services_route_count(svc),
                             qtsp_services_metrics, svc, &srv);
    }
    if (rc == QTSP_OK) {
        qtsp_services_set_http(svc, srv);
        rc = qtsp_services_start(svc, !w || w->index == 0);
    }
    if (rc != QTSP_OK) {
        qtsp_services_set_http(svc, NULL);
        qtsp_http_stop(srv);
        qtsp_log_set_buffered(0);
        qtsp_services_free(svc);
        qtsp_app_close(&app);
        return cmd_fail("serve");
    }
    if (w) {
        w->srv = srv;
        publish_metrics(w);
        LOG_INFO("qtsp worker %u (pid %ld) serving %s%s", w->index, (long)getpid(), app.cfg.home,
                 w->index == 0 ? " (runs the sweeper and the key pool)" : "");
        qtsp_supervisor_ready(w->ready_fd);
    } else {
        record_digest(&app.cfg);
        say_listening(app.cfg.listen, qtsp_http_port(srv));
        LOG_INFO("qtsp serving %s on %s (port %u)", app.cfg.home, app.cfg.listen,
                 qtsp_http_port(srv));
    }

    while (!qtsp_stop_wait(METRICS_PUBLISH_S)) {
        if (w)
            publish_metrics(w);
        if (qtsp_reload_taken()) {
            if (w)
                LOG_WARN("SIGHUP to worker %u ignored: send it to the supervisor (pid %ld)",
                         w->index, (long)getppid());
            else
                LOG_ERROR("reload refused: a single-process server (http.processes: 1) cannot "
                          "reload in place; it keeps its policies: restart it, or run worker "
                          "processes");
        }
    }

    LOG_INFO("stopping: finishing requests in flight");
    qtsp_services_quiesce(svc);
    qtsp_services_set_http(svc, NULL); /* the TSA stops asking srv, then srv goes */
    qtsp_http_stop(srv);
    qtsp_log_set_buffered(0);
    qtsp_services_free(svc);
    qtsp_app_close(&app);
    LOG_INFO("stopped");
    return 0;
}

/* serve --routes: the routes of the server this home would run, built by
 * the same code as serving (docs/openapi.yaml's test compares them). */
static int list_routes(const char *home)
{
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS | APP_NO_DIGEST_CHECK, &app) != QTSP_OK)
        return cmd_fail("serve");
    qtsp_services *svc = NULL;
    qtsp_status rc = qtsp_services_new(&app, &svc);
    if (rc == QTSP_OK)
        rc =
            qtsp_api_list_routes(qtsp_services_routes(svc), qtsp_services_route_count(svc), stdout);
    qtsp_services_free(svc);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("serve");
}

/* ---- worker processes (core/supervisor.h) ---------------------------------- */

typedef struct serve_args {
    const char *home, *listen, *log_format;
    qtsp_log_format lf;
    long nproc;
    qtsp_procmetrics *pm;
} serve_args;

static int run_worker(void *ctx, unsigned i, int listen_fd, int ready_fd)
{
    serve_args *a = ctx;
    worker_ctx w = {i, listen_fd, ready_fd, a->pm, NULL};
    return serve_one(a->home, a->listen, a->log_format, a->lf, a->nproc, &w);
}

static void worker_gone(void *ctx, unsigned i)
{
    serve_args *a = ctx;
    qtsp_procmetrics_clear(a->pm, i);
}

/* SIGHUP: `qtsp config check --home H` in a child process (the token, the
 * store and the policies are opened there, never in the supervisor, whose
 * state its workers inherit); its lines go to the log (stderr). */
static int reload_check(void *ctx)
{
    serve_args *a = ctx;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERROR("serve: reload check: fork: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        char *args[] = {"qtsp", "config", "check", "--for-reload", "--home", (char *)a->home, NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void reloaded(void *ctx)
{
    serve_args *a = ctx;
    qtsp_config cfg;
    if (qtsp_config_load(a->home, &cfg) == QTSP_OK)
        record_digest(&cfg);
    else
        qtsp_err_clear();
}

static int supervise(const char *home, const char *listen, const char *log_format,
                     qtsp_log_format lf, long nproc, const qtsp_config *cfg)
{
    serve_args args = {home, listen, log_format, lf, nproc, NULL};
    unsigned n = (unsigned)cfg->http_processes;
    const char *addr = listen ? listen : cfg->listen;
    unsigned port = 0;
    int *fds = calloc(n, sizeof *fds);
    if (!fds) {
        fprintf(stderr, "qtsp: serve: out of memory\n");
        return 1;
    }
    if (qtsp_procmetrics_new(n, &args.pm) != QTSP_OK ||
        qtsp_http_listen_shared(addr, n, fds, &port) != QTSP_OK) {
        qtsp_procmetrics_free(args.pm);
        free(fds);
        return cmd_fail("serve");
    }
    qtsp_supervisor_spec spec = {"serve",     n,     fds,          run_worker,
                                 worker_gone, &args, reload_check, reloaded};
    qtsp_supervisor *sv = NULL;
    int code = 1;
    if (qtsp_supervisor_start(&spec, &sv) == QTSP_OK) { /* a failure is logged */
        record_digest(cfg);
        say_listening(addr, port);
        LOG_INFO("qtsp serving %s on %s (port %u) with %u worker processes of %lld threads", home,
                 addr, port, n, (long long)cfg->http_workers);
        code = qtsp_supervisor_run(sv);
        qtsp_supervisor_free(sv);
    }
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
    qtsp_procmetrics_free(args.pm);
    free(fds);
    return code;
}

int cmd_serve(int argc, char **argv)
{
    const char *home = cmd_default_home(), *listen = NULL, *log_format = NULL, *procs = NULL;
    int routes = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--routes") == 0) {
            routes = 1;
            continue;
        }
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--listen", &listen) ||
            cmd_opt(argc, argv, &i, "--log-format", &log_format) ||
            cmd_opt(argc, argv, &i, "--processes", &procs))
            continue;
        fprintf(stderr, "qtsp: serve: unknown argument %s (see qtsp serve --help)\n", argv[i]);
        return 2;
    }
    qtsp_err_clear();
    if (routes)
        return list_routes(home);
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
    qtsp_config_warn_exposed(&cfg); /* issue 15: the PIN file is the CA keys */

    qtsp_stop_signals_install();
    /* operator failure counters shared by the workers, mapped before they fork */
    if (qtsp_operator_shared_init() != QTSP_OK)
        return cmd_fail("serve");

    if (cfg.http_processes <= 1)
        return serve_one(home, listen, log_format, lf, nproc, NULL);
    return supervise(home, listen, log_format, lf, nproc, &cfg);
}
