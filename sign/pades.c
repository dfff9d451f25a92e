/* PAdES baseline signatures (ETSI EN 319 142-1) as incremental updates
 * (ISO 32000-1 7.5.6) of the signer's PDF. qpdf (its C API, the only file
 * that includes it) reads the file: the trailer, the catalog, the first page,
 * the AcroForm, an existing DSS, whether the last cross-reference section is
 * a table or a stream; the objects we change are changed in qpdf's memory and
 * written back with its unparser. What we append per revision:
 *   signature      a signature dictionary (/SubFilter /ETSI.CAdES.detached,
 *                  /M, no signing-time attribute: EN 319 142-1 5.4.2), an
 *                  invisible widget/field on the first page, the catalog's
 *                  AcroForm (/SigFlags 3), the page's /Annots; /Contents is
 *                  reserved as hex zeros, /ByteRange is written in fixed
 *                  width and patched, the ranges hashed where they lie and
 *                  the CMS (B-B or B-T) written into the reserve
 *   B-LT           the catalog's /DSS with /Certs, /OCSPs, /CRLs streams
 *                  (EN 319 142-1 5.4.3)
 *   B-LTA          a document time-stamp (/Type /DocTimeStamp, /SubFilter
 *                  /ETSI.RFC3161) over everything before it (5.4.4)
 * Each revision ends with a cross-reference section of the kind the file
 * had (a table with a trailer, or an uncompressed cross-reference stream),
 * /Prev pointing at the previous one. Earlier revisions are never touched,
 * so earlier signatures stay valid. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <qpdf/qpdf-c.h>
#include <stdio.h>
#include <string.h>

#include "core/codec.h"
#include "core/time.h"
#include "sign/ades_int.h"

/* Bytes reserved for the CMS of a signature and for a document time-stamp
 * token (hex: twice as many characters). A B-T CMS with our chain is ~8 KiB. */
#define SIG_RESERVE ((size_t)24 << 10)
#define DTS_RESERVE ((size_t)12 << 10)
/* Most objects written in one revision, and changed objects. */
#define REV_MAX 48
#define DIRTY_MAX 8
/* Depth of the page tree we walk to the first page. */
#define PAGE_DEPTH 32

typedef struct pdf {
    qpdf_data q;
    qtsp_buf *out;
    size_t base;       /* the PDF starts at out->data + base */
    long long next;    /* next free object number (trailer /Size) */
    long long prev;    /* offset of the last cross-reference section */
    int xref_stream;   /* continue with cross-reference streams */
    char trailer[512]; /* "/Root .. /Info .. /ID [..]" of the original trailer */
    /* the revision being written */
    long long nums[REV_MAX];
    int gens[REV_MAX];
    size_t offs[REV_MAX];
    size_t n;
    qpdf_oh dirty[DIRTY_MAX];
    size_t n_dirty;
} pdf;

/* A reserved /Contents of a signature dictionary. */
typedef struct sig_slot {
    size_t br;     /* offset of the ByteRange numbers (fixed width) */
    size_t lt, gt; /* offsets of '<' and just after '>' of /Contents */
} sig_slot;

static qtsp_status qerr(pdf *p, const char *what)
{
    if (qpdf_has_error(p->q)) {
        qpdf_error e = qpdf_get_error(p->q);
        FAIL(QTSP_ERR_INVALID, "%s: %s", what, qpdf_get_error_full_text(p->q, e));
    }
    return QTSP_OK;
}

static size_t pos(const pdf *p)
{
    return p->out->len - p->base;
}

static qtsp_status obj_begin(pdf *p, long long num, int gen)
{
    ENSURE(p->n < REV_MAX, QTSP_ERR_TOO_BIG, "too many objects in one revision");
    p->nums[p->n] = num;
    p->gens[p->n] = gen;
    p->offs[p->n] = pos(p);
    p->n++;
    return qtsp_buf_printf(p->out, "%lld %d obj\n", num, gen);
}

static qtsp_status obj_end(pdf *p)
{
    return qtsp_buf_puts(p->out, "\nendobj\n");
}

/* A stream object holding der (DSS certificates, OCSP answers, CRLs). */
static qtsp_status stream_obj(pdf *p, long long num, const unsigned char *der, size_t n)
{
    TRY(obj_begin(p, num, 0));
    TRY(qtsp_buf_printf(p->out, "<< /Length %zu >>\nstream\n", n));
    TRY(qtsp_buf_append(p->out, der, n));
    TRY(qtsp_buf_puts(p->out, "\nendstream"));
    return obj_end(p);
}

/* A new object number. qpdf is told the object exists (an empty dictionary
 * in its memory; we write the object ourselves), so that references to it
 * are kept: a dictionary entry referring to a missing object reads as null,
 * which qpdf drops (ISO 32000-1 7.3.7). */
static long long new_obj(pdf *p)
{
    long long n = p->next++;
    qpdf_replace_object(p->q, (int)n, 0, qpdf_oh_new_dictionary(p->q));
    return n;
}

/* Marks the indirect object oh as changed: rewritten when the revision ends. */
static qtsp_status dirty(pdf *p, qpdf_oh oh)
{
    int id = qpdf_oh_get_object_id(p->q, oh);
    ENSURE(id > 0, QTSP_ERR_INTERNAL, "changed object is not indirect");
    for (size_t i = 0; i < p->n_dirty; i++)
        if (qpdf_oh_get_object_id(p->q, p->dirty[i]) == id)
            return QTSP_OK;
    ENSURE(p->n_dirty < DIRTY_MAX, QTSP_ERR_TOO_BIG, "too many changed objects");
    p->dirty[p->n_dirty++] = oh;
    return QTSP_OK;
}

/* dict[key] gets a reference to num appended: to the array there (created
 * when absent). The object that changes (the array if indirect, else the
 * dictionary if indirect, else owner) is marked dirty. */
static qtsp_status append_ref(pdf *p, qpdf_oh owner, qpdf_oh dict, const char *key, long long num)
{
    qpdf_oh ref = qpdf_get_object_by_id(p->q, (int)num, 0);
    qpdf_oh arr = qpdf_oh_get_key(p->q, dict, key);
    if (qpdf_oh_is_null(p->q, arr)) {
        arr = qpdf_oh_new_array(p->q);
        qpdf_oh_replace_key(p->q, dict, key, arr);
        arr = qpdf_oh_get_key(p->q, dict, key);
    }
    ENSURE(qpdf_oh_is_array(p->q, arr), QTSP_ERR_INVALID, "%s is not an array", key);
    qpdf_oh_append_item(p->q, arr, ref);
    TRY(qerr(p, "PDF update"));
    if (qpdf_oh_is_indirect(p->q, arr))
        return dirty(p, arr);
    return dirty(p, qpdf_oh_is_indirect(p->q, dict) ? dict : owner);
}

/* root[key] as a dictionary, created (direct) when absent. */
static qtsp_status sub_dict(pdf *p, qpdf_oh root, const char *key, qpdf_oh *out)
{
    qpdf_oh d = qpdf_oh_get_key(p->q, root, key);
    if (qpdf_oh_is_null(p->q, d)) {
        qpdf_oh_replace_key(p->q, root, key, qpdf_oh_new_dictionary(p->q));
        d = qpdf_oh_get_key(p->q, root, key);
        TRY(dirty(p, root));
    }
    ENSURE(qpdf_oh_is_dictionary(p->q, d), QTSP_ERR_INVALID, "%s is not a dictionary", key);
    *out = d;
    return QTSP_OK;
}

/* The first page (the leftmost leaf of the page tree). */
static qtsp_status first_page(pdf *p, qpdf_oh root, qpdf_oh *out)
{
    qpdf_oh node = qpdf_oh_get_key(p->q, root, "/Pages");
    for (int depth = 0; depth < PAGE_DEPTH; depth++) {
        ENSURE(qpdf_oh_is_dictionary(p->q, node), QTSP_ERR_INVALID, "PDF page tree is broken");
        qpdf_oh kids = qpdf_oh_get_key(p->q, node, "/Kids");
        if (!qpdf_oh_is_array(p->q, kids)) {
            ENSURE(qpdf_oh_is_indirect(p->q, node), QTSP_ERR_INVALID, "PDF page is not indirect");
            *out = node;
            return QTSP_OK;
        }
        ENSURE(qpdf_oh_get_array_n_items(p->q, kids) > 0, QTSP_ERR_INVALID, "PDF has no pages");
        node = qpdf_oh_get_array_item(p->q, kids, 0);
    }
    FAIL(QTSP_ERR_INVALID, "PDF page tree deeper than %d", PAGE_DEPTH);
}

/* Ends the revision: the changed objects, then the cross-reference section
 * and trailer (ISO 32000-1 7.5.4/7.5.5, or 7.5.8 for streams). */
static qtsp_status finish_rev(pdf *p)
{
    for (size_t i = 0; i < p->n_dirty; i++) {
        qpdf_oh oh = p->dirty[i];
        const char *s = qpdf_oh_unparse_resolved(p->q, oh);
        TRY(qerr(p, "PDF object"));
        TRY(obj_begin(p, qpdf_oh_get_object_id(p->q, oh), qpdf_oh_get_generation(p->q, oh)));
        TRY(qtsp_buf_puts(p->out, s));
        TRY(obj_end(p));
    }
    p->n_dirty = 0;
    long long xnum = p->xref_stream ? p->next++ : 0;
    size_t xoff = pos(p);
    if (p->xref_stream) {
        p->nums[p->n] = xnum;
        p->gens[p->n] = 0;
        p->offs[p->n] = xoff;
        p->n++;
    }
    /* sort by object number (insertion: a handful) */
    for (size_t i = 1; i < p->n; i++)
        for (size_t j = i; j > 0 && p->nums[j - 1] > p->nums[j]; j--) {
            long long t = p->nums[j];
            p->nums[j] = p->nums[j - 1];
            p->nums[j - 1] = t;
            int g = p->gens[j];
            p->gens[j] = p->gens[j - 1];
            p->gens[j - 1] = g;
            size_t o = p->offs[j];
            p->offs[j] = p->offs[j - 1];
            p->offs[j - 1] = o;
        }
    char index[REV_MAX * 24];
    size_t il = 0;
    for (size_t i = 0; i < p->n;) {
        size_t j = i + 1;
        while (j < p->n && p->nums[j] == p->nums[j - 1] + 1)
            j++;
        il += (size_t)snprintf(index + il, sizeof index - il, "%s%lld %zu", il ? " " : "",
                               p->nums[i], j - i);
        i = j;
    }
    if (!p->xref_stream) {
        TRY(qtsp_buf_puts(p->out, "xref\n"));
        for (size_t i = 0; i < p->n;) {
            size_t j = i + 1;
            while (j < p->n && p->nums[j] == p->nums[j - 1] + 1)
                j++;
            TRY(qtsp_buf_printf(p->out, "%lld %zu\n", p->nums[i], j - i));
            for (size_t k = i; k < j; k++)
                TRY(qtsp_buf_printf(p->out, "%010zu %05d n\r\n", p->offs[k], p->gens[k]));
            i = j;
        }
        TRY(qtsp_buf_printf(p->out, "trailer\n<< /Size %lld %s/Prev %lld >>\n", p->next, p->trailer,
                            p->prev));
    } else {
        /* /W [1 4 2]: type 1, offset, generation (uncompressed) */
        TRY(qtsp_buf_printf(p->out,
                            "%lld 0 obj\n<< /Type /XRef /Size %lld %s/Prev %lld /W [1 4 2] "
                            "/Index [%s] /Length %zu >>\nstream\n",
                            xnum, p->next, p->trailer, p->prev, index, p->n * 7));
        for (size_t i = 0; i < p->n; i++) {
            ENSURE(p->offs[i] <= 0xffffffffu, QTSP_ERR_TOO_BIG, "PDF larger than 4 GiB");
            unsigned char e[7] = {1,
                                  (unsigned char)(p->offs[i] >> 24),
                                  (unsigned char)(p->offs[i] >> 16),
                                  (unsigned char)(p->offs[i] >> 8),
                                  (unsigned char)p->offs[i],
                                  (unsigned char)(p->gens[i] >> 8),
                                  (unsigned char)p->gens[i]};
            TRY(qtsp_buf_append(p->out, e, sizeof e));
        }
        TRY(qtsp_buf_puts(p->out, "\nendstream\nendobj\n"));
    }
    TRY(qtsp_buf_printf(p->out, "startxref\n%zu\n%%%%EOF\n", xoff));
    p->prev = (long long)xoff;
    p->n = 0;
    return QTSP_OK;
}

/* The offset in the last "startxref" of the file (ISO 32000-1 7.5.5). */
static qtsp_status last_startxref(const unsigned char *in, size_t len, long long *out)
{
    size_t from = len > 2048 ? len - 2048 : 0;
    const char key[] = "startxref";
    size_t at = SIZE_MAX;
    for (size_t i = from; i + sizeof key - 1 <= len; i++)
        if (memcmp(in + i, key, sizeof key - 1) == 0)
            at = i;
    ENSURE(at != SIZE_MAX, QTSP_ERR_INVALID, "PDF without startxref");
    size_t i = at + sizeof key - 1;
    while (i < len && (in[i] == '\r' || in[i] == '\n' || in[i] == ' '))
        i++;
    long long v = 0;
    size_t digits = 0;
    for (; i < len && in[i] >= '0' && in[i] <= '9' && digits < 12; i++, digits++)
        v = v * 10 + (in[i] - '0');
    ENSURE(digits > 0 && (size_t)v < len, QTSP_ERR_INVALID, "PDF startxref out of range");
    *out = v;
    return QTSP_OK;
}

static qtsp_status pdf_open(pdf *p, const unsigned char *in, size_t len, qtsp_buf *out)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->base = out ? out->len : 0;
    p->q = qpdf_init();
    ENSURE(p->q != NULL, QTSP_ERR_NOMEM, "out of memory");
    qpdf_silence_errors(p->q);
    qpdf_set_suppress_warnings(p->q, QPDF_TRUE);
    /* a damaged file is refused, not repaired: our update must continue the
     * file as it is */
    qpdf_set_attempt_recovery(p->q, QPDF_FALSE);
    ENSURE(len >= 8 && memcmp(in, "%PDF-", 5) == 0, QTSP_ERR_INVALID, "not a PDF");
    if (qpdf_read_memory(p->q, "document", (const char *)in, (unsigned long long)len, NULL) &
        QPDF_ERRORS)
        TRY(qerr(p, "PDF does not parse"));
    ENSURE(!qpdf_is_encrypted(p->q), QTSP_ERR_INVALID, "encrypted PDFs are not signed");
    TRY(last_startxref(in, len, &p->prev));
    qpdf_oh tr = qpdf_get_trailer(p->q);
    long long size = 0;
    ENSURE(qpdf_oh_get_value_as_longlong(p->q, qpdf_oh_get_key(p->q, tr, "/Size"), &size) &&
               size > 0 && size < (1 << 23),
           QTSP_ERR_INVALID, "PDF trailer without /Size");
    p->next = size;
    p->xref_stream = qpdf_oh_is_name_and_equals(p->q, qpdf_oh_get_key(p->q, tr, "/Type"), "/XRef");
    size_t tl = 0;
    static const char *const keep[] = {"/Root", "/Info", "/ID"};
    for (size_t i = 0; i < 3; i++) {
        qpdf_oh v = qpdf_oh_get_key(p->q, tr, keep[i]);
        if (qpdf_oh_is_null(p->q, v))
            continue;
        const char *s = qpdf_oh_unparse(p->q, v);
        int n = snprintf(p->trailer + tl, sizeof p->trailer - tl, "%s %s ", keep[i], s);
        ENSURE(n > 0 && (size_t)n < sizeof p->trailer - tl, QTSP_ERR_INVALID,
               "PDF trailer entries too long");
        tl += (size_t)n;
    }
    TRY(qerr(p, "PDF trailer"));
    if (!out)
        return QTSP_OK; /* qtsp_pades_check: read only */
    TRY(qtsp_buf_reserve(out, len + 2 * SIG_RESERVE + 64 * 1024));
    TRY(qtsp_buf_append(out, in, len));
    if (in[len - 1] != '\n' && in[len - 1] != '\r')
        TRY(qtsp_buf_puts(out, "\n"));
    return QTSP_OK;
}

static void pdf_close(pdf *p)
{
    if (p->q)
        qpdf_cleanup(&p->q);
}

/* ISO 32000-1 12.8.2.2: a PDF certified with P 1 takes no change, and a
 * certified one no second certification. */
static qtsp_status mdp_check(pdf *p, qpdf_oh root, int certification)
{
    qpdf_oh docmdp =
        qpdf_oh_get_key_if_dict(p->q, qpdf_oh_get_key(p->q, root, "/Perms"), "/DocMDP");
    if (!qpdf_oh_is_null(p->q, docmdp)) {
        /* ISO 32000-1 12.8.2.2: P 1 allows no change at all */
        long long perm = 2;
        qpdf_oh refs = qpdf_oh_get_key_if_dict(p->q, docmdp, "/Reference");
        if (qpdf_oh_is_array(p->q, refs) && qpdf_oh_get_array_n_items(p->q, refs) > 0) {
            qpdf_oh tp = qpdf_oh_get_key_if_dict(p->q, qpdf_oh_get_array_item(p->q, refs, 0),
                                                 "/TransformParams");
            (void)qpdf_oh_get_value_as_longlong(p->q, qpdf_oh_get_key_if_dict(p->q, tp, "/P"),
                                                &perm);
        }
        ENSURE(perm != 1, QTSP_ERR_STATE, "the PDF's certification allows no further change");
        ENSURE(!certification, QTSP_ERR_STATE, "the PDF is already certified");
    }
    return QTSP_OK;
}

/* Adds a signature field with a reserved /Contents (reserve bytes) in the
 * revision being written: kind "/Sig" with /SubFilter /ETSI.CAdES.detached
 * and /M, or "/DocTimeStamp" with /ETSI.RFC3161. */
static qtsp_status add_sig_field(pdf *p, int doc_ts, int certification, int64_t when,
                                 size_t reserve, sig_slot *slot)
{
    qpdf_oh root = qpdf_get_root(p->q), page = 0, af = 0, perms = 0;
    TRY(qerr(p, "PDF catalog"));
    TRY(mdp_check(p, root, certification));
    TRY(first_page(p, root, &page));
    TRY(sub_dict(p, root, "/AcroForm", &af));
    if (certification) {
        qpdf_oh fields = qpdf_oh_get_key(p->q, af, "/Fields");
        ENSURE(!qpdf_oh_is_array(p->q, fields) || qpdf_oh_get_array_n_items(p->q, fields) == 0 ||
                   !qpdf_oh_has_key(p->q, af, "/SigFlags"),
               QTSP_ERR_STATE, "a certification signature must be the first signature");
    }
    long long sig = new_obj(p), field = new_obj(p);
    TRY(append_ref(p, root, page, "/Annots", field));
    TRY(append_ref(p, root, af, "/Fields", field));
    qpdf_oh_replace_key(p->q, af, "/SigFlags", qpdf_oh_new_integer(p->q, 3));
    TRY(dirty(p, qpdf_oh_is_indirect(p->q, af) ? af : root));
    if (certification) {
        TRY(sub_dict(p, root, "/Perms", &perms));
        qpdf_oh_replace_key(p->q, perms, "/DocMDP", qpdf_get_object_by_id(p->q, (int)sig, 0));
        TRY(dirty(p, qpdf_oh_is_indirect(p->q, perms) ? perms : root));
    }
    TRY(qerr(p, "PDF update"));

    TRY(obj_begin(p, sig, 0));
    if (doc_ts) {
        TRY(qtsp_buf_puts(p->out, "<< /Type /DocTimeStamp /Filter /Adobe.PPKLite "
                                  "/SubFilter /ETSI.RFC3161 "));
    } else {
        struct tm tm;
        TRY(qtsp_gmtime(when, &tm));
        TRY(qtsp_buf_printf(p->out,
                            "<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
                            "/M (D:%04d%02d%02d%02d%02d%02d+00'00') ",
                            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                            tm.tm_sec));
        if (certification)
            TRY(qtsp_buf_puts(p->out, "/Reference [<< /Type /SigRef /TransformMethod /DocMDP "
                                      "/TransformParams << /Type /TransformParams /P 2 /V /1.2 "
                                      ">> >>] "));
    }
    TRY(qtsp_buf_puts(p->out, "/ByteRange [0 "));
    slot->br = pos(p);
    TRY(qtsp_buf_puts(p->out, "0000000000 0000000000 0000000000] /Contents "));
    slot->lt = pos(p);
    TRY(qtsp_buf_reserve(p->out, 2 * reserve + 8));
    unsigned char *h = p->out->data + p->out->len;
    h[0] = '<';
    memset(h + 1, '0', 2 * reserve);
    h[1 + 2 * reserve] = '>';
    p->out->len += 2 + 2 * reserve;
    slot->gt = pos(p);
    TRY(qtsp_buf_puts(p->out, " >>"));
    TRY(obj_end(p));

    TRY(obj_begin(p, field, 0));
    TRY(qtsp_buf_printf(p->out,
                        "<< /Type /Annot /Subtype /Widget /FT /Sig /T (%s%lld) /V %lld 0 R "
                        "/F 132 /Rect [0 0 0 0] /P %d %d R >>",
                        doc_ts ? "DocTimeStamp" : "Signature", sig, sig,
                        qpdf_oh_get_object_id(p->q, page), qpdf_oh_get_generation(p->q, page)));
    return obj_end(p);
}

/* Once the revision is complete: patches the ByteRange and hashes the two
 * ranges with md into dg. */
static qtsp_status byte_range(pdf *p, const sig_slot *s, const EVP_MD *md, unsigned char *dg,
                              unsigned int *dlen)
{
    size_t total = pos(p);
    char nums[48];
    int n = snprintf(nums, sizeof nums, "%010zu %010zu %010zu", s->lt, s->gt, total - s->gt);
    ENSURE(n == 32, QTSP_ERR_TOO_BIG, "PDF too large for the ByteRange");
    unsigned char *d = p->out->data + p->base;
    memcpy(d + s->br, nums, (size_t)n);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, md, NULL) == 1 && EVP_DigestUpdate(c, d, s->lt) == 1 &&
             EVP_DigestUpdate(c, d + s->gt, total - s->gt) == 1 &&
             EVP_DigestFinal_ex(c, dg, dlen) == 1;
    EVP_MD_CTX_free(c);
    ENSURE(ok, QTSP_ERR_CRYPTO, "digest of the byte range");
    return QTSP_OK;
}

/* Writes der as hex into the reserved /Contents. */
static qtsp_status fill(pdf *p, const sig_slot *s, const qtsp_buf *der)
{
    ENSURE(2 * der->len <= s->gt - s->lt - 2, QTSP_ERR_TOO_BIG,
           "signature of %zu bytes does not fit its reserve", der->len);
    char *h = (char *)p->out->data + p->base + s->lt + 1;
    qtsp_hex_encode(der->data, der->len, h);
    h[2 * der->len] = '0'; /* the NUL lands in the reserve: zeros again */
    return QTSP_OK;
}

/* The DSS (EN 319 142-1 5.4.3): the signer's certificate and what validates
 * it and the time-stamps, the OCSP answer for it, the CRLs. */
static qtsp_status add_dss(pdf *p, const qtsp_ades_services *sv, const qtsp_ades_signer *s)
{
    qtsp_status rc = QTSP_OK;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509_CRL) *crls = NULL;
    qtsp_buf ocsp, der;
    qtsp_buf_init(&ocsp, ADES_TOKEN_MAX);
    qtsp_buf_init(&der, ADES_TOKEN_MAX);
    qpdf_oh root = qpdf_get_root(p->q), dss = 0;
    size_t boff = 0, blen = 0;
    TRY_OUT(ades_ocsp(sv, s->cert, &ocsp, &boff, &blen));
    TRY_OUT(ades_validation_certs(sv, s, &certs));
    TRY_OUT(sub_dict(p, root, "/DSS", &dss));
    ENSURE_OUT(sk_X509_insert(certs, s->cert, 0) > 0, QTSP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < sk_X509_num(certs); i++) {
        qtsp_buf_reset(&der);
        unsigned char *q = NULL;
        int n = i2d_X509(sk_X509_value(certs, i), &q);
        ENSURE_OUT(n > 0, QTSP_ERR_CRYPTO, "certificate encoding");
        long long num = new_obj(p);
        rc = stream_obj(p, num, q, (size_t)n);
        OPENSSL_free(q);
        TRY_OUT(rc);
        TRY_OUT(append_ref(p, root, dss, "/Certs", num));
    }
    long long num = new_obj(p);
    TRY_OUT(stream_obj(p, num, ocsp.data, ocsp.len)); /* the whole OCSPResponse */
    TRY_OUT(append_ref(p, root, dss, "/OCSPs", num));
    TRY_OUT(ades_crls(sv, &crls));
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        unsigned char *q = NULL;
        int n = i2d_X509_CRL(sk_X509_CRL_value(crls, i), &q);
        ENSURE_OUT(n > 0, QTSP_ERR_CRYPTO, "CRL encoding");
        num = new_obj(p);
        rc = stream_obj(p, num, q, (size_t)n);
        OPENSSL_free(q);
        TRY_OUT(rc);
        TRY_OUT(append_ref(p, root, dss, "/CRLs", num));
    }
    TRY_OUT(dirty(p, qpdf_oh_is_indirect(p->q, dss) ? dss : root));
    TRY_OUT(finish_rev(p));
out:
    sk_X509_free(certs);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    qtsp_buf_cleanup(&ocsp);
    qtsp_buf_cleanup(&der);
    return rc;
}

qtsp_status qtsp_pades_check(const unsigned char *in, size_t len, int certification)
{
    ENSURE(in && len <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID, "document larger than %zu bytes",
           QTSP_ADES_MAX_DOC);
    pdf p;
    qtsp_status rc = pdf_open(&p, in, len, NULL);
    if (rc == QTSP_OK) {
        qpdf_oh root = qpdf_get_root(p.q), page = 0;
        rc = qerr(&p, "PDF catalog");
        if (rc == QTSP_OK)
            rc = mdp_check(&p, root, certification);
        if (rc == QTSP_OK)
            rc = first_page(&p, root, &page);
    }
    pdf_close(&p);
    return rc;
}

qtsp_status qtsp_pades_sign(const qtsp_ades_services *sv, const qtsp_ades_signer *s,
                            const qtsp_pades_opts *o, const unsigned char *in, size_t len,
                            qtsp_buf *out)
{
    ENSURE(s && s->key && s->cert && s->alg.md && o && in && out, QTSP_ERR_INVALID,
           "nothing to sign");
    ENSURE(len <= QTSP_ADES_MAX_DOC, QTSP_ERR_INVALID, "document larger than %zu bytes",
           QTSP_ADES_MAX_DOC);
    ENSURE(o->level >= QTSP_ADES_B_B && o->level <= QTSP_ADES_B_LTA, QTSP_ERR_INVALID,
           "unknown conformance level");
    ENSURE(o->level < QTSP_ADES_B_T || (sv && sv->tsa), QTSP_ERR_UNSUPPORTED,
           "no time-stamping authority for B-T and up");
    size_t start = out->len;
    qtsp_status rc = QTSP_OK;
    qtsp_buf cms;
    qtsp_buf_init(&cms, SIG_RESERVE);
    pdf p;
    sig_slot slot;
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    TRY_OUT(pdf_open(&p, in, len, out));

    /* revision 1: the signature (B-B or B-T inside; EN 319 142-1 6.3) */
    TRY_OUT(add_sig_field(&p, 0, o->certification, o->signing_time, SIG_RESERVE, &slot));
    TRY_OUT(finish_rev(&p));
    TRY_OUT(byte_range(&p, &slot, s->alg.md, dg, &dlen));
    ades_cms_req r = {dg,   dlen, NULL, 0,
                      NULL, 0,    0,    o->level >= QTSP_ADES_B_T ? QTSP_ADES_B_T : QTSP_ADES_B_B};
    TRY_OUT(ades_cms_sign(sv, s, &r, &cms));
    TRY_OUT(fill(&p, &slot, &cms));

    if (o->level >= QTSP_ADES_B_LT) /* revision 2: the DSS */
        TRY_OUT(add_dss(&p, sv, s));
    if (o->level >= QTSP_ADES_B_LTA) { /* revision 3: the document time-stamp */
        TRY_OUT(add_sig_field(&p, 1, 0, 0, DTS_RESERVE, &slot));
        TRY_OUT(finish_rev(&p));
        TRY_OUT(byte_range(&p, &slot, EVP_sha256(), dg, &dlen));
        qtsp_buf_reset(&cms);
        TRY_OUT(ades_timestamp(sv, dg, &cms));
        TRY_OUT(fill(&p, &slot, &cms));
    }
out:
    if (rc != QTSP_OK)
        out->len = start;
    pdf_close(&p);
    qtsp_buf_cleanup(&cms);
    return rc;
}
