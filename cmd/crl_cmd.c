/* qtsp crl publish: forces new CRLs (full, delta, root) for operators and
 * cron. A running server notices the new numbers and follows. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ca/crl.h"
#include "cmd/app.h"
#include "cmd/cmd.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("crl", "missing or wrong arguments (see qtsp crl --help)");
    fprintf(f, "usage: qtsp crl publish [--home DIR]\n\n"
               "Builds and signs new CRLs (qualified full + delta, root) into DIR/public/crl/.\n");
    return f == stdout ? 0 : 2;
}

int cmd_crl(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    if (strcmp(argv[1], "publish") != 0) {
        return cmd_usage_error("crl", "unknown sub-command (use publish)");
    }
    const char *home = cmd_default_home();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        fprintf(stderr, "qtsp: crl publish: unexpected argument %s (see qtsp crl --help)\n",
                argv[i]);
        return 2;
    }
    qtsp_err_clear();
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE | APP_KEYS, &app) != QTSP_OK)
        return cmd_fail("crl publish");
    char policy[QTSP_PATH_MAX + 32], pub[QTSP_PATH_MAX];
    qtsp_crl_publisher *p = NULL;
    qtsp_status rc = qtsp_app_policy(&app, "crl.yaml", policy, sizeof policy);
    if (rc == QTSP_OK)
        rc = qtsp_config_path(&app.cfg, "public", pub, sizeof pub);
    if (rc == QTSP_OK)
        rc = qtsp_crl_publisher_new(policy, pub, app.issuing, app.issuing_key, app.root,
                                    app.root_key, app.cfg.base_url, app.store, &p);
    if (rc == QTSP_OK)
        rc = qtsp_crl_publish(p, 1);
    uint64_t full = 0, delta = 0, root = 0;
    time_t t;
    if (rc == QTSP_OK && qtsp_crl_current(p, "qualified", &full, &t) == QTSP_OK &&
        qtsp_crl_current(p, "qualified-delta", &delta, &t) == QTSP_OK &&
        qtsp_crl_current(p, "root", &root, &t) == QTSP_OK)
        printf("published: qualified.crl #%" PRIu64 ", qualified-delta.crl #%" PRIu64
               ", root.crl #%" PRIu64 " in %s/crl\n",
               full, delta, root, pub);
    qtsp_crl_publisher_free(p);
    qtsp_app_close(&app);
    return rc == QTSP_OK ? 0 : cmd_fail("crl publish");
}
