/* RA internals shared by ra/ra.c, ra/lifecycle.c and ra/ra_http.c. */
#ifndef QTSP_RA_RA_INT_H
#define QTSP_RA_RA_INT_H

#include <jansson.h>
#include <pthread.h>

#include "ca/profile.h"
#include "ra/activation.h"
#include "ra/ra.h"

#define RA_MAX_PACKAGES 16

typedef struct ra_package {
    char name[32];
    int64_t signatures; /* 0 = unlimited */
    int64_t period_s;
    int64_t validity_s;
} ra_package;

struct qtsp_ra {
    qtsp_ra_deps d;
    char base_url[256];
    qtsp_profile *profile;
    qtsp_keytype keytype;
    ra_package packages[RA_MAX_PACKAGES];
    size_t n_packages;
    int64_t max_hold_s;
    int64_t sweep_interval_s;
    unsigned char otp_key[QTSP_OTP_KEY_LEN];
};

/* QTSP_ERR_FORBIDDEN unless who has one of roles. */
qtsp_status ra_require_role(const qtsp_actor *who, unsigned roles, const char *what) QTSP_MUST_USE;
/* QTSP_ERR_INVALID naming the first field of in not in allowed. */
qtsp_status ra_check_fields(const json_t *in, const char *const *allowed) QTSP_MUST_USE;
/* Records: version byte + compact JSON. get: new reference. */
qtsp_status ra_put_json(qtsp_txn *txn, qtsp_table t, const char *key, const json_t *obj,
                        unsigned flags) QTSP_MUST_USE;
qtsp_status ra_get_json(qtsp_txn *txn, qtsp_table t, const char *key, json_t **out) QTSP_MUST_USE;
const ra_package *ra_find_package(const qtsp_ra *ra, const char *name);
/* The API's status object (new reference, NULL on allocation failure). */
json_t *ra_status_json(const unsigned char *serial, size_t slen, const qtsp_cert_status *stored,
                       time_t now);

#endif
