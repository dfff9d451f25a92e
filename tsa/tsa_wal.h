/* The TSA journal's write-ahead file: a time-stamp is answered once its
 * journal entry is durable in this file (one pwrite and one fdatasync per
 * group commit, into a file written in full when it was made, so no file
 * system metadata changes), and the entries reach the store's journal
 * (QTSP_T_TSA_JOURNAL) in larger transactions behind it (every
 * QTSP_TSA_WAL_FILL_MS, on close, and before the file wraps). After a
 * crash, opening the file again puts what it holds into the store first.
 *
 * One file per process that stamps (`serve` worker N: store/tsa-wal-N, or
 * tsa-wal-N.K while a replaced worker N still drains), held with an
 * exclusive lock while open; files nobody holds are read into the store
 * when a worker starts. Replaying is idempotent: an
 * entry is put only when its serial is absent, and the "not issued" mark
 * overwrites, so entries the store already holds change nothing.
 *
 * Record: magic "QTW1", flags (1 = overwrite), key length, value length
 * (u16 BE), generation (u64 BE), key, value, FNV-1a-64 of all that (BE).
 * A file is read from offset 0 while records are whole and of the first
 * record's generation; the generation changes each time the file wraps,
 * which it does only once everything before is in the store. */
#ifndef QTSP_TSA_TSA_WAL_H
#define QTSP_TSA_TSA_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"
#include "tsa/tsa_int.h"

#define QTSP_TSA_WAL_BYTES (4u << 20) /* about 30 000 entries between two fills */
#define QTSP_TSA_WAL_FILL_MS 50u      /* how long an entry waits to reach the store */

typedef struct qtsp_tsa_wal qtsp_tsa_wal;

/* Opens path (created and written with zeros to `bytes` when missing or of
 * another size), locks it (QTSP_ERR_STATE when another process holds it),
 * puts the entries it holds into store, and starts the thread that fills
 * the store every fill_ms. bytes >= 4096. store is borrowed: it must
 * outlive the WAL. *out is owned by the caller (qtsp_tsa_wal_close).
 * Errors: QTSP_ERR_IO, QTSP_ERR_STATE, QTSP_ERR_INVALID, QTSP_ERR_NOMEM,
 * the store's. */
qtsp_status qtsp_tsa_wal_open(const char *path, size_t bytes, unsigned fill_ms, qtsp_store *store,
                              qtsp_tsa_wal **out) QTSP_MUST_USE;

/* The journal seam (tsa_int.h) over w, for qtsp_tsa_new_journal: put
 * returns once the records are durable in the file. A put fails (nothing
 * acknowledged) with QTSP_ERR_IO when the file cannot be written, and with
 * the store's error when the file is full and what it holds cannot be put
 * into the store. Thread-safe. */
qtsp_tsa_journal qtsp_tsa_wal_journal(qtsp_tsa_wal *w);

/* Puts every entry appended so far into the store now. Thread-safe. */
qtsp_status qtsp_tsa_wal_flush(qtsp_tsa_wal *w) QTSP_MUST_USE;

/* Entries appended and not yet in the store; store transactions made by
 * the filler (for metrics and tests). */
size_t qtsp_tsa_wal_pending(qtsp_tsa_wal *w);
uint64_t qtsp_tsa_wal_fills(qtsp_tsa_wal *w);

/* 1 while batches are written with O_DIRECT in whole 4 KiB blocks (a file
 * size that is a multiple of 4 KiB, on a file system that takes direct
 * writes); 0: through the page cache. Either way each batch is synced with
 * fdatasync before it is answered. */
int qtsp_tsa_wal_direct(qtsp_tsa_wal *w);

/* Appends the WAL's Prometheus lines to out: qtsp_tsa_journal_unfilled
 * (entries answered, not yet in the store), qtsp_tsa_journal_fill_failing
 * (1 while the store refuses them), qtsp_tsa_journal_fills_total. */
qtsp_status qtsp_tsa_wal_metrics(qtsp_tsa_wal *w, qtsp_buf *out) QTSP_MUST_USE;

/* Stops the filler, puts what remains into the store (an error is logged:
 * the entries stay in the file for the next open) and closes. After the
 * TSA that uses it is freed. NULL is a no-op. */
void qtsp_tsa_wal_close(qtsp_tsa_wal *w);

/* qtsp_tsa_wal_open on dir/tsa-wal-SLOT, or when another process holds
 * that (a reloaded worker still draining) on the first free of
 * dir/tsa-wal-SLOT.1 to .15; then qtsp_tsa_wal_replay_others(dir, its
 * name). Errors: qtsp_tsa_wal_open's; QTSP_ERR_STATE when all are held. */
qtsp_status qtsp_tsa_wal_open_slot(const char *dir, unsigned slot, size_t bytes, unsigned fill_ms,
                                   qtsp_store *store, qtsp_tsa_wal **out) QTSP_MUST_USE;

/* Puts into store the entries of every WAL file "tsa-wal-*" in dir that
 * no process holds (but the one named keep, which may be NULL), then
 * removes it: files of processes that crashed, were replaced, or no longer
 * exist; *n (may be NULL) = entries read. A file in use is left alone. */
qtsp_status qtsp_tsa_wal_replay_others(const char *dir, const char *keep, qtsp_store *store,
                                       size_t *n) QTSP_MUST_USE;

/* 1 when name is a write-ahead file's ("tsa-wal-" then digits and dots). */
int qtsp_tsa_wal_is_name(const char *name);

/* qtsp_tsa_new (tsa.h) with its journal kept through w (which must outlive
 * the TSA). */
qtsp_status qtsp_tsa_new_wal(const char *policy_path, X509 *tsa_cert, STACK_OF(X509) * chain,
                             const qtsp_key *key, qtsp_tsa_wal *w, qtsp_tsa **out) QTSP_MUST_USE;

#endif
