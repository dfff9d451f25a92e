/* RA over HTTP (interface.md "Registration Authority"): the route table of
 * /ra/v1/ on the JSON API layer (core/api.h, which authenticates, checks
 * roles, media type, body and fields, shapes errors and runs the worker
 * pool) and handlers that turn JSON into calls of the transport-free RA
 * (ra/ra.h). The only file of ra/ that knows HTTP. */
#include "ra/ra_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ca/audit.h"
#include "core/api.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/time.h"
#include "ra/ra.h"

#define RA_MAX_BODY (16 * 1024)

/* Operator bearer tokens (docs/security.md). */
static qtsp_status ra_auth(void *ctx, const qtsp_api_req *req, qtsp_principal *out)
{
    const char *h = qtsp_api_header(req, "Authorization");
    ENSURE(h != NULL, QTSP_ERR_AUTH, "missing Authorization: Bearer token");
    const char *tok = qtsp_api_bearer(req);
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
    const char *tok = qtsp_api_bearer(req);
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
        TRY(qtsp_parse_rfc3339("invalidity_date", inv_s, &inv));
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

/* ---- finding things (issue 16) ---- */

/* limit=N (1..QTSP_RA_PAGE_MAX), default 50. */
static qtsp_status query_limit(const qtsp_api_req *req, size_t *out)
{
    const char *s = qtsp_api_query(req, "limit");
    *out = 50;
    if (!s)
        return QTSP_OK;
    size_t n = strlen(s);
    ENSURE(n >= 1 && n <= 3 && strspn(s, "0123456789") == n, QTSP_ERR_INVALID, "limit: 1 to %d",
           QTSP_RA_PAGE_MAX);
    unsigned long v = strtoul(s, NULL, 10);
    ENSURE(v >= 1 && v <= QTSP_RA_PAGE_MAX, QTSP_ERR_INVALID, "limit: 1 to %d", QTSP_RA_PAGE_MAX);
    *out = (size_t)v;
    return QTSP_OK;
}

static const char *const q_search[] = {"national_id", "country", "id_type", "name", "email",
                                       "phone",       "limit",   "cursor",  NULL};

static qtsp_status h_subject_search(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_api_query_allow(req, q_search));
    qtsp_ra_search q = {.country = qtsp_api_query(req, "country"),
                        .national_id = qtsp_api_query(req, "national_id"),
                        .id_type = qtsp_api_query(req, "id_type"),
                        .name = qtsp_api_query(req, "name"),
                        .email = qtsp_api_query(req, "email"),
                        .phone = qtsp_api_query(req, "phone"),
                        .cursor = qtsp_api_query(req, "cursor")};
    TRY(query_limit(req, &q.limit));
    qtsp_actor who;
    actor_of(req, &who);
    json_t *o = NULL;
    TRY(qtsp_ra_subject_search(ctx, &who, &q, &o));
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_subject_get(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    qtsp_actor who;
    actor_of(req, &who);
    json_t *o = NULL;
    TRY(qtsp_ra_subject_get(ctx, &who, qtsp_api_param(req, "id"), &o));
    return qtsp_api_reply(resp, 200, o);
}

static const char *const q_list[] = {"status", "limit", "cursor", NULL};

static qtsp_status h_cert_list(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_api_query_allow(req, q_list));
    size_t limit;
    TRY(query_limit(req, &limit));
    const char *status = qtsp_api_query(req, "status");
    ENSURE(status, QTSP_ERR_INVALID, "status: valid, on-hold, revoked or expired");
    qtsp_actor who;
    actor_of(req, &who);
    json_t *o = NULL;
    TRY(qtsp_ra_cert_list(ctx, &who, status, limit, qtsp_api_query(req, "cursor"), &o));
    return qtsp_api_reply(resp, 200, o);
}

static const char *const q_format[] = {"format", NULL};

/* The certificate itself: DER (application/pkix-cert, RFC 2585) or PEM. */
static qtsp_status h_cert_download(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_api_query_allow(req, q_format));
    const char *fmt = qtsp_api_query(req, "format");
    ENSURE(!fmt || strcmp(fmt, "pem") == 0 || strcmp(fmt, "der") == 0, QTSP_ERR_INVALID,
           "format: pem or der");
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(path_serial(req, serial, &slen));
    int der = fmt && strcmp(fmt, "der") == 0;
    qtsp_buf b;
    qtsp_buf_init(&b, 128 * 1024);
    qtsp_status rc = qtsp_ra_cert_get(ctx, serial, slen, !der, &b);
    if (rc == QTSP_OK)
        rc = qtsp_http_resp_set(resp, 200, der ? "application/pkix-cert" : "application/x-pem-file",
                                b.data, b.len);
    qtsp_buf_cleanup(&b);
    return rc;
}

static const char *const q_audit[] = {"since", "until", "event",  "serial",
                                      "actor", "limit", "cursor", NULL};

static qtsp_status audit_collect(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)seq;
    json_error_t err;
    json_t *rec = json_loadb(body, len, 0, &err);
    ENSURE(rec && json_array_append_new(ctx, rec) == 0, QTSP_ERR_STORE_CORRUPT,
           "audit record not JSON");
    return QTSP_OK;
}

/* The auditor's read of the audit (ca/audit.h qtsp_audit_query). */
static qtsp_status h_audit(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_api_query_allow(req, q_audit));
    qtsp_audit_filter f = {0};
    TRY(query_limit(req, &f.limit));
    f.max_scan = 10000;
    const char *since = qtsp_api_query(req, "since"), *until = qtsp_api_query(req, "until");
    time_t t;
    if (since) {
        TRY(qtsp_parse_rfc3339("since", since, &t));
        f.since_ms = (int64_t)t * 1000;
    }
    if (until) {
        TRY(qtsp_parse_rfc3339("until", until, &t));
        f.until_ms = (int64_t)t * 1000 + 999;
    }
    ENSURE(!since || !until || f.since_ms <= f.until_ms, QTSP_ERR_INVALID, "since: after until");
    f.event = qtsp_api_query(req, "event");
    f.actor = qtsp_api_query(req, "actor");
    f.serial = qtsp_api_query(req, "serial");
    const char *cur = qtsp_api_query(req, "cursor");
    if (cur) {
        size_t n = strlen(cur);
        ENSURE(n >= 1 && n <= 19 && strspn(cur, "0123456789") == n, QTSP_ERR_INVALID,
               "cursor: not one of ours");
        f.after = strtoull(cur, NULL, 10);
    }
    json_t *arr = json_array();
    ENSURE(arr != NULL, QTSP_ERR_NOMEM, "out of memory");
    uint64_t next = 0;
    qtsp_status rc = qtsp_ra_audit_query(ctx, &f, audit_collect, arr, &next);
    if (rc != QTSP_OK) {
        json_decref(arr);
        return rc;
    }
    json_t *o = json_pack("{s:o}", "records", arr);
    if (o && next) {
        char n[24];
        snprintf(n, sizeof n, "%llu", (unsigned long long)next);
        json_object_set_new(o, "next", json_string(n));
    }
    return qtsp_api_reply(resp, 200, o);
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
    {"GET", "/ra/v1/subjects", 0, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "searching subjects",
     NULL, 0, h_subject_search},
    {"GET", "/ra/v1/subjects/{id}", 0, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE, "reading a subject",
     NULL, 0, h_subject_get},
    {"GET", "/ra/v1/certificates", 0, QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE | QTSP_ROLE_AUDITOR,
     "listing certificates", NULL, 0, h_cert_list},
    {"GET", "/ra/v1/certificates/{serial}", 0, 0, NULL, NULL, 0, h_cert_status},
    {"GET", "/ra/v1/certificates/{serial}/certificate", 0,
     QTSP_ROLE_RA_OFFICER | QTSP_ROLE_OFFICE | QTSP_ROLE_AUDITOR, "downloading a certificate", NULL,
     0, h_cert_download},
    {"GET", "/ra/v1/audit", 0, QTSP_ROLE_AUDITOR, "reading the audit", NULL, 0, h_audit},
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
