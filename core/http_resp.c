/* HTTP responses: initialisation, bodies, headers (a bounded list in one
 * buffer, "name\0value\0" pairs), the contract's JSON error body and the
 * status a failure maps to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/http_int.h"

static const char *error_code_name(int status)
{
    switch (status) {
    case 400:
        return "invalid";
    case 401:
        return "unauthenticated";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "too_big";
    case 415:
        return "unsupported_media";
    case 429:
        return "quota";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

/* header comment of core/http.h: the status a handler failure maps to. */
int qtsp_http_status_for(qtsp_status rc)
{
    switch (rc) {
    case QTSP_ERR_INVALID:
        return 400;
    case QTSP_ERR_AUTH:
        return 401;
    case QTSP_ERR_FORBIDDEN:
        return 403;
    case QTSP_ERR_NOT_FOUND:
        return 404;
    case QTSP_ERR_EXISTS:
    case QTSP_ERR_STATE:
        return 409;
    case QTSP_ERR_TOO_BIG:
        return 413;
    case QTSP_ERR_QUOTA:
        return 429;
    case QTSP_ERR_UNSUPPORTED:
        return 415;
    case QTSP_ERR_UNAVAILABLE:
    case QTSP_ERR_STORE_FULL: /* the store cannot grow: try again once space is freed */
        return 503;
    default:
        return 500;
    }
}

const char *http_error_message(int status, qtsp_status rc, const char *what)
{
    if (status == 500)
        return "internal error";
    return what && *what ? what : qtsp_strerror(rc);
}

size_t http_error_body(int status, const char *message, char *body, size_t cap)
{
    size_t n =
        (size_t)snprintf(body, cap, "{\"error\":\"%s\",\"message\":\"", error_code_name(status));
    n = qtsp_json_escape(body, cap - 3, n, message);
    body[n++] = '"';
    body[n++] = '}';
    body[n] = '\0';
    return n;
}

qtsp_status qtsp_http_resp_error(qtsp_http_resp *resp, int status, const char *message)
{
    char body[640];
    size_t n = http_error_body(status, message ? message : "", body, sizeof body);
    return qtsp_http_resp_set(resp, status, "application/json", body, n);
}

void http_resp_init(qtsp_http_resp *resp)
{
    resp->status = 200;
    memcpy(resp->content_type, "application/json", sizeof "application/json");
    qtsp_buf_init(&resp->body, HTTP_RESP_MAX);
    resp->ext_body = NULL;
    resp->ext_len = 0;
    resp->free_fn = NULL;
    resp->free_ctx = NULL;
    resp->n_headers = 0;
    qtsp_buf_init(&resp->headers, QTSP_HTTP_HEADERS_MAX_BYTES);
}

void http_resp_discard(qtsp_http_resp *resp)
{
    if (resp->ext_body && resp->free_fn)
        resp->free_fn(resp->free_ctx);
    resp->ext_body = NULL;
    resp->free_fn = NULL;
    qtsp_buf_cleanup(&resp->body);
    qtsp_buf_cleanup(&resp->headers);
    resp->n_headers = 0;
}

void qtsp_http_resp_reset(qtsp_http_resp *resp)
{
    http_resp_discard(resp);
    http_resp_init(resp);
}

void qtsp_http_resp_cleanup(qtsp_http_resp *resp)
{
    if (resp)
        http_resp_discard(resp);
}

int http_resp_next_header(const qtsp_http_resp *resp, size_t *pos, const char **name,
                          const char **value)
{
    if (*pos >= resp->headers.len)
        return 0;
    const char *p = (const char *)resp->headers.data + *pos;
    *name = p;
    *value = p + strlen(p) + 1;
    *pos += strlen(*name) + 1 + strlen(*value) + 1;
    return 1;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

qtsp_status qtsp_http_resp_header(qtsp_http_resp *resp, const char *name, const char *value)
{
    ENSURE(resp->n_headers < QTSP_HTTP_MAX_HEADERS, QTSP_ERR_TOO_BIG,
           "more than %d response headers", QTSP_HTTP_MAX_HEADERS);
    size_t nl = strlen(name), vl = strlen(value);
    ENSURE(nl > 0 && nl <= QTSP_HTTP_HEADER_NAME_MAX, QTSP_ERR_TOO_BIG,
           "response header name of %zu bytes", nl);
    ENSURE(vl <= QTSP_HTTP_HEADER_VALUE_MAX, QTSP_ERR_TOO_BIG, "response header value of %zu bytes",
           vl);
    /* RFC 9110 5.5: no CR/LF (header injection) and no ':' in names. */
    ENSURE(!has_crlf(name) && !has_crlf(value) && strchr(name, ':') == NULL &&
               strpbrk(name, " \t") == NULL,
           QTSP_ERR_INVALID, "response header with forbidden characters");
    /* a zeroed response (memset) gets its header list here */
    if (resp->headers.max == 0 && resp->headers.data == NULL)
        qtsp_buf_init(&resp->headers, QTSP_HTTP_HEADERS_MAX_BYTES);
    ENSURE(resp->headers.len + nl + vl + 2 <= resp->headers.max, QTSP_ERR_TOO_BIG,
           "response headers over %zu bytes", resp->headers.max);
    TRY(qtsp_buf_append(&resp->headers, name, nl + 1));
    qtsp_status rc = qtsp_buf_append(&resp->headers, value, vl + 1);
    if (rc != QTSP_OK) {
        resp->headers.len -= nl + 1; /* all or nothing */
        return rc;
    }
    resp->n_headers++;
    return QTSP_OK;
}

qtsp_status qtsp_http_resp_set(qtsp_http_resp *resp, int status, const char *content_type,
                               const void *body, size_t len)
{
    size_t cl = strlen(content_type);
    ENSURE(cl < sizeof resp->content_type, QTSP_ERR_TOO_BIG, "content type of %zu bytes", cl);
    ENSURE(status >= 100 && status <= 599, QTSP_ERR_INVALID, "HTTP status %d", status);
    qtsp_buf_reset(&resp->body);
    TRY(qtsp_buf_append(&resp->body, body, len));
    resp->status = status;
    memcpy(resp->content_type, content_type, cl + 1);
    return QTSP_OK;
}

/* RFC 9110 13.1.2: "*" or a list of entity tags (weak ones compare weakly). */
int qtsp_http_etag_matches(const char *hdr, const char *etag)
{
    if (!hdr || !etag || !etag[0])
        return 0;
    size_t el = strlen(etag);
    const char *p = hdr;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == el && memcmp(p, etag, el) == 0)
            return 1;
        p = e;
    }
    return 0;
}
