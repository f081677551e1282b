"""Issue 10 item 3: the quota ledger. A rate ceiling paces sending so the
upstream never has to throttle; the reason is in words in `outboxctl show`;
`outboxctl upstreams` shows each window's use; a restart does not reset the
window (the ledger is in the spool); recipient windows count recipients.
Real outboxd, real aiosmtpd upstream, real clock (the minute-scale pacing of
30 messages is tested with the scheduler's fake clock in
tests/unit/relay/test_quota.cpp)."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_relay_delivery import start_relay  # noqa: E402
from upstream import Upstream  # noqa: E402

SENDER = "app@client.test"


class Quota(unittest.TestCase):
    def upstream(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        return up

    def submit(self, d, rcpts):
        qid, _ = d.submit(SENDER, rcpts)
        return qid

    def test_window_survives_a_restart_and_the_wait_is_explained(self):
        up = self.upstream()
        d = start_relay(self, up, "none", user=None, extra={"rate": ["2/min"]})
        t0 = time.monotonic()
        ids = [self.submit(d, ["r%d@example.test" % i]) for i in range(3)]
        up.wait_delivered(2)
        time.sleep(1.5)
        self.assertEqual(len(up.delivered()), 2)
        (late,) = [q for q in ids if d.show(q)["state"] != "sent"]
        m = d.show(late)
        self.assertRegex(m["last_error"], r'upstream "mail" quota: 2/2 messages per minute, '
                                          r'next slot \d\d:\d\d:\d\d UTC')
        self.assertEqual(m["attempts"], 0)
        (u,) = d.ctl_json("upstreams", "--json")
        self.assertEqual([(q["unit"], q["limit"], q["per_s"], q["used"], q["full"]) for q in u["quota"]],
                         [("messages", 2, 60, 2, True)])
        self.assertIsNotNone(u["quota"][0]["next_slot"])
        text = d.ctl("upstreams").stdout.decode()
        self.assertIn("quota: 2/2 messages per minute, next slot", text)

        # A restart does not give the window back: the third waits on.
        self.assertEqual(d.stop(), 0)
        d.start()
        ev = d.wait_event("quota_restored", upstream="mail")
        self.assertEqual(ev["entries"], "2")
        time.sleep(3)
        self.assertEqual(len(up.delivered()), 2, "the restart reset the window")
        self.assertIn("quota: 2/2 messages per minute", d.show(late)["last_error"])
        # It goes when the first start leaves the window, about a minute in.
        up.wait_delivered(3, timeout=90)
        self.assertGreater(time.monotonic() - t0, 55)
        d.wait_event("delivered", id=late)
        # The upstream never had to say no.
        self.assertEqual([x.outcome for x in up.messages], ["accepted"] * 3)
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)

    def test_recipient_window_counts_recipients(self):
        up = self.upstream()
        d = start_relay(self, up, "none", user=None, extra={"recipient_rate": ["3/min"]})
        first = self.submit(d, ["a@example.test", "b@example.test"])
        up.wait_delivered(1)
        d.wait_event("delivered", id=first)
        second = self.submit(d, ["c@example.test", "d@example.test"])
        deadline = time.monotonic() + 10
        while "quota" not in (d.show(second).get("last_error") or ""):
            self.assertLess(time.monotonic(), deadline, d.show(second))
            time.sleep(0.2)
        self.assertIn('quota: 2/3 recipients per minute, next slot', d.show(second)["last_error"])
        self.assertEqual(len(up.delivered()), 1)
        (u,) = d.ctl_json("upstreams", "--json")
        self.assertEqual([(q["unit"], q["used"], q["full"]) for q in u["quota"]], [("recipients", 2, False)])
        # A one-recipient message still fits beside the first two.
        third = self.submit(d, ["e@example.test"])
        d.wait_event("delivered", id=third)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
