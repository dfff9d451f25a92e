/* The PKCS#11 module and token (see ca/hsm.h): keytype names, the embedded
 * SoftHSM2 token's creation, open / login / free and the token's facts.
 *
 * Two views of the same module share one process-wide instance of it:
 *  - libp11 (PKCS11_CTX) loads and initialises the module, finds the token
 *    and logs in;
 *  - the module's own function list (dlopen + C_GetFunctionList on the same
 *    path, hence the same instance and the same login state) for key
 *    generation (hsm_keys.c), lookup by label (hsm_index.c), C_Sign
 *    (hsm_sign.c), destroy and attribute checks. These never enumerate the
 *    token: a token may hold many thousands of subject keys.
 *
 * Each thread that uses the token gets its own session (hsm_session.c:
 * pthread key, opened lazily, closed when the thread exits or at
 * qtsp_hsm_free). PKCS#11 login state is per application, so these sessions
 * are logged in as soon as libp11 is. */
#include "ca/hsm_int.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

/* ---------- small helpers ---------- */

const char *hsm_ckr_name(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_ARGUMENTS_BAD:
        return "CKR_ARGUMENTS_BAD";
    case CKR_ATTRIBUTE_TYPE_INVALID:
        return "CKR_ATTRIBUTE_TYPE_INVALID";
    case CKR_ATTRIBUTE_VALUE_INVALID:
        return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_ATTRIBUTE_SENSITIVE:
        return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_BUFFER_TOO_SMALL:
        return "CKR_BUFFER_TOO_SMALL";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case CKR_DATA_LEN_RANGE:
        return "CKR_DATA_LEN_RANGE";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY:
        return "CKR_DEVICE_MEMORY";
    case CKR_FUNCTION_FAILED:
        return "CKR_FUNCTION_FAILED";
    case CKR_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case CKR_HOST_MEMORY:
        return "CKR_HOST_MEMORY";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_TYPE_INCONSISTENT:
        return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_OBJECT_HANDLE_INVALID:
        return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_OPERATION_ACTIVE:
        return "CKR_OPERATION_ACTIVE";
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case CKR_SESSION_COUNT:
        return "CKR_SESSION_COUNT";
    case CKR_SLOT_ID_INVALID:
        return "CKR_SLOT_ID_INVALID";
    case CKR_TEMPLATE_INCOMPLETE:
        return "CKR_TEMPLATE_INCOMPLETE";
    case CKR_TEMPLATE_INCONSISTENT:
        return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_WRITE_PROTECTED:
        return "CKR_TOKEN_WRITE_PROTECTED";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_USER_ALREADY_LOGGED_IN:
        return "CKR_USER_ALREADY_LOGGED_IN";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
        return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
    default:
        return "CKR_?";
    }
}

/* Copies a blank-padded PKCS#11 text field into out, trimmed. */
static void copy_padded(char *out, size_t cap, const unsigned char *in, size_t n)
{
    while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\0'))
        n--;
    if (cap == 0)
        return;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

/* Length of s without trailing blanks. */
static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        n--;
    return n;
}

qtsp_status hsm_check_label(const char *label)
{
    ENSURE(label != NULL, QTSP_ERR_INVALID, "key label missing");
    size_t n = strnlen(label, HSM_LABEL_MAX + 1);
    ENSURE(n > 0 && n <= HSM_LABEL_MAX, QTSP_ERR_INVALID, "key label must be 1..%d bytes",
           HSM_LABEL_MAX);
    return QTSP_OK;
}

static qtsp_status load_module(const char *module, void **dl_out, CK_FUNCTION_LIST_PTR *fl_out)
{
    ENSURE(module != NULL && *module != '\0', QTSP_ERR_INVALID, "PKCS#11 module path missing");
    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    ENSURE(dl != NULL, QTSP_ERR_HSM, "cannot load PKCS#11 module %s: %s", module, dlerror());
    CK_C_GetFunctionList get = NULL;
    /* POSIX: dlsym's void * converts to a function pointer through memcpy. */
    void *sym = dlsym(dl, "C_GetFunctionList");
    memcpy(&get, &sym, sizeof get);
    CK_FUNCTION_LIST_PTR fl = NULL;
    if (get == NULL || get(&fl) != CKR_OK || fl == NULL) {
        dlclose(dl);
        FAIL(QTSP_ERR_HSM, "PKCS#11 module %s has no usable C_GetFunctionList", module);
    }
    *dl_out = dl;
    *fl_out = fl;
    return QTSP_OK;
}

/* ---------- keytype ---------- */

qtsp_status qtsp_keytype_parse(const char *s, qtsp_keytype *out)
{
    ENSURE(s != NULL, QTSP_ERR_INVALID, "key type missing");
    if (strcmp(s, "ec-p256") == 0)
        *out = QTSP_KEY_EC_P256;
    else if (strcmp(s, "ec-p384") == 0)
        *out = QTSP_KEY_EC_P384;
    else if (strcmp(s, "rsa-3072") == 0)
        *out = QTSP_KEY_RSA_3072;
    else
        FAIL(QTSP_ERR_INVALID, "unknown key type '%.40s' (ec-p256, ec-p384, rsa-3072)", s);
    return QTSP_OK;
}

const char *qtsp_keytype_name(qtsp_keytype t)
{
    switch (t) {
    case QTSP_KEY_EC_P256:
        return "ec-p256";
    case QTSP_KEY_EC_P384:
        return "ec-p384";
    case QTSP_KEY_RSA_3072:
        return "rsa-3072";
    }
    return "unknown";
}

/* ---------- SoftHSM2 token creation ---------- */

static qtsp_status dir_has_entries(const char *path, bool *out)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        ENSURE(errno == ENOENT, QTSP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        *out = false;
        return QTSP_OK;
    }
    bool any = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            any = true;
            break;
        }
    }
    closedir(d);
    *out = any;
    return QTSP_OK;
}

static qtsp_status mkdir_0700(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        FAIL(QTSP_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    return QTSP_OK;
}

/* Finds the slot whose token has the given (trimmed) label, or, with
 * label NULL, the first slot whose token is not initialised. */
static qtsp_status find_raw_slot(CK_FUNCTION_LIST_PTR fl, const char *label, CK_SLOT_ID *out)
{
    CK_ULONG n = 0;
    CK_RV rv = fl->C_GetSlotList(CK_TRUE, NULL, &n);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GetSlotList failed: %s", hsm_ckr_name(rv));
    ENSURE(n > 0 && n < 4096, QTSP_ERR_HSM_NO_TOKEN, "the PKCS#11 module shows no token");
    CK_SLOT_ID *ids = calloc(n, sizeof *ids);
    ENSURE(ids != NULL, QTSP_ERR_NOMEM, "out of memory listing slots");
    rv = fl->C_GetSlotList(CK_TRUE, ids, &n);
    if (rv != CKR_OK) {
        free(ids);
        FAIL(QTSP_ERR_HSM, "C_GetSlotList failed: %s", hsm_ckr_name(rv));
    }
    bool found = false;
    for (CK_ULONG i = 0; i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        if (fl->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
            continue;
        if (label == NULL) {
            found = (ti.flags & CKF_TOKEN_INITIALIZED) == 0;
        } else if (ti.flags & CKF_TOKEN_INITIALIZED) {
            char l[33];
            copy_padded(l, sizeof l, ti.label, sizeof ti.label);
            found = strlen(l) == trimmed_len(label) && memcmp(l, label, strlen(l)) == 0;
        }
        if (found)
            *out = ids[i];
    }
    free(ids);
    ENSURE(found, QTSP_ERR_HSM_NO_TOKEN, "%s",
           label ? "token not found after initialisation"
                 : "no free (uninitialised) slot in the module");
    return QTSP_OK;
}

static qtsp_status init_token(CK_FUNCTION_LIST_PTR fl, const char *label, const char *so_pin,
                              const char *user_pin)
{
    CK_SLOT_ID slot;
    TRY(find_raw_slot(fl, NULL, &slot));
    CK_UTF8CHAR lab[32];
    memset(lab, ' ', sizeof lab);
    memcpy(lab, label, strlen(label));
    CK_RV rv = fl->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), lab);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_InitToken failed: %s", hsm_ckr_name(rv));
    /* SoftHSM2 renumbers the slot once its token is initialised. */
    TRY(find_raw_slot(fl, label, &slot));
    CK_SESSION_HANDLE s;
    rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_OpenSession on the new token failed: %s",
           hsm_ckr_name(rv));
    qtsp_status rc = QTSP_OK;
    rv = fl->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM_LOGIN, "SO login on the new token failed: %s",
               hsm_ckr_name(rv));
    rv = fl->C_InitPIN(s, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
    fl->C_Logout(s);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_InitPIN failed: %s", hsm_ckr_name(rv));
out:
    fl->C_CloseSession(s);
    return rc;
}

qtsp_status qtsp_softhsm_create(const char *module, const char *dir, const char *label,
                                const char *so_pin, const char *user_pin)
{
    ENSURE(dir != NULL && *dir != '\0', QTSP_ERR_INVALID, "token directory missing");
    ENSURE(label != NULL && *label != '\0' && strlen(label) <= 32, QTSP_ERR_INVALID,
           "token label must be 1..32 bytes");
    ENSURE(so_pin != NULL && strlen(so_pin) >= 4 && strlen(so_pin) <= HSM_PIN_MAX, QTSP_ERR_INVALID,
           "SO PIN must be 4..%d characters", HSM_PIN_MAX);
    ENSURE(user_pin != NULL && strlen(user_pin) >= 4 && strlen(user_pin) <= HSM_PIN_MAX,
           QTSP_ERR_INVALID, "user PIN must be 4..%d characters", HSM_PIN_MAX);

    char tokens[PATH_MAX], conf[PATH_MAX], abs[PATH_MAX];
    TRY(mkdir_0700(dir));
    ENSURE(realpath(dir, abs) != NULL, QTSP_ERR_IO, "cannot resolve %s: %s", dir, strerror(errno));
    int n1 = snprintf(tokens, sizeof tokens, "%s/tokens", abs);
    int n2 = snprintf(conf, sizeof conf, "%s/softhsm2.conf", abs);
    ENSURE(n1 > 0 && (size_t)n1 < sizeof tokens && n2 > 0 && (size_t)n2 < sizeof conf,
           QTSP_ERR_TOO_BIG, "token directory path too long");
    bool taken = false;
    TRY(dir_has_entries(tokens, &taken));
    ENSURE(!taken, QTSP_ERR_EXISTS, "%s already holds a token", tokens);
    TRY(mkdir_0700(tokens));

    FILE *f = fopen(conf, "w");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot write %s: %s", conf, strerror(errno));
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens);
    ENSURE(fclose(f) == 0, QTSP_ERR_IO, "cannot write %s: %s", conf, strerror(errno));
    /* On failure SOFTHSM2_CONF goes back to what it was, so that a refused
     * create does not redirect a module already in use. */
    const char *prev_env = getenv("SOFTHSM2_CONF");
    char *prev = prev_env ? strdup(prev_env) : NULL;
    ENSURE(prev_env == NULL || prev != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    void *dl = NULL;
    CK_FUNCTION_LIST_PTR fl = NULL;
    ENSURE_OUT(setenv("SOFTHSM2_CONF", conf, 1) == 0, QTSP_ERR_INTERNAL,
               "cannot set SOFTHSM2_CONF");
    TRY_OUT(load_module(module, &dl, &fl));
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = fl->C_Initialize(&args);
    /* SoftHSM2 reads SOFTHSM2_CONF in C_Initialize: a module that someone
     * else in this process already initialised would put the token into its
     * old token directory. */
    ENSURE_OUT(rv != CKR_CRYPTOKI_ALREADY_INITIALIZED, QTSP_ERR_STATE,
               "the PKCS#11 module is already in use in this process; create the token first");
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_Initialize failed: %s", hsm_ckr_name(rv));
    rc = init_token(fl, label, so_pin, user_pin);
    /* We initialised the module and libp11 does not use it yet: finalise so
     * that the next C_Initialize (qtsp_hsm_open) rescans the token dir. */
    fl->C_Finalize(NULL);
    if (rc == QTSP_OK)
        LOG_INFO("created SoftHSM2 token '%s' in %s", label, tokens);
out:
    if (dl != NULL)
        dlclose(dl);
    if (rc != QTSP_OK) {
        if (prev != NULL)
            setenv("SOFTHSM2_CONF", prev, 1);
        else
            unsetenv("SOFTHSM2_CONF");
    }
    free(prev);
    return rc;
}

/* ---------- open / free ---------- */

static bool slot_has_label(const PKCS11_SLOT *slot, const char *label)
{
    if (slot->token == NULL || !slot->token->initialized || slot->token->label == NULL)
        return false;
    size_t a = trimmed_len(slot->token->label), b = trimmed_len(label);
    return a == b && memcmp(slot->token->label, label, a) == 0;
}

/* libp11 reports PKCS#11 failures as OpenSSL errors whose reason is the CKR. */
static bool last_error_is_pin(void)
{
    unsigned long e = ERR_peek_last_error();
    unsigned long r = (unsigned long)ERR_GET_REASON(e);
    return r == CKR_PIN_INCORRECT || r == CKR_PIN_INVALID || r == CKR_PIN_LEN_RANGE ||
           r == CKR_PIN_LOCKED || r == CKR_PIN_EXPIRED;
}

qtsp_status qtsp_hsm_open(const char *module, const char *token_label, const char *pin,
                          qtsp_hsm **out)
{
    ENSURE(token_label != NULL && *token_label != '\0', QTSP_ERR_INVALID, "token label missing");
    ENSURE(pin != NULL && strlen(pin) <= HSM_PIN_MAX, QTSP_ERR_INVALID, "PIN missing or too long");
    qtsp_hsm *hsm = calloc(1, sizeof *hsm);
    ENSURE(hsm != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    pthread_mutex_init(&hsm->lock, NULL);
    pthread_mutex_init(&hsm->gen_lock, NULL);
    pthread_mutex_init(&hsm->wrap_lock, NULL);
    hsm->ksk = hsm->bind = hsm->mark = CK_INVALID_HANDLE;
    atomic_init(&hsm->nsessions, 0);
    ENSURE_OUT(pthread_rwlock_init(&hsm->idx_lock, NULL) == 0, QTSP_ERR_NOMEM,
               "cannot create the key index lock");
    hsm->idx_ok = true;
    ENSURE_OUT(pthread_key_create(&hsm->tls, hsm_session_release) == 0, QTSP_ERR_NOMEM,
               "cannot create the per-thread session key");
    hsm->tls_ok = true;

    hsm->ctx = PKCS11_CTX_new();
    ENSURE_OUT(hsm->ctx != NULL, QTSP_ERR_NOMEM, "PKCS11_CTX_new failed");
    ENSURE_OUT(module != NULL && PKCS11_CTX_load(hsm->ctx, module) == 0, QTSP_ERR_HSM,
               "cannot load PKCS#11 module %s", module ? module : "(none)");
    hsm->loaded = true;
    /* Same path, same process: dlopen returns libp11's instance of the module. */
    TRY_OUT(load_module(module, &hsm->dl, &hsm->fl));
    ENSURE_OUT(PKCS11_enumerate_slots(hsm->ctx, &hsm->slots, &hsm->nslots) == 0, QTSP_ERR_HSM,
               "cannot list the slots of %s", module);
    for (unsigned i = 0; i < hsm->nslots; i++) {
        if (slot_has_label(&hsm->slots[i], token_label)) {
            hsm->slot = &hsm->slots[i];
            break;
        }
    }
    ENSURE_OUT(hsm->slot != NULL, QTSP_ERR_HSM_NO_TOKEN, "no token labelled '%.32s'", token_label);
    hsm->slot_id = PKCS11_get_slotid_from_slot(hsm->slot);
    ERR_clear_error();
    if (PKCS11_login(hsm->slot, 0, pin) != 0) {
        if (last_error_is_pin())
            FAIL_OUT(QTSP_ERR_HSM_LOGIN, "login to token '%.32s' failed: wrong PIN", token_label);
        FAIL_OUT(QTSP_ERR_HSM_LOGIN, "login to token '%.32s' failed", token_label);
    }
    CK_SESSION_HANDLE s;
    TRY_OUT(hsm_thread_session(hsm, &s));
    TRY_OUT(hsm_idx_load(hsm, s));
    atomic_store(&hsm->idx_rescan_ns, qtsp_mono_ns());
    *out = hsm;
    return QTSP_OK;
out:
    qtsp_hsm_free(hsm);
    return rc;
}

void qtsp_hsm_free(qtsp_hsm *hsm)
{
    if (hsm == NULL)
        return;
    if (hsm->tls_ok)
        pthread_key_delete(hsm->tls); /* no destructor runs after this */
    pthread_mutex_lock(&hsm->lock);
    for (hsm_session *s = hsm->sessions, *next; s != NULL; s = next) {
        next = s->next;
        hsm->fl->C_CloseSession(s->h);
        free(s);
    }
    hsm->sessions = NULL;
    atomic_store(&hsm->nsessions, 0);
    pthread_mutex_unlock(&hsm->lock);
    if (hsm->slot != NULL) {
        int logged_in = 0;
        if (PKCS11_is_logged_in(hsm->slot, 0, &logged_in) == 0 && logged_in)
            PKCS11_logout(hsm->slot);
    }
    if (hsm->slots != NULL)
        PKCS11_release_all_slots(hsm->ctx, hsm->slots, hsm->nslots);
    if (hsm->loaded)
        PKCS11_CTX_unload(hsm->ctx); /* libp11 C_Finalize()s: we are its last user */
    if (hsm->ctx != NULL)
        PKCS11_CTX_free(hsm->ctx);
    if (hsm->dl != NULL)
        dlclose(hsm->dl);
    hsm_idx_free(hsm);
    if (hsm->idx_ok)
        pthread_rwlock_destroy(&hsm->idx_lock);
    pthread_mutex_destroy(&hsm->gen_lock);
    pthread_mutex_destroy(&hsm->wrap_lock);
    pthread_mutex_destroy(&hsm->lock);
    free(hsm);
}

qtsp_status qtsp_hsm_token_info(qtsp_hsm *hsm, char *model, size_t model_cap, char *serial,
                                size_t serial_cap, char *manufacturer, size_t manufacturer_cap)
{
    CK_TOKEN_INFO ti;
    CK_RV rv = hsm->fl->C_GetTokenInfo(hsm->slot_id, &ti);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GetTokenInfo failed: %s", hsm_ckr_name(rv));
    if (model != NULL)
        copy_padded(model, model_cap, ti.model, sizeof ti.model);
    if (serial != NULL)
        copy_padded(serial, serial_cap, ti.serialNumber, sizeof ti.serialNumber);
    if (manufacturer != NULL)
        copy_padded(manufacturer, manufacturer_cap, ti.manufacturerID, sizeof ti.manufacturerID);
    return QTSP_OK;
}
