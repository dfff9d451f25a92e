/* The web portal's server side (docs/portal.md): the web/ folder at "/" and
 * "/web/", and the session endpoint /portal/v1/session that turns a
 * credential of the public APIs into a sealed HttpOnly cookie
 * (core/session.h). The pages themselves use only the public APIs. */
#ifndef QTSP_CMD_PORTAL_H
#define QTSP_CMD_PORTAL_H

#include <stddef.h>

#include "cmd/app.h"
#include "core/api.h"
#include "core/http.h"
#include "core/session.h"
#include "ra/ra.h"

typedef struct cmd_portal cmd_portal;

/* Loads the web files (cmd_web_dir()), policies/portal.yaml of app's home
 * (the shipped one for a home made before it existed) and the session key
 * (secrets/portal.key, made when absent). ra verifies operator tokens at
 * login. *out owned by the caller. */
qtsp_status cmd_portal_new(qtsp_app *app, qtsp_ra *ra, cmd_portal **out) QTSP_MUST_USE;
/* Writes its core/http routes to routes[0..cap); returns how many. */
size_t cmd_portal_routes(cmd_portal *p, qtsp_route *routes, size_t cap);
/* The sessions every API the portal calls accepts (qtsp_api_set_sessions). */
const qtsp_sessions *cmd_portal_sessions(const cmd_portal *p);
/* Starts the session endpoint's worker threads (argon2id at login). */
qtsp_status cmd_portal_start(cmd_portal *p) QTSP_MUST_USE;
void cmd_portal_quiesce(cmd_portal *p);
void cmd_portal_free(cmd_portal *p);

#endif
