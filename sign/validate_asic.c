/* ASiC validation (ETSI EN 319 162-1): the container is unpacked in memory
 * by sign/asic.c (bounded: entries, total size, sizes and CRCs as
 * declared), must start with the entry "mimetype", stored, naming ASiC-S or
 * ASiC-E (4.3, A.1), and its signatures are checked by the format's
 * validator:
 *   META-INF/signature...p7s     CAdES: ASiC-S over the one file; ASiC-E over
 *                               the ASiCManifest whose SigReference names it,
 *                               each DataObjectReference's digest checked
 *                               against its file (A.4)
 *   META-INF/signatures...xml    XAdES: detached references resolved to the
 *                               container's files
 * Containers are not opened inside containers: a file that is itself an
 * ASiC container or a ZIP is refused (400). */
#include <libxml/tree.h>
#include <string.h>

#include "core/codec.h"
#include "sign/ades_int.h"
#include "sign/validate_int.h"
#include "sign/xml.h"

#define MIME_S "application/vnd.etsi.asic-s+zip"
#define MIME_E "application/vnd.etsi.asic-e+zip"
/* Most entries, and most bytes unpacked, per container. */
#define ASIC_MAX_ENTRIES (QTSP_ASIC_MAX_FILES + 16)
#define ASIC_MAX_TOTAL ((size_t)64 << 20)

typedef struct asic {
    ades_zip_entry *e;
    size_t n;
} asic;

static const ades_zip_entry *entry(const asic *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].name, name) == 0)
            return &a->e[i];
    return NULL;
}

static int is_meta(const char *name)
{
    return strncmp(name, "META-INF/", 9) == 0 || strcmp(name, "mimetype") == 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* XAdES detached references: a container file by its name. */
static const unsigned char *resolve(void *ctx, const char *uri, size_t *len)
{
    const ades_zip_entry *e = entry(ctx, uri);
    if (!e || is_meta(uri))
        return NULL;
    *len = e->len;
    return e->data;
}

/* The ASiCManifest naming sig (EN 319 162-1 A.4): checks every
 * DataObjectReference against the container. 1 when all match, else 0
 * with why; *found when a manifest names sig. */
static int manifest_ok(const asic *a, const char *sig, const ades_zip_entry **man, char *why,
                       size_t cap)
{
    *man = NULL;
    for (size_t i = 0; i < a->n && !*man; i++) {
        const ades_zip_entry *m = &a->e[i];
        if (strncmp(m->name, "META-INF/", 9) != 0 || !strstr(m->name, "ASiCManifest") ||
            !ends_with(m->name, ".xml"))
            continue;
        xmlDocPtr doc = NULL;
        if (qtsp_xml_parse(m->data, m->len, ASIC_MAX_TOTAL, &doc) != QTSP_OK) {
            qtsp_err_clear();
            continue;
        }
        xmlNodePtr root = xmlDocGetRootElement(doc), r;
        int mine = 0, ok = 1, refs = 0;
        for (r = root ? root->children : NULL; r; r = r->next) {
            if (r->type != XML_ELEMENT_NODE || !r->ns ||
                strcmp((const char *)r->ns->href, QTSP_NS_ASIC) != 0)
                continue;
            xmlChar *uri = xmlGetProp(r, BAD_CAST "URI");
            if (strcmp((const char *)r->name, "SigReference") == 0)
                mine |= uri && strcmp((const char *)uri, sig) == 0;
            xmlFree(uri);
        }
        if (!mine) {
            xmlFreeDoc(doc);
            continue;
        }
        *man = m;
        for (r = root->children; r && ok; r = r->next) {
            if (r->type != XML_ELEMENT_NODE || strcmp((const char *)r->name, "DataObjectReference"))
                continue;
            refs++;
            xmlChar *uri = xmlGetProp(r, BAD_CAST "URI");
            xmlNodePtr dm = NULL, dv = NULL;
            for (xmlNodePtr c = r->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "DigestMethod"))
                    dm = c;
                else if (c->type == XML_ELEMENT_NODE &&
                         !strcmp((const char *)c->name, "DigestValue"))
                    dv = c;
            xmlChar *alg = dm ? xmlGetProp(dm, BAD_CAST "Algorithm") : NULL;
            xmlChar *val = dv ? xmlNodeGetContent(dv) : NULL;
            const ades_zip_entry *f = uri ? entry(a, (const char *)uri) : NULL;
            const EVP_MD *md = NULL;
            if (alg && strcmp((const char *)alg, qtsp_xml_digest_uri(EVP_sha256())) == 0)
                md = EVP_sha256();
            else if (alg && strcmp((const char *)alg, qtsp_xml_digest_uri(EVP_sha384())) == 0)
                md = EVP_sha384();
            else if (alg && strcmp((const char *)alg, qtsp_xml_digest_uri(EVP_sha512())) == 0)
                md = EVP_sha512();
            unsigned char want[EVP_MAX_MD_SIZE], h[EVP_MAX_MD_SIZE];
            size_t wl = 0;
            unsigned int hl = 0;
            if (!f || is_meta(f->name)) {
                snprintf(why, cap, "the manifest names %.100s, which the container lacks",
                         uri ? (const char *)uri : "(no URI)");
                ok = 0;
            } else if (!md || !val ||
                       qtsp_base64_decode((const char *)val, strlen((const char *)val),
                                          QTSP_B64_STD | QTSP_B64_PADDING, want, sizeof want,
                                          &wl) != QTSP_OK) {
                snprintf(why, cap, "the manifest's reference to %.100s is malformed", f->name);
                ok = 0;
            } else if (EVP_Digest(f->data, f->len, h, &hl, md, NULL) != 1 || hl != wl ||
                       memcmp(h, want, hl) != 0) {
                snprintf(why, cap, "%.100s differs from the manifest's digest", f->name);
                ok = 0;
            }
            qtsp_err_clear();
            xmlFree(uri);
            xmlFree(alg);
            xmlFree(val);
        }
        if (ok && refs == 0) {
            snprintf(why, cap, "the manifest references no file");
            ok = 0;
        }
        xmlFreeDoc(doc);
        return ok;
    }
    snprintf(why, cap, "no ASiCManifest names %.100s", sig);
    return 0;
}

/* A file inside that is itself a ZIP (an ASiC container or any archive). */
static int is_zip(const ades_zip_entry *e)
{
    return e->len >= 4 && memcmp(e->data, "PK\x03\x04", 4) == 0;
}

qtsp_status val_asic(const qtsp_validator *v, const unsigned char *zip, size_t len, int64_t now,
                     json_t *sigs, const char **form)
{
    asic a = {NULL, 0};
    TRY(ades_zip_read(zip, len, ASIC_MAX_ENTRIES, ASIC_MAX_TOTAL, &a.e, &a.n));
    qtsp_status rc = QTSP_OK;
    qtsp_xml_init();
    /* EN 319 162-1 A.1: mimetype first, stored */
    const ades_zip_entry *mt = &a.e[0];
    ENSURE_OUT(strcmp(mt->name, "mimetype") == 0 && mt->stored, QTSP_ERR_INVALID,
               "file: a ZIP, but no ASiC container (mimetype must be the first entry, stored)");
    int s_form = mt->len == strlen(MIME_S) && memcmp(mt->data, MIME_S, mt->len) == 0;
    int e_form = mt->len == strlen(MIME_E) && memcmp(mt->data, MIME_E, mt->len) == 0;
    ENSURE_OUT(s_form || e_form, QTSP_ERR_INVALID, "file: mimetype is neither %s nor %s", MIME_S,
               MIME_E);
    *form = s_form ? "ASiC-S" : "ASiC-E";
    size_t n_data = 0, n_sig = 0;
    const ades_zip_entry *one = NULL;
    for (size_t i = 0; i < a.n; i++) {
        if (is_meta(a.e[i].name))
            continue;
        ENSURE_OUT(!is_zip(&a.e[i]), QTSP_ERR_INVALID,
                   "file: %.100s is itself a container; nested containers are not validated",
                   a.e[i].name);
        n_data++;
        one = &a.e[i];
    }
    ENSURE_OUT(n_data > 0, QTSP_ERR_INVALID, "file: the container holds no signed file");
    ENSURE_OUT(!s_form || n_data == 1, QTSP_ERR_INVALID,
               "file: an ASiC-S container holds exactly one file (%zu here)", n_data);
    for (size_t i = 0; i < a.n; i++) {
        const ades_zip_entry *e = &a.e[i];
        if (strncmp(e->name, "META-INF/", 9) != 0)
            continue;
        if (strstr(e->name, "signature") && ends_with(e->name, ".p7s")) {
            n_sig++;
            val_sig s;
            memset(&s, 0, sizeof s);
            s.format = "CAdES";
            s.container = *form;
            s.cms = e->data;
            s.cms_len = e->len;
            s.n_chunks = 1;
            char why[200] = "";
            int man_ok = 1;
            const ades_zip_entry *man = NULL;
            if (s_form) {
                s.chunk[0] = one->data;
                s.chunk_len[0] = one->len;
            } else {
                man_ok = manifest_ok(&a, e->name, &man, why, sizeof why);
                s.chunk[0] = man ? man->data : (const unsigned char *)"";
                s.chunk_len[0] = man ? man->len : 0;
            }
            size_t before = json_array_size(sigs);
            qtsp_status r = val_cms(v, &s, now, sigs);
            if (r == QTSP_ERR_INVALID) {
                TRY_OUT(val_format_failure(sigs, qtsp_err_what()));
                qtsp_err_clear();
            } else {
                TRY_OUT(r);
            }
            /* a file that differs from the manifest fails the signature (A.4) */
            for (size_t k = before; !man_ok && k < json_array_size(sigs); k++) {
                json_t *o = json_array_get(sigs, k);
                int found = man != NULL;
                json_object_set_new(o, "indication",
                                    json_string(found ? "TOTAL-FAILED" : "INDETERMINATE"));
                json_object_set_new(o, "sub_indication",
                                    json_string(found ? "HASH_FAILURE" : "SIGNED_DATA_NOT_FOUND"));
                json_object_set_new(o, "message", json_string(why));
            }
        } else if (strstr(e->name, "signatures") && ends_with(e->name, ".xml")) {
            n_sig++;
            TRY_OUT(val_xml(v, e->data, e->len, NULL, 0, resolve, &a, *form, now, sigs));
        }
    }
    ENSURE_OUT(n_sig > 0, QTSP_ERR_INVALID,
               "file: the container holds no signature (META-INF/signature*.p7s or "
               "signatures*.xml)");
out:
    ades_zip_free(a.e, a.n);
    return rc;
}
