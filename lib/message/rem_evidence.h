/*
 * rem_evidence - the ERDS evidence of a REM message, read and sealed: the XML read as a
 * hostile document (rem_evidence.c), its XAdES signature and time-stamp checked
 * (rem_xades.c).  Private to lib/message/rem*.c; rem.h says what the checks are for.
 */
#ifndef PEC_REM_EVIDENCE_H
#define PEC_REM_EVIDENCE_H

#include <libxml/tree.h>
#include <stddef.h>

#include "message/rem.h"

/* Namespaces of the evidence and of its signature. */
#define PEC_REM_NS_ERDS "http://uri.etsi.org/19522/v1#"
#define PEC_REM_NS_DSIG "http://www.w3.org/2000/09/xmldsig#"
#define PEC_REM_NS_XADES "http://uri.etsi.org/01903/v1.3.2#"

/*
 * Parse XML[0..LEN): no DOCTYPE (so no entity is ever declared or expanded), no network.
 * Returns the document, or NULL with a one-line reason in ERR.
 */
xmlDocPtr pec_rem_xml_read(const unsigned char *xml, size_t len, char *err, size_t errlen);

/*
 * Read the facts of the evidence DOC into *EV (zeroed first; free it with
 * pec_rem_evidence_free in every case).  0, or -1 with the first problem in ERR: not an
 * ERDS Evidence, a required element missing or repeated, a recipient position that
 * names no recipient, a critical extension we do not know.
 */
int pec_rem_evidence_parse(xmlDocPtr doc, struct pec_rem_evidence *ev, char *err, size_t errlen);
void pec_rem_evidence_free(struct pec_rem_evidence *ev);

/* The first element child of NODE called NAME (local name, any namespace), or NULL. */
xmlNodePtr pec_rem_xml_child(xmlNodePtr node, const char *name);

/* Is NODE the element NAME in namespace NS? */
int pec_rem_xml_is(xmlNodePtr node, const char *ns, const char *name);

/* The text of NODE, white space trimmed, xmalloc'ed; NULL when NODE is NULL. */
char *pec_rem_xml_text(xmlNodePtr node);

/*
 * Check the XAdES signature of the evidence DOC and its time-stamp against OPTS' trust
 * anchors, filling *SEAL (free it with pec_rem_seal_free).  The first problem with the
 * signature goes to SIG_ERR, with the time-stamp to TS_ERR; each stays "" when there is
 * none.  *TEMPORARY is set on a resource failure.
 */
void pec_rem_seal_check(xmlDocPtr doc, const struct pec_inspect_opts *opts,
                        struct pec_rem_seal *seal, char *sig_err, size_t sig_errlen, char *ts_err,
                        size_t ts_errlen, int *temporary);
void pec_rem_seal_free(struct pec_rem_seal *seal);

#endif
