/* Unit tests for core/json.c: field lists, typed fields, UTF-8-checked
 * strings. */
#include <jansson.h>
#include <string.h>

#include "core/json.h"
#include "tests/lib/qtest.h"

static json_t *parse(const char *s)
{
    json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

static void test_json_check_fields_names_the_unknown_one(void)
{
    static const char *const allowed[] = {"a", "b", NULL};
    static const char *const none[] = {NULL};
    json_t *j = parse("{\"a\":1,\"b\":2}");
    CU_ASSERT_EQUAL(qtsp_json_check_fields(j, allowed), QTSP_OK);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_check_fields(j, none), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), ": unknown field"));
    json_decref(j);
    j = parse("{\"a\":1,\"shoe_size\":42}");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_check_fields(j, allowed), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "shoe_size: unknown field");
    json_decref(j);
    j = parse("[1]");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_check_fields(j, allowed), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "body: must be a JSON object");
    json_decref(j);
    qtsp_err_clear();
}

static void test_json_get_string_types_and_presence(void)
{
    json_t *j = parse("{\"s\":\"x\",\"n\":1,\"z\":\"a\\u0000b\"}");
    const char *v = "unset";
    CU_ASSERT_EQUAL(qtsp_json_get_string(j, "s", 1, &v), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(v, "x");
    CU_ASSERT_EQUAL(qtsp_json_get_string(j, "absent", 0, &v), QTSP_OK);
    CU_ASSERT_PTR_NULL(v);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_get_string(j, "absent", 1, &v), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "absent: missing");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_get_string(j, "n", 1, &v), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "n: must be a string");
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_get_string(j, "z", 1, &v), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "z: must not contain NUL");
    json_decref(j);
    qtsp_err_clear();
}

static void test_json_new_string_refuses_invalid_utf8_by_name(void)
{
    json_t *j = NULL;
    CU_ASSERT_EQUAL(qtsp_json_new_string("f", "caf\xc3\xa9", &j), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(j), "caf\xc3\xa9");
    json_decref(j);
    const char *bad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = NULL;
        qtsp_err_clear();
        CU_ASSERT_EQUAL(qtsp_json_new_string("identity_check", bad[i], &j), QTSP_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "identity_check: not valid UTF-8");
        CU_ASSERT_PTR_NULL(j);
    }
    json_t *o = json_object();
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_set_string(o, "label", "kp-\xfe"), QTSP_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(qtsp_err_what(), "label: not valid UTF-8");
    CU_ASSERT_EQUAL(json_object_size(o), 0);
    CU_ASSERT_EQUAL(qtsp_json_set_string(o, "label", "kp-1"), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "label")), "kp-1");
    json_decref(o);
    qtsp_err_clear();
}

/* signDoc's documents: long plain strings stay in the body, everything
 * else parses as usual; a placeholder a client sends is not one. */
static void test_json_big_strings_stay_in_the_body(void)
{
    static char body[40000];
    static char lng[9001];
    memset(lng, 'A', 9000);
    lng[9000] = '\0';
    /* a long value, a long key, a long value with an escape, a short one */
    snprintf(body, sizeof body, "{\"doc\":\"%s\",\"%s\":1,\"esc\":\"\\n%s\",\"s\":\"x\"}", lng, lng,
             lng);
    json_t *o = NULL;
    qtsp_json_big big;
    CU_ASSERT_EQUAL_FATAL(qtsp_json_parse_object_big(body, strlen(body), 4096, &o, &big), QTSP_OK);
    CU_ASSERT_EQUAL(big.n, 1);
    const char *p = NULL;
    size_t n = 0;
    CU_ASSERT(qtsp_json_big_is(&big, json_object_get(o, "doc")));
    CU_ASSERT(qtsp_json_big_get(&big, json_object_get(o, "doc"), &p, &n));
    CU_ASSERT_EQUAL(n, 9000);
    CU_ASSERT_PTR_EQUAL(p, strstr(body, lng));       /* where it lies, not a copy */
    CU_ASSERT_PTR_NOT_NULL(json_object_get(o, lng)); /* keys are never left out */
    size_t tl = 0;
    CU_ASSERT_PTR_EQUAL(qtsp_json_big_take(&big, json_object_get(o, "doc"), &tl), p);
    CU_ASSERT_EQUAL(tl, 9000);
    CU_ASSERT_PTR_NULL(qtsp_json_big_take(&big, json_object_get(o, "s"), &tl));
    CU_ASSERT(!qtsp_json_big_is(&big, json_object_get(o, "esc")));
    CU_ASSERT_EQUAL(json_string_length(json_object_get(o, "esc")), 9001);
    CU_ASSERT(qtsp_json_big_get(&big, json_object_get(o, "s"), &p, &n));
    CU_ASSERT(n == 1 && p[0] == 'x');
    CU_ASSERT(!qtsp_json_big_get(&big, json_object_get(o, "absent"), &p, &n));
    json_decref(o);
    qtsp_json_big_cleanup(&big);
    /* the client writes a placeholder itself: an ordinary string */
    static char forged[] = "{\"a\":\"\\u0001big-000000000000000000000000-0\"}";
    CU_ASSERT_EQUAL_FATAL(qtsp_json_parse_object_big(forged, strlen(forged), 4096, &o, &big),
                          QTSP_OK);
    CU_ASSERT(!qtsp_json_big_is(&big, json_object_get(o, "a")));
    json_decref(o);
    qtsp_json_big_cleanup(&big);
    /* broken JSON and duplicate keys are refused as before */
    snprintf(body, sizeof body, "{\"doc\":\"%s\",\"doc\":\"%s\"}", lng, lng);
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_json_parse_object_big(body, strlen(body), 4096, &o, &big),
                    QTSP_ERR_INVALID);
    snprintf(body, sizeof body, "{\"doc\":\"%s", lng);
    CU_ASSERT_EQUAL(qtsp_json_parse_object_big(body, strlen(body), 4096, &o, &big),
                    QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "invalid JSON"));
    qtsp_err_clear();
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_json_check_fields_names_the_unknown_one),
        QTEST(test_json_get_string_types_and_presence),
        QTEST(test_json_new_string_refuses_invalid_utf8_by_name),
        QTEST(test_json_big_strings_stay_in_the_body),
    };
    return qtest_run("json", cases, sizeof cases / sizeof cases[0]);
}
