#include "core/buf.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qtsp_buf_init(qtsp_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void qtsp_buf_cleanup(qtsp_buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void qtsp_buf_reset(qtsp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

qtsp_status qtsp_buf_reserve(qtsp_buf *b, size_t n)
{
    ENSURE(n <= b->max && b->len <= b->max - n, QTSP_ERR_TOO_BIG,
           "buffer limit of %zu bytes reached", b->max);
    size_t need = b->len + n + 1; /* + NUL; cannot overflow: max < SIZE_MAX */
    if (need <= b->cap)
        return QTSP_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    unsigned char *p = realloc(b->data, cap);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory growing buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return QTSP_OK;
}

qtsp_status qtsp_buf_append(qtsp_buf *b, const void *p, size_t n)
{
    TRY(qtsp_buf_reserve(b, n));
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return QTSP_OK;
}

qtsp_status qtsp_buf_puts(qtsp_buf *b, const char *s)
{
    return qtsp_buf_append(b, s, strlen(s));
}

qtsp_status qtsp_buf_printf(qtsp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ENSURE(n >= 0, QTSP_ERR_INVALID, "bad format string");
    TRY(qtsp_buf_reserve(b, (size_t)n));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return QTSP_OK;
}

unsigned char *qtsp_buf_take(qtsp_buf *b, size_t *len_out)
{
    unsigned char *p = b->data;
    if (len_out)
        *len_out = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

const char *qtsp_buf_str(const qtsp_buf *b)
{
    return b->data ? (const char *)b->data : "";
}
