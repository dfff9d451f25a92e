/* Logging to stderr: one line per event, as text or as JSON lines
 * (`--log-format json`). Never pass secrets (PINs, tokens, passwords, OTPs).
 * Thread-safe: each line is written with a single write(2). */
#ifndef QTSP_CORE_LOG_H
#define QTSP_CORE_LOG_H

#include <stddef.h>

#include "core/err.h"

typedef enum qtsp_log_level {
    QTSP_LOG_DEBUG = 0,
    QTSP_LOG_INFO = 1,
    QTSP_LOG_WARN = 2,
    QTSP_LOG_ERROR = 3,
} qtsp_log_level;

typedef enum qtsp_log_format { QTSP_LOG_TEXT = 0, QTSP_LOG_JSON = 1 } qtsp_log_format;

/* Process-wide settings; call before starting threads. */
void qtsp_log_set_format(qtsp_log_format f);
void qtsp_log_set_level(qtsp_log_level min);

/* Parses "text" or "json". QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_log_parse_format(const char *s, qtsp_log_format *out) QTSP_MUST_USE;

/* Logs one line. In JSON mode the message becomes the "msg" field. */
void qtsp_log(qtsp_log_level lvl, const char *fmt, ...) QTSP_PRINTF(2, 3);

/* Logs an access line for one HTTP request (JSON: fields; text: key=value).
 * client: the client's address (field "client"), or NULL for none. */
void qtsp_log_access(const char *request_id, const char *client, const char *method,
                     const char *path, int status, size_t bytes, double ms);

/* Buffered access lines (serve): each thread's lines are written together,
 * at the latest 100 ms after the oldest one. Off by default. Call before the
 * threads that log start; qtsp_log_set_buffered(0) flushes. */
void qtsp_log_set_buffered(int on);
/* Writes every buffered access line now (shutdown). Thread-safe. */
void qtsp_log_flush(void);

#define LOG_DEBUG(...) qtsp_log(QTSP_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) qtsp_log(QTSP_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) qtsp_log(QTSP_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) qtsp_log(QTSP_LOG_ERROR, __VA_ARGS__)

#endif
