/* Unit tests for core/config.c: qtsp.yaml defaults, loading, strictness,
 * error positions, PIN reading. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "tests/lib/qtest.h"

static char g_dir[512];

static void write_file(const char *name, const char *text)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void test_config_defaults_then_save_and_load_round_trip(void)
{
    qtsp_config a, b;
    qtsp_config_defaults(&a, g_dir);
    CU_ASSERT_STRING_EQUAL(a.base_url, "http://127.0.0.1:8080");
    CU_ASSERT(a.http_workers >= 1);
    snprintf(a.base_url, sizeof a.base_url, "https://tsp.example.eu");
    a.log_json = 1;
    a.store_map_mib = 2048;
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_config_save(&a), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(qtsp_config_load(g_dir, &b), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(b.base_url, "https://tsp.example.eu");
    CU_ASSERT_EQUAL(b.log_json, 1);
    CU_ASSERT_EQUAL(b.store_map_mib, 2048);
    CU_ASSERT_STRING_EQUAL(b.pin_file, a.pin_file);
    CU_ASSERT_STRING_EQUAL(b.key_issuing, "qtsp-issuing-ca");
}

/* the contract: serve runs one worker process per core unless configured */
static void test_config_default_is_one_process_per_core(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long expect = cores < 1 ? 2 : cores > 64 ? 64 : cores;
    qtsp_config c;
    qtsp_config_defaults(&c, g_dir);
    CU_ASSERT_EQUAL(c.http_processes, expect);
    write_file("qtsp.yaml", "version: 1\nhttp:\n  workers: 0\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_config_load(g_dir, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.http_processes, expect);
    write_file("qtsp.yaml", "version: 1\nhttp:\n  processes: 1\n");
    CU_ASSERT_EQUAL_FATAL(qtsp_config_load(g_dir, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.http_processes, 1);
    write_file("qtsp.yaml", "version: 1\nhttp:\n  processes: 65\n");
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    qtsp_err_clear();
}

/* http.trusted_proxies: addresses only, normalised, at most 8 */
static void test_config_trusted_proxies(void)
{
    qtsp_config c;
    write_file("qtsp.yaml", "version: 1\nhttp:\n  trusted_proxies: [127.0.0.1, \"::0001\"]\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_config_load(g_dir, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.http_n_trusted_proxies, 2);
    CU_ASSERT_STRING_EQUAL(c.http_trusted_proxies[0], "127.0.0.1");
    CU_ASSERT_STRING_EQUAL(c.http_trusted_proxies[1], "::1");
    write_file("qtsp.yaml", "version: 1\n");
    CU_ASSERT_EQUAL_FATAL(qtsp_config_load(g_dir, &c), QTSP_OK);
    CU_ASSERT_EQUAL(c.http_n_trusted_proxies, 0);
    static const char *const bad[] = {
        "version: 1\nhttp:\n  trusted_proxies: [10.0.0.0/8]\n",
        "version: 1\nhttp:\n  trusted_proxies: [proxy.example]\n",
        "version: 1\nhttp:\n  trusted_proxies: 127.0.0.1\n",
        "version: 1\nhttp:\n  trusted_proxies: [[127.0.0.1]]\n",
        "version: 1\nhttp:\n  trusted_proxies: [1.1.1.1, 1.1.1.2, 1.1.1.3, 1.1.1.4, 1.1.1.5, "
        "1.1.1.6, 1.1.1.7, 1.1.1.8, 1.1.1.9]\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("qtsp.yaml", bad[i]);
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
        CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "trusted_proxies"));
    }
    qtsp_err_clear();
}

static void test_config_unknown_key_names_file_line_column_and_key(void)
{
    write_file("qtsp.yaml", "version: 1\nhsm:\n  module: /x.so\n  colour: blue\n");
    qtsp_config c;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "qtsp.yaml:4:3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "colour"));
    qtsp_err_clear();
}

static void test_config_rejects_bad_values(void)
{
    qtsp_config c;
    write_file("qtsp.yaml", "version: 1\nbase_url: ftp://x\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "base_url"));
    write_file("qtsp.yaml", "version: 2\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    write_file("qtsp.yaml", "version: 1\nlog:\n  format: xml\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "qtsp.yaml:3:"));
    write_file("qtsp.yaml", "version: 1\nstore:\n  map_size: 1\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    write_file("qtsp.yaml", "version: 1\nhttp: [1, 2\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(g_dir, &c), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "qtsp.yaml:"));
    qtsp_err_clear();
}

static void test_config_missing_home_says_to_run_init(void)
{
    qtsp_config c;
    char p[700];
    snprintf(p, sizeof p, "%s/nowhere", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(p, &c), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "qtsp init"));
    snprintf(p, sizeof p, "%s/empty", g_dir);
    mkdir(p, 0700);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(p, &c), QTSP_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "qtsp init"));
    qtsp_err_clear();
}

/* A home whose paths do not fit QTSP_PATH_MAX is refused, not cut short. */
static void test_config_refuses_a_home_path_too_long(void)
{
    char home[QTSP_PATH_MAX + 64];
    memset(home, 'h', sizeof home - 1);
    home[0] = '/';
    home[sizeof home - 1] = '\0';
    qtsp_config c;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_load(home, &c), QTSP_ERR_TOO_BIG);
    home[QTSP_PATH_MAX - 8] = '\0'; /* fits, but home/secrets/token.pin does not */
    CU_ASSERT_EQUAL(qtsp_config_load(home, &c), QTSP_ERR_TOO_BIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_message(), "too long"));
    qtsp_err_clear();
}

static void test_config_reads_pin_from_file_or_env(void)
{
    qtsp_config c;
    qtsp_config_defaults(&c, g_dir);
    snprintf(c.pin_file, sizeof c.pin_file, "%s/pin", g_dir);
    write_file("pin", "s3cr3t\n");
    char pin[64];
    unsetenv("QTSP_TOKEN_PIN");
    CU_ASSERT_EQUAL(qtsp_config_read_pin(&c, pin, sizeof pin), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(pin, "s3cr3t");
    setenv("QTSP_TOKEN_PIN", "fromenv", 1);
    CU_ASSERT_EQUAL(qtsp_config_read_pin(&c, pin, sizeof pin), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(pin, "fromenv");
    unsetenv("QTSP_TOKEN_PIN");
    write_file("pin", "\n");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_read_pin(&c, pin, sizeof pin), QTSP_ERR_INVALID);
    snprintf(c.pin_file, sizeof c.pin_file, "%s/absent", g_dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_config_read_pin(&c, pin, sizeof pin), QTSP_ERR_IO);
    qtsp_err_clear();
}

int main(void)
{
    const char *d = qtest_tmpdir("config");
    if (!d)
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", d);
    static const qtest_case cases[] = {
        QTEST(test_config_defaults_then_save_and_load_round_trip),
        QTEST(test_config_default_is_one_process_per_core),
        QTEST(test_config_trusted_proxies),
        QTEST(test_config_unknown_key_names_file_line_column_and_key),
        QTEST(test_config_rejects_bad_values),
        QTEST(test_config_missing_home_says_to_run_init),
        QTEST(test_config_reads_pin_from_file_or_env),
        QTEST(test_config_refuses_a_home_path_too_long),
    };
    int r = qtest_run("config", cases, sizeof cases / sizeof cases[0]);
    qtest_rmtree(g_dir);
    return r;
}
