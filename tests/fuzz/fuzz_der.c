/* libFuzzer target for the core/der reader: walks any input as nested TLVs
 * and checks that every header it accepts is the one the writer would write
 * (DER is canonical: a minimal definite length has one encoding), that
 * contents stay inside their parent, and that the content checks
 * (INTEGER, OID, BOOLEAN, times) never read outside their bytes.
 * Built by CMake with clang and -DQTSP_FUZZ=ON, run briefly by scripts/test.sh
 * (docs/tsa.md, Fuzzing). By hand, from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DOPENSSL_API_COMPAT=30000 \
 *     tests/fuzz/fuzz_der.c core/der.c core/time.c core/buf.c core/err.c -lcrypto \
 *     -o /tmp/fuzz_der
 *   /tmp/fuzz_der -max_total_time=60 -max_len=4096 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/der.h"
#include "core/err.h"

static void walk(qtsp_der_r r, int depth)
{
    while (r.n) {
        const unsigned char *start = r.p;
        size_t left = r.n;
        unsigned char tag;
        qtsp_der_r c, tlv;
        if (qtsp_der_next(&r, &tag, &c, &tlv) != QTSP_OK) {
            if (r.p != start || r.n != left)
                abort(); /* a failed read must not move the cursor */
            return;
        }
        if (tlv.p != start || c.p < start || c.p + c.n != start + tlv.n || tlv.n > left ||
            r.p != start + tlv.n)
            abort();
        unsigned char hdr[QTSP_DER_HDR_MAX];
        size_t hl = qtsp_der_put_hdr(hdr, tag, c.n);
        if (hl != tlv.n - c.n || memcmp(hdr, start, hl) != 0)
            abort(); /* accepted a header the writer would not write */
        uint64_t u;
        int b;
        int64_t t;
        if (tag == QTSP_DER_INTEGER)
            (void)qtsp_der_read_u64(&c, &u);
        else if (tag == QTSP_DER_OID)
            (void)qtsp_der_check_oid(&c, 64);
        else if (tag == QTSP_DER_BOOLEAN)
            (void)qtsp_der_read_bool(&c, &b);
        else if (tag == QTSP_DER_UTCTIME || tag == QTSP_DER_GENTIME)
            (void)qtsp_der_read_time(tag, &c, &t);
        if ((tag & 0x20) && depth < 32)
            walk(c, depth + 1);
    }
    if (qtsp_der_done(&r) != QTSP_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qtsp_der_r r = {data, size};
    walk(r, 0);
    qtsp_err_clear();
    return 0;
}
