/* Keys by label without enumerating the token (see ca/hsm_int.h): searches,
 * attribute reads, and the in-memory key index with its rescans. */
#include "ca/hsm_int.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

/* ---------- object lookup ---------- */

/* Finds up to max objects of class cls (or any class when cls is
 * CK_UNAVAILABLE_INFORMATION) with label. *n gets how many were found. */
qtsp_status hsm_find_by_label(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                              CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *objs, CK_ULONG max,
                              CK_ULONG *n)
{
    CK_ATTRIBUTE tmpl[2] = {
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_CLASS, &cls, sizeof cls},
    };
    CK_ULONG nt = cls == CK_UNAVAILABLE_INFORMATION ? 1 : 2;
    CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, nt);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", hsm_ckr_name(rv));
    rv = hsm->fl->C_FindObjects(s, objs, max, n);
    hsm->fl->C_FindObjectsFinal(s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", hsm_ckr_name(rv));
    return QTSP_OK;
}

/* The one object of class cls with label; QTSP_ERR_HSM_NO_KEY if none. */
static qtsp_status find_one(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                            CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;
    TRY(hsm_find_by_label(hsm, s, label, cls, objs, 2, &n));
    ENSURE(n > 0, QTSP_ERR_HSM_NO_KEY, "no %s key labelled '%s' in the token",
           cls == CKO_PRIVATE_KEY ? "private" : "public", label);
    ENSURE(n == 1, QTSP_ERR_HSM, "several %s keys are labelled '%s'",
           cls == CKO_PRIVATE_KEY ? "private" : "public", label);
    *out = objs[0];
    return QTSP_OK;
}

static qtsp_status get_ulong(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                             CK_ATTRIBUTE_TYPE type, const char *name, CK_ULONG *out)
{
    CK_ULONG v = 0;
    CK_ATTRIBUTE a = {type, &v, sizeof v};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, o, &a, 1);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read %s: %s", name, hsm_ckr_name(rv));
    *out = v;
    return QTSP_OK;
}

/* Reads a variable-length attribute into a fresh buffer (caller frees). */
qtsp_status hsm_get_bytes(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                          CK_ATTRIBUTE_TYPE type, const char *name, unsigned char **out,
                          size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, o, &a, 1);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read %s: %s", name, hsm_ckr_name(rv));
    ENSURE(a.ulValueLen > 0 && a.ulValueLen <= HSM_ATTR_MAX, QTSP_ERR_HSM,
           "%s has an unexpected length %lu", name, a.ulValueLen);
    unsigned char *p = malloc(a.ulValueLen);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory reading %s", name);
    a.pValue = p;
    rv = hsm->fl->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK) {
        free(p);
        FAIL(QTSP_ERR_HSM, "cannot read %s: %s", name, hsm_ckr_name(rv));
    }
    *out = p;
    *len = a.ulValueLen;
    return QTSP_OK;
}

/* ---------- key index ----------
 *
 * SoftHSM2's C_FindObjectsInit walks every object of the token (tens of
 * microseconds each with the file backend), so a token with thousands of
 * subject keys cannot be searched per signature. The index maps label to
 * object handles and key type. It is loaded once at open (one scan), kept
 * up to date by generate/destroy, and filled lazily on a miss (a key made
 * by another process). A handle that the token no longer knows is evicted
 * and looked up again once. Readers share idx_lock; writers are brief. */

#define IDX_MAX_ENTRIES (4u * 1024 * 1024)
#define IDX_RESCAN_NS 1000000000ull /* at most one rescan per second after misses */

static uint64_t label_hash(const char *l)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *l; l++)
        h = (h ^ (unsigned char)*l) * 1099511628211ull;
    return h;
}

static key_entry *idx_find_locked(qtsp_hsm *hsm, const char *label, uint64_t h)
{
    if (hsm->idx_nb == 0)
        return NULL;
    for (key_entry *e = hsm->idx[h & (hsm->idx_nb - 1)]; e != NULL; e = e->next)
        if (e->hash == h && strcmp(e->label, label) == 0)
            return e;
    return NULL;
}

/* Copies label's entry; false when there is none or cls's handle is unknown. */
bool hsm_idx_get(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h,
                 CK_KEY_TYPE *kt)
{
    uint64_t hh = label_hash(label);
    bool ok = false;
    pthread_rwlock_rdlock(&hsm->idx_lock);
    key_entry *e = idx_find_locked(hsm, label, hh);
    if (e != NULL) {
        CK_OBJECT_HANDLE o = cls == CKO_PRIVATE_KEY ? e->priv : e->pub;
        if (o != CK_INVALID_HANDLE) {
            *h = o;
            *kt = e->kt;
            ok = true;
        }
    }
    pthread_rwlock_unlock(&hsm->idx_lock);
    return ok;
}

bool hsm_idx_has(qtsp_hsm *hsm, const char *label)
{
    pthread_rwlock_rdlock(&hsm->idx_lock);
    bool ok = idx_find_locked(hsm, label, label_hash(label)) != NULL;
    pthread_rwlock_unlock(&hsm->idx_lock);
    return ok;
}

static qtsp_status idx_grow_locked(qtsp_hsm *hsm)
{
    size_t nb = hsm->idx_nb ? hsm->idx_nb * 2 : 1024;
    key_entry **b = calloc(nb, sizeof *b);
    ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory growing the key index");
    for (size_t i = 0; i < hsm->idx_nb; i++) {
        for (key_entry *e = hsm->idx[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(hsm->idx);
    hsm->idx = b;
    hsm->idx_nb = nb;
    return QTSP_OK;
}

/* Records handle o of class cls (public or private key) for label. */
qtsp_status hsm_idx_put(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE o,
                        CK_KEY_TYPE kt)
{
    uint64_t h = label_hash(label);
    qtsp_status rc = QTSP_OK;
    pthread_rwlock_wrlock(&hsm->idx_lock);
    key_entry *e = idx_find_locked(hsm, label, h);
    if (e == NULL) {
        ENSURE_OUT(hsm->idx_n < IDX_MAX_ENTRIES, QTSP_ERR_TOO_BIG, "key index full");
        if (hsm->idx_n >= hsm->idx_nb)
            TRY_OUT(idx_grow_locked(hsm));
        size_t len = strlen(label);
        e = calloc(1, sizeof *e + len + 1);
        ENSURE_OUT(e != NULL, QTSP_ERR_NOMEM, "out of memory in the key index");
        memcpy(e->label, label, len + 1);
        e->hash = h;
        e->next = hsm->idx[h & (hsm->idx_nb - 1)];
        hsm->idx[h & (hsm->idx_nb - 1)] = e;
        hsm->idx_n++;
    }
    if (cls == CKO_PRIVATE_KEY)
        e->priv = o;
    else
        e->pub = o;
    e->kt = kt;
out:
    pthread_rwlock_unlock(&hsm->idx_lock);
    return rc;
}

void hsm_idx_forget(qtsp_hsm *hsm, const char *label)
{
    uint64_t h = label_hash(label);
    pthread_rwlock_wrlock(&hsm->idx_lock);
    if (hsm->idx_nb > 0) {
        for (key_entry **pp = &hsm->idx[h & (hsm->idx_nb - 1)]; *pp != NULL; pp = &(*pp)->next) {
            key_entry *e = *pp;
            if (e->hash == h && strcmp(e->label, label) == 0) {
                *pp = e->next;
                free(e);
                hsm->idx_n--;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&hsm->idx_lock);
}

void hsm_idx_free(qtsp_hsm *hsm)
{
    for (size_t i = 0; i < hsm->idx_nb; i++) {
        for (key_entry *e = hsm->idx[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(hsm->idx);
    hsm->idx = NULL;
    hsm->idx_nb = hsm->idx_n = 0;
}

/* A token scan that failed because another process was writing the token
 * (SoftHSM2's file backend) is tried again, HSM_SCAN_TRIES times in all. */
#define HSM_SCAN_TRIES 5

static void hsm_scan_pause(const char *why, int attempt)
{
    LOG_WARN("hsm: token scan failed (another process writing the token?): %s; retry %d", why,
             attempt);
    struct timespec ts = {0, 50L * 1000 * 1000 * attempt};
    nanosleep(&ts, NULL);
}

static qtsp_status idx_load_once(qtsp_hsm *hsm, CK_SESSION_HANDLE s);

/* The index scan, tried again when it fails (see hsm_scan_pause). */
qtsp_status hsm_idx_load(qtsp_hsm *hsm, CK_SESSION_HANDLE s)
{
    qtsp_status rc = idx_load_once(hsm, s);
    /* only token errors are worth another try (not a full index, no memory) */
    for (int attempt = 1; attempt < HSM_SCAN_TRIES && rc == QTSP_ERR_HSM; attempt++) {
        hsm_scan_pause(qtsp_err_message(), attempt);
        qtsp_err_clear();
        rc = idx_load_once(hsm, s);
    }
    return rc;
}

/* One scan per class at open: label and key type of every key object. */
static qtsp_status idx_load_once(qtsp_hsm *hsm, CK_SESSION_HANDLE s)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    for (size_t c = 0; c < 2; c++) {
        CK_OBJECT_CLASS cls = classes[c];
        CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
        CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, 1);
        ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", hsm_ckr_name(rv));
        qtsp_status rc = QTSP_OK;
        CK_OBJECT_HANDLE objs[HSM_FIND_BATCH];
        CK_ULONG n;
        do {
            n = 0;
            rv = hsm->fl->C_FindObjects(s, objs, HSM_FIND_BATCH, &n);
            ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", hsm_ckr_name(rv));
            for (CK_ULONG i = 0; i < n; i++) {
                char label[HSM_LABEL_MAX + 1];
                CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
                CK_ATTRIBUTE a[] = {
                    {CKA_LABEL, label, HSM_LABEL_MAX},
                    {CKA_KEY_TYPE, &kt, sizeof kt},
                };
                /* Keys with no label or a label we never make are skipped:
                 * they are reached (if ever) through a lookup by label. */
                if (hsm->fl->C_GetAttributeValue(s, objs[i], a, 2) != CKR_OK ||
                    a[0].ulValueLen == 0 || a[0].ulValueLen > HSM_LABEL_MAX)
                    continue;
                label[a[0].ulValueLen] = '\0';
                if (strlen(label) != a[0].ulValueLen)
                    continue;
                TRY_OUT(hsm_idx_put(hsm, label, cls, objs[i], kt));
            }
        } while (n == HSM_FIND_BATCH);
    out:
        hsm->fl->C_FindObjectsFinal(s);
        if (rc != QTSP_OK)
            return rc;
    }
    return QTSP_OK;
}

/* label's object of class cls: from the index unless fresh, else searched
 * in the token (and then remembered). QTSP_ERR_HSM_NO_KEY. */
qtsp_status hsm_resolve(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_CLASS cls,
                        bool fresh, CK_OBJECT_HANDLE *h, CK_KEY_TYPE *kt)
{
    if (!fresh && hsm_idx_get(hsm, label, cls, h, kt))
        return QTSP_OK;
    /* A miss is usually a key another process made (the key pool filler of
     * serve's worker 0, a CLI verb); it rarely comes alone. Rescanning the
     * whole token costs about two searches by label and indexes every such
     * key at once; at most once a second, searches by label in between. */
    uint64_t last = atomic_load(&hsm->idx_rescan_ns), now = qtsp_mono_ns();
    if (!fresh && now > last && now - last >= IDX_RESCAN_NS &&
        atomic_compare_exchange_strong(&hsm->idx_rescan_ns, &last, now)) {
        atomic_fetch_add(&hsm->idx_rescans, 1);
        if (hsm_idx_load(hsm, s) != QTSP_OK) { /* the search by label below still may find it */
            LOG_WARN("hsm: token rescan failed: %s", qtsp_err_message());
            qtsp_err_clear();
        } else if (hsm_idx_get(hsm, label, cls, h, kt)) {
            return QTSP_OK;
        }
    }
    atomic_fetch_add(&hsm->idx_searches, 1);
    if (fresh)
        hsm_idx_forget(hsm, label);
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    TRY(find_one(hsm, s, label, cls, &o));
    CK_ULONG t = 0;
    TRY(get_ulong(hsm, s, o, CKA_KEY_TYPE, "CKA_KEY_TYPE", &t));
    TRY(hsm_idx_put(hsm, label, cls, o, t));
    *h = o;
    *kt = t;
    return QTSP_OK;
}

bool hsm_stale_handle(CK_RV rv)
{
    return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

/* hsm_resolve() plus a check that a remembered handle is still valid (one
 * attribute read), for the paths that are not per-signature. */
qtsp_status hsm_resolve_live(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                             CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h, CK_KEY_TYPE *kt)
{
    TRY(hsm_resolve(hsm, s, label, cls, false, h, kt));
    CK_OBJECT_CLASS c = 0;
    CK_ATTRIBUTE a = {CKA_CLASS, &c, sizeof c};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, *h, &a, 1);
    if (hsm_stale_handle(rv) || (rv == CKR_OK && c != cls))
        return hsm_resolve(hsm, s, label, cls, true, h, kt);
    return QTSP_OK;
}

qtsp_status qtsp_hsm_list_labels(qtsp_hsm *hsm, const char *prefix, qtsp_label_fn fn, void *ctx)
{
    size_t plen = strlen(prefix), n = 0;
    char **labels = NULL;
    qtsp_status rc = QTSP_OK;
    /* copy under the lock, call fn without it (fn may destroy keys) */
    pthread_rwlock_rdlock(&hsm->idx_lock);
    if (hsm->idx_n > 0)
        labels = calloc(hsm->idx_n, sizeof *labels);
    if (hsm->idx_n > 0 && labels == NULL)
        rc = QTSP_ERR_NOMEM;
    for (size_t i = 0; rc == QTSP_OK && i < hsm->idx_nb; i++) {
        for (key_entry *e = hsm->idx[i]; e != NULL && rc == QTSP_OK; e = e->next) {
            if (strncmp(e->label, prefix, plen) != 0 || n >= hsm->idx_n)
                continue;
            if ((labels[n] = strdup(e->label)) == NULL)
                rc = QTSP_ERR_NOMEM;
            else
                n++;
        }
    }
    pthread_rwlock_unlock(&hsm->idx_lock);
    ENSURE_OUT(rc == QTSP_OK, rc, "out of memory listing key labels");
    for (size_t i = 0; i < n; i++)
        TRY_OUT(fn(ctx, labels[i]));
out:
    for (size_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
    return rc;
}

qtsp_status qtsp_hsm_count_private_keys(qtsp_hsm *hsm, size_t *out)
{
    CK_SESSION_HANDLE s;
    TRY(hsm_thread_session(hsm, &s));
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
    CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, 1);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", hsm_ckr_name(rv));
    size_t total = 0;
    CK_OBJECT_HANDLE objs[HSM_FIND_BATCH];
    CK_ULONG n;
    do {
        n = 0;
        rv = hsm->fl->C_FindObjects(s, objs, HSM_FIND_BATCH, &n);
        total += n;
    } while (rv == CKR_OK && n == HSM_FIND_BATCH);
    hsm->fl->C_FindObjectsFinal(s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", hsm_ckr_name(rv));
    *out = total;
    return QTSP_OK;
}
