/* The HTTP binding of the validator (sign/validate_http.h): the multipart
 * form in, the JSON report out; nothing else. */
#include "sign/validate_http.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/multipart.h"
#include "sign/ades_int.h"

/* file, content, and room to name a third one in the refusal */
#define PARTS_MAX 3

typedef struct query_check {
    const char *bad;
    int n;
} query_check;

static int query_one(void *ctx, const char *name, const char *value)
{
    query_check *q = ctx;
    (void)value;
    if (strcmp(name, "report") != 0 || q->n++ > 0) {
        q->bad = name;
        return 1;
    }
    return 0;
}

static json_t *b64_json(const unsigned char *p, size_t n)
{
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *s = malloc(cap);
    if (!s || qtsp_base64_encode(p, n, s, cap) != QTSP_OK) {
        free(s);
        return NULL;
    }
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* {"report": base64, "timestamp_token": base64} over the report's bytes. */
static qtsp_status timestamped(const qtsp_validate_http *h, const unsigned char *text, size_t n,
                               qtsp_http_resp *resp)
{
    ENSURE(h->tsa != NULL, QTSP_ERR_UNAVAILABLE, "no TSA to sign the report");
    unsigned char dg[32];
    ENSURE(EVP_Digest(text, n, dg, NULL, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO, "SHA-256");
    qtsp_ades_services sv;
    memset(&sv, 0, sizeof sv);
    sv.tsa = h->tsa;
    qtsp_buf tok;
    qtsp_buf_init(&tok, ADES_TOKEN_MAX);
    qtsp_status rc = ades_timestamp(&sv, dg, &tok);
    if (rc == QTSP_OK) {
        json_t *o = json_pack("{s:o,s:o}", "report", b64_json(text, n), "timestamp_token",
                              b64_json(tok.data, tok.len));
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        rc = s ? qtsp_http_resp_set(resp, 200, "application/json", s, strlen(s))
               : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
        free(s);
    }
    qtsp_buf_cleanup(&tok);
    return rc;
}

qtsp_status qtsp_validate_http_post(void *ctx, const qtsp_http_req *req, qtsp_http_resp *resp)
{
    const qtsp_validate_http *h = ctx;
    query_check q = {NULL, 0};
    qtsp_http_query_each(req, query_one, &q);
    ENSURE(q.bad == NULL, QTSP_ERR_INVALID, "query argument %s not allowed (only report)", q.bad);
    /* json (default), timestamped, xml, xml-timestamped, xml-signed */
    const char *report = qtsp_http_query(req, "report");
    int stamp = 0, xml = 0, sign = 0;
    if (report) {
        stamp = strcmp(report, "timestamped") == 0 || strcmp(report, "xml-timestamped") == 0;
        sign = strcmp(report, "xml-signed") == 0;
        xml = sign || strcmp(report, "xml") == 0 || strcmp(report, "xml-timestamped") == 0;
        ENSURE(stamp || xml || strcmp(report, "json") == 0, QTSP_ERR_INVALID,
               "report must be json, timestamped, xml, xml-timestamped or xml-signed");
    }
    /* refused before the file is validated: nothing would sign the report */
    ENSURE(!sign || h->report_signer.key != NULL, QTSP_ERR_UNAVAILABLE,
           "no validation service key to sign the report (run qtsp rekey validation)");

    qtsp_mp_part parts[PARTS_MAX];
    size_t n = 0;
    TRY(qtsp_multipart_parse(qtsp_http_header(req, "Content-Type"), req->body, req->body_len, parts,
                             PARTS_MAX, &n));
    const qtsp_mp_part *file = NULL, *content = NULL;
    for (size_t i = 0; i < n; i++) {
        const qtsp_mp_part **slot = strcmp(parts[i].name, "file") == 0      ? &file
                                    : strcmp(parts[i].name, "content") == 0 ? &content
                                                                            : NULL;
        ENSURE(slot != NULL, QTSP_ERR_INVALID, "form field %s not allowed (file, content)",
               parts[i].name);
        ENSURE(*slot == NULL, QTSP_ERR_INVALID, "form field %s given twice", parts[i].name);
        *slot = &parts[i];
    }
    ENSURE(file != NULL, QTSP_ERR_INVALID, "form field file missing");
    json_t *r = NULL;
    static const unsigned char empty[1];
    TRY(qtsp_validate(h->v, file->data, file->len,
                      content ? (content->len ? content->data : empty) : NULL,
                      content ? content->len : 0, (int64_t)qtsp_now(), &r));
    qtsp_buf text;
    qtsp_buf_init(&text, QTSP_VALIDATE_MAX_FILE);
    qtsp_status rc = QTSP_OK;
    if (sign) {
        qtsp_ades_services sv;
        memset(&sv, 0, sizeof sv);
        sv.tsa = h->tsa;
        rc = qtsp_validate_report_signed(r, &sv, &h->report_signer, (int64_t)qtsp_now(), &text);
    } else if (xml) {
        rc = qtsp_validate_report_xml(r, &text);
    } else {
        char *s = json_dumps(r, JSON_COMPACT);
        rc = s ? qtsp_buf_puts(&text, s)
               : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
        free(s);
    }
    json_decref(r);
    if (rc == QTSP_OK)
        rc = stamp ? timestamped(h, text.data, text.len, resp)
                   : qtsp_http_resp_set(resp, 200, xml ? "application/xml" : "application/json",
                                        text.data, text.len);
    qtsp_buf_cleanup(&text);
    return rc;
}
