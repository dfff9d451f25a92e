/* DIR/hsm/softhsm2.conf: one home, one token. */
#include "ca/softhsm_conf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

qtsp_status qtsp_softhsm_conf_text(const char *hsm_dir, char *out, size_t cap)
{
    char abs[PATH_MAX];
    ENSURE(realpath(hsm_dir, abs) != NULL, QTSP_ERR_IO, "cannot resolve %s: %s", hsm_dir,
           strerror(errno));
    int n = snprintf(out, cap,
                     "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                     "log.level = ERROR\n",
                     abs);
    ENSURE(n > 0 && (size_t)n < cap, QTSP_ERR_TOO_BIG, "token directory path too long");
    return QTSP_OK;
}
