/* Injected clock and randomness, so tests are exact.
 * Production uses the system clock and OpenSSL's CSPRNG. Tests may install
 * their own functions before starting threads (not thread-safe to change). */
#ifndef QTSP_CORE_CLOCK_H
#define QTSP_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"

/* Milliseconds since the Unix epoch. */
typedef int64_t (*qtsp_clock_fn)(void *ctx);
/* Fills buf with n random bytes; returns QTSP_OK or an error. */
typedef qtsp_status (*qtsp_rng_fn)(void *ctx, unsigned char *buf, size_t n);

/* Installs a clock (NULL restores the system clock). */
void qtsp_clock_set(qtsp_clock_fn fn, void *ctx);
/* Installs a random source (NULL restores RAND_bytes). */
void qtsp_rng_set(qtsp_rng_fn fn, void *ctx);

/* Current time in ms / seconds since the epoch (through the injected clock). */
int64_t qtsp_now_ms(void);
time_t qtsp_now(void);

/* n random bytes from the injected source (CSPRNG by default). */
qtsp_status qtsp_random(unsigned char *buf, size_t n) QTSP_MUST_USE;
/* The same for octets that are published (serial numbers, identifiers),
 * never for keys or secret nonces: drawn from a per-thread pool that
 * qtsp_random refills 256 octets at a time, so a caller pays its fixed cost
 * (the DRBG's lock, fork check and reseed test) once per 32 serials. A
 * fork empties the child's pool. Requests over 64 octets, and any request
 * while an injected source is set, go to qtsp_random. */
qtsp_status qtsp_random_public(unsigned char *buf, size_t n) QTSP_MUST_USE;

/* Formats t (seconds) as RFC 3339 UTC "2026-11-24T20:44:52Z". out >= 21 bytes. */
void qtsp_format_rfc3339(time_t t, char *out, size_t cap);
/* Same with milliseconds "2026-11-24T20:44:52.123Z". out >= 25 bytes. */
void qtsp_format_rfc3339_ms(int64_t ms, char *out, size_t cap);
/* Parses RFC 3339 UTC "2026-11-24T10:00:00Z" (the form qtsp_format_rfc3339
 * writes), a real date and time (2026-02-30 is refused).
 * QTSP_ERR_INVALID naming field. */
qtsp_status qtsp_parse_rfc3339(const char *field, const char *s, time_t *out) QTSP_MUST_USE;
/* Formats t as an HTTP date "Tue, 24 Nov 2026 20:44:52 GMT". out >= 30 bytes. */
void qtsp_format_http_date(time_t t, char *out, size_t cap);

/* Parses a duration "48h", "30m", "10s", "2d" or a bare number of seconds.
 * QTSP_ERR_INVALID on anything else or on overflow. */
qtsp_status qtsp_parse_duration(const char *s, int64_t *seconds_out) QTSP_MUST_USE;

/* Monotonic clock in nanoseconds (for latency measurement; not injected). */
uint64_t qtsp_mono_ns(void);
/* CLOCK_MONOTONIC now + ms (>= 0), as the absolute deadline of a
 * pthread_cond_timedwait on a condition variable set to that clock. */
struct timespec qtsp_mono_deadline(int64_t ms);

#endif
