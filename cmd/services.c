/* Assembly of the services and their routes (interface.md HTTP paths). */
#include "cmd/services.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/crl.h"
#include "ca/crl_http.h"
#include "core/api.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/periodic.h"
#include "ocsp/ocsp.h"
#include "ocsp/ocsp_http.h"
#include "ra/ra.h"
#include "ra/ra_http.h"
#include "tsa/tsa.h"
#include "tsa/tsa_http.h"

#define MAX_ROUTES 48

struct qtsp_services {
    qtsp_app *app;
    unsigned char *root_der, *issuing_der;
    int root_len, issuing_len;
    qtsp_route routes[MAX_ROUTES];
    size_t n_routes;
    qtsp_ra *ra;
    qtsp_api *ra_api; /* /ra/v1/ (ra/ra_http.c) */
    qtsp_tsa *tsa;
    qtsp_ocsp *ocsp;
    qtsp_signq *signq; /* fresh OCSP answers and time-stamp tokens */
    qtsp_crl_publisher *crl;
    STACK_OF(X509) * tsa_chain;
    qtsp_notify *notify;
    char policies_dir[QTSP_PATH_MAX];
    char secrets_dir[QTSP_PATH_MAX];
    qtsp_periodic *sweeper; /* hold-lapse sweeper (leader only) */
    qtsp_archive *archive;  /* signed documents (sign/archive.h) */
};

static qtsp_status add_route(qtsp_services *s, qtsp_route r)
{
    ENSURE(s->n_routes < MAX_ROUTES, QTSP_ERR_INTERNAL, "too many routes");
    s->routes[s->n_routes++] = r;
    return QTSP_OK;
}

static qtsp_status serve_root(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_services *s = ctx;
    return qtsp_http_resp_set(resp, 200, "application/pkix-cert", s->root_der, (size_t)s->root_len);
}

static qtsp_status serve_issuing(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_services *s = ctx;
    return qtsp_http_resp_set(resp, 200, "application/pkix-cert", s->issuing_der,
                              (size_t)s->issuing_len);
}

qtsp_status qtsp_services_new(qtsp_app *app, qtsp_services **out)
{
    qtsp_services *s = calloc(1, sizeof *s);
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    s->app = app;
    s->root_len = i2d_X509(app->root, &s->root_der);
    s->issuing_len = i2d_X509(app->issuing, &s->issuing_der);
    ENSURE_OUT(s->root_len > 0 && s->issuing_len > 0, QTSP_ERR_CRYPTO,
               "cannot encode the CA certificates");
    TRY_OUT(add_route(
        s, (qtsp_route){"GET", "/certs/root-ca.crt", 0, 0, NULL, serve_root, s, "certs"}));
    TRY_OUT(add_route(
        s, (qtsp_route){"GET", "/certs/issuing-ca.crt", 0, 0, NULL, serve_issuing, s, "certs"}));

    TRY_OUT(qtsp_config_path(&app->cfg, "policies", s->policies_dir, sizeof s->policies_dir));
    TRY_OUT(qtsp_config_path(&app->cfg, "secrets", s->secrets_dir, sizeof s->secrets_dir));
    char notify_policy[QTSP_PATH_MAX + 16];
    snprintf(notify_policy, sizeof notify_policy, "%s/notify.yaml", s->policies_dir);
    TRY_OUT(qtsp_notify_new(notify_policy, s->secrets_dir, &s->notify));
    qtsp_ra_deps rd = {app->store,      app->hsm,       app->issuing,      app->issuing_key,
                       s->policies_dir, s->secrets_dir, app->cfg.base_url, s->notify};
    TRY_OUT(qtsp_ra_new(&rd, &s->ra));
    TRY_OUT(qtsp_ra_api_new(s->ra, &s->ra_api));
    s->n_routes +=
        qtsp_api_http_routes(s->ra_api, s->routes + s->n_routes, MAX_ROUTES - s->n_routes);
    /* RA requests wait on the token and the disk: their own threads (started
     * before HTTP serves), so the HTTP workers stay free for OCSP and TSA */
    TRY_OUT(qtsp_api_start_workers(s->ra_api, (unsigned)(4 * app->cfg.http_workers)));

    /* TSA: the TSU certificate is issued by the root; certReq adds the root */
    char path[QTSP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/tsa.yaml", s->policies_dir);
    s->tsa_chain = sk_X509_new_null();
    ENSURE_OUT(s->tsa_chain && sk_X509_push(s->tsa_chain, app->root) > 0, QTSP_ERR_NOMEM,
               "out of memory");
    TRY_OUT(qtsp_tsa_new(path, app->tsa, s->tsa_chain, app->tsa_key, app->store, &s->tsa));
    /* one signing thread per HTTP thread: signatures are made in batches,
     * back to back (ca/signq.h) */
    unsigned signers = app->cfg.http_workers < QTSP_SIGNQ_THREADS_MAX
                           ? (unsigned)app->cfg.http_workers
                           : QTSP_SIGNQ_THREADS_MAX;
    TRY_OUT(qtsp_signq_new(signers, &s->signq));
    qtsp_tsa_set_signq(s->tsa, s->signq);
    /* OCSP: delegated responder for the issuing CA's certificates. The body
     * limit is above the policy's max_request_bytes so that an oversized
     * request gets an OCSP malformedRequest rather than an HTTP 413. */
    snprintf(path, sizeof path, "%s/ocsp.yaml", s->policies_dir);
    TRY_OUT(qtsp_ocsp_new(path, app->issuing, app->ocsp, app->ocsp_key, app->store, &s->ocsp));
    qtsp_ocsp_set_signq(s->ocsp, s->signq);
    TRY_OUT(add_route(s, (qtsp_route){"POST", "/ocsp", 0, 65536, "application/ocsp-request",
                                      qtsp_ocsp_http_post, s->ocsp, "ocsp_post"}));
    TRY_OUT(add_route(
        s, (qtsp_route){"GET", "/ocsp/", 1, 0, NULL, qtsp_ocsp_http_get, s->ocsp, "ocsp_get"}));
    /* CRLs: full + delta for the issuing CA, and the root's */
    char pub[QTSP_PATH_MAX];
    snprintf(path, sizeof path, "%s/crl.yaml", s->policies_dir);
    TRY_OUT(qtsp_config_path(&app->cfg, "public", pub, sizeof pub));
    TRY_OUT(qtsp_crl_publisher_new(path, pub, app->issuing, app->issuing_key, app->root,
                                   app->root_key, app->cfg.base_url, app->store, &s->crl));
    TRY_OUT(
        add_route(s, (qtsp_route){"GET", "/crl/", 1, 0, NULL, qtsp_crl_http_get, s->crl, "crl"}));
    TRY_OUT(cmd_archive_open(app, &s->archive));
    TRY_OUT(
        add_route(s, (qtsp_route){"POST", "/tsa", 0, QTSP_TSA_MAX_QUERY,
                                  "application/timestamp-query", qtsp_tsa_http, s->tsa, "tsa"}));
out:
    if (rc != QTSP_OK) {
        qtsp_services_free(s);
        return rc;
    }
    *out = s;
    return QTSP_OK;
}

/* Seconds until a certificate expires (negative once expired). */
static long long cert_seconds_left(X509 *x)
{
    int days = 0, secs = 0;
    time_t now = qtsp_now();
    ASN1_TIME *t = ASN1_TIME_set(NULL, now);
    if (!t || !ASN1_TIME_diff(&days, &secs, t, X509_get0_notAfter(x)))
        days = secs = 0;
    ASN1_TIME_free(t);
    return (long long)days * 86400 + secs;
}

/* The responder and TSU certificates have short lives: say so well before
 * they expire (an expired one makes every answer unverifiable). */
static void warn_expiring(const char *what, const char *how, X509 *x)
{
    long long left = cert_seconds_left(x);
    if (left <= 0)
        LOG_ERROR("the %s certificate has EXPIRED: its answers will not verify; %s", what, how);
    else if (left < 30LL * 86400)
        LOG_WARN("the %s certificate expires in %lld days; %s", what, left / 86400, how);
}

/* Records hold lapses in the audit log and the indexes every sweep_interval
 * (1 s shipped); the status itself is exact without it
 * (qtsp_cert_status_effective). */
static int64_t sweep_once(qtsp_periodic *p, void *arg)
{
    qtsp_services *s = arg;
    qtsp_err_clear();
    size_t n = 0;
    if (qtsp_ra_sweep_lapses(s->ra, qtsp_now(), &n) != QTSP_OK)
        LOG_ERROR("hold sweeper: %s", qtsp_err_message());
    else if (n)
        LOG_INFO("hold sweeper: %zu hold(s) lapsed", n);
    return QTSP_PERIODIC_INTERVAL;
}

qtsp_status qtsp_services_start(qtsp_services *s, int leader)
{
    if (leader) {
        warn_expiring("OCSP responder", "run qtsp rekey ocsp", s->app->ocsp);
        warn_expiring("TSA unit", "run qtsp rekey tsa", s->app->tsa);
        warn_expiring("issuing CA", "plan a key ceremony for its successor", s->app->issuing);
    }
    TRY(qtsp_notify_start(s->notify));
    /* every process serves CRLs from memory; publications are serialised
     * across processes and a process that finds one already made reloads it */
    TRY(qtsp_crl_publish(s->crl, 0));
    TRY(qtsp_crl_start(s->crl));
    if (!leader)
        return QTSP_OK;
    TRY(qtsp_periodic_start("hold sweeper", 1000 * qtsp_ra_sweep_interval_s(s->ra), 0, sweep_once,
                            s, &s->sweeper));
    TRY(qtsp_ra_keypool_start(s->ra));
    TRY(qtsp_archive_start(s->archive)); /* removes what outlived its retention, audited */
    return QTSP_OK;
}

void qtsp_services_quiesce(qtsp_services *s)
{
    if (s)
        qtsp_api_quiesce(s->ra_api);
}

void qtsp_services_free(qtsp_services *s)
{
    if (!s)
        return;
    qtsp_ra_keypool_stop(s->ra);
    qtsp_signq_free(s->signq); /* signs what is queued; its callbacks use the TSA and OCSP */
    s->signq = NULL;
    qtsp_periodic_stop(s->sweeper);
    qtsp_archive_free(s->archive);
    qtsp_api_free(s->ra_api); /* its workers use the RA */
    qtsp_ra_free(s->ra);
    qtsp_tsa_free(s->tsa);
    qtsp_ocsp_free(s->ocsp);
    qtsp_crl_publisher_free(s->crl);
    sk_X509_free(s->tsa_chain);
    qtsp_notify_free(s->notify); /* after the sweeper and the RA: nothing sends any more */
    OPENSSL_free(s->root_der);
    OPENSSL_free(s->issuing_der);
    free(s);
}

const qtsp_route *qtsp_services_routes(const qtsp_services *s)
{
    return s->routes;
}
size_t qtsp_services_route_count(const qtsp_services *s)
{
    return s->n_routes;
}

qtsp_status qtsp_services_metrics(void *ctx, qtsp_buf *out)
{
    qtsp_services *s = ctx;
    uint64_t used = 0, map = 0;
    TRY(qtsp_store_stats(s->app->store, &used, &map));
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_store_used_bytes Bytes used in the LMDB store.\n"
                        "# TYPE qtsp_store_used_bytes gauge\nqtsp_store_used_bytes %llu\n"
                        "# HELP qtsp_store_map_bytes Current LMDB map size.\n"
                        "# TYPE qtsp_store_map_bytes gauge\nqtsp_store_map_bytes %llu\n"
                        "# HELP qtsp_hsm_sessions Open PKCS#11 sessions.\n"
                        "# TYPE qtsp_hsm_sessions gauge\nqtsp_hsm_sessions %u\n",
                        (unsigned long long)used, (unsigned long long)map,
                        qtsp_hsm_session_count(s->app->hsm)));
    unsigned long long rescans = 0, searches = 0;
    qtsp_hsm_lookup_stats(s->app->hsm, &rescans, &searches);
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_hsm_key_rescans_total Whole-token rescans after a key "
                        "lookup missed the index (keys made by another process).\n"
                        "# TYPE qtsp_hsm_key_rescans_total counter\n"
                        "qtsp_hsm_key_rescans_total %llu\n"
                        "# HELP qtsp_hsm_key_searches_total Searches by label after a miss.\n"
                        "# TYPE qtsp_hsm_key_searches_total counter\n"
                        "qtsp_hsm_key_searches_total %llu\n",
                        rescans, searches));
    TRY(qtsp_ra_metrics(s->ra, out));
    TRY(qtsp_api_metrics(s->ra_api, out));
    TRY(qtsp_operator_metrics(out));
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_certificate_expiry_seconds Seconds until a service "
                        "certificate expires.\n"
                        "# TYPE qtsp_certificate_expiry_seconds gauge\n"
                        "qtsp_certificate_expiry_seconds{cert=\"root-ca\"} %lld\n"
                        "qtsp_certificate_expiry_seconds{cert=\"issuing-ca\"} %lld\n"
                        "qtsp_certificate_expiry_seconds{cert=\"ocsp\"} %lld\n"
                        "qtsp_certificate_expiry_seconds{cert=\"tsa\"} %lld\n",
                        cert_seconds_left(s->app->root), cert_seconds_left(s->app->issuing),
                        cert_seconds_left(s->app->ocsp), cert_seconds_left(s->app->tsa)));
    unsigned long long jobs = 0, batches = 0;
    qtsp_signq_stats(s->signq, &jobs, &batches);
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_signq_signatures_total Signatures made on the signing "
                        "queue.\n"
                        "# TYPE qtsp_signq_signatures_total counter\n"
                        "qtsp_signq_signatures_total %llu\n"
                        "# HELP qtsp_signq_batches_total Batches they were made in.\n"
                        "# TYPE qtsp_signq_batches_total counter\n"
                        "qtsp_signq_batches_total %llu\n",
                        jobs, batches));
    TRY(qtsp_tsa_metrics(s->tsa, out));
    TRY(qtsp_ocsp_metrics(s->ocsp, out));
    TRY(qtsp_notify_metrics(s->notify, out));
    return QTSP_OK;
}
