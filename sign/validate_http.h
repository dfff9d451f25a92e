/* POST /api/v1/validate (interface.md "HTTP — validation"): a public,
 * size-limited route taking a multipart/form-data body with the part
 * "file" (the signed file) and optionally "content" (the detached
 * content), answering the JSON report of sign/validate.h. With
 * ?report=timestamped the answer is {"report": base64 of the report's
 * bytes, "timestamp_token": base64 of an RFC 3161 TimeStampToken of our TSA
 * over their SHA-256}. With ?report=xml-signed the answer is the XML report
 * signed by the validation service's own key (enveloped XAdES-B-T,
 * qtsp_validate_report_signed), application/xml (docs/validation.md). */
#ifndef QTSP_SIGN_VALIDATE_HTTP_H
#define QTSP_SIGN_VALIDATE_HTTP_H

#include "core/http.h"
#include "sign/ades.h"
#include "sign/validate.h"
#include "tsa/tsa.h"

/* Most bytes of the whole request body: the file, the content and the
 * multipart framing. */
#define QTSP_VALIDATE_MAX_BODY (QTSP_VALIDATE_MAX_FILE + ((size_t)64 << 10))

typedef struct qtsp_validate_http {
    const qtsp_validator *v; /* borrowed */
    qtsp_tsa *tsa;           /* for ?report=timestamped; NULL: not offered */
    /* for ?report=xml-signed: the validation service (key, certificate,
     * chain); key NULL: not offered (a home without one: 503) */
    qtsp_ades_signer report_signer;
} qtsp_validate_http;

/* The route's handler; ctx is a qtsp_validate_http. Errors (JSON, core/http
 * mapping): 400 for a body that is not the form described (the message
 * names what), a file that is neither PDF nor CMS, a PDF that does not
 * parse; 503 when the TSA cannot stamp the report or no validation service
 * key can sign it. Thread-safe. */
qtsp_status qtsp_validate_http_post(void *ctx, const qtsp_http_req *req,
                                    qtsp_http_resp *resp) QTSP_MUST_USE;

#endif
