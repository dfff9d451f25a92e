/* libFuzzer target for the PDF input of signing (sign/pades.c through
 * qpdf's C API): signDoc and `qtsp sign` hand it whatever a signer
 * uploads. Any input must be refused with an error or signed; a signed one
 * must be the input followed by an incremental update that carries the
 * signature dictionary (/ByteRange, /Contents), never a rewritten file.
 * B-B with a software P-256 key (no token, no TSA, no store).
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it.
 * QTSP_FUZZ_SEEDS=DIR writes a one-page PDF whose xref offsets are wrong
 * (qpdf reconstructs the table) there; the committed corpus
 * tests/fuzz/corpus/fuzz_pdf holds two valid ones written by qpdf (a
 * classic xref table and a cross-reference stream). */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sign/ades.h"
#include "tests/lib/qtest_cert.h"

static qtsp_key *g_key;
static X509 *g_cert;
static qtsp_sigalg g_alg;

static const char PDF_CLASSIC[] =
    "%PDF-1.4\n"
    "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
    "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n"
    "xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \n"
    "0000000115 00000 n \n"
    "trailer\n<< /Root 1 0 R /Size 4 >>\nstartxref\n186\n%%EOF\n";

static void write_seed(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-damaged-xref.pdf", dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(PDF_CLASSIC, 1, sizeof PDF_CLASSIC - 1, f);
        fclose(f);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR);
    if (qtest_soft_signer("Fuzz Signer", 0x07, 0, &g_cert, &g_key, &g_alg) != 0) {
        fprintf(stderr, "fuzz_pdf: %s\n", qtsp_err_message());
        abort();
    }
    const char *sd = getenv("QTSP_FUZZ_SEEDS");
    if (sd)
        write_seed(sd);
    return 0; /* key and certificate live for the process */
}

static int contains(const unsigned char *h, size_t hl, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= hl; i++)
        if (memcmp(h + i, needle, nl) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *in = malloc(size ? size : 1); /* its own allocation: ASan sees any overread */
    if (!in)
        return 0;
    memcpy(in, data, size);
    qtsp_ades_services sv;
    memset(&sv, 0, sizeof sv);
    qtsp_ades_signer s = {g_key, g_cert, NULL, g_alg};
    qtsp_pades_opts o = {QTSP_ADES_B_B, 0, 1800000000};
    qtsp_buf out;
    qtsp_buf_init(&out, (size_t)80 << 20);
    qtsp_err_clear();
    if (qtsp_pades_sign(&sv, &s, &o, in, size, &out) == QTSP_OK) {
        if (out.len <= size || memcmp(out.data, in, size) != 0)
            abort(); /* the original bytes must stay as they were */
        if (!contains(out.data + size, out.len - size, "/ByteRange") ||
            !contains(out.data + size, out.len - size, "/ETSI.CAdES.detached"))
            abort(); /* an update without the signature dictionary */
    }
    qtsp_err_clear();
    qtsp_buf_cleanup(&out);
    free(in);
    return 0;
}
