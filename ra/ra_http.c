/* RA over HTTP (interface.md "Registration Authority"): the route table of
 * /ra/v1/ on the JSON API layer (core/api.h, which authenticates, checks
 * roles, media type, body and fields, shapes errors and runs the worker
 * pool) and handlers that turn JSON into calls of the transport-free RA
 * (ra/ra.h). The only file of ra/ that knows HTTP. */
#define _XOPEN_SOURCE 700 /* strptime */
#include "ra/ra_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/api.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/time.h"
#include "ra/ra.h"

#define RA_MAX_BODY (16 * 1024)

/* The bearer token of "Authorization: Bearer <id>.<secret>", or NULL. */
static const char *bearer(const qtsp_api_req *req)
{
    const char *h = qtsp_api_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    return tok;
}

/* Operator bearer tokens (docs/security.md). */
static qtsp_status ra_auth(void *ctx, const qtsp_api_req *req, qtsp_principal *out)
{
    const char *h = qtsp_api_header(req, "Authorization");
    ENSURE(h != NULL, QTSP_ERR_AUTH, "missing Authorization: Bearer token");
    const char *tok = bearer(req);
    ENSURE(tok != NULL, QTSP_ERR_AUTH, "Authorization must be a Bearer token");
    qtsp_actor who;
    TRY(qtsp_ra_operator_auth(ctx, tok, &who));
    snprintf(out->name, sizeof out->name, "%s", who.name);
    out->roles = who.roles;
    return QTSP_OK;
}

/* The slow lane (core/api.h): tokens that need argon2id. */
static int ra_auth_slow(void *ctx, const qtsp_api_req *req)
{
    const char *tok = bearer(req);
    return tok != NULL && qtsp_ra_operator_auth_is_slow(ctx, tok);
}

static void actor_of(const qtsp_api_req *req, qtsp_actor *who)
{
    snprintf(who->name, sizeof who->name, "%s", req->who->name);
    who->roles = req->who->roles;
}

/* A serial path parameter; unknown forms are 404 (no such resource). */
static qtsp_status path_serial(const qtsp_api_req *req, unsigned char *serial, size_t *slen)
{
    const char *hex = qtsp_api_param(req, "serial");
    ENSURE(hex && strlen(hex) < 64, QTSP_ERR_NOT_FOUND, "no such certificate");
    if (qtsp_serial_from_hex(hex, serial, slen) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_NOT_FOUND, "no certificate with serial %s", hex);
    }
    return QTSP_OK;
}

static qtsp_status h_enrol(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    qtsp_actor who;
    actor_of(req, &who);
    char id[40];
    TRY(qtsp_ra_enrol(ctx, &who, req->body, id));
    return qtsp_api_reply(resp, 201, json_pack("{s:s}", "subject_id", id));
}

static qtsp_status h_issue(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *sid = qtsp_api_param(req, "id");
    ENSURE(strlen(sid) < 40, QTSP_ERR_NOT_FOUND, "no such subject");
    qtsp_actor who;
    actor_of(req, &who);
    qtsp_issued is;
    memset(&is, 0, sizeof is);
    TRY(qtsp_ra_issue(ctx, &who, sid, &is));
    qtsp_status rc = qtsp_api_reply(resp, 201,
                                    json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "serial", is.serial_hex,
                                              "certificate", is.certificate_pem, "activation",
                                              "user_id", is.user_id, "password", is.password,
                                              "otpauth_uri", is.otpauth_uri));
    qtsp_issued_cleanup(&is);
    return rc;
}

static qtsp_status h_subject_certs(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *sid = qtsp_api_param(req, "id");
    ENSURE(strlen(sid) < 40, QTSP_ERR_NOT_FOUND, "no such subject");
    json_t *o = NULL;
    TRY(qtsp_ra_subject_certs(ctx, sid, &o));
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_cert_status(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(path_serial(req, serial, &slen));
    json_t *o = NULL;
    TRY(qtsp_ra_cert_status(ctx, serial, slen, &o));
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_hold(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(path_serial(req, serial, &slen));
    const char *v = NULL;
    TRY(qtsp_api_string(req, "caller_verification", &v));
    qtsp_actor who;
    actor_of(req, &who);
    time_t until = 0;
    TRY(qtsp_ra_hold(ctx, &who, serial, slen, v, &until));
    char t[32];
    qtsp_format_rfc3339(until, t, sizeof t);
    return qtsp_api_reply(resp, 200, json_pack("{s:s,s:s}", "status", "on-hold", "hold_until", t));
}

static qtsp_status h_release(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(path_serial(req, serial, &slen));
    qtsp_actor who;
    actor_of(req, &who);
    TRY(qtsp_ra_release(ctx, &who, serial, slen));
    return qtsp_api_reply(resp, 200, json_pack("{s:s}", "status", "valid"));
}

/* RFC 3339 UTC "2026-11-24T10:00:00Z", a real date and time. */
static qtsp_status parse_utc(const char *s, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    ENSURE(end && *end == '\0', QTSP_ERR_INVALID,
           "invalidity_date: RFC 3339 UTC, e.g. 2026-11-24T10:00:00Z");
    time_t t = (time_t)qtsp_timegm(&tm);
    /* strptime accepts 2026-02-30: formatting back must give the same text */
    char back[32];
    qtsp_format_rfc3339(t, back, sizeof back);
    ENSURE(strcmp(back, s) == 0, QTSP_ERR_INVALID,
           "invalidity_date: %s is not a valid date and time", s);
    *out = t;
    return QTSP_OK;
}

static qtsp_status h_terminate(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(path_serial(req, serial, &slen));
    const char *reason_s = NULL, *check = NULL, *inv_s = NULL;
    TRY(qtsp_api_string(req, "reason", &reason_s));
    TRY(qtsp_api_string(req, "identity_check", &check));
    int reason = -1; /* unknown names are refused by qtsp_ra_terminate with the list */
    if (qtsp_reason_parse(reason_s, &reason) != QTSP_OK) {
        qtsp_err_clear();
        reason = -1;
    }
    time_t inv = 0;
    if (json_object_get(req->body, "invalidity_date")) {
        TRY(qtsp_api_string(req, "invalidity_date", &inv_s));
        TRY(parse_utc(inv_s, &inv));
    }
    qtsp_actor who;
    actor_of(req, &who);
    TRY(qtsp_ra_terminate(ctx, &who, serial, slen, reason, check, inv));
    return qtsp_api_reply(resp, 200, json_pack("{s:s}", "status", "revoked"));
}

static qtsp_status h_hotline(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *nid = NULL, *phone = NULL, *v = NULL;
    TRY(qtsp_api_string(req, "national_id", &nid));
    TRY(qtsp_api_string(req, "phone", &phone));
    TRY(qtsp_api_string(req, "caller_verification", &v));
    qtsp_actor who;
    actor_of(req, &who);
    json_t *held = NULL;
    time_t until = 0;
    TRY(qtsp_ra_hotline_hold(ctx, &who, nid, phone, v, &held, &until));
    char t[32];
    qtsp_format_rfc3339(until, t, sizeof t);
    return qtsp_api_reply(resp, 200, json_pack("{s:o,s:s}", "held", held, "hold_until", t));
}

static const char *const k_none[] = {NULL};
static const char *const k_hold[] = {"caller_verification", NULL};
static const char *const k_terminate[] = {"reason", "identity_check", "invalidity_date", NULL};
static const char *const k_hotline[] = {"national_id", "phone", "caller_verification", NULL};

/* Enrolment checks its own fields (qtsp_ra_enrol, shared with the CLI). */
static const qtsp_api_route k_routes[] = {
    {"POST", "/ra/v1/subjects", QTSP_API_BODY, QTSP_ROLE_RA_OFFICER, "enrolment", NULL, 0, h_enrol},
    {"POST", "/ra/v1/subjects/{id}/certificates", QTSP_API_BODY, QTSP_ROLE_RA_OFFICER, "issuance",
     k_none, 0, h_issue},
    {"GET", "/ra/v1/subjects/{id}/certificates", 0, 0, NULL, NULL, 0, h_subject_certs},
    {"GET", "/ra/v1/certificates/{serial}", 0, 0, NULL, NULL, 0, h_cert_status},
    {"POST", "/ra/v1/certificates/{serial}/hold", QTSP_API_BODY | QTSP_API_URGENT,
     QTSP_ROLE_HOTLINE, "hold", k_hold, 0, h_hold},
    {"POST", "/ra/v1/certificates/{serial}/release", QTSP_API_BODY,
     QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "release", k_none, 0, h_release},
    {"POST", "/ra/v1/certificates/{serial}/terminate", QTSP_API_BODY, QTSP_ROLE_OFFICE,
     "termination", k_terminate, 0, h_terminate},
    {"POST", "/ra/v1/hotline/hold", QTSP_API_BODY | QTSP_API_URGENT, QTSP_ROLE_HOTLINE, "hold",
     k_hotline, 0, h_hotline},
};

qtsp_status qtsp_ra_api_new(qtsp_ra *ra, qtsp_api **out)
{
    qtsp_api_opts o = {
        .prefix = "/ra/v1/",
        .name = "ra",
        .routes = k_routes,
        .n_routes = sizeof k_routes / sizeof k_routes[0],
        .ctx = ra,
        .auth = ra_auth,
        .principal_kind = "operator",
        .max_body = RA_MAX_BODY,
        .slow = ra_auth_slow, /* one argon2id at a time per process (ra/operator.c) */
        .slow_workers = 1,
    };
    return qtsp_api_new(&o, out);
}
