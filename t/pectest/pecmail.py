"""Take a PEC message apart the way the tests need it (standard library only).

Exact bytes, not a re-serialisation: postacert.eml is compared byte for byte
with what the user submitted, so the parts are cut out of the raw message at
their boundaries (RFC 2046: a part is what lies between "--BOUNDARY" CRLF and
the CRLF before the next delimiter), and only the base64 parts are decoded.

    from pectest import pecmail
    m = pecmail.Message(raw)           # raw bytes, CRLF or LF
    m.header("X-Ricevuta")             # first top-level value, unfolded, or None
    m.headers("Received")              # every value of that name
    m.names()                          # top-level field names, in order
    m.postacert()                      # bytes of postacert.eml, or None
    m.daticert()                       # bytes of daticert.xml (decoded), or None
    m.text()                           # the text/plain part, decoded to str
"""
import base64
import email
import email.policy
import quopri
import re

__all__ = ["Message", "split_head", "without_lines"]


def split_head(raw):
    """(header bytes, body bytes) of a CRLF message; the blank line belongs to neither."""
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        return raw, b""
    return raw[:i + 2], raw[i + 4:]


def _fields(head):
    """[(name, raw value with folding)] of a header block."""
    out = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1][1] += b"\r\n" + line
            continue
        name, _, value = line.partition(b":")
        out.append([name.decode("ascii", "replace").strip(), value])
    return [(n, v) for n, v in out]


def _unfold(v):
    return re.sub(rb"\r\n[ \t]", b" ", v).strip().decode("utf-8", "replace")


def _param(value, name):
    m = re.search(r'%s="?([^";\s]+)"?' % name, value, re.I)
    return m.group(1) if m else None


def _parts(body, boundary):
    """The parts of a multipart body, exact bytes (headers included)."""
    delim = b"--" + boundary.encode()
    out = []
    pos = body.find(delim)
    if pos < 0:
        return out
    if pos > 0 and body[pos - 2:pos] != b"\r\n":
        return out
    while True:
        after = pos + len(delim)
        if body[after:after + 2] == b"--":
            return out
        start = body.find(b"\r\n", after) + 2
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            return out
        out.append(body[start:nxt])
        pos = nxt + 2


class Message:
    def __init__(self, raw):
        raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
        self.raw = raw
        self.head, self.body = split_head(raw)
        self.fields = _fields(self.head)

    def names(self):
        return [n for n, _ in self.fields]

    def headers(self, name):
        return [_unfold(v) for n, v in self.fields if n.lower() == name.lower()]

    def header(self, name):
        v = self.headers(name)
        return v[0] if v else None

    def _leaves(self):
        """(headers as Message, body bytes) of every leaf part, depth first."""
        out = []

        def walk(head_fields, body):
            ctype = ""
            for n, v in head_fields:
                if n.lower() == "content-type":
                    ctype = _unfold(v)
            if ctype.lower().startswith("multipart/"):
                for p in _parts(body, _param(ctype, "boundary")):
                    h, b = split_head(p) if not p.startswith(b"\r\n") else (b"", p[2:])
                    walk(_fields(h), b)
            else:
                out.append((dict((n.lower(), _unfold(v)) for n, v in head_fields), body))

        walk(self.fields, self.body)
        return out

    def _part(self, filename):
        for h, b in self._leaves():
            if filename in h.get("content-type", "") or filename in h.get(
                    "content-disposition", ""):
                return h, b
        return None, None

    @staticmethod
    def _decode(h, b):
        enc = h.get("content-transfer-encoding", "7bit").lower()
        if enc == "base64":
            return base64.b64decode(b)
        if enc == "quoted-printable":
            return quopri.decodestring(b)
        return b

    def postacert(self):
        h, b = self._part("postacert.eml")
        return None if h is None else self._decode(h, b)

    def daticert(self):
        h, b = self._part("daticert.xml")
        return None if h is None else self._decode(h, b)

    def text(self):
        for h, b in self._leaves():
            ct = h.get("content-type", "text/plain")
            if ct.lower().startswith("text/plain"):
                charset = _param(ct, "charset") or "us-ascii"
                return self._decode(h, b).decode(charset, "replace")
        return None

    def parsed(self):
        """The message through Python's email package (for layout checks)."""
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)


def without_lines(raw, *names):
    """RAW with every top-level field of the given names (and its continuation
    lines) removed: for comparing a message with what became of it."""
    head, body = split_head(raw)
    kept, skipping = [], False
    lower = tuple(n.lower().encode() + b":" for n in names)
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(lower)
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n" + body
