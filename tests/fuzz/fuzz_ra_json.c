/* libFuzzer target for the RA's JSON input without network: the body as
 * core/api reads it (qtsp_json_parse_object: one JSON object, duplicate keys
 * refused), the field lists of the RA routes (core/json), and the RA's field
 * validation (ra/validate.c: names refused unless NFC-normalisable and free
 * of control, format, private-use and unassigned characters; country,
 * national id, e-mail, phone; the free texts of holds and terminations),
 * in the order ra/ra.c applies them. Nothing is written anywhere.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it;
 * seeds: tests/fuzz/corpus/fuzz_ra_json. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "ra/validate.h"

static const char *const k_enrol[] = {"given_name", "surname", "country", "national_id",
                                      "email",      "phone",   "package", "identity_evidence",
                                      NULL};
static const char *const k_hotline[] = {"national_id", "phone", "caller_verification", NULL};
static const char *const k_terminate[] = {"reason", "identity_check", "invalidity_date", NULL};

static void enrol(const json_t *in)
{
    if (qtsp_json_check_fields(in, k_enrol) != QTSP_OK)
        return;
    const char *g = NULL, *s = NULL, *c = NULL, *n = NULL, *e = NULL, *p = NULL;
    char gn[4 * 64 + 1], sn[4 * 64 + 1];
    if (qtsp_json_get_string(in, "given_name", 1, &g) == QTSP_OK &&
        qtsp_valid_name_nfc("given_name", g, 64, gn, sizeof gn) == QTSP_OK) {
        /* a name that passes is NFC and passes again unchanged */
        char again[sizeof gn];
        if (qtsp_valid_name_nfc("given_name", gn, 64, again, sizeof again) != QTSP_OK ||
            strcmp(gn, again) != 0)
            abort();
    }
    if (qtsp_json_get_string(in, "surname", 1, &s) == QTSP_OK)
        (void)qtsp_valid_name_nfc("surname", s, 64, sn, sizeof sn);
    if (qtsp_json_get_string(in, "country", 1, &c) == QTSP_OK && qtsp_valid_country(c) == QTSP_OK &&
        qtsp_json_get_string(in, "national_id", 1, &n) == QTSP_OK)
        (void)qtsp_valid_national_id(c, n);
    if (qtsp_json_get_string(in, "email", 1, &e) == QTSP_OK)
        (void)qtsp_valid_email(e);
    if (qtsp_json_get_string(in, "phone", 1, &p) == QTSP_OK)
        (void)qtsp_valid_phone(p);
    json_t *ev = json_object_get(in, "identity_evidence");
    static const char *const k_ev[] = {"document_type", "document_number", "method", NULL};
    const char *d = NULL;
    if (json_is_object(ev) && qtsp_json_check_fields(ev, k_ev) == QTSP_OK &&
        qtsp_json_get_string(ev, "document_number", 1, &d) == QTSP_OK)
        (void)qtsp_valid_name("identity_evidence.document_number", d, 64);
}

static void texts(const json_t *in, const char *const *fields)
{
    if (qtsp_json_check_fields(in, fields) != QTSP_OK)
        return;
    for (size_t i = 0; fields[i]; i++) {
        const char *v = NULL;
        json_t *copy = NULL;
        if (qtsp_json_get_string(in, fields[i], 0, &v) == QTSP_OK && v &&
            qtsp_json_new_string(fields[i], v, &copy) == QTSP_OK)
            json_decref(copy);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qtsp_log_set_level(QTSP_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = NULL;
    qtsp_err_clear();
    if (qtsp_json_parse_object((const char *)data, size, &in) == QTSP_OK) {
        if (!json_is_object(in))
            abort();
        enrol(in);
        texts(in, k_hotline);
        texts(in, k_terminate);
        json_decref(in);
    }
    qtsp_err_clear();
    return 0;
}
