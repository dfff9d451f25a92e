/* Deferred answers (qtsp_http_defer, core/http.h; the protocol is described
 * at the top of core/http.c): the handle shared by the request and its
 * owner, its PENDING -> CLAIMED state, the list of pending handles that
 * qtsp_http_stop walks. Connections are suspended and resumed through
 * http.c (the only file that includes microhttpd.h). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http_int.h"
#include "core/log.h"

void http_deferred_release(qtsp_http_deferred *d)
{
    if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1) {
        if (d->lane)
            http_lane_conn_release(d->lane); /* kept for qtsp_http_deferred_gone */
        free(d);
    }
}

/* Under srv->dmu. */
static void deferred_unlink(qtsp_http_server *srv, qtsp_http_deferred *d)
{
    if (!d->linked)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        srv->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    d->linked = 0;
    atomic_fetch_sub_explicit(&srv->deferred_pending, 1, memory_order_relaxed);
    if (d->fresh)
        atomic_fetch_sub_explicit(&srv->deferred_fresh, 1, memory_order_relaxed);
}

/* The request ends before its deferred answer was sent (the connection
 * failed after the resume, or MHD_stop_daemon closed it). */
void http_deferred_abandon(qtsp_http_server *srv, qtsp_http_deferred *d)
{
    int expect = DF_PENDING;
    if (atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
        /* Cannot happen with MHD 0.9.75 (a suspended connection is never
         * closed), but if it did the owner must not resume it later. */
        pthread_mutex_lock(&srv->dmu);
        d->forced = 1;
        deferred_unlink(srv, d);
        pthread_mutex_unlock(&srv->dmu);
    } else if (!d->forced) {
        http_resp_discard(&d->resp); /* completed by the owner, never sent */
    }
    http_deferred_release(d);
}

qtsp_http_deferred *qtsp_http_defer(const qtsp_http_req *req)
{
    http_rq *rq = req ? req->internal : NULL;
    if (rq == NULL || rq->deferred != NULL || rq->state != RQ_BODY)
        return NULL;
    qtsp_http_deferred *d = malloc(sizeof *d);
    if (d == NULL) {
        LOG_WARN("http: request %s: out of memory deferring; answering synchronously", rq->id);
        return NULL;
    }
    qtsp_http_server *srv = rq->srv;
    d->srv = srv;
    d->conn = req->conn;
    d->lane = rq->lane;
    d->rq = rq->lane ? rq : NULL;
    atomic_init(&d->state, DF_PENDING);
    atomic_init(&d->refs, 2);
    d->forced = 0;
    d->linked = 0;
    d->fresh = rq->lane ? !http_lane_kept_alive(rq->lane) : !http_conn_kept_alive(rq->conn);
    d->rc = QTSP_OK;
    d->what[0] = '\0';
    d->prev = d->next = NULL;
    http_resp_init(&d->resp);
    if (d->lane)
        http_lane_conn_hold(d->lane);
    pthread_mutex_lock(&srv->dmu);
    /* known to the request before anyone can claim the handle */
    rq->deferred = d;
    if (srv->stopping) {
        /* Too late to suspend (stop may be past its last resume): the
         * request is answered 503 when the handler returns. */
        atomic_store(&d->state, DF_CLAIMED);
        d->forced = 1;
    } else {
        if (!d->lane) /* a lane request needs no suspending: the lane waits */
            http_conn_suspend(d->conn);
        d->next = srv->deferred;
        if (d->next)
            d->next->prev = d;
        srv->deferred = d;
        d->linked = 1;
        if (d->fresh)
            atomic_fetch_add_explicit(&srv->deferred_fresh, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->deferred_pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->deferred_total, 1, memory_order_relaxed);
    }
    if (rq->lane)
        http_lane_deferred(rq->lane, d->forced);
    pthread_mutex_unlock(&srv->dmu);
    return d;
}

qtsp_http_resp *qtsp_http_deferred_resp(qtsp_http_deferred *d)
{
    return d ? &d->resp : NULL;
}

int qtsp_http_deferred_gone(qtsp_http_deferred *d)
{
    if (d == NULL || atomic_load(&d->state) != DF_PENDING)
        return 1;
    return d->lane ? http_lane_peer_closed(d->lane) : http_conn_peer_closed(d->conn);
}

void qtsp_http_complete(qtsp_http_deferred *d, qtsp_status rc)
{
    if (d == NULL)
        return;
    int expect = DF_PENDING;
    if (!atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
        /* The server answered it already (stop); nothing is sent. */
        http_resp_discard(&d->resp);
        http_deferred_release(d);
        return;
    }
    d->rc = rc;
    if (rc != QTSP_OK) {
        if (qtsp_http_status_for(rc) == 500)
            LOG_ERROR("http: deferred request failed: %s", qtsp_err_message());
        snprintf(d->what, sizeof d->what, "%s", qtsp_err_what());
    }
    /* The server stays alive while d is linked: stop waits for the list to
     * drain before it frees anything. */
    qtsp_http_server *srv = d->srv;
    pthread_mutex_lock(&srv->dmu);
    deferred_unlink(srv, d);
    if (d->lane) {
        /* the lane thread writes it; stop waits for lane_busy */
        atomic_fetch_add_explicit(&srv->lane_busy, 1, memory_order_acq_rel);
        pthread_mutex_unlock(&srv->dmu);
        http_lane_post(d);
        atomic_fetch_sub_explicit(&srv->lane_busy, 1, memory_order_acq_rel);
    } else {
        http_conn_resume(d->conn);
        pthread_mutex_unlock(&srv->dmu);
    }
    http_deferred_release(d);
}

int qtsp_http_clients_all_waiting(const qtsp_http_server *srv)
{
    if (srv == NULL)
        return 0;
    /* a request that is its connection's first may come from a client that
     * opens a connection per request (Connection: close, HTTP/1.0): while
     * it reconnects it is counted nowhere, so nothing is promised */
    if (atomic_load_explicit(&srv->deferred_fresh, memory_order_relaxed) > 0)
        return 0;
    long open = atomic_load_explicit(&srv->conns_open, memory_order_relaxed);
    long waiting = atomic_load_explicit(&srv->deferred_pending, memory_order_relaxed);
    return open > 0 && waiting >= open;
}

/* Resumes every deferred request still pending, answering it 503; from
 * here on qtsp_http_defer answers at once. Returns when no handle is linked
 * (an owner that claimed its handle is about to resume it: brief wait). */
void http_force_deferred(qtsp_http_server *srv)
{
    size_t forced = 0;
    pthread_mutex_lock(&srv->dmu);
    srv->stopping = 1;
    while (srv->deferred) {
        qtsp_http_deferred *d = srv->deferred;
        int any = 0;
        while (d) {
            qtsp_http_deferred *next = d->next;
            int expect = DF_PENDING;
            if (atomic_compare_exchange_strong(&d->state, &expect, DF_CLAIMED)) {
                d->forced = 1;
                deferred_unlink(srv, d);
                if (d->lane)
                    http_lane_post(d); /* the 503: the lane thread writes it once
                                          the request's handler has returned */
                else
                    http_conn_resume(d->conn);
                forced++;
                any = 1;
            }
            d = next;
        }
        if (!any && srv->deferred) {
            pthread_mutex_unlock(&srv->dmu);
            sched_yield();
            pthread_mutex_lock(&srv->dmu);
        }
    }
    pthread_mutex_unlock(&srv->dmu);
    if (forced)
        LOG_WARN("http: stopping: %zu deferred request(s) not completed in time, answered 503",
                 forced);
}
