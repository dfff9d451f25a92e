/* Advanced electronic signatures over whole documents: CAdES (ETSI EN 319
 * 122-1) and PAdES (ETSI EN 319 142-1) at the baseline levels B-B, B-T,
 * B-LT and B-LTA (docs/ades.md says what each level carries).
 *
 * A document is signed with a signer (a qtsp_key that signs inside the
 * token, its certificate and chain) and, above B-B, with the services
 * called in process, never over HTTP: our TSA core for signature, archive
 * and document time-stamps (tsa/tsa.h) and our OCSP responder core for the
 * status of the signer's certificate (ocsp/ocsp.h). The CMS SignedData is
 * built by ca/cms.h; the PDF is read by qpdf (sign/pades.c only).
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

#endif
