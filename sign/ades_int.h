/* Internals shared by sign/ades.c, sign/cades.c and sign/pades.c: the
 * in-process calls to the TSA and OCSP cores, and the CMS SignedData both
 * formats carry. */
#ifndef QTSP_SIGN_ADES_INT_H
#define QTSP_SIGN_ADES_INT_H

#include <openssl/evp.h>

#include "core/der.h"
#include "sign/ades.h"

/* Most bytes of a TimeStampToken or an OCSP answer we accept from our own
 * cores (both are a few KiB). */
#define ADES_TOKEN_MAX ((size_t)64 << 10)

/* A time-stamp token over the SHA-256 digest dgst (32 bytes) from sv->tsa:
 * the TimeStampToken (a ContentInfo, DER) appended to token. The request
 * asks for the TSA's certificate. QTSP_ERR_UNSUPPORTED without a TSA,
 * QTSP_ERR_UNAVAILABLE when the TSA answers with a rejection (its failInfo
 * named), QTSP_ERR_INVALID for an answer that does not parse. */
qtsp_status ades_timestamp(const qtsp_ades_services *sv, const unsigned char dgst[32],
                           qtsp_buf *token) QTSP_MUST_USE;

/* The CRLs to embed now (sv->crls_now, else sv->crls): *out a new stack
 * holding new references (sk_X509_CRL_pop_free), empty when there are
 * none. QTSP_ERR_NOMEM, or what crls_now failed with. */
qtsp_status ades_crls(const qtsp_ades_services *sv, STACK_OF(X509_CRL) * *out) QTSP_MUST_USE;

/* The OCSP answer for cert (issued by sv->ocsp_ca) from sv->ocsp, which
 * must say good: the whole DER OCSPResponse appended to resp, and in
 * *basic_off / *basic_len where its BasicOCSPResponse lies in resp.
 * QTSP_ERR_UNSUPPORTED without a responder, QTSP_ERR_STATE when the answer
 * is not successful or the status not good. */
qtsp_status ades_ocsp(const qtsp_ades_services *sv, X509 *cert, qtsp_buf *resp, size_t *basic_off,
                      size_t *basic_len) QTSP_MUST_USE;

/* What ades_cms_sign builds. */
typedef struct ades_cms_req {
    const unsigned char *digest; /* the content's digest with the signer's md */
    size_t digest_len;
    const unsigned char *content; /* eContent; NULL: detached */
    size_t content_len;
    /* SHA-256 of the content for the archive time-stamp (B-LTA) when the
     * signer's digest is not SHA-256; NULL otherwise */
    const unsigned char *content_sha256;
    int with_signing_time; /* CAdES yes, PAdES no (EN 319 142-1 5.4.2) */
    int64_t signing_time;
    qtsp_ades_level level; /* B-B/B-T: as such; B-LT/B-LTA: CAdES attributes (PAdES asks B-T) */
} ades_cms_req;

/* Signs r with s and appends the ContentInfo to out (see qtsp_cades_sign). */
qtsp_status ades_cms_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                          const ades_cms_req *r, qtsp_buf *out) QTSP_MUST_USE;

/* From a SignedData (cms, DER; its first SignerInfo complete up to its
 * unsigned attributes): the ATSHashIndexV3 (hashIndAlgorithm SHA-256 by
 * default, so absent) appended to idx, and the SHA-256 imprint of the
 * archive-time-stamp-v3 (EN 319 122-1 5.5.3): eContentType || H(content)
 * || SignerInfo's version, sid, digestAlgorithm, signedAttrs,
 * signatureAlgorithm, signature || ATSHashIndexV3. Unsigned attributes
 * that are archive-time-stamp-v3 are left out of the index, so the
 * validator (sign/validate.c) recomputes what the signer time-stamped.
 * QTSP_ERR_INVALID when cms does not parse. */
qtsp_status ades_ats_v3_imprint(const unsigned char *cms, size_t cms_len,
                                const unsigned char content_hash[32], qtsp_buf *idx,
                                unsigned char imprint[32]) QTSP_MUST_USE;

/* The certificates a B-LT signature carries for its verifier: the chain
 * of s, then sv->extra_certs, each once, the signer's own excluded. The
 * stack is the caller's (sk_X509_free; certificates are borrowed). */
qtsp_status ades_validation_certs(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                                  STACK_OF(X509) * *out) QTSP_MUST_USE;

/* 1 when sk (may be NULL) holds a certificate equal to x. */
int ades_has_cert(STACK_OF(X509) * sk, X509 *x);

/* A document name in a detached reference or a container (sign/xades.c):
 * 1..255 bytes of letters, digits, '.', '_', '-' and '/', relative, with
 * no empty, "." or ".." segment. QTSP_ERR_INVALID naming it otherwise. */
qtsp_status ades_check_name(const char *name) QTSP_MUST_USE;

/* A ZIP entry read into memory (sign/asic.c, the only user of libzip). */
#define ADES_ZIP_NAME_MAX 256
typedef struct ades_zip_entry {
    char name[ADES_ZIP_NAME_MAX];
    unsigned char *data; /* len bytes (and a NUL) */
    size_t len;
    int stored; /* not compressed */
} ades_zip_entry;

/* Reads every entry of the ZIP p (len bytes) into memory, in the order of
 * the central directory: at most max_entries, max_total bytes unpacked in
 * all (zip bombs: the declared sizes are checked before anything is
 * unpacked, and an entry that unpacks to more or less than it declares, or
 * with a wrong CRC, is refused). *out is the caller's (ades_zip_free).
 * QTSP_ERR_INVALID: not a ZIP, damaged, encrypted entries, a name given
 * twice, absolute, with a ".." segment or a backslash; QTSP_ERR_TOO_BIG. */
qtsp_status ades_zip_read(const unsigned char *p, size_t len, size_t max_entries, size_t max_total,
                          ades_zip_entry **out, size_t *n) QTSP_MUST_USE;
void ades_zip_free(ades_zip_entry *e, size_t n);

#endif
