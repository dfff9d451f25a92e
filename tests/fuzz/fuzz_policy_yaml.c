/* libFuzzer target for the YAML the server reads: core/yaml (one parser for
 * every file) and the loaders on top of it: qtsp.yaml (core/config), a
 * certificate profile (ca/profile), policies/crl.yaml (ca/crl_policy) and
 * policies/tsa.yaml (tsa), policies/packages.yaml (sign/usage). The input is written to a file in a
 * private folder (the loaders take paths) and given to each; any input must be loaded or refused
 * with an error, never crash or leak. Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh
 * runs it; seeds: the shipped files (tests/fuzz/corpus/fuzz_policy_yaml). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/crl.h"
#include "ca/profile.h"
#include "core/config.h"
#include "core/log.h"
#include "core/yaml.h"
#include "sign/usage.h"
#include "tsa/tsa_int.h"

static char g_dir[256], g_file[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR + 1); /* loaders report refusals; not wanted here */
    snprintf(g_dir, sizeof g_dir, "%s/qtsp-fuzz-yaml-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_dir))
        abort();
    snprintf(g_file, sizeof g_file, "%s/qtsp.yaml", g_dir);
    return 0;
}

static void walk(const qtsp_ynode *n, int depth)
{
    if (!n || depth > 64)
        return;
    (void)qtsp_ynode_scalar(n);
    size_t c = qtsp_ynode_count(n);
    for (size_t i = 0; i < c; i++) {
        walk(qtsp_ynode_item(n, i), depth + 1);
        if (qtsp_ynode_key(n, i))
            walk(qtsp_ynode_value(n, i), depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qtsp_err_clear();
    qtsp_ydoc *doc = NULL;
    if (qtsp_ydoc_load_string("fuzz.yaml", (const char *)data, size, &doc) == QTSP_OK) {
        walk(qtsp_ydoc_root(doc), 0);
        qtsp_ydoc_free(doc);
    }
    FILE *f = fopen(g_file, "wb");
    if (!f)
        abort();
    if (size)
        fwrite(data, 1, size, f);
    fclose(f);
    qtsp_err_clear();
    qtsp_config cfg;
    (void)qtsp_config_load(g_dir, &cfg);
    qtsp_err_clear();
    qtsp_profile *p = NULL;
    if (qtsp_profile_load(g_file, &p) == QTSP_OK)
        qtsp_profile_free(p);
    qtsp_err_clear();
    qtsp_crl_policy cp;
    qtsp_crl_policy_defaults(&cp);
    (void)qtsp_crl_policy_load(g_file, &cp);
    qtsp_err_clear();
    qtsp_tsa_policy tp;
    qtsp_tsa_policy_defaults(&tp);
    (void)qtsp_tsa_policy_load(g_file, &tp);
    qtsp_err_clear();
    qtsp_packages pk;
    (void)qtsp_packages_load(g_file, &pk);
    qtsp_err_clear();
    return 0;
}
