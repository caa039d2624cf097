/*
 * callbacks - the libmilter callbacks: thin glue between the MTA and libpec.
 */
#ifndef PECMILTER_CALLBACKS_H
#define PECMILTER_CALLBACKS_H

#include <libmilter/mfapi.h>

/* The descriptor handed to smfi_register(). */
struct smfiDesc *callbacks_descriptor(void);

#endif
