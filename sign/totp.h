/* Time-based one-time passwords (RFC 6238 over HOTP, RFC 4226): the second
 * factor of every remote signature (docs/csc.md "The OTP"). HMAC-SHA-1,
 * 30-second steps counted from the Unix epoch, 6 digits for signers (8 for
 * the RFC's test vectors). Pure functions over OpenSSL, thread-safe. */
#ifndef QTSP_SIGN_TOTP_H
#define QTSP_SIGN_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QTSP_TOTP_STEP 30  /* seconds (RFC 6238 4.1 X) */
#define QTSP_TOTP_DIGITS 6 /* what signers' authenticator apps show */
#define QTSP_TOTP_SECRET_MAX 64

/* The step of time t (seconds since the epoch, >= 0): floor(t / 30). */
uint64_t qtsp_totp_step(int64_t t);

/* The HOTP value of counter under secret (RFC 4226 5.3: HMAC-SHA-1, dynamic
 * truncation, modulo 10^digits), written as digits decimal digits with
 * leading zeros into out (digits + 1 bytes). digits 6..8. QTSP_ERR_INVALID
 * (digits, empty or over-long secret), QTSP_ERR_CRYPTO. */
qtsp_status qtsp_totp_code(const unsigned char *secret, size_t len, uint64_t counter,
                           unsigned digits, char *out) QTSP_MUST_USE;

/* Checks code (as the signer typed it: QTSP_TOTP_DIGITS digits) against the
 * steps step-window .. step+window of time now, comparing in constant time
 * and every candidate step, so the time taken tells nothing. Only steps
 * after last_used count (RFC 6238 5.2: a code is accepted once; 0 = none
 * used yet). On a match *matched is its step. QTSP_ERR_AUTH "wrong code"
 * or "code already used" (a match at or before last_used), QTSP_ERR_INVALID
 * (not 6 digits), QTSP_ERR_CRYPTO. */
qtsp_status qtsp_totp_verify(const unsigned char *secret, size_t len, const char *code, int64_t now,
                             unsigned window, uint64_t last_used, uint64_t *matched) QTSP_MUST_USE;

#endif
