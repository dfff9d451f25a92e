/* The time-stamping authority (RFC 3161, RFC 5816, ETSI EN 319 422), without
 * transport: DER TimeStampReq in, DER TimeStampResp out. Tokens are built
 * from pre-encoded constant parts and signed with one signature through the
 * key interface (ca/key.h) over the signed attributes.
 *
 * Every protocol problem is answered with a DER rejection (PKIStatus
 * rejection + one failInfo bit), never with an error code:
 *   malformed DER, trailing bytes, bad lengths, imprint of wrong size
 *                                   -> badDataFormat (RFC 3161 2.4.2)
 *   version other than 1            -> badRequest
 *   MD5, SHA-1, unknown or disabled hash OID, non-NULL parameters -> badAlg
 *   reqPolicy not accepted          -> unacceptedPolicy
 *   any request extension           -> unacceptedExtension (RFC 3161 2.4.1)
 *   clock unsynchronised while the policy requires sync
 *                                   -> timeNotAvailable ("the TSA's time
 *                                      source is not available")
 *   signing or journal failure      -> systemFailure
 *
 * No transport: the HTTP handler is tsa/tsa_http.h. Answers that wait for
 * the journal (and the signing queue) complete through a callback the
 * caller gives (qtsp_tsa_respond_async).
 *
 * Thread-safety: a qtsp_tsa is immutable after qtsp_tsa_new except for
 * atomic counters and the journal queue; every function below except the
 * set_* ones may be called from any number of threads. */
#ifndef QTSP_TSA_TSA_H
#define QTSP_TSA_TSA_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "ca/key.h"
#include "ca/signq.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

typedef struct qtsp_tsa qtsp_tsa;

/* Largest TimeStampReq accepted (bytes); also the /tsa route's max_body. */
#define QTSP_TSA_MAX_QUERY 4096

/* PKIFailureInfo bit numbers (RFC 3161 2.4.2). */
#define QTSP_TSA_FAIL_BAD_ALG 0
#define QTSP_TSA_FAIL_BAD_REQUEST 2
#define QTSP_TSA_FAIL_BAD_DATA_FORMAT 5
#define QTSP_TSA_FAIL_TIME_NOT_AVAILABLE 14
#define QTSP_TSA_FAIL_UNACCEPTED_POLICY 15
#define QTSP_TSA_FAIL_UNACCEPTED_EXTENSION 16
#define QTSP_TSA_FAIL_ADD_INFO_NOT_AVAILABLE 17
#define QTSP_TSA_FAIL_SYSTEM_FAILURE 25

/* Loads policy_path (see policies/tsa.yaml; QTSP_ERR_CONFIG naming
 * file:line:col) and prepares a TSA signing with key as tsa_cert.
 *   tsa_cert  the TSU certificate (EKU timeStamping, critical). Up-ref'd.
 *   chain     issuer certificates added after tsa_cert when a request sets
 *             certReq; may be NULL. Certificates are up-ref'd.
 *   key       EC (ecdsa-with-SHA256) or RSA (sha256WithRSAEncryption) key
 *             (ca/key.h: a token key in production). Borrowed: must
 *             outlive the TSA. QTSP_ERR_UNSUPPORTED for other key types,
 *             QTSP_ERR_INVALID when key does not match tsa_cert.
 *   store     journal (QTSP_T_TSA_JOURNAL); NULL = no journal. Borrowed:
 *             must outlive the TSA. When set, a committer thread is started
 *             that group-commits journal entries.
 * *out is owned by the caller (qtsp_tsa_free). */
qtsp_status qtsp_tsa_new(const char *policy_path, X509 *tsa_cert, STACK_OF(X509) * chain,
                         const qtsp_key *key, qtsp_store *store, qtsp_tsa **out) QTSP_MUST_USE;

/* Stops the committer thread (after committing what is queued) and frees.
 * No call on the TSA may be in flight. NULL is a no-op. */
void qtsp_tsa_free(qtsp_tsa *tsa);

/* Answers that may finish later (qtsp_tsa_respond_async) then have their tokens signed on q
 * (borrowed; must outlive the jobs in flight, and be freed before the TSA)
 * instead of on the caller's thread, when a journal is set. Call before
 * serving. */
void qtsp_tsa_set_signq(qtsp_tsa *tsa, qtsp_signq *q);

/* A hint for the journal's group commit: all_waiting(ctx) returns 1 when
 * no client can send another request before one is answered (every
 * connection of the transport waits for a deferred answer,
 * qtsp_http_clients_all_waiting: every connection waits for a deferred
 * answer, each a kept-alive one). The committer then commits what it has
 * at once instead of gathering for more (JOURNAL_IDLE_US at a time): with
 * a few dozen clients all waiting for answers, waiting longer only leaves
 * the cores idle. Without it (or while it returns 0) the committer
 * gathers as before. all_waiting must be cheap, lock-free and callable
 * from any thread (it runs under the TSA's queue lock); ctx must stay valid
 * until qtsp_tsa_free or a later call (with NULL) has returned: from then
 * on the old hint is never called. May be called while serving. */
void qtsp_tsa_set_arrivals(qtsp_tsa *tsa, int (*all_waiting)(void *ctx), void *ctx);

/* Until qtsp_tsa_release(tsa) on the same thread, the journal entries of
 * the tokens this thread starts (qtsp_tsa_respond_async with done) are
 * queued without waking the committer, which then commits them at once,
 * without gathering: a transport that reads its requests in rounds (the
 * HTTP fast lane) makes each round one commit and one wake-up. 256 entries
 * queued wake it anyway. A thread holds one TSA at a time; a thread that
 * never holds is unaffected. */
void qtsp_tsa_hold(qtsp_tsa *tsa);
void qtsp_tsa_release(qtsp_tsa *tsa);

/* Answers one DER TimeStampReq of len bytes (query may be NULL when len is
 * 0). out (reset first) receives a DER TimeStampResp: a granted token, or a
 * rejection with PKIStatus rejection and failInfo (see the table above).
 * When a journal is configured, returns only after the token's journal entry
 * is committed. Returns
 * non-OK (QTSP_ERR_NOMEM, QTSP_ERR_TOO_BIG when out is too small) only when
 * not even a systemFailure reply could be written. Thread-safe. */
qtsp_status qtsp_tsa_respond(qtsp_tsa *tsa, const unsigned char *query, size_t len,
                             qtsp_buf *out) QTSP_MUST_USE;

/* qtsp_tsa_respond for a SHA-256 digest stamped in process (certReq TRUE,
 * no policy, no nonce): builds the TimeStampReq (RFC 3161 2.4.1) and answers
 * it into out, a DER TimeStampResp whose status the caller checks. Errors as
 * qtsp_tsa_respond. Thread-safe. */
qtsp_status qtsp_tsa_stamp_sha256(qtsp_tsa *tsa, const unsigned char digest[32],
                                  qtsp_buf *out) QTSP_MUST_USE;

/* Completion of an answer that waited (see qtsp_tsa_respond_async), called
 * exactly once:
 *   rc QTSP_OK: der (len bytes, malloc'd) is the DER TimeStampResp: the
 *     token when its journal entry committed and its signature succeeded,
 *     otherwise a systemFailure rejection (the failure is logged once; a
 *     journalled entry whose token was never made is marked not issued).
 *     Unlike OCSP's (borrowed), der belongs to the callee, who frees it with
 *     free(): the transport sends it without a copy. It was allocated on the
 *     thread that called qtsp_tsa_respond_async and is best freed there too
 *     (glibc returns a large chunk to the arena of the thread that made it,
 *     under that arena's lock).
 *   rc non-OK: not even a rejection could be written (der NULL).
 * Called from a signing thread (ca/signq.h), the journal committer thread,
 * or, when the TSA is shutting down, the calling thread before
 * qtsp_tsa_respond_async returns. It must not block (it delays the other
 * tokens of its batch) nor call into the TSA. */
typedef void (*qtsp_tsa_done_fn)(void *done_ctx, qtsp_status rc, unsigned char *der, size_t len);

/* How a caller waits for an answer completed later (the shape of
 * qtsp_ocsp_async). wait is called on the calling thread, before anything
 * is queued and only for an answer that must wait (a token, with a
 * journal), and returns the context for done (e.g. the transport's handle
 * of the suspended request), or NULL when the caller cannot wait: the
 * answer is then finished on the calling thread (blocking, as
 * qtsp_tsa_respond). */
typedef struct qtsp_tsa_async {
    void *(*wait)(void *ctx);
    qtsp_tsa_done_fn done;
    void *ctx;
} qtsp_tsa_async;

/* qtsp_tsa_respond that may finish later: with a journal, a token is
 * prepared here (TSTInfo, signed attributes, journal entry and response
 * buffer, all allocated on this thread; signed here too without a signing
 * queue), then its journal entry and, with a signing queue and a token key
 * (qtsp_tsa_set_signq), its signature are queued in parallel; *pending = 1,
 * out is untouched, and async->done delivers the answer once both are done.
 * Only a full journal queue makes this wait. Otherwise (a rejection, no
 * journal, async NULL or its wait returning NULL) *pending = 0 and the call
 * is qtsp_tsa_respond. Thread-safe. */
qtsp_status qtsp_tsa_respond_async(qtsp_tsa *tsa, const unsigned char *query, size_t len,
                                   qtsp_buf *out, const qtsp_tsa_async *async,
                                   int *pending) QTSP_MUST_USE;

/* Appends Prometheus lines to out: qtsp_tsa_tokens_issued_total,
 * qtsp_tsa_rejections_total{failinfo="..."} per failInfo,
 * qtsp_tsa_clock_synchronised 0/1 (checked now) and, with a journal,
 * qtsp_tsa_journal_commits_total and qtsp_tsa_journal_commit_seconds_total
 * (tokens per commit = issued / commits). ctx is the qtsp_tsa. Thread-safe. */
qtsp_status qtsp_tsa_metrics(void *ctx, qtsp_buf *out) QTSP_MUST_USE;

/* Clock synchronisation check: returns 1 when the system clock is
 * synchronised. The default reads adjtimex(2) (modes 0): TIME_ERROR or
 * STA_UNSYNC mean unsynchronised. */
typedef int (*qtsp_tsa_sync_fn)(void *ctx);

/* Replaces the check (fn NULL restores the default); for tests and other
 * time sources. Call before serving (not synchronised with respond). */
void qtsp_tsa_set_sync_check(qtsp_tsa *tsa, qtsp_tsa_sync_fn fn, void *ctx);

/* The default check (adjtimex). */
int qtsp_tsa_clock_synced(void *ctx);

#endif
