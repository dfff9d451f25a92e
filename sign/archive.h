/* The archive of signed documents (issue 14, docs/ades.md): every document
 * signed through signDoc (or `qtsp sign`) is kept for the retention of
 * policies/archive.yaml (10 years), then removed by the sweeper, audited.
 *
 * Files are content-addressed: DIR/archive/<first two hex>/<SHA-256 hex>,
 * written once (temp file, fsync, rename), mode 0640. The index lives in the
 * store table QTSP_T_DOCUMENTS under prefixed keys:
 *   'd' id            -> JSON {id, owner, name, format, level, signed_at,
 *                        sha256, size, expires}
 *   'o' owner 0 id    -> ""   (the signer's documents, for listing)
 *   'x' expires id    -> ""   (expires: u64 big-endian seconds; the sweeper)
 *   'h' sha256        -> u64  (index entries naming the file)
 *   'q' owner         -> u64  (bytes archived for the signer: the quota)
 * A signer reads only their own documents: another's id is "not found".
 *
 * Thread safety: a qtsp_archive is immutable after qtsp_archive_new (its
 * state is in the store and the files); every function may be called from
 * any thread and process at once. */
#ifndef QTSP_SIGN_ARCHIVE_H
#define QTSP_SIGN_ARCHIVE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

typedef struct qtsp_archive qtsp_archive;

#define QTSP_ARCHIVE_ID_LEN 24 /* hex characters of a document id */
#define QTSP_ARCHIVE_NAME_MAX 255

/* Loads policy_path (policies/archive.yaml: retention_years, quota_bytes,
 * sweep_interval; QTSP_ERR_CONFIG naming the line) and uses dir (created
 * 0750 when absent) for the files. store is borrowed and must outlive the
 * archive. *out is the caller's (qtsp_archive_free). */
qtsp_status qtsp_archive_new(const char *policy_path, const char *dir, qtsp_store *store,
                             qtsp_archive **out) QTSP_MUST_USE;

/* Stops the sweeper if started, frees. NULL is a no-op. */
void qtsp_archive_free(qtsp_archive *a);

/* A signed document to keep. All borrowed. */
typedef struct qtsp_archive_doc {
    const char *owner;  /* the signer's user id (1..64 characters) */
    const char *name;   /* the signer's file name, may be "" (UTF-8, at most NAME_MAX) */
    const char *format; /* "CAdES", "PAdES" */
    const char *level;  /* "B-B" .. "B-LTA" */
    const unsigned char *data;
    size_t len;
    int64_t signed_at; /* seconds since the epoch */
} qtsp_archive_doc;

/* Writes d's file (if not there yet) and computes its SHA-256 into
 * sha256. Call before the transaction that indexes it (a file whose
 * transaction fails stays unindexed: harmless, content-addressed).
 * QTSP_ERR_IO, QTSP_ERR_INVALID (empty document). */
qtsp_status qtsp_archive_write(qtsp_archive *a, const qtsp_archive_doc *d,
                               unsigned char sha256[32]) QTSP_MUST_USE;

/* qtsp_archive_write; *created (may be NULL) is 1 when this call wrote the
 * file (it was not there), so that a caller whose transaction then fails
 * can qtsp_archive_discard it. */
qtsp_status qtsp_archive_write_new(qtsp_archive *a, const qtsp_archive_doc *d,
                                   unsigned char sha256[32], int *created) QTSP_MUST_USE;

/* Removes the file of sha256 unless an index entry names it ('h' count,
 * read in a write transaction: serialised with qtsp_archive_index, which
 * writes the file again if it is gone). For a request refused after
 * qtsp_archive_write_new created files. */
qtsp_status qtsp_archive_discard(qtsp_archive *a, const unsigned char sha256[32]) QTSP_MUST_USE;

/* QTSP_ERR_QUOTA when owner's archived bytes plus bytes would pass
 * quota_bytes (read only: checks before any work; qtsp_archive_index checks
 * again in its transaction). */
qtsp_status qtsp_archive_room(qtsp_archive *a, const char *owner, uint64_t bytes) QTSP_MUST_USE;

/* Indexes a written file in txn (the caller's write transaction, so that a
 * signing, its accounting and its archiving are one operation) and appends
 * the audit record "document.archive" by actor. id[QTSP_ARCHIVE_ID_LEN + 1]
 * receives the new document's id. QTSP_ERR_QUOTA when the signer's archived
 * bytes would pass quota_bytes, QTSP_ERR_INVALID (bad owner, name, format,
 * level), store errors. */
qtsp_status qtsp_archive_index(qtsp_archive *a, qtsp_txn *txn, const char *actor,
                               const qtsp_archive_doc *d, const unsigned char sha256[32],
                               char *id) QTSP_MUST_USE;

/* qtsp_archive_write, then qtsp_archive_index in a transaction of its own. */
qtsp_status qtsp_archive_put(qtsp_archive *a, const char *actor, const qtsp_archive_doc *d,
                             char *id) QTSP_MUST_USE;

/* The owner's documents, oldest id order: *out {"documents":[{"id","name",
 * "format","level","signed_at","sha256","size"}...]} (new reference). */
qtsp_status qtsp_archive_list(qtsp_archive *a, const char *owner, json_t **out) QTSP_MUST_USE;

/* One page of qtsp_archive_list: at most limit documents (0: all) after the
 * document whose id is after (NULL: from the first; else the 24 hex digits
 * of a previous page's "next", QTSP_ERR_INVALID when malformed). When more
 * follow, *out also has "next": the id of the page's last document. Ids are
 * random: a document archived while a client pages may land before its
 * cursor (it shows on the next listing). */
qtsp_status qtsp_archive_list_page(qtsp_archive *a, const char *owner, size_t limit,
                                   const char *after, json_t **out) QTSP_MUST_USE;

/* The archived document id of owner, byte for byte, appended to out (its
 * maximum bounds it), and its record (new reference) in *rec when rec is
 * not NULL. QTSP_ERR_NOT_FOUND for an unknown id or another signer's,
 * QTSP_ERR_IO (file missing or changed: its SHA-256 is checked). */
qtsp_status qtsp_archive_get(qtsp_archive *a, const char *owner, const char *id, qtsp_buf *out,
                             json_t **rec) QTSP_MUST_USE;

/* Removes documents whose retention ended by now (at most 1000 per call):
 * their index entries, quota and audit record "document.expire" in one
 * transaction, then the files no entry names any more. *removed (may be
 * NULL) counts them. */
qtsp_status qtsp_archive_sweep(qtsp_archive *a, int64_t now, size_t *removed) QTSP_MUST_USE;

/* Starts the sweeper (core/periodic) every sweep_interval. Leader process only. */
qtsp_status qtsp_archive_start(qtsp_archive *a) QTSP_MUST_USE;

/* Policy values (seconds, bytes). */
int64_t qtsp_archive_retention(const qtsp_archive *a);
uint64_t qtsp_archive_quota(const qtsp_archive *a);

#endif
