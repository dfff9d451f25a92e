#include "core/err.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_MSG_MAX 1024

static _Thread_local qtsp_status t_code;
static _Thread_local char t_what[ERR_MSG_MAX];
static _Thread_local char t_full[ERR_MSG_MAX * 2];

qtsp_status qtsp_err_set(qtsp_status code, const char *file, int line, const char *fmt, ...)
{
    if (t_code != QTSP_OK) {
        ERR_clear_error();
        return code;
    }
    t_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_what, sizeof t_what, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    int n = snprintf(t_full, sizeof t_full, "%s (%s:%d)", t_what, base, line);
    unsigned long e;
    const char *sep = " [openssl: ";
    while ((e = ERR_get_error()) != 0 && n > 0 && (size_t)n < sizeof t_full - 2) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        n += snprintf(t_full + n, sizeof t_full - (size_t)n, "%s%s", sep, buf);
        sep = "; ";
    }
    if (sep[0] == ';' && n > 0 && (size_t)n < sizeof t_full - 2)
        snprintf(t_full + n, sizeof t_full - (size_t)n, "]");
    ERR_clear_error();
    return code;
}

void qtsp_err_clear(void)
{
    t_code = QTSP_OK;
    t_what[0] = '\0';
    t_full[0] = '\0';
    ERR_clear_error();
}

const char *qtsp_err_message(void)
{
    return t_full;
}

const char *qtsp_err_what(void)
{
    return t_what;
}

qtsp_status qtsp_err_code(void)
{
    return t_code;
}

const char *qtsp_strerror(qtsp_status code)
{
    switch (code) {
    case QTSP_OK:
        return "ok";
    case QTSP_ERR_NOMEM:
        return "out of memory";
    case QTSP_ERR_INVALID:
        return "invalid";
    case QTSP_ERR_TOO_BIG:
        return "too big";
    case QTSP_ERR_NOT_FOUND:
        return "not found";
    case QTSP_ERR_EXISTS:
        return "exists";
    case QTSP_ERR_STATE:
        return "not allowed in this state";
    case QTSP_ERR_IO:
        return "i/o error";
    case QTSP_ERR_CRYPTO:
        return "crypto error";
    case QTSP_ERR_INTERNAL:
        return "internal error";
    case QTSP_ERR_AUTH:
        return "unauthenticated";
    case QTSP_ERR_FORBIDDEN:
        return "forbidden";
    case QTSP_ERR_QUOTA:
        return "quota exhausted";
    case QTSP_ERR_UNSUPPORTED:
        return "unsupported";
    case QTSP_ERR_TIME:
        return "clock not synchronised";
    case QTSP_ERR_UNAVAILABLE:
        return "unavailable";
    case QTSP_ERR_CONFIG:
        return "configuration error";
    case QTSP_ERR_STORE:
        return "store error";
    case QTSP_ERR_STORE_FULL:
        return "store full";
    case QTSP_ERR_STORE_CORRUPT:
        return "store record corrupt";
    case QTSP_ERR_AUDIT_BROKEN:
        return "audit chain broken";
    case QTSP_ERR_HSM:
        return "hsm error";
    case QTSP_ERR_HSM_LOGIN:
        return "hsm login failed";
    case QTSP_ERR_HSM_NO_TOKEN:
        return "hsm token not found";
    case QTSP_ERR_HSM_NO_KEY:
        return "hsm key not found";
    }
    return "unknown error";
}
