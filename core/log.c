#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

static qtsp_log_format g_format = QTSP_LOG_TEXT;
static qtsp_log_level g_level = QTSP_LOG_INFO;

void qtsp_log_set_format(qtsp_log_format f) { g_format = f; }
void qtsp_log_set_level(qtsp_log_level min) { g_level = min; }

qtsp_status qtsp_log_parse_format(const char *s, qtsp_log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = QTSP_LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = QTSP_LOG_JSON;
    else
        FAIL(QTSP_ERR_INVALID, "log format must be text or json, not '%s'", s);
    return QTSP_OK;
}

static const char *level_name(qtsp_log_level l)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    return (unsigned)l < 4 ? names[l] : "?";
}

/* Appends s to out as a JSON string body (no quotes), escaping as needed. */
static size_t json_escape(char *out, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

static void emit(char *line, size_t n, size_t cap)
{
    if (n >= cap - 1)
        n = cap - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static size_t stamp(char *out, size_t cap)
{
    char ts[40];
    qtsp_format_rfc3339_ms(qtsp_now_ms(), ts, sizeof ts);
    return (size_t)snprintf(out, cap, "%s", ts);
}

void qtsp_log(qtsp_log_level lvl, const char *fmt, ...)
{
    if (lvl < g_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[4608];
    size_t n = 0;
    if (g_format == QTSP_LOG_JSON) {
        n += (size_t)snprintf(line, sizeof line, "{\"time\":\"");
        n += stamp(line + n, sizeof line - n);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"level\":\"%s\",\"msg\":\"",
                              level_name(lvl));
        n = json_escape(line, sizeof line, n, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}");
    } else {
        n += stamp(line, sizeof line);
        n += (size_t)snprintf(line + n, sizeof line - n, " %s %s", level_name(lvl), msg);
    }
    emit(line, n, sizeof line);
}

void qtsp_log_access(const char *request_id, const char *method, const char *path, int status,
                     size_t bytes, double ms)
{
    if (QTSP_LOG_INFO < g_level)
        return;
    char line[4608];
    size_t n = 0;
    if (g_format == QTSP_LOG_JSON) {
        n += (size_t)snprintf(line, sizeof line, "{\"time\":\"");
        n += stamp(line + n, sizeof line - n);
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "\",\"level\":\"info\",\"msg\":\"access\",\"request_id\":\"%s\","
                              "\"method\":\"",
                              request_id);
        n = json_escape(line, sizeof line, n, method);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"path\":\"");
        n = json_escape(line, sizeof line, n, path);
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "\",\"status\":%d,\"bytes\":%zu,\"ms\":%.3f}", status, bytes, ms);
    } else {
        n += stamp(line, sizeof line);
        char p[512];
        size_t pn = json_escape(p, sizeof p, 0, path);
        p[pn] = '\0';
        n += (size_t)snprintf(line + n, sizeof line - n,
                              " info access id=%s method=%s path=\"%s\" status=%d bytes=%zu "
                              "ms=%.3f",
                              request_id, method, p, status, bytes, ms);
    }
    emit(line, n, sizeof line);
}
