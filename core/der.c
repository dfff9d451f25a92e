/* DER primitives, writer and reader; see core/der.h. */
#include "core/der.h"

#include <string.h>

#include "core/time.h"

/* ---- primitives ---------------------------------------------------------- */

size_t qtsp_der_len_size(size_t len)
{
    if (len < 0x80)
        return 1;
    size_t n = 1;
    for (size_t v = len; v; v >>= 8)
        n++;
    return n;
}

size_t qtsp_der_tlv_size(size_t len)
{
    return 1 + qtsp_der_len_size(len) + len;
}

size_t qtsp_der_put_hdr(unsigned char *out, unsigned char tag, size_t len)
{
    out[0] = tag;
    if (len < 0x80) {
        out[1] = (unsigned char)len;
        return 2;
    }
    size_t n = qtsp_der_len_size(len) - 1;
    out[1] = (unsigned char)(0x80 | n);
    for (size_t i = 0; i < n; i++)
        out[2 + i] = (unsigned char)(len >> (8 * (n - 1 - i)));
    return 2 + n;
}

/* Drops leading zero bytes of the magnitude; returns the content length
 * (one 0x00 for the value 0, a 0x00 in front of a set top bit). */
static size_t uint_content(const unsigned char **mag, size_t *n)
{
    while (*n > 0 && (*mag)[0] == 0) {
        (*mag)++;
        (*n)--;
    }
    if (*n == 0)
        return 1;
    return *n + (((*mag)[0] & 0x80) ? 1 : 0);
}

size_t qtsp_der_uint_size(const unsigned char *mag, size_t n)
{
    return qtsp_der_tlv_size(uint_content(&mag, &n));
}

size_t qtsp_der_put_uint(unsigned char *out, unsigned char tag, const unsigned char *mag, size_t n)
{
    size_t c = uint_content(&mag, &n);
    size_t pos = qtsp_der_put_hdr(out, tag, c);
    if (c > n)
        out[pos++] = 0;
    if (n)
        memcpy(out + pos, mag, n);
    return pos + n;
}

static void u64_bytes(uint64_t v, unsigned char b[8])
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * (7 - i)));
}

size_t qtsp_der_u64_size(uint64_t v)
{
    unsigned char b[8];
    u64_bytes(v, b);
    return qtsp_der_uint_size(b, sizeof b);
}

size_t qtsp_der_put_u64(unsigned char *out, unsigned char tag, uint64_t v)
{
    unsigned char b[8];
    u64_bytes(v, b);
    return qtsp_der_put_uint(out, tag, b, sizeof b);
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, from 1950. */
static int utc_years(int64_t t)
{
    return t >= INT64_C(-631152000) && t <= INT64_C(2524607999);
}

size_t qtsp_der_time_size(int64_t t, int generalized)
{
    if (t < QTSP_TIME_MIN || t > QTSP_TIME_MAX)
        return 0;
    return generalized || !utc_years(t) ? 17 : 15;
}

qtsp_status qtsp_der_put_time(unsigned char *out, int64_t t, int generalized, size_t *n)
{
    ENSURE(t >= QTSP_TIME_MIN && t <= QTSP_TIME_MAX, QTSP_ERR_INVALID, "time %lld out of range",
           (long long)t);
    size_t l;
    if (generalized || !utc_years(t)) {
        out[0] = QTSP_DER_GENTIME;
        l = qtsp_time_gen(t * 1000, (char *)out + 2);
    } else {
        out[0] = QTSP_DER_UTCTIME;
        l = qtsp_time_utc(t, (char *)out + 2);
    }
    out[1] = (unsigned char)l;
    *n = 2 + l;
    return QTSP_OK;
}

/* ---- writer -------------------------------------------------------------- */

void qtsp_der_w_init(qtsp_der_w *w, unsigned char *buf, size_t cap)
{
    w->p = buf;
    w->len = 0;
    w->cap = cap;
    w->buf = NULL;
    w->err = QTSP_OK;
}

void qtsp_der_w_init_buf(qtsp_der_w *w, qtsp_buf *b)
{
    w->p = b->data;
    w->len = b->len;
    w->cap = b->cap ? b->cap - 1 : 0; /* keep room for the buffer's NUL */
    w->buf = b;
    w->err = QTSP_OK;
}

static int fail(qtsp_der_w *w, qtsp_status code, const char *what)
{
    if (w->err == QTSP_OK)
        w->err = qtsp_err_set(code, __FILE__, __LINE__, "DER: %s", what);
    return 0;
}

void qtsp_der_w_fail(qtsp_der_w *w, qtsp_status code, const char *what)
{
    fail(w, code, what);
}

/* Ensures room for n more bytes; 0 (and the writer failed) when there is
 * none. */
static int room(qtsp_der_w *w, size_t n)
{
    if (w->err != QTSP_OK)
        return 0;
    if (n <= w->cap - w->len)
        return 1;
    if (!w->buf)
        return fail(w, QTSP_ERR_TOO_BIG, "output does not fit");
    /* grow: a bigger step than n, so a run of small writes grows rarely */
    qtsp_buf *b = w->buf;
    b->len = w->len;
    size_t want = n < 256 ? 256 : n;
    if (want > b->max - b->len)
        want = n; /* near the maximum: exactly what is needed */
    qtsp_status rc = qtsp_buf_reserve(b, want);
    if (rc != QTSP_OK) {
        w->err = rc; /* recorded by qtsp_buf_reserve */
        return 0;
    }
    w->p = b->data;
    w->cap = b->cap - 1;
    return 1;
}

qtsp_status qtsp_der_w_finish(qtsp_der_w *w, size_t *len)
{
    if (w->err != QTSP_OK)
        return w->err;
    if (w->buf) {
        w->buf->len = w->len;
        if (w->buf->data)
            w->buf->data[w->len] = '\0';
    }
    if (len)
        *len = w->len;
    return QTSP_OK;
}

unsigned char *qtsp_der_w_take(qtsp_der_w *w, size_t n)
{
    if (!room(w, n))
        return NULL;
    unsigned char *at = w->p + w->len;
    w->len += n;
    return at;
}

void qtsp_der_raw(qtsp_der_w *w, const void *p, size_t n)
{
    if (n && room(w, n)) {
        memcpy(w->p + w->len, p, n);
        w->len += n;
    }
}

void qtsp_der_hdr(qtsp_der_w *w, unsigned char tag, size_t len)
{
    if (room(w, QTSP_DER_HDR_MAX))
        w->len += qtsp_der_put_hdr(w->p + w->len, tag, len);
}

size_t qtsp_der_open(qtsp_der_w *w, unsigned char tag)
{
    if (room(w, 2)) {
        w->p[w->len] = tag;
        w->p[w->len + 1] = 0; /* patched by close */
        w->len += 2;
    }
    return w->len;
}

void qtsp_der_close(qtsp_der_w *w, size_t mark)
{
    if (w->err != QTSP_OK)
        return;
    if (mark < 2 || mark > w->len) {
        fail(w, QTSP_ERR_INTERNAL, "close without open");
        return;
    }
    size_t n = w->len - mark;
    if (n < 0x80) {
        w->p[mark - 1] = (unsigned char)n;
        return;
    }
    /* long form: 0x80|k then k length bytes; the content moves right by k */
    size_t k = qtsp_der_len_size(n) - 1;
    if (!room(w, k))
        return;
    memmove(w->p + mark + k, w->p + mark, n);
    w->p[mark - 1] = (unsigned char)(0x80 | k);
    for (size_t i = 0; i < k; i++)
        w->p[mark + i] = (unsigned char)(n >> (8 * (k - 1 - i)));
    w->len += k;
}

void qtsp_der_tlv(qtsp_der_w *w, unsigned char tag, const void *p, size_t n)
{
    if (n > SIZE_MAX - QTSP_DER_HDR_MAX) {
        fail(w, QTSP_ERR_TOO_BIG, "content too long");
        return;
    }
    if (room(w, QTSP_DER_HDR_MAX + n)) {
        w->len += qtsp_der_put_hdr(w->p + w->len, tag, n);
        if (n)
            memcpy(w->p + w->len, p, n);
        w->len += n;
    }
}

void qtsp_der_uint(qtsp_der_w *w, const unsigned char *mag, size_t n)
{
    if (n > SIZE_MAX / 2) {
        fail(w, QTSP_ERR_TOO_BIG, "integer too long");
        return;
    }
    if (room(w, QTSP_DER_HDR_MAX + 1 + n))
        w->len += qtsp_der_put_uint(w->p + w->len, QTSP_DER_INTEGER, mag, n);
}

void qtsp_der_u64(qtsp_der_w *w, unsigned char tag, uint64_t v)
{
    if (room(w, 2 + 9))
        w->len += qtsp_der_put_u64(w->p + w->len, tag, v);
}

void qtsp_der_oid(qtsp_der_w *w, const unsigned char *content, size_t n)
{
    qtsp_der_tlv(w, QTSP_DER_OID, content, n);
}

void qtsp_der_bits(qtsp_der_w *w, const void *p, size_t n)
{
    if (n > SIZE_MAX - QTSP_DER_HDR_MAX - 1) {
        fail(w, QTSP_ERR_TOO_BIG, "content too long");
        return;
    }
    if (room(w, QTSP_DER_HDR_MAX + 1 + n)) {
        w->len += qtsp_der_put_hdr(w->p + w->len, QTSP_DER_BIT_STRING, n + 1);
        w->p[w->len++] = 0; /* no unused bits */
        if (n)
            memcpy(w->p + w->len, p, n);
        w->len += n;
    }
}

void qtsp_der_bool(qtsp_der_w *w, int v)
{
    unsigned char b[3] = {QTSP_DER_BOOLEAN, 1, v ? 0xff : 0x00};
    qtsp_der_raw(w, b, sizeof b);
}

void qtsp_der_null(qtsp_der_w *w)
{
    qtsp_der_raw(w, "\x05\x00", 2);
}

void qtsp_der_gentime(qtsp_der_w *w, int64_t ms)
{
    char s[QTSP_TIME_GEN_MAX];
    size_t n = qtsp_time_gen(ms, s);
    if (n == 0) {
        fail(w, QTSP_ERR_INVALID, "GeneralizedTime out of range");
        return;
    }
    qtsp_der_tlv(w, QTSP_DER_GENTIME, s, n);
}

void qtsp_der_time(qtsp_der_w *w, int64_t t, int generalized)
{
    if (t < QTSP_TIME_MIN || t > QTSP_TIME_MAX) {
        fail(w, QTSP_ERR_INVALID, "time out of range");
        return;
    }
    if (room(w, QTSP_DER_TIME_MAX)) {
        size_t n = 0;
        if (qtsp_der_put_time(w->p + w->len, t, generalized, &n) == QTSP_OK)
            w->len += n;
    }
}

/* ---- reader -------------------------------------------------------------- */

qtsp_status qtsp_der_get_hdr(const unsigned char *in, size_t inlen, unsigned char *tag, size_t *len,
                             size_t *hdr_len)
{
    ENSURE(inlen >= 2, QTSP_ERR_INVALID, "DER: header truncated");
    ENSURE((in[0] & 0x1f) != 0x1f, QTSP_ERR_INVALID, "DER: high tag number");
    size_t pos = 2, l;
    if (in[1] < 0x80) {
        l = in[1];
    } else {
        size_t n = in[1] & 0x7f;
        ENSURE(n != 0, QTSP_ERR_INVALID, "DER: indefinite length");
        ENSURE(n <= sizeof(size_t), QTSP_ERR_INVALID, "DER: length too long");
        ENSURE(inlen - 2 >= n, QTSP_ERR_INVALID, "DER: length truncated");
        ENSURE(in[2] != 0, QTSP_ERR_INVALID, "DER: length not minimal");
        l = 0;
        for (size_t i = 0; i < n; i++)
            l = (l << 8) | in[2 + i];
        ENSURE(l >= 0x80, QTSP_ERR_INVALID, "DER: length not minimal");
        pos += n;
    }
    ENSURE(l <= inlen - pos, QTSP_ERR_INVALID, "DER: content runs past its end");
    *tag = in[0];
    *len = l;
    *hdr_len = pos;
    return QTSP_OK;
}

qtsp_status qtsp_der_next(qtsp_der_r *r, unsigned char *tag, qtsp_der_r *content, qtsp_der_r *tlv)
{
    unsigned char t;
    size_t l, h;
    TRY(qtsp_der_get_hdr(r->p, r->n, &t, &l, &h));
    if (tag)
        *tag = t;
    if (content) {
        content->p = r->p + h;
        content->n = l;
    }
    if (tlv) {
        tlv->p = r->p;
        tlv->n = h + l;
    }
    r->p += h + l;
    r->n -= h + l;
    return QTSP_OK;
}

qtsp_status qtsp_der_get(qtsp_der_r *r, unsigned char tag, qtsp_der_r *content, qtsp_der_r *tlv)
{
    ENSURE(r->n > 0 && r->p[0] == tag, QTSP_ERR_INVALID, "DER: expected tag 0x%02x, got %s", tag,
           r->n ? "another" : "the end");
    return qtsp_der_next(r, NULL, content, tlv);
}

int qtsp_der_peek(const qtsp_der_r *r)
{
    return r->n ? r->p[0] : -1;
}

static qtsp_status check_tree(qtsp_der_r r, int depth)
{
    while (r.n) {
        unsigned char tag;
        qtsp_der_r c;
        TRY(qtsp_der_next(&r, &tag, &c, NULL));
        if (tag & 0x20) {
            ENSURE(depth > 0, QTSP_ERR_INVALID, "DER: nested too deeply");
            TRY(check_tree(c, depth - 1));
        }
    }
    return QTSP_OK;
}

qtsp_status qtsp_der_check_tree(const unsigned char *in, size_t n, int depth)
{
    qtsp_der_r r = {in, n}, one;
    TRY(qtsp_der_next(&r, NULL, NULL, &one));
    TRY(qtsp_der_done(&r));
    return check_tree(one, depth);
}

qtsp_status qtsp_der_done(const qtsp_der_r *r)
{
    ENSURE(r->n == 0, QTSP_ERR_INVALID, "DER: %zu trailing bytes", r->n);
    return QTSP_OK;
}

qtsp_status qtsp_der_check_int(const qtsp_der_r *v)
{
    ENSURE(v->n > 0, QTSP_ERR_INVALID, "DER: empty INTEGER");
    ENSURE(v->n == 1 ||
               !((v->p[0] == 0x00 && !(v->p[1] & 0x80)) || (v->p[0] == 0xff && (v->p[1] & 0x80))),
           QTSP_ERR_INVALID, "DER: INTEGER not minimal");
    return QTSP_OK;
}

qtsp_status qtsp_der_check_oid(const qtsp_der_r *v, size_t max)
{
    ENSURE(v->n > 0 && v->n <= max, QTSP_ERR_INVALID, "DER: OID of %zu bytes", v->n);
    ENSURE(!(v->p[v->n - 1] & 0x80), QTSP_ERR_INVALID, "DER: OID ends inside a subidentifier");
    for (size_t i = 0; i < v->n; i++)
        ENSURE(!(v->p[i] == 0x80 && (i == 0 || !(v->p[i - 1] & 0x80))), QTSP_ERR_INVALID,
               "DER: OID subidentifier not minimal");
    return QTSP_OK;
}

qtsp_status qtsp_der_read_u64(const qtsp_der_r *v, uint64_t *out)
{
    TRY(qtsp_der_check_int(v));
    ENSURE(!(v->p[0] & 0x80), QTSP_ERR_INVALID, "DER: negative INTEGER");
    ENSURE(v->n <= 8 || (v->n == 9 && v->p[0] == 0), QTSP_ERR_INVALID,
           "DER: INTEGER beyond 64 bits");
    uint64_t x = 0;
    for (size_t i = 0; i < v->n; i++)
        x = x << 8 | v->p[i];
    *out = x;
    return QTSP_OK;
}

qtsp_status qtsp_der_read_bool(const qtsp_der_r *v, int *out)
{
    ENSURE(v->n == 1 && (v->p[0] == 0x00 || v->p[0] == 0xff), QTSP_ERR_INVALID, "DER: bad BOOLEAN");
    *out = v->p[0] != 0;
    return QTSP_OK;
}

qtsp_status qtsp_der_read_time(unsigned char tag, const qtsp_der_r *v, int64_t *t)
{
    ENSURE(tag == QTSP_DER_UTCTIME || tag == QTSP_DER_GENTIME, QTSP_ERR_INVALID,
           "DER: not a time (tag 0x%02x)", tag);
    int64_t ms;
    TRY(qtsp_time_parse(tag == QTSP_DER_UTCTIME ? QTSP_TIME_UTC : QTSP_TIME_GEN, v->p, v->n, &ms));
    *t = ms / 1000;
    return QTSP_OK;
}
