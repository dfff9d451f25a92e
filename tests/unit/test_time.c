/* Unit tests for core/time.c: civil dates, timegm/gmtime replacements and
 * ASN.1 time text. */
#include <string.h>

#include "core/err.h"
#include "core/time.h"
#include "tests/lib/qtest.h"

static void test_time_civil_round_trips_across_eras(void)
{
    /* every day from year -1000 to 12000, both directions */
    int64_t y0;
    unsigned m0, d0;
    qtsp_civil_from_days(qtsp_days_from_civil(-1000, 1, 1) - 1, &y0, &m0, &d0);
    CU_ASSERT(y0 == -1001 && m0 == 12 && d0 == 31);
    for (int64_t z = qtsp_days_from_civil(-1000, 1, 1); z < qtsp_days_from_civil(12000, 1, 1);
         z++) {
        int64_t y;
        unsigned m, d;
        qtsp_civil_from_days(z, &y, &m, &d);
        if (qtsp_days_from_civil(y, m, d) != z) {
            CU_FAIL("days -> civil -> days");
            return;
        }
        /* consecutive: next day or first of the next month/year */
        int next = (y == y0 && m == m0 && d == d0 + 1) || (y == y0 && m == m0 + 1 && d == 1) ||
                   (y == y0 + 1 && m == 1 && d == 1 && m0 == 12 && d0 == 31);
        if (!next) {
            CU_FAIL("civil dates not consecutive");
            return;
        }
        y0 = y, m0 = m, d0 = d;
    }
}

static void test_time_known_dates(void)
{
    CU_ASSERT_EQUAL(qtsp_days_from_civil(1970, 1, 1), 0);
    CU_ASSERT_EQUAL(qtsp_days_from_civil(2000, 3, 1), 11017);
    CU_ASSERT_EQUAL(qtsp_days_from_civil(1969, 12, 31), -1);
    CU_ASSERT_EQUAL(qtsp_days_from_civil(1, 1, 1) * 86400, QTSP_TIME_MIN);
    CU_ASSERT_EQUAL(qtsp_days_from_civil(9999, 12, 31) * 86400 + 86399, QTSP_TIME_MAX);
    CU_ASSERT_EQUAL(qtsp_days_from_civil(2024, 2, 30), qtsp_days_from_civil(2024, 3, 1));
}

static void test_time_timegm_matches_libc_and_normalises(void)
{
    struct tm tm;
    for (int64_t t = -5000000000LL; t < 40000000000LL; t += 7777777) {
        time_t tt = (time_t)t;
        CU_ASSERT_EQUAL_FATAL(gmtime_r(&tt, &tm) != NULL, 1);
        CU_ASSERT_EQUAL_FATAL(qtsp_timegm(&tm), t);
        struct tm mine;
        CU_ASSERT_EQUAL_FATAL(qtsp_gmtime(t, &mine), QTSP_OK);
        CU_ASSERT(mine.tm_year == tm.tm_year && mine.tm_mon == tm.tm_mon &&
                  mine.tm_mday == tm.tm_mday && mine.tm_hour == tm.tm_hour &&
                  mine.tm_min == tm.tm_min && mine.tm_sec == tm.tm_sec &&
                  mine.tm_wday == tm.tm_wday && mine.tm_yday == tm.tm_yday);
    }
    /* out-of-range fields as profile.c adds them: 29 Feb + 1 year = 1 Mar */
    struct tm a = {.tm_year = 2024 - 1900 + 1, .tm_mon = 1, .tm_mday = 29};
    struct tm b = {.tm_year = 2025 - 1900, .tm_mon = 2, .tm_mday = 1};
    CU_ASSERT_EQUAL(qtsp_timegm(&a), qtsp_timegm(&b));
    CU_ASSERT_EQUAL(qtsp_timegm(&a), (int64_t)timegm(&a));
    struct tm c = {.tm_year = 100, .tm_mon = -1, .tm_mday = 0, .tm_hour = 25, .tm_min = -1};
    struct tm c2 = c;
    CU_ASSERT_EQUAL(qtsp_timegm(&c), (int64_t)timegm(&c2));
    struct tm d = {.tm_year = 126, .tm_mon = 14, .tm_mday = 400};
    struct tm d2 = d;
    CU_ASSERT_EQUAL(qtsp_timegm(&d), (int64_t)timegm(&d2));
}

static void test_time_gen_writes_fractions_without_trailing_zeros(void)
{
    char s[QTSP_TIME_GEN_MAX + 1];
    size_t n;
    const int64_t t = 1795000000; /* 2026-11-18T11:06:40Z */
    struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {t * 1000, "20261118110640Z"},
        {t * 1000 + 1, "20261118110640.001Z"},
        {t * 1000 + 10, "20261118110640.01Z"},
        {t * 1000 + 100, "20261118110640.1Z"},
        {t * 1000 + 120, "20261118110640.12Z"},
        {t * 1000 + 999, "20261118110640.999Z"},
        {0, "19700101000000Z"},
        {-1, "19691231235959.999Z"},
        {QTSP_TIME_MIN * 1000, "00010101000000Z"},
        {QTSP_TIME_MAX * 1000 + 999, "99991231235959.999Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(s, 0, sizeof s);
        n = qtsp_time_gen(cases[i].ms, s);
        CU_ASSERT_EQUAL(n, strlen(cases[i].want));
        s[n] = '\0'; /* the bytes past n are scratch */
        CU_ASSERT_STRING_EQUAL(s, cases[i].want);
        int64_t back = 0;
        CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_GEN_FRAC, s, n, &back), QTSP_OK);
        CU_ASSERT_EQUAL(back, cases[i].ms);
    }
}

static void test_time_gen_refuses_out_of_range(void)
{
    char s[QTSP_TIME_GEN_MAX];
    CU_ASSERT_EQUAL(qtsp_time_gen((QTSP_TIME_MAX + 1) * 1000, s), 0);
    CU_ASSERT_EQUAL(qtsp_time_gen(QTSP_TIME_MIN * 1000 - 1, s), 0);
    CU_ASSERT_EQUAL(qtsp_time_gen(INT64_MAX, s), 0);
    CU_ASSERT_EQUAL(qtsp_time_gen(INT64_MIN, s), 0);
}

static void test_time_utc_covers_1950_to_2049_only(void)
{
    char s[QTSP_TIME_UTC_LEN + 1] = {0};
    CU_ASSERT_EQUAL(qtsp_time_utc(-631152000, s), 13);
    CU_ASSERT_STRING_EQUAL(s, "500101000000Z");
    CU_ASSERT_EQUAL(qtsp_time_utc(2524607999LL, s), 13);
    CU_ASSERT_STRING_EQUAL(s, "491231235959Z");
    CU_ASSERT_EQUAL(qtsp_time_utc(-631152001, s), 0);
    CU_ASSERT_EQUAL(qtsp_time_utc(2524608000LL, s), 0);
    int64_t ms;
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_UTC, "491231235959Z", 13, &ms), QTSP_OK);
    CU_ASSERT_EQUAL(ms, 2524607999LL * 1000);
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_UTC, "500101000000Z", 13, &ms), QTSP_OK);
    CU_ASSERT_EQUAL(ms, -631152000LL * 1000);
}

static void test_time_parse_rejects_malformed_text(void)
{
    const struct {
        qtsp_time_kind kind;
        const char *s;
    } bad[] = {
        {QTSP_TIME_GEN, "20261118094640"},            /* no Z */
        {QTSP_TIME_GEN, "20261118094640+0100"},       /* offset */
        {QTSP_TIME_GEN, "20261118110640.5Z"},         /* fraction in RFC 5280 time */
        {QTSP_TIME_GEN, "202611180946Z"},             /* no seconds */
        {QTSP_TIME_GEN, "2026111809464 Z"},           /* not a digit */
        {QTSP_TIME_GEN, "20261318094640Z"},           /* month 13 */
        {QTSP_TIME_GEN, "20260229094640Z"},           /* not a leap year */
        {QTSP_TIME_GEN, "20261100094640Z"},           /* day 0 */
        {QTSP_TIME_GEN, "20261118244640Z"},           /* hour 24 */
        {QTSP_TIME_GEN, "20261118096040Z"},           /* minute 60 */
        {QTSP_TIME_GEN, "20261118094660Z"},           /* leap second */
        {QTSP_TIME_GEN, "00001118094640Z"},           /* year 0 */
        {QTSP_TIME_GEN, "20261118094640ZZ"},          /* trailing */
        {QTSP_TIME_GEN_FRAC, "20261118110640.Z"},     /* bare point */
        {QTSP_TIME_GEN_FRAC, "20261118110640.10Z"},   /* trailing zero */
        {QTSP_TIME_GEN_FRAC, "20261118110640.0Z"},    /* trailing zero */
        {QTSP_TIME_GEN_FRAC, "20261118110640.1234Z"}, /* beyond ms */
        {QTSP_TIME_GEN_FRAC, "20261118094640,5Z"},    /* comma */
        {QTSP_TIME_UTC, "2611180946Z"},               /* no seconds */
        {QTSP_TIME_UTC, "20261118110640Z"},           /* GeneralizedTime as UTCTime */
        {QTSP_TIME_UTC, "261118094640.5Z"},           /* fraction */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 77;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_time_parse(bad[i].kind, bad[i].s, strlen(bad[i].s), &ms),
                        QTSP_ERR_INVALID);
        CU_ASSERT_EQUAL(ms, 77);
    }
    int64_t ms;
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_GEN, NULL, 0, &ms), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_GEN, "20240229000000Z", 15, &ms), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_GEN, "20000229000000Z", 15, &ms), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_time_parse(QTSP_TIME_GEN, "19000229000000Z", 15, &ms), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_time_gmtime_handles_negative_times(void)
{
    struct tm tm;
    CU_ASSERT_EQUAL(qtsp_gmtime(-1, &tm), QTSP_OK);
    CU_ASSERT(tm.tm_year == 69 && tm.tm_mon == 11 && tm.tm_mday == 31 && tm.tm_hour == 23 &&
              tm.tm_min == 59 && tm.tm_sec == 59 && tm.tm_wday == 3 && tm.tm_yday == 364);
    CU_ASSERT_EQUAL(qtsp_gmtime(INT64_MAX, &tm), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_time_civil_round_trips_across_eras),
        QTEST(test_time_known_dates),
        QTEST(test_time_timegm_matches_libc_and_normalises),
        QTEST(test_time_gen_writes_fractions_without_trailing_zeros),
        QTEST(test_time_gen_refuses_out_of_range),
        QTEST(test_time_utc_covers_1950_to_2049_only),
        QTEST(test_time_parse_rejects_malformed_text),
        QTEST(test_time_gmtime_handles_negative_times),
    };
    return qtest_run("time", cases, sizeof cases / sizeof cases[0]);
}
