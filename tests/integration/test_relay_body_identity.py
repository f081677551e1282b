#!/usr/bin/python3
"""A legal body line is never changed by the relay (issue 8 item 8; RFC 5321
§4.5.3.1.6, §4.5.2): 100 messages of random 8-bit lines of 990 to 998 octets,
many starting with ".", submitted with smtplib (BODY=8BITMIME, RFC 6152) and
relayed to a real aiosmtpd upstream, arrive byte for byte as submitted, after
the Received: field outbox puts in front (SPEC "Relay")."""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

# Every octet but NUL, CR and LF (RFC 6152 §3: 8bit data is lines of octets
# other than those).
OCTETS = bytes(b for b in range(1, 256) if b not in (0x0A, 0x0D))


def random_line(rng):
    n = rng.randint(990, 998)
    line = bytes(rng.choice(OCTETS) for _ in range(n))
    if rng.random() < 0.5:   # the transparency dot must not count (RFC 5321 §4.5.2)
        line = b"." + line[1:]
    return line


def message(rng, i):
    head = [b"From: App <app@client.test>", b"To: <dest@example.test>",
            b"Subject: identity %d" % i, b"Date: Thu, 01 Jan 2026 00:00:00 +0000",
            b"Message-ID: <identity-%d@client.test>" % i,
            b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=latin1",
            b"Content-Transfer-Encoding: 8bit", b""]
    lines = [random_line(rng) for _ in range(rng.randint(1, 12))]
    if i % 10 == 0:
        lines += [b"." * 998, b"." * 997 + b" "]   # all dots: stuffed, still 998 of text
    return b"\r\n".join(head + lines) + b"\r\n"


class BodyIdentity(unittest.TestCase):
    def test_hundred_messages_of_long_lines_arrive_unchanged(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-identity")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, timeout="30s")])
        d.write_config()
        d.start()

        rng = random.Random(8)
        sent = {}
        with d.smtplib() as s:
            for i in range(100):
                msg = message(rng, i)
                refused = s.sendmail("app@client.test", ["dest@example.test"], msg,
                                     mail_options=["BODY=8BITMIME"])
                self.assertEqual(refused, {})
                self.assertIsNotNone(s.last_queue_id, s.last_reply)
                sent[b"<identity-%d@client.test>" % i] = msg

        got = up.wait_delivered(100, timeout=120)
        self.assertEqual(len(got), 100)
        dotted = 0
        for m in got:
            # outbox's own fields come first (the Received: line), then the
            # submitted message, every octet as it was.
            mid = [ln for ln in m.data.split(b"\r\n") if ln.startswith(b"Message-ID: ")][0][12:]
            msg = sent.pop(mid)
            self.assertTrue(m.data.endswith(msg), "message %r changed in transit" % mid)
            prefix = m.data[:-len(msg)]
            fields = harness.parse_prefix(prefix)
            self.assertEqual([name for name, _ in fields], ["received"], prefix)
            self.assertIn("BODY=8BITMIME", m.mail_options)
            dotted += sum(1 for ln in msg.split(b"\r\n") if ln.startswith(b".") and len(ln) >= 990)
        self.assertEqual(sent, {})
        self.assertGreater(dotted, 100)   # the case that used to be folded was exercised
        self.assertEqual(d.stop(), 0)

    def test_sizes_across_the_memory_hand_off_arrive_unchanged(self):
        """The relay's first read of a message is the text the submission side
        collected (up to 256 KiB, queue::BodyReader::kRememberTextBytes, in one
        piece the relay sends in 64 KiB slices); past that, or once the first
        read is done, the spool's pieces. Sizes on each side of every bound
        arrive byte for byte, twice each (the second copy in one session, with
        the first still in flight)."""
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-identity-sizes")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, timeout="30s")])
        d.write_config()
        d.start()
        rng = random.Random(13)
        # The relay's reader exists after its first delivery: from then on
        # every accepted text is kept.
        with d.smtplib() as s:
            s.sendmail("app@client.test", ["dest@example.test"], message(rng, 1000))
        self.assertEqual(len(up.wait_delivered(1, timeout=60)), 1)
        K = 1024
        sizes = [60 * K, 64 * K - 1, 64 * K + 1, 100 * 1000, 200 * K, 256 * K - 200, 256 * K + 1, 600 * K]
        sent = {}
        n = 0
        with d.smtplib() as s:
            for size in sizes:
                for copy in range(2):
                    msg = message(rng, 2000 + n)
                    body = b""
                    while len(msg) + len(body) < size:
                        body += random_line(rng) + b"\r\n"
                    msg = (msg + body)[:size - 2] + b"\r\n"
                    refused = s.sendmail("app@client.test", ["dest@example.test"], msg,
                                         mail_options=["BODY=8BITMIME"])
                    self.assertEqual(refused, {})
                    sent[b"<identity-%d@client.test>" % (2000 + n)] = msg
                    n += 1
        got = up.wait_delivered(1 + n, timeout=120)
        self.assertEqual(len(got), 1 + n)
        for m in got[1:]:
            mid = [ln for ln in m.data.split(b"\r\n") if ln.startswith(b"Message-ID: ")][0][12:]
            msg = sent.pop(mid)
            self.assertTrue(m.data.endswith(msg), "message %r of %d octets changed in transit" % (mid, len(msg)))
            self.assertEqual([name for name, _ in harness.parse_prefix(m.data[:-len(msg)])], ["received"])
        self.assertEqual(sent, {})
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
