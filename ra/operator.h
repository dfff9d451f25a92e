/* RA operators and their bearer tokens. A token is printed once at creation
 * ("<operator id>.<43 chars base64url of 256 random bits>"); only an
 * argon2id hash of it is stored; checks are constant-time. Verified tokens
 * are remembered in memory (keyed by SHA-256 of the token, never stored) for
 * a short time so each request does not pay a full argon2id. */
#ifndef QTSP_RA_OPERATOR_H
#define QTSP_RA_OPERATOR_H

#include <stdint.h>

#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"

typedef enum qtsp_role {
    QTSP_ROLE_RA_OFFICER = 1,
    QTSP_ROLE_HOTLINE = 2,
    QTSP_ROLE_OFFICE = 4,
    QTSP_ROLE_AUDITOR = 8,
} qtsp_role;

typedef struct qtsp_operator {
    char id[24]; /* short random id, hex */
    char name[65];
    qtsp_role role;
} qtsp_operator;

/* "ra-officer", "hotline", "office", "auditor". QTSP_ERR_INVALID otherwise. */
qtsp_status qtsp_role_parse(const char *s, qtsp_role *out) QTSP_MUST_USE;
const char *qtsp_role_name(qtsp_role r);

/* Creates an operator (name: 1..64 printable chars, unique) and writes the
 * token (NUL-terminated) into token_out[cap >= 128]. Audited as
 * "operator.add" by actor. */
qtsp_status qtsp_operator_add(qtsp_store *st, const char *actor, const char *name, qtsp_role role,
                              char *token_out, size_t cap) QTSP_MUST_USE;

/* Resolves a bearer token. QTSP_ERR_AUTH when missing, malformed, unknown,
 * disabled, locked (OP_FAIL_MAX wrong secrets within a minute lock the id
 * for a minute, across every worker process) or wrong. A token verified in
 * the last 5 minutes (in any worker) is accepted without argon2id, also
 * while its id is locked. Thread-safe. */
qtsp_status qtsp_operator_auth(qtsp_store *st, const char *token, qtsp_operator *out) QTSP_MUST_USE;

/* 1 when qtsp_operator_auth of token would run argon2id (a well-formed
 * token of an enabled, unlocked operator, not verified recently); 0 when it
 * is decided without it (accepted from the cache or refused). Cheap: one
 * record read. For the API layer's slow lane. Thread-safe. */
int qtsp_operator_auth_is_slow(qtsp_store *st, const char *token);

/* Maps the failure counters and verified-token cache shared by the worker
 * processes of `serve`: call once before they fork (later calls are no-ops;
 * without a call the first auth maps a table for its process alone).
 * QTSP_ERR_NOMEM when the mapping fails (auth then refuses every token that
 * would need argon2id). */
qtsp_status qtsp_operator_shared_init(void) QTSP_MUST_USE;

/* Prometheus text: qtsp_operator_auth_total{result}, qtsp_operator_argon2_total,
 * qtsp_operator_locked (shared by every worker process). */
qtsp_status qtsp_operator_metrics(qtsp_buf *out) QTSP_MUST_USE;

typedef struct qtsp_operator_info {
    qtsp_operator op;
    int64_t created_at; /* seconds since the epoch */
    int disabled;
} qtsp_operator_info;

/* Visits every operator in id order (info borrowed for the call); a non-OK
 * return of fn ends the walk and is returned. No secret material. */
typedef qtsp_status (*qtsp_operator_fn)(void *ctx, const qtsp_operator_info *info);
qtsp_status qtsp_operator_list(qtsp_store *st, qtsp_operator_fn fn, void *ctx) QTSP_MUST_USE;

/* Disables (enabled 0) or enables the operator named who (a name, or an
 * id): a disabled operator's token is refused from the next request on, in
 * every process. Audited "operator.disable" / "operator.enable" by actor.
 * QTSP_ERR_NOT_FOUND, QTSP_ERR_STATE (already so). *out (may be NULL): the
 * operator as written. */
qtsp_status qtsp_operator_set_enabled(qtsp_store *st, const char *actor, const char *who,
                                      int enabled, qtsp_operator_info *out) QTSP_MUST_USE;

/* Gives the operator named who (name or id) a new secret (same id, name,
 * role and state) and writes the new token into token_out[cap >= 128]; the
 * old token is refused from the commit on, in every process. Audited
 * "operator.rotate". QTSP_ERR_NOT_FOUND. */
qtsp_status qtsp_operator_rotate(qtsp_store *st, const char *actor, const char *who,
                                 char *token_out, size_t cap,
                                 qtsp_operator_info *out) QTSP_MUST_USE;

#endif
