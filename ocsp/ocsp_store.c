/* The OCSP responder's source over the store (ocsp/ocsp_int.h): one read
 * transaction per request, statuses from ca/certdb, pre-signed answers in
 * the table ocsp_cache, written only while status_gen has not moved. */
#include <stdint.h>
#include <string.h>

#include "ca/certdb.h"
#include "ca/store.h"
#include "ocsp/ocsp_int.h"

static qtsp_status src_begin(void *ctx, void **snap)
{
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(ctx, 0, &txn));
    *snap = txn;
    return QTSP_OK;
}

static void src_end(void *snap)
{
    qtsp_txn_abort(snap);
}

static qtsp_status src_gen(void *snap, uint64_t *gen)
{
    return qtsp_txn_counter_get(snap, "status_gen", gen);
}

/* The responder speaks for the issuing CA only: a serial the root issued
 * (the issuing CA's own certificate, a TSA unit) was never issued by the CA
 * named in the CertID (RFC 6960 2.2), whatever its status. */
static qtsp_status src_status(void *snap, const unsigned char *serial, size_t len,
                              qtsp_cert_status *out)
{
    char issuer[QTSP_CERT_ISSUER_MAX];
    TRY(qtsp_certdb_get_issuer(snap, serial, len, issuer));
    ENSURE(strcmp(issuer, "issuing") == 0, QTSP_ERR_NOT_FOUND,
           "serial was issued by the %s CA, not by the issuing CA", issuer);
    return qtsp_certdb_get_status(snap, serial, len, out);
}

static qtsp_status src_cache_get(void *snap, const unsigned char *key, size_t klen,
                                 const void **val, size_t *vlen)
{
    return qtsp_txn_get0(snap, QTSP_T_OCSP_CACHE, key, klen, val, vlen);
}

typedef struct cache_put {
    uint64_t gen; /* status_gen seen when the status was read */
    const unsigned char *key, *val;
    size_t klen, vlen;
    int stored;
} cache_put;

static qtsp_status cache_put_fn(qtsp_txn *txn, void *ctx)
{
    cache_put *c = ctx;
    uint64_t gen = 0;
    TRY(qtsp_txn_counter_get(txn, "status_gen", &gen));
    c->stored = 0;
    /* A status change since our read would have deleted the entry already:
     * storing our answer now would resurrect the old status. */
    if (gen != c->gen)
        return QTSP_OK;
    TRY(qtsp_txn_put(txn, QTSP_T_OCSP_CACHE, c->key, c->klen, c->val, c->vlen, 0));
    c->stored = 1;
    return QTSP_OK;
}

static qtsp_status src_cache_put(void *ctx, uint64_t gen, const unsigned char *key, size_t klen,
                                 const unsigned char *val, size_t vlen, int *stored)
{
    cache_put cp = {gen, key, val, klen, vlen, 0};
    *stored = 0;
    TRY(qtsp_store_write(ctx, cache_put_fn, &cp));
    *stored = cp.stored;
    return QTSP_OK;
}

void qtsp_ocsp_store_source(qtsp_store *st, qtsp_ocsp_source *out)
{
    *out = (qtsp_ocsp_source){.begin = src_begin,
                              .end = src_end,
                              .gen = src_gen,
                              .status = src_status,
                              .cache_get = src_cache_get,
                              .cache_put = src_cache_put,
                              .ctx = st};
}

qtsp_status qtsp_ocsp_new(const char *policy_path, X509 *issuer_ca, X509 *responder_cert,
                          const qtsp_key *responder_key, qtsp_store *store, qtsp_ocsp **out)
{
    ENSURE(store, QTSP_ERR_INVALID,
           "OCSP responder needs issuing CA, responder certificate, key and store");
    qtsp_ocsp_source src;
    qtsp_ocsp_store_source(store, &src);
    return qtsp_ocsp_new_source(policy_path, issuer_ca, responder_cert, responder_key, &src, out);
}
