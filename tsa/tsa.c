/* Time-stamp tokens (RFC 3161 2.4.2, RFC 5816, ETSI EN 319 422).
 *
 * Why hand-built DER: at the target rate (>= 23,000 tokens/s on two cores)
 * OpenSSL's TS_RESP_CTX/PKCS7 path spends more CPU around the signature than
 * the signature itself. Everything constant (certificates, signer identifier,
 * algorithm identifiers, ESSCertIDv2, the qcStatements extension, the signed
 * attributes around messageDigest) is encoded once in qtsp_tsa_new; per token
 * only serial, genTime, nonce, imprint, messageDigest and the signature are
 * written. The writer fills buffers from the end backwards, so each length is
 * known when its header is written and nothing is moved. */
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

#include "core/clock.h"
#include "core/log.h"
#include "tsa/tsa_int.h"

#define JOURNAL_QUEUE 4096 /* bounded queue of entries awaiting commit */
/* Group-commit gathering: a commit of fewer than JOURNAL_GATHER entries
 * first waits for more while they keep coming (one at least every
 * JOURNAL_IDLE_US), for at most JOURNAL_GATHER_US in all. A commit has a
 * fixed CPU cost (two syncs, meta page, branch pages) that tiny batches pay
 * per token when the disk is fast; once entries stop coming (the clients
 * whose tokens wait for this commit send nothing new), waiting longer only
 * adds latency. */
#define JOURNAL_GATHER 256
#define JOURNAL_GATHER_US 2000
#define JOURNAL_IDLE_US 400
#define JOURNAL_VERSION 1  /* first byte of every journal value */
#define JOURNAL_VOID 2     /* ... of an entry whose token was never made (signing failed) */
#define SERIAL_LEN 17      /* 0x00 + genTime ms (top bit set) + 8 random: 128-bit positive */
#define TST_MAX (QTSP_TSA_MAX_QUERY + 1024)
#define SIG_MAX 1024
#define WARN_EVERY_MS 60000 /* rate limit of the unsynchronised-clock warning */
#define N_FAILINFO 26

/* ---- DER writer (backwards) ------------------------------------------------ */

typedef struct dw {
    unsigned char *buf;
    size_t pos; /* first written byte; data is buf[pos..cap) */
    size_t cap;
    int err;
} dw;

static void dw_init(dw *w, unsigned char *buf, size_t cap)
{
    w->buf = buf;
    w->pos = cap;
    w->cap = cap;
    w->err = 0;
}

static size_t dw_used(const dw *w)
{
    return w->cap - w->pos;
}

static void dw_raw(dw *w, const void *p, size_t n)
{
    if (w->err || n > w->pos) {
        w->err = 1;
        return;
    }
    w->pos -= n;
    if (n)
        memcpy(w->buf + w->pos, p, n);
}

static void dw_byte(dw *w, unsigned char b)
{
    dw_raw(w, &b, 1);
}

/* Tag and definite length (X.690 8.1.3, minimal form). */
static void dw_hdr(dw *w, unsigned char tag, size_t len)
{
    if (len < 0x80) {
        dw_byte(w, (unsigned char)len);
    } else {
        unsigned char l[sizeof(size_t) + 1];
        size_t n = 0;
        for (size_t v = len; v; v >>= 8)
            l[sizeof l - 1 - n++] = (unsigned char)(v & 0xff);
        l[sizeof l - 1 - n] = (unsigned char)(0x80 | n);
        dw_raw(w, l + sizeof l - 1 - n, n + 1);
    }
    dw_byte(w, tag);
}

/* Wraps everything written since mark. */
static void dw_wrap(dw *w, unsigned char tag, size_t mark)
{
    dw_hdr(w, tag, dw_used(w) - mark);
}

static void dw_oid(dw *w, const unsigned char *content, size_t n)
{
    dw_raw(w, content, n);
    dw_hdr(w, 0x06, n);
}

/* Copies the written bytes into a fresh allocation (constants built at setup). */
static qtsp_status dw_take(const dw *w, unsigned char **out, size_t *len)
{
    ENSURE(!w->err, QTSP_ERR_INTERNAL, "DER scratch buffer too small");
    size_t n = dw_used(w);
    unsigned char *p = malloc(n ? n : 1);
    ENSURE(p != NULL, QTSP_ERR_NOMEM, "out of memory");
    memcpy(p, w->buf + w->pos, n);
    *out = p;
    *len = n;
    return QTSP_OK;
}

/* ---- object identifiers (content octets) ----------------------------------- */

static const unsigned char OID_SIGNED_DATA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                0x0d, 0x01, 0x07, 0x02};
static const unsigned char OID_CT_TSTINFO[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                               0x01, 0x09, 0x10, 0x01, 0x04};
static const unsigned char OID_CONTENT_TYPE[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                 0x0d, 0x01, 0x09, 0x03};
static const unsigned char OID_MESSAGE_DIGEST[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                   0x0d, 0x01, 0x09, 0x04};
static const unsigned char OID_SIGNING_CERT_V2[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                                    0x01, 0x09, 0x10, 0x02, 0x2f};
static const unsigned char OID_SHA256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
static const unsigned char OID_ECDSA_SHA256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const unsigned char OID_RSA_SHA256[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                               0x0d, 0x01, 0x01, 0x0b};
static const unsigned char OID_QC_STATEMENTS[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03};
/* esi4-qtstStatement-1, EN 319 422 clause 9.1 */
static const unsigned char OID_QTST_STATEMENT_1[] = {0x04, 0x00, 0x81, 0x97, 0x5e, 0x01, 0x01};

/* ---- the TSA --------------------------------------------------------------- */

/* One token (a qtsp_tsa_job) awaiting its journal commit. A waiting
 * requester (qtsp_tsa_job_wait) waits for done; a started job
 * (qtsp_tsa_job_start) is the TSA's: the part that finishes last (journal
 * commit or signature) calls done_fn and frees it. */
typedef struct qtsp_tsa_job {
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

typedef struct cbytes {
    unsigned char *p;
    size_t n;
} cbytes;

struct qtsp_tsa {
    qtsp_tsa_policy pol;
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
    qtsp_signer signer; /* fn NULL: EVP_DigestSign on key */
    qtsp_signq *signq;  /* NULL: tokens are signed on the HTTP thread */
    EVP_MD *sha256;
    qtsp_tsa_sync_fn sync_fn;
    void *sync_ctx;

    /* Pre-encoded constant parts (full TLVs). */
    cbytes accuracy;     /* Accuracy */
    cbytes tst_ext;      /* [1] Extensions with qcStatements */
    cbytes certs;        /* [0] IMPLICIT SET OF Certificate */
    cbytes sid;          /* IssuerAndSerialNumber */
    cbytes sha256_alg;   /* AlgorithmIdentifier sha256 (parameters absent, RFC 5754 2) */
    cbytes digest_algs;  /* SET { sha256 } */
    cbytes sig_alg;      /* signatureAlgorithm */
    cbytes attrs;        /* signed attributes as SET (0x31), digest zeroed */
    size_t attrs_md_off; /* offset of the 32 digest bytes inside attrs */
    size_t resp_max;     /* bound of a granted response */

    /* Counters (RFC 3161 has no notion of them; for /metrics). */
    _Atomic uint64_t issued;
    _Atomic uint64_t rejected[N_FAILINFO];
    _Atomic int clock_synced;
    _Atomic int64_t last_warn_ms;
    _Atomic uint64_t journal_batches; /* commits; entries per commit = issued / batches */
    _Atomic uint64_t journal_commit_us;

    /* Journal group commit. */
    qtsp_tsa_journal journal; /* put NULL: no journal */
    pthread_t committer;
    int committer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* committer: entries queued or stop */
    pthread_cond_t cv_done;  /* requesters: a batch was committed */
    pthread_cond_t cv_space; /* requesters: the queue has room */
    jentry *queue[JOURNAL_QUEUE];
    size_t qn;
    int stop;
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

/* Civil date from days since 1970-01-01 (H. Hinnant's algorithm); avoids
 * gmtime_r, which takes glibc's time-zone lock on every call. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

size_t qtsp_tsa_gentime(int64_t ms, char out[24])
{
    if (ms < 0)
        ms = 0;
    if (ms > INT64_C(253402300799999))
        ms = INT64_C(253402300799999); /* 9999-12-31T23:59:59.999Z */
    int64_t secs = ms / 1000;
    unsigned frac = (unsigned)(ms % 1000);
    int64_t days = secs / 86400;
    unsigned sod = (unsigned)(secs % 86400);
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    put_digits(out, (unsigned)y, 4);
    put_digits(out + 4, mo, 2);
    put_digits(out + 6, d, 2);
    put_digits(out + 8, sod / 3600, 2);
    put_digits(out + 10, sod / 60 % 60, 2);
    put_digits(out + 12, sod % 60, 2);
    size_t n = 14;
    if (frac) { /* X.690 11.7.3: no trailing zeros, no bare decimal point */
        out[n++] = '.';
        put_digits(out + n, frac, 3);
        n += 3;
        while (out[n - 1] == '0')
            n--;
    }
    out[n++] = 'Z';
    return n;
}

/* ---- setup ----------------------------------------------------------------- */

static qtsp_status i2d_copy(int len, unsigned char *der, cbytes *out)
{
    ENSURE(len > 0 && der != NULL, QTSP_ERR_CRYPTO, "DER encoding of a certificate part failed");
    out->p = der;
    out->n = (size_t)len;
    return QTSP_OK;
}

static qtsp_status build_constants(qtsp_tsa *tsa)
{
    qtsp_status rc = QTSP_OK;
    unsigned char *issuer = NULL, *serial = NULL;
    unsigned char *scratch = NULL;
    cbytes iss = {0}, ser = {0};
    dw w;
    size_t m0, m1, m2;

    /* Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999) OPTIONAL, ... }
     */
    unsigned char acc[16];
    dw_init(&w, acc, sizeof acc);
    if (tsa->pol.accuracy_ms >= 1000) {
        dw_byte(&w, 1);
        dw_hdr(&w, 0x02, 1);
    } else {
        unsigned v = tsa->pol.accuracy_ms;
        unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
        if (v < 0x80)
            dw_raw(&w, b + 1, 1), dw_hdr(&w, 0x80, 1);
        else
            dw_raw(&w, b, 2), dw_hdr(&w, 0x80, 2);
    }
    dw_wrap(&w, 0x30, 0);
    TRY_OUT(dw_take(&w, &tsa->accuracy.p, &tsa->accuracy.n));

    /* extensions [1] IMPLICIT Extensions { qcStatements, non-critical (critical
     * omitted: DEFAULT FALSE), value QCStatements { { esi4-qtstStatement-1 } } } */
    unsigned char ext[64];
    dw_init(&w, ext, sizeof ext);
    dw_oid(&w, OID_QTST_STATEMENT_1, sizeof OID_QTST_STATEMENT_1);
    dw_wrap(&w, 0x30, 0); /* QCStatement */
    dw_wrap(&w, 0x30, 0); /* QCStatements */
    dw_wrap(&w, 0x04, 0); /* extnValue */
    dw_oid(&w, OID_QC_STATEMENTS, sizeof OID_QC_STATEMENTS);
    dw_wrap(&w, 0x30, 0); /* Extension */
    dw_wrap(&w, 0xa1, 0);
    TRY_OUT(dw_take(&w, &tsa->tst_ext.p, &tsa->tst_ext.n));

    /* Issuer name and serial of the TSA certificate. */
    int il = i2d_X509_NAME(X509_get_issuer_name(tsa->cert), &issuer);
    TRY_OUT(i2d_copy(il, issuer, &iss));
    int sl = i2d_ASN1_INTEGER(X509_get0_serialNumber(tsa->cert), &serial);
    TRY_OUT(i2d_copy(sl, serial, &ser));

    /* Certificates: the TSA certificate, then the chain. */
    size_t certs_len = 0;
    int nchain = tsa->chain ? sk_X509_num(tsa->chain) : 0;
    for (int i = -1; i < nchain; i++) {
        X509 *c = i < 0 ? tsa->cert : sk_X509_value(tsa->chain, i);
        int l = i2d_X509(c, NULL);
        ENSURE_OUT(l > 0 && l < (1 << 20), QTSP_ERR_CRYPTO, "cannot encode a TSA certificate");
        certs_len += (size_t)l;
    }
    size_t scratch_len = certs_len + 2 * iss.n + ser.n + 1024;
    scratch = malloc(scratch_len);
    ENSURE_OUT(scratch != NULL, QTSP_ERR_NOMEM, "out of memory");
    dw_init(&w, scratch, scratch_len);
    for (int i = nchain - 1; i >= -1; i--) {
        X509 *c = i < 0 ? tsa->cert : sk_X509_value(tsa->chain, i);
        unsigned char *der = NULL;
        int l = i2d_X509(c, &der);
        ENSURE_OUT(l > 0, QTSP_ERR_CRYPTO, "cannot encode a TSA certificate");
        dw_raw(&w, der, (size_t)l);
        OPENSSL_free(der);
    }
    dw_wrap(&w, 0xa0, 0);
    TRY_OUT(dw_take(&w, &tsa->certs.p, &tsa->certs.n));

    /* sid: IssuerAndSerialNumber (RFC 5652 5.3, SignerInfo version 1). */
    dw_init(&w, scratch, scratch_len);
    dw_raw(&w, ser.p, ser.n);
    dw_raw(&w, iss.p, iss.n);
    dw_wrap(&w, 0x30, 0);
    TRY_OUT(dw_take(&w, &tsa->sid.p, &tsa->sid.n));

    dw_init(&w, scratch, scratch_len);
    dw_oid(&w, OID_SHA256, sizeof OID_SHA256);
    dw_wrap(&w, 0x30, 0);
    TRY_OUT(dw_take(&w, &tsa->sha256_alg.p, &tsa->sha256_alg.n));
    dw_wrap(&w, 0x31, 0);
    TRY_OUT(dw_take(&w, &tsa->digest_algs.p, &tsa->digest_algs.n));

    dw_init(&w, scratch, scratch_len);
    if (EVP_PKEY_get_base_id(tsa->key) == EVP_PKEY_EC) {
        dw_oid(&w, OID_ECDSA_SHA256, sizeof OID_ECDSA_SHA256); /* RFC 5758 3.2: no parameters */
    } else {
        dw_raw(&w, "\x05\x00", 2); /* RFC 4055 5: NULL parameters */
        dw_oid(&w, OID_RSA_SHA256, sizeof OID_RSA_SHA256);
    }
    dw_wrap(&w, 0x30, 0);
    TRY_OUT(dw_take(&w, &tsa->sig_alg.p, &tsa->sig_alg.n));

    /* Signed attributes (RFC 5652 5.3, RFC 5816 2.2.1), DER SET OF order:
     * contentType (len 0x18) < messageDigest (len 0x2f) < signingCertificateV2
     * (longer), as the encodings first differ in their length octets. */
    unsigned char hash[32];
    unsigned int hlen = 0;
    ENSURE_OUT(X509_digest(tsa->cert, tsa->sha256, hash, &hlen) == 1 && hlen == 32, QTSP_ERR_CRYPTO,
               "cannot hash the TSA certificate");
    dw_init(&w, scratch, scratch_len);
    /* signingCertificateV2 { certs { ESSCertIDv2 { certHash, issuerSerial } } }
     * hashAlgorithm omitted: DEFAULT sha256 (RFC 5035 4). */
    m0 = dw_used(&w);
    m1 = dw_used(&w);
    m2 = dw_used(&w);
    dw_raw(&w, ser.p, ser.n);
    size_t mg = dw_used(&w);
    dw_raw(&w, iss.p, iss.n);
    dw_wrap(&w, 0xa4, mg); /* directoryName [4] EXPLICIT Name */
    dw_wrap(&w, 0x30, mg); /* GeneralNames */
    dw_wrap(&w, 0x30, m2); /* IssuerSerial */
    dw_raw(&w, hash, 32);
    dw_hdr(&w, 0x04, 32);
    dw_wrap(&w, 0x30, m2); /* ESSCertIDv2 */
    dw_wrap(&w, 0x30, m1); /* certs */
    dw_wrap(&w, 0x30, m1); /* SigningCertificateV2 */
    dw_wrap(&w, 0x31, m1);
    dw_oid(&w, OID_SIGNING_CERT_V2, sizeof OID_SIGNING_CERT_V2);
    dw_wrap(&w, 0x30, m0);
    /* messageDigest (zeroed, patched per token) */
    m0 = dw_used(&w);
    memset(hash, 0, sizeof hash);
    dw_raw(&w, hash, 32);
    size_t md_from_end = dw_used(&w);
    dw_hdr(&w, 0x04, 32);
    dw_wrap(&w, 0x31, m0);
    dw_oid(&w, OID_MESSAGE_DIGEST, sizeof OID_MESSAGE_DIGEST);
    dw_wrap(&w, 0x30, m0);
    /* contentType id-ct-TSTInfo */
    m0 = dw_used(&w);
    dw_oid(&w, OID_CT_TSTINFO, sizeof OID_CT_TSTINFO);
    dw_wrap(&w, 0x31, m0);
    dw_oid(&w, OID_CONTENT_TYPE, sizeof OID_CONTENT_TYPE);
    dw_wrap(&w, 0x30, m0);
    dw_wrap(&w, 0x31, 0);
    TRY_OUT(dw_take(&w, &tsa->attrs.p, &tsa->attrs.n));
    tsa->attrs_md_off = tsa->attrs.n - md_from_end;

    size_t sig_max = (size_t)EVP_PKEY_get_size(tsa->key);
    ENSURE_OUT(sig_max > 0 && sig_max <= SIG_MAX, QTSP_ERR_UNSUPPORTED,
               "TSA key size %zu is not supported", sig_max);
    tsa->resp_max = tsa->certs.n + tsa->sid.n + tsa->attrs.n + tsa->sig_alg.n + tsa->digest_algs.n +
                    tsa->sha256_alg.n + TST_MAX + SIG_MAX + 256;
    rc = QTSP_OK;
out:
    OPENSSL_free(issuer);
    OPENSSL_free(serial);
    free(scratch);
    return rc;
}

static void *committer_main(void *arg);

qtsp_status qtsp_tsa_new_journal(const qtsp_tsa_policy *pol, X509 *tsa_cert,
                                 STACK_OF(X509) * chain, EVP_PKEY *key,
                                 const qtsp_tsa_journal *journal, qtsp_tsa **out)
{
    qtsp_status rc;
    ENSURE(pol && tsa_cert && key && out, QTSP_ERR_INVALID,
           "TSA needs a policy, a certificate and a key");
    ENSURE(pol->oid_len > 0 && pol->accuracy_ms >= 1 && pol->accuracy_ms <= 1000 && pol->hash_mask,
           QTSP_ERR_INVALID, "TSA policy incomplete");
    int kt = EVP_PKEY_get_base_id(key);
    ENSURE(kt == EVP_PKEY_EC || kt == EVP_PKEY_RSA, QTSP_ERR_UNSUPPORTED,
           "TSA key must be EC or RSA");
    ENSURE(X509_check_private_key(tsa_cert, key) == 1, QTSP_ERR_INVALID,
           "TSA key does not match the TSA certificate");

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
    EVP_PKEY_up_ref(key);
    tsa->key = key;
    if (chain) {
        tsa->chain = X509_chain_up_ref(chain);
        ENSURE_OUT(tsa->chain != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
    tsa->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ENSURE_OUT(tsa->sha256 != NULL, QTSP_ERR_CRYPTO, "SHA-256 is not available");
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
    cbytes *parts[] = {&tsa->accuracy,   &tsa->tst_ext,     &tsa->certs,   &tsa->sid,
                       &tsa->sha256_alg, &tsa->digest_algs, &tsa->sig_alg, &tsa->attrs};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        free(parts[i]->p);
    X509_free(tsa->cert);
    sk_X509_pop_free(tsa->chain, X509_free);
    EVP_PKEY_free(tsa->key);
    EVP_MD_free(tsa->sha256);
    free(tsa);
}

/* ---- journal group commit ---------------------------------------------------- */

typedef struct batch {
    jentry **e;
    size_t n;
} batch;

/* Writes b as one durable transaction; a serial already journalled fails it. */
static qtsp_status journal_write(qtsp_tsa *tsa, const batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        tsa->recs[i] = (qtsp_tsa_record){b->e[i]->key, SERIAL_LEN, b->e[i]->val, b->e[i]->val_len};
    return tsa->journal.put(tsa->journal.ctx, tsa->recs, b->n, 0);
}

static qtsp_status reject_der(qtsp_tsa *tsa, int bit, unsigned char *buf, size_t cap,
                              size_t *len);

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
    if (e->commit_rc == QTSP_OK && e->sign_rc != QTSP_OK &&
        void_write(tsa, e) != QTSP_OK) {
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
        if (tsa->qn < JOURNAL_GATHER && !tsa->stop) {
            uint64_t t = qtsp_mono_ns(), end = t + JOURNAL_GATHER_US * 1000ull;
            size_t seen = 0;
            while (tsa->qn < JOURNAL_GATHER && !tsa->stop && t < end && tsa->qn > seen) {
                seen = tsa->qn;
                uint64_t until = t + JOURNAL_IDLE_US * 1000ull < end ? t + JOURNAL_IDLE_US * 1000ull
                                                                      : end;
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
    while (tsa->qn == JOURNAL_QUEUE && !tsa->stop)
        pthread_cond_wait(&tsa->cv_space, &tsa->mu);
    if (tsa->stop) {
        pthread_mutex_unlock(&tsa->mu);
        FAIL(QTSP_ERR_STATE, "TSA is shutting down");
    }
    tsa->queue[tsa->qn++] = e;
    if (tsa->qn == 1 || tsa->qn == JOURNAL_GATHER) /* the committer waits for these */
        pthread_cond_signal(&tsa->cv_work);
    if (e->done_fn) {
        pthread_mutex_unlock(&tsa->mu);
        return QTSP_OK;
    }
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

#define REJECT_MAX 256

/* TimeStampResp { PKIStatusInfo { rejection(2), statusString, failInfo } },
 * written at the start of buf (cap >= REJECT_MAX bytes). */
static qtsp_status reject_der(qtsp_tsa *tsa, int bit, unsigned char *buf, size_t cap,
                              size_t *len)
{
    dw w;
    dw_init(&w, buf, cap);
    /* PKIFailureInfo: named BIT STRING, trailing zero bits dropped (X.690 11.2.2). */
    unsigned char bits[4] = {0};
    size_t nbytes = (size_t)bit / 8 + 1;
    bits[bit / 8] = (unsigned char)(0x80u >> (bit % 8));
    dw_raw(&w, bits, nbytes);
    dw_byte(&w, (unsigned char)(7 - bit % 8));
    dw_hdr(&w, 0x03, nbytes + 1);
    const char *text = failinfo_text(bit);
    size_t m = dw_used(&w);
    dw_raw(&w, text, strlen(text));
    dw_hdr(&w, 0x0c, strlen(text)); /* PKIFreeText ::= SEQUENCE OF UTF8String */
    dw_wrap(&w, 0x30, m);
    dw_raw(&w, "\x02\x01\x02", 3); /* PKIStatus rejection */
    dw_wrap(&w, 0x30, 0);
    dw_wrap(&w, 0x30, 0);
    ENSURE(!w.err, QTSP_ERR_INTERNAL, "rejection does not fit");
    if ((unsigned)bit < N_FAILINFO)
        atomic_fetch_add(&tsa->rejected[bit], 1);
    *len = dw_used(&w);
    memmove(buf, buf + w.pos, *len);
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
    if (qtsp_sign_data(&tsa->signer, tsa->key, tsa->sha256, attrs, n, sig, siglen) != QTSP_OK)
        FAIL(QTSP_ERR_CRYPTO, "signing the time-stamp token failed: %s", qtsp_err_what());
    return QTSP_OK;
}

void qtsp_tsa_set_signer(qtsp_tsa *tsa, const qtsp_signer *s)
{
    tsa->signer = *s;
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
    TRY(qtsp_random(serial + 9, SERIAL_LEN - 9));
    char gt[24];
    size_t gtl = qtsp_tsa_gentime(ms, gt);
    const unsigned char *policy = r->policy ? r->policy : tsa->pol.oid;
    size_t policy_len = r->policy ? r->policy_len : tsa->pol.oid_len;

    /* TSTInfo (RFC 3161 2.4.2), built backwards. */
    unsigned char tst[TST_MAX];
    dw w;
    dw_init(&w, tst, sizeof tst);
    dw_raw(&w, tsa->tst_ext.p, tsa->tst_ext.n); /* extensions; no tsa name, ordering absent */
    if (r->nonce)
        dw_raw(&w, r->nonce, r->nonce_len); /* nonce echoed as sent */
    dw_raw(&w, tsa->accuracy.p, tsa->accuracy.n);
    dw_raw(&w, gt, gtl);
    dw_hdr(&w, 0x18, gtl);
    dw_raw(&w, serial, SERIAL_LEN);
    dw_hdr(&w, 0x02, SERIAL_LEN);
    dw_raw(&w, r->imprint, r->imprint_len); /* messageImprint as requested */
    dw_raw(&w, policy, policy_len);
    dw_raw(&w, "\x02\x01\x01", 3);
    dw_wrap(&w, 0x30, 0);
    ENSURE(!w.err, QTSP_ERR_INTERNAL, "TSTInfo does not fit");
    size_t tst_len = dw_used(&w);
    jentry *e = calloc(1, sizeof *e + tst_len + tsa->attrs.n);
    ENSURE(e != NULL, QTSP_ERR_NOMEM, "out of memory");
    e->der_cap = tsa->resp_max - TST_MAX + tst_len; /* the token holds this TSTInfo */
    e->der = malloc(e->der_cap);
    if (!e->der) {
        free(e);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    e->tst = e->buf;
    e->tst_len = tst_len;
    e->attrs = e->buf + tst_len;
    memcpy(e->tst, tst + w.pos, tst_len);
    memcpy(e->attrs, tsa->attrs.p, tsa->attrs.n);
    unsigned int mdlen = 0;
    if (EVP_Digest(e->tst, e->tst_len, e->attrs + tsa->attrs_md_off, &mdlen, tsa->sha256, NULL) !=
            1 ||
        mdlen != 32) {
        jentry_free(e);
        FAIL(QTSP_ERR_CRYPTO, "cannot hash TSTInfo");
    }
    e->cert_req = r->cert_req;
    e->tsa = tsa;
    journal_entry(e, serial, ms, policy, policy_len, r);
    *out = e;
    return QTSP_OK;
}

/* The granted TimeStampResp around e's TSTInfo, signed attributes and sig,
 * written into e->der (e->der_len bytes). */
static qtsp_status finish_token(qtsp_tsa *tsa, jentry *e, const unsigned char *sig, size_t siglen)
{
    ENSURE(siglen <= SIG_MAX, QTSP_ERR_INTERNAL, "signature too long");
    unsigned char *resp = e->der;
    /* TimeStampResp { granted, ContentInfo { signedData, [0] SignedData } }. */
    dw w;
    dw_init(&w, resp, e->der_cap);
    dw_raw(&w, sig, siglen);
    dw_hdr(&w, 0x04, siglen);
    dw_raw(&w, tsa->sig_alg.p, tsa->sig_alg.n);
    dw_raw(&w, e->attrs, tsa->attrs.n);
    if (!w.err)
        w.buf[w.pos] = 0xa0; /* signedAttrs [0] IMPLICIT; signed as SET (RFC 5652 5.4) */
    dw_raw(&w, tsa->sha256_alg.p, tsa->sha256_alg.n);
    dw_raw(&w, tsa->sid.p, tsa->sid.n);
    dw_raw(&w, "\x02\x01\x01", 3);
    dw_wrap(&w, 0x30, 0); /* SignerInfo */
    dw_wrap(&w, 0x31, 0); /* signerInfos */
    if (e->cert_req)      /* RFC 3161 2.4.1: certificates only on request */
        dw_raw(&w, tsa->certs.p, tsa->certs.n);
    size_t m = dw_used(&w);
    dw_raw(&w, e->tst, e->tst_len);
    dw_hdr(&w, 0x04, e->tst_len);
    dw_hdr(&w, 0xa0, dw_used(&w) - m);
    dw_oid(&w, OID_CT_TSTINFO, sizeof OID_CT_TSTINFO);
    dw_wrap(&w, 0x30, m); /* encapContentInfo */
    dw_raw(&w, tsa->digest_algs.p, tsa->digest_algs.n);
    dw_raw(&w, "\x02\x01\x03", 3); /* RFC 5652 5.1: version 3 (eContentType not id-data) */
    dw_wrap(&w, 0x30, 0);          /* SignedData */
    dw_wrap(&w, 0xa0, 0);
    dw_oid(&w, OID_SIGNED_DATA, sizeof OID_SIGNED_DATA);
    dw_wrap(&w, 0x30, 0);                  /* ContentInfo */
    dw_raw(&w, "\x30\x03\x02\x01\x00", 5); /* PKIStatusInfo { granted } */
    dw_wrap(&w, 0x30, 0);
    ENSURE(!w.err, QTSP_ERR_INTERNAL, "time-stamp response does not fit");
    e->der_len = dw_used(&w);
    memmove(resp, resp + w.pos, e->der_len); /* written backwards: move to the front */
    return QTSP_OK;
}

/* Signs e on this thread and finishes its token (e->der). */
static qtsp_status sign_now(qtsp_tsa *tsa, jentry *e)
{
    unsigned char sig[SIG_MAX];
    size_t siglen = sizeof sig;
    TRY(sign_attrs(tsa, e->attrs, tsa->attrs.n, sig, &siglen));
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
 * requester, in qtsp_tsa_respond_begin). */
static int signs_queued(const qtsp_tsa *tsa)
{
    return tsa->signq && tsa->journal.put && tsa->signer.fn;
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

qtsp_status qtsp_tsa_respond_begin(qtsp_tsa *tsa, const unsigned char *query, size_t len,
                                   qtsp_buf *out, qtsp_tsa_job **job)
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

qtsp_status qtsp_tsa_job_wait(qtsp_tsa_job *e, qtsp_buf *out)
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

/* The journal commit and the signature run in parallel (the entry does not
 * depend on the signature); part_done answers after the later of the two.
 * The calling thread never waits for the disk or the token; only a full
 * journal queue makes it wait. */
void qtsp_tsa_job_start(qtsp_tsa_job *e, qtsp_tsa_done_fn done, void *ctx)
{
    qtsp_tsa *tsa = e->tsa;
    e->done_fn = done;
    e->done_ctx = ctx;
    e->sign_rc = e->commit_rc = QTSP_ERR_INTERNAL;
    unsigned char md[32];
    int queued = !e->is_signed;
    if (queued && EVP_Digest(e->attrs, tsa->attrs.n, md, NULL, tsa->sha256, NULL) != 1) {
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
        e->sign_rc = QTSP_OK; /* signed already: the commit answers */
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
        qtsp_signq_submit(tsa->signq, &tsa->signer, tsa->sha256, md, sizeof md, queued_signed, e) !=
            QTSP_OK) { /* stopping: the started job still needs its answer */
        LOG_ERROR("tsa: cannot issue a time-stamp token: %s", qtsp_err_message());
        qtsp_err_clear();
        queued_signed(e, QTSP_ERR_STATE, NULL, 0);
    }
}

qtsp_status qtsp_tsa_respond(qtsp_tsa *tsa, const unsigned char *query, size_t len, qtsp_buf *out)
{
    qtsp_tsa_job *job = NULL;
    TRY(qtsp_tsa_respond_begin(tsa, query, len, out, &job));
    return job ? qtsp_tsa_job_wait(job, out) : QTSP_OK;
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
