/* The one LMDB environment under DIR/store shared by every service and by
 * CLI verbs running beside the server. The only file including lmdb.h is
 * ca/store.c.
 *
 * Tables are fixed (LMDB named databases, created on open). Values are opaque
 * bytes to the store; each table's owner defines its record format and puts
 * a format version byte first. Commits are durable (no MDB_NOSYNC).
 * The map starts at the configured size and doubles when full
 * (qtsp_store_write retries the transaction transparently).
 *
 * Thread-safety: a qtsp_store is shared by all threads; a qtsp_txn belongs to
 * the thread that began it. Write transactions are serialised by LMDB.
 * A thread holds at most one transaction of a store at a time (a second
 * qtsp_store_begin, or qtsp_store_write inside a transaction, fails with
 * QTSP_ERR_STATE instead of dead-locking against a map grow). Read
 * transactions reuse a per-thread LMDB reader (MDB_NOTLS + reset/renew), so
 * beginning one is cheap.
 *
 * QTSP_ERR_NOT_FOUND is an answer, not a failure: functions of this module
 * return it without recording an error message (see core/err.h), so an
 * expected miss never masks a later real failure. */
#ifndef QTSP_CA_STORE_H
#define QTSP_CA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/codec.h" /* qtsp_be64_put/get for keys */
#include "core/err.h"

typedef struct qtsp_store qtsp_store;
typedef struct qtsp_txn qtsp_txn;

/* Never renumber: the names are the LMDB database names. */
typedef enum qtsp_table {
    QTSP_T_META = 0,      /* "meta": schema version, init facts */
    QTSP_T_COUNTERS,      /* "counters": name -> u64 big-endian */
    QTSP_T_AUDIT,         /* "audit": seq (u64 BE) -> chained record */
    QTSP_T_OPERATORS,     /* "operators": operator id -> record */
    QTSP_T_CERTS,         /* "certs": serial (bytes) -> certificate record */
    QTSP_T_STATUS,        /* "status": serial -> status record */
    QTSP_T_SUBJECTS,      /* "subjects": subject id -> subject record */
    QTSP_T_SUBJECT_INDEX, /* "subject_index": country|national id -> subject id */
    QTSP_T_SUBJECT_CERTS, /* "subject_certs": subject id|0|serial -> issue seq (u64 BE) */
    QTSP_T_OCSP_CACHE,    /* "ocsp_cache": issuer|serial -> pre-signed response */
    QTSP_T_REVOKED,       /* "revoked": serial -> CRL entry (for streaming) */
    QTSP_T_CRL,           /* "crl": name -> last CRL facts */
    QTSP_T_TSA_JOURNAL,   /* "tsa_journal": serial -> token facts */
    QTSP_T_USERS,         /* "users": signer user id -> record (remote signing) */
    QTSP_T_CREDENTIALS,   /* "credentials": credential id -> record */
    QTSP_T_SESSIONS,      /* "sessions": token hash -> session */
    QTSP_T_HISTORY,       /* "history": user|time -> signing record */
    QTSP_T_DOCUMENTS,     /* "documents": document id -> archived document */
    QTSP_T_HOLDS,         /* "holds": hold_until (u64 BE)|serial -> "" */
    QTSP_T_KEYPOOL,       /* "keypool": key label -> unassigned pre-generated key */
    QTSP_T_KEY_USE,       /* "key_use": key label -> reserved / certified (serial) */
    QTSP_T_RPS,           /* "relying_parties": name -> record (sign/usage.c) */
    QTSP_T_QUOTA,         /* "quota": subject|0|window start -> signatures counted */
    QTSP_T_RP_USAGE,      /* "rp_usage": relying party|0|YYYY-MM -> signatures */
    QTSP_T_SADS,          /* "sads": SHA-256 of a CSC SAD -> its authorisation (sign/csc.c) */
    QTSP_T_CSC_STATE,     /* "csc_state": 'u' user / 'c' credential -> lockout, OTP step */
    QTSP_T__COUNT
} qtsp_table;

/* Name of a table ("certs", ...). */
const char *qtsp_table_name(qtsp_table t);

/* Opens (creating if needed, mode 0700) the environment in dir with an
 * initial map of map_mib MiB (a larger map grown earlier is kept), creates
 * the tables and clears stale reader slots (mdb_reader_check). Caller owns
 * *out. QTSP_ERR_INVALID (map_mib 0 or > 1 TiB), QTSP_ERR_IO (mkdir),
 * QTSP_ERR_STORE, QTSP_ERR_STORE_CORRUPT (not an LMDB file, or an unknown
 * schema version in meta "schema"). */
qtsp_status qtsp_store_open(const char *dir, size_t map_mib, qtsp_store **out) QTSP_MUST_USE;
/* Writes a compacted, consistent copy of the environment (as of one read
 * transaction; writers in this and other processes go on meanwhile) to
 * dir/data.mdb. dir must exist and hold no data.mdb. No transaction of this
 * thread may be open. QTSP_ERR_STORE (LMDB's reason in the message). */
qtsp_status qtsp_store_copy(qtsp_store *st, const char *dir) QTSP_MUST_USE;
/* Closes. No transaction may be open. NULL is a no-op. */
void qtsp_store_close(qtsp_store *st);

/* Begins a read-only (write=0) or write transaction. A thread holds at most
 * one transaction at a time (QTSP_ERR_STATE otherwise). */
qtsp_status qtsp_store_begin(qtsp_store *st, int write, qtsp_txn **out) QTSP_MUST_USE;
/* Commits and frees the transaction (also on failure). QTSP_ERR_STORE_FULL
 * when the map is full: the caller may grow (qtsp_store_grow) and retry;
 * qtsp_store_write does that for you. */
qtsp_status qtsp_txn_commit(qtsp_txn *txn) QTSP_MUST_USE;
/* Aborts and frees. NULL is a no-op. */
void qtsp_txn_abort(qtsp_txn *txn);

/* Runs fn in a write transaction and commits it; aborts if fn fails.
 * On a full map, grows the map and runs fn again from scratch, so fn must
 * not have effects outside the transaction (or must tolerate a re-run). */
typedef qtsp_status (*qtsp_write_fn)(qtsp_txn *txn, void *ctx);
qtsp_status qtsp_store_write(qtsp_store *st, qtsp_write_fn fn, void *ctx) QTSP_MUST_USE;

/* Doubles the map size. No transaction of this thread may be open. */
qtsp_status qtsp_store_grow(qtsp_store *st) QTSP_MUST_USE;

/* Copies the value of key into out (reset first). QTSP_ERR_NOT_FOUND. */
qtsp_status qtsp_txn_get(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen,
                         qtsp_buf *out) QTSP_MUST_USE;
/* Borrowed view of the value: valid only until the transaction ends or the
 * next write in it. For hot paths. QTSP_ERR_NOT_FOUND. */
qtsp_status qtsp_txn_get0(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen,
                          const void **val, size_t *vlen) QTSP_MUST_USE;

#define QTSP_PUT_NOOVERWRITE 1u /* QTSP_ERR_EXISTS if the key exists */
#define QTSP_PUT_APPEND 2u      /* key sorts after every existing key (faster) */
qtsp_status qtsp_txn_put(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen, const void *val,
                         size_t vlen, unsigned flags) QTSP_MUST_USE;
/* QTSP_ERR_NOT_FOUND when absent. */
qtsp_status qtsp_txn_del(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen) QTSP_MUST_USE;

/* Visits entries in key order starting at the first key >= start (start NULL:
 * from the beginning). key/val are borrowed for the call only. fn sets *stop
 * to end early; a non-OK return from fn ends the walk and is returned. */
typedef qtsp_status (*qtsp_iter_fn)(void *ctx, const void *key, size_t klen, const void *val,
                                    size_t vlen, int *stop);
qtsp_status qtsp_txn_iter(qtsp_txn *txn, qtsp_table t, const void *start, size_t slen,
                          qtsp_iter_fn fn, void *ctx) QTSP_MUST_USE;

/* Like qtsp_txn_iter, with flags:
 *   QTSP_ITER_RELEASE  a long scan (the CRL build over the revoked index):
 *       whenever the file-backed resident set of the process has grown by
 *       QTSP_ITER_RELEASE_MIB since the last check, this process's mappings
 *       of the store file are dropped (see qtsp_store_release_pages), and
 *       once more at the end, so the scan does not grow the resident set by
 *       the size of the file (each page fault maps a whole fault-around
 *       window or large folio of neighbours, mostly other tables' pages).
 *       key/val stay valid for the call as always.
 * Other flag bits: QTSP_ERR_INVALID. */
#define QTSP_ITER_RELEASE 1u
#define QTSP_ITER_RELEASE_MIB 32
qtsp_status qtsp_txn_iter_ex(qtsp_txn *txn, qtsp_table t, const void *start, size_t slen,
                             unsigned flags, qtsp_iter_fn fn, void *ctx) QTSP_MUST_USE;

/* Drops this process's page-table mappings of the store file
 * (madvise MADV_DONTNEED on the read-only shared map): the pages stay in
 * the OS page cache, nothing is lost, a later access maps them again with a
 * minor fault. Lowers the resident set after a long scan. Safe at any time
 * and from any thread, inside or outside a transaction (the map is never
 * written through: no MDB_WRITEMAP). Advisory: where the map cannot be
 * located (no /proc) or madvise fails, nothing happens (logged). */
qtsp_status qtsp_store_release_pages(qtsp_store *st) QTSP_MUST_USE;

/* The same drop, only when this process's file-backed resident set has grown
 * by more than mib MiB since the last drop by this function (the first call
 * drops and sets the mark): a long-running server calls it periodically so
 * that its resident set does not grow with the store (every journalled
 * token or signing adds pages that readers then map). Thread-safe. */
qtsp_status qtsp_store_trim_pages(qtsp_store *st, size_t mib) QTSP_MUST_USE;

/* Last entry of a table (copied). QTSP_ERR_NOT_FOUND when empty. key or val may be NULL. */
qtsp_status qtsp_txn_last(qtsp_txn *txn, qtsp_table t, qtsp_buf *key, qtsp_buf *val) QTSP_MUST_USE;

/* Number of entries in a table. */
qtsp_status qtsp_txn_count(qtsp_txn *txn, qtsp_table t, uint64_t *out) QTSP_MUST_USE;

/* Counter name in QTSP_T_COUNTERS: increments (write txn) and returns the new
 * value (first value 1). */
qtsp_status qtsp_txn_counter_next(qtsp_txn *txn, const char *name, uint64_t *out) QTSP_MUST_USE;
/* Current value, 0 if never incremented. */
qtsp_status qtsp_txn_counter_get(qtsp_txn *txn, const char *name, uint64_t *out) QTSP_MUST_USE;

/* A u64 big-endian counter at key of table t (what the two above do for
 * QTSP_T_COUNTERS): get gives 0 when absent; add adds n (write txn) and
 * gives the new value in *out (may be NULL). QTSP_ERR_STORE_CORRUPT when
 * the value is not 8 bytes, QTSP_ERR_STATE in a read-only transaction. */
qtsp_status qtsp_txn_u64_get(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen,
                             uint64_t *out) QTSP_MUST_USE;
qtsp_status qtsp_txn_u64_add(qtsp_txn *txn, qtsp_table t, const void *key, size_t klen, uint64_t n,
                             uint64_t *out) QTSP_MUST_USE;

/* Bytes in use (pages * page size) and current map size, for /metrics. */
qtsp_status qtsp_store_stats(qtsp_store *st, uint64_t *used_bytes,
                             uint64_t *map_bytes) QTSP_MUST_USE;

#endif
