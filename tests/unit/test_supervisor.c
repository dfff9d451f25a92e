/* Unit tests for core/supervisor: workers start one at a time, a worker
 * that fails to start stops the others, a dead worker is restarted, quick
 * deaths stop everything with status 1, SIGTERM is forwarded and every
 * worker drains. Each scenario runs in a child process of the test (the
 * stop flag and the signal mask are process-wide). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/supervisor.h"
#include "tests/lib/qtest.h"

#define N 3

/* What the workers do, per scenario. Events go to a log file, one line each
 * ("<event> <worker> <ms>"), written with O_APPEND by every process. */
typedef struct scenario {
    char log[256];
    int fail_at_start; /* worker index that exits 7 before ready, or -1 */
    int die_once;      /* worker index that exits 3 once after ready, or -1 */
    int die_always;    /* worker index that exits 3 after ready every time, or -1 */
} scenario;

static int64_t ms(void)
{
    return (int64_t)(qtsp_mono_ns() / 1000000u);
}

static void note(const scenario *s, const char *what, unsigned i)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%s %u %lld\n", what, i, (long long)ms());
    int fd = open(s->log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n)
            perror("note");
        close(fd);
    }
}

static int count(const scenario *s, const char *what, int i)
{
    FILE *f = fopen(s->log, "r");
    if (!f)
        return 0;
    char w[16];
    unsigned k;
    long long t;
    int c = 0;
    while (fscanf(f, "%15s %u %lld", w, &k, &t) == 3)
        c += strcmp(w, what) == 0 && (i < 0 || (unsigned)i == k);
    fclose(f);
    return c;
}

static int run(void *ctx, unsigned i, int listen_fd, int ready_fd)
{
    scenario *s = ctx;
    note(s, "begin", i);
    struct timespec ts = {0, 100L * 1000000L}; /* "logging in to the token" */
    nanosleep(&ts, NULL);
    if ((int)i == s->fail_at_start)
        return 7;
    note(s, "ready", i);
    qtsp_supervisor_ready(ready_fd);
    if ((int)i == s->die_always || ((int)i == s->die_once && count(s, "ready", (int)i) == 1))
        return 3;
    while (!qtsp_stop_wait(1)) {
    }
    note(s, "stopped", i);
    return 0;
}

/* The supervisor's note that worker i died (it clears its metrics slot). */
static void gone(void *ctx, unsigned i)
{
    note(ctx, "gone", i);
}

/* Runs the supervisor in a child: start, then (after stop_after_ms, if >= 0)
 * a SIGTERM to itself, then run. The child's exit status: 100 + the start's
 * status when it failed (+ 50 when a worker was left), else run's status. */
static int scenario_run(scenario *s, int stop_after_ms)
{
    pid_t pid = fork();
    if (pid == 0) {
        qtsp_stop_signals_install();
        int fds[N];
        for (int i = 0; i < N; i++)
            fds[i] = open("/dev/null", O_RDONLY);
        qtsp_supervisor_spec spec = {"test", N, fds, run, gone, s, NULL, NULL};
        qtsp_supervisor *sv = NULL;
        qtsp_status rc = qtsp_supervisor_start(&spec, &sv);
        if (rc != QTSP_OK) {
            int left = waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD ? 0 : 50;
            _exit(100 + (int)rc + left);
        }
        if (stop_after_ms >= 0) {
            pid_t me = getpid();
            if (fork() == 0) { /* a SIGTERM from outside, later */
                struct timespec ts = {stop_after_ms / 1000,
                                      (long)(stop_after_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
                kill(me, SIGTERM);
                _exit(0);
            }
        }
        int code = qtsp_supervisor_run(sv);
        qtsp_supervisor_free(sv);
        _exit(code);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 200;
}

static void scenario_init(scenario *s, const char *tag)
{
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s/events", qtest_tmpdir(tag));
    s->fail_at_start = s->die_once = s->die_always = -1;
}

static void test_supervisor_starts_one_at_a_time_and_forwards_sigterm(void)
{
    scenario s;
    scenario_init(&s, "sv-start");
    CU_ASSERT_EQUAL(scenario_run(&s, 800), 0);
    CU_ASSERT_EQUAL(count(&s, "ready", -1), N);
    CU_ASSERT_EQUAL(count(&s, "stopped", -1), N); /* each drained on the forwarded SIGTERM */
    /* worker i+1 begins only after worker i is ready */
    FILE *f = fopen(s.log, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char w[16];
    unsigned k;
    long long t, ready_at[N] = {0}, begin_at[N] = {0};
    while (fscanf(f, "%15s %u %lld", w, &k, &t) == 3 && k < N) {
        if (strcmp(w, "begin") == 0)
            begin_at[k] = t;
        else if (strcmp(w, "ready") == 0)
            ready_at[k] = t;
    }
    fclose(f);
    for (int i = 0; i + 1 < N; i++)
        CU_ASSERT(begin_at[i + 1] >= ready_at[i]);
}

static void test_supervisor_worker_failing_at_start_stops_the_others(void)
{
    scenario s;
    scenario_init(&s, "sv-fail");
    s.fail_at_start = 1;
    CU_ASSERT_EQUAL(scenario_run(&s, -1), 100 + QTSP_ERR_UNAVAILABLE); /* and no child left */
    CU_ASSERT_EQUAL(count(&s, "ready", 0), 1);
    CU_ASSERT_EQUAL(count(&s, "begin", 2), 0);   /* never started */
    CU_ASSERT_EQUAL(count(&s, "stopped", 0), 1); /* worker 0 was stopped politely */
}

static void test_supervisor_restarts_a_dead_worker(void)
{
    scenario s;
    scenario_init(&s, "sv-restart");
    s.die_once = 2;
    CU_ASSERT_EQUAL(scenario_run(&s, 1500), 0);
    CU_ASSERT_EQUAL(count(&s, "begin", 2), 2); /* started again */
    CU_ASSERT_EQUAL(count(&s, "gone", 2), 1);
    CU_ASSERT_EQUAL(count(&s, "begin", 0), 1);
    CU_ASSERT_EQUAL(count(&s, "stopped", -1), N);
}

static void test_supervisor_quick_deaths_stop_everything(void)
{
    scenario s;
    scenario_init(&s, "sv-quick");
    s.die_always = 0;
    CU_ASSERT_EQUAL(scenario_run(&s, -1), 1);
    /* the first life and one per restart until the limit */
    CU_ASSERT_EQUAL(count(&s, "ready", 0), QTSP_SUPERVISOR_QUICK_DEATHS);
    CU_ASSERT_EQUAL(count(&s, "stopped", 1), 1); /* the others drained */
    CU_ASSERT_EQUAL(count(&s, "stopped", 2), 1);
}

static void test_supervisor_rejects_an_empty_spec(void)
{
    int fd = 0;
    qtsp_supervisor_spec spec = {"test", 0, &fd, run, NULL, NULL, NULL, NULL};
    qtsp_supervisor *sv = (qtsp_supervisor *)&fd;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_supervisor_start(&spec, &sv), QTSP_ERR_INVALID);
    spec.n = 1;
    spec.run = NULL;
    CU_ASSERT_EQUAL(qtsp_supervisor_start(&spec, &sv), QTSP_ERR_INVALID);
    CU_ASSERT(sv == (qtsp_supervisor *)&fd);
    qtsp_supervisor_free(NULL);
    qtsp_err_clear();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_supervisor_starts_one_at_a_time_and_forwards_sigterm),
        QTEST(test_supervisor_worker_failing_at_start_stops_the_others),
        QTEST(test_supervisor_restarts_a_dead_worker),
        QTEST(test_supervisor_quick_deaths_stop_everything),
        QTEST(test_supervisor_rejects_an_empty_spec),
    };
    return qtest_run("supervisor", cases, sizeof cases / sizeof cases[0]);
}
