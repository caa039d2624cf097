"""The Postfix harness leaves no process behind, also when a test fails: a test process
that is SIGKILLed (as ctest does on timeout) is cleaned up after by the reaper; one that
raises inside the context manager, or exits without stopping, by the harness itself."""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pectest import env  # noqa: E402
from pectest import postfix as pf  # noqa: E402

WORK = None
T_DIR = os.path.dirname(os.path.abspath(__file__))

# The pretend test.  argv: workdir, mode.  It starts an instance and a stand-in for
# pecmilter (sleep) handed to register_process, says READY, then according to mode:
#   hang   wait to be killed
#   raise  raise inside the context manager
#   exit   leave without stopping anything (only atexit and the reaper are left)
CHILD = textwrap.dedent("""
    import subprocess, sys, time
    from pectest import postfix as pf
    work, mode = sys.argv[1], sys.argv[2]
    inst = pf.Postfix(work, "x", ip="127.0.0.21", mydomain="pec-x.test",
                      virtual_domains=["pec-x.test"])
    helper = subprocess.Popen(["sleep", "300"])
    pf.register_process(helper.pid, work)
    def ready():
        print("READY %s %s %d" % (inst.etc, inst.queue, helper.pid), flush=True)
    if mode == "raise":
        with inst:
            ready()
            raise RuntimeError("simulated test failure")
    inst.start()
    if mode == "killreaper":
        # someone kills the reaper; the next registration must start a new one that
        # knows about everything registered so far
        import os, signal
        reapers = [p for p in pf.leftovers(work) if pf.is_reaper(p)]
        assert len(reapers) == 1, reapers
        os.kill(reapers[0], signal.SIGKILL)
        while pf._proc_stat(reapers[0]):
            time.sleep(0.01)
        inst2 = pf.Postfix(work, "y", ip="127.0.0.22", mydomain="pec-y.test").start()
        print("SECOND %s %s" % (inst2.etc, inst2.queue), flush=True)
    ready()
    if mode in ("hang", "killreaper"):
        time.sleep(600)
""")


def run_child(work, mode):
    env_ = dict(os.environ, PYTHONPATH=T_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", CHILD, work, mode], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env_, cwd=work)
    line = p.stdout.readline().decode()
    second = None
    if line.startswith("SECOND "):
        second = line.split()[1:]
        line = p.stdout.readline().decode()
    if not line.startswith("READY "):
        p.kill()
        out, err = p.communicate()
        raise AssertionError("child did not start: %r %s %s" % (line, out, err.decode()))
    _, etc, queue, helper = line.split()
    if mode == "killreaper":
        return p, etc, queue, int(helper), second
    return p, etc, queue, int(helper)


def alive(pid):
    return pf._proc_stat(pid) is not None


class CleanupTest(unittest.TestCase):

    def workdir(self, name):
        d = os.path.join(WORK, name)
        os.makedirs(d)
        return d

    def assert_running(self, etc, queue, helper):
        pids = pf._instance_pids(etc, queue)
        self.assertGreaterEqual(len(pids), 3, "master, qmgr, pickup at least")
        self.assertTrue(alive(helper))
        return pids

    def test_sigkilled_test_is_reaped(self):
        self.sigkill("kill", tree=False)

    def test_sigkilled_process_tree_is_reaped(self):
        """As a runner killing the test's whole process tree would: the reaper is no
        descendant of the test, so it survives and does its job."""
        self.sigkill("killtree", tree=True)

    def sigkill(self, name, tree):
        work = self.workdir(name)
        p, etc, queue, helper = run_child(work, "hang")
        try:
            pids = self.assert_running(etc, queue, helper)
            t0 = time.monotonic()
            family = {p.pid} | (pf._descendants([p.pid]) if tree else set())
            self.assertEqual(tree, helper in family)
            pf._kill(family, signal.SIGKILL)
            p.wait()
            left = None
            while time.monotonic() - t0 < 15:
                left = pf.leftovers(work)
                if not left and not alive(helper):
                    break
                time.sleep(0.05)
            took = time.monotonic() - t0
            print("\n  %d instance processes + helper reaped %.2fs after SIGKILL%s"
                  % (len(pids), took, " of the tree" if tree else ""))
            self.assertEqual(left, set(), "left after 15 s: %s" % describe(left))
            self.assertFalse(alive(helper))
            self.assertFalse(any(alive(x) for x in pids))
            log = open(os.path.join(work, "reaper.log")).read()
            self.assertIn("reaping 1 instance(s), 1 pid(s)", log)
        finally:
            p.kill()
            p.wait()
            tidy(etc, queue, helper)

    def test_reaper_killed_is_replaced(self):
        work = self.workdir("killreaper")
        p, etc, queue, helper, (etc2, queue2) = run_child(work, "killreaper")
        try:
            self.assert_running(etc, queue, helper)
            self.assertTrue(pf._instance_pids(etc2, queue2))
            t0 = time.monotonic()
            p.send_signal(signal.SIGKILL)
            p.wait()
            left = leftovers_after(work, 15)
            print("\n  2 instances + helper reaped by the second reaper %.2fs after SIGKILL"
                  % (time.monotonic() - t0))
            self.assertEqual(left, set(), describe(left))
            self.assertFalse(alive(helper))
            self.assertIn("reaping 2 instance(s), 1 pid(s)",
                          open(os.path.join(work, "reaper.log")).read())
        finally:
            p.kill()
            p.wait()
            tidy(etc, queue, helper)
            tidy(etc2, queue2, helper)

    def test_exception_in_context_manager(self):
        work = self.workdir("raise")
        p, etc, queue, helper = run_child(work, "raise")
        try:
            t0 = time.monotonic()
            out, err = p.communicate(timeout=60)
            took = time.monotonic() - t0
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"simulated test failure", err)
            # __exit__ stopped the instance before the exception left the with block,
            # and atexit took the helper: nothing to wait for.
            self.assertEqual(pf._instance_pids(etc, queue), set())
            self.assertFalse(alive(helper))
            left = leftovers_after(work, 2.0)   # only the reaper, finishing its exit
            print("\n  child exited %.2fs after READY; nothing left" % took)
            self.assertEqual(left, set(), describe(left))
        finally:
            p.kill()
            p.wait()
            tidy(etc, queue, helper)

    def test_exit_without_stop(self):
        work = self.workdir("exit")
        p, etc, queue, helper = run_child(work, "exit")
        try:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
            self.assertEqual(pf._instance_pids(etc, queue), set())   # the atexit hook
            self.assertFalse(alive(helper))
            left = leftovers_after(work, 2.0)
            self.assertEqual(left, set(), describe(left))
        finally:
            p.kill()
            p.wait()
            tidy(etc, queue, helper)


def leftovers_after(work, grace):
    deadline = time.monotonic() + grace
    while True:
        left = pf.leftovers(work)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def describe(pids):
    out = []
    for pid in sorted(pids or ()):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                out.append("%d %s" % (pid, f.read().replace(b"\0", b" ").decode()))
        except OSError:
            pass
    return "; ".join(out)


def tidy(etc, queue, helper):
    """Whatever the outcome, this test must not leave anything running either."""
    pf._reap_instance(etc, queue, grace=2)
    pf._kill([helper], signal.SIGKILL)


def main():
    global WORK
    if not pf.have_postfix():
        env.skip("needs root and Postfix (postfix, /usr/lib/postfix/sbin/master)")
    WORK = tempfile.mkdtemp(prefix="pectest-cleanup-")
    env.run_suite(CleanupTest, WORK)


if __name__ == "__main__":
    main()
