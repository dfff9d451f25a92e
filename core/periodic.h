/* One periodic background thread: runs a function now, then again after the
 * delay it asks for, earlier when kicked; stops and joins on request.
 * Deadlines are on CLOCK_MONOTONIC, so a wall-clock step (NTP, an operator's
 * `date -s`) neither stalls nor hurries it. Used by the hold sweeper, the
 * key-pool filler, the CRL publisher and the webhook notifier. */
#ifndef QTSP_CORE_PERIODIC_H
#define QTSP_CORE_PERIODIC_H

#include <stdint.h>

#include "core/err.h"

typedef struct qtsp_periodic qtsp_periodic;

/* A run's answer: milliseconds until the next run (>= 0; 0 runs again at
 * once unless stopping), or one of these. */
#define QTSP_PERIODIC_INTERVAL (-1)  /* the interval given at start */
#define QTSP_PERIODIC_IDLE INT64_MAX /* only a kick (or stop) wakes it */

/* The work of one run, on the periodic thread. p is the handle (for
 * qtsp_periodic_sleep and qtsp_periodic_stopping); ctx as given at start. */
typedef int64_t (*qtsp_periodic_fn)(qtsp_periodic *p, void *ctx);

/* Starts a thread (name: for error messages) that calls
 * fn(p, ctx) after first_ms (0: at once), then as fn answers; interval_ms
 * (> 0) is what QTSP_PERIODIC_INTERVAL means. ctx must outlive the thread.
 * Errors: QTSP_ERR_INVALID (no fn, interval <= 0), QTSP_ERR_NOMEM,
 * QTSP_ERR_INTERNAL (the thread cannot be created). *out is written only on
 * success; free it with qtsp_periodic_stop. */
qtsp_status qtsp_periodic_start(const char *name, int64_t interval_ms, int64_t first_ms,
                                qtsp_periodic_fn fn, void *ctx, qtsp_periodic **out) QTSP_MUST_USE;

/* Asks for a run as soon as possible: a waiting thread runs at once; a kick
 * during a run makes the next run follow it without waiting. Thread-safe,
 * cheap (one lock); NULL is a no-op. */
void qtsp_periodic_kick(qtsp_periodic *p);

/* Stops the thread: a run in progress finishes (fn may poll
 * qtsp_periodic_stopping to cut it short), and so does one a kick asked for
 * before the stop; no other run starts. Joins and frees. Not from the
 * periodic thread itself. NULL is a no-op. */
void qtsp_periodic_stop(qtsp_periodic *p);

/* From fn: 1 once qtsp_periodic_stop was called, else 0. */
int qtsp_periodic_stopping(qtsp_periodic *p);

/* From fn: waits ms milliseconds (monotonic) unless stop is asked first;
 * kicks do not interrupt it. Returns 1 when the time passed, 0 when
 * stopping. */
int qtsp_periodic_sleep(qtsp_periodic *p, int64_t ms);

#endif
