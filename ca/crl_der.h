/* Minimal DER writer for the CRL publisher (X.690 8.1 definite lengths,
 * RFC 5280 5.1 and 5.3 structures). Hand-encoding lets the publisher stream
 * a million revoked entries straight out of the store into the signed
 * output without building OpenSSL objects for each one.
 *
 * All functions are pure and thread-safe. Writers take an output pointer
 * with room for the size that the matching *_size function returns. */
#ifndef QTSP_CA_CRL_DER_H
#define QTSP_CA_CRL_DER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"

#define QTSP_DER_SEQUENCE 0x30
#define QTSP_DER_INTEGER 0x02
#define QTSP_DER_OCTET_STRING 0x04
#define QTSP_DER_BIT_STRING 0x03
#define QTSP_DER_OID 0x06
#define QTSP_DER_ENUMERATED 0x0a
#define QTSP_DER_UTCTIME 0x17
#define QTSP_DER_GENTIME 0x18
#define QTSP_DER_BOOLEAN 0x01
#define QTSP_DER_CTX0 0xa0 /* [0] constructed */

/* Largest length this module encodes: 2^32 - 1 (header of at most 6 bytes). */
#define QTSP_DER_MAX_LEN 0xffffffffu
#define QTSP_DER_HDR_MAX 6

/* Bytes of the length field for a content of len bytes (X.690 8.1.3):
 * 1 for len < 128, else 1 + number of length bytes. */
size_t qtsp_der_len_size(size_t len);
/* Bytes of a whole TLV (one-byte tag) with len content bytes. */
size_t qtsp_der_tlv_size(size_t len);
/* Writes tag and length; returns the bytes written (tlv_size(len) - len). */
size_t qtsp_der_put_hdr(unsigned char *out, unsigned char tag, size_t len);
/* Reads one tag and definite length from in (for tests and sanity checks).
 * Rejects indefinite, non-minimal and over-long lengths and a content that
 * runs past inlen: QTSP_ERR_INVALID. */
qtsp_status qtsp_der_get_hdr(const unsigned char *in, size_t inlen, unsigned char *tag,
                             size_t *len, size_t *hdr_len) QTSP_MUST_USE;

/* A non-negative INTEGER from big-endian magnitude bytes (leading zero bytes
 * ignored; a 0x00 is prepended when the top bit is set). n may be 0 (value 0).
 * qtsp_der_uint_size gives the whole TLV size (at most 2 + 1 + 20 for 20-byte
 * serials). */
size_t qtsp_der_uint_size(const unsigned char *mag, size_t n);
size_t qtsp_der_put_uint(unsigned char *out, const unsigned char *mag, size_t n);
/* Same for a u64 (cRLNumber). */
size_t qtsp_der_u64_size(uint64_t v);
size_t qtsp_der_put_u64(unsigned char *out, uint64_t v);

/* RFC 5280 4.1.2.5 / 5.1.2.4: UTCTime for years 1950..2049, GeneralizedTime
 * otherwise (generalized = 1 forces GeneralizedTime, as invalidityDate and
 * ExpiredCertsOnCRL require). Seconds precision, "Z". TLV size is 15 or 17.
 * QTSP_ERR_INVALID for times before year 1 or after 9999. out >= 17 bytes. */
qtsp_status qtsp_der_put_time(unsigned char *out, time_t t, int generalized,
                              size_t *n) QTSP_MUST_USE;
size_t qtsp_der_time_size(time_t t, int generalized);

#endif
