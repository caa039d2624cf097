"""A private clamd for a test: Debian's clamav-daemon, with our own clamd.conf and
signature database, on a unix socket in the test's directory (standard library only).

    from pectest import clamd
    clamd.require()                          # skip, saying why, when clamd is not installed
    c = clamd.Clamd(workdir).start()         # returns once clamd answers PING
    settings["antivirus"], settings["clamd_socket"] = "clamd", c.socket
    c.scan(clamd.EICAR)                      # "Eicar-Test-Signature.UNOFFICIAL FOUND"
    c.stop(); c.start()                      # down and up again, same socket
    c.start(StreamMaxLength="1M")            # clamd.conf settings of our own
    c.start(age_days=9)                      # signatures dated nine days ago

Nothing is downloaded: the only signature is EICAR's MD5 (a .hdb line), which is
enough for clamd to find EICAR as a file, base64 in a MIME part, inside a zip, inside
a message/rfc822 part.  The harness packs it as clamd's own databases come, a
"daily" container with a version and a date, unsigned (.cud, which clamd loads
without ClamAV's signature), so that clamd's VERSION names a database and its date
as in production.  clamd runs in the foreground as the user
running the test (root, with no User line, stays root), and is stopped at exit of the
test process, or by pectest's reaper if the test process dies.
"""
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time

from . import env
from . import postfix as pf

CLAMD = "/usr/sbin/clamd"
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_HDB = b"44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
FINDING = "Eicar-Test-Signature.UNOFFICIAL"     # what clamd calls it (an unsigned database)
DB_VERSION = 27999


def daily_cud(signed_at):
    """clamd's database container (a 512-byte header, then a tar.gz whose daily.info
    repeats the header and lists each file's size and SHA-256), unsigned, holding
    EICAR_HDB, version DB_VERSION, dated SIGNED_AT (epoch seconds)."""
    head = "ClamAV-VDB:%s:%d:1:90:-:-:pectest:%d" % (
        time.strftime("%d %b %Y %H-%M +0000", time.gmtime(signed_at)), DB_VERSION, signed_at)
    info = ("%s\ndaily.hdb:%d:%s\n" % (head, len(EICAR_HDB),
                                        hashlib.sha256(EICAR_HDB).hexdigest())).encode()
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("daily.info", info), ("daily.hdb", EICAR_HDB)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            t.addfile(member, io.BytesIO(data))
    return head.encode().ljust(512, b" ") + tgz.getvalue()


def have_clamd():
    return os.path.exists(CLAMD)


def require():
    """Skip the test, saying why, when Debian's clamav-daemon is not installed."""
    if not have_clamd():
        env.skip("clamd is not installed (contrib/deps.sh test installs clamav-daemon)")


class Clamd:
    """One clamd with its own directory: clamd.conf, the database, the socket, its log."""

    def __init__(self, workdir, name="clamd"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        # pecmilter may run as another user: the socket's directory must let it in
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "clamd.sock")
        self.socket = "unix:" + self.path
        self.log = os.path.join(self.dir, "clamd.log")
        self.proc = None

    def _conf(self, extra):
        conf = {
            "LocalSocket": self.path,
            "LocalSocketMode": "666",
            "FixStaleSocket": "yes",
            "Foreground": "yes",
            "DatabaseDirectory": os.path.join(self.dir, "db"),
            "TemporaryDirectory": os.path.join(self.dir, "tmp"),
            "LogFile": self.log,
            "LogTime": "yes",
            "LogVerbose": "no",
            "MaxThreads": "4",
            "SelfCheck": "0",
            "ConcurrentDatabaseReload": "no",
            "StreamMaxLength": "40M",
            "MaxFileSize": "40M",
            "ScanMail": "yes",
            "ScanArchive": "yes",
        }
        conf.update(extra)
        path = os.path.join(self.dir, "clamd.conf")
        with open(path, "w") as f:
            f.write("".join("%s %s\n" % kv for kv in conf.items()))
        return path

    def start(self, timeout=60, age_days=1, **settings):
        """Start clamd with signatures dated AGE_DAYS ago (self.signed_at) and SETTINGS
        added to its clamd.conf; return once it answers."""
        self.signed_at = int(time.time()) - int(age_days * 86400)
        with open(os.path.join(self.dir, "db", "daily.cud"), "wb") as f:
            f.write(daily_cud(self.signed_at))
        conf = self._conf(settings)
        out = open(os.path.join(self.dir, "clamd.out"), "ab")
        self.proc = subprocess.Popen([CLAMD, "-c", conf], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        out.close()
        pf.register_process(self.proc.pid, os.path.dirname(self.dir))
        deadline = time.monotonic() + timeout
        while self.command(b"zPING\0", timeout=1) != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("clamd did not start:\n" + self.log_tail())
            time.sleep(0.1)
        return self

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; the socket is gone afterwards."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        pf.unregister_process(self.proc.pid)
        self.proc = None
        if os.path.exists(self.path):
            os.unlink(self.path)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, cmd, data=None, timeout=10):
        """Send CMD (and DATA as INSTREAM chunks); clamd's answer, or None."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
            s.sendall(cmd)
            if data is not None:
                for i in range(0, len(data), 65536):
                    chunk = data[i:i + 65536]
                    s.sendall(len(chunk).to_bytes(4, "big") + chunk)
                s.sendall(b"\0\0\0\0")
            answer = b""
            while not answer.endswith(b"\0"):
                got = s.recv(4096)
                if not got:
                    break
                answer += got
            return answer.rstrip(b"\0").decode("ascii", "replace")
        except OSError:
            return None
        finally:
            s.close()

    def scan(self, data):
        """What clamd says of DATA, without "stream: "."""
        answer = self.command(b"zINSTREAM\0", data) or ""
        return answer[len("stream: "):] if answer.startswith("stream: ") else answer

    def log_tail(self, n=4000):
        text = ""
        for name in ("clamd.out", "clamd.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()[-n:]
            except FileNotFoundError:
                pass
        return text

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
