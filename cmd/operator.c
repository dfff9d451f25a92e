/* qtsp operator add | list | disable | enable | rotate: RA operators.
 * add and rotate print the new bearer token once, as the only line on
 * stdout; only its hash is stored. Every change is audited. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"
#include "ra/operator.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("operator", "missing or wrong arguments (see qtsp operator --help)");
    fprintf(f, "usage: qtsp operator add [--home DIR] NAME --role ROLE\n"
               "       qtsp operator list [--home DIR] [--json]\n"
               "       qtsp operator disable|enable|rotate [--home DIR] NAME|ID\n\n"
               "add creates an RA operator and prints its bearer token once (only a hash is\n"
               "kept). Roles: ra-officer (enrol, issue, release), hotline (hold), office\n"
               "(terminate, release), auditor (read audit).\n"
               "list shows every operator (id, name, role, state, created).\n"
               "disable refuses the operator's token from the next request on (every worker\n"
               "process of a running server); enable lets it in again.\n"
               "rotate gives the operator a new token, printed once; the old one is refused\n"
               "at once. Every change is audited.\n");
    return f == stdout ? 0 : 2;
}

static qtsp_status print_one(void *ctx, const qtsp_operator_info *info)
{
    json_t *arr = ctx;
    char when[32];
    qtsp_format_rfc3339((time_t)info->created_at, when, sizeof when);
    if (arr) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", info->op.id, "name", info->op.name,
                              "role", qtsp_role_name(info->op.role), "state",
                              info->disabled ? "disabled" : "enabled", "created_at", when);
        ENSURE(o && json_array_append_new(arr, o) == 0, QTSP_ERR_NOMEM, "out of memory");
        return QTSP_OK;
    }
    printf("%-16s  %-10s  %-8s  %s  %s\n", info->op.id, qtsp_role_name(info->op.role),
           info->disabled ? "disabled" : "enabled", when, info->op.name);
    return QTSP_OK;
}

static int do_list(qtsp_app *app, int json)
{
    json_t *arr = json ? json_array() : NULL;
    if (json && !arr)
        return cmd_fail("operator list");
    if (!json)
        printf("%-16s  %-10s  %-8s  %-20s  %s\n", "ID", "ROLE", "STATE", "CREATED", "NAME");
    qtsp_status rc = qtsp_operator_list(app->store, print_one, arr);
    if (rc == QTSP_OK && json) {
        json_t *o = json_pack("{s:O}", "operators", arr);
        rc = cmd_print_json(o);
    }
    json_decref(arr);
    return rc == QTSP_OK ? 0 : cmd_fail("operator list");
}

int cmd_operator(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    const char *sub = argv[1];
    static const char *const subs[] = {"add", "list", "disable", "enable", "rotate"};
    int known = 0;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        known |= strcmp(sub, subs[i]) == 0;
    if (!known)
        return cmd_usage_error("operator",
                               "unknown sub-command (use add, list, disable, enable or rotate)");
    const char *home = cmd_default_home(), *role_s = NULL, *name = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        if (strcmp(sub, "add") == 0 && cmd_opt(argc, argv, &i, "--role", &role_s))
            continue;
        if (strcmp(sub, "list") == 0 && strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        if (argv[i][0] == '-' || name || strcmp(sub, "list") == 0) {
            fprintf(stderr,
                    "qtsp: operator %s: unexpected argument %s (see qtsp operator --help)\n", sub,
                    argv[i]);
            return 2;
        }
        name = argv[i];
    }
    char what[32];
    snprintf(what, sizeof what, "operator %s", sub);
    if (strcmp(sub, "add") == 0 && (!name || !role_s))
        return cmd_usage_error(what, "needs NAME and --role ROLE");
    if (strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 && !name)
        return cmd_usage_error(what, "needs the operator's NAME or ID");
    qtsp_err_clear();
    qtsp_role role = QTSP_ROLE_RA_OFFICER;
    if (role_s && qtsp_role_parse(role_s, &role) != QTSP_OK)
        return cmd_fail(what);
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE, &app) != QTSP_OK)
        return cmd_fail(what);
    if (strcmp(sub, "list") == 0) {
        int code = do_list(&app, json);
        qtsp_app_close(&app);
        return code;
    }
    char token[160] = "";
    qtsp_operator_info info;
    qtsp_status rc;
    if (strcmp(sub, "add") == 0)
        rc = qtsp_operator_add(app.store, cmd_actor(), name, role, token, sizeof token);
    else if (strcmp(sub, "rotate") == 0)
        rc = qtsp_operator_rotate(app.store, cmd_actor(), name, token, sizeof token, &info);
    else
        rc = qtsp_operator_set_enabled(app.store, cmd_actor(), name, strcmp(sub, "enable") == 0,
                                       &info);
    qtsp_app_close(&app);
    if (rc != QTSP_OK)
        return cmd_fail(what);
    if (token[0])
        printf("%s\n", token);
    else
        fprintf(stderr, "operator %s (%s) %sd\n", info.op.name, info.op.id, sub);
    fflush(stdout);
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}
