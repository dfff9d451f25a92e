/* JSON helpers over jansson (core/json.h). */
#include "core/json.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"

qtsp_status qtsp_json_check_fields(const json_t *in, const char *const *allowed)
{
    ENSURE(json_is_object(in), QTSP_ERR_INVALID, "body: must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)in, key, val)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        ENSURE(ok, QTSP_ERR_INVALID, "%s: unknown field", key);
    }
    return QTSP_OK;
}

qtsp_status qtsp_json_get_string(const json_t *in, const char *name, int required, const char **out)
{
    json_t *v = json_object_get(in, name);
    if (!v) {
        ENSURE(!required, QTSP_ERR_INVALID, "%s: missing", name);
        *out = NULL;
        return QTSP_OK;
    }
    ENSURE(json_is_string(v), QTSP_ERR_INVALID, "%s: must be a string", name);
    ENSURE(json_string_length(v) == strlen(json_string_value(v)), QTSP_ERR_INVALID,
           "%s: must not contain NUL", name);
    *out = json_string_value(v);
    return QTSP_OK;
}

qtsp_status qtsp_json_new_string(const char *field, const char *s, json_t **out)
{
    ENSURE(s != NULL, QTSP_ERR_INVALID, "%s: missing", field);
    json_t *j = json_string(s);
    if (j == NULL) {
        /* json_string fails only on allocation or invalid UTF-8; tell which */
        json_t *probe = json_string("");
        int nomem = probe == NULL;
        json_decref(probe);
        ENSURE(!nomem, QTSP_ERR_NOMEM, "out of memory");
        FAIL(QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
    }
    *out = j;
    return QTSP_OK;
}

qtsp_status qtsp_json_set_string(json_t *obj, const char *name, const char *s)
{
    json_t *j = NULL;
    TRY(qtsp_json_new_string(name, s, &j));
    ENSURE(json_object_set_new(obj, name, j) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_json_parse_object(const char *body, size_t len, json_t **out)
{
    ENSURE(body && len > 0, QTSP_ERR_INVALID, "body: a JSON object is required");
    json_error_t err;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    ENSURE(o != NULL, QTSP_ERR_INVALID, "body: invalid JSON at line %d column %d: %s", err.line,
           err.column, err.text);
    if (!json_is_object(o)) {
        json_decref(o);
        FAIL(QTSP_ERR_INVALID, "body: must be a JSON object");
    }
    *out = o;
    return QTSP_OK;
}

/* ---- long strings left in the body ---- */

#define BIG_PLACEHOLDER_MAX 64 /* "\\u0001big-" 24 hex "-" index, quoted */

/* The end (the closing quote) of the string whose text starts at p, and
 * whether it holds an escape; NULL when it does not end before end. */
static const char *string_end(const char *p, const char *end, int *escaped)
{
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q)
        return NULL;
    const char *bs = memchr(p, '\\', (size_t)(q - p));
    *escaped = bs != NULL;
    if (!bs)
        return q;
    for (p = bs; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p;
    }
    return NULL;
}

qtsp_status qtsp_json_parse_object_big(char *body, size_t len, size_t min, json_t **out,
                                       qtsp_json_big *big)
{
    ENSURE(body && len > 0, QTSP_ERR_INVALID, "body: a JSON object is required");
    ENSURE(min >= BIG_PLACEHOLDER_MAX, QTSP_ERR_INVALID, "long strings: at least %d bytes",
           BIG_PLACEHOLDER_MAX);
    memset(big, 0, sizeof *big);
    unsigned char rnd[12];
    char hx[25];
    TRY(qtsp_random(rnd, sizeof rnd));
    qtsp_hex_encode(rnd, sizeof rnd, hx);
    big->tag_len = (size_t)snprintf(big->tag, sizeof big->tag, "\001big-%s-", hx);
    /* pass 1: where the long plain strings are (outside strings, a quote
     * always opens one: RFC 8259 7) */
    const char *p = body, *end = body + len;
    size_t cap = 0, kept = len;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            break;
        int esc = 0;
        const char *e = string_end(q + 1, end, &esc);
        if (!e)
            break; /* unterminated: jansson says where */
        size_t n = (size_t)(e - q - 1);
        const char *after = e + 1;
        while (after < end && (*after == ' ' || *after == '\t' || *after == '\n' || *after == '\r'))
            after++;
        int is_key = after < end && *after == ':';
        if (!esc && !is_key && n >= min) {
            if (big->n == cap) {
                size_t nc = cap ? 2 * cap : 8;
                qtsp_json_big_span *ns = realloc(big->s, nc * sizeof *ns);
                if (!ns) {
                    qtsp_json_big_cleanup(big);
                    FAIL(QTSP_ERR_NOMEM, "out of memory");
                }
                big->s = ns;
                cap = nc;
            }
            big->s[big->n++] = (qtsp_json_big_span){body + (q + 1 - body), n};
            kept -= n;
        }
        p = e + 1;
    }
    if (big->n == 0)
        return qtsp_json_parse_object(body, len, out);
    /* pass 2: the body with placeholders, parsed by jansson */
    size_t cap2 = kept + big->n * BIG_PLACEHOLDER_MAX + 1;
    char *sk = malloc(cap2);
    if (!sk) {
        qtsp_json_big_cleanup(big);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    size_t o = 0;
    p = body;
    for (size_t i = 0; i < big->n; i++) {
        size_t seg = (size_t)(big->s[i].p - p);
        memcpy(sk + o, p, seg);
        o += seg;
        o += (size_t)snprintf(sk + o, cap2 - o, "\\u0001big-%s-%zu", hx, i);
        p = big->s[i].p + big->s[i].len;
    }
    memcpy(sk + o, p, (size_t)(end - p));
    o += (size_t)(end - p);
    qtsp_status rc = qtsp_json_parse_object(sk, o, out);
    OPENSSL_cleanse(sk, o); /* it may carry secrets (a SAD) */
    free(sk);
    if (rc != QTSP_OK)
        qtsp_json_big_cleanup(big);
    return rc;
}

void qtsp_json_big_cleanup(qtsp_json_big *big)
{
    if (!big)
        return;
    free(big->s);
    memset(big, 0, sizeof *big);
}

/* The index of the placeholder s (of n bytes), or (size_t)-1. */
static size_t big_index(const qtsp_json_big *big, const char *s, size_t n)
{
    if (!big || !big->n || n <= big->tag_len || n > big->tag_len + 20 ||
        memcmp(s, big->tag, big->tag_len) != 0)
        return (size_t)-1;
    size_t i = 0;
    for (size_t k = big->tag_len; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return (size_t)-1;
        i = i * 10 + (size_t)(s[k] - '0');
    }
    return i < big->n ? i : (size_t)-1;
}

int qtsp_json_big_get(const qtsp_json_big *big, const json_t *v, const char **p, size_t *len)
{
    if (!json_is_string(v))
        return 0;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    size_t i = big_index(big, s, n);
    if (i != (size_t)-1) {
        *p = big->s[i].p;
        *len = big->s[i].len;
    } else {
        *p = s;
        *len = n;
    }
    return 1;
}

char *qtsp_json_big_take(const qtsp_json_big *big, const json_t *v, size_t *len)
{
    if (!json_is_string(v))
        return NULL;
    size_t i = big_index(big, json_string_value(v), json_string_length(v));
    if (i == (size_t)-1)
        return NULL;
    *len = big->s[i].len;
    return big->s[i].p;
}

int qtsp_json_big_is(const qtsp_json_big *big, const json_t *v)
{
    return json_is_string(v) &&
           big_index(big, json_string_value(v), json_string_length(v)) != (size_t)-1;
}
