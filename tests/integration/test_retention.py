#!/usr/bin/python3
"""Retention and compaction end to end ([spool] retention, docs/reference/
spool-and-outboxctl.md): outboxd with retention = "2s" relays to a real
aiosmtpd upstream; delivered messages leave `outboxctl queue` within seconds
of their delivery, and after a burst of ~120 MB the spool file and its WAL
shrink back to within a few MB of their size before (incremental
auto_vacuum, TRUNCATE checkpoints while idle)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402


class RetentionDaemon(harness.Daemon):
    def __init__(self, retention, **kw):
        self.retention = retention
        super().__init__(**kw)

    def config_text(self):
        return super().config_text().replace("[spool]\n", "[spool]\nretention = \"%s\"\n" % self.retention, 1)


def spool_bytes(d):
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(d.spool_path + suffix)
        except FileNotFoundError:
            pass
    return total


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def body(i, size):
    head = (b"From: <app@client.test>\r\nTo: <user@example.test>\r\nSubject: retention %d\r\n"
            b"Message-ID: <ret.%d.%d@client.test>\r\n\r\n" % (i, i, time.monotonic_ns()))
    line = b"x" * 998 + b"\r\n"
    return head + line * (size // len(line))


class Retention(unittest.TestCase):
    def start(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        d = RetentionDaemon("2s", name="outbox-retention")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port)])
        d.write_config()
        d.start()
        return d, up

    def test_delivered_messages_leave_the_queue_within_seconds(self):
        d, up = self.start()
        ids = []
        with d.smtplib() as s:
            for i in range(5):
                s.sendmail("app@client.test", ["user@example.test"], body(i, 2000))
                ids.append(s.last_queue_id)
        up.wait_delivered(5)
        delivered_at = time.monotonic()
        # Still listed just after delivery (sent, kept for inspection)...
        listed = {m["id"]: m["state"] for m in d.queue()}
        self.assertTrue(set(ids) & set(listed), listed)
        # ...and gone once the retention has passed (2 s + a maintenance tick).
        wait_until(lambda: d.queue() == [], 10, "the sent messages to be purged")
        self.assertLess(time.monotonic() - delivered_at, 8)
        for qid in ids:
            d.ctl("show", qid, check=3)
        self.assertEqual(d.ctl("queue").stdout, b"Queue is empty\n")

    def test_spool_files_shrink_back_after_a_burst(self):
        d, up = self.start()
        # The idle spool: schema written, WAL truncated by the idle checkpoint.
        time.sleep(1.5)
        before = spool_bytes(d)
        # OUTBOX_RETENTION_BURST_MB=500 for the by-hand figure (default 120 MB, ~15 s).
        size = 4 * 1024 * 1024
        n = max(1, int(os.environ.get("OUTBOX_RETENTION_BURST_MB", "120")) // 4)
        started = time.monotonic()
        with d.smtplib(timeout=120) as s:
            for i in range(n):
                s.sendmail("app@client.test", ["user@example.test"], body(i, size))
        up.wait_delivered(n, timeout=90 + n)
        peak = spool_bytes(d)
        relay_s = time.monotonic() - started
        wait_until(lambda: d.queue() == [], 20 + n // 5, "the burst to be purged")
        wait_until(lambda: spool_bytes(d) <= before + 4 * 1024 * 1024, 30 + n // 5,
                   "the spool to shrink (before %d, now %d)" % (before, spool_bytes(d)))
        after = spool_bytes(d)
        sys.stderr.write("retention burst: %d x %d MiB relayed in %.1fs; spool+wal before %d, at delivery %d, "
                         "after %d bytes\n" % (n, size >> 20, relay_s, before, peak, after))
        self.assertEqual(os.path.getsize(d.spool_path + "-wal") if os.path.exists(d.spool_path + "-wal") else 0,
                         0, "the idle WAL is truncated")
        # The daemon stays healthy and keeps relaying after the compaction.
        with d.smtplib() as s:
            s.sendmail("app@client.test", ["user@example.test"], body(99, 1000))
        up.wait_delivered(n + 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
