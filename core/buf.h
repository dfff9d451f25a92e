/* A growable byte buffer that requires a maximum size (after curl's dynbuf).
 * Caller-owned struct: qtsp_buf_init / qtsp_buf_cleanup. The buffer owns its
 * bytes; the data is always NUL-terminated (not counted in len) so text can
 * be used as a C string. Not thread-safe. */
#ifndef QTSP_CORE_BUF_H
#define QTSP_CORE_BUF_H

#include <stddef.h>

#include "core/err.h"

typedef struct qtsp_buf {
    unsigned char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len */
} qtsp_buf;

/* Initialises an empty buffer that refuses to grow beyond max bytes. */
void qtsp_buf_init(qtsp_buf *b, size_t max);

/* Frees the bytes (wiped first: buffers may carry secrets) and resets len. */
void qtsp_buf_cleanup(qtsp_buf *b);

/* Empties the buffer but keeps its memory. */
void qtsp_buf_reset(qtsp_buf *b);

/* Makes room for n more bytes (and the NUL) without changing len, so a
 * writer can fill b->data[len..len+n) and then advance len itself.
 * QTSP_ERR_TOO_BIG past max, QTSP_ERR_NOMEM; b unchanged on error. */
qtsp_status qtsp_buf_reserve(qtsp_buf *b, size_t n) QTSP_MUST_USE;

/* Appends n bytes. QTSP_ERR_TOO_BIG past max (buffer unchanged),
 * QTSP_ERR_NOMEM. */
qtsp_status qtsp_buf_append(qtsp_buf *b, const void *p, size_t n) QTSP_MUST_USE;

/* Appends a NUL-terminated string. */
qtsp_status qtsp_buf_puts(qtsp_buf *b, const char *s) QTSP_MUST_USE;

/* Appends formatted text. */
qtsp_status qtsp_buf_printf(qtsp_buf *b, const char *fmt, ...) QTSP_PRINTF(2, 3) QTSP_MUST_USE;

/* Hands the bytes to the caller (free() them) and leaves b empty. *len_out
 * may be NULL. Returns NULL when the buffer is empty. */
unsigned char *qtsp_buf_take(qtsp_buf *b, size_t *len_out);

/* The text as a C string ("" when empty). Borrowed. */
const char *qtsp_buf_str(const qtsp_buf *b);

#endif
