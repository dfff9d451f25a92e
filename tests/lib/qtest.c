#include "tests/lib/qtest.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/err.h"

int qtest_run(const char *suite, const qtest_case *cases, size_t n)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        CU_add_test(s, cases[i].name, cases[i].fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned run = CU_get_number_of_tests_run();
    unsigned failed = CU_get_number_of_tests_failed();
    printf("qtest: %s %u passed, %u failed\n", suite, run - failed, failed);
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

const char *qtest_tmpdir(const char *tag)
{
    static _Thread_local char path[512];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/qtsp-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path))
        return NULL;
    return path;
}

void qtest_rmtree(const char *path)
{
    if (!path || strlen(path) < 6 || strstr(path, "qtsp-") == NULL)
        return; /* refuse anything that is not ours */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    int r = system(cmd);
    (void)r;
}

const char *qtest_src_dir(void)
{
    static char dir[1024];
    const char *env = getenv("QTSP_SRC_DIR");
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    /* __FILE__ is <src>/tests/lib/qtest.c (CMake compiles with absolute paths) */
    snprintf(dir, sizeof dir, "%s", __FILE__);
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
    }
    return dir;
}

int qtest_connect(unsigned port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
