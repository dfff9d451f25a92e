/* Throw-away LMDB stores for the unit tests. */
#include <stdio.h>

#include "tests/lib/qtest.h"

qtsp_store *qtest_store_fresh(const char *tag, size_t map_mib, char *dir_out, size_t cap)
{
    const char *d = qtest_tmpdir(tag);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    snprintf(dir_out, cap, "%s", d);
    char path[600];
    snprintf(path, sizeof path, "%s/store", dir_out);
    qtsp_store *st = NULL;
    qtsp_err_clear();
    CU_ASSERT_EQUAL_FATAL(qtsp_store_open(path, map_mib, &st), QTSP_OK);
    return st;
}

void qtest_store_done(qtsp_store *st, const char *dir)
{
    qtsp_store_close(st);
    qtest_rmtree(dir);
}
