/* The store-free part of ca/certdb.h: serial numbers, certificate times
 * and the effective status at an instant. Kept apart from the records so that a core that only
 * reads statuses through a seam (ocsp/ocsp.c, its fuzzer) links no store. */
#include <openssl/asn1.h>
#include <string.h>

#include "ca/certdb.h"
#include "core/codec.h"
#include "core/time.h"

/* ---- serials ----------------------------------------------------------- */

qtsp_status qtsp_serial_normalize(const unsigned char *in, size_t len, unsigned char *out,
                                  size_t *out_len)
{
    ENSURE(in || len == 0, QTSP_ERR_INVALID, "no serial");
    size_t i = 0;
    while (i < len && in[i] == 0)
        i++;
    ENSURE(i < len, QTSP_ERR_INVALID, "serial number is zero");
    ENSURE(len - i <= QTSP_SERIAL_MAX, QTSP_ERR_INVALID, "serial number longer than 20 bytes");
    memmove(out, in + i, len - i);
    *out_len = len - i;
    return QTSP_OK;
}

qtsp_status qtsp_serial_from_hex(const char *hex, unsigned char *out, size_t *out_len)
{
    ENSURE(hex, QTSP_ERR_INVALID, "no serial");
    size_t n = strnlen(hex, 2 * QTSP_SERIAL_MAX + 1);
    while (n > 0 && *hex == '0') { /* tolerate leading zeros on input */
        hex++;
        n--;
    }
    ENSURE(n >= 1, QTSP_ERR_INVALID, "serial number is empty or zero");
    ENSURE(n <= 2 * QTSP_SERIAL_MAX && hex[n] == '\0', QTSP_ERR_INVALID,
           "serial number longer than 20 bytes");
    unsigned char tmp[QTSP_SERIAL_MAX];
    size_t j = 0, i = 0;
    if (n % 2) {
        int v = qtsp_hex_value((unsigned char)hex[0]);
        ENSURE(v >= 0, QTSP_ERR_INVALID, "serial number is not hexadecimal");
        tmp[j++] = (unsigned char)v;
        i = 1;
    }
    for (; i < n; i += 2) {
        int hi = qtsp_hex_value((unsigned char)hex[i]),
            lo = qtsp_hex_value((unsigned char)hex[i + 1]);
        ENSURE(hi >= 0 && lo >= 0, QTSP_ERR_INVALID, "serial number is not hexadecimal");
        tmp[j++] = (unsigned char)(hi << 4 | lo);
    }
    memcpy(out, tmp, j);
    *out_len = j;
    return QTSP_OK;
}

void qtsp_serial_to_hex(const unsigned char *s, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i = 0, o = 0;
    while (i < len && s[i] == 0)
        i++;
    if (len > QTSP_SERIAL_MAX || i == len) {
        out[0] = '0';
        out[1] = '\0';
        return;
    }
    if (s[i] < 0x10)
        out[o++] = digits[s[i]];
    else {
        out[o++] = digits[s[i] >> 4];
        out[o++] = digits[s[i] & 15];
    }
    for (i++; i < len; i++) {
        out[o++] = digits[s[i] >> 4];
        out[o++] = digits[s[i] & 15];
    }
    out[o] = '\0';
}

/* ---- times and statuses ------------------------------------------------ */

qtsp_status qtsp_asn1_time_to_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    ENSURE(t && ASN1_TIME_to_tm(t, &tm) == 1, QTSP_ERR_INVALID,
           "certificate has a bad validity time");
    time_t v = (time_t)qtsp_timegm(&tm);
    ENSURE(v != (time_t)-1, QTSP_ERR_INVALID, "certificate validity time out of range");
    *out = (int64_t)v;
    return QTSP_OK;
}

void qtsp_cert_status_effective(const qtsp_cert_status *stored, time_t now, qtsp_cert_status *out)
{
    qtsp_cert_status s = *stored;
    /* the hold lapses at hold_until itself */
    if (s.state == QTSP_CERT_ON_HOLD && s.hold_until != 0 && s.hold_until <= (int64_t)now) {
        s.state = QTSP_CERT_VALID;
        s.released = 1;
        s.changed_at = s.hold_until;
    }
    *out = s;
}
