/* Static files from memory (core/static.h). */
#include "core/static.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/codec.h"

typedef struct static_file {
    char *url; /* "/web/app.js" */
    const char *type;
    unsigned char *data;
    size_t len;
    char etag[32 + 3]; /* "\"" + 32 hex + "\"" */
} static_file;

struct qtsp_static {
    static_file files[QTSP_STATIC_MAX_FILES];
    size_t n;
    const static_file *index;
    const qtsp_static_header *headers;
    size_t n_headers;
};

static const struct {
    const char *ext, *type;
} TYPES[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strcmp(dot, TYPES[i].ext) == 0)
            return TYPES[i].type;
    return NULL;
}

static qtsp_status read_all(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    qtsp_status rc = QTSP_OK;
    struct stat sb;
    unsigned char *d = NULL;
    ENSURE_OUT(fstat(fileno(f), &sb) == 0, QTSP_ERR_IO, "cannot stat %s", path);
    ENSURE_OUT((size_t)sb.st_size <= QTSP_STATIC_MAX_FILE, QTSP_ERR_TOO_BIG, "%s: over %zu bytes",
               path, QTSP_STATIC_MAX_FILE);
    d = malloc((size_t)sb.st_size + 1);
    ENSURE_OUT(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(fread(d, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size, QTSP_ERR_IO,
               "cannot read %s", path);
    *out = d;
    *len = (size_t)sb.st_size;
    d = NULL;
out:
    free(d);
    fclose(f);
    return rc;
}

static qtsp_status add_file(qtsp_static *st, const char *path, const char *url, const char *type)
{
    ENSURE(st->n < QTSP_STATIC_MAX_FILES, QTSP_ERR_TOO_BIG, "more than %d static files",
           QTSP_STATIC_MAX_FILES);
    static_file *f = &st->files[st->n];
    f->url = strdup(url);
    ENSURE(f->url != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = read_all(path, &f->data, &f->len);
    if (rc != QTSP_OK) {
        free(f->url);
        f->url = NULL;
        return rc;
    }
    f->type = type;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(f->data, f->len, md);
    f->etag[0] = '"';
    qtsp_hex_encode(md, 16, f->etag + 1);
    snprintf(f->etag + 33, 2, "\"");
    st->n++;
    return QTSP_OK;
}

static qtsp_status walk(qtsp_static *st, const char *dir, const char *url, int depth)
{
    ENSURE(depth <= QTSP_STATIC_MAX_DEPTH, QTSP_ERR_TOO_BIG, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    ENSURE(d != NULL, QTSP_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    qtsp_status rc = QTSP_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096], u[1024];
        int pn = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        int un = snprintf(u, sizeof u, "%s%s", url, e->d_name);
        ENSURE_OUT(pn > 0 && (size_t)pn < sizeof p && un > 0 && (size_t)un < sizeof u,
                   QTSP_ERR_TOO_BIG, "path too long under %s", dir);
        struct stat sb;
        if (stat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            ENSURE_OUT((size_t)un + 1 < sizeof u, QTSP_ERR_TOO_BIG, "path too long under %s", dir);
            u[un] = '/';
            u[un + 1] = '\0';
            TRY_OUT(walk(st, p, u, depth + 1));
        } else if (S_ISREG(sb.st_mode) && type_of(e->d_name)) {
            TRY_OUT(add_file(st, p, u, type_of(e->d_name)));
        }
    }
out:
    closedir(d);
    return rc;
}

static const static_file *find(const qtsp_static *st, const char *url)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->files[i].url, url) == 0)
            return &st->files[i];
    return NULL;
}

qtsp_status qtsp_static_load(const char *dir, const char *url_prefix, const char *index,
                             const qtsp_static_header *headers, size_t n_headers, qtsp_static **out)
{
    qtsp_static *st = calloc(1, sizeof *st);
    ENSURE(st != NULL, QTSP_ERR_NOMEM, "out of memory");
    st->headers = headers;
    st->n_headers = n_headers;
    qtsp_status rc = walk(st, dir, url_prefix, 0);
    if (rc == QTSP_OK && index) {
        char u[1024];
        snprintf(u, sizeof u, "%s%s", url_prefix, index);
        st->index = find(st, u);
        if (!st->index)
            rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "%s has no %s", dir, index);
    }
    if (rc != QTSP_OK) {
        qtsp_static_free(st);
        return rc;
    }
    *out = st;
    return QTSP_OK;
}

void qtsp_static_free(qtsp_static *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++) {
        free(st->files[i].url);
        free(st->files[i].data);
    }
    free(st);
}

size_t qtsp_static_count(const qtsp_static *st)
{
    return st->n;
}

qtsp_status qtsp_static_http(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    const qtsp_static *st = ctx;
    const static_file *f = strcmp(req->path, "/") == 0 ? st->index : find(st, req->path);
    ENSURE(f != NULL, QTSP_ERR_NOT_FOUND, "no such resource");
    for (size_t i = 0; i < st->n_headers; i++)
        TRY(qtsp_http_resp_header(resp, st->headers[i].name, st->headers[i].value));
    TRY(qtsp_http_resp_header(resp, "ETag", f->etag));
    TRY(qtsp_http_resp_header(resp, "Cache-Control", "no-cache"));
    if (qtsp_http_etag_matches(qtsp_http_header(req, "If-None-Match"), f->etag)) {
        resp->status = 304;
        snprintf(resp->content_type, sizeof resp->content_type, "%s", f->type);
        return QTSP_OK;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "%s", f->type);
    resp->ext_body = f->data;
    resp->ext_len = f->len;
    return QTSP_OK;
}
