"""What the end-to-end tests check from outside, and how they wait for it.

    from pectest import e2e
    report = e2e.verify(self, m, self.tmp, "busta.eml")   # m: a pecmail.Message
    got = e2e.wait(self, fetch, count=2, timeout=60, describe=diagnostics)

verify() is what a peer or an auditor would do with a PEC message: the S/MIME
signature with `openssl smime -verify` against the test trust anchors, daticert.xml
against the normative DTD with `xmllint --dtdvalid` ($PEC_SHARED_DIR/spec/daticert.dtd;
skipped, saying so once, when it or xmllint is absent), and pecverify with the index
as the authority signs it, which must say valid (and so exit 0).  wait() polls until enough has arrived.  The rest
is the scaffolding the e2e tests share: Maildirs to deliver into, a reconfigured
daemon, stopping what a test started.
"""
import contextlib
import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from . import config, env, pecmail, pki

_dtd_said = False


def daticert_dtd():
    """The DTD's path, or None (said once on stdout) when it or xmllint is absent."""
    global _dtd_said
    dtd = os.path.join(env.SHARED_DIR, "spec", "daticert.dtd")
    if os.path.exists(dtd) and shutil.which("xmllint"):
        return dtd
    if not _dtd_said:
        print("SKIP part: no %s (or no xmllint): daticert.xml not checked against the DTD"
              % dtd)
        _dtd_said = True
    return None


def write(directory, name, data):
    """DATA (bytes) into DIRECTORY/NAME; returns the path."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _ok(case, p):
    case.assertEqual(p.returncode, 0, p.stdout.decode("utf-8", "replace"))


def verify(case, m, directory, name, daticert=True):
    """Check M (a pecmail.Message) from outside, failing CASE (a TestCase) otherwise;
    M is written to DIRECTORY/NAME for the tools.  daticert=False for a message that
    carries none (a busta di anomalia).  Returns pecverify's JSON report."""
    path = write(directory, name, m.raw)
    _ok(case, subprocess.run(["openssl", "smime", "-verify", "-in", path, "-CAfile",
                              pki.trust(), "-purpose", "any", "-out", "/dev/null"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    dtd = daticert_dtd() if daticert else None
    if dtd:
        xml = write(directory, name + ".daticert.xml", m.daticert())
        _ok(case, subprocess.run(["xmllint", "--noout", "--dtdvalid", dtd, xml],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    p = subprocess.run([env.program("pecverify"), "--trust", pki.trust(), "--index",
                        pki.index_p7m(), "--index-signer", pki.authority(), "--json", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = json.loads(p.stdout)[0]
    case.assertTrue(report["valid"], report)
    case.assertEqual(p.returncode, 0, report)
    return report


def wait(case, fetch, count=1, timeout=60, describe=None, what="message(s)"):
    """Call FETCH() (a list) until it holds COUNT items or more and return it; after
    TIMEOUT seconds fail CASE saying how many came, followed by describe()."""
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if len(got) >= count:
            return got
        if time.monotonic() > deadline:
            case.fail("%d of %d %s after %ss%s" % (len(got), count, what, timeout,
                                                   describe() if describe else ""))
        time.sleep(0.2)


def matching(messages, pattern):
    """FETCH for wait(): the pecmail.Messages among MESSAGES() whose bytes match the
    regular expression PATTERN."""
    return lambda: [pecmail.Message(r) for r in messages() if re.search(pattern, r)]


def message(subject, to, sender, cc=None, extra=b"", body=b"Testo del messaggio.\r\n",
            ctype=b"text/plain; charset=utf-8", msgid=None):
    """A user's message as a client submits it: From "Mario Rossi" <SENDER>, To TO
    (no To when None), Cc CC, a fixed Date, Message-ID <MSGID> (by default SUBJECT's
    word characters @client.pec-a.test), the header lines EXTRA, one BODY of CTYPE."""
    head = b"From: Mario Rossi <%s>\r\n" % sender.encode()
    if to is not None:
        head += b"To: %s\r\n" % to.encode()
    if cc:
        head += b"Cc: %s\r\n" % cc.encode()
    head += (b"Subject: %s\r\nDate: Tue, 25 Nov 2025 10:00:00 +0100\r\nMessage-ID: <%s>\r\n"
             % (subject.encode(),
                (msgid or "%s@client.pec-a.test" % re.sub(r"\W", "", subject)).encode()))
    return head + extra + b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n\r\n" + body


# An 8-bit original (issue 17, point 5): an 8bit body and a raw UTF-8 Subject
EIGHT_BIT_SUBJECT = "Citt\u00e0 8 bit"
EIGHT_BIT_BODY = "Perch\u00e9 la citt\u00e0 costa 100 \u20ac.\r\n"
EIGHT_BIT_FOUND = re.escape(b"Citt=C3=A0") + rb"|" + re.escape(b"8 bit")   # its busta


def eight_bit_original(to, sender):
    """The 8-bit original, as message() writes it but for the raw bytes."""
    raw = message("Citta 8 bit", to, sender, body=EIGHT_BIT_BODY.encode()).replace(
        b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", 1)
    return raw.replace(b"Subject: Citta 8 bit", b"Subject: " + EIGHT_BIT_SUBJECT.encode(), 1)


def check_eight_bit_busta(case, got):
    """GOT, the busta of eight_bit_original(), is 7-bit (pec-rules.md 3.1), so no MTA
    re-encodes what was signed; Python's email decodes its postacert to the original's
    text and subject as the user wrote them."""
    case.assertIsNone(re.search(rb"[\x80-\xff]", got.raw), "8-bit bytes in the busta")
    inner = email.message_from_bytes(got.postacert(), policy=email.policy.default)
    case.assertEqual(str(inner["Subject"]), EIGHT_BIT_SUBJECT)
    case.assertEqual(inner["Content-Transfer-Encoding"], "quoted-printable")
    case.assertEqual(inner.get_content().replace("\r\n", "\n"),
                     EIGHT_BIT_BODY.replace("\r\n", "\n"))


def workdir(prefix):
    """A fresh directory under /tmp that the MTAs' unprivileged users may enter."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def start(cls, tmp):
    """For setUpClass: cls.tmp = TMP, then cls._start(TMP); should that fail,
    cls._stop() (which copes with a half start) before the error goes on."""
    cls.tmp = tmp
    try:
        cls._start(tmp)
    except BaseException:
        cls._stop()
        raise


def retry(call, done, timeout=30, pause=0.5):
    """CALL() until done(its result) or TIMEOUT seconds have passed; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        r = call()
        if done(r) or time.monotonic() > deadline:
            return r
        time.sleep(pause)


@contextlib.contextmanager
def reconfigured(conf, settings, daemon, **changes):
    """DAEMON reloaded with SETTINGS but for CHANGES written to CONF; SETTINGS again
    (and reloaded) on leaving."""
    with open(conf, "w") as f:
        f.write(config.render(dict(settings, **changes)))
    try:
        daemon.reload()
        yield
    finally:
        with open(conf, "w") as f:
            f.write(config.render(settings))
        daemon.reload()


def make_maildirs(root, users):
    """ROOT/USER/{tmp,new,cur} for each of USERS, writable by whoever delivers (with
    nothing creates a mailbox at delivery: only these exist)."""
    for user in users:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, user, sub))
    for top, _, _ in os.walk(root):
        os.chmod(top, 0o777)


def daemon_exit(name, d):
    """Stop pecmilter D; what was wrong with its exit (not 0, or a sanitizer report),
    or None."""
    text = d.stop()
    if d.returncode != 0 or "Sanitizer" in text:
        return "pecmilter %s exited %s:\n%s" % (name, d.returncode, text[-5000:])
    return None


def stop_all(things, tmp):
    """Stop each of THINGS (None ones skipped), going on past failures, then remove TMP."""
    for thing in things:
        if thing is not None:
            try:
                thing.stop()
            except Exception as e:            # keep stopping the others
                print("stopping %r: %s" % (thing, e))
    shutil.rmtree(tmp, ignore_errors=True)
