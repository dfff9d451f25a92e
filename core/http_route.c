/* HTTP routing: the route table copied at start, lookup by method and path
 * (exact, then longest prefix), media types. Immutable while serving. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http_int.h"

int http_method_is(const char *m, const char *want)
{
    /* HEAD is answered like GET; MHD drops the body. */
    if (strcmp(m, want) == 0)
        return 1;
    return strcmp(m, "HEAD") == 0 && strcmp(want, "GET") == 0;
}

/* Exact match wins; otherwise the longest prefix route. When the path is
 * known but not for this method, returns NULL with *path_known set and the
 * methods it has in allow. */
const http_route *http_route_find(const qtsp_http_server *srv, const char *method, const char *path,
                                  char *allow, size_t allow_cap, int *path_known)
{
    size_t plen = strlen(path);
    const http_route *best = NULL;
    *path_known = 0;
    allow[0] = '\0';
    /* Pass 1: the best matching path length (exact beats any prefix). */
    size_t match_len = 0;
    int match_exact = 0;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const http_route *r = &srv->routes[i];
        int exact = r->path_len == plen && memcmp(r->path, path, plen) == 0;
        int pre = r->prefix && r->path_len <= plen && memcmp(r->path, path, r->path_len) == 0;
        if (!exact && !pre)
            continue;
        if (exact && !match_exact) {
            match_exact = 1;
            match_len = plen;
        } else if (!match_exact && r->path_len > match_len) {
            match_len = r->path_len;
        }
    }
    /* Pass 2: among routes with that match, the one for this method. */
    for (size_t i = 0; i < srv->n_routes; i++) {
        const http_route *r = &srv->routes[i];
        int exact = r->path_len == plen && memcmp(r->path, path, plen) == 0;
        int pre = r->prefix && r->path_len <= plen && memcmp(r->path, path, r->path_len) == 0;
        if (match_exact ? !exact : !(pre && r->path_len == match_len))
            continue;
        *path_known = 1;
        if (http_method_is(method, r->method)) {
            best = r;
            break;
        }
        size_t al = strlen(allow);
        if (strstr(allow, r->method) == NULL && al + strlen(r->method) + 3 < allow_cap)
            snprintf(allow + al, allow_cap - al, "%s%s", al ? ", " : "", r->method);
    }
    return best;
}

/* Media type of a Content-Type value equals want, ignoring parameters and
 * case (RFC 9110 8.3.1). */
int http_media_type_is(const char *ct, const char *want, size_t want_len)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = 0;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
        n++;
    return n == want_len && strncasecmp(ct, want, n) == 0;
}

int http_has_body_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

void http_routes_free(http_route *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].method);
        free(r[i].path);
        free(r[i].content_type);
        free(r[i].name);
    }
    free(r);
}

static char *dup_or_null(const char *s, int *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = 1;
    return d;
}

qtsp_status http_routes_copy(const qtsp_route *routes, size_t n, http_route **out)
{
    http_route *all = calloc(n ? n : 1, sizeof *all);
    ENSURE(all != NULL, QTSP_ERR_NOMEM, "out of memory for routes");
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < n; i++) {
        const qtsp_route *r = &routes[i];
        ENSURE_OUT(r->method && r->path && r->path[0] == '/' && r->fn && r->name, QTSP_ERR_INVALID,
                   "route %zu lacks method, /path, handler or name", i);
        int fail = 0;
        http_route *d = &all[i];
        d->method = dup_or_null(r->method, &fail);
        d->path = dup_or_null(r->path, &fail);
        d->content_type = dup_or_null(r->content_type, &fail);
        d->name = dup_or_null(r->name, &fail);
        ENSURE_OUT(!fail, QTSP_ERR_NOMEM, "out of memory copying routes");
        d->path_len = strlen(d->path);
        d->ct_len = d->content_type ? strlen(d->content_type) : 0;
        d->prefix = r->prefix;
        d->max_body = r->max_body;
        d->fn = r->fn;
        d->ctx = r->ctx;
    }
out:
    if (rc != QTSP_OK) {
        http_routes_free(all, n);
        return rc;
    }
    *out = all;
    return QTSP_OK;
}
