"""lib/'s layers point one way: util <- message <- store <- provider.

A module may include headers of its own folder and of the folders before it,
named by folder ("util/xalloc.h"); a bare or upward include fails.  Only
provider/ opens a store (the store's own folder defines pec_store_open).  No
file in lib/ is over MAX_LINES lines.  The checker is run against the real
tree and, to show it can fail, against small trees that break each rule.
"""
import os
import re
import shutil
import tempfile
import unittest

from pectest import env

LAYERS = ("util", "message", "store", "provider")
MAX_LINES = 1500
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
OPENS_STORE = re.compile(r"\bpec_store_open\s*\(")


def problems(lib):
    """Every breach of the layering in the tree LIB, one line each."""
    found = []
    for name in sorted(os.listdir(lib)):
        path = os.path.join(lib, name)
        if os.path.isfile(path) and name.endswith((".c", ".h")):
            found.append("%s: lib/ files live in one of %s" % (name, ", ".join(LAYERS)))
        elif os.path.isdir(path) and name not in LAYERS:
            found.append("%s/: not a layer (%s)" % (name, ", ".join(LAYERS)))
    for rank, layer in enumerate(LAYERS):
        folder = os.path.join(lib, layer)
        if not os.path.isdir(folder):
            found.append("%s/: missing" % layer)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            rel = "%s/%s" % (layer, name)
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            lines = text.count("\n")
            if lines > MAX_LINES:
                found.append("%s: %d lines, over %d" % (rel, lines, MAX_LINES))
            for target in INCLUDE.findall(text):
                parts = target.split("/")
                if len(parts) != 2 or parts[0] not in LAYERS:
                    found.append('%s: #include "%s" does not name its folder' % (rel, target))
                elif LAYERS.index(parts[0]) > rank:
                    found.append('%s: #include "%s" reaches up from %s to %s'
                                 % (rel, target, layer, parts[0]))
                elif not os.path.isfile(os.path.join(lib, target)):
                    found.append('%s: #include "%s": no such file' % (rel, target))
            if layer not in ("store", "provider") and OPENS_STORE.search(text):
                found.append("%s: opens a store; only provider/ does" % rel)
    return found


class Layers(unittest.TestCase):
    def test_tree(self):
        lib = os.path.join(env.SRC_DIR, "lib")
        self.assertEqual(problems(lib), [])

    def test_breaches_are_found(self):
        tmp = tempfile.mkdtemp(prefix="pectest-layers-")
        self.addCleanup(shutil.rmtree, tmp, True)

        def write(rel, text):
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        for layer in LAYERS:
            os.makedirs(os.path.join(tmp, layer))
        write("util/a.h", "int a(void);\n")
        write("store/s.h", "int s(void);\n")
        write("provider/p.c", '#include "store/s.h"\n#include "util/a.h"\n'
              "void p(void) { pec_store_open(0, 0, 0, 0); }\n")
        self.assertEqual(problems(tmp), [])
        write("message/up.c", '#include "store/s.h"\n')
        write("message/bare.c", '#include "a.h"\n')
        write("message/gone.c", '#include "util/none.h"\n')
        write("message/opens.c", "x = pec_store_open(spec, 0, err, n);\n")
        write("util/long.c", "\n" * (MAX_LINES + 1))
        write("stray.c", "\n")
        self.assertEqual(problems(tmp), [
            "stray.c: lib/ files live in one of util, message, store, provider",
            "util/long.c: %d lines, over %d" % (MAX_LINES + 1, MAX_LINES),
            'message/bare.c: #include "a.h" does not name its folder',
            'message/gone.c: #include "util/none.h": no such file',
            "message/opens.c: opens a store; only provider/ does",
            'message/up.c: #include "store/s.h" reaches up from message to store',
        ])


if __name__ == "__main__":
    unittest.main()
