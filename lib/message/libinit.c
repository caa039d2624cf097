/*
 * libinit - GMime, libxml2 and OpenSSL set up once, under pthread_once.
 *
 * g_mime_init() is not thread-safe and must not run twice; pthread_once
 * gives both.  GMime is never shut down: its global tables live as long as
 * the process, like OpenSSL's.
 */
#include "message/libinit.h"
#include "message/daticert.h"

#include <pthread.h>
#include <stdio.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_status;
static char init_reason[128];

static void init_once(void)
{
    if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_ADD_ALL_CIPHERS |
                                OPENSSL_INIT_ADD_ALL_DIGESTS,
                            NULL) != 1) {
        snprintf(init_reason, sizeof(init_reason), "OpenSSL initialisation failed");
        init_status = -1;
        return;
    }
    if (pec_daticert_init() != 0) {
        snprintf(init_reason, sizeof(init_reason), "the compiled daticert.xml DTD does not load");
        init_status = -1;
        return;
    }
    g_mime_init();
}

int pec_lib_init(char *err, size_t errlen)
{
    if (pthread_once(&once, init_once) != 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "pthread_once failed");
        return -1;
    }
    if (init_status != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", init_reason);
    return init_status;
}
