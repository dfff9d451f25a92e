/* CRL policy (policies/crl.yaml); see ca/crl.h. */
#include "ca/crl_int.h"

#include <string.h>

#include "core/yaml.h"

/* id-holdinstruction-none/callissuer/reject: 1.2.840.10040.2.{1,2,3} */
static const unsigned char oid_hold_base[6] = {0x2a, 0x86, 0x48, 0xce, 0x38, 0x02};

/* ---------------------------------------------------------------- policy */

void qtsp_crl_policy_defaults(qtsp_crl_policy *pol)
{
    memset(pol, 0, sizeof *pol);
    pol->next_update = 24 * 3600;
    pol->publish_interval = 3600;
    pol->debounce = 2;
    pol->http_max_age = 60;
    memcpy(pol->hold_oid, oid_hold_base, sizeof oid_hold_base);
    pol->hold_oid[sizeof oid_hold_base] = 2; /* callissuer */
    pol->hold_oid_len = sizeof oid_hold_base + 1;
    pol->delta = 1;
}

qtsp_status qtsp_crl_policy_load(const char *path, qtsp_crl_policy *out)
{
    static const char *const keys[] = {
        "next_update", "publish_interval", "debounce", "http_max_age", "hold_instruction", "delta",
        NULL};
    qtsp_crl_policy pol;
    qtsp_crl_policy_defaults(&pol);
    qtsp_ydoc *doc = NULL;
    qtsp_status rc;
    TRY_OUT(qtsp_ydoc_load_file(path, &doc));
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    TRY_OUT(qtsp_yget_duration(root, "next_update", 0, &pol.next_update));
    TRY_OUT(qtsp_yget_duration(root, "publish_interval", 0, &pol.publish_interval));
    TRY_OUT(qtsp_yget_duration(root, "debounce", 0, &pol.debounce));
    TRY_OUT(qtsp_yget_duration(root, "http_max_age", 0, &pol.http_max_age));
    TRY_OUT(qtsp_yget_bool(root, "delta", 0, &pol.delta));
    const qtsp_ynode *n;
    /* EN 319 411-1 CSS-6.3.9-05: nextUpdate at most 24 h after thisUpdate */
    if (pol.next_update < 1 || pol.next_update > 24 * 3600) {
        n = qtsp_ynode_get(root, "next_update");
        rc = qtsp_ynode_fail(n ? n : root, "next_update", "must be between 1s and 24h");
        goto out;
    }
    if (pol.publish_interval < 1 || pol.publish_interval >= pol.next_update) {
        n = qtsp_ynode_get(root, "publish_interval");
        rc = qtsp_ynode_fail(n ? n : root, "publish_interval",
                             "must be at least 1s and less than next_update");
        goto out;
    }
    if (pol.debounce < 0 || pol.debounce > 60) {
        n = qtsp_ynode_get(root, "debounce");
        rc = qtsp_ynode_fail(n ? n : root, "debounce", "must be between 0s and 60s");
        goto out;
    }
    if (pol.http_max_age < 0 || pol.http_max_age > 3600) {
        n = qtsp_ynode_get(root, "http_max_age");
        rc = qtsp_ynode_fail(n ? n : root, "http_max_age", "must be between 0s and 1h");
        goto out;
    }
    const char *hold = NULL;
    TRY_OUT(qtsp_yget_str(root, "hold_instruction", 0, &hold));
    if (hold) {
        unsigned char last;
        if (strcmp(hold, "none") == 0)
            last = 1;
        else if (strcmp(hold, "callissuer") == 0)
            last = 2;
        else if (strcmp(hold, "reject") == 0)
            last = 3;
        else {
            rc = qtsp_ynode_fail(qtsp_ynode_get(root, "hold_instruction"), "hold_instruction",
                                 "must be none, callissuer or reject");
            goto out;
        }
        pol.hold_oid[sizeof oid_hold_base] = last;
    }
    *out = pol;
    rc = QTSP_OK;
out:
    qtsp_ydoc_free(doc);
    return rc;
}
