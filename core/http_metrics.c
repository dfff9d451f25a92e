/* HTTP metrics: per-route request counts by status and latency histograms
 * (_Atomic counters, relaxed: each is a statistic on its own), rendered as
 * Prometheus text for /metrics. */
#include <stdio.h>

#include "core/http_int.h"

/* Status codes counted per route; anything else lands in "other". */
static const int k_codes[] = {200, 201, 204, 301, 302, 304, 400, 401, 403,
                              404, 405, 409, 413, 415, 429, 500, 503};

/* Latency histogram upper bounds in seconds (plus +Inf). */
static const double k_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1.0,   2.5,  5.0};
static const uint64_t k_bucket_ns[] = {500000ULL,    1000000ULL,   2500000ULL,    5000000ULL,
                                       10000000ULL,  25000000ULL,  50000000ULL,   100000000ULL,
                                       250000000ULL, 500000000ULL, 1000000000ULL, 2500000000ULL,
                                       5000000000ULL};
_Static_assert(sizeof k_codes / sizeof k_codes[0] == N_CODES, "N_CODES");
_Static_assert(sizeof k_buckets / sizeof k_buckets[0] == N_BUCKETS, "N_BUCKETS");
_Static_assert(sizeof k_bucket_ns / sizeof k_bucket_ns[0] == N_BUCKETS, "N_BUCKETS");

static size_t code_index(int status)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (k_codes[i] == status)
            return i;
    return CODE_OTHER;
}

void http_stats_record(qtsp_http_server *srv, size_t idx, int status, uint64_t ns)
{
    route_stats *st = &srv->stats[idx];
    atomic_fetch_add_explicit(&st->by_code[code_index(status)], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < N_BUCKETS && ns > k_bucket_ns[b])
        b++;
    atomic_fetch_add_explicit(&st->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->count, 1, memory_order_relaxed);
}

qtsp_status http_metrics_render(qtsp_http_server *srv, qtsp_buf *out)
{
    TRY(qtsp_buf_puts(out, "# HELP qtsp_http_requests_total HTTP requests answered.\n"
                           "# TYPE qtsp_http_requests_total counter\n"));
    size_t n = srv->n_routes + N_BUILTIN;
    for (size_t i = 0; i < n; i++) {
        const char *name = i < srv->n_routes                 ? srv->routes[i].name
                           : i == srv->n_routes + BI_HEALTH  ? "health"
                           : i == srv->n_routes + BI_METRICS ? "metrics"
                                                             : "unmatched";
        for (size_t c = 0; c <= N_CODES; c++) {
            uint64_t v = atomic_load_explicit(&srv->stats[i].by_code[c], memory_order_relaxed);
            if (v == 0)
                continue;
            if (c == CODE_OTHER)
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_requests_total{route=\"%s\",status=\"other\"} "
                                    "%llu\n",
                                    name, (unsigned long long)v));
            else
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                    name, k_codes[c], (unsigned long long)v));
        }
    }
    TRY(qtsp_buf_puts(out, "# HELP qtsp_http_request_duration_seconds Time to answer.\n"
                           "# TYPE qtsp_http_request_duration_seconds histogram\n"));
    for (size_t i = 0; i < n; i++) {
        const char *name = i < srv->n_routes                 ? srv->routes[i].name
                           : i == srv->n_routes + BI_HEALTH  ? "health"
                           : i == srv->n_routes + BI_METRICS ? "metrics"
                                                             : "unmatched";
        const route_stats *st = &srv->stats[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load_explicit(&st->bucket[b], memory_order_relaxed);
            if (b < N_BUCKETS)
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_request_duration_seconds_bucket{route=\"%s\","
                                    "le=\"%g\"} %llu\n",
                                    name, k_buckets[b], (unsigned long long)cum));
            else
                TRY(qtsp_buf_printf(out,
                                    "qtsp_http_request_duration_seconds_bucket{route=\"%s\","
                                    "le=\"+Inf\"} %llu\n",
                                    name, (unsigned long long)cum));
        }
        uint64_t sum = atomic_load_explicit(&st->sum_ns, memory_order_relaxed);
        uint64_t cnt = atomic_load_explicit(&st->count, memory_order_relaxed);
        TRY(qtsp_buf_printf(out,
                            "qtsp_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
                            "qtsp_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                            name, (double)sum / 1e9, name, (unsigned long long)cnt));
    }
    TRY(qtsp_buf_printf(out,
                        "# HELP qtsp_http_connections_open Open client connections.\n"
                        "# TYPE qtsp_http_connections_open gauge\n"
                        "qtsp_http_connections_open %ld\n",
                        atomic_load_explicit(&srv->conns_open, memory_order_relaxed)));
    TRY(qtsp_buf_printf(
        out,
        "# HELP qtsp_http_connections_timed_out_total Connections cut off because a "
        "request's headers or body took longer than the connection timeout.\n"
        "# TYPE qtsp_http_connections_timed_out_total counter\n"
        "qtsp_http_connections_timed_out_total %llu\n"
        "# HELP qtsp_http_framing_refused_total Requests refused with 400 for ambiguous "
        "framing (Content-Length with Transfer-Encoding, or twice).\n"
        "# TYPE qtsp_http_framing_refused_total counter\n"
        "qtsp_http_framing_refused_total %llu\n",
        (unsigned long long)atomic_load_explicit(&srv->conns_timed_out, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&srv->smuggling_refused, memory_order_relaxed)));
    TRY(qtsp_buf_printf(
        out,
        "# HELP qtsp_http_large_body_bytes Bytes of request body buffers past 1 MiB held "
        "now (charged to the large-body budget as they grow).\n"
        "# TYPE qtsp_http_large_body_bytes gauge\n"
        "qtsp_http_large_body_bytes %zu\n"
        "# HELP qtsp_http_large_body_refused_total Uploads refused (503, or the connection "
        "closed mid-body) because the large-body budget was spent.\n"
        "# TYPE qtsp_http_large_body_refused_total counter\n"
        "qtsp_http_large_body_refused_total %llu\n",
        atomic_load_explicit(&srv->large_bytes, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&srv->large_refused, memory_order_relaxed)));
    TRY(qtsp_buf_printf(
        out,
        "# HELP qtsp_http_deferred_pending Requests awaiting a deferred answer.\n"
        "# TYPE qtsp_http_deferred_pending gauge\n"
        "qtsp_http_deferred_pending %ld\n"
        "# HELP qtsp_http_deferred_total Requests answered through a deferred "
        "handle.\n"
        "# TYPE qtsp_http_deferred_total counter\n"
        "qtsp_http_deferred_total %llu\n",
        atomic_load_explicit(&srv->deferred_pending, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&srv->deferred_total, memory_order_relaxed)));
    TRY(http_lane_metrics(srv, out));
    if (srv->metrics_fn)
        TRY(srv->metrics_fn(srv->metrics_ctx, out));
    return QTSP_OK;
}

qtsp_status qtsp_http_metrics_text(qtsp_http_server *srv, qtsp_buf *out)
{
    ENSURE(srv != NULL, QTSP_ERR_INVALID, "no server");
    return http_metrics_render(srv, out);
}
