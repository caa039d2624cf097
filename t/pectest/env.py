"""Paths handed over by ctest, with fallbacks for running a test by hand."""
import os
import re
import shutil
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_DIR = os.environ.get("PEC_SRC_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("PEC_BUILD_DIR") or os.path.join(SRC_DIR, "build")
PKI_DIR = os.environ.get("PEC_PKI_DIR") or os.path.join(BUILD_DIR, "t", "pki")
SHARED_DIR = os.environ.get("PEC_SHARED_DIR") or os.path.join(os.path.dirname(SRC_DIR), "shared")

SKIP = 77


def skip(why):
    """Exit as skipped, saying why (ctest reads exit 77 as a skip)."""
    print("SKIP: " + why)
    sys.exit(SKIP)


def sanitized():
    """Was the build under test made with -DPEC_SANITIZE=ON?"""
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
            return re.search(r"^PEC_SANITIZE:BOOL=ON$", f.read(), re.M) is not None
    except OSError:
        return False


def program(name):
    """Path of one of the project's built programs (pecmilter, pecverify, pecctl)."""
    return os.path.join(BUILD_DIR, "milter", name)


def shared(*parts):
    """Path under ../shared, or a skip when that folder is absent."""
    p = os.path.join(SHARED_DIR, *parts)
    if not os.path.exists(p):
        skip("%s is absent: the shared folder beside the project is needed" % p)
    return p


def run_suite(case, work):
    """Run the unittest.TestCase CASE whose files are under WORK and exit as ctest
    reads it: WORK is kept when a test failed or PECTEST_KEEP is set; a run with
    nothing passed and nothing failed is a skip."""
    t0 = time.monotonic()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    if failed or os.environ.get("PECTEST_KEEP"):
        print("workdir kept for inspection: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("total %.2fs" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else (SKIP if not passed else 0))
