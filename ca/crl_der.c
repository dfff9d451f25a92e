/* DER writer helpers for the CRL publisher; see ca/crl_der.h. */
#include "ca/crl_der.h"

#include <string.h>

size_t qtsp_der_len_size(size_t len)
{
    if (len < 0x80)
        return 1;
    size_t n = 0;
    for (size_t v = len; v; v >>= 8)
        n++;
    return 1 + n;
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

qtsp_status qtsp_der_get_hdr(const unsigned char *in, size_t inlen, unsigned char *tag,
                             size_t *len, size_t *hdr_len)
{
    ENSURE(inlen >= 2, QTSP_ERR_INVALID, "DER header truncated");
    size_t pos = 2, l;
    if (in[1] < 0x80) {
        l = in[1];
    } else {
        size_t n = in[1] & 0x7f;
        ENSURE(n >= 1 && n <= 4, QTSP_ERR_INVALID, "DER length form not supported");
        ENSURE(inlen >= 2 + n, QTSP_ERR_INVALID, "DER length truncated");
        ENSURE(in[2] != 0, QTSP_ERR_INVALID, "DER length not minimal");
        l = 0;
        for (size_t i = 0; i < n; i++)
            l = (l << 8) | in[2 + i];
        ENSURE(l >= 0x80, QTSP_ERR_INVALID, "DER length not minimal");
        pos += n;
    }
    ENSURE(l <= inlen - pos, QTSP_ERR_INVALID, "DER content runs past the input");
    *tag = in[0];
    *len = l;
    *hdr_len = pos;
    return QTSP_OK;
}

static size_t uint_content(const unsigned char **mag, size_t *n)
{
    while (*n > 0 && (*mag)[0] == 0) {
        (*mag)++;
        (*n)--;
    }
    if (*n == 0)
        return 1; /* the value 0 is one 0x00 byte */
    return *n + (((*mag)[0] & 0x80) ? 1 : 0);
}

size_t qtsp_der_uint_size(const unsigned char *mag, size_t n)
{
    return qtsp_der_tlv_size(uint_content(&mag, &n));
}

size_t qtsp_der_put_uint(unsigned char *out, const unsigned char *mag, size_t n)
{
    size_t c = uint_content(&mag, &n);
    size_t pos = qtsp_der_put_hdr(out, QTSP_DER_INTEGER, c);
    if (c > n)
        out[pos++] = 0;
    if (n)
        memcpy(out + pos, mag, n);
    return pos + n;
}

static size_t u64_bytes(uint64_t v, unsigned char b[8])
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * (7 - i)));
    return 8;
}

size_t qtsp_der_u64_size(uint64_t v)
{
    unsigned char b[8];
    return qtsp_der_uint_size(b, u64_bytes(v, b));
}

size_t qtsp_der_put_u64(unsigned char *out, uint64_t v)
{
    unsigned char b[8];
    return qtsp_der_put_uint(out, b, u64_bytes(v, b));
}

static int use_generalized(const struct tm *tm, int generalized)
{
    int year = tm->tm_year + 1900;
    return generalized || year < 1950 || year > 2049;
}

size_t qtsp_der_time_size(time_t t, int generalized)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return 0;
    return use_generalized(&tm, generalized) ? 17 : 15;
}

static void put_digits(unsigned char *out, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (unsigned char)('0' + v % 10);
        v /= 10;
    }
}

qtsp_status qtsp_der_put_time(unsigned char *out, time_t t, int generalized, size_t *n)
{
    struct tm tm;
    ENSURE(gmtime_r(&t, &tm), QTSP_ERR_INVALID, "time out of range");
    int year = tm.tm_year + 1900;
    ENSURE(year >= 1 && year <= 9999, QTSP_ERR_INVALID, "time out of range");
    size_t pos = 0;
    if (use_generalized(&tm, generalized)) {
        out[pos++] = QTSP_DER_GENTIME;
        out[pos++] = 15;
        put_digits(out + pos, year, 4);
        pos += 4;
    } else {
        out[pos++] = QTSP_DER_UTCTIME;
        out[pos++] = 13;
        put_digits(out + pos, year % 100, 2);
        pos += 2;
    }
    put_digits(out + pos, tm.tm_mon + 1, 2);
    put_digits(out + pos + 2, tm.tm_mday, 2);
    put_digits(out + pos + 4, tm.tm_hour, 2);
    put_digits(out + pos + 6, tm.tm_min, 2);
    put_digits(out + pos + 8, tm.tm_sec, 2);
    pos += 10;
    out[pos++] = 'Z';
    *n = pos;
    return QTSP_OK;
}
