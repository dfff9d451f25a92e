/* Enrolment field validation. */
#include "ra/validate.h"

#include <ctype.h>
#include <string.h>

qtsp_status qtsp_valid_name(const char *field, const char *s, size_t max)
{
    ENSURE(s && *s, QTSP_ERR_INVALID, "%s: must not be empty", field);
    size_t chars = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            len = 1;
            cp = c;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            FAIL(QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
        }
        for (size_t i = 1; i < len; i++) {
            ENSURE((p[i] & 0xc0) == 0x80, QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        ENSURE(cp >= min_cp[len] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff),
               QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
        ENSURE(cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0), QTSP_ERR_INVALID,
               "%s: control characters are not allowed", field);
        p += len;
        chars++;
    }
    ENSURE(chars <= max, QTSP_ERR_INVALID, "%s: at most %zu characters", field, max);
    ENSURE(s[0] != ' ' && s[strlen(s) - 1] != ' ', QTSP_ERR_INVALID,
           "%s: no leading or trailing spaces", field);
    return QTSP_OK;
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

const char *qtsp_country_codes(void) { return COUNTRIES; }

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
        if (*pat == 'd' ? !isdigit(c) : *pat == 'A' ? !isupper(c)
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
