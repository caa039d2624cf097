/*
 * daticert - names, checks and writing of daticert.xml; UTF-8 hygiene.
 *
 * Writing builds a libxml2 tree (xmlNewTextChild escapes every string),
 * validates it against the embedded DTD as a last guard, and serialises it.
 * The indentation is made of explicit whitespace text nodes rather than
 * libxml2's formatting, whose indent string is a per-thread global another
 * module could change.  Parsing is in daticert_parse.c.
 */
#include "message/daticert.h"
#include "message/daticert_xml.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tipo_names[PEC_TIPO_COUNT] = {
    "accettazione",      "non-accettazione", "presa-in-carico",           "avvenuta-consegna",
    "posta-certificata", "errore-consegna",  "preavviso-errore-consegna", "rilevazione-virus",
};
static const char *const errore_names[PEC_ERRORE_COUNT] = {
    "nessuno", "no-dest", "no-dominio", "virus", "altro",
};
static const char *const ricevuta_names[] = {NULL, "completa", "breve", "sintetica"};
static const char *const dest_tipo_names[] = {"certificato", "esterno"};

#define NAMES(a) (sizeof(a) / sizeof((a)[0]))

/*
 * What each tipo carries, from the element usage table of the rules: which
 * errore values it may have, and for each optional element whether it is
 * required (R), optional (O) or must be absent (-) in what we write.
 */
struct tipo_rule {
    unsigned errori; /* bit (1 << enum pec_errore) per allowed value */
    char ricevuta, consegna, ricezione, errore_esteso;
};

#define E(x) (1u << PEC_ERRORE_##x)

static const struct tipo_rule tipo_rules[PEC_TIPO_COUNT] = {
    [PEC_TIPO_ACCETTAZIONE] = {E(NESSUNO), '-', '-', '-', '-'},
    [PEC_TIPO_NON_ACCETTAZIONE] = {E(ALTRO) | E(VIRUS), '-', '-', '-', 'R'},
    [PEC_TIPO_PRESA_IN_CARICO] = {E(NESSUNO), '-', '-', 'R', '-'},
    [PEC_TIPO_AVVENUTA_CONSEGNA] = {E(NESSUNO), 'R', 'R', '-', '-'},
    [PEC_TIPO_POSTA_CERTIFICATA] = {E(NESSUNO), 'R', '-', '-', '-'},
    [PEC_TIPO_ERRORE_CONSEGNA] = {E(NO_DEST) | E(NO_DOMINIO) | E(VIRUS) | E(ALTRO), '-', 'R', '-',
                                  'R'},
    /* the 12 h and 24 h timeout notices; ours carry a 4.x.x / 5.x.x errore-esteso */
    [PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA] = {E(NESSUNO) | E(ALTRO), '-', 'R', '-', 'O'},
    [PEC_TIPO_RILEVAZIONE_VIRUS] = {E(VIRUS), '-', 'R', '-', 'R'},
};

#undef E

/* ---- names ---- */

const char *pec_tipo_name(enum pec_tipo tipo)
{
    return (unsigned)tipo < NAMES(tipo_names) ? tipo_names[tipo] : NULL;
}

const char *pec_errore_name(enum pec_errore errore)
{
    return (unsigned)errore < NAMES(errore_names) ? errore_names[errore] : NULL;
}

const char *pec_ricevuta_name(enum pec_ricevuta ricevuta)
{
    return (unsigned)ricevuta < NAMES(ricevuta_names) ? ricevuta_names[ricevuta] : NULL;
}

const char *pec_dest_tipo_name(enum pec_dest_tipo tipo)
{
    return (unsigned)tipo < NAMES(dest_tipo_names) ? dest_tipo_names[tipo] : NULL;
}

static int name_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] != NULL && name != NULL && strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

int pec_tipo_parse(const char *name, enum pec_tipo *out)
{
    int i = name_index(tipo_names, NAMES(tipo_names), name);
    if (i < 0)
        return -1;
    *out = (enum pec_tipo)i;
    return 0;
}

int pec_errore_parse(const char *name, enum pec_errore *out)
{
    int i = name_index(errore_names, NAMES(errore_names), name);
    if (i < 0)
        return -1;
    *out = (enum pec_errore)i;
    return 0;
}

int pec_ricevuta_parse(const char *name, enum pec_ricevuta *out)
{
    int i = name_index(ricevuta_names, NAMES(ricevuta_names), name);
    if (i < 0)
        return -1;
    *out = (enum pec_ricevuta)i;
    return 0;
}

/* ---- UTF-8 ---- */

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes available), storing
 * its code point; 0 when the bytes are not one (overlong forms, surrogates
 * and values above U+10FFFF are not).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned long *cp)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        *cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        *cp = s[0] & 0x0f;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        *cp = s[0] & 0x07;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (s[i] & 0x3f);
    }
    return len;
}

/* what we let into daticert.xml: XML 1.0 characters minus C0 controls but tab */
static int char_wanted(unsigned long cp)
{
    return (cp >= 0x20 || cp == '\t') && cp != 0xfffe && cp != 0xffff;
}

static size_t utf8_encode(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

char *pec_utf8_sanitize(const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    char *out = xmalloc(2 * len + 1); /* a Latin-1 byte grows to two at most */
    size_t o = 0;

    for (size_t i = 0; i < len;) {
        unsigned long cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            cp = s[i]; /* not UTF-8: read the byte as ISO-8859-1 */
            n = 1;
        }
        if (char_wanted(cp))
            o += utf8_encode(cp, out + o);
        i += n;
    }
    out[o] = '\0';
    return out;
}

/* 0 when s is UTF-8 made only of wanted characters, else -1 and why */
static int utf8_clean(const char *what, const char *s, char *err, size_t errlen)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);

    for (size_t i = 0; i < len;) {
        unsigned long cp;
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (n == 0) {
            pec_seterr(err, errlen, "daticert.xml: %s is not valid UTF-8 (byte %zu)", what, i);
            return -1;
        }
        if (!char_wanted(cp)) {
            pec_seterr(err, errlen, "daticert.xml: %s contains control character U+%04lX", what,
                       cp);
            return -1;
        }
        i += n;
    }
    return 0;
}

/* ---- checks before writing ---- */

static int need_text(const char *what, const char *s, int may_be_empty, char *err, size_t errlen)
{
    if (s == NULL || (!may_be_empty && *s == '\0')) {
        pec_seterr(err, errlen, "daticert.xml: %s missing", what);
        return -1;
    }
    return utf8_clean(what, s, err, errlen);
}

/* pattern: 'd' a digit, 's' a sign, anything else itself */
static int shaped(const char *s, const char *pattern)
{
    for (; *pattern; s++, pattern++) {
        if (*pattern == 'd'   ? (*s < '0' || *s > '9')
            : *pattern == 's' ? (*s != '+' && *s != '-')
                              : *s != *pattern)
            return 0;
    }
    return *s == '\0';
}

static int check_data(const struct pec_daticert *d, char *err, size_t errlen)
{
    if (d->giorno == NULL || !shaped(d->giorno, "dd/dd/dddd")) {
        pec_seterr(err, errlen, "daticert.xml: giorno is not dd/mm/yyyy");
        return -1;
    }
    if (d->ora == NULL || !shaped(d->ora, "dd:dd:dd")) {
        pec_seterr(err, errlen, "daticert.xml: ora is not hh:mm:ss");
        return -1;
    }
    if (d->zona == NULL || !shaped(d->zona, "sdddd")) {
        pec_seterr(err, errlen, "daticert.xml: zona is not [+|-]hhmm");
        return -1;
    }
    return 0;
}

static int check_intestazione(const struct pec_daticert *d, char *err, size_t errlen)
{
    if (need_text("mittente", d->mittente, 0, err, errlen) != 0)
        return -1;
    if (d->n_destinatari == 0 || d->destinatari == NULL) {
        pec_seterr(err, errlen, "daticert.xml: no destinatari");
        return -1;
    }
    for (size_t i = 0; i < d->n_destinatari; i++) {
        if (need_text("destinatari", d->destinatari[i].address, 0, err, errlen) != 0)
            return -1;
        if (pec_dest_tipo_name(d->destinatari[i].tipo) == NULL) {
            pec_seterr(err, errlen, "daticert.xml: destinatari %s has no valid tipo",
                       d->destinatari[i].address);
            return -1;
        }
    }
    if (need_text("risposte", d->risposte, 0, err, errlen) != 0)
        return -1;
    if (d->oggetto != NULL && need_text("oggetto", d->oggetto, 1, err, errlen) != 0)
        return -1;
    return 0;
}

/* presence of one optional element against the rule letter for the tipo */
static int check_presence(const char *tipo, const char *what, char rule, int present, char *err,
                          size_t errlen)
{
    if (rule == 'R' && !present) {
        pec_seterr(err, errlen, "daticert.xml: %s needs %s", tipo, what);
        return -1;
    }
    if (rule == '-' && present) {
        pec_seterr(err, errlen, "daticert.xml: %s must not have %s", tipo, what);
        return -1;
    }
    return 0;
}

static int check_dati(const struct pec_daticert *d, const struct tipo_rule *r, char *err,
                      size_t errlen)
{
    const char *tipo = tipo_names[d->tipo];

    if (pec_ricevuta_name(d->ricevuta) == NULL && d->ricevuta != PEC_RICEVUTA_NONE) {
        pec_seterr(err, errlen, "daticert.xml: ricevuta has no valid tipo");
        return -1;
    }
    if (check_presence(tipo, "ricevuta", r->ricevuta, d->ricevuta != PEC_RICEVUTA_NONE, err,
                       errlen) != 0 ||
        check_presence(tipo, "consegna", r->consegna, d->consegna != NULL, err, errlen) != 0 ||
        check_presence(tipo, "ricezione", r->ricezione, d->n_ricezione > 0, err, errlen) != 0 ||
        check_presence(tipo, "errore-esteso", r->errore_esteso, d->errore_esteso != NULL, err,
                       errlen) != 0)
        return -1;
    if (d->consegna != NULL && need_text("consegna", d->consegna, 0, err, errlen) != 0)
        return -1;
    if (d->n_ricezione > 0 && d->ricezione == NULL) {
        pec_seterr(err, errlen, "daticert.xml: ricezione missing");
        return -1;
    }
    for (size_t i = 0; i < d->n_ricezione; i++)
        if (need_text("ricezione", d->ricezione[i], 0, err, errlen) != 0)
            return -1;
    if (d->errore_esteso != NULL && need_text("errore-esteso", d->errore_esteso, 0, err, errlen))
        return -1;
    return 0;
}

int pec_daticert_check_facts(const struct pec_daticert *d, char *err, size_t errlen)
{
    if (check_intestazione(d, err, errlen) != 0 ||
        need_text("gestore-emittente", d->gestore_emittente, 0, err, errlen) != 0 ||
        check_data(d, err, errlen) != 0 ||
        need_text("identificativo", d->identificativo, 0, err, errlen) != 0)
        return -1;
    if (d->msgid != NULL) {
        size_t n = strlen(d->msgid);
        if (n < 3 || d->msgid[0] != '<' || d->msgid[n - 1] != '>') {
            pec_seterr(err, errlen, "daticert.xml: msgid must be enclosed in angle brackets");
            return -1;
        }
        if (utf8_clean("msgid", d->msgid, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int pec_daticert_check(const struct pec_daticert *d, char *err, size_t errlen)
{
    const struct tipo_rule *r;

    if (pec_tipo_name(d->tipo) == NULL) {
        pec_seterr(err, errlen, "daticert.xml: unknown tipo %d", (int)d->tipo);
        return -1;
    }
    r = &tipo_rules[d->tipo];
    if (pec_errore_name(d->errore) == NULL || !(r->errori & 1u << d->errore)) {
        pec_seterr(err, errlen, "daticert.xml: errore %s not allowed with tipo %s",
                   pec_errore_name(d->errore) ? pec_errore_name(d->errore) : "(unknown)",
                   tipo_names[d->tipo]);
        return -1;
    }
    if (pec_daticert_check_facts(d, err, errlen) != 0)
        return -1;
    return check_dati(d, r, err, errlen);
}

/* ---- writing ---- */

/* a newline and four spaces per level, as real providers indent */
static void indent(xmlNodePtr parent, int depth)
{
    char ws[1 + 4 * 8 + 1];
    int n = depth < 8 ? depth : 8;

    ws[0] = '\n';
    memset(ws + 1, ' ', 4 * (size_t)n);
    ws[1 + 4 * n] = '\0';
    pec_xml_need(xmlAddChild(parent, pec_xml_need(xmlNewDocText(parent->doc, BAD_CAST ws))));
}

static xmlNodePtr add_element(xmlNodePtr parent, int depth, const char *name, const char *text)
{
    indent(parent, depth);
    return pec_xml_need(xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text));
}

static void set_attr(xmlNodePtr node, const char *name, const char *value)
{
    pec_xml_need(xmlNewProp(node, BAD_CAST name, BAD_CAST value));
}

static void build_intestazione(xmlNodePtr root, const struct pec_daticert *d)
{
    xmlNodePtr in = add_element(root, 1, "intestazione", NULL);

    add_element(in, 2, "mittente", d->mittente);
    for (size_t i = 0; i < d->n_destinatari; i++) {
        xmlNodePtr dest = add_element(in, 2, "destinatari", d->destinatari[i].address);
        set_attr(dest, "tipo", dest_tipo_names[d->destinatari[i].tipo]);
    }
    add_element(in, 2, "risposte", d->risposte);
    if (d->oggetto != NULL)
        add_element(in, 2, "oggetto", d->oggetto);
    indent(in, 1);
}

static void build_dati(xmlNodePtr root, const struct pec_daticert *d)
{
    xmlNodePtr dati = add_element(root, 1, "dati", NULL);
    xmlNodePtr data;

    add_element(dati, 2, "gestore-emittente", d->gestore_emittente);
    data = add_element(dati, 2, "data", NULL);
    set_attr(data, "zona", d->zona);
    add_element(data, 3, "giorno", d->giorno);
    add_element(data, 3, "ora", d->ora);
    indent(data, 2);
    add_element(dati, 2, "identificativo", d->identificativo);
    if (d->msgid != NULL)
        add_element(dati, 2, "msgid", d->msgid);
    if (d->ricevuta != PEC_RICEVUTA_NONE)
        set_attr(add_element(dati, 2, "ricevuta", NULL), "tipo", ricevuta_names[d->ricevuta]);
    if (d->consegna != NULL)
        add_element(dati, 2, "consegna", d->consegna);
    for (size_t i = 0; i < d->n_ricezione; i++)
        add_element(dati, 2, "ricezione", d->ricezione[i]);
    if (d->errore_esteso != NULL)
        add_element(dati, 2, "errore-esteso", d->errore_esteso);
    indent(dati, 1);
}

static xmlDocPtr build_doc(const struct pec_daticert *d)
{
    xmlDocPtr doc = pec_xml_need(xmlNewDoc(BAD_CAST "1.0"));
    xmlNodePtr root = pec_xml_need(xmlNewDocNode(doc, NULL, BAD_CAST "postacert", NULL));

    xmlDocSetRootElement(doc, root);
    set_attr(root, "tipo", tipo_names[d->tipo]);
    set_attr(root, "errore", errore_names[d->errore]);
    build_intestazione(root, d);
    build_dati(root, d);
    indent(root, 0);
    return doc;
}

/*
 * Copies libxml2's output into our own allocation, writing the empty
 * <ricevuta/> as real files do, "<ricevuta tipo=\"completa\" />".  The match
 * is safe: user text is escaped, so "<ricevuta" can only be our element.
 */
static char *copy_output(const char *mem, size_t size, enum pec_ricevuta ricevuta, size_t *len)
{
    char tag[64];
    const char *at = NULL;
    char *out = xmalloc(size + 2);

    if (ricevuta != PEC_RICEVUTA_NONE) {
        snprintf(tag, sizeof(tag), "<ricevuta tipo=\"%s\"/>", ricevuta_names[ricevuta]);
        at = strstr(mem, tag);
    }
    if (at == NULL) {
        memcpy(out, mem, size);
        *len = size;
    } else {
        size_t head = (size_t)(at - mem) + strlen(tag) - 2;
        memcpy(out, mem, head);
        out[head] = ' ';
        memcpy(out + head + 1, mem + head, size - head);
        *len = size + 1;
    }
    out[*len] = '\0';
    return out;
}

int pec_daticert_write(const struct pec_daticert *d, char **xml, size_t *len, char *err,
                       size_t errlen)
{
    xmlDocPtr doc;
    xmlChar *mem = NULL;
    int size = 0;

    *xml = NULL;
    *len = 0;
    if (pec_daticert_init() != 0) {
        pec_seterr(err, errlen, "daticert.xml: the embedded DTD does not load");
        return -1;
    }
    if (pec_daticert_check(d, err, errlen) != 0)
        return -1;
    doc = build_doc(d);
    if (pec_daticert_validate(doc, err, errlen) != 0) {
        xmlFreeDoc(doc);
        return -1;
    }
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    xmlFreeDoc(doc);
    if (mem == NULL || size <= 0) {
        xmlFree(mem);
        pec_seterr(err, errlen, "daticert.xml: libxml2 could not serialise the document");
        return -1;
    }
    *xml = copy_output((const char *)mem, (size_t)size, d->ricevuta, len);
    xmlFree(mem);
    return 0;
}
