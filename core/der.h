/* The one DER module (X.690 distinguished encoding): primitives that encode
 * into a caller pointer, one writer built on them, one strict reader.
 *
 * Primitives (qtsp_der_put_*, qtsp_der_*_size) write at a pointer that has
 * room for the size the matching *_size function gives. They serve the
 * size-first path: a structure whose sizes are computed before it is written
 * (the CRL publisher streams a million entries this way) writes every
 * header once, with no moves.
 *
 * The writer (qtsp_der_w) appends to a fixed caller buffer, or to a qtsp_buf
 * that grows up to its maximum. Constructed types are either written with a
 * known length (qtsp_der_hdr) or opened and closed: qtsp_der_open writes the
 * tag and a one-byte length; qtsp_der_close patches it, moving the content
 * only when it is 128 bytes or more. Writer calls do not return a status: the
 * first failure (out of room, no memory, a value DER cannot carry) is
 * recorded (core/err.h) and kept, later calls do nothing, and
 * qtsp_der_w_finish reports it. So a builder is a straight list of calls
 * with one check at the end.
 *
 * The reader (qtsp_der_r) is a cursor over bytes from the network or disk.
 * It accepts one-byte tags and definite, minimal lengths only, rejects a
 * content that runs past its parent, and qtsp_der_done rejects trailing
 * bytes. Every failure is QTSP_ERR_INVALID, recorded with what was wrong.
 *
 * Tags are one byte: universal (QTSP_DER_*) or context-specific
 * (QTSP_DER_CTX / QTSP_DER_CTX_C). Nothing here allocates except a writer
 * over a qtsp_buf growing it. All functions are thread-safe on distinct
 * writers / readers. */
#ifndef QTSP_CORE_DER_H
#define QTSP_CORE_DER_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define QTSP_DER_BOOLEAN 0x01
#define QTSP_DER_INTEGER 0x02
#define QTSP_DER_BIT_STRING 0x03
#define QTSP_DER_OCTET_STRING 0x04
#define QTSP_DER_NULL 0x05
#define QTSP_DER_OID 0x06
#define QTSP_DER_ENUMERATED 0x0a
#define QTSP_DER_UTF8STRING 0x0c
#define QTSP_DER_UTCTIME 0x17
#define QTSP_DER_GENTIME 0x18
#define QTSP_DER_SEQUENCE 0x30
#define QTSP_DER_SET 0x31
/* [n] primitive / constructed (X.690 8.1.2.2), n < 31 */
#define QTSP_DER_CTX(n) ((unsigned char)(0x80 | (n)))
#define QTSP_DER_CTX_C(n) ((unsigned char)(0xa0 | (n)))

/* Largest header: tag + 0x88 + eight length bytes. */
#define QTSP_DER_HDR_MAX 10
/* Largest whole UTCTime / GeneralizedTime TLV the writer produces. */
#define QTSP_DER_TIME_MAX (2 + 19)

/* ---- primitives ---------------------------------------------------------- */

/* Bytes of the length octets for len content bytes (X.690 8.1.3.3/8.1.3.5):
 * 1 below 128, else 1 + the bytes of len. */
size_t qtsp_der_len_size(size_t len);

/* Bytes of a whole TLV (one-byte tag) with len content bytes. The caller
 * keeps len well below SIZE_MAX (every object we build is bounded). */
size_t qtsp_der_tlv_size(size_t len);

/* Writes tag and minimal definite length at out; returns the bytes written
 * (qtsp_der_tlv_size(len) - len). */
size_t qtsp_der_put_hdr(unsigned char *out, unsigned char tag, size_t len);

/* A non-negative INTEGER (tag QTSP_DER_INTEGER, or an implicit tag) from the
 * big-endian magnitude mag[0..n): leading zero bytes are dropped, a 0x00 is
 * prepended when the top bit is set (X.690 8.3.2); n = 0 is the value 0.
 * *_size gives the whole TLV. */
size_t qtsp_der_uint_size(const unsigned char *mag, size_t n);
size_t qtsp_der_put_uint(unsigned char *out, unsigned char tag, const unsigned char *mag, size_t n);

/* The same for a uint64_t (cRLNumber, ENUMERATED values, accuracy). */
size_t qtsp_der_u64_size(uint64_t v);
size_t qtsp_der_put_u64(unsigned char *out, unsigned char tag, uint64_t v);

/* A certificate or CRL time (RFC 5280 4.1.2.5, 5.1.2.4): UTCTime for years
 * 1950..2049, GeneralizedTime otherwise or when generalized is set (as
 * invalidityDate and ExpiredCertsOnCRL require); whole seconds, "Z".
 * *_size is 15 or 17, 0 when t is outside QTSP_TIME_MIN..QTSP_TIME_MAX.
 * put: QTSP_ERR_INVALID outside that range; out has room for 17 bytes. */
size_t qtsp_der_time_size(int64_t t, int generalized);
qtsp_status qtsp_der_put_time(unsigned char *out, int64_t t, int generalized,
                              size_t *n) QTSP_MUST_USE;

/* ---- writer -------------------------------------------------------------- */

typedef struct qtsp_der_w {
    unsigned char *p; /* output; p[0..len) written */
    size_t len;
    size_t cap;
    qtsp_buf *buf;   /* NULL: fixed caller buffer */
    qtsp_status err; /* first failure, sticky */
} qtsp_der_w;

/* A writer filling buf[0..cap) from the start. The caller owns buf. */
void qtsp_der_w_init(qtsp_der_w *w, unsigned char *buf, size_t cap);

/* A writer appending to b (after its current len), growing it up to its
 * maximum (QTSP_ERR_TOO_BIG past it). b->len is brought up to date by
 * qtsp_der_w_finish; until then only the writer may touch b. */
void qtsp_der_w_init_buf(qtsp_der_w *w, qtsp_buf *b);

/* The first failure of any writer call, or QTSP_OK (the failure was
 * recorded when it happened). On success, *len (may be NULL) is the number
 * of bytes written (in buffer mode: b->len, NUL-terminated). Every opened
 * constructed type must have been closed. */
qtsp_status qtsp_der_w_finish(qtsp_der_w *w, size_t *len) QTSP_MUST_USE;

/* Fails the writer with code and what (recorded if it is the first
 * failure), for a builder whose own input turned out bad. */
void qtsp_der_w_fail(qtsp_der_w *w, qtsp_status code, const char *what);

/* Room for n more bytes, counted as written: the caller fills them with
 * qtsp_der_put_* primitives. NULL after a failure. The pointer is valid until
 * the next writer call (a growing buffer may move). */
unsigned char *qtsp_der_w_take(qtsp_der_w *w, size_t n);

/* Raw bytes (an already encoded TLV, or content). */
void qtsp_der_raw(qtsp_der_w *w, const void *p, size_t n);

/* Tag and length of a content of known length, written next. */
void qtsp_der_hdr(qtsp_der_w *w, unsigned char tag, size_t len);

/* Opens a constructed (or primitive) type whose length is not known yet;
 * returns the mark to give to qtsp_der_close once the content is written.
 * Opens nest. */
size_t qtsp_der_open(qtsp_der_w *w, unsigned char tag);
void qtsp_der_close(qtsp_der_w *w, size_t mark);

/* A whole TLV with content p[0..n). */
void qtsp_der_tlv(qtsp_der_w *w, unsigned char tag, const void *p, size_t n);

/* INTEGER from a big-endian magnitude, or from a uint64_t with the given tag
 * (QTSP_DER_INTEGER, QTSP_DER_ENUMERATED, an implicit [n]). */
void qtsp_der_uint(qtsp_der_w *w, const unsigned char *mag, size_t n);
void qtsp_der_u64(qtsp_der_w *w, unsigned char tag, uint64_t v);

/* OBJECT IDENTIFIER from its content octets. */
void qtsp_der_oid(qtsp_der_w *w, const unsigned char *content, size_t n);

/* BIT STRING of whole bytes (no unused bits: signatures, keys). */
void qtsp_der_bits(qtsp_der_w *w, const void *p, size_t n);

/* BOOLEAN (TRUE is 0xff, X.690 11.1) and NULL. */
void qtsp_der_bool(qtsp_der_w *w, int v);
void qtsp_der_null(qtsp_der_w *w);

/* GeneralizedTime of ms milliseconds since the epoch, with the fraction of a
 * second when there is one (RFC 3161 genTime; OCSP passes whole seconds).
 * A failure when ms is outside QTSP_TIME_MIN..QTSP_TIME_MAX seconds. */
void qtsp_der_gentime(qtsp_der_w *w, int64_t ms);

/* RFC 5280 time of t seconds, as qtsp_der_put_time. */
void qtsp_der_time(qtsp_der_w *w, int64_t t, int generalized);

/* ---- reader -------------------------------------------------------------- */

/* A cursor over p[0..n) (borrowed; the bytes must outlive it). Initialise it
 * as `qtsp_der_r r = {bytes, len};`. */
typedef struct qtsp_der_r {
    const unsigned char *p;
    size_t n;
} qtsp_der_r;

/* Reads the tag and length at in[0..inlen): *tag, *len (content bytes) and
 * *hdr_len (header bytes). Rejects high tag numbers, indefinite, non-minimal
 * and over-long lengths and a content running past inlen. */
qtsp_status qtsp_der_get_hdr(const unsigned char *in, size_t inlen, unsigned char *tag, size_t *len,
                             size_t *hdr_len) QTSP_MUST_USE;

/* Reads the next TLV and advances r past it: *tag, *content (a cursor over
 * the content) and *tlv (the whole element); tag and tlv may be NULL.
 * Outputs are written only on success; r is unchanged on failure. */
qtsp_status qtsp_der_next(qtsp_der_r *r, unsigned char *tag, qtsp_der_r *content,
                          qtsp_der_r *tlv) QTSP_MUST_USE;

/* qtsp_der_next that also requires the tag. */
qtsp_status qtsp_der_get(qtsp_der_r *r, unsigned char tag, qtsp_der_r *content,
                         qtsp_der_r *tlv) QTSP_MUST_USE;

/* The tag of the next element, or -1 when r is empty (nothing is checked:
 * for optional fields, read them with qtsp_der_get). */
int qtsp_der_peek(const qtsp_der_r *r);

/* X.690 10.1 throughout: in[0..n) is one TLV, and so is every element
 * inside each constructed one, down to depth levels: definite, minimal
 * lengths only (no BER indefinite length anywhere), nothing trailing.
 * Contents of primitive elements are not looked into. QTSP_ERR_INVALID. */
qtsp_status qtsp_der_check_tree(const unsigned char *in, size_t n, int depth) QTSP_MUST_USE;

/* QTSP_OK when r is consumed; QTSP_ERR_INVALID when bytes trail. */
qtsp_status qtsp_der_done(const qtsp_der_r *r) QTSP_MUST_USE;

/* X.690 8.3.2: an INTEGER content is non-empty and minimal. */
qtsp_status qtsp_der_check_int(const qtsp_der_r *v) QTSP_MUST_USE;

/* X.690 8.19: an OBJECT IDENTIFIER content is 1..max bytes of minimal
 * base-128 subidentifiers, the last one complete. */
qtsp_status qtsp_der_check_oid(const qtsp_der_r *v, size_t max) QTSP_MUST_USE;

/* A non-negative INTEGER content that fits a uint64_t. */
qtsp_status qtsp_der_read_u64(const qtsp_der_r *v, uint64_t *out) QTSP_MUST_USE;

/* A BOOLEAN content: one byte, 0x00 or 0xff (X.690 11.1). */
qtsp_status qtsp_der_read_bool(const qtsp_der_r *v, int *out) QTSP_MUST_USE;

/* An RFC 5280 time (tag QTSP_DER_UTCTIME or QTSP_DER_GENTIME, whole seconds,
 * "Z") as seconds since the epoch. */
qtsp_status qtsp_der_read_time(unsigned char tag, const qtsp_der_r *v, int64_t *t) QTSP_MUST_USE;

#endif
