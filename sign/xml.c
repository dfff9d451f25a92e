/* Safe XML parsing and canonicalisation into digests (sign/xml.h). */
#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/xmlsave.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "sign/xml.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    xmlInitParser();
}

void qtsp_xml_init(void)
{
    pthread_once(&g_once, init_once);
}

/* What the parser saw that we refuse. */
typedef struct parse_state {
    int dtd;
} parse_state;

/* A DOCTYPE: stop before the internal subset is read, so no entity is ever
 * declared (entity expansion bombs, external entities) and nothing is
 * loaded. */
static void refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *ext_id, const xmlChar *sys_id)
{
    xmlParserCtxtPtr c = ctx;
    parse_state *st = c->_private;
    st->dtd = 1;
    xmlStopParser(c);
}

qtsp_status qtsp_xml_parse(const unsigned char *p, size_t len, size_t max, xmlDocPtr *out)
{
    ENSURE(p != NULL || len == 0, QTSP_ERR_INVALID, "no XML");
    ENSURE(len <= max && len <= INT_MAX, QTSP_ERR_TOO_BIG, "XML document larger than %zu bytes",
           max);
    ENSURE(len > 0, QTSP_ERR_INVALID, "empty XML document");
    qtsp_xml_init();
    xmlParserCtxtPtr c = xmlNewParserCtxt();
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    parse_state st = {0};
    c->_private = &st;
    c->sax->internalSubset = refuse_dtd;
    c->sax->externalSubset = refuse_dtd;
    /* XML_PARSE_NONET: no network; no NOENT, DTDLOAD, DTDATTR, XINCLUDE,
     * HUGE: nothing substituted or loaded, libxml2's default limits */
    xmlDocPtr doc = xmlCtxtReadMemory(c, (const char *)p, (int)len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    int wf = c->wellFormed;
    const xmlError *e = xmlCtxtGetLastError(c);
    char why[160];
    snprintf(why, sizeof why, "%s", e && e->message ? e->message : "not well-formed");
    why[strcspn(why, "\n")] = 0;
    xmlFreeParserCtxt(c);
    if (st.dtd || !wf || !doc || !xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        ENSURE(!st.dtd, QTSP_ERR_INVALID, "XML with a DOCTYPE is refused (no DTDs, no entities)");
        FAIL(QTSP_ERR_INVALID, "not well-formed XML: %s", why);
    }
    *out = doc;
    return QTSP_OK;
}

/* The node set of qtsp_xml_c14n. */
typedef struct c14n_set {
    xmlNodePtr top;
    int no_sigs;
} c14n_set;

static int is_signature(xmlNodePtr n)
{
    return n->type == XML_ELEMENT_NODE && n->ns && xmlStrEqual(n->name, BAD_CAST "Signature") &&
           xmlStrEqual(n->ns->href, BAD_CAST QTSP_NS_DS);
}

/* c14n.c calls this for every node, attribute and (node = the xmlNs,
 * parent = the element in whose scope it is) namespace node. */
static int visible(void *user, xmlNodePtr node, xmlNodePtr parent)
{
    const c14n_set *s = user;
    xmlNodePtr n = node->type == XML_NAMESPACE_DECL ? parent : node;
    for (; n != NULL; n = n->parent) {
        if (s->no_sigs && is_signature(n))
            return 0;
        if (n == s->top)
            return 1;
    }
    return s->top == NULL;
}

typedef struct c14n_sink {
    EVP_MD_CTX **md;
    size_t n;
    qtsp_buf *copy;
    int failed;
} c14n_sink;

static int sink_write(void *ctx, const char *p, int len)
{
    c14n_sink *k = ctx;
    for (size_t i = 0; i < k->n; i++)
        if (k->md[i] && EVP_DigestUpdate(k->md[i], p, (size_t)len) != 1)
            k->failed = 1;
    if (k->copy && qtsp_buf_append(k->copy, p, (size_t)len) != QTSP_OK)
        k->failed = 1;
    return k->failed ? -1 : len;
}

qtsp_status qtsp_xml_c14n(xmlDocPtr doc, xmlNodePtr top, int no_sigs, int exclusive,
                          EVP_MD_CTX **md, size_t n, qtsp_buf *copy)
{
    ENSURE(doc != NULL, QTSP_ERR_INVALID, "no XML document");
    c14n_set set = {top, no_sigs};
    c14n_sink sink = {md, n, copy, 0};
    xmlOutputBufferPtr ob = xmlOutputBufferCreateIO(sink_write, NULL, &sink, NULL);
    ENSURE(ob != NULL, QTSP_ERR_NOMEM, "out of memory");
    int r = xmlC14NExecute(doc, visible, &set, exclusive ? XML_C14N_EXCLUSIVE_1_0 : XML_C14N_1_0,
                           NULL, 0, ob);
    int c = xmlOutputBufferClose(ob);
    ENSURE(!sink.failed, copy ? QTSP_ERR_TOO_BIG : QTSP_ERR_CRYPTO,
           "canonical XML: digest or buffer failed");
    ENSURE(r >= 0 && c >= 0, QTSP_ERR_INVALID, "the XML cannot be canonicalised");
    return QTSP_OK;
}

qtsp_status qtsp_xml_add_base64(xmlNodePtr node, const unsigned char *p, size_t len)
{
    ENSURE(len <= ((size_t)3 << 30) && len / 3 < INT_MAX / 4 - 1, QTSP_ERR_TOO_BIG,
           "too large for base64");
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *b = malloc(cap);
    ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = qtsp_base64_encode(p, len, b, cap);
    if (rc == QTSP_OK)
        xmlNodeAddContentLen(node, BAD_CAST b, (int)(cap - 1));
    free(b);
    return rc;
}

const char *qtsp_xml_digest_uri(const EVP_MD *md)
{
    switch (md ? EVP_MD_get_type(md) : 0) {
    case NID_sha256:
        return "http://www.w3.org/2001/04/xmlenc#sha256";
    case NID_sha384:
        return "http://www.w3.org/2001/04/xmldsig-more#sha384";
    case NID_sha512:
        return "http://www.w3.org/2001/04/xmlenc#sha512";
    default:
        return NULL;
    }
}
