/* Per-thread PKCS#11 sessions (see ca/hsm_int.h): each thread that signs
 * or looks keys up gets its own session, opened lazily and closed when the
 * thread exits or at qtsp_hsm_free. */
#include "ca/hsm_int.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

/* ---------- per-thread sessions ---------- */

/* Runs at thread exit for threads that signed (pthread key destructor). */
void hsm_session_release(void *p)
{
    hsm_session *s = p;
    qtsp_hsm *hsm = s->hsm;
    pthread_mutex_lock(&hsm->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        hsm->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hsm->fl->C_CloseSession(s->h);
    pthread_mutex_unlock(&hsm->lock);
    atomic_fetch_sub(&hsm->nsessions, 1);
    free(s);
}

qtsp_status hsm_thread_session(qtsp_hsm *hsm, CK_SESSION_HANDLE *out)
{
    hsm_session *s = pthread_getspecific(hsm->tls);
    if (s != NULL) {
        *out = s->h;
        return QTSP_OK;
    }
    s = calloc(1, sizeof *s);
    ENSURE(s != NULL, QTSP_ERR_NOMEM, "out of memory for a PKCS#11 session");
    s->hsm = hsm;
    CK_RV rv = hsm->fl->C_OpenSession(hsm->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->h);
    if (rv != CKR_OK) {
        free(s);
        FAIL(QTSP_ERR_HSM, "C_OpenSession failed: %s", hsm_ckr_name(rv));
    }
    if (pthread_setspecific(hsm->tls, s) != 0) {
        hsm->fl->C_CloseSession(s->h);
        free(s);
        FAIL(QTSP_ERR_NOMEM, "cannot attach a PKCS#11 session to this thread");
    }
    pthread_mutex_lock(&hsm->lock);
    s->next = hsm->sessions;
    if (s->next)
        s->next->prev = s;
    hsm->sessions = s;
    pthread_mutex_unlock(&hsm->lock);
    atomic_fetch_add(&hsm->nsessions, 1);
    *out = s->h;
    return QTSP_OK;
}

void qtsp_hsm_lookup_stats(qtsp_hsm *hsm, unsigned long long *rescans, unsigned long long *searches)
{
    *rescans = hsm ? atomic_load(&hsm->idx_rescans) : 0;
    *searches = hsm ? atomic_load(&hsm->idx_searches) : 0;
}

unsigned qtsp_hsm_session_count(const qtsp_hsm *hsm)
{
    if (hsm == NULL)
        return 0;
    return atomic_load(&((qtsp_hsm *)hsm)->nsessions);
}
