/* The services of `qtsp serve` and their HTTP routes, built from an opened
 * home. Kept apart from serve.c so tests and benches can assemble the same
 * server. */
#ifndef QTSP_CMD_SERVICES_H
#define QTSP_CMD_SERVICES_H

#include <stddef.h>

#include "cmd/app.h"
#include "core/http.h"
#include "sign/ades.h"
#include "sign/archive.h"
#include "sign/validate.h"

typedef struct qtsp_services qtsp_services;

/* Creates every service over app (which must outlive them). */
qtsp_status qtsp_services_new(qtsp_app *app, qtsp_services **out) QTSP_MUST_USE;
/* Starts background work: the CRL publisher and the webhook sender always;
 * with leader set also the hold sweeper and the key-pool filler (of the
 * worker processes of `serve --processes N`, only one is the leader). */
qtsp_status qtsp_services_start(qtsp_services *svc, int leader) QTSP_MUST_USE;
/* First step of shutdown, before the HTTP server stops: queued RA requests
 * are answered 503 instead of being carried out. NULL is a no-op. */
void qtsp_services_quiesce(qtsp_services *svc);
/* Stops background work and frees. NULL is a no-op. */
void qtsp_services_free(qtsp_services *svc);

/* Tells the services the HTTP server that carries their routes (borrowed;
 * NULL before it is stopped): the TSA's group commit asks it whether every
 * client waits (qtsp_tsa_set_arrivals). */
void qtsp_services_set_http(qtsp_services *svc, qtsp_http_server *srv);

const qtsp_route *qtsp_services_routes(const qtsp_services *svc);
size_t qtsp_services_route_count(const qtsp_services *svc);
/* qtsp_metrics_fn: store size, token sessions and each service's lines. */
qtsp_status qtsp_services_metrics(void *ctx, qtsp_buf *out) QTSP_MUST_USE;

/* The signed-document archive of app's home: DIR/archive/ with the home's
 * policies/archive.yaml (the shipped one for a home made before it existed).
 * cmd/sign_doc.c. */
qtsp_status cmd_archive_open(qtsp_app *app, qtsp_archive **out) QTSP_MUST_USE;

/* What signatures above B-B embed besides the signer's chain (sign/ades.h
 * qtsp_ades_services): the TSA unit's and the responder's certificates
 * (borrowed from app, which must outlive it) and the root's CRL as the CRL
 * publisher last wrote it to DIR/public/crl/root.crl (it covers the issuing
 * CA and the TSA unit), read again whenever the file changed, so a server
 * running for days embeds the current one. Thread-safe. cmd/sign_doc.c. */
typedef struct cmd_ades_extras cmd_ades_extras;
qtsp_status cmd_ades_extras_new(qtsp_app *app, cmd_ades_extras **out) QTSP_MUST_USE;
/* Sets sv's extra_certs and crls_now/crls_ctx (x must outlive sv's use). */
void cmd_ades_extras_apply(cmd_ades_extras *x, qtsp_ades_services *sv);
void cmd_ades_extras_free(cmd_ades_extras *x);

/* The signature validator of app's home: trust anchors from
 * policies/trust.yaml, the home's issuing CA, TSA and OCSP certificates to
 * build chains, our store as the status source through st (filled here;
 * it must outlive the validator). cmd/validate_cmd.c. */
qtsp_status cmd_validator_open(qtsp_app *app, qtsp_validate_store *st,
                               qtsp_validator **out) QTSP_MUST_USE;

/* The routes whose handlers need only the body (qtsp_http_opts.fast_routes):
 * POST /ocsp and POST /tsa. */
const char *const *qtsp_services_fast_routes(void);
/* The lane's round hooks (qtsp_http_opts.lane_round_*): the round's OCSP
 * answers and time-stamp tokens are signed on the lane thread at its end,
 * back to back, instead of on a signing thread (ca/signq.h). ctx: the
 * qtsp_services. */
void qtsp_services_lane_round_begin(void *ctx);
void qtsp_services_lane_round_end(void *ctx);

#endif
