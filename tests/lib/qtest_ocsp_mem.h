/* An in-memory OCSP status source (ocsp/ocsp_int.h) for the unit tests and
 * the fuzzer: a fixed table of statuses, no store and no cache. No CUnit in
 * it (the fuzzer links it). */
#ifndef QTSP_TESTS_QTEST_OCSP_MEM_H
#define QTSP_TESTS_QTEST_OCSP_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "ocsp/ocsp_int.h"

typedef struct qtest_ocsp_mem_entry {
    unsigned char serial[QTSP_SERIAL_MAX]; /* normalised (no leading zero) */
    size_t serial_len;
    qtsp_cert_status st; /* as stored: a hold lapses in the core */
} qtest_ocsp_mem_entry;

typedef struct qtest_ocsp_mem {
    const qtest_ocsp_mem_entry *e; /* borrowed */
    size_t n;
    uint64_t gen;  /* returned as the status generation */
    int fail;      /* 1: begin fails (QTSP_ERR_STORE) */
    size_t begins; /* snapshots opened, ends closed (not atomic: tests) */
    size_t ends;
} qtest_ocsp_mem;

/* Fills *out with a source reading m (borrowed; must outlive the responder).
 * Statuses come from m->e; serials not in it are QTSP_ERR_NOT_FOUND. */
void qtest_ocsp_mem_source(qtest_ocsp_mem *m, qtsp_ocsp_source *out);

#endif
