/* Internals shared by the CRL publisher's files (ca/crl.h is the API):
 *   crl_policy.c   policy load (policies/crl.yaml)
 *   crl_build.c    the CAs' facts, entries and extensions, the streaming
 *                  two-pass build and signature of one CRL (core/der.h
 *                  size-first primitives: a million entries, no moves)
 *   crl_read.c     published files read back and checked, store facts
 *   crl_publish.c  the publisher: numbering, files, reload of another
 *                  process's CRLs, background thread, current CRLs
 *   crl_http.c     GET /crl/{name}.crl (the only file that knows HTTP)
 * Not for use outside ca/crl*.c. */
#ifndef QTSP_CA_CRL_INT_H
#define QTSP_CA_CRL_INT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ca/certdb.h"
#include "ca/crl.h"
#include "ca/store.h"
#include "core/err.h"
#include "core/periodic.h"

#define CRL_ENTRY_MAX 192     /* one encoded revokedCertificates entry */
#define CRL_EXT_MAX 1024      /* crlExtensions */
#define CRL_ROOT_LIST_MAX 256 /* serials in meta "issued_by_root" */
#define CRL_URL_MAX 512
#define CRL_PATH_MAX 1024
#define CRL_REC_VERSION 1
#define CRL_MAX_BYTES ((size_t)3 << 30) /* keeps every length under 2^32 */
#define CRL_PRUNE_MAX 200000            /* released entries forgotten per rebase */
#define CRL_PRUNE_BATCH 10000           /* per write transaction */
#define CRL_FILE_MAX ((size_t)1 << 32)  /* a published file we read back */

enum { CRL_QUALIFIED = 0, CRL_DELTA = 1, CRL_ROOT = 2, CRL__N = 3 };
/* File and URL names, indexed by the enum above (crl_publish.c). */
extern const char *const crl_names[CRL__N];

/* Extensions we write or read: 2.5.29.n */
enum {
    CE_CRL_NUMBER = 20,           /* 2.5.29.20 */
    CE_REASON = 21,               /* 2.5.29.21 */
    CE_HOLD_INSTRUCTION = 23,     /* 2.5.29.23 */
    CE_INVALIDITY_DATE = 24,      /* 2.5.29.24 */
    CE_DELTA_INDICATOR = 27,      /* 2.5.29.27 */
    CE_AKI = 35,                  /* 2.5.29.35 */
    CE_FRESHEST_CRL = 46,         /* 2.5.29.46 */
    CE_EXPIRED_CERTS_ON_CRL = 60, /* 2.5.29.60 (X.509 (2016) 9.6.2.9) */
};

typedef struct crl_blob {
    int refs; /* guarded by the publisher's lock */
    pthread_mutex_t *lock;
    unsigned char *mem;
    const unsigned char *der;
    size_t len;
    uint64_t number;
    time_t this_update, next_update;
} crl_blob;

typedef struct crl_ca {
    X509 *cert;
    const qtsp_key *key; /* borrowed */
    qtsp_sigalg sigalg;  /* RFC 5758 3.2 by curve size; RSA PKCS#1 v1.5 SHA-256 */
    const EVP_MD *md;
    unsigned char alg[QTSP_KEY_ALGID_MAX]; /* AlgorithmIdentifier DER */
    size_t alg_len;
    unsigned char *issuer; /* Name DER */
    size_t issuer_len;
    unsigned char keyid[64];
    size_t keyid_len;
    time_t not_before;
    size_t sig_max;
} crl_ca;

typedef struct root_serial {
    unsigned char s[QTSP_SERIAL_MAX];
    size_t n;
} root_serial;

typedef struct crl_facts {
    int present;
    uint64_t base_number;
    time_t base_time;
    uint64_t last_number;
    time_t last_time;
    uint64_t status_gen;
    time_t next_lapse; /* 0 = none */
} crl_facts;

struct qtsp_crl_publisher {
    qtsp_crl_policy pol;
    char dir[CRL_PATH_MAX]; /* public/crl */
    char delta_url[CRL_URL_MAX];
    crl_ca ca[2]; /* 0 issuing, 1 root */
    qtsp_store *store;
    pthread_mutex_t publish_lock; /* one publication at a time */
    pthread_mutex_t lock;         /* cur[] and blob refcounts */
    crl_blob *cur[CRL__N];
    int lock_fd; /* DIR/public/crl/.publish.lock: one publisher across processes */
    /* background thread (core/periodic.h) and what it saw of the store */
    qtsp_periodic *thread;
    uint64_t seen;
    int have_seen, pending;
    int64_t first_ms, last_ms;
};

typedef enum { KIND_FULL, KIND_DELTA, KIND_ROOT } crl_kind;

typedef struct crl_build {
    crl_kind kind;
    const crl_ca *ca;
    const qtsp_crl_policy *pol;
    const char *delta_url;
    const root_serial *roots;
    size_t n_roots;
    uint64_t number, base_number;
    time_t now, next_update, base_time;
    /* pass 1 results */
    size_t count, entries_len;
    time_t next_lapse;
    /* pass 2 */
    int pass;
    unsigned char *wp, *wend;
    /* rebase: released entries changed before now, to forget afterwards
     * (len u8 | serial, repeated; at most CRL_PRUNE_MAX) */
    int collect;
    unsigned char *prune;
    size_t prune_n, prune_cap;
} crl_build;
/* One record of crl_build.prune: length byte and serial. */
#define PRUNE_REC (1 + QTSP_SERIAL_MAX)

/* ---- crl_build.c */

/* Drops one reference to a blob (a resp free_fn); frees it with the last. */
void crl_blob_unref(void *arg);

/* The facts of a CA needed to sign its CRLs (algorithm, issuer, key id,
 * notBefore); up-references cert; key is borrowed (outlives the CA). */
qtsp_status crl_ca_init(crl_ca *ca, X509 *cert, const qtsp_key *key) QTSP_MUST_USE;
void crl_ca_cleanup(crl_ca *ca);

/* Builds and signs one CRL from the entries in txn (two passes: sizes, then
 * bytes); *out is a new blob with one reference, refcounted under lock. */
qtsp_status crl_build_sign(qtsp_txn *txn, crl_build *b, pthread_mutex_t *lock,
                           crl_blob **out) QTSP_MUST_USE;

/* ---- crl_read.c */

/* Reads DIR/NAME.crl into a new blob (one reference, refcounted under lock). */
qtsp_status crl_read_file(const char *dir, const char *name, pthread_mutex_t *lock,
                          crl_blob **out) QTSP_MUST_USE;

/* Checks that bl is a CRL of ca signed by it and fills its number and
 * times. QTSP_ERR_INVALID / QTSP_ERR_CRYPTO when not. */
qtsp_status crl_parse_published(const crl_ca *ca, crl_blob *bl) QTSP_MUST_USE;

/* The publisher's records in the store (table crl): the last publication,
 * the root CRL's number, the serials the root issued. */
qtsp_status crl_read_facts(qtsp_txn *txn, crl_facts *f) QTSP_MUST_USE;
qtsp_status crl_read_root_number(qtsp_txn *txn, uint64_t *number) QTSP_MUST_USE;
qtsp_status crl_read_roots(qtsp_txn *txn, root_serial *out, size_t *n) QTSP_MUST_USE;

/* ---- crl_publish.c */

/* Index of the CRL named name[0..n) (no ".crl"), or -1. */
int crl_name_index(const char *name, size_t n);

/* A new reference to the current CRL idx, or NULL before the first
 * publication. Release it with crl_blob_unref. */
crl_blob *crl_get_ref(qtsp_crl_publisher *pub, int idx);

#endif
