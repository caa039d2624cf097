"""A private PostgreSQL for tests, from Debian's packages (standard library only).

    from pectest.postgres import Postgres, have_postgres
    with Postgres() as pg:
        pg.createdb("pec")
        ... store = pg.conninfo("pec") ...   # host=SOCKDIR port=PORT user=pec dbname=pec
        pg.restart()                        # a server restart under the clients
        pg.stop_server(); pg.start()        # down for a while
        pg.query("pec", "SELECT ...")       # rows, through psql

PostgreSQL refuses to run as root, so when the test is root the cluster
belongs to the unprivileged user nobody: initdb into a temporary directory
of its own (never /var/lib/postgresql), the server on a unix socket in that
directory and on no TCP address, started and stopped with pg_ctl.  Trust
authentication for the one role "pec": nothing but the socket's directory
reaches it.  stop() (also at exit) ends the server and removes the
directory.

Run as a program, it wraps another:

    python3 -m pectest.postgres PROGRAM ARGS...

starts a server, creates the database "pec", runs PROGRAM with
PEC_TEST_STORE set to its connection string, and exits with PROGRAM's
status; 77 (skipped), saying why, when PostgreSQL is not installed.
"""
import atexit
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

from . import env, postfix

ROLE = "pec"


def bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def have_postgres():
    b = bindir()
    return b is not None and all(os.path.exists(os.path.join(b, p))
                                 for p in ("initdb", "pg_ctl", "postgres", "createdb"))


class PostgresError(RuntimeError):
    pass


class Postgres:
    """One private cluster.  sockdir, port: where it listens.  FSYNC: the server
    syncs its commits to disk (as a production one does), for measurements."""

    def __init__(self, fsync=False):
        if not have_postgres():
            raise PostgresError("PostgreSQL is not installed (contrib/deps.sh test)")
        self.bin = bindir()
        self.root = tempfile.mkdtemp(prefix="pectest-pg.")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.sockdir = self.root
        self.log = os.path.join(self.root, "postgres.log")
        self.port = postfix.free_port("127.0.0.1")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("nobody")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.running = False
        self.fsync = fsync
        atexit.register(self.stop)
        self._run("initdb", "-D", self.data, "-U", ROLE, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "-N")
        self.start()

    def _run(self, prog, *args):
        kw = {}
        if self.user is not None:
            kw = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        p = subprocess.run([os.path.join(self.bin, prog)] + list(args), cwd=self.root,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        if p.returncode != 0:
            raise PostgresError("%s failed (%d): %s" % (prog, p.returncode, p.stdout[-2000:]))
        return p.stdout

    def start(self):
        # fsync off unless asked: the tests check the store's logic, not the disk
        opts = "-k %s -p %d -c listen_addresses='' -c fsync=%s" % (
            self.sockdir, self.port, "on" if self.fsync else "off")
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts,
                  "start")
        self.running = True
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postfix.register_process(int(f.readline()), self.root)

    def stop_server(self):
        """Stop the server, keeping its data: start() brings it back."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        self.running = False

    def restart(self):
        self.stop_server()
        self.start()

    def createdb(self, name):
        self._run("createdb", "-h", self.sockdir, "-p", str(self.port), "-U", ROLE, name)

    def query(self, dbname, sql):
        """The rows of SQL on DBNAME, as psql -At prints them (one line a row, | between)."""
        return self._run("psql", "-At", "-X", "-c", sql, self.conninfo(dbname)).splitlines()

    def conninfo(self, dbname):
        return "host=%s port=%d user=%s dbname=%s" % (self.sockdir, self.port, ROLE, dbname)

    def stop(self):
        if self.running:
            try:
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except PostgresError:
                pass
            self.running = False
        if os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    if len(argv) < 2:
        print("usage: python3 -m pectest.postgres PROGRAM ARGS...", file=sys.stderr)
        return 64
    if not have_postgres():
        env.skip("PostgreSQL is not installed (/usr/lib/postgresql/N/bin; contrib/deps.sh test)")
    with Postgres() as pg:
        pg.createdb("pec")
        os.environ["PEC_TEST_STORE"] = pg.conninfo("pec")
        print("PostgreSQL %s: %s" % (pg.bin, os.environ["PEC_TEST_STORE"]), flush=True)
        return subprocess.call(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
