/* libFuzzer target for ZIP input: ASiC containers as POST /api/v1/validate
 * receives them. Every input goes to the container reader (sign/asic.c
 * ades_zip_read on libzip, with the validator's bounds) and then to the
 * ASiC validator (sign/validate_asic.c val_asic: mimetype, manifest, the
 * CAdES or XAdES signature inside), whatever its first bytes (fuzz_validate
 * reaches the ZIP path only through the "PK\3\4" sniff). Any input must be
 * refused with an error or give a complete report, never a crash, a leak, a
 * hang; what the reader accepts must keep its bounds: entries and unpacked
 * bytes at most as asked, names non-empty, relative, without "..", each
 * once. One self-signed P-256 certificate is both the trust anchor and the
 * signer of the seeds (tests/lib/qtest_cert.c), no status store.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it.
 * QTSP_FUZZ_SEEDS=DIR writes an ASiC-E (CAdES) and an ASiC-S (XAdES)
 * container signed at B-B by qtsp_asic_sign there; the committed corpus
 * tests/fuzz/corpus/fuzz_zip holds containers made by `qtsp sign` and small
 * ZIPs (stored, deflated, nested, damaged) made by Python's zipfile. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sign/ades.h"
#include "sign/ades_int.h"
#include "sign/validate.h"
#include "sign/validate_int.h"
#include "tests/lib/qtest_cert.h"

/* the reader's bounds here: smaller than the validator's, so that they are
 * reached by inputs of fuzzing size */
#define FZ_MAX_ENTRIES 8
#define FZ_MAX_TOTAL ((size_t)1 << 20)

static qtsp_validator *g_v;
static qtsp_key *g_key;
static X509 *g_cert;
static qtsp_sigalg g_alg;

static void write_file(const char *dir, const char *name, const qtsp_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b->data, 1, b->len, f);
        fclose(f);
    }
}

/* Two valid containers of the anchor's own signer (fixed signing time). */
static void write_seeds(const char *dir)
{
    static const unsigned char doc1[] = "a text document\n", doc2[] = "{\"a\":1}";
    qtsp_xades_object files[2] = {{doc1, sizeof doc1 - 1, "doc.txt", "text/plain"},
                                  {doc2, sizeof doc2 - 1, "data/a.json", "application/json"}};
    qtsp_ades_services sv;
    memset(&sv, 0, sizeof sv);
    qtsp_ades_signer s = {g_key, g_cert, NULL, g_alg};
    const qtsp_asic_opts opts[2] = {{QTSP_ASIC_E, QTSP_ASIC_CADES, QTSP_ADES_B_B, 1800000000},
                                    {QTSP_ASIC_S, QTSP_ASIC_XADES, QTSP_ADES_B_B, 1800000000}};
    static const char *const names[2] = {"seed-asic-e-cades.zip", "seed-asic-s-xades.zip"};
    for (int i = 0; i < 2; i++) {
        qtsp_buf out;
        qtsp_buf_init(&out, (size_t)1 << 20);
        if (qtsp_asic_sign(&sv, &s, &opts[i], files, i == 0 ? 2 : 1, &out) == QTSP_OK)
            write_file(dir, names[i], &out);
        else
            fprintf(stderr, "fuzz_zip: seed %s: %s\n", names[i], qtsp_err_message());
        qtsp_err_clear();
        qtsp_buf_cleanup(&out);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR);
    if (qtest_soft_signer("Fuzz ZIP Root", 0x05, 1, &g_cert, &g_key, &g_alg) != 0) {
        fprintf(stderr, "fuzz_zip: %s\n", qtsp_err_message());
        abort();
    }
    qtsp_validate_anchor a = {g_cert, 0};
    qtsp_validator_opts o = {&a, 1, NULL, NULL, NULL};
    if (qtsp_validator_new(&o, &g_v) != QTSP_OK) {
        fprintf(stderr, "fuzz_zip: %s\n", qtsp_err_message());
        abort();
    }
    const char *sd = getenv("QTSP_FUZZ_SEEDS");
    if (sd)
        write_seeds(sd);
    return 0; /* validator, key and certificate live for the process */
}

/* a path segment ".." anywhere in name */
static int dotdot(const char *name)
{
    for (const char *seg = name; seg;) {
        const char *sl = strchr(seg, '/');
        size_t l = sl ? (size_t)(sl - seg) : strlen(seg);
        if (l == 2 && seg[0] == '.' && seg[1] == '.')
            return 1;
        seg = sl ? sl + 1 : NULL;
    }
    return 0;
}

static void check_entries(const ades_zip_entry *e, size_t n)
{
    size_t total = 0;
    if (n < 1 || n > FZ_MAX_ENTRIES)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t nl = strnlen(e[i].name, ADES_ZIP_NAME_MAX);
        if (nl == 0 || nl == ADES_ZIP_NAME_MAX || e[i].name[0] == '/' || dotdot(e[i].name) ||
            strchr(e[i].name, '\\') || !e[i].data || e[i].data[e[i].len] != '\0')
            abort(); /* a name the reader must have refused, or data without its NUL */
        for (size_t k = 0; k < i; k++)
            if (strcmp(e[k].name, e[i].name) == 0)
                abort(); /* a name given twice */
        total += e[i].len;
    }
    if (total > FZ_MAX_TOTAL)
        abort(); /* unpacked past the bound */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *in = malloc(size ? size : 1); /* its own allocation: ASan sees any overread */
    if (!in)
        return 0;
    memcpy(in, data, size);
    ades_zip_entry *e = NULL;
    size_t n = 0;
    qtsp_err_clear();
    if (ades_zip_read(in, size, FZ_MAX_ENTRIES, FZ_MAX_TOTAL, &e, &n) == QTSP_OK) {
        check_entries(e, n);
        ades_zip_free(e, n);
    } else if (e != NULL || n != 0) {
        abort(); /* a refusal leaves nothing behind */
    }
    qtsp_err_clear();
    json_t *sigs = json_array();
    const char *form = NULL;
    if (sigs && val_asic(g_v, in, size, 1800000000, sigs, &form) == QTSP_OK) {
        /* a container whose signatures*.xml holds no ds:Signature reports an
         * empty list, as a plain XML document without one does */
        if (!form || (strcmp(form, "ASiC-S") != 0 && strcmp(form, "ASiC-E") != 0))
            abort(); /* a container validated, but of no ASiC form */
        for (size_t i = 0; i < json_array_size(sigs); i++)
            if (!json_is_object(json_array_get(sigs, i)) ||
                !json_is_string(json_object_get(json_array_get(sigs, i), "indication")))
                abort(); /* a signature reported without its indication */
    }
    qtsp_err_clear();
    json_decref(sigs);
    free(in);
    return 0;
}
