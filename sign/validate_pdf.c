/* PAdES validation (ETSI EN 319 142-1, EN 319 102-1): the signatures of a
 * PDF are found through the AcroForm's signature fields (ISO 32000-1
 * 12.7.4.5, 12.8.1), each one's /ByteRange must leave out exactly its
 * /Contents hex string (12.8.1: "the entire file, excluding the signature
 * value"), and its CMS is checked by sign/validate.c over the two ranges.
 * Document time-stamps (/ETSI.RFC3161, EN 319 142-1 5.4.4) are checked here
 * and serve as proofs of existence for what they cover; the DSS (5.4.3)
 * gives certificates and OCSP answers. qpdf reads the PDF (read only, no
 * repair: a damaged file is refused). */
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <qpdf/qpdf-c.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/der.h"
#include "core/time.h"
#include "sign/validate_int.h"

/* Depth of the field tree we walk, and fields visited. */
#define FIELD_DEPTH 8
#define FIELDS_MAX 512

typedef struct pdf_sig {
    qpdf_oh v;       /* the signature dictionary */
    long long br[4]; /* ByteRange */
    int doc_ts;      /* /ETSI.RFC3161 document time-stamp */
} pdf_sig;

typedef struct pdf_ctx {
    qpdf_data q;
    const unsigned char *pdf;
    size_t len;
    pdf_sig sigs[VAL_MAX_SIGS];
    size_t n;
} pdf_ctx;

static qtsp_status qerr(qpdf_data q, const char *what)
{
    if (qpdf_has_error(q)) {
        qpdf_error e = qpdf_get_error(q);
        FAIL(QTSP_ERR_INVALID, "file: %s: %s", what, qpdf_get_error_full_text(q, e));
    }
    return QTSP_OK;
}

/* A signature dictionary (the /V of a /FT /Sig field), once. */
static qtsp_status add_sig(pdf_ctx *p, qpdf_oh v)
{
    qpdf_data q = p->q;
    qpdf_oh br = qpdf_oh_get_key(q, v, "/ByteRange");
    if (!qpdf_oh_is_array(q, br) || !qpdf_oh_has_key(q, v, "/Contents"))
        return QTSP_OK; /* an unsigned field */
    for (size_t i = 0; i < p->n; i++)
        if (qpdf_oh_get_object_id(q, p->sigs[i].v) == qpdf_oh_get_object_id(q, v) &&
            qpdf_oh_get_object_id(q, v) != 0)
            return QTSP_OK;
    ENSURE(p->n < VAL_MAX_SIGS, QTSP_ERR_TOO_BIG, "file: more than %d signatures", VAL_MAX_SIGS);
    pdf_sig *s = &p->sigs[p->n];
    memset(s, 0, sizeof *s);
    s->v = v;
    s->doc_ts = qpdf_oh_is_name_and_equals(q, qpdf_oh_get_key(q, v, "/SubFilter"), "/ETSI.RFC3161");
    int good = qpdf_oh_get_array_n_items(q, br) == 4;
    for (int i = 0; good && i < 4; i++)
        good = qpdf_oh_get_value_as_longlong(q, qpdf_oh_get_array_item(q, br, i), &s->br[i]) &&
               s->br[i] >= 0;
    if (!good)
        s->br[0] = -1; /* judged below: a format failure */
    p->n++;
    return QTSP_OK;
}

static qtsp_status walk(pdf_ctx *p, qpdf_oh fields, int depth, int *visited)
{
    qpdf_data q = p->q;
    if (!qpdf_oh_is_array(q, fields))
        return QTSP_OK;
    ENSURE(depth < FIELD_DEPTH, QTSP_ERR_INVALID, "file: form field tree deeper than %d",
           FIELD_DEPTH);
    int n = qpdf_oh_get_array_n_items(q, fields);
    for (int i = 0; i < n; i++) {
        ENSURE(++*visited <= FIELDS_MAX, QTSP_ERR_TOO_BIG, "file: more than %d form fields",
               FIELDS_MAX);
        qpdf_oh f = qpdf_oh_get_array_item(q, fields, i);
        if (!qpdf_oh_is_dictionary(q, f))
            continue;
        qpdf_oh v = qpdf_oh_get_key(q, f, "/V");
        if (qpdf_oh_is_name_and_equals(q, qpdf_oh_get_key(q, f, "/FT"), "/Sig") &&
            qpdf_oh_is_dictionary(q, v))
            TRY(add_sig(p, v));
        TRY(walk(p, qpdf_oh_get_key(q, f, "/Kids"), depth + 1, visited));
    }
    return QTSP_OK;
}

/* /M "D:YYYYMMDDHHmmSS" with an optional Z or +HH'mm' / -HH'mm' (ISO 32000-1
 * 7.9.4); 0 when absent or malformed. */
static int64_t pdf_date(const char *s)
{
    if (!s || strncmp(s, "D:", 2) != 0)
        return 0;
    s += 2;
    int v[6] = {0, 1, 1, 0, 0, 0}, w[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        if (i > 0 && (*s < '0' || *s > '9'))
            break;
        v[i] = 0;
        for (int k = 0; k < w[i]; k++, s++) {
            if (*s < '0' || *s > '9')
                return 0;
            v[i] = v[i] * 10 + (*s - '0');
        }
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return 0;
    int64_t t = qtsp_timegm(&tm);
    if (*s == '+' || *s == '-') {
        int sign = *s == '+' ? 1 : -1, hh = 0, mm = 0;
        s++;
        if (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9') {
            hh = (s[0] - '0') * 10 + (s[1] - '0');
            s += 2;
            if (*s == '\'')
                s++;
            if (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9')
                mm = (s[0] - '0') * 10 + (s[1] - '0');
        }
        t -= sign * (hh * 3600 + mm * 60);
    }
    return t;
}

/* Checks s's byte range against the file and decodes its /Contents hex
 * string from the gap into der (the DER without the zero padding).
 * 0 with why when the range or the string is not as ISO 32000-1 12.8.1 has it. */
static int sig_bytes(const pdf_ctx *p, const pdf_sig *s, unsigned char **der, size_t *der_len,
                     char *why, size_t cap)
{
    const long long *b = s->br;
    size_t len = p->len;
    if (b[0] != 0 || b[1] <= 0 || b[2] <= b[1] + 1 || (unsigned long long)b[2] > len ||
        (unsigned long long)b[3] > len - (size_t)b[2]) {
        snprintf(why, cap, "the ByteRange is malformed or outside the file");
        return 0;
    }
    size_t lt = (size_t)b[1], gt = (size_t)b[2];
    if (p->pdf[lt] != '<' || p->pdf[gt - 1] != '>' || (gt - lt - 2) % 2 != 0) {
        snprintf(why, cap, "the ByteRange does not leave out exactly the /Contents hex string");
        return 0;
    }
    size_t n = (gt - lt - 2) / 2;
    unsigned char *d = malloc(n ? n : 1);
    if (!d) {
        snprintf(why, cap, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = qtsp_hex_value(p->pdf[lt + 1 + 2 * i]),
            lo = qtsp_hex_value(p->pdf[lt + 2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            free(d);
            snprintf(why, cap, "the ByteRange gap is not one hex string");
            return 0;
        }
        d[i] = (unsigned char)(hi << 4 | lo);
    }
    /* the signature dictionary's /Contents must be these very bytes */
    size_t cl = 0;
    const char *c =
        qpdf_oh_get_binary_string_value(p->q, qpdf_oh_get_key(p->q, s->v, "/Contents"), &cl);
    unsigned char tag = 0;
    size_t tl = 0, hl = 0;
    if (!c || cl != n || memcmp(c, d, n) != 0) {
        free(d);
        snprintf(why, cap, "/Contents is not the string the ByteRange leaves out");
        return 0;
    }
    if (qtsp_der_get_hdr(d, n, &tag, &tl, &hl) != QTSP_OK || tag != QTSP_DER_SEQUENCE ||
        hl + tl > n) {
        qtsp_err_clear();
        free(d);
        snprintf(why, cap, "/Contents holds no DER signature");
        return 0;
    }
    for (size_t i = hl + tl; i < n; i++)
        if (d[i] != 0) {
            free(d);
            snprintf(why, cap, "/Contents has bytes after the signature other than padding");
            return 0;
        }
    *der = d;
    *der_len = hl + tl;
    return 1;
}

/* The DSS's /Certs and /OCSPs (EN 319 142-1 5.4.3). */
static void read_dss(pdf_ctx *p, STACK_OF(X509) * certs, STACK_OF(OCSP_BASICRESP) * ocsps, int *has)
{
    qpdf_data q = p->q;
    qpdf_oh dss = qpdf_oh_get_key(q, qpdf_get_root(q), "/DSS");
    *has = qpdf_oh_is_dictionary(q, dss);
    if (!*has)
        return;
    static const char *const keys[2] = {"/Certs", "/OCSPs"};
    for (int k = 0; k < 2; k++) {
        qpdf_oh arr = qpdf_oh_get_key(q, dss, keys[k]);
        int n = qpdf_oh_is_array(q, arr) ? qpdf_oh_get_array_n_items(q, arr) : 0;
        for (int i = 0; i < n && i < (k ? VAL_MAX_OCSP : VAL_MAX_CERTS); i++) {
            qpdf_oh st = qpdf_oh_get_array_item(q, arr, i);
            unsigned char *buf = NULL;
            size_t len = 0;
            QPDF_BOOL filtered = QPDF_FALSE;
            if (!qpdf_oh_is_stream(q, st) ||
                (qpdf_oh_get_stream_data(q, st, qpdf_dl_generalized, &filtered, &buf, &len) &
                 QPDF_ERRORS) ||
                !buf || len > ((size_t)1 << 20)) {
                free(buf);
                continue;
            }
            const unsigned char *d = buf;
            if (k == 0) {
                X509 *x = d2i_X509(NULL, &d, (long)len);
                if (x && d == buf + len && sk_X509_push(certs, x) > 0)
                    x = NULL;
                X509_free(x);
            } else {
                OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &d, (long)len);
                OCSP_BASICRESP *b = r && d == buf + len ? OCSP_response_get1_basic(r) : NULL;
                if (b && sk_OCSP_BASICRESP_push(ocsps, b) > 0)
                    b = NULL;
                OCSP_BASICRESP_free(b);
                OCSP_RESPONSE_free(r);
            }
            free(buf);
        }
    }
    while (qpdf_more_warnings(q))
        (void)qpdf_next_warning(q);
    ERR_clear_error();
}

static int by_end(const void *a, const void *b)
{
    const pdf_sig *x = a, *y = b;
    long long ex = x->br[2] + x->br[3], ey = y->br[2] + y->br[3];
    return ex < ey ? -1 : ex > ey;
}

qtsp_status val_pdf(const qtsp_validator *v, const unsigned char *pdf, size_t len, int64_t now,
                    json_t *sigs)
{
    qtsp_status rc = QTSP_OK;
    pdf_ctx p;
    memset(&p, 0, sizeof p);
    p.pdf = pdf;
    p.len = len;
    STACK_OF(X509) *certs = sk_X509_new_null();
    STACK_OF(OCSP_BASICRESP) *ocsps = sk_OCSP_BASICRESP_new_null();
    val_poe poes[VAL_MAX_SIGS];
    size_t n_poes = 0;
    unsigned char *der = NULL;
    ENSURE_OUT(certs && ocsps, QTSP_ERR_NOMEM, "out of memory");
    p.q = qpdf_init();
    ENSURE_OUT(p.q != NULL, QTSP_ERR_NOMEM, "out of memory");
    qpdf_silence_errors(p.q);
    qpdf_set_suppress_warnings(p.q, QPDF_TRUE);
    qpdf_set_attempt_recovery(p.q, QPDF_FALSE);
    if (qpdf_read_memory(p.q, "file", (const char *)pdf, (unsigned long long)len, NULL) &
        QPDF_ERRORS)
        TRY_OUT(qerr(p.q, "the PDF does not parse"));
    ENSURE_OUT(!qpdf_is_encrypted(p.q), QTSP_ERR_INVALID, "file: encrypted PDFs are not validated");
    qpdf_oh root = qpdf_get_root(p.q);
    TRY_OUT(qerr(p.q, "the PDF has no catalog"));
    int visited = 0;
    qpdf_oh af = qpdf_oh_get_key(p.q, root, "/AcroForm");
    if (qpdf_oh_is_dictionary(p.q, af))
        TRY_OUT(walk(&p, qpdf_oh_get_key(p.q, af, "/Fields"), 0, &visited));
    TRY_OUT(qerr(p.q, "the PDF's form does not parse"));
    int has_dss = 0;
    read_dss(&p, certs, ocsps, &has_dss);
    qsort(p.sigs, p.n, sizeof p.sigs[0], by_end);
    STACK_OF(X509) *pool = certs;
    for (int i = 0; i < sk_X509_num(v->intermediates); i++)
        if (X509_up_ref(sk_X509_value(v->intermediates, i)) == 1 &&
            sk_X509_push(pool, sk_X509_value(v->intermediates, i)) <= 0)
            X509_free(sk_X509_value(v->intermediates, i));

    /* document time-stamps first: they are proofs for the signatures */
    for (size_t i = 0; i < p.n; i++) {
        pdf_sig *s = &p.sigs[i];
        if (!s->doc_ts || s->br[0] < 0)
            continue;
        val_poe *d = &poes[n_poes++];
        memset(d, 0, sizeof *d);
        size_t dl = 0;
        d->covers = (size_t)(s->br[2] + s->br[3]);
        if (!sig_bytes(&p, s, &der, &dl, d->why, sizeof d->why))
            continue;
        const unsigned char *ch[2] = {pdf, pdf + s->br[2]};
        size_t cl[2] = {(size_t)s->br[1], (size_t)s->br[3]};
        d->ok = val_timestamp(v, der, dl, ch, cl, 2, pool, &d->time, d->why, sizeof d->why);
        free(der);
        der = NULL;
    }
    for (size_t i = 0; i < p.n; i++) {
        pdf_sig *s = &p.sigs[i];
        if (s->doc_ts)
            continue;
        char why[160] = "the ByteRange is malformed";
        size_t dl = 0;
        if (s->br[0] < 0 || !sig_bytes(&p, s, &der, &dl, why, sizeof why)) {
            TRY_OUT(val_format_failure(sigs, why));
            continue;
        }
        const char *m = NULL;
        size_t ml = 0;
        qpdf_oh mo = qpdf_oh_get_key(p.q, s->v, "/M");
        char mbuf[64] = "";
        if (qpdf_oh_is_string(p.q, mo) &&
            (m = qpdf_oh_get_binary_string_value(p.q, mo, &ml)) != NULL && ml < sizeof mbuf) {
            memcpy(mbuf, m, ml);
            mbuf[ml] = '\0';
        }
        val_sig vs;
        memset(&vs, 0, sizeof vs);
        vs.cms = der;
        vs.cms_len = dl;
        vs.chunk[0] = pdf;
        vs.chunk_len[0] = (size_t)s->br[1];
        vs.chunk[1] = pdf + s->br[2];
        vs.chunk_len[1] = (size_t)s->br[3];
        vs.n_chunks = 2;
        vs.format = "PAdES";
        vs.pades = 1;
        vs.claimed_time = pdf_date(mbuf);
        vs.certs = certs;
        vs.ocsps = ocsps;
        vs.dss = has_dss;
        vs.end = (size_t)(s->br[2] + s->br[3]);
        vs.whole_file = vs.end == len || (vs.end + 1 == len && (pdf[len - 1] == '\n')) ||
                        (vs.end + 2 == len && pdf[len - 2] == '\r' && pdf[len - 1] == '\n');
        vs.poes = poes;
        vs.n_poes = n_poes;
        qtsp_status r = val_cms(v, &vs, now, sigs);
        free(der);
        der = NULL;
        if (r == QTSP_ERR_INVALID) {
            TRY_OUT(val_format_failure(sigs, qtsp_err_what()));
            qtsp_err_clear();
            continue;
        }
        TRY_OUT(r);
    }
out:
    free(der);
    sk_X509_pop_free(certs, X509_free);
    sk_OCSP_BASICRESP_pop_free(ocsps, OCSP_BASICRESP_free);
    if (p.q)
        qpdf_cleanup(&p.q);
    return rc;
}
