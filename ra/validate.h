/* Field validation for enrolment (EN 319 411-1 6.2.2 identity data). Each
 * function returns QTSP_ERR_INVALID with a message naming the field. Pure
 * functions, thread-safe. */
#ifndef QTSP_RA_VALIDATE_H
#define QTSP_RA_VALIDATE_H

#include <stddef.h>

#include "core/err.h"

/* A person's name or a short label: non-empty valid UTF-8, at most max
 * characters (code points), no leading or trailing space, and none of:
 * control (Cc), format (Cf: bidi overrides, zero-width, BOM), private-use
 * (Co), unassigned (Cn, Unicode 15 of libutf8proc) characters,
 * noncharacters, line/paragraph separators, spaces other than U+0020, a
 * combining mark first, or only combining marks. The message names the
 * field, the code point and the rule, e.g.
 * "given_name: U+202E (format character) not allowed". */
qtsp_status qtsp_valid_name(const char *field, const char *s, size_t max) QTSP_MUST_USE;
/* qtsp_valid_name on the NFC form of s (Unicode normalisation form C), which
 * is written to out (cap bytes, NUL included; QTSP_ERR_TOO_BIG if it does not
 * fit: 4 * max + 1 always does). out is written only on success; s and out
 * may not overlap. QTSP_ERR_NOMEM. */
qtsp_status qtsp_valid_name_nfc(const char *field, const char *s, size_t max, char *out,
                                size_t cap) QTSP_MUST_USE;
/* The search form of a name (ra/find.c): NFC with Unicode case folding,
 * into out (cap bytes, NUL included). QTSP_ERR_INVALID (not UTF-8),
 * QTSP_ERR_TOO_BIG, QTSP_ERR_NOMEM. */
qtsp_status qtsp_fold_name(const char *s, char *out, size_t cap) QTSP_MUST_USE;
/* ISO 3166-1 alpha-2, officially assigned, upper case. */
qtsp_status qtsp_valid_country(const char *s) QTSP_MUST_USE;
/* Every assigned ISO 3166-1 alpha-2 code, as "AD AE AF ... ZW" (static). */
const char *qtsp_country_codes(void);
/* National identity number: the country's pattern where known, else 4..20 digits. */
qtsp_status qtsp_valid_national_id(const char *country, const char *s) QTSP_MUST_USE;
/* An identity document or tax number (id_type IDC, PAS, TIN): 4..30 of
 * A-Z, 0-9 and '-', not starting or ending with '-'. */
qtsp_status qtsp_valid_document_id(const char *s) QTSP_MUST_USE;
/* addr-spec local@domain with a dot in the domain, <= 254 octets. */
qtsp_status qtsp_valid_email(const char *s) QTSP_MUST_USE;
/* E.164: '+' then 7..15 digits, the first not 0. */
qtsp_status qtsp_valid_phone(const char *s) QTSP_MUST_USE;

#endif
