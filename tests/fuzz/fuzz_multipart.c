/* libFuzzer target for core/multipart.c, the form reader of POST
 * /api/v1/validate: the input's first line is the Content-Type, the rest
 * the body. Parts found must lie inside the body and not overlap, in
 * order; anything else is an error, never a crash or an overread.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 512 ? size : 512);
    if (!nl)
        return 0;
    char ct[513];
    size_t cl = (size_t)(nl - data);
    memcpy(ct, data, cl);
    ct[cl] = '\0';
    const unsigned char *body = nl + 1;
    size_t len = size - cl - 1;
    qtsp_mp_part p[4];
    size_t n = 0;
    qtsp_err_clear();
    if (qtsp_multipart_parse(ct, body, len, p, 4, &n) == QTSP_OK) {
        const unsigned char *at = body;
        for (size_t i = 0; i < n; i++) {
            if (p[i].data < at || p[i].data + p[i].len > body + len || !p[i].name[0])
                abort();
            at = p[i].data + p[i].len;
        }
    }
    qtsp_err_clear();
    return 0;
}
