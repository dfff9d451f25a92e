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

/* The core's completion of a deferred request (any thread): the DER goes
 * out zero copy and is freed by the server once sent, on its own thread,
 * the one that allocated it. */
static void answer(void *ctx, qtsp_status rc, unsigned char *der, size_t len)
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
    qtsp_tsa *tsa = ctx;
    qtsp_tsa_job *job = NULL;
    /* Oversized bodies get a badDataFormat rejection from the core, not a crash. */
    qtsp_status rc = qtsp_tsa_respond_begin(tsa, req->body, req->body_len, &resp->body, &job);
    if (rc == QTSP_OK && job) {
        /* The worker thread does not wait for the disk: the connection is
         * suspended until the core completes the job. */
        qtsp_http_deferred *d = qtsp_http_defer(req);
        if (d) {
            qtsp_tsa_job_start(job, answer, d);
            return QTSP_OK;
        }
        rc = qtsp_tsa_job_wait(job, &resp->body);
    }
    if (rc == QTSP_OK)
        reply_headers(resp);
    return rc;
}
