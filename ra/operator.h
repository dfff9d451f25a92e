/* RA operators and their bearer tokens. A token is printed once at creation
 * ("<operator id>.<43 chars base64url of 256 random bits>"); only an
 * argon2id hash of it is stored; checks are constant-time. Verified tokens
 * are remembered in memory (keyed by SHA-256 of the token, never stored) for
 * a short time so each request does not pay a full argon2id. */
#ifndef QTSP_RA_OPERATOR_H
#define QTSP_RA_OPERATOR_H

#include "ca/store.h"
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

/* Resolves a bearer token. QTSP_ERR_AUTH when missing, malformed or unknown.
 * Thread-safe. */
qtsp_status qtsp_operator_auth(qtsp_store *st, const char *token, qtsp_operator *out) QTSP_MUST_USE;

#endif
