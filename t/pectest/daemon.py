"""Start and stop pecmilter for a test (standard library only).

    from pectest import daemon
    with daemon.start(conf_path) as d:          # pecmilter -f -c conf_path
        with d.milter() as m:                   # pectest.milter.Milter on its socket
            res = m.send_message(...)
    print(d.stderr())                           # everything it logged (-f: stderr)

start() returns once the milter socket named in the configuration accepts
connections, or raises DaemonError with the daemon's stderr when it exited or
did not get there within the timeout.  Every daemon still running when the
interpreter exits is stopped (atexit).
"""
import atexit
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from . import env
from .milter import Milter, MilterError, _parse_spec

DEFAULT_MILTER_SOCKET = "unix:/run/pecmilter/milter.sock"    # lib/provider/conf.c

_running = []


class DaemonError(Exception):
    """pecmilter did not start, or misbehaved while stopping."""


def milter_socket(config_path):
    """The milter_socket value of a pecmilter.conf (libconfig: `milter_socket =
    "unix:/path";`), or the built-in default when the key is absent."""
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    for line in text.splitlines():
        m = re.match(r'\s*milter_socket\s*[=:]\s*"((?:[^"\\]|\\.)*)"', line)
        if m:
            return m.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return DEFAULT_MILTER_SOCKET


def _accepts(spec):
    family, addr = _parse_spec(spec)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A running `pecmilter -f -c CONFIG`.

    proc       the subprocess.Popen
    config     the configuration path
    socket     its milter socket spec ("unix:/path" or "inet:port@host")
    returncode None while running, the exit status once stopped (negative: signal)
    """

    def __init__(self, proc, config, socket_spec, stderr_path, argv):
        self.proc = proc
        self.config = config
        self.socket = socket_spec
        self.argv = argv
        self._stderr_path = stderr_path
        self._stderr_text = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def running(self):
        return self.proc.poll() is None

    def stderr(self):
        """Everything the daemon wrote to stderr so far."""
        if self._stderr_text is not None:
            return self._stderr_text
        try:
            with open(self._stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def milter(self, timeout=30, **kw):
        """A pectest.milter.Milter connected to this daemon."""
        return Milter(self.socket, timeout=timeout, **kw)

    def reload(self):
        """SIGUSR1: pecmilter re-reads its configuration."""
        if self.running():
            self.proc.send_signal(signal.SIGUSR1)

    def stop(self, timeout=15):
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL.  Returns the stderr
        text.  Safe to call more than once."""
        if self._stderr_text is not None:
            return self._stderr_text
        killed = False
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait(5)
        text = self.stderr()
        if killed:
            text += "\n[pectest.daemon: pecmilter ignored SIGTERM for %ss and was killed]\n" % timeout
        self._stderr_text = text
        try:
            os.unlink(self._stderr_path)
        except OSError:
            pass
        if self in _running:
            _running.remove(self)
        return text

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        state = "running" if self.running() else "exited %s" % self.returncode
        return "<pecmilter pid %d %s on %s>" % (self.pid, state, self.socket)


def start(config_path, extra_args=(), timeout=10, program=None, env_vars=None):
    """Run `pecmilter -f -c CONFIG [extra_args]` and wait until its milter socket
    accepts connections (at most `timeout` seconds).  Raises DaemonError, with the
    daemon's stderr, when it exits first or the socket never answers."""
    program = program or env.program("pecmilter")
    if not os.path.exists(program):
        raise DaemonError("%s does not exist: build the project first" % program)
    config_path = os.path.abspath(config_path)
    spec = milter_socket(config_path)
    fd, stderr_path = tempfile.mkstemp(prefix="pecmilter-stderr.", suffix=".log",
                                       dir=os.path.dirname(config_path))
    argv = [program, "-f", "-c", config_path] + list(extra_args)
    environ = dict(os.environ)
    environ.update(env_vars or {})
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                env=environ, start_new_session=True)
    finally:
        os.close(fd)
    d = Daemon(proc, config_path, spec, stderr_path, argv)
    _running.append(d)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = d.stop()
            raise DaemonError("pecmilter exited with status %s before its milter socket %s "
                              "accepted connections; stderr:\n%s" % (proc.returncode, spec, text))
        try:
            if _accepts(spec):
                return d
        except MilterError as e:
            d.stop()
            raise DaemonError("bad milter_socket in %s: %s" % (config_path, e))
        if time.monotonic() >= deadline:
            text = d.stop()
            raise DaemonError("pecmilter did not accept connections on %s within %ss; "
                              "stderr:\n%s" % (spec, timeout, text))
        time.sleep(0.05)


@atexit.register
def _stop_all():
    for d in list(_running):
        try:
            d.stop()
        except Exception:
            pass
