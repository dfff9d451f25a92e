/* Enrolment field validation. */
#include "ra/validate.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Why a code point may not appear in a name, or NULL when it may. Names
 * go into CN, givenName and surname of a qualified certificate (EN 319 412-2
 * 4.2.4): anything that is invisible, reorders or hides text, or has no
 * agreed meaning would let the certificate show a name other than the one
 * the RA checked ("Maria \u202eredneS" displays as "Maria Sender"). */
static const char *forbidden(int32_t cp)
{
    /* noncharacters (Unicode 15 section 23.7): U+FDD0..U+FDEF and the last two
     * code points of every plane; utf8proc files them under Cn */
    if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
        return "noncharacter";
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC:
        return "control character";
    case UTF8PROC_CATEGORY_CF:
        return "format character";
    case UTF8PROC_CATEGORY_CO:
        return "private-use character";
    case UTF8PROC_CATEGORY_CN:
        return "unassigned character";
    case UTF8PROC_CATEGORY_CS:
        return "surrogate";
    case UTF8PROC_CATEGORY_ZL:
        return "line separator";
    case UTF8PROC_CATEGORY_ZP:
        return "paragraph separator";
    case UTF8PROC_CATEGORY_ZS:
        return cp == 0x20 ? NULL : "space other than U+0020";
    default:
        return NULL;
    }
}

static int is_mark(int32_t cp)
{
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_MC || c == UTF8PROC_CATEGORY_ME;
}

qtsp_status qtsp_valid_name(const char *field, const char *s, size_t max)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "%s: must not be empty", field);
    size_t chars = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(s);
    while (left > 0) {
        int32_t cp;
        /* rejects overlong forms, surrogates and code points above U+10FFFF */
        utf8proc_ssize_t len = utf8proc_iterate(p, left, &cp);
        ENSURE(len > 0 && cp >= 0, QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
        const char *why = forbidden(cp);
        ENSURE(why == NULL, QTSP_ERR_INVALID, "%s: U+%04" PRIX32 " (%s) not allowed", field,
               (uint32_t)cp, why);
        /* a leading mark combines with whatever precedes the field when it
         * is displayed (the space in "given surname"), and a name of marks
         * alone shows nothing; both are refused here */
        ENSURE(chars > 0 || !is_mark(cp), QTSP_ERR_INVALID,
               "%s: U+%04" PRIX32 " (combining mark) not allowed first", field, (uint32_t)cp);
        p += len;
        left -= len;
        chars++;
    }
    ENSURE(chars <= max, QTSP_ERR_INVALID, "%s: at most %zu characters", field, max);
    ENSURE(s[0] != ' ' && s[strlen(s) - 1] != ' ', QTSP_ERR_INVALID,
           "%s: no leading or trailing spaces", field);
    return QTSP_OK;
}

qtsp_status qtsp_valid_name_nfc(const char *field, const char *s, size_t max, char *out, size_t cap)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "%s: must not be empty", field);
    /* the rules first: utf8proc_NFC would silently drop some of what they refuse */
    TRY(qtsp_valid_name(field, s, SIZE_MAX));
    char *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)s);
    ENSURE(nfc != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    TRY_OUT(qtsp_valid_name(field, nfc, max));
    size_t n = strlen(nfc);
    ENSURE_OUT(n < cap, QTSP_ERR_TOO_BIG, "%s: too long", field);
    memcpy(out, nfc, n + 1);
out:
    free(nfc);
    return rc;
}

qtsp_status qtsp_fold_name(const char *s, char *out, size_t cap)
{
    utf8proc_uint8_t *f = NULL;
    utf8proc_ssize_t n =
        utf8proc_map((const utf8proc_uint8_t *)s, 0, &f,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
    ENSURE(n >= 0, n == UTF8PROC_ERROR_NOMEM ? QTSP_ERR_NOMEM : QTSP_ERR_INVALID,
           "name: not valid UTF-8");
    qtsp_status rc = QTSP_OK;
    if ((size_t)n < cap)
        memcpy(out, f, (size_t)n + 1);
    else
        rc = qtsp_err_set(QTSP_ERR_TOO_BIG, __FILE__, __LINE__, "name: too long");
    free(f);
    return rc;
}

/* ISO 3166-1 alpha-2 officially assigned codes. */
static const char COUNTRIES[] =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW";

const char *qtsp_country_codes(void)
{
    return COUNTRIES;
}

qtsp_status qtsp_valid_country(const char *s)
{
    ENSURE(s && strlen(s) == 2 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]),
           QTSP_ERR_INVALID, "country: must be an ISO 3166-1 alpha-2 code in upper case");
    for (const char *p = COUNTRIES; *p; p += 3) {
        if (p[0] == s[0] && p[1] == s[1])
            return QTSP_OK;
        if (!p[2])
            break;
    }
    FAIL(QTSP_ERR_INVALID, "country: %s is not an assigned ISO 3166-1 alpha-2 code", s);
}

/* Pattern language: 'd' digit, 'A' upper-case letter, 'X' digit or letter,
 * anything else literal. */
static int match(const char *pat, const char *s)
{
    for (; *pat && *s; pat++, s++) {
        unsigned char c = (unsigned char)*s;
        if (*pat == 'd'   ? !isdigit(c)
            : *pat == 'A' ? !isupper(c)
            : *pat == 'X' ? !(isdigit(c) || isupper(c))
                          : c != (unsigned char)*pat)
            return 0;
    }
    return *pat == '\0' && *s == '\0';
}

static const struct {
    const char country[3];
    const char *pattern[2];
    const char *what;
} NATIONAL_IDS[] = {
    {"BG", {"dddddddddd", NULL}, "10 digits (EGN)"},
    {"EE", {"ddddddddddd", NULL}, "11 digits (isikukood)"},
    {"LT", {"ddddddddddd", NULL}, "11 digits (asmens kodas)"},
    {"LV", {"dddddd-ddddd", "ddddddddddd"}, "6 digits, '-', 5 digits (personas kods)"},
    {"RO", {"ddddddddddddd", NULL}, "13 digits (CNP)"},
    {"PL", {"ddddddddddd", NULL}, "11 digits (PESEL)"},
    {"BE", {"ddddddddddd", NULL}, "11 digits (national register number)"},
    {"IT", {"AAAAAAddAddAdddA", NULL}, "16 characters (codice fiscale)"},
    {"ES", {"ddddddddA", "AdddddddA"}, "DNI (8 digits + letter) or NIE"},
    {"FI", {"dddddd-dddX", "ddddddAdddX"}, "henkilötunnus (DDMMYY-NNNC)"},
    {"SE", {"dddddddddddd", "dddddddd-dddd"}, "12 digits (personnummer)"},
    {"DK", {"dddddddddd", "dddddd-dddd"}, "10 digits (CPR)"},
    {"NO", {"ddddddddddd", NULL}, "11 digits (fødselsnummer)"},
};

qtsp_status qtsp_valid_national_id(const char *country, const char *s)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "national_id: must not be empty");
    for (size_t i = 0; i < sizeof NATIONAL_IDS / sizeof NATIONAL_IDS[0]; i++) {
        if (strcmp(NATIONAL_IDS[i].country, country) != 0)
            continue;
        for (int j = 0; j < 2 && NATIONAL_IDS[i].pattern[j]; j++)
            if (match(NATIONAL_IDS[i].pattern[j], s))
                return QTSP_OK;
        FAIL(QTSP_ERR_INVALID, "national_id: for %s must be %s", country, NATIONAL_IDS[i].what);
    }
    size_t n = strlen(s);
    ENSURE(n >= 4 && n <= 20 && strspn(s, "0123456789") == n, QTSP_ERR_INVALID,
           "national_id: must be 4 to 20 digits");
    return QTSP_OK;
}

qtsp_status qtsp_valid_document_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    ENSURE(n >= 4 && n <= 30 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n &&
               s[0] != '-' && s[n - 1] != '-',
           QTSP_ERR_INVALID,
           "national_id: for this id_type 4 to 30 characters A-Z, 0-9 and '-' (upper case)");
    return QTSP_OK;
}

qtsp_status qtsp_valid_email(const char *s)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "email: must not be empty");
    size_t n = strlen(s);
    ENSURE(n <= 254, QTSP_ERR_INVALID, "email: at most 254 characters");
    const char *at = strchr(s, '@');
    ENSURE(at && at != s && strchr(at + 1, '@') == NULL, QTSP_ERR_INVALID,
           "email: must be local@domain");
    ENSURE(at - s <= 64, QTSP_ERR_INVALID, "email: local part at most 64 characters");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        ENSURE(c > 0x20 && c < 0x7f && !strchr("()<>[]\\,;:\"", c), QTSP_ERR_INVALID,
               "email: character '%c' not allowed", c > 0x20 && c < 0x7f ? c : '?');
    }
    const char *dom = at + 1;
    const char *dot = strrchr(dom, '.');
    ENSURE(dot && dot != dom && dot[1] != '\0' && dom[0] != '.' && !strstr(dom, ".."),
           QTSP_ERR_INVALID, "email: domain must be like example.org");
    return QTSP_OK;
}

qtsp_status qtsp_valid_phone(const char *s)
{
    ENSURE(s && s[0] == '+', QTSP_ERR_INVALID, "phone: must be E.164, e.g. +359888123456");
    size_t n = strlen(s + 1);
    ENSURE(n >= 7 && n <= 15 && strspn(s + 1, "0123456789") == n && s[1] != '0', QTSP_ERR_INVALID,
           "phone: must be E.164: '+' and 7 to 15 digits");
    return QTSP_OK;
}
