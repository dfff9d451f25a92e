/* The signing queue: answers that need a fresh signature (OCSP with a nonce,
 * time-stamp tokens) are prepared on the HTTP threads, which then defer the
 * request and queue the digest here; signing threads take everything queued
 * and sign it back to back, then hand each signature to its callback.
 *
 * Why: a token signature (SoftHSM2: key decryption, EC group and key setup,
 * ECDSA, per object file checks) runs about a third slower when HTTP, TCP
 * and parsing code ran on the core just before it (measured here: ~85 us of
 * CPU per signature between requests, ~60 us back to back). Batching keeps
 * the signing code and data hot, and the HTTP thread never waits for the
 * token.
 *
 * Thread-safe. Callbacks run on a signing thread, one at a time per thread,
 * after the whole batch they belong to is signed. */
#ifndef QTSP_CA_SIGNQ_H
#define QTSP_CA_SIGNQ_H

#include <openssl/evp.h>
#include <stddef.h>

#include "ca/key.h"
#include "core/err.h"

#define QTSP_SIGNQ_SIG_MAX QTSP_KEY_SIG_MAX
#define QTSP_SIGNQ_THREADS_MAX 64 /* signing threads per queue */
/* Jobs a thread holds at most (qtsp_signq_hold); more go to the signing
 * threads: a slow token (a network HSM at milliseconds per signature)
 * stalls the holder for a bounded time. */
#define QTSP_SIGNQ_HOLD_MAX 32

typedef struct qtsp_signq qtsp_signq;

/* Called once per job: rc QTSP_OK with the signature (sig valid during the
 * call only), or the key's failure (sig NULL). */
typedef void (*qtsp_signq_done_fn)(void *ctx, qtsp_status rc, const unsigned char *sig,
                                   size_t siglen);

/* Starts threads (1..QTSP_SIGNQ_THREADS_MAX) signing threads. */
qtsp_status qtsp_signq_new(unsigned threads, qtsp_signq **out) QTSP_MUST_USE;

/* Signs every job still queued (their callbacks run), stops and joins the
 * threads, frees. Later submits fail. NULL is a no-op. */
void qtsp_signq_free(qtsp_signq *q);

/* Queues dgst (dlen 1..64 bytes, made with alg->md) to be signed by k with
 * alg (qtsp_key_sign_digest; k must outlive the job, alg is copied).
 * done(ctx, ...) is called exactly once, from a
 * signing thread, unless this returns an error (then never): QTSP_ERR_STATE
 * once freeing has begun, QTSP_ERR_INVALID, QTSP_ERR_NOMEM. */
qtsp_status qtsp_signq_submit(qtsp_signq *q, const qtsp_key *k, const qtsp_sigalg *alg,
                              const unsigned char *dgst, size_t dlen, qtsp_signq_done_fn done,
                              void *ctx) QTSP_MUST_USE;

/* From here on, jobs this thread submits to q are held by it (up to
 * QTSP_SIGNQ_HOLD_MAX; later ones are queued as usual): no signing
 * thread is woken; qtsp_signq_release signs them on this thread, back to
 * back, and runs their callbacks here. For a thread that reads a round of
 * requests and can sign them itself (the HTTP fast lane, core/http.h): no
 * hand-over to a signing thread and back. A thread holds one queue at a
 * time. */
void qtsp_signq_hold(qtsp_signq *q);
/* Signs what this thread held for q and runs their callbacks; ends the
 * hold. Returns how many. */
size_t qtsp_signq_release(qtsp_signq *q);

/* Jobs signed so far and batches they came in (for /metrics). */
void qtsp_signq_stats(qtsp_signq *q, unsigned long long *jobs, unsigned long long *batches);

#endif
