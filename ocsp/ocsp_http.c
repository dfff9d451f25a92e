/* HTTP binding of the OCSP responder: POST /ocsp and GET /ocsp/{b64}
 * (RFC 6960 A.1, RFC 9919 / RFC 5019 6 for the cache headers). */
#include <stdio.h>
#include <string.h>

#include "ocsp/ocsp_http.h"

#include "core/clock.h"
#include "core/http.h"
#include "ocsp/ocsp.h"

#define GET_MAX 4096 /* decoded GET request; RFC 5019 uses GET below 255 bytes */

/* The core agreed to sign on the queue: suspend the request. */
static void *wait_http(void *ctx)
{
    return qtsp_http_defer(ctx);
}

/* The queued answer is ready (signing thread): send it. */
static void done_http(void *ctx, qtsp_status rc, const unsigned char *der, size_t len)
{
    qtsp_http_deferred *d = ctx;
    qtsp_http_resp *resp = qtsp_http_deferred_resp(d);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/ocsp-response");
    if (rc == QTSP_OK)
        rc = qtsp_buf_append(&resp->body, der, len);
    if (rc == QTSP_OK)
        rc = qtsp_http_resp_header(resp, "Cache-Control", "no-cache, no-store");
    qtsp_http_complete(d, rc);
}

static qtsp_status answer(qtsp_ocsp *o, const qtsp_http_req *req, const unsigned char *der,
                          size_t len, int is_get, qtsp_http_resp *resp)
{
    qtsp_ocsp_info info;
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/ocsp-response");
    int pending = 0;
    qtsp_ocsp_async async = {wait_http, done_http, (void *)req};
    TRY(qtsp_ocsp_respond_async(o, der, len, &resp->body, &info, &async, &pending));
    if (pending)
        return QTSP_OK; /* answered by done_http once the signing queue has signed it */
    if (!info.cacheable) {
        TRY(qtsp_http_resp_header(resp, "Cache-Control", "no-cache, no-store"));
        return QTSP_OK;
    }
    time_t now = qtsp_now();
    long long age = info.next_update > now ? (long long)(info.next_update - now) : 0;
    /* A shared cache must not keep a "good" for hours after a hold: the
     * answer stays valid to nextUpdate (Expires) for clients that keep it,
     * but HTTP caches revalidate after http_max_age (policy). */
    if (age > info.http_max_age)
        age = info.http_max_age;
    char v[160];
    snprintf(v, sizeof v, "max-age=%lld, public, no-transform, must-revalidate", age);
    TRY(qtsp_http_resp_header(resp, "Cache-Control", v));
    qtsp_format_http_date(info.this_update, v, sizeof v);
    TRY(qtsp_http_resp_header(resp, "Last-Modified", v));
    qtsp_format_http_date(info.next_update, v, sizeof v);
    TRY(qtsp_http_resp_header(resp, "Expires", v));
    TRY(qtsp_http_resp_header(resp, "ETag", info.etag));
    if (is_get && qtsp_http_etag_matches(qtsp_http_header(req, "If-None-Match"), info.etag)) {
        resp->status = 304; /* RFC 9110 15.4.5: no body */
        qtsp_buf_reset(&resp->body);
    }
    return QTSP_OK;
}

qtsp_status qtsp_ocsp_http_post(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    return answer(ctx, req, req->body, req->body_len, 0, resp);
}

qtsp_status qtsp_ocsp_http_get(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    /* raw_path is the path as sent ("/ocsp/{b64}", maybe under a base
     * path): the request is everything after the route's "/ocsp/". */
    const char *raw = req->raw_path ? req->raw_path : "";
    const char *at = strstr(raw, "/ocsp/");
    if (at)
        raw = at + 6;
    unsigned char der[GET_MAX];
    size_t len = 0;
    if (qtsp_ocsp_get_decode(raw, der, sizeof der, &len) != QTSP_OK) {
        qtsp_err_clear();
        len = 0; /* answered as malformedRequest, not as an HTTP error */
    }
    return answer(ctx, req, der, len, 1, resp);
}
