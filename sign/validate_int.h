/* Internals of the validator shared by sign/validate.c (CMS signatures,
 * time-stamps, revocation, the report) and sign/validate_pdf.c (PAdES:
 * finding the signatures, their byte ranges and the DSS in a PDF). */
#ifndef QTSP_SIGN_VALIDATE_INT_H
#define QTSP_SIGN_VALIDATE_INT_H

#include <openssl/ocsp.h>

#include "sign/validate.h"

/* OpenSSL names no stack of BasicOCSPResponses */
DEFINE_STACK_OF(OCSP_BASICRESP)

/* Most signatures and document time-stamps read from one file, and most
 * certificates and OCSP answers taken from it. */
#define VAL_MAX_SIGS 32
#define VAL_MAX_CERTS 64
#define VAL_MAX_OCSP 32

struct qtsp_validator {
    X509_STORE *store;                /* the anchors */
    STACK_OF(X509) * anchors;         /* same, with ... */
    unsigned char *anchor_revocation; /* ... per anchor: revocation checked */
    STACK_OF(X509) * intermediates;
    qtsp_validate_status_fn status;
    void *status_ctx;
};

/* A proof of existence from a document time-stamp (PAdES B-LTA). */
typedef struct val_poe {
    int ok;        /* it verifies */
    int64_t time;  /* its genTime when ok */
    size_t covers; /* the time-stamp covers the file's bytes [0, covers) */
    char why[160]; /* why not ok */
} val_poe;

/* One CMS signature to check and what the file gives it. */
typedef struct val_sig {
    const unsigned char *cms; /* DER ContentInfo (SignedData) */
    size_t cms_len;
    /* the signed data: chunks hashed in order (PAdES ByteRange, detached
     * content); n_chunks 0: the eContent */
    const unsigned char *chunk[2];
    size_t chunk_len[2];
    size_t n_chunks;
    int pades;
    int64_t claimed_time;             /* PAdES /M (0: none) */
    STACK_OF(X509) * certs;           /* from the DSS; may be NULL */
    STACK_OF(OCSP_BASICRESP) * ocsps; /* from the DSS; may be NULL */
    int dss;                          /* the file has a DSS */
    size_t end;                       /* PAdES: end of the bytes signed */
    int whole_file;                   /* PAdES: the byte range reaches the end of the file */
    const val_poe *poes;              /* document time-stamps of the file */
    size_t n_poes;
} val_sig;

/* Checks every SignerInfo of s->cms and appends one report object per
 * signer to sigs. QTSP_ERR_INVALID when s->cms is no SignedData (the
 * caller decides whether that is the file's fault or one signature's);
 * QTSP_ERR_NOMEM. */
qtsp_status val_cms(const qtsp_validator *v, const val_sig *s, int64_t now,
                    json_t *sigs) QTSP_MUST_USE;

/* A time-stamp token (DER) over the chunks: 1 when it verifies (signature,
 * TSA certificate chained to an anchor, imprint), with *gen its genTime;
 * 0 otherwise, why saying so. pool helps find the TSA certificate. */
int val_timestamp(const qtsp_validator *v, const unsigned char *tok, size_t len,
                  const unsigned char *const *chunk, const size_t *chunk_len, size_t n_chunks,
                  STACK_OF(X509) * pool, int64_t *gen, char *why, size_t cap);

/* A report entry for a signature that could not even be read (PAdES: the
 * /Contents is no CMS): TOTAL-FAILED/FORMAT_FAILURE with message. */
qtsp_status val_format_failure(json_t *sigs, const char *message) QTSP_MUST_USE;

/* The PAdES signatures of a PDF (sign/validate_pdf.c), appended to sigs.
 * QTSP_ERR_INVALID for a PDF that does not parse. */
qtsp_status val_pdf(const qtsp_validator *v, const unsigned char *pdf, size_t len, int64_t now,
                    json_t *sigs) QTSP_MUST_USE;

/* RFC 3339 text of t into out (21 bytes) as a JSON string. */
json_t *val_time_json(int64_t t);

#endif
