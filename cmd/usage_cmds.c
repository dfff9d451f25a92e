/* qtsp rp add | list | report and qtsp signer package | quota | history:
 * relying parties, packages and the usage history of remote signing
 * (sign/usage.h, docs/csc.md "Packages, relying parties, history").
 * rp add prints the relying party's secret once, as the only line on
 * stdout; only its argon2id hash is kept. rp add and signer package change
 * state and are audited; signer history (personal data shown to staff) is
 * audited as a read. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/app.h"
#include "cmd/cmd.h"
#include "sign/usage.h"

/* One verb's parsed arguments: sub-command, positionals, options. */
typedef struct verb_args {
    const char *sub;
    const char *home;
    const char *pos[2];
    int npos;
    const char *month;
    const char *limit;
    int json;
} verb_args;

/* What each sub-command takes: positional count, and which options. */
typedef struct sub_spec {
    const char *name;
    int npos;
    const char *pos_names; /* for the usage error */
    int month, limit, json;
} sub_spec;

static const sub_spec k_rp_subs[] = {
    {"add", 1, "the relying party's NAME", 0, 0, 0},
    {"list", 0, "", 0, 0, 1},
    {"report", 0, "", 1, 0, 1},
};
static const sub_spec k_signer_subs[] = {
    {"package", 2, "USER_ID and PACKAGE", 0, 0, 0},
    {"quota", 1, "USER_ID", 0, 0, 1},
    {"history", 1, "USER_ID", 0, 1, 1},
};

static int rp_usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("rp", "missing or wrong arguments (see qtsp rp --help)");
    fprintf(f, "usage: qtsp rp add [--home DIR] NAME\n"
               "       qtsp rp list [--home DIR] [--json]\n"
               "       qtsp rp report [--home DIR] [--month YYYY-MM] [--json]\n\n"
               "add registers a relying party (NAME: 1 to 64 letters, digits, '.', '_', '-')\n"
               "and prints its secret once, as the only line on stdout; only an argon2id hash\n"
               "is kept. Its application sends X-QTSP-Relying-Party: NAME:SECRET beside the\n"
               "signer's access token to pay for a signing itself (docs/csc.md). Audited.\n"
               "list shows the relying parties (name, created, by whom).\n"
               "report prints the signings relying parties paid, per relying party and month\n"
               "(UTC), with the amount at policies/packages.yaml relying_party_price.\n");
    return 0;
}

static int signer_usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("signer", "missing or wrong arguments (see qtsp signer --help)");
    fprintf(f, "usage: qtsp signer package [--home DIR] USER_ID PACKAGE\n"
               "       qtsp signer quota [--home DIR] USER_ID [--json]\n"
               "       qtsp signer history [--home DIR] USER_ID [--limit N] [--json]\n"
               "       qtsp signer reset [--home DIR] USER_ID\n\n"
               "USER_ID is the signer's activation user id (from issuance).\n"
               "package changes the signer's package (one of policies/packages.yaml); a new\n"
               "window starts now. Audited.\n"
               "quota shows the package, what this window has left, when it ends and when\n"
               "the package ends.\n"
               "history lists the signer's signings, newest first (time, credential,\n"
               "hashes, relying party, package window), for auditors; the read is audited.\n"
               "reset gives the signer a new password and TOTP secret, printed once (JSON);\n"
               "their access tokens end, lockouts are lifted. Audited.\n");
    return 0;
}

/* Parses argv[1..] against specs; returns -1 when parsed, else the exit code. */
static int parse(int argc, char **argv, const char *verb, const sub_spec *specs, size_t nspecs,
                 int (*usage)(FILE *), verb_args *a, const sub_spec **spec)
{
    memset(a, 0, sizeof *a);
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    a->sub = argv[1];
    *spec = NULL;
    for (size_t i = 0; i < nspecs; i++)
        if (strcmp(a->sub, specs[i].name) == 0)
            *spec = &specs[i];
    if (!*spec) {
        fprintf(stderr, "qtsp: %s: unknown sub-command %s (see qtsp %s --help)\n", verb, a->sub,
                verb);
        return 2;
    }
    a->home = cmd_default_home();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &a->home))
            continue;
        if ((*spec)->month && cmd_opt(argc, argv, &i, "--month", &a->month))
            continue;
        if ((*spec)->limit && cmd_opt(argc, argv, &i, "--limit", &a->limit))
            continue;
        if ((*spec)->json && strcmp(argv[i], "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (argv[i][0] == '-' || a->npos >= (*spec)->npos) {
            fprintf(stderr, "qtsp: %s %s: unexpected argument %s (see qtsp %s --help)\n", verb,
                    a->sub, argv[i], verb);
            return 2;
        }
        a->pos[a->npos++] = argv[i];
    }
    if (a->npos != (*spec)->npos) {
        char what[48];
        snprintf(what, sizeof what, "%s %s", verb, a->sub);
        char why[96];
        snprintf(why, sizeof why, "needs %s", (*spec)->pos_names);
        return cmd_usage_error(what, why);
    }
    return -1;
}

/* Opens the home's store and its package policy. */
static qtsp_status open_usage(const char *home, qtsp_app *app, qtsp_usage **u)
{
    TRY(qtsp_app_open(home, APP_STORE, app));
    char dir[QTSP_PATH_MAX];
    qtsp_status rc = qtsp_config_path(&app->cfg, "policies", dir, sizeof dir);
    if (rc == QTSP_OK)
        rc = qtsp_usage_new(app->store, dir, u);
    if (rc != QTSP_OK)
        qtsp_app_close(app);
    return rc;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static void print_rp_list(const json_t *o)
{
    printf("%-20s  %-20s  %s\n", "CREATED", "BY", "NAME");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(o, "relying_parties"), i, e)
        printf("%-20s  %-20s  %s\n", str(e, "created_at"), str(e, "created_by"), str(e, "name"));
}

static void print_rp_report(const json_t *o)
{
    printf("%-7s  %10s  %12s  %s\n", "MONTH", "SIGNATURES", "AMOUNT", "RELYING_PARTY");
    size_t i;
    json_t *e;
    const char *cur = str(o, "currency");
    json_array_foreach(json_object_get(o, "usage"), i, e)
    {
        char amt[48];
        snprintf(amt, sizeof amt, "%s %s", str(e, "amount"), cur);
        printf("%-7s  %10lld  %12s  %s\n", str(e, "month"),
               (long long)json_integer_value(json_object_get(e, "signatures")),
               json_object_get(e, "amount") ? amt : "-", str(e, "relying_party"));
    }
}

static void print_quota(const json_t *o)
{
    json_t *l = json_object_get(o, "signatures_left");
    printf("package: %s (since %s)\n", str(o, "package"), str(o, "package_since"));
    if (json_is_null(l))
        printf("signatures left: unlimited\n");
    else
        printf("signatures left: %lld\n", (long long)json_integer_value(l));
    printf("used in this window: %lld\n",
           (long long)json_integer_value(json_object_get(o, "used")));
    printf("window: %s .. %s\n", str(o, "window_start"), str(o, "window_end"));
    printf("valid until: %s%s\n",
           json_is_null(json_object_get(o, "valid_until")) ? "no end" : str(o, "valid_until"),
           json_is_true(json_object_get(o, "ended")) ? " (ended)" : "");
}

static void print_history(const json_t *o)
{
    printf("%-24s  %-34s  %6s  %-14s  %s\n", "TIME", "CREDENTIAL", "HASHES", "PACKAGE",
           "RELYING_PARTY");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(o, "signings"), i, e) printf(
        "%-24s  %-34s  %6zu  %-14s  %s\n", str(e, "time"), str(e, "credential"),
        json_array_size(json_object_get(e, "hashes")), str(e, "package"), str(e, "relying_party"));
}

/* The sub-command's work on the opened policy and store: *o gets what to
 * print (NULL: nothing), secret (64 bytes) a secret to print once. */
typedef qtsp_status (*verb_fn)(qtsp_usage *u, const verb_args *a, json_t **o, char *secret);

static qtsp_status rp_run(qtsp_usage *u, const verb_args *a, json_t **o, char *secret)
{
    if (strcmp(a->sub, "add") == 0)
        return qtsp_usage_rp_add(u, cmd_actor(), a->pos[0], secret, 64);
    if (strcmp(a->sub, "list") == 0)
        return qtsp_usage_rp_list(u, o);
    return qtsp_usage_rp_report(u, a->month, o);
}

static qtsp_status signer_run(qtsp_usage *u, const verb_args *a, json_t **o, char *secret)
{
    if (strcmp(a->sub, "package") == 0)
        return qtsp_usage_set_package(u, cmd_actor(), a->pos[0], a->pos[1]);
    if (strcmp(a->sub, "quota") == 0)
        return qtsp_usage_quota(u, a->pos[0], o);
    size_t limit = 0;
    if (a->limit) {
        char *end = NULL;
        unsigned long v = strtoul(a->limit, &end, 10);
        ENSURE(*a->limit && !*end && a->limit[0] != '-' && v <= 1000000, QTSP_ERR_INVALID,
               "--limit: a number of signings, 0 for all");
        limit = (size_t)v;
    }
    TRY(qtsp_usage_history(u, a->pos[0], limit, o));
    return qtsp_usage_audit_read(u, cmd_actor(), a->pos[0],
                                 json_array_size(json_object_get(*o, "signings")));
}

static int run_verb(int argc, char **argv, const char *verb, const sub_spec *specs, size_t nspecs,
                    int (*usage)(FILE *), verb_fn fn)
{
    verb_args a;
    const sub_spec *spec;
    int code = parse(argc, argv, verb, specs, nspecs, usage, &a, &spec);
    if (code >= 0)
        return code;
    char what[32];
    snprintf(what, sizeof what, "%s %s", verb, a.sub);
    qtsp_err_clear();
    qtsp_app app;
    qtsp_usage *u = NULL;
    if (open_usage(a.home, &app, &u) != QTSP_OK)
        return cmd_fail(what);
    json_t *o = NULL;
    char secret[64] = "";
    qtsp_status rc = fn(u, &a, &o, secret);
    qtsp_usage_free(u);
    qtsp_app_close(&app);
    if (rc != QTSP_OK) {
        json_decref(o);
        return cmd_fail(what);
    }
    if (secret[0]) {
        printf("%s\n", secret);
        OPENSSL_cleanse(secret, sizeof secret);
        fflush(stdout);
        fprintf(stderr, "relying party %s added; its secret above is shown only now\n", a.pos[0]);
        return 0;
    }
    if (!o) {
        fprintf(stderr, "signer %s now has the package %s (a new window starts now)\n", a.pos[0],
                a.pos[1]);
        return 0;
    }
    if (a.json)
        return cmd_print_json(o) == QTSP_OK ? 0 : cmd_fail(what);
    if (strcmp(a.sub, "list") == 0)
        print_rp_list(o);
    else if (strcmp(a.sub, "report") == 0)
        print_rp_report(o);
    else if (strcmp(a.sub, "quota") == 0)
        print_quota(o);
    else
        print_history(o);
    json_decref(o);
    return 0;
}

int cmd_rp(int argc, char **argv)
{
    return run_verb(argc, argv, "rp", k_rp_subs, 3, rp_usage, rp_run);
}

int cmd_signer(int argc, char **argv)
{
    if (argc >= 2 &&
        strcmp(argv[1], "reset") == 0) /* the signer's activation (cmd/signer_reset.c) */
        return cmd_signer_reset(argc - 1, argv + 1);
    return run_verb(argc, argv, "signer", k_signer_subs, 3, signer_usage, signer_run);
}
