#include "tests/lib/qtest.h"

#include <stdio.h>

#include "ca/hsm.h"
#include "core/err.h"

int qtest_softhsm_token(const char *dir, const char *label)
{
    char hsm[600];
    snprintf(hsm, sizeof hsm, "%s/hsm", dir);
    qtsp_err_clear();
    qtsp_status rc = qtsp_softhsm_create(QTEST_SOFTHSM_MODULE, hsm, label, "5678", QTEST_PIN);
    if (rc != QTSP_OK) {
        fprintf(stderr, "qtest_softhsm_token: %s\n", qtsp_err_message());
        return -1;
    }
    return 0;
}
