/*
 * test_rem - the REM reader's decisions, one at a time.
 *
 * The evidence reader is fed small documents written here: what it takes from them, and
 * what it refuses (a DOCTYPE, a repeated singleton, a recipient position naming nobody,
 * a critical extension it does not know).  The seal and the message checks need real
 * signatures, so they work on the example kits of the shared corpus, each file altered
 * in one place: a second Signature to hide facts in, an XPath that takes out more than
 * the signature, a CertDigest naming another certificate, a missing intermediate, a
 * time-stamp gone; a REM header field that disagrees with the evidence, a receipt that
 * carries an original.  Each must fail with its own reason.  Without PEC_SHARED_DIR those
 * checks are skipped, saying so.
 */
#include "check.h"
#include "message/libinit.h"
#include "message/rem.h"
#include "message/rem_evidence.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *pki;
static char tmpdir[] = "/tmp/test_rem.XXXXXX";

#include "testfiles.h"

#define KIT_IT "corpus-rem/it-agid-2022"
#define KIT_EX "corpus-rem/etsi-319532-4/INFORMATIVE-EXAMPLES"
#define EVIDENCE_RA01 KIT_IT "/standalone-evidence/SubmissionAcceptance.RA01.xml"
#define RECEIPT_RA01 KIT_IT "/Intra-REM-flow/REM_SubmissionAcceptance.RA01.eml"
#define DISPATCH_RA01 KIT_EX "/SCENARIOS/S1/2a.Issued_by_S-REMS-A/REM_Dispatch.RA01.eml"

static const char *shared;
static struct pec_trust *trust;     /* both kits' roots */
static struct pec_trust *etsi_only; /* the ETSI kit's root alone */

/* S with the first FROM replaced by TO (FROM must occur), to free. */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    char *out;

    CHECK(at != NULL);
    if (at == NULL)
        return xstrdup(s);
    out = xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

/* ------------------------------------------------------------ the evidence reader */

#define EV_ROOT                                                                                    \
    "<tns:Evidence xmlns:tns=\"http://uri.etsi.org/19522/v1#\" "                                   \
    "xmlns:ext=\"http://uri.etsi.org/19532/v1#\" "                                                 \
    "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" "                                             \
    "xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" version=\"EN319522v1.1.1\">"

static const char evidence[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" EV_ROOT
    "<tns:EvidenceIdentifier> ev1@p.test </tns:EvidenceIdentifier>"
    "<tns:ERDSEventId>http://uri.etsi.org/19522/Event/RelayAcceptance</tns:ERDSEventId>"
    "<tns:EventReasons><tns:EventReason>"
    "<Code>http://uri.etsi.org/19522/EventReason/S_ERDS_MessageSuccessfullyRelayed</Code>"
    "<Details>RB01</Details><Details>relayed</Details></tns:EventReason></tns:EventReasons>"
    "<EventTime>2024-01-02T03:04:05Z</EventTime>"
    "<tns:EvidenceIssuerDetails><tns:Identity><saml:Attribute FriendlyName=\"LegalName\" "
    "Name=\"http://eidas.europa.eu/attributes/legalperson/LegalName\">"
    "<saml:AttributeValue>Provider B</saml:AttributeValue></saml:Attribute></tns:Identity>"
    "</tns:EvidenceIssuerDetails>"
    "<tns:SenderDetails><tns:Identity><saml:Attribute "
    "Name=\"http://eidas.europa.eu/attributes/naturalperson/PersonIdentifier\">"
    "<saml:AttributeValue>IT/IT/ABC</saml:AttributeValue></saml:Attribute></tns:Identity>"
    "<Identifier IdentifierSchemeName=\"mailto\">s@a.test</Identifier>"
    "<AssuranceLevelsDetails><GlobalAssuranceLevel>"
    "<AssuranceLevel>http://eidas.europa.eu/LoA/substantial</AssuranceLevel>"
    "</GlobalAssuranceLevel></AssuranceLevelsDetails></tns:SenderDetails>"
    "<tns:RecipientDetails><Identifier IdentifierSchemeName=\"mailto\">r1@b.test</Identifier>"
    "</tns:RecipientDetails>"
    "<tns:RecipientDetails><Identifier IdentifierSchemeName=\"mailto\">r2@c.test</Identifier>"
    "</tns:RecipientDetails>"
    "<tns:SubmissionTime>2024-01-02T03:00:00Z</tns:SubmissionTime>"
    "<tns:MessageIdentifier>m1@a.test</tns:MessageIdentifier>"
    "<tns:UserContentInfo><AppLayerIdentifier>&lt;c1@a.test&gt;</AppLayerIdentifier>"
    "<tns:PartsInfo><tns:PartInfo>"
    "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>"
    "<ds:DigestValue>AAAA</ds:DigestValue></tns:PartInfo></tns:PartsInfo></tns:UserContentInfo>"
    "<tns:Extensions><tns:Extension isCritical=\"false\"><ext:GeneralEvidenceInfo>"
    "<ext:Subject>hello</ext:Subject></ext:GeneralEvidenceInfo></tns:Extension>"
    "<tns:Extension isCritical=\"false\"><ext:RelayEvidenceInfo>"
    "<ext:RelayEvidenceRefersTo>2</ext:RelayEvidenceRefersTo></ext:RelayEvidenceInfo>"
    "</tns:Extension></tns:Extensions>"
    "</tns:Evidence>";

/* Parse XML; 0 when read and parsed, else -1 with the reason in ERR. */
static int parse(const char *xml, struct pec_rem_evidence *ev, char *err, size_t errlen)
{
    xmlDocPtr doc = pec_rem_xml_read((const unsigned char *)xml, strlen(xml), err, errlen);
    int ret;

    memset(ev, 0, sizeof(*ev));
    if (doc == NULL)
        return -1;
    ret = pec_rem_evidence_parse(doc, ev, err, errlen);
    xmlFreeDoc(doc);
    return ret;
}

/* XML must be refused with a reason containing WANT. */
static void refused(const char *xml, const char *want)
{
    struct pec_rem_evidence ev;
    char err[300];

    CHECK(parse(xml, &ev, err, sizeof(err)) == -1);
    if (strstr(err, want) == NULL)
        fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", err, want);
    CHECK(strstr(err, want) != NULL);
    pec_rem_evidence_free(&ev);
}

static void test_evidence_facts(void)
{
    struct pec_rem_evidence ev;
    char err[300];

    CHECK(parse(evidence, &ev, err, sizeof(err)) == 0);
    CHECK_STR(ev.evidence_id, "ev1@p.test");
    CHECK_STR(ev.event, "RelayAcceptance");
    CHECK(ev.n_reasons == 1);
    CHECK_STR(ev.reasons[0].code, "RB01");
    CHECK_STR(ev.reasons[0].text, "relayed");
    CHECK_STR(ev.issuer, "Provider B");
    CHECK_STR(ev.sender.address, "s@a.test");
    CHECK_STR(ev.sender.person_id, "IT/IT/ABC");
    CHECK_STR(ev.assurance_level, "http://eidas.europa.eu/LoA/substantial");
    CHECK(ev.n_recipients == 2);
    CHECK_STR(ev.recipients[1].address, "r2@c.test");
    CHECK(ev.n_refers_to == 1 && ev.refers_to[0] == 2);
    CHECK_STR(ev.app_layer_id, "<c1@a.test>");
    CHECK_STR(ev.message_id, "m1@a.test");
    CHECK_STR(ev.digest_value, "AAAA");
    CHECK_STR(ev.subject, "hello");
    pec_rem_evidence_free(&ev);
}

static void test_evidence_refused(void)
{
    char *x;

    refused("<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>"
            "<a>&b;</a>",
            "DOCTYPE");
    refused("<tns:Evidence xmlns:tns=\"http://uri.etsi.org/19522/v1#\"><x></tns:Evidence>",
            "not well-formed XML at line 1");
    refused("<Evidence xmlns=\"urn:other\"/>", "not an ERDS Evidence");
    refused("", "empty document");

    x = replace(evidence, "<EventTime>",
                "<tns:EvidenceIdentifier>ev2@p.test</tns:EvidenceIdentifier><EventTime>");
    refused(x, "more than one EvidenceIdentifier");
    free(x);
    x = replace(evidence, "<ext:RelayEvidenceRefersTo>2", "<ext:RelayEvidenceRefersTo>3");
    refused(x, "RelayEvidenceRefersTo \"3\" names none of the 2 recipients");
    free(x);
    x = replace(evidence, "<ext:RelayEvidenceRefersTo>2", "<ext:RelayEvidenceRefersTo>+1");
    refused(x, "names none");
    free(x);
    x = replace(evidence, "<ext:GeneralEvidenceInfo>", "<ext:Surprise/><ext:GeneralEvidenceInfo>");
    {
        struct pec_rem_evidence ev;
        char err[300];

        /* unknown but not critical: read past */
        CHECK(parse(x, &ev, err, sizeof(err)) == 0);
        pec_rem_evidence_free(&ev);
    }
    free(x);
    x = replace(evidence, "<tns:Extension isCritical=\"false\"><ext:GeneralEvidenceInfo>",
                "<tns:Extension isCritical=\"true\"><ext:Surprise/><ext:GeneralEvidenceInfo>");
    refused(x, "critical extension Surprise is not understood");
    free(x);
    x = replace(evidence, "<tns:MessageIdentifier>m1@a.test</tns:MessageIdentifier>", "");
    refused(x, "no MessageIdentifier");
    free(x);
    x = replace(evidence, "IdentifierSchemeName=\"mailto\">r1@b.test",
                "IdentifierSchemeName=\"tel\">r1@b.test");
    refused(x, "RecipientDetails 1 without a mailto Identifier");
    free(x);
}

static void test_pec_equivalent(void)
{
    CHECK_STR(pec_rem_pec_equivalent(1, "SubmissionAcceptance", "RA01"), "busta");
    CHECK_STR(pec_rem_pec_equivalent(0, "SubmissionAcceptance", "RA01"), "accettazione");
    CHECK_STR(pec_rem_pec_equivalent(0, "SubmissionRejection", "RA03"), "non-accettazione");
    CHECK_STR(pec_rem_pec_equivalent(0, "RelayAcceptance", "RB01"), "presa-in-carico");
    CHECK_STR(pec_rem_pec_equivalent(0, "RelayRejection", "RB03"), "rilevazione-virus");
    CHECK(pec_rem_pec_equivalent(0, "RelayRejection", "RB21") == NULL);
    CHECK_STR(pec_rem_pec_equivalent(0, "RelayFailure", "RB22"), "errore-consegna");
    CHECK_STR(pec_rem_pec_equivalent(0, "ContentConsignment", "RD01"), "avvenuta-consegna");
    CHECK_STR(pec_rem_pec_equivalent(0, "ContentConsignmentFailure", "RD03"), "errore-consegna");
    CHECK_STR(pec_rem_pec_equivalent(1, "ReceivedFromNonERDS", "RF04"), "anomalia");
    CHECK(pec_rem_pec_equivalent(0, "RelayToNonERDS", "RF01") == NULL);
}

/* ------------------------------------------------------------ the seal, on the kit */

static char *corpus(const char *rel, size_t *len)
{
    char *path = xasprintf("%s/%s", shared, rel);
    char *data = (char *)read_all(path, len);

    CHECK(data != NULL);
    free(path);
    return data != NULL ? data : xstrdup("");
}

static struct pec_inspect_opts opts_with(const struct pec_trust *t)
{
    struct pec_inspect_opts o = {.trust = t, .at_mode = PEC_AT_NOW};

    return o;
}

/* The evidence XML must be judged VALID, or invalid with a reason containing WANT. */
static void seal_verdict(const char *xml, const struct pec_trust *t, const char *want)
{
    struct pec_inspect_opts o = opts_with(t);
    struct pec_rem_inspection r;
    int ret = pec_rem_inspect_evidence((const unsigned char *)xml, strlen(xml), &o, &r);

    if (want == NULL) {
        if (ret != 0)
            fprintf(stderr, "  unexpected: %s\n", r.reason);
        CHECK(ret == 0 && r.valid);
    } else {
        if (strstr(r.reason, want) == NULL)
            fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", r.reason, want);
        CHECK(ret == -1 && strstr(r.reason, want) != NULL);
    }
    pec_rem_inspection_free(&r);
}

static void test_seal(void)
{
    size_t len;
    char *xml = corpus(EVIDENCE_RA01, &len), *x, *y;
    struct pec_inspect_opts o = opts_with(trust);
    struct pec_rem_inspection r;

    CHECK(pec_rem_inspect_evidence((const unsigned char *)xml, len, &o, &r) == 0);
    CHECK_STR(r.kind, "evidence");
    CHECK(r.seal.ok && r.seal.timestamp_ok && r.seal.has_signing_time);
    CHECK(r.seal.signing_time == 1659536531); /* 2022-08-03T14:22:11Z */
    CHECK(r.seal.tsa_chain == PEC_REM_TSA_UNCHECKED);
    CHECK(strstr(r.seal.tsa_note, "no trust anchor reaches the TSA") != NULL);
    CHECK(strstr(r.seal.signer_subject, "CN=S1-REMS provider") != NULL);
    pec_rem_inspection_free(&r);

    /* facts outside what the first reference covers: a second Signature to hide them in */
    x = replace(xml, "<tns:Extensions>",
                "<ds:Signature><tns:MessageIdentifier>forged</tns:MessageIdentifier>"
                "</ds:Signature><tns:Extensions>");
    seal_verdict(x, trust, "2 ds:Signature elements, expected one");
    free(x);
    /* a filter that takes out more than the signature */
    x = replace(xml, "/descendant::ds:Signature", "/descendant::tns:Extensions");
    seal_verdict(x, trust, "does not take out only the signature");
    free(x);
    /* a signature that is not the last element */
    x = replace(xml, "</ds:Signature></tns:Evidence>", "</ds:Signature><x/></tns:Evidence>");
    seal_verdict(x, trust, "not the last element");
    free(x);
    /* QualifyingProperties of another signature */
    x = replace(xml, "Target=\"#id-", "Target=\"#other-");
    seal_verdict(x, trust, "no xades:QualifyingProperties for this signature");
    free(x);
    /* the signed facts, the signed properties, the value */
    x = replace(xml, "<ext:Subject>Oggetto", "<ext:Subject>oggetto");
    seal_verdict(x, trust, "the evidence does not match its signature");
    free(x);
    x = replace(xml, "<xades:SigningTime>2022-08-03T14:22:11Z",
                "<xades:SigningTime>2022-08-03T14:22:12Z");
    seal_verdict(x, trust, "the SignedProperties do not match");
    free(x);
    x = replace(xml, "value-id-ce8ccda48a67542baa739cf060270526\">a7jl",
                "value-id-ce8ccda48a67542baa739cf060270526\">a7jm");
    seal_verdict(x, trust, "the SignatureValue does not match");
    free(x);
    /* algorithms outside the baseline: SHA-1, and an HMAC posing as a signature */
    x = replace(xml,
                "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>"
                "<ds:DigestValue>TlEH",
                "<ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/>"
                "<ds:DigestValue>TlEH");
    seal_verdict(x, trust, "transform is disabled (href=http://www.w3.org/2000/09/xmldsig#sha1)");
    free(x);
    x = replace(xml, "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2000/09/xmldsig#hmac-sha1");
    seal_verdict(x, trust,
                 "transform is disabled (href=http://www.w3.org/2000/09/xmldsig#hmac-sha1)");
    free(x);
    /* a CertDigest that names no certificate of KeyInfo */
    x = replace(xml, "<ds:DigestValue>GkqgBPLJ", "<ds:DigestValue>HkqgBPLJ");
    seal_verdict(x, trust, "no certificate in KeyInfo has the CertDigest");
    free(x);
    /* the intermediate left out of KeyInfo: the chain breaks at the root */
    x = xstrdup(xml);
    {
        char *second = strstr(strstr(x, "<ds:X509Certificate>") + 1, "<ds:X509Certificate>");
        char *end = second ? strstr(second, "</ds:X509Certificate>") : NULL;

        CHECK(end != NULL);
        if (end != NULL)
            memmove(second, end + strlen("</ds:X509Certificate>"),
                    strlen(end + strlen("</ds:X509Certificate>")) + 1);
    }
    seal_verdict(x, trust,
                 "untrusted issuer: C=IT, O=ITERDS, OU=ITERDS test services, "
                 "CN=ITERDS Intermediate CA");
    free(x);
    /* no time-stamp, a broken one, one over another signature value */
    x = replace(xml, "<xades:UnsignedProperties>", "<xades:UnsignedPropertiesX>");
    y = replace(x, "</xades:UnsignedProperties>", "</xades:UnsignedPropertiesX>");
    seal_verdict(y, trust, "time-stamp: no SignatureTimeStamp");
    free(x);
    free(y);
    x = replace(
        xml,
        "<ds:CanonicalizationMethod "
        "Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><xades:EncapsulatedTimeStamp",
        "<ds:CanonicalizationMethod "
        "Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/"
        "><xades:EncapsulatedTimeStamp");
    seal_verdict(x, trust, "time-stamp: its imprint is not the SHA256 of the signature value");
    free(x);
    /* anchors that do not reach the signer */
    seal_verdict(xml, etsi_only,
                 "untrusted issuer: C=IT, O=ITERDS, OU=ITERDS test services, "
                 "CN=ITERDS Root CA");
    free(xml);
}

/* ------------------------------------------------------------ the message, on the kit */

static void message_verdict(const char *eml, const char *want)
{
    struct pec_inspect_opts o = opts_with(trust);
    struct pec_rem_inspection r;
    int ret = pec_rem_inspect((const unsigned char *)eml, strlen(eml), &o, &r);

    if (want == NULL) {
        if (ret != 0)
            fprintf(stderr, "  unexpected: %s\n", r.reason);
        CHECK(ret == 0 && r.valid);
        CHECK_STR(r.kind, "rem");
    } else {
        if (strstr(r.reason, want) == NULL)
            fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", r.reason, want);
        CHECK(ret == -1 && strstr(r.reason, want) != NULL);
    }
    pec_rem_inspection_free(&r);
}

static void test_message(void)
{
    size_t len;
    char *receipt = corpus(RECEIPT_RA01, &len), *dispatch = corpus(DISPATCH_RA01, &len), *x;
    struct pec_inspect_opts o = opts_with(trust);
    struct pec_rem_inspection r;

    CHECK(pec_rem_announced((const unsigned char *)receipt, strlen(receipt)));
    CHECK(
        !pec_rem_announced((const unsigned char *)"Subject: x\r\n\r\nREM-MessageType: y\r\n", 36));
    message_verdict(receipt, NULL);
    CHECK(pec_rem_inspect((const unsigned char *)dispatch, strlen(dispatch), &o, &r) == 0);
    CHECK_STR(r.message_type, "dispatch");
    CHECK(r.has_original && r.original_digest != NULL);
    CHECK_STR(r.original_digest, r.evidence.digest_value);
    CHECK(r.evidence.n_untrusted == 1 && r.evidence.untrusted[0] == 4);
    pec_rem_inspection_free(&r);

    /* the header fields outside the signature, each against the evidence */
    x = replace(receipt,
                "REM-EventIdentifier: http://uri.etsi.org/19522/Event/SubmissionAcceptance",
                "REM-EventIdentifier: http://uri.etsi.org/19522/Event/RelayAcceptance");
    message_verdict(x, "REM-EventIdentifier http://uri.etsi.org/19522/Event/RelayAcceptance is "
                       "not the evidence's event");
    free(x);
    x = replace(receipt,
                "REM-ReasonIdentifier: http://uri.etsi.org/19522/EventReason/MessageAccepted",
                "REM-ReasonIdentifier: http://uri.etsi.org/19522/EventReason/MalwareFound");
    message_verdict(x, "REM-ReasonIdentifier http://uri.etsi.org/19522/EventReason/MalwareFound "
                       "is not among the evidence's reasons");
    free(x);
    x = replace(receipt, "REM-DigestValue: ePgg", "REM-DigestValue: fPgg");
    message_verdict(x, "REM-DigestValue fPgg");
    free(x);
    x = replace(receipt, "REM-UAMessageIdentifier: <30be", "REM-UAMessageIdentifier: <40be");
    message_verdict(x, "REM-UAMessageIdentifier <40be");
    free(x);
    x = replace(receipt, "REM-Evidence-ID:", "REM-Evidence-ID: <x@y>\r\nREM-Evidence-ID:");
    message_verdict(x, "more than one REM-Evidence-ID header");
    free(x);
    x = replace(receipt, "REM-MessageType: http://uri.etsi.org/19522/v1#/ERDMessageType/receipt",
                "REM-MessageType: http://uri.etsi.org/19522/v1#/ERDMessageType/dispatch");
    message_verdict(x, "a dispatch with 0 rem_message/original sections");
    free(x);
    /* a receipt's section marker changed: the envelope signature is what breaks */
    x = replace(receipt, "REM-Section-Type: rem_message/introduction",
                "REM-Section-Type: rem_message/original");
    message_verdict(x, "0 rem_message/introduction sections, expected one");
    free(x);
    x = replace(receipt, "REM-Section-Type: rem_message/introduction", "X-Section: none");
    message_verdict(x, "part 1 of the signed content has no REM-Section-Type");
    free(x);
    x = replace(dispatch, "REM-MessageType: http://uri.etsi.org/19522/v1#/ERDMessageType/dispatch",
                "REM-MessageType: http://uri.etsi.org/19522/v1#/ERDMessageType/receipt");
    message_verdict(x, "a receipt with a rem_message/original section");
    free(x);
    x = replace(dispatch, "Message-ID: <26A0CF65", "Message-ID: <36A0CF65");
    message_verdict(x, "the dispatch's Message-ID <36A0CF65");
    free(x);
    /* unsigned, and truncated */
    x = replace(receipt, "multipart/signed", "multipart/mixed");
    message_verdict(x, "no S/MIME signature (multipart/mixed)");
    free(x);
    receipt[strlen(receipt) - 40] = '\0';
    message_verdict(receipt, "truncated message");
    free(receipt);
    free(dispatch);
}

int main(void)
{
    char err[300], *bundle, *roots;
    size_t l1, l2;
    char *r1, *r2;

    pki = "";
    CHECK(pec_lib_init(err, sizeof(err)) == 0);
    test_evidence_facts();
    test_evidence_refused();
    test_pec_equivalent();
    shared = getenv("PEC_SHARED_DIR");
    if (shared == NULL || *shared == '\0') {
        printf("corpus checks skipped: PEC_SHARED_DIR is not set\n");
        return check_exit();
    }
    CHECK(mkdtemp(tmpdir) != NULL);
    r1 = corpus(KIT_IT "/certificates/REM-ROOT-CA.crt", &l1);
    r2 = corpus(KIT_EX "/CERTIFICATES/REM-ROOT-CA.crt", &l2);
    roots = xasprintf("%s\n%s", r1, r2);
    bundle = write_tmp("roots.pem", roots, strlen(roots));
    trust = pec_trust_load(bundle, err, sizeof(err));
    CHECK(trust != NULL);
    unlink(bundle);
    free(bundle);
    bundle = write_tmp("ex-root.pem", r2, l2);
    etsi_only = pec_trust_load(bundle, err, sizeof(err));
    CHECK(etsi_only != NULL);
    unlink(bundle);
    free(bundle);
    rmdir(tmpdir);
    if (trust != NULL && etsi_only != NULL) {
        test_seal();
        test_message();
    }
    pec_trust_free(trust);
    pec_trust_free(etsi_only);
    free(r1);
    free(r2);
    free(roots);
    return check_exit();
}
