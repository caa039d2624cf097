"""What a hostile peer can make of a genuine PEC message: its signed content
edited and signed again with a test provider's key (`openssl cms`), its
top-level header fields (outside the signature) changed at will.

    from pectest import forge
    raw = forge.resign(raw, "a", content=forge.daticert_edit(lambda x: x.replace(...)),
                       head={"From": "posta-certificata@pec-a.test"})

The result is a well-formed multipart/signed whose signature verifies and
whose signer is a listed provider: what pecmilter must then judge on what
the message says, not on whether it is signed.
"""
import base64
import re
import subprocess

from . import pki

CRLF = b"\r\n"


def _split(raw):
    head, sep, body = raw.partition(CRLF + CRLF)
    if not sep:
        raise ValueError("no header section")
    return head + CRLF, body


def _boundary(head):
    m = re.search(rb'(?is)^Content-Type:\s*multipart/signed;.*?boundary="?([^";\r\n]+)"?', head,
                  re.M)
    if m is None:
        raise ValueError("not multipart/signed")
    return m.group(1)


def signed_content(raw):
    """The bytes the top-level signature covers."""
    head, body = _split(raw)
    b = _boundary(head)
    start = body.index(b"--" + b + CRLF) + len(b) + 4
    end = body.index(CRLF + b"--" + b, start)
    return body[start:end]


def _set_field(head, name, value):
    pat = re.compile(rb"(?im)^" + re.escape(name.encode()) + rb":[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")
    line = ("%s: %s" % (name, value)).encode() + CRLF
    if pat.search(head):
        return pat.sub(lambda m: line, head, count=1)
    return head + line


def sign(content, signer):
    """A detached CMS signature (DER) over CONTENT by test provider SIGNER."""
    return subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
         "-signer", pki.path(signer, "cert.pem"), "-inkey", pki.path(signer, "key.pem"),
         "-certfile", pki.path(signer, "chain.pem")],
        input=content, check=True, capture_output=True).stdout


def resign(raw, signer, content=None, head=None):
    """RAW with its signed content passed through CONTENT (bytes -> bytes), its
    top-level fields set from HEAD (name -> value), signed again by SIGNER."""
    top, _ = _split(raw)
    b = _boundary(top)
    inner = signed_content(raw)
    if content is not None:
        inner = content(inner)
    for name, value in (head or {}).items():
        top = _set_field(top, name, value)
    sig = base64.encodebytes(sign(inner, signer)).replace(b"\n", CRLF)
    return (top + CRLF + b"This is an S/MIME signed message" + CRLF + CRLF
            + b"--" + b + CRLF + inner + CRLF + b"--" + b + CRLF
            + b'Content-Type: application/pkcs7-signature; name="smime.p7s"' + CRLF
            + b"Content-Transfer-Encoding: base64" + CRLF
            + b'Content-Disposition: attachment; filename="smime.p7s"' + CRLF + CRLF
            + sig + b"--" + b + b"--" + CRLF)


def daticert_edit(edit):
    """A CONTENT function for resign(): the daticert.xml part (base64) decoded,
    passed through EDIT (str -> str) and encoded again."""
    def content(inner):
        m = re.search(rb'(?s)(name="?daticert\.xml"?[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)'
                      rb"([A-Za-z0-9+/=\r\n]+?)(\r\n--)", inner)
        if m is None:
            raise ValueError("no daticert.xml part")
        xml = base64.b64decode(m.group(2)).decode("utf-8")
        new = base64.encodebytes(edit(xml).encode("utf-8")).replace(b"\n", CRLF)
        return inner[:m.start(2)] + new.rstrip(CRLF) + inner[m.end(2):]
    return content
