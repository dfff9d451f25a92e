/* CMS SignedData (RFC 5652) for signatures made elsewhere: in a token, on
 * the signing queue (ca/signq.h), by a remote signer. Built in two phases so
 * that the signature can be made in between, and from parts encoded once
 * per signer, so that a message costs only its own bytes:
 *
 *   qtsp_cms_signer_new     once per key and certificate: the signer
 *                           identifier, algorithm identifiers, the
 *                           certificate set and the constant signed
 *                           attributes (contentType, signingCertificateV2)
 *   qtsp_cms_signed_attrs   per message: the DER SET OF signed attributes,
 *                           the bytes to hash and sign (RFC 5652 5.4)
 *   qtsp_cms_size/_write    per message, once signed: the ContentInfo
 *
 * What is written (RFC 5652 3, 5.1-5.3):
 *   ContentInfo { id-signedData, [0] SignedData {
 *     version 3 (1 when eContentType is id-data, 5.1),
 *     digestAlgorithms SET { digestAlgorithm },
 *     encapContentInfo { eContentType, [0] eContent OCTET STRING (absent: detached) },
 *     certificates [0] (signer certificate, then the chain; per message optional),
 *     signerInfos SET { SignerInfo { version 1, sid issuerAndSerialNumber,
 *       digestAlgorithm, signedAttrs [0], signatureAlgorithm, signature,
 *       unsignedAttrs [1] (optional: a signature time-stamp, ...) } } } }
 * Signed attributes: contentType, messageDigest, optionally signingTime
 * and signingCertificateV2 (RFC 5035: one ESSCertIDv2, SHA-256 certHash,
 * issuerSerial), and any the caller adds; SET OF in DER order (X.690 11.6).
 *
 * Algorithms: the signer's signature algorithm is a qtsp_sigalg of the key
 * interface (ca/key.h), and signatureAlgorithm is its qtsp_sigalg_algid:
 * ecdsa-with-SHA*, RFC 5758 3.2; sha*WithRSAEncryption with NULL
 * parameters, RFC 4055 5; RSASSA-PSS with explicit parameters, RFC 4055
 * 3.1 (RFC 5754 3.2, RFC 5652 5.3). Its digest, SHA-256/384/512, is also
 * digestAlgorithm (parameters absent, RFC 5754 2) and hashes the content
 * and the signed attributes.
 *
 * The signer takes the algorithm and the certificates rather than a
 * qtsp_key: it never signs (the signature is made elsewhere, between the
 * two phases, possibly far from any key object), and its users hold the
 * certificate and chain they publish apart from the key (the TSA is
 * given them next to its key).
 *
 * A qtsp_cms_signer is immutable once made: every function may be called
 * from any number of threads. Nothing per message allocates. */
#ifndef QTSP_CA_CMS_H
#define QTSP_CA_CMS_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "core/der.h"
#include "core/err.h"

/* Most caller-given attributes per message (signed, and unsigned). */
#define QTSP_CMS_MAX_ATTRS 12

/* Bytes borrowed for a call. */
typedef struct qtsp_cms_bytes {
    const unsigned char *p;
    size_t n;
} qtsp_cms_bytes;

typedef struct qtsp_cms_signer_opts {
    X509 *cert;                 /* the signer's certificate (read during the call) */
    STACK_OF(X509) * chain;     /* certificates after cert in certificates; may be NULL */
    qtsp_sigalg alg;            /* must fit cert's key; alg.md: SHA-256/384/512, the
                                   digest of the content and of the signed attributes */
    const unsigned char *ctype; /* eContentType, OID content octets; NULL: id-data */
    size_t ctype_len;
    int signing_certificate_v2; /* add signingCertificateV2 (RFC 5035) */
} qtsp_cms_signer_opts;

typedef struct qtsp_cms_signer qtsp_cms_signer;

/* Encodes the constant parts for o. *out is the caller's (qtsp_cms_signer_free).
 * QTSP_ERR_INVALID (no certificate, an unknown scheme, an eContentType
 * that is no OID), QTSP_ERR_UNSUPPORTED (the algorithm does not fit the
 * certificate's key, a key that is neither EC nor RSA, a digest other than
 * SHA-256/384/512), QTSP_ERR_CRYPTO, QTSP_ERR_NOMEM. */
qtsp_status qtsp_cms_signer_new(const qtsp_cms_signer_opts *o, qtsp_cms_signer **out) QTSP_MUST_USE;

/* NULL is a no-op. No call on s may be in flight. */
void qtsp_cms_signer_free(qtsp_cms_signer *s);

/* The digest of the signer (owned by s; for EVP_Digest of the content and
 * of the signed attributes) and its length in bytes. */
const EVP_MD *qtsp_cms_signer_md(const qtsp_cms_signer *s);
size_t qtsp_cms_signer_md_len(const qtsp_cms_signer *s);

/* A message's signed attributes, besides the signer's constant ones. */
typedef struct qtsp_cms_attrs {
    const unsigned char *digest; /* messageDigest: the eContent's digest (signer's md) */
    size_t digest_len;
    int with_signing_time;       /* add signingTime (RFC 5652 11.3) */
    int64_t signing_time;        /* seconds since the epoch, 1950..9999 */
    const qtsp_cms_bytes *extra; /* further Attribute TLVs (DER SEQUENCE), any order */
    size_t n_extra;              /* 0..QTSP_CMS_MAX_ATTRS */
} qtsp_cms_attrs;

/* Length of the SET that qtsp_cms_signed_attrs writes for a (0 when a is
 * invalid; then qtsp_cms_signed_attrs says why). */
size_t qtsp_cms_signed_attrs_size(const qtsp_cms_signer *s, const qtsp_cms_attrs *a);

/* Writes the signed attributes as a DER SET OF (tag 0x31) at out (cap
 * bytes); *len is its length. These bytes are hashed with the signer's md
 * and signed; give them unchanged to qtsp_cms_write (which tags them [0],
 * RFC 5652 5.4). QTSP_ERR_INVALID: digest of the wrong length, an extra
 * attribute that is not one DER SEQUENCE or repeats contentType,
 * messageDigest or signingTime (RFC 5652 11), too many, signing_time out of
 * range; QTSP_ERR_TOO_BIG: cap too small. out is written only on success. */
qtsp_status qtsp_cms_signed_attrs(const qtsp_cms_signer *s, const qtsp_cms_attrs *a,
                                  unsigned char *out, size_t cap, size_t *len) QTSP_MUST_USE;

/* A signed message's parts. */
typedef struct qtsp_cms_parts {
    const unsigned char *attrs; /* from qtsp_cms_signed_attrs */
    size_t attrs_len;
    const unsigned char *sig; /* signature over attrs: DER ECDSA-Sig-Value or RSA */
    size_t sig_len;
    const unsigned char *content; /* eContent; NULL: detached (no eContent) */
    size_t content_len;
    int with_certs;                       /* add certificates [0] */
    const qtsp_cms_bytes *unsigned_attrs; /* Attribute TLVs; none: no [1] */
    size_t n_unsigned;                    /* 0..QTSP_CMS_MAX_ATTRS */
} qtsp_cms_parts;

/* Exact length of the ContentInfo qtsp_cms_write appends for p (so that a
 * caller can write an enclosing header first, as the TSA does). */
size_t qtsp_cms_size(const qtsp_cms_signer *s, const qtsp_cms_parts *p);

/* Appends the ContentInfo { id-signedData, SignedData } to w: exactly
 * qtsp_cms_size(s, p) bytes, every length known before its header (no
 * moves). Returns QTSP_ERR_INVALID without writing when p is not usable
 * (no attributes or signature, attrs not a SET, an unsigned attribute that
 * is not one DER SEQUENCE, too many); out of room and other writer failures
 * are kept in w and reported by qtsp_der_w_finish. A writer over a fixed
 * buffer needs QTSP_DER_HDR_MAX bytes beyond the size. */
qtsp_status qtsp_cms_write(const qtsp_cms_signer *s, const qtsp_cms_parts *p,
                           qtsp_der_w *w) QTSP_MUST_USE;

/* Appends to w the DER IssuerSerial { issuer GeneralNames { directoryName
 * [4] the issuer's Name }, serialNumber } of cert (RFC 5035 4; also
 * XAdES's IssuerSerialV2). QTSP_ERR_CRYPTO when cert does not encode;
 * writer failures are kept in w. */
qtsp_status qtsp_cms_issuer_serial(X509 *cert, qtsp_der_w *w) QTSP_MUST_USE;

#endif
