#include "core/clock.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"

static qtsp_clock_fn g_clock;
static void *g_clock_ctx;
static qtsp_rng_fn g_rng;
static void *g_rng_ctx;

void qtsp_clock_set(qtsp_clock_fn fn, void *ctx)
{
    g_clock = fn;
    g_clock_ctx = ctx;
}

void qtsp_rng_set(qtsp_rng_fn fn, void *ctx)
{
    g_rng = fn;
    g_rng_ctx = ctx;
}

int64_t qtsp_now_ms(void)
{
    if (g_clock)
        return g_clock(g_clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

time_t qtsp_now(void)
{
    int64_t ms = qtsp_now_ms();
    return (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
}

qtsp_status qtsp_random(unsigned char *buf, size_t n)
{
    if (g_rng)
        return g_rng(g_rng_ctx, buf, n);
    ENSURE(n <= 0x7fffffff, QTSP_ERR_INVALID, "random request too large");
    ENSURE(RAND_bytes(buf, (int)n) == 1, QTSP_ERR_CRYPTO, "RAND_bytes failed");
    return QTSP_OK;
}

/* The pool of qtsp_random_public: per thread, so drawing takes no lock;
 * a fork empties the child's (pool_forked), so two processes never hand
 * out the same octets. */
#define POOL_BYTES 256
static _Thread_local unsigned char t_pool[POOL_BYTES];
static _Thread_local size_t t_pool_left;
static _Thread_local unsigned t_pool_gen;
static atomic_uint g_forks;
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void pool_forked(void)
{
    atomic_fetch_add(&g_forks, 1);
}

static void pool_init(void)
{
    (void)pthread_atfork(NULL, NULL, pool_forked);
}

qtsp_status qtsp_random_public(unsigned char *buf, size_t n)
{
    if (g_rng || n > POOL_BYTES / 4)
        return qtsp_random(buf, n);
    pthread_once(&g_pool_once, pool_init);
    unsigned gen = atomic_load_explicit(&g_forks, memory_order_relaxed);
    if (t_pool_gen != gen || t_pool_left < n) {
        TRY(qtsp_random(t_pool, sizeof t_pool));
        t_pool_left = sizeof t_pool;
        t_pool_gen = gen;
    }
    t_pool_left -= n;
    memcpy(buf, t_pool + t_pool_left, n);
    memset(t_pool + t_pool_left, 0, n); /* handed out once */
    return QTSP_OK;
}

static void utc(time_t t, struct tm *tm)
{
    gmtime_r(&t, tm);
}

void qtsp_format_rfc3339(time_t t, char *out, size_t cap)
{
    struct tm tm;
    utc(t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void qtsp_format_rfc3339_ms(int64_t ms, char *out, size_t cap)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    utc(t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

/* n decimal digits at s (checked by the caller). */
static int digits(const char *s, int n)
{
    int v = 0;
    while (n-- > 0)
        v = v * 10 + (*s++ - '0');
    return v;
}

qtsp_status qtsp_parse_rfc3339(const char *field, const char *s, time_t *out)
{
    /* YYYY-MM-DDTHH:MM:SSZ: digits where the template has 'd' */
    static const char tmpl[] = "dddd-dd-ddTdd:dd:ddZ";
    int ok = s && strlen(s) == sizeof tmpl - 1;
    for (size_t i = 0; ok && i < sizeof tmpl - 1; i++)
        ok = tmpl[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == tmpl[i];
    ENSURE(ok, QTSP_ERR_INVALID, "%s: RFC 3339 UTC, e.g. 2026-11-24T10:00:00Z", field);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    time_t t = (time_t)qtsp_timegm(&tm);
    char back[32];
    qtsp_format_rfc3339(t, back, sizeof back);
    ENSURE(strcmp(back, s) == 0, QTSP_ERR_INVALID, "%s: %s is not a valid date and time", field, s);
    *out = t;
    return QTSP_OK;
}

void qtsp_format_http_date(time_t t, char *out, size_t cap)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    utc(t, &tm);
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

qtsp_status qtsp_parse_duration(const char *s, int64_t *seconds_out)
{
    ENSURE(s && *s >= '0' && *s <= '9', QTSP_ERR_INVALID, "duration must start with a digit");
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    ENSURE(errno == 0 && v <= (1ULL << 40), QTSP_ERR_INVALID, "duration out of range");
    int64_t mult = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mult = 60, end++;
    else if (*end == 'h')
        mult = 3600, end++;
    else if (*end == 'd')
        mult = 86400, end++;
    ENSURE(*end == '\0', QTSP_ERR_INVALID, "duration '%s': use a number with unit s, m, h or d", s);
    *seconds_out = (int64_t)v * mult;
    return QTSP_OK;
}

struct timespec qtsp_mono_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

uint64_t qtsp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
