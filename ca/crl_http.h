/* HTTP binding of the CRL publisher (ca/crl_http.c): the only CRL file that
 * knows the transport. */
#ifndef QTSP_CA_CRL_HTTP_H
#define QTSP_CA_CRL_HTTP_H

#include "core/err.h"

struct qtsp_http_req; /* the HTTP layer's request and response */
struct qtsp_http_resp;

/* HTTP handler for the prefix route GET /crl/ (ctx = the publisher):
 * /crl/qualified.crl, /crl/qualified-delta.crl, /crl/root.crl ->
 * 200 application/pkix-crl with Last-Modified (thisUpdate), Expires
 * (nextUpdate), ETag ("<name>-<cRLNumber hex>"), Cache-Control (public,
 * max-age = min(policy http_max_age, seconds to nextUpdate)); If-None-Match
 * matching the ETag (or "*") -> 304. Unknown name or nothing published yet
 * -> QTSP_ERR_NOT_FOUND (the server answers 404). The body is the served DER
 * by reference (ext_body), released when the response is done. */
qtsp_status qtsp_crl_http_get(void *ctx, const struct qtsp_http_req *req,
                              struct qtsp_http_resp *resp) QTSP_MUST_USE;

#endif
