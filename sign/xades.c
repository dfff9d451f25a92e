/* XAdES baseline signatures (ETSI EN 319 132-1) built with libxml2's tree
 * and canonicalised by sign/xml.c; the signature value is made by the
 * signer's qtsp_key (in the token), never by xmlsec's key handling. Per
 * level (EN 319 132-1 6.3):
 *   B-B   ds:KeyInfo with the signer's certificate; SignedProperties with
 *         SigningTime, SigningCertificateV2, a DataObjectFormat per object
 *   B-T   SignatureTimeStamp over the canonical ds:SignatureValue (5.3)
 *   B-LT  CertificateValues, RevocationValues (5.4.1, 5.4.2)
 *   B-LTA xades141:ArchiveTimeStamp (5.5.2)
 * Time-stamps and OCSP answers come from our cores in process
 * (sign/ades.c). The whole signature is built in the document it ends up
 * in, so that what is canonicalised is what a verifier canonicalises. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/cms.h"
#include "core/clock.h"
#include "core/codec.h"
#include "core/der.h"
#include "sign/ades_int.h"
#include "sign/xml.h"

#define DS_ENVELOPED "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#define DS_BASE64 "http://www.w3.org/2000/09/xmldsig#base64"
#define XADES_SP_TYPE "http://uri.etsi.org/01903#SignedProperties"

/* One signature being built. */
typedef struct xs {
    xmlDocPtr doc;
    xmlNsPtr ds, xa;
    xmlNodePtr sig, si, sv, ki, qp, sp, usp;
    xmlNodePtr objs[QTSP_XADES_MAX_OBJECTS]; /* enveloping: the ds:Object per object */
    char id[40];                             /* the signature's Id suffix */
    const char *c14n_uri;
    int excl;
    int oom; /* a libxml2 allocation failed */
} xs;

static xmlNodePtr el(xs *x, xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
    xmlNodePtr n = parent ? xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST text) : NULL;
    if (!n)
        x->oom = 1;
    return n;
}

static void attr(xs *x, xmlNodePtr n, const char *name, const char *val)
{
    if (!n || !xmlSetProp(n, BAD_CAST name, BAD_CAST val))
        x->oom = 1;
}

/* <ds:{name} Algorithm="uri"/> */
static xmlNodePtr alg_el(xs *x, xmlNodePtr parent, const char *name, const char *uri)
{
    xmlNodePtr n = el(x, parent, x->ds, name, NULL);
    attr(x, n, "Algorithm", uri);
    return n;
}

static qtsp_status b64_el(xs *x, xmlNodePtr parent, xmlNsPtr ns, const char *name,
                          const unsigned char *p, size_t len, xmlNodePtr *out)
{
    xmlNodePtr n = el(x, parent, ns, name, NULL);
    ENSURE(n != NULL, QTSP_ERR_NOMEM, "out of memory");
    if (out)
        *out = n;
    return qtsp_xml_add_base64(n, p, len);
}

static qtsp_status cert_el(xs *x, xmlNodePtr parent, xmlNsPtr ns, const char *name, X509 *c)
{
    unsigned char *der = NULL;
    int n = i2d_X509(c, &der);
    ENSURE(n > 0, QTSP_ERR_CRYPTO, "certificate encoding");
    qtsp_status rc = b64_el(x, parent, ns, name, der, (size_t)n, NULL);
    OPENSSL_free(der);
    return rc;
}

/* The XML-DSig SignatureMethod of alg (RFC 6931 2.2.2, 2.3.6). */
static qtsp_status sig_method(const qtsp_sigalg *alg, const char **uri)
{
    static const struct {
        int nid;
        const char *ec, *rsa;
    } T[] = {
        {NID_sha256, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
         "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"},
        {NID_sha384, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
         "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"},
        {NID_sha512, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
         "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"},
    };
    ENSURE(alg->md != NULL, QTSP_ERR_INVALID, "no digest");
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (EVP_MD_get_type(alg->md) == T[i].nid) {
            if (alg->scheme == QTSP_SIG_ECDSA)
                *uri = T[i].ec;
            else if (alg->scheme == QTSP_SIG_RSA_PKCS1)
                *uri = T[i].rsa;
            else
                FAIL(QTSP_ERR_UNSUPPORTED, "XAdES signs with ECDSA or RSA PKCS#1 v1.5");
            return QTSP_OK;
        }
    FAIL(QTSP_ERR_UNSUPPORTED, "XAdES digests are SHA-256, SHA-384 or SHA-512");
}

/* DER ECDSA-Sig-Value -> r || s, each flen bytes (XML-DSig 1.1 6.4.3). */
static qtsp_status ecdsa_der_to_raw(const unsigned char *der, size_t n, size_t flen,
                                    unsigned char *raw)
{
    qtsp_der_r r = {der, n}, seq, v[2];
    TRY(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL));
    TRY(qtsp_der_done(&r));
    for (int i = 0; i < 2; i++) {
        TRY(qtsp_der_get(&seq, QTSP_DER_INTEGER, &v[i], NULL));
        while (v[i].n > 0 && v[i].p[0] == 0) {
            v[i].p++;
            v[i].n--;
        }
        ENSURE(v[i].n <= flen, QTSP_ERR_CRYPTO, "ECDSA value longer than the field");
        memset(raw + i * flen, 0, flen - v[i].n);
        memcpy(raw + i * flen + flen - v[i].n, v[i].p, v[i].n);
    }
    return qtsp_der_done(&seq);
}

/* "id-" and 16 random hex digits. */
static qtsp_status new_id(char *out, size_t cap)
{
    unsigned char rnd[8];
    char hex[17];
    TRY(qtsp_random(rnd, sizeof rnd));
    qtsp_hex_encode(rnd, sizeof rnd, hex);
    snprintf(out, cap, "id-%s", hex);
    return QTSP_OK;
}

/* A relative name that every verifier resolves the same way: letters,
 * digits, ". _ - /" (EN 319 162-1 names in a container), no absolute
 * path, no empty or dot segments. */
qtsp_status ades_check_name(const char *name)
{
    ENSURE(name && *name && strlen(name) <= 255, QTSP_ERR_INVALID, "a file name of 1..255 bytes");
    ENSURE(name[0] != '/', QTSP_ERR_INVALID, "%s: an absolute name", name);
    for (const char *p = name; *p; p++)
        ENSURE((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                   strchr("._-/", *p),
               QTSP_ERR_INVALID, "%s: names are letters, digits, '.', '_', '-' and '/'", name);
    for (const char *seg = name; seg;) {
        const char *e = strchr(seg, '/');
        size_t l = e ? (size_t)(e - seg) : strlen(seg);
        ENSURE(l > 0 && !(l == 1 && seg[0] == '.') && !(l == 2 && seg[0] == '.' && seg[1] == '.'),
               QTSP_ERR_INVALID, "%s: empty, '.' or '..' path segment", name);
        seg = e ? e + 1 : NULL;
    }
    return QTSP_OK;
}

/* Digest contexts of one pass: the reference's (signer's md) and, at
 * B-LTA, the archive time-stamp's (SHA-256 over all reference outputs). */
typedef struct ref_md {
    EVP_MD_CTX *c[2];
} ref_md;

/* Feeds the output of data reference i (what its digest covers) into m. */
static qtsp_status ref_output(xs *x, const qtsp_xades_opts *o, const qtsp_xades_object *ob,
                              ref_md *m)
{
    if (o->packaging == QTSP_XADES_ENVELOPED)
        return qtsp_xml_c14n(x->doc, NULL, 1, x->excl, m->c, 2, NULL);
    static const unsigned char empty[1];
    for (int k = 0; k < 2; k++)
        ENSURE(!m->c[k] || EVP_DigestUpdate(m->c[k], ob->data ? ob->data : empty, ob->len) == 1,
               QTSP_ERR_CRYPTO, "digest");
    return QTSP_OK;
}

static qtsp_status digest_value(xs *x, xmlNodePtr ref, EVP_MD_CTX *c)
{
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    ENSURE(EVP_DigestFinal_ex(c, dg, &dl) == 1, QTSP_ERR_CRYPTO, "digest");
    return b64_el(x, ref, x->ds, "DigestValue", dg, dl, NULL);
}

/* ds:Signature with SignedInfo (no digests yet), and the objects. */
static qtsp_status skeleton(xs *x, const qtsp_ades_signer *s, const qtsp_xades_opts *o,
                            const qtsp_xades_object *objs, size_t n, xmlNodePtr *refs)
{
    char buf[96];
    const char *sm = NULL;
    TRY(sig_method(&s->alg, &sm));
    const char *dm = qtsp_xml_digest_uri(s->alg.md);
    x->sig = xmlNewNode(NULL, BAD_CAST "Signature");
    ENSURE(x->sig != NULL, QTSP_ERR_NOMEM, "out of memory");
    xmlNodePtr root = xmlDocGetRootElement(x->doc);
    if (!root)
        xmlDocSetRootElement(x->doc, x->sig);
    else if (!xmlAddChild(root, x->sig)) {
        xmlFreeNode(x->sig);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    x->ds = xmlNewNs(x->sig, BAD_CAST QTSP_NS_DS, BAD_CAST "ds");
    ENSURE(x->ds != NULL, QTSP_ERR_NOMEM, "out of memory");
    xmlSetNs(x->sig, x->ds);
    attr(x, x->sig, "Id", x->id);

    x->si = el(x, x->sig, x->ds, "SignedInfo", NULL);
    alg_el(x, x->si, "CanonicalizationMethod", x->c14n_uri);
    alg_el(x, x->si, "SignatureMethod", sm);
    for (size_t i = 0; i < n; i++) {
        xmlNodePtr r = refs[i] = el(x, x->si, x->ds, "Reference", NULL);
        snprintf(buf, sizeof buf, "r-%s-%zu", x->id, i + 1);
        attr(x, r, "Id", buf);
        if (o->packaging == QTSP_XADES_ENVELOPED) {
            attr(x, r, "URI", "");
            xmlNodePtr t = el(x, r, x->ds, "Transforms", NULL);
            alg_el(x, t, "Transform", DS_ENVELOPED);
            /* other signatures in the document are not signed (parallel
             * enveloped signatures); the ds prefix is declared on ds:Signature */
            el(x, alg_el(x, t, "Transform", QTSP_DS_XPATH), x->ds, "XPath", QTSP_XPATH_NO_SIGS);
            alg_el(x, t, "Transform", x->c14n_uri);
        } else if (o->packaging == QTSP_XADES_ENVELOPING) {
            snprintf(buf, sizeof buf, "#o-%s-%zu", x->id, i + 1);
            attr(x, r, "URI", buf);
            xmlNodePtr t = el(x, r, x->ds, "Transforms", NULL);
            alg_el(x, t, "Transform", DS_BASE64);
        } else {
            attr(x, r, "URI", objs[i].uri);
        }
        alg_el(x, r, "DigestMethod", dm);
    }
    refs[n] = el(x, x->si, x->ds, "Reference", NULL);
    attr(x, refs[n], "Type", XADES_SP_TYPE);
    snprintf(buf, sizeof buf, "#xades-%s", x->id);
    attr(x, refs[n], "URI", buf);
    alg_el(x, el(x, refs[n], x->ds, "Transforms", NULL), "Transform", x->c14n_uri);
    alg_el(x, refs[n], "DigestMethod", dm);

    x->sv = el(x, x->sig, x->ds, "SignatureValue", NULL);
    snprintf(buf, sizeof buf, "value-%s", x->id);
    attr(x, x->sv, "Id", buf);
    /* KeyInfo: the signer's certificate (EN 319 132-1 6.3 k), then the chain */
    x->ki = el(x, x->sig, x->ds, "KeyInfo", NULL);
    xmlNodePtr xd = el(x, x->ki, x->ds, "X509Data", NULL);
    ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
    TRY(cert_el(x, xd, x->ds, "X509Certificate", s->cert));
    for (int i = 0; i < sk_X509_num(s->chain); i++)
        TRY(cert_el(x, xd, x->ds, "X509Certificate", sk_X509_value(s->chain, i)));

    xmlNodePtr obj = el(x, x->sig, x->ds, "Object", NULL);
    x->qp = el(x, obj, NULL, "QualifyingProperties", NULL);
    ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
    x->xa = xmlNewNs(x->qp, BAD_CAST QTSP_NS_XADES, BAD_CAST "xades");
    ENSURE(x->xa != NULL, QTSP_ERR_NOMEM, "out of memory");
    xmlSetNs(x->qp, x->xa);
    snprintf(buf, sizeof buf, "#%s", x->id);
    attr(x, x->qp, "Target", buf);
    if (o->packaging == QTSP_XADES_ENVELOPING)
        for (size_t i = 0; i < n; i++) {
            xmlNodePtr d = x->objs[i] = el(x, x->sig, x->ds, "Object", NULL);
            snprintf(buf, sizeof buf, "o-%s-%zu", x->id, i + 1);
            attr(x, d, "Id", buf);
            attr(x, d, "MimeType", objs[i].mime ? objs[i].mime : "application/octet-stream");
            attr(x, d, "Encoding", DS_BASE64);
            ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
            TRY(qtsp_xml_add_base64(d, objs[i].data, objs[i].len));
        }
    ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* SignedProperties (EN 319 132-1 5.2.1, 5.2.2, 5.2.4). */
static qtsp_status signed_props(xs *x, const qtsp_ades_signer *s, const qtsp_xades_opts *o,
                                const qtsp_xades_object *objs, size_t n)
{
    char buf[96];
    x->sp = el(x, x->qp, x->xa, "SignedProperties", NULL);
    snprintf(buf, sizeof buf, "xades-%s", x->id);
    attr(x, x->sp, "Id", buf);
    xmlNodePtr ssp = el(x, x->sp, x->xa, "SignedSignatureProperties", NULL);
    qtsp_format_rfc3339((time_t)o->signing_time, buf, sizeof buf);
    el(x, ssp, x->xa, "SigningTime", buf);
    /* SigningCertificateV2: SHA-256 of the certificate, IssuerSerialV2 the
     * base64 DER IssuerSerial of RFC 5035 */
    xmlNodePtr cert = el(x, el(x, ssp, x->xa, "SigningCertificateV2", NULL), x->xa, "Cert", NULL);
    xmlNodePtr cd = el(x, cert, x->xa, "CertDigest", NULL);
    alg_el(x, cd, "DigestMethod", qtsp_xml_digest_uri(EVP_sha256()));
    ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
    unsigned char h[32];
    unsigned int hl = 0;
    ENSURE(X509_digest(s->cert, EVP_sha256(), h, &hl) == 1, QTSP_ERR_CRYPTO, "certificate hash");
    TRY(b64_el(x, cd, x->ds, "DigestValue", h, hl, NULL));
    qtsp_buf is;
    qtsp_buf_init(&is, 1 << 16);
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, &is);
    qtsp_status rc = qtsp_cms_issuer_serial(s->cert, &w);
    if (rc == QTSP_OK)
        rc = qtsp_der_w_finish(&w, NULL);
    if (rc == QTSP_OK)
        rc = b64_el(x, cert, x->xa, "IssuerSerialV2", is.data, is.len, NULL);
    qtsp_buf_cleanup(&is);
    TRY(rc);
    xmlNodePtr sdop = el(x, x->sp, x->xa, "SignedDataObjectProperties", NULL);
    for (size_t i = 0; i < n; i++) {
        xmlNodePtr f = el(x, sdop, x->xa, "DataObjectFormat", NULL);
        snprintf(buf, sizeof buf, "#r-%s-%zu", x->id, i + 1);
        attr(x, f, "ObjectReference", buf);
        const char *mime = objs[i].mime                           ? objs[i].mime
                           : o->packaging == QTSP_XADES_ENVELOPED ? "text/xml"
                                                                  : "application/octet-stream";
        el(x, f, x->xa, "MimeType", mime);
    }
    ENSURE(!x->oom, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

/* A time-stamp property: <{name} Id><ds:CanonicalizationMethod/>
 * <xades:EncapsulatedTimeStamp>token</>, the token over dgst; in the XAdES
 * namespace, or in ns_uri (prefix pfx) declared on the element itself, so
 * that nothing canonicalised before changes (inclusive C14N). */
static qtsp_status ts_prop(xs *x, const qtsp_ades_services *sv, const char *ns_uri, const char *pfx,
                           const char *name, const char *idp, const unsigned char dgst[32])
{
    char buf[96];
    qtsp_buf tok;
    qtsp_buf_init(&tok, ADES_TOKEN_MAX);
    qtsp_status rc = ades_timestamp(sv, dgst, &tok);
    xmlNodePtr t = NULL;
    if (rc == QTSP_OK) {
        t = el(x, x->usp, ns_uri ? NULL : x->xa, name, NULL);
        xmlNsPtr ns = t && ns_uri ? xmlNewNs(t, BAD_CAST ns_uri, BAD_CAST pfx) : NULL;
        if (ns)
            xmlSetNs(t, ns);
        else if (ns_uri)
            x->oom = 1;
        snprintf(buf, sizeof buf, "%s-%s", idp, x->id);
        attr(x, t, "Id", buf);
        alg_el(x, t, "CanonicalizationMethod", x->c14n_uri);
        rc = x->oom ? qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory")
                    : b64_el(x, t, x->xa, "EncapsulatedTimeStamp", tok.data, tok.len, NULL);
    }
    qtsp_buf_cleanup(&tok);
    return rc;
}

/* CertificateValues and RevocationValues (EN 319 132-1 5.4.1, 5.4.2). */
static qtsp_status lt_props(xs *x, const qtsp_ades_services *sv, const qtsp_ades_signer *s)
{
    STACK_OF(X509) *vc = NULL;
    qtsp_buf ocsp;
    qtsp_buf_init(&ocsp, ADES_TOKEN_MAX);
    qtsp_status rc = ades_validation_certs(sv, s, &vc);
    size_t boff = 0, blen = 0;
    if (rc == QTSP_OK)
        rc = ades_ocsp(sv, s->cert, &ocsp, &boff, &blen);
    xmlNodePtr cv = el(x, x->usp, x->xa, "CertificateValues", NULL);
    for (int i = 0; rc == QTSP_OK && i < sk_X509_num(vc); i++)
        if (!ades_has_cert(s->chain, sk_X509_value(vc, i))) /* not already in KeyInfo */
            rc = cert_el(x, cv, x->xa, "EncapsulatedX509Certificate", sk_X509_value(vc, i));
    xmlNodePtr rv = el(x, x->usp, x->xa, "RevocationValues", NULL);
    STACK_OF(X509_CRL) *crls = NULL;
    if (rc == QTSP_OK)
        rc = ades_crls(sv, &crls);
    if (rc == QTSP_OK && sk_X509_CRL_num(crls) > 0) {
        xmlNodePtr cl = el(x, rv, x->xa, "CRLValues", NULL);
        for (int i = 0; rc == QTSP_OK && i < sk_X509_CRL_num(crls); i++) {
            unsigned char *der = NULL;
            int l = i2d_X509_CRL(sk_X509_CRL_value(crls, i), &der);
            rc = l > 0 ? b64_el(x, cl, x->xa, "EncapsulatedCRLValue", der, (size_t)l, NULL)
                       : qtsp_err_set(QTSP_ERR_CRYPTO, __FILE__, __LINE__, "CRL encoding");
            OPENSSL_free(der);
        }
    }
    /* the whole OCSPResponse (EN 319 132-1 5.4.2: OCSPValues) */
    if (rc == QTSP_OK)
        rc = b64_el(x, el(x, rv, x->xa, "OCSPValues", NULL), x->xa, "EncapsulatedOCSPValue",
                    ocsp.data, ocsp.len, NULL);
    if (rc == QTSP_OK && x->oom)
        rc = qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    sk_X509_free(vc);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    qtsp_buf_cleanup(&ocsp);
    return rc;
}

static void free_mds(ref_md *m)
{
    EVP_MD_CTX_free(m->c[0]);
    m->c[0] = NULL;
}

/* The document of an enveloped signature: parsed (*out, xmlFreeDoc) and not
 * itself an XML signature. */
static qtsp_status parse_enveloped(const unsigned char *p, size_t len, xmlDocPtr *out)
{
    xmlDocPtr doc = NULL;
    TRY(qtsp_xml_parse(p, len, QTSP_ADES_MAX_DOC, &doc));
    /* the reference leaves every ds:Signature out: one that is the whole
     * document would leave nothing to sign */
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root->ns && xmlStrEqual(root->name, BAD_CAST "Signature") &&
        xmlStrEqual(root->ns->href, BAD_CAST QTSP_NS_DS)) {
        xmlFreeDoc(doc);
        FAIL(QTSP_ERR_INVALID, "the document is an XML signature: sign it enveloping or detached");
    }
    *out = doc;
    return QTSP_OK;
}

qtsp_status qtsp_xades_check_enveloped(const unsigned char *xml, size_t len)
{
    ENSURE(xml || len == 0, QTSP_ERR_INVALID, "object without data");
    ENSURE(len <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID, "documents larger than %zu bytes",
           QTSP_ADES_MAX_DOC);
    qtsp_xml_init();
    xmlDocPtr doc = NULL;
    TRY(parse_enveloped(xml, len, &doc));
    xmlFreeDoc(doc);
    return QTSP_OK;
}

qtsp_status qtsp_xades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_xades_opts *o, const qtsp_xades_object *objs, size_t n,
                            qtsp_buf *out)
{
    ENSURE(s && s->key && s->cert && o && objs && out, QTSP_ERR_INVALID, "nothing to sign");
    ENSURE(o->level >= QTSP_ADES_B_B && o->level <= QTSP_ADES_B_LTA, QTSP_ERR_INVALID,
           "unknown conformance level");
    ENSURE(o->packaging >= QTSP_XADES_ENVELOPED && o->packaging <= QTSP_XADES_DETACHED,
           QTSP_ERR_INVALID, "packaging is enveloped, enveloping or detached");
    ENSURE(n >= 1 && n <= QTSP_XADES_MAX_OBJECTS, QTSP_ERR_INVALID, "1..%d objects to sign",
           QTSP_XADES_MAX_OBJECTS);
    ENSURE(o->packaging != QTSP_XADES_ENVELOPED || n == 1, QTSP_ERR_INVALID,
           "an enveloped signature signs one XML document");
    ENSURE(!o->asic || o->packaging == QTSP_XADES_DETACHED, QTSP_ERR_INVALID,
           "ASiC holds detached signatures");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        ENSURE(objs[i].data || objs[i].len == 0, QTSP_ERR_INVALID, "object without data");
        total += objs[i].len;
        ENSURE(objs[i].len <= QTSP_ADES_MAX_DOC && total <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID,
               "documents larger than %zu bytes", QTSP_ADES_MAX_DOC);
        if (o->packaging == QTSP_XADES_DETACHED) {
            TRY(ades_check_name(objs[i].uri));
            for (size_t j = 0; j < i; j++)
                ENSURE(strcmp(objs[i].uri, objs[j].uri) != 0, QTSP_ERR_INVALID, "%s: named twice",
                       objs[i].uri);
        }
        if (objs[i].mime) /* a media type: a short token, no markup */
            ENSURE(strlen(objs[i].mime) <= 127 && strpbrk(objs[i].mime, "<>&\"' ") == NULL,
                   QTSP_ERR_INVALID, "bad media type");
    }
    const char *sm = NULL;
    TRY(sig_method(&s->alg, &sm));

    qtsp_xml_init();
    qtsp_status rc = QTSP_OK;
    xs x = {0};
    xmlNodePtr refs[QTSP_XADES_MAX_OBJECTS + 1];
    ref_md m = {{NULL, NULL}};
    EVP_MD_CTX *ats = NULL;
    xmlChar *mem = NULL;
    int memlen = 0;
    size_t start = out->len;
    x.excl = !o->inclusive_c14n;
    x.c14n_uri = x.excl ? QTSP_C14N_EXC : QTSP_C14N_INCL;
    TRY(new_id(x.id, sizeof x.id));
    if (o->packaging == QTSP_XADES_ENVELOPED) {
        TRY(parse_enveloped(objs[0].data, objs[0].len, &x.doc));
    } else {
        x.doc = xmlNewDoc(BAD_CAST "1.0");
        ENSURE(x.doc != NULL, QTSP_ERR_NOMEM, "out of memory");
        if (o->asic) {
            /* EN 319 162-1 A.5: asic:XAdESSignatures holds the ds:Signature */
            xmlNodePtr r = xmlNewNode(NULL, BAD_CAST "XAdESSignatures");
            xmlNsPtr ns = r ? xmlNewNs(r, BAD_CAST QTSP_NS_ASIC, BAD_CAST "asic") : NULL;
            ENSURE_OUT(ns != NULL, QTSP_ERR_NOMEM, "out of memory");
            xmlSetNs(r, ns);
            xmlDocSetRootElement(x.doc, r);
        }
    }
    TRY_OUT(skeleton(&x, s, o, objs, n, refs));
    TRY_OUT(signed_props(&x, s, o, objs, n));
    if (o->level >= QTSP_ADES_B_LTA) {
        /* EN 319 132-1 5.5.2.2: the archive imprint starts with every
         * reference's output, in SignedInfo's order */
        ats = EVP_MD_CTX_new();
        ENSURE_OUT(ats && EVP_DigestInit_ex(ats, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
                   "SHA-256");
    }
    m.c[1] = ats;
    for (size_t i = 0; i <= n; i++) {
        m.c[0] = EVP_MD_CTX_new();
        ENSURE_OUT(m.c[0] && EVP_DigestInit_ex(m.c[0], s->alg.md, NULL) == 1, QTSP_ERR_CRYPTO,
                   "digest");
        if (i < n)
            TRY_OUT(ref_output(&x, o, &objs[i], &m));
        else
            TRY_OUT(qtsp_xml_c14n(x.doc, x.sp, 0, x.excl, m.c, 2, NULL));
        TRY_OUT(digest_value(&x, refs[i], m.c[0]));
        free_mds(&m);
    }

    /* SignatureValue: the signer's md over the canonical SignedInfo, signed
     * in the token */
    unsigned char dg[EVP_MAX_MD_SIZE], sig[QTSP_KEY_SIG_MAX], raw[2 * 66];
    unsigned int dl = 0;
    size_t sl = sizeof sig;
    m.c[0] = EVP_MD_CTX_new();
    m.c[1] = NULL;
    ENSURE_OUT(m.c[0] && EVP_DigestInit_ex(m.c[0], s->alg.md, NULL) == 1, QTSP_ERR_CRYPTO,
               "digest");
    TRY_OUT(qtsp_xml_c14n(x.doc, x.si, 0, x.excl, m.c, 1, NULL));
    ENSURE_OUT(EVP_DigestFinal_ex(m.c[0], dg, &dl) == 1, QTSP_ERR_CRYPTO, "digest");
    free_mds(&m);
    TRY_OUT(qtsp_key_sign_digest(s->key, &s->alg, dg, dl, sig, &sl));
    if (s->alg.scheme == QTSP_SIG_ECDSA) {
        size_t flen = (size_t)(EVP_PKEY_get_bits(qtsp_key_get0_pubkey(s->key)) + 7) / 8;
        ENSURE_OUT(flen > 0 && flen <= 66, QTSP_ERR_UNSUPPORTED, "EC key size");
        TRY_OUT(ecdsa_der_to_raw(sig, sl, flen, raw));
        TRY_OUT(qtsp_xml_add_base64(x.sv, raw, 2 * flen));
    } else {
        TRY_OUT(qtsp_xml_add_base64(x.sv, sig, sl));
    }

    if (o->level >= QTSP_ADES_B_T) {
        xmlNodePtr up = el(&x, x.qp, x.xa, "UnsignedProperties", NULL);
        x.usp = el(&x, up, x.xa, "UnsignedSignatureProperties", NULL);
        ENSURE_OUT(!x.oom, QTSP_ERR_NOMEM, "out of memory");
        /* EN 319 132-1 5.3: the time-stamp covers the canonical SignatureValue element */
        unsigned char h[32];
        m.c[0] = EVP_MD_CTX_new();
        ENSURE_OUT(m.c[0] && EVP_DigestInit_ex(m.c[0], EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
                   "SHA-256");
        TRY_OUT(qtsp_xml_c14n(x.doc, x.sv, 0, x.excl, m.c, 1, NULL));
        ENSURE_OUT(EVP_DigestFinal_ex(m.c[0], h, NULL) == 1, QTSP_ERR_CRYPTO, "SHA-256");
        free_mds(&m);
        TRY_OUT(ts_prop(&x, sv, NULL, NULL, "SignatureTimeStamp", "ts", h));
    }
    if (o->level >= QTSP_ADES_B_LT)
        TRY_OUT(lt_props(&x, sv, s));
    if (o->level >= QTSP_ADES_B_LTA) {
        /* 5.5.2.2 continued: SignedInfo, SignatureValue, KeyInfo, each
         * unsigned signature property before this one, the ds:Objects other
         * than the QualifyingProperties' */
        xmlNodePtr parts[3] = {x.si, x.sv, x.ki};
        for (int i = 0; i < 3; i++)
            TRY_OUT(qtsp_xml_c14n(x.doc, parts[i], 0, x.excl, &ats, 1, NULL));
        for (xmlNodePtr p = x.usp->children; p; p = p->next)
            if (p->type == XML_ELEMENT_NODE)
                TRY_OUT(qtsp_xml_c14n(x.doc, p, 0, x.excl, &ats, 1, NULL));
        for (size_t i = 0; o->packaging == QTSP_XADES_ENVELOPING && i < n; i++)
            TRY_OUT(qtsp_xml_c14n(x.doc, x.objs[i], 0, x.excl, &ats, 1, NULL));
        unsigned char h[32];
        ENSURE_OUT(EVP_DigestFinal_ex(ats, h, NULL) == 1, QTSP_ERR_CRYPTO, "SHA-256");
        TRY_OUT(ts_prop(&x, sv, QTSP_NS_XADES141, "xades141", "ArchiveTimeStamp", "ats", h));
    }
    ENSURE_OUT(!x.oom, QTSP_ERR_NOMEM, "out of memory");
    if (o->packaging == QTSP_XADES_ENVELOPED)
        xmlDocDumpMemory(x.doc, &mem, &memlen);
    else
        xmlDocDumpMemoryEnc(x.doc, &mem, &memlen, "UTF-8");
    ENSURE_OUT(mem != NULL && memlen > 0, QTSP_ERR_NOMEM, "cannot write the XML");
    TRY_OUT(qtsp_buf_append(out, mem, (size_t)memlen));
out:
    if (rc != QTSP_OK)
        out->len = start;
    xmlFree(mem);
    EVP_MD_CTX_free(m.c[0]);
    EVP_MD_CTX_free(ats);
    xmlFreeDoc(x.doc);
    return rc;
}
