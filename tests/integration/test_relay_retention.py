#!/usr/bin/python3
"""Retention (issue 8 item 2, relay side): finished messages older than
spool.retention are purged while outboxd runs, bodies included; messages
not finished are never touched."""

import os
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402
from test_relay_delivery import BODY, message  # noqa: E402

SENDER = "app@client.test"


def counts(d):
    con = sqlite3.connect("file:%s?mode=ro" % d.spool_path, uri=True, timeout=10)
    try:
        return {t: con.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0] for t in ("messages", "chunks")}
    finally:
        con.close()


class RelayRetention(unittest.TestCase):
    def test_finished_messages_are_purged_after_retention(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        up.fail("RCPT", "450 4.2.0 mailbox busy", address="busy@example.test")
        d = harness.Daemon(name="outbox-retention")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port)], retry={"initial": "1h", "max": "1h"})
        d.write_config()
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("[spool]\n", "[spool]\nretention = \"2s\"\n", 1))
        d.start()
        with d.smtplib() as s:
            for i in range(5):
                r = "r%d@example.test" % i
                s.sendmail(SENDER, [r], message(SENDER, [r], "kept briefly", BODY))
            s.sendmail(SENDER, ["busy@example.test"], message(SENDER, ["busy@example.test"], "waits", BODY))
            waiting = s.last_queue_id
        up.wait_delivered(5)
        d.wait_event("deferred", id=waiting)
        t0 = time.monotonic()
        while counts(d)["messages"] > 1:
            self.assertLess(time.monotonic() - t0, 10, counts(d))
            time.sleep(0.2)
        ev = d.wait_event("purged")
        self.assertGreaterEqual(int(ev["messages"]), 1)
        left = d.queue()
        self.assertEqual([m["id"] for m in left], [waiting], "an unfinished message was purged")
        self.assertEqual(left[0]["state"], "deferred")
        self.assertGreater(counts(d)["chunks"], 0)   # the waiting message's body stays
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
