/* The RA's HTTP API (/ra/v1/, interface.md "Registration Authority") on the
 * JSON API layer (core/api.h). The caller registers its routes
 * (qtsp_api_http_routes), may start its workers (qtsp_api_start_workers),
 * quiesces it before stopping HTTP and frees it (qtsp_api_free) after HTTP
 * stopped and before the RA. */
#ifndef QTSP_RA_RA_HTTP_H
#define QTSP_RA_RA_HTTP_H

#include "core/err.h"
#include "ra/ra.h"

typedef struct qtsp_api qtsp_api;

/* The RA's API over ra (borrowed: it must outlive the API): operator bearer
 * tokens, roles per route, 16 KiB bodies, the contract's error shape, a
 * full worker queue handled on the HTTP thread. *out owned by the caller. */
qtsp_status qtsp_ra_api_new(qtsp_ra *ra, qtsp_api **out) QTSP_MUST_USE;

#endif
