/* DIR/hsm/softhsm2.conf: one home, one token. */
#include "ca/softhsm_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

qtsp_status qtsp_softhsm_conf_check(const char *conf, const char *hsm_dir)
{
    FILE *f = fopen(conf, "r");
    ENSURE(f != NULL, QTSP_ERR_IO, "cannot read %s: %s", conf, strerror(errno));
    char line[PATH_MAX + 64], tokendir[PATH_MAX] = "";
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, "directories.tokendir", 20) != 0)
            continue;
        p += 20;
        p += strspn(p, " \t");
        if (*p != '=')
            continue;
        p++;
        p += strspn(p, " \t");
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n < sizeof tokendir) {
            memcpy(tokendir, p, n);
            tokendir[n] = '\0';
        }
    }
    fclose(f);
    ENSURE(tokendir[0] != '\0', QTSP_ERR_CONFIG, "%s: no directories.tokendir line", conf);
    char tok_abs[PATH_MAX], hsm_abs[PATH_MAX];
    ENSURE(realpath(hsm_dir, hsm_abs) != NULL, QTSP_ERR_IO, "cannot resolve %s: %s", hsm_dir,
           strerror(errno));
    ENSURE(realpath(tokendir, tok_abs) != NULL, QTSP_ERR_IO, "%s: token folder %s: %s", conf,
           tokendir, strerror(errno));
    ENSURE(inside(tok_abs, hsm_abs), QTSP_ERR_STATE,
           "%s uses the token in %s, which is not this home's (%s): a copied home must not share "
           "the original's token; restore it with qtsp restore, or point directories.tokendir "
           "at %s/tokens",
           conf, tok_abs, hsm_abs, hsm_abs);
    return QTSP_OK;
}

qtsp_status qtsp_softhsm_conf_write(const char *hsm_dir)
{
    char abs[PATH_MAX], conf[PATH_MAX], tmp[PATH_MAX], text[PATH_MAX + 128];
    ENSURE(realpath(hsm_dir, abs) != NULL, QTSP_ERR_IO, "cannot resolve %s: %s", hsm_dir,
           strerror(errno));
    int n1 = snprintf(conf, sizeof conf, "%s/softhsm2.conf", abs);
    int n2 = snprintf(tmp, sizeof tmp, "%s/softhsm2.conf.XXXXXX", abs);
    int n3 = snprintf(text, sizeof text,
                      "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                      "log.level = ERROR\n",
                      abs);
    ENSURE(n1 > 0 && (size_t)n1 < sizeof conf && n2 > 0 && (size_t)n2 < sizeof tmp && n3 > 0 &&
               (size_t)n3 < sizeof text,
           QTSP_ERR_TOO_BIG, "token directory path too long");
    int fd = mkstemp(tmp);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t len = (size_t)n3;
    int bad = write(fd, text, len) != (ssize_t)len;
    bad |= fchmod(fd, 0600) != 0;
    bad |= fsync(fd) != 0;
    bad |= close(fd) != 0;
    if (bad || rename(tmp, conf) != 0) {
        int err = errno;
        unlink(tmp);
        FAIL(QTSP_ERR_IO, "cannot write %s: %s", conf, strerror(err));
    }
    return QTSP_OK;
}
