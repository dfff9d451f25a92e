/* The web portal's server side (cmd/portal.h, docs/portal.md). */
#include "cmd/portal.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/static.h"
#include "core/yaml.h"
#include "ra/operator.h"

struct cmd_portal {
    qtsp_static *files;
    qtsp_sessions *sessions;
    qtsp_api *api; /* /portal/v1/ */
    qtsp_ra *ra;
};

/* No inline script or style, nothing from elsewhere, not framed; images
 * from the page itself and the QR code's data: URL (docs/portal.md). */
static const qtsp_static_header WEB_HEADERS[] = {
    {"Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
     "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
     "frame-ancestors 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Cross-Origin-Opener-Policy", "same-origin"},
};

static qtsp_status reply_session(const cmd_portal *p, const qtsp_api_req *req,
                                 const qtsp_session *s, qtsp_http_resp *resp)
{
    char *cookie = malloc(QTSP_SESSION_SET_COOKIE_MAX);
    ENSURE(cookie != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_session_set_cookie(p->sessions, s, qtsp_api_via_tls(req), cookie,
                                             QTSP_SESSION_SET_COOKIE_MAX);
    if (rc == QTSP_OK)
        rc = qtsp_api_reply(resp, 200,
                            json_pack("{s:s,s:s,s:s,s:s,s:I}", "kind", s->kind, "name", s->label,
                                      "roles", s->roles, "csrf", s->csrf, "idle_timeout",
                                      (json_int_t)qtsp_sessions_idle_s(p->sessions)));
    if (rc == QTSP_OK)
        rc = qtsp_http_resp_header(resp, "Set-Cookie", cookie);
    OPENSSL_cleanse(cookie, QTSP_SESSION_SET_COOKIE_MAX);
    free(cookie);
    return rc;
}

/* POST /portal/v1/session {"kind":"operator","token"} or
 * {"kind":"signer","user","token"(CSC access token)}. */
static qtsp_status h_login(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    cmd_portal *p = ctx;
    const char *kind = NULL, *token = NULL;
    TRY(qtsp_api_string(req, "kind", &kind));
    TRY(qtsp_api_string(req, "token", &token));
    ENSURE(strlen(token) < sizeof((qtsp_session *)0)->token, QTSP_ERR_INVALID, "token: too long");
    char label[128] = "", roles[96] = "";
    if (strcmp(kind, "operator") == 0) {
        ENSURE(json_object_get(req->body, "user") == NULL, QTSP_ERR_INVALID,
               "user: not allowed for an operator");
        qtsp_actor who;
        TRY(qtsp_ra_operator_auth(p->ra, token, &who));
        const char *name = strncmp(who.name, "operator:", 9) == 0 ? who.name + 9 : who.name;
        snprintf(label, sizeof label, "%.100s", name);
        for (unsigned bit = 1; bit <= QTSP_ROLE_AUDITOR; bit <<= 1)
            if (who.roles & bit) {
                size_t n = strlen(roles);
                snprintf(roles + n, sizeof roles - n, "%s%s", n ? "," : "",
                         qtsp_role_name((qtsp_role)bit));
            }
    } else if (strcmp(kind, "signer") == 0) {
        /* the CSC access token is checked by the CSC API at each call */
        const char *user = NULL;
        TRY(qtsp_api_string(req, "user", &user));
        ENSURE(*user && strlen(user) < sizeof label, QTSP_ERR_INVALID, "user: 1..127 characters");
        snprintf(label, sizeof label, "%s", user);
    } else {
        FAIL(QTSP_ERR_INVALID, "kind: must be operator or signer");
    }
    qtsp_session s;
    qtsp_status rc = qtsp_session_init(&s, kind, token, label, roles, qtsp_now());
    if (rc == QTSP_OK)
        rc = reply_session(p, req, &s, resp);
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

/* GET /portal/v1/session: who the cookie's session is, and its CSRF token
 * for the page that was reloaded; the session's activity is renewed. */
static qtsp_status h_whoami(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    cmd_portal *p = ctx;
    qtsp_session s;
    TRY(qtsp_session_open(p->sessions, qtsp_api_header(req, "Cookie"), qtsp_now(), &s));
    qtsp_status rc = reply_session(p, req, &s, resp);
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

/* DELETE /portal/v1/session: the cookie removed (with the page's CSRF
 * token when a session is there; a stale one is removed all the same). */
static qtsp_status h_logout(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    cmd_portal *p = ctx;
    qtsp_session s;
    if (qtsp_session_open(p->sessions, qtsp_api_header(req, "Cookie"), qtsp_now(), &s) == QTSP_OK) {
        int ok = qtsp_session_csrf_ok(&s, qtsp_api_header(req, QTSP_SESSION_CSRF_HEADER));
        OPENSSL_cleanse(&s, sizeof s);
        ENSURE(ok, QTSP_ERR_FORBIDDEN,
               "the request lacks the page's " QTSP_SESSION_CSRF_HEADER " token");
    }
    qtsp_err_clear();
    char cookie[160];
    qtsp_session_clear_cookie(qtsp_api_via_tls(req), cookie, sizeof cookie);
    TRY(qtsp_api_reply(resp, 200, json_pack("{s:b}", "logged_out", 1)));
    return qtsp_http_resp_header(resp, "Set-Cookie", cookie);
}

static const char *const LOGIN_FIELDS[] = {"kind", "token", "user", NULL};

static const qtsp_api_route ROUTES[] = {
    {"POST", "/portal/v1/session", QTSP_API_PUBLIC | QTSP_API_BODY, 0, NULL, LOGIN_FIELDS, 4096,
     h_login},
    {"GET", "/portal/v1/session", QTSP_API_PUBLIC, 0, NULL, NULL, 0, h_whoami},
    {"DELETE", "/portal/v1/session", QTSP_API_PUBLIC, 0, NULL, NULL, 0, h_logout},
};

/* policies/portal.yaml: idle_timeout, max_age (s, m, h, d). */
static qtsp_status load_policy(qtsp_app *app, int64_t *idle, int64_t *max)
{
    char path[QTSP_PATH_MAX + 32];
    TRY(qtsp_app_policy(app, "portal.yaml", path, sizeof path));
    if (access(path, R_OK) != 0)
        snprintf(path, sizeof path, "%s/portal.yaml", cmd_policies_dir());
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {"version", "idle_timeout", "max_age", NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_duration(root, "idle_timeout", 1, idle));
    TRY_OUT(qtsp_yget_duration(root, "max_age", 1, max));
    if (*idle < 1 || *idle > *max || *max > 7 * 86400)
        TRY_OUT(qtsp_ynode_fail(root, "idle_timeout",
                                "must be at least 1s and at most max_age (at most 7d)"));
out:
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status cmd_portal_new(qtsp_app *app, qtsp_ra *ra, cmd_portal **out)
{
    cmd_portal *p = calloc(1, sizeof *p);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory");
    p->ra = ra;
    qtsp_status rc = QTSP_OK;
    int64_t idle = 0, max = 0;
    char key[QTSP_PATH_MAX];
    TRY_OUT(load_policy(app, &idle, &max));
    TRY_OUT(qtsp_config_path(&app->cfg, "secrets/portal.key", key, sizeof key));
    TRY_OUT(qtsp_sessions_new(key, idle, max, &p->sessions));
    TRY_OUT(qtsp_static_load(cmd_web_dir(), "/web/", "index.html", WEB_HEADERS,
                             sizeof WEB_HEADERS / sizeof WEB_HEADERS[0], &p->files));
    qtsp_api_opts o = {.prefix = "/portal/v1/",
                       .name = "portal",
                       .routes = ROUTES,
                       .n_routes = sizeof ROUTES / sizeof ROUTES[0],
                       .ctx = p,
                       .max_body = 4096};
    TRY_OUT(qtsp_api_new(&o, &p->api));
out:
    if (rc != QTSP_OK) {
        cmd_portal_free(p);
        return rc;
    }
    *out = p;
    return QTSP_OK;
}

size_t cmd_portal_routes(cmd_portal *p, qtsp_route *routes, size_t cap)
{
    size_t n = 0;
    if (n < cap)
        routes[n++] = (qtsp_route){"GET", "/", 0, 0, NULL, qtsp_static_http, p->files, "web"};
    if (n < cap)
        routes[n++] = (qtsp_route){"GET", "/web/", 1, 0, NULL, qtsp_static_http, p->files, "web"};
    return n + qtsp_api_http_routes(p->api, routes + n, cap - n);
}

const qtsp_sessions *cmd_portal_sessions(const cmd_portal *p)
{
    return p->sessions;
}

qtsp_status cmd_portal_start(cmd_portal *p)
{
    return qtsp_api_start_workers(p->api, 2);
}

void cmd_portal_quiesce(cmd_portal *p)
{
    if (p)
        qtsp_api_quiesce(p->api);
}

void cmd_portal_free(cmd_portal *p)
{
    if (!p)
        return;
    qtsp_api_free(p->api);
    qtsp_static_free(p->files);
    qtsp_sessions_free(p->sessions);
    free(p);
}
