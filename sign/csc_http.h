/* Remote signing over HTTP (docs/csc.md): the CSC API v2 under /csc/v2/
 * (its error shape {"error","error_description"}) and the signer's own
 * routes under /api/v1/ (history, password; the contract's error shape),
 * both on the JSON API layer (core/api.h) with the CSC access token as
 * "Authorization: Bearer". The only file of sign/csc* that knows HTTP.
 * The caller registers the routes (qtsp_api_http_routes), starts workers,
 * quiesces before HTTP stops and frees after (before the service). */
#ifndef QTSP_SIGN_CSC_HTTP_H
#define QTSP_SIGN_CSC_HTTP_H

#include "core/err.h"
#include "sign/csc.h"

typedef struct qtsp_api qtsp_api;

/* The relying party's header beside the signer's token (docs/csc.md). */
#define QTSP_CSC_RP_HEADER "X-QTSP-Relying-Party"

/* The /csc/v2/ API over c (borrowed: it must outlive the API). */
qtsp_status qtsp_csc_api_new(qtsp_csc *c, qtsp_api **out) QTSP_MUST_USE;
/* The signer's /api/v1/ API (history, password) over c. */
qtsp_status qtsp_csc_signer_api_new(qtsp_csc *c, qtsp_api **out) QTSP_MUST_USE;

#endif
