/* Unit tests for core/der.c: primitives, the writer (fixed and growing,
 * open/close and size-first) and the strict reader. */
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/der.h"
#include "core/err.h"
#include "core/time.h"
#include "tests/lib/qtest.h"

#define HEX_EQ(p, n, lit) (n == sizeof(lit) - 1 && memcmp(p, lit, n) == 0)

static void test_der_len_sizes_and_headers(void)
{
    const struct {
        size_t len;
        const char *hdr;
        size_t hl;
    } cases[] = {
        {0, "\x30\x00", 2},
        {127, "\x30\x7f", 2},
        {128, "\x30\x81\x80", 3},
        {255, "\x30\x81\xff", 3},
        {256, "\x30\x82\x01\x00", 4},
        {65535, "\x30\x82\xff\xff", 4},
        {65536, "\x30\x83\x01\x00\x00", 5},
        {0x1000000, "\x30\x84\x01\x00\x00\x00", 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char b[QTSP_DER_HDR_MAX];
        size_t n = qtsp_der_put_hdr(b, QTSP_DER_SEQUENCE, cases[i].len);
        CU_ASSERT_EQUAL(n, cases[i].hl);
        CU_ASSERT(memcmp(b, cases[i].hdr, n) == 0);
        CU_ASSERT_EQUAL(qtsp_der_tlv_size(cases[i].len), cases[i].hl + cases[i].len);
        CU_ASSERT_EQUAL(qtsp_der_len_size(cases[i].len), cases[i].hl - 1);
    }
}

static void test_der_uint_matches_openssl(void)
{
    unsigned char mag[40];
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(i % 40);
        CU_ASSERT_EQUAL_FATAL(RAND_bytes(mag, sizeof mag), 1);
        if (i % 3 == 0 && n)
            mag[0] = 0; /* leading zeros are dropped */
        if (i % 5 == 0 && n > 1)
            mag[0] = 0, mag[1] = 0x80;
        BIGNUM *bn = BN_bin2bn(mag, (int)n, NULL);
        ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
        unsigned char *ref = NULL;
        int rl = i2d_ASN1_INTEGER(ai, &ref);
        unsigned char out[64];
        size_t ol = qtsp_der_put_uint(out, QTSP_DER_INTEGER, mag, n);
        CU_ASSERT_EQUAL(ol, (size_t)rl);
        CU_ASSERT_EQUAL(qtsp_der_uint_size(mag, n), ol);
        CU_ASSERT(rl > 0 && memcmp(out, ref, ol) == 0);
        qtsp_der_r v = {out + 2, ol - 2};
        CU_ASSERT_EQUAL(qtsp_der_check_int(&v), QTSP_OK);
        OPENSSL_free(ref);
        ASN1_INTEGER_free(ai);
        BN_free(bn);
    }
}

static void test_der_u64_edges(void)
{
    const struct {
        uint64_t v;
        const char *der;
    } cases[] = {
        {0, "\x02\x01\x00"},
        {127, "\x02\x01\x7f"},
        {128, "\x02\x02\x00\x80"},
        {256, "\x02\x02\x01\x00"},
        {UINT64_MAX, "\x02\x09\x00\xff\xff\xff\xff\xff\xff\xff\xff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char b[16];
        size_t n = qtsp_der_put_u64(b, QTSP_DER_INTEGER, cases[i].v);
        size_t want = (size_t)b[1] + 2;
        CU_ASSERT_EQUAL(n, want);
        CU_ASSERT(memcmp(b, cases[i].der, n) == 0);
        CU_ASSERT_EQUAL(qtsp_der_u64_size(cases[i].v), n);
        qtsp_der_r r = {b, n}, c;
        uint64_t back = 1;
        CU_ASSERT_EQUAL(qtsp_der_get(&r, QTSP_DER_INTEGER, &c, NULL), QTSP_OK);
        CU_ASSERT_EQUAL(qtsp_der_read_u64(&c, &back), QTSP_OK);
        CU_ASSERT_EQUAL(back, cases[i].v);
        CU_ASSERT_EQUAL(qtsp_der_done(&r), QTSP_OK);
    }
    unsigned char e[3];
    CU_ASSERT_EQUAL(qtsp_der_put_u64(e, QTSP_DER_ENUMERATED, 6), 3);
    CU_ASSERT(memcmp(e, "\x0a\x01\x06", 3) == 0);
}

static void test_der_writer_open_close_short_and_long(void)
{
    static unsigned char content[70000];
    memset(content, 0xab, sizeof content);
    const size_t sizes[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *buf = malloc(n + 32);
        CU_ASSERT_FATAL(buf != NULL);
        qtsp_der_w w;
        qtsp_der_w_init(&w, buf, n + 32);
        qtsp_der_raw(&w, "\x01", 1); /* something before */
        size_t m = qtsp_der_open(&w, QTSP_DER_OCTET_STRING);
        qtsp_der_raw(&w, content, n);
        qtsp_der_close(&w, m);
        qtsp_der_raw(&w, "\x02", 1); /* and after */
        size_t len = 0;
        CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &len), QTSP_OK);
        CU_ASSERT_EQUAL(len, 2 + qtsp_der_tlv_size(n));
        unsigned char hdr[QTSP_DER_HDR_MAX];
        size_t hl = qtsp_der_put_hdr(hdr, QTSP_DER_OCTET_STRING, n);
        CU_ASSERT(buf[0] == 1 && memcmp(buf + 1, hdr, hl) == 0 &&
                  memcmp(buf + 1 + hl, content, n) == 0 && buf[len - 1] == 2);
        free(buf);
    }
}

/* The same nested structure written with open/close and size-first. */
static void test_der_writer_nested_equals_size_first(void)
{
    unsigned char big[300];
    memset(big, 0x11, sizeof big);
    unsigned char a[1024], b[1024];
    qtsp_der_w w;
    qtsp_der_w_init(&w, a, sizeof a);
    size_t s1 = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    size_t s2 = qtsp_der_open(&w, QTSP_DER_CTX_C(0));
    qtsp_der_u64(&w, QTSP_DER_INTEGER, 1);
    qtsp_der_close(&w, s2);
    qtsp_der_tlv(&w, QTSP_DER_OCTET_STRING, big, sizeof big);
    qtsp_der_bool(&w, 1);
    qtsp_der_null(&w);
    qtsp_der_bits(&w, "\xca\xfe", 2);
    qtsp_der_oid(&w, (const unsigned char *)"\x2a\x03", 2);
    qtsp_der_close(&w, s1);
    size_t la = 0;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &la), QTSP_OK);

    size_t inner = 3, os = qtsp_der_tlv_size(sizeof big);
    size_t content = qtsp_der_tlv_size(inner) + os + 3 + 2 + 5 + 4;
    qtsp_der_w_init(&w, b, sizeof b);
    qtsp_der_hdr(&w, QTSP_DER_SEQUENCE, content);
    qtsp_der_hdr(&w, QTSP_DER_CTX_C(0), inner);
    unsigned char *at = qtsp_der_w_take(&w, qtsp_der_u64_size(1));
    CU_ASSERT_FATAL(at != NULL);
    qtsp_der_put_u64(at, QTSP_DER_INTEGER, 1);
    qtsp_der_hdr(&w, QTSP_DER_OCTET_STRING, sizeof big);
    qtsp_der_raw(&w, big, sizeof big);
    qtsp_der_raw(&w, "\x01\x01\xff\x05\x00\x03\x03\x00\xca\xfe\x06\x02\x2a\x03", 14);
    size_t lb = 0;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &lb), QTSP_OK);
    CU_ASSERT_EQUAL(la, lb);
    CU_ASSERT(memcmp(a, b, la) == 0);
    CU_ASSERT_EQUAL(la, qtsp_der_tlv_size(content));
}

static void test_der_writer_fixed_buffer_overflow_is_sticky(void)
{
    unsigned char b[8];
    qtsp_der_w w;
    qtsp_err_clear();
    qtsp_der_w_init(&w, b, sizeof b);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    qtsp_der_raw(&w, "0123456789", 10); /* does not fit */
    qtsp_der_raw(&w, "x", 1);           /* would fit: ignored after the failure */
    qtsp_der_close(&w, m);
    size_t len = 99;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &len), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(len, 99);
    CU_ASSERT_EQUAL(w.len, 2);
    CU_ASSERT(strstr(qtsp_err_message(), "does not fit") != NULL);
    qtsp_err_clear();

    /* a close that needs a longer length than there is room for */
    unsigned char c[130];
    qtsp_der_w_init(&w, c, sizeof c);
    m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    unsigned char fill[128] = {0};
    qtsp_der_raw(&w, fill, sizeof fill);
    qtsp_der_close(&w, m);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, NULL), QTSP_ERR_TOO_BIG);
    qtsp_err_clear();

    /* a close without open */
    qtsp_der_w_init(&w, c, sizeof c);
    qtsp_der_close(&w, 0);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, NULL), QTSP_ERR_INTERNAL);
    qtsp_err_clear();
}

static void test_der_writer_grows_a_buf_up_to_its_max(void)
{
    qtsp_buf b;
    qtsp_buf_init(&b, 100000);
    CU_ASSERT_EQUAL(qtsp_buf_append(&b, "pre", 3), QTSP_OK);
    qtsp_der_w w;
    qtsp_der_w_init_buf(&w, &b);
    size_t m = qtsp_der_open(&w, QTSP_DER_SEQUENCE);
    for (int i = 0; i < 1000; i++)
        qtsp_der_u64(&w, QTSP_DER_INTEGER, (uint64_t)i * 1000003u);
    qtsp_der_close(&w, m);
    size_t len = 0;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &len), QTSP_OK);
    CU_ASSERT_EQUAL(len, b.len);
    CU_ASSERT(memcmp(b.data, "pre", 3) == 0);
    CU_ASSERT_EQUAL(b.data[b.len], 0);
    qtsp_der_r r = {b.data + 3, b.len - 3}, seq, v;
    CU_ASSERT_EQUAL(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_done(&r), QTSP_OK);
    for (int i = 0; i < 1000; i++) {
        uint64_t x = 0;
        CU_ASSERT_EQUAL_FATAL(qtsp_der_get(&seq, QTSP_DER_INTEGER, &v, NULL), QTSP_OK);
        CU_ASSERT_EQUAL_FATAL(qtsp_der_read_u64(&v, &x), QTSP_OK);
        CU_ASSERT_EQUAL_FATAL(x, (uint64_t)i * 1000003u);
    }
    CU_ASSERT_EQUAL(qtsp_der_done(&seq), QTSP_OK);
    qtsp_buf_cleanup(&b);

    /* past the maximum: TOO_BIG, the buffer keeps what it had */
    qtsp_buf_init(&b, 64);
    qtsp_der_w_init_buf(&w, &b);
    unsigned char big[100] = {0};
    qtsp_der_tlv(&w, QTSP_DER_OCTET_STRING, big, sizeof big);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, NULL), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(b.len, 0);
    qtsp_buf_cleanup(&b);
    qtsp_err_clear();
}

static void test_der_times_follow_rfc5280_and_rfc3161(void)
{
    unsigned char b[64];
    qtsp_der_w w;
    qtsp_der_w_init(&w, b, sizeof b);
    qtsp_der_time(&w, 1795000000, 0);   /* 2026: UTCTime */
    qtsp_der_time(&w, 1795000000, 1);   /* forced GeneralizedTime */
    qtsp_der_time(&w, 2524608000LL, 0); /* 2050: GeneralizedTime */
    size_t len = 0;
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &len), QTSP_OK);
    CU_ASSERT(HEX_EQ(b, len,
                     "\x17\x0d"
                     "261118110640Z"
                     "\x18\x0f"
                     "20261118110640Z"
                     "\x18\x0f"
                     "20500101000000Z"));
    CU_ASSERT_EQUAL(qtsp_der_time_size(1795000000, 0), 15);
    CU_ASSERT_EQUAL(qtsp_der_time_size(1795000000, 1), 17);
    CU_ASSERT_EQUAL(qtsp_der_time_size(-631152001, 0), 17); /* 1949 */
    CU_ASSERT_EQUAL(qtsp_der_time_size(QTSP_TIME_MAX + 1, 0), 0);
    qtsp_der_r r = {b, len}, v;
    unsigned char tag;
    int64_t t;
    const int64_t want[] = {1795000000, 1795000000, 2524608000LL};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(qtsp_der_next(&r, &tag, &v, NULL), QTSP_OK);
        CU_ASSERT_EQUAL(qtsp_der_read_time(tag, &v, &t), QTSP_OK);
        CU_ASSERT_EQUAL(t, want[i]);
    }
    CU_ASSERT_EQUAL(qtsp_der_done(&r), QTSP_OK);

    /* genTime with milliseconds, trailing zeros trimmed */
    qtsp_der_w_init(&w, b, sizeof b);
    qtsp_der_gentime(&w, 1795000000LL * 1000 + 250);
    qtsp_der_gentime(&w, 1795000000LL * 1000);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, &len), QTSP_OK);
    CU_ASSERT(HEX_EQ(b, len,
                     "\x18\x12"
                     "20261118110640.25Z"
                     "\x18\x0f"
                     "20261118110640Z"));

    /* out of range: a failure, not a clamp */
    qtsp_der_w_init(&w, b, sizeof b);
    qtsp_der_gentime(&w, (QTSP_TIME_MAX + 1) * 1000);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, NULL), QTSP_ERR_INVALID);
    qtsp_der_w_init(&w, b, sizeof b);
    qtsp_der_time(&w, QTSP_TIME_MIN - 1, 0);
    CU_ASSERT_EQUAL(qtsp_der_w_finish(&w, NULL), QTSP_ERR_INVALID);
    size_t n;
    CU_ASSERT_EQUAL(qtsp_der_put_time(b, QTSP_TIME_MAX + 1, 1, &n), QTSP_ERR_INVALID);
    /* a fraction is not an RFC 5280 time */
    qtsp_der_r f = {(const unsigned char *)"20261118110640.5Z", 17};
    CU_ASSERT_EQUAL(qtsp_der_read_time(QTSP_DER_GENTIME, &f, &t), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_read_time(QTSP_DER_OCTET_STRING, &f, &t), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_der_reader_walks_and_checks_tags(void)
{
    const unsigned char in[] = {0x30, 0x08, 0x02, 0x01, 0x05, 0xa0, 0x03, 0x04, 0x01, 0xee};
    qtsp_der_r r = {in, sizeof in}, seq, v, ctx, tlv;
    unsigned char tag = 0;
    CU_ASSERT_EQUAL(qtsp_der_get(&r, QTSP_DER_SEQUENCE, &seq, &tlv), QTSP_OK);
    CU_ASSERT(tlv.p == in && tlv.n == sizeof in);
    CU_ASSERT_EQUAL(qtsp_der_done(&r), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_peek(&seq), QTSP_DER_INTEGER);
    /* wrong tag: an error, the cursor does not move */
    CU_ASSERT_EQUAL(qtsp_der_get(&seq, QTSP_DER_OCTET_STRING, &v, NULL), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_peek(&seq), QTSP_DER_INTEGER);
    CU_ASSERT_EQUAL(qtsp_der_get(&seq, QTSP_DER_INTEGER, &v, NULL), QTSP_OK);
    CU_ASSERT(v.n == 1 && v.p[0] == 5);
    CU_ASSERT_EQUAL(qtsp_der_next(&seq, &tag, &ctx, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(tag, QTSP_DER_CTX_C(0));
    CU_ASSERT_EQUAL(qtsp_der_get(&ctx, QTSP_DER_OCTET_STRING, &v, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_done(&ctx), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_done(&seq), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_peek(&seq), -1);
    CU_ASSERT_EQUAL(qtsp_der_get(&seq, QTSP_DER_INTEGER, &v, NULL), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_der_reader_rejects_bad_encodings(void)
{
    const struct {
        const char *der;
        size_t n;
        const char *why;
    } bad[] = {
        {"\x04\x81\x05hello", 8, "non-minimal long form below 128"},
        {"\x04\x82\x00\x80", 4, "leading zero length byte"},
        {"\x30\x80\x00\x00", 4, "indefinite length"},
        {"\x04\x89\x01\x00\x00\x00\x00\x00\x00\x00\x00", 11, "nine length bytes"},
        {"\x04\x05hell", 6, "content truncated"},
        {"\x04\x82\x01", 3, "length truncated"},
        {"\x04", 1, "header truncated"},
        {"", 0, "empty"},
        {"\x1f\x20\x00", 3, "high tag number"},
        {"\x04\x84\xff\xff\xff\xff", 6, "huge length past the end"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qtsp_der_r r = {(const unsigned char *)bad[i].der, bad[i].n}, v = {NULL, 7};
        unsigned char tag = 0x42;
        qtsp_err_clear();
        if (qtsp_der_next(&r, &tag, &v, NULL) != QTSP_ERR_INVALID)
            CU_FAIL(bad[i].why);
        /* nothing written, cursor unchanged */
        CU_ASSERT(tag == 0x42 && v.p == NULL && v.n == 7);
        CU_ASSERT(r.p == (const unsigned char *)bad[i].der && r.n == bad[i].n);
    }
    /* trailing bytes after one element */
    qtsp_der_r r = {(const unsigned char *)"\x05\x00\x00", 3}, v;
    CU_ASSERT_EQUAL(qtsp_der_get(&r, QTSP_DER_NULL, &v, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(qtsp_der_done(&r), QTSP_ERR_INVALID);
    /* minimal long forms are fine */
    unsigned char ok[3 + 200];
    ok[0] = 0x04, ok[1] = 0x81, ok[2] = 200;
    memset(ok + 3, 0, 200);
    qtsp_der_r g = {ok, sizeof ok};
    CU_ASSERT_EQUAL(qtsp_der_get(&g, QTSP_DER_OCTET_STRING, &v, NULL), QTSP_OK);
    CU_ASSERT_EQUAL(v.n, 200);
    qtsp_err_clear();
}

static void test_der_int_and_oid_checks(void)
{
    const struct {
        const char *c;
        size_t n;
        qtsp_status want;
    } ints[] = {
        {"", 0, QTSP_ERR_INVALID},
        {"\x00", 1, QTSP_OK},
        {"\x00\x7f", 2, QTSP_ERR_INVALID},
        {"\x00\x80", 2, QTSP_OK},
        {"\xff\x80", 2, QTSP_ERR_INVALID},
        {"\xff\x7f", 2, QTSP_OK},
        {"\x80", 1, QTSP_OK},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        qtsp_der_r v = {(const unsigned char *)ints[i].c, ints[i].n};
        CU_ASSERT_EQUAL(qtsp_der_check_int(&v), ints[i].want);
    }
    const struct {
        const char *c;
        size_t n;
        qtsp_status want;
    } oids[] = {
        {"", 0, QTSP_ERR_INVALID},
        {"\x2a\x86\x48", 3, QTSP_OK},
        {"\x2a\x86", 2, QTSP_ERR_INVALID},             /* ends inside a subidentifier */
        {"\x80\x01", 2, QTSP_ERR_INVALID},             /* leading 0x80 */
        {"\x2a\x80\x01", 3, QTSP_ERR_INVALID},         /* 0x80 starting a subidentifier */
        {"\x2a\x81\x80\x01", 4, QTSP_OK},              /* 0x80 inside one */
        {"\x2a\x03\x04\x05\x06", 5, QTSP_ERR_INVALID}, /* longer than max 4 */
    };
    for (size_t i = 0; i < sizeof oids / sizeof oids[0]; i++) {
        qtsp_der_r v = {(const unsigned char *)oids[i].c, oids[i].n};
        CU_ASSERT_EQUAL(qtsp_der_check_oid(&v, 4), oids[i].want);
    }
    uint64_t x = 5;
    qtsp_der_r neg = {(const unsigned char *)"\x80", 1};
    CU_ASSERT_EQUAL(qtsp_der_read_u64(&neg, &x), QTSP_ERR_INVALID);
    qtsp_der_r big = {(const unsigned char *)"\x01\x00\x00\x00\x00\x00\x00\x00\x00", 9};
    CU_ASSERT_EQUAL(qtsp_der_read_u64(&big, &x), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(x, 5);
    int bv = 7;
    qtsp_der_r t = {(const unsigned char *)"\xff", 1}, f = {(const unsigned char *)"\x01", 1};
    CU_ASSERT_EQUAL(qtsp_der_read_bool(&t, &bv), QTSP_OK);
    CU_ASSERT_EQUAL(bv, 1);
    CU_ASSERT_EQUAL(qtsp_der_read_bool(&f, &bv), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

/* ---- moved from test_crl.c with ca/crl_der.c (same assertions) ---- */

static void check_len(size_t len, const unsigned char *want, size_t wl)
{
    unsigned char out[8];
    size_t n = qtsp_der_put_hdr(out, 0x04, len);
    CU_ASSERT_EQUAL(n, 1 + wl);
    CU_ASSERT_EQUAL(qtsp_der_len_size(len), wl);
    CU_ASSERT_EQUAL(qtsp_der_tlv_size(len), 1 + wl + len);
    CU_ASSERT_EQUAL(memcmp(out + 1, want, wl), 0);
    /* round trip through the reader (content bytes are not needed for the
     * header check; give it a large enough input length) */
    unsigned char *in = calloc(1, n + len);
    memcpy(in, out, n);
    unsigned char tag;
    size_t l, hl;
    CU_ASSERT_EQUAL(qtsp_der_get_hdr(in, n + len, &tag, &l, &hl), QTSP_OK);
    CU_ASSERT_EQUAL(tag, 0x04);
    CU_ASSERT_EQUAL(l, len);
    CU_ASSERT_EQUAL(hl, n);
    free(in);
}

static void test_der_length_encodings_at_boundaries(void)
{
    check_len(0, (const unsigned char *)"\x00", 1);
    check_len(127, (const unsigned char *)"\x7f", 1);
    check_len(128, (const unsigned char *)"\x81\x80", 2);
    check_len(255, (const unsigned char *)"\x81\xff", 2);
    check_len(256, (const unsigned char *)"\x82\x01\x00", 3);
    check_len(65535, (const unsigned char *)"\x82\xff\xff", 3);
    check_len(65536, (const unsigned char *)"\x83\x01\x00\x00", 4);
    check_len(16777216, (const unsigned char *)"\x84\x01\x00\x00\x00", 5);
}

static void test_der_reader_rejects_bad_lengths(void)
{
    unsigned char tag;
    size_t l, hl;
    qtsp_err_clear();
    /* indefinite */
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x30\x80\x00\x00", 4, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    /* non-minimal long form for 127 and a leading zero byte */
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x04\x81\x7f", 3, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x04\x82\x00\x80", 4, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    /* content past the input, truncated header */
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x04\x05\x00", 3, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x04", 1, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_get_hdr((const unsigned char *)"\x04\x82\x01", 3, &tag, &l, &hl),
                    QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_der_check_tree_refuses_ber_anywhere(void)
{
    /* SEQUENCE { SEQUENCE { INTEGER 5 }, OCTET STRING { 30 80 } } */
    static const unsigned char ok[] = {0x30, 0x09, 0x30, 0x03, 0x02, 0x01,
                                       0x05, 0x04, 0x02, 0x30, 0x80};
    CU_ASSERT_EQUAL(qtsp_der_check_tree(ok, sizeof ok, 4), QTSP_OK);
    /* the inner SEQUENCE with an indefinite length (BER) */
    static const unsigned char inner[] = {0x30, 0x0b, 0x30, 0x80, 0x02, 0x01,
                                          0x05, 0x00, 0x00, 0x04, 0x00};
    CU_ASSERT_EQUAL(qtsp_der_check_tree(inner, sizeof inner, 4), QTSP_ERR_INVALID);
    /* a non-minimal length inside */
    static const unsigned char longlen[] = {0x30, 0x06, 0x30, 0x81, 0x03, 0x02, 0x01, 0x05};
    CU_ASSERT_EQUAL(qtsp_der_check_tree(longlen, sizeof longlen, 4), QTSP_ERR_INVALID);
    /* the outer one indefinite, trailing bytes, too deep */
    static const unsigned char outer[] = {0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00};
    CU_ASSERT_EQUAL(qtsp_der_check_tree(outer, sizeof outer, 4), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_check_tree(ok, sizeof ok - 1, 4), QTSP_ERR_INVALID);
    static const unsigned char trail[] = {0x02, 0x01, 0x05, 0x00};
    CU_ASSERT_EQUAL(qtsp_der_check_tree(trail, sizeof trail, 4), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(qtsp_der_check_tree(ok, sizeof ok, 0), QTSP_ERR_INVALID);
    qtsp_err_clear();
}

static void test_der_integer_and_time_encodings(void)
{
    unsigned char out[32];
    /* top bit set: a 0x00 is prepended; leading zeros dropped */
    size_t n =
        qtsp_der_put_uint(out, QTSP_DER_INTEGER, (const unsigned char *)"\x00\x00\x80\x01", 4);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(memcmp(out, "\x02\x03\x00\x80\x01", 5), 0);
    CU_ASSERT_EQUAL(qtsp_der_uint_size((const unsigned char *)"\x00\x00\x80\x01", 4), 5);
    n = qtsp_der_put_uint(out, QTSP_DER_INTEGER, (const unsigned char *)"\x00", 1);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(memcmp(out, "\x02\x01\x00", 3), 0);
    n = qtsp_der_put_u64(out, QTSP_DER_INTEGER, 0x7f);
    CU_ASSERT_EQUAL(memcmp(out, "\x02\x01\x7f", 3), 0);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(qtsp_der_u64_size(0x80), 4);
    unsigned char big[20];
    memset(big, 0xff, sizeof big);
    CU_ASSERT_EQUAL(qtsp_der_put_uint(out, QTSP_DER_INTEGER, big, 20), 23);

    /* RFC 5280 5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050 */
    size_t tl;
    CU_ASSERT_EQUAL(qtsp_der_put_time(out, 2524607999, 0, &tl), QTSP_OK); /* 2049-12-31T23:59:59Z */
    CU_ASSERT_EQUAL(tl, 15);
    CU_ASSERT_EQUAL(memcmp(out,
                           "\x17\x0d"
                           "491231235959Z",
                           15),
                    0);
    CU_ASSERT_EQUAL(qtsp_der_put_time(out, 2524608000, 0, &tl), QTSP_OK); /* 2050-01-01 */
    CU_ASSERT_EQUAL(tl, 17);
    CU_ASSERT_EQUAL(memcmp(out,
                           "\x18\x0f"
                           "20500101000000Z",
                           17),
                    0);
    CU_ASSERT_EQUAL(qtsp_der_put_time(out, 0, 1, &tl), QTSP_OK);
    CU_ASSERT_EQUAL(memcmp(out,
                           "\x18\x0f"
                           "19700101000000Z",
                           17),
                    0);
    CU_ASSERT_EQUAL(qtsp_der_time_size(0, 0), 15);
    CU_ASSERT_EQUAL(qtsp_der_time_size(2524608000, 0), 17);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_der_len_sizes_and_headers),
        QTEST(test_der_length_encodings_at_boundaries),
        QTEST(test_der_reader_rejects_bad_lengths),
        QTEST(test_der_integer_and_time_encodings),
        QTEST(test_der_uint_matches_openssl),
        QTEST(test_der_u64_edges),
        QTEST(test_der_writer_open_close_short_and_long),
        QTEST(test_der_writer_nested_equals_size_first),
        QTEST(test_der_writer_fixed_buffer_overflow_is_sticky),
        QTEST(test_der_writer_grows_a_buf_up_to_its_max),
        QTEST(test_der_times_follow_rfc5280_and_rfc3161),
        QTEST(test_der_reader_walks_and_checks_tags),
        QTEST(test_der_reader_rejects_bad_encodings),
        QTEST(test_der_int_and_oid_checks),
        QTEST(test_der_check_tree_refuses_ber_anywhere),
    };
    return qtest_run("der", cases, sizeof cases / sizeof cases[0]);
}
