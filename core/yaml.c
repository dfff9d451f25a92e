/* YAML documents as an immutable tree, built from libyaml's event stream.
 *
 * Why events and not libyaml's document API: the document API resolves
 * aliases silently and keeps no per-node file name; building our own tree lets
 * us refuse anchors/aliases, duplicate and non-scalar keys as they arrive, with
 * the exact position (libyaml marks are 0-based; we store 1-based).
 *
 * Limits (bounded input): 1 MiB of text, nesting depth 64, 4096 keys per map
 * (duplicate detection is a linear scan), one document per stream. */
#include "core/yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/clock.h"

#define YAML_MAX_BYTES (1024u * 1024u)
#define YAML_MAX_DEPTH 64
#define YAML_MAX_MAP_KEYS 4096

struct qtsp_ynode {
    qtsp_ykind kind;
    unsigned line;
    unsigned column;
    const char *file; /* the document's name, borrowed */
    char *scalar;     /* QTSP_Y_SCALAR: NUL-terminated text */
    size_t count;     /* items (seq) or pairs (map) */
    size_t cap;
    struct qtsp_ynode **kids; /* seq: items; map: key0, value0, key1, value1, ... */
    int key_pending;          /* map under construction: kids[2*count] is a key without value */
};

struct qtsp_ydoc {
    char *name;
    qtsp_ynode *root;
};

static void node_free(qtsp_ynode *n)
{
    if (!n)
        return;
    size_t slots = n->kind == QTSP_Y_MAP ? n->count * 2 + (n->key_pending ? 1 : 0) : n->count;
    for (size_t i = 0; i < slots; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->scalar);
    free(n);
}

void qtsp_ydoc_free(qtsp_ydoc *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    free(doc->name);
    free(doc);
}

static qtsp_ynode *node_new(qtsp_ykind kind, const char *file, const yaml_mark_t *mark)
{
    qtsp_ynode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->file = file;
    n->line = (unsigned)mark->line + 1;
    n->column = (unsigned)mark->column + 1;
    return n;
}

/* Appends an item to a sequence. */
static qtsp_status node_push(qtsp_ynode *parent, qtsp_ynode *kid)
{
    size_t used = parent->count;
    if (used >= parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        qtsp_ynode **k = realloc(parent->kids, cap * sizeof *k);
        ENSURE(k, QTSP_ERR_NOMEM, "out of memory loading YAML");
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[used] = kid;
    return QTSP_OK;
}

/* Parser state: a stack of open containers. */
typedef struct frame {
    qtsp_ynode *node;
} frame;

typedef struct builder {
    const char *name;
    frame stack[YAML_MAX_DEPTH];
    int depth;
    qtsp_ynode *root;
} builder;

static qtsp_status fail_at(const char *name, const yaml_mark_t *m, const char *fmt, ...)
    QTSP_PRINTF(3, 4);

static qtsp_status fail_at(const char *name, const yaml_mark_t *m, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return qtsp_err_set(QTSP_ERR_CONFIG, __FILE__, __LINE__, "%s:%zu:%zu: %s", name,
                        (size_t)m->line + 1, (size_t)m->column + 1, what);
}

/* Attaches a finished node (scalar or a container just opened) to its parent.
 * On failure the node is freed here. */
static qtsp_status attach(builder *b, qtsp_ynode *n, const yaml_mark_t *mark)
{
    if (b->depth == 0) {
        if (b->root) {
            node_free(n);
            return fail_at(b->name, mark, "more than one root node");
        }
        b->root = n;
        return QTSP_OK;
    }
    frame *f = &b->stack[b->depth - 1];
    qtsp_ynode *p = f->node;
    if (p->kind == QTSP_Y_SEQ) {
        qtsp_status rc = node_push(p, n);
        if (rc != QTSP_OK) {
            node_free(n);
            return rc;
        }
        p->count++;
        return QTSP_OK;
    }
    if (!p->key_pending) {
        if (n->kind != QTSP_Y_SCALAR) {
            node_free(n);
            return fail_at(b->name, mark, "map keys must be scalars");
        }
        if (p->count >= YAML_MAX_MAP_KEYS) {
            node_free(n);
            return fail_at(b->name, mark, "map has more than %d keys", YAML_MAX_MAP_KEYS);
        }
        for (size_t i = 0; i < p->count; i++) {
            if (strcmp(p->kids[2 * i]->scalar, n->scalar) == 0) {
                qtsp_status rc = fail_at(b->name, mark, "%s: duplicate key (first at line %u)",
                                         n->scalar, p->kids[2 * i]->line);
                node_free(n);
                return rc;
            }
        }
        /* the key goes in slot 2*count; the pair is counted once the value arrives */
        if (2 * p->count + 1 >= p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            qtsp_ynode **k = realloc(p->kids, cap * sizeof *k);
            if (!k) {
                node_free(n);
                FAIL(QTSP_ERR_NOMEM, "out of memory loading YAML");
            }
            p->kids = k;
            p->cap = cap;
        }
        p->kids[2 * p->count] = n;
        p->key_pending = 1;
        return QTSP_OK;
    }
    p->kids[2 * p->count + 1] = n;
    p->count++;
    p->key_pending = 0;
    return QTSP_OK;
}

static qtsp_status on_event(builder *b, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT:
    case YAML_NO_EVENT:
        return QTSP_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (b->root)
            return fail_at(b->name, m, "only one YAML document per file");
        return QTSP_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(b->name, m, "aliases (*%s) are not allowed",
                       (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor)
            return fail_at(b->name, m, "anchors (&%s) are not allowed",
                           (const char *)ev->data.scalar.anchor);
        size_t len = ev->data.scalar.length;
        if (memchr(ev->data.scalar.value, '\0', len))
            return fail_at(b->name, m, "scalar contains a NUL character");
        qtsp_ynode *n = node_new(QTSP_Y_SCALAR, b->name, m);
        if (!n || !(n->scalar = malloc(len + 1))) {
            node_free(n);
            FAIL(QTSP_ERR_NOMEM, "out of memory loading YAML");
        }
        memcpy(n->scalar, ev->data.scalar.value, len);
        n->scalar[len] = '\0';
        return attach(b, n, m);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        const yaml_char_t *anchor =
            is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        if (anchor)
            return fail_at(b->name, m, "anchors (&%s) are not allowed", (const char *)anchor);
        if (b->depth >= YAML_MAX_DEPTH)
            return fail_at(b->name, m, "nesting deeper than %d levels", YAML_MAX_DEPTH);
        qtsp_ynode *n = node_new(is_map ? QTSP_Y_MAP : QTSP_Y_SEQ, b->name, m);
        ENSURE(n, QTSP_ERR_NOMEM, "out of memory loading YAML");
        TRY(attach(b, n, m));
        b->stack[b->depth].node = n;
        b->depth++;
        return QTSP_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        ENSURE(b->depth > 0, QTSP_ERR_INTERNAL, "YAML container end without start");
        b->depth--;
        return QTSP_OK;
    }
    return QTSP_OK;
}

qtsp_status qtsp_ydoc_load_string(const char *name, const char *text, size_t len, qtsp_ydoc **out)
{
    qtsp_status rc = QTSP_OK;
    yaml_parser_t parser;
    int parser_ready = 0;
    builder b = {.name = NULL};
    qtsp_ydoc *doc = NULL;

    ENSURE(name && (text || len == 0), QTSP_ERR_INVALID, "YAML load: missing name or text");
    ENSURE(len <= YAML_MAX_BYTES, QTSP_ERR_TOO_BIG, "%s: YAML text larger than %u bytes", name,
           YAML_MAX_BYTES);
    doc = calloc(1, sizeof *doc);
    ENSURE_OUT(doc && (doc->name = strdup(name)), QTSP_ERR_NOMEM, "out of memory loading YAML");
    b.name = doc->name;

    ENSURE_OUT(yaml_parser_initialize(&parser), QTSP_ERR_NOMEM, "yaml_parser_initialize failed");
    parser_ready = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *problem = parser.problem ? parser.problem : "YAML syntax error";
            if (parser.context)
                FAIL_OUT(QTSP_ERR_CONFIG, "%s:%zu:%zu: %s (%s at line %zu)", name,
                         parser.problem_mark.line + 1, parser.problem_mark.column + 1, problem,
                         parser.context, parser.context_mark.line + 1);
            FAIL_OUT(QTSP_ERR_CONFIG, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1,
                     parser.problem_mark.column + 1, problem);
        }
        rc = on_event(&b, &ev);
        int done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc != QTSP_OK)
            goto out;
        if (done)
            break;
    }
    /* An empty document (no node, or a lone empty plain scalar) is an empty map. */
    if (b.root && b.root->kind == QTSP_Y_SCALAR && b.root->scalar[0] == '\0') {
        node_free(b.root);
        b.root = NULL;
    }
    if (!b.root) {
        yaml_mark_t first = {0, 0, 0};
        b.root = node_new(QTSP_Y_MAP, doc->name, &first);
        ENSURE_OUT(b.root, QTSP_ERR_NOMEM, "out of memory loading YAML");
    }
    doc->root = b.root;
    b.root = NULL;
    *out = doc;
    doc = NULL;
out:
    if (parser_ready)
        yaml_parser_delete(&parser);
    node_free(b.root);
    qtsp_ydoc_free(doc);
    return rc;
}

qtsp_status qtsp_ydoc_load_file(const char *path, qtsp_ydoc **out)
{
    qtsp_status rc = QTSP_OK;
    ENSURE(path, QTSP_ERR_INVALID, "YAML load: no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ENSURE(fd >= 0, QTSP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    ENSURE_OUT(fstat(fd, &st) == 0, QTSP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    ENSURE_OUT(S_ISREG(st.st_mode), QTSP_ERR_IO, "%s: not a regular file", path);
    ENSURE_OUT(st.st_size <= (off_t)YAML_MAX_BYTES, QTSP_ERR_TOO_BIG,
               "%s: file larger than %u bytes", path, YAML_MAX_BYTES);
    /* read at most one byte past the limit, in case the file grew since
     * fstat; the buffer grows with what is read (not 1 MiB for every file) */
    qtsp_buf b;
    qtsp_buf_init(&b, YAML_MAX_BYTES + 1);
    char chunk[16384];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "%s: read failed: %s", path,
                              strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (qtsp_buf_append(&b, chunk, (size_t)r) != QTSP_OK) {
            qtsp_err_clear();
            rc = qtsp_err_set(QTSP_ERR_TOO_BIG, __FILE__, __LINE__, "%s: file larger than %u bytes",
                              path, YAML_MAX_BYTES);
            break;
        }
    }
    if (rc == QTSP_OK)
        rc = qtsp_ydoc_load_string(path, b.len ? (const char *)b.data : "", b.len, out);
    qtsp_buf_cleanup(&b);
out:
    close(fd);
    return rc;
}

const qtsp_ynode *qtsp_ydoc_root(const qtsp_ydoc *doc)
{
    return doc ? doc->root : NULL;
}

qtsp_ykind qtsp_ynode_kind(const qtsp_ynode *n)
{
    return n ? n->kind : (qtsp_ykind)0;
}

const char *qtsp_ynode_scalar(const qtsp_ynode *n)
{
    return n && n->kind == QTSP_Y_SCALAR ? n->scalar : NULL;
}

size_t qtsp_ynode_count(const qtsp_ynode *n)
{
    return n && n->kind != QTSP_Y_SCALAR ? n->count : 0;
}

const qtsp_ynode *qtsp_ynode_item(const qtsp_ynode *n, size_t i)
{
    return n && n->kind == QTSP_Y_SEQ && i < n->count ? n->kids[i] : NULL;
}

const char *qtsp_ynode_key(const qtsp_ynode *map, size_t i)
{
    return map && map->kind == QTSP_Y_MAP && i < map->count ? map->kids[2 * i]->scalar : NULL;
}

/* The key node itself, for positions in error messages. */
static const qtsp_ynode *key_node(const qtsp_ynode *map, size_t i)
{
    return map && map->kind == QTSP_Y_MAP && i < map->count ? map->kids[2 * i] : NULL;
}

const qtsp_ynode *qtsp_ynode_value(const qtsp_ynode *map, size_t i)
{
    return map && map->kind == QTSP_Y_MAP && i < map->count ? map->kids[2 * i + 1] : NULL;
}

const qtsp_ynode *qtsp_ynode_get(const qtsp_ynode *map, const char *key)
{
    if (!map || map->kind != QTSP_Y_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->kids[2 * i]->scalar, key) == 0)
            return map->kids[2 * i + 1];
    return NULL;
}

unsigned qtsp_ynode_line(const qtsp_ynode *n)
{
    return n ? n->line : 0;
}
unsigned qtsp_ynode_column(const qtsp_ynode *n)
{
    return n ? n->column : 0;
}
const char *qtsp_ynode_file(const qtsp_ynode *n)
{
    return n ? n->file : "?";
}

qtsp_status qtsp_ynode_fail(const qtsp_ynode *n, const char *key, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (key)
        return qtsp_err_set(QTSP_ERR_CONFIG, __FILE__, __LINE__, "%s:%u:%u: %s: %s",
                            qtsp_ynode_file(n), qtsp_ynode_line(n), qtsp_ynode_column(n), key,
                            what);
    return qtsp_err_set(QTSP_ERR_CONFIG, __FILE__, __LINE__, "%s:%u:%u: %s", qtsp_ynode_file(n),
                        qtsp_ynode_line(n), qtsp_ynode_column(n), what);
}

qtsp_status qtsp_ynode_check_keys(const qtsp_ynode *map, const char *const *allowed)
{
    ENSURE(map && allowed, QTSP_ERR_INVALID, "check_keys: no map or key list");
    if (map->kind != QTSP_Y_MAP)
        return qtsp_ynode_fail(map, NULL, "expected a map of keys");
    for (size_t i = 0; i < map->count; i++) {
        const char *k = map->kids[2 * i]->scalar;
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, k) == 0) {
                ok = 1;
                break;
            }
        if (!ok)
            return qtsp_ynode_fail(key_node(map, i), k, "unknown key");
    }
    return QTSP_OK;
}

/* Common head of the getters: finds key, handles absence and the scalar check.
 * *val is NULL (and OK returned) when absent and not required. */
static qtsp_status get_scalar(const qtsp_ynode *map, const char *key, int required,
                              const qtsp_ynode **node, const char **val)
{
    ENSURE(map && key, QTSP_ERR_INVALID, "YAML getter: no map or key");
    *node = NULL;
    *val = NULL;
    if (map->kind != QTSP_Y_MAP)
        return qtsp_ynode_fail(map, key, "expected a map containing this key");
    const qtsp_ynode *n = qtsp_ynode_get(map, key);
    if (!n) {
        if (required)
            return qtsp_ynode_fail(map, key, "required key missing");
        return QTSP_OK;
    }
    if (n->kind != QTSP_Y_SCALAR)
        return qtsp_ynode_fail(n, key, "must be a single value, not a %s",
                               n->kind == QTSP_Y_MAP ? "map" : "list");
    *node = n;
    *val = n->scalar;
    return QTSP_OK;
}

qtsp_status qtsp_yget_str(const qtsp_ynode *map, const char *key, int required, const char **out)
{
    const qtsp_ynode *n;
    const char *v;
    TRY(get_scalar(map, key, required, &n, &v));
    if (v)
        *out = v;
    return QTSP_OK;
}

qtsp_status qtsp_yget_int(const qtsp_ynode *map, const char *key, int required, int64_t min,
                          int64_t max, int64_t *out)
{
    const qtsp_ynode *n;
    const char *v;
    TRY(get_scalar(map, key, required, &n, &v));
    if (!v)
        return QTSP_OK;
    /* decimal only: optional '-', then digits (no '+', hex, octal, spaces or '_') */
    const char *d = v[0] == '-' ? v + 1 : v;
    int digits = *d != '\0';
    for (const char *c = d; *c; c++)
        if (*c < '0' || *c > '9')
            digits = 0;
    if (!digits)
        return qtsp_ynode_fail(n, key, "'%s' is not a decimal integer", v);
    errno = 0;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (errno == ERANGE || *end != '\0' || x < min || x > max)
        return qtsp_ynode_fail(n, key, "%s is out of range [%lld, %lld]", v, (long long)min,
                               (long long)max);
    *out = (int64_t)x;
    return QTSP_OK;
}

qtsp_status qtsp_yget_bool(const qtsp_ynode *map, const char *key, int required, int *out)
{
    const qtsp_ynode *n;
    const char *v;
    TRY(get_scalar(map, key, required, &n, &v));
    if (!v)
        return QTSP_OK;
    if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
        *out = 0;
    else
        return qtsp_ynode_fail(n, key, "'%s' is not a boolean (true, false, yes, no)", v);
    return QTSP_OK;
}

qtsp_status qtsp_yget_duration(const qtsp_ynode *map, const char *key, int required, int64_t *out)
{
    const qtsp_ynode *n;
    const char *v;
    TRY(get_scalar(map, key, required, &n, &v));
    if (!v)
        return QTSP_OK;
    int64_t s = 0;
    /* qtsp_parse_duration records its own message without the position; when
     * nothing was recorded before, replace it with ours naming file:line:col. */
    int clean = qtsp_err_code() == QTSP_OK;
    if (qtsp_parse_duration(v, &s) != QTSP_OK) {
        if (clean)
            qtsp_err_clear();
        return qtsp_ynode_fail(n, key, "'%s' is not a duration (number with unit s, m, h or d)", v);
    }
    *out = s;
    return QTSP_OK;
}
