/* Bench helper for bench/crl (not part of the library or the tests).
 *
 *   crl_fill setup DIR             software P-384 root + issuing CA in DIR
 *                                  (root.pem, issuing.pem, issuing-key.pem)
 *   crl_fill fill DIR N            fresh store DIR/store with N revoked
 *                                  certificates (90% revoked with assorted
 *                                  reasons, 10% on hold), and DIR/index.txt
 *                                  with the same entries for `openssl ca`
 *   crl_fill publish DIR           qtsp_crl_publish(force) once; prints
 *                                  "build_s=... bytes=... maxrss_kib=..."
 *   crl_fill run CMD ARGS...       runs CMD, prints "wall_s=... maxrss_kib=..."
 *                                  of the child (wait4)
 *
 * Filling uses the public certdb API (qtsp_certdb_put + qtsp_certdb_set_status)
 * in batches of 20000 per write transaction. To avoid signing a million
 * certificates, one template certificate with a 16-byte serial is signed once
 * and its serial bytes are patched per entry: certdb_put parses the DER but
 * does not verify its signature, which is all the CRL build needs. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca/certdb.h"
#include "ca/crl.h"
#include "ca/store.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "tests/lib/qtest_cert.h"

#define SERIAL_LEN 16
#define BATCH 20000

static int die(const char *what)
{
    fprintf(stderr, "crl_fill: %s: %s\n", what, qtsp_err_message());
    return 1;
}

static int write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    int ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok ? 0 : -1;
}

static X509 *read_cert(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static int cmd_setup(const char *dir)
{
    time_t now = qtsp_now();
    EVP_PKEY *rk = EVP_EC_gen("P-384"), *ik = EVP_EC_gen("P-384");
    X509 *root = qtest_mkcert(NULL, rk, rk, "Bench Root", (const unsigned char *)"\x01", 1, 1,
                              now - 86400, now + 3650L * 86400);
    X509 *ica = qtest_mkcert(root, rk, ik, "Bench Issuing CA", (const unsigned char *)"\x02", 1, 1,
                             now - 86400, now + 1825L * 86400);
    if (!root || !ica)
        return fprintf(stderr, "crl_fill: cannot make the CA certificates\n"), 1;
    if (write_pem(dir, "root.pem", root, NULL) || write_pem(dir, "root-key.pem", NULL, rk) ||
        write_pem(dir, "issuing.pem", ica, NULL) || write_pem(dir, "issuing-key.pem", NULL, ik))
        return fprintf(stderr, "crl_fill: cannot write keys\n"), 1;
    X509_free(root);
    X509_free(ica);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    return 0;
}

typedef struct fill_ctx {
    unsigned char *der;
    size_t der_len, serial_off;
    uint64_t from, to, seed;
    time_t now;
    FILE *index;
} fill_ctx;

static void serial_of(uint64_t i, unsigned char s[SERIAL_LEN])
{
    /* splitmix64: distinct, random-looking, top bit clear, first byte non-zero */
    uint64_t z = i + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    s[0] = (unsigned char)(0x40 | (z >> 58));
    for (int k = 1; k < 8; k++)
        s[k] = (unsigned char)(z >> (8 * (7 - k)));
    for (int k = 8; k < 16; k++) /* the index keeps the serials unique */
        s[k] = (unsigned char)(i >> (8 * (15 - k)));
}

static const int reasons[] = {1, 3, 4, 5, 0, 4}; /* names openssl ca knows */

static qtsp_status fill_batch(qtsp_txn *txn, void *arg)
{
    fill_ctx *c = arg;
    for (uint64_t i = c->from; i < c->to; i++) {
        unsigned char s[SERIAL_LEN];
        serial_of(i, s);
        memcpy(c->der + c->serial_off, s, SERIAL_LEN);
        qtsp_cert_record rec;
        memset(&rec, 0, sizeof rec);
        memcpy(rec.serial, s, SERIAL_LEN);
        rec.serial_len = SERIAL_LEN;
        snprintf(rec.issuer, sizeof rec.issuer, "issuing");
        rec.der = c->der;
        rec.der_len = c->der_len;
        TRY(qtsp_certdb_put(txn, &rec));
        qtsp_cert_status st = {0};
        st.revoked_at = c->now - (time_t)(i % 86400);
        st.changed_at = st.revoked_at;
        if (i % 10 == 9) {
            st.state = QTSP_CERT_ON_HOLD;
            st.reason = QTSP_REASON_CERTIFICATE_HOLD;
            st.hold_until = c->now + 30L * 86400;
        } else {
            st.state = QTSP_CERT_REVOKED;
            st.reason = (uint8_t)reasons[i % 6];
            if (st.reason == QTSP_REASON_KEY_COMPROMISE)
                st.invalidity_date = st.revoked_at - 3600;
        }
        TRY(qtsp_certdb_set_status(txn, s, SERIAL_LEN, &st));
    }
    return QTSP_OK;
}

static void index_line(FILE *f, uint64_t i, time_t now)
{
    /* openssl ca database: R <expiry> <revdate[,reason]> <serial> unknown <dn> */
    static const char *const names[] = {"unspecified",
                                        "keyCompromise",
                                        "",
                                        "affiliationChanged",
                                        "superseded",
                                        "cessationOfOperation",
                                        "certificateHold",
                                        "",
                                        "",
                                        "privilegeWithdrawn"};
    unsigned char s[SERIAL_LEN];
    serial_of(i, s);
    time_t rv = now - (time_t)(i % 86400);
    struct tm tm;
    gmtime_r(&rv, &tm);
    char rd[32], ex[32];
    strftime(rd, sizeof rd, "%y%m%d%H%M%SZ", &tm);
    time_t na = now + 365L * 86400;
    gmtime_r(&na, &tm);
    strftime(ex, sizeof ex, "%y%m%d%H%M%SZ", &tm);
    int reason = i % 10 == 9 ? 6 : reasons[i % 6];
    fprintf(f, "R\t%s\t%s", ex, rd);
    if (reason == 6)
        fprintf(f, ",certificateHold,holdInstructionCallIssuer");
    else if (reason == 1) {
        time_t inv = rv - 3600;
        gmtime_r(&inv, &tm);
        char it[32];
        strftime(it, sizeof it, "%Y%m%d%H%M%SZ", &tm);
        fprintf(f, ",keyCompromise,%s", it);
    } else if (reason)
        fprintf(f, ",%s", names[reason]);
    fprintf(f, "\t");
    for (int k = 0; k < SERIAL_LEN; k++)
        fprintf(f, "%02X", s[k]);
    fprintf(f, "\tunknown\t/CN=bench-%llu\n", (unsigned long long)i);
}

static int cmd_fill(const char *dir, uint64_t n)
{
    char p[1024];
    time_t now = qtsp_now();
    X509 *ica = read_cert(dir, "issuing.pem");
    EVP_PKEY *ik = read_key(dir, "issuing-key.pem");
    if (!ica || !ik)
        return fprintf(stderr, "crl_fill: run setup first\n"), 1;
    unsigned char tmpl_serial[SERIAL_LEN];
    memset(tmpl_serial, 0x5a, sizeof tmpl_serial);
    EVP_PKEY *lk = EVP_EC_gen("P-256");
    X509 *t = qtest_mkcert(ica, ik, lk, "bench leaf", tmpl_serial, SERIAL_LEN, 0, now - 86400,
                           now + 365L * 86400);
    if (!t)
        return fprintf(stderr, "crl_fill: cannot make the template certificate\n"), 1;
    fill_ctx c = {.now = now};
    int l = i2d_X509(t, &c.der);
    c.der_len = (size_t)l;
    unsigned char *hit = NULL;
    for (size_t k = 0; k + SERIAL_LEN <= c.der_len; k++)
        if (memcmp(c.der + k, tmpl_serial, SERIAL_LEN) == 0) {
            hit = c.der + k;
            break;
        }
    if (!hit)
        return fprintf(stderr, "crl_fill: serial not found in template\n"), 1;
    c.serial_off = (size_t)(hit - c.der);

    snprintf(p, sizeof p, "%s/store", dir);
    qtsp_store *st = NULL;
    if (qtsp_store_open(p, 512, &st) != QTSP_OK)
        return die("store open");
    for (uint64_t i = 0; i < n; i += BATCH) {
        c.from = i;
        c.to = i + BATCH < n ? i + BATCH : n;
        if (qtsp_store_write(st, fill_batch, &c) != QTSP_OK)
            return die("fill");
    }
    qtsp_store_close(st);
    snprintf(p, sizeof p, "%s/index.txt", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return fprintf(stderr, "crl_fill: cannot write %s\n", p), 1;
    for (uint64_t i = 0; i < n; i++)
        index_line(f, i, now);
    fclose(f);
    OPENSSL_free(c.der);
    X509_free(t);
    X509_free(ica);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
    return 0;
}

/* From /proc/self/status: VmHWM, the peak resident set of this process
 * image since exec (unlike ru_maxrss it does not include the shell that
 * forked us), and the current anonymous and file-backed resident memory
 * (kB). The resident set counts the store's mapped file pages too (clean
 * page cache, mapped in 64 KiB fault-around windows), not only heap. */
static void rss_split(long *hwm, long *anon, long *file)
{
    *hwm = *anon = *file = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0)
            *hwm = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            *anon = strtol(line + 8, NULL, 10);
        else if (strncmp(line, "RssFile:", 8) == 0)
            *file = strtol(line + 8, NULL, 10);
    }
    fclose(f);
}

static int cmd_publish(const char *dir)
{
    char p[1024], pubdir[1024];
    X509 *root = read_cert(dir, "root.pem"), *ica = read_cert(dir, "issuing.pem");
    EVP_PKEY *rk = read_key(dir, "root-key.pem"), *ik = read_key(dir, "issuing-key.pem");
    if (!root || !ica || !rk || !ik)
        return fprintf(stderr, "crl_fill: run setup first\n"), 1;
    snprintf(p, sizeof p, "%s/store", dir);
    snprintf(pubdir, sizeof pubdir, "%s/public", dir);
    mkdir(pubdir, 0755);
    qtsp_store *st = NULL;
    if (qtsp_store_open(p, 512, &st) != QTSP_OK)
        return die("store open");
    qtsp_key *rkey = NULL, *ikey = NULL; /* the publisher signs through ca/key.h */
    if (qtsp_key_from_evp(rk, &rkey) != QTSP_OK || qtsp_key_from_evp(ik, &ikey) != QTSP_OK)
        return die("keys");
    qtsp_crl_publisher *pub = NULL;
    if (qtsp_crl_publisher_new(NULL, pubdir, ica, ikey, root, rkey, "http://127.0.0.1:8080", st,
                               &pub) != QTSP_OK)
        return die("publisher");
    qtsp_log_set_level(QTSP_LOG_WARN);
    uint64_t t0 = qtsp_mono_ns();
    if (qtsp_crl_publish(pub, 1) != QTSP_OK)
        return die("publish");
    double secs = (double)(qtsp_mono_ns() - t0) / 1e9;
    snprintf(p, sizeof p, "%s/crl/qualified.crl", pubdir);
    struct stat sb;
    stat(p, &sb);
    long hwm, anon, file;
    rss_split(&hwm, &anon, &file); /* the CRLs are still held in memory here */
    printf("build_s=%.2f bytes=%lld maxrss_kib=%ld anon_kib=%ld file_kib=%ld\n", secs,
           (long long)sb.st_size, hwm, anon, file);
    qtsp_crl_publisher_free(pub);
    qtsp_key_free(rkey);
    qtsp_key_free(ikey);
    qtsp_store_close(st);
    X509_free(root);
    X509_free(ica);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    return 0;
}

static int cmd_run(char **argv)
{
    uint64_t t0 = qtsp_mono_ns();
    pid_t pid = fork();
    if (pid < 0)
        return perror("fork"), 1;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        return perror("wait4"), 1;
    double secs = (double)(qtsp_mono_ns() - t0) / 1e9;
    printf("wall_s=%.2f maxrss_kib=%ld exit=%d\n", secs, ru.ru_maxrss,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "setup") == 0)
        return cmd_setup(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "fill") == 0)
        return cmd_fill(argv[2], strtoull(argv[3], NULL, 10));
    if (argc >= 3 && strcmp(argv[1], "publish") == 0)
        return cmd_publish(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return cmd_run(argv + 2);
    fprintf(stderr, "usage: crl_fill setup|fill|publish|run ...\n");
    return 2;
}
