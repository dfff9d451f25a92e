/* Remote signing, the CSC API v2 core (Cloud Signature Consortium API
 * v2.0; ETSI TS 119 431-1; EN 419 241-1 SCAL2), transport-free: JSON in,
 * JSON out, no HTTP (sign/csc_http.c adapts it). docs/csc.md.
 *
 * A signer (QTSP_T_USERS, made at issuance by ra/ra.c) logs in with user id
 * and password and gets a short-lived access token, stored only as its
 * SHA-256 in QTSP_T_SESSIONS. For each batch of signatures the signer
 * authorises one credential (QTSP_T_CREDENTIALS, id = certificate serial
 * hex) for exact hashes with a TOTP code (sign/totp.h); the answer is a SAD
 * (QTSP_T_SADS, again only its SHA-256) bound to those hashes, that
 * credential and that signer, used once, for at most 300 s. signHash
 * checks the SAD and the certificate's status, signs inside the token
 * (ca/subkey.h) and consumes the SAD, counts the signatures (sign/usage.h)
 * and writes the audit record in one store transaction.
 *
 * Lockouts and the OTP replay memory live in QTSP_T_CSC_STATE, so they
 * hold across the worker processes of `serve`. Policy: policies/signing.yaml.
 *
 * Errors: QTSP_ERR_INVALID (bad input, unknown or foreign credential, a
 * SAD that does not fit), QTSP_ERR_AUTH (login, token), QTSP_ERR_FORBIDDEN
 * (a wrong or replayed OTP, a locked credential), QTSP_ERR_STATE (the
 * certificate is held, revoked or expired; the credential disabled),
 * QTSP_ERR_QUOTA (the payer's package is spent), store and token errors.
 * Thread-safe after qtsp_csc_new. */
#ifndef QTSP_SIGN_CSC_H
#define QTSP_SIGN_CSC_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "ca/hsm.h"
#include "ca/store.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "sign/ades.h"
#include "sign/archive.h"
#include "sign/usage.h"

typedef struct qtsp_csc qtsp_csc;

#define QTSP_CSC_ID_MAX 65 /* user ids, credential ids (NUL included) */

typedef struct qtsp_csc_deps {
    qtsp_store *store;       /* borrowed, outlives the service */
    qtsp_hsm *hsm;           /* the token holding the key-storage key */
    X509 *issuing, *root;    /* the chain credentials/info shows */
    const char *policy;      /* the path of policies/signing.yaml */
    const char *secrets_dir; /* otp.key (ra/activation.h) */
    qtsp_usage *usage;       /* packages and relying parties (borrowed) */
    /* signDoc (both borrowed; NULL: signDoc and the documents are
     * QTSP_ERR_UNAVAILABLE): the TSA, OCSP, certificates and CRLs the
     * levels above B-B embed, and the archive of what is signed */
    const qtsp_ades_services *ades;
    qtsp_archive *archive;
} qtsp_csc_deps;

/* Loads the policy (QTSP_ERR_CONFIG naming the line) and the
 * OTP wrapping key. *out is the caller's (qtsp_csc_free). */
qtsp_status qtsp_csc_new(const qtsp_csc_deps *d, qtsp_csc **out) QTSP_MUST_USE;
void qtsp_csc_free(qtsp_csc *c);

/* The answer of info (CSC v2 11.1; new reference). */
qtsp_status qtsp_csc_info(qtsp_csc *c, json_t **out) QTSP_MUST_USE;

/* auth/login: checks password against the signer's argon2id hash; while
 * the signer is locked out (policy login.max_failures wrong passwords in a
 * row) every attempt is refused without checking. Audited either way
 * ("csc.login", "csc.login.failed"). *out: {"access_token","expires_in"}.
 * QTSP_ERR_AUTH "wrong user id or password" / "... locked until ...". */
qtsp_status qtsp_csc_login(qtsp_csc *c, const char *user_id, const char *password,
                           json_t **out) QTSP_MUST_USE;

/* The signer of an access token into user_id[QTSP_CSC_ID_MAX]. One read
 * transaction. QTSP_ERR_AUTH (unknown, expired, or issued before the
 * signer's password was reset or changed). */
qtsp_status qtsp_csc_token_check(qtsp_csc *c, const char *token, char *user_id) QTSP_MUST_USE;

/* auth/revoke: ends the session of token (the caller's own; another
 * signer's token is QTSP_ERR_INVALID, as an unknown one). Audited. */
qtsp_status qtsp_csc_revoke(qtsp_csc *c, const char *user_id, const char *token) QTSP_MUST_USE;

/* credentials/list: the signer's own credential ids, and with
 * req.credInfo their credentials/info objects. req: the request body
 * (borrowed; fields checked by the HTTP layer). */
qtsp_status qtsp_csc_list(qtsp_csc *c, const char *user_id, const json_t *req,
                          json_t **out) QTSP_MUST_USE;

/* credentials/info of req.credentialID (the signer's own). */
qtsp_status qtsp_csc_cred_info(qtsp_csc *c, const char *user_id, const json_t *req,
                               json_t **out) QTSP_MUST_USE;

/* credentials/authorize: req {credentialID, numSignatures, hashes,
 * hashAlgorithmOID, OTP}. Every attempt is audited ("csc.authorize",
 * "csc.otp.failed", "csc.otp.locked") and the OTP state committed, also
 * when the answer is a refusal. *out: {"SAD","expiresIn"}. */
qtsp_status qtsp_csc_authorize(qtsp_csc *c, const char *user_id, const json_t *req,
                               json_t **out) QTSP_MUST_USE;

/* signatures/signHash: req {credentialID, SAD, hashes, hashAlgorithmOID,
 * signAlgo, signAlgoParams, operationMode}. rp_header: the
 * X-QTSP-Relying-Party header or NULL (the signer's package pays).
 * *out: {"signatures":[base64 ...]} in the order of req.hashes. */
qtsp_status qtsp_csc_sign_hash(qtsp_csc *c, const char *user_id, const char *rp_header,
                               const json_t *req, json_t **out) QTSP_MUST_USE;

/* signatures/signDoc (CSC v2 11.11): req {credentialID, SAD, documents:
 * [{document (base64), signature_format C|P|X, conformance_level
 * Ades-B-B..Ades-B-LTA, signAlgo, signAlgoParams?, hashAlgorithmOID?,
 * signed_envelope_property?, name?, container?}], operationMode?,
 * signatureQualifier?, clientData?}; big: where the request's long
 * strings (the documents) lie (core/json.h; NULL when parsed whole). The
 * SAD must have been authorised for SHA-256 and exactly the SHA-256 of
 * each document (SCAL2); the credential, its certificate, the SAD and the
 * package are checked as signHash checks them, before the token works.
 * Each document is signed by the AdES builders (sign/ades.h) with the
 * credential's key, its file archived (sign/archive.h), and the SAD's
 * consumption, the charge (one signature per document; rp_header as for
 * signHash), the history, the archive index and the audit record
 * "csc.signdoc" committed in one store transaction. Appends to out the
 * JSON answer {"DocumentWithSignature":[base64...], "SignatureObject":
 * [base64...], "documentIDs":[...]}: each signed document in request
 * order, in DocumentWithSignature when the signature is inside it (CAdES
 * Attached, PAdES, XAdES Enveloped or Enveloping, an ASiC container), in
 * SignatureObject when detached (CAdES and XAdES Detached). out is left as
 * it was on failure. Errors as qtsp_csc_sign_hash, and QTSP_ERR_INVALID
 * for a document the builder refuses (not a PDF, encrypted, not XML for
 * Enveloped ...), QTSP_ERR_QUOTA (the archive is full), QTSP_ERR_UNAVAILABLE
 * (no signDoc here, or the TSA refused). */
qtsp_status qtsp_csc_sign_doc(qtsp_csc *c, const char *user_id, const char *rp_header,
                              const json_t *req, const qtsp_json_big *big,
                              qtsp_buf *out) QTSP_MUST_USE;

/* The body limit of signDoc (policies/signing.yaml documents_max_body). */
size_t qtsp_csc_doc_max_body(const qtsp_csc *c);

/* GET /api/v1/documents: one page of the signer's archived documents, at
 * most limit (0 = the policy's history_page, at most QTSP_HISTORY_PAGE_MAX),
 * after the cursor after (NULL = from the first; qtsp_archive_list_page,
 * which says "next" when more follow). */
qtsp_status qtsp_csc_documents(qtsp_csc *c, const char *user_id, size_t limit, const char *after,
                               json_t **out) QTSP_MUST_USE;

/* One archived document of the signer, byte for byte, appended to out;
 * its media type (static) and a file name to offer (UTF-8, from the name
 * given at signing, with the extension of what it is) into
 * name[QTSP_ARCHIVE_NAME_MAX + 8]. QTSP_ERR_NOT_FOUND for an unknown id or
 * another signer's. */
qtsp_status qtsp_csc_document_get(qtsp_csc *c, const char *user_id, const char *id, qtsp_buf *out,
                                  const char **media_type, char *name) QTSP_MUST_USE;

/* The signer changes their password (old_password checked like a login,
 * and counted towards the lockout). new_password: 12..128 bytes, not the
 * old one. Every access token of the signer ends. Audited. */
qtsp_status qtsp_csc_password_change(qtsp_csc *c, const char *user_id, const char *old_password,
                                     const char *new_password) QTSP_MUST_USE;

/* Office reset of a signer (`qtsp signer reset`): a new random password and
 * a new TOTP secret; tokens end, lockouts are lifted (the OTP replay memory
 * stays). Audited "signer.reset" by actor. *out:
 * {"user_id","password","otpauth_uri"}, the only copy of both secrets.
 * QTSP_ERR_NOT_FOUND. */
qtsp_status qtsp_csc_reset(qtsp_csc *c, const char *actor, const char *user_id,
                           json_t **out) QTSP_MUST_USE;

/* GET /api/v1/history pages: records per page without ?limit (the policy's
 * history_page, 1..QTSP_HISTORY_PAGE_MAX), and at most. */
#define QTSP_HISTORY_PAGE_DEFAULT 100
#define QTSP_HISTORY_PAGE_MAX 1000

/* GET /api/v1/history: one page of the signer's signings, newest first, at
 * most limit (0 = the policy's history_page), after the cursor after (NULL =
 * from the newest; qtsp_usage_history_page, which also says "next" when more
 * follow). */
qtsp_status qtsp_csc_history(qtsp_csc *c, const char *user_id, size_t limit, const char *after,
                             json_t **out) QTSP_MUST_USE;

/* GET /api/v1/quota: the signer's package and what is left of it now
 * (qtsp_usage_quota's object; new reference in *out). QTSP_ERR_NOT_FOUND
 * for an unknown signer. */
qtsp_status qtsp_csc_quota(qtsp_csc *c, const char *user_id, json_t **out) QTSP_MUST_USE;

/* Deletes sessions and SADs that expired before now (seconds), at most max
 * per call; *n how many. For the leader's sweeper. */
qtsp_status qtsp_csc_purge(qtsp_csc *c, time_t now, size_t max, size_t *n) QTSP_MUST_USE;

#endif
