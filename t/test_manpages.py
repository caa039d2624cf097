"""The manual pages render cleanly and say what the code does.

Each page must format with groff's warnings on (-ww) and through man(1)
with nothing on standard error.  pecmilter.conf(5) must document exactly
the keys of the schema in lib/provider/conf.c, each with the schema's type and
default (or "required"); pecmilter(8) every option `pecmilter -h` lists.
"""
import os
import re
import shutil
import subprocess
import unittest

from pectest import env

PAGES = ["milter/pecmilter.8", "milter/pecmilter.conf.5", "milter/pecverify.1",
         "milter/pecctl.8"]

TYPES = {"T_STRING": "String", "T_INT": "Integer", "T_STRLIST": "List of strings",
         "T_ROLEMAP": "Group", "T_LOGINMAP": "List of groups"}


def src(rel):
    return os.path.join(env.SRC_DIR, rel)


def schema():
    """name -> (type, default or None, required), from the table in lib/provider/conf.c."""
    with open(src("lib/provider/conf.c")) as f:
        text = f.read()
    table = text[text.index("static const struct conf_key schema[]"):]
    table = table[:table.index("};")]
    rows = {}
    for m in re.finditer(r'\{"(\w+)",\s*(T_\w+),\s*(NULL|"[^"]*"),\s*([01]),', table):
        default = None if m.group(3) == "NULL" else m.group(3)[1:-1]
        rows[m.group(1)] = (m.group(2), default, m.group(4) == "1")
    return rows


def run(args):
    e = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=e)


class ManPagesTest(unittest.TestCase):
    def test_groff_without_warnings(self):
        if shutil.which("groff") is None:
            self.skipTest("groff is not installed")
        for page in PAGES:
            with self.subTest(page=page):
                p = run(["groff", "-ww", "-man", "-Tutf8", src(page)])
                self.assertEqual((p.returncode, p.stderr), (0, ""))
                self.assertGreater(len(p.stdout), 1000)

    def test_man_without_warnings(self):
        if shutil.which("man") is None:
            self.skipTest("man is not installed")
        for page in PAGES:
            with self.subTest(page=page):
                p = run(["man", "--warnings", "-l", src(page)])
                self.assertEqual((p.returncode, p.stderr), (0, ""))
                self.assertIn("NAME", p.stdout)

    def test_conf5_documents_every_schema_key(self):
        rows = schema()
        self.assertGreater(len(rows), 30, "schema not found in lib/provider/conf.c")
        with open(src("milter/pecmilter.conf.5")) as f:
            page = f.read()
        documented = {m.group(1): m.group(2)
                      for m in re.finditer(r"^\.TP\n\.B (\w+)\n([^\n]*)\n\.br\n", page, re.M)}
        self.assertEqual(sorted(documented), sorted(rows))
        for name, (typ, default, required) in rows.items():
            with self.subTest(key=name):
                line = documented[name]
                self.assertTrue(line.startswith(TYPES[typ] + ", "), line)
                if required:
                    self.assertEqual(line, TYPES[typ] + ", required.")
                elif typ == "T_INT":
                    self.assertRegex(line, r", default %s\.$" % re.escape(default))
                elif typ == "T_STRING":
                    self.assertRegex(line, r', default "%s"( \(.*\))?\.$' % re.escape(default))
                else:
                    self.assertRegex(line, r", default [{(][)}] \(none")

    def test_pecmilter8_documents_every_option(self):
        p = run([env.program("pecmilter"), "-h"])
        self.assertEqual(p.returncode, 0)
        options = re.findall(r"^\s+(-\w)\b", p.stdout, re.M)
        self.assertGreaterEqual(len(options), 4, p.stdout)
        with open(src("milter/pecmilter.8")) as f:
            page = f.read()
        for opt in options:
            self.assertRegex(page, r"(?m)^\.BI? \\%s\b" % re.escape(opt), opt)


if __name__ == "__main__":
    unittest.main(verbosity=2)
