/*
 * xmldoc - the libxml2 work both readers of a peer's XML share (daticert_parse.c for
 * daticert.xml, rem_evidence.c for the REM evidence): a parser over the caller's bytes with
 * the options the reader chooses, the document taken from it only when it is well-formed
 * and the reader's own SAX guards refused nothing, and an element looked for by local name.
 * Each reader installs its own guards and words its own reasons.
 */
#ifndef PEC_XMLDOC_H
#define PEC_XMLDOC_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stddef.h>

/*
 * A parser over XML[0..LEN) with OPTIONS (XML_PARSE_*): free it with xmlFreeParserCtxt.
 * NULL with the reason in *WHY when libxml2 cannot make one or refuses the options.
 */
xmlParserCtxtPtr pec_xml_context(const char *xml, size_t len, int options, const char **why);

/*
 * Run CTXT's parse and take its document: NULL (nothing left to free) when it is not
 * well-formed or a guard of the caller set *REFUSED meanwhile.  CTXT stays the caller's, to
 * read the error from and to free.
 */
xmlDocPtr pec_xml_parse(xmlParserCtxtPtr ctxt, const int *refused);

/* Is N an element called NAME (local name, any namespace)? */
int pec_xml_named(xmlNodePtr n, const char *name);

#endif
