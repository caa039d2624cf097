/*
 * daticert_xml - the libxml2 plumbing the daticert modules share: the
 * compiled DTD and validation against it, and the capture of libxml2's first
 * error as a one-line reason.  Private to lib/daticert*.c.
 */
#ifndef PEC_DATICERT_XML_H
#define PEC_DATICERT_XML_H

#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>
#include <stddef.h>

/* libxml2 2.12 made the error argument of structured handlers const */
#if LIBXML_VERSION >= 21200
typedef const xmlError pec_xml_error;
#else
typedef xmlError pec_xml_error;
#endif

/* the first error libxml2 reports */
struct pec_xml_first_error {
    int seen;
    int line;
    char msg[200];
};

/* an xmlStructuredErrorFunc; data is a struct pec_xml_first_error */
void pec_xml_keep_first_error(void *data, pec_xml_error *e);

/* 0 when doc is valid against the compiled DTD, else -1 and the first error */
int pec_daticert_validate(xmlDocPtr doc, char *err, size_t errlen);

/* libxml2 allocation failures get the same treatment as xmalloc's */
void *pec_xml_need(void *p);

#endif
