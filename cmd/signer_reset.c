/* qtsp signer reset: the office's reset of a remote signer who lost their
 * password or their authenticator (docs/csc.md "Passwords and lockout"):
 * a new password and a new TOTP secret, printed once as one line of JSON
 * {"user_id","password","otpauth_uri"}; every access token of the signer
 * ends and both lockouts are lifted. Audited "signer.reset" with the
 * operator's login as actor. The office checks the signer's identity
 * first, as for a termination. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "sign/csc.h"
#include "sign/usage.h"

static int reset_usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("signer reset", "needs USER_ID (see qtsp signer reset --help)");
    fprintf(f, "usage: qtsp signer reset [--home DIR] USER_ID\n\n"
               "Gives the signer USER_ID (the activation user id from issuance) a new password\n"
               "and a new TOTP secret, printed once as JSON {user_id, password, otpauth_uri};\n"
               "their access tokens end, login and OTP lockouts are lifted. Audited.\n");
    return 0;
}

int cmd_signer_reset(int argc, char **argv)
{
    const char *home = NULL, *user_id = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return reset_usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        if (argv[i][0] == '-' || user_id)
            return reset_usage(stderr);
        user_id = argv[i];
    }
    if (!user_id)
        return reset_usage(stderr);
    qtsp_err_clear();
    qtsp_app app;
    if (qtsp_app_open(home ? home : cmd_default_home(), APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("signer reset");
    char policies[QTSP_PATH_MAX], secrets[QTSP_PATH_MAX], signing[QTSP_PATH_MAX + 32];
    qtsp_usage *usage = NULL;
    qtsp_csc *csc = NULL;
    json_t *out = NULL;
    qtsp_status rc = qtsp_config_path(&app.cfg, "policies", policies, sizeof policies);
    if (rc == QTSP_OK)
        rc = qtsp_config_path(&app.cfg, "secrets", secrets, sizeof secrets);
    if (rc == QTSP_OK)
        rc = qtsp_usage_new(app.store, policies, &usage);
    if (rc == QTSP_OK)
        rc = qtsp_app_policy_or_shipped(&app, "signing.yaml", signing, sizeof signing);
    if (rc == QTSP_OK) {
        qtsp_csc_deps d = {app.store, app.hsm, app.issuing, app.root, signing,
                           secrets,   usage,   NULL,        NULL};
        rc = qtsp_csc_new(&d, &csc);
    }
    if (rc == QTSP_OK)
        rc = qtsp_csc_reset(csc, cmd_actor(), user_id, &out);
    if (rc == QTSP_OK)
        rc = cmd_print_json(out); /* the only copy of the new secrets */
    qtsp_csc_free(csc);
    qtsp_usage_free(usage);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("signer reset");
}
