/* The validator's surroundings in a home: its trust anchors
 * (policies/trust.yaml) and our own status store as its revocation source
 * for the certificates we issued. */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/yaml.h"
#include "sign/validate.h"

static qtsp_status load_pem(const qtsp_ynode *at, const char *file, const char *home, X509 **out)
{
    char path[4096];
    int n = file[0] == '/' ? snprintf(path, sizeof path, "%s", file)
                           : snprintf(path, sizeof path, "%s/%s", home, file);
    ENSURE(n > 0 && (size_t)n < sizeof path, QTSP_ERR_TOO_BIG, "path too long: %s", file);
    FILE *f = fopen(path, "r");
    if (!f)
        return at ? qtsp_ynode_fail(at, "file", "cannot open %s", path)
                  : qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot open %s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (!x)
        return at ? qtsp_ynode_fail(at, "file", "%s holds no PEM certificate", path)
                  : qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__,
                                 "%s holds no PEM certificate", path);
    *out = x;
    return QTSP_OK;
}

qtsp_status qtsp_validate_load_trust(const char *path, const char *home, qtsp_validate_anchor *out,
                                     size_t cap, size_t *n)
{
    ENSURE(cap > 0, QTSP_ERR_TOO_BIG, "no room for trust anchors");
    if (access(path, F_OK) != 0) {
        TRY(load_pem(NULL, "public/root-ca.crt", home, &out[0].cert));
        out[0].revocation_checked = 1;
        *n = 1;
        return QTSP_OK;
    }
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    size_t k = 0;
    static const char *const top[] = {"anchors", NULL};
    static const char *const item[] = {"file", "revocation", NULL};
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    TRY_OUT(qtsp_ynode_check_keys(root, top));
    const qtsp_ynode *a = qtsp_ynode_get(root, "anchors");
    if (!a || qtsp_ynode_kind(a) != QTSP_Y_SEQ || qtsp_ynode_count(a) == 0)
        TRY_OUT(qtsp_ynode_fail(a ? a : root, "anchors", "a list of one or more anchors"));
    for (size_t i = 0; i < qtsp_ynode_count(a); i++) {
        const qtsp_ynode *it = qtsp_ynode_item(a, i);
        const char *file = NULL, *rev = "required";
        TRY_OUT(qtsp_ynode_check_keys(it, item));
        TRY_OUT(qtsp_yget_str(it, "file", 1, &file));
        TRY_OUT(qtsp_yget_str(it, "revocation", 0, &rev));
        if (strcmp(rev, "required") != 0 && strcmp(rev, "none") != 0)
            TRY_OUT(qtsp_ynode_fail(qtsp_ynode_get(it, "revocation"), "revocation",
                                    "required or none"));
        ENSURE_OUT(k < cap, QTSP_ERR_TOO_BIG, "%s: more than %zu trust anchors", path, cap);
        TRY_OUT(load_pem(it, file, home, &out[k].cert));
        out[k].revocation_checked = strcmp(rev, "required") == 0;
        k++;
    }
    *n = k;
out:
    if (rc != QTSP_OK)
        while (k > 0)
            X509_free(out[--k].cert);
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status qtsp_validate_store_status(void *ctx, X509 *cert, X509 *issuer, qtsp_cert_status *out)
{
    const qtsp_validate_store *s = ctx;
    int by_root = s && s->root && X509_cmp(issuer, s->root) == 0;
    if (!s || !s->store || !s->issuing || (!by_root && X509_cmp(issuer, s->issuing) != 0))
        FAIL(QTSP_ERR_NOT_FOUND, "not issued by our issuing CA");
    unsigned char serial[QTSP_SERIAL_MAX + 1];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    int sl = bn && !BN_is_negative(bn) && BN_num_bytes(bn) <= QTSP_SERIAL_MAX
                 ? BN_bn2bin(bn, serial)
                 : -1;
    BN_free(bn);
    ENSURE(sl > 0, QTSP_ERR_NOT_FOUND, "serial is not one we issue");
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(s->store, 0, &txn));
    char iss[QTSP_CERT_ISSUER_MAX];
    qtsp_status rc = qtsp_certdb_get_issuer(txn, serial, (size_t)sl, iss);
    if (rc == QTSP_OK && strcmp(iss, by_root ? "root" : "issuing") != 0)
        rc = qtsp_err_set(QTSP_ERR_NOT_FOUND, __FILE__, __LINE__, "not issued by our %s",
                          by_root ? "root" : "issuing CA");
    if (rc == QTSP_OK)
        rc = qtsp_certdb_get_status(txn, serial, (size_t)sl, out);
    qtsp_txn_abort(txn);
    return rc;
}
