/* qtsp audit verify | list: the tamper-evident audit log. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/audit.h"
#include "ca/audit_anchor.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("audit", "missing or wrong arguments (see qtsp audit --help)");
    fprintf(f,
            "usage: qtsp audit verify [--home DIR]\n"
            "       qtsp audit list [--home DIR] [--from SEQ] [--since T] [--until T]\n"
            "                       [--event E] [--actor A] [--serial S] [--limit N] [--json]\n\n"
            "verify re-walks the SHA-256 hash chain of every record and exits non-zero at\n"
            "the first record that does not verify, then checks the chain against its\n"
            "latest time-stamped anchor (public/audit-anchor.json): a removed tail is\n"
            "reported; list prints the records as JSON lines,\n"
            "or with --json one document {\"records\":[...],\"next\"?}. Filters (all must\n"
            "hold): --from SEQ (records from SEQ on), --since/--until T (RFC 3339 UTC,\n"
            "e.g. 2026-11-24T10:00:00Z, inclusive), --event E (exact, or a prefix ending\n"
            "in '.', e.g. cert.), --actor A (exact, e.g. operator:alice), --serial S (a\n"
            "certificate serial in the details), --limit N (at most N records; \"next\"\n"
            "then gives the --from of the next page).\n");
    return f == stdout ? 0 : 2;
}

static qtsp_status print_record(void *ctx, uint64_t seq, const char *body, size_t len)
{
    (void)seq;
    if (ctx) { /* --json: collected */
        json_error_t err;
        json_t *rec = json_loadb(body, len, 0, &err);
        ENSURE(rec && json_array_append_new(ctx, rec) == 0, QTSP_ERR_STORE_CORRUPT,
               "audit record %llu is not JSON", (unsigned long long)seq);
        return QTSP_OK;
    }
    fwrite(body, 1, len, stdout);
    fputc('\n', stdout);
    return QTSP_OK;
}

/* A non-negative decimal number (at most 19 digits). */
static int parse_u64(const char *s, uint64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 19 || strspn(s, "0123456789") != n)
        return -1;
    *out = strtoull(s, NULL, 10);
    return 0;
}

/* The chain against its latest anchor outside the store (public/audit-anchor.json). */
static qtsp_status check_anchor(qtsp_app *app, uint64_t count)
{
    char path[QTSP_PATH_MAX], what[256];
    uint64_t seq = 0;
    X509 *tsa = NULL, *root = NULL;
    TRY(qtsp_config_path(&app->cfg, "public/audit-anchor.json", path, sizeof path));
    qtsp_status rc = qtsp_app_load_cert(app, "tsa.crt", &tsa);
    if (rc == QTSP_OK)
        rc = qtsp_app_load_cert(app, "root-ca.crt", &root);
    if (rc == QTSP_OK)
        rc = qtsp_audit_anchor_check(app->store, path, count, tsa, root, &seq, what, sizeof what);
    X509_free(tsa);
    X509_free(root);
    if (rc == QTSP_ERR_NOT_FOUND) {
        printf("audit anchor: none yet (%s)\n", path);
        return QTSP_OK;
    }
    if (rc == QTSP_ERR_AUDIT_BROKEN)
        fprintf(stderr, "qtsp: audit verify: the chain does not match its anchor: %s\n",
                qtsp_err_what());
    else if (rc == QTSP_OK)
        printf("audit anchor: %s\n", what);
    return rc;
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
    const char *home = cmd_default_home(), *from_s = NULL, *since = NULL, *until = NULL,
               *limit_s = NULL;
    qtsp_audit_filter f = {0};
    int json = 0, list = strcmp(sub, "list") == 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        if (list && (cmd_opt(argc, argv, &i, "--from", &from_s) ||
                     cmd_opt(argc, argv, &i, "--since", &since) ||
                     cmd_opt(argc, argv, &i, "--until", &until) ||
                     cmd_opt(argc, argv, &i, "--event", &f.event) ||
                     cmd_opt(argc, argv, &i, "--actor", &f.actor) ||
                     cmd_opt(argc, argv, &i, "--serial", &f.serial) ||
                     cmd_opt(argc, argv, &i, "--limit", &limit_s)))
            continue;
        if (list && strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        fprintf(stderr, "qtsp: audit %s: unexpected argument %s (see qtsp audit --help)\n", sub,
                argv[i]);
        return 2;
    }
    qtsp_err_clear();
    uint64_t from = 0, limit = 0;
    if (from_s && parse_u64(from_s, &from) != 0)
        return cmd_usage_error("audit list", "--from needs a number");
    if (limit_s && (parse_u64(limit_s, &limit) != 0 || limit == 0))
        return cmd_usage_error("audit list", "--limit needs a number of at least 1");
    time_t t;
    if (since) {
        if (qtsp_parse_rfc3339("--since", since, &t) != QTSP_OK)
            return cmd_fail("audit list");
        f.since_ms = (int64_t)t * 1000;
    }
    if (until) {
        if (qtsp_parse_rfc3339("--until", until, &t) != QTSP_OK)
            return cmd_fail("audit list");
        f.until_ms = (int64_t)t * 1000 + 999;
    }
    f.after = from ? from - 1 : 0;
    f.limit = (size_t)limit;
    qtsp_app app;
    if (qtsp_app_open(home, APP_STORE, &app) != QTSP_OK)
        return cmd_fail("audit");
    qtsp_status rc;
    if (strcmp(sub, "verify") == 0) {
        uint64_t count = 0, bad = 0;
        rc = qtsp_audit_verify(app.store, &count, &bad);
        if (rc == QTSP_OK)
            printf("audit chain ok: %" PRIu64 " records\n", count);
        if (rc == QTSP_OK)
            rc = check_anchor(&app, count); /* prints its own verdict */
        else if (rc == QTSP_ERR_AUDIT_BROKEN)
            fprintf(stderr, "qtsp: audit verify: chain broken at record %" PRIu64 ": %s\n", bad,
                    qtsp_err_what());
    } else {
        json_t *arr = json ? json_array() : NULL;
        uint64_t next = 0;
        rc = json && !arr ? QTSP_ERR_NOMEM
                          : qtsp_audit_query(app.store, &f, print_record, arr, &next);
        if (rc == QTSP_OK && json) {
            json_t *o = json_pack("{s:O}", "records", arr);
            if (o && next)
                json_object_set_new(o, "next", json_integer((json_int_t)(next + 1)));
            rc = cmd_print_json(o);
        }
        json_decref(arr);
    }
    qtsp_app_close(&app);
    if (rc == QTSP_ERR_AUDIT_BROKEN)
        return 1;
    return rc == QTSP_OK ? 0 : cmd_fail("audit");
}
