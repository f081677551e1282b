"""Issue 10 item 5: delay warnings. A message still waiting at a configured
age ([bounces] delay_warnings, short here) gets one DSN with Action: delayed
to its sender, exactly once, also across a restart; none for the null
sender. Real outboxd and a real aiosmtpd upstream that keeps answering 451
for one recipient."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

SENDER = "app@client.test"
SLOW = "slow@example.test"


class DelayWarnings(unittest.TestCase):
    def test_one_delayed_notice_at_the_age_none_for_the_null_sender(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        up.fail("RCPT", "451 4.2.0 Mailbox busy, try later", address=SLOW)
        d = harness.Daemon(name="outbox-delay")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port)], retry={"max": "2s"}).replace(
            "[bounces]\n", '[bounces]\ndelay_warnings = ["3s", "1d"]\n')
        d.write_config()
        d.start()
        t0 = time.monotonic()
        qid, _ = d.submit(SENDER, [SLOW, "fast@example.test"])
        nqid, _ = d.submit("", [SLOW])   # a DSN-like message: never warned about

        ev = d.wait_event("delay_warning_queued", original=qid, timeout=20)
        self.assertGreaterEqual(time.monotonic() - t0, 2.5, "warned before the age")
        self.assertEqual((ev["age"], ev["recipients"]), ("3s", "1"))
        notices = up.wait_for(lambda: [x for x in up.delivered() if x.mail_from == ""], what="the delay notice")
        (n,) = notices
        self.assertEqual(n.rcpt_tos, [SENDER])
        self.assertIn(b"Action: delayed", n.data)
        self.assertIn(b"Final-Recipient: rfc822; " + SLOW.encode(), n.data)
        self.assertIn(b"Status: 4.2.0", n.data)
        self.assertIn(b"451 4.2.0 Mailbox busy", n.data)
        self.assertIn(b"Will-Retry-Until:", n.data)
        self.assertNotIn(b"fast@example.test", n.data.split(b"message/delivery-status")[-1].split(b"\r\n--")[0])
        self.assertEqual(n.data, d.body(ev["id"]))
        # The original keeps waiting: deferred, not bounced.
        self.assertEqual(d.show(qid)["state"], "deferred")
        self.assertEqual(d.events("bounced"), [])

        # Exactly once: later sweeps and a restart add none; none for <>.
        time.sleep(4)
        self.assertEqual(d.stop(), 0)
        d.start()
        time.sleep(4)
        with open(d.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        self.assertEqual(log.count("event=delay_warning_queued"), 1, log[-3000:])
        self.assertNotIn("original=%s" % nqid, log)
        self.assertEqual(len([x for x in up.delivered() if x.mail_from == ""]), 1)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
