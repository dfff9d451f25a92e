/* Text encodings used across qtsp: hex digits, base64 (RFC 4648 4 and 5),
 * base32 (RFC 4648 6), big-endian u64. Pure functions, thread-safe. */
#ifndef QTSP_CORE_CODEC_H
#define QTSP_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Value of a hex digit (either case), -1 otherwise. */
int qtsp_hex_value(int c);

/* in[0..len) as lower-case hex: 2 * len digits and a NUL at out (which
 * holds 2 * len + 1). */
void qtsp_hex_encode(const unsigned char *in, size_t len, char *out);

#define QTSP_B64_STD 1u     /* accept '+' '/' (RFC 4648 4) */
#define QTSP_B64_URL 2u     /* accept '-' '_' (RFC 4648 5) */
#define QTSP_B64_PADDING 4u /* accept trailing '=' padding */

/* Decodes base64 text in[0..len) into out[cap]. Canonical only: a lone
 * trailing character, non-zero leftover bits, data after padding or wrong
 * padding are QTSP_ERR_INVALID; more than cap bytes is QTSP_ERR_TOO_BIG.
 * flags: which alphabets and whether padding is allowed. */
qtsp_status qtsp_base64_decode(const char *in, size_t len, unsigned flags, unsigned char *out,
                               size_t cap, size_t *out_len) QTSP_MUST_USE;

/* base64url without padding; out must hold 4*ceil(len/3)+1 bytes (truncated
 * otherwise, always NUL-terminated when cap > 0). */
void qtsp_base64url_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* base64 (RFC 4648 4, '+' '/', '=' padding), as CSC API v2 and PEM carry
 * bytes; out must hold 4*ceil(len/3)+1 bytes (QTSP_ERR_TOO_BIG otherwise,
 * nothing written). NUL-terminated. */
qtsp_status qtsp_base64_encode(const unsigned char *in, size_t len, char *out,
                               size_t cap) QTSP_MUST_USE;

/* base32 (upper case, no padding), as otpauth URIs want; out must hold
 * 8*ceil(len/5)+1 bytes. */
void qtsp_base32_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* Appends s JSON-escaped (no quotes) into out[n..cap) and returns the new
 * length; stops early (whole characters) when out is full. Never writes
 * the terminating NUL. */
size_t qtsp_json_escape(char *out, size_t cap, size_t n, const char *s);

/* Big-endian u64 (store keys and values, ocsp_cache headers). */
void qtsp_be64_put(unsigned char out[8], uint64_t v);
uint64_t qtsp_be64_get(const unsigned char in[8]);

#endif
