/* /metrics across the worker processes of `qtsp serve --processes N`.
 *
 * The supervisor maps one shared anonymous region before it forks; worker i
 * owns slot i and publishes its own Prometheus text there (every second and
 * on every /metrics request it serves). A scrape can land on any worker (the
 * kernel spreads connections over their SO_REUSEPORT sockets), so each
 * worker answers /metrics with every slot merged: one HELP/TYPE block per
 * metric family, then that family's samples from every worker, each with a
 * process="i" label. Another worker's figures are at most about a second
 * old. A slot is a seqlock: readers retry while its writer is mid-update and
 * skip a slot they cannot read consistently.
 *
 * A respawned worker starts its counters from zero (a counter reset, which
 * Prometheus' rate() handles). */
#ifndef QTSP_CORE_PROCMETRICS_H
#define QTSP_CORE_PROCMETRICS_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

#define QTSP_PROCMETRICS_SLOT (256u * 1024u) /* bytes of text per worker */
#define QTSP_PROCMETRICS_MAX 64u             /* workers */

typedef struct qtsp_procmetrics qtsp_procmetrics;

/* Maps n slots (1..QTSP_PROCMETRICS_MAX) shared with children forked later. */
qtsp_status qtsp_procmetrics_new(unsigned n, qtsp_procmetrics **out) QTSP_MUST_USE;
/* Unmaps (in the calling process). NULL is a no-op. */
void qtsp_procmetrics_free(qtsp_procmetrics *pm);

/* Publishes text as slot's figures. QTSP_ERR_TOO_BIG past the slot size
 * (the slot is then emptied). */
qtsp_status qtsp_procmetrics_publish(qtsp_procmetrics *pm, unsigned slot, const char *text,
                                     size_t len) QTSP_MUST_USE;
/* Marks slot empty (its worker exited, maybe in the middle of a write). */
void qtsp_procmetrics_clear(qtsp_procmetrics *pm, unsigned slot);

/* Appends the merged text of every published slot to out. */
qtsp_status qtsp_procmetrics_merge(qtsp_procmetrics *pm, qtsp_buf *out) QTSP_MUST_USE;

/* The merge itself, over n texts (texts[i] NULL or empty = skipped), with
 * label process="i" (exposed for tests). */
qtsp_status qtsp_procmetrics_merge_texts(const char *const *texts, const size_t *lens, unsigned n,
                                         qtsp_buf *out) QTSP_MUST_USE;

#endif
