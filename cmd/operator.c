/* qtsp operator add NAME --role ROLE: prints the new bearer token once, as
 * the only line on stdout. Only its hash is stored. */
#include <stdio.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "ra/operator.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("operator", "missing or wrong arguments (see qtsp operator --help)");
    fprintf(f, "usage: qtsp operator add [--home DIR] NAME --role ROLE\n\n"
               "Creates an RA operator and prints its bearer token once (only a hash is kept).\n"
               "Roles: ra-officer (enrol, issue, release), hotline (hold), office (terminate,\n"
               "release), auditor (read audit).\n");
    return f == stdout ? 0 : 2;
}

int cmd_operator(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    if (strcmp(argv[1], "add") != 0) {
        return cmd_usage_error("operator", "unknown sub-command (use add)");
    }
    const char *home = cmd_default_home(), *role_s = NULL, *name = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--role", &role_s))
            continue;
        if (argv[i][0] == '-' || name) {
            fprintf(stderr,
                    "qtsp: operator add: unexpected argument %s (see qtsp operator --help)\n",
                    argv[i]);
            return 2;
        }
        name = argv[i];
    }
    if (!name || !role_s)
        return cmd_usage_error("operator add", "needs NAME and --role ROLE");
    qtsp_err_clear();
    qtsp_role role;
    if (qtsp_role_parse(role_s, &role) != QTSP_OK)
        return cmd_fail("operator add");
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE, &app) != QTSP_OK)
        return cmd_fail("operator add");
    char token[160];
    qtsp_status rc = qtsp_operator_add(app.store, cmd_actor(), name, role, token, sizeof token);
    qtsp_app_close(&app);
    if (rc != QTSP_OK)
        return cmd_fail("operator add");
    printf("%s\n", token);
    fflush(stdout);
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}
