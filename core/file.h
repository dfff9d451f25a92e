/* Files written whole (a new version appears at once or not at all) and
 * read whole. */
#ifndef QTSP_CORE_FILE_H
#define QTSP_CORE_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"

/* Writes data (len bytes) to path atomically: a fresh temp file next to it
 * (mkstemp: O_EXCL, so nothing planted is followed), mode set, fsync, then
 * rename over path. QTSP_ERR_TOO_BIG (path too long), QTSP_ERR_IO (the temp
 * file is removed). Thread-safe. */
qtsp_status qtsp_file_write_atomic(const char *path, const void *data, size_t len,
                                   mode_t mode) QTSP_MUST_USE;

/* Reads the whole regular file path (at most max bytes) into a malloc'd
 * buffer *out (NUL-terminated, not counted in *len; the caller frees).
 * QTSP_ERR_IO (cannot open or read), QTSP_ERR_TOO_BIG (larger than max),
 * QTSP_ERR_NOMEM. *out and *len are written only on success. */
qtsp_status qtsp_file_read(const char *path, size_t max, unsigned char **out,
                           size_t *len) QTSP_MUST_USE;

#endif
