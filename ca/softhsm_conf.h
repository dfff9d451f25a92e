/* The embedded SoftHSM2 token's configuration file, DIR/hsm/softhsm2.conf.
 * SoftHSM2 resolves directories.tokendir against the working directory of
 * the process, so the file holds an absolute path; a home copied with
 * cp -a (or restored by hand) would silently use the original home's token.
 * These functions keep each home on its own token. Not thread-safe (file
 * I/O only, no shared state). */
#ifndef QTSP_CA_SOFTHSM_CONF_H
#define QTSP_CA_SOFTHSM_CONF_H

#include <stddef.h>

#include "core/err.h"

/* Checks that conf's directories.tokendir lies inside hsm_dir (both
 * resolved with realpath). QTSP_ERR_STATE with a message naming both
 * folders when it points elsewhere (a copied home), QTSP_ERR_IO when conf
 * cannot be read or the token folder does not exist, QTSP_ERR_CONFIG when
 * conf has no tokendir line. */
qtsp_status qtsp_softhsm_conf_check(const char *conf, const char *hsm_dir) QTSP_MUST_USE;

/* The text of hsm_dir/softhsm2.conf for a home's own token: tokendir
 * <realpath of hsm_dir>/tokens, the file object store. hsm_dir must exist.
 * out (cap bytes) is written only on success. QTSP_ERR_IO, QTSP_ERR_TOO_BIG. */
qtsp_status qtsp_softhsm_conf_text(const char *hsm_dir, char *out, size_t cap) QTSP_MUST_USE;

#endif
