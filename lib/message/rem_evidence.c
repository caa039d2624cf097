/*
 * rem_evidence - reading the ERDS evidence (EN 319 522-3, as EN 319 532-4 Annex C uses it).
 *
 * The document comes from the network, so it is read as a hostile one: a DOCTYPE stops
 * the parser before its internal subset is read, which leaves no way to declare an
 * entity (billion laughs) or to name an external one (XXE), and the network is off.
 * The facts are then taken from the root's children by local name: the examples mix
 * qualified and unqualified children (tns:EvidenceIdentifier beside EventTime), as the
 * schema's element form allows, so only the root's namespace is insisted on.  An
 * element the evidence may hold once is refused when it comes twice, so a reader here
 * and a reader elsewhere cannot be shown different facts by the same document.
 */
#include "message/rem_evidence.h"
#include "message/xmldoc.h"
#include "util/xalloc.h"

#include <errno.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* far above any real evidence (a few KB, and 2 KB more per recipient) */
#define EVIDENCE_MAX (4u * 1024 * 1024)

/* at most this many recipients and reasons are read; a document with more is refused */
#define LIST_MAX 10000

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0 || err[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ reading */

static void refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id,
                           const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = ctx;

    *(int *)ctxt->_private = 1;
    xmlStopParser(ctxt);
}

xmlDocPtr pec_rem_xml_read(const unsigned char *xml, size_t len, char *err, size_t errlen)
{
    xmlParserCtxtPtr ctxt;
    xmlDocPtr doc;
    const char *why;
    int doctype = 0;

    err[0] = '\0';
    if (len == 0) {
        seterr(err, errlen, "empty document");
        return NULL;
    }
    if (len > EVIDENCE_MAX) {
        seterr(err, errlen, "%zu bytes, over the %u accepted", len, EVIDENCE_MAX);
        return NULL;
    }
    ctxt = pec_xml_context((const char *)xml, len,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING, &why);
    if (ctxt == NULL) {
        seterr(err, errlen, "%s", why);
        return NULL;
    }
    ctxt->_private = &doctype;
    ctxt->sax->internalSubset = refuse_doctype;
    if ((doc = pec_xml_parse(ctxt, &doctype)) == NULL) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);

        if (doctype)
            seterr(err, errlen, "a DOCTYPE is not accepted");
        else if (e != NULL && e->message != NULL)
            seterr(err, errlen, "not well-formed XML at line %d: %.*s", e->line,
                   (int)strcspn(e->message, "\n"), e->message);
        else
            seterr(err, errlen, "not well-formed XML");
    }
    xmlFreeParserCtxt(ctxt);
    return doc;
}

/* ------------------------------------------------------------ tree helpers */

int pec_rem_xml_is(xmlNodePtr node, const char *ns, const char *name)
{
    return node != NULL && pec_xml_named(node, name) && node->ns != NULL &&
           xmlStrEqual(node->ns->href, BAD_CAST ns);
}

xmlNodePtr pec_rem_xml_child(xmlNodePtr node, const char *name)
{
    for (xmlNodePtr c = node != NULL ? node->children : NULL; c != NULL; c = c->next)
        if (pec_xml_named(c, name))
            return c;
    return NULL;
}

char *pec_rem_xml_text(xmlNodePtr node)
{
    xmlChar *v;
    const char *s, *e;
    char *out;

    if (node == NULL)
        return NULL;
    if ((v = xmlNodeGetContent(node)) == NULL)
        return xstrdup("");
    s = (const char *)v;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    out = xstrndup(s, (size_t)(e - s));
    xmlFree(v);
    return out;
}

/* How many element children of NODE are called NAME. */
static size_t count_children(xmlNodePtr node, const char *name)
{
    size_t n = 0;

    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += pec_xml_named(c, name);
    return n;
}

/* The one child NAME of NODE: NULL when absent, and an error when it is repeated. */
static xmlNodePtr only_child(xmlNodePtr node, const char *name, char *err, size_t errlen)
{
    if (node != NULL && count_children(node, name) > 1) {
        seterr(err, errlen, "more than one %s in %s", name, (const char *)node->name);
        return NULL;
    }
    return pec_rem_xml_child(node, name);
}

/* The text of the one child NAME of NODE, or NULL. */
static char *child_text(xmlNodePtr node, const char *name, char *err, size_t errlen)
{
    return pec_rem_xml_text(only_child(node, name, err, errlen));
}

/*
 * The value of the eIDAS attribute called NAME (its FriendlyName, or the end of its
 * Name URI) in an Identity element, or NULL.
 */
static char *identity_value(xmlNodePtr identity, const char *name)
{
    size_t n = strlen(name);

    for (xmlNodePtr a = identity != NULL ? identity->children : NULL; a != NULL; a = a->next) {
        xmlChar *friendly, *uri;
        int hit;

        if (!pec_xml_named(a, "Attribute"))
            continue;
        friendly = xmlGetNoNsProp(a, BAD_CAST "FriendlyName");
        uri = xmlGetNoNsProp(a, BAD_CAST "Name");
        hit = (friendly != NULL && xmlStrEqual(friendly, BAD_CAST name)) ||
              (uri != NULL && (size_t)xmlStrlen(uri) > n &&
               strcmp((const char *)uri + xmlStrlen(uri) - n, name) == 0 &&
               uri[xmlStrlen(uri) - (int)n - 1] == '/');
        xmlFree(friendly);
        xmlFree(uri);
        if (hit)
            return pec_rem_xml_text(pec_rem_xml_child(a, "AttributeValue"));
    }
    return NULL;
}

/* The mailto Identifier of a SenderDetails or RecipientDetails. */
static char *mailto(xmlNodePtr details)
{
    for (xmlNodePtr c = details->children; c != NULL; c = c->next) {
        xmlChar *scheme;
        int hit;

        if (!pec_xml_named(c, "Identifier"))
            continue;
        scheme = xmlGetNoNsProp(c, BAD_CAST "IdentifierSchemeName");
        hit = scheme != NULL && xmlStrcasecmp(scheme, BAD_CAST "mailto") == 0;
        xmlFree(scheme);
        if (hit)
            return pec_rem_xml_text(c);
    }
    return NULL;
}

static void read_party(xmlNodePtr details, struct pec_rem_party *p)
{
    p->address = mailto(details);
    p->person_id = identity_value(pec_rem_xml_child(details, "Identity"), "PersonIdentifier");
}

/* A recipient position: a decimal from 1 to N.  0, or -1. */
static int read_position(xmlNodePtr el, size_t n, size_t *out)
{
    char *s = pec_rem_xml_text(el), *end;
    unsigned long v;
    int ret = -1;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0' && s[0] >= '0' && s[0] <= '9' && v >= 1 && v <= n) {
        *out = (size_t)v;
        ret = 0;
    }
    free(s);
    return ret;
}

/* Append the position in EL to *V (of *N) or note why it is wrong. */
static void add_position(xmlNodePtr el, size_t n_recipients, size_t **v, size_t *n, char *err,
                         size_t errlen)
{
    size_t pos;

    if (read_position(el, n_recipients, &pos) != 0) {
        char *s = pec_rem_xml_text(el);

        seterr(err, errlen, "%s \"%.40s\" names none of the %zu recipients", (const char *)el->name,
               s, n_recipients);
        free(s);
        return;
    }
    if (*n >= LIST_MAX)
        return;
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = pos;
}

/* ------------------------------------------------------------ the evidence */

static void read_reasons(xmlNodePtr reasons, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    for (xmlNodePtr r = reasons != NULL ? reasons->children : NULL; r != NULL; r = r->next) {
        struct pec_rem_reason *rr;
        xmlNodePtr d;

        if (!pec_xml_named(r, "EventReason"))
            continue;
        if (ev->n_reasons >= LIST_MAX) {
            seterr(err, errlen, "more than %d EventReason", LIST_MAX);
            return;
        }
        ev->reasons = xrealloc(ev->reasons, (ev->n_reasons + 1) * sizeof(*ev->reasons));
        rr = &ev->reasons[ev->n_reasons++];
        rr->uri = child_text(r, "Code", err, errlen);
        d = pec_rem_xml_child(r, "Details");
        rr->code = pec_rem_xml_text(d);
        while (d != NULL && (d = d->next) != NULL && !pec_xml_named(d, "Details"))
            ;
        rr->text = pec_rem_xml_text(d);
        if (rr->uri == NULL)
            seterr(err, errlen, "an EventReason without Code");
    }
}

static void read_sender(xmlNodePtr sender, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    xmlNodePtr levels = only_child(sender, "AssuranceLevelsDetails", err, errlen);

    read_party(sender, &ev->sender);
    ev->assurance_level = pec_rem_xml_text(
        pec_rem_xml_child(pec_rem_xml_child(levels, "GlobalAssuranceLevel"), "AssuranceLevel"));
    ev->authentication_time = pec_rem_xml_text(pec_rem_xml_child(
        pec_rem_xml_child(levels, "AuthenticationDetails"), "AuthenticationTime"));
    if (ev->sender.address == NULL)
        seterr(err, errlen, "SenderDetails without a mailto Identifier");
}

static void read_recipients(xmlNodePtr root, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        struct pec_rem_party *p;

        if (!pec_xml_named(c, "RecipientDetails"))
            continue;
        if (ev->n_recipients >= LIST_MAX) {
            seterr(err, errlen, "more than %d RecipientDetails", LIST_MAX);
            return;
        }
        ev->recipients = xrealloc(ev->recipients, (ev->n_recipients + 1) * sizeof(*p));
        p = &ev->recipients[ev->n_recipients++];
        read_party(c, p);
        if (p->address == NULL)
            seterr(err, errlen, "RecipientDetails %zu without a mailto Identifier",
                   ev->n_recipients);
    }
}

static void read_content_info(xmlNodePtr info, struct pec_rem_evidence *ev, char *err,
                              size_t errlen)
{
    xmlNodePtr parts = only_child(info, "PartsInfo", err, errlen);
    xmlNodePtr part = only_child(parts, "PartInfo", err, errlen);
    xmlNodePtr method = only_child(part, "DigestMethod", err, errlen);
    xmlChar *alg;

    ev->app_layer_id = child_text(info, "AppLayerIdentifier", err, errlen);
    ev->digest_value = child_text(part, "DigestValue", err, errlen);
    if (method != NULL && (alg = xmlGetNoNsProp(method, BAD_CAST "Algorithm")) != NULL) {
        ev->digest_method = xstrdup((const char *)alg);
        xmlFree(alg);
    }
}

/* One Extension: what we know is read; what we do not know may not be critical. */
static void read_extension(xmlNodePtr ext, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    xmlChar *critical = xmlGetNoNsProp(ext, BAD_CAST "isCritical");
    int is_critical = critical != NULL && (xmlStrEqual(critical, BAD_CAST "true") ||
                                           xmlStrEqual(critical, BAD_CAST "1"));

    xmlFree(critical);
    for (xmlNodePtr c = ext->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (pec_xml_named(c, "GeneralEvidenceInfo")) {
            free(ev->subject);
            ev->subject = child_text(c, "Subject", err, errlen);
            for (xmlNodePtr u = c->children; u != NULL; u = u->next)
                if (pec_xml_named(u, "UntrustedPathToRecipient"))
                    add_position(u, ev->n_recipients, &ev->untrusted, &ev->n_untrusted, err,
                                 errlen);
        } else if (pec_xml_named(c, "RelayEvidenceInfo")) {
            for (xmlNodePtr u = c->children; u != NULL; u = u->next)
                if (pec_xml_named(u, "RelayEvidenceRefersTo"))
                    add_position(u, ev->n_recipients, &ev->refers_to, &ev->n_refers_to, err,
                                 errlen);
        } else if (is_critical) {
            seterr(err, errlen, "critical extension %.80s is not understood",
                   (const char *)c->name);
        }
    }
}

/* Elements the evidence holds at most once, and where each goes. */
static void read_singletons(xmlNodePtr root, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    xmlNodePtr sender = only_child(root, "SenderDetails", err, errlen);
    xmlNodePtr info = only_child(root, "UserContentInfo", err, errlen);
    xmlNodePtr refers = only_child(root, "EvidenceRefersToRecipient", err, errlen);

    ev->evidence_id = child_text(root, "EvidenceIdentifier", err, errlen);
    ev->event_uri = child_text(root, "ERDSEventId", err, errlen);
    ev->event_time = child_text(root, "EventTime", err, errlen);
    ev->submission_time = child_text(root, "SubmissionTime", err, errlen);
    ev->message_id = child_text(root, "MessageIdentifier", err, errlen);
    ev->forwarded_to = child_text(root, "ForwardedToExternalSystem", err, errlen);
    ev->issuer = identity_value(
        pec_rem_xml_child(only_child(root, "EvidenceIssuerDetails", err, errlen), "Identity"),
        "LegalName");
    ev->external = identity_value(
        pec_rem_xml_child(only_child(root, "ExternalERDSDetails", err, errlen), "Identity"),
        "LegalName");
    read_reasons(only_child(root, "EventReasons", err, errlen), ev, err, errlen);
    if (sender != NULL)
        read_sender(sender, ev, err, errlen);
    read_recipients(root, ev, err, errlen);
    if (refers != NULL)
        add_position(refers, ev->n_recipients, &ev->refers_to, &ev->n_refers_to, err, errlen);
    if (info != NULL)
        read_content_info(info, ev, err, errlen);
}

int pec_rem_evidence_parse(xmlDocPtr doc, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlChar *version;
    const char *slash;

    memset(ev, 0, sizeof(*ev));
    err[0] = '\0';
    if (!pec_rem_xml_is(root, PEC_REM_NS_ERDS, "Evidence")) {
        seterr(err, errlen, "the root element is %.80s, not an ERDS Evidence",
               root != NULL ? (const char *)root->name : "missing");
        return -1;
    }
    if ((version = xmlGetNoNsProp(root, BAD_CAST "version")) != NULL) {
        ev->version = xstrdup((const char *)version);
        xmlFree(version);
    }
    read_singletons(root, ev, err, errlen);
    for (xmlNodePtr c = pec_rem_xml_child(only_child(root, "Extensions", err, errlen), "Extension");
         c != NULL; c = c->next)
        if (pec_xml_named(c, "Extension"))
            read_extension(c, ev, err, errlen);
    if (ev->event_uri != NULL) {
        slash = strrchr(ev->event_uri, '/');
        ev->event = slash != NULL ? slash + 1 : ev->event_uri;
    }
    if (ev->evidence_id == NULL)
        seterr(err, errlen, "no EvidenceIdentifier");
    else if (ev->event_uri == NULL)
        seterr(err, errlen, "no ERDSEventId");
    else if (ev->n_reasons == 0)
        seterr(err, errlen, "no EventReason");
    else if (ev->event_time == NULL)
        seterr(err, errlen, "no EventTime");
    else if (ev->message_id == NULL)
        seterr(err, errlen, "no MessageIdentifier");
    else if (ev->sender.address == NULL)
        seterr(err, errlen, "no SenderDetails");
    else if (ev->n_recipients == 0)
        seterr(err, errlen, "no RecipientDetails");
    else if (ev->digest_value == NULL || ev->digest_method == NULL)
        seterr(err, errlen, "no digest of the user content (UserContentInfo/PartsInfo)");
    return err[0] == '\0' ? 0 : -1;
}

void pec_rem_evidence_free(struct pec_rem_evidence *ev)
{
    if (ev == NULL)
        return;
    free(ev->version);
    free(ev->evidence_id);
    free(ev->event_uri);
    for (size_t i = 0; i < ev->n_reasons; i++) {
        free(ev->reasons[i].uri);
        free(ev->reasons[i].code);
        free(ev->reasons[i].text);
    }
    free(ev->reasons);
    free(ev->event_time);
    free(ev->issuer);
    free(ev->external);
    free(ev->sender.address);
    free(ev->sender.person_id);
    free(ev->assurance_level);
    free(ev->authentication_time);
    for (size_t i = 0; i < ev->n_recipients; i++) {
        free(ev->recipients[i].address);
        free(ev->recipients[i].person_id);
    }
    free(ev->recipients);
    free(ev->refers_to);
    free(ev->forwarded_to);
    free(ev->submission_time);
    free(ev->message_id);
    free(ev->app_layer_id);
    free(ev->digest_method);
    free(ev->digest_value);
    free(ev->subject);
    free(ev->untrusted);
    memset(ev, 0, sizeof(*ev));
}
