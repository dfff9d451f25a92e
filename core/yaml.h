/* YAML documents as a read-only tree (libyaml underneath; only core/yaml.c
 * includes yaml.h). Every node remembers file, line and column so schema
 * errors name them: "policies/crl.yaml:4:3: next_update: must be <= 24h".
 * Unknown keys are errors: callers list the keys they accept.
 * A document is immutable after loading and may be shared between threads. */
#ifndef QTSP_CORE_YAML_H
#define QTSP_CORE_YAML_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct qtsp_ydoc qtsp_ydoc;
typedef struct qtsp_ynode qtsp_ynode;

typedef enum qtsp_ykind { QTSP_Y_SCALAR = 1, QTSP_Y_MAP = 2, QTSP_Y_SEQ = 3 } qtsp_ykind;

/* Loads a file (max 1 MiB). Syntax errors: QTSP_ERR_CONFIG "path:line:col: why".
 * Aliases and anchors are refused; duplicate keys, non-scalar keys, more than
 * one document and nesting deeper than 64 are QTSP_ERR_CONFIG too.
 * QTSP_ERR_IO when the file cannot be read, QTSP_ERR_TOO_BIG above 1 MiB. */
qtsp_status qtsp_ydoc_load_file(const char *path, qtsp_ydoc **out) QTSP_MUST_USE;
/* Loads text (max 1 MiB, else QTSP_ERR_TOO_BIG); name is used in error
 * messages in place of a path. *out owned by the caller (qtsp_ydoc_free). */
qtsp_status qtsp_ydoc_load_string(const char *name, const char *text, size_t len,
                                  qtsp_ydoc **out) QTSP_MUST_USE;
void qtsp_ydoc_free(qtsp_ydoc *doc);
/* The root node (never NULL for a loaded document; an empty file is an empty map). */
const qtsp_ynode *qtsp_ydoc_root(const qtsp_ydoc *doc);

qtsp_ykind qtsp_ynode_kind(const qtsp_ynode *n);
/* Scalar text, NULL if n is not a scalar. Borrowed from the document. */
const char *qtsp_ynode_scalar(const qtsp_ynode *n);
/* Number of pairs of a map or items of a sequence; 0 for a scalar. */
size_t qtsp_ynode_count(const qtsp_ynode *n);
/* i-th item of a sequence / i-th key and value of a map (NULL when out of range). */
const qtsp_ynode *qtsp_ynode_item(const qtsp_ynode *n, size_t i);
const char *qtsp_ynode_key(const qtsp_ynode *map, size_t i);
const qtsp_ynode *qtsp_ynode_value(const qtsp_ynode *map, size_t i);
/* Value of key in a map, NULL when absent or n is not a map. */
const qtsp_ynode *qtsp_ynode_get(const qtsp_ynode *map, const char *key);
unsigned qtsp_ynode_line(const qtsp_ynode *n);
unsigned qtsp_ynode_column(const qtsp_ynode *n);
const char *qtsp_ynode_file(const qtsp_ynode *n);

/* Records a QTSP_ERR_CONFIG failure "file:line:col: key: message" for node n
 * and returns QTSP_ERR_CONFIG. key may be NULL. */
qtsp_status qtsp_ynode_fail(const qtsp_ynode *n, const char *key, const char *fmt, ...)
    QTSP_PRINTF(3, 4) QTSP_MUST_USE;

/* Checks that n is a map whose keys are all in allowed (NULL-terminated).
 * The first unknown key fails naming its own line and column. */
qtsp_status qtsp_ynode_check_keys(const qtsp_ynode *map, const char *const *allowed) QTSP_MUST_USE;

/* Typed getters on map entries. When the key is absent: if required, fail
 * naming the map's position; otherwise leave *out unchanged and return OK
 * (so callers preset defaults). Wrong type or range fails naming the value. */
qtsp_status qtsp_yget_str(const qtsp_ynode *map, const char *key, int required,
                          const char **out) QTSP_MUST_USE;
qtsp_status qtsp_yget_int(const qtsp_ynode *map, const char *key, int required, int64_t min,
                          int64_t max, int64_t *out) QTSP_MUST_USE;
qtsp_status qtsp_yget_bool(const qtsp_ynode *map, const char *key, int required,
                           int *out) QTSP_MUST_USE;
/* Duration with unit s, m, h or d (see qtsp_parse_duration), in seconds. */
qtsp_status qtsp_yget_duration(const qtsp_ynode *map, const char *key, int required,
                               int64_t *out) QTSP_MUST_USE;

#endif
