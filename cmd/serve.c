/* qtsp serve: every service in one process on one HTTP listener.
 * SIGTERM/SIGINT: stop accepting, finish requests in flight, close the store,
 * exit 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/services.h"
#include "core/http.h"
#include "core/log.h"

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
    fprintf(f, "usage: qtsp serve [--home DIR] [--listen HOST:PORT] [--log-format text|json]\n\n"
               "Runs the OCSP responder, TSA, CRL publisher, RA and certificate endpoints in\n"
               "one process. Prints 'listening on http://HOST:PORT' when ready.\n");
    return f == stdout ? 0 : 2;
}

int cmd_serve(int argc, char **argv)
{
    const char *home = cmd_default_home(), *listen = NULL, *log_format = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--listen", &listen) ||
            cmd_opt(argc, argv, &i, "--log-format", &log_format))
            continue;
        fprintf(stderr, "qtsp: serve: unknown argument %s (see qtsp serve --help)\n", argv[i]);
        return 2;
    }
    qtsp_err_clear();
    qtsp_log_format lf = QTSP_LOG_TEXT;
    if (log_format && qtsp_log_parse_format(log_format, &lf) != QTSP_OK)
        return cmd_usage_error("serve", "--log-format must be text or json");

    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("serve");
    if (log_format)
        qtsp_log_set_format(lf);
    qtsp_log_set_buffered(1);
    if (listen)
        snprintf(app.cfg.listen, sizeof app.cfg.listen, "%s", listen);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals before any thread starts so that only the
     * sigsuspend below receives them (no lost wake-up). */
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &orig);

    qtsp_services *svc = NULL;
    qtsp_http_server *srv = NULL;
    qtsp_status rc = qtsp_services_new(&app, &svc);
    if (rc == QTSP_OK) {
        qtsp_http_opts opts = {app.cfg.listen, (unsigned)app.cfg.http_workers,
                               (unsigned)app.cfg.http_conn_timeout_s, 0};
        rc = qtsp_http_start(&opts, qtsp_services_routes(svc), qtsp_services_route_count(svc),
                             qtsp_services_metrics, svc, &srv);
    }
    if (rc == QTSP_OK)
        rc = qtsp_services_start(svc);
    if (rc != QTSP_OK) {
        qtsp_http_stop(srv);
        qtsp_log_set_buffered(0);
        qtsp_services_free(svc);
        qtsp_app_close(&app);
        return cmd_fail("serve");
    }
    char host[128];
    snprintf(host, sizeof host, "%s", app.cfg.listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    printf("listening on http://%s:%u\n", host, qtsp_http_port(srv));
    fflush(stdout);
    LOG_INFO("qtsp serving %s on %s:%u", app.cfg.home, host, qtsp_http_port(srv));

    while (!g_stop)
        sigsuspend(&orig);

    LOG_INFO("stopping: finishing requests in flight");
    qtsp_services_quiesce(svc);
    qtsp_http_stop(srv);
    qtsp_log_set_buffered(0);
    qtsp_services_free(svc);
    qtsp_app_close(&app);
    LOG_INFO("stopped");
    return 0;
}
