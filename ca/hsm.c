/* Keys in a PKCS#11 token (see ca/hsm.h).
 *
 * Two views of the same module share one process-wide instance of it:
 *  - libp11 (PKCS11_CTX) loads and initialises the module, logs in, and
 *    wraps CA keys as EVP_PKEYs whose private operations run in the token;
 *  - the module's own function list (dlopen + C_GetFunctionList on the same
 *    path, hence the same instance and the same login state) for key
 *    generation, lookup by label, C_Sign on the fast path, destroy and
 *    attribute checks. These never enumerate the token: a token may hold
 *    many thousands of subject keys.
 *
 * Each thread that signs through qtsp_hsm_sign_digest gets its own session
 * (pthread key, opened lazily, closed when the thread exits or at
 * qtsp_hsm_free). PKCS#11 login state is per application, so these sessions
 * are logged in as soon as libp11 is. */
#include "ca/hsm.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <libp11.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/der.h"
#include "core/log.h"

#define HSM_LABEL_MAX 128 /* CKA_LABEL we accept for keys */
#define HSM_PIN_MAX 255
#define HSM_ATTR_MAX 2048 /* largest public attribute we read (RSA-16384 fits) */
#define HSM_SIG_MAX 1024  /* raw signature from C_Sign (RSA up to 8192 bits) */
#define HSM_FIND_BATCH 256

/* One label's objects, as learnt by this process (see "key index"). */
typedef struct key_entry {
    struct key_entry *next;
    uint64_t hash;
    CK_OBJECT_HANDLE priv, pub; /* CK_INVALID_HANDLE when unknown */
    CK_KEY_TYPE kt;
    char label[];
} key_entry;

typedef struct hsm_session {
    qtsp_hsm *hsm;
    CK_SESSION_HANDLE h;
    struct hsm_session *prev, *next;
} hsm_session;

struct qtsp_hsm {
    PKCS11_CTX *ctx;
    PKCS11_SLOT *slots;
    unsigned nslots;
    PKCS11_SLOT *slot;       /* borrowed from slots */
    void *dl;                /* our reference to the module */
    CK_FUNCTION_LIST_PTR fl; /* the module's function list */
    CK_SLOT_ID slot_id;
    pthread_mutex_t lock;     /* libp11 key lists, session list */
    pthread_mutex_t gen_lock; /* "label free?" + generate as one step */
    pthread_key_t tls;        /* this thread's hsm_session */
    bool tls_ok;
    bool loaded;           /* PKCS11_CTX_load succeeded */
    hsm_session *sessions; /* all open per-thread sessions, under lock */
    atomic_uint nsessions;
    pthread_rwlock_t idx_lock; /* key index */
    bool idx_ok;
    key_entry **idx;
    size_t idx_nb, idx_n;
    _Atomic uint64_t idx_rescan_ns; /* last rescan after a miss (qtsp_mono_ns) */
    _Atomic uint64_t idx_rescans, idx_searches; /* after misses: whole-token rescans, searches */
};

static qtsp_status idx_load(qtsp_hsm *hsm, CK_SESSION_HANDLE s);
static void idx_free(qtsp_hsm *hsm);

/* ---------- small helpers ---------- */

static const char *ckr_name(CK_RV rv)
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

static qtsp_status check_label(const char *label)
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
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GetSlotList failed: %s", ckr_name(rv));
    ENSURE(n > 0 && n < 4096, QTSP_ERR_HSM_NO_TOKEN, "the PKCS#11 module shows no token");
    CK_SLOT_ID *ids = calloc(n, sizeof *ids);
    ENSURE(ids != NULL, QTSP_ERR_NOMEM, "out of memory listing slots");
    rv = fl->C_GetSlotList(CK_TRUE, ids, &n);
    if (rv != CKR_OK) {
        free(ids);
        FAIL(QTSP_ERR_HSM, "C_GetSlotList failed: %s", ckr_name(rv));
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
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_InitToken failed: %s", ckr_name(rv));
    /* SoftHSM2 renumbers the slot once its token is initialised. */
    TRY(find_raw_slot(fl, label, &slot));
    CK_SESSION_HANDLE s;
    rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_OpenSession on the new token failed: %s", ckr_name(rv));
    qtsp_status rc = QTSP_OK;
    rv = fl->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM_LOGIN, "SO login on the new token failed: %s",
               ckr_name(rv));
    rv = fl->C_InitPIN(s, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
    fl->C_Logout(s);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_InitPIN failed: %s", ckr_name(rv));
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
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_Initialize failed: %s", ckr_name(rv));
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

/* ---------- per-thread sessions ---------- */

/* Runs at thread exit for threads that signed (pthread key destructor). */
static void session_release(void *p)
{
    hsm_session *s = p;
    qtsp_hsm *hsm = s->hsm;
    pthread_mutex_lock(&hsm->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        hsm->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hsm->fl->C_CloseSession(s->h);
    pthread_mutex_unlock(&hsm->lock);
    atomic_fetch_sub(&hsm->nsessions, 1);
    free(s);
}

static qtsp_status thread_session(qtsp_hsm *hsm, CK_SESSION_HANDLE *out)
{
    hsm_session *s = pthread_getspecific(hsm->tls);
    if (s != NULL) {
        *out = s->h;
        return QTSP_OK;
    }
    s = calloc(1, sizeof *s);
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "out of memory for a PKCS#11 session");
    s->hsm = hsm;
    CK_RV rv = hsm->fl->C_OpenSession(hsm->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->h);
    if (rv != CKR_OK) {
        free(s);
        FAIL(QTSP_ERR_HSM, "C_OpenSession failed: %s", ckr_name(rv));
    }
    if (pthread_setspecific(hsm->tls, s) != 0) {
        hsm->fl->C_CloseSession(s->h);
        free(s);
        FAIL(QTSP_ERR_NOMEM, "cannot attach a PKCS#11 session to this thread");
    }
    pthread_mutex_lock(&hsm->lock);
    s->next = hsm->sessions;
    if (s->next)
        s->next->prev = s;
    hsm->sessions = s;
    pthread_mutex_unlock(&hsm->lock);
    atomic_fetch_add(&hsm->nsessions, 1);
    *out = s->h;
    return QTSP_OK;
}

void qtsp_hsm_lookup_stats(qtsp_hsm *hsm, unsigned long long *rescans,
                           unsigned long long *searches)
{
    *rescans = hsm ? atomic_load(&hsm->idx_rescans) : 0;
    *searches = hsm ? atomic_load(&hsm->idx_searches) : 0;
}

unsigned qtsp_hsm_session_count(const qtsp_hsm *hsm)
{
    if (hsm == NULL)
        return 0;
    return atomic_load(&((qtsp_hsm *)hsm)->nsessions);
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
    atomic_init(&hsm->nsessions, 0);
    ENSURE_OUT(pthread_rwlock_init(&hsm->idx_lock, NULL) == 0, QTSP_ERR_NOMEM,
               "cannot create the key index lock");
    hsm->idx_ok = true;
    ENSURE_OUT(pthread_key_create(&hsm->tls, session_release) == 0, QTSP_ERR_NOMEM,
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
    TRY_OUT(thread_session(hsm, &s));
    TRY_OUT(idx_load(hsm, s));
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
    idx_free(hsm);
    if (hsm->idx_ok)
        pthread_rwlock_destroy(&hsm->idx_lock);
    pthread_mutex_destroy(&hsm->gen_lock);
    pthread_mutex_destroy(&hsm->lock);
    free(hsm);
}

qtsp_status qtsp_hsm_token_info(qtsp_hsm *hsm, char *model, size_t model_cap, char *serial,
                                size_t serial_cap, char *manufacturer, size_t manufacturer_cap)
{
    CK_TOKEN_INFO ti;
    CK_RV rv = hsm->fl->C_GetTokenInfo(hsm->slot_id, &ti);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_GetTokenInfo failed: %s", ckr_name(rv));
    if (model != NULL)
        copy_padded(model, model_cap, ti.model, sizeof ti.model);
    if (serial != NULL)
        copy_padded(serial, serial_cap, ti.serialNumber, sizeof ti.serialNumber);
    if (manufacturer != NULL)
        copy_padded(manufacturer, manufacturer_cap, ti.manufacturerID, sizeof ti.manufacturerID);
    return QTSP_OK;
}

/* ---------- object lookup ---------- */

/* Finds up to max objects of class cls (or any class when cls is
 * CK_UNAVAILABLE_INFORMATION) with label. *n gets how many were found. */
static qtsp_status find_by_label(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                                 CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *objs, CK_ULONG max,
                                 CK_ULONG *n)
{
    CK_ATTRIBUTE tmpl[2] = {
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_CLASS, &cls, sizeof cls},
    };
    CK_ULONG nt = cls == CK_UNAVAILABLE_INFORMATION ? 1 : 2;
    CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, nt);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", ckr_name(rv));
    rv = hsm->fl->C_FindObjects(s, objs, max, n);
    hsm->fl->C_FindObjectsFinal(s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", ckr_name(rv));
    return QTSP_OK;
}

/* The one object of class cls with label; QTSP_ERR_HSM_NO_KEY if none. */
static qtsp_status find_one(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                            CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;
    TRY(find_by_label(hsm, s, label, cls, objs, 2, &n));
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
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read %s: %s", name, ckr_name(rv));
    *out = v;
    return QTSP_OK;
}

/* Reads a variable-length attribute into a fresh buffer (caller frees). */
static qtsp_status get_bytes(qtsp_hsm *hsm, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                             CK_ATTRIBUTE_TYPE type, const char *name, unsigned char **out,
                             size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, o, &a, 1);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read %s: %s", name, ckr_name(rv));
    ENSURE(a.ulValueLen > 0 && a.ulValueLen <= HSM_ATTR_MAX, QTSP_ERR_HSM,
           "%s has an unexpected length %lu", name, a.ulValueLen);
    unsigned char *p = malloc(a.ulValueLen);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory reading %s", name);
    a.pValue = p;
    rv = hsm->fl->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK) {
        free(p);
        FAIL(QTSP_ERR_HSM, "cannot read %s: %s", name, ckr_name(rv));
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
static bool idx_get(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h,
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

static bool idx_has(qtsp_hsm *hsm, const char *label)
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
static qtsp_status idx_put(qtsp_hsm *hsm, const char *label, CK_OBJECT_CLASS cls,
                           CK_OBJECT_HANDLE o, CK_KEY_TYPE kt)
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

static void idx_forget(qtsp_hsm *hsm, const char *label)
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

static void idx_free(qtsp_hsm *hsm)
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

static void scan_pause(const char *why, int attempt)
{
    LOG_WARN("hsm: token scan failed (another process writing the token?): %s; retry %d", why,
             attempt);
    struct timespec ts = {0, 50L * 1000 * 1000 * attempt};
    nanosleep(&ts, NULL);
}

static qtsp_status idx_load_once(qtsp_hsm *hsm, CK_SESSION_HANDLE s);

/* The index scan, tried again when it fails (see scan_pause). */
static qtsp_status idx_load(qtsp_hsm *hsm, CK_SESSION_HANDLE s)
{
    qtsp_status rc = idx_load_once(hsm, s);
    /* only token errors are worth another try (not a full index, no memory) */
    for (int attempt = 1; attempt < HSM_SCAN_TRIES && rc == QTSP_ERR_HSM; attempt++) {
        scan_pause(qtsp_err_message(), attempt);
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
        ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", ckr_name(rv));
        qtsp_status rc = QTSP_OK;
        CK_OBJECT_HANDLE objs[HSM_FIND_BATCH];
        CK_ULONG n;
        do {
            n = 0;
            rv = hsm->fl->C_FindObjects(s, objs, HSM_FIND_BATCH, &n);
            ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", ckr_name(rv));
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
                TRY_OUT(idx_put(hsm, label, cls, objs[i], kt));
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
static qtsp_status resolve(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_CLASS cls, bool fresh, CK_OBJECT_HANDLE *h, CK_KEY_TYPE *kt)
{
    if (!fresh && idx_get(hsm, label, cls, h, kt))
        return QTSP_OK;
    /* A miss is usually a key another process made (the key pool filler of
     * serve's worker 0, a CLI verb); it rarely comes alone. Rescanning the
     * whole token costs about two searches by label and indexes every such
     * key at once; at most once a second, searches by label in between. */
    uint64_t last = atomic_load(&hsm->idx_rescan_ns), now = qtsp_mono_ns();
    if (!fresh && now > last && now - last >= IDX_RESCAN_NS &&
        atomic_compare_exchange_strong(&hsm->idx_rescan_ns, &last, now)) {
        atomic_fetch_add(&hsm->idx_rescans, 1);
        if (idx_load(hsm, s) != QTSP_OK) { /* the search by label below still may find it */
            LOG_WARN("hsm: token rescan failed: %s", qtsp_err_message());
            qtsp_err_clear();
        } else if (idx_get(hsm, label, cls, h, kt)) {
            return QTSP_OK;
        }
    }
    atomic_fetch_add(&hsm->idx_searches, 1);
    if (fresh)
        idx_forget(hsm, label);
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    TRY(find_one(hsm, s, label, cls, &o));
    CK_ULONG t = 0;
    TRY(get_ulong(hsm, s, o, CKA_KEY_TYPE, "CKA_KEY_TYPE", &t));
    TRY(idx_put(hsm, label, cls, o, t));
    *h = o;
    *kt = t;
    return QTSP_OK;
}

static bool stale_handle(CK_RV rv)
{
    return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

/* resolve() plus a check that a remembered handle is still valid (one
 * attribute read), for the paths that are not per-signature. */
static qtsp_status resolve_live(qtsp_hsm *hsm, CK_SESSION_HANDLE s, const char *label,
                                CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h, CK_KEY_TYPE *kt)
{
    TRY(resolve(hsm, s, label, cls, false, h, kt));
    CK_OBJECT_CLASS c = 0;
    CK_ATTRIBUTE a = {CKA_CLASS, &c, sizeof c};
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, *h, &a, 1);
    if (stale_handle(rv) || (rv == CKR_OK && c != cls))
        return resolve(hsm, s, label, cls, true, h, kt);
    return QTSP_OK;
}

/* ---------- generate ---------- */

/* DER OBJECT IDENTIFIERs for CKA_EC_PARAMS (RFC 5480 2.1.1.1). */
static const unsigned char OID_P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char OID_P384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

qtsp_status qtsp_hsm_generate(qtsp_hsm *hsm, const char *label, qtsp_keytype type,
                              EVP_PKEY **pub_out)
{
    TRY(check_label(label));
    CK_SESSION_HANDLE s;
    TRY(thread_session(hsm, &s));

    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ULONG bits = 3072;
    CK_BYTE e65537[] = {0x01, 0x00, 0x01};
    CK_ULONG llen = strlen(label);
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[7] = {
        {CKA_TOKEN, &t, sizeof t},        {CKA_PRIVATE, &f, sizeof f},   {CKA_VERIFY, &t, sizeof t},
        {CKA_LABEL, (void *)label, llen}, {CKA_ID, (void *)label, llen},
    };
    CK_ULONG npub = 5;
    switch (type) {
    case QTSP_KEY_EC_P256:
        pub[npub++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)OID_P256, sizeof OID_P256};
        break;
    case QTSP_KEY_EC_P384:
        pub[npub++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)OID_P384, sizeof OID_P384};
        break;
    case QTSP_KEY_RSA_3072:
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        pub[npub++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits};
        pub[npub++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, e65537, sizeof e65537};
        break;
    default:
        FAIL(QTSP_ERR_INVALID, "unknown key type %d", (int)type);
    }
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &t, sizeof t},     {CKA_PRIVATE, &t, sizeof t},
        {CKA_SENSITIVE, &t, sizeof t}, {CKA_EXTRACTABLE, &f, sizeof f},
        {CKA_SIGN, &t, sizeof t},      {CKA_DECRYPT, &f, sizeof f},
        {CKA_DERIVE, &f, sizeof f},    {CKA_LABEL, (void *)label, llen},
        {CKA_ID, (void *)label, llen},
    };

    qtsp_status rc = QTSP_OK;
    /* The lock makes "label free?" and "generate" one step for this
     * process. The index knows every key that existed at open or was made
     * by this process since: a search of the whole token per new key would
     * cost O(keys). Keys another process adds meanwhile are not seen. */
    pthread_mutex_lock(&hsm->gen_lock);
    ENSURE_OUT(!idx_has(hsm, label), QTSP_ERR_EXISTS, "the token already holds a key labelled '%s'",
               label);
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv = hsm->fl->C_GenerateKeyPair(s, &mech, pub, npub, priv, sizeof priv / sizeof priv[0],
                                          &hpub, &hpriv);
    ENSURE_OUT(rv == CKR_OK, QTSP_ERR_HSM, "C_GenerateKeyPair (%s) failed: %s",
               qtsp_keytype_name(type), ckr_name(rv));
    CK_KEY_TYPE kt = type == QTSP_KEY_RSA_3072 ? CKK_RSA : CKK_EC;
    TRY_OUT(idx_put(hsm, label, CKO_PRIVATE_KEY, hpriv, kt));
    TRY_OUT(idx_put(hsm, label, CKO_PUBLIC_KEY, hpub, kt));
out:
    pthread_mutex_unlock(&hsm->gen_lock);
    if (rc != QTSP_OK)
        return rc;
    LOG_INFO("generated %s key '%s' in the token", qtsp_keytype_name(type), label);
    if (pub_out != NULL)
        TRY(qtsp_hsm_public_key(hsm, label, pub_out));
    return QTSP_OK;
}

/* ---------- public key export ---------- */

static qtsp_status ec_public(const unsigned char *params, size_t plen, const unsigned char *point,
                             size_t ptlen, EVP_PKEY **out)
{
    qtsp_status rc = QTSP_OK;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    const unsigned char *p = params;
    oid = d2i_ASN1_OBJECT(NULL, &p, (long)plen);
    ENSURE_OUT(oid != NULL && p == params + plen, QTSP_ERR_HSM,
               "CKA_EC_PARAMS is not a named-curve OID");
    int nid = OBJ_obj2nid(oid);
    ENSURE_OUT(nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1,
               QTSP_ERR_UNSUPPORTED, "unsupported EC curve in the token");
    /* PKCS#11 2.40 says CKA_EC_POINT is DER OCTET STRING; accept a raw point too. */
    const unsigned char *q = point, *pt = point;
    size_t ptn = ptlen;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptlen);
    if (os != NULL && q == point + ptlen) {
        pt = ASN1_STRING_get0_data(os);
        ptn = (size_t)ASN1_STRING_length(os);
    }
    OSSL_PARAM prm[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)OBJ_nid2sn(nid), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, ptn),
        OSSL_PARAM_construct_end(),
    };
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    ENSURE_OUT(pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
                   EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, prm) == 1,
               QTSP_ERR_CRYPTO, "cannot build the EC public key from the token's point");
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
    return rc;
}

static qtsp_status rsa_public(const unsigned char *n, size_t nlen, const unsigned char *e,
                              size_t elen, EVP_PKEY **out)
{
    qtsp_status rc = QTSP_OK;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *prm = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    ENSURE_OUT(bn != NULL && be != NULL && bld != NULL &&
                   OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
                   OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1 &&
                   (prm = OSSL_PARAM_BLD_to_param(bld)) != NULL,
               QTSP_ERR_NOMEM, "cannot build RSA key parameters");
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    ENSURE_OUT(pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
                   EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, prm) == 1,
               QTSP_ERR_CRYPTO, "cannot build the RSA public key from the token's modulus");
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

qtsp_status qtsp_hsm_public_key(qtsp_hsm *hsm, const char *label, EVP_PKEY **out)
{
    TRY(check_label(label));
    CK_SESSION_HANDLE s;
    TRY(thread_session(hsm, &s));
    CK_OBJECT_HANDLE o;
    CK_KEY_TYPE kt;
    TRY(resolve_live(hsm, s, label, CKO_PUBLIC_KEY, &o, &kt));
    qtsp_status rc = QTSP_OK;
    unsigned char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (kt == CKK_EC) {
        TRY_OUT(get_bytes(hsm, s, o, CKA_EC_PARAMS, "CKA_EC_PARAMS", &a, &alen));
        TRY_OUT(get_bytes(hsm, s, o, CKA_EC_POINT, "CKA_EC_POINT", &b, &blen));
        TRY_OUT(ec_public(a, alen, b, blen, out));
    } else if (kt == CKK_RSA) {
        TRY_OUT(get_bytes(hsm, s, o, CKA_MODULUS, "CKA_MODULUS", &a, &alen));
        TRY_OUT(get_bytes(hsm, s, o, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", &b, &blen));
        TRY_OUT(rsa_public(a, alen, b, blen, out));
    } else {
        FAIL_OUT(QTSP_ERR_UNSUPPORTED, "key '%s' has unsupported key type %lu", label, kt);
    }
out:
    free(a);
    free(b);
    return rc;
}

/* ---------- libp11 private key ---------- */

qtsp_status qtsp_hsm_private_key(qtsp_hsm *hsm, const char *label, EVP_PKEY **out)
{
    TRY(check_label(label));
    qtsp_status rc = QTSP_OK;
    EVP_PKEY *pkey = NULL;
    pthread_mutex_lock(&hsm->lock);
    PKCS11_KEY *keys = NULL;
    unsigned nkeys = 0;
    /* libp11 0.4.12 re-reads the token on every enumeration, adding keys
     * generated since (through C_GenerateKeyPair) to its list. With the
     * file backend, an enumeration can fail while another process writes
     * the token (serve's key-pool filler in another worker): tried again. */
    int enum_rc = -1;
    for (int attempt = 0; attempt < HSM_SCAN_TRIES && enum_rc != 0; attempt++) {
        if (attempt)
            scan_pause("libp11 could not enumerate the keys", attempt);
        enum_rc = PKCS11_enumerate_keys(hsm->slot->token, &keys, &nkeys);
    }
    ENSURE_OUT(enum_rc == 0, QTSP_ERR_HSM, "cannot list the keys of the token");
    for (unsigned i = 0; i < nkeys; i++) {
        if (keys[i].isPrivate && keys[i].label != NULL && strcmp(keys[i].label, label) == 0) {
            pkey = PKCS11_get_private_key(&keys[i]);
            ENSURE_OUT(pkey != NULL, QTSP_ERR_HSM, "libp11 cannot wrap the key '%s'", label);
            break;
        }
    }
    ENSURE_OUT(pkey != NULL, QTSP_ERR_HSM_NO_KEY, "no private key labelled '%s' in the token",
               label);
    *out = pkey;
out:
    pthread_mutex_unlock(&hsm->lock);
    return rc;
}

/* ---------- fast signing ---------- */

/* DigestInfo prefixes for PKCS#1 v1.5 signatures (RFC 8017 9.2, note 1). */
static const unsigned char DI_SHA224[] = {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x04, 0x05, 0x00, 0x04, 0x1c};
static const unsigned char DI_SHA256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char DI_SHA384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char DI_SHA512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x03, 0x05, 0x00, 0x04, 0x40};

static qtsp_status digest_info_prefix(const EVP_MD *md, const unsigned char **p, size_t *n)
{
    ENSURE(md != NULL, QTSP_ERR_INVALID, "RSA signing needs the digest algorithm");
    switch (EVP_MD_get_type(md)) {
    case NID_sha224:
        *p = DI_SHA224;
        *n = sizeof DI_SHA224;
        break;
    case NID_sha256:
        *p = DI_SHA256;
        *n = sizeof DI_SHA256;
        break;
    case NID_sha384:
        *p = DI_SHA384;
        *n = sizeof DI_SHA384;
        break;
    case NID_sha512:
        *p = DI_SHA512;
        *n = sizeof DI_SHA512;
        break;
    default:
        FAIL(QTSP_ERR_UNSUPPORTED, "digest %s is not supported for RSA signing",
             EVP_MD_get0_name(md));
    }
    return QTSP_OK;
}

/* PKCS#11 CKM_ECDSA gives r || s; X.509 and CMS want ECDSA-Sig-Value
 * ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 2.2 / RFC 3279 2.2.3). */
static qtsp_status ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen, unsigned char *out,
                                    size_t cap, size_t *outlen)
{
    ENSURE(rawlen > 0 && rawlen % 2 == 0 && rawlen <= 2 * 66, QTSP_ERR_HSM,
           "unexpected ECDSA signature length %zu from the token", rawlen);
    size_t half = rawlen / 2;
    size_t body = qtsp_der_uint_size(raw, half) + qtsp_der_uint_size(raw + half, half);
    size_t n = qtsp_der_tlv_size(body);
    ENSURE(n <= cap, QTSP_ERR_TOO_BIG, "signature buffer too small (%zu < %zu)", cap, n);
    size_t o = qtsp_der_put_hdr(out, QTSP_DER_SEQUENCE, body);
    o += qtsp_der_put_uint(out + o, QTSP_DER_INTEGER, raw, half);
    o += qtsp_der_put_uint(out + o, QTSP_DER_INTEGER, raw + half, half);
    *outlen = o;
    return QTSP_OK;
}

static qtsp_status map_key_rv(CK_RV rv, const char *what, const char *label)
{
    if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
        FAIL(QTSP_ERR_HSM_NO_KEY, "%s: key '%s' is gone", what, label);
    FAIL(QTSP_ERR_HSM, "%s with key '%s' failed: %s", what, label, ckr_name(rv));
}

qtsp_status qtsp_hsm_sign_digest(qtsp_hsm *hsm, const char *label, const EVP_MD *md,
                                 const unsigned char *dgst, size_t dlen, unsigned char *sig,
                                 size_t *siglen)
{
    TRY(check_label(label));
    ENSURE(dgst != NULL && dlen > 0 && dlen <= 64, QTSP_ERR_INVALID, "digest must be 1..64 bytes");
    ENSURE(md == NULL || (size_t)EVP_MD_get_size(md) == dlen, QTSP_ERR_INVALID,
           "digest length %zu does not match %s", dlen, EVP_MD_get0_name(md));
    ENSURE(sig != NULL && siglen != NULL, QTSP_ERR_INVALID, "no signature buffer");
    CK_SESSION_HANDLE s;
    TRY(thread_session(hsm, &s));
    CK_OBJECT_HANDLE key;
    CK_KEY_TYPE kt;
    TRY(resolve(hsm, s, label, CKO_PRIVATE_KEY, false, &key, &kt));

    unsigned char in[128];
    size_t inlen;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    if (kt == CKK_EC) {
        memcpy(in, dgst, dlen);
        inlen = dlen;
    } else if (kt == CKK_RSA) {
        const unsigned char *pre = NULL;
        size_t plen = 0;
        TRY(digest_info_prefix(md, &pre, &plen));
        memcpy(in, pre, plen);
        memcpy(in + plen, dgst, dlen);
        inlen = plen + dlen;
        mech.mechanism = CKM_RSA_PKCS;
    } else {
        FAIL(QTSP_ERR_UNSUPPORTED, "key '%s' has unsupported key type %lu", label, kt);
    }

    CK_RV rv = hsm->fl->C_SignInit(s, &mech, key);
    if (stale_handle(rv)) {
        /* destroyed and perhaps re-made by someone else: look it up again */
        CK_KEY_TYPE kt2;
        TRY(resolve(hsm, s, label, CKO_PRIVATE_KEY, true, &key, &kt2));
        ENSURE(kt2 == kt, QTSP_ERR_HSM, "key '%s' changed type in the token", label);
        rv = hsm->fl->C_SignInit(s, &mech, key);
    }
    if (rv != CKR_OK)
        return map_key_rv(rv, "C_SignInit", label);
    unsigned char raw[HSM_SIG_MAX];
    CK_ULONG rawlen = sizeof raw;
    rv = hsm->fl->C_Sign(s, in, inlen, raw, &rawlen);
    if (rv != CKR_OK)
        return map_key_rv(rv, "C_Sign", label);
    if (kt == CKK_EC)
        return ecdsa_raw_to_der(raw, rawlen, sig, *siglen, siglen);
    ENSURE(rawlen <= *siglen, QTSP_ERR_TOO_BIG, "signature buffer too small (%zu < %lu)", *siglen,
           rawlen);
    memcpy(sig, raw, rawlen);
    *siglen = rawlen;
    return QTSP_OK;
}

/* ---------- destroy / count / check ---------- */

qtsp_status qtsp_hsm_destroy(qtsp_hsm *hsm, const char *label)
{
    TRY(check_label(label));
    CK_SESSION_HANDLE s;
    TRY(thread_session(hsm, &s));
    CK_ULONG destroyed = 0;
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    for (size_t c = 0; c < 2; c++) {
        CK_OBJECT_HANDLE objs[8];
        CK_ULONG n = 0;
        CK_KEY_TYPE kt;
        if (idx_get(hsm, label, classes[c], &objs[0], &kt)) {
            CK_RV rv = hsm->fl->C_DestroyObject(s, objs[0]);
            if (rv == CKR_OK) {
                destroyed++;
                continue;
            }
            ENSURE(stale_handle(rv), QTSP_ERR_HSM, "C_DestroyObject for '%s' failed: %s", label,
                   ckr_name(rv));
        }
        /* unknown to the index, or its handle went stale: search */
        TRY(find_by_label(hsm, s, label, classes[c], objs, 8, &n));
        for (CK_ULONG i = 0; i < n; i++) {
            CK_RV rv = hsm->fl->C_DestroyObject(s, objs[i]);
            ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_DestroyObject for '%s' failed: %s", label,
                   ckr_name(rv));
            destroyed++;
        }
    }
    idx_forget(hsm, label);
    ENSURE(destroyed > 0, QTSP_ERR_HSM_NO_KEY, "no key labelled '%s' in the token", label);
    LOG_INFO("destroyed key '%s' in the token", label);
    return QTSP_OK;
}

qtsp_status qtsp_hsm_list_labels(qtsp_hsm *hsm, const char *prefix, qtsp_label_fn fn,
                                 void *ctx)
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
    TRY(thread_session(hsm, &s));
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
    CK_RV rv = hsm->fl->C_FindObjectsInit(s, tmpl, 1);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjectsInit failed: %s", ckr_name(rv));
    size_t total = 0;
    CK_OBJECT_HANDLE objs[HSM_FIND_BATCH];
    CK_ULONG n;
    do {
        n = 0;
        rv = hsm->fl->C_FindObjects(s, objs, HSM_FIND_BATCH, &n);
        total += n;
    } while (rv == CKR_OK && n == HSM_FIND_BATCH);
    hsm->fl->C_FindObjectsFinal(s);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "C_FindObjects failed: %s", ckr_name(rv));
    *out = total;
    return QTSP_OK;
}

qtsp_status qtsp_hsm_check_key_protected(qtsp_hsm *hsm, const char *label)
{
    TRY(check_label(label));
    CK_SESSION_HANDLE s;
    TRY(thread_session(hsm, &s));
    CK_OBJECT_HANDLE o;
    CK_KEY_TYPE kt;
    TRY(resolve_live(hsm, s, label, CKO_PRIVATE_KEY, &o, &kt));
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, never = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_SENSITIVE, &sens, sizeof sens},
        {CKA_EXTRACTABLE, &extr, sizeof extr},
        {CKA_NEVER_EXTRACTABLE, &never, sizeof never},
    };
    CK_RV rv = hsm->fl->C_GetAttributeValue(s, o, a, 3);
    ENSURE(rv == CKR_OK, QTSP_ERR_HSM, "cannot read the protection attributes of '%s': %s", label,
           ckr_name(rv));
    ENSURE(sens == CK_TRUE, QTSP_ERR_HSM, "key '%s' has CKA_SENSITIVE=false", label);
    ENSURE(extr == CK_FALSE, QTSP_ERR_HSM, "key '%s' has CKA_EXTRACTABLE=true", label);
    ENSURE(never == CK_TRUE, QTSP_ERR_HSM, "key '%s' has CKA_NEVER_EXTRACTABLE=false", label);
    return QTSP_OK;
}
