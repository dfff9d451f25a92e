/* JSON helpers over jansson (core/json.h). */
#include "core/json.h"

#include <string.h>

qtsp_status qtsp_json_check_fields(const json_t *in, const char *const *allowed)
{
    ENSURE(json_is_object(in), QTSP_ERR_INVALID, "body: must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)in, key, val)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        ENSURE(ok, QTSP_ERR_INVALID, "%s: unknown field", key);
    }
    return QTSP_OK;
}

qtsp_status qtsp_json_get_string(const json_t *in, const char *name, int required, const char **out)
{
    json_t *v = json_object_get(in, name);
    if (!v) {
        ENSURE(!required, QTSP_ERR_INVALID, "%s: missing", name);
        *out = NULL;
        return QTSP_OK;
    }
    ENSURE(json_is_string(v), QTSP_ERR_INVALID, "%s: must be a string", name);
    ENSURE(json_string_length(v) == strlen(json_string_value(v)), QTSP_ERR_INVALID,
           "%s: must not contain NUL", name);
    *out = json_string_value(v);
    return QTSP_OK;
}

qtsp_status qtsp_json_new_string(const char *field, const char *s, json_t **out)
{
    ENSURE(s != NULL, QTSP_ERR_INVALID, "%s: missing", field);
    json_t *j = json_string(s);
    if (j == NULL) {
        /* json_string fails only on allocation or invalid UTF-8; tell which */
        json_t *probe = json_string("");
        int nomem = probe == NULL;
        json_decref(probe);
        ENSURE(!nomem, QTSP_ERR_NOMEM, "out of memory");
        FAIL(QTSP_ERR_INVALID, "%s: not valid UTF-8", field);
    }
    *out = j;
    return QTSP_OK;
}

qtsp_status qtsp_json_set_string(json_t *obj, const char *name, const char *s)
{
    json_t *j = NULL;
    TRY(qtsp_json_new_string(name, s, &j));
    ENSURE(json_object_set_new(obj, name, j) == 0, QTSP_ERR_NOMEM, "out of memory");
    return QTSP_OK;
}

qtsp_status qtsp_json_parse_object(const char *body, size_t len, json_t **out)
{
    ENSURE(body && len > 0, QTSP_ERR_INVALID, "body: a JSON object is required");
    json_error_t err;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    ENSURE(o != NULL, QTSP_ERR_INVALID, "body: invalid JSON at line %d column %d: %s", err.line,
           err.column, err.text);
    if (!json_is_object(o)) {
        json_decref(o);
        FAIL(QTSP_ERR_INVALID, "body: must be a JSON object");
    }
    *out = o;
    return QTSP_OK;
}
