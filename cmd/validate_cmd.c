/* qtsp validate: the validation service's report (sign/validate.h) for a
 * file on disk, as POST /api/v1/validate gives it; and the validator of a
 * home that serve's route uses too. --repeat measures (bench/validate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/services.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("validate", "missing or wrong arguments (see qtsp validate --help)");
    fprintf(f, "usage: qtsp validate [--home DIR] FILE [--content FILE] [--report json|xml]\n"
               "                     [--repeat N]\n\n"
               "Validates the signatures of FILE (PAdES: a PDF; CAdES: a CMS signature, DER or\n"
               "PEM, with --content for a detached one) against the home's trust anchors\n"
               "(policies/trust.yaml) and prints the JSON report POST /api/v1/validate gives\n"
               "(--report xml: as XML in the style of ETSI TS 119 102-2).\n"
               "Exit 0 when the report was made, whatever it says.\n"
               "--repeat N validates N times and prints validations per second on stderr.\n");
    return f == stdout ? 0 : 2;
}

qtsp_status cmd_validator_open(qtsp_app *app, qtsp_validate_store *st, qtsp_validator **out)
{
    qtsp_validate_anchor anchors[QTSP_VALIDATE_MAX_ANCHORS];
    size_t n = 0;
    char pol[QTSP_PATH_MAX + 32];
    TRY(qtsp_app_policy(app, "trust.yaml", pol, sizeof pol));
    TRY(qtsp_validate_load_trust(pol, app->cfg.home, anchors, QTSP_VALIDATE_MAX_ANCHORS, &n));
    qtsp_status rc = QTSP_OK;
    /* our issuing CA, TSA unit and OCSP responder help build chains; the
     * root is there for the status hook (what it issued), trusted only if
     * trust.yaml lists it */
    static const char *const names[] = {"issuing-ca.crt", "tsa.crt", "ocsp.crt", "root-ca.crt"};
    X509 *x[4] = {NULL, NULL, NULL, NULL};
    STACK_OF(X509) *inter = sk_X509_new_null();
    ENSURE_OUT(inter != NULL, QTSP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < 4; i++) {
        TRY_OUT(qtsp_app_load_cert(app, names[i], &x[i]));
        ENSURE_OUT(sk_X509_push(inter, x[i]) > 0, QTSP_ERR_NOMEM, "out of memory");
    }
    st->store = app->store;
    st->issuing = x[0];
    qtsp_validator_opts o = {anchors, n, inter, qtsp_validate_store_status, st};
    TRY_OUT(qtsp_validator_new(&o, out));
out:
    sk_X509_free(inter);
    for (size_t i = 0; i < 4; i++)
        X509_free(x[i]); /* the validator holds its own references */
    for (size_t i = 0; i < n; i++)
        X509_free(anchors[i].cert);
    if (rc == QTSP_OK) { /* the validator's copies among its intermediates */
        st->issuing = sk_X509_value(qtsp_validator_intermediates(*out), 0);
        st->root = sk_X509_value(qtsp_validator_intermediates(*out), 3);
    }
    return rc;
}

int cmd_validate(int argc, char **argv)
{
    const char *home = cmd_default_home(), *file = NULL, *content = NULL, *repeat_s = "1";
    const char *form = "json";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--content", &content) ||
            cmd_opt(argc, argv, &i, "--repeat", &repeat_s) ||
            cmd_opt(argc, argv, &i, "--report", &form))
            continue;
        if (argv[i][0] == '-' || file)
            return usage(stderr);
        file = argv[i];
    }
    if (!file)
        return usage(stderr);
    int xml = strcmp(form, "xml") == 0;
    if (!xml && strcmp(form, "json") != 0)
        return cmd_usage_error("validate", "--report json or xml");
    long repeat = strtol(repeat_s, NULL, 10);
    if (repeat < 1 || repeat > 1000000)
        return cmd_usage_error("validate", "--repeat 1..1000000");
    qtsp_log_set_level(QTSP_LOG_WARN);
    qtsp_err_clear();
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE, &app) != QTSP_OK)
        return cmd_fail("validate");
    qtsp_status rc = QTSP_OK;
    unsigned char *doc = NULL, *det = NULL;
    size_t len = 0, dlen = 0;
    qtsp_validator *v = NULL;
    qtsp_validate_store st;
    json_t *report = NULL;
    TRY_OUT(qtsp_file_read(file, QTSP_VALIDATE_MAX_FILE, &doc, &len));
    if (content)
        TRY_OUT(qtsp_file_read(content, QTSP_VALIDATE_MAX_FILE, &det, &dlen));
    TRY_OUT(cmd_validator_open(&app, &st, &v));
    uint64_t t0 = qtsp_mono_ns();
    for (long i = 0; i < repeat; i++) {
        json_decref(report);
        report = NULL;
        TRY_OUT(qtsp_validate(v, doc, len, det, dlen, (int64_t)qtsp_now(), &report));
    }
    double s = (double)(qtsp_mono_ns() - t0) / 1e9;
    if (repeat > 1)
        fprintf(stderr, "validations=%ld seconds=%.3f per_second=%.1f\n", repeat, s,
                s > 0 ? (double)repeat / s : 0.0);
    if (xml) {
        qtsp_buf text;
        qtsp_buf_init(&text, QTSP_VALIDATE_MAX_FILE);
        rc = qtsp_validate_report_xml(report, &text);
        if (rc == QTSP_OK && fwrite(text.data, 1, text.len, stdout) != text.len)
            rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot write the report");
        qtsp_buf_cleanup(&text);
        TRY_OUT(rc);
    } else {
        TRY_OUT(cmd_print_json(report));
        report = NULL;
    }
out:
    json_decref(report);
    free(doc);
    free(det);
    qtsp_validator_free(v);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("validate");
}
