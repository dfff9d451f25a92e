/* What every verb needs: argument helpers, the error line, and the opened
 * home (configuration, store, token, CA certificates and keys). */
#ifndef QTSP_CMD_APP_H
#define QTSP_CMD_APP_H

#include <jansson.h>
#include <openssl/x509.h>
#include <sys/types.h>

#include "ca/hsm.h"
#include "ca/key.h"
#include "ca/store.h"
#include "core/config.h"
#include "core/err.h"

typedef struct qtsp_app {
    qtsp_config cfg;
    qtsp_store *store;
    qtsp_hsm *hsm;
    X509 *root, *issuing, *ocsp, *tsa;
    qtsp_key *root_key, *issuing_key, *ocsp_key, *tsa_key; /* token keys, certificates set */
    /* the validation service's (signs reports): NULL in a home made before
     * it (no public/validation.crt; `qtsp rekey validation` makes one) */
    X509 *validation;
    qtsp_key *validation_key;
    /* serve: this worker process's index (0 with one process), which names
     * its TSA journal file (store/tsa-wal-N); -1 elsewhere (no such file:
     * the journal goes straight to the store) */
    int worker;
} qtsp_app;

#define APP_STORE 1u /* open the store */
#define APP_HSM 2u   /* log in to the token */
#define APP_KEYS 4u  /* + load the CA/OCSP/TSA/validation keys and certificates (implies HSM) */
/* without the warning when a running server uses other policies (serve, config check) */
#define APP_NO_DIGEST_CHECK 8u

/* Opens the home. Fills app (zeroed first); on failure everything opened is
 * closed again. Unless APP_NO_DIGEST_CHECK: when a server runs on the home
 * with other policies than the files now hold (cmd_served_digest), prints a
 * warning on stderr saying so and how to reload it. */
qtsp_status qtsp_app_open(const char *home, unsigned what, qtsp_app *app) QTSP_MUST_USE;
void qtsp_app_close(qtsp_app *app);

/* The home from --home, else $QTSP_HOME, else ./qtsp-home. */
const char *cmd_default_home(void);

/* Matches argv[*i] against "--name VALUE" or "--name=VALUE"; on a match
 * stores the value, advances *i past it and returns 1. A missing value
 * prints a usage error and exits 2. */
int cmd_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* Prints "qtsp: <what>: <why>" with the thread's recorded failure and
 * returns 1. */
int cmd_fail(const char *what);

/* Prints o as one line of compact JSON on stdout and drops the reference
 * (o may be NULL). QTSP_ERR_NOMEM when o is NULL or cannot be encoded. */
qtsp_status cmd_print_json(json_t *o);

/* Prints "qtsp: <what>: <why>" and returns 2 (usage errors). */
int cmd_usage_error(const char *what, const char *why);

/* "user@host" of whoever runs the command (for audit actors). */
const char *cmd_actor(void);

/* Directory holding the shipped policies, the first of: $QTSP_POLICIES_DIR;
 * PREFIX/share/qtsp/policies next to the running binary's PREFIX/bin; the
 * configured install prefix's share/qtsp/policies; the source tree's
 * policies/. A static buffer: not thread-safe (the CLI's). */
const char *cmd_policies_dir(void);
/* The web portal's files (web/), found like the policies: $QTSP_WEB_DIR,
 * PREFIX/share/qtsp/web beside the binary, the install prefix's, the source
 * tree's web/. A static buffer: call once at start. */
const char *cmd_web_dir(void);

/* "sha256:<hex>" over qtsp.yaml and every policies/NAME.yaml (names and
 * contents, sorted by name) of cfg's home: what a server or a verb would
 * load (cmd/config_cmd.c). out holds 72 bytes. */
qtsp_status cmd_policy_digest(const qtsp_config *cfg, char out[72]) QTSP_MUST_USE;
/* The digest the server running on home recorded when it (re)loaded its
 * policies (DIR/serve.policy); "" when no server runs there. */
qtsp_status cmd_served_digest(const char *home, char out[72]) QTSP_MUST_USE;
/* Records cfg's current digest as the running server's (serve, after a
 * start or a reload). */
qtsp_status cmd_record_served_digest(const qtsp_config *cfg) QTSP_MUST_USE;

/* Loads DIR/public/<name> (PEM certificate). */
qtsp_status qtsp_app_load_cert(const qtsp_app *app, const char *name, X509 **out) QTSP_MUST_USE;

/* Path of DIR/policies/<file>. */
qtsp_status qtsp_app_policy(const qtsp_app *app, const char *file, char *out,
                            size_t cap) QTSP_MUST_USE;

/* The home's policies/<file>, or the shipped one (cmd_policies_dir) when a
 * home made before that policy existed has none. */
qtsp_status qtsp_app_policy_or_shipped(const qtsp_app *app, const char *file, char *out,
                                       size_t cap) QTSP_MUST_USE;

/* Writes data to path atomically (temp file created O_EXCL|O_NOFOLLOW,
 * fsync, rename) with mode. */
qtsp_status cmd_write_file(const char *path, const void *data, size_t len,
                           mode_t mode) QTSP_MUST_USE;
/* Writes certs as PEM to path (cmd_write_file, 0644). */
qtsp_status cmd_write_pem(const char *path, X509 *const *certs, size_t n) QTSP_MUST_USE;

#endif
