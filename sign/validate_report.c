/* The validation report as XML in the style of ETSI TS 119 102-2 (the
 * report EN 319 102-1 describes; the issue calls it EN 319 102-2): one
 * vr:SignatureValidationReport per signature with its validation time and
 * best signature time, the signing time, the signer, the status as the
 * standard's URIs (urn:etsi:019102:mainindication:..., :subindication:...),
 * the qualification, and this service's own details (format, level,
 * revocation source, time-stamps) in its own namespace. Made from the JSON
 * report (sign/validate.h), so both say the same. Not schema-complete:
 * the elements TS 119 102-2 requires that we have no value for (the
 * signature's DigestAlgAndValue, the validation objects) are left out. */
#include <libxml/tree.h>
#include <string.h>

#include "sign/ades.h"
#include "sign/validate.h"
#include "sign/xml.h"

#define NS_VR "http://uri.etsi.org/19102/v1.2.1#"
#define NS_QTSP "urn:qtsp:validation:1"

static const char *main_uri(const char *ind)
{
    if (ind && strcmp(ind, "TOTAL-PASSED") == 0)
        return "urn:etsi:019102:mainindication:total-passed";
    if (ind && strcmp(ind, "TOTAL-FAILED") == 0)
        return "urn:etsi:019102:mainindication:total-failed";
    return "urn:etsi:019102:mainindication:indeterminate";
}

static xmlNodePtr el(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text, int *oom)
{
    xmlNodePtr n = parent ? xmlNewChild(parent, ns, BAD_CAST name, NULL) : NULL;
    if (n && text)
        xmlNodeAddContent(n, BAD_CAST text); /* escaped by libxml2 */
    *oom |= n == NULL;
    return n;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

qtsp_status qtsp_validate_report_xml(const json_t *report, qtsp_buf *out)
{
    ENSURE(json_is_object(report), QTSP_ERR_INVALID, "no report");
    qtsp_xml_init();
    qtsp_status rc = QTSP_OK;
    int oom = 0, memlen = 0;
    xmlChar *mem = NULL;
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "ValidationReport") : NULL;
    xmlNsPtr vr = root ? xmlNewNs(root, BAD_CAST NS_VR, BAD_CAST "vr") : NULL;
    xmlNsPtr q = root ? xmlNewNs(root, BAD_CAST NS_QTSP, BAD_CAST "qtsp") : NULL;
    ENSURE_OUT(vr && q, QTSP_ERR_NOMEM, "out of memory");
    xmlSetNs(root, vr);
    xmlDocSetRootElement(doc, root);
    json_t *rep = (json_t *)report;
    const char *vt = str(rep, "validation_time");
    xmlSetNsProp(root, q, BAD_CAST "format",
                 BAD_CAST(str(rep, "format") ? str(rep, "format") : ""));
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rep, "signatures"), i, s)
    {
        xmlNodePtr r = el(root, vr, "SignatureValidationReport", NULL, &oom);
        char id[32];
        snprintf(id, sizeof id, "S%zu", i + 1);
        xmlNodePtr sid = el(r, vr, "SignatureIdentifier", NULL, &oom);
        if (sid)
            xmlSetProp(sid, BAD_CAST "id", BAD_CAST id);
        el(sid, vr, "HashOnly", "false", &oom);
        el(sid, vr, "DocHashOnly", "false", &oom);
        xmlNodePtr ti = el(r, vr, "ValidationTimeInfo", NULL, &oom);
        el(ti, vr, "ValidationTime", vt, &oom);
        const char *bst = str(s, "best_signature_time");
        if (bst) {
            xmlNodePtr b = el(ti, vr, "BestSignatureTime", NULL, &oom);
            el(b, vr, "POETime", bst, &oom);
            el(b, vr, "TypeOfProof", "urn:etsi:019102:poetype:validation", &oom);
        }
        if (str(s, "signing_time")) {
            xmlNodePtr a = el(r, vr, "SignatureAttributes", NULL, &oom);
            el(el(a, vr, "SigningTime", NULL, &oom), vr, "Time", str(s, "signing_time"), &oom);
        }
        if (str(s, "signer")) {
            xmlNodePtr si = el(r, vr, "SignerInformation", NULL, &oom);
            el(si, vr, "Signer", str(s, "signer"), &oom);
        }
        int qual = json_is_true(json_object_get(s, "qualified"));
        xmlNodePtr sq = el(r, vr, "SignatureQuality", NULL, &oom);
        el(sq, vr, "SignatureQualityInformation",
           qual ? "urn:qtsp:quality:qualified-certificate" : "urn:qtsp:quality:not-qualified",
           &oom);
        xmlNodePtr st = el(r, vr, "SignatureValidationStatus", NULL, &oom);
        el(st, vr, "MainIndication", main_uri(str(s, "indication")), &oom);
        if (str(s, "sub_indication")) {
            char sub[96];
            snprintf(sub, sizeof sub, "urn:etsi:019102:subindication:%s", str(s, "sub_indication"));
            el(st, vr, "SubIndication", sub, &oom);
        }
        if (str(s, "message")) {
            xmlNodePtr ar = el(st, vr, "AssociatedValidationReportData", NULL, &oom);
            el(ar, q, "Message", str(s, "message"), &oom);
        }
        /* this service's details, in its own namespace */
        xmlNodePtr d = el(r, q, "Details", NULL, &oom);
        el(d, q, "Format", str(s, "format"), &oom);
        el(d, q, "Level", str(s, "level"), &oom);
        json_t *rv = json_object_get(s, "revocation");
        if (rv) {
            xmlNodePtr x = el(d, q, "Revocation", NULL, &oom);
            if (x) {
                xmlSetProp(x, BAD_CAST "source",
                           BAD_CAST(str(rv, "source") ? str(rv, "source") : ""));
                xmlSetProp(x, BAD_CAST "status",
                           BAD_CAST(str(rv, "status") ? str(rv, "status") : ""));
            }
        }
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(s, "timestamps"), k, t)
        {
            xmlNodePtr x = el(d, q, "TimeStamp", str(t, "time"), &oom);
            if (x) {
                xmlSetProp(x, BAD_CAST "type", BAD_CAST(str(t, "type") ? str(t, "type") : ""));
                xmlSetProp(x, BAD_CAST "valid",
                           BAD_CAST(json_is_true(json_object_get(t, "valid")) ? "true" : "false"));
            }
        }
    }
    ENSURE_OUT(!oom, QTSP_ERR_NOMEM, "out of memory");
    xmlDocDumpMemoryEnc(doc, &mem, &memlen, "UTF-8");
    ENSURE_OUT(mem != NULL && memlen > 0, QTSP_ERR_NOMEM, "cannot write the XML report");
    TRY_OUT(qtsp_buf_append(out, mem, (size_t)memlen));
out:
    xmlFree(mem);
    xmlFreeDoc(doc);
    return rc;
}

qtsp_status qtsp_validate_report_signed(const json_t *report, const qtsp_ades_services *sv,
                                        const qtsp_ades_signer *signer, int64_t signing_time,
                                        qtsp_buf *out)
{
    ENSURE(signer != NULL && signer->key != NULL, QTSP_ERR_UNAVAILABLE,
           "no validation service key to sign the report");
    qtsp_buf xml;
    qtsp_buf_init(&xml, QTSP_VALIDATE_MAX_FILE);
    qtsp_status rc = qtsp_validate_report_xml(report, &xml);
    if (rc == QTSP_OK) {
        qtsp_xades_opts o = {sv && sv->tsa ? QTSP_ADES_B_T : QTSP_ADES_B_B, QTSP_XADES_ENVELOPED,
                             signing_time, 0, 0};
        qtsp_xades_object obj = {xml.data, xml.len, NULL, "application/xml"};
        qtsp_ades_services none;
        memset(&none, 0, sizeof none);
        rc = qtsp_xades_sign(sv ? sv : &none, signer, &o, &obj, 1, out);
    }
    qtsp_buf_cleanup(&xml);
    return rc;
}
