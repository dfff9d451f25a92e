/* A strict reader of multipart/form-data bodies (RFC 7578 over RFC 2046
 * 5.1), for the few public routes that take files (the validation service).
 * It never copies: parts point into the body. What it refuses, each with a
 * message naming the rule (QTSP_ERR_INVALID, 400):
 *   - a media type other than multipart/form-data, no boundary, a boundary
 *     longer than 70 characters or with characters outside RFC 2046's bchars;
 *   - a preamble (the body must start with the first delimiter), an
 *     epilogue other than one CRLF, a missing close delimiter (truncated);
 *   - a part header line longer than QTSP_MP_LINE_MAX, more than
 *     QTSP_MP_HEADERS_MAX header lines, a header other than
 *     Content-Disposition and Content-Type, a disposition other than
 *     form-data with a name, a name or filename too long or with control
 *     characters;
 *   - more than cap parts (QTSP_ERR_TOO_BIG).
 * Thread safety: pure functions. */
#ifndef QTSP_CORE_MULTIPART_H
#define QTSP_CORE_MULTIPART_H

#include <stddef.h>

#include "core/err.h"

#define QTSP_MP_LINE_MAX 1024
#define QTSP_MP_HEADERS_MAX 4
#define QTSP_MP_NAME_MAX 64
#define QTSP_MP_FILENAME_MAX 256
#define QTSP_MP_TYPE_MAX 128

typedef struct qtsp_mp_part {
    char name[QTSP_MP_NAME_MAX];         /* the form field's name, never empty */
    char filename[QTSP_MP_FILENAME_MAX]; /* "" when the part has none */
    char content_type[QTSP_MP_TYPE_MAX]; /* "" when the part has none */
    const unsigned char *data;           /* borrowed from the body */
    size_t len;
} qtsp_mp_part;

/* Splits body (len bytes) sent with the Content-Type header content_type
 * into parts[0..cap-1]; *n is how many, written only on success (parts[] may be partly overwritten
 * on failure); their data stays valid as long as body. Errors: QTSP_ERR_INVALID (see above; the
 * message names what), QTSP_ERR_TOO_BIG (more than cap parts). */
qtsp_status qtsp_multipart_parse(const char *content_type, const unsigned char *body, size_t len,
                                 qtsp_mp_part *parts, size_t cap, size_t *n) QTSP_MUST_USE;

/* The part named name among parts[0..n-1], NULL when none. */
const qtsp_mp_part *qtsp_multipart_get(const qtsp_mp_part *parts, size_t n, const char *name);

#endif
