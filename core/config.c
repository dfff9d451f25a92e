/* DIR/qtsp.yaml loader and writer (schema in core/config.h). */
#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/http.h"
#include "core/log.h"
#include "core/yaml.h"

#define DEFAULT_MODULE "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* in made absolute against the working directory; "" when it does not
 * fit (qtsp_config_load refuses that home). */
static void make_absolute(const char *in, char *out, size_t cap)
{
    if (in[0] == '/') {
        copy_str(out, cap, in);
        if (strlen(in) >= cap)
            out[0] = '\0';
        return;
    }
    char cwd[QTSP_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        copy_str(cwd, sizeof cwd, ".");
    int n =
        strcmp(in, ".") == 0 ? snprintf(out, cap, "%s", cwd) : snprintf(out, cap, "%s/%s", cwd, in);
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0';
}

void qtsp_config_set_processes(qtsp_config *cfg, int64_t processes)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 2;
    /* 0 = one per core, at most the 64 that serve supports (more cores
     * would otherwise make `serve` refuse its own default) */
    cfg->http_processes = processes > 0 ? processes : cores < 64 ? cores : 64;
    if (cfg->http_workers_auto) {
        long w = cores / (long)cfg->http_processes;
        cfg->http_workers = w > 0 ? w : 1;
    }
}

/* http.trusted_proxies: a list of IPv4/IPv6 addresses, kept normalised. */
static qtsp_status load_trusted_proxies(qtsp_config *cfg, const qtsp_ynode *list)
{
    if (!list)
        return QTSP_OK;
    size_t n = qtsp_ynode_count(list);
    if (qtsp_ynode_scalar(list) || n > QTSP_CONFIG_PROXIES_MAX)
        return qtsp_ynode_fail(list, "trusted_proxies", "must be a list of at most %d addresses",
                               QTSP_CONFIG_PROXIES_MAX);
    for (size_t i = 0; i < n; i++) {
        const qtsp_ynode *it = qtsp_ynode_item(list, i);
        const char *a = qtsp_ynode_scalar(it);
        if (!qtsp_http_ip_normalize(a, cfg->http_trusted_proxies[i]))
            return qtsp_ynode_fail(it, "trusted_proxies", "%s is not an IP address",
                                   a ? a : "(not a scalar)");
    }
    cfg->http_n_trusted_proxies = n;
    return QTSP_OK;
}

void qtsp_config_defaults(qtsp_config *cfg, const char *home)
{
    memset(cfg, 0, sizeof *cfg);
    make_absolute(home, cfg->home, sizeof cfg->home);
    size_t n = strlen(cfg->home);
    while (n > 1 && cfg->home[n - 1] == '/')
        cfg->home[--n] = '\0';
    copy_str(cfg->base_url, sizeof cfg->base_url, "http://127.0.0.1:8080");
    copy_str(cfg->listen, sizeof cfg->listen, "127.0.0.1:8080");
    copy_str(cfg->hsm_module, sizeof cfg->hsm_module, DEFAULT_MODULE);
    copy_str(cfg->token_label, sizeof cfg->token_label, "qtsp");
    cfg->hsm_embedded = 1;
    int pn = snprintf(cfg->pin_file, sizeof cfg->pin_file, "%s/secrets/token.pin", cfg->home);
    if (pn < 0 || (size_t)pn >= sizeof cfg->pin_file)
        cfg->home[0] = '\0'; /* too long for the paths under it: qtsp_config_load refuses it */
    copy_str(cfg->key_root, sizeof cfg->key_root, "qtsp-root-ca");
    copy_str(cfg->key_issuing, sizeof cfg->key_issuing, "qtsp-issuing-ca");
    copy_str(cfg->key_ocsp, sizeof cfg->key_ocsp, "qtsp-ocsp");
    copy_str(cfg->key_tsa, sizeof cfg->key_tsa, "qtsp-tsa");
    copy_str(cfg->key_validation, sizeof cfg->key_validation, "qtsp-validation");
    cfg->store_map_mib = 1024;
    cfg->http_workers_auto = 1;
    qtsp_config_set_processes(cfg, 0); /* one worker process per core */
    cfg->http_conn_timeout_s = 30;
    cfg->http_per_address = 512;
    cfg->http_max_connections = 4096;
    cfg->http_fast_lane = 1;
    cfg->http_io_uring = 1;
    cfg->log_json = 0;
}

qtsp_status qtsp_config_path(const qtsp_config *cfg, const char *rel, char *out, size_t cap)
{
    int n =
        rel[0] == '/' ? snprintf(out, cap, "%s", rel) : snprintf(out, cap, "%s/%s", cfg->home, rel);
    ENSURE(n > 0 && (size_t)n < cap, QTSP_ERR_TOO_BIG, "path too long under %s", cfg->home);
    return QTSP_OK;
}

/* Copies a string value into a fixed field, failing when it does not fit. */
static qtsp_status get_field(const qtsp_ynode *map, const char *key, char *dst, size_t cap)
{
    const char *v = NULL;
    TRY(qtsp_yget_str(map, key, 0, &v));
    if (!v)
        return QTSP_OK;
    if (strlen(v) >= cap || v[0] == '\0')
        return qtsp_ynode_fail(qtsp_ynode_get(map, key), key, "must be 1..%zu characters", cap - 1);
    copy_str(dst, cap, v);
    return QTSP_OK;
}

static qtsp_status load_doc(const qtsp_ydoc *doc, qtsp_config *cfg)
{
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const top[] = {"version", "base_url", "listen", "hsm", "keys",
                                      "store",   "http",     "log",    NULL};
    TRY(qtsp_ynode_check_keys(root, top));
    int64_t version = 1;
    TRY(qtsp_yget_int(root, "version", 1, 1, 1, &version));
    TRY(get_field(root, "base_url", cfg->base_url, sizeof cfg->base_url));
    size_t bl = strlen(cfg->base_url);
    while (bl > 0 && cfg->base_url[bl - 1] == '/')
        cfg->base_url[--bl] = '\0';
    if (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0)
        return qtsp_ynode_fail(qtsp_ynode_get(root, "base_url"), "base_url",
                               "must start with http:// or https://");
    TRY(get_field(root, "listen", cfg->listen, sizeof cfg->listen));

    const qtsp_ynode *hsm = qtsp_ynode_get(root, "hsm");
    if (hsm) {
        static const char *const k[] = {"module", "token_label", "embedded", "pin_file", NULL};
        TRY(qtsp_ynode_check_keys(hsm, k));
        TRY(get_field(hsm, "module", cfg->hsm_module, sizeof cfg->hsm_module));
        TRY(get_field(hsm, "token_label", cfg->token_label, sizeof cfg->token_label));
        TRY(qtsp_yget_bool(hsm, "embedded", 0, &cfg->hsm_embedded));
        char pin[QTSP_PATH_MAX] = "";
        TRY(get_field(hsm, "pin_file", pin, sizeof pin));
        if (pin[0])
            TRY(qtsp_config_path(cfg, pin, cfg->pin_file, sizeof cfg->pin_file));
    }
    const qtsp_ynode *keys = qtsp_ynode_get(root, "keys");
    if (keys) {
        static const char *const k[] = {"root_ca", "issuing_ca", "ocsp", "tsa", "validation", NULL};
        TRY(qtsp_ynode_check_keys(keys, k));
        TRY(get_field(keys, "root_ca", cfg->key_root, sizeof cfg->key_root));
        TRY(get_field(keys, "issuing_ca", cfg->key_issuing, sizeof cfg->key_issuing));
        TRY(get_field(keys, "ocsp", cfg->key_ocsp, sizeof cfg->key_ocsp));
        TRY(get_field(keys, "tsa", cfg->key_tsa, sizeof cfg->key_tsa));
        TRY(get_field(keys, "validation", cfg->key_validation, sizeof cfg->key_validation));
    }
    const qtsp_ynode *store = qtsp_ynode_get(root, "store");
    if (store) {
        static const char *const k[] = {"map_size", NULL};
        TRY(qtsp_ynode_check_keys(store, k));
        TRY(qtsp_yget_int(store, "map_size", 0, 16, 1 << 22, &cfg->store_map_mib));
    }
    const qtsp_ynode *http = qtsp_ynode_get(root, "http");
    if (http) {
        static const char *const k[] = {"processes",
                                        "workers",
                                        "connection_timeout",
                                        "trusted_proxies",
                                        "connections_per_address",
                                        "max_connections",
                                        "fast_lane",
                                        "io_uring",
                                        NULL};
        TRY(qtsp_ynode_check_keys(http, k));
        int64_t w = -1, procs = 0; /* absent: one process per core */
        TRY(qtsp_yget_int(http, "workers", 0, 0, 256, &w));
        if (w > 0) {
            cfg->http_workers = w;
            cfg->http_workers_auto = 0;
        }
        TRY(qtsp_yget_int(http, "processes", 0, 0, 64, &procs));
        qtsp_config_set_processes(cfg, procs);
        TRY(qtsp_yget_duration(http, "connection_timeout", 0, &cfg->http_conn_timeout_s));
        TRY(load_trusted_proxies(cfg, qtsp_ynode_get(http, "trusted_proxies")));
        TRY(qtsp_yget_int(http, "connections_per_address", 0, 0, 1 << 20, &cfg->http_per_address));
        TRY(qtsp_yget_int(http, "max_connections", 0, 16, 1 << 20, &cfg->http_max_connections));
        TRY(qtsp_yget_bool(http, "fast_lane", 0, &cfg->http_fast_lane));
        TRY(qtsp_yget_bool(http, "io_uring", 0, &cfg->http_io_uring));
    }
    const qtsp_ynode *log = qtsp_ynode_get(root, "log");
    if (log) {
        static const char *const k[] = {"format", NULL};
        TRY(qtsp_ynode_check_keys(log, k));
        const char *f = NULL;
        TRY(qtsp_yget_str(log, "format", 0, &f));
        if (f && strcmp(f, "json") == 0)
            cfg->log_json = 1;
        else if (f && strcmp(f, "text") != 0)
            return qtsp_ynode_fail(qtsp_ynode_get(log, "format"), "format", "must be text or json");
    }
    return QTSP_OK;
}

qtsp_status qtsp_config_load(const char *home, qtsp_config *cfg)
{
    qtsp_config tmp;
    qtsp_config_defaults(&tmp, home);
    ENSURE(tmp.home[0], QTSP_ERR_TOO_BIG, "the home path is too long: %s", home);
    char path[QTSP_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/qtsp.yaml", tmp.home);
    struct stat sb;
    ENSURE(stat(tmp.home, &sb) == 0 && S_ISDIR(sb.st_mode), QTSP_ERR_NOT_FOUND,
           "no home folder at %s; create one with: qtsp init --home %s", tmp.home, tmp.home);
    ENSURE(stat(path, &sb) == 0, QTSP_ERR_NOT_FOUND,
           "%s is not initialised (no qtsp.yaml); run: qtsp init --home %s", tmp.home, tmp.home);
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = load_doc(doc, &tmp);
    qtsp_ydoc_free(doc);
    if (rc == QTSP_OK)
        *cfg = tmp;
    return rc;
}

qtsp_status qtsp_config_save(const qtsp_config *cfg)
{
    char path[QTSP_PATH_MAX + 16], tmp[QTSP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/qtsp.yaml", cfg->home);
    snprintf(tmp, sizeof tmp, "%s/.qtsp.yaml.tmp", cfg->home);
    /* pin_file is written relative to the home when it lives inside it */
    const char *pin = cfg->pin_file;
    size_t hl = strlen(cfg->home);
    if (strncmp(pin, cfg->home, hl) == 0 && pin[hl] == '/')
        pin += hl + 1;
    FILE *f = fopen(tmp, "w");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f,
            "# qtsp configuration (see docs/configuration.md). Unknown keys are errors.\n"
            "version: 1\n"
            "base_url: %s\n"
            "listen: %s\n"
            "hsm:\n"
            "  module: %s\n"
            "  token_label: %s\n"
            "  embedded: %s\n"
            "  pin_file: %s\n"
            "keys:\n"
            "  root_ca: %s\n"
            "  issuing_ca: %s\n"
            "  ocsp: %s\n"
            "  tsa: %s\n"
            "  validation: %s\n"
            "store:\n"
            "  map_size: %lld\n"
            "http:\n"
            "  processes: 0\n"
            "  workers: 0\n"
            "  connection_timeout: %llds\n"
            "log:\n"
            "  format: %s\n",
            cfg->base_url, cfg->listen, cfg->hsm_module, cfg->token_label,
            cfg->hsm_embedded ? "true" : "false", pin, cfg->key_root, cfg->key_issuing,
            cfg->key_ocsp, cfg->key_tsa, cfg->key_validation, (long long)cfg->store_map_mib,
            (long long)cfg->http_conn_timeout_s, cfg->log_json ? "json" : "text");
    int bad = ferror(f);
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    ENSURE(!bad, QTSP_ERR_IO, "cannot write %s", tmp);
    ENSURE(rename(tmp, path) == 0, QTSP_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
    return QTSP_OK;
}

qtsp_status qtsp_config_read_pin(const qtsp_config *cfg, char *pin, size_t cap)
{
    const char *env = getenv("QTSP_TOKEN_PIN");
    if (env && *env) {
        ENSURE(strlen(env) < cap, QTSP_ERR_TOO_BIG, "QTSP_TOKEN_PIN too long");
        copy_str(pin, cap, env);
        return QTSP_OK;
    }
    int fd = open(cfg->pin_file, O_RDONLY | O_CLOEXEC);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot read the token PIN from %s: %s (or set QTSP_TOKEN_PIN)",
           cfg->pin_file, strerror(errno));
    ssize_t n = read(fd, pin, cap - 1);
    close(fd);
    ENSURE(n > 0, QTSP_ERR_IO, "token PIN file %s is empty", cfg->pin_file);
    pin[n] = '\0';
    pin[strcspn(pin, "\r\n")] = '\0';
    ENSURE(pin[0] != '\0', QTSP_ERR_INVALID, "token PIN file %s is empty", cfg->pin_file);
    return QTSP_OK;
}

/* mode bits of path that are in mask, or 0 when it cannot be read. */
static unsigned exposed_bits(const char *path, unsigned mask, unsigned *mode)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    *mode = (unsigned)sb.st_mode & 07777;
    return (unsigned)sb.st_mode & mask;
}

int qtsp_config_warn_exposed(const qtsp_config *cfg)
{
    int n = 0;
    unsigned mode = 0;
    const char *env = getenv("QTSP_TOKEN_PIN");
    if (!(env && *env) && exposed_bits(cfg->pin_file, S_IRWXG | S_IRWXO, &mode)) {
        LOG_WARN("token PIN file %s is readable by others (mode %04o): whoever reads it can use "
                 "the CA keys outside qtsp, unseen by its audit; chmod 600 it (docs/security.md)",
                 cfg->pin_file, mode);
        n++;
    }
    static const char *const dirs[] = {"secrets", "hsm", "store"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[QTSP_PATH_MAX];
        if (qtsp_config_path(cfg, dirs[i], path, sizeof path) != QTSP_OK) {
            qtsp_err_clear();
            continue;
        }
        if (exposed_bits(path, S_IRWXG | S_IRWXO, &mode)) {
            LOG_WARN("%s is readable by others (mode %04o): chmod 700 it (docs/security.md)", path,
                     mode);
            n++;
        }
    }
    if (exposed_bits(cfg->home, S_IWGRP | S_IWOTH, &mode)) {
        LOG_WARN("home %s is writable by others (mode %04o): chmod go-w it (docs/security.md)",
                 cfg->home, mode);
        n++;
    }
    return n;
}
