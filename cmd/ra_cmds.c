/* RA verbs for office staff and operators: subject add, issue, status, hold,
 * release, terminate, hotline-hold. They call the same RA functions as the
 * HTTP API (same rules, same audit), acting as the CLI user — or as an
 * operator when an operator token is given (then that operator's role applies). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"
#include "ra/ra.h"

typedef struct ra_cli {
    qtsp_app app;
    qtsp_ra *ra;
    qtsp_notify *notify;
    qtsp_actor who;
    char policies[QTSP_PATH_MAX], secrets[QTSP_PATH_MAX];
} ra_cli;

static qtsp_status ra_cli_open(const char *home, const char *token, ra_cli *c)
{
    memset(c, 0, sizeof *c);
    TRY(qtsp_app_open(home, APP_STORE | APP_KEYS, &c->app));
    qtsp_status rc = QTSP_OK;
    TRY_OUT(qtsp_config_path(&c->app.cfg, "policies", c->policies, sizeof c->policies));
    TRY_OUT(qtsp_config_path(&c->app.cfg, "secrets", c->secrets, sizeof c->secrets));
    /* CLI changes tell the webhook too; qtsp_notify_free gives deliveries a
     * short grace before the process exits (docs/notify.md) */
    char notify_policy[QTSP_PATH_MAX + 16];
    snprintf(notify_policy, sizeof notify_policy, "%s/notify.yaml", c->policies);
    TRY_OUT(qtsp_notify_new(notify_policy, c->secrets, &c->notify));
    TRY_OUT(qtsp_notify_start(c->notify));
    qtsp_ra_deps d = {c->app.store, c->app.hsm, c->app.issuing,      c->app.issuing_key,
                      c->policies,  c->secrets, c->app.cfg.base_url, c->notify};
    TRY_OUT(qtsp_ra_new(&d, &c->ra));
    if (token) {
        qtsp_operator op;
        TRY_OUT(qtsp_operator_auth(c->app.store, token, &op));
        qtsp_actor_from_operator(&op, &c->who);
    } else {
        qtsp_actor_all_roles(cmd_actor(), &c->who);
    }
out:
    if (rc != QTSP_OK) {
        qtsp_ra_free(c->ra);
        qtsp_notify_free(c->notify);
        qtsp_app_close(&c->app);
    }
    return rc;
}

static void ra_cli_close(ra_cli *c)
{
    qtsp_ra_free(c->ra);
    qtsp_notify_free(c->notify);
    qtsp_app_close(&c->app);
}

static int usage(FILE *f, const char *verb)
{
    if (f != stdout) {
        fprintf(stderr, "qtsp: %s: missing or wrong arguments (see qtsp %s --help)\n", verb, verb);
        return 2;
    }
    fprintf(f, "usage:\n"
               "  qtsp status    [--home DIR] SERIAL\n"
               "  qtsp hold      [--home DIR] [--token-file F] SERIAL --verification TEXT\n"
               "  qtsp release   [--home DIR] [--token-file F] SERIAL\n"
               "  qtsp terminate [--home DIR] [--token-file F] SERIAL --reason REASON "
               "--identity-check TEXT\n"
               "  qtsp subject   add [--home DIR] [--token-file F] --json FILE|-\n"
               "  qtsp issue     [--home DIR] [--token-file F] SUBJECT_ID\n\n"
               "Same rules and audit as the RA API. By default the CLI user acts (audited as\n"
               "cli:USER@HOST); with an operator token (--token-file F, '-' for stdin, or\n"
               "$QTSP_OPERATOR_TOKEN) that operator acts and its role applies.\n"
               "REASON: keyCompromise, affiliationChanged, superseded, cessationOfOperation,\n"
               "privilegeWithdrawn. Output: one JSON line.\n");
    return f == stdout ? 0 : 2;
}

static qtsp_status read_all(const char *path, qtsp_buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot read %s", path);
    char chunk[4096];
    size_t n;
    qtsp_status rc = QTSP_OK;
    while (rc == QTSP_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = qtsp_buf_append(b, chunk, n);
    if (f != stdin)
        fclose(f);
    return rc;
}

int cmd_ra(int argc, char **argv)
{
    const char *verb = argv[0];
    const char *home = cmd_default_home(), *token_file = NULL, *verification = NULL;
    const char *reason = NULL;
    const char *check = NULL, *json_path = NULL, *arg = NULL;
    int start = 1;
    if (strcmp(verb, "subject") == 0) {
        if (argc < 2 || strcmp(argv[1], "add") != 0)
            return usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr, verb);
        start = 2;
    }
    for (int i = start; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout, verb);
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--token-file", &token_file) ||
            cmd_opt(argc, argv, &i, "--verification", &verification) ||
            cmd_opt(argc, argv, &i, "--reason", &reason) ||
            cmd_opt(argc, argv, &i, "--identity-check", &check) ||
            cmd_opt(argc, argv, &i, "--json", &json_path))
            continue;
        if (argv[i][0] == '-' || arg) {
            fprintf(stderr, "qtsp: %s: unexpected argument %s (see qtsp %s --help)\n", verb,
                    argv[i], verb);
            return 2;
        }
        arg = argv[i];
    }
    int is_subject = strcmp(verb, "subject") == 0;
    if (is_subject ? !json_path : !arg)
        return usage(stderr, verb);
    qtsp_err_clear();
    unsigned char serial[QTSP_SERIAL_MAX];
    size_t slen = 0;
    int wants_serial = !is_subject && strcmp(verb, "issue") != 0;
    if (wants_serial && qtsp_serial_from_hex(arg, serial, &slen) != QTSP_OK)
        return cmd_fail(verb);

    /* an operator token never on the command line (ps, shell history) */
    char token[256] = "";
    const char *env_tok = getenv("QTSP_OPERATOR_TOKEN");
    if (token_file) {
        FILE *tf = strcmp(token_file, "-") == 0 ? stdin : fopen(token_file, "r");
        if (!tf || !fgets(token, sizeof token, tf)) {
            if (tf && tf != stdin)
                fclose(tf);
            return cmd_usage_error(verb, "cannot read the operator token from --token-file");
        }
        if (tf != stdin)
            fclose(tf);
        token[strcspn(token, "\r\n")] = '\0';
    } else if (env_tok && *env_tok) {
        snprintf(token, sizeof token, "%s", env_tok);
    }
    ra_cli c;
    qtsp_status orc = ra_cli_open(home, token[0] ? token : NULL, &c);
    OPENSSL_cleanse(token, sizeof token);
    if (orc != QTSP_OK)
        return cmd_fail(verb);
    qtsp_status rc = QTSP_OK;
    char t[32];
    if (strcmp(verb, "status") == 0) {
        json_t *o = NULL;
        rc = qtsp_ra_cert_status(c.ra, serial, slen, &o);
        if (rc == QTSP_OK)
            (void)cmd_print_json(o);
    } else if (strcmp(verb, "hold") == 0) {
        time_t until = 0;
        rc = qtsp_ra_hold(c.ra, &c.who, serial, slen, verification, &until);
        qtsp_format_rfc3339(until, t, sizeof t);
        if (rc == QTSP_OK)
            (void)cmd_print_json(json_pack("{s:s,s:s}", "status", "on-hold", "hold_until", t));
    } else if (strcmp(verb, "release") == 0) {
        rc = qtsp_ra_release(c.ra, &c.who, serial, slen);
        if (rc == QTSP_OK)
            (void)cmd_print_json(json_pack("{s:s}", "status", "valid"));
    } else if (strcmp(verb, "terminate") == 0) {
        int r = 0;
        rc = reason ? qtsp_reason_parse(reason, &r)
                    : qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "--reason is required");
        if (rc == QTSP_OK)
            rc = qtsp_ra_terminate(c.ra, &c.who, serial, slen, r, check, 0);
        if (rc == QTSP_OK)
            (void)cmd_print_json(json_pack("{s:s}", "status", "revoked"));
    } else if (is_subject) {
        qtsp_buf b;
        qtsp_buf_init(&b, 64 * 1024);
        rc = read_all(json_path, &b);
        json_error_t err;
        json_t *in = rc == QTSP_OK
                         ? json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &err)
                         : NULL;
        qtsp_buf_cleanup(&b);
        if (rc == QTSP_OK && !in)
            rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "invalid JSON: %s", err.text);
        char id[40];
        if (rc == QTSP_OK)
            rc = qtsp_ra_enrol(c.ra, &c.who, in, id);
        json_decref(in);
        if (rc == QTSP_OK)
            (void)cmd_print_json(json_pack("{s:s}", "subject_id", id));
    } else if (strcmp(verb, "issue") == 0) {
        qtsp_issued is;
        memset(&is, 0, sizeof is);
        rc = qtsp_ra_issue(c.ra, &c.who, arg, &is);
        if (rc == QTSP_OK)
            (void)cmd_print_json(json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "serial", is.serial_hex,
                                           "certificate", is.certificate_pem, "activation",
                                           "user_id", is.user_id, "password", is.password,
                                           "otpauth_uri", is.otpauth_uri));
        qtsp_issued_cleanup(&is);
    }
    ra_cli_close(&c);
    return rc == QTSP_OK ? 0 : cmd_fail(verb);
}
