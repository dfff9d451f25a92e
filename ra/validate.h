/* Field validation for enrolment (EN 319 411-1 6.2.2 identity data). Each
 * function returns QTSP_ERR_INVALID with a message naming the field. Pure
 * functions, thread-safe. */
#ifndef QTSP_RA_VALIDATE_H
#define QTSP_RA_VALIDATE_H

#include <stddef.h>

#include "core/err.h"

/* Non-empty valid UTF-8, at most max characters (code points), no control
 * characters. */
qtsp_status qtsp_valid_name(const char *field, const char *s, size_t max) QTSP_MUST_USE;
/* ISO 3166-1 alpha-2, officially assigned, upper case. */
qtsp_status qtsp_valid_country(const char *s) QTSP_MUST_USE;
/* Every assigned ISO 3166-1 alpha-2 code, as "AD AE AF ... ZW" (static). */
const char *qtsp_country_codes(void);
/* National identity number: the country's pattern where known, else 4..20 digits. */
qtsp_status qtsp_valid_national_id(const char *country, const char *s) QTSP_MUST_USE;
/* addr-spec local@domain with a dot in the domain, <= 254 octets. */
qtsp_status qtsp_valid_email(const char *s) QTSP_MUST_USE;
/* E.164: '+' then 7..15 digits, the first not 0. */
qtsp_status qtsp_valid_phone(const char *s) QTSP_MUST_USE;

#endif
