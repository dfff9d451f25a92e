/* The in-memory OCSP status source of tests/lib/qtest_ocsp_mem.h. */
#include "tests/lib/qtest_ocsp_mem.h"

#include <string.h>

static qtsp_status mem_begin(void *ctx, void **snap)
{
    qtest_ocsp_mem *m = ctx;
    ENSURE(!m->fail, QTSP_ERR_STORE, "in-memory source set to fail");
    m->begins++;
    *snap = m;
    return QTSP_OK;
}

static void mem_end(void *snap)
{
    qtest_ocsp_mem *m = snap;
    m->ends++;
}

static qtsp_status mem_gen(void *snap, uint64_t *gen)
{
    qtest_ocsp_mem *m = snap;
    *gen = m->gen;
    return QTSP_OK;
}

static qtsp_status mem_status(void *snap, const unsigned char *serial, size_t len,
                              qtsp_cert_status *out)
{
    qtest_ocsp_mem *m = snap;
    for (size_t i = 0; i < m->n; i++) {
        if (m->e[i].serial_len == len && memcmp(m->e[i].serial, serial, len) == 0) {
            *out = m->e[i].st;
            return QTSP_OK;
        }
    }
    FAIL(QTSP_ERR_NOT_FOUND, "serial never issued");
}

void qtest_ocsp_mem_source(qtest_ocsp_mem *m, qtsp_ocsp_source *out)
{
    *out = (qtsp_ocsp_source){
        .begin = mem_begin, .end = mem_end, .gen = mem_gen, .status = mem_status, .ctx = m};
}
