#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"

static qtsp_log_format g_format = QTSP_LOG_TEXT;
static qtsp_log_level g_level = QTSP_LOG_INFO;

void qtsp_log_set_format(qtsp_log_format f)
{
    g_format = f;
}
void qtsp_log_set_level(qtsp_log_level min)
{
    g_level = min;
}

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

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* nothing sensible to do when stderr fails */
        p += w;
        n -= (size_t)w;
    }
}

static void emit(char *line, size_t n, size_t cap)
{
    if (n >= cap - 1)
        n = cap - 2;
    line[n++] = '\n';
    write_all(line, n);
}

/* ---- buffered access lines ------------------------------------------------
 * One write(2) per request costs ~2 us, and much more when stderr is a file
 * on a busy disk. In buffered mode (qtsp serve) each thread collects its
 * access lines and writes them in one go when the buffer fills or when the
 * oldest line is LOG_FLUSH_MS old (a flusher thread sees to idle threads).
 * Only whole lines are written, so lines never tear. Event lines (info,
 * warnings, errors) are always written at once. */
#define LOG_TBUF 16384
#define LOG_FLUSH_MS 100

typedef struct log_tbuf {
    pthread_mutex_t mu;
    size_t len;
    int64_t first_ms;
    struct log_tbuf *next;
    char buf[LOG_TBUF];
} log_tbuf;

static _Atomic int g_buffered;
static pthread_mutex_t g_tbufs_mu = PTHREAD_MUTEX_INITIALIZER;
static log_tbuf *g_tbufs;
static pthread_key_t g_tbuf_key;
static pthread_once_t g_tbuf_once = PTHREAD_ONCE_INIT;
static _Thread_local log_tbuf *t_tbuf;

static void tbuf_flush_locked(log_tbuf *b)
{
    if (b->len)
        write_all(b->buf, b->len);
    b->len = 0;
}

/* Thread exit: write what is left and forget the buffer. */
static void tbuf_destroy(void *p)
{
    log_tbuf *b = p;
    pthread_mutex_lock(&g_tbufs_mu);
    for (log_tbuf **pp = &g_tbufs; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    pthread_mutex_unlock(&g_tbufs_mu);
    pthread_mutex_lock(&b->mu);
    tbuf_flush_locked(b);
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
    t_tbuf = NULL; /* a later line on this thread starts a new buffer */
}

static void tbuf_key_init(void)
{
    pthread_key_create(&g_tbuf_key, tbuf_destroy);
}

static log_tbuf *tbuf_get(void)
{
    if (t_tbuf)
        return t_tbuf;
    pthread_once(&g_tbuf_once, tbuf_key_init);
    log_tbuf *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    pthread_setspecific(g_tbuf_key, b);
    pthread_mutex_lock(&g_tbufs_mu);
    b->next = g_tbufs;
    g_tbufs = b;
    pthread_mutex_unlock(&g_tbufs_mu);
    t_tbuf = b;
    return b;
}

void qtsp_log_flush(void)
{
    pthread_mutex_lock(&g_tbufs_mu);
    for (log_tbuf *b = g_tbufs; b; b = b->next) {
        pthread_mutex_lock(&b->mu);
        tbuf_flush_locked(b);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&g_tbufs_mu);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, LOG_FLUSH_MS * 1000000L};
        nanosleep(&ts, NULL);
        int64_t now = qtsp_now_ms();
        pthread_mutex_lock(&g_tbufs_mu);
        for (log_tbuf *b = g_tbufs; b; b = b->next) {
            pthread_mutex_lock(&b->mu);
            if (b->len && now - b->first_ms >= LOG_FLUSH_MS)
                tbuf_flush_locked(b);
            pthread_mutex_unlock(&b->mu);
        }
        pthread_mutex_unlock(&g_tbufs_mu);
    }
    return NULL;
}

void qtsp_log_set_buffered(int on)
{
    static int flusher_started;
    if (on && !flusher_started) {
        pthread_t t;
        if (pthread_create(&t, NULL, flusher_main, NULL) != 0)
            return; /* stay unbuffered */
        pthread_detach(t);
        flusher_started = 1;
    }
    if (!on)
        qtsp_log_flush();
    g_buffered = on;
}

static void emit_access(char *line, size_t n, size_t cap)
{
    log_tbuf *b = g_buffered ? tbuf_get() : NULL;
    if (!b) {
        emit(line, n, cap);
        return;
    }
    if (n >= cap - 1)
        n = cap - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&b->mu);
    if (b->len + n > sizeof b->buf)
        tbuf_flush_locked(b);
    int64_t now = qtsp_now_ms();
    if (b->len == 0)
        b->first_ms = now;
    memcpy(b->buf + b->len, line, n);
    b->len += n;
    if (now - b->first_ms >= LOG_FLUSH_MS)
        tbuf_flush_locked(b);
    pthread_mutex_unlock(&b->mu);
}

/* The RFC 3339 time with milliseconds. Every request writes an access line:
 * the date and time of the current second are formatted once per thread and
 * second, the milliseconds by hand. */
static size_t stamp(char *out, size_t cap)
{
    static _Thread_local int64_t t_sec = INT64_MIN;
    static _Thread_local char t_base[32]; /* "YYYY-MM-DDTHH:MM:SS" */
    static _Thread_local size_t t_len;
    int64_t ms = qtsp_now_ms();
    int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000, frac = ms - sec * 1000;
    if (sec != t_sec) {
        char ts[40];
        qtsp_format_rfc3339_ms(sec * 1000, ts, sizeof ts); /* "...SS.000Z" */
        char *dot = strchr(ts, '.');
        t_len = dot ? (size_t)(dot - ts) : strlen(ts);
        if (t_len >= sizeof t_base)
            t_len = sizeof t_base - 1;
        memcpy(t_base, ts, t_len);
        t_sec = sec;
    }
    if (cap < t_len + 6)
        return (size_t)snprintf(out, cap, "%.*s", (int)t_len, t_base) >= cap ? cap - 1 : t_len;
    memcpy(out, t_base, t_len);
    out[t_len] = '.';
    out[t_len + 1] = (char)('0' + frac / 100);
    out[t_len + 2] = (char)('0' + frac / 10 % 10);
    out[t_len + 3] = (char)('0' + frac % 10);
    out[t_len + 4] = 'Z';
    out[t_len + 5] = '\0';
    return t_len + 5;
}

/* Repeated warnings and errors (issue 15 defect 8: a full disk wrote 9,920
 * identical error lines): a message of the same level and text as one
 * written less than LOG_REPEAT_MS ago is counted, not written; when it is
 * next written, the count of lines held back is appended. Numbers do not
 * make a message different ("journal commit of 3 tokens failed" repeats
 * "... of 5 tokens failed"). A few recent messages are remembered, so two
 * alternating ones are both held back. */
#define LOG_REPEAT_MS 60000
#define LOG_REPEAT_SLOTS 16

typedef struct repeat_slot {
    uint64_t hash; /* 0 = free */
    int64_t last_ms;
    uint64_t held;
} repeat_slot;

static pthread_mutex_t g_repeat_mu = PTHREAD_MUTEX_INITIALIZER;
static repeat_slot g_repeat[LOG_REPEAT_SLOTS];

static uint64_t repeat_hash(qtsp_log_level lvl, const char *msg)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)lvl; /* FNV-1a */
    int in_digits = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        int d = *p >= '0' && *p <= '9';
        if (d && in_digits)
            continue;
        in_digits = d;
        h = (h ^ (d ? '#' : *p)) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* 1: hold the line back; 0: write it, with *held lines held back before. */
static int repeat_hold(qtsp_log_level lvl, const char *msg, uint64_t *held)
{
    *held = 0;
    if (lvl < QTSP_LOG_WARN)
        return 0;
    uint64_t h = repeat_hash(lvl, msg);
    int64_t now = qtsp_mono_ns() / 1000000;
    int hold = 0;
    pthread_mutex_lock(&g_repeat_mu);
    repeat_slot *s = NULL, *oldest = &g_repeat[0];
    for (size_t i = 0; i < LOG_REPEAT_SLOTS; i++) {
        if (g_repeat[i].hash == h)
            s = &g_repeat[i];
        if (g_repeat[i].last_ms < oldest->last_ms)
            oldest = &g_repeat[i];
    }
    if (s && now - s->last_ms < LOG_REPEAT_MS) {
        s->held++;
        hold = 1;
    } else {
        if (!s) {
            s = oldest;
            s->held = 0;
        }
        *held = s->held;
        s->hash = h;
        s->last_ms = now;
        s->held = 0;
    }
    pthread_mutex_unlock(&g_repeat_mu);
    return hold;
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
    uint64_t held = 0;
    if (repeat_hold(lvl, msg, &held))
        return;
    if (held) {
        size_t ml = strlen(msg);
        snprintf(msg + ml, sizeof msg - ml, " (%llu more like it held back since the last one)",
                 (unsigned long long)held);
    }
    char line[4608];
    size_t n = 0;
    if (g_format == QTSP_LOG_JSON) {
        n += (size_t)snprintf(line, sizeof line, "{\"time\":\"");
        n += stamp(line + n, sizeof line - n);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"level\":\"%s\",\"msg\":\"",
                              level_name(lvl));
        n = qtsp_json_escape(line, sizeof line - 2, n, msg); /* room for the closing "} */
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}");
    } else {
        n += stamp(line, sizeof line);
        n += (size_t)snprintf(line + n, sizeof line - n, " %s %s", level_name(lvl), msg);
    }
    emit(line, n, sizeof line);
}

void qtsp_log_access(const char *request_id, const char *client, const char *method,
                     const char *path, int status, size_t bytes, double ms)
{
    if (QTSP_LOG_INFO < g_level)
        return;
    char line[4608];
    size_t n = 0;
    /* The escaped path is capped in both formats so that the fields after it
     * always fit: a long request target never cuts a JSON line short. */
    char p[512], m[64], c[80] = "";
    p[qtsp_json_escape(p, sizeof p, 0, path)] = '\0';
    if (client && *client) /* an address: checked by the caller, never a raw header */
        snprintf(c, sizeof c, g_format == QTSP_LOG_JSON ? ",\"client\":\"%.46s\"" : " client=%.46s",
                 client);
    if (g_format == QTSP_LOG_JSON) {
        m[qtsp_json_escape(m, sizeof m, 0, method)] = '\0';
        n += (size_t)snprintf(line, sizeof line, "{\"time\":\"");
        n += stamp(line + n, sizeof line - n);
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "\",\"level\":\"info\",\"msg\":\"access\",\"request_id\":\"%s\","
                              "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"bytes\":%zu,"
                              "\"ms\":%.3f%s}",
                              request_id, m, p, status, bytes, ms, c);
    } else {
        n += stamp(line, sizeof line);
        long long us = ms > 0 ? (long long)(ms * 1000.0 + 0.5) : 0; /* %.3f without floats */
        n += (size_t)snprintf(line + n, sizeof line - n,
                              " info access id=%s method=%s path=\"%s\" status=%d bytes=%zu "
                              "ms=%lld.%03lld%s",
                              request_id, method, p, status, bytes, us / 1000, us % 1000, c);
    }
    emit_access(line, n, sizeof line);
}
