/* Unit tests for core/multipart.c: what a browser or curl -F sends is read
 * back byte for byte; everything outside the strict form is refused with a
 * message naming the rule. */
#include <string.h>

#include "core/multipart.h"
#include "tests/lib/qtest.h"

#define CT "multipart/form-data; boundary=XyZ"

static qtsp_status parse(const char *ct, const char *body, size_t len, qtsp_mp_part *p, size_t cap,
                         size_t *n)
{
    qtsp_err_clear();
    return qtsp_multipart_parse(ct, (const unsigned char *)body, len, p, cap, n);
}

static void refused(const char *ct, const char *body, const char *want)
{
    qtsp_mp_part p[4];
    size_t n = 99;
    CU_ASSERT_EQUAL(parse(ct, body, strlen(body), p, 4, &n), QTSP_ERR_INVALID);
    CU_ASSERT_EQUAL(n, 99);
    if (!strstr(qtsp_err_what(), want))
        fprintf(stderr, "expected '%s', got '%s'\n", want, qtsp_err_what());
    CU_ASSERT_PTR_NOT_NULL(strstr(qtsp_err_what(), want));
}

static void test_multipart_reads_curl_form(void)
{
    /* what curl -F file=@a.pdf -F content=@b sends, binary data with CRLF and
     * a near-boundary inside */
    static const char body[] =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
        "Content-Type: application/pdf\r\n"
        "\r\n"
        "%PDF\r\n--XY\x00\x01\r\n--Xy\r\n"
        "\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=content\r\n"
        "\r\n"
        "\r\n--XyZ--\r\n";
    qtsp_mp_part p[4];
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(parse(CT, body, sizeof body - 1, p, 4, &n), QTSP_OK);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_STRING_EQUAL(p[0].name, "file");
    CU_ASSERT_STRING_EQUAL(p[0].filename, "a.pdf");
    CU_ASSERT_STRING_EQUAL(p[0].content_type, "application/pdf");
    static const char data[] = "%PDF\r\n--XY\x00\x01\r\n--Xy\r\n";
    CU_ASSERT_EQUAL(p[0].len, sizeof data - 1);
    CU_ASSERT(memcmp(p[0].data, data, sizeof data - 1) == 0);
    CU_ASSERT_STRING_EQUAL(p[1].name, "content");
    CU_ASSERT_STRING_EQUAL(p[1].filename, "");
    CU_ASSERT_EQUAL(p[1].len, 0); /* an empty part is a part */
    CU_ASSERT_PTR_EQUAL(qtsp_multipart_get(p, n, "content"), &p[1]);
    CU_ASSERT_PTR_NULL(qtsp_multipart_get(p, n, "other"));
}

static void test_multipart_quoted_boundary_and_no_final_crlf(void)
{
    static const char body[] = "--a'b c\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n"
                               "x\r\n--a'b c--";
    qtsp_mp_part p[1];
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(parse("Multipart/Form-Data; charset=utf-8; boundary=\"a'b c\"", body,
                                sizeof body - 1, p, 1, &n),
                          QTSP_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(p[0].len, 1);
}

static void test_multipart_refuses_media_types_and_boundaries(void)
{
    static const char ok[] =
        "--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n--XyZ--";
    refused("application/json", ok, "must be multipart/form-data");
    refused(NULL, ok, "must be multipart/form-data");
    refused("multipart/form-dataX; boundary=XyZ", ok, "must be multipart/form-data");
    refused("multipart/form-data", ok, "without boundary");
    refused("multipart/form-data; boundary=", ok, "boundary must be");
    refused("multipart/form-data; boundary=a; boundary=b", ok, "boundary given twice");
    refused("multipart/form-data; boundary=a<b", ok, "outside RFC 2046 bchars");
    char lng[120] = "multipart/form-data; boundary=";
    memset(lng + strlen(lng), 'a', 71);
    refused(lng, ok, "boundary must be 1..70");
}

static void test_multipart_refuses_framing(void)
{
    refused(CT, "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--XyZ--",
            "must start with the boundary");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\nxxxx",
            "not closed by the boundary");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--XyZ--\r\nmore",
            "data after the closing boundary");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--XyZ  \r\n",
            "not followed by CRLF");
    refused(CT, "--XyZ", "ends inside a delimiter");
    refused(CT, "--XyZ--", "no parts");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=f", "missing its CRLF");
}

static void test_multipart_refuses_part_headers(void)
{
    refused(CT, "--XyZ\r\nContent-Transfer-Encoding: base64\r\n\r\nx\r\n--XyZ--", "not allowed");
    refused(CT, "--XyZ\r\nContent-Disposition: attachment; name=f\r\n\r\nx\r\n--XyZ--",
            "must be form-data");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", "without name");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--XyZ--",
            "one non-empty name");
    refused(
        CT,
        "--XyZ\r\nContent-Disposition: form-data; name=f; filename*=UTF-8''a\r\n\r\nx\r\n--XyZ--",
        "parameter filename* not allowed");
    refused(CT, "--XyZ\r\nContent-Type: a\r\n\r\nx\r\n--XyZ--", "without Content-Disposition");
    refused(CT,
            "--XyZ\r\nContent-Disposition: form-data; name=f\r\nContent-Disposition: form-data; "
            "name=g\r\n\r\nx\r\n--XyZ--",
            "given twice");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nx\r\n--XyZ--",
            "bad quoted string");
    refused(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"f\x01\"\r\n\r\nx\r\n--XyZ--",
            "control character");
    static char lng[2048];
    int k =
        snprintf(lng, sizeof lng, "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"");
    memset(lng + k, 'a', 1100);
    strcpy(lng + k + 1100, "\"\r\n\r\nx\r\n--XyZ--");
    refused(CT, lng, "longer than 1024 bytes");
}

static void test_multipart_refuses_too_many_parts(void)
{
    static const char body[] =
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=c\r\n\r\n3\r\n--XyZ--";
    qtsp_mp_part p[2];
    size_t n = 99;
    CU_ASSERT_EQUAL(parse(CT, body, sizeof body - 1, p, 2, &n), QTSP_ERR_TOO_BIG);
    CU_ASSERT_EQUAL(n, 99);
    qtsp_mp_part q[3];
    CU_ASSERT_EQUAL(parse(CT, body, sizeof body - 1, q, 3, &n), QTSP_OK);
    CU_ASSERT_EQUAL(n, 3);
}

int main(void)
{
    static const qtest_case cases[] = {
        QTEST(test_multipart_reads_curl_form),
        QTEST(test_multipart_quoted_boundary_and_no_final_crlf),
        QTEST(test_multipart_refuses_media_types_and_boundaries),
        QTEST(test_multipart_refuses_framing),
        QTEST(test_multipart_refuses_part_headers),
        QTEST(test_multipart_refuses_too_many_parts),
    };
    return qtest_run("multipart", cases, sizeof cases / sizeof cases[0]);
}
