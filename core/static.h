/* Static files served from memory (the web portal's web/ folder,
 * docs/portal.md). A folder is read once at start: later changes on disk
 * are not seen until the next start. Each file is answered with its media
 * type (from the extension; files of other extensions are not loaded), a
 * strong ETag (its SHA-256) honoured in If-None-Match (304), "Cache-Control:
 * no-cache" (the browser revalidates) and the caller's security headers. */
#ifndef QTSP_CORE_STATIC_H
#define QTSP_CORE_STATIC_H

#include <stddef.h>

#include "core/err.h"
#include "core/http.h"

typedef struct qtsp_static qtsp_static;

#define QTSP_STATIC_MAX_FILES 256
#define QTSP_STATIC_MAX_FILE ((size_t)2 * 1024 * 1024)
#define QTSP_STATIC_MAX_DEPTH 4

/* A header added to every answer (name and value: static strings). */
typedef struct qtsp_static_header {
    const char *name, *value;
} qtsp_static_header;

/* Reads every file of dir (subfolders up to QTSP_STATIC_MAX_DEPTH deep;
 * names starting with '.' skipped) with a known extension: .html .css .js
 * .mjs .json .svg .png .ico .txt .woff2. url_prefix ("/web/") is what the
 * files are served under; index (a file name of dir, e.g. "index.html") is
 * also served at "/" when not NULL. headers[0..n_headers) go on every
 * answer (borrowed: must outlive st). QTSP_ERR_IO when dir cannot be read
 * or lacks index, QTSP_ERR_TOO_BIG past the limits. *out owned by the
 * caller. */
qtsp_status qtsp_static_load(const char *dir, const char *url_prefix, const char *index,
                             const qtsp_static_header *headers, size_t n_headers,
                             qtsp_static **out) QTSP_MUST_USE;
void qtsp_static_free(qtsp_static *st);
/* How many files were loaded. */
size_t qtsp_static_count(const qtsp_static *st);

/* core/http handler (ctx: the qtsp_static): the file at req->path (the
 * index for "/"), 304 when If-None-Match matches, 404 for anything else. */
qtsp_status qtsp_static_http(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp);

#endif
