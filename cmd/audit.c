/* qtsp audit verify | list: the tamper-evident audit log. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "cmd/app.h"
#include "cmd/cmd.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("audit", "missing or wrong arguments (see qtsp audit --help)");
    fprintf(f, "usage: qtsp audit verify [--home DIR]\n"
               "       qtsp audit list [--home DIR] [--from SEQ]\n\n"
               "verify re-walks the SHA-256 hash chain of every record and exits non-zero at\n"
               "the first record that does not verify; list prints the records as JSON lines.\n");
    return f == stdout ? 0 : 2;
}

static qtsp_status print_record(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)ctx;
    (void)seq;
    fwrite(body, 1, len, stdout);
    fputc('\n', stdout);
    return QTSP_OK;
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    const char *sub = argv[1];
    if (strcmp(sub, "verify") != 0 && strcmp(sub, "list") != 0) {
        return cmd_usage_error("audit", "unknown sub-command (use verify or list)");
    }
    const char *home = cmd_default_home(), *from_s = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--from", &from_s))
            continue;
        fprintf(stderr, "qtsp: audit %s: unexpected argument %s (see qtsp audit --help)\n", sub,
                argv[i]);
        return 2;
    }
    qtsp_err_clear();
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE, &app) != QTSP_OK)
        return cmd_fail("audit");
    qtsp_status rc;
    if (strcmp(sub, "verify") == 0) {
        uint64_t count = 0, bad = 0;
        rc = qtsp_audit_verify(app.store, &count, &bad);
        if (rc == QTSP_OK)
            printf("audit chain ok: %" PRIu64 " records\n", count);
        else if (rc == QTSP_ERR_AUDIT_BROKEN)
            fprintf(stderr, "qtsp: audit verify: chain broken at record %" PRIu64 ": %s\n", bad,
                    qtsp_err_what());
    } else {
        char *end = NULL;
        unsigned long long from = from_s ? strtoull(from_s, &end, 10) : 0;
        if (from_s && (!end || *end)) {
            qtsp_app_close(&app);
            return cmd_usage_error("audit list", "--from needs a number");
        }
        rc = qtsp_audit_list(app.store, from, print_record, NULL);
    }
    qtsp_app_close(&app);
    if (rc == QTSP_ERR_AUDIT_BROKEN)
        return 1;
    return rc == QTSP_OK ? 0 : cmd_fail("audit");
}
