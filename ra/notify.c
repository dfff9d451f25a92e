/* Lifecycle webhook (ra/notify.h, docs/notify.md).
 *
 * One delivery thread takes events from a bounded FIFO and POSTs them with
 * libcurl's multi interface, so qtsp_notify_free can interrupt a transfer
 * at once (curl_multi_wakeup) instead of waiting for the policy timeout.
 * The thread retries the event at the head before taking the next one:
 * that keeps order (per serial too) at the price of head-of-line blocking,
 * which the bounded queue caps. */
#include "ra/notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/log.h"
#include "core/periodic.h"
#include "core/yaml.h"

#define NOTIFY_URL_MAX 1024
#define NOTIFY_SECRET_MIN 16
#define NOTIFY_SECRET_MAX 1024
#define NOTIFY_EVENT_MAX 64
#define NOTIFY_ID_BYTES 16
#define NOTIFY_RESP_MAX (64 * 1024) /* response body read and discarded */
#define NOTIFY_DROP_LOG_MS 10000    /* at most one "dropped" warning per 10 s */

typedef struct notify_item {
    char id[2 * NOTIFY_ID_BYTES + 1];
    char event[NOTIFY_EVENT_MAX + 1];
    char *body; /* NUL-terminated JSON */
    size_t len;
} notify_item;

struct qtsp_notify {
    int enabled;
    char url[NOTIFY_URL_MAX];
    unsigned char secret[NOTIFY_SECRET_MAX];
    size_t secret_len;
    int64_t timeout_ms, backoff_initial_ms, backoff_max_ms, grace_ms;
    int64_t retries;
    size_t queue_size;

    /* FIFO ring of pending events, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t idle_cv; /* queue empty and nothing in flight (CLOCK_MONOTONIC) */
    notify_item **ring;
    size_t head, count;
    int inflight;
    int64_t last_drop_log_ms;

    qtsp_periodic *thread; /* the sender (core/periodic.h), kicked when work arrives */
    int started;
    CURLM *multi; /* owned by the thread while it runs; wakeup is thread-safe */
    _Atomic int stopping;
    _Atomic int64_t deadline_ms; /* monotonic; valid once stopping */

    _Atomic uint64_t delivered, attempts_failed, failed, dropped;
};

static int64_t mono_ms(void)
{
    return (int64_t)(qtsp_mono_ns() / 1000000u);
}

static void item_free(notify_item *it)
{
    if (!it)
        return;
    free(it->body);
    free(it);
}

/* ---- policy ---------------------------------------------------------- */

/* A duration in milliseconds: "250ms" or anything qtsp_parse_duration
 * takes ("5s", "1m"). Absent: *out unchanged. */
static qtsp_status get_ms(const qtsp_ynode *map, const char *key, int64_t min, int64_t max,
                          int64_t *out)
{
    const char *v = NULL;
    TRY(qtsp_yget_str(map, key, 0, &v));
    if (!v)
        return QTSP_OK;
    const qtsp_ynode *n = qtsp_ynode_get(map, key);
    size_t len = strlen(v);
    int64_t ms = -1;
    if (len > 2 && strcmp(v + len - 2, "ms") == 0) {
        int digits = 1;
        for (size_t i = 0; i < len - 2; i++)
            if (v[i] < '0' || v[i] > '9')
                digits = 0;
        if (digits && len - 2 <= 12) {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno == 0 && end == v + len - 2)
                ms = (int64_t)x;
        }
    } else {
        int clean = qtsp_err_code() == QTSP_OK;
        int64_t s = 0;
        if (qtsp_parse_duration(v, &s) == QTSP_OK && s <= INT64_MAX / 1000)
            ms = s * 1000;
        else if (clean)
            qtsp_err_clear();
    }
    if (ms < 0)
        return qtsp_ynode_fail(n, key, "'%s' is not a duration (number with unit ms, s, m, h or d)",
                               v);
    if (ms < min || ms > max)
        return qtsp_ynode_fail(n, key, "'%s' is out of range [%lldms, %lldms]", v, (long long)min,
                               (long long)max);
    *out = ms;
    return QTSP_OK;
}

/* http:// or https:// with a host, no spaces or control characters; libcurl
 * parses it so a URL it would refuse later is refused at start. */
static qtsp_status check_url(const qtsp_ynode *map, const char *url)
{
    const qtsp_ynode *n = qtsp_ynode_get(map, "url");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return qtsp_ynode_fail(n, "url", "must start with http:// or https://");
    if (strlen(url) >= NOTIFY_URL_MAX)
        return qtsp_ynode_fail(n, "url", "longer than %d characters", NOTIFY_URL_MAX - 1);
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return qtsp_ynode_fail(n, "url", "must not contain spaces or control characters");
    CURLU *u = curl_url();
    if (!u)
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    char *host = NULL;
    int ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && host[0];
    curl_free(host);
    curl_url_cleanup(u);
    if (!ok)
        return qtsp_ynode_fail(n, "url", "not a valid URL with a host");
    return QTSP_OK;
}

/* Reads secrets_dir/rel (trailing newlines and spaces stripped). The path
 * must stay inside secrets_dir and the file must be private to its owner:
 * the same bytes sign every event. Errors name the policy position, never
 * the secret. */
static qtsp_status load_secret(qtsp_notify *n, const qtsp_ynode *map, const char *secrets_dir,
                               const char *rel)
{
    const qtsp_ynode *yn = qtsp_ynode_get(map, "secret_file");
    if (!rel[0] || rel[0] == '/' || strcmp(rel, "..") == 0 || strncmp(rel, "../", 3) == 0 ||
        strstr(rel, "/../") || (strlen(rel) >= 3 && strcmp(rel + strlen(rel) - 3, "/..") == 0))
        return qtsp_ynode_fail(yn, "secret_file", "must be a path relative to DIR/secrets");
    char path[1200];
    int w = snprintf(path, sizeof path, "%s/%s", secrets_dir ? secrets_dir : ".", rel);
    if (w < 0 || (size_t)w >= sizeof path)
        return qtsp_ynode_fail(yn, "secret_file", "path too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return qtsp_ynode_fail(yn, "secret_file", "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qtsp_ynode_fail(yn, "secret_file", "%s is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return qtsp_ynode_fail(yn, "secret_file",
                               "%s must not be readable by group or others "
                               "(chmod 600)",
                               path);
    }
    unsigned char buf[NOTIFY_SECRET_MAX + 1];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf)
            break;
    }
    close(fd);
    qtsp_status rc = QTSP_OK;
    if (len > NOTIFY_SECRET_MAX) {
        rc = qtsp_ynode_fail(yn, "secret_file", "%s is longer than %d bytes", path,
                             NOTIFY_SECRET_MAX);
        goto out;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                   buf[len - 1] == '\t'))
        len--;
    if (len < NOTIFY_SECRET_MIN) {
        rc = qtsp_ynode_fail(yn, "secret_file", "%s must hold at least %d bytes", path,
                             NOTIFY_SECRET_MIN);
        goto out;
    }
    memcpy(n->secret, buf, len);
    n->secret_len = len;
out:
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

static qtsp_status load_policy(qtsp_notify *n, const char *path, const char *secrets_dir)
{
    qtsp_ydoc *doc = NULL;
    TRY(qtsp_ydoc_load_file(path, &doc));
    qtsp_status rc = QTSP_OK;
    const qtsp_ynode *root = qtsp_ydoc_root(doc);
    static const char *const keys[] = {
        "version",         "enabled",     "url",        "secret_file",    "timeout", "retries",
        "backoff_initial", "backoff_max", "queue_size", "shutdown_grace", NULL};
    TRY_OUT(qtsp_ynode_check_keys(root, keys));
    int64_t version = 1;
    TRY_OUT(qtsp_yget_int(root, "version", 0, 1, 1, &version));
    int enabled = 0;
    TRY_OUT(qtsp_yget_bool(root, "enabled", 0, &enabled));
    TRY_OUT(get_ms(root, "timeout", 100, 300000, &n->timeout_ms));
    TRY_OUT(qtsp_yget_int(root, "retries", 0, 0, 100, &n->retries));
    TRY_OUT(get_ms(root, "backoff_initial", 1, 3600000, &n->backoff_initial_ms));
    TRY_OUT(get_ms(root, "backoff_max", 1, 86400000, &n->backoff_max_ms));
    if (n->backoff_max_ms < n->backoff_initial_ms) {
        const qtsp_ynode *b = qtsp_ynode_get(root, "backoff_max");
        TRY_OUT(qtsp_ynode_fail(b ? b : root, "backoff_max", "must be >= backoff_initial"));
    }
    int64_t qs = (int64_t)n->queue_size;
    TRY_OUT(qtsp_yget_int(root, "queue_size", 0, 1, 1000000, &qs));
    n->queue_size = (size_t)qs;
    TRY_OUT(get_ms(root, "shutdown_grace", 0, 30000, &n->grace_ms));
    /* url and secret_file are checked even when disabled, so a policy that
     * is wrong is wrong before someone flips `enabled`. */
    const char *url = NULL, *secret_file = NULL;
    TRY_OUT(qtsp_yget_str(root, "url", enabled, &url));
    TRY_OUT(qtsp_yget_str(root, "secret_file", enabled, &secret_file));
    if (url) {
        TRY_OUT(check_url(root, url));
        snprintf(n->url, sizeof n->url, "%s", url);
    }
    if (enabled)
        TRY_OUT(load_secret(n, root, secrets_dir, secret_file));
    n->enabled = enabled;
out:
    qtsp_ydoc_free(doc);
    return rc;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

qtsp_status qtsp_notify_new(const char *policy_path, const char *secrets_dir, qtsp_notify **out)
{
    qtsp_notify *n = calloc(1, sizeof *n);
    ENSURE(n != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    n->timeout_ms = 5000;
    n->retries = 5;
    n->backoff_initial_ms = 1000;
    n->backoff_max_ms = 60000;
    n->queue_size = 1000;
    n->grace_ms = 2000;
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->idle_cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_once(&curl_once, curl_init);
    ENSURE_OUT(curl_init_rc == CURLE_OK, QTSP_ERR_INTERNAL, "libcurl initialisation failed");
    if (policy_path && access(policy_path, F_OK) == 0)
        TRY_OUT(load_policy(n, policy_path, secrets_dir));
    if (n->enabled) {
        n->ring = calloc(n->queue_size, sizeof *n->ring);
        ENSURE_OUT(n->ring != NULL, QTSP_ERR_NOMEM, "out of memory");
    }
out:
    if (rc != QTSP_OK) {
        qtsp_notify_free(n);
        return rc;
    }
    *out = n;
    return QTSP_OK;
}

/* ---- queue ------------------------------------------------------------ */

static int valid_event_name(const char *e)
{
    size_t len = e ? strlen(e) : 0;
    if (len == 0 || len > NOTIFY_EVENT_MAX)
        return 0;
    for (const char *c = e; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' ||
              *c == '-'))
            return 0;
    return 1;
}

/* Called with mu held. */
static void note_drop(qtsp_notify *n, const notify_item *it, const char *why)
{
    uint64_t total = atomic_fetch_add(&n->dropped, 1) + 1;
    int64_t now = mono_ms();
    if (n->last_drop_log_ms == 0 || now - n->last_drop_log_ms >= NOTIFY_DROP_LOG_MS) {
        n->last_drop_log_ms = now;
        LOG_WARN("notify: %s: dropped event %s (%s); %llu dropped so far", why, it->id, it->event,
                 (unsigned long long)total);
    }
}

qtsp_status qtsp_notify_event(qtsp_notify *n, const char *event, const json_t *data)
{
    ENSURE(valid_event_name(event), QTSP_ERR_INVALID,
           "notify: event name must be 1..64 characters from [a-z0-9._-]");
    ENSURE(data == NULL || json_is_object(data), QTSP_ERR_INVALID,
           "notify: event data must be a JSON object");
    if (!n->enabled)
        return QTSP_OK;

    notify_item *it = calloc(1, sizeof *it);
    ENSURE(it != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    json_t *obj = NULL;
    unsigned char rnd[NOTIFY_ID_BYTES];
    TRY_OUT(qtsp_random(rnd, sizeof rnd));
    qtsp_hex_encode(rnd, sizeof rnd, it->id);
    snprintf(it->event, sizeof it->event, "%s", event);
    char when[40];
    qtsp_format_rfc3339_ms(qtsp_now_ms(), when, sizeof when);
    /* Keys in this order (jansson keeps insertion order). data is copied so
     * the caller's object is not shared with our reference counting. */
    json_t *copy = data ? json_deep_copy(data) : json_object();
    ENSURE_OUT(copy != NULL, QTSP_ERR_NOMEM, "out of memory");
    obj = json_pack("{s:s,s:s,s:s,s:o}", "id", it->id, "event", it->event, "time", when, "data",
                    copy);
    ENSURE_OUT(obj != NULL, QTSP_ERR_NOMEM, "out of memory");
    it->body = json_dumps(obj, JSON_COMPACT);
    ENSURE_OUT(it->body != NULL, QTSP_ERR_NOMEM, "out of memory");
    it->len = strlen(it->body);
    ENSURE_OUT(it->len <= QTSP_NOTIFY_MAX_BODY, QTSP_ERR_TOO_BIG,
               "notify: event %s is larger than %d bytes", event, QTSP_NOTIFY_MAX_BODY);

    pthread_mutex_lock(&n->mu);
    if (n->count == n->queue_size) {
        notify_item *old = n->ring[n->head];
        n->ring[n->head] = NULL;
        n->head = (n->head + 1) % n->queue_size;
        n->count--;
        note_drop(n, old, "queue full");
        item_free(old);
    }
    n->ring[(n->head + n->count) % n->queue_size] = it;
    n->count++;
    it = NULL;
    qtsp_periodic_kick(n->thread);
    pthread_mutex_unlock(&n->mu);
out:
    json_decref(obj);
    item_free(it);
    return rc;
}

/* ---- delivery --------------------------------------------------------- */

typedef struct xfer_ctx {
    size_t resp_len;
} xfer_ctx;

static size_t discard_body(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer_ctx *x = ud;
    size_t len = size * nmemb;
    if (x->resp_len + len > NOTIFY_RESP_MAX)
        return 0; /* aborts the transfer: the receiver talks too much */
    x->resp_len += len;
    return len;
}

static int stop_due(qtsp_notify *n)
{
    return atomic_load(&n->stopping) && mono_ms() >= atomic_load(&n->deadline_ms);
}

/* "sha256=" + hex HMAC-SHA256(secret, ts "." body). sig >= 72 bytes. */
static qtsp_status sign(const qtsp_notify *n, const char *ts, const notify_item *it, char *sig)
{
    qtsp_status rc = QTSP_OK;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    unsigned char md[32];
    size_t mdlen = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    ENSURE_OUT(ctx != NULL, QTSP_ERR_CRYPTO, "cannot create an HMAC context");
    ENSURE_OUT(EVP_MAC_init(ctx, n->secret, n->secret_len, params) == 1 &&
                   EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) == 1 &&
                   EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
                   EVP_MAC_update(ctx, (const unsigned char *)it->body, it->len) == 1 &&
                   EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 && mdlen == sizeof md,
               QTSP_ERR_CRYPTO, "HMAC-SHA256 failed");
    memcpy(sig, "sha256=", 7);
    qtsp_hex_encode(md, sizeof md, sig + 7);
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    OPENSSL_cleanse(md, sizeof md);
    return rc;
}

/* One POST. Returns 1 when the receiver answered 2xx; 0 otherwise, with a
 * short reason in why (no secret, no URL: it may carry credentials). */
static int attempt(qtsp_notify *n, const notify_item *it, char *why, size_t why_cap)
{
    char ts[24], sig[80], h_sig[100], h_ts[48], h_ev[96], h_id[64], errbuf[CURL_ERROR_SIZE];
    snprintf(ts, sizeof ts, "%lld", (long long)qtsp_now());
    qtsp_err_clear();
    if (sign(n, ts, it, sig) != QTSP_OK) {
        snprintf(why, why_cap, "%s", qtsp_err_what());
        return 0;
    }
    snprintf(h_sig, sizeof h_sig, "X-Qtsp-Signature: %s", sig);
    snprintf(h_ts, sizeof h_ts, "X-Qtsp-Timestamp: %s", ts);
    snprintf(h_ev, sizeof h_ev, "X-Qtsp-Event: %s", it->event);
    snprintf(h_id, sizeof h_id, "X-Qtsp-Delivery: %s", it->id);
    const char *lines[] = {"Content-Type: application/json", h_ev, h_id, h_ts, h_sig, "Expect:"};
    struct curl_slist *hdrs = NULL;
    int ok = 0;
    CURL *e = curl_easy_init();
    xfer_ctx x = {0};
    errbuf[0] = '\0';
    snprintf(why, why_cap, "out of memory");
    if (!e)
        goto out;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *t = curl_slist_append(hdrs, lines[i]);
        if (!t)
            goto out;
        hdrs = t;
    }
    if (curl_easy_setopt(e, CURLOPT_URL, n->url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)n->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)n->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)it->len) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, it->body) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, "qtsp-notify/1") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK) {
        snprintf(why, why_cap, "cannot set up the transfer");
        goto out;
    }
    if (curl_multi_add_handle(n->multi, e) != CURLM_OK) {
        snprintf(why, why_cap, "cannot start the transfer");
        goto out;
    }
    int running = 1;
    CURLcode result = CURLE_FAILED_INIT;
    int aborted = 0;
    while (running) {
        if (curl_multi_perform(n->multi, &running) != CURLM_OK)
            break;
        if (!running)
            break;
        if (stop_due(n)) {
            aborted = 1;
            break;
        }
        /* Short polls while stopping so the grace deadline is met exactly;
         * curl_multi_wakeup from qtsp_notify_free interrupts the poll. */
        int wait = 1000;
        if (atomic_load(&n->stopping)) {
            int64_t left = atomic_load(&n->deadline_ms) - mono_ms();
            wait = left < 0 ? 0 : left < wait ? (int)left : wait;
        }
        if (curl_multi_poll(n->multi, NULL, 0, wait, NULL) != CURLM_OK)
            break;
    }
    int msgs = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(n->multi, &msgs)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == e)
            result = m->data.result;
    curl_multi_remove_handle(n->multi, e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (aborted)
        snprintf(why, why_cap, "shutting down");
    else if (result != CURLE_OK)
        snprintf(why, why_cap, "%s", errbuf[0] ? errbuf : curl_easy_strerror(result));
    else if (status < 200 || status > 299)
        snprintf(why, why_cap, "HTTP %ld", status);
    else
        ok = 1;
out:
    curl_slist_free_all(hdrs);
    if (e)
        curl_easy_cleanup(e);
    return ok;
}

/* Exponential backoff with "equal jitter": a random delay in [d/2, d]
 * where d = min(backoff_max, backoff_initial * 2^(retry-1)). */
static int64_t backoff_ms(const qtsp_notify *n, int64_t retry)
{
    int64_t d = n->backoff_initial_ms;
    for (int64_t i = 1; i < retry && d < n->backoff_max_ms; i++)
        d *= 2;
    if (d > n->backoff_max_ms)
        d = n->backoff_max_ms;
    uint32_t r = 0;
    if (qtsp_random((unsigned char *)&r, sizeof r) != QTSP_OK) {
        qtsp_err_clear();
        r = 0;
    }
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(r % (uint64_t)(d - half + 1)) : d);
}

/* Sleeps until ms have passed or the grace deadline; returns 0 when the
 * notifier must give up (stopping and the retry would land past the
 * deadline). */
static int wait_retry(qtsp_notify *n, qtsp_periodic *p, int64_t ms)
{
    int64_t until = mono_ms() + ms;
    for (;;) {
        int64_t now = mono_ms();
        if (atomic_load(&n->stopping) && until > atomic_load(&n->deadline_ms))
            return 0;
        if (now >= until)
            return 1;
        if (!atomic_load(&n->stopping)) {
            qtsp_periodic_sleep(p, until - now); /* a stop cuts it short: check again */
        } else { /* stopping, and the retry lands within the grace period */
            struct timespec ts = {(time_t)((until - now) / 1000),
                                  (long)((until - now) % 1000) * 1000000L};
            clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        }
    }
}

static void deliver(qtsp_notify *n, qtsp_periodic *p, notify_item *it)
{
    char why[CURL_ERROR_SIZE + 32];
    for (int64_t try = 0;; try++) {
        if (stop_due(n))
            break;
        if (attempt(n, it, why, sizeof why)) {
            atomic_fetch_add(&n->delivered, 1);
            return;
        }
        if (stop_due(n))
            break; /* aborted by shutdown: not the receiver's failure */
        atomic_fetch_add(&n->attempts_failed, 1);
        if (try >= n->retries) {
            atomic_fetch_add(&n->failed, 1);
            LOG_WARN("notify: event %s (%s) not delivered after %lld attempt(s): %s", it->id,
                     it->event, (long long)try + 1, why);
            return;
        }
        LOG_DEBUG("notify: event %s attempt %lld failed: %s", it->id, (long long)try + 1, why);
        if (!wait_retry(n, p, backoff_ms(n, try + 1)))
            break;
    }
    pthread_mutex_lock(&n->mu);
    note_drop(n, it, "shutting down");
    pthread_mutex_unlock(&n->mu);
}

/* The sender: delivers what is queued, in order, then waits for a kick. */
static int64_t notify_round(qtsp_periodic *p, void *arg)
{
    qtsp_notify *n = arg;
    pthread_mutex_lock(&n->mu);
    while (n->count > 0 && !stop_due(n)) {
        notify_item *it = n->ring[n->head];
        n->ring[n->head] = NULL;
        n->head = (n->head + 1) % n->queue_size;
        n->count--;
        n->inflight = 1;
        pthread_mutex_unlock(&n->mu);
        deliver(n, p, it);
        item_free(it);
        pthread_mutex_lock(&n->mu);
        n->inflight = 0;
        if (n->count == 0)
            pthread_cond_broadcast(&n->idle_cv);
    }
    pthread_mutex_unlock(&n->mu);
    return QTSP_PERIODIC_IDLE;
}

qtsp_status qtsp_notify_start(qtsp_notify *n)
{
    if (!n->enabled)
        return QTSP_OK;
    ENSURE(!n->started, QTSP_ERR_STATE, "notify: already started");
    n->multi = curl_multi_init();
    ENSURE(n->multi != NULL, QTSP_ERR_INTERNAL, "notify: cannot create a libcurl handle");
    qtsp_periodic *p = NULL;
    if (qtsp_periodic_start("webhook sender", 1000, 0, notify_round, n, &p) != QTSP_OK) {
        curl_multi_cleanup(n->multi);
        n->multi = NULL;
        return qtsp_err_code();
    }
    pthread_mutex_lock(&n->mu);
    n->thread = p;
    pthread_mutex_unlock(&n->mu);
    n->started = 1;
    LOG_INFO("notify: webhook delivery started (queue %zu, %lld retries)", n->queue_size,
             (long long)n->retries);
    return QTSP_OK;
}

void qtsp_notify_free(qtsp_notify *n)
{
    if (!n)
        return;
    if (n->started) {
        atomic_store(&n->deadline_ms, mono_ms() + n->grace_ms);
        atomic_store(&n->stopping, 1);
        curl_multi_wakeup(n->multi);
        qtsp_periodic_stop(n->thread);
        curl_multi_cleanup(n->multi);
    }
    pthread_mutex_lock(&n->mu); /* note_drop expects it (the thread is gone anyway) */
    for (size_t i = 0; i < n->count; i++) {
        notify_item *it = n->ring[(n->head + i) % n->queue_size];
        note_drop(n, it, "shutting down");
        item_free(it);
    }
    pthread_mutex_unlock(&n->mu);
    free(n->ring);
    OPENSSL_cleanse(n->secret, sizeof n->secret);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->idle_cv);
    free(n);
}

qtsp_status qtsp_notify_flush(qtsp_notify *n, int64_t timeout_ms)
{
    if (!n->enabled)
        return QTSP_OK;
    struct timespec ts = qtsp_mono_deadline(timeout_ms);
    pthread_mutex_lock(&n->mu);
    int timed_out = 0;
    while ((n->count > 0 || n->inflight) && n->started && !timed_out)
        timed_out = pthread_cond_timedwait(&n->idle_cv, &n->mu, &ts) == ETIMEDOUT;
    int idle = n->count == 0 && !n->inflight;
    pthread_mutex_unlock(&n->mu);
    ENSURE(idle, QTSP_ERR_STATE, "notify: events still queued");
    return QTSP_OK;
}

void qtsp_notify_get_stats(qtsp_notify *n, qtsp_notify_stats *out)
{
    out->delivered = atomic_load(&n->delivered);
    out->attempts_failed = atomic_load(&n->attempts_failed);
    out->failed = atomic_load(&n->failed);
    out->dropped = atomic_load(&n->dropped);
    pthread_mutex_lock(&n->mu);
    out->queued = n->count;
    pthread_mutex_unlock(&n->mu);
}

qtsp_status qtsp_notify_metrics(void *ctx, qtsp_buf *out)
{
    qtsp_notify *n = ctx;
    qtsp_notify_stats s;
    qtsp_notify_get_stats(n, &s);
    TRY(qtsp_buf_printf(
        out,
        "# HELP qtsp_notify_enabled Whether the lifecycle webhook is enabled.\n"
        "# TYPE qtsp_notify_enabled gauge\nqtsp_notify_enabled %d\n"
        "# HELP qtsp_notify_delivered_total Webhook events answered with 2xx.\n"
        "# TYPE qtsp_notify_delivered_total counter\nqtsp_notify_delivered_total %llu\n"
        "# HELP qtsp_notify_attempts_failed_total Webhook delivery attempts that failed.\n"
        "# TYPE qtsp_notify_attempts_failed_total counter\n"
        "qtsp_notify_attempts_failed_total %llu\n"
        "# HELP qtsp_notify_failed_total Webhook events given up after all retries.\n"
        "# TYPE qtsp_notify_failed_total counter\nqtsp_notify_failed_total %llu\n"
        "# HELP qtsp_notify_dropped_total Webhook events dropped (queue full or shutdown).\n"
        "# TYPE qtsp_notify_dropped_total counter\nqtsp_notify_dropped_total %llu\n"
        "# HELP qtsp_notify_queue_length Webhook events waiting for delivery.\n"
        "# TYPE qtsp_notify_queue_length gauge\nqtsp_notify_queue_length %zu\n",
        n->enabled, (unsigned long long)s.delivered, (unsigned long long)s.attempts_failed,
        (unsigned long long)s.failed, (unsigned long long)s.dropped, s.queued));
    return QTSP_OK;
}
