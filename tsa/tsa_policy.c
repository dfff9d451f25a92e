/* policies/tsa.yaml: what the TSA puts in tokens and what it accepts.
 *
 * version: 1
 * policy_oid: 0.4.0.2023.1.1       # TSTInfo.policy when the request names none
 * accepted_policies:               # reqPolicy values granted (policy_oid always is)
 *   - 0.4.0.2023.1.1
 * accuracy: {seconds: 1}           # or {millis: N}, 1..999; at most 1 s (EN 319 422 7.3)
 * hash_algorithms: [sha256, sha384, sha512, sha3-256, sha3-384, sha3-512]
 * clock:
 *   require_sync: true             # adjtimex says unsynchronised -> timeNotAvailable
 */
#include <openssl/objects.h>
#include <string.h>

#include "core/yaml.h"
#include "tsa/tsa_int.h"

void qtsp_tsa_policy_defaults(qtsp_tsa_policy *pol)
{
    memset(pol, 0, sizeof *pol);
    /* 0.4.0.2023.1.1: ETSI EN 319 421 baseline time-stamp policy (BTSP). */
    static const unsigned char baseline[] = {0x06, 0x06, 0x04, 0x00, 0x8f, 0x67, 0x01, 0x01};
    memcpy(pol->oid, baseline, sizeof baseline);
    pol->oid_len = sizeof baseline;
    memcpy(pol->accepted[0], baseline, sizeof baseline);
    pol->accepted_len[0] = sizeof baseline;
    pol->n_accepted = 1;
    pol->accuracy_ms = 1000;
    pol->hash_mask = (1u << QTSP_TSA_H__COUNT) - 1;
    pol->require_sync = 1;
}

static qtsp_status oid_der(const char *dotted, unsigned char *out, size_t *len)
{
    qtsp_status rc = QTSP_OK;
    ASN1_OBJECT *obj = NULL;
    unsigned char *der = NULL;
    ENSURE(dotted && *dotted >= '0' && *dotted <= '2', QTSP_ERR_INVALID, "'%s' is not a dotted OID",
           dotted ? dotted : "");
    for (const char *p = dotted; *p; p++)
        ENSURE((*p >= '0' && *p <= '9') || *p == '.', QTSP_ERR_INVALID, "'%s' is not a dotted OID",
               dotted);
    obj = OBJ_txt2obj(dotted, 1);
    ENSURE_OUT(obj != NULL, QTSP_ERR_INVALID, "'%s' is not a valid OID", dotted);
    int n = i2d_ASN1_OBJECT(obj, &der);
    ENSURE_OUT(n > 2 && n <= QTSP_TSA_MAX_OID, QTSP_ERR_TOO_BIG, "OID '%s' is too long", dotted);
    memcpy(out, der, (size_t)n);
    *len = (size_t)n;
out:
    OPENSSL_free(der);
    ASN1_OBJECT_free(obj);
    return rc;
}

qtsp_status qtsp_tsa_policy_add_oid(qtsp_tsa_policy *pol, const char *dotted)
{
    unsigned char der[QTSP_TSA_MAX_OID];
    size_t n = 0;
    TRY(oid_der(dotted, der, &n));
    for (size_t i = 0; i < pol->n_accepted; i++)
        if (pol->accepted_len[i] == n && memcmp(pol->accepted[i], der, n) == 0)
            return QTSP_OK;
    ENSURE(pol->n_accepted < QTSP_TSA_MAX_POLICIES, QTSP_ERR_TOO_BIG,
           "at most %d accepted policies", QTSP_TSA_MAX_POLICIES);
    memcpy(pol->accepted[pol->n_accepted], der, n);
    pol->accepted_len[pol->n_accepted++] = n;
    return QTSP_OK;
}

static qtsp_status load_root(const qtsp_ynode *root, qtsp_tsa_policy *pol)
{
    static const char *const keys[] = {
        "version", "policy_oid", "accepted_policies", "accuracy", "hash_algorithms", "clock", NULL};
    TRY(qtsp_ynode_check_keys(root, keys));
    int64_t version = 1;
    TRY(qtsp_yget_int(root, "version", 1, 1, 1, &version));

    const char *oid = NULL;
    TRY(qtsp_yget_str(root, "policy_oid", 1, &oid));
    pol->n_accepted = 0;
    if (qtsp_tsa_policy_add_oid(pol, oid) != QTSP_OK) {
        qtsp_err_clear();
        return qtsp_ynode_fail(qtsp_ynode_get(root, "policy_oid"), "policy_oid",
                               "'%s' is not a dotted OID", oid);
    }
    memcpy(pol->oid, pol->accepted[0], pol->accepted_len[0]);
    pol->oid_len = pol->accepted_len[0];

    const qtsp_ynode *acc = qtsp_ynode_get(root, "accepted_policies");
    if (acc) {
        if (qtsp_ynode_kind(acc) != QTSP_Y_SEQ)
            return qtsp_ynode_fail(acc, "accepted_policies", "must be a list of OIDs");
        for (size_t i = 0; i < qtsp_ynode_count(acc); i++) {
            const qtsp_ynode *it = qtsp_ynode_item(acc, i);
            const char *s = qtsp_ynode_scalar(it);
            if (!s || qtsp_tsa_policy_add_oid(pol, s) != QTSP_OK) {
                qtsp_err_clear();
                return qtsp_ynode_fail(it, "accepted_policies", "must be dotted OIDs, at most %d",
                                       QTSP_TSA_MAX_POLICIES);
            }
        }
    }

    const qtsp_ynode *a = qtsp_ynode_get(root, "accuracy");
    if (a) {
        static const char *const akeys[] = {"seconds", "millis", NULL};
        TRY(qtsp_ynode_check_keys(a, akeys));
        int64_t secs = -1, millis = -1;
        TRY(qtsp_yget_int(a, "seconds", 0, 1, 1, &secs));
        TRY(qtsp_yget_int(a, "millis", 0, 1, 999, &millis));
        if ((secs < 0) == (millis < 0))
            return qtsp_ynode_fail(a, "accuracy",
                                   "give either seconds: 1 or millis: 1..999 (at most 1 s)");
        pol->accuracy_ms = secs > 0 ? 1000u : (unsigned)millis;
    }

    const qtsp_ynode *h = qtsp_ynode_get(root, "hash_algorithms");
    if (h) {
        if (qtsp_ynode_kind(h) != QTSP_Y_SEQ || qtsp_ynode_count(h) == 0)
            return qtsp_ynode_fail(h, "hash_algorithms", "must be a non-empty list");
        pol->hash_mask = 0;
        for (size_t i = 0; i < qtsp_ynode_count(h); i++) {
            const qtsp_ynode *it = qtsp_ynode_item(h, i);
            const char *s = qtsp_ynode_scalar(it);
            int found = -1;
            for (int k = 0; s && k < QTSP_TSA_H__COUNT; k++)
                if (strcmp(s, qtsp_tsa_hash_name((qtsp_tsa_hash)k)) == 0)
                    found = k;
            if (found < 0)
                return qtsp_ynode_fail(it, "hash_algorithms",
                                       "'%s' is not one of sha256, sha384, sha512, sha3-256, "
                                       "sha3-384, sha3-512 (MD5 and SHA-1 are never accepted)",
                                       s ? s : "");
            pol->hash_mask |= 1u << found;
        }
    }

    const qtsp_ynode *c = qtsp_ynode_get(root, "clock");
    if (c) {
        static const char *const ckeys[] = {"require_sync", NULL};
        TRY(qtsp_ynode_check_keys(c, ckeys));
        TRY(qtsp_yget_bool(c, "require_sync", 0, &pol->require_sync));
    }
    return QTSP_OK;
}

qtsp_status qtsp_tsa_policy_load(const char *path, qtsp_tsa_policy *pol)
{
    qtsp_ydoc *doc = NULL;
    qtsp_tsa_policy p;
    qtsp_tsa_policy_defaults(&p);
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = load_root(qtsp_ydoc_root(doc), &p);
    qtsp_ydoc_free(doc);
    if (rc == QTSP_OK)
        *pol = p;
    return rc;
}
