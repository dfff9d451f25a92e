/* qtsp error idiom: every fallible function returns a qtsp_status (0 = ok),
 * marked QTSP_MUST_USE. The first failure records file:line, a message and the
 * drained OpenSSL error queue in thread-local storage; the edge (HTTP, CLI)
 * reads it once with qtsp_err_message() and logs it.
 *
 * Codes are grouped by hundreds and never renumbered. */
#ifndef QTSP_CORE_ERR_H
#define QTSP_CORE_ERR_H

#define QTSP_MUST_USE __attribute__((warn_unused_result))
#define QTSP_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef enum qtsp_status {
    QTSP_OK = 0,
    /* 1..99: generic */
    QTSP_ERR_NOMEM = 1,        /* allocation failed */
    QTSP_ERR_INVALID = 2,      /* bad input from the caller or the network */
    QTSP_ERR_TOO_BIG = 3,      /* a size limit was reached */
    QTSP_ERR_NOT_FOUND = 4,    /* no such object */
    QTSP_ERR_EXISTS = 5,       /* object already exists */
    QTSP_ERR_STATE = 6,        /* not allowed in the current state */
    QTSP_ERR_IO = 7,           /* file system or socket error */
    QTSP_ERR_CRYPTO = 8,       /* OpenSSL failure */
    QTSP_ERR_INTERNAL = 9,     /* a bug: invariant broken */
    QTSP_ERR_AUTH = 10,        /* missing or unknown credentials */
    QTSP_ERR_FORBIDDEN = 11,   /* authenticated but not allowed (role) */
    QTSP_ERR_QUOTA = 12,       /* quota exhausted */
    QTSP_ERR_UNSUPPORTED = 13, /* valid but not supported (algorithm, ...) */
    QTSP_ERR_TIME = 14,        /* clock not trustworthy */
    QTSP_ERR_UNAVAILABLE = 15, /* shutting down or overloaded: try again later */
    /* 100..199: configuration and policies */
    QTSP_ERR_CONFIG = 100, /* syntax or schema error in YAML */
    /* 200..299: store */
    QTSP_ERR_STORE = 200,         /* LMDB error */
    QTSP_ERR_STORE_FULL = 201,    /* map full even after growing */
    QTSP_ERR_STORE_CORRUPT = 202, /* record of unknown version or shape */
    QTSP_ERR_AUDIT_BROKEN = 203,  /* audit hash chain does not verify */
    /* 300..399: HSM / PKCS#11 */
    QTSP_ERR_HSM = 300,          /* PKCS#11 call failed */
    QTSP_ERR_HSM_LOGIN = 301,    /* wrong PIN or login failure */
    QTSP_ERR_HSM_NO_TOKEN = 302, /* no token with that label */
    QTSP_ERR_HSM_NO_KEY = 303,   /* no key with that label */
} qtsp_status;

/* Records the first failure of the current operation (later calls are kept
 * only if no failure is recorded yet) and drains the OpenSSL error queue into
 * the message. Returns code, so it can be used as `return qtsp_err_set(...)`.
 * Thread-safe (thread-local state). */
qtsp_status qtsp_err_set(qtsp_status code, const char *file, int line, const char *fmt, ...)
    QTSP_PRINTF(4, 5);

/* Clears the thread's recorded failure and the OpenSSL error queue; call at
 * the start of each request or command. */
void qtsp_err_clear(void);

/* The thread's recorded failure as "what (file:line) [openssl: ...]", or ""
 * when none. Borrowed: valid until the next qtsp_err_* call on this thread. */
const char *qtsp_err_message(void);

/* Just the "what" part of the recorded message (no file:line, no OpenSSL),
 * safe to show to a client. Borrowed like qtsp_err_message(). */
const char *qtsp_err_what(void);

/* The code of the recorded failure, QTSP_OK if none. */
qtsp_status qtsp_err_code(void);

/* Static name of a code, e.g. "invalid". Never NULL. */
const char *qtsp_strerror(qtsp_status code);

#define FAIL(code, ...) return qtsp_err_set((code), __FILE__, __LINE__, __VA_ARGS__)

#define ENSURE(cond, code, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return qtsp_err_set((code), __FILE__, __LINE__, __VA_ARGS__);                          \
    } while (0)

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        qtsp_status try_rc_ = (expr);                                                              \
        if (try_rc_ != QTSP_OK)                                                                    \
            return try_rc_;                                                                        \
    } while (0)

/* Variants for functions with one exit path: need `qtsp_status rc` and `out:`. */
#define TRY_OUT(expr)                                                                              \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc != QTSP_OK)                                                                         \
            goto out;                                                                              \
    } while (0)

#define ENSURE_OUT(cond, code, ...)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            rc = qtsp_err_set((code), __FILE__, __LINE__, __VA_ARGS__);                            \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define FAIL_OUT(code, ...)                                                                        \
    do {                                                                                           \
        rc = qtsp_err_set((code), __FILE__, __LINE__, __VA_ARGS__);                                \
        goto out;                                                                                  \
    } while (0)

#endif
