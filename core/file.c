/* Atomic whole-file writes (core/file.h). */
#include "core/file.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

qtsp_status qtsp_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    /* a fresh, unique temp file next to path (mkstemp: O_EXCL, 0600), so
     * nothing planted or left by someone else is followed or removed */
    char tmp[QTSP_PATH_MAX + 16];
    int n = snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    ENSURE(n > 0 && (size_t)n < sizeof tmp, QTSP_ERR_TOO_BIG, "path too long: %s", path);
    int fd = mkstemp(tmp);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create a temporary file next to %s: %s", path,
           strerror(errno));
    const unsigned char *p = data;
    size_t off = 0;
    int bad = 0;
    while (off < len && !bad) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            bad = 1;
        else
            off += (size_t)w;
    }
    bad |= fchmod(fd, mode) != 0;
    bad |= fsync(fd) != 0;
    bad |= close(fd) != 0;
    if (bad || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot write %s: %s", path, strerror(err));
    }
    return QTSP_OK;
}

qtsp_status qtsp_file_read(const char *path, size_t max, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    qtsp_status rc = QTSP_OK;
    unsigned char *p = NULL;
    ENSURE_OUT(fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode), QTSP_ERR_IO,
               "%s is not a regular file", path);
    ENSURE_OUT(st.st_size >= 0 && (uint64_t)st.st_size <= max, QTSP_ERR_TOO_BIG,
               "%s: larger than %zu bytes", path, max);
    p = malloc((size_t)st.st_size + 1);
    ENSURE_OUT(p != NULL, QTSP_ERR_NOMEM, "out of memory");
    ENSURE_OUT(fread(p, 1, (size_t)st.st_size, f) == (size_t)st.st_size, QTSP_ERR_IO,
               "cannot read %s", path);
    p[st.st_size] = '\0';
    *out = p;
    *len = (size_t)st.st_size;
    p = NULL;
out:
    free(p);
    fclose(f);
    return rc;
}
