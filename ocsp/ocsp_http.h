/* HTTP binding of the OCSP responder (ocsp/ocsp_http.c): the only OCSP file
 * that knows the transport. Register the handlers as HTTP routes
 * with ctx = the qtsp_ocsp. */
#ifndef QTSP_OCSP_OCSP_HTTP_H
#define QTSP_OCSP_OCSP_HTTP_H

#include "core/err.h"

struct qtsp_http_req; /* the HTTP layer's request and response */
struct qtsp_http_resp;

/* POST /ocsp (content type application/ocsp-request; body limit
 * max_request_bytes + slack is the route's). GET /ocsp/ as a prefix route
 * (decoded from req->raw_path). Cacheable answers get Cache-Control
 * "max-age=N, public, no-transform, must-revalidate", Last-Modified, Expires
 * and ETag, and If-None-Match matching gives 304 without body; other answers
 * get "no-cache, no-store". An undecodable GET is answered with an OCSP
 * malformedRequest (200). With a signing queue, answers that need a fresh
 * signature are deferred (qtsp_http_defer) and completed from the signing
 * thread. Thread-safe. */
qtsp_status qtsp_ocsp_http_post(void *ctx, const struct qtsp_http_req *req,
                                struct qtsp_http_resp *resp) QTSP_MUST_USE;
qtsp_status qtsp_ocsp_http_get(void *ctx, const struct qtsp_http_req *req,
                               struct qtsp_http_resp *resp) QTSP_MUST_USE;

#endif
