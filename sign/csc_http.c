/* CSC API v2 and the signer's own routes over HTTP (sign/csc_http.h): route
 * tables on core/api.h and handlers that turn requests into calls of the
 * transport-free core (sign/csc.h). */
#include "sign/csc_http.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/api.h"
#include "core/codec.h"
#include "core/http.h"
#include "core/json.h"

#define CSC_MAX_BODY (16 * 1024)
/* a full authorisation: max_hashes (1000) base64 SHA-512 digests */
#define CSC_MAX_HASH_BODY (256 * 1024)
#define CSC_SMALL_BODY 1024 /* info, login, revoke: optional bodies */
#define BASIC_MAX 512       /* "user_id:password" */

/* The CSC access token of auth/login (RFC 6750). */
static qtsp_status csc_auth(void *ctx, const qtsp_api_req *req, qtsp_principal *out)
{
    const char *tok = qtsp_api_bearer(req);
    ENSURE(tok != NULL, QTSP_ERR_AUTH, "missing Authorization: Bearer access token");
    char uid[QTSP_CSC_ID_MAX];
    TRY(qtsp_csc_token_check(ctx, tok, uid));
    snprintf(out->name, sizeof out->name, "signer:%s", uid);
    snprintf(out->id, sizeof out->id, "%s", uid);
    out->roles = 0;
    return QTSP_OK;
}

/* The slow lane (core/api.h): auth/login's argon2id (the only request with
 * HTTP Basic) waits apart, so a burst of logins never holds the workers
 * signHash needs. */
static int csc_slow(void *ctx, const qtsp_api_req *req)
{
    (void)ctx;
    const char *h = qtsp_api_header(req, "Authorization");
    return h && strncasecmp(h, "Basic ", 6) == 0;
}

/* CSC API v2 errors: {"error","error_description"} (CSC v2 10.1). */
static qtsp_status csc_error(void *ctx, int status, qtsp_status rc, const char *message,
                             qtsp_http_resp *resp)
{
    (void)ctx;
    const char *code = status == 401   ? "invalid_token"
                       : status == 403 ? "access_denied"
                       : status == 404 ? "not_found"
                       : status == 405 ? "method_not_allowed"
                       : status == 413 ? "request_too_large"
                       : status == 429 ? "quota_exceeded"
                       : status == 503 ? "temporarily_unavailable"
                       : status >= 500 ? "server_error"
                                       : "invalid_request";
    (void)rc;
    json_t *o = json_pack("{s:s,s:s}", "error", code, "error_description", message);
    if (!o) /* a message that is not UTF-8 cannot be JSON */
        o = json_pack("{s:s,s:s}", "error", code, "error_description", "request refused");
    return qtsp_api_reply(resp, status, o);
}

/* An optional JSON body (CSC clients send {} or nothing to these). */
static qtsp_status opt_body(const qtsp_api_req *req, const char *const *fields, json_t **out)
{
    if (req->raw_len == 0) {
        *out = json_object();
        ENSURE(*out != NULL, QTSP_ERR_NOMEM, "out of memory");
        return QTSP_OK;
    }
    json_t *o = NULL;
    TRY(qtsp_json_parse_object((const char *)req->raw, req->raw_len, &o));
    qtsp_status rc = qtsp_json_check_fields(o, fields);
    if (rc != QTSP_OK) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return QTSP_OK;
}

static const char *const k_info[] = {"lang", NULL};
static const char *const k_login[] = {"rememberMe", "clientData", NULL};
static const char *const k_revoke[] = {"token", "token_type_hint", "clientData", NULL};
static const char *const k_list[] = {"userID",   "credInfo",   "certificates",
                                     "certInfo", "authInfo",   "onlyValid",
                                     "lang",     "clientData", NULL};
static const char *const k_info_cred[] = {"credentialID", "certificates", "certInfo", "authInfo",
                                          "lang",         "clientData",   NULL};
static const char *const k_authorize[] = {
    "credentialID", "numSignatures", "hashes",     "hashAlgorithmOID",
    "OTP",          "description",   "clientData", NULL};
static const char *const k_send_otp[] = {"credentialID", "clientData", NULL};
static const char *const k_sign_hash[] = {"credentialID",     "SAD",        "hashes",
                                          "hashAlgorithmOID", "signAlgo",   "signAlgoParams",
                                          "operationMode",    "clientData", NULL};
static const char *const k_sign_doc[] = {
    "credentialID", "SAD", "documents", "operationMode", "signatureQualifier", "clientData", NULL};
static const char *const k_password[] = {"old_password", "new_password", NULL};

static qtsp_status h_info(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *body = NULL, *o = NULL;
    TRY(opt_body(req, k_info, &body));
    json_decref(body);
    TRY(qtsp_csc_info(ctx, &o));
    return qtsp_api_reply(resp, 200, o);
}

/* auth/login with HTTP Basic (RFC 7617) user_id:password (CSC v2 11.2). */
static qtsp_status h_login(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *body = NULL;
    TRY(opt_body(req, k_login, &body));
    const json_t *rm = json_object_get(body, "rememberMe");
    int bad = rm && !json_is_boolean(rm);
    json_decref(body);
    ENSURE(!bad, QTSP_ERR_INVALID, "rememberMe: must be true or false");
    const char *h = qtsp_api_header(req, "Authorization");
    ENSURE(h && strncasecmp(h, "Basic ", 6) == 0, QTSP_ERR_AUTH,
           "auth/login needs Authorization: Basic user_id:password");
    h += 6;
    while (*h == ' ')
        h++;
    char cred[BASIC_MAX + 1];
    size_t n = 0;
    if (qtsp_base64_decode(h, strlen(h), QTSP_B64_STD | QTSP_B64_PADDING, (unsigned char *)cred,
                           BASIC_MAX, &n) != QTSP_OK) {
        qtsp_err_clear();
        FAIL(QTSP_ERR_AUTH, "Authorization: Basic must be base64 of user_id:password");
    }
    cred[n] = '\0';
    char *colon = memchr(cred, ':', n);
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(colon != NULL && strlen(cred) == n, QTSP_ERR_AUTH,
               "Authorization: Basic must be base64 of user_id:password");
    *colon = '\0';
    json_t *o = NULL;
    TRY_OUT(qtsp_csc_login(ctx, cred, colon + 1, &o));
    rc = qtsp_api_reply(resp, 200, o);
out:
    OPENSSL_cleanse(cred, sizeof cred);
    return rc;
}

static qtsp_status h_revoke(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *body = NULL;
    TRY(opt_body(req, k_revoke, &body));
    const char *tok = NULL;
    qtsp_status rc = qtsp_json_get_string(body, "token", 0, &tok);
    const char *hint = NULL;
    if (rc == QTSP_OK)
        rc = qtsp_json_get_string(body, "token_type_hint", 0, &hint);
    if (rc == QTSP_OK && hint && strcmp(hint, "access_token") != 0)
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                          "token_type_hint: only access_token (no refresh tokens are issued)");
    if (rc == QTSP_OK)
        rc = qtsp_csc_revoke(ctx, req->who->id, tok ? tok : qtsp_api_bearer(req));
    json_decref(body);
    TRY(rc);
    return qtsp_http_resp_set(resp, 204, "application/json", "", 0);
}

static qtsp_status h_list(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *body = NULL, *o = NULL;
    TRY(opt_body(req, k_list, &body));
    qtsp_status rc = qtsp_csc_list(ctx, req->who->id, body, &o);
    json_decref(body);
    TRY(rc);
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_cred_info(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *o = NULL;
    TRY(qtsp_csc_cred_info(ctx, req->who->id, req->body, &o));
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_authorize(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *o = NULL;
    TRY(qtsp_csc_authorize(ctx, req->who->id, req->body, &o));
    return qtsp_api_reply(resp, 200, o);
}

/* Nothing to send: the OTP comes from the signer's authenticator app. */
static qtsp_status h_send_otp(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *id = NULL;
    TRY(qtsp_api_string(req, "credentialID", &id));
    json_t *o = NULL;
    TRY(qtsp_csc_cred_info(ctx, req->who->id, req->body, &o)); /* the signer's own only */
    json_decref(o);
    FAIL(QTSP_ERR_INVALID, "OTP: this credential's OTP is a TOTP (RFC 6238) from the signer's "
                           "authenticator app; nothing is sent");
}

static qtsp_status h_sign_hash(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    json_t *o = NULL;
    TRY(qtsp_csc_sign_hash(ctx, req->who->id, qtsp_api_header(req, QTSP_CSC_RP_HEADER), req->body,
                           &o));
    return qtsp_api_reply(resp, 200, o);
}

/* signDoc: the answer is written by the core straight into the response
 * (documents of megabytes: no JSON tree, no copy). */
static qtsp_status h_sign_doc(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    TRY(qtsp_http_resp_set(resp, 200, "application/json", "", 0));
    return qtsp_csc_sign_doc(ctx, req->who->id, qtsp_api_header(req, QTSP_CSC_RP_HEADER), req->body,
                             req->big, &resp->body);
}

/* ?limit=N of a paged list: 1..QTSP_HISTORY_PAGE_MAX; *limit 0 without it
 * (the policy's page). */
static qtsp_status page_limit(const qtsp_api_req *req, size_t *limit)
{
    const char *l = qtsp_api_query(req, "limit");
    size_t n = l ? strlen(l) : 0;
    *limit = 0;
    if (l) {
        ENSURE(n >= 1 && n <= 6 && strspn(l, "0123456789") == n, QTSP_ERR_INVALID, "limit: 1 to %d",
               QTSP_HISTORY_PAGE_MAX);
        *limit = (size_t)strtoul(l, NULL, 10);
        ENSURE(*limit >= 1 && *limit <= QTSP_HISTORY_PAGE_MAX, QTSP_ERR_INVALID, "limit: 1 to %d",
               QTSP_HISTORY_PAGE_MAX);
    }
    return QTSP_OK;
}

/* One page of the signer's documents, like the history: ?limit=N
 * (1..QTSP_HISTORY_PAGE_MAX; without it the policy's history_page),
 * ?after=CURSOR ("next" of the previous page). */
static qtsp_status h_documents(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    static const char *const allowed[] = {"limit", "after", NULL};
    TRY(qtsp_api_query_allow(req, allowed));
    size_t limit = 0;
    TRY(page_limit(req, &limit));
    json_t *o = NULL;
    TRY(qtsp_csc_documents(ctx, req->who->id, limit, qtsp_api_query(req, "after"), &o));
    return qtsp_api_reply(resp, 200, o);
}

/* RFC 6266 Content-Disposition: an ASCII filename (others replaced by
 * '_') and the UTF-8 one percent-encoded (RFC 8187). */
static qtsp_status disposition(qtsp_http_resp *resp, const char *name)
{
    char ascii[QTSP_ARCHIVE_NAME_MAX + 8], pct[3 * (QTSP_ARCHIVE_NAME_MAX + 8) + 1];
    char v[sizeof ascii + sizeof pct + 64];
    size_t a = 0, p = 0;
    static const char hexd[] = "0123456789ABCDEF";
    for (const unsigned char *s = (const unsigned char *)name; *s && a + 1 < sizeof ascii; s++) {
        unsigned char ch = *s;
        ascii[a++] =
            ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '%' ? (char)ch : '_';
        if (isalnum(ch) || strchr("!#$&+-.^_`|~", ch)) {
            pct[p++] = (char)ch;
        } else {
            pct[p++] = '%';
            pct[p++] = hexd[ch >> 4];
            pct[p++] = hexd[ch & 15];
        }
    }
    ascii[a] = pct[p] = '\0';
    snprintf(v, sizeof v, "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, pct);
    return qtsp_http_resp_header(resp, "Content-Disposition", v);
}

/* The archived document byte for byte (another signer's id: 404). */
static qtsp_status h_document(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *mt = NULL;
    char name[QTSP_ARCHIVE_NAME_MAX + 8];
    TRY(qtsp_http_resp_set(resp, 200, "application/octet-stream", "", 0));
    TRY(qtsp_csc_document_get(ctx, req->who->id, qtsp_api_param(req, "id"), &resp->body, &mt,
                              name));
    snprintf(resp->content_type, sizeof resp->content_type, "%s", mt);
    TRY(disposition(resp, name));
    return qtsp_http_resp_header(resp, "X-Content-Type-Options", "nosniff");
}

/* One page of the history (a signer may have signed millions of times:
 * never the whole of it in one answer). ?limit=N: up to N records
 * (1..QTSP_HISTORY_PAGE_MAX; without it the policy's history_page);
 * ?after=CURSOR: the page after the one whose "next" that was. */
static qtsp_status h_history(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    static const char *const allowed[] = {"limit", "after", NULL};
    TRY(qtsp_api_query_allow(req, allowed));
    size_t limit = 0; /* 0: the policy's page */
    TRY(page_limit(req, &limit));
    json_t *o = NULL;
    TRY(qtsp_csc_history(ctx, req->who->id, limit, qtsp_api_query(req, "after"), &o));
    return qtsp_api_reply(resp, 200, o);
}

/* The package and what is left of it: no query, no body. */
static qtsp_status h_quota(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    static const char *const none[] = {NULL};
    TRY(qtsp_api_query_allow(req, none));
    json_t *o = NULL;
    TRY(qtsp_csc_quota(ctx, req->who->id, &o));
    return qtsp_api_reply(resp, 200, o);
}

static qtsp_status h_password(void *ctx, const qtsp_api_req *req, qtsp_http_resp *resp)
{
    const char *old_pw = NULL, *new_pw = NULL;
    TRY(qtsp_api_string(req, "old_password", &old_pw));
    TRY(qtsp_api_string(req, "new_password", &new_pw));
    TRY(qtsp_csc_password_change(ctx, req->who->id, old_pw, new_pw));
    return qtsp_http_resp_set(resp, 204, "application/json", "", 0);
}

static const qtsp_api_route k_csc_routes[] = {
    {"POST", "/csc/v2/info", QTSP_API_PUBLIC, 0, NULL, NULL, CSC_SMALL_BODY, h_info},
    {"POST", "/csc/v2/auth/login", QTSP_API_PUBLIC, 0, NULL, NULL, CSC_SMALL_BODY, h_login},
    {"POST", "/csc/v2/auth/revoke", 0, 0, NULL, NULL, CSC_SMALL_BODY, h_revoke},
    {"POST", "/csc/v2/credentials/list", 0, 0, NULL, NULL, CSC_SMALL_BODY, h_list},
    {"POST", "/csc/v2/credentials/info", QTSP_API_BODY, 0, NULL, k_info_cred, 0, h_cred_info},
    {"POST", "/csc/v2/credentials/authorize", QTSP_API_BODY, 0, NULL, k_authorize,
     CSC_MAX_HASH_BODY, h_authorize},
    {"POST", "/csc/v2/credentials/sendOTP", QTSP_API_BODY, 0, NULL, k_send_otp, 0, h_send_otp},
    {"POST", "/csc/v2/signatures/signHash", QTSP_API_BODY, 0, NULL, k_sign_hash, CSC_MAX_HASH_BODY,
     h_sign_hash},
    /* its limit: policies/signing.yaml documents_max_body (big_max_body) */
    {"POST", "/csc/v2/signatures/signDoc", QTSP_API_BODY | QTSP_API_BIG_STRINGS, 0, NULL,
     k_sign_doc, 0, h_sign_doc},
};

static const char *const k_headers[] = {QTSP_CSC_RP_HEADER, NULL};

qtsp_status qtsp_csc_api_new(qtsp_csc *c, qtsp_api **out)
{
    qtsp_api_opts o = {
        .prefix = "/csc/v2/",
        .name = "csc",
        .routes = k_csc_routes,
        .n_routes = sizeof k_csc_routes / sizeof k_csc_routes[0],
        .ctx = c,
        .auth = csc_auth,
        .error = csc_error,
        .principal_kind = "signer",
        .max_body = CSC_MAX_BODY,
        .big_max_body = qtsp_csc_doc_max_body(c),
        .headers = k_headers,
        .slow = csc_slow,
        .slow_workers = 2,
    };
    return qtsp_api_new(&o, out);
}

static const qtsp_api_route k_signer_routes[] = {
    {"GET", "/api/v1/history", 0, 0, NULL, NULL, 0, h_history},
    {"GET", "/api/v1/quota", 0, 0, NULL, NULL, 0, h_quota},
    {"GET", "/api/v1/documents", 0, 0, NULL, NULL, 0, h_documents},
    {"GET", "/api/v1/documents/{id}", 0, 0, NULL, NULL, 0, h_document},
    {"POST", "/api/v1/password", QTSP_API_BODY, 0, NULL, k_password, 0, h_password},
};

qtsp_status qtsp_csc_signer_api_new(qtsp_csc *c, qtsp_api **out)
{
    qtsp_api_opts o = {
        .prefix = "/api/v1/",
        .name = "signer",
        .routes = k_signer_routes,
        .n_routes = sizeof k_signer_routes / sizeof k_signer_routes[0],
        .ctx = c,
        .auth = csc_auth,
        .principal_kind = "signer",
        .max_body = CSC_MAX_BODY,
    };
    return qtsp_api_new(&o, out);
}
