/* Activation secrets: password hashing and OTP secret wrapping. */
#include "ra/activation.h"

#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"

/* Activation passwords are 120-bit random strings made by us, so memory-hard
 * stretching adds little; these parameters keep argon2id (as the security
 * rules require) at a few milliseconds so issuance is not throttled by it.
 * See docs/security.md. */
#define PW_T_COST 2
#define PW_M_COST_KIB 4096
#define PW_LANES 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32

/* Creates path with 32 random bytes atomically: written to a private temp
 * file first, then link(2)ed into place, so a concurrent reader never sees
 * a half-written key and a concurrent creator loses cleanly (EEXIST). */
static qtsp_status otp_key_create(const char *path)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    unsigned char k[QTSP_OTP_KEY_LEN];
    TRY(qtsp_random(k, sizeof k));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(k, sizeof k);
        FAIL(QTSP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    ssize_t w = write(fd, k, sizeof k);
    int bad = w != (ssize_t)sizeof k || fsync(fd) != 0;
    close(fd);
    OPENSSL_cleanse(k, sizeof k);
    int linked = !bad && link(tmp, path) == 0;
    int err = errno;
    unlink(tmp);
    ENSURE(!bad, QTSP_ERR_IO, "cannot write %s", tmp);
    ENSURE(linked || err == EEXIST, QTSP_ERR_IO, "cannot create %s: %s", path, strerror(err));
    return QTSP_OK;
}

qtsp_status qtsp_otp_key_load(const char *secrets_dir, unsigned char key[QTSP_OTP_KEY_LEN])
{
    char path[1100];
    snprintf(path, sizeof path, "%s/otp.key", secrets_dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        TRY(otp_key_create(path));
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    }
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    ssize_t n = read(fd, key, QTSP_OTP_KEY_LEN);
    close(fd);
    ENSURE(n == QTSP_OTP_KEY_LEN, QTSP_ERR_IO, "%s must hold %d bytes", path, QTSP_OTP_KEY_LEN);
    return QTSP_OK;
}

static qtsp_status unb64(const char *in, unsigned char *out, size_t cap, size_t *len)
{
    if (qtsp_base64_decode(in, strlen(in), QTSP_B64_STD | QTSP_B64_PADDING, out, cap, len) !=
        QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_STORE_CORRUPT, "bad base64 in OTP record");
    }
    return QTSP_OK;
}

qtsp_status qtsp_otp_wrap(const unsigned char key[QTSP_OTP_KEY_LEN], const char *aad,
                          const unsigned char *secret, size_t len, json_t **out)
{
    ENSURE(len <= 64, QTSP_ERR_INVALID, "OTP secret too long");
    unsigned char iv[12], ct[64], tag[16];
    TRY(qtsp_random(iv, sizeof iv));
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    int l1 = 0, l2 = 0,
        ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
             EVP_EncryptUpdate(c, NULL, &l1, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
             EVP_EncryptUpdate(c, ct, &l1, secret, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, ct + l1, &l2) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    ENSURE(ok, QTSP_ERR_CRYPTO, "AES-GCM wrap failed");
    char biv[24], bct[100], btag[32];
    TRY(qtsp_base64_encode(iv, sizeof iv, biv, sizeof biv));
    TRY(qtsp_base64_encode(ct, (size_t)(l1 + l2), bct, sizeof bct));
    TRY(qtsp_base64_encode(tag, sizeof tag, btag, sizeof btag));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s}", "alg", "aes-256-gcm", "iv", biv, "ct", bct, "tag", btag);
    ENSURE(o != NULL, QTSP_ERR_NOMEM, "out of memory");
    *out = o;
    return QTSP_OK;
}

qtsp_status qtsp_otp_unwrap(const unsigned char key[QTSP_OTP_KEY_LEN], const char *aad,
                            const json_t *wrapped, unsigned char *secret, size_t cap, size_t *len)
{
    const char *alg = json_string_value(json_object_get(wrapped, "alg"));
    const char *siv = json_string_value(json_object_get(wrapped, "iv"));
    const char *sct = json_string_value(json_object_get(wrapped, "ct"));
    const char *stag = json_string_value(json_object_get(wrapped, "tag"));
    ENSURE(alg && siv && sct && stag && strcmp(alg, "aes-256-gcm") == 0, QTSP_ERR_STORE_CORRUPT,
           "OTP record malformed");
    unsigned char iv[16], ct[80], tag[20];
    size_t ivl, ctl, tagl;
    TRY(unb64(siv, iv, sizeof iv, &ivl));
    TRY(unb64(sct, ct, sizeof ct, &ctl));
    TRY(unb64(stag, tag, sizeof tag, &tagl));
    ENSURE(ivl == 12 && tagl == 16 && ctl <= cap, QTSP_ERR_STORE_CORRUPT, "OTP record malformed");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    int l1 = 0, l2 = 0,
        ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
             EVP_DecryptUpdate(c, NULL, &l1, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
             EVP_DecryptUpdate(c, secret, &l1, ct, (int)ctl) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
             EVP_DecryptFinal_ex(c, secret + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        OPENSSL_cleanse(secret, cap);
        FAIL(QTSP_ERR_CRYPTO, "OTP secret does not unwrap (wrong key or tampered record)");
    }
    *len = (size_t)(l1 + l2);
    return QTSP_OK;
}

/* Passwords a person chooses (the signer's change of password): the
 * operators' parameters (ra/operator.c), memory-hard against guessing. */
#define PW_CHOSEN_T_COST 3
#define PW_CHOSEN_M_COST_KIB (32 * 1024)

static qtsp_status password_hash(const char *password, uint32_t t_cost, uint32_t m_cost_kib,
                                 char *out, size_t cap)
{
    unsigned char salt[PW_SALT_LEN];
    TRY(qtsp_random(salt, sizeof salt));
    size_t need =
        argon2_encodedlen(t_cost, m_cost_kib, PW_LANES, PW_SALT_LEN, PW_HASH_LEN, Argon2_id);
    ENSURE(cap >= need, QTSP_ERR_TOO_BIG, "hash buffer too small");
    int r = argon2id_hash_encoded(t_cost, m_cost_kib, PW_LANES, password, strlen(password), salt,
                                  sizeof salt, PW_HASH_LEN, out, cap);
    ENSURE(r == ARGON2_OK, QTSP_ERR_CRYPTO, "argon2id failed: %s", argon2_error_message(r));
    return QTSP_OK;
}

qtsp_status qtsp_password_hash(const char *password, char *out, size_t cap)
{
    return password_hash(password, PW_T_COST, PW_M_COST_KIB, out, cap);
}

qtsp_status qtsp_password_hash_chosen(const char *password, char *out, size_t cap)
{
    return password_hash(password, PW_CHOSEN_T_COST, PW_CHOSEN_M_COST_KIB, out, cap);
}

qtsp_status qtsp_password_verify(const char *encoded, const char *password)
{
    int r = argon2id_verify(encoded, password, strlen(password));
    ENSURE(r == ARGON2_OK, QTSP_ERR_AUTH, "wrong user id or password");
    return QTSP_OK;
}

qtsp_status qtsp_activation_make(const unsigned char key[QTSP_OTP_KEY_LEN], const char *user_id,
                                 qtsp_activation *out)
{
    ENSURE(user_id && *user_id && strlen(user_id) <= 64, QTSP_ERR_INVALID, "user id of %zu bytes",
           user_id ? strlen(user_id) : 0);
    qtsp_status rc = QTSP_OK;
    qtsp_activation a;
    memset(&a, 0, sizeof a);
    unsigned char pw[15], totp[20];
    char b32[40];
    TRY_OUT(qtsp_random(pw, sizeof pw));
    qtsp_base64url_encode(pw, sizeof pw, a.password, sizeof a.password);
    TRY_OUT(qtsp_password_hash(a.password, a.password_hash, sizeof a.password_hash));
    TRY_OUT(qtsp_random(totp, sizeof totp));
    TRY_OUT(qtsp_otp_wrap(key, user_id, totp, sizeof totp, &a.otp));
    qtsp_base32_encode(totp, sizeof totp, b32, sizeof b32);
    /* Key Uri Format of authenticator apps: SHA1, 6 digits, 30 s (RFC 6238) */
    snprintf(a.otpauth_uri, sizeof a.otpauth_uri,
             "otpauth://totp/qtsp:%s?secret=%s&issuer=qtsp&algorithm=SHA1&digits=6&period=30",
             user_id, b32);
    *out = a;
    memset(&a, 0, sizeof a);
out:
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(totp, sizeof totp);
    OPENSSL_cleanse(b32, sizeof b32);
    qtsp_activation_cleanup(&a);
    return rc;
}

void qtsp_activation_cleanup(qtsp_activation *a)
{
    if (!a)
        return;
    json_decref(a->otp);
    OPENSSL_cleanse(a, sizeof *a);
}
