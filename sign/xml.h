/* XML for the AdES builders and their verifiers (libxml2): a safe parser
 * and XML canonicalisation into digests. The only files that include
 * libxml2 are this module's users in sign/.
 *
 * Parsing is for documents from the outside (a document to sign, a file to
 * validate): no DTD at all (a DOCTYPE stops the parser before any entity
 * declaration is read: no entity expansion, no external entities, no XML
 * bombs), no network (XML_PARSE_NONET), no XInclude, libxml2's default
 * depth and text-node limits (no XML_PARSE_HUGE), and a size limit.
 *
 * Canonicalisation is libxml2's (c14n.c, xmlC14NExecute: the engine of
 * xmlC14NDocSaveTo) with a visibility callback instead of an XPath node
 * set: a subtree (the node, its attributes and the namespace nodes in its
 * scope), or the whole document without its signatures (the enveloped
 * signature transform, XML-DSig 6.6.4), streamed into digests.
 *
 * Thread safety: libxml2 is initialised once (qtsp_xml_init, idempotent);
 * after that any number of threads may parse and canonicalise distinct
 * documents. */
#ifndef QTSP_SIGN_XML_H
#define QTSP_SIGN_XML_H

#include <libxml/tree.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* XML-DSig and XAdES namespaces and algorithm URIs. */
#define QTSP_NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define QTSP_NS_XADES "http://uri.etsi.org/01903/v1.3.2#"
#define QTSP_NS_XADES141 "http://uri.etsi.org/01903/v1.4.1#"
#define QTSP_NS_ASIC "http://uri.etsi.org/02918/v1.2.1#"
#define QTSP_C14N_EXC "http://www.w3.org/2001/10/xml-exc-c14n#"
#define QTSP_C14N_INCL "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
#define QTSP_DS_XPATH "http://www.w3.org/TR/1999/REC-xpath-19991116"
/* the XPath of the enveloped reference (qtsp_xml_c14n no_sigs) */
#define QTSP_XPATH_NO_SIGS "not(ancestor-or-self::ds:Signature)"

/* Initialises libxml2 (once; any thread). */
void qtsp_xml_init(void);

/* Parses len bytes (at most max) as one XML document, safely (see above).
 * *out is the caller's (xmlFreeDoc). QTSP_ERR_TOO_BIG over max,
 * QTSP_ERR_INVALID for what is not well-formed XML, has a DOCTYPE, or
 * breaks libxml2's limits (the reason named), QTSP_ERR_NOMEM. */
qtsp_status qtsp_xml_parse(const unsigned char *p, size_t len, size_t max,
                           xmlDocPtr *out) QTSP_MUST_USE;

/* Canonicalises (without comments) the subtree at top, or with top NULL
 * the whole document; with no_sigs, leaving out every ds:Signature element
 * and what it holds (what a Reference URI "" with the enveloped-signature
 * transform and the XPath transform not(ancestor-or-self::ds:Signature)
 * selects, XML-DSig 6.6.3, 6.6.4: the signatures in a document do not
 * cover each other, so parallel enveloped signatures stay valid); with
 * exclusive (1) or inclusive (0) C14N 1.0, into each of the n digest
 * contexts md[] (already initialised; NULL entries skipped) and, when
 * copy is not NULL, appended to copy. QTSP_ERR_CRYPTO, QTSP_ERR_INVALID
 * when libxml2 cannot canonicalise the document, QTSP_ERR_TOO_BIG of
 * copy. */
qtsp_status qtsp_xml_c14n(xmlDocPtr doc, xmlNodePtr top, int no_sigs, int exclusive,
                          EVP_MD_CTX **md, size_t n, qtsp_buf *copy) QTSP_MUST_USE;

/* Appends len bytes as base64 (RFC 4648 4, one line) to the content of
 * node. QTSP_ERR_NOMEM, QTSP_ERR_TOO_BIG (over 3 GiB). */
qtsp_status qtsp_xml_add_base64(xmlNodePtr node, const unsigned char *p, size_t len) QTSP_MUST_USE;

/* The XML-DSig digest method URI of md (SHA-256/384/512), NULL otherwise. */
const char *qtsp_xml_digest_uri(const EVP_MD *md);

#endif
