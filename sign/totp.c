/* RFC 6238 TOTP over RFC 4226 HOTP with HMAC-SHA-1 (sign/totp.h). */
#include "sign/totp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

uint64_t qtsp_totp_step(int64_t t)
{
    return t <= 0 ? 0 : (uint64_t)t / QTSP_TOTP_STEP;
}

qtsp_status qtsp_totp_code(const unsigned char *secret, size_t len, uint64_t counter,
                           unsigned digits, char *out)
{
    ENSURE(digits >= 6 && digits <= 8, QTSP_ERR_INVALID, "TOTP: %u digits", digits);
    ENSURE(secret && len > 0 && len <= QTSP_TOTP_SECRET_MAX, QTSP_ERR_INVALID,
           "TOTP: secret of %zu bytes", len);
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    for (int i = 7; i >= 0; i--) { /* RFC 4226 5.1: the counter as 8 bytes, big-endian */
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    ENSURE(HMAC(EVP_sha1(), secret, (int)len, msg, sizeof msg, mac, &mlen) != NULL && mlen == 20,
           QTSP_ERR_CRYPTO, "TOTP: HMAC-SHA-1 failed");
    /* RFC 4226 5.3: dynamic truncation */
    unsigned off = mac[19] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    OPENSSL_cleanse(mac, sizeof mac);
    uint32_t mod = 1;
    for (unsigned i = 0; i < digits; i++)
        mod *= 10;
    uint32_t v = bin % mod;
    for (unsigned i = digits; i > 0; i--) {
        out[i - 1] = (char)('0' + v % 10);
        v /= 10;
    }
    out[digits] = '\0';
    return QTSP_OK;
}

qtsp_status qtsp_totp_verify(const unsigned char *secret, size_t len, const char *code, int64_t now,
                             unsigned window, uint64_t last_used, uint64_t *matched)
{
    ENSURE(code && strlen(code) == QTSP_TOTP_DIGITS &&
               strspn(code, "0123456789") == QTSP_TOTP_DIGITS,
           QTSP_ERR_INVALID, "OTP: must be %d digits", QTSP_TOTP_DIGITS);
    ENSURE(window <= 10, QTSP_ERR_INVALID, "TOTP: window of %u steps", window);
    uint64_t step = qtsp_totp_step(now), found = 0;
    int hit = 0, fresh = 0;
    /* every candidate is computed and compared, whatever matched */
    for (uint64_t s = step >= window ? step - window : 0; s <= step + window; s++) {
        char want[QTSP_TOTP_DIGITS + 1];
        TRY(qtsp_totp_code(secret, len, s, QTSP_TOTP_DIGITS, want));
        int eq = CRYPTO_memcmp(want, code, QTSP_TOTP_DIGITS) == 0;
        OPENSSL_cleanse(want, sizeof want);
        hit |= eq;
        if (eq && s > last_used) {
            fresh = 1;
            found = s;
        }
    }
    ENSURE(hit, QTSP_ERR_AUTH, "OTP: wrong code");
    ENSURE(fresh, QTSP_ERR_AUTH, "OTP: code already used");
    *matched = found;
    return QTSP_OK;
}
