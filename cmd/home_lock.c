/* DIR/serve.lock: one qtsp serve per home. */
#include "cmd/home_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/config.h"

qtsp_status cmd_home_lock_serve(const char *home)
{
    char path[QTSP_PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/serve.lock", home);
    ENSURE(n > 0 && (size_t)n < sizeof path, QTSP_ERR_TOO_BIG, "home path too long");
    /* no O_CLOEXEC on purpose: nothing is exec'd, and fork keeps the lock
     * with the workers (flock locks belong to the open file description) */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
        pid[r > 0 ? r : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        ENSURE(err != EWOULDBLOCK, QTSP_ERR_STATE,
               "another qtsp serve (pid %s) is running on %s; one server per home",
               pid[0] ? pid : "?", home);
        FAIL(QTSP_ERR_IO, "cannot lock %s: %s", path, strerror(err));
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    /* the pid is only a hint for the refusal message: no failure if unwritten */
    int written = ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)len, 0) == len;
    (void)written;
    return QTSP_OK; /* fd stays open: the lock lives as long as the server */
}
