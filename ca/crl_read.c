/* Reading back published CRLs and the publisher's store records; see
 * ca/crl_int.h. */
#include "ca/crl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/codec.h"
#include "core/der.h"

/* Reads back a CRL this publisher (or another process on the same store)
 * wrote: the whole file into a blob. */
qtsp_status crl_read_file(const char *dir, const char *name, pthread_mutex_t *lock, crl_blob **out)
{
    char path[CRL_PATH_MAX + 64];
    int l = snprintf(path, sizeof path, "%s/%s.crl", dir, name);
    ENSURE(l > 0 && (size_t)l < sizeof path, QTSP_ERR_TOO_BIG, "CRL path too long");
    qtsp_status rc;
    crl_blob *bl = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    ENSURE_OUT(fstat(fd, &sb) == 0, QTSP_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    ENSURE_OUT(S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size < CRL_FILE_MAX,
               QTSP_ERR_INVALID, "%s is not a CRL file of a sane size", path);
    bl = calloc(1, sizeof *bl);
    ENSURE_OUT(bl, QTSP_ERR_NOMEM, "out of memory");
    bl->len = (size_t)sb.st_size;
    bl->mem = malloc(bl->len);
    ENSURE_OUT(bl->mem, QTSP_ERR_NOMEM, "out of memory for %s", path);
    for (size_t off = 0; off < bl->len;) {
        ssize_t k = read(fd, bl->mem + off, bl->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        ENSURE_OUT(k > 0, QTSP_ERR_IO, "cannot read %s: %s", path,
                   k < 0 ? strerror(errno) : "file shrank");
        off += (size_t)k;
    }
    bl->der = bl->mem;
    bl->refs = 1;
    bl->lock = lock;
    *out = bl;
    bl = NULL;
    rc = QTSP_OK;
out:
    close(fd);
    if (bl) {
        free(bl->mem);
        free(bl);
    }
    return rc;
}

/* Checks that der is a CRL of ca (issuer, signature algorithm, signature
 * over tbsCertList, RFC 5280 5.1) and reads cRLNumber, thisUpdate and
 * nextUpdate. Every TLV must end where its parent does (core/der.h). */
qtsp_status crl_parse_published(const crl_ca *ca, crl_blob *bl)
{
    qtsp_status rc;
    EVP_MD_CTX *mctx = NULL;
    qtsp_der_r in = {bl->der, bl->len}, crl, tbs, tbs_tlv, v, a;
    unsigned char tag = 0;
    TRY(qtsp_der_get(&in, QTSP_DER_SEQUENCE, &crl, NULL));
    TRY(qtsp_der_done(&in));
    TRY(qtsp_der_get(&crl, QTSP_DER_SEQUENCE, &tbs, &tbs_tlv));
    /* TBSCertList */
    TRY(qtsp_der_get(&tbs, QTSP_DER_INTEGER, &v, NULL));
    ENSURE(v.n == 1 && v.p[0] == 1, QTSP_ERR_INVALID, "CRL: not v2");
    TRY(qtsp_der_get(&tbs, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->alg_len && memcmp(a.p, ca->alg, ca->alg_len) == 0, QTSP_ERR_INVALID,
           "CRL: signature algorithm is not the CA's");
    TRY(qtsp_der_get(&tbs, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->issuer_len && memcmp(a.p, ca->issuer, ca->issuer_len) == 0, QTSP_ERR_INVALID,
           "CRL: issuer is not the CA");
    int64_t tu, nu = 0;
    TRY(qtsp_der_next(&tbs, &tag, &v, NULL));
    TRY(qtsp_der_read_time(tag, &v, &tu)); /* thisUpdate */
    uint64_t number = 0;
    int have_number = 0;
    while (tbs.n) {
        TRY(qtsp_der_next(&tbs, &tag, &v, NULL));
        if (tag == QTSP_DER_UTCTIME || tag == QTSP_DER_GENTIME) {
            TRY(qtsp_der_read_time(tag, &v, &nu));
        } else if (tag == QTSP_DER_CTX_C(0)) { /* crlExtensions */
            qtsp_der_r exts;
            TRY(qtsp_der_get(&v, QTSP_DER_SEQUENCE, &exts, NULL));
            TRY(qtsp_der_done(&v));
            while (exts.n) {
                qtsp_der_r e, oid, val;
                TRY(qtsp_der_get(&exts, QTSP_DER_SEQUENCE, &e, NULL));
                TRY(qtsp_der_get(&e, QTSP_DER_OID, &oid, NULL));
                if (qtsp_der_peek(&e) == QTSP_DER_BOOLEAN)
                    TRY(qtsp_der_get(&e, QTSP_DER_BOOLEAN, &val, NULL));
                TRY(qtsp_der_get(&e, QTSP_DER_OCTET_STRING, &val, NULL));
                TRY(qtsp_der_done(&e));
                if (oid.n == 3 && oid.p[0] == 0x55 && oid.p[1] == 0x1d &&
                    oid.p[2] == CE_CRL_NUMBER) {
                    qtsp_der_r m;
                    TRY(qtsp_der_get(&val, QTSP_DER_INTEGER, &m, NULL));
                    TRY(qtsp_der_done(&val));
                    TRY(qtsp_der_read_u64(&m, &number));
                    have_number = 1;
                }
            }
        } else {
            ENSURE(tag == QTSP_DER_SEQUENCE, QTSP_ERR_INVALID, "CRL: unexpected field");
        }
    }
    ENSURE(have_number && nu > tu, QTSP_ERR_INVALID, "CRL: no cRLNumber or nextUpdate");
    /* signatureAlgorithm, signatureValue */
    TRY(qtsp_der_get(&crl, QTSP_DER_SEQUENCE, NULL, &a));
    ENSURE(a.n == ca->alg_len && memcmp(a.p, ca->alg, ca->alg_len) == 0, QTSP_ERR_INVALID,
           "CRL: signature algorithm is not the CA's");
    qtsp_der_r sig;
    TRY(qtsp_der_get(&crl, QTSP_DER_BIT_STRING, &sig, NULL));
    ENSURE(crl.n == 0 && sig.n >= 2 && sig.p[0] == 0, QTSP_ERR_INVALID, "CRL: malformed signature");
    ERR_clear_error();
    mctx = EVP_MD_CTX_new();
    ENSURE_OUT(mctx, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(EVP_DigestVerifyInit(mctx, NULL, ca->md, NULL, X509_get0_pubkey(ca->cert)) == 1,
               QTSP_ERR_CRYPTO, "cannot start verifying the CRL");
    size_t tl = tbs_tlv.n;
    for (size_t off = 0; off < tl; off += (size_t)1 << 20) {
        size_t chunk = tl - off < ((size_t)1 << 20) ? tl - off : (size_t)1 << 20;
        ENSURE_OUT(EVP_DigestVerifyUpdate(mctx, tbs_tlv.p + off, chunk) == 1, QTSP_ERR_CRYPTO,
                   "cannot hash the CRL");
    }
    ENSURE_OUT(EVP_DigestVerifyFinal(mctx, sig.p + 1, sig.n - 1) == 1, QTSP_ERR_CRYPTO,
               "CRL signature does not verify with the CA key");
    bl->number = number;
    bl->this_update = (time_t)tu;
    bl->next_update = (time_t)nu;
    rc = QTSP_OK;
out:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* ---------------------------------------------------------------- store facts */

/* The record key of table "crl": *p NULL when nothing was published yet;
 * QTSP_ERR_STORE_CORRUPT unless it is want bytes in format version 1. */
static qtsp_status read_record(qtsp_txn *txn, const char *key, size_t want, const unsigned char **p)
{
    const void *v;
    size_t vl;
    *p = NULL;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_CRL, key, strlen(key), &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* nothing published yet */
        return QTSP_OK;
    TRY(rc);
    ENSURE(vl == want && ((const unsigned char *)v)[0] == CRL_REC_VERSION, QTSP_ERR_STORE_CORRUPT,
           "crl record %s of unknown format", key);
    *p = v;
    return QTSP_OK;
}

qtsp_status crl_read_facts(qtsp_txn *txn, crl_facts *f)
{
    memset(f, 0, sizeof *f);
    const unsigned char *p;
    TRY(read_record(txn, "qualified", 49, &p));
    if (!p)
        return QTSP_OK;
    f->present = 1;
    f->base_number = qtsp_be64_get(p + 1);
    f->base_time = (time_t)qtsp_be64_get(p + 9);
    f->last_number = qtsp_be64_get(p + 17);
    f->last_time = (time_t)qtsp_be64_get(p + 25);
    f->status_gen = qtsp_be64_get(p + 33);
    f->next_lapse = (time_t)qtsp_be64_get(p + 41);
    return QTSP_OK;
}

/* cRLNumber of the last root CRL (store table "crl", key "root"), 0 if none. */
qtsp_status crl_read_root_number(qtsp_txn *txn, uint64_t *number)
{
    *number = 0;
    const unsigned char *p;
    TRY(read_record(txn, "root", 17, &p));
    if (p)
        *number = qtsp_be64_get(p + 1);
    return QTSP_OK;
}

qtsp_status crl_read_roots(qtsp_txn *txn, root_serial *out, size_t *n)
{
    *n = 0;
    const void *v;
    size_t vl;
    qtsp_status rc = qtsp_txn_get0(txn, QTSP_T_META, "issued_by_root", 14, &v, &vl);
    if (rc == QTSP_ERR_NOT_FOUND) /* no CA-side certificates recorded yet */
        return QTSP_OK;
    TRY(rc);
    const unsigned char *p = v;
    size_t off = 0, k = 0;
    while (off < vl) {
        size_t l = p[off++];
        ENSURE(l >= 1 && l <= QTSP_SERIAL_MAX && l <= vl - off, QTSP_ERR_STORE_CORRUPT,
               "meta issued_by_root malformed");
        ENSURE(k < CRL_ROOT_LIST_MAX, QTSP_ERR_TOO_BIG, "meta issued_by_root too long");
        TRY(qtsp_serial_normalize(p + off, l, out[k].s, &out[k].n));
        off += l;
        k++;
    }
    /* numeric order for the root CRL: length, then bytes */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0; j--) {
            root_serial *a = &out[j - 1], *b = &out[j];
            if (a->n < b->n || (a->n == b->n && memcmp(a->s, b->s, a->n) <= 0))
                break;
            root_serial t = *a;
            *a = *b;
            *b = t;
        }
    *n = k;
    return QTSP_OK;
}
