/* qtsp rekey ocsp|tsa|validation: a new key pair in the token for the
 * delegated OCSP responder, the TSA unit or the validation service (the
 * signer of validation reports), certified with its profile, recorded in
 * the store and the audit log, and made the one qtsp.yaml names. The
 * responder certificate lives one year and the TSU's a few: this is how
 * they are renewed without a new ceremony. The old key stays in the token
 * (nothing signs with it any more) and its certificate is kept under
 * public/archive/. A home made before the validation service has no key for
 * it: `qtsp rekey validation` makes its first one (the migration step).
 * A running server picks the new key up when restarted. */
#include <errno.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/issue.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("rekey", "missing or wrong arguments (see qtsp rekey --help)");
    fprintf(f, "usage: qtsp rekey ocsp|tsa|validation [--home DIR]\n\n"
               "Generates a new key in the token for the OCSP responder (certified by the\n"
               "issuing CA), the TSA unit or the validation service (certified by the root),\n"
               "records it in the store and the audit log, writes public/ocsp.crt,\n"
               "public/tsa.crt or public/validation.crt (the old one goes to public/archive/)\n"
               "and updates qtsp.yaml. On a home made before the validation service,\n"
               "`qtsp rekey validation` makes its first key. Restart qtsp serve afterwards.\n");
    return 0;
}

typedef struct rekey_ctx {
    qtsp_cert_record rec;
    const char *actor;
    const json_t *details;
} rekey_ctx;

/* the root CRL covers a new TSU certificate too (qtsp_issue_record) */
static qtsp_status rekey_txn(qtsp_txn *txn, void *vctx)
{
    rekey_ctx *c = vctx;
    return qtsp_issue_record(txn, &c->rec, 1, c->actor, "key.rekey", c->details);
}

int cmd_rekey(int argc, char **argv)
{
    const char *home = cmd_default_home(), *what = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        if (argv[i][0] == '-' || what)
            return usage(stderr);
        what = argv[i];
    }
    if (!what ||
        (strcmp(what, "ocsp") != 0 && strcmp(what, "tsa") != 0 && strcmp(what, "validation") != 0))
        return usage(stderr);
    int tsa = strcmp(what, "tsa") == 0, val = strcmp(what, "validation") == 0;
    int by_root = tsa || val;
    qtsp_err_clear();
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("rekey");
    qtsp_status rc = QTSP_OK;
    qtsp_profile *prof = NULL;
    qtsp_issued_key made;
    memset(&made, 0, sizeof made);
    unsigned char *der = NULL;
    json_t *details = NULL;
    int key_made = 0;
    char *cfg_label = tsa ? app.cfg.key_tsa : val ? app.cfg.key_validation : app.cfg.key_ocsp;
    char old_label[64], label[64], path[QTSP_PATH_MAX + 64], hex[41];
    snprintf(old_label, sizeof old_label, "%s", cfg_label);
    /* qtsp-ocsp, qtsp-ocsp-<t> -> qtsp-ocsp-<now> */
    char base[64];
    snprintf(base, sizeof base, "%s", old_label);
    char *dash = strrchr(base, '-');
    if (dash && strspn(dash + 1, "0123456789") == strlen(dash + 1) && dash[1])
        *dash = '\0';
    int ln = snprintf(label, sizeof label, "%s-%lld", base, (long long)qtsp_now());
    ENSURE_OUT(ln > 0 && (size_t)ln < sizeof label, QTSP_ERR_TOO_BIG,
               "key label %s leaves no room for a -<time> suffix", base);

    /* the validation profile is shipped: a home made before has none */
    TRY_OUT(qtsp_app_policy_or_shipped(&app,
                                       tsa   ? "tsa-unit.yaml"
                                       : val ? "validation-service.yaml"
                                             : "ocsp-responder.yaml",
                                       path, sizeof path));
    TRY_OUT(qtsp_profile_load(path, &prof));
    TRY_OUT(qtsp_issue_token_key(app.hsm, prof, label, by_root ? app.root : app.issuing,
                                 by_root ? app.root_key : app.issuing_key, app.cfg.base_url,
                                 &made));
    key_made = 1;
    X509 *cert = made.cert;
    const char *fp = made.fingerprint;
    int dl = i2d_X509(cert, &der);
    ENSURE_OUT(dl > 0, QTSP_ERR_CRYPTO, "cannot encode the certificate");
    qtsp_serial_to_hex(made.serial, sizeof made.serial, hex);

    X509 *had = tsa ? app.tsa : val ? app.validation : app.ocsp;
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", what, "old_label",
                          had ? old_label : "(none: the first key)", "new_label", label,
                          "spki_sha256", fp, "certificate_serial", hex);
    ENSURE_OUT(d != NULL, QTSP_ERR_NOMEM, "out of memory");
    details = d;
    rekey_ctx c;
    memset(&c, 0, sizeof c);
    memcpy(c.rec.serial, made.serial, sizeof made.serial);
    c.rec.serial_len = sizeof made.serial;
    snprintf(c.rec.issuer, sizeof c.rec.issuer, "%s", by_root ? "root" : "issuing");
    snprintf(c.rec.key_label, sizeof c.rec.key_label, "%s", label);
    snprintf(c.rec.profile, sizeof c.rec.profile, "%s", qtsp_profile_name(prof));
    c.rec.der = der;
    c.rec.der_len = (size_t)dl;
    c.actor = cmd_actor();
    c.details = details;
    TRY_OUT(qtsp_store_write(app.store, rekey_txn, &c));
    key_made = 0; /* recorded: from here on the key belongs to the service */

    /* public/<role>.crt -> public/archive/<role>-<old serial>.crt, then the new one */
    X509 *old = tsa ? app.tsa : val ? app.validation : app.ocsp; /* NULL: a first key */
    if (old) {
        char oldhex[41];
        const ASN1_INTEGER *osn = X509_get0_serialNumber(old);
        unsigned char norm[QTSP_SERIAL_MAX];
        size_t nl = 0;
        TRY_OUT(qtsp_serial_normalize(osn->data, (size_t)osn->length, norm, &nl));
        qtsp_serial_to_hex(norm, nl, oldhex);
        snprintf(path, sizeof path, "%s/public/archive", app.cfg.home);
        ENSURE_OUT(mkdir(path, 0755) == 0 || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s",
                   path, strerror(errno));
        snprintf(path, sizeof path, "%s/public/archive/%s-%s.crt", app.cfg.home, what, oldhex);
        TRY_OUT(cmd_write_pem(path, &old, 1));
    }
    snprintf(path, sizeof path, "%s/public/%s.crt", app.cfg.home, what);
    TRY_OUT(cmd_write_pem(path, &cert, 1));
    snprintf(cfg_label, 64, "%s", label);
    rc = qtsp_config_save(&app.cfg);
    if (rc != QTSP_OK) {
        /* qtsp.yaml still names the old key: put its certificate back so the
         * home stays consistent (serve checks certificate against key) */
        if (old ? cmd_write_pem(path, &old, 1) != QTSP_OK : unlink(path) != 0)
            fprintf(stderr, "qtsp: rekey: warning: restore %s from public/archive/\n", path);
        goto out;
    }
    printf("rekeyed %s: key %s (SPKI SHA-256 %s), certificate serial %s; restart qtsp serve to "
           "use it\n",
           what, label, fp, hex);
out:
    if (key_made && qtsp_hsm_destroy(app.hsm, label) != QTSP_OK)
        fprintf(stderr, "qtsp: rekey: warning: the new key %s could not be removed\n", label);
    json_decref(details);
    OPENSSL_free(der);
    qtsp_issued_key_cleanup(&made);
    qtsp_profile_free(prof);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("rekey");
}
