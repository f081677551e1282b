#!/usr/bin/python3
"""A large message is streamed, not held (issue 8 item 5): one ~30 MB message
submitted with smtplib is relayed through STARTTLS (RFC 3207) to a real
aiosmtpd upstream, intact, while outboxd's peak resident set (VmHWM) stays
well under the message's size: the relay holds a piece of the body and the
link's high-water mark, not the message (SPEC "Relay")."""

import asyncio
import hashlib
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import upstream  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

SIZE = 30 * 1024 * 1024
PEAK_LIMIT_KB = 40 * 1024


def vm_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (key, pid))


def big_message():
    rng = random.Random(30)
    alphabet = bytes(range(0x21, 0x7F))
    # 64 KiB of distinct lines, repeated with a counter so no two pieces match.
    block = b"".join((b"." if i % 7 == 0 else b"") + bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
                     + b"\r\n" for i in range(1100))
    head = (b"From: App <app@client.test>\r\nTo: <big@example.test>\r\nSubject: thirty megabytes\r\n"
            b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <big@client.test>\r\n\r\n")
    parts = [head]
    n = len(head)
    i = 0
    while n < SIZE:
        piece = b"block %d\r\n" % i + block
        parts.append(piece)
        n += len(piece)
        i += 1
    return b"".join(parts)


class LargeBody(unittest.TestCase):
    def check_peak(self, peak_kb):
        # Under a sanitizer (tests/CMakeLists.txt sets OUTBOX_SANITIZER) the
        # peak is its shadow memory and quarantine, not outboxd's: the relay
        # still runs there, intact bytes checked; the bound holds in Release.
        if not os.environ.get("OUTBOX_SANITIZER"):
            self.assertLess(peak_kb, PEAK_LIMIT_KB)

    def slow_reader(self, seconds):
        """The upstream stops reading for `seconds` once it has said 354: the
        relay's writes back up, and only back-pressure keeps them from piling
        up in outboxd's memory (the kernel's socket buffers hold a few MB)."""
        orig = upstream._FaultySMTP.smtp_DATA

        async def smtp_DATA(server, arg):
            server.transport.pause_reading()
            asyncio.get_running_loop().call_later(seconds, server.transport.resume_reading)
            return await orig(server, arg)

        upstream._FaultySMTP.smtp_DATA = smtp_DATA
        self.addCleanup(setattr, upstream._FaultySMTP, "smtp_DATA", orig)

    def test_slow_upstream_thirty_megabytes_with_bounded_memory(self):
        self.slow_reader(4)
        self.test_thirty_megabytes_through_starttls_with_bounded_memory()

    def test_message_deleted_while_streaming_ends_the_connection(self):
        # The upstream stops reading after its 354, so the relay is part way
        # through the body (waiting for the link to drain) when the operator
        # deletes the message: the next piece finds it gone, the connection
        # ends without the final dot, nothing is delivered.
        self.slow_reader(3)
        up = Upstream("starttls").start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-delete")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls="starttls", timeout="60s")])
        d.write_config()
        d.start()
        with d.smtplib(timeout=120) as s:
            self.assertEqual(s.sendmail("app@client.test", ["big@example.test"], big_message()), {})
            qid = s.last_queue_id
        up.wait_for(lambda: up.mail_froms, timeout=30, what="MAIL FROM at the upstream")
        self.assertEqual(d.ctl("delete", qid).returncode, 0)
        up.wait_for(lambda: up.messages or d.events("relay_error") or
                    b"message deleted during delivery" in d.log_bytes() or None, timeout=30,
                    what="the delivery to end")
        time.sleep(4)   # past the stall: a delivered message would be here by now
        self.assertEqual(up.delivered(), [])
        self.assertTrue(d.running())
        self.assertNotIn(qid, d.queue_by_id())
        self.assertEqual(d.stop(), 0)

    def test_thirty_megabytes_through_starttls_with_bounded_memory(self):
        up = Upstream("starttls").start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-large")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls="starttls", timeout="60s")])
        d.write_config()
        d.start()
        pid = d.proc.pid
        before_kb = vm_kb(pid, "VmHWM")

        msg = big_message()
        with d.smtplib(timeout=120) as s:
            self.assertEqual(s.sendmail("app@client.test", ["big@example.test"], msg), {})
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)

        got = up.wait_delivered(1, timeout=300)
        d.wait_event("delivered", id=qid, timeout=30)
        m = got[0]
        self.assertTrue(m.tls)
        self.assertTrue(m.data.endswith(msg),
                        "body changed: %s vs %s" % (hashlib.sha256(m.data[-len(msg):]).hexdigest(),
                                                    hashlib.sha256(msg).hexdigest()))
        peak_kb = vm_kb(pid, "VmHWM")
        print("outboxd VmHWM: %d kB at start, %d kB after relaying %d bytes" % (before_kb, peak_kb, len(msg)),
              file=sys.stderr)
        self.check_peak(peak_kb)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
