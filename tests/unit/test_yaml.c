/* Unit tests for core/yaml: tree shape, positions, strictness, typed getters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/yaml.h"
#include "tests/lib/qtest.h"

static qtsp_ydoc *load(const char *text)
{
    qtsp_ydoc *d = NULL;
    qtsp_err_clear();
    if (qtsp_ydoc_load_string("t.yaml", text, strlen(text), &d) != QTSP_OK) {
        fprintf(stderr, "load failed: %s\n", qtsp_err_message());
        return NULL;
    }
    return d;
}

/* Loads text expecting failure with code; returns 1 when the message contains want. */
static int load_fails(const char *text, qtsp_status code, const char *want)
{
    qtsp_ydoc *d = NULL;
    qtsp_err_clear();
    qtsp_status rc = qtsp_ydoc_load_string("t.yaml", text, strlen(text), &d);
    if (rc != code || d) {
        fprintf(stderr, "expected %d got %d\n", code, rc);
        qtsp_ydoc_free(d);
        return 0;
    }
    if (!strstr(qtsp_err_what(), want)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", qtsp_err_what(), want);
        return 0;
    }
    return 1;
}

static const char *k_nested = "name: crl\n"
                              "limits:\n"
                              "  next_update: 24h\n"
                              "  count: 42\n"
                              "urls:\n"
                              "  - http://a/\n"
                              "  - {x: 1, y: [a, b]}\n"
                              "flag: yes\n";

static void test_yaml_nested_maps_and_sequences(void)
{
    qtsp_ydoc *d = load(k_nested);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    CU_ASSERT_EQUAL(qtsp_ynode_kind(r), QTSP_Y_MAP);
    CU_ASSERT_EQUAL(qtsp_ynode_count(r), 4);
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_key(r, 0), "name");
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_key(r, 3), "flag");
    CU_ASSERT_PTR_NULL(qtsp_ynode_key(r, 4));
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_scalar(qtsp_ynode_value(r, 0)), "crl");
    const qtsp_ynode *lim = qtsp_ynode_get(r, "limits");
    CU_ASSERT_EQUAL(qtsp_ynode_kind(lim), QTSP_Y_MAP);
    CU_ASSERT_PTR_NULL(qtsp_ynode_scalar(lim));
    const qtsp_ynode *urls = qtsp_ynode_get(r, "urls");
    CU_ASSERT_EQUAL(qtsp_ynode_kind(urls), QTSP_Y_SEQ);
    CU_ASSERT_EQUAL(qtsp_ynode_count(urls), 2);
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_scalar(qtsp_ynode_item(urls, 0)), "http://a/");
    const qtsp_ynode *m = qtsp_ynode_item(urls, 1);
    CU_ASSERT_EQUAL(qtsp_ynode_kind(m), QTSP_Y_MAP);
    const qtsp_ynode *y = qtsp_ynode_get(m, "y");
    CU_ASSERT_EQUAL(qtsp_ynode_count(y), 2);
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_scalar(qtsp_ynode_item(y, 1)), "b");
    CU_ASSERT_PTR_NULL(qtsp_ynode_item(y, 2));
    CU_ASSERT_PTR_NULL(qtsp_ynode_get(r, "absent"));
    CU_ASSERT_PTR_NULL(qtsp_ynode_get(urls, "name"));

    int64_t secs = 0, count = 0;
    int flag = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_duration(lim, "next_update", 1, &secs), QTSP_OK);
    CU_ASSERT_EQUAL(secs, 86400);
    CU_ASSERT_EQUAL(qtsp_yget_int(lim, "count", 1, 0, 100, &count), QTSP_OK);
    CU_ASSERT_EQUAL(count, 42);
    CU_ASSERT_EQUAL(qtsp_yget_bool(r, "flag", 1, &flag), QTSP_OK);
    CU_ASSERT_EQUAL(flag, 1);
    const char *s = "default";
    CU_ASSERT_EQUAL(qtsp_yget_str(r, "missing", 0, &s), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(s, "default");
    int64_t keep = 7;
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "missing", 0, 0, 10, &keep), QTSP_OK);
    CU_ASSERT_EQUAL(keep, 7);
    qtsp_ydoc_free(d);
}

static void test_yaml_positions_are_exact(void)
{
    qtsp_ydoc *d = load(k_nested);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    const qtsp_ynode *lim = qtsp_ynode_get(r, "limits");
    const qtsp_ynode *nu = qtsp_ynode_get(lim, "next_update");
    CU_ASSERT_EQUAL(qtsp_ynode_line(nu), 3);
    CU_ASSERT_EQUAL(qtsp_ynode_column(nu), 16);
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_file(nu), "t.yaml");
    CU_ASSERT_EQUAL(qtsp_ynode_line(lim), 3);
    CU_ASSERT_EQUAL(qtsp_ynode_column(lim), 3);
    const qtsp_ynode *urls = qtsp_ynode_get(r, "urls");
    const qtsp_ynode *u1 = qtsp_ynode_item(urls, 1);
    CU_ASSERT_EQUAL(qtsp_ynode_line(u1), 7);
    CU_ASSERT_EQUAL(qtsp_ynode_column(u1), 5);
    const qtsp_ynode *y = qtsp_ynode_get(u1, "y");
    CU_ASSERT_EQUAL(qtsp_ynode_column(y), 15);
    CU_ASSERT_EQUAL(qtsp_ynode_column(qtsp_ynode_item(y, 1)), 19);
    CU_ASSERT_EQUAL(qtsp_ynode_line(qtsp_ynode_get(r, "flag")), 8);
    CU_ASSERT_EQUAL(qtsp_ynode_column(qtsp_ynode_get(r, "flag")), 7);
    qtsp_ydoc_free(d);
}

static void test_yaml_unknown_key_names_file_line_col_and_key(void)
{
    qtsp_ydoc *d = load("name: a\nlimits:\n  count: 1\n  bogus: 2\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    static const char *const top[] = {"name", "limits", NULL};
    static const char *const inner[] = {"count", NULL};
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ynode_check_keys(r, top), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_ynode_check_keys(qtsp_ynode_get(r, "limits"), inner), QTSP_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:4:3: bogus: unknown key");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ynode_check_keys(qtsp_ynode_get(r, "name"), inner), QTSP_ERR_CONFIG);
    qtsp_ydoc_free(d);
}

static void test_yaml_missing_required_key_names_map(void)
{
    qtsp_ydoc *d = load("outer:\n  a: 1\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *o = qtsp_ynode_get(qtsp_ydoc_root(d), "outer");
    const char *s = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_str(o, "b", 1, &s), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:2:3: b: required key missing");
    qtsp_ydoc_free(d);
}

static void test_yaml_wrong_types_fail_naming_value(void)
{
    qtsp_ydoc *d = load("n: abc\nb: maybe\nl: [1]\nm: {a: 1}\nd: 3w\nh: 0x10\np: +5\ns: 1.5\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    int64_t i = 99;
    int b = 5;
    const char *s = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "n", 1, 0, 10, &i), QTSP_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:1:4: n: 'abc' is not a decimal integer");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_bool(r, "b", 1, &b), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "t.yaml:2:4: b: 'maybe' is not a boolean"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_str(r, "l", 1, &s), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "t.yaml:3:4: l: must be a single value"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "m", 1, 0, 10, &i), QTSP_ERR_CONFIG);
    qtsp_err_clear();
    int64_t dur = 0;
    CU_ASSERT_EQUAL(qtsp_yget_duration(r, "d", 1, &dur), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "t.yaml:5:4: d: '3w' is not a duration"));
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "h", 1, 0, 100, &i), QTSP_ERR_CONFIG);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "p", 1, 0, 100, &i), QTSP_ERR_CONFIG);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "s", 1, 0, 100, &i), QTSP_ERR_CONFIG);
    CU_ASSERT_EQUAL(i, 99);
    CU_ASSERT_EQUAL(b, 5);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(dur, 0);
    qtsp_ydoc_free(d);
}

static void test_yaml_int_out_of_range_names_key(void)
{
    qtsp_ydoc *d = load("workers: 65\nneg: -3\nhuge: 99999999999999999999999\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    int64_t v = 0;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "workers", 1, 1, 64, &v), QTSP_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:1:10: workers: 65 is out of range [1, 64]");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "neg", 1, -5, 5, &v), QTSP_OK);
    CU_ASSERT_EQUAL(v, -3);
    CU_ASSERT_EQUAL(qtsp_yget_int(r, "huge", 1, INT64_MIN, INT64_MAX, &v), QTSP_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "huge:"));
    CU_ASSERT_EQUAL(v, -3);
    qtsp_ydoc_free(d);
}

static void test_yaml_refuses_duplicate_key(void)
{
    CU_ASSERT(load_fails("a: 1\nb:\n  c: 1\n  c: 2\n", QTSP_ERR_CONFIG,
                         "t.yaml:4:3: c: duplicate key (first at line 3)"));
}

static void test_yaml_refuses_alias_and_anchor(void)
{
    CU_ASSERT(load_fails("a: &x 1\nb: 2\n", QTSP_ERR_CONFIG, "t.yaml:1:4: anchors (&x)"));
    CU_ASSERT(load_fails("a: &m {k: 1}\n", QTSP_ERR_CONFIG, "anchors (&m)"));
    CU_ASSERT(load_fails("a: *y\n", QTSP_ERR_CONFIG, "t.yaml:1:4: aliases (*y)"));
}

static void test_yaml_refuses_non_scalar_key(void)
{
    CU_ASSERT(load_fails("? [a, b]\n: 1\n", QTSP_ERR_CONFIG, "map keys must be scalars"));
    CU_ASSERT(load_fails("{ {a: 1}: 2 }\n", QTSP_ERR_CONFIG, "map keys must be scalars"));
}

static void test_yaml_syntax_error_names_line(void)
{
    CU_ASSERT(load_fails("a: 1\nb: [1, 2\nc: 3\n", QTSP_ERR_CONFIG, "t.yaml:3:2: "));
    CU_ASSERT(load_fails("a: 1\n  b: 2\n", QTSP_ERR_CONFIG, "t.yaml:2:4: mapping values"));
    CU_ASSERT(load_fails("a: 1\n---\nb: 2\n", QTSP_ERR_CONFIG, "only one YAML document"));
}

static void test_yaml_refuses_oversized_file(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", qtest_tmpdir("yaml"));
    char path[600];
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("a: \"", f);
    for (int i = 0; i < 1024 * 1024; i++)
        fputc('x', f);
    fputs("\"\n", f);
    fclose(f);
    qtsp_ydoc *d = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ydoc_load_file(path, &d), QTSP_ERR_TOO_BIG);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "big.yaml"));

    /* just under the limit loads */
    f = fopen(path, "w");
    fputs("a: \"", f);
    for (int i = 0; i < 1024 * 1024 - 10; i++)
        fputc('x', f);
    fputs("\"\n", f);
    fclose(f);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ydoc_load_file(path, &d), QTSP_OK);
    CU_ASSERT_EQUAL(strlen(qtsp_ynode_scalar(qtsp_ynode_get(qtsp_ydoc_root(d), "a"))),
                    1024 * 1024 - 10);
    qtsp_ydoc_free(d);
    d = NULL;

    snprintf(path, sizeof path, "%s/none.yaml", dir);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ydoc_load_file(path, &d), QTSP_ERR_IO);
    qtest_rmtree(dir);
}

static void test_yaml_empty_file_is_empty_map(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", qtest_tmpdir("yaml"));
    char path[600];
    snprintf(path, sizeof path, "%s/empty.yaml", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    qtsp_ydoc *d = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_ydoc_load_file(path, &d), QTSP_OK);
    const qtsp_ynode *r = qtsp_ydoc_root(d);
    CU_ASSERT_EQUAL(qtsp_ynode_kind(r), QTSP_Y_MAP);
    CU_ASSERT_EQUAL(qtsp_ynode_count(r), 0);
    CU_ASSERT_STRING_EQUAL(qtsp_ynode_file(r), path);
    qtsp_ydoc_free(d);
    qtest_rmtree(dir);

    const char *texts[] = {"# only a comment\n", "---\n", "", "---\n...\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        d = load(texts[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_EQUAL(qtsp_ynode_kind(qtsp_ydoc_root(d)), QTSP_Y_MAP);
        CU_ASSERT_EQUAL(qtsp_ynode_count(qtsp_ydoc_root(d)), 0);
        qtsp_ydoc_free(d);
    }
}

static void test_yaml_fail_formats_file_line_col_key(void)
{
    qtsp_ydoc *d = load("crl:\n  next_update: 48h\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const qtsp_ynode *n = qtsp_ynode_get(qtsp_ynode_get(qtsp_ydoc_root(d), "crl"), "next_update");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ynode_fail(n, "next_update", "must be <= %s", "24h"), QTSP_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:2:16: next_update: must be <= 24h");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_ynode_fail(n, NULL, "bad"), QTSP_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "t.yaml:2:16: bad");
    qtsp_err_clear();
    qtsp_ydoc_free(d);
}

static void test_yaml_deep_nesting_refused(void)
{
    char text[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        text[n++] = '[';
    for (int i = 0; i < 100; i++)
        text[n++] = ']';
    text[n] = '\0';
    CU_ASSERT(load_fails(text, QTSP_ERR_CONFIG, "nesting deeper than"));
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_yaml_nested_maps_and_sequences),
        QTEST(test_yaml_positions_are_exact),
        QTEST(test_yaml_unknown_key_names_file_line_col_and_key),
        QTEST(test_yaml_missing_required_key_names_map),
        QTEST(test_yaml_wrong_types_fail_naming_value),
        QTEST(test_yaml_int_out_of_range_names_key),
        QTEST(test_yaml_refuses_duplicate_key),
        QTEST(test_yaml_refuses_alias_and_anchor),
        QTEST(test_yaml_refuses_non_scalar_key),
        QTEST(test_yaml_syntax_error_names_line),
        QTEST(test_yaml_refuses_oversized_file),
        QTEST(test_yaml_empty_file_is_empty_map),
        QTEST(test_yaml_fail_formats_file_line_col_key),
        QTEST(test_yaml_deep_nesting_refused),
    };
    return qtest_run("yaml", cases, sizeof cases / sizeof cases[0]);
}
