/* The TSA wired to its policy file and to a journal in a qtsp_store
 * (QTSP_T_TSA_JOURNAL): the only tsa/ file that knows the store, so the
 * core (tsa.c) and the parser link without it (the fuzzer). */
#include "ca/store.h"
#include "tsa/tsa_int.h"

typedef struct put_args {
    const qtsp_tsa_record *recs;
    size_t n;
    int replace;
} put_args;

static qtsp_status put_txn(qtsp_txn *txn, void *ctx)
{
    const put_args *a = ctx;
    for (size_t i = 0; i < a->n; i++)
        TRY(qtsp_txn_put(txn, QTSP_T_TSA_JOURNAL, a->recs[i].key, a->recs[i].key_len,
                         a->recs[i].val, a->recs[i].val_len,
                         a->replace ? 0 : QTSP_PUT_NOOVERWRITE));
    return QTSP_OK;
}

/* qtsp_tsa_journal.put over a qtsp_store: one write transaction (one
 * durable commit). */
static qtsp_status store_put(void *ctx, const qtsp_tsa_record *recs, size_t n, int replace)
{
    put_args a = {recs, n, replace};
    return qtsp_store_write(ctx, put_txn, &a);
}

qtsp_status qtsp_tsa_new_policy(const qtsp_tsa_policy *pol, X509 *tsa_cert, STACK_OF(X509) * chain,
                                const qtsp_key *key, qtsp_store *store, qtsp_tsa **out)
{
    qtsp_tsa_journal j = {store ? store_put : NULL, store};
    return qtsp_tsa_new_journal(pol, tsa_cert, chain, key, &j, out);
}

qtsp_status qtsp_tsa_new(const char *policy_path, X509 *tsa_cert, STACK_OF(X509) * chain,
                         const qtsp_key *key, qtsp_store *store, qtsp_tsa **out)
{
    qtsp_tsa_policy pol;
    TRY(qtsp_tsa_policy_load(policy_path, &pol));
    return qtsp_tsa_new_policy(&pol, tsa_cert, chain, key, store, out);
}
