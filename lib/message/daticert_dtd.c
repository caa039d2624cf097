/*
 * daticert_dtd - the DTD of daticert.xml, compiled into libpec, and
 * validation against it.
 *
 * The declarations are the normative ones of the technical rules annexed to
 * DM 2 November 2005 (English transposition: RFC 6109, section 4.4); the
 * element and attribute names and values must not change.  They live here,
 * not in a file read at run time, so that validating a peer's document never
 * depends on the installation or the network.  The comments are ours.
 *
 * The parsed DTD is shared read-only by all threads.  libxml2 builds each
 * element's content automaton lazily, on first validation; the start-up
 * load builds them all, so that no validation ever writes to the DTD.
 */
#include "message/daticert.h"
#include "message/daticert_xml.h"

#include <libxml/hash.h>
#include <libxml/parser.h>
#include <libxml/valid.h>
#include <libxml/xmlIO.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pec_daticert_dtd[] =
    "<!-- root; tipo = kind of PEC message; errore = error class -->\n"
    "<!ELEMENT postacert (intestazione, dati)>\n"
    "<!ATTLIST postacert\n"
    "  tipo (accettazione | non-accettazione | presa-in-carico | avvenuta-consegna |\n"
    "        posta-certificata | errore-consegna | preavviso-errore-consegna |\n"
    "        rilevazione-virus) #REQUIRED\n"
    "  errore (nessuno | no-dest | no-dominio | virus | altro) \"nessuno\">\n"
    "<!-- the original message: sender, To/Cc recipients, Reply-To, Subject -->\n"
    "<!ELEMENT intestazione (mittente, destinatari+, risposte, oggetto?)>\n"
    "<!ELEMENT mittente (#PCDATA)>\n"
    "<!ELEMENT destinatari (#PCDATA)>\n"
    "<!ATTLIST destinatari tipo (certificato | esterno) \"certificato\">\n"
    "<!ELEMENT risposte (#PCDATA)>\n"
    "<!ELEMENT oggetto (#PCDATA)>\n"
    "<!-- this event: issuing provider, time, identifiers, receipt data -->\n"
    "<!ELEMENT dati (gestore-emittente, data, identificativo, msgid?, ricevuta?,\n"
    "                consegna?, ricezione*, errore-esteso?)>\n"
    "<!ELEMENT gestore-emittente (#PCDATA)>\n"
    "<!-- zona = offset of local time from UTC as [+|-]hhmm -->\n"
    "<!ELEMENT data (giorno, ora)>\n"
    "<!ATTLIST data zona CDATA #REQUIRED>\n"
    "<!ELEMENT giorno (#PCDATA)>\n"
    "<!ELEMENT ora (#PCDATA)>\n"
    "<!ELEMENT identificativo (#PCDATA)>\n"
    "<!ELEMENT msgid (#PCDATA)>\n"
    "<!ELEMENT ricevuta EMPTY>\n"
    "<!ATTLIST ricevuta tipo (completa | breve | sintetica) #REQUIRED>\n"
    "<!ELEMENT consegna (#PCDATA)>\n"
    "<!ELEMENT ricezione (#PCDATA)>\n"
    "<!ELEMENT errore-esteso (#PCDATA)>\n";

const size_t pec_daticert_dtd_len = sizeof(pec_daticert_dtd) - 1;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static xmlDtdPtr daticert_dtd; /* never freed: lives as long as the process */

void *pec_xml_need(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "pecmilter: fatal: out of memory in libxml2\n");
        abort();
    }
    return p;
}

struct model_build {
    xmlValidCtxtPtr vctxt;
    int failed;
};

static void build_content_model(void *payload, void *data, const xmlChar *name)
{
    xmlElementPtr el = payload;
    struct model_build *mb = data;

    if (el->etype == XML_ELEMENT_TYPE_ELEMENT && xmlValidBuildContentModel(mb->vctxt, el) != 1)
        mb->failed = 1;
}

/* run once; leaves daticert_dtd NULL when anything fails */
static void load_dtd(void)
{
    xmlParserInputBufferPtr buf;
    xmlDtdPtr dtd;
    struct model_build mb = {0};

    xmlInitParser();
    buf = xmlParserInputBufferCreateMem(pec_daticert_dtd, (int)pec_daticert_dtd_len,
                                        XML_CHAR_ENCODING_UTF8);
    if (buf == NULL)
        return;
    /* xmlIOParseDTD frees buf in every case */
    dtd = xmlIOParseDTD(NULL, buf, XML_CHAR_ENCODING_UTF8);
    if (dtd == NULL)
        return;
    mb.vctxt = pec_xml_need(xmlNewValidCtxt());
    if (dtd->elements == NULL)
        mb.failed = 1;
    else
        xmlHashScan(dtd->elements, build_content_model, &mb);
    xmlFreeValidCtxt(mb.vctxt);
    if (mb.failed)
        xmlFreeDtd(dtd);
    else
        daticert_dtd = dtd;
}

int pec_daticert_init(void)
{
    if (pthread_once(&init_once, load_dtd) != 0 || daticert_dtd == NULL)
        return -1;
    return 0;
}

void pec_xml_keep_first_error(void *data, pec_xml_error *e)
{
    struct pec_xml_first_error *fe = data;
    size_t n;

    if (fe->seen || e == NULL || e->level < XML_ERR_ERROR)
        return;
    fe->seen = 1;
    fe->line = e->line;
    snprintf(fe->msg, sizeof(fe->msg), "%s", e->message ? e->message : "unknown error");
    n = strlen(fe->msg);
    while (n > 0 && (fe->msg[n - 1] == '\n' || fe->msg[n - 1] == ' '))
        fe->msg[--n] = '\0';
}

/*
 * Validity errors of a standalone validation go to the thread's structured
 * handler when one is set, so ours is put in place for the call and the
 * caller's restored afterwards.
 */
int pec_daticert_validate(xmlDocPtr doc, char *err, size_t errlen)
{
    xmlStructuredErrorFunc saved = xmlStructuredError;
    void *saved_ctx = xmlStructuredErrorContext;
    struct pec_xml_first_error fe = {0};
    xmlValidCtxtPtr vctxt = pec_xml_need(xmlNewValidCtxt());
    int ok;

    xmlSetStructuredErrorFunc(&fe, pec_xml_keep_first_error);
    ok = xmlValidateDtd(vctxt, doc, daticert_dtd);
    xmlSetStructuredErrorFunc(saved_ctx, saved);
    xmlFreeValidCtxt(vctxt);
    if (ok == 1)
        return 0;
    if (err == NULL || errlen == 0)
        return -1;
    if (fe.seen && fe.line > 0)
        snprintf(err, errlen, "daticert.xml: not valid at line %d: %s", fe.line, fe.msg);
    else
        snprintf(err, errlen, "daticert.xml: not valid: %s", fe.seen ? fe.msg : "unknown error");
    return -1;
}
