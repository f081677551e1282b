#!/usr/bin/python3
"""One outboxd per spool (issue 11 item 2): a second outboxd on the same
spool exits non-zero (75) naming the PID of the first; the lock goes with
the first however it ends (SIGTERM or kill -9); outboxctl keeps working
beside the running daemon."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class OneDaemon(unittest.TestCase):
    def second(self, d):
        # The same configuration: same spool (the listeners would clash too,
        # but the lock is taken first, before any socket is bound).
        return subprocess.run([harness.binpath("outboxd"), "--config", d.config_path], capture_output=True,
                              timeout=30)

    def test_a_second_daemon_exits_naming_the_first(self):
        d = harness.Daemon(name="outbox-lock")
        self.addCleanup(d.cleanup)
        d.start()
        p = self.second(d)
        self.assertEqual(p.returncode, 75, p.stderr)
        err = p.stderr.decode()
        self.assertIn("outboxd pid %d already runs on spool %s" % (d.proc.pid, d.spool_path), err)
        self.assertIn(d.spool_path + ".lock", err)
        self.assertTrue(d.running())
        # Writes from outboxctl beside it still work.
        qid, _ = d.submit()
        d.ctl("hold", qid)
        d.ctl("release", qid)
        # SIGTERM: the lock goes with it; a new daemon starts.
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(self.second(d).returncode, 75)
        # kill -9: the kernel drops the lock too (the PID left in the file is stale, not a lock).
        d.kill9()
        d.start()
        p = self.second(d)
        self.assertIn(b"outboxd pid %d " % d.proc.pid, p.stderr)

    def test_check_does_not_need_the_lock(self):
        d = harness.Daemon(name="outbox-lock-check")
        self.addCleanup(d.cleanup)
        d.start()
        p = subprocess.run([harness.binpath("outboxd"), "--check", "--config", d.config_path], capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
