/* Strict multipart/form-data (RFC 7578, RFC 2046 5.1.1): see core/multipart.h. */
#define _GNU_SOURCE 1 /* memmem */
#include "core/multipart.h"

#include <string.h>
#include <strings.h>

/* Longest boundary (RFC 2046 5.1.1). */
#define BOUNDARY_MAX 70

static int is_bchar(int c)
{
    /* bchars := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." /
     * "/" / ":" / "=" / "?" / " " (not last) */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c) != NULL);
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* One "; name=value" parameter at *s (after the ';'): name into name (cap),
 * value (token or quoted-string without escapes) into val (cap). */
static qtsp_status next_param(const char **s, const char *what, char *name, size_t ncap, char *val,
                              size_t vcap)
{
    const char *p = skip_ws(*s);
    size_t n = 0;
    while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t') {
        ENSURE(n + 1 < ncap, QTSP_ERR_INVALID, "%s: parameter name too long", what);
        name[n++] = *p++;
    }
    name[n] = '\0';
    ENSURE(n > 0 && *p == '=', QTSP_ERR_INVALID, "%s: malformed parameter", what);
    p++;
    size_t v = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            ENSURE(*p && *p != '\\' && (unsigned char)*p >= 0x20 && *p != 0x7f, QTSP_ERR_INVALID,
                   "%s: parameter %s: bad quoted string", what, name);
            ENSURE(v + 1 < vcap, QTSP_ERR_INVALID, "%s: parameter %s too long", what, name);
            val[v++] = *p;
        }
        p++;
    } else {
        for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
            ENSURE((unsigned char)*p > 0x20 && *p != 0x7f && *p != '"', QTSP_ERR_INVALID,
                   "%s: parameter %s: bad character", what, name);
            ENSURE(v + 1 < vcap, QTSP_ERR_INVALID, "%s: parameter %s too long", what, name);
            val[v++] = *p;
        }
    }
    val[v] = '\0';
    p = skip_ws(p);
    ENSURE(*p == '\0' || *p == ';', QTSP_ERR_INVALID, "%s: malformed parameter %s", what, name);
    *s = *p == ';' ? p + 1 : p;
    return QTSP_OK;
}

/* The boundary of a multipart/form-data Content-Type into b (BOUNDARY_MAX + 1). */
static qtsp_status boundary_of(const char *ct, char *b)
{
    static const char mt[] = "multipart/form-data";
    ENSURE(ct != NULL, QTSP_ERR_INVALID, "Content-Type must be multipart/form-data");
    const char *p = skip_ws(ct);
    ENSURE(strncasecmp(p, mt, sizeof mt - 1) == 0, QTSP_ERR_INVALID,
           "Content-Type must be multipart/form-data");
    p = skip_ws(p + sizeof mt - 1);
    ENSURE(*p == ';' || *p == '\0', QTSP_ERR_INVALID, "Content-Type must be multipart/form-data");
    b[0] = '\0';
    if (*p == ';')
        p++;
    while (*p) {
        char name[32], val[BOUNDARY_MAX + 2];
        TRY(next_param(&p, "Content-Type", name, sizeof name, val, sizeof val));
        if (strcasecmp(name, "boundary") != 0)
            continue; /* charset and the like: no meaning here */
        ENSURE(b[0] == '\0', QTSP_ERR_INVALID, "Content-Type: boundary given twice");
        size_t n = strlen(val);
        ENSURE(n >= 1 && n <= BOUNDARY_MAX && val[n - 1] != ' ', QTSP_ERR_INVALID,
               "Content-Type: boundary must be 1..%d characters", BOUNDARY_MAX);
        for (size_t i = 0; i < n; i++)
            ENSURE(is_bchar((unsigned char)val[i]), QTSP_ERR_INVALID,
                   "Content-Type: boundary has a character outside RFC 2046 bchars");
        memcpy(b, val, n + 1);
    }
    ENSURE(b[0] != '\0', QTSP_ERR_INVALID, "Content-Type: multipart/form-data without boundary");
    return QTSP_OK;
}

static qtsp_status copy_text(const char *what, const char *v, char *out, size_t cap)
{
    size_t n = strlen(v);
    ENSURE(n < cap, QTSP_ERR_INVALID, "%s longer than %zu bytes", what, cap - 1);
    memcpy(out, v, n + 1);
    return QTSP_OK;
}

/* One header line (no CRLF, NUL-terminated) of a part. */
static qtsp_status part_header(char *line, qtsp_mp_part *part, int *seen_cd, int *seen_ct)
{
    char *colon = strchr(line, ':');
    ENSURE(colon != NULL, QTSP_ERR_INVALID, "multipart: part header without ':'");
    *colon = '\0';
    const char *v = skip_ws(colon + 1);
    if (strcasecmp(line, "Content-Type") == 0) {
        ENSURE(!*seen_ct, QTSP_ERR_INVALID, "multipart: Content-Type given twice in a part");
        *seen_ct = 1;
        return copy_text("multipart: part Content-Type", v, part->content_type,
                         sizeof part->content_type);
    }
    ENSURE(strcasecmp(line, "Content-Disposition") == 0, QTSP_ERR_INVALID,
           "multipart: part header %.64s not allowed (only Content-Disposition and Content-Type)",
           line);
    ENSURE(!*seen_cd, QTSP_ERR_INVALID, "multipart: Content-Disposition given twice in a part");
    *seen_cd = 1;
    static const char fd[] = "form-data";
    ENSURE(strncasecmp(v, fd, sizeof fd - 1) == 0, QTSP_ERR_INVALID,
           "multipart: Content-Disposition must be form-data");
    const char *p = skip_ws(v + sizeof fd - 1);
    ENSURE(*p == ';' || *p == '\0', QTSP_ERR_INVALID,
           "multipart: Content-Disposition must be form-data");
    if (*p == ';')
        p++;
    int have_name = 0, have_file = 0;
    while (*p) {
        char name[16], val[QTSP_MP_FILENAME_MAX];
        TRY(next_param(&p, "multipart: Content-Disposition", name, sizeof name, val, sizeof val));
        if (strcasecmp(name, "name") == 0) {
            ENSURE(!have_name && val[0], QTSP_ERR_INVALID,
                   "multipart: Content-Disposition: one non-empty name");
            have_name = 1;
            TRY(copy_text("multipart: field name", val, part->name, sizeof part->name));
        } else if (strcasecmp(name, "filename") == 0) {
            ENSURE(!have_file, QTSP_ERR_INVALID, "multipart: filename given twice");
            have_file = 1;
            TRY(copy_text("multipart: filename", val, part->filename, sizeof part->filename));
        } else {
            FAIL(QTSP_ERR_INVALID, "multipart: Content-Disposition parameter %s not allowed", name);
        }
    }
    ENSURE(have_name, QTSP_ERR_INVALID, "multipart: Content-Disposition without name");
    return QTSP_OK;
}

qtsp_status qtsp_multipart_parse(const char *content_type, const unsigned char *body, size_t len,
                                 qtsp_mp_part *parts, size_t cap, size_t *n)
{
    char b[BOUNDARY_MAX + 1];
    TRY(boundary_of(content_type, b));
    /* delimiter "\r\n--" boundary; the first one without the CRLF */
    char delim[BOUNDARY_MAX + 5] = "\r\n--";
    size_t blen = strlen(b), dlen = blen + 4;
    memcpy(delim + 4, b, blen);
    ENSURE(body != NULL && len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0,
           QTSP_ERR_INVALID, "multipart: the body must start with the boundary");
    size_t at = dlen - 2, count = 0;
    for (;;) {
        /* after a delimiter: "--" closes, CRLF opens a part */
        ENSURE(len - at >= 2, QTSP_ERR_INVALID, "multipart: body ends inside a delimiter");
        if (body[at] == '-' && body[at + 1] == '-') {
            at += 2;
            ENSURE(len == at || (len == at + 2 && body[at] == '\r' && body[at + 1] == '\n'),
                   QTSP_ERR_INVALID, "multipart: data after the closing boundary");
            break;
        }
        ENSURE(body[at] == '\r' && body[at + 1] == '\n', QTSP_ERR_INVALID,
               "multipart: boundary not followed by CRLF");
        at += 2;
        ENSURE(count < cap, QTSP_ERR_TOO_BIG, "multipart: more than %zu parts", cap);
        qtsp_mp_part part;
        memset(&part, 0, sizeof part);
        int seen_cd = 0, seen_ct = 0;
        for (int lines = 0;; lines++) {
            const unsigned char *eol = NULL;
            size_t room = len - at < QTSP_MP_LINE_MAX + 2 ? len - at : QTSP_MP_LINE_MAX + 2;
            eol = memmem(body + at, room, "\r\n", 2);
            ENSURE(eol != NULL, QTSP_ERR_INVALID,
                   "multipart: part header line missing its CRLF or longer than %d bytes",
                   QTSP_MP_LINE_MAX);
            size_t ll = (size_t)(eol - (body + at));
            if (ll == 0) {
                at += 2;
                break;
            }
            ENSURE(lines < QTSP_MP_HEADERS_MAX, QTSP_ERR_INVALID,
                   "multipart: more than %d header lines in a part", QTSP_MP_HEADERS_MAX);
            char line[QTSP_MP_LINE_MAX + 1];
            for (size_t i = 0; i < ll; i++) {
                unsigned char c = body[at + i];
                ENSURE((c >= 0x20 && c != 0x7f) || c == '\t', QTSP_ERR_INVALID,
                       "multipart: control character in a part header");
                line[i] = (char)c;
            }
            line[ll] = '\0';
            TRY(part_header(line, &part, &seen_cd, &seen_ct));
            at += ll + 2;
        }
        ENSURE(seen_cd, QTSP_ERR_INVALID, "multipart: part without Content-Disposition");
        const unsigned char *end = memmem(body + at, len - at, delim, dlen);
        ENSURE(end != NULL, QTSP_ERR_INVALID,
               "multipart: part not closed by the boundary (truncated body?)");
        part.data = body + at;
        part.len = (size_t)(end - (body + at));
        parts[count++] = part;
        at = (size_t)(end - body) + dlen;
    }
    ENSURE(count > 0, QTSP_ERR_INVALID, "multipart: no parts");
    *n = count;
    return QTSP_OK;
}

const qtsp_mp_part *qtsp_multipart_get(const qtsp_mp_part *parts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}
