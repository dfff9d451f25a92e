/* Small helpers over jansson shared by the JSON API layer (core/api.c) and
 * the services that read JSON themselves (ra/ra.c enrolment, the CLI):
 * allowed-field lists, typed field access, strings checked for UTF-8. Each
 * error is QTSP_ERR_INVALID with a message naming the field. Pure
 * functions, thread-safe. */
#ifndef QTSP_CORE_JSON_H
#define QTSP_CORE_JSON_H

#include <jansson.h>

#include "core/err.h"

/* QTSP_ERR_INVALID "body: must be a JSON object" when in is not an object,
 * "<name>: unknown field" for the first member not in allowed
 * (NULL-terminated; an empty list allows none). */
qtsp_status qtsp_json_check_fields(const json_t *in, const char *const *allowed) QTSP_MUST_USE;

/* A request body: body[0..len) is one JSON object without duplicate keys
 * (the JSON API layer's rule, core/api.h). *out is a new reference.
 * QTSP_ERR_INVALID naming what is wrong (empty, where the JSON breaks, not
 * an object). */
qtsp_status qtsp_json_parse_object(const char *body, size_t len, json_t **out) QTSP_MUST_USE;

/* Long strings of a request body left where they lie (signDoc's base64
 * documents: jansson would copy and check every byte, 350 ms for 13 MB).
 * qtsp_json_parse_object_big replaces each string of at least min bytes
 * without escapes by a placeholder naming it (a per-parse random tag, so no
 * client can forge one); qtsp_json_big_get gives its bytes back. Borrowed
 * from the body, which must outlive it. Caller-owned struct: zero it, free
 * with qtsp_json_big_cleanup. */
typedef struct qtsp_json_big_span {
    char *p;
    size_t len;
} qtsp_json_big_span;

typedef struct qtsp_json_big {
    char tag[40]; /* "\u0001big-<24 hex>-": the placeholders' prefix */
    size_t tag_len;
    qtsp_json_big_span *s;
    size_t n;
} qtsp_json_big;

/* As qtsp_json_parse_object, with the long strings of body[0..len) held in
 * big (see above). The strings left out are not checked for UTF-8 or
 * control characters: their reader must (base64 decoding does).
 * QTSP_ERR_INVALID as qtsp_json_parse_object (positions in the body with
 * the long strings shortened), QTSP_ERR_NOMEM. */
qtsp_status qtsp_json_parse_object_big(char *body, size_t len, size_t min, json_t **out,
                                       qtsp_json_big *big) QTSP_MUST_USE;
void qtsp_json_big_cleanup(qtsp_json_big *big);

/* The bytes of the string v (a value of the object parsed into big, or of
 * any other JSON; big may be NULL): a long string's raw text in the body or
 * the string's own bytes. 0 when v is not a string. *p borrowed. */
int qtsp_json_big_get(const qtsp_json_big *big, const json_t *v, const char **p, size_t *len);

/* The long string v's text in the body, writable (its reader may decode it
 * in place: signDoc's base64 document becomes its bytes where it lies, no
 * second buffer); NULL when v is not one of big's. */
char *qtsp_json_big_take(const qtsp_json_big *big, const json_t *v, size_t *len);

/* 1 when v is a long string held in big (a field that must be short was
 * sent long). */
int qtsp_json_big_is(const qtsp_json_big *big, const json_t *v);

/* The string member name of in: *out borrowed from in, NULL when absent
 * and not required. QTSP_ERR_INVALID "<name>: missing", "<name>: must be a
 * string", "<name>: must not contain NUL". */
qtsp_status qtsp_json_get_string(const json_t *in, const char *name, int required,
                                 const char **out) QTSP_MUST_USE;

/* A JSON string of s for the field called field (jansson's json_string
 * returns NULL for invalid UTF-8, which callers would report as out of
 * memory). QTSP_ERR_INVALID "<field>: not valid UTF-8", QTSP_ERR_NOMEM.
 * *out is a new reference. */
qtsp_status qtsp_json_new_string(const char *field, const char *s, json_t **out) QTSP_MUST_USE;

/* Sets in[name] to the string s, as qtsp_json_new_string checks it. */
qtsp_status qtsp_json_set_string(json_t *obj, const char *name, const char *s) QTSP_MUST_USE;

#endif
