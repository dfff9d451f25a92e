/* qtsp init: the key ceremony's command. Creates the home, the embedded
 * SoftHSM2 token (unless an external module is given), has the ceremony
 * (ca/ceremony.h) make and certify the root CA, issuing CA, OCSP responder
 * and TSA keys and record them, and writes DIR/public and the ceremony
 * report (EN 319 411-1 6.5.1). qtsp.yaml is written last: its presence
 * marks an initialised home. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/ceremony.h"
#include "ca/subkey.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"
#include "core/log.h"
#include "ra/activation.h"
#include "tsa/tsa.h"

#define SOFTHSM_MODULE "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"

/* Creates a directory that must not exist yet (a ceremony never reuses a
 * half-made folder: the preflight refuses those). */
static qtsp_status mkdir_new(const char *path, mode_t mode)
{
    ENSURE(mkdir(path, mode) == 0, QTSP_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    ENSURE(chmod(path, mode) == 0, QTSP_ERR_IO, "cannot chmod %s: %s", path, strerror(errno));
    return QTSP_OK;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf for what this ceremony created (never follows symlinks). */
static void remove_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static qtsp_status random_hex(char *out, size_t bytes)
{
    unsigned char b[64];
    ENSURE(bytes <= sizeof b, QTSP_ERR_INTERNAL, "random_hex too long");
    TRY(qtsp_random(b, bytes));
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    OPENSSL_cleanse(b, sizeof b);
    return QTSP_OK;
}

#define MAX_POLICIES 64

/* Copies the shipped policies that dst_dir does not have yet; the names of
 * the files it wrote go to copied[*n] (for clean-up after a failure). */
static qtsp_status copy_policies(const char *src_dir, const char *dst_dir, char (*copied)[64],
                                 size_t *n_copied)
{
    DIR *d = opendir(src_dir);
    ENSURE(d != NULL, QTSP_ERR_NOT_FOUND, "cannot open the policies folder %s: %s", src_dir,
           strerror(errno));
    qtsp_status rc = QTSP_OK;
    struct dirent *e;
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char src[QTSP_PATH_MAX + 300], dst[QTSP_PATH_MAX + 300];
        snprintf(src, sizeof src, "%s/%s", src_dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", dst_dir, e->d_name);
        struct stat sb;
        if (lstat(dst, &sb) == 0) {
            /* the operator prepared this policy before the ceremony: keep it */
            LOG_INFO("ceremony: keeping the existing %s", dst);
            continue;
        }
        FILE *f = fopen(src, "r");
        ENSURE_OUT(f != NULL, QTSP_ERR_IO, "cannot read %s: %s", src, strerror(errno));
        qtsp_buf_reset(&b);
        char chunk[4096];
        size_t r;
        while (rc == QTSP_OK && (r = fread(chunk, 1, sizeof chunk, f)) > 0)
            rc = qtsp_buf_append(&b, chunk, r);
        fclose(f);
        TRY_OUT(rc);
        ENSURE_OUT(*n_copied < MAX_POLICIES && n < 64, QTSP_ERR_TOO_BIG, "too many policy files");
        TRY_OUT(cmd_write_file(dst, b.data, b.len, 0644));
        memcpy(copied[(*n_copied)++], e->d_name, n + 1); /* n < 64 checked above */
    }
out:
    qtsp_buf_cleanup(&b);
    closedir(d);
    return rc;
}

/* The kernel reports the clock unsynchronised (adjtimex): a TSA that
 * requires sync would refuse every request on this machine. The home's copy
 * of tsa.yaml is relaxed, loudly (stderr, ceremony report, audit), and the
 * operator turns it back on once NTP runs (docs/tsa.md). */
static qtsp_status relax_tsa_clock(const char *policies_dir)
{
    char path[QTSP_PATH_MAX + 32];
    int pn = snprintf(path, sizeof path, "%s/tsa.yaml", policies_dir);
    ENSURE(pn > 0 && (size_t)pn < sizeof path, QTSP_ERR_TOO_BIG, "path too long: %s", policies_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return QTSP_OK; /* no TSA policy shipped: nothing to relax */
    qtsp_buf b;
    qtsp_buf_init(&b, 1 << 20);
    char line[1024];
    qtsp_status rc = QTSP_OK;
    while (rc == QTSP_OK && fgets(line, sizeof line, f)) {
        if (strstr(line, "require_sync: true"))
            rc =
                qtsp_buf_puts(&b, "  # relaxed by qtsp init: the clock was not synchronised at the "
                                  "ceremony\n  require_sync: false\n");
        else
            rc = qtsp_buf_puts(&b, line);
    }
    fclose(f);
    if (rc == QTSP_OK)
        rc = cmd_write_file(path, b.data, b.len, 0644);
    qtsp_buf_cleanup(&b);
    fprintf(stderr,
            "qtsp: init: warning: the system clock is not synchronised (adjtimex); the "
            "TSA policy in %s was relaxed to require_sync: false - set it back to true "
            "once NTP runs\n",
            path);
    return rc;
}

static int usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("init", "missing or wrong arguments (see qtsp init --help)");
    fprintf(f, "usage: qtsp init [--home DIR] [--base-url URL]\n"
               "                 [--pkcs11-module PATH --token-label LABEL] [--operator NAME]\n\n"
               "Key ceremony: creates DIR (default $QTSP_HOME or ./qtsp-home), an embedded\n"
               "SoftHSM2 token under DIR/hsm unless --pkcs11-module is given (then the PIN\n"
               "comes from QTSP_TOKEN_PIN), the root CA, issuing CA, OCSP, TSA and\n"
               "validation service keys in the token, their certificates in DIR/public and\n"
               "DIR/ceremony-report.txt.\n"
               "Refuses an initialised home.\n");
    return f == stdout ? 0 : 2;
}

int cmd_init(int argc, char **argv)
{
    const char *home = cmd_default_home(), *base_url = NULL, *module = NULL, *label = NULL;
    const char *who = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) ||
            cmd_opt(argc, argv, &i, "--base-url", &base_url) ||
            cmd_opt(argc, argv, &i, "--pkcs11-module", &module) ||
            cmd_opt(argc, argv, &i, "--token-label", &label) ||
            cmd_opt(argc, argv, &i, "--operator", &who))
            continue;
        fprintf(stderr, "qtsp: init: unknown argument %s (see qtsp init --help)\n", argv[i]);
        return 2;
    }
    if ((module == NULL) != (label == NULL))
        return cmd_usage_error("init", "--pkcs11-module and --token-label go together");
    qtsp_err_clear();

    qtsp_app app;
    memset(&app, 0, sizeof app);
    qtsp_config_defaults(&app.cfg, home);
    qtsp_config *cfg = &app.cfg;
    if (base_url) {
        if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0)
            return cmd_usage_error("init", "--base-url must start with http:// or https://");
        snprintf(cfg->base_url, sizeof cfg->base_url, "%s", base_url);
        size_t bl = strlen(cfg->base_url);
        while (bl > 0 && cfg->base_url[bl - 1] == '/')
            cfg->base_url[--bl] = '\0';
    }
    if (module) {
        snprintf(cfg->hsm_module, sizeof cfg->hsm_module, "%s", module);
        snprintf(cfg->token_label, sizeof cfg->token_label, "%s", label);
        cfg->hsm_embedded = 0;
    }
    const char *actor = who ? who : cmd_actor();

    char path[QTSP_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/qtsp.yaml", cfg->home);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "qtsp: init: %s is already initialised; refusing to overwrite it\n",
                cfg->home);
        return 1;
    }
    qtsp_ceremony cer;
    qtsp_ceremony_init(&cer, cfg->key_root, cfg->key_issuing, cfg->key_ocsp, cfg->key_tsa,
                       cfg->key_validation);
    const size_t nkeys = QTSP_CEREMONY_KEYS;
    qtsp_status rc = QTSP_OK;
    char so_pin[65] = "", user_pin[65] = "";
    qtsp_ceremony_facts facts;
    memset(&facts, 0, sizeof facts);
    int clock_synced = 1, home_created = 0, policies_created = 0, locked = 0;
    unsigned made = 0; /* what this run created: only that is removed after a failure */
    char copied[MAX_POLICIES][64];
    size_t n_copied = 0;
    char lock_path[QTSP_PATH_MAX + 32];
    snprintf(lock_path, sizeof lock_path, "%s/.qtsp-init.lock", cfg->home);
    json_t *details = NULL;
    qtsp_buf report;
    qtsp_buf_init(&report, 1 << 20);

    /* folders: the home itself only if it is new (an existing one keeps its mode) */
    home_created = mkdir(cfg->home, 0755) == 0;
    if (!home_created && errno != EEXIST) {
        fprintf(stderr, "qtsp: init: cannot create %s: %s\n", cfg->home, strerror(errno));
        return 1;
    }
    /* One ceremony per home at a time: without the lock, nothing is touched
     * (and nothing is cleaned up: it may be another run's). */
    int lfd = open(lock_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0) {
        fprintf(stderr,
                "qtsp: init: %s: another qtsp init holds this home (or one crashed: remove the "
                "lock file): %s\n",
                lock_path, strerror(errno));
        return 1;
    }
    close(lfd);
    locked = 1;
    /* Anything a ceremony writes means an earlier one was interrupted: refuse
     * rather than mix two token PINs or two sets of keys (lstat: a dangling
     * link counts too). An existing policies/ folder is welcome. */
    static const char *const made_by_init[] = {
        "secrets", "hsm", "public", "store", "ceremony-report.txt", "qtsp.yaml"};
    enum { MADE_SECRETS = 1, MADE_HSM = 2, MADE_PUBLIC = 4, MADE_STORE = 8, MADE_REPORT = 16 };
    for (size_t i = 0; i < sizeof made_by_init / sizeof made_by_init[0]; i++) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", cfg->home, made_by_init[i]);
        ENSURE_OUT(lstat(path, &sb) != 0 && errno == ENOENT, QTSP_ERR_EXISTS,
                   "%s already exists (an earlier or interrupted ceremony?); refusing to "
                   "overwrite it - remove it to start again",
                   path);
    }
    char dir[QTSP_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/secrets", cfg->home);
    TRY_OUT(mkdir_new(dir, 0700));
    made |= MADE_SECRETS;
    snprintf(dir, sizeof dir, "%s/public", cfg->home);
    TRY_OUT(mkdir_new(dir, 0755));
    made |= MADE_PUBLIC;
    snprintf(dir, sizeof dir, "%s/public/crl", cfg->home);
    TRY_OUT(mkdir_new(dir, 0755));
    snprintf(dir, sizeof dir, "%s/policies", cfg->home);
    policies_created = mkdir(dir, 0755) == 0;
    ENSURE_OUT(policies_created || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s", dir,
               strerror(errno));
    LOG_INFO("ceremony: default policies from %s", cmd_policies_dir());
    TRY_OUT(copy_policies(cmd_policies_dir(), dir, copied, &n_copied));
    clock_synced = qtsp_tsa_clock_synced(NULL);
    if (!clock_synced) {
        int ours = 0;
        for (size_t i = 0; i < n_copied; i++)
            ours |= strcmp(copied[i], "tsa.yaml") == 0;
        if (ours)
            TRY_OUT(relax_tsa_clock(dir));
        else
            fprintf(stderr, "qtsp: init: warning: the system clock is not synchronised; your own "
                            "policies/tsa.yaml is kept as it is\n");
    }
    /* the key that wraps signers' TOTP secrets (ra/activation.h) */
    unsigned char otp_key[QTSP_OTP_KEY_LEN];
    snprintf(dir, sizeof dir, "%s/secrets", cfg->home);
    TRY_OUT(qtsp_otp_key_load(dir, otp_key));
    OPENSSL_cleanse(otp_key, sizeof otp_key);

    /* token: created with PINs held in memory, which are written to
     * secrets/ only once the token exists */
    if (cfg->hsm_embedded) {
        snprintf(dir, sizeof dir, "%s/hsm", cfg->home);
        TRY_OUT(mkdir_new(dir, 0700));
        made |= MADE_HSM;
        TRY_OUT(random_hex(so_pin, 16));
        TRY_OUT(random_hex(user_pin, 16));
        TRY_OUT(qtsp_softhsm_create(cfg->hsm_module, dir, cfg->token_label, so_pin, user_pin));
        char line[80];
        int n = snprintf(line, sizeof line, "%s\n", user_pin);
        rc = cmd_write_file(cfg->pin_file, line, (size_t)n, 0600);
        snprintf(path, sizeof path, "%s/secrets/so.pin", cfg->home);
        n = snprintf(line, sizeof line, "%s\n", so_pin);
        if (rc == QTSP_OK)
            rc = cmd_write_file(path, line, (size_t)n, 0600);
        OPENSSL_cleanse(line, sizeof line);
        TRY_OUT(rc);
        TRY_OUT(qtsp_hsm_open(cfg->hsm_module, cfg->token_label, user_pin, &app.hsm));
    } else {
        char pin[256];
        rc = qtsp_config_read_pin(cfg, pin, sizeof pin);
        if (rc == QTSP_OK)
            rc = qtsp_hsm_open(cfg->hsm_module, cfg->token_label, pin, &app.hsm);
        OPENSSL_cleanse(pin, sizeof pin);
        TRY_OUT(rc);
    }
    TRY_OUT(qtsp_hsm_token_info(app.hsm, facts.model, sizeof facts.model, facts.serial,
                                sizeof facts.serial, facts.manufacturer,
                                sizeof facts.manufacturer));

    /* keys and certificates */
    snprintf(dir, sizeof dir, "%s/policies", cfg->home);
    TRY_OUT(qtsp_ceremony_make_keys(&cer, app.hsm, dir, cfg->base_url));
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(path, sizeof path, "%s/public/%s", cfg->home, cer.keys[i].cert_file);
        TRY_OUT(cmd_write_pem(path, &cer.keys[i].made.cert, 1));
    }
    X509 *chain[] = {cer.keys[QTSP_CEREMONY_ISSUING].made.cert,
                     cer.keys[QTSP_CEREMONY_ROOT].made.cert};
    snprintf(path, sizeof path, "%s/public/chain.pem", cfg->home);
    TRY_OUT(cmd_write_pem(path, chain, 2));

    /* report + audit */
    facts.actor = actor;
    facts.token_label = cfg->token_label;
    facts.token_where = cfg->hsm_embedded ? "embedded SoftHSM2" : cfg->hsm_module;
    facts.home = cfg->home;
    facts.base_url = cfg->base_url;
    facts.clock_synced = clock_synced;
    TRY_OUT(qtsp_ceremony_report(&cer, &facts, &report, &details));

    snprintf(dir, sizeof dir, "%s/store", cfg->home);
    made |= MADE_STORE;
    TRY_OUT(qtsp_store_open(dir, (size_t)cfg->store_map_mib, &app.store));
    TRY_OUT(qtsp_ceremony_record(&cer, app.store, actor, details));
    /* the key-storage key that wraps subscribers' keys (docs/hsm.md) */
    TRY_OUT(qtsp_subkey_setup(app.hsm, app.store, actor));
    TRY_OUT(qtsp_buf_puts(&report, "\nrecorded in the audit log as event ceremony.keys\n"));
    snprintf(path, sizeof path, "%s/ceremony-report.txt", cfg->home);
    made |= MADE_REPORT;
    TRY_OUT(cmd_write_file(path, report.data, report.len, 0644));
    TRY_OUT(qtsp_config_save(cfg));
    printf("initialised %s (token %s, %zu keys); report: %s\n", cfg->home, cfg->token_label, nkeys,
           path);
out:
    OPENSSL_cleanse(so_pin, sizeof so_pin);
    OPENSSL_cleanse(user_pin, sizeof user_pin);
    qtsp_ceremony_cleanup(&cer);
    json_decref(details);
    qtsp_buf_cleanup(&report);
    qtsp_app_close(&app);
    if (rc == QTSP_OK) {
        unlink(lock_path);
        return 0;
    }
    const char *why = qtsp_err_what();
    fprintf(stderr, "qtsp: init: %s (nothing was kept; fix the cause and run qtsp init again)\n",
            why[0] ? why : "failed");
    if (getenv("QTSP_DEBUG"))
        fprintf(stderr, "qtsp: debug: %s\n", qtsp_err_message());
    /* Leave no half ceremony behind: remove what this run created (keys made
     * in an external token stay there; the report lists none of them). */
    if (!locked)
        return 1;
    if (home_created) {
        remove_tree(cfg->home); /* new, and ours alone under the lock */
        return 1;
    }
    for (size_t i = 0; i < 5; i++) /* the items of made_by_init this run created */
        if (made & (1u << i)) {
            snprintf(path, sizeof path, "%s/%s", cfg->home, made_by_init[i]);
            remove_tree(path);
        }
    snprintf(path, sizeof path, "%s/policies", cfg->home);
    if (policies_created) {
        remove_tree(path);
    } else {
        for (size_t i = 0; i < n_copied; i++) {
            char f[QTSP_PATH_MAX + 160];
            snprintf(f, sizeof f, "%s/%s", path, copied[i]);
            unlink(f);
        }
    }
    unlink(lock_path);
    return 1;
}
