#!/usr/bin/python3
"""A damaged spool stops outboxd at start (issue 12 item 7): PRAGMA
quick_check before the spool is opened for writing; exit 74 with the damage
named and how to recover, instead of a daemon that answers 451 to
everything. A sound spool passes (event=spool_check result=ok)."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class DamagedSpool(unittest.TestCase):
    def test_a_damaged_spool_stops_the_start_and_a_sound_one_passes(self):
        d = harness.Daemon(name="outbox-damaged")
        self.addCleanup(d.cleanup)
        d.start()
        for _ in range(60):
            d.submit(body=b"Subject: fill\r\n\r\n" + b"x" * 3000 + b"\r\n")
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(d.wait_event("spool_check")["result"], "ok")
        self.assertEqual(d.stop(), 0)
        # Overwrite a page in the middle of the file (not the header page),
        # as a failing disk or a stray write would.
        size = os.path.getsize(d.spool_path)
        self.assertGreater(size, 16 * 4096)
        with open(d.spool_path, "r+b") as f:
            f.seek((size // 4096 // 2) * 4096)
            f.write(b"\xde\xad\xbe\xef" * 1024)
        p = subprocess.run([harness.binpath("outboxd"), "--config", d.config_path], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 74, p.stderr)
        err = p.stderr.decode()
        self.assertIn("outboxd: the spool %s is damaged (" % d.spool_path, err)
        self.assertIn("sqlite3 %s .recover" % d.spool_path, err)


if __name__ == "__main__":
    unittest.main()
