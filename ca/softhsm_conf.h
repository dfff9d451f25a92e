/* The embedded SoftHSM2 token's configuration file, DIR/hsm/softhsm2.conf.
 * SoftHSM2 resolves directories.tokendir against the working directory of
 * the process, so the file holds an absolute path; a home copied with
 * cp -a (or restored by hand) would silently use the original home's token.
 * These functions keep each home on its own token. Not thread-safe (file
 * I/O only, no shared state). */
#ifndef QTSP_CA_SOFTHSM_CONF_H
#define QTSP_CA_SOFTHSM_CONF_H

#include "core/err.h"

/* Checks that conf's directories.tokendir lies inside hsm_dir (both
 * resolved with realpath). QTSP_ERR_STATE with a message naming both
 * folders when it points elsewhere (a copied home), QTSP_ERR_IO when conf
 * cannot be read or the token folder does not exist, QTSP_ERR_CONFIG when
 * conf has no tokendir line. */
qtsp_status qtsp_softhsm_conf_check(const char *conf, const char *hsm_dir) QTSP_MUST_USE;

/* Writes hsm_dir/softhsm2.conf (mode 0600, atomically) with tokendir
 * <realpath of hsm_dir>/tokens and the file object store. hsm_dir must
 * exist. QTSP_ERR_IO, QTSP_ERR_TOO_BIG (path). */
qtsp_status qtsp_softhsm_conf_write(const char *hsm_dir) QTSP_MUST_USE;

#endif
