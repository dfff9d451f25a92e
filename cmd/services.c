/* Assembly of the services and their routes (interface.md HTTP paths). */
#include "cmd/services.h"

#include <openssl/pem.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/audit_anchor.h"
#include "ca/certdb.h"
#include "ca/crl.h"
#include "ca/crl_http.h"
#include "cmd/portal.h"
#include "core/api.h"
#include "core/clock.h"
#include "core/der.h"
#include "core/log.h"
#include "core/periodic.h"
#include "core/version.h"
#include "ocsp/ocsp.h"
#include "ocsp/ocsp_http.h"
#include "ra/ra.h"
#include "ra/ra_http.h"
#include "sign/csc.h"
#include "sign/csc_http.h"
#include "sign/usage.h"
#include "sign/validate_http.h"
#include "tsa/tsa.h"
#include "tsa/tsa_http.h"
#include "tsa/tsa_wal.h"

#define MAX_ROUTES 48

/* A file under /certs/, made once at start. */
typedef struct cert_file {
    const char *path, *type;
    unsigned char *data;
    size_t len;
} cert_file;

struct qtsp_services {
    qtsp_app *app;
    unsigned char *root_der, *issuing_der;
    int root_len, issuing_len;
    cert_file files[3]; /* ocsp.crt, tsa.crt (DER), chain.pem */
    /* certificate counts for /metrics, refreshed at most every 30 s */
    pthread_mutex_t counts_mu;
    int64_t counts_at_ms;
    uint64_t n_certs, n_held, n_revoked;
    qtsp_route routes[MAX_ROUTES];
    size_t n_routes;
    qtsp_ra *ra;
    qtsp_api *ra_api; /* /ra/v1/ (ra/ra_http.c) */
    qtsp_tsa *tsa;
    qtsp_tsa_wal *tsa_wal; /* serve: the TSA journal's write-ahead file */
    qtsp_ocsp *ocsp;
    qtsp_signq *signq; /* fresh OCSP answers and time-stamp tokens */
    qtsp_crl_publisher *crl;
    STACK_OF(X509) * tsa_chain;
    qtsp_notify *notify;
    char policies_dir[QTSP_PATH_MAX];
    char secrets_dir[QTSP_PATH_MAX];
    qtsp_periodic *sweeper;       /* hold-lapse sweeper (leader only) */
    qtsp_archive *archive;        /* signed documents (sign/archive.h) */
    qtsp_periodic *anchor;        /* audit anchoring (leader only) */
    qtsp_periodic *trim;          /* store pages dropped from the resident set (every process) */
    qtsp_usage *usage;            /* packages, relying parties, history (sign/usage.h) */
    qtsp_csc *csc;                /* remote signing (sign/csc.h) */
    qtsp_ades_services ades;      /* signDoc's TSA, OCSP, certificates and CRLs */
    cmd_ades_extras *ades_extras; /* their certificates and the root's current CRL */
    qtsp_api *csc_api;            /* /csc/v2/ */
    qtsp_api *signer_api;         /* /api/v1/ (the signer's own data) */
    qtsp_validator *validator;    /* POST /api/v1/validate (sign/validate.h) */
    qtsp_validate_store vstore;
    qtsp_validate_http vhttp;
    int leader;
    cmd_portal *portal; /* web/ and /portal/v1/session (cmd/portal.h) */
};

/* How often the leader anchors the audit chain (ca/audit_anchor.h); it also
 * does at shutdown. */
#define AUDIT_ANCHOR_INTERVAL_MS (10 * 60 * 1000)
/* how often, and above what growth, a process drops its mappings of the store */
#define STORE_TRIM_INTERVAL_MS 5000
#define STORE_TRIM_MIB 1

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

static qtsp_status serve_file(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    const cert_file *f = ctx;
    return qtsp_http_resp_set(resp, 200, f->type, f->data, f->len);
}

/* DER of x, or (pem) the PEM of every certificate of certs, into f. */
static qtsp_status make_file(cert_file *f, const char *path, X509 *const *certs, size_t n, int pem)
{
    f->path = path;
    f->type = pem ? "application/x-pem-file" : "application/pkix-cert";
    if (!pem) {
        int l = i2d_X509(certs[0], &f->data);
        ENSURE(l > 0, QTSP_ERR_CRYPTO, "cannot encode %s", path);
        f->len = (size_t)l;
        return QTSP_OK;
    }
    BIO *b = BIO_new(BIO_s_mem());
    ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < n; i++)
        ENSURE_OUT(PEM_write_bio_X509(b, certs[i]) == 1, QTSP_ERR_CRYPTO, "cannot encode %s", path);
    char *d = NULL;
    long l = BIO_get_mem_data(b, &d);
    f->data = OPENSSL_malloc((size_t)l);
    ENSURE_OUT(f->data != NULL, QTSP_ERR_NOMEM, "out of memory");
    memcpy(f->data, d, (size_t)l);
    f->len = (size_t)l;
out:
    BIO_free(b);
    return rc;
}

/* serve worker N journals its time-stamps through store/tsa-wal-N
 * (tsa/tsa_wal.h); first it puts into the store the records of the files
 * no process holds (a crashed or replaced worker's, a previous run's). */
static qtsp_status open_tsa_wal(qtsp_services *s, const qtsp_app *app)
{
    char dir[QTSP_PATH_MAX];
    TRY(qtsp_config_path(&app->cfg, "store", dir, sizeof dir));
    return qtsp_tsa_wal_open_slot(dir, (unsigned)app->worker, QTSP_TSA_WAL_BYTES,
                                  QTSP_TSA_WAL_FILL_MS, app->store, &s->tsa_wal);
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
    /* issue 16: the responder's and the TSU's certificates, and the chain
     * (issuing CA, root) as DIR/public/chain.pem holds it */
    X509 *chain[2] = {app->issuing, app->root};
    TRY_OUT(make_file(&s->files[0], "/certs/ocsp.crt", &app->ocsp, 1, 0));
    TRY_OUT(make_file(&s->files[1], "/certs/tsa.crt", &app->tsa, 1, 0));
    TRY_OUT(make_file(&s->files[2], "/certs/chain.pem", chain, 2, 1));
    for (size_t i = 0; i < 3; i++)
        TRY_OUT(add_route(s, (qtsp_route){"GET", s->files[i].path, 0, 0, NULL, serve_file,
                                          &s->files[i], "certs"}));
    pthread_mutex_init(&s->counts_mu, NULL);

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
    /* the web portal: its pages call the APIs with the session cookie */
    TRY_OUT(cmd_portal_new(app, s->ra, &s->portal));
    s->n_routes += cmd_portal_routes(s->portal, s->routes + s->n_routes, MAX_ROUTES - s->n_routes);
    TRY_OUT(cmd_portal_start(s->portal));
    qtsp_api_set_sessions(s->ra_api, cmd_portal_sessions(s->portal));

    /* TSA: the TSU certificate is issued by the root; certReq adds the root */
    char path[QTSP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/tsa.yaml", s->policies_dir);
    s->tsa_chain = sk_X509_new_null();
    ENSURE_OUT(s->tsa_chain && sk_X509_push(s->tsa_chain, app->root) > 0, QTSP_ERR_NOMEM,
               "out of memory");
    if (app->worker >= 0) /* serve: its own write-ahead journal file */
        TRY_OUT(open_tsa_wal(s, app));
    if (s->tsa_wal)
        TRY_OUT(qtsp_tsa_new_wal(path, app->tsa, s->tsa_chain, app->tsa_key, s->tsa_wal, &s->tsa));
    else
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
    /* remote signing: CSC API v2 and the signer's own routes (docs/csc.md) */
    TRY_OUT(qtsp_usage_new(app->store, s->policies_dir, &s->usage));
    char signing[QTSP_PATH_MAX + 32];
    TRY_OUT(qtsp_app_policy_or_shipped(app, "signing.yaml", signing, sizeof signing));
    TRY_OUT(cmd_ades_extras_new(app, &s->ades_extras));
    s->ades = (qtsp_ades_services){.tsa = s->tsa, .ocsp = s->ocsp, .ocsp_ca = app->issuing};
    cmd_ades_extras_apply(s->ades_extras, &s->ades);
    qtsp_csc_deps cd = {app->store,     app->hsm, app->issuing, app->root, signing,
                        s->secrets_dir, s->usage, &s->ades,     s->archive};
    TRY_OUT(qtsp_csc_new(&cd, &s->csc));
    TRY_OUT(qtsp_csc_api_new(s->csc, &s->csc_api));
    TRY_OUT(qtsp_csc_signer_api_new(s->csc, &s->signer_api));
    s->n_routes +=
        qtsp_api_http_routes(s->csc_api, s->routes + s->n_routes, MAX_ROUTES - s->n_routes);
    s->n_routes +=
        qtsp_api_http_routes(s->signer_api, s->routes + s->n_routes, MAX_ROUTES - s->n_routes);
    /* argon2id at login and the token's signatures: off the HTTP threads */
    TRY_OUT(qtsp_api_start_workers(s->csc_api, (unsigned)(2 * app->cfg.http_workers)));
    /* the portal's signer pages call them with the session cookie */
    qtsp_api_set_sessions(s->csc_api, cmd_portal_sessions(s->portal));
    qtsp_api_set_sessions(s->signer_api, cmd_portal_sessions(s->portal));
    TRY_OUT(
        add_route(s, (qtsp_route){"POST", "/tsa", 0, QTSP_TSA_MAX_QUERY,
                                  "application/timestamp-query", qtsp_tsa_http, s->tsa, "tsa"}));
    /* issue 18: signature validation, public; the body holds the file */
    TRY_OUT(cmd_validator_open(app, &s->vstore, &s->validator));
    s->vhttp = (qtsp_validate_http){s->validator, s->tsa, {NULL, NULL, NULL, {0}}};
    if (app->validation_key) { /* ?report=xml-signed: by the validation service, under the root */
        s->vhttp.report_signer =
            (qtsp_ades_signer){app->validation_key, app->validation, s->tsa_chain, {0}};
        TRY_OUT(qtsp_key_sigalg(app->validation_key, NULL, &s->vhttp.report_signer.alg));
    } else {
        LOG_WARN("no validation service key (public/validation.crt): signed validation reports "
                 "are not offered; run qtsp rekey validation to make one");
    }
    TRY_OUT(add_route(s, (qtsp_route){"POST", "/api/v1/validate", 0, QTSP_VALIDATE_MAX_BODY,
                                      "multipart/form-data", qtsp_validate_http_post, &s->vhttp,
                                      "validate"}));
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
    size_t kd = 0;
    if (qtsp_ra_finish_destructions(s->ra, &kd) != QTSP_OK)
        LOG_ERROR("pending key destructions: %s", qtsp_err_message());
    else if (kd)
        LOG_INFO("pending key destructions: %zu finished", kd);
    qtsp_err_clear();
    if (qtsp_ra_sweep_lapses(s->ra, qtsp_now(), &n) != QTSP_OK)
        LOG_ERROR("hold sweeper: %s", qtsp_err_message());
    else if (n)
        LOG_INFO("hold sweeper: %zu hold(s) lapsed", n);
    qtsp_err_clear();
    if (qtsp_csc_purge(s->csc, qtsp_now(), 1000, &n) != QTSP_OK) /* ended sessions and SADs */
        LOG_ERROR("remote signing purge: %s", qtsp_err_message());
    return QTSP_PERIODIC_INTERVAL;
}

/* The audit chain head, stamped by our own TSA in process. */
static qtsp_status anchor_stamp(void *ctx, const unsigned char hash[QTSP_AUDIT_HASH_LEN],
                                qtsp_buf *out)
{
    qtsp_services *s = ctx;
    return qtsp_tsa_stamp_sha256(s->tsa, hash, out);
}

static void anchor_now(qtsp_services *s)
{
    char path[QTSP_PATH_MAX];
    uint64_t seq = 0;
    qtsp_err_clear();
    qtsp_status rc = qtsp_config_path(&s->app->cfg, "public/audit-anchor.json", path, sizeof path);
    if (rc == QTSP_OK)
        rc = qtsp_audit_anchor(s->app->store, path, "system:audit-anchor", anchor_stamp, s, &seq);
    if (rc != QTSP_OK)
        LOG_ERROR("audit anchor: %s", qtsp_err_message());
    else if (seq)
        LOG_INFO("audit anchor: the chain is anchored at record %llu (%s)", (unsigned long long)seq,
                 path);
    qtsp_err_clear();
}

static int64_t anchor_once(qtsp_periodic *p, void *arg)
{
    (void)p;
    anchor_now(arg);
    return QTSP_PERIODIC_INTERVAL;
}

/* A server's resident set would otherwise grow with the store: every
 * journalled token, signing and audit record adds file pages that readers
 * map (docs/operations.md "Memory"). */
static int64_t trim_once(qtsp_periodic *p, void *arg)
{
    qtsp_services *s = arg;
    qtsp_err_clear();
    if (qtsp_store_trim_pages(s->app->store, STORE_TRIM_MIB) != QTSP_OK)
        LOG_WARN("store trim: %s", qtsp_err_message());
    qtsp_err_clear();
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
    TRY(qtsp_ra_search_prepare(s->ra)); /* once per store: subjects enrolled before the indexes */
    TRY(qtsp_periodic_start("store trim", STORE_TRIM_INTERVAL_MS, STORE_TRIM_INTERVAL_MS, trim_once,
                            s, &s->trim));
    if (!leader)
        return QTSP_OK;
    TRY(qtsp_periodic_start("hold sweeper", 1000 * qtsp_ra_sweep_interval_s(s->ra), 0, sweep_once,
                            s, &s->sweeper));
    TRY(qtsp_ra_keypool_start(s->ra));
    TRY(qtsp_archive_start(s->archive)); /* removes what outlived its retention, audited */
    TRY(qtsp_periodic_start("audit anchor", AUDIT_ANCHOR_INTERVAL_MS, AUDIT_ANCHOR_INTERVAL_MS,
                            anchor_once, s, &s->anchor));
    s->leader = 1;
    return QTSP_OK;
}

void qtsp_services_quiesce(qtsp_services *s)
{
    if (!s)
        return;
    qtsp_api_quiesce(s->ra_api);
    qtsp_api_quiesce(s->csc_api);
    qtsp_api_quiesce(s->signer_api);
    cmd_portal_quiesce(s->portal);
}

void qtsp_services_free(qtsp_services *s)
{
    if (!s)
        return;
    qtsp_periodic_stop(s->trim);
    qtsp_periodic_stop(s->anchor);
    if (s->leader) /* the chain head as it is at shutdown, while the TSA still works */
        anchor_now(s);
    qtsp_ra_keypool_stop(s->ra);
    qtsp_signq_free(s->signq); /* signs what is queued; its callbacks use the TSA and OCSP */
    s->signq = NULL;
    qtsp_periodic_stop(s->sweeper);
    qtsp_archive_free(s->archive);
    cmd_portal_free(s->portal); /* its workers use the RA */
    qtsp_api_free(s->ra_api);   /* its workers use the RA */
    qtsp_api_free(s->csc_api);
    qtsp_api_free(s->signer_api);
    qtsp_csc_free(s->csc);
    qtsp_usage_free(s->usage);
    qtsp_ra_free(s->ra);
    qtsp_validator_free(s->validator);
    qtsp_tsa_free(s->tsa);
    qtsp_tsa_wal_close(s->tsa_wal); /* after the TSA: what it appended goes into the store */
    qtsp_ocsp_free(s->ocsp);
    cmd_ades_extras_free(s->ades_extras);
    qtsp_crl_publisher_free(s->crl);
    sk_X509_free(s->tsa_chain);
    qtsp_notify_free(s->notify); /* after the sweeper and the RA: nothing sends any more */
    OPENSSL_free(s->root_der);
    OPENSSL_free(s->issuing_der);
    for (size_t i = 0; i < 3; i++)
        OPENSSL_free(s->files[i].data);
    pthread_mutex_destroy(&s->counts_mu);
    free(s);
}

static int http_all_waiting(void *srv)
{
    return qtsp_http_clients_all_waiting(srv);
}

void qtsp_services_set_http(qtsp_services *s, qtsp_http_server *srv)
{
    if (s && s->tsa)
        qtsp_tsa_set_arrivals(s->tsa, srv ? http_all_waiting : NULL, srv);
}

const qtsp_route *qtsp_services_routes(const qtsp_services *s)
{
    return s->routes;
}
size_t qtsp_services_route_count(const qtsp_services *s)
{
    return s->n_routes;
}

void qtsp_services_lane_round_begin(void *ctx)
{
    qtsp_services *s = ctx;
    if (s->tsa)
        qtsp_tsa_hold(s->tsa);
    qtsp_signq_hold(s->signq);
}

void qtsp_services_lane_round_end(void *ctx)
{
    qtsp_services *s = ctx;
    if (s->tsa) /* first: the round's commit runs while its tokens are signed */
        qtsp_tsa_release(s->tsa);
    (void)qtsp_signq_release(s->signq);
}

/* Their handlers read the body only (ocsp/ocsp_http.c, tsa/tsa_http.c). */
const char *const *qtsp_services_fast_routes(void)
{
    static const char *const names[] = {"ocsp_post", "tsa", NULL};
    return names;
}

/* CRL freshness (issue 16): number and age of each CRL served. */
static qtsp_status crl_metrics(qtsp_services *s, qtsp_buf *out)
{
    static const char *const names[] = {"qualified", "qualified-delta", "root"};
    TRY(qtsp_buf_puts(out, "# HELP qtsp_crl_number cRLNumber of the CRL served.\n"
                           "# TYPE qtsp_crl_number gauge\n"));
    time_t now = qtsp_now(), at[3] = {0};
    for (size_t i = 0; i < 3; i++) {
        uint64_t n = 0;
        if (qtsp_crl_current(s->crl, names[i], &n, &at[i]) != QTSP_OK) {
            qtsp_err_clear();
            continue;
        }
        TRY(qtsp_buf_printf(out, "qtsp_crl_number{crl=\"%s\"} %llu\n", names[i],
                            (unsigned long long)n));
    }
    TRY(qtsp_buf_puts(out, "# HELP qtsp_crl_age_seconds Seconds since the thisUpdate of the CRL "
                           "served.\n# TYPE qtsp_crl_age_seconds gauge\n"));
    for (size_t i = 0; i < 3; i++)
        if (at[i])
            TRY(qtsp_buf_printf(out, "qtsp_crl_age_seconds{crl=\"%s\"} %lld\n", names[i],
                                (long long)(now - at[i])));
    return QTSP_OK;
}

typedef struct count_ctx {
    time_t now;
    uint64_t held, revoked;
} count_ctx;

static qtsp_status count_one(void *ctx, const unsigned char *serial, size_t slen,
                             const qtsp_cert_status *st, int *stop)
{
    count_ctx *c = ctx;
    qtsp_cert_status eff;
    qtsp_cert_status_effective(st, c->now, &eff);
    c->held += eff.state == QTSP_CERT_ON_HOLD;
    c->revoked += eff.state == QTSP_CERT_REVOKED;
    return QTSP_OK;
}

/* Certificates by status: the total from the status table's size, held
 * and revoked from the revoked index (small); at most every 30 s. */
static qtsp_status cert_count_metrics(qtsp_services *s, qtsp_buf *out)
{
    pthread_mutex_lock(&s->counts_mu);
    qtsp_status rc = QTSP_OK;
    int64_t now_ms = qtsp_now_ms();
    if (!s->counts_at_ms || now_ms - s->counts_at_ms >= 30000) {
        qtsp_txn *txn = NULL;
        count_ctx c = {qtsp_now(), 0, 0};
        uint64_t total = 0;
        rc = qtsp_store_begin(s->app->store, 0, &txn);
        if (rc == QTSP_OK)
            rc = qtsp_txn_count(txn, QTSP_T_STATUS, &total);
        if (rc == QTSP_OK)
            rc = qtsp_certdb_status_scan(txn, 1, NULL, 0, count_one, &c);
        qtsp_txn_abort(txn);
        if (rc == QTSP_OK) {
            s->n_certs = total;
            s->n_held = c.held;
            s->n_revoked = c.revoked;
            s->counts_at_ms = now_ms;
        }
    }
    uint64_t total = s->n_certs, held = s->n_held, revoked = s->n_revoked;
    pthread_mutex_unlock(&s->counts_mu);
    TRY(rc);
    uint64_t other = held + revoked <= total ? total - held - revoked : 0;
    return qtsp_buf_printf(out,
                           "# HELP qtsp_certificates Certificates in the store by status "
                           "(valid: neither held nor revoked, expired ones included; "
                           "at most 30 s old).\n"
                           "# TYPE qtsp_certificates gauge\n"
                           "qtsp_certificates{status=\"valid\"} %llu\n"
                           "qtsp_certificates{status=\"on-hold\"} %llu\n"
                           "qtsp_certificates{status=\"revoked\"} %llu\n",
                           (unsigned long long)other, (unsigned long long)held,
                           (unsigned long long)revoked);
}

qtsp_status qtsp_services_metrics(void *ctx, qtsp_buf *out)
{
    qtsp_services *s = ctx;
    uint64_t used = 0, map = 0;
    TRY(qtsp_store_stats(s->app->store, &used, &map));
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_build_info The version and commit of this build.\n"
                        "# TYPE qtsp_build_info gauge\n"
                        "qtsp_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                        qtsp_version_release(), qtsp_version_commit()));
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
    TRY(crl_metrics(s, out));
    TRY(cert_count_metrics(s, out));
    TRY(qtsp_tsa_metrics(s->tsa, out));
    if (s->tsa_wal)
        TRY(qtsp_tsa_wal_metrics(s->tsa_wal, out));
    TRY(qtsp_ocsp_metrics(s->ocsp, out));
    TRY(qtsp_notify_metrics(s->notify, out));
    return QTSP_OK;
}
