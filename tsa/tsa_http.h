/* The TSA's HTTP adapter (POST /tsa): the only tsa/ file that knows the HTTP
 * layer. Declared with the HTTP types' struct tags so that this header pulls
 * in no transport. */
#ifndef QTSP_TSA_TSA_HTTP_H
#define QTSP_TSA_TSA_HTTP_H

#include "core/err.h"

struct qtsp_http_req;
struct qtsp_http_resp;

/* HTTP handler for POST /tsa (route: content type application/timestamp-query,
 * max_body QTSP_TSA_MAX_QUERY). ctx is the qtsp_tsa. Always 200
 * application/timestamp-reply with the DER, rejections included (RFC 3161
 * 3.4); non-OK only when the core could not write even a rejection. A
 * token that waits for the journal is answered later: the request is
 * deferred and the core's completion (qtsp_tsa_respond_async) completes
 * it, zero copy; outside a server (no deferral possible) the handler waits.
 * Thread-safe. */
qtsp_status qtsp_tsa_http(void *ctx, const struct qtsp_http_req *req,
                          struct qtsp_http_resp *resp) QTSP_MUST_USE;

#endif
