/* Advanced electronic signatures over whole documents: CAdES (ETSI EN 319
 * 122-1), PAdES (ETSI EN 319 142-1) and XAdES (ETSI EN 319 132-1) at the
 * baseline levels B-B, B-T, B-LT and B-LTA, and ASiC containers (ETSI EN
 * 319 162-1) holding CAdES or XAdES signatures (docs/ades.md says what each
 * level carries).
 *
 * A document is signed with a signer (a qtsp_key that signs inside the
 * token, its certificate and chain) and, above B-B, with the services
 * called in process, never over HTTP: our TSA core for signature, archive
 * and document time-stamps (tsa/tsa.h) and our OCSP responder core for the
 * status of the signer's certificate (ocsp/ocsp.h). The CMS SignedData is
 * built by ca/cms.h; the PDF is read by qpdf (sign/pades.c only); XML is
 * read, built and canonicalised by libxml2 (sign/xml.h); containers are
 * written by libzip (sign/asic.c only).
 *
 * Thread safety: the builders keep no state; a qtsp_ades_services and a
 * qtsp_ades_signer are read only, so any number of threads may sign at
 * once (as far as the key, the TSA and the OCSP core allow, which they do). */
#ifndef QTSP_SIGN_ADES_H
#define QTSP_SIGN_ADES_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "core/buf.h"
#include "core/err.h"
#include "ocsp/ocsp.h"
#include "tsa/tsa.h"

typedef enum qtsp_ades_level {
    QTSP_ADES_B_B = 1, /* signed attributes, signer certificate */
    QTSP_ADES_B_T,     /* + signature time-stamp */
    QTSP_ADES_B_LT,    /* + certificates and OCSP answers (CAdES attributes; PAdES DSS) */
    QTSP_ADES_B_LTA,   /* + archive time-stamp (CAdES v3; PAdES document time-stamp) */
} qtsp_ades_level;

/* The CSC conformance_level name ("Ades-B-B" .. "Ades-B-LTA", the case of
 * "AdES" not significant) as a level. QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_ades_level_parse(const char *s, qtsp_ades_level *out) QTSP_MUST_USE;
/* "B-B" .. "B-LTA" (static). */
const char *qtsp_ades_level_name(qtsp_ades_level l);

/* A media type from a file name's extension (.xml, .pdf, .txt, .json,
 * .p7s; application/octet-stream otherwise), for DataObjectFormat and
 * ASiC. Static. */
const char *qtsp_ades_mime_of(const char *name);

/* The services above B-B. All borrowed; they must outlive the call. */
typedef struct qtsp_ades_services {
    qtsp_tsa *tsa;   /* B-T and up; NULL: those levels are QTSP_ERR_UNSUPPORTED */
    qtsp_ocsp *ocsp; /* B-LT and up: answers for certificates issued by ocsp_ca */
    X509 *ocsp_ca;   /* the issuing CA the responder answers for */
    /* B-LT and up: the certificates a verifier needs besides the signer's
     * chain (the TSA unit's, the OCSP responder's); may be NULL */
    STACK_OF(X509) * extra_certs;
    /* B-LT and up: CRLs (DER) covering the certificates OCSP does not (the
     * root's CRL: the issuing CA, the TSA unit); may be NULL */
    STACK_OF(X509_CRL) * crls;
    /* When set, B-LT and up take the CRLs from here at each signing instead
     * of crls (*out: a new stack and new references, the builder frees
     * them): a long-running server embeds the CRL published now, not the
     * one of its start (cmd/sign_doc.c reads public/crl/root.crl again
     * when the file changes). Thread-safe if the builders run on threads. */
    qtsp_status (*crls_now)(void *ctx, STACK_OF(X509_CRL) * *out);
    void *crls_ctx;
} qtsp_ades_services;

/* Who signs. All borrowed. */
typedef struct qtsp_ades_signer {
    const qtsp_key *key;    /* signs inside the token */
    X509 *cert;             /* certifies key */
    STACK_OF(X509) * chain; /* issuer first, up to the root; may be NULL */
    qtsp_sigalg alg;        /* fits key; digest SHA-256/384/512 */
} qtsp_ades_signer;

/* Largest document accepted by the builders (the request limit of signDoc
 * bounds it further). */
#define QTSP_ADES_MAX_DOC ((size_t)64 << 20)

typedef struct qtsp_cades_opts {
    qtsp_ades_level level;
    int enveloping;       /* 1: the document inside (eContent); 0: detached */
    int64_t signing_time; /* signing-time attribute, seconds since the epoch */
    /* the document's SHA-256 when the caller has it already (signDoc binds
     * the SAD to it), used when the signer's digest is SHA-256; NULL: the
     * document is hashed here */
    const unsigned char *sha256;
} qtsp_cades_opts;

/* Signs doc (len bytes) as a CAdES baseline signature: a DER ContentInfo
 * with SignedData appended to out. Signed attributes content-type,
 * message-digest, signing-certificate-v2 and signing-time; unsigned, by
 * level: signature-time-stamp, certificate-values + revocation-values,
 * archive-time-stamp-v3 (with its ats-hash-index-v3). The document is
 * hashed where it lies (never copied but into out when enveloping).
 * Errors: QTSP_ERR_INVALID (bad options, doc too big), QTSP_ERR_UNSUPPORTED
 * (a level whose service is missing, an algorithm that does not fit),
 * QTSP_ERR_STATE (the signer's certificate is not good at the responder),
 * QTSP_ERR_UNAVAILABLE (the TSA refused: no time), the key's errors,
 * QTSP_ERR_TOO_BIG / QTSP_ERR_NOMEM of out. out keeps what it held before
 * on failure only up to its old length (reset it to reuse). */
qtsp_status qtsp_cades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_cades_opts *o, const unsigned char *doc, size_t len,
                            qtsp_buf *out) QTSP_MUST_USE;

typedef struct qtsp_pades_opts {
    qtsp_ades_level level;
    int certification;    /* 1: a certification signature (DocMDP P 2); only a first signature */
    int64_t signing_time; /* /M of the signature dictionary (no signing-time attribute) */
} qtsp_pades_opts;

/* Signs the PDF pdf (len bytes) as a PAdES baseline signature: appends to
 * out the original bytes followed by an incremental update with an
 * invisible signature field on the first page (/SubFilter
 * /ETSI.CAdES.detached, ByteRange over everything but /Contents); at B-LT a
 * second update with the DSS (certificates, OCSP answers, CRLs); at B-LTA a
 * third with a document time-stamp (/SubFilter /ETSI.RFC3161). Classic
 * cross-reference tables and cross-reference streams are both continued in
 * kind; earlier signatures stay valid (their revisions are untouched).
 * Errors as qtsp_cades_sign, and QTSP_ERR_INVALID for a PDF qpdf cannot
 * read, an encrypted one, one without pages, or a certification of an
 * already signed PDF. */
qtsp_status qtsp_pades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_pades_opts *o, const unsigned char *pdf, size_t len,
                            qtsp_buf *out) QTSP_MUST_USE;

/* The reading checks of qtsp_pades_sign without signing (a PDF qpdf
 * reads, not encrypted, a trailer, pages, a certification allowed), so a
 * request of several documents refuses a broken one before the token signs
 * any. No output. */
qtsp_status qtsp_pades_check(const unsigned char *pdf, size_t len, int certification) QTSP_MUST_USE;

/* Where a XAdES signature stands to what it signs (EN 319 132-1 4.1). */
typedef enum qtsp_xades_packaging {
    QTSP_XADES_ENVELOPED = 1, /* inside the one XML document it signs (last child of its root) */
    QTSP_XADES_ENVELOPING,    /* the objects inside the signature, base64 in ds:Object */
    QTSP_XADES_DETACHED,      /* the objects outside, referenced by URI (ASiC) */
} qtsp_xades_packaging;

/* One signed data object. Borrowed. */
typedef struct qtsp_xades_object {
    const unsigned char *data;
    size_t len;
    const char *uri;  /* detached: the reference URI (a relative name, e.g. in a
                         container); ignored otherwise */
    const char *mime; /* DataObjectFormat MimeType; NULL: text/xml when enveloped,
                         application/octet-stream otherwise */
} qtsp_xades_object;

/* Most objects one XAdES signature signs. */
#define QTSP_XADES_MAX_OBJECTS 64

typedef struct qtsp_xades_opts {
    qtsp_ades_level level;
    qtsp_xades_packaging packaging;
    int64_t signing_time; /* SigningTime, seconds since the epoch */
    int inclusive_c14n;   /* 1: C14N 1.0 for SignedInfo, properties and
                             time-stamps; 0: exclusive C14N (the default) */
    int asic;             /* detached only: the document element is ASiC's
                             asic:XAdESSignatures (META-INF/signatures.xml) */
} qtsp_xades_opts;

/* Signs objs[0..n) as a XAdES baseline signature (EN 319 132-1) and
 * appends the XML document (UTF-8; enveloped: the signed document in its
 * own encoding) to out.
 *   ds:SignedInfo: one ds:Reference per object (enveloped: URI "" with the
 *     enveloped-signature transform and the C14N; enveloping: "#obj" with
 *     the base64 transform; detached: the object's URI, its bytes as they
 *     are), one of Type http://uri.etsi.org/01903#SignedProperties;
 *     digests with the signer's md; the SignatureValue made by the key
 *     (ECDSA as r || s, RFC 4050 / XML-DSig 1.1 6.4.3).
 *   ds:KeyInfo: the signer's certificate, then its chain.
 *   B-B: SigningTime, SigningCertificateV2 (SHA-256, IssuerSerialV2),
 *     a DataObjectFormat per object.
 *   B-T: SignatureTimeStamp (our TSA over the canonical ds:SignatureValue).
 *   B-LT: CertificateValues (the TSA unit's, the responder's and other
 *     certificates not in KeyInfo), RevocationValues (the OCSPResponse for
 *     the signer's certificate; the CRLs of sv).
 *   B-LTA: xades141:ArchiveTimeStamp (EN 319 132-1 5.5.2).
 * Errors: QTSP_ERR_INVALID (bad options, no or too many objects, an
 * enveloped document that is not safe well-formed XML (sign/xml.h), a
 * detached object without a safe relative URI), otherwise as
 * qtsp_cades_sign (RSA-PSS keys: QTSP_ERR_UNSUPPORTED). out as
 * qtsp_cades_sign. */
qtsp_status qtsp_xades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_xades_opts *o, const qtsp_xades_object *objs, size_t n,
                            qtsp_buf *out) QTSP_MUST_USE;

/* What qtsp_xades_sign refuses of an enveloped document before any key
 * work, checked alone (signDoc reads every document of a request so before
 * the token signs the first): safe well-formed XML (sign/xml.h) whose root
 * is not itself a ds:Signature. QTSP_OK, or the error qtsp_xades_sign
 * would give (QTSP_ERR_INVALID, QTSP_ERR_TOO_BIG). */
qtsp_status qtsp_xades_check_enveloped(const unsigned char *xml, size_t len) QTSP_MUST_USE;

/* ASiC container forms (EN 319 162-1 4.3). */
typedef enum qtsp_asic_form {
    QTSP_ASIC_S = 1, /* one file and its signature */
    QTSP_ASIC_E,     /* several files */
} qtsp_asic_form;

typedef enum qtsp_asic_sigfmt {
    QTSP_ASIC_CADES = 1, /* META-INF/signature.p7s (ASiC-E: over META-INF/ASiCManifest.xml) */
    QTSP_ASIC_XADES,     /* META-INF/signatures.xml, detached references to the files */
} qtsp_asic_sigfmt;

typedef struct qtsp_asic_opts {
    qtsp_asic_form form;
    qtsp_asic_sigfmt sigfmt;
    qtsp_ades_level level;
    int64_t signing_time;
} qtsp_asic_opts;

/* Most files in one container. */
#define QTSP_ASIC_MAX_FILES QTSP_XADES_MAX_OBJECTS

/* Packs files[0..n) (uri: the name in the container, a relative path
 * without "..", not META-INF/ nor mimetype; mime: its media type, NULL
 * application/octet-stream) with a new signature over them into an ASiC
 * container (ZIP) appended to out: first the entry "mimetype", stored,
 * holding application/vnd.etsi.asic-s+zip or -e+zip, then the files
 * (text/..., .../xml, ...+xml, .../json deflated; the rest stored), then
 * META-INF/ (deflated). ASiC-S takes exactly one file. Errors:
 * QTSP_ERR_INVALID (bad options, names, counts, total over
 * QTSP_ADES_MAX_DOC), the signature builders' errors, QTSP_ERR_NOMEM /
 * QTSP_ERR_TOO_BIG of out. */
qtsp_status qtsp_asic_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                           const qtsp_asic_opts *o, const qtsp_xades_object *files, size_t n,
                           qtsp_buf *out) QTSP_MUST_USE;

#endif
