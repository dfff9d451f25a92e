/* Lifecycle notifications: an optional webhook that tells other systems
 * (SMS / e-mail gateways) about holds, releases, hold lapses and
 * terminations. Configured by DIR/policies/notify.yaml (docs/notify.md).
 *
 * Events are queued without blocking (bounded queue, oldest dropped when
 * full) and POSTed by one delivery thread as a signed JSON body:
 *   {"id":"<32 hex>","event":"cert.hold","time":"<RFC 3339>","data":{...}}
 * with X-Qtsp-Event, X-Qtsp-Delivery (= id), X-Qtsp-Timestamp (unix seconds)
 * and X-Qtsp-Signature: "sha256=" hex HMAC-SHA256(secret, timestamp "." body).
 * A 2xx answer is delivered; anything else is retried with exponential
 * backoff and jitter, then dropped and counted as failed. One thread keeps
 * events in the order they were queued (so per serial too).
 *
 * Delivery is best effort: the audit log, not the webhook, is the record.
 * Only ra/notify.c includes curl/curl.h. */
#ifndef QTSP_RA_NOTIFY_H
#define QTSP_RA_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct qtsp_notify qtsp_notify;

/* Event names used by the RA (the notifier accepts any name of 1..64
 * characters from [a-z0-9._-]). */
#define QTSP_NOTIFY_HOLD "cert.hold"
#define QTSP_NOTIFY_RELEASE "cert.release"
#define QTSP_NOTIFY_HOLD_LAPSE "cert.hold.lapse"
#define QTSP_NOTIFY_TERMINATE "cert.terminate"

/* Largest JSON body one event may produce; larger events are refused. */
#define QTSP_NOTIFY_MAX_BODY (64 * 1024)

/* Loads policy_path (e.g. DIR/policies/notify.yaml) and, when enabled, the
 * shared secret from secrets_dir/<secret_file>.
 * A NULL or absent policy file, or `enabled: false`, gives a disabled
 * notifier: QTSP_OK, events accepted and dropped silently.
 * Errors: QTSP_ERR_CONFIG naming file:line:col for an unknown key, a bad
 * value, a missing url or secret_file when enabled, a secret file that
 * cannot be read, is shorter than 16 bytes or is readable by group/others;
 * QTSP_ERR_IO when the policy exists but cannot be read; QTSP_ERR_NOMEM.
 * *out owned by the caller (qtsp_notify_free); written only on success.
 * Call before starting threads (initialises libcurl once per process). */
qtsp_status qtsp_notify_new(const char *policy_path, const char *secrets_dir,
                            qtsp_notify **out) QTSP_MUST_USE;

/* Starts the delivery thread (no-op for a disabled notifier). Events queued
 * before start are delivered after it. QTSP_ERR_STATE if already started,
 * QTSP_ERR_INTERNAL if the thread or the libcurl handle cannot be created.
 * Not thread-safe with qtsp_notify_free. */
qtsp_status qtsp_notify_start(qtsp_notify *n) QTSP_MUST_USE;

/* Stops and frees. Keeps delivering for at most the policy's
 * shutdown_grace (default 2 s; a transfer in flight is aborted at the end
 * of it), then drops what is left and counts it. Never blocks longer than
 * the grace plus a few milliseconds. NULL is a no-op. No other call may be
 * running on n. */
void qtsp_notify_free(qtsp_notify *n);

/* Queues one event without blocking. event: 1..64 characters from
 * [a-z0-9._-] (QTSP_NOTIFY_*). data: a JSON object or NULL ({}), borrowed
 * (serialised before return). When the queue is full the oldest queued
 * event is dropped, counted in the metrics and a warning is logged.
 * Disabled notifier: QTSP_OK and nothing happens.
 * Errors: QTSP_ERR_INVALID (bad name, data not an object), QTSP_ERR_TOO_BIG
 * (body above QTSP_NOTIFY_MAX_BODY), QTSP_ERR_NOMEM, QTSP_ERR_CRYPTO (no
 * randomness for the id). Thread-safe. */
qtsp_status qtsp_notify_event(qtsp_notify *n, const char *event, const json_t *data) QTSP_MUST_USE;

/* Waits until the queue is empty and no delivery is in progress, at most
 * timeout_ms. QTSP_OK when idle, QTSP_ERR_STATE on timeout or when the
 * thread is not started while events are queued. Disabled: QTSP_OK.
 * Thread-safe. For tests and for short-lived processes (CLI verbs). */
qtsp_status qtsp_notify_flush(qtsp_notify *n, int64_t timeout_ms) QTSP_MUST_USE;

typedef struct qtsp_notify_stats {
    uint64_t delivered;       /* events answered 2xx */
    uint64_t attempts_failed; /* attempts that failed (non-2xx, timeout, network) */
    uint64_t failed;          /* events given up after all retries */
    uint64_t dropped;         /* events dropped: queue full or shutdown */
    size_t queued;            /* events waiting (not counting one in flight) */
} qtsp_notify_stats;

/* A consistent-enough snapshot of the counters (each counter is atomic).
 * Thread-safe. */
void qtsp_notify_get_stats(qtsp_notify *n, qtsp_notify_stats *out);

/* qtsp_metrics_fn (ctx = qtsp_notify *): appends the counters as
 * Prometheus text: qtsp_notify_delivered_total,
 * qtsp_notify_attempts_failed_total, qtsp_notify_failed_total,
 * qtsp_notify_dropped_total (counters), qtsp_notify_queue_length (gauge),
 * qtsp_notify_enabled (gauge 0/1). Errors: those of qtsp_buf_printf.
 * Thread-safe. */
qtsp_status qtsp_notify_metrics(void *ctx, qtsp_buf *out) QTSP_MUST_USE;

#endif
