"""Crash safety with A's reinjection listener stopped for a minute mid-run.

The scenario of test_crash.py (N certified messages A -> B, both pecmilters
killed with SIGKILL at random moments and restarted), and besides, a few
seconds in, A's Postfix stops listening for reinjection (master.cf without
the service, postfix reload) for LISTENER_DOWN seconds: A's injector cannot
hand over its receipts and must keep them, retrying, across the kills; the
kills go on while the listener is away.  The same checks and figures.
"""
import test_crash

if __name__ == "__main__":
    test_crash.run("listener")
