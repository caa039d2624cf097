/*
 * daticert_parse - reading a peer's daticert.xml.
 *
 * The document is hostile until proven otherwise.  It may not declare
 * anything: the SAX handlers for declarations are replaced by one that stops
 * the parser, so no entity of an internal subset is ever defined, let alone
 * expanded (billion laughs), and with no DTD loading and no network no
 * external entity is ever fetched (XXE).  Then the tree is validated against
 * the compiled DTD, read into the struct, and checked for the few elements
 * its tipo cannot do without.
 */
#include "message/daticert.h"
#include "message/daticert_xml.h"
#include "message/xmldoc.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* far above any real document (a presa in carico for 1000 recipients is ~60 KB) */
#define DATICERT_MAX (4u * 1024 * 1024)

/* per-parse state, reached from SAX callbacks through ctxt->_private */
struct parse_guard {
    int declaration;               /* the document tried to declare something */
    struct pec_xml_first_error fe; /* first well-formedness error */
};

static void refuse(void *ctx)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_guard *g = ctxt->_private;

    g->declaration = 1;
    xmlStopParser(ctxt);
}

static void refuse_entity(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                          const xmlChar *system_id, xmlChar *content)
{
    refuse(ctx);
}

static void refuse_notation(void *ctx, const xmlChar *name, const xmlChar *public_id,
                            const xmlChar *system_id)
{
    refuse(ctx);
}

/* the parser hands the enumeration over to this callback */
static void refuse_attribute(void *ctx, const xmlChar *elem, const xmlChar *fullname, int type,
                             int def, const xmlChar *default_value, xmlEnumerationPtr tree)
{
    xmlFreeEnumeration(tree);
    refuse(ctx);
}

static void refuse_element(void *ctx, const xmlChar *name, int type, xmlElementContentPtr content)
{
    refuse(ctx);
}

static void refuse_unparsed(void *ctx, const xmlChar *name, const xmlChar *public_id,
                            const xmlChar *system_id, const xmlChar *notation)
{
    refuse(ctx);
}

static void parse_error(void *ctx, pec_xml_error *e)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_guard *g = ctxt->_private;

    pec_xml_keep_first_error(&g->fe, e);
}

/* no network, no DTD loading, no entity substitution, no declarations */
static xmlDocPtr read_doc(const char *xml, size_t len, char *err, size_t errlen)
{
    struct parse_guard g = {0};
    const char *why;
    xmlParserCtxtPtr ctxt = pec_xml_context(
        xml, len, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA,
        &why);
    xmlDocPtr doc;

    if (ctxt == NULL) {
        pec_seterr(err, errlen, "daticert.xml: %s", why);
        return NULL;
    }
    ctxt->_private = &g;
    ctxt->sax->serror = parse_error;
    ctxt->sax->entityDecl = refuse_entity;
    ctxt->sax->notationDecl = refuse_notation;
    ctxt->sax->attributeDecl = refuse_attribute;
    ctxt->sax->elementDecl = refuse_element;
    ctxt->sax->unparsedEntityDecl = refuse_unparsed;

    doc = pec_xml_parse(ctxt, &g.declaration);
    if (g.declaration)
        pec_seterr(err, errlen, "daticert.xml: DOCTYPE with an internal subset is not accepted");
    else if (doc == NULL && g.fe.seen)
        pec_seterr(err, errlen, "daticert.xml: not well-formed XML at line %d: %s", g.fe.line,
                   g.fe.msg);
    else if (doc == NULL)
        pec_seterr(err, errlen, "daticert.xml: not well-formed XML");
    xmlFreeParserCtxt(ctxt);
    return doc;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The text of a #PCDATA element.  Comments and processing instructions are
 * skipped; an entity reference (to an entity declared nowhere, as the
 * parser leaves them) is refused rather than silently dropped.  Surrounding
 * white space is trimmed unless keep_space.
 */
static char *text_of(xmlNodePtr el, int keep_space, char *err, size_t errlen)
{
    size_t len = 0, cap = 64;
    char *out = xmalloc(cap);
    char *start;

    for (xmlNodePtr c = el->children; c != NULL; c = c->next) {
        size_t n;
        if (c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE)
            continue;
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) {
            pec_seterr(err, errlen, "daticert.xml: line %ld: %s holds an entity reference",
                       xmlGetLineNo(c), (const char *)el->name);
            free(out);
            return NULL;
        }
        n = c->content ? strlen((const char *)c->content) : 0;
        if (len + n + 1 > cap) {
            cap = len + n + 1;
            out = xrealloc(out, cap);
        }
        memcpy(out + len, c->content, n);
        len += n;
    }
    out[len] = '\0';
    if (keep_space)
        return out;
    while (len > 0 && is_space(out[len - 1]))
        out[--len] = '\0';
    for (start = out; is_space(*start); start++)
        ;
    memmove(out, start, strlen(start) + 1);
    return out;
}

/* *slot = text of el; fails on entity references */
static int take_text(xmlNodePtr el, char **slot, int keep_space, char *err, size_t errlen)
{
    free(*slot);
    *slot = text_of(el, keep_space, err, errlen);
    return *slot != NULL ? 0 : -1;
}

static char *attr_of(xmlNodePtr el, const char *name)
{
    xmlChar *v = xmlGetNoNsProp(el, BAD_CAST name);
    char *copy = v != NULL ? xstrdup((const char *)v) : NULL;

    xmlFree(v);
    return copy;
}

static int read_intestazione(xmlNodePtr in, struct pec_daticert *out, char *err, size_t errlen)
{
    for (xmlNodePtr c = in->children; c != NULL; c = c->next) {
        int rc = 0;
        if (pec_xml_named(c, "mittente")) {
            rc = take_text(c, &out->mittente, 0, err, errlen);
        } else if (pec_xml_named(c, "destinatari")) {
            struct pec_destinatario *dest;
            char *tipo = attr_of(c, "tipo");
            out->destinatari =
                xrealloc(out->destinatari, (out->n_destinatari + 1) * sizeof(*out->destinatari));
            dest = &out->destinatari[out->n_destinatari++];
            dest->tipo =
                tipo && strcmp(tipo, "esterno") == 0 ? PEC_DEST_ESTERNO : PEC_DEST_CERTIFICATO;
            dest->address = NULL;
            free(tipo);
            rc = take_text(c, &dest->address, 0, err, errlen);
        } else if (pec_xml_named(c, "risposte")) {
            rc = take_text(c, &out->risposte, 0, err, errlen);
        } else if (pec_xml_named(c, "oggetto")) {
            rc = take_text(c, &out->oggetto, 1, err, errlen);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int read_data(xmlNodePtr data, struct pec_daticert *out, char *err, size_t errlen)
{
    out->zona = attr_of(data, "zona");
    for (xmlNodePtr c = data->children; c != NULL; c = c->next) {
        if (pec_xml_named(c, "giorno") && take_text(c, &out->giorno, 0, err, errlen) != 0)
            return -1;
        if (pec_xml_named(c, "ora") && take_text(c, &out->ora, 0, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int read_ricevuta(xmlNodePtr el, struct pec_daticert *out, char *err, size_t errlen)
{
    char *tipo = attr_of(el, "tipo");
    int rc = pec_ricevuta_parse(tipo, &out->ricevuta);

    if (rc != 0)
        pec_seterr(err, errlen, "daticert.xml: ricevuta tipo \"%s\" unknown", tipo ? tipo : "");
    free(tipo);
    return rc;
}

static int read_dati(xmlNodePtr dati, struct pec_daticert *out, char *err, size_t errlen)
{
    for (xmlNodePtr c = dati->children; c != NULL; c = c->next) {
        int rc = 0;
        if (pec_xml_named(c, "gestore-emittente")) {
            rc = take_text(c, &out->gestore_emittente, 0, err, errlen);
        } else if (pec_xml_named(c, "data")) {
            rc = read_data(c, out, err, errlen);
        } else if (pec_xml_named(c, "identificativo")) {
            rc = take_text(c, &out->identificativo, 0, err, errlen);
        } else if (pec_xml_named(c, "msgid")) {
            rc = take_text(c, &out->msgid, 0, err, errlen);
        } else if (pec_xml_named(c, "ricevuta")) {
            rc = read_ricevuta(c, out, err, errlen);
        } else if (pec_xml_named(c, "consegna")) {
            rc = take_text(c, &out->consegna, 0, err, errlen);
        } else if (pec_xml_named(c, "ricezione")) {
            out->ricezione = xrealloc(out->ricezione, (out->n_ricezione + 1) * sizeof(char *));
            out->ricezione[out->n_ricezione++] = NULL;
            rc = take_text(c, &out->ricezione[out->n_ricezione - 1], 0, err, errlen);
        } else if (pec_xml_named(c, "errore-esteso")) {
            rc = take_text(c, &out->errore_esteso, 0, err, errlen);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int read_postacert(xmlNodePtr root, struct pec_daticert *out, char *err, size_t errlen)
{
    char *tipo = attr_of(root, "tipo");
    char *errore = attr_of(root, "errore");
    int rc = 0;

    if (pec_tipo_parse(tipo, &out->tipo) != 0) {
        pec_seterr(err, errlen, "daticert.xml: tipo \"%s\" unknown", tipo ? tipo : "");
        rc = -1;
    } else if (errore != NULL && pec_errore_parse(errore, &out->errore) != 0) {
        pec_seterr(err, errlen, "daticert.xml: errore \"%s\" unknown", errore);
        rc = -1;
    }
    free(tipo);
    free(errore);
    for (xmlNodePtr c = root->children; rc == 0 && c != NULL; c = c->next) {
        if (pec_xml_named(c, "intestazione"))
            rc = read_intestazione(c, out, err, errlen);
        else if (pec_xml_named(c, "dati"))
            rc = read_dati(c, out, err, errlen);
    }
    return rc;
}

/*
 * What a receiver cannot do without, beyond the DTD: the elements the DTD's
 * own comments assign to each tipo.  Laxer than pec_daticert_check(), which
 * holds our output to the full usage table; peers get the benefit of doubt,
 * but for a busta's facts: our presa in carico and consegna copy them, and
 * facts our own writer refuses (a control character in oggetto, a msgid
 * without its angle brackets, an empty destinatario) would leave a stored
 * busta that can never earn its receipt.  Such a busta is not conforming
 * (an anomalia at the reception point, with this reason).
 */
static int check_parsed(const struct pec_daticert *d, char *err, size_t errlen)
{
    const char *tipo = pec_tipo_name(d->tipo);
    const char *missing = NULL;

    if (d->tipo == PEC_TIPO_POSTA_CERTIFICATA && pec_daticert_check_facts(d, err, errlen) != 0)
        return -1;
    if (d->identificativo == NULL || *d->identificativo == '\0')
        missing = "identificativo";
    else if (d->tipo == PEC_TIPO_POSTA_CERTIFICATA && d->ricevuta == PEC_RICEVUTA_NONE)
        missing = "ricevuta";
    else if ((d->tipo == PEC_TIPO_AVVENUTA_CONSEGNA || d->tipo == PEC_TIPO_ERRORE_CONSEGNA) &&
             d->consegna == NULL)
        missing = "consegna";
    else if (d->tipo == PEC_TIPO_PRESA_IN_CARICO && d->n_ricezione == 0)
        missing = "ricezione";
    else if (d->tipo == PEC_TIPO_RILEVAZIONE_VIRUS && d->consegna == NULL && d->n_ricezione == 0)
        missing = "consegna";
    if (missing == NULL)
        return 0;
    pec_seterr(err, errlen, "daticert.xml: element %s missing (required for %s)", missing, tipo);
    return -1;
}

int pec_daticert_parse(const char *xml, size_t len, struct pec_daticert *out, char *err,
                       size_t errlen)
{
    xmlDocPtr doc;
    xmlNodePtr root;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (pec_daticert_init() != 0) {
        pec_seterr(err, errlen, "daticert.xml: the embedded DTD does not load");
        return -1;
    }
    if (xml == NULL || len == 0) {
        pec_seterr(err, errlen, "daticert.xml: empty");
        return -1;
    }
    if (len > DATICERT_MAX) {
        pec_seterr(err, errlen, "daticert.xml: too large (%zu bytes)", len);
        return -1;
    }
    doc = read_doc(xml, len, err, errlen);
    if (doc == NULL)
        return -1;
    root = xmlDocGetRootElement(doc);
    if (root == NULL || !xmlStrEqual(root->name, BAD_CAST "postacert"))
        pec_seterr(err, errlen, "daticert.xml: root element is <%s>, not <postacert>",
                   root ? (const char *)root->name : "");
    else if (root->ns != NULL)
        pec_seterr(err, errlen, "daticert.xml: <postacert> must not be in a namespace");
    else if (pec_daticert_validate(doc, err, errlen) == 0 &&
             read_postacert(root, out, err, errlen) == 0)
        rc = check_parsed(out, err, errlen);
    xmlFreeDoc(doc);
    if (rc != 0)
        pec_daticert_free(out);
    return rc;
}

void pec_daticert_free(struct pec_daticert *d)
{
    if (d == NULL)
        return;
    free(d->mittente);
    for (size_t i = 0; i < d->n_destinatari; i++)
        free(d->destinatari[i].address);
    free(d->destinatari);
    free(d->risposte);
    free(d->oggetto);
    free(d->gestore_emittente);
    free(d->giorno);
    free(d->ora);
    free(d->zona);
    free(d->identificativo);
    free(d->msgid);
    free(d->consegna);
    for (size_t i = 0; i < d->n_ricezione; i++)
        free(d->ricezione[i]);
    free(d->ricezione);
    free(d->errore_esteso);
    memset(d, 0, sizeof(*d));
}
