/* ASiC containers (ETSI EN 319 162-1) written with libzip (the only file
 * that includes it), in memory:
 *   mimetype                   first, stored (no compression): the media type
 *   the files                  under their names: text and XML deflated,
 *                              the rest (mostly compressed already) stored
 *   META-INF/signature.p7s     CAdES (ASiC-S: detached over the one file;
 *                              ASiC-E: detached over META-INF/ASiCManifest.xml,
 *                              which lists each file with its digest, A.4)
 *   META-INF/signatures.xml    XAdES: asic:XAdESSignatures with one
 *                              ds:Signature, a detached reference per file
 * Entries carry the signing time as their modification time, so the same
 * inputs give the same container but for the signature. */
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "sign/ades_int.h"
#include "sign/xml.h"

#define MIME_S "application/vnd.etsi.asic-s+zip"
#define MIME_E "application/vnd.etsi.asic-e+zip"
#define SIG_P7S "META-INF/signature.p7s"
#define SIG_XML "META-INF/signatures.xml"
#define MANIFEST "META-INF/ASiCManifest.xml"

/* Adds name with len bytes at p (borrowed until zip_close). */
static qtsp_status add_entry(zip_t *z, const char *name, const void *p, size_t len, int store,
                             int64_t mtime)
{
    zip_source_t *s = zip_source_buffer(z, p, len, 0);
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "zip: %s", zip_strerror(z));
    zip_int64_t i = zip_file_add(z, name, s, ZIP_FL_ENC_UTF_8);
    if (i < 0) {
        zip_source_free(s);
        FAIL(QTSP_ERR_INVALID, "zip: %s: %s", name, zip_strerror(z));
    }
    ENSURE(zip_set_file_compression(z, (zip_uint64_t)i, store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0) ==
                   0 &&
               zip_file_set_mtime(z, (zip_uint64_t)i, (time_t)mtime, 0) == 0,
           QTSP_ERR_INTERNAL, "zip: %s", zip_strerror(z));
    return QTSP_OK;
}

/* Text deflates well; everything else a signer sends (PDF, images, office
 * files, archives) is mostly compressed already, where deflate costs
 * time (about 30 ms per MB here) and gains nothing: stored. */
static int deflates(const char *mime)
{
    if (!mime)
        return 0;
    size_t n = strlen(mime);
    return strncmp(mime, "text/", 5) == 0 || (n > 4 && strcmp(mime + n - 4, "/xml") == 0) ||
           (n > 4 && strcmp(mime + n - 4, "+xml") == 0) ||
           (n > 5 && strcmp(mime + n - 5, "/json") == 0);
}

/* ASiCManifest (EN 319 162-1 A.4): the signature file, then each file with
 * its SHA-256 digest, as UTF-8 XML appended to out. */
static qtsp_status manifest(const qtsp_xades_object *files, size_t n, qtsp_buf *out)
{
    qtsp_xml_init();
    qtsp_status rc = QTSP_OK;
    xmlChar *mem = NULL;
    int memlen = 0, oom = 0;
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "ASiCManifest") : NULL;
    xmlNsPtr asic = root ? xmlNewNs(root, BAD_CAST QTSP_NS_ASIC, BAD_CAST "asic") : NULL;
    xmlNsPtr ds = root ? xmlNewNs(root, BAD_CAST QTSP_NS_DS, BAD_CAST "ds") : NULL;
    ENSURE_OUT(asic && ds, QTSP_ERR_NOMEM, "out of memory");
    xmlSetNs(root, asic);
    xmlDocSetRootElement(doc, root);
    xmlNodePtr r = xmlNewChild(root, asic, BAD_CAST "SigReference", NULL);
    oom |= !r || !xmlSetProp(r, BAD_CAST "URI", BAD_CAST SIG_P7S) ||
           !xmlSetProp(r, BAD_CAST "MimeType", BAD_CAST "application/pkcs7-signature");
    for (size_t i = 0; i < n && !oom; i++) {
        xmlNodePtr d = xmlNewChild(root, asic, BAD_CAST "DataObjectReference", NULL);
        oom |= !d || !xmlSetProp(d, BAD_CAST "URI", BAD_CAST files[i].uri) ||
               !xmlSetProp(d, BAD_CAST "MimeType",
                           BAD_CAST(files[i].mime ? files[i].mime : "application/octet-stream"));
        xmlNodePtr dm = d ? xmlNewChild(d, ds, BAD_CAST "DigestMethod", NULL) : NULL;
        oom |= !dm ||
               !xmlSetProp(dm, BAD_CAST "Algorithm", BAD_CAST qtsp_xml_digest_uri(EVP_sha256()));
        xmlNodePtr dv = d ? xmlNewChild(d, ds, BAD_CAST "DigestValue", NULL) : NULL;
        unsigned char h[32];
        static const unsigned char empty[1];
        ENSURE_OUT(!oom && dv, QTSP_ERR_NOMEM, "out of memory");
        ENSURE_OUT(EVP_Digest(files[i].data ? files[i].data : empty, files[i].len, h, NULL,
                              EVP_sha256(), NULL) == 1,
                   QTSP_ERR_CRYPTO, "SHA-256");
        TRY_OUT(qtsp_xml_add_base64(dv, h, sizeof h));
    }
    ENSURE_OUT(!oom, QTSP_ERR_NOMEM, "out of memory");
    xmlDocDumpMemoryEnc(doc, &mem, &memlen, "UTF-8");
    ENSURE_OUT(mem && memlen > 0, QTSP_ERR_NOMEM, "cannot write the manifest");
    TRY_OUT(qtsp_buf_append(out, mem, (size_t)memlen));
out:
    xmlFree(mem);
    xmlFreeDoc(doc);
    return rc;
}

/* The container's bytes out of the in-memory source, appended to out. */
static qtsp_status read_source(zip_source_t *src, qtsp_buf *out)
{
    ENSURE(zip_source_open(src) == 0, QTSP_ERR_INTERNAL, "zip: cannot reopen the container");
    qtsp_status rc = QTSP_OK;
    for (;;) {
        TRY_OUT(qtsp_buf_reserve(out, 1 << 16));
        zip_int64_t r = zip_source_read(src, out->data + out->len, 1 << 16);
        ENSURE_OUT(r >= 0, QTSP_ERR_INTERNAL, "zip: cannot read the container");
        if (r == 0)
            break;
        out->len += (size_t)r;
    }
out:
    zip_source_close(src);
    return rc;
}

qtsp_status qtsp_asic_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                           const qtsp_asic_opts *o, const qtsp_xades_object *files, size_t n,
                           qtsp_buf *out)
{
    ENSURE(o && files && out, QTSP_ERR_INVALID, "nothing to sign");
    ENSURE(o->form == QTSP_ASIC_S || o->form == QTSP_ASIC_E, QTSP_ERR_INVALID,
           "container form is ASiC-S or ASiC-E");
    ENSURE(o->sigfmt == QTSP_ASIC_CADES || o->sigfmt == QTSP_ASIC_XADES, QTSP_ERR_INVALID,
           "an ASiC container holds CAdES or XAdES");
    ENSURE(o->form == QTSP_ASIC_E ? n >= 1 && n <= QTSP_ASIC_MAX_FILES : n == 1, QTSP_ERR_INVALID,
           "ASiC-S holds one file, ASiC-E 1..%d", QTSP_ASIC_MAX_FILES);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        TRY(ades_check_name(files[i].uri));
        ENSURE(strcmp(files[i].uri, "mimetype") != 0 && strncmp(files[i].uri, "META-INF/", 9) != 0,
               QTSP_ERR_INVALID, "%s: a name the container keeps for itself", files[i].uri);
        for (size_t j = 0; j < i; j++)
            ENSURE(strcmp(files[i].uri, files[j].uri) != 0, QTSP_ERR_INVALID, "%s: named twice",
                   files[i].uri);
        total += files[i].len;
        ENSURE(files[i].len <= QTSP_ADES_MAX_DOC && total <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID,
               "files larger than %zu bytes", QTSP_ADES_MAX_DOC);
    }

    qtsp_status rc = QTSP_OK;
    qtsp_buf sig, man;
    qtsp_buf_init(&sig, QTSP_ADES_MAX_DOC + ((size_t)4 << 20));
    qtsp_buf_init(&man, (size_t)1 << 20);
    zip_t *z = NULL;
    zip_source_t *src = NULL;
    size_t start = out->len;
    static const unsigned char empty[1];

    /* the signature first: nothing is written when it fails */
    if (o->sigfmt == QTSP_ASIC_XADES) {
        qtsp_xades_opts xo = {o->level, QTSP_XADES_DETACHED, o->signing_time, 0, 1};
        TRY_OUT(qtsp_xades_sign(sv, s, &xo, files, n, &sig));
    } else if (o->form == QTSP_ASIC_S) {
        qtsp_cades_opts co = {o->level, 0, o->signing_time, NULL};
        TRY_OUT(
            qtsp_cades_sign(sv, s, &co, files[0].data ? files[0].data : empty, files[0].len, &sig));
    } else {
        TRY_OUT(manifest(files, n, &man));
        qtsp_cades_opts co = {o->level, 0, o->signing_time, NULL};
        TRY_OUT(qtsp_cades_sign(sv, s, &co, man.data, man.len, &sig));
    }

    zip_error_t ze;
    zip_error_init(&ze);
    src = zip_source_buffer_create(NULL, 0, 0, &ze);
    ENSURE_OUT(src != NULL, QTSP_ERR_NOMEM, "zip: %s", zip_error_strerror(&ze));
    zip_source_keep(src); /* still ours after zip_close: the bytes are read from it */
    z = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    ENSURE_OUT(z != NULL, QTSP_ERR_INTERNAL, "zip: %s", zip_error_strerror(&ze));
    const char *mt = o->form == QTSP_ASIC_S ? MIME_S : MIME_E;
    /* EN 319 162-1 A.1: "mimetype" first and stored */
    TRY_OUT(add_entry(z, "mimetype", mt, strlen(mt), 1, o->signing_time));
    for (size_t i = 0; i < n; i++)
        TRY_OUT(add_entry(z, files[i].uri, files[i].data ? files[i].data : empty, files[i].len,
                          !deflates(files[i].mime), o->signing_time));
    if (man.len)
        TRY_OUT(add_entry(z, MANIFEST, man.data, man.len, 0, o->signing_time));
    TRY_OUT(add_entry(z, o->sigfmt == QTSP_ASIC_XADES ? SIG_XML : SIG_P7S, sig.data, sig.len, 0,
                      o->signing_time));
    int closed = zip_close(z);
    ENSURE_OUT(closed == 0, QTSP_ERR_INTERNAL, "zip: %s", zip_strerror(z));
    z = NULL;
    TRY_OUT(read_source(src, out));
out:
    if (z)
        zip_discard(z);
    zip_source_free(src);
    if (rc != QTSP_OK)
        out->len = start;
    qtsp_buf_cleanup(&sig);
    qtsp_buf_cleanup(&man);
    return rc;
}

/* ---- reading (the validator's, sign/validate_asic.c) --------------------- */

void ades_zip_free(ades_zip_entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++)
        free(e[i].data);
    free(e);
}

static qtsp_status zip_entry_name_ok(const char *name)
{
    ENSURE(name && name[0] && name[0] != '/' && strlen(name) < ADES_ZIP_NAME_MAX, QTSP_ERR_INVALID,
           "file: a container entry with an empty, absolute or too long name");
    for (const char *seg = name; seg;) {
        const char *e = strchr(seg, '/');
        size_t l = e ? (size_t)(e - seg) : strlen(seg);
        ENSURE(!(l == 2 && seg[0] == '.' && seg[1] == '.') && !memchr(seg, '\\', l),
               QTSP_ERR_INVALID, "file: container entry %.100s leaves its folder", name);
        seg = e ? e + 1 : NULL;
    }
    return QTSP_OK;
}

qtsp_status ades_zip_read(const unsigned char *p, size_t len, size_t max_entries, size_t max_total,
                          ades_zip_entry **out, size_t *n_out)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(p, len, 0, &ze);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    qtsp_status rc = QTSP_OK;
    ades_zip_entry *e = NULL;
    size_t n = 0, total = 0;
    if (!z) {
        zip_source_free(src);
        rc = qtsp_err_set(QTSP_ERR_INVALID, __FILE__, __LINE__, "file: not a readable ZIP (%s)",
                          zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    zip_int64_t count = zip_get_num_entries(z, 0);
    ENSURE_OUT(count > 0, QTSP_ERR_INVALID, "file: an empty container");
    ENSURE_OUT((size_t)count <= max_entries, QTSP_ERR_TOO_BIG, "file: more than %zu entries",
               max_entries);
    e = calloc((size_t)count, sizeof *e);
    ENSURE_OUT(e != NULL, QTSP_ERR_NOMEM, "out of memory");
    /* zip bombs: the declared sizes first, then reads capped at them (libzip
     * checks each entry's CRC and size as it ends) */
    for (zip_int64_t i = 0; i < count; i++) {
        zip_stat_t st;
        ENSURE_OUT(zip_stat_index(z, (zip_uint64_t)i, 0, &st) == 0 &&
                       (st.valid & (ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_METHOD)) ==
                           (ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_METHOD),
                   QTSP_ERR_INVALID, "file: container entry %lld unreadable", (long long)i);
        ENSURE_OUT(!(st.valid & ZIP_STAT_ENCRYPTION_METHOD) || st.encryption_method == ZIP_EM_NONE,
                   QTSP_ERR_INVALID, "file: encrypted container entries are not validated");
        TRY_OUT(zip_entry_name_ok(st.name));
        ENSURE_OUT(st.size <= max_total - total, QTSP_ERR_TOO_BIG,
                   "file: the container's entries unpack to more than %zu bytes", max_total);
        total += (size_t)st.size;
    }
    for (zip_int64_t i = 0; i < count; i++) {
        zip_stat_t st;
        ENSURE_OUT(zip_stat_index(z, (zip_uint64_t)i, 0, &st) == 0, QTSP_ERR_INVALID,
                   "file: container entry unreadable");
        for (size_t k = 0; k < n; k++)
            ENSURE_OUT(strcmp(e[k].name, st.name) != 0, QTSP_ERR_INVALID,
                       "file: container entry %.100s given twice", st.name);
        ades_zip_entry *x = &e[n];
        snprintf(x->name, sizeof x->name, "%s", st.name);
        x->stored = st.comp_method == ZIP_CM_STORE;
        x->data = malloc((size_t)st.size + 1);
        ENSURE_OUT(x->data != NULL, QTSP_ERR_NOMEM, "out of memory");
        n++;
        zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
        ENSURE_OUT(f != NULL, QTSP_ERR_INVALID, "file: %.100s: %s", st.name, zip_strerror(z));
        zip_int64_t got = 0, r = 0;
        while ((zip_uint64_t)got < st.size &&
               (r = zip_fread(f, x->data + got, st.size - (zip_uint64_t)got)) > 0)
            got += r;
        /* one byte more must not come: the entry is what it declares */
        unsigned char extra;
        zip_int64_t more = r >= 0 && (zip_uint64_t)got == st.size ? zip_fread(f, &extra, 1) : -1;
        int closed = zip_fclose(f);
        ENSURE_OUT(r >= 0 && more == 0 && closed == 0 && (zip_uint64_t)got == st.size,
                   QTSP_ERR_INVALID, "file: container entry %.100s is damaged", st.name);
        x->len = (size_t)st.size;
        x->data[x->len] = '\0'; /* as ades_zip_entry promises */
    }
    *out = e;
    *n_out = n;
    e = NULL;
out:
    ades_zip_free(e, n);
    zip_discard(z);
    zip_error_fini(&ze);
    return rc;
}
