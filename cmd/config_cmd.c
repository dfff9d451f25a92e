/* qtsp config check: every file of a home loads, each problem on its own
 * line; and the policy digest that keeps the CLI and the server on the
 * same policies (docs/operations.md, "Configuration check and reload"). */
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/crl.h"
#include "ca/profile.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "cmd/services.h"
#include "core/log.h"
#include "core/yaml.h"

#define MAX_POLICIES 64

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("config", "missing or wrong arguments (see qtsp config --help)");
    fprintf(f, "usage: qtsp config check [--home DIR]\n\n"
               "Loads qtsp.yaml and every policy of the home as serve would, and prints one\n"
               "line per problem (file:line:column: what). Exit 0 when everything loads, 1\n"
               "otherwise. Also says whether the running server (if any) uses the same\n"
               "policies as the files (the policy digest).\n");
    return f == stdout ? 0 : 2;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* The *.yaml names of dir, sorted; at most MAX_POLICIES. */
static qtsp_status policy_names(const char *dir, char (*names)[256], size_t *n)
{
    DIR *d = opendir(dir);
    ENSURE(d != NULL, QTSP_ERR_IO, "cannot open %s: %s", dir, strerror(errno));
    *n = 0;
    struct dirent *e;
    qtsp_status rc = QTSP_OK;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || l >= 256 || e->d_name[0] == '.' || strcmp(e->d_name + l - 5, ".yaml") != 0)
            continue;
        ENSURE_OUT(*n < MAX_POLICIES, QTSP_ERR_TOO_BIG, "more than %d policies in %s", MAX_POLICIES,
                   dir);
        memcpy(names[(*n)++], e->d_name, l + 1);
    }
    qsort(names, *n, sizeof names[0], by_name);
out:
    closedir(d);
    return rc;
}

/* Hashes name, its length-prefixed content (a missing file hashes as
 * "absent"). */
static qtsp_status digest_file(EVP_MD_CTX *md, const char *name, const char *path)
{
    EVP_DigestUpdate(md, name, strlen(name) + 1);
    FILE *f = fopen(path, "rb");
    if (!f) {
        EVP_DigestUpdate(md, "absent", 7);
        return QTSP_OK;
    }
    unsigned char buf[8192];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(md, buf, r);
    int bad = ferror(f);
    fclose(f);
    ENSURE(!bad, QTSP_ERR_IO, "cannot read %s", path);
    EVP_DigestUpdate(md, "\n--\n", 4);
    return QTSP_OK;
}

qtsp_status cmd_policy_digest(const qtsp_config *cfg, char out[72])
{
    char dir[QTSP_PATH_MAX], path[QTSP_PATH_MAX + 300];
    static char names[MAX_POLICIES][256];
    size_t n = 0;
    TRY(qtsp_config_path(cfg, "policies", dir, sizeof dir));
    TRY(policy_names(dir, names, &n));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ENSURE(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO, "SHA-256");
    qtsp_status rc = QTSP_OK;
    snprintf(path, sizeof path, "%s/qtsp.yaml", cfg->home);
    TRY_OUT(digest_file(md, "qtsp.yaml", path));
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        TRY_OUT(digest_file(md, names[i], path));
    }
    unsigned char h[32];
    unsigned hl = 0;
    ENSURE_OUT(EVP_DigestFinal_ex(md, h, &hl) == 1 && hl == 32, QTSP_ERR_CRYPTO, "SHA-256");
    memcpy(out, "sha256:", 7);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", h[i]);
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* Prints one problem: "qtsp: config check: <file>: <why>". */
static void problem(const char *file, unsigned *count)
{
    const char *why = qtsp_err_what();
    fprintf(stderr, "qtsp: config check: %s: %s\n", file, why[0] ? why : "does not load");
    if (getenv("QTSP_DEBUG"))
        fprintf(stderr, "qtsp: debug: %s\n", qtsp_err_message());
    qtsp_err_clear();
    (*count)++;
}

/* problem() for policies/<name>. */
static void policy_problem(const char *name, unsigned *count)
{
    char f[300];
    snprintf(f, sizeof f, "policies/%s", name);
    problem(f, count);
}

/* The certificate profiles (ca/profile.h), each on its own; the validation
 * service's only where the home has it (a home made before it has none until
 * `qtsp rekey validation`, which then uses the shipped one). */
static const char *const k_profiles[] = {"root-ca.yaml",
                                         "issuing-ca.yaml",
                                         "ocsp-responder.yaml",
                                         "tsa-unit.yaml",
                                         "qualified-natural-person.yaml",
                                         "validation-service.yaml"};
#define PROFILE_OPTIONAL "validation-service.yaml"

static int check_home(const char *home, int for_reload)
{
    unsigned bad = 0;
    qtsp_config cfg;
    qtsp_err_clear();
    if (qtsp_config_load(home, &cfg) != QTSP_OK) {
        problem("qtsp.yaml", &bad);
        fprintf(stderr, "qtsp: config check: 1 problem (the policies need a valid qtsp.yaml)\n");
        return 1;
    }
    char dir[QTSP_PATH_MAX], path[QTSP_PATH_MAX + 300];
    static char names[MAX_POLICIES][256];
    size_t n = 0;
    if (qtsp_config_path(&cfg, "policies", dir, sizeof dir) != QTSP_OK ||
        policy_names(dir, names, &n) != QTSP_OK) {
        problem("policies/", &bad);
        return 1;
    }
    /* 1. each file is well-formed YAML */
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        qtsp_ydoc *doc = NULL;
        if (qtsp_ydoc_load_file(path, &doc) != QTSP_OK)
            policy_problem(names[i], &bad);
        qtsp_ydoc_free(doc);
    }
    /* 2. the policies with a loader of their own, each on its own */
    for (size_t i = 0; i < sizeof k_profiles / sizeof k_profiles[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, k_profiles[i]);
        if (strcmp(k_profiles[i], PROFILE_OPTIONAL) == 0 && access(path, F_OK) != 0)
            continue;
        qtsp_profile *p = NULL;
        if (qtsp_profile_load(path, &p) != QTSP_OK)
            policy_problem(k_profiles[i], &bad);
        qtsp_profile_free(p);
    }
    snprintf(path, sizeof path, "%s/crl.yaml", dir);
    qtsp_crl_policy crl;
    if (qtsp_crl_policy_load(path, &crl) != QTSP_OK)
        policy_problem("crl.yaml", &bad);
    /* 3. the whole server as serve assembles it (every other policy, with
     * the loaders serve uses; stops at the first failure) */
    if (bad == 0) {
        qtsp_app app;
        if (qtsp_app_open(home, APP_STORE | APP_KEYS | APP_NO_DIGEST_CHECK, &app) != QTSP_OK) {
            problem("home (store, token, certificates)", &bad);
        } else {
            qtsp_services *svc = NULL;
            if (qtsp_services_new(&app, &svc) != QTSP_OK)
                problem("policies (as serve loads them)", &bad);
            qtsp_services_free(svc);
            qtsp_app_close(&app);
        }
    }
    if (bad) {
        fprintf(stderr, "qtsp: config check: %u problem%s\n", bad, bad == 1 ? "" : "s");
        return 1;
    }
    char digest[72] = "";
    if (cmd_policy_digest(&cfg, digest) != QTSP_OK) {
        problem("policy digest", &bad);
        return 1;
    }
    printf("config ok: qtsp.yaml and %zu policies load (%s)\n", n, digest);
    char served[72] = "";
    if (!for_reload && cmd_served_digest(cfg.home, served) == QTSP_OK && served[0])
        printf(
            "the running server %s\n",
            strcmp(served, digest) == 0
                ? "uses these policies"
                : "uses other policies: reload it (SIGHUP, systemctl reload qtsp) to apply them");
    qtsp_err_clear();
    return 0;
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    if (strcmp(argv[1], "check") != 0)
        return cmd_usage_error("config", "unknown sub-command (use check)");
    const char *home = cmd_default_home();
    int for_reload = 0; /* serve's own check on SIGHUP (cmd/serve.c) */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--for-reload") == 0) {
            for_reload = 1;
            continue;
        }
        if (cmd_opt(argc, argv, &i, "--home", &home))
            continue;
        fprintf(stderr, "qtsp: config: unknown argument %s (see qtsp config --help)\n", argv[i]);
        return 2;
    }
    return check_home(home, for_reload);
}
