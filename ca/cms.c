/* CMS SignedData builder (see cms.h). Everything that does not change per
 * message is encoded once in qtsp_cms_signer_new; per message the signed
 * attributes are gathered, put in DER order and copied, and the ContentInfo
 * is written front to back with every length computed first. */
#include "ca/cms.h"

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <stdlib.h>
#include <string.h>

/* ---- object identifiers (content octets) ----------------------------------- */

static const unsigned char OID_DATA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01};
static const unsigned char OID_SIGNED_DATA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                0x0d, 0x01, 0x07, 0x02};
static const unsigned char OID_CONTENT_TYPE[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                 0x0d, 0x01, 0x09, 0x03};
static const unsigned char OID_MESSAGE_DIGEST[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                   0x0d, 0x01, 0x09, 0x04};
static const unsigned char OID_SIGNING_TIME[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                 0x0d, 0x01, 0x09, 0x05};
static const unsigned char OID_SIGNING_CERT_V2[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                                    0x01, 0x09, 0x10, 0x02, 0x2f};
/* 2.16.840.1.101.3.4.2.{1,2,3}: SHA-256, SHA-384, SHA-512 */
static const unsigned char OID_SHA2[3][9] = {
    {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01},
    {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02},
    {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03},
};
static const char *const MD_NAME[3] = {"SHA256", "SHA384", "SHA512"};
static const int MD_NID[3] = {NID_sha256, NID_sha384, NID_sha512};

/* ---- the signer ------------------------------------------------------------ */

typedef struct part {
    unsigned char *p;
    size_t n;
} part;

struct qtsp_cms_signer {
    EVP_MD *md;
    size_t md_len;
    unsigned version; /* SignedData version (RFC 5652 5.1) */
    /* Pre-encoded TLVs. */
    part ctype;       /* eContentType OID */
    part sid;         /* IssuerAndSerialNumber */
    part digest_alg;  /* AlgorithmIdentifier of md */
    part digest_algs; /* SET { digest_alg } */
    part sig_alg;     /* signatureAlgorithm */
    part certs;       /* [0] IMPLICIT CertificateSet */
    part attr_ctype;  /* Attribute contentType */
    part attr_scv2;   /* Attribute signingCertificateV2; n 0: none */
};

/* Finishes w (over b) and copies what it wrote into out (malloc'd); b is
 * emptied for the next part. */
static qtsp_status take(qtsp_der_w *w, qtsp_buf *b, part *out)
{
    size_t n = 0;
    TRY(qtsp_der_w_finish(w, &n));
    out->p = malloc(n ? n : 1);
    ENSURE(out->p != NULL, QTSP_ERR_NOMEM, "out of memory");
    memcpy(out->p, b->data, n);
    out->n = n;
    qtsp_buf_reset(b);
    return QTSP_OK;
}

/* i2d of an OpenSSL object into the writer. */
#define I2D_RAW(w, i2d, obj, what)                                                                 \
    do {                                                                                           \
        unsigned char *der_ = NULL;                                                                \
        int l_ = i2d((obj), &der_);                                                                \
        ENSURE_OUT(l_ > 0, QTSP_ERR_CRYPTO, "cannot encode %s", (what));                           \
        qtsp_der_raw((w), der_, (size_t)l_);                                                       \
        OPENSSL_free(der_);                                                                        \
    } while (0)

/* AlgorithmIdentifier of a SHA-2 digest (index into OID_SHA2); parameters
 * absent (RFC 5754 2). */
static void write_md_alg(qtsp_der_w *w, size_t md)
{
    size_t m = qtsp_der_open(w, QTSP_DER_SEQUENCE);
    qtsp_der_oid(w, OID_SHA2[md], sizeof OID_SHA2[md]);
    qtsp_der_close(w, m);
}

/* Whether scheme can be made with key. */
static int sig_fits_key(qtsp_sig_scheme scheme, EVP_PKEY *key)
{
    int id = EVP_PKEY_get_base_id(key);
    if (id == EVP_PKEY_EC)
        return scheme == QTSP_SIG_ECDSA;
    if (id == EVP_PKEY_RSA)
        return scheme == QTSP_SIG_RSA_PKCS1 || scheme == QTSP_SIG_RSA_PSS;
    if (id == EVP_PKEY_RSA_PSS)
        return scheme == QTSP_SIG_RSA_PSS;
    return 0;
}

qtsp_status qtsp_cms_signer_new(const qtsp_cms_signer_opts *o, qtsp_cms_signer **out)
{
    qtsp_status rc = QTSP_OK;
    qtsp_cms_signer *s = NULL;
    qtsp_buf b;
    qtsp_buf_init(&b, 1u << 24);
    qtsp_der_w w;
    ENSURE(o && o->cert && out, QTSP_ERR_INVALID, "CMS signer needs a certificate");
    ENSURE(o->alg.scheme == QTSP_SIG_ECDSA || o->alg.scheme == QTSP_SIG_RSA_PKCS1 ||
               o->alg.scheme == QTSP_SIG_RSA_PSS,
           QTSP_ERR_INVALID, "unknown CMS signature algorithm");
    size_t md = 0;
    while (md < 3 && !(o->alg.md && EVP_MD_get_type(o->alg.md) == MD_NID[md]))
        md++;
    ENSURE(md < 3, QTSP_ERR_UNSUPPORTED, "CMS digest must be SHA-256, SHA-384 or SHA-512");
    EVP_PKEY *pub = X509_get0_pubkey(o->cert);
    ENSURE(pub != NULL, QTSP_ERR_CRYPTO, "cannot read the signer certificate's key");
    ENSURE(sig_fits_key(o->alg.scheme, pub), QTSP_ERR_UNSUPPORTED,
           "signature algorithm does not fit the signer's key");
    const unsigned char *ctype = o->ctype ? o->ctype : OID_DATA;
    size_t ctype_len = o->ctype ? o->ctype_len : sizeof OID_DATA;
    qtsp_der_r oid = {ctype, ctype_len};
    ENSURE(qtsp_der_check_oid(&oid, 64) == QTSP_OK, QTSP_ERR_INVALID,
           "eContentType is not an object identifier");

    s = calloc(1, sizeof *s);
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "out of memory");
    s->md = EVP_MD_fetch(NULL, MD_NAME[md], NULL);
    ENSURE_OUT(s->md != NULL, QTSP_ERR_CRYPTO, "%s is not available", MD_NAME[md]);
    s->md_len = (size_t)EVP_MD_get_size(s->md);
    /* RFC 5652 5.1: version 3 when eContentType is not id-data (no other
     * certificate types, attribute certificates or v3 SignerInfos here). */
    s->version = ctype_len == sizeof OID_DATA && memcmp(ctype, OID_DATA, ctype_len) == 0 ? 1 : 3;

    qtsp_der_w_init_buf(&w, &b);
    qtsp_der_oid(&w, ctype, ctype_len);
    TRY_OUT(take(&w, &b, &s->ctype));

    /* sid: IssuerAndSerialNumber (RFC 5652 5.3, SignerInfo version 1). */
    qtsp_der_w_init_buf(&w, &b);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    I2D_RAW(&w, i2d_X509_NAME, X509_get_issuer_name(o->cert), "the signer's issuer");
    I2D_RAW(&w, i2d_ASN1_INTEGER, X509_get0_serialNumber(o->cert), "the signer's serial");
    qtsp_der_close(&w, m);
    TRY_OUT(take(&w, &b, &s->sid));

    qtsp_der_w_init_buf(&w, &b);
    write_md_alg(&w, md);
    TRY_OUT(take(&w, &b, &s->digest_alg));
    qtsp_der_w_init_buf(&w, &b);
    qtsp_der_tlv(&w, QTSP_DER_SET, s->digest_alg.p, s->digest_alg.n);
    TRY_OUT(take(&w, &b, &s->digest_algs));
    unsigned char algid[QTSP_KEY_ALGID_MAX];
    size_t algid_len = 0;
    TRY_OUT(qtsp_sigalg_algid(&o->alg, algid, sizeof algid, &algid_len));
    qtsp_der_w_init_buf(&w, &b);
    qtsp_der_raw(&w, algid, algid_len);
    TRY_OUT(take(&w, &b, &s->sig_alg));

    /* certificates [0] IMPLICIT: the signer's, then the chain in order. */
    qtsp_der_w_init_buf(&w, &b);
    m = qtsp_der_open(&w, QTSP_DER_CTX_C(0));
    int nchain = o->chain ? sk_X509_num(o->chain) : 0;
    for (int i = -1; i < nchain; i++)
        I2D_RAW(&w, i2d_X509, i < 0 ? o->cert : sk_X509_value(o->chain, i), "a certificate");
    qtsp_der_close(&w, m);
    TRY_OUT(take(&w, &b, &s->certs));

    /* contentType attribute (RFC 5652 11.1). */
    qtsp_der_w_init_buf(&w, &b);
    m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_oid(&w, OID_CONTENT_TYPE, sizeof OID_CONTENT_TYPE);
    qtsp_der_tlv(&w, QTSP_DER_SET, s->ctype.p, s->ctype.n);
    qtsp_der_close(&w, m);
    TRY_OUT(take(&w, &b, &s->attr_ctype));

    if (o->signing_certificate_v2) {
        /* SigningCertificateV2 { certs { ESSCertIDv2 { certHash, issuerSerial
         * { GeneralNames { directoryName [4] issuer }, serial } } } };
         * hashAlgorithm omitted: DEFAULT sha256 (RFC 5035 4). */
        unsigned char hash[32];
        unsigned int hlen = 0;
        ENSURE_OUT(X509_digest(o->cert, EVP_sha256(), hash, &hlen) == 1 && hlen == 32,
                   QTSP_ERR_CRYPTO, "cannot hash the signer certificate");
        qtsp_der_w_init_buf(&w, &b);
        m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        qtsp_der_oid(&w, OID_SIGNING_CERT_V2, sizeof OID_SIGNING_CERT_V2);
        size_t mset = qtsp_der_open(&w, QTSP_DER_SET);
        size_t mscv = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        size_t mcerts = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        size_t mid = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
        qtsp_der_tlv(&w, QTSP_DER_OCTET_STRING, hash, sizeof hash);
        TRY_OUT(qtsp_cms_issuer_serial(o->cert, &w));
        qtsp_der_close(&w, mid);
        qtsp_der_close(&w, mcerts);
        qtsp_der_close(&w, mscv);
        qtsp_der_close(&w, mset);
        qtsp_der_close(&w, m);
        TRY_OUT(take(&w, &b, &s->attr_scv2));
    }
    *out = s;
    s = NULL;
out:
    qtsp_buf_cleanup(&b);
    qtsp_cms_signer_free(s);
    return rc;
}

qtsp_status qtsp_cms_issuer_serial(X509 *cert, qtsp_der_w *w)
{
    qtsp_status rc = QTSP_OK;
    size_t mis = qtsp_der_open(w, QTSP_DER_SEQUENCE);
    size_t mgn = qtsp_der_open(w, QTSP_DER_SEQUENCE);
    size_t mdn = qtsp_der_open(w, QTSP_DER_CTX_C(4));
    I2D_RAW(w, i2d_X509_NAME, X509_get_issuer_name(cert), "the certificate's issuer");
    qtsp_der_close(w, mdn);
    qtsp_der_close(w, mgn);
    I2D_RAW(w, i2d_ASN1_INTEGER, X509_get0_serialNumber(cert), "the certificate's serial");
    qtsp_der_close(w, mis);
out:
    return rc;
}

void qtsp_cms_signer_free(qtsp_cms_signer *s)
{
    if (!s)
        return;
    part *parts[] = {&s->ctype,   &s->sid,   &s->digest_alg, &s->digest_algs,
                     &s->sig_alg, &s->certs, &s->attr_ctype, &s->attr_scv2};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        free(parts[i]->p);
    EVP_MD_free(s->md);
    free(s);
}

const EVP_MD *qtsp_cms_signer_md(const qtsp_cms_signer *s)
{
    return s->md;
}

size_t qtsp_cms_signer_md_len(const qtsp_cms_signer *s)
{
    return s->md_len;
}

/* ---- attributes ------------------------------------------------------------ */

/* The attribute types a caller may not add: those RFC 5652 11 allows once
 * and only as signed attributes, written here. */
static int reserved_type(const qtsp_der_r *oid)
{
    static const struct {
        const unsigned char *p;
        size_t n;
    } types[] = {{OID_CONTENT_TYPE, sizeof OID_CONTENT_TYPE},
                 {OID_MESSAGE_DIGEST, sizeof OID_MESSAGE_DIGEST},
                 {OID_SIGNING_TIME, sizeof OID_SIGNING_TIME}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (oid->n == types[i].n && memcmp(oid->p, types[i].p, oid->n) == 0)
            return 1;
    return 0;
}

/* A caller's Attribute: one DER SEQUENCE { type OID, values SET } and
 * nothing after it, of a type the builder does not write itself. */
static qtsp_status check_attr(const qtsp_cms_bytes *a)
{
    qtsp_der_r r = {a->p, a->p ? a->n : 0}, seq, oid, vals;
    ENSURE(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL) == QTSP_OK &&
               qtsp_der_done(&r) == QTSP_OK &&
               qtsp_der_get(&seq, QTSP_DER_OID, &oid, NULL) == QTSP_OK &&
               qtsp_der_check_oid(&oid, 64) == QTSP_OK &&
               qtsp_der_get(&seq, QTSP_DER_SET, &vals, NULL) == QTSP_OK &&
               qtsp_der_done(&seq) == QTSP_OK,
           QTSP_ERR_INVALID, "a CMS attribute is not one DER Attribute");
    ENSURE(!reserved_type(&oid), QTSP_ERR_INVALID,
           "contentType, messageDigest and signingTime are written by the CMS builder");
    return QTSP_OK;
}

/* X.690 11.6: SET OF components in ascending order of their encodings, the
 * shorter padded with zero octets at its end. */
static int der_order(const qtsp_cms_bytes *a, const qtsp_cms_bytes *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, n);
    if (c)
        return c;
    const qtsp_cms_bytes *l = a->n > b->n ? a : b;
    for (size_t i = n; i < l->n; i++)
        if (l->p[i])
            return a->n > b->n ? 1 : -1;
    return 0;
}

static void sort_attrs(qtsp_cms_bytes *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        qtsp_cms_bytes x = v[i];
        size_t j = i;
        for (; j > 0 && der_order(&v[j - 1], &x) > 0; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Room for the attributes the builder writes per message (the writer wants
 * QTSP_DER_HDR_MAX free for every header). */
typedef struct attr_scratch {
    unsigned char md[2 + 2 + sizeof OID_MESSAGE_DIGEST + 2 + 2 + 64 + QTSP_DER_HDR_MAX];
    unsigned char time[2 + 2 + sizeof OID_SIGNING_TIME + 2 + QTSP_DER_TIME_MAX + QTSP_DER_HDR_MAX];
} attr_scratch;

/* The signed attributes of a message (unsorted) in v[0..*n), their total
 * length in *sum; per-message encodings go to sc. */
static qtsp_status gather(const qtsp_cms_signer *s, const qtsp_cms_attrs *a, attr_scratch *sc,
                          qtsp_cms_bytes v[QTSP_CMS_MAX_ATTRS + 4], size_t *n, size_t *sum)
{
    ENSURE(a && a->digest && a->digest_len == s->md_len, QTSP_ERR_INVALID,
           "messageDigest must be the %zu-byte content digest", s->md_len);
    ENSURE(a->n_extra <= QTSP_CMS_MAX_ATTRS && (a->n_extra == 0 || a->extra), QTSP_ERR_INVALID,
           "at most %d further signed attributes", QTSP_CMS_MAX_ATTRS);
    size_t k = 0;
    v[k++] = (qtsp_cms_bytes){s->attr_ctype.p, s->attr_ctype.n};
    if (s->attr_scv2.n)
        v[k++] = (qtsp_cms_bytes){s->attr_scv2.p, s->attr_scv2.n};

    /* messageDigest { OCTET STRING } (RFC 5652 11.2) */
    qtsp_der_w w;
    qtsp_der_w_init(&w, sc->md, sizeof sc->md);
    qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, 2 + sizeof OID_MESSAGE_DIGEST + 2 + 2 + a->digest_len);
    qtsp_der_oid(&w, OID_MESSAGE_DIGEST, sizeof OID_MESSAGE_DIGEST);
    qtsp_der_hdr(&w, QTSP_DER_SET, 2 + a->digest_len);
    qtsp_der_hdr(&w, QTSP_DER_OCTET_STRING, a->digest_len);
    qtsp_der_raw(&w, a->digest, a->digest_len);
    size_t len = 0;
    TRY(qtsp_der_w_finish(&w, &len));
    v[k++] = (qtsp_cms_bytes){sc->md, len};

    if (a->with_signing_time) {
        /* signingTime { Time }: UTCTime 1950..2049, else GeneralizedTime (RFC 5652 11.3) */
        size_t tl = qtsp_der_time_size(a->signing_time, 0);
        ENSURE(tl != 0 && a->signing_time >= INT64_C(-631152000), QTSP_ERR_INVALID,
               "signingTime out of range");
        qtsp_der_w_init(&w, sc->time, sizeof sc->time);
        qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, 2 + sizeof OID_SIGNING_TIME + 2 + tl);
        qtsp_der_oid(&w, OID_SIGNING_TIME, sizeof OID_SIGNING_TIME);
        qtsp_der_hdr(&w, QTSP_DER_SET, tl);
        qtsp_der_time(&w, a->signing_time, 0);
        TRY(qtsp_der_w_finish(&w, &len));
        v[k++] = (qtsp_cms_bytes){sc->time, len};
    }
    for (size_t i = 0; i < a->n_extra; i++) {
        TRY(check_attr(&a->extra[i]));
        v[k++] = a->extra[i];
    }
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
        total += v[i].n;
    *n = k;
    *sum = total;
    return QTSP_OK;
}

size_t qtsp_cms_signed_attrs_size(const qtsp_cms_signer *s, const qtsp_cms_attrs *a)
{
    attr_scratch sc;
    qtsp_cms_bytes v[QTSP_CMS_MAX_ATTRS + 4];
    size_t n = 0, sum = 0;
    if (gather(s, a, &sc, v, &n, &sum) != QTSP_OK)
        return 0;
    return qtsp_der_tlv_size(sum);
}

qtsp_status qtsp_cms_signed_attrs(const qtsp_cms_signer *s, const qtsp_cms_attrs *a,
                                  unsigned char *out, size_t cap, size_t *len)
{
    attr_scratch sc;
    qtsp_cms_bytes v[QTSP_CMS_MAX_ATTRS + 4];
    size_t n = 0, sum = 0;
    TRY(gather(s, a, &sc, v, &n, &sum));
    size_t total = qtsp_der_tlv_size(sum);
    ENSURE(out && cap >= total, QTSP_ERR_TOO_BIG, "signed attributes need %zu bytes", total);
    sort_attrs(v, n);
    size_t pos = qtsp_der_put_hdr(out, QTSP_DER_SET, sum);
    for (size_t i = 0; i < n; i++) {
        memcpy(out + pos, v[i].p, v[i].n);
        pos += v[i].n;
    }
    *len = pos;
    return QTSP_OK;
}

/* ---- the ContentInfo ---------------------------------------------------------- */

/* Content lengths of the nested structures, outermost last. */
typedef struct layout {
    size_t attrs_hdr;   /* header bytes of the signed attributes' SET */
    size_t attrs_body;  /* its content */
    size_t ua_body;     /* unsignedAttrs content; 0: absent */
    size_t econtent;    /* [0] EXPLICIT eContent content (the OCTET STRING TLV); 0: detached */
    size_t encap;       /* EncapsulatedContentInfo content */
    size_t signer_info; /* SignerInfo content */
    size_t signer_infos;
    size_t signed_data;
    size_t content_info;
} layout;

/* Checks p and computes the layout. */
static qtsp_status plan(const qtsp_cms_signer *s, const qtsp_cms_parts *p, layout *z)
{
    ENSURE(p && p->attrs && p->sig && p->sig_len > 0, QTSP_ERR_INVALID,
           "a CMS signature needs its signed attributes and signature");
    unsigned char tag = 0;
    size_t clen = 0, hl = 0;
    ENSURE(qtsp_der_get_hdr(p->attrs, p->attrs_len, &tag, &clen, &hl) == QTSP_OK &&
               tag == QTSP_DER_SET && hl + clen == p->attrs_len,
           QTSP_ERR_INVALID, "signed attributes are not one DER SET");
    ENSURE(p->n_unsigned <= QTSP_CMS_MAX_ATTRS && (p->n_unsigned == 0 || p->unsigned_attrs),
           QTSP_ERR_INVALID, "at most %d unsigned attributes", QTSP_CMS_MAX_ATTRS);
    z->attrs_hdr = hl;
    z->attrs_body = clen;
    z->ua_body = 0;
    for (size_t i = 0; i < p->n_unsigned; i++) {
        TRY(check_attr(&p->unsigned_attrs[i]));
        z->ua_body += p->unsigned_attrs[i].n;
    }
    z->econtent = p->content ? qtsp_der_tlv_size(p->content_len) : 0;
    z->encap = s->ctype.n + (p->content ? qtsp_der_tlv_size(z->econtent) : 0);
    z->signer_info = 3 + s->sid.n + s->digest_alg.n + qtsp_der_tlv_size(clen) + s->sig_alg.n +
                     qtsp_der_tlv_size(p->sig_len) +
                     (p->n_unsigned ? qtsp_der_tlv_size(z->ua_body) : 0);
    z->signer_infos = qtsp_der_tlv_size(z->signer_info);
    z->signed_data = 3 + s->digest_algs.n + qtsp_der_tlv_size(z->encap) +
                     (p->with_certs ? s->certs.n : 0) + qtsp_der_tlv_size(z->signer_infos);
    z->content_info =
        2 + sizeof OID_SIGNED_DATA + qtsp_der_tlv_size(qtsp_der_tlv_size(z->signed_data));
    return QTSP_OK;
}

size_t qtsp_cms_size(const qtsp_cms_signer *s, const qtsp_cms_parts *p)
{
    layout z = {0};
    if (plan(s, p, &z) != QTSP_OK)
        return 0;
    return qtsp_der_tlv_size(z.content_info);
}

qtsp_status qtsp_cms_write(const qtsp_cms_signer *s, const qtsp_cms_parts *p, qtsp_der_w *w)
{
    layout z = {0};
    TRY(plan(s, p, &z));
    qtsp_der_hdr(w, QTSP_DER_SEQUENCE, z.content_info); /* ContentInfo */
    qtsp_der_oid(w, OID_SIGNED_DATA, sizeof OID_SIGNED_DATA);
    qtsp_der_hdr(w, QTSP_DER_CTX_C(0), qtsp_der_tlv_size(z.signed_data));
    qtsp_der_hdr(w, QTSP_DER_SEQUENCE, z.signed_data); /* SignedData */
    qtsp_der_u64(w, QTSP_DER_INTEGER, s->version);
    qtsp_der_raw(w, s->digest_algs.p, s->digest_algs.n);
    qtsp_der_hdr(w, QTSP_DER_SEQUENCE, z.encap); /* encapContentInfo */
    qtsp_der_raw(w, s->ctype.p, s->ctype.n);
    if (p->content) {
        qtsp_der_hdr(w, QTSP_DER_CTX_C(0), z.econtent);
        qtsp_der_hdr(w, QTSP_DER_OCTET_STRING, p->content_len);
        qtsp_der_raw(w, p->content, p->content_len);
    }
    if (p->with_certs)
        qtsp_der_raw(w, s->certs.p, s->certs.n);
    qtsp_der_hdr(w, QTSP_DER_SET, z.signer_infos); /* signerInfos */
    qtsp_der_hdr(w, QTSP_DER_SEQUENCE, z.signer_info);
    qtsp_der_u64(w, QTSP_DER_INTEGER, 1); /* issuerAndSerialNumber: version 1 */
    qtsp_der_raw(w, s->sid.p, s->sid.n);
    qtsp_der_raw(w, s->digest_alg.p, s->digest_alg.n);
    /* signedAttrs [0] IMPLICIT; signed as SET (RFC 5652 5.4) */
    qtsp_der_hdr(w, QTSP_DER_CTX_C(0), z.attrs_body);
    qtsp_der_raw(w, p->attrs + z.attrs_hdr, z.attrs_body);
    qtsp_der_raw(w, s->sig_alg.p, s->sig_alg.n);
    qtsp_der_hdr(w, QTSP_DER_OCTET_STRING, p->sig_len);
    qtsp_der_raw(w, p->sig, p->sig_len);
    if (p->n_unsigned) {
        qtsp_cms_bytes v[QTSP_CMS_MAX_ATTRS];
        memcpy(v, p->unsigned_attrs, p->n_unsigned * sizeof v[0]);
        sort_attrs(v, p->n_unsigned);
        qtsp_der_hdr(w, QTSP_DER_CTX_C(1), z.ua_body);
        for (size_t i = 0; i < p->n_unsigned; i++)
            qtsp_der_raw(w, v[i].p, v[i].n);
    }
    return QTSP_OK;
}
