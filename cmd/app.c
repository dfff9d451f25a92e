/* Opening a home for the verbs: config, token, store, CA material. */
#include "cmd/app.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/softhsm_conf.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"

#ifndef QTSP_SOURCE_DIR
#define QTSP_SOURCE_DIR "."
#endif
#ifndef QTSP_DATADIR
#define QTSP_DATADIR "/usr/local/share/qtsp"
#endif

const char *cmd_default_home(void)
{
    const char *h = getenv("QTSP_HOME");
    return h && *h ? h : "./qtsp-home";
}

int cmd_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "qtsp: %s: needs a value\n", name);
        exit(2);
    }
    *val = argv[++*i];
    return 1;
}

qtsp_status cmd_print_json(json_t *o)
{
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    ENSURE(txt != NULL, QTSP_ERR_NOMEM, "out of memory");
    printf("%s\n", txt);
    free(txt);
    return QTSP_OK;
}

int cmd_fail(const char *what)
{
    const char *why = qtsp_err_what();
    fprintf(stderr, "qtsp: %s: %s\n", what, why[0] ? why : "failed");
    if (getenv("QTSP_DEBUG"))
        fprintf(stderr, "qtsp: debug: %s\n", qtsp_err_message());
    return 1;
}

int cmd_usage_error(const char *what, const char *why)
{
    fprintf(stderr, "qtsp: %s: %s\n", what, why);
    return 2;
}

const char *cmd_actor(void)
{
    /* room for the longest: 63-byte user and host names, 32 of SUDO_USER */
    static char actor[sizeof "cli:@ (sudo from )" + 63 + 63 + 32];
    if (actor[0])
        return actor;
    /* the uid is authoritative; SUDO_USER (settable by anyone) is only a hint */
    char name[64] = "unknown";
    struct passwd pw, *res = NULL;
    char buf[1024];
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res)
        snprintf(name, sizeof name, "%s", res->pw_name);
    else
        snprintf(name, sizeof name, "uid%u", (unsigned)getuid());
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    const char *sudo = getenv("SUDO_USER");
    if (sudo && *sudo && getuid() == 0)
        snprintf(actor, sizeof actor, "cli:%s@%s (sudo from %.32s)", name, host, sudo);
    else
        snprintf(actor, sizeof actor, "cli:%s@%s", name, host);
    return actor;
}

/* 1 when dir/marker is readable (a directory of shipped files). */
static int has_marker(const char *dir, const char *marker)
{
    char p[QTSP_PATH_MAX + 32];
    int n = snprintf(p, sizeof p, "%s/%s", dir, marker);
    return n > 0 && (size_t)n < sizeof p && access(p, R_OK) == 0;
}

/* The first of: $env; PREFIX/share/qtsp/SUB beside the running binary's
 * PREFIX/bin (wherever the install tree was put: DESTDIR, a moved prefix);
 * the configured install prefix's; the source tree's SUB. found: a static
 * buffer of the caller's. */
static const char *shipped_dir(const char *env, const char *sub, const char *marker,
                               char found[QTSP_PATH_MAX])
{
    const char *d = getenv(env);
    if (d && *d)
        return d;
    char exe[QTSP_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int k = snprintf(found, QTSP_PATH_MAX, "%s/../share/qtsp/%s", exe, sub);
            if (k > 0 && k < QTSP_PATH_MAX && has_marker(found, marker))
                return found;
        }
    }
    snprintf(found, QTSP_PATH_MAX, "%s/%s", QTSP_DATADIR, sub);
    if (has_marker(found, marker))
        return found;
    snprintf(found, QTSP_PATH_MAX, "%s/%s", QTSP_SOURCE_DIR, sub);
    return found;
}

const char *cmd_policies_dir(void)
{
    static char found[QTSP_PATH_MAX];
    return shipped_dir("QTSP_POLICIES_DIR", "policies", "tsa.yaml", found);
}

const char *cmd_web_dir(void)
{
    static char found[QTSP_PATH_MAX];
    return shipped_dir("QTSP_WEB_DIR", "web", "index.html", found);
}

qtsp_status qtsp_app_policy(const qtsp_app *app, const char *file, char *out, size_t cap)
{
    char rel[256];
    snprintf(rel, sizeof rel, "policies/%s", file);
    return qtsp_config_path(&app->cfg, rel, out, cap);
}

qtsp_status qtsp_app_policy_or_shipped(const qtsp_app *app, const char *file, char *out, size_t cap)
{
    TRY(qtsp_app_policy(app, file, out, cap));
    if (access(out, F_OK) != 0) { /* a home made before this policy existed */
        int n = snprintf(out, cap, "%s/%s", cmd_policies_dir(), file);
        ENSURE(n > 0 && (size_t)n < cap, QTSP_ERR_TOO_BIG, "policy path too long");
    }
    return QTSP_OK;
}

qtsp_status qtsp_app_load_cert(const qtsp_app *app, const char *name, X509 **out)
{
    char rel[128], path[QTSP_PATH_MAX];
    snprintf(rel, sizeof rel, "public/%s", name);
    TRY(qtsp_config_path(&app->cfg, rel, path, sizeof path));
    FILE *f = fopen(path, "r");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ENSURE(x != NULL, QTSP_ERR_CRYPTO, "%s is not a PEM certificate", path);
    *out = x;
    return QTSP_OK;
}

static qtsp_status open_token(qtsp_app *app)
{
    if (app->cfg.hsm_embedded) {
        char conf[QTSP_PATH_MAX];
        TRY(qtsp_config_path(&app->cfg, "hsm/softhsm2.conf", conf, sizeof conf));
        ENSURE(access(conf, R_OK) == 0, QTSP_ERR_NOT_FOUND, "embedded token config %s missing",
               conf);
        char hsm_dir[QTSP_PATH_MAX];
        TRY(qtsp_config_path(&app->cfg, "hsm", hsm_dir, sizeof hsm_dir));
        TRY(qtsp_softhsm_conf_check(conf, hsm_dir)); /* not a copied home's foreign token */
        setenv("SOFTHSM2_CONF", conf, 1);
    }
    char pin[256];
    qtsp_status rc = qtsp_config_read_pin(&app->cfg, pin, sizeof pin);
    if (rc == QTSP_OK)
        rc = qtsp_hsm_open(app->cfg.hsm_module, app->cfg.token_label, pin, &app->hsm);
    OPENSSL_cleanse(pin, sizeof pin);
    return rc;
}

static qtsp_status load_keys(qtsp_app *app)
{
    TRY(qtsp_app_load_cert(app, "root-ca.crt", &app->root));
    TRY(qtsp_app_load_cert(app, "issuing-ca.crt", &app->issuing));
    TRY(qtsp_app_load_cert(app, "ocsp.crt", &app->ocsp));
    TRY(qtsp_app_load_cert(app, "tsa.crt", &app->tsa));
    /* public/ is world-readable and not trusted: each certificate must
     * certify the public key of the token key it is used with */
    struct {
        qtsp_key **key;
        X509 *cert, *issuer;
        const char *label;
    } pairs[] = {{&app->root_key, app->root, NULL, app->cfg.key_root},
                 {&app->issuing_key, app->issuing, app->root, app->cfg.key_issuing},
                 {&app->ocsp_key, app->ocsp, app->issuing, app->cfg.key_ocsp},
                 {&app->tsa_key, app->tsa, app->root, app->cfg.key_tsa},
                 {&app->validation_key, NULL, app->root, app->cfg.key_validation}};
    /* the validation service's key: only in homes that have its certificate */
    char vpath[QTSP_PATH_MAX];
    TRY(qtsp_config_path(&app->cfg, "public/validation.crt", vpath, sizeof vpath));
    if (access(vpath, F_OK) == 0)
        TRY(qtsp_app_load_cert(app, "validation.crt", &app->validation));
    pairs[4].cert = app->validation;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!pairs[i].cert)
            continue;
        TRY(qtsp_key_from_token(app->hsm, pairs[i].label, pairs[i].key));
        STACK_OF(X509) *chain = NULL;
        if (pairs[i].issuer) {
            chain = sk_X509_new_null();
            ENSURE(chain && sk_X509_push(chain, pairs[i].issuer) > 0, QTSP_ERR_NOMEM,
                   "out of memory");
        }
        qtsp_status rc = qtsp_key_set1_cert(*pairs[i].key, pairs[i].cert, chain);
        sk_X509_free(chain);
        if (rc != QTSP_OK) {
            qtsp_err_clear();
            FAIL(QTSP_ERR_CRYPTO,
                 "the certificate in public/ for token key %s does not match that key",
                 pairs[i].label);
        }
    }
    return QTSP_OK;
}

qtsp_status cmd_served_digest(const char *home, char out[72])
{
    out[0] = '\0';
    char path[QTSP_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/serve.lock", home);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return QTSP_OK; /* never served */
    int running = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    if (!running)
        return QTSP_OK;
    snprintf(path, sizeof path, "%s/serve.policy", home);
    FILE *f = fopen(path, "r");
    if (!f)
        return QTSP_OK; /* a server of an older version */
    char line[80] = "";
    if (fgets(line, sizeof line, f))
        line[strcspn(line, "\n")] = '\0';
    fclose(f);
    if (strncmp(line, "sha256:", 7) == 0 && strlen(line) == 71)
        memcpy(out, line, 72);
    return QTSP_OK;
}

qtsp_status cmd_record_served_digest(const qtsp_config *cfg)
{
    char d[72], path[QTSP_PATH_MAX + 16];
    TRY(cmd_policy_digest(cfg, d));
    d[71] = '\n';
    snprintf(path, sizeof path, "%s/serve.policy", cfg->home);
    return cmd_write_file(path, d, 72, 0644);
}

/* The CLI and the server never run with two different policies silently. */
static void warn_other_policies(const qtsp_config *cfg)
{
    char served[72], mine[72];
    if (cmd_served_digest(cfg->home, served) != QTSP_OK || !served[0] ||
        cmd_policy_digest(cfg, mine) != QTSP_OK) {
        qtsp_err_clear();
        return;
    }
    if (strcmp(served, mine) != 0)
        fprintf(stderr,
                "qtsp: warning: the server running on %s uses other policies than its files now "
                "hold (server %.19s..., files %.19s...): this command uses the files; reload "
                "the server (kill -HUP its pid, systemctl reload qtsp) to apply them there too\n",
                cfg->home, served, mine);
}

qtsp_status qtsp_app_open(const char *home, unsigned what, qtsp_app *app)
{
    memset(app, 0, sizeof *app);
    app->worker = -1;
    qtsp_status rc = qtsp_config_load(home, &app->cfg);
    if (rc != QTSP_OK)
        return rc;
    if (!(what & APP_NO_DIGEST_CHECK))
        warn_other_policies(&app->cfg);
    qtsp_log_set_format(app->cfg.log_json ? QTSP_LOG_JSON : QTSP_LOG_TEXT);
    if (what & APP_KEYS)
        what |= APP_HSM;
    if (what & APP_STORE) {
        char dir[QTSP_PATH_MAX];
        TRY_OUT(qtsp_config_path(&app->cfg, "store", dir, sizeof dir));
        TRY_OUT(qtsp_store_open(dir, (size_t)app->cfg.store_map_mib, &app->store));
    }
    if (what & APP_HSM)
        TRY_OUT(open_token(app));
    if (what & APP_KEYS)
        TRY_OUT(load_keys(app));
out:
    if (rc != QTSP_OK)
        qtsp_app_close(app);
    return rc;
}

void qtsp_app_close(qtsp_app *app)
{
    qtsp_key_free(app->root_key);
    qtsp_key_free(app->issuing_key);
    qtsp_key_free(app->ocsp_key);
    qtsp_key_free(app->tsa_key);
    qtsp_key_free(app->validation_key);
    X509_free(app->root);
    X509_free(app->issuing);
    X509_free(app->ocsp);
    X509_free(app->tsa);
    X509_free(app->validation);
    qtsp_hsm_free(app->hsm);
    qtsp_store_close(app->store);
    qtsp_config cfg = app->cfg;
    memset(app, 0, sizeof *app);
    app->cfg = cfg;
}

/* ---- files and keys shared by init and rekey ---- */

qtsp_status cmd_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    return qtsp_file_write_atomic(path, data, len, mode);
}

/* 128-bit positive serial from the CSPRNG (EN 319 412-1: at least 64 bits). */
qtsp_status cmd_write_pem(const char *path, X509 *const *certs, size_t n)
{
    BIO *bio = BIO_new(BIO_s_mem());
    ENSURE(bio != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    for (size_t i = 0; i < n; i++)
        ENSURE_OUT(PEM_write_bio_X509(bio, certs[i]) == 1, QTSP_ERR_CRYPTO, "PEM encoding failed");
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    TRY_OUT(cmd_write_file(path, data, (size_t)len, 0644));
out:
    BIO_free(bio);
    return rc;
}
