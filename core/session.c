/* Sealed browser sessions (core/session.h, docs/portal.md). */
#include "core/session.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/file.h"

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define PLAIN_MAX 2048
/* binds the ciphertext to its use: a sealed session is nothing else */
static const char AAD[] = "qtsp portal session v1";

struct qtsp_sessions {
    unsigned char key[KEY_LEN];
    int64_t idle_s, max_s;
};

static qtsp_status read_key(const char *path, unsigned char key[KEY_LEN])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    unsigned char buf[KEY_LEN + 1];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n != KEY_LEN) {
        OPENSSL_cleanse(buf, sizeof buf);
        FAIL(QTSP_ERR_INVALID, "%s: a session key is %d bytes", path, KEY_LEN);
    }
    memcpy(key, buf, KEY_LEN);
    OPENSSL_cleanse(buf, sizeof buf);
    return QTSP_OK;
}

/* A new key under a name of our own, then linked to path: link() fails when
 * another process was first, and then its key is the one everybody reads. */
static qtsp_status make_key(const char *path)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.new-%ld", path, (long)getpid());
    ENSURE(n > 0 && (size_t)n < sizeof tmp, QTSP_ERR_TOO_BIG, "path too long: %s", path);
    unsigned char key[KEY_LEN];
    TRY(qtsp_random(key, sizeof key));
    qtsp_status rc = qtsp_file_write_atomic(tmp, key, sizeof key, 0600);
    OPENSSL_cleanse(key, sizeof key);
    TRY(rc);
    if (link(tmp, path) != 0 && errno != EEXIST) {
        int e = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot create %s: %s", path, strerror(e));
    }
    unlink(tmp);
    return QTSP_OK;
}

qtsp_status qtsp_sessions_new(const char *key_path, int64_t idle_s, int64_t max_s,
                              qtsp_sessions **out)
{
    ENSURE(idle_s > 0 && max_s >= idle_s, QTSP_ERR_INVALID,
           "session idle timeout must be positive and at most the maximum age");
    if (access(key_path, F_OK) != 0)
        TRY(make_key(key_path));
    qtsp_sessions *ss = calloc(1, sizeof *ss);
    ENSURE(ss != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = read_key(key_path, ss->key);
    if (rc != QTSP_OK) {
        free(ss);
        return rc;
    }
    ss->idle_s = idle_s;
    ss->max_s = max_s;
    *out = ss;
    return QTSP_OK;
}

void qtsp_sessions_free(qtsp_sessions *ss)
{
    if (!ss)
        return;
    OPENSSL_cleanse(ss->key, sizeof ss->key);
    free(ss);
}

int64_t qtsp_sessions_idle_s(const qtsp_sessions *ss)
{
    return ss->idle_s;
}

static int text_ok(const char *s, size_t cap)
{
    return s && strlen(s) < cap;
}

qtsp_status qtsp_session_init(qtsp_session *s, const char *kind, const char *token,
                              const char *label, const char *roles, int64_t now)
{
    ENSURE(text_ok(kind, sizeof s->kind) && text_ok(token, sizeof s->token) && *token &&
               text_ok(label, sizeof s->label) && text_ok(roles, sizeof s->roles),
           QTSP_ERR_INVALID, "session fields missing or too long");
    memset(s, 0, sizeof *s);
    unsigned char r[32];
    TRY(qtsp_random(r, sizeof r));
    qtsp_base64url_encode(r, sizeof r, s->csrf, sizeof s->csrf);
    OPENSSL_cleanse(r, sizeof r);
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    snprintf(s->token, sizeof s->token, "%s", token);
    snprintf(s->label, sizeof s->label, "%s", label);
    snprintf(s->roles, sizeof s->roles, "%s", roles);
    s->created = s->active = now;
    return QTSP_OK;
}

/* AES-256-GCM one way or the other; 1 on success (and a good tag). */
static int gcm(const unsigned char key[KEY_LEN], int enc, const unsigned char *nonce,
               const unsigned char *in, int len, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0, f = 0,
        ok = x && EVP_CipherInit_ex(x, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
             EVP_CipherUpdate(x, NULL, &n, (const unsigned char *)AAD, (int)sizeof AAD - 1) == 1 &&
             EVP_CipherUpdate(x, out, &n, in, len) == 1 && n == len;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(x, out + n, &f) == 1 && f == 0;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(x);
    return ok;
}

qtsp_status qtsp_session_set_cookie(const qtsp_sessions *ss, const qtsp_session *s, int secure,
                                    char *out, size_t cap)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "k", s->kind, "t", s->token, "l", s->label, "r",
                  s->roles, "c", s->csrf, "s", (json_int_t)s->created, "a", (json_int_t)s->active);
    ENSURE(o != NULL, QTSP_ERR_INVALID, "session fields are not text");
    char *plain = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    ENSURE(plain != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t len = strlen(plain);
    qtsp_status rc = QTSP_OK;
    unsigned char sealed[NONCE_LEN + PLAIN_MAX + TAG_LEN];
    char b64[(sizeof sealed + 2) / 3 * 4 + 1];
    ENSURE_OUT(len <= PLAIN_MAX, QTSP_ERR_TOO_BIG, "session too large");
    TRY_OUT(qtsp_random(sealed, NONCE_LEN));
    ENSURE_OUT(gcm(ss->key, 1, sealed, (const unsigned char *)plain, (int)len, sealed + NONCE_LEN,
                   sealed + NONCE_LEN + len),
               QTSP_ERR_CRYPTO, "cannot seal the session");
    qtsp_base64url_encode(sealed, NONCE_LEN + len + TAG_LEN, b64, sizeof b64);
    int n = snprintf(out, cap, "%s=%s; Path=/; HttpOnly; SameSite=Strict%s", QTSP_SESSION_COOKIE,
                     b64, secure ? "; Secure" : "");
    ENSURE_OUT(n > 0 && (size_t)n < cap, QTSP_ERR_TOO_BIG, "session cookie too large");
out:
    OPENSSL_cleanse(plain, len);
    free(plain);
    OPENSSL_cleanse(sealed, sizeof sealed);
    OPENSSL_cleanse(b64, sizeof b64);
    return rc;
}

void qtsp_session_clear_cookie(int secure, char *out, size_t cap)
{
    snprintf(out, cap, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s", QTSP_SESSION_COOKIE,
             secure ? "; Secure" : "");
}

/* The value of our cookie in a Cookie header (RFC 6265 5.4: "a=b; c=d"). */
static const char *cookie_value(const char *h, size_t *len)
{
    size_t nl = strlen(QTSP_SESSION_COOKIE);
    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        size_t n = strcspn(h, ";");
        if (n > nl && strncmp(h, QTSP_SESSION_COOKIE, nl) == 0 && h[nl] == '=') {
            *len = n - nl - 1;
            while (*len && h[nl + *len] == ' ')
                (*len)--;
            return h + nl + 1;
        }
        h += n;
    }
    return NULL;
}

static qtsp_status copy_field(json_t *o, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(o, k));
    ENSURE(v && strlen(v) < cap, QTSP_ERR_AUTH, "the session is not valid; log in again");
    snprintf(out, cap, "%s", v);
    return QTSP_OK;
}

qtsp_status qtsp_session_open(const qtsp_sessions *ss, const char *cookie_header, int64_t now,
                              qtsp_session *out)
{
    size_t len = 0;
    const char *v = cookie_value(cookie_header, &len);
    ENSURE(v != NULL && len > 0, QTSP_ERR_AUTH, "not logged in");
    ENSURE(len <= (NONCE_LEN + PLAIN_MAX + TAG_LEN + 2) / 3 * 4, QTSP_ERR_AUTH,
           "the session is not valid; log in again");
    unsigned char sealed[NONCE_LEN + PLAIN_MAX + TAG_LEN + 3];
    unsigned char plain[PLAIN_MAX + 1];
    size_t n = 0;
    qtsp_status rc = QTSP_OK;
    json_t *o = NULL;
    qtsp_session s;
    memset(&s, 0, sizeof s);
    if (qtsp_base64_decode(v, len, QTSP_B64_URL, sealed, sizeof sealed, &n) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "the session is not valid; log in again");
    }
    ENSURE_OUT(n > NONCE_LEN + TAG_LEN && n - NONCE_LEN - TAG_LEN <= PLAIN_MAX, QTSP_ERR_AUTH,
               "the session is not valid; log in again");
    size_t pl = n - NONCE_LEN - TAG_LEN;
    ENSURE_OUT(gcm(ss->key, 0, sealed, sealed + NONCE_LEN, (int)pl, plain, sealed + n - TAG_LEN),
               QTSP_ERR_AUTH, "the session is not valid; log in again");
    plain[pl] = '\0';
    o = json_loadb((const char *)plain, pl, 0, NULL);
    ENSURE_OUT(json_is_object(o), QTSP_ERR_AUTH, "the session is not valid; log in again");
    TRY_OUT(copy_field(o, "k", s.kind, sizeof s.kind));
    TRY_OUT(copy_field(o, "t", s.token, sizeof s.token));
    TRY_OUT(copy_field(o, "l", s.label, sizeof s.label));
    TRY_OUT(copy_field(o, "r", s.roles, sizeof s.roles));
    TRY_OUT(copy_field(o, "c", s.csrf, sizeof s.csrf));
    s.created = (int64_t)json_integer_value(json_object_get(o, "s"));
    s.active = (int64_t)json_integer_value(json_object_get(o, "a"));
    ENSURE_OUT(now - s.created <= ss->max_s && s.created <= now + 60, QTSP_ERR_AUTH,
               "the session has ended (maximum age); log in again");
    ENSURE_OUT(now - s.active <= ss->idle_s, QTSP_ERR_AUTH,
               "the session has ended after inactivity; log in again");
    s.active = now;
    *out = s;
out:
    json_decref(o);
    OPENSSL_cleanse(&s, sizeof s);
    OPENSSL_cleanse(plain, sizeof plain);
    OPENSSL_cleanse(sealed, sizeof sealed);
    return rc;
}

int qtsp_session_csrf_ok(const qtsp_session *s, const char *header)
{
    size_t n = strlen(s->csrf);
    return header && s->csrf[0] && strlen(header) == n && CRYPTO_memcmp(s->csrf, header, n) == 0;
}
