/* Browser sessions of the web portal (docs/portal.md): the API credential a
 * person logged in with (an operator's bearer token, a signer's CSC access
 * token) travels in an HttpOnly, SameSite=Strict cookie, sealed with
 * AES-256-GCM under a key of the home (secrets/portal.key), so that every
 * worker process opens every session and nothing of it is stored server-side
 * or readable by page scripts. A sealed session also carries its CSRF token
 * (the page sends it back in X-QTSP-CSRF on every call), its creation time
 * and its last activity: core/api refuses a session idle for longer than the
 * idle timeout or older than the maximum age, and re-seals it with the new
 * activity time on each call it carries. */
#ifndef QTSP_CORE_SESSION_H
#define QTSP_CORE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QTSP_SESSION_COOKIE "qtsp_session"
#define QTSP_SESSION_CSRF_HEADER "X-QTSP-CSRF"
/* a Set-Cookie value's room: the sealed session and its attributes */
#define QTSP_SESSION_SET_COOKIE_MAX 3072

typedef struct qtsp_sessions qtsp_sessions;

typedef struct qtsp_session {
    char kind[16];    /* "operator" or "signer" */
    char token[1024]; /* the credential the APIs take as "Authorization: Bearer" */
    char label[128];  /* shown on the page: operator name, signer's user id */
    char roles[96];   /* operator roles, comma-separated; "" for signers */
    char csrf[48];    /* base64url of 32 random bytes */
    int64_t created;  /* Unix seconds */
    int64_t active;   /* last call carried by the session, Unix seconds */
} qtsp_session;

/* Loads the sealing key from key_path (32 bytes), creating it (random, mode
 * 0600, exclusively: of processes racing, all end up with the one file) when
 * absent. idle_s: most seconds between two calls; max_s: a session's whole
 * life. QTSP_ERR_IO, QTSP_ERR_INVALID (a key file of another size).
 * *out owned by the caller (qtsp_sessions_free). Thread-safe to use. */
qtsp_status qtsp_sessions_new(const char *key_path, int64_t idle_s, int64_t max_s,
                              qtsp_sessions **out) QTSP_MUST_USE;
/* Wipes the key and frees. NULL is a no-op. */
void qtsp_sessions_free(qtsp_sessions *ss);
int64_t qtsp_sessions_idle_s(const qtsp_sessions *ss);

/* Fills s->csrf with a fresh random token and created = active = now. */
qtsp_status qtsp_session_init(qtsp_session *s, const char *kind, const char *token,
                              const char *label, const char *roles, int64_t now) QTSP_MUST_USE;

/* The Set-Cookie value carrying s sealed: "qtsp_session=...; Path=/;
 * HttpOnly; SameSite=Strict; Max-Age=..." (+ "; Secure" when secure).
 * QTSP_ERR_TOO_BIG when it would not fit cap. */
qtsp_status qtsp_session_set_cookie(const qtsp_sessions *ss, const qtsp_session *s, int secure,
                                    char *out, size_t cap) QTSP_MUST_USE;
/* The Set-Cookie value that removes the session cookie. */
void qtsp_session_clear_cookie(int secure, char *out, size_t cap);

/* Opens the session in a Cookie request header (NULL: none). QTSP_ERR_AUTH
 * with a message for the person when there is none, it does not open
 * (another home's key, altered), it was idle past the timeout or is past its
 * maximum age. Does not check the CSRF token (qtsp_session_csrf_ok). *out
 * written only on success; wipe it (OPENSSL_cleanse) after use. */
qtsp_status qtsp_session_open(const qtsp_sessions *ss, const char *cookie_header, int64_t now,
                              qtsp_session *out) QTSP_MUST_USE;
/* 1 when header (X-QTSP-CSRF) equals s's token, compared in constant time. */
int qtsp_session_csrf_ok(const qtsp_session *s, const char *header);

#endif
