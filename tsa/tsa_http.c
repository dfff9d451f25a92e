/* POST /tsa: the HTTP side of the TSA (see tsa_http.h). */
#include "tsa/tsa_http.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/http.h"
#include "tsa/tsa.h"

/* RFC 3161 3.4: rejections travel as TimeStampResp too, with status 200. */
static void reply_headers(qtsp_http_resp *resp)
{
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/timestamp-reply");
}

/* The core's answer must wait for the journal: suspend the request. */
static void *wait_http(void *ctx)
{
    return qtsp_http_defer(ctx);
}

/* The core's completion of a deferred request (any thread): the DER goes
 * out zero copy and is freed by the server once sent, on its own thread,
 * the one that allocated it. */
static void done_http(void *ctx, qtsp_status rc, unsigned char *der, size_t len)
{
    qtsp_http_deferred *d = ctx;
    qtsp_http_resp *resp = qtsp_http_deferred_resp(d);
    reply_headers(resp);
    if (der) {
        resp->ext_body = der;
        resp->ext_len = len;
        resp->free_fn = free;
        resp->free_ctx = der;
    }
    qtsp_http_complete(d, rc);
}

qtsp_status qtsp_tsa_http(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    /* Oversized bodies get a badDataFormat rejection from the core, not a crash. */
    int pending = 0;
    qtsp_tsa_async async = {wait_http, done_http, (void *)req};
    TRY(qtsp_tsa_respond_async(ctx, req->body, req->body_len, &resp->body, &async, &pending));
    if (pending)
        return QTSP_OK; /* answered by done_http once signed and journalled */
    reply_headers(resp);
    return QTSP_OK;
}
