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
