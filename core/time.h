/* Civil dates and ASN.1 times without gmtime/timegm: the C library's are
 * bounded by time_t quirks, take glibc's time-zone lock (gmtime_r) or depend
 * on TZ (mktime). One routine converts days since 1970-01-01 to and from a
 * proleptic Gregorian y/m/d (H. Hinnant's algorithms); the rest is built on it.
 *
 * Times are int64_t seconds (or milliseconds where named *_ms) since the
 * epoch, UTC, no leap seconds. Every function is pure and thread-safe. */
#ifndef QTSP_CORE_TIME_H
#define QTSP_CORE_TIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"

/* The range GeneralizedTime can carry: 0001-01-01T00:00:00Z ..
 * 9999-12-31T23:59:59Z (RFC 5280 4.1.2.5.2: four-digit years). */
#define QTSP_TIME_MIN INT64_C(-62135596800)
#define QTSP_TIME_MAX INT64_C(253402300799)

/* Longest GeneralizedTime text qtsp_time_gen writes: YYYYMMDDHHMMSS.fffZ. */
#define QTSP_TIME_GEN_MAX 19
/* UTCTime text: YYMMDDHHMMSSZ. */
#define QTSP_TIME_UTC_LEN 13

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d. m is 1..12;
 * d may exceed the month (it is added as days: d = 32 in January is
 * 1 February), as may any int64 year within +-2^40. */
int64_t qtsp_days_from_civil(int64_t y, unsigned m, unsigned d);

/* The date of day z (days since 1970-01-01): year, month 1..12, day 1..31. */
void qtsp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

/* timegm() without the C library: seconds since the epoch of the UTC broken
 * time tm, normalising out-of-range fields as timegm does (tm_mon 12 is next
 * January, tm_mday 0 the last day of the previous month, 29 February plus one
 * tm_year is 1 March). tm_wday, tm_yday and tm_isdst are ignored. Never fails
 * (every int field combination fits an int64_t); the caller checks the range
 * it needs. */
int64_t qtsp_timegm(const struct tm *tm);

/* gmtime_r() without the time-zone lock: fills every field of *tm (tm_isdst
 * 0). QTSP_ERR_INVALID (tm untouched) when the year does not fit an int. */
qtsp_status qtsp_gmtime(int64_t t, struct tm *tm) QTSP_MUST_USE;

/* GeneralizedTime text of ms milliseconds since the epoch:
 * YYYYMMDDHHMMSS[.f[f[f]]]Z, the fraction only when ms is not a whole second
 * and without trailing zeros (X.690 11.7.3, RFC 3161 2.4.2). Writes no NUL;
 * bytes of out past the length are scratch. Returns the length (15..19),
 * or 0 when ms is outside QTSP_TIME_MIN..QTSP_TIME_MAX seconds. */
size_t qtsp_time_gen(int64_t ms, char out[QTSP_TIME_GEN_MAX]);

/* UTCTime text YYMMDDHHMMSSZ of t (RFC 5280 4.1.2.5.1). Returns 13, or 0 when
 * t is outside 1950..2049, the years UTCTime can carry. Writes no NUL. */
size_t qtsp_time_utc(int64_t t, char out[QTSP_TIME_UTC_LEN]);

/* What qtsp_time_parse accepts. */
typedef enum qtsp_time_kind {
    QTSP_TIME_UTC,      /* YYMMDDHHMMSSZ; YY < 50 is 20YY, else 19YY (RFC 5280 4.1.2.5.1) */
    QTSP_TIME_GEN,      /* YYYYMMDDHHMMSSZ, no fraction (RFC 5280 4.1.2.5.2) */
    QTSP_TIME_GEN_FRAC, /* YYYYMMDDHHMMSS[.fff]Z: 1..3 fraction digits, no trailing
                           zero (X.690 11.7, RFC 3161 2.4.2) */
} qtsp_time_kind;

/* Parses the n bytes at s (no NUL needed) strictly as kind: digits only,
 * 'Z' only, a real date (month 1..12, day within the month, hour < 24,
 * minute and second < 60), nothing after the 'Z'. *ms is milliseconds since
 * the epoch, written only on success. QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_time_parse(qtsp_time_kind kind, const void *s, size_t n,
                            int64_t *ms) QTSP_MUST_USE;

#endif
