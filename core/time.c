/* Civil dates and ASN.1 times; see core/time.h. */
#include "core/time.h"

#include <limits.h>

/* H. Hinnant, "chrono-Compatible Low-Level Date Algorithms": eras of 400
 * years (146097 days) starting 1 March, so the leap day ends the year. */
int64_t qtsp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                   /* 0..399 */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* 0..365 (+ excess d) */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* 0..146096 */
    return era * 146097 + doe - 719468;
}

void qtsp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* 0..146096 */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
    int64_t mp = (5 * doy + 2) / 153;                                    /* 0..11 */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Floor division and its non-negative remainder. */
static int64_t floor_div(int64_t a, int64_t b, int64_t *rem)
{
    int64_t q = a / b, r = a % b;
    if (r < 0) {
        r += b;
        q--;
    }
    *rem = r;
    return q;
}

int64_t qtsp_timegm(const struct tm *tm)
{
    int64_t mon;
    int64_t y = (int64_t)tm->tm_year + 1900 + floor_div(tm->tm_mon, 12, &mon);
    int64_t days = qtsp_days_from_civil(y, (unsigned)mon + 1, 1) + (int64_t)tm->tm_mday - 1;
    return days * 86400 + (int64_t)tm->tm_hour * 3600 + (int64_t)tm->tm_min * 60 + tm->tm_sec;
}

qtsp_status qtsp_gmtime(int64_t t, struct tm *tm)
{
    int64_t sod, y;
    int64_t days = floor_div(t, 86400, &sod);
    unsigned m, d;
    qtsp_civil_from_days(days, &y, &m, &d);
    ENSURE(y - 1900 >= INT_MIN && y - 1900 <= INT_MAX, QTSP_ERR_INVALID, "time out of range");
    int64_t wd;
    floor_div(days + 4, 7, &wd); /* 1970-01-01 was a Thursday */
    tm->tm_year = (int)(y - 1900);
    tm->tm_mon = (int)m - 1;
    tm->tm_mday = (int)d;
    tm->tm_hour = (int)(sod / 3600);
    tm->tm_min = (int)(sod / 60 % 60);
    tm->tm_sec = (int)(sod % 60);
    tm->tm_wday = (int)wd;
    tm->tm_yday = (int)(days - qtsp_days_from_civil(y, 1, 1));
    tm->tm_isdst = 0;
    return QTSP_OK;
}

static void put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

/* MMDDHHMMSS at p from month, day and second of the day. */
static void put_mdhms(char *p, unsigned m, unsigned d, int64_t sod)
{
    put_digits(p, m, 2);
    put_digits(p + 2, d, 2);
    put_digits(p + 4, (unsigned)(sod / 3600), 2);
    put_digits(p + 6, (unsigned)(sod / 60 % 60), 2);
    put_digits(p + 8, (unsigned)(sod % 60), 2);
}

size_t qtsp_time_gen(int64_t ms, char out[QTSP_TIME_GEN_MAX])
{
    int64_t frac, sod, y;
    int64_t t = floor_div(ms, 1000, &frac);
    if (t < QTSP_TIME_MIN || t > QTSP_TIME_MAX)
        return 0;
    int64_t days = floor_div(t, 86400, &sod);
    unsigned m, d;
    qtsp_civil_from_days(days, &y, &m, &d);
    put_digits(out, (unsigned)y, 4);
    put_mdhms(out + 4, m, d, sod);
    size_t n = 14;
    if (frac) { /* X.690 11.7.3: no trailing zeros, no bare decimal point */
        out[n++] = '.';
        put_digits(out + n, (unsigned)frac, 3);
        n += 3;
        while (out[n - 1] == '0')
            n--;
    }
    out[n++] = 'Z';
    return n;
}

size_t qtsp_time_utc(int64_t t, char out[QTSP_TIME_UTC_LEN])
{
    /* 1950-01-01T00:00:00Z .. 2049-12-31T23:59:59Z */
    if (t < INT64_C(-631152000) || t > INT64_C(2524607999))
        return 0;
    int64_t sod, y;
    int64_t days = floor_div(t, 86400, &sod);
    unsigned m, d;
    qtsp_civil_from_days(days, &y, &m, &d);
    put_digits(out, (unsigned)(y % 100), 2);
    put_mdhms(out + 2, m, d, sod);
    out[12] = 'Z';
    return QTSP_TIME_UTC_LEN;
}

/* n decimal digits at p into *v; 0 when one is not a digit. */
static int digits(const unsigned char *p, int n, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        x = x * 10 + (unsigned)(p[i] - '0');
    }
    *v = x;
    return 1;
}

static int leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

qtsp_status qtsp_time_parse(qtsp_time_kind kind, const void *s, size_t n, int64_t *ms)
{
    const unsigned char *p = s;
    size_t yd = kind == QTSP_TIME_UTC ? 2 : 4;
    ENSURE(p && n >= yd + 11 && p[n - 1] == 'Z', QTSP_ERR_INVALID, "bad time: length or no 'Z'");
    unsigned yy, mo, d, h, mi, sec, frac = 0;
    ENSURE(digits(p, (int)yd, &yy) && digits(p + yd, 2, &mo) && digits(p + yd + 2, 2, &d) &&
               digits(p + yd + 4, 2, &h) && digits(p + yd + 6, 2, &mi) &&
               digits(p + yd + 8, 2, &sec),
           QTSP_ERR_INVALID, "bad time: not digits");
    size_t pos = yd + 10;
    if (n != pos + 1) {
        /* only GeneralizedTime with fractions: '.', 1..3 digits, last not 0 */
        size_t fd = n - pos - 2;
        ENSURE(kind == QTSP_TIME_GEN_FRAC && p[pos] == '.' && fd >= 1 && fd <= 3 &&
                   digits(p + pos + 1, (int)fd, &frac) && p[n - 2] != '0',
               QTSP_ERR_INVALID, "bad time: unexpected characters");
        for (size_t i = fd; i < 3; i++)
            frac *= 10;
    }
    int64_t y = kind == QTSP_TIME_UTC ? (yy < 50 ? 2000 + yy : 1900 + yy) : yy;
    static const unsigned char mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    ENSURE(y >= 1 && mo >= 1 && mo <= 12 && d >= 1 &&
               d <= mdays[mo - 1] + (unsigned)(mo == 2 && leap(y)) && h < 24 && mi < 60 && sec < 60,
           QTSP_ERR_INVALID, "bad time: no such date");
    int64_t t = qtsp_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    *ms = t * 1000 + frac;
    return QTSP_OK;
}
