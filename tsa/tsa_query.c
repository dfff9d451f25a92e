/* TimeStampReq parser (RFC 3161 2.4.1). Hand-written strict DER reader: the
 * query comes from the network, so every length is checked against what is
 * left, lengths must be minimal and definite, and nothing may trail. */
#include <string.h>

#include "tsa/tsa_int.h"

typedef struct der_in {
    const unsigned char *p;
    size_t n;
} der_in;

/* Reads one TLV with a one-byte tag. On success *tag, *val (content) and
 * *tlv (whole element) are set and in advances. Returns 0, or -1 when the
 * encoding is not DER (long-form tags, indefinite or non-minimal lengths,
 * overruns). */
static int der_next(der_in *in, unsigned *tag, der_in *val, der_in *tlv)
{
    if (in->n < 2)
        return -1;
    const unsigned char *start = in->p;
    unsigned t = in->p[0];
    if ((t & 0x1f) == 0x1f)
        return -1; /* high tag numbers: nothing in a TimeStampReq uses them */
    size_t len;
    size_t hdr;
    unsigned char l0 = in->p[1];
    if (l0 < 0x80) {
        len = l0;
        hdr = 2;
    } else {
        size_t nb = l0 & 0x7f;
        if (nb == 0 || nb > 2 || in->n < 2 + nb)
            return -1; /* indefinite, or longer than any query we accept */
        len = 0;
        for (size_t i = 0; i < nb; i++)
            len = (len << 8) | in->p[2 + i];
        if (len < 0x80 || (nb == 2 && len < 0x100))
            return -1; /* X.690 10.1: minimal length octets */
        hdr = 2 + nb;
    }
    if (len > in->n - hdr)
        return -1;
    *tag = t;
    val->p = start + hdr;
    val->n = len;
    tlv->p = start;
    tlv->n = hdr + len;
    in->p += hdr + len;
    in->n -= hdr + len;
    return 0;
}

/* X.690 8.3.2: an INTEGER is non-empty and minimally encoded. */
static int der_int_ok(const der_in *v)
{
    if (v->n == 0)
        return 0;
    if (v->n > 1 &&
        ((v->p[0] == 0x00 && !(v->p[1] & 0x80)) || (v->p[0] == 0xff && (v->p[1] & 0x80))))
        return 0;
    return 1;
}

/* X.690 8.19: subidentifiers are minimal base-128, the last one ends. */
static int der_oid_ok(const der_in *v)
{
    if (v->n == 0 || v->n > QTSP_TSA_MAX_OID - 2)
        return 0;
    if (v->p[v->n - 1] & 0x80)
        return 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->p[i] == 0x80 && (i == 0 || !(v->p[i - 1] & 0x80)))
            return 0;
    return 1;
}

typedef struct hash_oid {
    int hash; /* qtsp_tsa_hash, or -1 for algorithms never accepted */
    size_t digest_len;
    unsigned char oid[9];
    size_t oid_len;
} hash_oid;

static const hash_oid k_hashes[] = {
    {QTSP_TSA_H_SHA256, 32, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}, 9},
    {QTSP_TSA_H_SHA384, 48, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02}, 9},
    {QTSP_TSA_H_SHA512, 64, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03}, 9},
    {QTSP_TSA_H_SHA3_256, 32, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x08}, 9},
    {QTSP_TSA_H_SHA3_384, 48, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x09}, 9},
    {QTSP_TSA_H_SHA3_512, 64, {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x0a}, 9},
};

const char *qtsp_tsa_hash_name(qtsp_tsa_hash h)
{
    static const char *const names[] = {"sha256",   "sha384",   "sha512",
                                        "sha3-256", "sha3-384", "sha3-512"};
    return (unsigned)h < QTSP_TSA_H__COUNT ? names[h] : "?";
}

int qtsp_tsa_parse_query(const qtsp_tsa_policy *pol, const unsigned char *query, size_t len,
                         qtsp_tsa_req *req)
{
    enum { BAD_FORMAT = QTSP_TSA_FAIL_BAD_DATA_FORMAT };
    qtsp_tsa_req r;
    memset(&r, 0, sizeof r);
    r.hash = -1;
    if (!query || len == 0 || len > QTSP_TSA_MAX_QUERY)
        return BAD_FORMAT;

    der_in in = {query, len}, seq, tlv, v;
    unsigned tag;
    if (der_next(&in, &tag, &seq, &tlv) != 0 || tag != 0x30 || in.n != 0)
        return BAD_FORMAT; /* not one SEQUENCE, or trailing bytes */

    /* version INTEGER { v1(1) } */
    if (der_next(&seq, &tag, &v, &tlv) != 0 || tag != 0x02 || !der_int_ok(&v))
        return BAD_FORMAT;
    int bad_version = !(v.n == 1 && v.p[0] == 1);

    /* messageImprint SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING } */
    der_in mi, alg, oid, params, hashed;
    if (der_next(&seq, &tag, &mi, &tlv) != 0 || tag != 0x30)
        return BAD_FORMAT;
    r.imprint = tlv.p;
    r.imprint_len = tlv.n;
    if (der_next(&mi, &tag, &alg, &tlv) != 0 || tag != 0x30)
        return BAD_FORMAT;
    if (der_next(&alg, &tag, &oid, &tlv) != 0 || tag != 0x06 || !der_oid_ok(&oid))
        return BAD_FORMAT;
    int bad_params = 0;
    if (alg.n != 0) {
        if (der_next(&alg, &tag, &params, &tlv) != 0 || alg.n != 0)
            return BAD_FORMAT;
        bad_params = !(tag == 0x05 && params.n == 0); /* RFC 5754 2: absent or NULL */
    }
    if (der_next(&mi, &tag, &hashed, &tlv) != 0 || tag != 0x04 || mi.n != 0)
        return BAD_FORMAT;
    r.hash_oid = oid.p;
    r.hash_oid_len = oid.n;
    r.hashed = hashed.p;
    r.hashed_len = hashed.n;

    /* Optional fields, in this order: reqPolicy, nonce, certReq, [0] extensions. */
    int stage = 0, has_ext = 0;
    while (seq.n != 0) {
        if (der_next(&seq, &tag, &v, &tlv) != 0)
            return BAD_FORMAT;
        if (tag == 0x06 && stage < 1) {
            if (!der_oid_ok(&v))
                return BAD_FORMAT;
            r.policy = tlv.p;
            r.policy_len = tlv.n;
            stage = 1;
        } else if (tag == 0x02 && stage < 2) {
            if (!der_int_ok(&v))
                return BAD_FORMAT;
            r.nonce = tlv.p;
            r.nonce_len = tlv.n;
            stage = 2;
        } else if (tag == 0x01 && stage < 3) {
            /* An explicit FALSE is tolerated (BER DEFAULT) though DER omits it. */
            if (v.n != 1)
                return BAD_FORMAT;
            r.cert_req = v.p[0] != 0;
            stage = 3;
        } else if (tag == 0xa0 && stage < 4) {
            /* Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension (IMPLICIT tag). */
            der_in ext, e;
            if (v.n == 0)
                return BAD_FORMAT;
            ext = v;
            while (ext.n != 0)
                if (der_next(&ext, &tag, &e, &tlv) != 0 || tag != 0x30)
                    return BAD_FORMAT;
            has_ext = 1;
            stage = 4;
        } else {
            return BAD_FORMAT;
        }
    }

    /* Semantic checks, after the whole structure proved well-formed. */
    if (bad_version)
        return QTSP_TSA_FAIL_BAD_REQUEST;
    const hash_oid *h = NULL;
    for (size_t i = 0; i < sizeof k_hashes / sizeof k_hashes[0]; i++)
        if (k_hashes[i].oid_len == oid.n && memcmp(k_hashes[i].oid, oid.p, oid.n) == 0)
            h = &k_hashes[i];
    /* MD5, SHA-1 and every OID not in the table or not enabled: badAlg. */
    if (!h || bad_params || !(pol->hash_mask & (1u << h->hash)))
        return QTSP_TSA_FAIL_BAD_ALG;
    if (hashed.n != h->digest_len)
        return BAD_FORMAT;
    r.hash = h->hash;
    if (r.policy) {
        int ok = 0;
        for (size_t i = 0; i < pol->n_accepted; i++)
            if (pol->accepted_len[i] == r.policy_len &&
                memcmp(pol->accepted[i], r.policy, r.policy_len) == 0)
                ok = 1;
        if (!ok)
            return QTSP_TSA_FAIL_UNACCEPTED_POLICY;
    }
    if (has_ext)
        return QTSP_TSA_FAIL_UNACCEPTED_EXTENSION;
    *req = r;
    return -1;
}
