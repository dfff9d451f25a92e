/* Assembly of the services and their routes (interface.md HTTP paths). */
#include "cmd/services.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 48

struct qtsp_services {
    qtsp_app *app;
    unsigned char *root_der, *issuing_der;
    int root_len, issuing_len;
    qtsp_route routes[MAX_ROUTES];
    size_t n_routes;
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
    TRY_OUT(add_route(s, (qtsp_route){"GET", "/certs/root-ca.crt", 0, 0, NULL, serve_root, s,
                                      "certs"}));
    TRY_OUT(add_route(s, (qtsp_route){"GET", "/certs/issuing-ca.crt", 0, 0, NULL, serve_issuing,
                                      s, "certs"}));
out:
    if (rc != QTSP_OK) {
        qtsp_services_free(s);
        return rc;
    }
    *out = s;
    return QTSP_OK;
}

qtsp_status qtsp_services_start(qtsp_services *svc)
{
    (void)svc;
    return QTSP_OK;
}

void qtsp_services_free(qtsp_services *s)
{
    if (!s)
        return;
    OPENSSL_free(s->root_der);
    OPENSSL_free(s->issuing_der);
    free(s);
}

const qtsp_route *qtsp_services_routes(const qtsp_services *s) { return s->routes; }
size_t qtsp_services_route_count(const qtsp_services *s) { return s->n_routes; }

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
    return QTSP_OK;
}
