/* Unit tests for ra/validate.c names (issue 15 defect 7): every rule that
 * keeps a deceptive name out of CN, givenName and surname, each with the
 * message naming the field, the code point and the rule; NFC normalisation;
 * real names in several scripts accepted. */
#include <stdio.h>
#include <string.h>

#include "ra/validate.h"
#include "tests/lib/qtest.h"

/* Refused with a message containing want. */
static void refused(const char *s, const char *want)
{
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_valid_name("given_name", s, 64), QTSP_ERR_INVALID);
    if (!strstr(qtsp_err_what(), want))
        fprintf(stderr, "expected '%s', got '%s'\n", want, qtsp_err_what());
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), want));
    /* the normalising variant refuses the same, and leaves out alone */
    char out[8] = "keep";
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_valid_name_nfc("surname", s, 64, out, sizeof out), QTSP_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), "surname: "));
    CU_ASSERT_STRING_EQUAL(out, "keep");
}

static void test_name_refuses_bidi_override(void)
{
    refused("Maria \xe2\x80\xaeredneS", "given_name: U+202E (format character) not allowed");
    refused("Anna\xe2\x80\x8f", "U+200F (format character)"); /* RIGHT-TO-LEFT MARK */
    refused("A\xe2\x81\xa6x", "U+2066 (format character)");   /* LEFT-TO-RIGHT ISOLATE */
}

static void test_name_refuses_zero_width_and_bom(void)
{
    refused("Ma\xe2\x80\x8bria", "U+200B (format character)"); /* ZERO WIDTH SPACE */
    refused("Ma\xe2\x80\x8dria", "U+200D (format character)"); /* ZERO WIDTH JOINER */
    refused("\xef\xbb\xbfMaria", "U+FEFF (format character)"); /* BOM */
    refused("Ma\xc2\xadria", "U+00AD (format character)");     /* SOFT HYPHEN */
}

static void test_name_refuses_controls(void)
{
    refused("a\x01", "U+0001 (control character)");
    refused("a\x7f", "U+007F (control character)");
    refused("a\xc2\x85", "U+0085 (control character)"); /* NEL */
    refused("a\tb", "U+0009 (control character)");
}

static void test_name_refuses_noncharacters(void)
{
    refused("A\xef\xbf\xbf", "U+FFFF (noncharacter)");
    refused("A\xef\xbf\xbe", "U+FFFE (noncharacter)");
    refused("A\xef\xb7\x90", "U+FDD0 (noncharacter)");
    refused("A\xf4\x8f\xbf\xbf", "U+10FFFF (noncharacter)");
}

static void test_name_refuses_separators_and_odd_spaces(void)
{
    refused("Maria\xe2\x80\xa8Sender", "U+2028 (line separator)");
    refused("Maria\xe2\x80\xa9Sender", "U+2029 (paragraph separator)");
    refused("Maria\xc2\xa0Sender", "U+00A0 (space other than U+0020)");
    refused("Maria\xe3\x80\x80Sender", "U+3000 (space other than U+0020)");
}

static void test_name_refuses_private_use_and_unassigned(void)
{
    refused("A\xee\x80\x80", "U+E000 (private-use character)");
    refused("A\xf3\xb0\x80\x80", "U+F0000 (private-use character)");
    refused("A\xcd\xb8", "U+0378 (unassigned character)"); /* unassigned in Unicode 15 */
    refused("A\xf0\xaf\xa8\xa0", "U+2FA20 (unassigned character)");
}

static void test_name_refuses_combining_only_and_leading_mark(void)
{
    refused("\xcc\x81\xcc\x81\xcc\x81", "given_name: U+0301 (combining mark) not allowed first");
    refused("\xcc\x81", "combining mark");
    refused("\xe2\x83\x9d", "U+20DD (combining mark)"); /* enclosing circle */
}

static void test_name_refuses_bad_utf8_empty_long_and_spaces(void)
{
    refused("\xc3\x28", "not valid UTF-8");
    refused("\xc0\xaf", "not valid UTF-8");         /* overlong '/' */
    refused("\xed\xa0\x80", "not valid UTF-8");     /* surrogate U+D800 */
    refused("\xf4\x90\x80\x80", "not valid UTF-8"); /* above U+10FFFF */
    refused("", "must not be empty");
    refused(" Anna", "no leading or trailing spaces");
    char longname[80];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    refused(longname, "at most 64 characters");
}

static void test_name_nfc_stores_composed(void)
{
    char out[4 * 64 + 1];
    /* "Zoe" + COMBINING DIAERESIS -> "Zoë" (U+00EB) */
    CU_ASSERT_EQUAL(qtsp_valid_name_nfc("given_name", "Zoe\xcc\x88", 64, out, sizeof out), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(out, "Zo\xc3\xab");
    /* already composed: unchanged */
    CU_ASSERT_EQUAL(qtsp_valid_name_nfc("given_name", "Zo\xc3\xab", 64, out, sizeof out), QTSP_OK);
    CU_ASSERT_STRING_EQUAL(out, "Zo\xc3\xab");
    /* 64 decomposed letters (128 code points) fit once composed */
    char many[64 * 3 + 1] = "";
    for (int i = 0; i < 64; i++)
        strcat(many, "e\xcc\x88");
    CU_ASSERT_EQUAL(qtsp_valid_name("given_name", many, 64), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_valid_name_nfc("given_name", many, 64, out, sizeof out), QTSP_OK);
    CU_ASSERT_EQUAL(strlen(out), 128);
    /* too small an output is refused, not truncated */
    char tiny[3] = "ab";
    qtsp_err_clear();
    CU_ASSERT_EQUAL(qtsp_valid_name_nfc("given_name", "Zo\xc3\xab", 64, tiny, sizeof tiny),
                    QTSP_ERR_TOO_BIG);
    CU_ASSERT_STRING_EQUAL(tiny, "ab");
}

static void test_name_accepts_real_names(void)
{
    static const char *const ok[] = {
        "Zo\xc3\xab",                               /* Zoë */
        "\xce\x9c\xce\xb1\xcf\x81\xce\xaf\xce\xb1", /* Μαρία */
        "M\xc3\xbcller-L\xc3\xbc"
        "densch"
        "eid", /* Müller-Lüdenscheid */
        "M\xc3\xbcller-L\xc3\xbc"
        "denscheidt",               /* Müller-Lüdenscheidt */
        "\xd0\x90\xd0\xbd\xd0\xb0", /* Ана */
        "O'Brien",
        "Jean Paul",
        "\xe5\xb1\xb1\xe7\x94\xb0", /* 山田 */
        "Nguy\xe1\xbb\x85n",        /* Nguyễn */
        "\xd7\xa9\xd7\xa8\xd7\x94", /* שרה (RTL script, no override) */
        "e\xcc\x81mile",            /* a mark after a letter */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        qtsp_err_clear();
        qtsp_status rc = qtsp_valid_name("given_name", ok[i], 64);
        if (rc != QTSP_OK)
            fprintf(stderr, "refused %s: %s\n", ok[i], qtsp_err_what());
        CU_ASSERT_EQUAL(rc, QTSP_OK);
        char out[4 * 64 + 1];
        CU_ASSERT_EQUAL(qtsp_valid_name_nfc("given_name", ok[i], 64, out, sizeof out), QTSP_OK);
    }
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_name_refuses_bidi_override),
        QTEST(test_name_refuses_zero_width_and_bom),
        QTEST(test_name_refuses_controls),
        QTEST(test_name_refuses_noncharacters),
        QTEST(test_name_refuses_separators_and_odd_spaces),
        QTEST(test_name_refuses_private_use_and_unassigned),
        QTEST(test_name_refuses_combining_only_and_leading_mark),
        QTEST(test_name_refuses_bad_utf8_empty_long_and_spaces),
        QTEST(test_name_nfc_stores_composed),
        QTEST(test_name_accepts_real_names),
    };
    return qtest_run("validate", cases, sizeof cases / sizeof cases[0]);
}
