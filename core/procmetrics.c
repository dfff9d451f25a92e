/* Shared /metrics slots of the serve workers (see procmetrics.h). */
#include "core/procmetrics.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct slot {
    _Atomic uint64_t seq; /* odd while its writer updates it */
    uint32_t len;
    char data[QTSP_PROCMETRICS_SLOT];
} slot;

struct qtsp_procmetrics {
    slot *slots; /* shared mapping */
    unsigned n;
    /* One writer per slot at a time: the worker's own threads (its timer and
     * each /metrics request) take this process-local lock; other processes
     * never write a worker's slot, except the supervisor clearing the slot
     * of a worker that died. */
    pthread_mutex_t wmu;
};

qtsp_status qtsp_procmetrics_new(unsigned n, qtsp_procmetrics **out)
{
    ENSURE(n >= 1 && n <= QTSP_PROCMETRICS_MAX, QTSP_ERR_INVALID,
           "process count must be 1..%u, not %u", QTSP_PROCMETRICS_MAX, n);
    qtsp_procmetrics *pm = calloc(1, sizeof *pm);
    ENSURE(pm != NULL, QTSP_ERR_NOMEM, "out of memory");
    pm->slots =
        mmap(NULL, sizeof(slot) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pm->slots == MAP_FAILED) {
        free(pm);
        FAIL(QTSP_ERR_NOMEM, "cannot map %u metrics slots", n);
    }
    pm->n = n; /* the mapping is zero-filled: every slot empty, seq even */
    pthread_mutex_init(&pm->wmu, NULL);
    *out = pm;
    return QTSP_OK;
}

void qtsp_procmetrics_free(qtsp_procmetrics *pm)
{
    if (!pm)
        return;
    munmap(pm->slots, sizeof(slot) * pm->n);
    pthread_mutex_destroy(&pm->wmu);
    free(pm);
}

/* The caller holds pm->wmu (or the slot's writer is dead). The sequence
 * goes to the next odd value whatever it was (a writer that died mid-write
 * left it odd), then to the even one after it. */
static void slot_write(slot *s, const char *text, size_t len)
{
    uint64_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    uint64_t odd = (v & 1) ? v + 2 : v + 1;
    atomic_store_explicit(&s->seq, odd, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (len)
        memcpy(s->data, text, len);
    s->len = (uint32_t)len;
    atomic_store_explicit(&s->seq, odd + 1, memory_order_release);
}

qtsp_status qtsp_procmetrics_publish(qtsp_procmetrics *pm, unsigned i, const char *text, size_t len)
{
    ENSURE(pm && i < pm->n, QTSP_ERR_INVALID, "no metrics slot %u", i);
    int big = len > QTSP_PROCMETRICS_SLOT;
    pthread_mutex_lock(&pm->wmu);
    slot_write(&pm->slots[i], big ? NULL : text, big ? 0 : len);
    pthread_mutex_unlock(&pm->wmu);
    ENSURE(!big, QTSP_ERR_TOO_BIG, "metrics text of %zu bytes exceeds the slot (%u)", len,
           QTSP_PROCMETRICS_SLOT);
    return QTSP_OK;
}

void qtsp_procmetrics_clear(qtsp_procmetrics *pm, unsigned i)
{
    if (pm && i < pm->n) {
        pthread_mutex_lock(&pm->wmu);
        slot_write(&pm->slots[i], NULL, 0);
        pthread_mutex_unlock(&pm->wmu);
    }
}

/* Copies slot s into dst (QTSP_PROCMETRICS_SLOT bytes); 0 when it cannot be
 * read consistently (its writer is busy for the whole retry budget). */
static int slot_read(slot *s, char *dst, size_t *len)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (a & 1) {
            sched_yield();
            continue;
        }
        uint32_t l = s->len;
        if (l > QTSP_PROCMETRICS_SLOT)
            l = 0;
        memcpy(dst, s->data, l);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == a) {
            *len = l;
            return 1;
        }
    }
    return 0;
}

qtsp_status qtsp_procmetrics_merge(qtsp_procmetrics *pm, qtsp_buf *out)
{
    ENSURE(pm != NULL, QTSP_ERR_INVALID, "no metrics slots");
    char *copy = malloc((size_t)pm->n * QTSP_PROCMETRICS_SLOT);
    ENSURE(copy != NULL, QTSP_ERR_NOMEM, "out of memory merging metrics");
    const char *texts[QTSP_PROCMETRICS_MAX];
    size_t lens[QTSP_PROCMETRICS_MAX];
    for (unsigned i = 0; i < pm->n; i++) {
        texts[i] = copy + (size_t)i * QTSP_PROCMETRICS_SLOT;
        if (!slot_read(&pm->slots[i], copy + (size_t)i * QTSP_PROCMETRICS_SLOT, &lens[i]))
            lens[i] = 0;
    }
    qtsp_status rc = qtsp_procmetrics_merge_texts(texts, lens, pm->n, out);
    free(copy);
    return rc;
}

/* ---- merging Prometheus text ------------------------------------------------
 * A block: the comment lines naming one family (# HELP / # TYPE) and the
 * sample lines after them. */

typedef struct block {
    const char *name;
    size_t name_len;
    const char *hdr, *smp; /* first header line, first sample line */
    size_t hdr_len, smp_len;
} block;

typedef struct parsed {
    block *b;
    size_t n, cap;
} parsed;

static qtsp_status add_block(parsed *p, const char *name, size_t name_len)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        block *b = realloc(p->b, cap * sizeof *b);
        ENSURE(b != NULL, QTSP_ERR_NOMEM, "out of memory merging metrics");
        p->b = b;
        p->cap = cap;
    }
    p->b[p->n++] = (block){name, name_len, NULL, NULL, 0, 0};
    return QTSP_OK;
}

static size_t token_len(const char *s, const char *end, const char *stops)
{
    const char *e = s;
    while (e < end && !strchr(stops, *e))
        e++;
    return (size_t)(e - s);
}

static qtsp_status parse(const char *t, size_t len, parsed *p)
{
    const char *end = t + len;
    for (const char *line = t; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *next = nl ? nl + 1 : end;
        size_t ll = (size_t)(next - line);
        block *cur = p->n ? &p->b[p->n - 1] : NULL;
        if (line[0] == '#') {
            int meta =
                ll > 7 && (memcmp(line, "# HELP ", 7) == 0 || memcmp(line, "# TYPE ", 7) == 0);
            if (meta) {
                const char *nm = line + 7;
                size_t nlen = token_len(nm, next, " \n");
                if (!cur || cur->smp || cur->name_len != nlen || memcmp(cur->name, nm, nlen) != 0) {
                    TRY(add_block(p, nm, nlen));
                    cur = &p->b[p->n - 1];
                }
                if (!cur->hdr)
                    cur->hdr = line;
                cur->hdr_len = (size_t)(next - cur->hdr);
            }
        } else if (ll > 1) {
            if (!cur) {
                TRY(add_block(p, line, token_len(line, next, "{ \n")));
                cur = &p->b[p->n - 1];
            }
            if (!cur->smp)
                cur->smp = line;
            cur->smp_len = (size_t)(next - cur->smp);
        }
        line = next;
    }
    return QTSP_OK;
}

static int same_name(const block *a, const block *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

/* Appends block b's sample lines with process="i" as their first label. */
static qtsp_status put_samples(const block *b, unsigned i, qtsp_buf *out)
{
    const char *end = b->smp + b->smp_len;
    for (const char *line = b->smp; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *next = nl ? nl + 1 : end;
        size_t nlen = token_len(line, next, "{ \n");
        const char *rest = line + nlen;
        TRY(qtsp_buf_append(out, line, nlen));
        if (rest < next && *rest == '{') {
            rest++;
            TRY(qtsp_buf_printf(out, "{process=\"%u\"%s", i,
                                (rest < next && *rest == '}') ? "" : ","));
        } else {
            TRY(qtsp_buf_printf(out, "{process=\"%u\"}", i));
        }
        TRY(qtsp_buf_append(out, rest, (size_t)(next - rest)));
        if (!nl)
            TRY(qtsp_buf_puts(out, "\n"));
        line = next;
    }
    return QTSP_OK;
}

qtsp_status qtsp_procmetrics_merge_texts(const char *const *texts, const size_t *lens, unsigned n,
                                         qtsp_buf *out)
{
    ENSURE(n <= QTSP_PROCMETRICS_MAX, QTSP_ERR_INVALID, "too many metrics texts");
    parsed p[QTSP_PROCMETRICS_MAX];
    memset(p, 0, sizeof p);
    qtsp_status rc = QTSP_OK;
    for (unsigned i = 0; i < n; i++)
        if (texts[i] && lens[i])
            TRY_OUT(parse(texts[i], lens[i], &p[i]));
    /* Families in order of first appearance; each printed once. */
    for (unsigned i = 0; i < n; i++) {
        for (size_t k = 0; k < p[i].n; k++) {
            const block *f = &p[i].b[k];
            int seen = 0;
            for (unsigned j = 0; j < i && !seen; j++)
                for (size_t m = 0; m < p[j].n && !seen; m++)
                    seen = same_name(&p[j].b[m], f);
            for (size_t m = 0; m < k && !seen; m++)
                seen = same_name(&p[i].b[m], f);
            if (seen)
                continue;
            if (f->hdr)
                TRY_OUT(qtsp_buf_append(out, f->hdr, f->hdr_len));
            for (unsigned j = i; j < n; j++)
                for (size_t m = 0; m < p[j].n; m++)
                    if (p[j].b[m].smp && same_name(&p[j].b[m], f))
                        TRY_OUT(put_samples(&p[j].b[m], j, out));
        }
    }
out:
    for (unsigned i = 0; i < n; i++)
        free(p[i].b);
    return rc;
}
