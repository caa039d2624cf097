"""The MTA side of the Sendmail 8 milter protocol, version 6, as Postfix 3.7 speaks it.

Standard library only.  Debian's miltertest cannot check change-sender or
add-recipient-with-parameters requests and says nothing when it fails, so the
tests drive pecmilter through this module instead.

Wire format (see /usr/include/libmilter/mfdef.h): every packet is a 4-byte
big-endian length covering the command byte and the data, the command byte,
then the data.  Strings are NUL-terminated.

Typical use:

    from pectest.milter import Milter
    with Milter("unix:/tmp/x/milter.sock") as m:
        res = m.send_message(raw, "<a@pec.test>", ["<b@pec.test>"],
                             connect_macros={"{daemon_name}": "submission"})
        assert res.reply == "continue"
        headers, body = res.apply(*parse_message(raw))

What is modelled on Postfix (milter8.c, mime_state.c, cleanup_milter.c):
  * negotiation offers protocol version 6, every action (SMFIF_*) and every
    protocol step Postfix offers with milter_protocol = 6 (SMFI_CURR_PROT);
  * a stage the milter asked not to receive (SMFIP_NO*) is not sent, a stage
    it asked not to answer (SMFIP_NR_*) is sent without waiting for a reply;
  * header values: name up to the colon (trailing blanks dropped), value after
    the colon with ONE leading space removed (unless SMFIP_HDR_LEADSPC was
    negotiated), folded lines joined with a bare "\\n";
  * body: CRLF line endings, sent in chunks of at most 65535 bytes; the blank
    line that separates header and body is not part of the body;
  * SMFIR_PROGRESS and SMFIR_QUARANTINE never end a stage; modification
    requests are accepted only at end of message;
  * chgheader index is 1-based among headers of that name (0 is taken as 1),
    an empty value deletes, an index past the last instance appends; insheader
    index is a 0-based position; see EomResult.apply().
"""

import re
import select
import socket
import struct
import time

__all__ = [
    "MilterError", "Reply", "Milter", "EomResult", "parse_message", "render_message",
    "ALL_ACTIONS", "POSTFIX_PROTOCOL",
]

# ---------------------------------------------------------------------------
# Protocol constants (mfdef.h)

SMFI_PROT_VERSION = 6
MILTER_CHUNK_SIZE = 65535
MAX_PACKET = 64 * 1024 * 1024     # sanity bound for a reply length (Postfix: INT_MAX/2)

# commands, MTA -> milter
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# replies, milter -> MTA
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_SHUTDOWN = b"4"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_CONN_FAIL = b"f"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_SETSYMLIST = b"l"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

# actions the milter may request (SMFIF_*)
SMFIF_ADDHDRS = 0x001
SMFIF_CHGBODY = 0x002
SMFIF_ADDRCPT = 0x004
SMFIF_DELRCPT = 0x008
SMFIF_CHGHDRS = 0x010
SMFIF_QUARANTINE = 0x020
SMFIF_CHGFROM = 0x040
SMFIF_ADDRCPT_PAR = 0x080
SMFIF_SETSYMLIST = 0x100
ALL_ACTIONS = 0x1FF               # SMFI_CURR_ACTS, what Postfix 3.7 offers

# protocol flags (SMFIP_*)
SMFIP_NOCONNECT = 0x00000001
SMFIP_NOHELO = 0x00000002
SMFIP_NOMAIL = 0x00000004
SMFIP_NORCPT = 0x00000008
SMFIP_NOBODY = 0x00000010
SMFIP_NOHDRS = 0x00000020
SMFIP_NOEOH = 0x00000040
SMFIP_NR_HDR = 0x00000080
SMFIP_NOHREPL = SMFIP_NR_HDR
SMFIP_NOUNKNOWN = 0x00000100
SMFIP_NODATA = 0x00000200
SMFIP_SKIP = 0x00000400
SMFIP_RCPT_REJ = 0x00000800
SMFIP_NR_CONN = 0x00001000
SMFIP_NR_HELO = 0x00002000
SMFIP_NR_MAIL = 0x00004000
SMFIP_NR_RCPT = 0x00008000
SMFIP_NR_DATA = 0x00010000
SMFIP_NR_UNKN = 0x00020000
SMFIP_NR_EOH = 0x00040000
SMFIP_NR_BODY = 0x00080000
SMFIP_HDR_LEADSPC = 0x00100000
SMFIP_MDS_256K = 0x10000000
SMFIP_MDS_1M = 0x20000000
POSTFIX_PROTOCOL = 0x001FFFFF     # SMFI_CURR_PROT: what Postfix offers with milter_protocol = 6

# macro stages of the SMFIC_OPTNEG symbol list (SMFIM_*)
SMFIM_CONNECT, SMFIM_HELO, SMFIM_ENVFROM, SMFIM_ENVRCPT, SMFIM_DATA, SMFIM_EOM, SMFIM_EOH = range(7)
STAGE_NAMES = {0: "connect", 1: "helo", 2: "envfrom", 3: "envrcpt", 4: "data", 5: "eom", 6: "eoh"}
STAGE_COMMANDS = {0: "C", 1: "H", 2: "M", 3: "R", 4: "T", 5: "E", 6: "N"}

# per command: (SMFIP_NOxxx that suppresses it, SMFIP_NR_xxx that suppresses its reply)
_STEP_FLAGS = {
    SMFIC_CONNECT: (SMFIP_NOCONNECT, SMFIP_NR_CONN),
    SMFIC_HELO: (SMFIP_NOHELO, SMFIP_NR_HELO),
    SMFIC_MAIL: (SMFIP_NOMAIL, SMFIP_NR_MAIL),
    SMFIC_RCPT: (SMFIP_NORCPT, SMFIP_NR_RCPT),
    SMFIC_DATA: (SMFIP_NODATA, SMFIP_NR_DATA),
    SMFIC_HEADER: (SMFIP_NOHDRS, SMFIP_NR_HDR),
    SMFIC_EOH: (SMFIP_NOEOH, SMFIP_NR_EOH),
    SMFIC_BODY: (SMFIP_NOBODY, SMFIP_NR_BODY),
    SMFIC_UNKNOWN: (SMFIP_NOUNKNOWN, SMFIP_NR_UNKN),
    SMFIC_BODYEOB: (0, 0),
}

_COMMAND_NAMES = {
    b"A": "SMFIC_ABORT", b"B": "SMFIC_BODY", b"C": "SMFIC_CONNECT", b"D": "SMFIC_MACRO",
    b"E": "SMFIC_BODYEOB", b"H": "SMFIC_HELO", b"K": "SMFIC_QUIT_NC", b"L": "SMFIC_HEADER",
    b"M": "SMFIC_MAIL", b"N": "SMFIC_EOH", b"O": "SMFIC_OPTNEG", b"Q": "SMFIC_QUIT",
    b"R": "SMFIC_RCPT", b"T": "SMFIC_DATA", b"U": "SMFIC_UNKNOWN",
}

# final decisions: reply byte -> Reply.code
_DECISIONS = {
    SMFIR_CONTINUE: "continue",
    SMFIR_ACCEPT: "accept",
    SMFIR_REJECT: "reject",
    SMFIR_TEMPFAIL: "tempfail",
    SMFIR_DISCARD: "discard",
    SMFIR_SKIP: "skip",
    SMFIR_SHUTDOWN: "shutdown",
    SMFIR_CONN_FAIL: "connfail",
    SMFIR_REPLYCODE: "replycode",
}

# modification requests: reply byte -> (action name, SMFIF_* the milter must have negotiated)
_MODIFICATIONS = {
    SMFIR_ADDHEADER: ("addheader", SMFIF_ADDHDRS),
    SMFIR_INSHEADER: ("insheader", SMFIF_ADDHDRS),
    SMFIR_CHGHEADER: ("chgheader", SMFIF_CHGHDRS),
    SMFIR_REPLBODY: ("replbody", SMFIF_CHGBODY),
    SMFIR_ADDRCPT: ("addrcpt", SMFIF_ADDRCPT),
    SMFIR_ADDRCPT_PAR: ("addrcpt_par", SMFIF_ADDRCPT_PAR),
    SMFIR_DELRCPT: ("delrcpt", SMFIF_DELRCPT),
    SMFIR_CHGFROM: ("chgfrom", SMFIF_CHGFROM),
    SMFIR_QUARANTINE: ("quarantine", SMFIF_QUARANTINE),
    SMFIR_SETSYMLIST: ("setsymlist", SMFIF_SETSYMLIST),
}

_REPLY_NAMES = {
    b"+": "SMFIR_ADDRCPT", b"-": "SMFIR_DELRCPT", b"2": "SMFIR_ADDRCPT_PAR",
    b"4": "SMFIR_SHUTDOWN", b"a": "SMFIR_ACCEPT", b"b": "SMFIR_REPLBODY",
    b"c": "SMFIR_CONTINUE", b"d": "SMFIR_DISCARD", b"e": "SMFIR_CHGFROM",
    b"f": "SMFIR_CONN_FAIL", b"h": "SMFIR_ADDHEADER", b"i": "SMFIR_INSHEADER",
    b"l": "SMFIR_SETSYMLIST", b"m": "SMFIR_CHGHEADER", b"p": "SMFIR_PROGRESS",
    b"q": "SMFIR_QUARANTINE", b"r": "SMFIR_REJECT", b"s": "SMFIR_SKIP",
    b"t": "SMFIR_TEMPFAIL", b"y": "SMFIR_REPLYCODE", b"O": "SMFIC_OPTNEG",
}

_CODING = ("utf-8", "surrogateescape")    # any byte round-trips through str


def _enc(s):
    if isinstance(s, (bytes, bytearray)):
        return bytes(s)
    return str(s).encode(*_CODING)


def _dec(b):
    return b.decode(*_CODING)


def _cname(cmd):
    return _COMMAND_NAMES.get(cmd, repr(cmd))


def _rname(cmd):
    return _REPLY_NAMES.get(cmd, "unknown reply %r" % cmd)


def _bracket(addr):
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        return addr
    return "<%s>" % addr


def _unbracket(addr):
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        return addr[1:-1]
    return addr


class MilterError(Exception):
    """Protocol violation, timeout, closed connection or refused negotiation."""


# ---------------------------------------------------------------------------
# Replies and results

class Reply:
    """The milter's answer to one command.

    code     'continue', 'accept', 'reject', 'tempfail', 'discard', 'replycode',
             'skip', 'shutdown' (SMFIR_SHUTDOWN) or 'connfail' (SMFIR_CONN_FAIL)
    text     for 'replycode' the full text as sent, e.g. "553 5.7.1 ...", else None
    command  the MTA command this answers ('C', 'H', 'M', ..., 'E')
    sent     False when the command was not sent (the milter negotiated SMFIP_NOxxx
             for it, or skipped the stage with SMFIR_SKIP); code is then 'continue'
    replied  False when no reply was read (SMFIP_NR_xxx, or not sent)
    progress how many SMFIR_PROGRESS packets came before the answer

    A Reply compares equal to its code: reply == 'continue'.
    """

    __slots__ = ("code", "text", "command", "sent", "replied", "progress")

    def __init__(self, code, text=None, command=None, sent=True, replied=True, progress=0):
        self.code = code
        self.text = text
        self.command = command
        self.sent = sent
        self.replied = replied
        self.progress = progress

    @property
    def smtp_text(self):
        """The reply as Postfix would use it: '%%' becomes '%', a lone '%' is dropped."""
        if self.text is None:
            return None
        return re.sub(r"%(.?)", lambda m: m.group(1), self.text, flags=re.S)

    @property
    def smtp_code(self):
        """The SMTP reply Postfix gives the client for this decision, or None for none."""
        if self.code == "replycode":
            return self.smtp_text
        return {"reject": "550 5.7.1 Command rejected",
                "tempfail": "451 4.7.1 Service unavailable - try again later"}.get(self.code)

    def __eq__(self, other):
        if isinstance(other, str):
            return self.code == other
        if isinstance(other, Reply):
            return (self.code, self.text) == (other.code, other.text)
        return NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None

    def __repr__(self):
        extra = ""
        if self.text is not None:
            extra += " %r" % self.text
        if not self.sent:
            extra += " (not sent)"
        elif not self.replied:
            extra += " (no reply expected)"
        return "<Reply %s%s>" % (self.code, extra)

    __str__ = __repr__


class EomResult:
    """What the milter answered at end of message.

    reply    the final Reply (or the Reply that ended send_message() early)
    actions  modification requests in the order received, as plain tuples:
               ('addheader', name, value)
               ('insheader', index, name, value)        index: 0-based position
               ('chgheader', index, name, value)        index: 1-based among `name`; value '' deletes
               ('replbody', bytes)                      one per chunk
               ('addrcpt', rcpt)
               ('addrcpt_par', rcpt, args)              args: str, or None when absent
               ('delrcpt', rcpt)
               ('chgfrom', sender, args)                args: str, or None when absent
               ('quarantine', reason)
               ('setsymlist', stage, [names])           (libmilter never sends it)
               ('progress',)
    stage    the command after which the transaction ended: 'E' normally, or the
             stage whose reply was not 'continue' in send_message()
    leadspc  True when SMFIP_HDR_LEADSPC was negotiated (header values then carry
             their own leading space)
    """

    def __init__(self, reply, actions=None, stage="E", leadspc=False):
        self.reply = reply
        self.actions = list(actions or [])
        self.stage = stage
        self.leadspc = leadspc

    def __repr__(self):
        return "<EomResult %r at %s, %d actions: %r>" % (
            self.reply, self.stage, len(self.actions), self.actions)

    def find(self, kind):
        """All actions of one kind, e.g. find('addheader')."""
        return [a for a in self.actions if a[0] == kind]

    def body(self):
        """All replbody chunks concatenated, None if the body was not replaced."""
        chunks = [a[1] for a in self.actions if a[0] == "replbody"]
        if not chunks:
            return None
        return b"".join(chunks)

    @property
    def quarantine(self):
        """The last quarantine reason, None if none."""
        q = self.find("quarantine")
        return q[-1][1] if q else None

    def _value(self, value, raw_values):
        # Postfix writes "name:" + (" " unless LEADSPC) + value.  The default
        # header model keeps the value without the one conventional space.
        if raw_values:
            return value if self.leadspc else " " + value
        if self.leadspc and value.startswith(" "):
            return value[1:]
        return value

    def apply(self, headers, body, mta_header=False, raw_values=False):
        """Apply the header and body requests the way Postfix's cleanup does.

        headers     list of (name, value) as parse_message() returns them: the
                    headers the milter saw, in order
        body        bytes, CRLF line endings
        mta_header  True when headers[0] is the MTA's own Received: header, which
                    Postfix hides from milters: chgheader then never counts the first
                    header and insheader positions count it (Postfix semantics, so
                    insheader 0 goes above it and 1 below it)
        raw_values  header values are the exact text after the colon, as from
                    parse_message(raw, raw_values=True); new values then come out
                    exactly as Postfix writes them ("name:" + value under
                    SMFIP_HDR_LEADSPC, "name: " + value otherwise), so a milter
                    that negotiated LEADSPC and forgot the leading space shows up
                    as "Name:value" in render_message(..., raw_values=True)

        Returns (new headers list, new body bytes).  Rules (cleanup_milter.c):
          addheader       append
          insheader i     insert at 0-based position i; past the end appends
          chgheader i n v the i-th header named n (case-insensitive, i=0 is 1):
                          v == '' deletes it, else it becomes (n, v); when there is no
                          such instance a non-empty v is appended, '' does nothing
          replbody        the concatenated chunks replace the body, split into lines
                          at LF (a CR before it dropped) and re-terminated with CRLF
        Envelope requests do not touch headers or body; see envelope().
        """
        hdrs = [(n, v) for n, v in headers]
        for act in self.actions:
            kind = act[0]
            if kind == "addheader":
                hdrs.append((act[1], self._value(act[2], raw_values)))
            elif kind == "insheader":
                index, name, value = act[1], act[2], self._value(act[3], raw_values)
                index = max(index, 0)
                hdrs.insert(min(index, len(hdrs)), (name, value))
            elif kind == "chgheader":
                index, name, value = act[1], act[2], act[3]
                if index == 0:
                    index = 1
                skip = 1 if mta_header else 0
                pos = None
                count = 0
                for i in range(skip, len(hdrs)):
                    if hdrs[i][0].lower() == name.lower():
                        count += 1
                        if count == index:
                            pos = i
                            break
                if value == "":
                    if pos is not None:
                        del hdrs[pos]
                elif pos is not None:
                    hdrs[pos] = (name, self._value(value, raw_values))
                else:
                    hdrs.append((name, self._value(value, raw_values)))
        new_body = self.body()
        if new_body is not None:
            body = _postfix_body(new_body)
        return hdrs, body

    def envelope(self, sender, recipients):
        """Apply chgfrom/addrcpt/addrcpt_par/delrcpt to an envelope.

        Returns (sender, recipients) with addresses in the form given (brackets are
        ignored when comparing; a changed sender or added recipient comes back
        as the milter sent it).
        """
        rcpts = list(recipients)
        for act in self.actions:
            kind = act[0]
            if kind == "chgfrom":
                sender = act[1]
            elif kind in ("addrcpt", "addrcpt_par"):
                rcpts.append(act[1])
            elif kind == "delrcpt":
                gone = _unbracket(act[1])
                rcpts = [r for r in rcpts if _unbracket(r) != gone]
        return sender, rcpts


def _postfix_body(data):
    """Body text as Postfix stores a replaced body: lines split at LF, one CR before
    the LF dropped, a last unterminated line kept, every line ending in CRLF."""
    if not data:
        return b""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        out.append(line + b"\r\n")
    return b"".join(out)


class StageDict(dict):
    """Macro lists by stage, keyed by the SMFIM_* number; also answers to the command
    character ('C', 'H', 'M', 'R', 'T', 'E', 'N') or the name ('connect', 'helo',
    'envfrom', 'envrcpt', 'data', 'eom', 'eoh')."""

    @staticmethod
    def _key(key):
        if isinstance(key, int):
            return key
        for num, ch in STAGE_COMMANDS.items():
            if key == ch or key == ch.encode():
                return num
        for num, name in STAGE_NAMES.items():
            if key == name:
                return num
        return key

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key):
        return dict.__contains__(self, self._key(key))

    def get(self, key, default=None):
        return dict.get(self, self._key(key), default)


# ---------------------------------------------------------------------------
# Messages

_HEADER_RE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def _split_lines(raw):
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _split_message(raw):
    """(list of (name, text after the colon), body bytes), like Postfix's mime_state."""
    if isinstance(raw, str):
        raw = raw.encode(*_CODING)
    lines = _split_lines(raw)
    headers = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if headers and line[:1] in (b" ", b"\t"):
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
            i += 1
            continue
        m = _HEADER_RE.match(line)
        if not m:
            break
        headers.append((m.group(1), line[m.end():]))
        i += 1
    if i < len(lines) and lines[i] == b"":
        i += 1                       # the separator line is not part of the body
    body = b"".join(ln + b"\r\n" for ln in lines[i:])
    return [(_dec(n), _dec(v)) for n, v in headers], body


def parse_message(raw, raw_values=False):
    """Split an RFC 5322 message (bytes or str) into (headers, body) the way Postfix
    hands it to a milter.

    headers  list of (name, value): name as written (blanks before the colon
             dropped); value after the colon with one leading space removed (a tab
             stays), folded lines joined with "\\n" and keeping their leading blanks
    body     bytes after the blank separator line, every line ending in CRLF (LF
             and CRLF input both accepted); b'' when there is none

    A line that is neither a header nor a continuation ends the header like in
    Postfix (it then starts the body).  With raw_values the values are the exact
    text after the colon (what Postfix sends under SMFIP_HDR_LEADSPC).
    """
    headers, body = _split_message(raw)
    if raw_values:
        return headers, body
    return [(n, v[1:] if v.startswith(" ") else v) for n, v in headers], body


def render_message(headers, body, raw_values=False):
    """Bytes of a message from (headers, body): 'Name: value' CRLF-terminated lines
    (a "\\n" in a value becomes CRLF), a blank line, the body.  With raw_values
    the values are written right after the colon ('Name:' + value)."""
    out = []
    sep = ":" if raw_values else ": "
    for name, value in headers:
        out.append(_enc(name + sep + value).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        out.append(b"\r\n")
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)


# ---------------------------------------------------------------------------
# The connection

def _parse_spec(spec):
    """socket.socket arguments for a milter address: 'unix:/path', 'local:/path',
    '/path', 'inet:port@host', 'inet6:port@host', 'inet:host:port' (Postfix style)
    or 'inet:port'."""
    if isinstance(spec, tuple):
        return socket.AF_INET, spec
    if spec.startswith(("unix:", "local:")):
        return socket.AF_UNIX, spec.split(":", 1)[1]
    if spec.startswith(("inet:", "inet6:")):
        kind, rest = spec.split(":", 1)
        family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
        if "@" in rest:
            port, host = rest.split("@", 1)
        elif ":" in rest and not rest.isdigit():
            host, port = rest.rsplit(":", 1)
        else:
            port, host = rest, ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        host = host.strip("[]")
        try:
            port = int(port)
        except ValueError:
            raise MilterError("bad milter socket %r: port %r is not a number" % (spec, port))
        return family, (host, port)
    if ":" not in spec or spec.startswith("/"):
        return socket.AF_UNIX, spec
    raise MilterError("bad milter socket %r: want unix:/path, inet:port@host or a path" % spec)


class Milter:
    """One connection to a milter, from the MTA side.

    Milter(socket_spec, timeout=30, strict=True) connects at once.  timeout bounds
    every connect, read and write (seconds).  With strict, a modification request
    the milter did not negotiate, a modification request outside end of message, a
    malformed SMFIR_REPLYCODE or a body replacement interleaved with other requests
    (all of which Postfix refuses) raise MilterError instead of being recorded.
    """

    def __init__(self, socket_spec, timeout=30, strict=True):
        self.spec = socket_spec
        self.timeout = timeout
        self.strict = strict
        self.negotiated = None
        self.version = None
        self.actions = 0
        self.protocol = 0
        self.offered = 0
        self.symlist = StageDict()
        self.skip_event = None
        self.connected = False     # SMFIC_CONNECT done
        self.log = []              # (direction '>' or '<', command byte, data) per packet
        family, addr = _parse_spec(socket_spec)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(addr)
        except OSError as e:
            self.sock.close()
            self.sock = None
            raise MilterError("cannot connect to milter %s: %s" % (socket_spec, e)) from e

    # -- context manager ------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            try:
                self.quit()
            except MilterError:
                pass
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- packets --------------------------------------------------------------

    def _check_open(self):
        if self.sock is None:
            raise MilterError("connection to milter %s is closed" % self.spec)

    def _check_nothing_pending(self, cmd):
        """A reply nobody asked for (e.g. for a stage negotiated SMFIP_NR_*) would
        otherwise be taken as the answer to the next command."""
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return
        if not r:
            return
        try:
            data = self.sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if data:
            what = ""
            if len(data) >= 5:
                what = " (%s)" % _rname(data[4:5])
            raise MilterError("milter sent %s unrequested bytes%s before %s: %r"
                              % ("some" if len(data) == 64 else len(data), what,
                                 _cname(cmd), data))

    def _send(self, cmd, data=b""):
        self._check_open()
        self._check_nothing_pending(cmd)
        packet = struct.pack(">I", len(data) + 1) + cmd + data
        self.log.append((">", cmd, data))
        try:
            self.sock.sendall(packet)
        except socket.timeout:
            raise MilterError("timeout after %ss writing %s to milter %s"
                              % (self.timeout, _cname(cmd), self.spec))
        except OSError as e:
            raise MilterError("cannot write %s to milter %s: %s" % (_cname(cmd), self.spec, e))

    def _recv_exact(self, n, what, deadline):
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MilterError("timeout after %ss waiting for %s from milter %s "
                                  "(got %d of %d bytes)" % (self.timeout, what, self.spec, len(buf), n))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            except OSError as e:
                raise MilterError("cannot read %s from milter %s: %s" % (what, self.spec, e))
            if not chunk:
                if buf or what.startswith("the data"):
                    raise MilterError("milter %s closed the connection in the middle of %s "
                                      "(got %d of %d bytes)" % (self.spec, what, len(buf), n))
                raise MilterError("milter %s closed the connection while an answer to %s "
                                  "was expected" % (self.spec, what))
            buf += chunk
        return bytes(buf)

    def _read_packet(self, after):
        """One reply packet: (command byte, data)."""
        self._check_open()
        deadline = time.monotonic() + self.timeout
        try:
            head = self._recv_exact(4, _cname(after), deadline)
            (length,) = struct.unpack(">I", head)
            if length < 1:
                raise MilterError("garbled reply to %s from milter %s: packet length 0 "
                                  "(no command byte)" % (_cname(after), self.spec))
            if length > MAX_PACKET:
                raise MilterError("garbled reply to %s from milter %s: packet length %d "
                                  "(header bytes %r)" % (_cname(after), self.spec, length, head))
            body = self._recv_exact(length, "the data of a %d-byte reply packet to %s"
                                    % (length, _cname(after)), deadline)
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)
        cmd, data = body[:1], body[1:]
        self.log.append(("<", cmd, data))
        return cmd, data

    # -- negotiation ----------------------------------------------------------

    def negotiate(self, actions=ALL_ACTIONS, protocol=0, version=SMFI_PROT_VERSION):
        """SMFIC_OPTNEG.  protocol=0 offers what Postfix 3.7 offers (POSTFIX_PROTOCOL);
        any other value is sent as is (libmilter reads a literal 0 as 0x3F anyway).

        Returns {'version', 'actions', 'protocol', 'macros'}: what the milter chose,
        macros being its symbol list by stage ({SMFIM_* number: [names]}, also
        indexable by 'C'/'H'/'M'/'R'/'T'/'E'/'N' or 'connect'...)."""
        offer = POSTFIX_PROTOCOL if protocol == 0 else protocol
        self._send(SMFIC_OPTNEG, struct.pack(">III", version, actions, offer))
        cmd, data = self._read_packet(SMFIC_OPTNEG)
        if cmd != SMFIC_OPTNEG:
            raise MilterError("milter %s answered SMFIC_OPTNEG with %s, not SMFIC_OPTNEG"
                              % (self.spec, _rname(cmd)))
        if len(data) < 12:
            raise MilterError("milter %s sent a %d-byte SMFIC_OPTNEG reply, at least 12 expected"
                              % (self.spec, len(data)))
        m_version, m_actions, m_protocol = struct.unpack(">III", data[:12])
        if m_version < 2 or m_version > version:
            raise MilterError("milter %s chose protocol version %d, MTA offered %d"
                              % (self.spec, m_version, version))
        if m_actions & ~actions:
            raise MilterError("milter %s asks for actions 0x%x beyond the offered 0x%x"
                              % (self.spec, m_actions, actions))
        # Like Postfix, take the milter's protocol flags as they come, even
        # ones not offered (Postfix only logs that).
        macros = StageDict()
        rest = data[12:]
        while rest:
            if len(rest) < 5:
                raise MilterError("milter %s sent a truncated symbol list in SMFIC_OPTNEG: %r"
                                  % (self.spec, rest))
            (stage,) = struct.unpack(">I", rest[:4])
            end = rest.find(b"\0", 4)
            if end < 0:
                raise MilterError("milter %s sent an unterminated symbol list for stage %d: %r"
                                  % (self.spec, stage, rest[4:]))
            if stage not in STAGE_NAMES:
                raise MilterError("milter %s sent a symbol list for unknown stage %d"
                                  % (self.spec, stage))
            macros[stage] = _dec(rest[4:end]).split()
            rest = rest[end + 1:]
        self.version, self.actions, self.protocol = m_version, m_actions, m_protocol
        self.offered = offer
        self.symlist = macros
        self.negotiated = {"version": m_version, "actions": m_actions,
                           "protocol": m_protocol, "macros": macros}
        return self.negotiated

    def _ensure_negotiated(self):
        if self.negotiated is None:
            self.negotiate()

    # -- commands -------------------------------------------------------------

    def macros(self, cmd_char, mapping):
        """SMFIC_MACRO for the command cmd_char ('C', 'H', 'M', 'R', 'T', 'L', 'N',
        'B', 'E' ...): mapping {name: value}, names as the milter asks for them
        ('j', '{daemon_name}').  Sent as given, like Postfix even for a stage the
        milter asked not to receive.  No reply."""
        self._ensure_negotiated()
        data = _enc(cmd_char)[:1]
        for name, value in mapping.items():
            if value is None:
                continue
            data += _enc(name) + b"\0" + _enc(value) + b"\0"
        self._send(SMFIC_MACRO, data)

    def _event(self, cmd, data=b""):
        """Send one protocol step, honouring SMFIP_NO*/NR_* and SMFIR_SKIP, and read
        the answer (final decision) unless no reply is due."""
        self._ensure_negotiated()
        no_send, no_reply = _STEP_FLAGS[cmd]
        c = cmd.decode()
        if no_send and (self.protocol & no_send):
            return Reply("continue", command=c, sent=False, replied=False)
        if self.skip_event is not None:
            if self.skip_event == cmd:
                return Reply("continue", command=c, sent=False, replied=False)
            self.skip_event = None
        self._send(cmd, data)
        if no_reply and (self.protocol & no_reply):
            return Reply("continue", command=c, replied=False)
        reply, _ = self._read_answer(cmd, collect=False)
        return reply

    def _read_answer(self, cmd, collect):
        """Read packets until a final decision.  Returns (Reply, actions)."""
        actions = []
        progress = 0
        in_body = False
        body_done = False
        c = cmd.decode()
        while True:
            rcmd, data = self._read_packet(cmd)
            if in_body and rcmd != SMFIR_REPLBODY:
                in_body = False
                body_done = True
            if rcmd == SMFIR_PROGRESS:
                self._no_data(rcmd, data, cmd)
                progress += 1
                if collect:
                    actions.append(("progress",))
                continue
            if rcmd == SMFIR_REPLYCODE:
                text = self._one_string(rcmd, data, cmd)
                if not re.match(r"[45][0-9][0-9][ -]", text) or text[4:5] != text[:1]:
                    if self.strict:
                        raise MilterError("milter %s sent a malformed SMFIR_REPLYCODE %r after %s "
                                          "(Postfix wants 4xx/5xx plus a matching enhanced "
                                          "status code)" % (self.spec, text, _cname(cmd)))
                return Reply("replycode", text, command=c, progress=progress), actions
            if rcmd in _DECISIONS:
                self._no_data(rcmd, data, cmd)
                if rcmd == SMFIR_SKIP:
                    if self.strict and not (self.offered & SMFIP_SKIP):
                        raise MilterError("milter %s sent SMFIR_SKIP after %s but the MTA "
                                          "did not offer SMFIP_SKIP" % (self.spec, _cname(cmd)))
                    self.skip_event = cmd
                return Reply(_DECISIONS[rcmd], command=c, progress=progress), actions
            if rcmd in _MODIFICATIONS:
                kind, flag = _MODIFICATIONS[rcmd]
                if self.strict and kind != "quarantine" and not collect:
                    raise MilterError("milter %s sent %s after %s; modification requests "
                                      "are allowed only at end of message"
                                      % (self.spec, _rname(rcmd), _cname(cmd)))
                if self.strict and not (self.actions & flag):
                    raise MilterError("milter %s sent %s but did not negotiate that action "
                                      "(negotiated actions 0x%x)" % (self.spec, _rname(rcmd), self.actions))
                if rcmd == SMFIR_REPLBODY:
                    if body_done and self.strict:
                        raise MilterError("milter %s sent SMFIR_REPLBODY chunks separated by "
                                          "other requests (Postfix refuses this)" % self.spec)
                    in_body = True
                act = self._decode_modification(rcmd, data, cmd)
                if collect or kind == "quarantine":
                    actions.append(act)
                continue
            raise MilterError("milter %s sent %s (byte %r, %d data bytes) after %s"
                              % (self.spec, _rname(rcmd) if rcmd in _REPLY_NAMES else "an unknown reply",
                                 rcmd, len(data), _cname(cmd)))

    def _no_data(self, rcmd, data, cmd):
        if data:
            raise MilterError("milter %s sent %s with %d unexpected data bytes after %s: %r"
                              % (self.spec, _rname(rcmd), len(data), _cname(cmd), data[:80]))

    def _strings(self, rcmd, data, cmd, count, optional=0):
        """Split data into `count` NUL-terminated strings, the last `optional` of
        which may be missing (None)."""
        out = []
        rest = data
        for i in range(count):
            if not rest and i >= count - optional:
                out.append(None)
                continue
            end = rest.find(b"\0")
            if end < 0:
                raise MilterError("milter %s sent %s after %s with an unterminated string: %r"
                                  % (self.spec, _rname(rcmd), _cname(cmd), data[:80]))
            out.append(_dec(rest[:end]))
            rest = rest[end + 1:]
        if rest:
            raise MilterError("milter %s sent %s after %s with %d trailing bytes: %r"
                              % (self.spec, _rname(rcmd), _cname(cmd), len(rest), data[:80]))
        return out

    def _one_string(self, rcmd, data, cmd):
        return self._strings(rcmd, data, cmd, 1)[0]

    def _index(self, rcmd, data, cmd):
        if len(data) < 4:
            raise MilterError("milter %s sent a %d-byte %s after %s, too short for its index"
                              % (self.spec, len(data), _rname(rcmd), _cname(cmd)))
        return struct.unpack(">I", data[:4])[0], data[4:]

    def _decode_modification(self, rcmd, data, cmd):
        kind = _MODIFICATIONS[rcmd][0]
        if rcmd == SMFIR_ADDHEADER:
            name, value = self._strings(rcmd, data, cmd, 2)
            return (kind, name, value)
        if rcmd in (SMFIR_INSHEADER, SMFIR_CHGHEADER):
            index, rest = self._index(rcmd, data, cmd)
            name, value = self._strings(rcmd, rest, cmd, 2)
            if self.strict and not name:
                raise MilterError("milter %s sent %s with an empty header name"
                                  % (self.spec, _rname(rcmd)))
            return (kind, index, name, value)
        if rcmd == SMFIR_REPLBODY:
            return (kind, data)
        if rcmd in (SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_QUARANTINE):
            return (kind, self._one_string(rcmd, data, cmd))
        if rcmd in (SMFIR_ADDRCPT_PAR, SMFIR_CHGFROM):
            addr, args = self._strings(rcmd, data, cmd, 2, optional=1)
            return (kind, addr, args)
        if rcmd == SMFIR_SETSYMLIST:
            stage, rest = self._index(rcmd, data, cmd)
            return (kind, stage, self._one_string(rcmd, rest, cmd).split())
        raise AssertionError(rcmd)

    def connect(self, hostname="localhost", family="4", port=25, address="127.0.0.1"):
        """SMFIC_CONNECT: client host name, family '4', '6', 'L' (unix: address is
        the socket path) or 'U' (unknown: no port and address), port, address."""
        data = _enc(hostname) + b"\0" + _enc(family)[:1]
        if family != "U":
            data += struct.pack(">H", int(port) if family != "L" else 0) + _enc(address) + b"\0"
        self.connected = True
        return self._event(SMFIC_CONNECT, data)

    def helo(self, name):
        return self._event(SMFIC_HELO, _enc(name) + b"\0")

    def mail(self, sender, *esmtp_args):
        """SMFIC_MAIL: '<a@b>' or 'a@b' (brackets added; '' is the null sender)."""
        self.skip_event = None
        args = [_bracket(sender)] + list(esmtp_args)
        return self._event(SMFIC_MAIL, b"".join(_enc(a) + b"\0" for a in args))

    def rcpt(self, rcpt, *esmtp_args):
        args = [_bracket(rcpt)] + list(esmtp_args)
        return self._event(SMFIC_RCPT, b"".join(_enc(a) + b"\0" for a in args))

    def data(self):
        return self._event(SMFIC_DATA)

    def unknown(self, command):
        """SMFIC_UNKNOWN: an SMTP command the MTA did not recognise."""
        return self._event(SMFIC_UNKNOWN, _enc(command) + b"\0")

    def header(self, name, value):
        """SMFIC_HEADER, the value sent as given (see parse_message())."""
        return self._event(SMFIC_HEADER, _enc(name) + b"\0" + _enc(value) + b"\0")

    def eoh(self):
        return self._event(SMFIC_EOH)

    def body(self, chunk):
        """SMFIC_BODY, split into pieces of at most 65535 bytes; stops at the first
        answer that is not 'continue' and returns it (the last answer otherwise)."""
        chunk = _enc(chunk)
        reply = Reply("continue", command="B", sent=False, replied=False)
        for off in range(0, len(chunk), MILTER_CHUNK_SIZE):
            reply = self._event(SMFIC_BODY, chunk[off:off + MILTER_CHUNK_SIZE])
            if reply.code != "continue":
                break
        return reply

    def eom(self):
        """SMFIC_BODYEOB: collect every modification request up to the final reply."""
        self._ensure_negotiated()
        self.skip_event = None
        self._send(SMFIC_BODYEOB)
        reply, actions = self._read_answer(SMFIC_BODYEOB, collect=True)
        return EomResult(reply, actions, "E", bool(self.protocol & SMFIP_HDR_LEADSPC))

    def abort(self):
        """SMFIC_ABORT: forget the current message (no reply)."""
        self.skip_event = None
        self._send(SMFIC_ABORT)

    def quit(self, new_connection=False):
        """SMFIC_QUIT (or SMFIC_QUIT_NC with new_connection) and close."""
        if self.sock is None:
            return
        try:
            self._send(SMFIC_QUIT_NC if new_connection else SMFIC_QUIT)
        finally:
            if not new_connection:
                self.close()
        if new_connection:
            self.connected = False

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- whole transaction ----------------------------------------------------

    def _stage_macros(self, stage_char, given, auto):
        """Macros for one stage: auto values, overridden by the caller's (None
        removes), limited to the milter's symbol list for that stage if it sent one
        (Postfix sends only the listed macros then)."""
        merged = dict(auto)
        merged.update(given or {})
        merged = {k: v for k, v in merged.items() if v is not None}
        wanted = self.symlist.get(stage_char) if self.filter_macros else None
        if wanted is not None:
            names = {w.strip("{}") for w in wanted}
            merged = {k: v for k, v in merged.items() if k.strip("{}") in names}
        return merged

    filter_macros = True

    def send_message(self, raw, sender, recipients, macros=None, connect_macros=None,
                     helo="client.test", client=None, auto_macros=True, abort_on_stop=True):
        """Run one SMTP-like transaction and return an EomResult.

        raw             the message, bytes or str (see parse_message())
        sender          '<a@b>' or 'a@b'; recipients: list of the same.  Either may
                        also be a tuple (address, esmtp_arg, ...).
        macros          {stage char: {name: value}} for 'C','H','M','R','T','L','N','E'
        connect_macros  shortcut for macros['C']
        helo            HELO name; None skips HELO
        client          keyword arguments for connect(), default localhost/127.0.0.1:25
        auto_macros     add Postfix-like j, _ (connect), i (mail, data, eoh, eom),
                        {mail_addr} and {rcpt_addr}; the caller's values override,
                        a value None removes one

        Negotiates and sends CONNECT/HELO first unless already done on this
        connection, so several messages can share one connection.  Stops at the
        first answer that is not 'continue' and returns it in an EomResult whose
        actions are empty and whose stage says where (an SMFIC_ABORT follows when
        a message was under way, as the MTA would do).  Macros the milter left out
        of its symbol list for a stage are not sent (set filter_macros = False on
        the Milter to send everything).
        """
        self._ensure_negotiated()
        macros = {k: dict(v) for k, v in (macros or {}).items()}
        for k in macros:
            if k not in ("C", "H", "M", "R", "T", "L", "N", "B", "E", "U"):
                raise TypeError("send_message: macros must be keyed by command character, got %r" % (k,))
        if connect_macros:
            macros.setdefault("C", {}).update(connect_macros)
        leadspc = bool(self.protocol & SMFIP_HDR_LEADSPC)
        queue_id = "4%010X" % (int(time.time() * 1000) & 0xFFFFFFFFFF)

        def auto(stage, **extra):
            if not auto_macros:
                return {}
            base = {"C": {"j": "mx.pectest.invalid", "_": "localhost [127.0.0.1]"},
                    "M": {"i": queue_id}, "T": {"i": queue_id}, "N": {"i": queue_id},
                    "E": {"i": queue_id}}.get(stage, {})
            base = dict(base)
            base.update(extra)
            return base

        def send_macros(stage, **extra):
            m = self._stage_macros(stage, macros.get(stage), auto(stage, **extra))
            if m:
                self.macros(stage, m)

        def stop(reply, stage, in_message):
            if in_message and abort_on_stop and self.sock is not None \
                    and reply.code not in ("shutdown", "connfail"):
                try:
                    self.abort()
                except MilterError:
                    pass
            return EomResult(reply, [], stage, leadspc)

        if not self.connected:
            send_macros("C")
            r = self.connect(**(client or {}))
            if r.code != "continue":
                return stop(r, "C", False)
            if helo is not None:
                send_macros("H")
                r = self.helo(helo)
                if r.code != "continue":
                    return stop(r, "H", False)

        def addr_args(a):
            if isinstance(a, (tuple, list)):
                return a[0], list(a[1:])
            return a, []

        s, s_args = addr_args(sender)
        send_macros("M", **({"{mail_addr}": _unbracket(s)} if auto_macros else {}))
        r = self.mail(s, *s_args)
        if r.code != "continue":
            return stop(r, "M", True)
        for rcpt in recipients:
            a, a_args = addr_args(rcpt)
            send_macros("R", **({"{rcpt_addr}": _unbracket(a)} if auto_macros else {}))
            r = self.rcpt(a, *a_args)
            if r.code != "continue":
                return stop(r, "R", True)
        send_macros("T")
        r = self.data()
        if r.code != "continue":
            return stop(r, "T", True)
        headers, body = _split_message(raw)
        for name, value in headers:
            if not leadspc and value.startswith(" "):
                value = value[1:]
            if "L" in macros:
                send_macros("L")
            r = self.header(name, value)
            if r.code != "continue":
                return stop(r, "L", True)
        send_macros("N")
        r = self.eoh()
        if r.code != "continue":
            return stop(r, "N", True)
        if body:
            if "B" in macros:
                send_macros("B")
            r = self.body(body)
            if r.code not in ("continue", "skip"):
                return stop(r, "B", True)
        send_macros("E")
        return self.eom()
