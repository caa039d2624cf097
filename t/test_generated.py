#!/usr/bin/env python3
"""Every message pecgen writes, checked from outside the project's own code.

t/tools/pecgen writes one message of each kind the provider emits (fixed
clock, deterministic identifiers, the test PKI).  Each one must:

  * verify with `openssl smime -verify` against the test root, the chain
    coming from the certificate the signature embeds;
  * verify with GnuPG's gpgsm, a second, independent S/MIME implementation;
  * carry a daticert.xml valid against the normative DTD (xmllint) and saying
    what the kind must say (pec-rules.md 5.2);
  * have the part layout and the headers of its kind (pec-rules.md 3, 4);
  * have a text/plain and a text/html saying the same thing, ending with the
    identificativo, the HTML free of anything active or external;
  * for the breve receipt: hashes equal to the SHA-1 of the original
    attachments' encoded bodies, every other byte of the original kept;
  * for the buste (trasporto, anomalia): their headers and layout, and the
    consegna completa carrying the very postacert.eml of the busta;
  * be classified back to its kind by pecverify, when it is built;
  * equal, byte for byte, its golden copy in t/golden/ -- with the body of
    smime.p7s replaced by a placeholder: the test PKI is generated with new
    keys in every build directory, so the signature bytes differ between
    builds (they are deterministic within one, which is checked too).

On a golden mismatch the test prints a unified diff; after checking that the
change is intended, regenerate with PEC_UPDATE_GOLDEN=1.
"""
import difflib
import email
import email.header
import email.policy
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

from pectest import env, pki

PECGEN = os.path.join(env.BUILD_DIR, "t", "tools", "pecgen")
GOLDEN = os.path.join(env.SRC_DIR, "t", "golden")
UPDATE = os.environ.get("PEC_UPDATE_GOLDEN") == "1"

SENDER = "mario.rossi@pec-a.test"
CLIENT_MSGID = "<20240315101500.4242@client.pec-a.test>"
SUBJECT = "Fattura n. 42 \u00e8 pronta"
DATE = "Fri, 15 Mar 2024 11:20:30 +0100"
SERVICE = {"a": "posta-certificata@pec-a.test", "b": "posta-certificata@pec-b.test"}
GESTORE = {"a": "Gestore A S.p.A.", "b": "Gestore B S.p.A."}
RECEIPT_A = "ricevute@pec-a.test"
LUIGI, ANNA = "luigi.bianchi@pec-b.test", "anna.verdi@pec-b.test"
TIMEOUT_PREFIX = "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: "

# What each notice must be.  original: postacert.eml included (None, "completa"
# or "breve"); esteso: how errore-esteso starts, None when absent.
NOTICES = {
    "accettazione": dict(
        signer="a", x_ricevuta="accettazione", prefix="ACCETTAZIONE: ", to=SENDER,
        tipo="accettazione", errore="nessuno"),
    "non-accettazione": dict(
        signer="a", x_ricevuta="non-accettazione", prefix="AVVISO DI NON ACCETTAZIONE: ",
        to=SENDER, tipo="non-accettazione", errore="altro",
        esteso="5.7.1 - Gestore A S.p.A. - "),
    "non-accettazione-virus": dict(
        signer="a", x_ricevuta="non-accettazione",
        prefix="AVVISO DI NON ACCETTAZIONE PER VIRUS: ", to=SENDER, verifica=True,
        tipo="non-accettazione", errore="virus", esteso="5.7.1 - Gestore A S.p.A. - ",
        virus=True),
    "presa-in-carico": dict(
        signer="b", x_ricevuta="presa-in-carico", prefix="PRESA IN CARICO: ", to=RECEIPT_A,
        tipo="presa-in-carico", errore="nessuno", ricezione=[LUIGI, ANNA]),
    "consegna-completa": dict(
        signer="b", x_ricevuta="avvenuta-consegna", prefix="CONSEGNA: ", to=SENDER,
        tipo="avvenuta-consegna", errore="nessuno", ricevuta="completa", consegna=LUIGI,
        original="completa"),
    "consegna-breve": dict(
        signer="b", x_ricevuta="avvenuta-consegna", prefix="CONSEGNA: ", to=SENDER,
        tipo="avvenuta-consegna", errore="nessuno", ricevuta="breve", consegna=LUIGI,
        original="breve"),
    "consegna-sintetica": dict(
        signer="b", x_ricevuta="avvenuta-consegna", prefix="CONSEGNA: ", to=SENDER,
        tipo="avvenuta-consegna", errore="nessuno", ricevuta="sintetica", consegna=ANNA),
    "mancata-consegna": dict(
        signer="b", x_ricevuta="errore-consegna", prefix="AVVISO DI MANCATA CONSEGNA: ",
        to=SENDER, tipo="errore-consegna", errore="no-dest", consegna=ANNA,
        esteso="5.1.1 - Gestore B S.p.A. - "),
    "mancata-consegna-virus": dict(
        signer="a", x_ricevuta="errore-consegna",
        prefix="AVVISO DI MANCATA CONSEGNA PER VIRUS: ", to=SENDER, verifica=True,
        tipo="errore-consegna", errore="virus", consegna=LUIGI,
        esteso="5.7.1 - Gestore A S.p.A. - ", virus=True),
    "preavviso-12h": dict(
        signer="a", x_ricevuta="preavviso-errore-consegna", prefix=TIMEOUT_PREFIX, to=SENDER,
        tipo="preavviso-errore-consegna", errore="nessuno", consegna=ANNA,
        esteso="4.4.7 - Gestore A S.p.A. - "),
    "preavviso-24h": dict(
        signer="a", x_ricevuta="preavviso-errore-consegna", prefix=TIMEOUT_PREFIX, to=SENDER,
        tipo="preavviso-errore-consegna", errore="altro", consegna=ANNA,
        esteso="5.4.1 - Gestore A S.p.A. - "),
    "rilevazione-virus": dict(
        signer="b", x_ricevuta="rilevazione-virus", prefix="PROBLEMA DI SICUREZZA: ",
        to=RECEIPT_A, x_mittente=True, tipo="rilevazione-virus", errore="virus",
        consegna=LUIGI, esteso="5.7.1 - Gestore B S.p.A. - ", virus=True),
}

# HTML in a notice may not reach out or run anything (pec-rules.md 3.1); a
# <meta> naming the charset is neither, a refresh would be
HTML_FORBIDDEN = re.compile(
    r"<\s*(script|style|link|img|iframe|object|embed|form|base)\b"
    r"|\b(src|href|style|on\w+)\s*=|http-equiv\s*=\s*\"?refresh|https?:|url\(", re.I)

failures = []


def fail(name, what):
    failures.append("%s: %s" % (name, what))
    print("FAIL %s: %s" % (name, what))


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


# ------------------------------------------------------------------ raw MIME

def split_entity(raw):
    """Header block and body of a raw CRLF entity."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n", body if sep else b""


def raw_parts(raw):
    """The body parts of a raw multipart entity, each without the CRLF that
    belongs to the delimiter after it (RFC 2046)."""
    head, body = split_entity(raw)
    boundary = email.message_from_bytes(head + b"\r\n").get_param("boundary").encode()
    delims = list(re.finditer(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", body, re.M))
    parts = []
    for cur, nxt in zip(delims, delims[1:]):
        if cur.group(1):
            break
        parts.append(body[cur.end() + 1:nxt.start() - 2])
    return parts


def is_attachment(part_raw):
    head, _ = split_entity(part_raw)
    h = email.message_from_bytes(head + b"\r\n", policy=email.policy.compat32)
    named = h.get_param("name") is not None or h.get_param(
        "filename", header="content-disposition") is not None
    return named or h.get_content_type() == "message/rfc822", h.get_filename()


def signed_content(raw, boundary):
    """The exact bytes the signature covers: the first part of multipart/signed."""
    b = boundary.encode()
    start = raw.index(b"\r\n--" + b + b"\r\n") + len(b) + 6
    end = raw.index(b"\r\n--" + b + b"\r\n", start)
    return raw[start:end]


def normalise(raw):
    """The message with the smime.p7s body replaced: what the golden files hold."""
    return re.sub(rb'(filename="smime\.p7s"\r\n\r\n).*?(\r\n--)',
                  rb"\1[smime.p7s: made with this build's test PKI keys, checked apart]\2",
                  raw, count=1, flags=re.S)


# ------------------------------------------------------------------ signatures

def check_openssl(name, path):
    r = run(["openssl", "smime", "-verify", "-in", path, "-CAfile", pki.trust(),
             "-purpose", "any", "-out", os.devnull])
    if r.returncode != 0:
        fail(name, "openssl smime -verify: %s" % r.stdout.decode(errors="replace").strip())


class Gpgsm:
    """A throw-away GNUPGHOME that trusts the test root and nothing else."""

    def __init__(self, tmp):
        self.home = os.path.join(tmp, "gnupg")
        os.mkdir(self.home, 0o700)
        self.env = dict(os.environ, GNUPGHOME=self.home)
        with open(os.path.join(self.home, "gpgsm.conf"), "w") as f:
            f.write("disable-crl-checks\ndisable-policy-checks\n")
        r = run(["gpgsm", "--batch", "--import", pki.trust()], env=self.env)
        if r.returncode != 0:
            raise RuntimeError("gpgsm --import: " + r.stdout.decode(errors="replace"))
        fp = run(["openssl", "x509", "-in", pki.trust(), "-noout", "-fingerprint", "-sha1"])
        fingerprint = fp.stdout.decode().strip().split("=", 1)[1]
        with open(os.path.join(self.home, "trustlist.txt"), "w") as f:
            f.write("%s S\n" % fingerprint)

    def verify(self, name, raw, msg, tmp):
        data = os.path.join(tmp, name + ".signed")
        sig = os.path.join(tmp, name + ".p7s")
        with open(data, "wb") as f:
            f.write(signed_content(raw, msg.get_param("boundary")))
        with open(sig, "wb") as f:
            f.write(msg.get_payload()[1].get_payload(decode=True))
        r = run(["gpgsm", "--batch", "--verify", sig, data], env=self.env)
        out = r.stdout.decode(errors="replace")
        if r.returncode != 0 or "Good signature" not in out:
            fail(name, "gpgsm --verify (exit %d): %s" % (r.returncode, out.strip()))

    def close(self):
        run(["gpgconf", "--kill", "all"], env=self.env)


# ------------------------------------------------------------------ content

def check_headers(name, exp, msg):
    want = {
        "X-Ricevuta": exp["x_ricevuta"],
        "Date": DATE,
        "From": SERVICE[exp["signer"]],
        "To": exp["to"],
        "X-Riferimento-Message-ID": CLIENT_MSGID,
        "MIME-Version": "1.0",
        "X-VerificaSicurezza": "errore" if exp.get("verifica") else None,
        "X-Mittente": SENDER if exp.get("x_mittente") else None,
        "X-Trasporto": None,
    }
    for h, v in want.items():
        got = msg.get_all(h)
        if v is None and got is not None:
            fail(name, "unexpected header %s: %s" % (h, got))
        elif v is not None and got != [v]:
            fail(name, "%s is %r, expected %r" % (h, got, v))
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    if subject != exp["prefix"] + SUBJECT:
        fail(name, "Subject decodes to %r" % subject)
    mid = msg.get("Message-ID", "")
    if not re.fullmatch(r"<[^<>@\s]+@pec-[ab]\.test>", mid):
        fail(name, "Message-ID %r" % mid)
    ctype = msg.get_content_type(), msg.get_param("protocol"), msg.get_param("micalg")
    if ctype != ("multipart/signed", "application/pkcs7-signature", "sha-256"):
        fail(name, "top-level Content-Type %r" % (ctype,))
    return mid


def check_layout(name, exp, msg):
    """signed -> mixed -> [alternative(plain, html), (postacert), daticert] + signature"""
    outer = msg.get_payload()
    if len(outer) != 2 or outer[1].get_content_type() != "application/pkcs7-signature" or \
            outer[1].get_filename() != "smime.p7s":
        fail(name, "multipart/signed does not hold one entity and smime.p7s")
        return None
    mixed = outer[0]
    want = ["multipart/alternative"] + (["message/rfc822"] if exp.get("original") else []) + \
        ["application/xml"]
    got = [p.get_content_type() for p in mixed.get_payload()] \
        if mixed.get_content_type() == "multipart/mixed" else [mixed.get_content_type()]
    if got != want:
        fail(name, "parts %s, expected multipart/mixed of %s" % (got, want))
        return None
    alt = [p.get_content_type() for p in mixed.get_payload()[0].get_payload()]
    if alt != ["text/plain", "text/html"]:
        fail(name, "alternative holds %s" % alt)
        return None
    parts = mixed.get_payload()
    files = [p.get_filename() for p in parts[1:]]
    if files != (["postacert.eml"] if exp.get("original") else []) + ["daticert.xml"]:
        fail(name, "attachment names %s" % files)
    return parts


class HtmlLines(html.parser.HTMLParser):
    """The visible lines of our HTML: <br> and </p> end a line; title apart."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines, self.cur, self.titles, self.in_title = [], "", [], False

    def handle_starttag(self, tag, attrs):
        if tag in ("title", "h3"):
            self.in_title = True
        elif tag == "br":
            self.lines.append(self.cur.strip("\r\n"))
            self.cur = ""

    def handle_endtag(self, tag):
        if tag in ("title", "h3"):
            self.in_title = False
        elif tag == "p" and self.cur.strip():
            self.lines.append(self.cur.strip("\r\n"))
            self.cur = ""

    def handle_data(self, data):
        if self.in_title:
            self.titles.append(data)
        else:
            self.cur += data.replace("\r\n", "")


def check_texts(name, exp, parts, identificativo):
    plain_part, html_part = parts[0].get_payload()
    for p in (plain_part, html_part):
        if p.get_content_charset() not in ("iso-8859-1", "utf-8") or \
                p["Content-Transfer-Encoding"] != "quoted-printable":
            fail(name, "%s: charset %s, encoding %s" % (p.get_content_type(),
                                                       p.get_content_charset(),
                                                       p["Content-Transfer-Encoding"]))
    plain = plain_part.get_payload(decode=True).decode(plain_part.get_content_charset())
    markup = html_part.get_payload(decode=True).decode(html_part.get_content_charset())
    lines = [l for l in plain.split("\r\n") if l.strip()]
    if lines[-1] != "Identificativo del messaggio: " + identificativo:
        fail(name, "text/plain ends with %r" % lines[-1])
    if ('"%s"' % SUBJECT) not in plain:
        fail(name, "text/plain does not quote the subject")
    if exp.get("virus") and "Eicar-Signature" not in plain:
        fail(name, "text/plain does not name the virus")
    if HTML_FORBIDDEN.search(markup) or not markup.isascii():
        fail(name, "text/html has active or external content, or raw 8-bit characters")
    parser = HtmlLines()
    parser.feed(markup)
    parser.close()
    title = lines[0]
    if not (title.startswith("-- ") and title.endswith(" --")) or \
            parser.titles != [title[3:-3]] * 2:
        fail(name, "titles differ: %r vs %r" % (title, parser.titles))
    if parser.lines != lines[1:]:
        fail(name, "text/html says something else than text/plain:\n  %s\n  %s"
             % (lines[1:], parser.lines))


def check_daticert(name, exp, part, tmp, dtd):
    xml = part.get_payload(decode=True)
    if part["Content-Transfer-Encoding"] != "base64" or \
            part.get("Content-Disposition", "").split(";")[0] != "inline":
        fail(name, "daticert.xml is not inline base64")
    path = os.path.join(tmp, name + ".daticert.xml")
    with open(path, "wb") as f:
        f.write(xml)
    if dtd:
        r = run(["xmllint", "--noout", "--dtdvalid", dtd, path])
        if r.returncode != 0:
            fail(name, "xmllint: " + r.stdout.decode(errors="replace").strip())
    root = ET.fromstring(xml)
    dati = root.find("dati")

    def text(tag):
        e = dati.find(tag)
        return None if e is None else e.text

    got = {
        "tipo": root.get("tipo"), "errore": root.get("errore"),
        "gestore": text("gestore-emittente"), "msgid": text("msgid"),
        "ricevuta": None if dati.find("ricevuta") is None else dati.find("ricevuta").get("tipo"),
        "consegna": text("consegna"), "ricezione": [e.text for e in dati.findall("ricezione")],
        "giorno": text("data/giorno"), "ora": text("data/ora"),
        "zona": dati.find("data").get("zona"), "oggetto": root.findtext("intestazione/oggetto"),
    }
    want = {
        "tipo": exp["tipo"], "errore": exp["errore"], "gestore": GESTORE[exp["signer"]],
        "msgid": CLIENT_MSGID, "ricevuta": exp.get("ricevuta"), "consegna": exp.get("consegna"),
        "ricezione": exp.get("ricezione", []), "giorno": "15/03/2024", "ora": "11:20:30",
        "zona": "+0100", "oggetto": SUBJECT,
    }
    for k, v in want.items():
        if got[k] != v:
            fail(name, "daticert %s is %r, expected %r" % (k, got[k], v))
    esteso = text("errore-esteso")
    if (exp.get("esteso") is None) != (esteso is None) or \
            (esteso is not None and not esteso.startswith(exp["esteso"])):
        fail(name, "errore-esteso %r, expected %r..." % (esteso, exp.get("esteso")))
    if exp.get("virus") and "Eicar-Signature" not in (esteso or ""):
        fail(name, "errore-esteso does not name the virus")
    return text("identificativo")


def check_originals(completa_raw, breve_raw, identificativo):
    """completa carries the original; breve the same with attachments hashed."""
    head = email.message_from_bytes(split_entity(completa_raw)[0] + b"\r\n")
    if head["Message-ID"] != "<%s>" % identificativo or \
            head["X-Riferimento-Message-ID"] != CLIENT_MSGID:
        fail("consegna-completa", "postacert.eml Message-ID %r / X-Riferimento-Message-ID %r"
             % (head["Message-ID"], head["X-Riferimento-Message-ID"]))
    if split_entity(completa_raw)[0] != split_entity(breve_raw)[0]:
        fail("consegna-breve", "postacert.eml header differs from the original's")
    orig, brev = raw_parts(completa_raw), raw_parts(breve_raw)
    if len(orig) != len(brev):
        fail("consegna-breve", "%d parts, the original has %d" % (len(brev), len(orig)))
        return
    hashed = 0
    for i, (o, b) in enumerate(zip(orig, brev)):
        attached, filename = is_attachment(o)
        if not attached:
            if o != b:
                fail("consegna-breve", "part %d changed though it is no attachment" % i)
            continue
        hashed += 1
        digest = hashlib.sha1(split_entity(o)[1]).hexdigest()
        bhead, bbody = split_entity(b)
        bmsg = email.message_from_bytes(bhead + b"\r\n")
        want_name = (filename or "") + ".hash"
        if bmsg.get_content_type() != "text/plain" or bmsg.get_filename() != want_name or \
                bmsg.get_param("name") is None:
            fail("consegna-breve", "part %d: %s named %r, expected text/plain %r"
                 % (i, bmsg.get_content_type(), bmsg.get_filename(), want_name))
        if bbody != digest.encode():
            fail("consegna-breve", "part %d: hash %r, SHA-1 of the original part is %s"
                 % (i, bbody, digest))
    if hashed != 3:
        fail("consegna-breve", "%d attachments hashed, the original has 3" % hashed)


def postacert_of(raw, msg):
    """The bytes of the message/rfc822 part of a signed message, as transmitted."""
    for part in raw_parts(signed_content(raw, msg.get_param("boundary"))):
        head, body = split_entity(part)
        if email.message_from_bytes(head + b"\r\n").get_content_type() == "message/rfc822":
            return body
    return None


def check_headers_exact(name, msg, want):
    for h, v in want.items():
        got = msg.get_all(h)
        if (v is None and got is not None) or (v is not None and got != [v]):
            fail(name, "%s is %r, expected %r" % (h, got, v))


def check_busta(raw, msg, tmp, dtd):
    """The busta di trasporto (busta helper's builder) as peers will see it."""
    name = "busta"
    outer = msg.get_payload()
    parts = outer[0].get_payload() if outer[0].get_content_type() == "multipart/mixed" else []
    types = [p.get_content_type() for p in parts]
    if types[:1] != ["multipart/alternative"] or \
            sorted(types[1:]) != ["application/xml", "message/rfc822"]:
        fail(name, "parts %s" % types)
        return None
    identificativo = check_daticert(name, dict(
        signer="a", tipo="posta-certificata", errore="nessuno", ricevuta="completa"),
        [p for p in parts if p.get_content_type() == "application/xml"][0], tmp, dtd)
    check_headers_exact(name, msg, {
        "X-Trasporto": "posta-certificata", "X-Ricevuta": None, "Date": DATE,
        "From": '"Per conto di: %s" <%s>' % (SENDER, SERVICE["a"]),
        "To": "%s, carla.neri@example.com" % LUIGI, "Cc": ANNA,
        "Message-ID": "<%s>" % identificativo, "X-Riferimento-Message-ID": CLIENT_MSGID,
        "X-TipoRicevuta": "completa",
    })
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    if subject != "POSTA CERTIFICATA: " + SUBJECT:
        fail(name, "Subject decodes to %r" % subject)
    plain, markup = [p.get_payload(decode=True) for p in parts[0].get_payload()]
    if not plain.rstrip().endswith(identificativo.encode()) or \
            HTML_FORBIDDEN.search(markup.decode("latin-1")) or not markup.isascii():
        fail(name, "text does not end with the identificativo, or the HTML is unsafe")
    return postacert_of(raw, msg)


def check_anomalia(raw, msg):
    name = "anomalia"
    check_headers_exact(name, msg, {
        "X-Trasporto": "errore", "X-Ricevuta": None, "Date": DATE,
        "Subject": "ANOMALIA MESSAGGIO: Offerta speciale",
        "From": '"Per conto di: offerte@example.com" <%s>' % SERVICE["b"],
        "To": LUIGI, "Message-ID": "<offerta-1@example.com>",
    })
    mixed = msg.get_payload()[0]
    types = [p.get_content_type() for p in mixed.get_payload()]
    if types != ["text/plain", "message/rfc822"]:
        fail(name, "parts %s: only the text and the received message are allowed" % types)
    pc = postacert_of(raw, msg) or b""
    if b"Message-ID: <offerta-1@example.com>\r\n" not in pc or \
            not pc.endswith(b"\r\n\r\nUna mail ordinaria, senza firma.\r\n"):
        fail(name, "the received message is not carried whole")


# ------------------------------------------------------------------ golden files

def check_golden(name, file, raw):
    golden = os.path.join(GOLDEN, file)
    got = normalise(raw)
    if UPDATE:
        os.makedirs(GOLDEN, exist_ok=True)
        with open(golden, "wb") as f:
            f.write(got)
        return
    try:
        with open(golden, "rb") as f:
            want = f.read()
    except FileNotFoundError:
        fail(name, "no golden file %s; create it with PEC_UPDATE_GOLDEN=1" % golden)
        return
    if got != want:
        diff = difflib.unified_diff(
            want.decode("latin-1").splitlines(), got.decode("latin-1").splitlines(),
            "t/golden/" + file, "pecgen " + file, lineterm="", n=2)
        fail(name, "differs from t/golden/%s:\n%s\n(if the change is intended: "
             "PEC_UPDATE_GOLDEN=1 ctest -R py.test_generated, then review git diff t/golden)"
             % (file, "\n".join(diff)))


# ------------------------------------------------------------------ pecverify

def check_pecverify(manifest, out):
    prog = env.program("pecverify")
    if not os.path.exists(prog):
        print("NOTE: %s is not built: classification by pecverify skipped" % prog)
        return
    files = [os.path.join(out, m[0]) for m in manifest]
    r = subprocess.run([prog, "--json", "--trust", pki.trust(), "--index", pki.index(),
                        "--at", "signing-time"] + files,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        verdicts = json.loads(r.stdout.decode())
    except ValueError:
        fail("pecverify", "exit %d, no JSON: %s" % (r.returncode, r.stderr.decode()))
        return
    for (file, kind, header, tipo, errore), v in zip(manifest, verdicts):
        want_kind = {"busta.eml": "busta", "anomalia.eml": "anomalia"}.get(file, "notice")
        got = (v.get("valid"), v.get("kind"), v.get("tipo"), v.get("errore"))
        if want_kind == "anomalia":
            ok = v.get("valid") and v.get("kind") == "anomalia"
        else:
            ok = got == (True, want_kind, tipo, errore)
        if not ok:
            fail(kind, "pecverify says %r (%s), expected valid %s %s/%s"
                 % (got, v.get("reason"), want_kind, tipo, errore))
    if r.returncode != 0:
        fail("pecverify", "exit status %d" % r.returncode)


def check_notice(kind, exp, raw, msg, header, tipo, errore, tmp, dtd, identificativi):
    """Everything a notice must be; returns {"completa"|"breve": postacert bytes} if any."""
    if (header, tipo, errore) != (exp["x_ricevuta"], exp["tipo"], exp["errore"]):
        fail(kind, "manifest says %s %s %s" % (header, tipo, errore))
    check_headers(kind, exp, msg)
    parts = check_layout(kind, exp, msg)
    if parts is None:
        return {}
    identificativo = check_daticert(kind, exp, parts[-1], tmp, dtd)
    identificativi.add(identificativo)
    check_texts(kind, exp, parts, identificativo)
    if not exp.get("original"):
        return {}
    if parts[1]["Content-Transfer-Encoding"] not in ("7bit", "8bit"):
        fail(kind, "postacert.eml encoded as %s" % parts[1]["Content-Transfer-Encoding"])
    return {exp["original"]: postacert_of(raw, msg)}


# ------------------------------------------------------------------ driver

def generate(out):
    r = run([PECGEN, "-p", pki.PKI, out])
    if r.returncode != 0:
        print(r.stdout.decode(errors="replace"))
        sys.exit("pecgen failed (exit %d)" % r.returncode)
    with open(os.path.join(out, "manifest.txt")) as f:
        return [tuple(line.split()) for line in f if line.strip()]


def main():
    if not os.path.exists(PECGEN):
        env.skip("%s is not built" % PECGEN)
    for tool in ("openssl", "gpgsm", "gpgconf", "xmllint"):
        if shutil.which(tool) is None:
            env.skip("%s is not installed (contrib/deps.sh installs it)" % tool)
    pki.ensure()
    dtd = os.path.join(env.SHARED_DIR, "spec", "daticert.dtd")
    if not os.path.exists(dtd):
        print("NOTE: %s is absent: DTD validation of daticert.xml skipped" % dtd)
        dtd = None

    tmp = tempfile.mkdtemp(prefix="pecgen.")
    gpgsm = None
    try:
        out, again = os.path.join(tmp, "out"), os.path.join(tmp, "again")
        manifest = generate(out)
        generate(again)
        gpgsm = Gpgsm(tmp)
        expected = {k + ".eml" for k in NOTICES} | {"busta.eml", "anomalia.eml"}
        listed = {m[0] for m in manifest}
        if not expected <= listed:
            fail("manifest", "missing: %s" % sorted(expected - listed))
        for m in manifest:
            if len(m) != 5:
                fail("manifest", "bad line %r" % (m,))
        check_golden("manifest", "manifest.txt", open(os.path.join(out, "manifest.txt"),
                                                      "rb").read())

        originals, identificativi = {}, set()
        for file, kind, header, tipo, errore in manifest:
            before = len(failures)
            path = os.path.join(out, file)
            with open(path, "rb") as f:
                raw = f.read()
            with open(os.path.join(again, file), "rb") as f:
                if f.read() != raw:
                    fail(kind, "a second run of pecgen wrote different bytes")
            check_openssl(kind, path)
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            gpgsm.verify(kind, raw, msg, tmp)
            check_golden(kind, file, raw)
            if kind == "busta":
                originals["busta"] = check_busta(raw, msg, tmp, dtd)
            elif kind == "anomalia":
                check_anomalia(raw, msg)
            elif kind not in NOTICES:
                fail(kind, "unknown kind in the manifest")
            else:
                originals.update(check_notice(kind, NOTICES[kind], raw, msg, header, tipo,
                                              errore, tmp, dtd, identificativi))
            print("%s %-28s %s" % ("ok  " if len(failures) == before else "FAIL", file,
                                   "signature (openssl, gpgsm), layout, headers, daticert, "
                                   "texts, golden"))
        if len(identificativi) != 1:
            fail("identificativo", "notices quote different ones: %s" % identificativi)
        if {"completa", "breve"} <= set(originals):
            check_originals(originals["completa"], originals["breve"], identificativi.pop())
        if "busta" not in originals:
            print("NOTE: pecgen wrote no busta.eml: the postacert.eml of the notices is not "
                  "compared with a busta's")
        elif originals.get("busta") != originals.get("completa"):
            fail("consegna-completa", "postacert.eml differs from the one in busta.eml")
        check_pecverify(manifest, out)
    finally:
        if gpgsm is not None:
            gpgsm.close()
        shutil.rmtree(tmp, ignore_errors=True)

    if UPDATE:
        print("golden files written to %s: review them with git diff" % GOLDEN)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all generated messages pass")


if __name__ == "__main__":
    main()
