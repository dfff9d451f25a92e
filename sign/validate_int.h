/* Internals of the validator shared by sign/validate.c (CMS signatures,
 * time-stamps, revocation, the report) and sign/validate_pdf.c (PAdES:
 * finding the signatures, their byte ranges and the DSS in a PDF). */
#ifndef QTSP_SIGN_VALIDATE_INT_H
#define QTSP_SIGN_VALIDATE_INT_H

#include <openssl/evp.h>
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
    const char *format;       /* "CAdES", "PAdES", "XAdES" (the report's) */
    const unsigned char *cms; /* DER ContentInfo (SignedData) */
    size_t cms_len;
    /* the signed data: chunks hashed in order (PAdES ByteRange, detached
     * content); n_chunks 0: the eContent */
    const unsigned char *chunk[2];
    size_t chunk_len[2];
    size_t n_chunks;
    int pades;
    const char *container;            /* the ASiC form it came in ("ASiC-S", "ASiC-E"), or NULL */
    int64_t claimed_time;             /* PAdES /M (0: none) */
    STACK_OF(X509) * certs;           /* from the DSS; may be NULL */
    STACK_OF(OCSP_BASICRESP) * ocsps; /* from the DSS; may be NULL */
    int dss;                          /* the file has a DSS */
    size_t end;                       /* PAdES: end of the bytes signed */
    int whole_file;                   /* PAdES: the byte range reaches the end of the file */
    const val_poe *poes;              /* document time-stamps of the file */
    size_t n_poes;
} val_sig;

/* ---- one signature's judgement, whatever its format ---- */

enum { IND_PASSED = 0, IND_INDETERMINATE = 1, IND_FAILED = 2 };

typedef struct val_result {
    int ind;
    const char *sub; /* static */
    char msg[256];
} val_result;

/* A failure outranks an indeterminate result; of the same rank the first
 * found stays (the order of the checks is the standard's). */
void val_verdict(val_result *r, int ind, const char *sub, const char *fmt, ...) QTSP_PRINTF(4, 5);

/* What the format's reader found out about one signature, and what the
 * common checks (val_conclude) add. */
typedef struct val_ctx {
    const qtsp_validator *v;
    const val_sig *in;
    int64_t now;
    void *cms;                        /* CMS_ContentInfo of CMS signatures, else NULL */
    void *si;                         /* its CMS_SignerInfo */
    STACK_OF(X509) * pool;            /* every certificate the file offers, and our intermediates */
    STACK_OF(OCSP_BASICRESP) * ocsps; /* OCSP answers of the signature */
    X509 *cert;                       /* the signer's (borrowed from pool); NULL: not found */
    STACK_OF(X509) * chain;           /* signer first, anchor last; NULL: none */
    int anchor_rev;                   /* the anchor wants revocation checked */
    int64_t claimed;                  /* signing-time, /M, SigningTime; 0 none */
    int64_t poe;                      /* earliest proof of existence; 0 none */
    int has_tst, has_ltv, has_ats;    /* has_ltv: 1 certificates, 2 revocation values */
    json_t *timestamps;
    json_t *revocation;
    val_result r;
} val_ctx;

/* Sets c up for in: the pool holds in->certs and our intermediates.
 * QTSP_ERR_NOMEM (c is then cleaned up). */
qtsp_status val_ctx_init(val_ctx *c, const qtsp_validator *v, const val_sig *in,
                         int64_t now) QTSP_MUST_USE;
void val_ctx_cleanup(val_ctx *c);
/* Adds x (up-referenced) to c's pool (bounded). */
void val_pool_add(val_ctx *c, X509 *x);
/* The checks every format shares, once the reader has identified the
 * certificate and verified the data and signature: document time-stamps
 * as proofs, chain, revocation at the signing time, validity; then the
 * report entry appended to sigs. */
qtsp_status val_conclude(val_ctx *c, json_t *sigs) QTSP_MUST_USE;
/* The entry alone (a signature whose certificate was not found). */
qtsp_status val_entry(val_ctx *c, json_t *sigs) QTSP_MUST_USE;
/* A time-stamp entry {"type","valid","time"|"message"} appended to arr. */
qtsp_status val_ts_json(json_t *arr, const char *type, int ok, int64_t t,
                        const char *why) QTSP_MUST_USE;
/* md over chunk[0..n): 1 on success. */
int val_digest(const EVP_MD *md, const unsigned char *const *chunk, const size_t *len, size_t n,
               unsigned char *out, unsigned int *olen);
/* SHA-256/384/512 only. */
int val_md_allowed(const EVP_MD *md);
/* A time-stamp token over a SHA-256 imprint given directly (the XAdES
 * archive time-stamp), as val_timestamp otherwise. */
int val_timestamp_sha256(const qtsp_validator *v, const unsigned char *tok, size_t len,
                         const unsigned char imprint[32], STACK_OF(X509) * pool, int64_t *gen,
                         char *why, size_t cap);

/* The XAdES signatures of an XML document (sign/validate_xml.c), appended
 * to sigs; detached references resolve through s->chunk (one object:
 * any URI) or resolve (a container's files). QTSP_ERR_INVALID for XML
 * that does not parse safely (a DOCTYPE, entities, ...). */
typedef const unsigned char *(*val_resolve_fn)(void *ctx, const char *uri, size_t *len);
qtsp_status val_xml(const qtsp_validator *v, const unsigned char *xml, size_t len,
                    const unsigned char *content, size_t content_len, val_resolve_fn resolve,
                    void *resolve_ctx, const char *container, int64_t now,
                    json_t *sigs) QTSP_MUST_USE;

/* The signatures of an ASiC container (sign/validate_asic.c). */
qtsp_status val_asic(const qtsp_validator *v, const unsigned char *zip, size_t len, int64_t now,
                     json_t *sigs, const char **form) QTSP_MUST_USE;

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
