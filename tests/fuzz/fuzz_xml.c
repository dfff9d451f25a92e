/* libFuzzer target for XML read from outside (sign/xml.c): documents to
 * sign enveloped, and the files the validation service is sent. Any input
 * is refused with an error or parsed; a parsed one is canonicalised
 * (exclusive and inclusive C14N, the whole document without signatures and
 * the root's subtree), which may refuse it (relative namespace URIs) but
 * must not crash, leak or read out of bounds. A DOCTYPE is always refused.
 * Built by CMake with clang and -DQTSP_FUZZ=ON; scripts/fuzz.sh runs it
 * from tests/fuzz/corpus/fuzz_xml. */
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sign/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xmlDocPtr doc = NULL;
    if (qtsp_xml_parse(data, size, (size_t)1 << 20, &doc) != QTSP_OK)
        return 0;
    if (doc->intSubset || doc->extSubset)
        abort(); /* a DTD got through */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    for (int excl = 0; md && excl <= 1; excl++) {
        if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
            break;
        (void)qtsp_xml_c14n(doc, NULL, 1, excl, &md, 1, NULL);
        qtsp_buf copy;
        qtsp_buf_init(&copy, (size_t)4 << 20);
        (void)qtsp_xml_c14n(doc, xmlDocGetRootElement(doc), 0, excl, NULL, 0, &copy);
        qtsp_buf_cleanup(&copy);
    }
    EVP_MD_CTX_free(md);
    xmlFreeDoc(doc);
    return 0;
}
