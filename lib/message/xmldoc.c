/*
 * xmldoc - parsing a peer's XML for the daticert and REM readers (see xmldoc.h).  The
 * guards against declarations and DOCTYPEs stay with each reader, which knows what its
 * documents may hold; this module only creates the parser and hands the document over.
 */
#include "message/xmldoc.h"

#include <libxml/parserInternals.h>

xmlParserCtxtPtr pec_xml_context(const char *xml, size_t len, int options, const char **why)
{
    xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(xml, (int)len);

    if (ctxt == NULL) {
        *why = "cannot create an XML parser";
        return NULL;
    }
    if (xmlCtxtUseOptions(ctxt, options) != 0) {
        xmlFreeParserCtxt(ctxt);
        *why = "libxml2 refuses the parser options";
        return NULL;
    }
    return ctxt;
}

xmlDocPtr pec_xml_parse(xmlParserCtxtPtr ctxt, const int *refused)
{
    xmlDocPtr doc;

    xmlParseDocument(ctxt);
    doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    if (*refused || !ctxt->wellFormed) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

int pec_xml_named(xmlNodePtr n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}
