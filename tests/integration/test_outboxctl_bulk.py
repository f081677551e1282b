#!/usr/bin/python3
"""outboxctl delete|hold|release|retry with filters, against a running
outboxd (issue 12 item 8; docs/spec.md "outboxctl"): counts, refuses to act
without --yes when not on a terminal, acts with it, logs who did it, and the
daemon sees the changes."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import closed_port, relay_toml, upstream_section  # noqa: E402


class Bulk(unittest.TestCase):
    def test_filters_count_confirm_act(self):
        d = harness.Daemon(name="outbox-bulk")
        self.addCleanup(d.cleanup)
        # A route that matches none of these senders: the relay leaves them queued.
        d.extra_toml = relay_toml([upstream_section("mail", closed_port())], routes=(("nobody@nowhere.test", None),),
                                  bounces=False)
        d.write_config()
        d.start()
        cron = [d.submit(sender="cron@host.test")[0] for _ in range(4)]
        apps = [d.submit(sender="app@example.com", rcpts=("ops@example.org",))[0] for _ in range(3)]

        p = d.ctl("hold", "--sender", "cron@*", check=2)
        self.assertEqual(p.stderr.decode(), "outboxctl: 4 messages match; add --yes to hold them (nothing done)\n")
        self.assertEqual(d.ctl("hold", "--sender", "cron@*", "--yes").stdout.decode(), "4 messages held\n")
        states = {m["id"]: m["state"] for m in d.queue()}
        self.assertEqual({states[i] for i in cron}, {"held"})
        self.assertNotIn("held", {states[i] for i in apps})

        self.assertEqual(d.ctl("release", "--all", "-y").stdout.decode(), "4 messages released (due now)\n")
        self.assertEqual(d.ctl("retry", "--recipient", "ops@*", "--yes").stdout.decode(), "3 messages due now\n")
        self.assertEqual(d.ctl("delete", "--older-than", "1h", "--yes").stdout.decode(), "no messages match\n")
        self.assertEqual(d.ctl("delete", "--sender", "app@example.com", "--yes").stdout.decode(),
                         "3 messages deleted\n")
        self.assertEqual(sorted(m["id"] for m in d.queue()), sorted(cron))

        # Usage: an id and a filter, nothing at all, a bad duration.
        self.assertIn(b"excludes", d.ctl("delete", cron[0], "--all", check=2).stderr)
        self.assertIn(b"needs a message id, a filter or --all", d.ctl("hold", check=2).stderr)
        self.assertIn(b"is not a duration", d.ctl("hold", "--older-than", "soon", check=2).stderr)

        # Each change is an operator action with the uid; outboxd logs them.
        ev = d.wait_event("operator", action="delete")
        self.assertEqual(ev["uid"], str(os.getuid()))
        import sqlite3
        db = sqlite3.connect(d.spool_path, timeout=30)
        self.addCleanup(db.close)
        n = dict(db.execute("SELECT action, COUNT(*) FROM operator_log GROUP BY action").fetchall())
        self.assertEqual((n.get("hold"), n.get("release"), n.get("retry"), n.get("delete")), (4, 4, 3, 3))


if __name__ == "__main__":
    unittest.main()
