/* HTTP binding of the CRL publisher: GET /crl/{name}.crl from memory, with
 * cache headers (RFC 5019 6 style) and 304 on If-None-Match. */
#include "ca/crl_http.h"

#include <stdio.h>
#include <string.h>

#include "ca/crl_int.h"
#include "core/clock.h"
#include "core/http.h"

qtsp_status qtsp_crl_http_get(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    qtsp_crl_publisher *pub = ctx;
    static const char prefix[] = "/crl/";
    const char *path = req->path ? req->path : "";
    ENSURE(strncmp(path, prefix, sizeof prefix - 1) == 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    const char *name = path + sizeof prefix - 1;
    size_t nl = strlen(name);
    ENSURE(nl > 4 && strcmp(name + nl - 4, ".crl") == 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    int idx = crl_name_index(name, nl - 4);
    ENSURE(idx >= 0, QTSP_ERR_NOT_FOUND, "no such CRL");
    crl_blob *bl = crl_get_ref(pub, idx);
    ENSURE(bl, QTSP_ERR_NOT_FOUND, "CRL not published yet");

    qtsp_status rc;
    char etag[64], lm[40], ex[40], cc[64];
    snprintf(etag, sizeof etag, "\"%s-%llx\"", crl_names[idx], (unsigned long long)bl->number);
    qtsp_format_http_date(bl->this_update, lm, sizeof lm);
    qtsp_format_http_date(bl->next_update, ex, sizeof ex);
    int64_t age = (int64_t)(bl->next_update - qtsp_now());
    if (age > pub->pol.http_max_age)
        age = pub->pol.http_max_age;
    if (age < 0)
        age = 0;
    snprintf(cc, sizeof cc, "public, max-age=%lld, no-transform", (long long)age);
    TRY_OUT(qtsp_http_resp_header(resp, "ETag", etag));
    TRY_OUT(qtsp_http_resp_header(resp, "Last-Modified", lm));
    TRY_OUT(qtsp_http_resp_header(resp, "Expires", ex));
    TRY_OUT(qtsp_http_resp_header(resp, "Cache-Control", cc));
    const char *inm = qtsp_http_header(req, "If-None-Match");
    snprintf(resp->content_type, sizeof resp->content_type, "application/pkix-crl");
    if (inm && qtsp_http_etag_matches(inm, etag)) {
        resp->status = 304;
        rc = QTSP_OK;
        goto out;
    }
    resp->status = 200;
    resp->ext_body = bl->der;
    resp->ext_len = bl->len;
    resp->free_fn = crl_blob_unref;
    resp->free_ctx = bl;
    return QTSP_OK;
out:
    crl_blob_unref(bl);
    return rc;
}
