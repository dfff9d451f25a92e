/* qtsp: the command line. Each verb lives in cmd/<verb>.c; this file only
 * dispatches. Errors are one line "qtsp: <what>: <why>" on stderr.
 * `--home DIR` (or --home=DIR) may come before the verb too: it is moved
 * behind the verb's arguments, so every verb parses it in one place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "core/version.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} verbs[] = {
    {"init", cmd_init, "key ceremony: create a home, its token keys and certificates"},
    {"serve", cmd_serve, "run every service in one process"},
    {"operator", cmd_operator, "manage RA operators (add)"},
    {"audit", cmd_audit, "audit log (verify, list)"},
    {"subject", cmd_ra, "enrol a natural person (subject add --json FILE)"},
    {"issue", cmd_ra, "issue a qualified certificate for a subject"},
    {"status", cmd_ra, "show a certificate's status"},
    {"hold", cmd_ra, "suspend a certificate (lapses after max_hold)"},
    {"release", cmd_ra, "release a held certificate"},
    {"rekey", cmd_rekey, "new key and certificate for the OCSP responder or the TSA unit"},
    {"crl", cmd_crl, "crl publish: force new CRLs"},
    {"token", cmd_token, "token bench: the token's key-generation and signing rates"},
    {"terminate", cmd_ra, "revoke a certificate for good and destroy its key"},
    {"backup", cmd_backup, "hot copy of a home into one file (--with-token: token too, encrypted)"},
    {"restore", cmd_restore, "bring a backup back into a new home"},
    {"sign", cmd_sign_doc, "sign a file as CAdES or PAdES with a credential's key (tests, bench)"},
    {"validate", cmd_validate, "validate the signatures of a PDF or CMS file (JSON report)"},
    {"config", cmd_config, "config check: does every file of the home load"},
    {"rp", cmd_rp, "relying parties that pay for signings (add, list, report)"},
    {"signer", cmd_signer, "a signer's package, quota and signing history"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qtsp [--home DIR] <verb> [--home DIR] [options]   (qtsp <verb> --help)\n"
               "       qtsp --version\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].help);
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "qtsp: missing verb (see qtsp --help)\n");
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("qtsp %s\n", qtsp_version());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qtsp: %s: unknown verb (see qtsp --help)\n", argv[1]);
    return 2;
}

/* Moves a leading "--home DIR" / "--home=DIR" to the end (verbs with
 * sub-verbs read the sub-verb right after the verb, and every verb takes
 * its options anywhere after that): writes the new vector to out (argc + 1
 * slots) and returns its length, or -1 when the value or the verb is
 * missing. */
static int home_after_verb(int argc, char **argv, char **out)
{
    int take = strncmp(argv[1], "--home=", 7) == 0 ? 1 : 2;
    if (argc < 2 + take)
        return -1;
    int n = 0;
    out[n++] = argv[0];
    for (int i = 1 + take; i < argc; i++)
        out[n++] = argv[i];
    for (int i = 1; i < 1 + take; i++)
        out[n++] = argv[i];
    out[n] = NULL;
    return n;
}

int main(int argc, char **argv)
{
    char **moved = NULL;
    if (argc >= 2 && (strcmp(argv[1], "--home") == 0 || strncmp(argv[1], "--home=", 7) == 0)) {
        moved = calloc((size_t)argc + 1, sizeof *moved);
        if (!moved) {
            fprintf(stderr, "qtsp: out of memory\n");
            return 1;
        }
        argc = home_after_verb(argc, argv, moved);
        if (argc < 0) {
            free(moved);
            fprintf(stderr, "qtsp: --home needs a value and a verb (see qtsp --help)\n");
            return 2;
        }
        argv = moved;
    }
    int rc = run(argc, argv);
    free(moved);
    return rc;
}
