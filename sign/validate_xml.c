/* XAdES validation (ETSI EN 319 132-1 signatures, EN 319 102-1 process):
 * the XML is parsed by sign/xml.h's safe parser (no DTD, no entities, no
 * network: XML bombs and external entities are refused before anything is
 * read), every ds:Signature is checked: its references (XML-DSig 1.1
 * 4.4.3: same-document by Id, enveloped, base64 ds:Object, detached by URI
 * from the caller), the SignatureValue over the canonical SignedInfo, the
 * signing certificate (SigningCertificateV2), the signature time-stamp over
 * the canonical SignatureValue, CertificateValues and RevocationValues
 * (OCSP), and the xades141:ArchiveTimeStamp recomputed as sign/xades.c
 * builds it; then sign/validate.c's common checks. Ids are looked up only
 * inside the signature's own document and must be unique there (a second
 * element with the same Id is a format failure: no signature wrapping). */
#include <libxml/tree.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/codec.h"
#include "sign/validate_int.h"
#include "sign/xml.h"

#define DS_ENVELOPED "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#define DS_BASE64 "http://www.w3.org/2000/09/xmldsig#base64"
#define XADES_SP_TYPE "http://uri.etsi.org/01903#SignedProperties"
/* Most elements walked looking for signatures and Ids; most references. */
#define WALK_MAX 200000
#define REFS_MAX 80

static int is_el(xmlNodePtr n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, ns) == 0 && strcmp((const char *)n->name, name) == 0;
}

static xmlNodePtr child(xmlNodePtr n, const char *ns, const char *name)
{
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

/* A path of children (NULL-terminated ns/name pairs). */
static xmlNodePtr path(xmlNodePtr n, const char *ns, ...)
{
    va_list ap;
    va_start(ap, ns);
    const char *name;
    while (n && (name = va_arg(ap, const char *)) != NULL) {
        n = child(n, ns, name);
        const char *next = va_arg(ap, const char *);
        if (!next)
            break;
        ns = next;
    }
    va_end(ap);
    return n;
}

/* An attribute's value (caller xmlFree), NULL when absent. */
static char *attr(xmlNodePtr n, const char *name)
{
    return (char *)xmlGetProp(n, BAD_CAST name);
}

/* Base64 text of n (whitespace ignored) into a malloc'd buffer. */
static unsigned char *b64_of(xmlNodePtr n, size_t *len)
{
    xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
    if (!t)
        return NULL;
    size_t k = 0, tl = strlen((const char *)t);
    for (size_t i = 0; i < tl; i++)
        if (t[i] != ' ' && t[i] != '\n' && t[i] != '\r' && t[i] != '\t')
            t[k++] = t[i];
    unsigned char *out = malloc(k / 4 * 3 + 3);
    size_t ol = 0;
    if (!out || qtsp_base64_decode((const char *)t, k, QTSP_B64_STD | QTSP_B64_PADDING, out,
                                   k / 4 * 3 + 3, &ol) != QTSP_OK) {
        qtsp_err_clear();
        free(out);
        out = NULL;
    }
    xmlFree(t);
    *len = ol;
    return out;
}

static const EVP_MD *md_of_uri(const char *u)
{
    static const struct {
        const char *uri;
        int nid;
    } T[] = {{"http://www.w3.org/2001/04/xmlenc#sha256", NID_sha256},
             {"http://www.w3.org/2001/04/xmldsig-more#sha384", NID_sha384},
             {"http://www.w3.org/2001/04/xmlenc#sha512", NID_sha512}};
    for (size_t i = 0; u && i < sizeof T / sizeof T[0]; i++)
        if (strcmp(u, T[i].uri) == 0)
            return EVP_get_digestbynid(T[i].nid);
    return NULL;
}

/* Signature method URI: digest and whether ECDSA (XML-DSig 1.1 6.4). */
static const EVP_MD *sig_method(const char *u, int *ecdsa)
{
    static const char pre_ec[] = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-";
    static const char pre_rsa[] = "http://www.w3.org/2001/04/xmldsig-more#rsa-";
    if (!u)
        return NULL;
    const char *h = NULL;
    if (strncmp(u, pre_ec, sizeof pre_ec - 1) == 0) {
        *ecdsa = 1;
        h = u + sizeof pre_ec - 1;
    } else if (strncmp(u, pre_rsa, sizeof pre_rsa - 1) == 0) {
        *ecdsa = 0;
        h = u + sizeof pre_rsa - 1;
    } else {
        return NULL;
    }
    return strcmp(h, "sha256") == 0   ? EVP_sha256()
           : strcmp(h, "sha384") == 0 ? EVP_sha384()
           : strcmp(h, "sha512") == 0 ? EVP_sha512()
                                      : NULL;
}

/* 1 exclusive, 0 inclusive, -1 neither (comments variants are not taken). */
static int c14n_kind(const char *u)
{
    if (u && strcmp(u, QTSP_C14N_EXC) == 0)
        return 1;
    if (u && strcmp(u, QTSP_C14N_INCL) == 0)
        return 0;
    return -1;
}

/* The element of doc with Id id: *out, and how many there are (capped at 2). */
static int find_id(xmlNodePtr n, const char *id, xmlNodePtr *out, int *budget)
{
    int found = 0;
    for (; n && found < 2; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (--*budget < 0)
            return 2;
        xmlChar *v = xmlGetProp(n, BAD_CAST "Id");
        if (v && strcmp((const char *)v, id) == 0) {
            *out = n;
            found++;
        }
        xmlFree(v);
        found += find_id(n->children, id, out, budget);
    }
    return found;
}

typedef struct xctx {
    const qtsp_validator *v;
    xmlDocPtr doc;
    xmlNodePtr sig;
    const unsigned char *content;
    size_t content_len;
    val_resolve_fn resolve;
    void *resolve_ctx;
    int n_detached;
} xctx;

/* Canonical form of top (or the document without signatures) into md. */
static int c14n_md(xctx *x, xmlNodePtr top, int no_sigs, int excl, EVP_MD_CTX **m, size_t n)
{
    int ok = qtsp_xml_c14n(x->doc, top, no_sigs, excl, m, n, NULL) == QTSP_OK;
    qtsp_err_clear();
    return ok;
}

/* One ds:Reference: its output into m[0] (its digest) and m[1] (the
 * archive imprint, may be NULL). 0 with why when it cannot be computed;
 * *missing when a detached object was not given. */
static int ref_output(xctx *x, xmlNodePtr ref, EVP_MD_CTX **m, int *missing, char *why, size_t cap)
{
    char *uri = attr(ref, "URI");
    int ok = 0, enveloped = 0, base64 = 0, excl = 0, ntr = 0;
    xmlNodePtr tr = child(ref, QTSP_NS_DS, "Transforms");
    for (xmlNodePtr t = tr ? tr->children : NULL; t; t = t->next) {
        if (!is_el(t, QTSP_NS_DS, "Transform"))
            continue;
        char *a = attr(t, "Algorithm");
        ntr++;
        if (a && strcmp(a, DS_ENVELOPED) == 0)
            enveloped = 1;
        else if (a && strcmp(a, DS_BASE64) == 0)
            base64 = 1;
        else if (a && c14n_kind(a) >= 0)
            excl = c14n_kind(a);
        else if (a && strcmp(a, QTSP_DS_XPATH) == 0) {
            xmlChar *xp = xmlNodeGetContent(child(t, QTSP_NS_DS, "XPath"));
            int known = xp && strcmp((const char *)xp, QTSP_XPATH_NO_SIGS) == 0;
            xmlFree(xp);
            if (!known) {
                snprintf(why, cap, "an XPath transform other than %s", QTSP_XPATH_NO_SIGS);
                xmlFree(a);
                goto out;
            }
            enveloped = 1;
        } else {
            snprintf(why, cap, "transform %.80s not supported", a ? a : "(none)");
            xmlFree(a);
            goto out;
        }
        xmlFree(a);
    }
    if (!uri) {
        snprintf(why, cap, "a reference without URI");
    } else if (uri[0] == '\0') {
        if (!enveloped)
            snprintf(why, cap, "URI \"\" without the enveloped-signature transform");
        else if (!(ok = c14n_md(x, NULL, 1, excl, m, 2)))
            snprintf(why, cap, "the document cannot be canonicalised");
    } else if (uri[0] == '#') {
        xmlNodePtr t = NULL;
        int budget = WALK_MAX;
        int n = find_id(xmlDocGetRootElement(x->doc), uri + 1, &t, &budget);
        if (n != 1)
            snprintf(why, cap, "%s names %s element", uri, n == 0 ? "no" : "more than one");
        else if (base64) {
            size_t bl = 0;
            unsigned char *b = b64_of(t, &bl);
            ok = b != NULL;
            for (int k = 0; ok && k < 2; k++)
                ok = !m[k] || EVP_DigestUpdate(m[k], b, bl) == 1;
            free(b);
            if (!ok)
                snprintf(why, cap, "%s is not base64", uri);
        } else if (!(ok = c14n_md(x, t, 0, excl, m, 2)))
            snprintf(why, cap, "%s cannot be canonicalised", uri);
    } else {
        /* a detached object: the caller's bytes (EN 319 132-1 4.1) */
        size_t len = 0;
        const unsigned char *d = NULL;
        if (x->resolve)
            d = x->resolve(x->resolve_ctx, uri, &len);
        else if (x->content && ++x->n_detached == 1) {
            d = x->content;
            len = x->content_len;
        }
        static const unsigned char empty[1];
        if (!d && !(x->content && len == 0 && x->n_detached == 1)) {
            *missing = 1;
            snprintf(why, cap, "the detached object %.100s was not given", uri);
        } else {
            ok = 1;
            for (int k = 0; ok && k < 2; k++)
                ok = !m[k] || EVP_DigestUpdate(m[k], d ? d : empty, len) == 1;
        }
    }
out:
    (void)ntr;
    xmlFree(uri);
    return ok;
}

/* XML-DSig 1.1 6.4.3: ECDSA r || s to a DER ECDSA-Sig-Value. */
static unsigned char *ecdsa_raw_to_der(const unsigned char *raw, size_t n, size_t *out_len)
{
    if (n == 0 || n % 2 || n > 132)
        return NULL;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(n / 2), NULL), *t = BN_bin2bn(raw + n / 2, (int)(n / 2), NULL);
    unsigned char *der = NULL;
    int l = 0;
    if (s && r && t && ECDSA_SIG_set0(s, r, t) == 1) {
        r = t = NULL;
        l = i2d_ECDSA_SIG(s, &der);
    }
    BN_free(r);
    BN_free(t);
    ECDSA_SIG_free(s);
    if (l <= 0)
        return NULL;
    *out_len = (size_t)l;
    return der;
}

static X509 *cert_of(xmlNodePtr n)
{
    size_t l = 0;
    unsigned char *b = b64_of(n, &l);
    const unsigned char *p = b;
    X509 *x = b ? d2i_X509(NULL, &p, (long)l) : NULL;
    if (x && p != b + l) {
        X509_free(x);
        x = NULL;
    }
    free(b);
    return x;
}

/* SigningCertificateV2 (or V1) names cert: its first Cert's digest. */
static int signing_cert_ok(xmlNodePtr ssp, X509 *cert, int *present)
{
    xmlNodePtr sc = child(ssp, QTSP_NS_XADES, "SigningCertificateV2");
    if (!sc)
        sc = child(ssp, QTSP_NS_XADES, "SigningCertificate");
    *present = sc != NULL;
    if (!sc)
        return 1;
    xmlNodePtr cd = path(sc, QTSP_NS_XADES, "Cert", QTSP_NS_XADES, "CertDigest", NULL);
    xmlNodePtr dm = child(cd, QTSP_NS_DS, "DigestMethod");
    char *a = dm ? attr(dm, "Algorithm") : NULL;
    const EVP_MD *md = md_of_uri(a);
    if (a && !md && strcmp(a, "http://www.w3.org/2000/09/xmldsig#sha1") == 0)
        md = EVP_sha1(); /* V1 SigningCertificate */
    xmlFree(a);
    size_t l = 0;
    unsigned char *want = b64_of(child(cd, QTSP_NS_DS, "DigestValue"), &l);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    int ok = md && want && X509_digest(cert, md, h, &hl) == 1 && hl == l && memcmp(h, want, l) == 0;
    free(want);
    return ok;
}

/* A time-stamp property (SignatureTimeStamp, ArchiveTimeStamp): its token. */
static unsigned char *ts_token(xmlNodePtr ts, size_t *len, int *excl)
{
    xmlNodePtr cm = child(ts, QTSP_NS_DS, "CanonicalizationMethod");
    char *a = cm ? attr(cm, "Algorithm") : NULL;
    *excl = a ? c14n_kind(a) : 0; /* absent: C14N 1.0 (EN 319 132-1 5.3) */
    xmlFree(a);
    if (*excl < 0)
        return NULL;
    return b64_of(child(ts, QTSP_NS_XADES, "EncapsulatedTimeStamp"), len);
}

static void take_values(val_ctx *c, xmlNodePtr usp)
{
    xmlNodePtr cv = child(usp, QTSP_NS_XADES, "CertificateValues");
    int k = 0;
    for (xmlNodePtr e = cv ? cv->children : NULL; e && k < VAL_MAX_CERTS; e = e->next)
        if (is_el(e, QTSP_NS_XADES, "EncapsulatedX509Certificate")) {
            X509 *x = cert_of(e);
            if (x)
                val_pool_add(c, x);
            X509_free(x);
            k++;
            c->has_ltv |= 1;
        }
    xmlNodePtr ov = path(usp, QTSP_NS_XADES, "RevocationValues", QTSP_NS_XADES, "OCSPValues", NULL);
    k = 0;
    for (xmlNodePtr e = ov ? ov->children : NULL; e && k < VAL_MAX_OCSP; e = e->next)
        if (is_el(e, QTSP_NS_XADES, "EncapsulatedOCSPValue")) {
            size_t l = 0;
            unsigned char *b = b64_of(e, &l);
            const unsigned char *p = b;
            OCSP_RESPONSE *r = b ? d2i_OCSP_RESPONSE(NULL, &p, (long)l) : NULL;
            OCSP_BASICRESP *bs = r && p == b + l ? OCSP_response_get1_basic(r) : NULL;
            if (bs && sk_OCSP_BASICRESP_push(c->ocsps, bs) > 0)
                bs = NULL;
            OCSP_BASICRESP_free(bs);
            OCSP_RESPONSE_free(r);
            free(b);
            k++;
            c->has_ltv |= 2;
        }
    ERR_clear_error();
}

/* One ds:Signature. */
static qtsp_status one(xctx *x, const val_sig *in, int64_t now, json_t *sigs)
{
    qtsp_status rc = QTSP_OK;
    val_ctx c;
    TRY(val_ctx_init(&c, x->v, in, now));
    EVP_MD_CTX *m[2] = {NULL, NULL}, *ats = NULL;
    EVP_MD_CTX *vc = NULL;
    unsigned char *sv = NULL, *der = NULL;
    qtsp_buf si_c14n;
    qtsp_buf_init(&si_c14n, (size_t)4 << 20);
    char why[200] = "";
    xmlNodePtr si = child(x->sig, QTSP_NS_DS, "SignedInfo");
    xmlNodePtr svn = child(x->sig, QTSP_NS_DS, "SignatureValue");
    xmlNodePtr ki = child(x->sig, QTSP_NS_DS, "KeyInfo");
    xmlNodePtr qp = NULL, sp = NULL, ssp = NULL, usp = NULL;
    for (xmlNodePtr o = x->sig->children; o && !qp; o = o->next)
        if (is_el(o, QTSP_NS_DS, "Object"))
            qp = child(o, QTSP_NS_XADES, "QualifyingProperties");
    sp = child(qp, QTSP_NS_XADES, "SignedProperties");
    ssp = child(sp, QTSP_NS_XADES, "SignedSignatureProperties");
    usp = path(qp, QTSP_NS_XADES, "UnsignedProperties", QTSP_NS_XADES,
               "UnsignedSignatureProperties", NULL);
    char *cm = attr(child(si, QTSP_NS_DS, "CanonicalizationMethod"), "Algorithm");
    char *smu = attr(child(si, QTSP_NS_DS, "SignatureMethod"), "Algorithm");
    int excl = c14n_kind(cm), ecdsa = 0;
    const EVP_MD *smd = sig_method(smu, &ecdsa);
    xmlFree(cm);
    xmlFree(smu);
    if (!si || !svn || excl < 0 || !smd) {
        val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE",
                    !si || !svn ? "ds:Signature without SignedInfo or SignatureValue"
                    : excl < 0  ? "canonicalisation method not supported (C14N 1.0, exclusive)"
                                : "signature method not supported (ECDSA, RSA with SHA-2)");
        TRY_OUT(val_entry(&c, sigs));
        goto out;
    }

    /* certificates: KeyInfo (the signer's first), CertificateValues; OCSP answers */
    xmlNodePtr xd = child(ki, QTSP_NS_DS, "X509Data");
    X509 *first = NULL;
    int nk = 0;
    for (xmlNodePtr e = xd ? xd->children : NULL; e && nk < VAL_MAX_CERTS; e = e->next)
        if (is_el(e, QTSP_NS_DS, "X509Certificate")) {
            X509 *xc = cert_of(e);
            if (xc) {
                val_pool_add(&c, xc);
                if (!first)
                    first = xc;
                else
                    X509_free(xc);
            }
            nk++;
        }
    if (usp)
        take_values(&c, usp);
    /* 5.2.3: the signing certificate: the one SigningCertificateV2 names */
    int ess = 0;
    for (int i = 0; i < sk_X509_num(c.pool) && !c.cert; i++)
        if (ssp && signing_cert_ok(ssp, sk_X509_value(c.pool, i), &ess) && ess)
            c.cert = sk_X509_value(c.pool, i);
    if (!c.cert && !ess && first) /* no signing certificate property: KeyInfo's first */
        for (int i = 0; i < sk_X509_num(c.pool) && !c.cert; i++)
            if (X509_cmp(sk_X509_value(c.pool, i), first) == 0)
                c.cert = sk_X509_value(c.pool, i);
    X509_free(first);
    if (!c.cert) {
        val_verdict(&c.r, IND_INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND",
                    ess ? "no certificate in the file matches SigningCertificateV2"
                        : "the signing certificate is not in the file");
        TRY_OUT(val_entry(&c, sigs));
        goto out;
    }
    xmlChar *st = ssp ? xmlNodeGetContent(child(ssp, QTSP_NS_XADES, "SigningTime")) : NULL;
    time_t stt = 0;
    if (st && qtsp_parse_rfc3339("SigningTime", (const char *)st, &stt) == QTSP_OK)
        c.claimed = (int64_t)stt;
    qtsp_err_clear();
    xmlFree(st);

    /* 5.2.7: every reference's digest, then the signature value */
    /* the archive imprint starts with every reference's output (EN 319 132-1 5.5.2.2) */
    ats = EVP_MD_CTX_new();
    ENSURE_OUT(ats && EVP_DigestInit_ex(ats, EVP_sha256(), NULL) == 1, QTSP_ERR_NOMEM,
               "out of memory");
    int n_refs = 0, sp_covered = 0;
    for (xmlNodePtr r = si->children; r; r = r->next) {
        if (!is_el(r, QTSP_NS_DS, "Reference"))
            continue;
        if (++n_refs > REFS_MAX) {
            val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE", "more than %d references", REFS_MAX);
            break;
        }
        char *dmu = attr(child(r, QTSP_NS_DS, "DigestMethod"), "Algorithm");
        const EVP_MD *md = md_of_uri(dmu);
        xmlFree(dmu);
        size_t wl = 0;
        unsigned char *want = b64_of(child(r, QTSP_NS_DS, "DigestValue"), &wl);
        char *type = attr(r, "Type"), *uri = attr(r, "URI");
        if (type && strcmp(type, XADES_SP_TYPE) == 0 && uri && uri[0] == '#' && sp) {
            /* the SignedProperties must be this signature's own */
            xmlChar *id = xmlGetProp(sp, BAD_CAST "Id");
            sp_covered = id && strcmp((const char *)id, uri + 1) == 0;
            xmlFree(id);
        }
        xmlFree(type);
        xmlFree(uri);
        int missing = 0;
        unsigned char h[EVP_MAX_MD_SIZE];
        unsigned int hl = 0;
        m[0] = EVP_MD_CTX_new();
        m[1] = ats;
        if (!md || !want) {
            val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE",
                        "a reference without a SHA-2 DigestMethod or DigestValue");
        } else if (!m[0] || EVP_DigestInit_ex(m[0], md, NULL) != 1) {
            free(want);
            FAIL_OUT(QTSP_ERR_NOMEM, "out of memory");
        } else if (!ref_output(x, r, m, &missing, why, sizeof why)) {
            if (missing)
                val_verdict(&c.r, IND_INDETERMINATE, "SIGNED_DATA_NOT_FOUND", "%s", why);
            else
                val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE", "%s", why);
        } else if (EVP_DigestFinal_ex(m[0], h, &hl) != 1 || hl != wl ||
                   CRYPTO_memcmp(h, want, hl) != 0) {
            val_verdict(&c.r, IND_FAILED, "HASH_FAILURE",
                        "the digest of a signed data object differs from its reference");
        }
        free(want);
        EVP_MD_CTX_free(m[0]);
        m[0] = NULL;
    }
    if (sp && !sp_covered)
        val_verdict(&c.r, IND_FAILED, "FORMAT_FAILURE",
                    "the SignedProperties are not referenced by SignedInfo");
    /* SignedInfo's canonical form, verified with the certificate's key */
    ENSURE_OUT(qtsp_xml_c14n(x->doc, si, 0, excl, NULL, 0, &si_c14n) == QTSP_OK, QTSP_ERR_INVALID,
               "file: SignedInfo cannot be canonicalised");
    size_t svl = 0, dl = 0;
    sv = b64_of(svn, &svl);
    const unsigned char *sig = sv;
    size_t sigl = svl;
    if (sv && ecdsa) {
        der = ecdsa_raw_to_der(sv, svl, &dl);
        sig = der;
        sigl = dl;
    }
    vc = EVP_MD_CTX_new();
    ERR_clear_error();
    if (!sig || !vc || EVP_DigestVerifyInit(vc, NULL, smd, NULL, X509_get0_pubkey(c.cert)) != 1 ||
        EVP_DigestVerify(vc, sig, sigl, si_c14n.data, si_c14n.len) != 1)
        val_verdict(&c.r, IND_FAILED, "SIG_CRYPTO_FAILURE",
                    "the SignatureValue does not verify with the signing certificate's key");
    ERR_clear_error();

    /* unsigned properties: the signature time-stamp, the archive time-stamp */
    for (xmlNodePtr p = usp ? usp->children : NULL; p; p = p->next) {
        int sig_ts = is_el(p, QTSP_NS_XADES, "SignatureTimeStamp");
        int arc_ts = is_el(p, QTSP_NS_XADES141, "ArchiveTimeStamp");
        if (!sig_ts && !arc_ts)
            continue;
        size_t tl = 0;
        int tex = 0, ok = 0;
        int64_t t = 0;
        unsigned char *tok = ts_token(p, &tl, &tex);
        qtsp_buf cv;
        qtsp_buf_init(&cv, (size_t)1 << 20);
        snprintf(why, sizeof why, "the time-stamp property is malformed");
        if (sig_ts) {
            c.has_tst = 1;
            if (tok && qtsp_xml_c14n(x->doc, svn, 0, tex, NULL, 0, &cv) == QTSP_OK) {
                const unsigned char *ch[1] = {cv.data};
                size_t cl[1] = {cv.len};
                ok = val_timestamp(x->v, tok, tl, ch, cl, 1, c.pool, &t, why, sizeof why);
            }
        } else {
            c.has_ats = 1;
            unsigned char h[32];
            xmlNodePtr parts[3] = {si, svn, ki};
            int good = ats != NULL && tok != NULL;
            /* EN 319 132-1 5.5.2.2, as sign/xades.c stamps it */
            for (int i = 0; good && i < 3; i++)
                good = parts[i] && c14n_md(x, parts[i], 0, tex, &ats, 1);
            /* every unsigned signature property before this one */
            for (xmlNodePtr q = usp->children; good && q != p; q = q->next)
                if (q->type == XML_ELEMENT_NODE)
                    good = c14n_md(x, q, 0, tex, &ats, 1);
            for (xmlNodePtr o = x->sig->children; good && o; o = o->next)
                if (is_el(o, QTSP_NS_DS, "Object") &&
                    !child(o, QTSP_NS_XADES, "QualifyingProperties"))
                    good = c14n_md(x, o, 0, tex, &ats, 1);
            if (good && EVP_DigestFinal_ex(ats, h, NULL) == 1)
                ok = val_timestamp_sha256(x->v, tok, tl, h, c.pool, &t, why, sizeof why);
            else
                snprintf(why, sizeof why, "the archive time-stamp's data cannot be rebuilt");
            EVP_MD_CTX_free(ats);
            ats = NULL;
        }
        qtsp_err_clear();
        qtsp_buf_cleanup(&cv);
        free(tok);
        if (ok && (!c.poe || t < c.poe))
            c.poe = t;
        TRY_OUT(val_ts_json(c.timestamps, sig_ts ? "signature" : "archive", ok, t, why));
    }
    TRY_OUT(val_conclude(&c, sigs));
out:
    EVP_MD_CTX_free(m[0]);
    EVP_MD_CTX_free(ats);
    EVP_MD_CTX_free(vc);
    free(sv);
    OPENSSL_free(der);
    qtsp_buf_cleanup(&si_c14n);
    val_ctx_cleanup(&c);
    return rc;
}

/* Every ds:Signature of the document, in document order (bounded). */
static size_t find_sigs(xmlNodePtr n, xmlNodePtr *out, size_t cap, size_t k, int *budget)
{
    for (; n && k <= cap; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || --*budget < 0)
            continue;
        if (is_el(n, QTSP_NS_DS, "Signature")) {
            if (k < cap)
                out[k] = n;
            k++;
            continue; /* signatures inside a signature's objects are not looked for */
        }
        k = find_sigs(n->children, out, cap, k, budget);
    }
    return k;
}

qtsp_status val_xml(const qtsp_validator *v, const unsigned char *xml, size_t len,
                    const unsigned char *content, size_t content_len, val_resolve_fn resolve,
                    void *resolve_ctx, const char *container, int64_t now, json_t *sigs)
{
    qtsp_xml_init();
    xmlDocPtr doc = NULL;
    qtsp_status rc = qtsp_xml_parse(xml, len, QTSP_VALIDATE_MAX_FILE, &doc);
    if (rc != QTSP_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", qtsp_err_what());
        qtsp_err_clear();
        FAIL(rc == QTSP_ERR_TOO_BIG ? rc : QTSP_ERR_INVALID, "file: %s", msg);
    }
    xmlNodePtr found[VAL_MAX_SIGS];
    int budget = WALK_MAX;
    size_t n = find_sigs(xmlDocGetRootElement(doc), found, VAL_MAX_SIGS, 0, &budget);
    ENSURE_OUT(n <= VAL_MAX_SIGS, QTSP_ERR_TOO_BIG, "file: more than %d signatures", VAL_MAX_SIGS);
    ENSURE_OUT(budget >= 0, QTSP_ERR_TOO_BIG, "file: more than %d XML elements", WALK_MAX);
    val_sig in;
    memset(&in, 0, sizeof in);
    in.format = "XAdES";
    in.container = container;
    for (size_t i = 0; i < n; i++) {
        xctx x = {v, doc, found[i], content, content_len, resolve, resolve_ctx, 0};
        TRY_OUT(one(&x, &in, now, sigs));
    }
out:
    xmlFreeDoc(doc);
    return rc;
}
