/* Unit tests for core/periodic: interval, first delay, kick, stop, and a
 * wall-clock step that must not stall the thread. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/periodic.h"
#include "tests/lib/qtest.h"

/* The wall clock as this process sees it can be stepped: clock_gettime is
 * interposed, CLOCK_REALTIME answers g_step_s seconds ahead of the kernel's
 * (which is what a deadline computed just before a step back looks like to
 * a wait on CLOCK_REALTIME). Other clocks pass through. */
static _Atomic int64_t g_step_s;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int rc = (int)syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && id == CLOCK_REALTIME)
        ts->tv_sec += (time_t)atomic_load(&g_step_s);
    return rc;
}

typedef struct counter {
    _Atomic int runs;
    _Atomic int64_t answer;   /* what the run returns */
    _Atomic int64_t block_ms; /* how long a run takes */
    _Atomic int saw_stop;
    _Atomic uint64_t first_ns;
} counter;

static int64_t count_run(qtsp_periodic *p, void *arg)
{
    counter *c = arg;
    if (atomic_fetch_add(&c->runs, 1) == 0)
        atomic_store(&c->first_ns, qtsp_mono_ns());
    int64_t b = atomic_load(&c->block_ms);
    if (b > 0 && !qtsp_periodic_sleep(p, b))
        atomic_store(&c->saw_stop, qtsp_periodic_stopping(p));
    return atomic_load(&c->answer);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits up to ms for c->runs to reach n; returns the runs seen. */
static int wait_runs(counter *c, int n, int ms)
{
    for (int i = 0; i < ms / 5 && atomic_load(&c->runs) < n; i++)
        sleep_ms(5);
    return atomic_load(&c->runs);
}

static void test_periodic_runs_at_once_then_at_the_interval(void)
{
    counter c = {.answer = QTSP_PERIODIC_INTERVAL};
    qtsp_periodic *p = NULL;
    uint64_t t0 = qtsp_mono_ns();
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 50, 0, count_run, &c, &p), QTSP_OK);
    CU_ASSERT(wait_runs(&c, 1, 1000) >= 1);
    CU_ASSERT(atomic_load(&c.first_ns) - t0 < 40000000u); /* at once, not after 50 ms */
    sleep_ms(500);
    int n = atomic_load(&c.runs);
    qtsp_periodic_stop(p);
    CU_ASSERT(n >= 5 && n <= 13); /* ~11 at 50 ms; loaded machines run late, never early */
}

static void test_periodic_first_delay_and_answered_delay(void)
{
    counter c = {.answer = 10000};
    qtsp_periodic *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 20, 300, count_run, &c, &p), QTSP_OK);
    sleep_ms(150);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 0); /* first run only after 300 ms */
    CU_ASSERT(wait_runs(&c, 1, 2000) == 1);
    sleep_ms(200);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 1); /* it asked for 10 s, not the 20 ms interval */
    qtsp_periodic_stop(p);
}

static void test_periodic_kick_wakes_an_idle_thread(void)
{
    counter c = {.answer = QTSP_PERIODIC_IDLE};
    qtsp_periodic *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 60000, 0, count_run, &c, &p), QTSP_OK);
    CU_ASSERT(wait_runs(&c, 1, 1000) == 1);
    sleep_ms(100);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 1); /* idle: no run without a kick */
    uint64_t t0 = qtsp_mono_ns();
    qtsp_periodic_kick(p);
    CU_ASSERT(wait_runs(&c, 2, 2000) == 2);
    CU_ASSERT(qtsp_mono_ns() - t0 < 1000000000u);
    qtsp_periodic_kick(NULL); /* no-op */
    qtsp_periodic_stop(p);
}

static void test_periodic_kick_during_a_run_runs_again_at_once(void)
{
    counter c = {.answer = QTSP_PERIODIC_IDLE, .block_ms = 200};
    qtsp_periodic *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 60000, 0, count_run, &c, &p), QTSP_OK);
    CU_ASSERT(wait_runs(&c, 1, 1000) == 1);
    qtsp_periodic_kick(p); /* during the first run: a kick does not cut its sleep */
    sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 1);
    atomic_store(&c.block_ms, 0);
    CU_ASSERT(wait_runs(&c, 2, 2000) == 2); /* not lost, although it asked for idle */
    sleep_ms(100);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 2);
    qtsp_periodic_stop(p);
}

static void test_periodic_stop_joins_promptly_and_cuts_sleeps(void)
{
    counter c = {.answer = QTSP_PERIODIC_INTERVAL};
    qtsp_periodic *p = NULL;
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 3600000, 0, count_run, &c, &p), QTSP_OK);
    CU_ASSERT(wait_runs(&c, 1, 1000) == 1);
    uint64_t t0 = qtsp_mono_ns();
    qtsp_periodic_stop(p); /* waiting an hour: stop does not */
    CU_ASSERT(qtsp_mono_ns() - t0 < 500000000u);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 1);

    counter d = {.answer = QTSP_PERIODIC_INTERVAL, .block_ms = 3600000};
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 10, 0, count_run, &d, &p), QTSP_OK);
    CU_ASSERT(wait_runs(&d, 1, 1000) == 1);
    t0 = qtsp_mono_ns();
    qtsp_periodic_stop(p); /* a run sleeping an hour in qtsp_periodic_sleep */
    CU_ASSERT(qtsp_mono_ns() - t0 < 500000000u);
    CU_ASSERT_EQUAL(atomic_load(&d.saw_stop), 1);
    CU_ASSERT_EQUAL(atomic_load(&d.runs), 1);
    qtsp_periodic_stop(NULL); /* no-op */
}

static void test_periodic_rejects_bad_arguments(void)
{
    counter c = {0};
    qtsp_periodic *p = (qtsp_periodic *)&c;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_periodic_start("test", 0, 0, count_run, &c, &p), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_periodic_start("test", 10, -1, count_run, &c, &p), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_periodic_start("test", 10, 0, NULL, &c, &p), QTSP_ERR_INVALID);
    CU_ASSERT(p == (qtsp_periodic *)&c); /* untouched on failure */
    qtsp_err_clear();
}

/* The wall clock is stepped back by a year (NTP, `date -s`) while the
 * thread waits: on CLOCK_MONOTONIC it keeps its interval. A wait on a
 * CLOCK_REALTIME deadline would sleep for the year. */
static void test_periodic_wall_clock_step_does_not_stall_it(void)
{
    counter c = {.answer = QTSP_PERIODIC_INTERVAL};
    qtsp_periodic *p = NULL;
    atomic_store(&g_step_s, INT64_C(365) * 86400);
    CU_ASSERT_EQUAL_FATAL(qtsp_periodic_start("test", 50, 0, count_run, &c, &p), QTSP_OK);
    int n = wait_runs(&c, 4, 3000);
    atomic_store(&g_step_s, 0);
    qtsp_periodic_stop(p);
    CU_ASSERT(n >= 4);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_periodic_runs_at_once_then_at_the_interval),
        QTEST(test_periodic_first_delay_and_answered_delay),
        QTEST(test_periodic_kick_wakes_an_idle_thread),
        QTEST(test_periodic_kick_during_a_run_runs_again_at_once),
        QTEST(test_periodic_stop_joins_promptly_and_cuts_sleeps),
        QTEST(test_periodic_rejects_bad_arguments),
        QTEST(test_periodic_wall_clock_step_does_not_stall_it),
    };
    return qtest_run("periodic", cases, sizeof cases / sizeof cases[0]);
}
