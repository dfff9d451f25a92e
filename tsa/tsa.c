/* Time-stamp tokens (RFC 3161 2.4.2, RFC 5816, ETSI EN 319 422).
 *
 * Why hand-built DER: at the target rate (>= 23,000 tokens/s on two cores)
 * OpenSSL's TS_RESP_CTX/PKCS7 path spends more CPU around the signature than
 * the signature itself. Everything constant (the CMS signer's certificates,
 * identifier, algorithm identifiers and constant signed attributes in
 * ca/cms.h; the accuracy and qcStatements extension here) is encoded once in
 * qtsp_tsa_new; per token only serial, genTime, nonce, imprint,
 * messageDigest and the signature are written, front to back with every
 * length computed first (core/der.h), so nothing is moved. */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "ca/cms.h"
#include "core/clock.h"
#include "core/der.h"
#include "core/log.h"
#include "core/time.h"
#include "tsa/tsa_int.h"

#define JOURNAL_QUEUE 4096 /* bounded queue of entries awaiting commit */
/* Group-commit gathering: a commit of fewer than JOURNAL_GATHER entries
 * first waits for more while they keep coming (one at least every
 * JOURNAL_IDLE_US), for at most JOURNAL_GATHER_US in all. A commit has a
 * fixed CPU cost (two syncs, meta page, branch pages) that tiny batches pay
 * per token when the disk is fast; once entries stop coming (the clients
 * whose tokens wait for this commit send nothing new), waiting longer only
 * adds latency; so the gathering also ends as soon as the transport says
 * every client waits for an answer (qtsp_tsa_set_arrivals). */
#define JOURNAL_GATHER 256
#define JOURNAL_GATHER_US 2000
#define JOURNAL_IDLE_US 400
#define JOURNAL_VERSION 1 /* first byte of every journal value */
#define JOURNAL_VOID 2    /* ... of an entry whose token was never made (signing failed) */
#define SERIAL_LEN 17     /* 0x00 + genTime ms (top bit set) + 8 random: 128-bit positive */
#define SIG_MAX 1024
#define REJECT_MAX 256      /* bytes of a rejection TimeStampResp, at most */
#define WARN_EVERY_MS 60000 /* rate limit of the unsynchronised-clock warning */
#define N_FAILINFO 26

/* ---- object identifiers (content octets) ----------------------------------- */

static const unsigned char OID_CT_TSTINFO[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                               0x01, 0x09, 0x10, 0x01, 0x04};
static const unsigned char OID_QC_STATEMENTS[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03};
/* esi4-qtstStatement-1, EN 319 422 clause 9.1 */
static const unsigned char OID_QTST_STATEMENT_1[] = {0x04, 0x00, 0x81, 0x97, 0x5e, 0x01, 0x01};

/* ---- the TSA --------------------------------------------------------------- */

/* One token awaiting its journal commit (a job). A waiting requester
 * (job_wait) waits for done; a started job (job_start) is the TSA's: the
 * part that finishes last (journal commit or signature) calls done_fn and
 * frees it. */
typedef struct jentry {
    unsigned char key[SERIAL_LEN];
    unsigned char val[1 + 8 + 2 * QTSP_TSA_MAX_OID + 1 + 64 + 2];
    size_t val_len;
    int done;                 /* waiting: the batch was committed */
    qtsp_status rc;           /* waiting: its result */
    qtsp_tsa_done_fn done_fn; /* started: called when signed and committed */
    void *done_ctx;
    unsigned char *der; /* the granted TimeStampResp (malloc'd, der_cap) */
    size_t der_len, der_cap;
    unsigned char *tst, *attrs; /* TSTInfo; signed attributes (the TSA's size): in buf */
    size_t tst_len;
    int cert_req;
    int is_signed;        /* der holds the token */
    struct qtsp_tsa *tsa; /* the TSA it belongs to */
    /* started: parts still running (signature, journal commit); the one
     * that finishes last answers. Their results: */
    _Atomic int pending;
    qtsp_status sign_rc, commit_rc;
    unsigned char buf[]; /* TSTInfo, then the signed attributes */
} jentry;

/* Frees an entry and its response buffer. NULL is a no-op. */
static void jentry_free(jentry *e)
{
    if (e) {
        free(e->der);
        free(e);
    }
}

struct qtsp_tsa {
    qtsp_tsa_policy pol;
    X509 *cert;
    STACK_OF(X509) * chain;
    const qtsp_key *key;  /* borrowed */
    qtsp_sigalg alg;      /* ECDSA or RSA PKCS#1 v1.5 with SHA-256 */
    qtsp_signq *signq;    /* NULL: tokens are signed on the requester's thread */
    qtsp_cms_signer *cms; /* SignedData parts (SHA-256, the key's algorithm) */
    const EVP_MD *sha256; /* the CMS signer's */
    qtsp_tsa_sync_fn sync_fn;
    void *sync_ctx;

    /* Pre-encoded constant parts of TSTInfo (full TLVs; room for the
     * writer's header margin). */
    unsigned char accuracy[8 + QTSP_DER_HDR_MAX]; /* Accuracy */
    size_t accuracy_len;
    unsigned char tst_ext[32 + QTSP_DER_HDR_MAX]; /* [1] Extensions with qcStatements */
    size_t tst_ext_len;
    size_t attrs_len; /* the signed attributes' length (the same for every token) */

    /* Counters (RFC 3161 has no notion of them; for /metrics). */
    _Atomic uint64_t issued;
    _Atomic uint64_t rejected[N_FAILINFO];
    _Atomic int clock_synced;
    _Atomic int64_t last_warn_ms;
    _Atomic uint64_t journal_batches; /* commits; entries per commit = issued / batches */
    _Atomic uint64_t journal_commit_us;

    /* Journal group commit. */
    qtsp_tsa_journal journal;      /* put NULL: no journal */
    int (*all_waiting)(void *ctx); /* qtsp_tsa_set_arrivals; both under mu */
    void *all_waiting_ctx;
    pthread_t committer;
    int committer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* committer: entries queued or stop */
    pthread_cond_t cv_done;  /* requesters: a batch was committed */
    pthread_cond_t cv_space; /* requesters: the queue has room */
    jentry *queue[JOURNAL_QUEUE];
    size_t qn;
    int stop;
    int kick;                     /* a holder released its entries: commit them without gathering */
    jentry *batch[JOURNAL_QUEUE]; /* the committer's copy of the queue */
    qtsp_tsa_record recs[JOURNAL_QUEUE]; /* ... as journal records */
};

int qtsp_tsa_clock_synced(void *ctx)
{
    (void)ctx;
    struct timex tx;
    memset(&tx, 0, sizeof tx); /* modes 0: read only */
    int state = adjtimex(&tx);
    if (state == -1 || state == TIME_ERROR)
        return 0;
    return (tx.status & STA_UNSYNC) ? 0 : 1;
}

void qtsp_tsa_set_sync_check(qtsp_tsa *tsa, qtsp_tsa_sync_fn fn, void *ctx)
{
    tsa->sync_fn = fn ? fn : qtsp_tsa_clock_synced;
    tsa->sync_ctx = fn ? ctx : NULL;
}

/* ---- setup ----------------------------------------------------------------- */

static qtsp_status build_constants(qtsp_tsa *tsa)
{
    qtsp_der_w w;

    /* Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL,
     *                         millis [0] INTEGER (1..999) OPTIONAL, ... } */
    qtsp_der_w_init(&w, tsa->accuracy, sizeof tsa->accuracy);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    if (tsa->pol.accuracy_ms >= 1000)
        qtsp_der_u64(&w, QTSP_DER_INTEGER, 1);
    else
        qtsp_der_u64(&w, QTSP_DER_CTX(0), tsa->pol.accuracy_ms);
    qtsp_der_close(&w, m);
    TRY(qtsp_der_w_finish(&w, &tsa->accuracy_len));

    /* extensions [1] IMPLICIT Extensions { qcStatements, non-critical (critical
     * omitted: DEFAULT FALSE), value QCStatements { { esi4-qtstStatement-1 } } } */
    qtsp_der_w_init(&w, tsa->tst_ext, sizeof tsa->tst_ext);
    size_t mx = qtsp_der_open(&w, QTSP_DER_CTX_C(1));
    size_t me = qtsp_der_open(&w, QTSP_DER_SEQUENCE); /* Extension */
    qtsp_der_oid(&w, OID_QC_STATEMENTS, sizeof OID_QC_STATEMENTS);
    size_t mv = qtsp_der_open(&w, QTSP_DER_OCTET_STRING); /* extnValue */
    size_t ms = qtsp_der_open(&w, QTSP_DER_SEQUENCE);     /* QCStatements */
    size_t mq = qtsp_der_open(&w, QTSP_DER_SEQUENCE);     /* QCStatement */
    qtsp_der_oid(&w, OID_QTST_STATEMENT_1, sizeof OID_QTST_STATEMENT_1);
    qtsp_der_close(&w, mq);
    qtsp_der_close(&w, ms);
    qtsp_der_close(&w, mv);
    qtsp_der_close(&w, me);
    qtsp_der_close(&w, mx);
    TRY(qtsp_der_w_finish(&w, &tsa->tst_ext_len));

    /* SignedData (RFC 5816 2.2.1): SignerInfo v1 with issuerAndSerialNumber,
     * SHA-256, signed attributes contentType id-ct-TSTInfo, messageDigest and
     * signingCertificateV2; ecdsa-with-SHA256 or sha256WithRSAEncryption;
     * certificates: the TSA's, then the chain (only when certReq). */
    qtsp_cms_signer_opts o = {
        tsa->cert, tsa->chain, tsa->alg, OID_CT_TSTINFO, sizeof OID_CT_TSTINFO, 1};
    TRY(qtsp_cms_signer_new(&o, &tsa->cms));
    tsa->sha256 = qtsp_cms_signer_md(tsa->cms);
    unsigned char zero[32] = {0};
    qtsp_cms_attrs a = {zero, sizeof zero, 0, 0, NULL, 0};
    tsa->attrs_len = qtsp_cms_signed_attrs_size(tsa->cms, &a);
    ENSURE(tsa->attrs_len > 0, QTSP_ERR_INTERNAL, "signed attributes: %s", qtsp_err_what());

    size_t sig_max = qtsp_key_sig_max(tsa->key);
    ENSURE(sig_max > 0 && sig_max <= SIG_MAX, QTSP_ERR_UNSUPPORTED,
           "TSA key size %zu is not supported", sig_max);
    return QTSP_OK;
}

static void *committer_main(void *arg);

qtsp_status qtsp_tsa_new_journal(const qtsp_tsa_policy *pol, X509 *tsa_cert, STACK_OF(X509) * chain,
                                 const qtsp_key *key, const qtsp_tsa_journal *journal,
                                 qtsp_tsa **out)
{
    qtsp_status rc;
    ENSURE(pol && tsa_cert && key && out, QTSP_ERR_INVALID,
           "TSA needs a policy, a certificate and a key");
    ENSURE(pol->oid_len > 0 && pol->accuracy_ms >= 1 && pol->accuracy_ms <= 1000 && pol->hash_mask,
           QTSP_ERR_INVALID, "TSA policy incomplete");
    qtsp_sigalg alg;
    TRY(qtsp_key_sigalg(key, EVP_sha256(), &alg));
    ENSURE(EVP_PKEY_eq(X509_get0_pubkey(tsa_cert), qtsp_key_get0_pubkey(key)) == 1,
           QTSP_ERR_INVALID, "TSA key does not match the TSA certificate");

    qtsp_tsa *tsa = calloc(1, sizeof *tsa);
    ENSURE(tsa != NULL, QTSP_ERR_NOMEM, "out of memory");
    tsa->pol = *pol;
    tsa->sync_fn = qtsp_tsa_clock_synced;
    atomic_store(&tsa->clock_synced, -1);
    atomic_store(&tsa->last_warn_ms, INT64_MIN);
    pthread_mutex_init(&tsa->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* for the gathering deadline */
    pthread_cond_init(&tsa->cv_work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&tsa->cv_done, NULL);
    pthread_cond_init(&tsa->cv_space, NULL);
    X509_up_ref(tsa_cert);
    tsa->cert = tsa_cert;
    tsa->key = key;
    tsa->alg = alg;
    if (chain) {
        tsa->chain = X509_chain_up_ref(chain);
        ENSURE_OUT(tsa->chain != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(build_constants(tsa));
    if (journal && journal->put) {
        tsa->journal = *journal;
        ENSURE_OUT(pthread_create(&tsa->committer, NULL, committer_main, tsa) == 0, QTSP_ERR_NOMEM,
                   "cannot start the TSA journal thread");
        tsa->committer_started = 1;
    }
    *out = tsa;
    return QTSP_OK;
out:
    qtsp_tsa_free(tsa);
    return rc;
}

void qtsp_tsa_free(qtsp_tsa *tsa)
{
    if (!tsa)
        return;
    if (tsa->committer_started) {
        pthread_mutex_lock(&tsa->mu);
        tsa->stop = 1;
        pthread_cond_broadcast(&tsa->cv_work);
        pthread_mutex_unlock(&tsa->mu);
        pthread_join(tsa->committer, NULL);
    }
    pthread_mutex_destroy(&tsa->mu);
    pthread_cond_destroy(&tsa->cv_work);
    pthread_cond_destroy(&tsa->cv_done);
    pthread_cond_destroy(&tsa->cv_space);
    qtsp_cms_signer_free(tsa->cms);
    X509_free(tsa->cert);
    sk_X509_pop_free(tsa->chain, X509_free);
    free(tsa);
}

/* ---- journal group commit ---------------------------------------------------- */

typedef struct batch {
    jentry **e;
    size_t n;
} batch;

/* Under mu, as every call of the hint: once this returns, no thread is
 * inside the previous one (its ctx may be freed). */
void qtsp_tsa_set_arrivals(qtsp_tsa *tsa, int (*all_waiting)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&tsa->mu);
    tsa->all_waiting = all_waiting;
    tsa->all_waiting_ctx = ctx;
    pthread_mutex_unlock(&tsa->mu);
}

/* Under mu. 1 when the transport says no client can send more before an
 * answer leaves (qtsp_tsa_set_arrivals): gathering would only add latency. */
static int clients_all_waiting(qtsp_tsa *tsa)
{
    return tsa->all_waiting && tsa->all_waiting(tsa->all_waiting_ctx);
}

/* The TSA whose committer this thread wakes only at release (qtsp_tsa_hold),
 * and how many entries it queued meanwhile: a round without a time-stamp
 * (OCSP's) releases without taking the queue's lock. */
static _Thread_local qtsp_tsa *t_held;
static _Thread_local size_t t_held_n;

void qtsp_tsa_hold(qtsp_tsa *tsa)
{
    t_held = tsa;
    t_held_n = 0;
}

void qtsp_tsa_release(qtsp_tsa *tsa)
{
    if (t_held != tsa || tsa == NULL)
        return;
    t_held = NULL;
    if (t_held_n == 0)
        return;
    t_held_n = 0;
    pthread_mutex_lock(&tsa->mu);
    int wake = tsa->qn > 0;
    if (wake)
        tsa->kick = 1;
    pthread_mutex_unlock(&tsa->mu);
    if (wake) /* after the unlock: the woken committer does not block on mu again */
        pthread_cond_signal(&tsa->cv_work);
}

/* Writes b as one durable transaction; a serial already journalled fails it. */
static qtsp_status journal_write(qtsp_tsa *tsa, const batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        tsa->recs[i] = (qtsp_tsa_record){b->e[i]->key, SERIAL_LEN, b->e[i]->val, b->e[i]->val_len};
    return tsa->journal.put(tsa->journal.ctx, tsa->recs, b->n, 0);
}

static qtsp_status reject_der(qtsp_tsa *tsa, int bit, unsigned char *buf, size_t cap, size_t *len);

/* Completes a started job: the token when its entry is committed and it is
 * signed, otherwise a systemFailure rejection (a token whose entry is not
 * durable never leaves), written into the job's own response buffer (made
 * on the requester's thread). Frees e, then calls its done_fn. */
static void answer(qtsp_tsa *tsa, jentry *e, qtsp_status rc)
{
    qtsp_tsa_done_fn done = e->done_fn;
    void *ctx = e->done_ctx;
    unsigned char *der = NULL;
    size_t len = 0;
    if (rc == QTSP_OK) {
        len = e->der_len;
        atomic_fetch_add(&tsa->issued, 1);
    } else {
        rc = reject_der(tsa, QTSP_TSA_FAIL_SYSTEM_FAILURE, e->der, e->der_cap, &len);
    }
    if (rc == QTSP_OK) {
        der = e->der; /* the callee's from here */
        e->der = NULL;
    }
    jentry_free(e);
    done(ctx, rc, der, len);
}

/* Rewrites the journal value of a token that was prepared and journalled
 * but whose signature failed: first octet 02 ("not issued"), the facts
 * unchanged. */
static qtsp_status void_write(qtsp_tsa *tsa, jentry *e)
{
    e->val[0] = JOURNAL_VOID;
    qtsp_tsa_record r = {e->key, SERIAL_LEN, e->val, e->val_len};
    return tsa->journal.put(tsa->journal.ctx, &r, 1, 1);
}

/* One part of a started token is done (its journal commit, or its
 * signature when it was signed on the queue: the two run in parallel, as
 * the journal entry is known before the signature). The last part answers:
 * the token when both succeeded, else systemFailure; a journalled entry
 * whose token was never made is marked not issued. */
static void part_done(qtsp_tsa *tsa, jentry *e)
{
    if (atomic_fetch_sub_explicit(&e->pending, 1, memory_order_acq_rel) != 1)
        return;
    if (e->commit_rc == QTSP_OK && e->sign_rc != QTSP_OK && void_write(tsa, e) != QTSP_OK) {
        LOG_ERROR("tsa: cannot mark an unsigned journal entry as not issued: %s",
                  qtsp_err_message());
        qtsp_err_clear();
    }
    answer(tsa, e, e->commit_rc != QTSP_OK ? e->commit_rc : e->sign_rc);
}

/* Commits whatever is queued as one write transaction (one fsync), then
 * completes the started jobs of that batch and wakes its waiting
 * requesters. Runs until qtsp_tsa_free and the queue is empty. */
static void *committer_main(void *arg)
{
    qtsp_tsa *tsa = arg;
    pthread_setname_np(pthread_self(), "qtsp-journal");
    pthread_mutex_lock(&tsa->mu);
    for (;;) {
        while (tsa->qn == 0 && !tsa->stop)
            pthread_cond_wait(&tsa->cv_work, &tsa->mu);
        if (tsa->qn == 0 && tsa->stop)
            break;
        if (tsa->qn < JOURNAL_GATHER && !tsa->stop && !tsa->kick) {
            uint64_t t = qtsp_mono_ns(), end = t + JOURNAL_GATHER_US * 1000ull;
            size_t seen = 0;
            while (tsa->qn < JOURNAL_GATHER && !tsa->stop && !tsa->kick && t < end &&
                   tsa->qn > seen && !clients_all_waiting(tsa)) {
                seen = tsa->qn;
                uint64_t until =
                    t + JOURNAL_IDLE_US * 1000ull < end ? t + JOURNAL_IDLE_US * 1000ull : end;
                struct timespec dl;
                clock_gettime(CLOCK_MONOTONIC, &dl);
                uint64_t ns = (uint64_t)dl.tv_nsec + (until - t);
                dl.tv_sec += (time_t)(ns / 1000000000ull);
                dl.tv_nsec = (long)(ns % 1000000000ull);
                pthread_cond_timedwait(&tsa->cv_work, &tsa->mu, &dl);
                t = qtsp_mono_ns();
            }
        }
        batch b = {tsa->batch, tsa->qn};
        memcpy(tsa->batch, tsa->queue, sizeof(jentry *) * tsa->qn);
        tsa->qn = 0;
        tsa->kick = 0;
        pthread_cond_broadcast(&tsa->cv_space);
        pthread_mutex_unlock(&tsa->mu);

        qtsp_err_clear();
        uint64_t t0 = qtsp_mono_ns();
        qtsp_status rc = journal_write(tsa, &b);
        atomic_fetch_add(&tsa->journal_batches, 1);
        atomic_fetch_add(&tsa->journal_commit_us, (qtsp_mono_ns() - t0) / 1000);
        if (rc != QTSP_OK)
            LOG_ERROR("tsa: journal commit of %zu tokens failed: %s", b.n, qtsp_err_message());
        size_t n_sync = 0;
        for (size_t i = 0; i < b.n; i++) {
            if (b.e[i]->done_fn) {
                b.e[i]->commit_rc = rc;
                part_done(tsa, b.e[i]);
            } else
                b.e[n_sync++] = b.e[i]; /* compacted: only waiters stay */
        }

        pthread_mutex_lock(&tsa->mu);
        for (size_t i = 0; i < n_sync; i++) {
            b.e[i]->rc = rc;
            b.e[i]->done = 1;
        }
        if (n_sync)
            pthread_cond_broadcast(&tsa->cv_done);
    }
    pthread_mutex_unlock(&tsa->mu);
    return NULL;
}

/* Queues e (waiting while the queue is full). A started job (done_fn set)
 * returns at once and the committer completes it; otherwise waits until
 * e's batch is committed. */
static qtsp_status journal_append(qtsp_tsa *tsa, jentry *e)
{
    e->done = 0;
    e->rc = QTSP_OK;
    pthread_mutex_lock(&tsa->mu);
    while (tsa->qn == JOURNAL_QUEUE && !tsa->stop) {
        pthread_cond_signal(&tsa->cv_work); /* entries this thread holds among them */
        pthread_cond_wait(&tsa->cv_space, &tsa->mu);
    }
    if (tsa->stop) {
        pthread_mutex_unlock(&tsa->mu);
        FAIL(QTSP_ERR_STATE, "TSA is shutting down");
    }
    tsa->queue[tsa->qn++] = e;
    /* the committer waits for these: a first entry, a full gather, and
     * (gathering) the last client that could have sent more now waiting;
     * a holder's started jobs wait for its release (qtsp_tsa_hold) */
    int held = t_held == tsa && e->done_fn;
    t_held_n += (size_t)held;
    int wake = tsa->qn == JOURNAL_GATHER || (!held && (tsa->qn == 1 || clients_all_waiting(tsa)));
    if (e->done_fn) {
        pthread_mutex_unlock(&tsa->mu);
        if (wake) /* after the unlock, as in qtsp_tsa_release */
            pthread_cond_signal(&tsa->cv_work);
        return QTSP_OK;
    }
    if (wake)
        pthread_cond_signal(&tsa->cv_work);
    while (!e->done)
        pthread_cond_wait(&tsa->cv_done, &tsa->mu);
    qtsp_status rc = e->rc;
    pthread_mutex_unlock(&tsa->mu);
    ENSURE(rc == QTSP_OK, rc, "time-stamp journal commit failed: %s", qtsp_strerror(rc));
    return QTSP_OK;
}

/* Journal value: version, genTime ms (u64 BE), policy OID TLV, hash OID
 * content, imprint; each variable part prefixed by its one-byte length. */
static void journal_entry(jentry *e, const unsigned char *serial, int64_t ms,
                          const unsigned char *policy, size_t policy_len, const qtsp_tsa_req *r)
{
    memcpy(e->key, serial, SERIAL_LEN);
    size_t n = 0;
    e->val[n++] = JOURNAL_VERSION;
    for (int i = 7; i >= 0; i--) /* big-endian u64 */
        e->val[n++] = (unsigned char)((uint64_t)ms >> (8 * i));
    e->val[n++] = (unsigned char)policy_len;
    memcpy(e->val + n, policy, policy_len);
    n += policy_len;
    e->val[n++] = (unsigned char)r->hash_oid_len;
    memcpy(e->val + n, r->hash_oid, r->hash_oid_len);
    n += r->hash_oid_len;
    e->val[n++] = (unsigned char)r->hashed_len;
    memcpy(e->val + n, r->hashed, r->hashed_len);
    n += r->hashed_len;
    e->val_len = n;
}

/* ---- responses ----------------------------------------------------------------- */

static const char *failinfo_name(int bit)
{
    switch (bit) {
    case QTSP_TSA_FAIL_BAD_ALG:
        return "badAlg";
    case QTSP_TSA_FAIL_BAD_REQUEST:
        return "badRequest";
    case QTSP_TSA_FAIL_BAD_DATA_FORMAT:
        return "badDataFormat";
    case QTSP_TSA_FAIL_TIME_NOT_AVAILABLE:
        return "timeNotAvailable";
    case QTSP_TSA_FAIL_UNACCEPTED_POLICY:
        return "unacceptedPolicy";
    case QTSP_TSA_FAIL_UNACCEPTED_EXTENSION:
        return "unacceptedExtension";
    case QTSP_TSA_FAIL_ADD_INFO_NOT_AVAILABLE:
        return "addInfoNotAvailable";
    case QTSP_TSA_FAIL_SYSTEM_FAILURE:
        return "systemFailure";
    default:
        return NULL;
    }
}

static const char *failinfo_text(int bit)
{
    switch (bit) {
    case QTSP_TSA_FAIL_BAD_ALG:
        return "unsupported hash algorithm";
    case QTSP_TSA_FAIL_BAD_REQUEST:
        return "unsupported request version";
    case QTSP_TSA_FAIL_BAD_DATA_FORMAT:
        return "malformed time-stamp request";
    case QTSP_TSA_FAIL_TIME_NOT_AVAILABLE:
        return "time source not synchronised";
    case QTSP_TSA_FAIL_UNACCEPTED_POLICY:
        return "requested policy not accepted";
    case QTSP_TSA_FAIL_UNACCEPTED_EXTENSION:
        return "request extensions not supported";
    default:
        return "system failure";
    }
}

/* TimeStampResp { PKIStatusInfo { rejection(2), statusString, failInfo } },
 * written at the start of buf (cap >= REJECT_MAX bytes). */
static qtsp_status reject_der(qtsp_tsa *tsa, int bit, unsigned char *buf, size_t cap, size_t *len)
{
    qtsp_der_w w;
    qtsp_der_w_init(&w, buf, cap);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    size_t ms = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_u64(&w, QTSP_DER_INTEGER, 2); /* PKIStatus rejection */
    const char *text = failinfo_text(bit);
    size_t mt = qtsp_der_open(&w, QTSP_DER_SEQUENCE); /* PKIFreeText ::= SEQUENCE OF UTF8String */
    qtsp_der_tlv(&w, QTSP_DER_UTF8STRING, text, strlen(text));
    qtsp_der_close(&w, mt);
    /* PKIFailureInfo: named BIT STRING, trailing zero bits dropped (X.690 11.2.2). */
    unsigned char bits[5] = {0};
    size_t nbytes = (size_t)bit / 8 + 1;
    bits[0] = (unsigned char)(7 - bit % 8); /* unused bits */
    bits[1 + bit / 8] = (unsigned char)(0x80u >> (bit % 8));
    qtsp_der_tlv(&w, QTSP_DER_BIT_STRING, bits, nbytes + 1);
    qtsp_der_close(&w, ms);
    qtsp_der_close(&w, m);
    TRY(qtsp_der_w_finish(&w, len));
    if ((unsigned)bit < N_FAILINFO)
        atomic_fetch_add(&tsa->rejected[bit], 1);
    return QTSP_OK;
}

/* The rejection for bit into out (reset first). */
static qtsp_status reject(qtsp_tsa *tsa, int bit, qtsp_buf *out)
{
    unsigned char buf[REJECT_MAX];
    size_t len = 0;
    TRY(reject_der(tsa, bit, buf, sizeof buf, &len));
    qtsp_buf_reset(out);
    return qtsp_buf_append(out, buf, len);
}

static qtsp_status sign_attrs(qtsp_tsa *tsa, const unsigned char *attrs, size_t n,
                              unsigned char *sig, size_t *siglen)
{
    if (qtsp_key_sign_data(tsa->key, &tsa->alg, attrs, n, sig, siglen) != QTSP_OK)
        FAIL(QTSP_ERR_CRYPTO, "signing the time-stamp token failed: %s", qtsp_err_what());
    return QTSP_OK;
}

/* A new entry for r (*out, jentry_free): its TSTInfo and signed attributes
 * (messageDigest = SHA-256(TSTInfo)), its journal entry, and a response
 * buffer large enough for the token; the signature over e->attrs is all
 * that is missing. Everything is allocated here, on the requester's (HTTP)
 * thread, which also frees the response once sent: no buffer crosses
 * threads to be freed (glibc frees a large chunk into the arena of the
 * thread that made it, under that arena's lock). */
static qtsp_status prepare_token(qtsp_tsa *tsa, const qtsp_tsa_req *r, jentry **out)
{
    int64_t ms = qtsp_now_ms();
    /* Serial: 0x00, then genTime in ms (8 octets, big-endian, top bit set:
     * fixed length, positive, never zero), then 8 random octets. Serials
     * grow with time, so the journal (keyed by serial) appends near the end
     * of its B-tree: a commit of n tokens dirties a leaf or two instead of
     * n random leaves. Unique: 64 random bits per millisecond, and the
     * journal's NOOVERWRITE refuses a repeat. */
    unsigned char serial[SERIAL_LEN];
    serial[0] = 0x00;
    for (int i = 0; i < 8; i++)
        serial[1 + i] = (unsigned char)((uint64_t)ms >> (8 * (7 - i)));
    serial[1] |= 0x80;
    TRY(qtsp_random_public(serial + 9, SERIAL_LEN - 9));
    char gt[QTSP_TIME_GEN_MAX];
    size_t gtl = qtsp_time_gen(ms, gt);
    ENSURE(gtl != 0, QTSP_ERR_INTERNAL, "the clock is outside GeneralizedTime");
    const unsigned char *policy = r->policy ? r->policy : tsa->pol.oid;
    size_t policy_len = r->policy ? r->policy_len : tsa->pol.oid_len;

    /* TSTInfo (RFC 3161 2.4.2): every part's length is known, so it is
     * written once, in place. */
    size_t serial_tlv = qtsp_der_uint_size(serial, SERIAL_LEN);
    size_t tst_body = 3 + policy_len + r->imprint_len + serial_tlv + qtsp_der_tlv_size(gtl) +
                      tsa->accuracy_len + (r->nonce ? r->nonce_len : 0) + tsa->tst_ext_len;
    size_t tst_len = qtsp_der_tlv_size(tst_body);
    jentry *e = calloc(1, sizeof *e + tst_len + tsa->attrs_len + QTSP_DER_HDR_MAX);
    ENSURE(e != NULL, QTSP_ERR_NOMEM, "out of memory");
    e->tsa = tsa;
    e->tst = e->buf;
    e->tst_len = tst_len;
    e->attrs = e->buf + tst_len;
    qtsp_der_w w;
    qtsp_der_w_init(&w, e->tst, tst_len + tsa->attrs_len + QTSP_DER_HDR_MAX);
    qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, tst_body);
    qtsp_der_u64(&w, QTSP_DER_INTEGER, 1); /* version v1 */
    qtsp_der_raw(&w, policy, policy_len);
    qtsp_der_raw(&w, r->imprint, r->imprint_len); /* messageImprint as requested */
    qtsp_der_uint(&w, serial, SERIAL_LEN);
    qtsp_der_tlv(&w, QTSP_DER_GENTIME, gt, gtl);
    qtsp_der_raw(&w, tsa->accuracy, tsa->accuracy_len);
    if (r->nonce)
        qtsp_der_raw(&w, r->nonce, r->nonce_len);     /* nonce echoed as sent */
    qtsp_der_raw(&w, tsa->tst_ext, tsa->tst_ext_len); /* no tsa name, ordering absent */
    size_t written = 0;
    qtsp_status rc = qtsp_der_w_finish(&w, &written);
    if (rc == QTSP_OK && written != tst_len)
        rc = qtsp_err_set(QTSP_ERR_INTERNAL, __FILE__, __LINE__, "TSTInfo length mismatch");

    /* Signed attributes with messageDigest = SHA-256(TSTInfo). */
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (rc == QTSP_OK &&
        (EVP_Digest(e->tst, e->tst_len, md, &mdlen, tsa->sha256, NULL) != 1 || mdlen != 32))
        rc = qtsp_err_set(QTSP_ERR_CRYPTO, __FILE__, __LINE__, "cannot hash TSTInfo");
    qtsp_cms_attrs a = {md, sizeof md, 0, 0, NULL, 0};
    size_t alen = 0;
    if (rc == QTSP_OK)
        rc = qtsp_cms_signed_attrs(tsa->cms, &a, e->attrs, tsa->attrs_len, &alen);

    /* The response buffer: the token with the longest signature. */
    if (rc == QTSP_OK) {
        qtsp_cms_parts p = {e->attrs, alen, md, SIG_MAX, e->tst, e->tst_len, r->cert_req, NULL, 0};
        size_t ci = qtsp_cms_size(tsa->cms, &p);
        e->der_cap = qtsp_der_tlv_size(5 + ci) + QTSP_DER_HDR_MAX;
        if (e->der_cap < REJECT_MAX)
            e->der_cap = REJECT_MAX;
        e->der = malloc(e->der_cap);
        if (!e->der)
            rc = qtsp_err_set(QTSP_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    if (rc != QTSP_OK) {
        jentry_free(e);
        return rc;
    }
    e->cert_req = r->cert_req;
    journal_entry(e, serial, ms, policy, policy_len, r);
    *out = e;
    return QTSP_OK;
}

/* The granted TimeStampResp around e's TSTInfo, signed attributes and sig,
 * written into e->der (e->der_len bytes). */
static qtsp_status finish_token(qtsp_tsa *tsa, jentry *e, const unsigned char *sig, size_t siglen)
{
    ENSURE(siglen <= SIG_MAX, QTSP_ERR_INTERNAL, "signature too long");
    /* TimeStampResp { PKIStatusInfo { granted }, ContentInfo { signedData,
     * [0] SignedData } }; RFC 3161 2.4.1: certificates only on request. */
    qtsp_cms_parts p = {e->attrs,   tsa->attrs_len, sig,  siglen, e->tst,
                        e->tst_len, e->cert_req,    NULL, 0};
    size_t ci = qtsp_cms_size(tsa->cms, &p);
    qtsp_der_w w;
    qtsp_der_w_init(&w, e->der, e->der_cap);
    qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, 5 + ci);
    qtsp_der_raw(&w, "\x30\x03\x02\x01\x00", 5);
    TRY(qtsp_cms_write(tsa->cms, &p, &w));
    return qtsp_der_w_finish(&w, &e->der_len);
}

/* Signs e on this thread and finishes its token (e->der). */
static qtsp_status sign_now(qtsp_tsa *tsa, jentry *e)
{
    unsigned char sig[SIG_MAX];
    size_t siglen = sizeof sig;
    TRY(sign_attrs(tsa, e->attrs, tsa->attrs_len, sig, &siglen));
    TRY(finish_token(tsa, e, sig, siglen));
    e->is_signed = 1;
    return QTSP_OK;
}

/* ---- tokens signed on the signing queue (ca/signq.h) ---- */

void qtsp_tsa_set_signq(qtsp_tsa *tsa, qtsp_signq *q)
{
    tsa->signq = q;
}

/* Whether started jobs are signed on the signing queue (else by the
 * requester, in respond_begin). */
static int signs_queued(const qtsp_tsa *tsa)
{
    return tsa->signq && tsa->journal.put;
}

/* The signature of a queued token (signing thread): finish the token; the
 * journal commit of its entry runs meanwhile (see part_done). */
static void queued_signed(void *ctx, qtsp_status rc, const unsigned char *sig, size_t siglen)
{
    jentry *e = ctx;
    if (rc == QTSP_OK && (rc = finish_token(e->tsa, e, sig, siglen)) != QTSP_OK) {
        LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
        qtsp_err_clear();
    } /* a signing failure is logged by the queue */
    e->sign_rc = rc;
    part_done(e->tsa, e);
}

static int clock_ok(qtsp_tsa *tsa)
{
    int ok = tsa->sync_fn(tsa->sync_ctx) ? 1 : 0;
    atomic_store(&tsa->clock_synced, ok);
    if (!ok) {
        int64_t now = qtsp_now_ms();
        int64_t last = atomic_load(&tsa->last_warn_ms);
        if ((last == INT64_MIN || now - last >= WARN_EVERY_MS || now < last) &&
            atomic_compare_exchange_strong(&tsa->last_warn_ms, &last, now))
            LOG_WARN("tsa: system clock not synchronised (adjtimex); rejecting time-stamp "
                     "requests with timeNotAvailable");
    }
    return ok;
}

/* A token that could not be issued becomes a protocol answer; the failure
 * is logged here, once. */
static qtsp_status system_failure(qtsp_tsa *tsa, qtsp_buf *out)
{
    LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
    qtsp_err_clear();
    return reject(tsa, QTSP_TSA_FAIL_SYSTEM_FAILURE, out);
}

/* The granted token of e into out; counts it. */
static qtsp_status deliver(qtsp_tsa *tsa, const jentry *e, qtsp_buf *out)
{
    qtsp_buf_reset(out);
    TRY(qtsp_buf_append(out, e->der, e->der_len));
    atomic_fetch_add(&tsa->issued, 1);
    return QTSP_OK;
}

/* First half of an answer: parses the query, checks the clock, prepares the
 * token and, unless it will be signed on the queue, signs it. Either *job
 * is NULL and out holds the whole answer (a rejection, a token without a
 * journal, systemFailure), or out is untouched and *job waits for its
 * journal commit: job_start (answer through a callback) or job_wait
 * (block) takes it. Two steps because a transport must arrange to answer
 * later (suspend its request) before anything can complete, and only for
 * answers that do wait. */
static qtsp_status respond_begin(qtsp_tsa *tsa, const unsigned char *query, size_t len,
                                 qtsp_buf *out, jentry **job)
{
    *job = NULL;
    qtsp_tsa_req r;
    int bit = qtsp_tsa_parse_query(&tsa->pol, query, len, &r);
    if (bit >= 0)
        return reject(tsa, bit, out);
    if (tsa->pol.require_sync && !clock_ok(tsa))
        return reject(tsa, QTSP_TSA_FAIL_TIME_NOT_AVAILABLE, out);
    qtsp_err_clear(); /* so a failure logged below is this request's own */
    jentry *e = NULL;
    qtsp_status rc = prepare_token(tsa, &r, &e);
    if (rc == QTSP_OK && !signs_queued(tsa))
        rc = sign_now(tsa, e);
    if (rc == QTSP_OK && tsa->journal.put) {
        *job = e; /* the token leaves only once its journal entry is durable */
        return QTSP_OK;
    }
    if (rc == QTSP_OK)
        rc = deliver(tsa, e, out);
    jentry_free(e);
    return rc == QTSP_OK ? QTSP_OK : system_failure(tsa, out);
}

/* Finishes e on the calling thread: signs it when not yet signed, waits
 * for its journal commit, writes the token (or systemFailure) into out and
 * frees e. */
static qtsp_status job_wait(jentry *e, qtsp_buf *out)
{
    qtsp_tsa *tsa = e->tsa;
    qtsp_status rc = e->is_signed ? QTSP_OK : sign_now(tsa, e);
    if (rc == QTSP_OK)
        rc = journal_append(tsa, e); /* no done_fn: waits for the commit */
    if (rc == QTSP_OK)
        rc = deliver(tsa, e, out);
    jentry_free(e);
    return rc == QTSP_OK ? QTSP_OK : system_failure(tsa, out);
}

/* Queues e's journal entry and, when it is not signed yet, its signature
 * on the signing queue: the two run in parallel (the entry does not depend
 * on the signature); part_done calls done after the later of the two. The
 * calling thread never waits for the disk or the token; only a full
 * journal queue makes it wait. e is the TSA's from here on. */
static void job_start(jentry *e, qtsp_tsa_done_fn done, void *ctx)
{
    qtsp_tsa *tsa = e->tsa;
    e->done_fn = done;
    e->done_ctx = ctx;
    e->sign_rc = e->commit_rc = QTSP_ERR_INTERNAL;
    unsigned char md[32];
    int queued = !e->is_signed;
    if (queued && EVP_Digest(e->attrs, tsa->attrs_len, md, NULL, tsa->sha256, NULL) != 1) {
        queued = 0; /* cannot hash for the queue: sign here */
        qtsp_status rc = sign_now(tsa, e);
        if (rc != QTSP_OK) { /* no token, nothing journalled */
            LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
            qtsp_err_clear();
            answer(tsa, e, rc);
            return;
        }
    }
    atomic_store(&e->pending, queued ? 2 : 1);
    if (!queued)
        e->sign_rc = QTSP_OK;                /* signed already: the commit answers */
    qtsp_status rc = journal_append(tsa, e); /* from here the committer may finish its part */
    if (rc != QTSP_OK) {                     /* not queued (shutting down): no token */
        LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
        qtsp_err_clear();
        e->commit_rc = rc;
        if (queued)
            queued_signed(e, rc, NULL, 0);
        part_done(tsa, e);
        return;
    }
    if (queued &&
        qtsp_signq_submit(tsa->signq, tsa->key, &tsa->alg, md, sizeof md, queued_signed, e) !=
            QTSP_OK) { /* stopping: the started job still needs its answer */
        LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
        qtsp_err_clear();
        queued_signed(e, QTSP_ERR_STATE, NULL, 0);
    }
}

qtsp_status qtsp_tsa_respond_async(qtsp_tsa *tsa, const unsigned char *query, size_t len,
                                   qtsp_buf *out, const qtsp_tsa_async *async, int *pending)
{
    *pending = 0;
    jentry *job = NULL;
    TRY(respond_begin(tsa, query, len, out, &job));
    if (!job)
        return QTSP_OK;
    /* without done nobody could answer a started job: wait inline */
    void *done_ctx = async && async->wait && async->done ? async->wait(async->ctx) : NULL;
    if (!done_ctx)
        return job_wait(job, out);
    *pending = 1;
    job_start(job, async->done, done_ctx);
    return QTSP_OK;
}

qtsp_status qtsp_tsa_respond(qtsp_tsa *tsa, const unsigned char *query, size_t len, qtsp_buf *out)
{
    int pending = 0;
    return qtsp_tsa_respond_async(tsa, query, len, out, NULL, &pending);
}

qtsp_status qtsp_tsa_metrics(void *ctx, qtsp_buf *out)
{
    qtsp_tsa *tsa = ctx;
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_tokens_issued_total counter\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_tokens_issued_total %llu\n",
                        (unsigned long long)atomic_load(&tsa->issued)));
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_rejections_total counter\n"));
    for (int bit = 0; bit < N_FAILINFO; bit++) {
        const char *name = failinfo_name(bit);
        if (name)
            TRY(qtsp_buf_printf(out, "qtsp_tsa_rejections_total{failinfo=\"%s\"} %llu\n", name,
                                (unsigned long long)atomic_load(&tsa->rejected[bit])));
    }
    if (tsa->journal.put) {
        TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_commits_total counter\n"));
        TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_commits_total %llu\n",
                            (unsigned long long)atomic_load(&tsa->journal_batches)));
        TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_journal_commit_seconds_total counter\n"));
        TRY(qtsp_buf_printf(out, "qtsp_tsa_journal_commit_seconds_total %.6f\n",
                            (double)atomic_load(&tsa->journal_commit_us) / 1e6));
    }
    int synced = tsa->sync_fn(tsa->sync_ctx) ? 1 : 0;
    atomic_store(&tsa->clock_synced, synced);
    TRY(qtsp_buf_puts(out, "# TYPE qtsp_tsa_clock_synchronised gauge\n"));
    TRY(qtsp_buf_printf(out, "qtsp_tsa_clock_synchronised %d\n", synced));
    return QTSP_OK;
}
