/* TimeStampReq parser (RFC 3161 2.4.1) on the strict DER reader of
 * core/der.h: the query comes from the network, so every length is checked
 * against what is left, lengths must be minimal and definite, and nothing
 * may trail. */
#include <string.h>

#include "core/der.h"
#include "tsa/tsa_int.h"

/* Policy and hash OIDs longer than a policy TLV can hold are refused. */
#define OID_MAX (QTSP_TSA_MAX_OID - 2)

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

qtsp_status qtsp_tsa_stamp_sha256(qtsp_tsa *tsa, const unsigned char digest[32], qtsp_buf *out)
{
    const hash_oid *h = &k_hashes[0]; /* SHA-256 */
    unsigned char q[96];
    qtsp_der_w w;
    qtsp_der_w_init(&w, q, sizeof q);
    size_t top = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_u64(&w, QTSP_DER_INTEGER, 1);
    size_t mi = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    size_t alg = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_oid(&w, h->oid, h->oid_len);
    qtsp_der_close(&w, alg);
    qtsp_der_tlv(&w, QTSP_DER_OCTET_STRING, digest, h->digest_len);
    qtsp_der_close(&w, mi);
    qtsp_der_bool(&w, 1); /* certReq */
    qtsp_der_close(&w, top);
    size_t len = 0;
    TRY(qtsp_der_w_finish(&w, &len));
    return qtsp_tsa_respond(tsa, q, len, out);
}

static int parse(const qtsp_tsa_policy *pol, const unsigned char *query, size_t len,
                 qtsp_tsa_req *req)
{
    enum { BAD_FORMAT = QTSP_TSA_FAIL_BAD_DATA_FORMAT };
    qtsp_tsa_req r;
    memset(&r, 0, sizeof r);
    r.hash = -1;
    if (!query || len == 0 || len > QTSP_TSA_MAX_QUERY)
        return BAD_FORMAT;

    /* Reader failures are protocol answers here, not errors to report. */
    qtsp_der_r in = {query, len}, seq, tlv, v;
    unsigned char tag;
    if (qtsp_der_get(&in, QTSP_DER_SEQUENCE, &seq, NULL) != QTSP_OK ||
        qtsp_der_done(&in) != QTSP_OK)
        return BAD_FORMAT; /* not one SEQUENCE, or trailing bytes */

    /* version INTEGER { v1(1) } */
    if (qtsp_der_get(&seq, QTSP_DER_INTEGER, &v, NULL) != QTSP_OK ||
        qtsp_der_check_int(&v) != QTSP_OK)
        return BAD_FORMAT;
    int bad_version = !(v.n == 1 && v.p[0] == 1);

    /* messageImprint SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING } */
    qtsp_der_r mi, alg, oid, params, hashed;
    if (qtsp_der_get(&seq, QTSP_DER_SEQUENCE, &mi, &tlv) != QTSP_OK)
        return BAD_FORMAT;
    r.imprint = tlv.p;
    r.imprint_len = tlv.n;
    if (qtsp_der_get(&mi, QTSP_DER_SEQUENCE, &alg, NULL) != QTSP_OK)
        return BAD_FORMAT;
    if (qtsp_der_get(&alg, QTSP_DER_OID, &oid, NULL) != QTSP_OK ||
        qtsp_der_check_oid(&oid, OID_MAX) != QTSP_OK)
        return BAD_FORMAT;
    int bad_params = 0;
    if (alg.n != 0) {
        if (qtsp_der_next(&alg, &tag, &params, NULL) != QTSP_OK || qtsp_der_done(&alg) != QTSP_OK)
            return BAD_FORMAT;
        bad_params = !(tag == 0x05 && params.n == 0); /* RFC 5754 2: absent or NULL */
    }
    if (qtsp_der_get(&mi, QTSP_DER_OCTET_STRING, &hashed, NULL) != QTSP_OK ||
        qtsp_der_done(&mi) != QTSP_OK)
        return BAD_FORMAT;
    r.hash_oid = oid.p;
    r.hash_oid_len = oid.n;
    r.hashed = hashed.p;
    r.hashed_len = hashed.n;

    /* Optional fields, in this order: reqPolicy, nonce, certReq, [0] extensions. */
    int stage = 0, has_ext = 0;
    while (seq.n != 0) {
        if (qtsp_der_next(&seq, &tag, &v, &tlv) != QTSP_OK)
            return BAD_FORMAT;
        if (tag == 0x06 && stage < 1) {
            if (qtsp_der_check_oid(&v, OID_MAX) != QTSP_OK)
                return BAD_FORMAT;
            r.policy = tlv.p;
            r.policy_len = tlv.n;
            stage = 1;
        } else if (tag == 0x02 && stage < 2) {
            if (qtsp_der_check_int(&v) != QTSP_OK)
                return BAD_FORMAT;
            r.nonce = tlv.p;
            r.nonce_len = tlv.n;
            stage = 2;
        } else if (tag == 0x01 && stage < 3) {
            /* X.690 11.5: DER omits a DEFAULT value, so an explicit FALSE is
             * not DER (defect 15.8), nor is TRUE other than 0xff (11.1). */
            int b = 0;
            if (qtsp_der_read_bool(&v, &b) != QTSP_OK || !b) {
                qtsp_err_clear();
                return BAD_FORMAT;
            }
            r.cert_req = 1;
            stage = 3;
        } else if (tag == 0xa0 && stage < 4) {
            /* Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension (IMPLICIT tag). */
            qtsp_der_r ext = v;
            if (v.n == 0)
                return BAD_FORMAT;
            while (ext.n != 0)
                if (qtsp_der_get(&ext, QTSP_DER_SEQUENCE, NULL, NULL) != QTSP_OK)
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

int qtsp_tsa_parse_query(const qtsp_tsa_policy *pol, const unsigned char *query, size_t len,
                         qtsp_tsa_req *req)
{
    int bit = parse(pol, query, len, req);
    if (bit >= 0)
        qtsp_err_clear(); /* what the reader recorded is answered as a rejection */
    return bit;
}
