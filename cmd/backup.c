/* qtsp backup / qtsp restore: one file holding a consistent hot copy of a
 * home, checked file by file with SHA-256 (format in docs/operations.md).
 *
 *   qtsp-backup 1\n                          magic
 *   created <RFC 3339>\n home <path>\n token <yes|no>\n
 *   d <mode> 0 - <path>\n                     a folder
 *   f <mode> <size> <sha256> <path>\n         a file, its bytes follow the manifest
 *   s 0600 <size> <sha256> sealed\n           token + secrets, encrypted (below)
 *   end\n
 *   <the bytes of every f and s entry, in manifest order>
 *   sha256 <hex of every byte above>\n
 *
 * The sealed entry is salt(16) | PBKDF2 iterations (u32 BE) | IV(12) |
 * AES-256-GCM ciphertext | tag(16), the key PBKDF2-HMAC-SHA256 of the
 * passphrase; its plaintext is a container of the same format holding hsm/
 * (without softhsm2.conf, which restore writes for the new home) and
 * secrets/. The store is copied with LMDB's compacting copy (one read
 * transaction: consistent while the server writes). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "ca/audit.h"
#include "ca/softhsm_conf.h"
#include "ca/store.h"
#include "cmd/app.h"
#include "cmd/cmd.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/json.h"
#include "tsa/tsa_wal.h"

#define BK_MAGIC "qtsp-backup 1\n"
#define BK_SEAL_AAD "qtsp-backup sealed 1"
#define BK_PBKDF2_ITER 600000u
#define BK_PBKDF2_MAX 100000000u
#define BK_MAX_ENTRIES 200000u
#define BK_MAX_SEALED (256u << 20)
#define BK_LINE (QTSP_PATH_MAX + 128)
#define BK_PASS_MIN 12
#define BK_CRL_SKIP (UINT64_C(1) << 32)

typedef struct bk_entry {
    char type; /* 'd', 'f', 's' */
    unsigned mode;
    uint64_t size;
    char sha[65];
    char path[QTSP_PATH_MAX]; /* relative to the home */
    char src[QTSP_PATH_MAX];  /* backup: the snapshot to stream from */
} bk_entry;

typedef struct bk_list {
    bk_entry *v;
    size_t n, cap;
} bk_list;

static void list_free(bk_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

static qtsp_status list_add(bk_list *l, bk_entry **out)
{
    ENSURE(l->n < BK_MAX_ENTRIES, QTSP_ERR_TOO_BIG, "more than %u entries", BK_MAX_ENTRIES);
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        bk_entry *v = realloc(l->v, cap * sizeof *v);
        ENSURE(v != NULL, QTSP_ERR_NOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    *out = &l->v[l->n++];
    memset(*out, 0, sizeof **out);
    return QTSP_OK;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* SHA-256 through EVP (the SHA256_* calls are deprecated in OpenSSL 3). */
static EVP_MD_CTX *sha_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* Finishes and frees c; out gets the lower-case hex digest ("" on failure). */
static void sha_done(EVP_MD_CTX *c, char out[65])
{
    unsigned char md[32];
    unsigned n = 0;
    out[0] = '\0';
    if (c && EVP_DigestFinal_ex(c, md, &n) == 1 && n == 32)
        hex(md, 32, out);
    EVP_MD_CTX_free(c);
}

static qtsp_status join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    ENSURE(n > 0 && (size_t)n < cap, QTSP_ERR_TOO_BIG, "path too long: %s/%s", a, b);
    return QTSP_OK;
}

static void rmtree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[QTSP_PATH_MAX];
            if (join(sub, sizeof sub, path, de->d_name) == QTSP_OK)
                rmtree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- passphrase ---- */

static qtsp_status read_passphrase(const char *file, int confirm, char *out, size_t cap)
{
    if (file) {
        FILE *f = fopen(file, "r");
        ENSURE(f != NULL, QTSP_ERR_IO, "cannot read %s: %s", file, strerror(errno));
        char *ok = fgets(out, (int)cap, f);
        fclose(f);
        ENSURE(ok != NULL, QTSP_ERR_INVALID, "%s: empty passphrase file", file);
    } else {
        FILE *tty = fopen("/dev/tty", "r+");
        ENSURE(tty != NULL, QTSP_ERR_INVALID,
               "no terminal to ask for the passphrase: give --passphrase-file FILE");
        struct termios old, quiet;
        int have = tcgetattr(fileno(tty), &old) == 0;
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        char again[256] = "";
        fputs("backup passphrase: ", tty);
        fflush(tty);
        if (have)
            tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        char *ok = fgets(out, (int)cap, tty);
        if (ok && confirm) {
            fputs("\nagain: ", tty);
            fflush(tty);
            ok = fgets(again, sizeof again, tty);
        }
        if (have)
            tcsetattr(fileno(tty), TCSAFLUSH, &old);
        fputs("\n", tty);
        fclose(tty);
        again[strcspn(again, "\r\n")] = '\0';
        out[ok ? strcspn(out, "\r\n") : 0] = '\0';
        int same = !confirm || strcmp(out, again) == 0;
        OPENSSL_cleanse(again, sizeof again);
        ENSURE(ok != NULL, QTSP_ERR_INVALID, "no passphrase given");
        ENSURE(same, QTSP_ERR_INVALID, "the two passphrases differ");
    }
    out[strcspn(out, "\r\n")] = '\0';
    ENSURE(!confirm || strlen(out) >= BK_PASS_MIN, QTSP_ERR_INVALID,
           "the passphrase must have at least %d characters", BK_PASS_MIN);
    ENSURE(out[0] != '\0', QTSP_ERR_INVALID, "empty passphrase");
    return QTSP_OK;
}

static qtsp_status derive(const char *pass, const unsigned char salt[16], uint32_t iter,
                          unsigned char key[32])
{
    ENSURE(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, 16, (int)iter, EVP_sha256(), 32, key) ==
               1,
           QTSP_ERR_CRYPTO, "PBKDF2 failed");
    return QTSP_OK;
}

/* AES-256-GCM over in; *out (caller frees) = salt | iter | iv | ct | tag. */
static qtsp_status seal(const char *pass, const unsigned char *in, size_t len, unsigned char **out,
                        size_t *olen)
{
    ENSURE(len <= BK_MAX_SEALED, QTSP_ERR_TOO_BIG, "token and secrets exceed %u bytes",
           BK_MAX_SEALED);
    unsigned char key[32], *buf = malloc(16 + 4 + 12 + len + 16);
    ENSURE(buf != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    EVP_CIPHER_CTX *c = NULL;
    TRY_OUT(qtsp_random(buf, 16));
    buf[16] = (unsigned char)(BK_PBKDF2_ITER >> 24);
    buf[17] = (unsigned char)(BK_PBKDF2_ITER >> 16);
    buf[18] = (unsigned char)(BK_PBKDF2_ITER >> 8);
    buf[19] = (unsigned char)BK_PBKDF2_ITER;
    TRY_OUT(qtsp_random(buf + 20, 12));
    TRY_OUT(derive(pass, buf, BK_PBKDF2_ITER, key));
    c = EVP_CIPHER_CTX_new();
    ENSURE_OUT(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    int l1 = 0, l2 = 0;
    int ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf + 20) == 1 &&
             EVP_EncryptUpdate(c, NULL, &l1, (const unsigned char *)BK_SEAL_AAD,
                               (int)strlen(BK_SEAL_AAD)) == 1 &&
             EVP_EncryptUpdate(c, buf + 32, &l1, in, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, buf + 32 + l1, &l2) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, buf + 32 + len) == 1;
    ENSURE_OUT(ok && (size_t)(l1 + l2) == len, QTSP_ERR_CRYPTO, "AES-GCM failed");
    *out = buf;
    *olen = 32 + len + 16;
    buf = NULL;
out:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(key, sizeof key);
    free(buf);
    return rc;
}

static qtsp_status unseal(const char *pass, const unsigned char *in, size_t len,
                          unsigned char **out, size_t *olen)
{
    ENSURE(len >= 48, QTSP_ERR_INVALID, "sealed part too short");
    uint32_t iter =
        (uint32_t)in[16] << 24 | (uint32_t)in[17] << 16 | (uint32_t)in[18] << 8 | in[19];
    ENSURE(iter >= BK_PBKDF2_ITER && iter <= BK_PBKDF2_MAX, QTSP_ERR_INVALID,
           "sealed part: PBKDF2 iteration count %" PRIu32 " out of range", iter);
    size_t ctl = len - 48;
    unsigned char key[32], *buf = malloc(ctl + 1);
    ENSURE(buf != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = QTSP_OK;
    EVP_CIPHER_CTX *c = NULL;
    TRY_OUT(derive(pass, in, iter, key));
    c = EVP_CIPHER_CTX_new();
    ENSURE_OUT(c != NULL, QTSP_ERR_NOMEM, "out of memory");
    int l1 = 0, l2 = 0;
    int ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in + 20) == 1 &&
             EVP_DecryptUpdate(c, NULL, &l1, (const unsigned char *)BK_SEAL_AAD,
                               (int)strlen(BK_SEAL_AAD)) == 1 &&
             EVP_DecryptUpdate(c, buf, &l1, in + 32, (int)ctl) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 32 + ctl)) == 1 &&
             EVP_DecryptFinal_ex(c, buf + l1, &l2) == 1;
    ENSURE_OUT(ok, QTSP_ERR_AUTH, "the token part does not decrypt: wrong passphrase or altered");
    *out = buf;
    *olen = (size_t)(l1 + l2);
    buf = NULL;
out:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(key, sizeof key);
    if (buf) {
        OPENSSL_cleanse(buf, ctl);
        free(buf);
    }
    return rc;
}

/* ---- backup: snapshot, manifest, container ---- */

/* Copies src to snap (0600) and records size and SHA-256 of what was
 * copied: the file may be replaced meanwhile (CRLs), the copy is what the
 * manifest describes. A file under the token folder is read until two
 * reads agree (SoftHSM2 rewrites its files in place). */
static qtsp_status snapshot(const char *src, const char *snap, int settle, bk_entry *e)
{
    for (int attempt = 0;; attempt++) {
        int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ENSURE(in >= 0, QTSP_ERR_IO, "cannot read %s: %s", src, strerror(errno));
        int out = open(snap, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
            int err = errno;
            close(in);
            FAIL(QTSP_ERR_IO, "cannot write %s: %s", snap, strerror(err));
        }
        EVP_MD_CTX *h = sha_new();
        unsigned char buf[65536];
        uint64_t size = 0;
        ssize_t r;
        int bad = 0;
        while ((r = read(in, buf, sizeof buf)) > 0) {
            bad |= EVP_DigestUpdate(h, buf, (size_t)r) != 1;
            bad |= write(out, buf, (size_t)r) != r;
            size += (uint64_t)r;
        }
        bad |= r < 0;
        close(in);
        bad |= close(out) != 0;
        char sha[65];
        sha_done(h, sha);
        ENSURE(!bad && sha[0], QTSP_ERR_IO, "cannot copy %s: %s", src, strerror(errno));
        int stable = !settle || (attempt > 0 && strcmp(sha, e->sha) == 0 && size == e->size);
        memcpy(e->sha, sha, sizeof sha);
        e->size = size;
        if (stable)
            break;
        ENSURE(attempt < 20, QTSP_ERR_STATE, "%s keeps changing; try again", src);
    }
    snprintf(e->src, sizeof e->src, "%s", snap);
    return QTSP_OK;
}

typedef struct walker {
    bk_list *list;
    const char *home;
    const char *work;
    unsigned *counter;
    int settle;
} walker;

/* audit-anchor.json belongs to the live home: a restored home goes back to
 * the copy's audit tail (recorded by home.restore) and anchors anew. */
static int skip_name(const char *name)
{
    return name[0] == '.' || strcmp(name, "serve.lock") == 0 ||
           strcmp(name, "softhsm2.conf") == 0 ||
           strncmp(name, "audit-anchor.json", 17) == 0; /* and its temp files */
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds rel (a folder of the home) and everything below it, in name order. */
static qtsp_status walk(walker *w, const char *rel)
{
    char abs[QTSP_PATH_MAX];
    TRY(join(abs, sizeof abs, w->home, rel));
    struct stat sb;
    if (lstat(abs, &sb) != 0 && errno == ENOENT)
        return QTSP_OK;
    ENSURE(S_ISDIR(sb.st_mode), QTSP_ERR_STATE, "%s is not a folder", abs);
    bk_entry *e;
    TRY(list_add(w->list, &e));
    e->type = 'd';
    e->mode = sb.st_mode & 07777;
    snprintf(e->sha, sizeof e->sha, "-");
    snprintf(e->path, sizeof e->path, "%s", rel);
    DIR *d = opendir(abs);
    ENSURE(d != NULL, QTSP_ERR_IO, "cannot read %s: %s", abs, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    qtsp_status rc = QTSP_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (skip_name(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **v = realloc(names, cap * sizeof *v);
            ENSURE_OUT(v != NULL, QTSP_ERR_NOMEM, "out of memory");
            names = v;
        }
        names[n] = strdup(de->d_name);
        ENSURE_OUT(names[n] != NULL, QTSP_ERR_NOMEM, "out of memory");
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        char sub_rel[QTSP_PATH_MAX], sub_abs[QTSP_PATH_MAX];
        TRY_OUT(join(sub_rel, sizeof sub_rel, rel, names[i]));
        TRY_OUT(join(sub_abs, sizeof sub_abs, w->home, sub_rel));
        ENSURE_OUT(lstat(sub_abs, &sb) == 0, QTSP_ERR_IO, "cannot stat %s: %s", sub_abs,
                   strerror(errno));
        if (S_ISDIR(sb.st_mode)) {
            TRY_OUT(walk(w, sub_rel));
        } else if (S_ISREG(sb.st_mode)) {
            bk_entry *f;
            TRY_OUT(list_add(w->list, &f));
            f->type = 'f';
            f->mode = sb.st_mode & 07777;
            snprintf(f->path, sizeof f->path, "%s", sub_rel);
            char snap[QTSP_PATH_MAX], num[32];
            snprintf(num, sizeof num, "%u", (*w->counter)++);
            TRY_OUT(join(snap, sizeof snap, w->work, num));
            TRY_OUT(snapshot(sub_abs, snap, w->settle, f));
        } else {
            ENSURE_OUT(0, QTSP_ERR_STATE, "%s is neither a file nor a folder", sub_abs);
        }
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

/* Writes a container (magic, meta lines, manifest, contents, trailer). */
static qtsp_status write_container(FILE *out, const char *meta, const bk_list *l)
{
    EVP_MD_CTX *h = sha_new();
    ENSURE(h != NULL, QTSP_ERR_NOMEM, "out of memory");
    char line[BK_LINE];
    int bad = 0;
#define EMIT(p, n)                                                                                 \
    do {                                                                                           \
        bad |= EVP_DigestUpdate(h, (p), (n)) != 1;                                                 \
        bad |= fwrite((p), 1, (n), out) != (n);                                                    \
    } while (0)
    EMIT(BK_MAGIC, strlen(BK_MAGIC));
    EMIT(meta, strlen(meta));
    for (size_t i = 0; i < l->n; i++) {
        const bk_entry *e = &l->v[i];
        int n = snprintf(line, sizeof line, "%c %04o %" PRIu64 " %s %s\n", e->type, e->mode,
                         e->size, e->sha, e->path);
        if (n <= 0 || (size_t)n >= sizeof line) {
            EVP_MD_CTX_free(h);
            FAIL(QTSP_ERR_TOO_BIG, "path too long: %s", e->path);
        }
        EMIT(line, (size_t)n);
    }
    EMIT("end\n", 4);
    for (size_t i = 0; i < l->n && !bad; i++) {
        const bk_entry *e = &l->v[i];
        if (e->type == 'd')
            continue;
        FILE *in = fopen(e->src, "rb");
        if (!in) {
            EVP_MD_CTX_free(h);
            FAIL(QTSP_ERR_IO, "cannot read %s: %s", e->src, strerror(errno));
        }
        unsigned char buf[65536];
        uint64_t left = e->size;
        size_t r;
        while (left > 0 && (r = fread(buf, 1, left < sizeof buf ? (size_t)left : sizeof buf, in))) {
            EMIT(buf, r);
            left -= r;
        }
        fclose(in);
        bad |= left != 0;
    }
#undef EMIT
    char sha[65];
    sha_done(h, sha);
    bad |= fprintf(out, "sha256 %s\n", sha) < 0;
    ENSURE(!bad, QTSP_ERR_IO, "cannot write the backup: %s", strerror(errno));
    return QTSP_OK;
}

/* The sealed entry: hsm/ and secrets/ in an encrypted inner container. */
static qtsp_status add_sealed(walker *w, const char *pass)
{
    bk_list inner = {0};
    walker wi = *w;
    wi.list = &inner;
    wi.settle = 1;
    char *mem = NULL;
    size_t mlen = 0;
    unsigned char *sealed = NULL;
    size_t slen = 0;
    FILE *ms = NULL;
    qtsp_status rc = QTSP_OK;
    TRY_OUT(walk(&wi, "hsm"));
    TRY_OUT(walk(&wi, "secrets"));
    ms = open_memstream(&mem, &mlen);
    ENSURE_OUT(ms != NULL, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(write_container(ms, "", &inner));
    ENSURE_OUT(fclose(ms) == 0, QTSP_ERR_NOMEM, "out of memory");
    ms = NULL;
    TRY_OUT(seal(pass, (unsigned char *)mem, mlen, &sealed, &slen));
    bk_entry *e;
    TRY_OUT(list_add(w->list, &e));
    e->type = 's';
    e->mode = 0600;
    e->size = slen;
    snprintf(e->path, sizeof e->path, "sealed");
    unsigned char md[32];
    ENSURE_OUT(EVP_Digest(sealed, slen, md, NULL, EVP_sha256(), NULL) == 1, QTSP_ERR_CRYPTO,
               "SHA-256 failed");
    hex(md, 32, e->sha);
    TRY_OUT(join(e->src, sizeof e->src, w->work, "sealed"));
    FILE *f = fopen(e->src, "wb");
    ENSURE_OUT(f != NULL, QTSP_ERR_IO, "cannot write %s: %s", e->src, strerror(errno));
    int bad = fwrite(sealed, 1, slen, f) != slen;
    bad |= fclose(f) != 0;
    ENSURE_OUT(!bad, QTSP_ERR_IO, "cannot write %s", e->src);
out:
    if (ms)
        fclose(ms);
    if (mem) {
        OPENSSL_cleanse(mem, mlen);
        free(mem);
    }
    free(sealed);
    /* the clear-text snapshots of the token and secrets go now */
    for (size_t i = 0; i < inner.n; i++)
        if (inner.v[i].type == 'f')
            unlink(inner.v[i].src);
    list_free(&inner);
    return rc;
}

/* The TSA journal's write-ahead files (tsa/tsa_wal.h), copied into wal
 * BEFORE the store: a time-stamp answered before the backup is either
 * still in its file then, or already in the store, since a file is only
 * emptied (wrapped, marked read on close, removed by a starting worker)
 * once its records are in the store. Copied after the store, a record
 * filled meanwhile and then emptied would be in neither copy. A record a
 * worker was writing while the file was read fails its checksum and is
 * not read back (its token had not been answered); a file removed
 * meanwhile is skipped. Restore puts the records into the restored store. */
static qtsp_status copy_tsa_wal(const char *work, const char *storedir, bk_list *wal)
{
    DIR *d = opendir(storedir);
    ENSURE(d != NULL, QTSP_ERR_IO, "cannot read %s: %s", storedir, strerror(errno));
    qtsp_status rc = QTSP_OK;
    struct dirent *de;
    unsigned k = 0;
    while (rc == QTSP_OK && (de = readdir(d))) {
        char abs[QTSP_PATH_MAX], snap[QTSP_PATH_MAX], num[32];
        struct stat sb;
        bk_entry *e;
        if (!qtsp_tsa_wal_is_name(de->d_name) ||
            join(abs, sizeof abs, storedir, de->d_name) != QTSP_OK || lstat(abs, &sb) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if ((rc = list_add(wal, &e)) != QTSP_OK)
            break;
        e->type = 'f';
        e->mode = 0600;
        snprintf(e->path, sizeof e->path, "store/%s", de->d_name);
        snprintf(num, sizeof num, "w%u", k++);
        if ((rc = join(snap, sizeof snap, work, num)) == QTSP_OK)
            rc = snapshot(abs, snap, 0, e);
        if (rc != QTSP_OK && lstat(abs, &sb) != 0 && errno == ENOENT) {
            qtsp_err_clear(); /* a starting worker read it into the store and removed it */
            wal->n--;
            rc = QTSP_OK;
        }
    }
    closedir(d);
    return rc;
}

/* Lists the store copied into work (its folder, data.mdb), then the
 * write-ahead files copied before it. */
static qtsp_status list_store(const char *work, bk_list *l, const bk_list *wal)
{
    bk_entry *e;
    TRY(list_add(l, &e));
    e->type = 'd';
    e->mode = 0700;
    snprintf(e->sha, sizeof e->sha, "-");
    snprintf(e->path, sizeof e->path, "store");
    TRY(list_add(l, &e));
    e->type = 'f';
    e->mode = 0600;
    snprintf(e->path, sizeof e->path, "store/data.mdb");
    char copied[QTSP_PATH_MAX], snap[QTSP_PATH_MAX];
    TRY(join(copied, sizeof copied, work, "data.mdb"));
    TRY(join(snap, sizeof snap, work, "store.mdb"));
    TRY(snapshot(copied, snap, 0, e));
    unlink(copied);
    for (size_t i = 0; i < wal->n; i++) {
        TRY(list_add(l, &e));
        *e = wal->v[i];
    }
    return QTSP_OK;
}

static qtsp_status do_backup(const qtsp_config *cfg, const char *outp, int with_token,
                             const char *pass, char *work, bk_list *l)
{
    char storedir[QTSP_PATH_MAX], snap[QTSP_PATH_MAX];
    unsigned counter = 0;
    walker w = {l, cfg->home, work, &counter, 0};
    /* the TSA's write-ahead files, then the store (copy_tsa_wal says why),
     * then the token: copied after the store, it holds every key the
     * copied store refers to */
    qtsp_store *st = NULL;
    TRY(join(storedir, sizeof storedir, cfg->home, "store"));
    bk_list wal = {0};
    qtsp_status rc = copy_tsa_wal(work, storedir, &wal);
    if (rc == QTSP_OK)
        rc = qtsp_store_open(storedir, (size_t)cfg->store_map_mib, &st);
    if (rc == QTSP_OK) {
        rc = qtsp_store_copy(st, work);
        qtsp_store_close(st);
    }
    if (rc == QTSP_OK)
        rc = list_store(work, l, &wal);
    list_free(&wal);
    TRY(rc);

    /* the home's own files: configuration, ceremony report */
    DIR *d = opendir(cfg->home);
    ENSURE(d != NULL, QTSP_ERR_IO, "cannot read %s: %s", cfg->home, strerror(errno));
    struct dirent *de;
    rc = QTSP_OK;
    while (rc == QTSP_OK && (de = readdir(d))) {
        char abs[QTSP_PATH_MAX], num[32];
        struct stat sb;
        bk_entry *e;
        if (skip_name(de->d_name) || join(abs, sizeof abs, cfg->home, de->d_name) != QTSP_OK ||
            lstat(abs, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if ((rc = list_add(l, &e)) != QTSP_OK)
            break;
        e->type = 'f';
        e->mode = sb.st_mode & 07777;
        snprintf(e->path, sizeof e->path, "%s", de->d_name);
        snprintf(num, sizeof num, "%u", counter++);
        if ((rc = join(snap, sizeof snap, work, num)) == QTSP_OK)
            rc = snapshot(abs, snap, 0, e);
    }
    closedir(d);
    TRY(rc);
    TRY(walk(&w, "public"));
    TRY(walk(&w, "policies"));
    if (with_token)
        TRY(add_sealed(&w, pass));

    char when[40], meta[QTSP_PATH_MAX + 128];
    qtsp_format_rfc3339(qtsp_now(), when, sizeof when);
    snprintf(meta, sizeof meta, "created %s\nhome %s\ntoken %s\n", when, cfg->home,
             with_token ? "yes" : "no");
    char part[QTSP_PATH_MAX + 16];
    snprintf(part, sizeof part, "%s.part", outp);
    int fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create %s: %s", part, strerror(errno));
    FILE *out = fdopen(fd, "wb");
    if (!out) {
        close(fd);
        unlink(part);
        FAIL(QTSP_ERR_NOMEM, "out of memory");
    }
    rc = write_container(out, meta, l);
    int bad = fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    if (rc == QTSP_OK && bad)
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot write %s", part);
    /* link, not rename: an existing FILE is never replaced */
    if (rc == QTSP_OK && link(part, outp) != 0)
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot create %s: %s", outp,
                          strerror(errno));
    unlink(part);
    return rc;
}

static int backup_usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("backup", "missing or wrong arguments (see qtsp backup --help)");
    fprintf(f, "usage: qtsp backup [--home DIR] --out FILE [--with-token [--passphrase-file F]]\n\n"
               "Writes a consistent copy of the home (store, public/, policies/, qtsp.yaml)\n"
               "with a manifest of SHA-256 sums to FILE (which must not exist), also while\n"
               "qtsp serve runs. --with-token adds the embedded token (hsm/) and secrets/,\n"
               "encrypted with AES-256-GCM under a key from the passphrase (PBKDF2-SHA256,\n"
               "600000 iterations), read from F or asked on the terminal.\n");
    return 0;
}

int cmd_backup(int argc, char **argv)
{
    const char *home = cmd_default_home(), *outp = NULL, *pass_file = NULL;
    int with_token = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return backup_usage(stdout);
        if (strcmp(argv[i], "--with-token") == 0) {
            with_token = 1;
            continue;
        }
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--out", &outp) ||
            cmd_opt(argc, argv, &i, "--passphrase-file", &pass_file))
            continue;
        fprintf(stderr, "qtsp: backup: unexpected argument %s (see qtsp backup --help)\n", argv[i]);
        return 2;
    }
    if (!outp)
        return backup_usage(stderr);
    if (pass_file && !with_token)
        return cmd_usage_error("backup", "--passphrase-file goes with --with-token");
    qtsp_err_clear();
    qtsp_config cfg;
    if (qtsp_config_load(home, &cfg) != QTSP_OK)
        return cmd_fail("backup");
    if (with_token && !cfg.hsm_embedded)
        return cmd_usage_error("backup", "--with-token: this home uses an external HSM, whose "
                                         "keys are backed up by the HSM's own means");
    struct stat sb;
    if (lstat(outp, &sb) == 0) {
        fprintf(stderr, "qtsp: backup: %s exists; give a new file\n", outp);
        return 1;
    }
    char pass[256] = "";
    if (with_token && read_passphrase(pass_file, 1, pass, sizeof pass) != QTSP_OK) {
        OPENSSL_cleanse(pass, sizeof pass);
        return cmd_fail("backup");
    }
    char work[QTSP_PATH_MAX + 16];
    snprintf(work, sizeof work, "%s.work-XXXXXX", outp);
    bk_list l = {0};
    qtsp_status rc;
    if (!mkdtemp(work))
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot create %s: %s", work,
                          strerror(errno));
    else
        rc = do_backup(&cfg, outp, with_token, pass, work, &l);
    OPENSSL_cleanse(pass, sizeof pass);
    rmtree(work);
    size_t files = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].type != 'd') {
            files++;
            bytes += l.v[i].size;
        }
    list_free(&l);
    if (rc != QTSP_OK)
        return cmd_fail("backup");
    printf("backup written to %s: %zu files, %" PRIu64 " bytes, token %s\n", outp, files, bytes,
           with_token ? "included (encrypted)" : "not included");
    return 0;
}

/* ---- restore ---- */

typedef struct reader {
    FILE *in;
    EVP_MD_CTX *h;    /* every byte of the container so far */
    const char *dest; /* where the files go */
    const char *pass_file;
    int inner;
    int token; /* a sealed part was restored */
    char created[64];
    char from[QTSP_PATH_MAX];
} reader;

static qtsp_status read_line(reader *r, char *line, size_t cap)
{
    ENSURE(fgets(line, (int)cap, r->in) != NULL, QTSP_ERR_INVALID,
           "the backup ends early (truncated?)");
    size_t n = strlen(line);
    ENSURE(n > 0 && line[n - 1] == '\n', QTSP_ERR_INVALID, "the backup has an overlong line");
    ENSURE(EVP_DigestUpdate(r->h, line, n) == 1, QTSP_ERR_CRYPTO, "SHA-256 failed");
    line[n - 1] = '\0';
    return QTSP_OK;
}

/* A relative path of plain names: no "..", ".", empty part or leading '/'. */
static qtsp_status safe_path(const char *p)
{
    ENSURE(*p && *p != '/', QTSP_ERR_INVALID, "the backup names an unsafe path '%s'", p);
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        ENSURE(n > 0 && !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.'),
               QTSP_ERR_INVALID, "the backup names an unsafe path '%s'", p);
        for (size_t i = 0; i < n; i++)
            ENSURE((unsigned char)s[i] > 0x20 && s[i] != 0x7f, QTSP_ERR_INVALID,
                   "the backup names an unsafe path '%s'", p);
        s += n;
        if (*s == '/')
            s++;
        ENSURE(*s || s[-1] != '/', QTSP_ERR_INVALID, "the backup names an unsafe path '%s'", p);
    }
    return QTSP_OK;
}

/* Secret folders and files keep 0700/0600 whatever the manifest says; the
 * rest loses set-id bits and write access for others. */
static unsigned restore_mode(const char *path, char type, unsigned mode)
{
    if (strncmp(path, "hsm", 3) == 0 || strncmp(path, "secrets", 7) == 0 ||
        strncmp(path, "store", 5) == 0)
        return type == 'd' ? 0700 : 0600;
    return mode & 0755;
}

static qtsp_status read_container(reader *r);

static qtsp_status restore_file(reader *r, const bk_entry *e)
{
    char abs[QTSP_PATH_MAX];
    TRY(join(abs, sizeof abs, r->dest, e->path));
    int fd = open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  restore_mode(e->path, 'f', e->mode));
    ENSURE(fd >= 0, QTSP_ERR_IO, "cannot create %s: %s", abs, strerror(errno));
    EVP_MD_CTX *fh = sha_new();
    unsigned char buf[65536];
    uint64_t left = e->size;
    int bad = 0;
    while (left > 0 && !bad) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        size_t got = fread(buf, 1, want, r->in);
        if (got == 0)
            break;
        bad |= EVP_DigestUpdate(r->h, buf, got) != 1 || !fh || EVP_DigestUpdate(fh, buf, got) != 1;
        bad |= write(fd, buf, got) != (ssize_t)got;
        left -= got;
    }
    bad |= fchmod(fd, restore_mode(e->path, 'f', e->mode)) != 0;
    bad |= fsync(fd) != 0;
    bad |= close(fd) != 0;
    char sha[65];
    sha_done(fh, sha);
    ENSURE(left == 0, QTSP_ERR_INVALID, "the backup ends inside %s (truncated?)", e->path);
    ENSURE(!bad, QTSP_ERR_IO, "cannot write %s: %s", abs, strerror(errno));
    ENSURE(strcmp(sha, e->sha) == 0, QTSP_ERR_INVALID,
           "%s: SHA-256 %s differs from the manifest's %s: the backup is damaged", e->path, sha,
           e->sha);
    return QTSP_OK;
}

static qtsp_status restore_sealed(reader *r, const bk_entry *e)
{
    ENSURE(!r->inner, QTSP_ERR_INVALID, "the backup nests sealed parts");
    ENSURE(e->size <= BK_MAX_SEALED + 64, QTSP_ERR_TOO_BIG, "sealed part too large");
    unsigned char *blob = malloc(e->size ? e->size : 1), *plain = NULL;
    ENSURE(blob != NULL, QTSP_ERR_NOMEM, "out of memory");
    size_t plen = 0;
    char pass[256] = "";
    FILE *mem = NULL;
    qtsp_status rc = QTSP_OK;
    ENSURE_OUT(fread(blob, 1, e->size, r->in) == e->size, QTSP_ERR_INVALID,
               "the backup ends inside the token part (truncated?)");
    unsigned char md[32];
    ENSURE_OUT(EVP_DigestUpdate(r->h, blob, e->size) == 1 &&
                   EVP_Digest(blob, e->size, md, NULL, EVP_sha256(), NULL) == 1,
               QTSP_ERR_CRYPTO, "SHA-256 failed");
    char sha[65];
    hex(md, 32, sha);
    ENSURE_OUT(strcmp(sha, e->sha) == 0, QTSP_ERR_INVALID,
               "sealed: SHA-256 %s differs from the manifest's %s: the backup is damaged", sha,
               e->sha);
    TRY_OUT(read_passphrase(r->pass_file, 0, pass, sizeof pass));
    TRY_OUT(unseal(pass, blob, e->size, &plain, &plen));
    mem = fmemopen(plain, plen, "rb");
    ENSURE_OUT(mem != NULL, QTSP_ERR_NOMEM, "out of memory");
    reader sub = {.in = mem, .dest = r->dest, .inner = 1};
    TRY_OUT(read_container(&sub));
    r->token = 1;
out:
    if (mem)
        fclose(mem);
    OPENSSL_cleanse(pass, sizeof pass);
    if (plain) {
        OPENSSL_cleanse(plain, plen);
        free(plain);
    }
    free(blob);
    return rc;
}

static qtsp_status read_container_h(reader *r);

static qtsp_status read_container(reader *r)
{
    r->h = sha_new();
    ENSURE(r->h != NULL, QTSP_ERR_NOMEM, "out of memory");
    qtsp_status rc = read_container_h(r);
    EVP_MD_CTX_free(r->h);
    r->h = NULL;
    return rc;
}

static qtsp_status read_container_h(reader *r)
{
    char line[BK_LINE];
    TRY(read_line(r, line, sizeof line));
    ENSURE(strcmp(line, "qtsp-backup 1") == 0, QTSP_ERR_INVALID,
           "not a qtsp backup (or a newer format)");
    bk_list l = {0};
    qtsp_status rc = QTSP_OK;
    for (;;) {
        TRY_OUT(read_line(r, line, sizeof line));
        if (strcmp(line, "end") == 0)
            break;
        if (strncmp(line, "created ", 8) == 0) {
            int n = snprintf(r->created, sizeof r->created, "%s", line + 8);
            ENSURE_OUT(n >= 0 && (size_t)n < sizeof r->created, QTSP_ERR_INVALID,
                       "backup: the created line is too long");
            continue;
        }
        if (strncmp(line, "home ", 5) == 0) {
            int n = snprintf(r->from, sizeof r->from, "%s", line + 5);
            ENSURE_OUT(n >= 0 && (size_t)n < sizeof r->from, QTSP_ERR_INVALID,
                       "backup: the home line is too long");
            continue;
        }
        if (strncmp(line, "token ", 6) == 0)
            continue;
        bk_entry *e;
        TRY_OUT(list_add(&l, &e));
        char type[2];
        unsigned mode = 0;
        uint64_t size = 0;
        int used = 0;
        ENSURE_OUT(sscanf(line, "%1[dfs] %o %" SCNu64 " %64s %n", type, &mode, &size, e->sha,
                          &used) == 4 &&
                       used > 0 && mode <= 07777,
                   QTSP_ERR_INVALID, "the backup's manifest is damaged: '%.80s'", line);
        e->type = type[0];
        e->mode = mode;
        e->size = size;
        snprintf(e->path, sizeof e->path, "%s", line + used);
        TRY_OUT(safe_path(e->path));
        ENSURE_OUT(e->type == 'd'
                       ? strcmp(e->sha, "-") == 0 && size == 0
                       : strlen(e->sha) == 64 && strspn(e->sha, "0123456789abcdef") == 64,
                   QTSP_ERR_INVALID, "the backup's manifest is damaged: '%.80s'", line);
    }
    for (size_t i = 0; i < l.n; i++) {
        const bk_entry *e = &l.v[i];
        if (e->type == 'd') {
            char abs[QTSP_PATH_MAX];
            TRY_OUT(join(abs, sizeof abs, r->dest, e->path));
            unsigned m = restore_mode(e->path, 'd', e->mode);
            ENSURE_OUT(mkdir(abs, m) == 0 || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s",
                       abs, strerror(errno));
            ENSURE_OUT(chmod(abs, m) == 0, QTSP_ERR_IO, "cannot chmod %s", abs);
        } else if (e->type == 'f') {
            TRY_OUT(restore_file(r, e));
        } else {
            TRY_OUT(restore_sealed(r, e));
        }
    }
    char want[65], got[80];
    sha_done(r->h, want);
    r->h = NULL;
    ENSURE_OUT(fgets(got, sizeof got, r->in) != NULL, QTSP_ERR_INVALID,
               "the backup has no closing checksum (truncated?)");
    got[strcspn(got, "\n")] = '\0';
    ENSURE_OUT(strncmp(got, "sha256 ", 7) == 0 && strcmp(got + 7, want) == 0, QTSP_ERR_INVALID,
               "the backup's closing SHA-256 does not match: the backup is damaged");
    ENSURE_OUT(r->inner || fgetc(r->in) == EOF, QTSP_ERR_INVALID,
               "the backup has bytes after its closing checksum");
out:
    list_free(&l);
    return rc;
}

typedef struct fixup {
    const reader *r;
    uint64_t dropped;
    const char *home;
} fixup;

static qtsp_status collect_key(void *ctx, const void *key, size_t klen, const void *val,
                               size_t vlen, int *stop)
{
    (void)val;
    (void)vlen;
    (void)stop;
    qtsp_buf *keys = ctx;
    unsigned char len = (unsigned char)(klen > 255 ? 255 : klen);
    TRY(qtsp_buf_append(keys, &len, 1));
    return qtsp_buf_append(keys, key, len);
}

/* In the restored store: pre-generated keys are dropped (one may have been
 * bound to a certificate after the backup was taken: re-offering it would
 * give two people one key); the CRL numbers skip ahead (the original may
 * have published higher ones after the backup: RFC 5280 5.2.3 numbers only
 * grow); the restore is audited. */
static qtsp_status fixup_fn(qtsp_txn *txn, void *ctx)
{
    fixup *f = ctx;
    qtsp_buf keys;
    qtsp_buf_init(&keys, 64u << 20);
    qtsp_status rc = QTSP_OK;
    json_t *details = NULL;
    f->dropped = 0;
    TRY_OUT(qtsp_txn_iter(txn, QTSP_T_KEYPOOL, NULL, 0, collect_key, &keys));
    for (size_t off = 0; off < keys.len; off += 1 + keys.data[off]) {
        TRY_OUT(qtsp_txn_del(txn, QTSP_T_KEYPOOL, keys.data + off + 1, keys.data[off]));
        f->dropped++;
    }
    static const char *const counters[] = {"crl_number", "crl_number_root"};
    for (size_t i = 0; i < 2; i++) {
        uint64_t v = 0;
        TRY_OUT(qtsp_txn_counter_get(txn, counters[i], &v));
        unsigned char be[8];
        qtsp_be64_put(be, v + BK_CRL_SKIP);
        TRY_OUT(qtsp_txn_put(txn, QTSP_T_COUNTERS, counters[i], strlen(counters[i]), be, 8, 0));
    }
    /* the manifest's text is data: the audit log escapes it */
    details = json_pack("{s:b,s:I,s:I}", "token", f->r->token ? 1 : 0, "pool_keys_dropped",
                        (json_int_t)f->dropped, "crl_number_skip", (json_int_t)BK_CRL_SKIP);
    ENSURE_OUT(details != NULL, QTSP_ERR_NOMEM, "out of memory");
    TRY_OUT(qtsp_json_set_string(details, "backup_created", f->r->created));
    TRY_OUT(qtsp_audit_append(txn, cmd_actor(), "home.restore", details, NULL));
out:
    json_decref(details);
    qtsp_buf_cleanup(&keys);
    return rc;
}

static qtsp_status finish_restore(reader *r, const char *tmp, const char *target, uint64_t *dropped)
{
    qtsp_config cfg;
    TRY(qtsp_config_load(tmp, &cfg));
    char dir[QTSP_PATH_MAX];
    TRY(join(dir, sizeof dir, tmp, "store"));
    qtsp_store *st = NULL;
    TRY(qtsp_store_open(dir, (size_t)cfg.store_map_mib, &st));
    /* time-stamps the backup holds only in write-ahead files: into the store */
    qtsp_status rc = qtsp_tsa_wal_replay_others(dir, NULL, st, NULL);
    fixup f = {r, 0, target};
    if (rc == QTSP_OK)
        rc = qtsp_store_write(st, fixup_fn, &f);
    qtsp_store_close(st);
    TRY(rc);
    *dropped = f.dropped;
    if (cfg.hsm_embedded) {
        static const char *const dirs[] = {"hsm", "hsm/tokens", "secrets"};
        for (size_t i = 0; i < 3; i++) {
            TRY(join(dir, sizeof dir, tmp, dirs[i]));
            ENSURE(mkdir(dir, 0700) == 0 || errno == EEXIST, QTSP_ERR_IO, "cannot create %s: %s",
                   dir, strerror(errno));
        }
    }
    return QTSP_OK;
}

static int restore_usage(FILE *f)
{
    if (f != stdout)
        return cmd_usage_error("restore", "missing or wrong arguments (see qtsp restore --help)");
    fprintf(f, "usage: qtsp restore --from FILE [--home DIR] [--passphrase-file F]\n\n"
               "Brings a backup back into DIR, which must not exist or be empty. Every file's\n"
               "SHA-256 is checked; nothing is left in DIR when a check fails. A backup with\n"
               "the token asks for its passphrase (or reads it from F).\n");
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    const char *home = cmd_default_home(), *from = NULL, *pass_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return restore_usage(stdout);
        if (cmd_opt(argc, argv, &i, "--home", &home) || cmd_opt(argc, argv, &i, "--from", &from) ||
            cmd_opt(argc, argv, &i, "--passphrase-file", &pass_file))
            continue;
        fprintf(stderr, "qtsp: restore: unexpected argument %s (see qtsp restore --help)\n",
                argv[i]);
        return 2;
    }
    if (!from)
        return restore_usage(stderr);
    qtsp_err_clear();
    /* the target: absent, or an empty folder */
    struct stat sb;
    int exists = lstat(home, &sb) == 0;
    if (exists) {
        DIR *d = S_ISDIR(sb.st_mode) ? opendir(home) : NULL;
        int empty = d != NULL;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                empty = 0;
        if (d)
            closedir(d);
        if (!empty) {
            fprintf(stderr, "qtsp: restore: %s is not empty; restore into a new folder\n", home);
            return 1;
        }
    }
    FILE *in = fopen(from, "rb");
    if (!in) {
        fprintf(stderr, "qtsp: restore: cannot read %s: %s\n", from, strerror(errno));
        return 1;
    }
    char tmp[QTSP_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.restore-XXXXXX", home);
    if (!mkdtemp(tmp)) {
        fclose(in);
        fprintf(stderr, "qtsp: restore: cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    reader r = {.in = in, .dest = tmp, .pass_file = pass_file};
    uint64_t dropped = 0;
    qtsp_status rc = read_container(&r);
    fclose(in);
    if (rc == QTSP_OK)
        rc = finish_restore(&r, tmp, home, &dropped);
    if (rc == QTSP_OK && chmod(tmp, 0755) != 0)
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot chmod %s", tmp);
    if (rc == QTSP_OK && ((exists && rmdir(home) != 0) || rename(tmp, home) != 0))
        rc = qtsp_err_set(QTSP_ERR_IO, __FILE__, __LINE__, "cannot move %s to %s: %s", tmp, home,
                          strerror(errno));
    if (rc != QTSP_OK) {
        rmtree(tmp);
        return cmd_fail("restore");
    }
    /* the new home's own token folder (SoftHSM2 needs an absolute path) */
    char hsm[QTSP_PATH_MAX], conf[QTSP_PATH_MAX], text[QTSP_PATH_MAX + 128];
    qtsp_config cfg;
    if (qtsp_config_load(home, &cfg) != QTSP_OK ||
        (cfg.hsm_embedded && (join(hsm, sizeof hsm, cfg.home, "hsm") != QTSP_OK ||
                              join(conf, sizeof conf, hsm, "softhsm2.conf") != QTSP_OK ||
                              qtsp_softhsm_conf_text(hsm, text, sizeof text) != QTSP_OK ||
                              cmd_write_file(conf, text, strlen(text), 0600) != QTSP_OK)))
        return cmd_fail("restore");
    printf("restored %s (backup of %s taken %s) into %s; %" PRIu64
           " unassigned pool keys dropped, CRL numbers moved ahead\n",
           from, r.from, r.created, cfg.home, dropped);
    if (cfg.hsm_embedded && !r.token)
        printf("the backup holds no token: put the token into %s/hsm/tokens and its PIN into "
               "%s/secrets/token.pin before serving\n",
               cfg.home, cfg.home);
    return 0;
}
