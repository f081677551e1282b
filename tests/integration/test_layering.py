#!/usr/bin/python3
"""The layering check (tools/check-layering.sh, issue 12 item 10): the real
tree passes, and a tree with a planted violation of each rule fails, naming
the file and line."""

import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "check-layering.sh")


def run(src):
    return subprocess.run(["sh", SCRIPT, src], capture_output=True, text=True, timeout=60)


class Layering(unittest.TestCase):
    def test_the_tree_keeps_its_layers(self):
        p = run(ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_each_rule_catches_a_planted_violation(self):
        cases = [
            ("protocol/x.cpp", "#include <uv.h>\n"),
            ("protocol/x.h", '#include "queue/spool.h"\n'),
            ("protocol/y.cpp", "  #  include <openssl/ssl.h>\n"),
            ("queue/x.cpp", '#include "daemon/relay.h"\n'),
            ("queue/y.cpp", "#include <uv.h>\n"),
            ("daemon/x.cpp", "#include <sqlite3.h>\n"),
            ("tools/outboxctl/x.cpp", "#include <sqlite3.h>\n"),
        ]
        for path, line in cases:
            with self.subTest(path=path):
                tree = tempfile.mkdtemp(prefix="outbox-layers-")
                self.addCleanup(shutil.rmtree, tree, True)
                for d in ("protocol", "queue", "daemon", "tools"):
                    os.makedirs(os.path.join(tree, d), exist_ok=True)
                os.makedirs(os.path.dirname(os.path.join(tree, path)), exist_ok=True)
                with open(os.path.join(tree, path), "w") as f:
                    f.write("// a file\n" + line)
                p = run(tree)
                self.assertEqual(p.returncode, 1, p.stdout)
                self.assertIn("%s:2:" % path, p.stdout)


if __name__ == "__main__":
    unittest.main()
