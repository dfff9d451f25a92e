/* The process supervisor of `qtsp serve --processes N`: N worker processes,
 * each serving one of N listening sockets (SO_REUSEPORT), started one at a
 * time; a dead worker is restarted alone; a worker that keeps dying at start
 * stops everything; SIGTERM/SIGINT are forwarded and the workers drain.
 *
 * Signals: qtsp_stop_signals_install() blocks SIGTERM, SIGINT, SIGHUP and
 * SIGCHLD (taken with sigwaitinfo/sigtimedwait, never lost) and ignores
 * SIGPIPE; it must run before any thread or worker starts. Workers inherit
 * the mask.
 *
 * SIGHUP to the supervisor reloads: the spec's check runs (the new
 * configuration must load); then, one slot at a time, a new worker starts
 * on the slot's socket beside the old one, and once it serves the old one
 * gets SIGTERM and drains. A failed check or a new worker that cannot start
 * refuses the reload (logged with the reason): the workers not yet replaced
 * keep what they loaded. The server never stops for a reload.
 * Not thread-safe: one supervisor per process, driven by its main thread. */
#ifndef QTSP_CORE_SUPERVISOR_H
#define QTSP_CORE_SUPERVISOR_H

#include "core/err.h"

#define QTSP_SUPERVISOR_QUICK_DEATH_S 10 /* a worker dying this soon after start ... */
#define QTSP_SUPERVISOR_QUICK_DEATHS 5   /* ... this many times in a row stops it all */
#define QTSP_SUPERVISOR_STOP_WAIT_S 30   /* for the workers to drain at stop; then SIGKILL */
#define QTSP_SUPERVISOR_READY_MS (10 * 60 * 1000) /* a worker's start (token login) */

/* Installs the stop handler (SIGTERM/SIGINT set the stop flag), ignores
 * SIGPIPE and blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD in the calling
 * thread. */
void qtsp_stop_signals_install(void);
/* 1 once SIGTERM or SIGINT arrived (or qtsp_stop_wait took one). */
int qtsp_stop_requested(void);
/* Waits up to timeout_s for SIGTERM/SIGINT (blocked, see above). Returns 1
 * when a stop was asked (now or before), 0 on timeout or another signal.
 * A SIGHUP taken meanwhile is noted for qtsp_reload_taken. */
int qtsp_stop_wait(int timeout_s);
/* 1 once if a SIGHUP was taken by qtsp_stop_wait since the last call. */
int qtsp_reload_taken(void);

/* A worker's life, in the forked child: serve listen_fd; once serving, call
 * qtsp_supervisor_ready(ready_fd); return the exit status after a stop
 * (qtsp_stop_wait). i is the worker's index (0..n-1), stable across
 * restarts. The child _exits with the returned status. */
typedef int (*qtsp_worker_fn)(void *ctx, unsigned i, int listen_fd, int ready_fd);

typedef struct qtsp_supervisor_spec {
    const char *name;      /* prefix of the log lines ("serve") */
    unsigned n;            /* workers, >= 1 */
    const int *listen_fds; /* n sockets; worker i keeps only listen_fds[i] */
    qtsp_worker_fn run;
    void (*gone)(void *ctx, unsigned i); /* optional: worker i died or stopped */
    void *ctx;                           /* for run and gone; must outlive the supervisor */
    /* optional, on SIGHUP before any worker is replaced: 1 when the new
     * configuration loads (the hook logs each problem), 0 refuses the
     * reload; then reloaded(ctx) is called once every worker was replaced.
     * Without check, SIGHUP is logged and ignored. */
    int (*check)(void *ctx);
    void (*reloaded)(void *ctx);
} qtsp_supervisor_spec;

typedef struct qtsp_supervisor qtsp_supervisor;

/* Forks the n workers one at a time, each waited for until it is ready
 * (workers never open the token together). On failure the workers already
 * started are stopped and the reason is logged or recorded:
 * QTSP_ERR_IO (pipe/fork failed), QTSP_ERR_UNAVAILABLE (a worker failed to
 * start or did not within QTSP_SUPERVISOR_READY_MS, or a stop was asked),
 * QTSP_ERR_NOMEM, QTSP_ERR_INVALID. spec is copied (its fds are borrowed).
 * *out is written only on success. */
qtsp_status qtsp_supervisor_start(const qtsp_supervisor_spec *spec,
                                  qtsp_supervisor **out) QTSP_MUST_USE;

/* Supervises until SIGTERM/SIGINT: restarts dead workers one at a time,
 * reloads on SIGHUP (above);
 * then forwards SIGTERM and waits QTSP_SUPERVISOR_STOP_WAIT_S for every
 * worker (SIGKILL after). Returns the exit status: 0 after a stop, 1 when a
 * worker died QTSP_SUPERVISOR_QUICK_DEATHS times in a row within
 * QTSP_SUPERVISOR_QUICK_DEATH_S of starting or could not be restarted. */
int qtsp_supervisor_run(qtsp_supervisor *sv);

/* In a worker: tells the supervisor it serves (one byte), closes ready_fd. */
void qtsp_supervisor_ready(int ready_fd);

/* Frees (every worker must be gone: after qtsp_supervisor_run). NULL is a
 * no-op. The listening sockets stay the caller's. */
void qtsp_supervisor_free(qtsp_supervisor *sv);

#endif
