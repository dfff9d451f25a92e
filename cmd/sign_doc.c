/* qtsp sign: signs a file with a remote-signing credential's key as CAdES,
 * PAdES or XAdES at a baseline level, or packs files and their CAdES or
 * XAdES signature into an ASiC-S or ASiC-E container, on the same builders
 * as signDoc (sign/ades.h),
 * with this home's TSA and OCSP cores in process. An operator's and the
 * tests' tool (the signer's own way is signDoc: docs/ades.md); --repeat
 * measures the builders (bench/docs). */
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca/audit.h"
#include "ca/certdb.h"
#include "ca/subkey.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/services.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/file.h"
#include "core/log.h"
#include "sign/ades.h"
#include "sign/archive.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("sign", "missing or wrong arguments (see qtsp sign --help)");
    fprintf(f,
            "usage: qtsp sign [--home DIR] --credential SERIAL --format C|P|X --level LEVEL\n"
            "                 [--attached] [--certification] [--packaging P] [--inclusive-c14n]\n"
            "                 [--container asic-s|asic-e] [--name NAME] [--repeat N]\n"
            "                 [--any-status] --in FILE [--in FILE ...] --out FILE\n\n"
            "Signs FILE with the key of the credential SERIAL (hex) as CAdES (C; detached,\n"
            "or enveloping with --attached), PAdES (P; --certification: a DocMDP\n"
            "certification signature) or XAdES (X; --packaging enveloped (the default for\n"
            "a .xml file), enveloping (the default otherwise, also --attached) or detached;\n"
            "exclusive C14N unless --inclusive-c14n) at LEVEL Ades-B-B, Ades-B-T,\n"
            "Ades-B-LT or Ades-B-LTA. --container asic-s (one --in) or asic-e (one or more)\n"
            "packs the files and a CAdES (C) or XAdES (X) signature over them into an ASiC\n"
            "container; the names in it are the files' base names.\n"
            "Time-stamps and OCSP answers come from this home's TSA and responder.\n"
            "--repeat N signs N times and prints the median and p90 time in ms.\n"
            "A held, revoked, expired or not yet valid certificate is refused;\n"
            "--any-status signs anyway (validation test files only; audited as\n"
            "document.sign.status_override).\n");
    return f == stdout ? 0 : 2;
}

/* Why the certificate may not sign now (held, revoked, expired, not yet
 * valid), or NULL when it may: a subscriber's key signs only while their
 * certificate is valid (EN 319 411-1), as signHash and signDoc check. */
static const char *status_refusal(const qtsp_cert_status *stored, time_t now)
{
    qtsp_cert_status st;
    qtsp_cert_status_effective(stored, now, &st);
    return st.state == QTSP_CERT_REVOKED   ? "revoked"
           : st.state == QTSP_CERT_ON_HOLD ? "on hold"
           : now > st.not_after            ? "expired"
           : now < st.not_before           ? "not valid yet"
                                           : NULL;
}

/* The credential's certificate and its signing key (qtsp_subkey_open).
 * Refused (QTSP_ERR_STATE) unless the certificate is valid now; with
 * any_status it signs anyway and the audit log records it first
 * ("document.sign.status_override": credential and status). */
static qtsp_status open_credential(qtsp_app *app, const char *serial_hex, int any_status,
                                   X509 **cert, qtsp_key **key, char owner[65])
{
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    TRY(qtsp_serial_from_hex(serial_hex, serial, &slen));
    qtsp_txn *txn = NULL;
    TRY(qtsp_store_begin(app->store, any_status, &txn)); /* writes only an override record */
    qtsp_cert_record rec;
    memset(&rec, 0, sizeof rec);
    qtsp_buf cred;
    qtsp_buf_init(&cred, 1 << 16);
    qtsp_cert_status st;
    qtsp_status rc = qtsp_certdb_get(txn, serial, slen, &rec);
    if (rc == QTSP_OK) /* the credential record names its signer (ra/ra.c) */
        rc = qtsp_txn_get(txn, QTSP_T_CREDENTIALS, serial_hex, strlen(serial_hex), &cred);
    if (rc == QTSP_OK)
        rc = qtsp_certdb_get_status(txn, serial, slen, &st);
    const char *refusal = rc == QTSP_OK ? status_refusal(&st, time(NULL)) : NULL;
    if (rc == QTSP_OK && refusal && !any_status)
        rc = qtsp_err_set(QTSP_ERR_STATE, __FILE__, __LINE__,
                          "credential %s: the certificate is %s (no signature with it)", serial_hex,
                          refusal);
    if (rc == QTSP_OK && refusal) { /* the override is on record before the key signs */
        json_t *d = json_pack("{s:s,s:s}", "credential", serial_hex, "status", refusal);
        rc = d ? qtsp_audit_append(txn, cmd_actor(), "document.sign.status_override", d, NULL)
               : qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
        json_decref(d);
        rc = rc == QTSP_OK ? qtsp_txn_commit(txn) : rc;
        txn = rc == QTSP_OK ? NULL : txn;
    }
    if (txn)
        qtsp_txn_abort(txn);
    /* a record is a version byte (1) and JSON (ra/ra.c) */
    json_t *cj = rc == QTSP_OK && cred.len > 1 && cred.data[0] == 1
                     ? json_loadb((const char *)cred.data + 1, cred.len - 1, 0, NULL)
                     : NULL;
    qtsp_buf_cleanup(&cred);
    const char *uid = json_string_value(json_object_get(cj, "user_id"));
    if (rc == QTSP_OK && (!uid || strlen(uid) > 64))
        rc = qtsp_err_set(QTSP_ERR_STORE_CORRUPT, __FILE__, __LINE__, "credential %s has no user",
                          serial_hex);
    if (rc == QTSP_OK)
        snprintf(owner, 65, "%s", uid);
    if (rc != QTSP_OK) {
        json_decref(cj);
        qtsp_cert_record_cleanup(&rec);
    }
    TRY(rc);
    const unsigned char *p = rec.der;
    X509 *x = d2i_X509(NULL, &p, (long)rec.der_len);
    ENSURE_OUT(x != NULL && strcmp(rec.issuer, "issuing") == 0 && rec.subject_id[0],
               QTSP_ERR_INVALID, "%s is not a subscriber's certificate", serial_hex);
    /* the credential's key: wrapped (binding checked in the token) or a
     * legacy token key (ca/subkey.h) */
    TRY_OUT(qtsp_subkey_open(app->hsm, cj, key));
    *cert = x;
    x = NULL;
out:
    X509_free(x);
    json_decref(cj);
    qtsp_cert_record_cleanup(&rec);
    return rc;
}

qtsp_status cmd_archive_open(qtsp_app *app, qtsp_archive **out)
{
    char pol[QTSP_PATH_MAX + 32], dir[QTSP_PATH_MAX + 32];
    TRY(qtsp_app_policy_or_shipped(app, "archive.yaml", pol, sizeof pol));
    snprintf(dir, sizeof dir, "%s/archive", app->cfg.home);
    return qtsp_archive_new(pol, dir, app->store, out);
}

struct cmd_ades_extras {
    STACK_OF(X509) * certs; /* the TSA unit's and the responder's (borrowed) */
    char crl_path[QTSP_PATH_MAX + 32];
    pthread_mutex_t lock;
    X509_CRL *crl; /* the file's CRL as last read; the fields below say which */
    struct timespec mtime;
    off_t size;
    ino_t ino;
};

qtsp_status cmd_ades_extras_new(qtsp_app *app, cmd_ades_extras **out)
{
    cmd_ades_extras *x = calloc(1, sizeof *x);
    ENSURE(x != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    pthread_mutex_init(&x->lock, NULL);
    x->certs = sk_X509_new_null();
    ENSURE_OUT(x->certs && sk_X509_push(x->certs, app->tsa) > 0 &&
                   sk_X509_push(x->certs, app->ocsp) > 0,
               QTSP_ERR_NOMEM, "out of memory");
    /* where the CRL publisher writes (ca/crl_publish.c: public/crl) */
    TRY_OUT(qtsp_config_path(&app->cfg, "public", x->crl_path, sizeof x->crl_path));
    ENSURE_OUT(strlen(x->crl_path) + sizeof "/crl/root.crl" <= sizeof x->crl_path, QTSP_ERR_CONFIG,
               "public folder path too long");
    strncat(x->crl_path, "/crl/root.crl", sizeof x->crl_path - strlen(x->crl_path) - 1);
    *out = x;
    x = NULL;
out:
    cmd_ades_extras_free(x);
    return rc;
}

/* sign/ades.h crls_now: the root's CRL as the file holds it now, read again
 * when the file changed (inode, size or mtime: the publisher renames a new
 * file into place); none while there is no file. A file that does not
 * parse keeps the last good CRL and is logged. */
static qtsp_status extras_crls_now(void *ctx, STACK_OF(X509_CRL) * *out)
{
    cmd_ades_extras *x = ctx;
    STACK_OF(X509_CRL) *c = sk_X509_CRL_new_null();
    ENSURE(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    struct stat st;
    int have = stat(x->crl_path, &st) == 0;
    pthread_mutex_lock(&x->lock);
    if (have && (!x->crl || st.st_ino != x->ino || st.st_size != x->size ||
                 st.st_mtim.tv_sec != x->mtime.tv_sec || st.st_mtim.tv_nsec != x->mtime.tv_nsec)) {
        unsigned char *der = NULL;
        size_t len = 0;
        X509_CRL *crl = NULL;
        if (qtsp_file_read(x->crl_path, (size_t)16 << 20, &der, &len) == QTSP_OK) {
            const unsigned char *p = der;
            crl = d2i_X509_CRL(NULL, &p, (long)len);
            if (crl && p != der + len) {
                X509_CRL_free(crl);
                crl = NULL;
            }
        }
        free(der);
        if (crl) {
            X509_CRL_free(x->crl);
            x->crl = crl;
            x->ino = st.st_ino;
            x->size = st.st_size;
            x->mtime = st.st_mtim;
        } else {
            LOG_WARN("ades: %s does not hold a CRL; the last one read is embedded", x->crl_path);
        }
    }
    int ok = 1;
    if (x->crl) {
        ok = X509_CRL_up_ref(x->crl);
        if (ok && sk_X509_CRL_push(c, x->crl) <= 0) {
            X509_CRL_free(x->crl);
            ok = 0;
        }
    }
    pthread_mutex_unlock(&x->lock);
    if (!ok) {
        sk_X509_CRL_pop_free(c, X509_CRL_free);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return QTSP_OK;
}

void cmd_ades_extras_apply(cmd_ades_extras *x, qtsp_ades_services *sv)
{
    sv->extra_certs = x->certs;
    sv->crls = NULL;
    sv->crls_now = extras_crls_now;
    sv->crls_ctx = x;
}

void cmd_ades_extras_free(cmd_ades_extras *x)
{
    if (!x)
        return;
    sk_X509_free(x->certs);
    X509_CRL_free(x->crl);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_sign_doc(int argc, char **argv)
{
    const char *home = cmd_default_home(), *cred = NULL, *format = NULL, *level_s = NULL;
    const char *in = NULL, *outp = NULL, *repeat_s = "1", *name = NULL, *packaging = NULL;
    const char *container = NULL, *ins[QTSP_ASIC_MAX_FILES];
    int attached = 0, certification = 0, inclusive = 0, any_status = 0, n_in = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--attached") == 0) {
            attached = 1;
            continue;
        }
        if (strcmp(argv[i], "--certification") == 0) {
            certification = 1;
            continue;
        }
        if (strcmp(argv[i], "--inclusive-c14n") == 0) {
            inclusive = 1;
            continue;
        }
        if (strcmp(argv[i], "--any-status") == 0) {
            any_status = 1;
            continue;
        }
        if (cmd_opt(argc, argv, &i, "--in", &in)) {
            if (n_in == QTSP_ASIC_MAX_FILES)
                return cmd_usage_error("sign", "too many --in files");
            ins[n_in++] = in;
            continue;
        }
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--credential", &cred) ||
            cmd_opt(argc, argv, &i, "--format", &format) ||
            cmd_opt(argc, argv, &i, "--level", &level_s) ||
            cmd_opt(argc, argv, &i, "--packaging", &packaging) ||
            cmd_opt(argc, argv, &i, "--container", &container) ||
            cmd_opt(argc, argv, &i, "--out", &outp) ||
            cmd_opt(argc, argv, &i, "--repeat", &repeat_s) ||
            cmd_opt(argc, argv, &i, "--name", &name))
            continue;
        return usage(stderr);
    }
    if (!cred || !format || !level_s || !in || !outp)
        return usage(stderr);
    int pades = strcmp(format, "P") == 0, xades = strcmp(format, "X") == 0;
    if (!pades && !xades && strcmp(format, "C") != 0)
        return cmd_usage_error("sign", "--format is C (CAdES), P (PAdES) or X (XAdES)");
    qtsp_asic_form form = 0;
    if (container && strcmp(container, "asic-s") == 0)
        form = QTSP_ASIC_S;
    else if (container && strcmp(container, "asic-e") == 0)
        form = QTSP_ASIC_E;
    else if (container)
        return cmd_usage_error("sign", "--container is asic-s or asic-e");
    if (form && pades)
        return cmd_usage_error("sign", "an ASiC container holds CAdES (C) or XAdES (X)");
    if (n_in > 1 && form != QTSP_ASIC_E)
        return cmd_usage_error("sign", "several --in files go into an asic-e container");
    qtsp_xades_packaging pk = attached ? QTSP_XADES_ENVELOPING
                              : strcmp(qtsp_ades_mime_of(in), "text/xml") == 0
                                  ? QTSP_XADES_ENVELOPED
                                  : QTSP_XADES_ENVELOPING;
    if (packaging && strcmp(packaging, "enveloped") == 0)
        pk = QTSP_XADES_ENVELOPED;
    else if (packaging && strcmp(packaging, "enveloping") == 0)
        pk = QTSP_XADES_ENVELOPING;
    else if (packaging && strcmp(packaging, "detached") == 0)
        pk = QTSP_XADES_DETACHED;
    else if (packaging)
        return cmd_usage_error("sign", "--packaging is enveloped, enveloping or detached");
    if (packaging && !xades)
        return cmd_usage_error("sign", "--packaging is for XAdES (--format X)");
    long repeat = strtol(repeat_s, NULL, 10);
    if (repeat < 1 || repeat > 100000)
        return cmd_usage_error("sign", "--repeat 1..100000");
    qtsp_err_clear();
    qtsp_ades_level level;
    if (qtsp_ades_level_parse(level_s, &level) != QTSP_OK)
        return cmd_usage_error("sign", qtsp_err_what());
    qtsp_log_set_level(QTSP_LOG_WARN);

    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("sign");
    qtsp_status rc = QTSP_OK;
    unsigned char *doc = NULL, *docs[QTSP_ASIC_MAX_FILES] = {0};
    size_t len = 0;
    qtsp_xades_object objs[QTSP_ASIC_MAX_FILES];
    X509 *cert = NULL;
    qtsp_key *key = NULL;
    qtsp_tsa *tsa = NULL;
    qtsp_ocsp *ocsp = NULL;
    qtsp_archive *archive = NULL;
    double *ms = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *tsa_chain = NULL;
    cmd_ades_extras *extras = NULL;
    qtsp_buf out;
    qtsp_buf_init(&out, 2 * QTSP_ADES_MAX_DOC + ((size_t)1 << 20));
    ENSURE_OUT(chain && sk_X509_push(chain, app.issuing) > 0 && sk_X509_push(chain, app.root) > 0,
               QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(cmd_ades_extras_new(&app, &extras));
    for (int i = 0; i < n_in; i++) {
        TRY_OUT(qtsp_file_read(ins[i], QTSP_ADES_MAX_DOC, &docs[i], &objs[i].len));
        objs[i].data = docs[i];
        objs[i].uri = n_in == 1 && name ? name : base_name(ins[i]);
        objs[i].mime = qtsp_ades_mime_of(objs[i].uri);
    }
    doc = docs[0];
    len = objs[0].len;
    char owner[65];
    TRY_OUT(open_credential(&app, cred, any_status, &cert, &key, owner));

    char pol[QTSP_PATH_MAX + 32];
    tsa_chain = sk_X509_new_null();
    ENSURE_OUT(tsa_chain && sk_X509_push(tsa_chain, app.root) > 0, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(qtsp_app_policy(&app, "tsa.yaml", pol, sizeof pol));
    TRY_OUT(qtsp_tsa_new(pol, app.tsa, tsa_chain, app.tsa_key, app.store, &tsa));
    TRY_OUT(qtsp_app_policy(&app, "ocsp.yaml", pol, sizeof pol));
    TRY_OUT(qtsp_ocsp_new(pol, app.issuing, app.ocsp, app.ocsp_key, app.store, &ocsp));
    qtsp_ades_services sv = {.tsa = tsa, .ocsp = ocsp, .ocsp_ca = app.issuing};
    cmd_ades_extras_apply(extras, &sv);
    qtsp_ades_signer sg = {key, cert, chain, {0}};
    TRY_OUT(qtsp_key_sigalg(key, NULL, &sg.alg));
    ms = calloc((size_t)repeat, sizeof *ms);
    ENSURE_OUT(ms != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (long i = 0; i < repeat; i++) {
        qtsp_buf_reset(&out);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int64_t now = (int64_t)time(NULL);
        if (form) {
            qtsp_asic_opts ao = {form, xades ? QTSP_ASIC_XADES : QTSP_ASIC_CADES, level, now};
            TRY_OUT(qtsp_asic_sign(&sv, &sg, &ao, objs, (size_t)n_in, &out));
        } else if (xades) {
            qtsp_xades_opts xo = {level, pk, now, inclusive, 0};
            TRY_OUT(qtsp_xades_sign(&sv, &sg, &xo, objs, 1, &out));
        } else if (pades) {
            qtsp_pades_opts po = {level, certification, now};
            TRY_OUT(qtsp_pades_sign(&sv, &sg, &po, doc, len, &out));
        } else {
            qtsp_cades_opts co = {level, attached, now, NULL};
            TRY_OUT(qtsp_cades_sign(&sv, &sg, &co, doc, len, &out));
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    TRY_OUT(cmd_write_file(outp, out.data, out.len, 0644));
    /* every signed document is archived (docs/ades.md) */
    char id[QTSP_ARCHIVE_ID_LEN + 1];
    TRY_OUT(cmd_archive_open(&app, &archive));
    char fmt[32];
    snprintf(fmt, sizeof fmt, "%s%s",
             form == QTSP_ASIC_S ? "ASiC-S "
             : form              ? "ASiC-E "
                                 : "",
             pades   ? "PAdES"
             : xades ? "XAdES"
                     : "CAdES");
    qtsp_archive_doc ad = {owner,
                           name ? name : base_name(ins[0]),
                           fmt,
                           qtsp_ades_level_name(level),
                           out.data,
                           out.len,
                           (int64_t)time(NULL)};
    TRY_OUT(qtsp_archive_put(archive, cmd_actor(), &ad, id));
    printf("{\"document_id\":\"%s\"}\n", id);
    if (repeat > 1) {
        qsort(ms, (size_t)repeat, sizeof *ms, cmp_double);
        printf("format=%s level=%s size=%zu n=%ld median_ms=%.2f p90_ms=%.2f\n",
               form == QTSP_ASIC_S ? (xades ? "ASiC-S-XAdES" : "ASiC-S-CAdES")
               : form              ? (xades ? "ASiC-E-XAdES" : "ASiC-E-CAdES")
               : pades             ? "PAdES"
               : xades             ? "XAdES"
                                   : "CAdES",
               qtsp_ades_level_name(level), len, repeat, ms[repeat / 2], ms[(repeat * 9) / 10]);
    }
out:
    free(ms);
    for (int i = 0; i < n_in; i++)
        free(docs[i]);
    qtsp_buf_cleanup(&out);
    qtsp_tsa_free(tsa);
    qtsp_ocsp_free(ocsp);
    qtsp_archive_free(archive);
    qtsp_key_free(key);
    X509_free(cert);
    sk_X509_free(chain);
    sk_X509_free(tsa_chain);
    cmd_ades_extras_free(extras);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("sign");
}
