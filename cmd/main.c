/* qtsp: the command line. Each verb lives in cmd/<verb>.c; this file only
 * dispatches. Errors are one line "qtsp: <what>: <why>" on stderr. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

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
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qtsp <verb> [--home DIR] [options]   (qtsp <verb> --help)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "qtsp: missing verb (see qtsp --help)\n");
        return 2;
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
