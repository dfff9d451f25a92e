/* DIR/qtsp.yaml: the home's configuration. Only loaded at start; immutable
 * afterwards and safe to share between threads. Unknown keys are errors.
 *
 * version: 1
 * base_url: http://127.0.0.1:8080
 * listen: 127.0.0.1:8080
 * hsm:
 *   module: /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
 *   token_label: qtsp
 *   embedded: true            # SoftHSM2 token under DIR/hsm (softhsm2.conf there)
 *   pin_file: secrets/token.pin   # relative to DIR; QTSP_TOKEN_PIN overrides
 * keys:                       # labels of the ceremony keys in the token
 *   root_ca: qtsp-root-ca
 *   issuing_ca: qtsp-issuing-ca
 *   ocsp: qtsp-ocsp
 *   tsa: qtsp-tsa
 * store:
 *   map_size: 1024            # MiB, initial; grows when full
 * http:
 *   processes: 0              # serve processes sharing the port; 0 (default) = one per core
 *   workers: 0                # threads per process; 0 = cores / processes (at least 1)
 *   connection_timeout: 30s
 *   trusted_proxies: [127.0.0.1] # peers whose X-Real-IP is logged as the client
 * log:
 *   format: text              # or json
 */
#ifndef QTSP_CORE_CONFIG_H
#define QTSP_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QTSP_PATH_MAX 1024

#define QTSP_CONFIG_PROXIES_MAX 8

typedef struct qtsp_config {
    char home[QTSP_PATH_MAX]; /* absolute */
    char base_url[256];       /* no trailing slash */
    char listen[128];         /* host:port */
    char hsm_module[QTSP_PATH_MAX];
    char token_label[33]; /* PKCS#11 labels are 32 bytes */
    int hsm_embedded;
    char pin_file[QTSP_PATH_MAX]; /* absolute */
    char key_root[64], key_issuing[64], key_ocsp[64], key_tsa[64];
    char key_validation[64]; /* signs validation reports; optional in old homes */
    int64_t store_map_mib;
    int64_t http_processes; /* resolved: never 0 after load */
    int64_t http_workers;   /* resolved: never 0 after load */
    int http_workers_auto;  /* workers was 0/absent: cores / processes */
    int64_t http_conn_timeout_s;
    /* http.trusted_proxies: peers whose X-Real-IP names the client in the
     * access log (the TLS front, deploy/nginx); normalised text */
    char http_trusted_proxies[QTSP_CONFIG_PROXIES_MAX][46];
    size_t http_n_trusted_proxies;
    int64_t http_per_address;     /* connections per client address; 0 = no limit */
    int64_t http_max_connections; /* per process */
    int http_fast_lane;           /* POST /ocsp and /tsa on the fast lane (core/http.h) */
    int http_io_uring;            /* the lane writes a round's answers in one submission */
    int log_json;
} qtsp_config;

/* Sets the process count (0 = number of cores, at most 64) and, when workers were left
 * automatic, workers = cores / processes (at least 1). */
void qtsp_config_set_processes(qtsp_config *cfg, int64_t processes);

/* Fills cfg with the defaults for home (absolute or relative to the cwd). */
void qtsp_config_defaults(qtsp_config *cfg, const char *home);

/* Loads DIR/qtsp.yaml over the defaults. QTSP_ERR_NOT_FOUND when the home is
 * not initialised (message says to run qtsp init); QTSP_ERR_CONFIG naming
 * file:line:col and the key otherwise. */
qtsp_status qtsp_config_load(const char *home, qtsp_config *cfg) QTSP_MUST_USE;

/* Writes cfg as DIR/qtsp.yaml (mode 0644). */
qtsp_status qtsp_config_save(const qtsp_config *cfg) QTSP_MUST_USE;

/* Reads the token PIN: $QTSP_TOKEN_PIN if set, else the first line of
 * cfg->pin_file. pin must hold cap bytes; wipe it after use. */
qtsp_status qtsp_config_read_pin(const qtsp_config *cfg, char *pin, size_t cap) QTSP_MUST_USE;

/* Warns (log, one line each) when others than the owner can read the token
 * PIN file, or reach secrets/, hsm/ or store/, or write the home itself:
 * whoever reads the PIN can use the CA keys outside qtsp, unseen by its
 * audit (docs/security.md). Returns the number of warnings. Never fails. */
int qtsp_config_warn_exposed(const qtsp_config *cfg);

/* Joins home and a relative path into out. QTSP_ERR_TOO_BIG if it does not fit. */
qtsp_status qtsp_config_path(const qtsp_config *cfg, const char *rel, char *out,
                             size_t cap) QTSP_MUST_USE;

#endif
