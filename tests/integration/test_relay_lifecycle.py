#!/usr/bin/python3
"""The relay over time (SPEC "Relay", "[retry]", "systemd"): failover to the
route's second upstream when the first refuses connections; expiry after
retry.lifetime with a DSN; SIGTERM while a delivery is in progress (exit 0
within 10 s, the message delivered exactly once after the restart, or logged
possible_duplicate=yes)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import upstream as upmod  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402
from test_relay_delivery import BODY, message, start_relay  # noqa: E402

SENDER = "app@client.test"


class RelayLifecycle(unittest.TestCase):
    def upstream(self, mode="plain", **kw):
        up = Upstream(mode, **kw).start()
        self.addCleanup(up.stop)
        return up

    def submit(self, d, rcpts=("rcpt@example.test",)):
        rcpts = list(rcpts)
        with d.smtplib() as s:
            s.sendmail(SENDER, rcpts, message(SENDER, rcpts, "lifecycle", BODY))
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        return qid

    def wait_state(self, d, qid, state, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            m = d.show(qid)
            if m["state"] == state:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("%s is %s, not %s: %r\nlog:\n%s" % (qid, m["state"], state, m, d.log_tail()))
            time.sleep(0.1)

    def test_failover_to_the_second_upstream(self):
        second = self.upstream()
        dead = upmod.closed_port()
        d = harness.Daemon(name="outbox-relay")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("first", dead), upstream_section("second", second.port)],
                                  routes=[("*", ["first", "second"])])
        d.write_config()
        d.start()
        qid = self.submit(d)
        got = second.wait_delivered(1)
        self.assertEqual(got[0].data, d.body(qid))
        ev = d.wait_event("delivered", id=qid)
        self.assertEqual(ev["relay"], "second[127.0.0.1:%d]" % second.port)
        fail = d.wait_event("upstream_failed", upstream="first")
        self.assertIn("connection refused", fail["error"].lower())
        d.wait_event("failover", id=qid)
        m = self.wait_state(d, qid, "sent")
        self.assertEqual(m["attempts"], 2, "the refused connection to the first was a try")
        self.assertEqual(m["attempts_history"][-1]["upstream"], "second")
        # The first upstream is now suspended: the next message goes straight to the second.
        qid2 = self.submit(d)
        second.wait_delivered(2)
        self.assertEqual(d.wait_event("delivered", id=qid2)["relay"], "second[127.0.0.1:%d]" % second.port)
        self.assertEqual(len(second.delivered()), 2)
        self.assertEqual(d.stop(), 0)

    def test_failover_after_the_first_upstream_throttles_mid_session(self):
        # The first upstream takes the connection, then refuses the
        # transaction with a reply of scope upstream (a rate limit): the
        # message goes to the second upstream, not back to the first.
        first, second = self.upstream(), self.upstream()
        first.fail("MAIL", "421 4.7.0 Too many messages, slow down")
        d = harness.Daemon(name="outbox-relay")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("first", first.port), upstream_section("second", second.port)],
                                  routes=[("*", ["first", "second"])], retry={"initial": "5s", "max": "10s"})
        d.write_config()
        d.start()
        t0 = time.monotonic()
        qid = self.submit(d)
        got = second.wait_delivered(1, timeout=15)
        self.assertLess(time.monotonic() - t0, 4, "the message waited for the first upstream's backoff")
        self.assertEqual(got[0].data, d.body(qid))
        self.assertEqual(d.wait_event("delivered", id=qid)["relay"], "second[127.0.0.1:%d]" % second.port)
        m = self.wait_state(d, qid, "sent")
        self.assertEqual([h["upstream"] for h in m["attempts_history"]], ["first", "second"])
        self.assertEqual(m["attempts"], 2, "the throttled try is counted (issue 8 item 9)")
        self.assertEqual(first.delivered(), [])
        self.assertEqual(d.stop(), 0)

    def test_expiry_after_the_lifetime_bounces_with_a_dsn(self):
        up = self.upstream()
        up.fail("RCPT", "451 4.2.0 Mailbox busy", address="busy@example.test")
        d = start_relay(self, up, "none", user=None, retry={"lifetime": "4s"})
        t0 = time.monotonic()
        qid = self.submit(d, ["busy@example.test"])
        ev = d.wait_event("expired", id=qid, timeout=15)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 3.5, "expired before the lifetime")
        self.assertLess(elapsed, 10)
        self.assertIn("expired", ev["reply"])
        self.assertIn("451 4.2.0 Mailbox busy", ev["reply"])
        self.assertEqual(ev["dsn"], "4.4.7")
        m = self.wait_state(d, qid, "failed")
        self.assertIn("expired", m["last_error"])
        self.assertEqual(m["recipients"][0]["state"], "failed")
        self.assertEqual(m["attempts_history"][-1]["outcome"], "expired")
        tries = [a for a, _ in up.rcpt_log if a == "busy@example.test"]
        self.assertGreaterEqual(len(tries), 3)   # 0, 1, 3 s and the last one at 4 s
        bq = d.wait_event("bounce_queued", original=qid)
        dsn = up.wait_for(lambda: [x for x in up.delivered() if x.mail_from == ""], what="the DSN")
        self.assertEqual(dsn[0].rcpt_tos, [SENDER])
        self.assertIn(b"Action: failed", dsn[0].data)
        self.assertIn(b"Status: 5.4.7", dsn[0].data)
        self.assertIn(b"Final-Recipient: rfc822; busy@example.test", dsn[0].data)
        self.assertEqual(dsn[0].data, d.body(bq["id"]))
        time.sleep(2)
        self.assertEqual(len(tries), len([a for a, _ in up.rcpt_log if a == "busy@example.test"]),
                         "an expired message was tried again")
        self.assertEqual(len(d.events("bounce_queued")), 1)
        self.assertEqual(d.stop(), 0)

    def test_expiry_while_the_upstream_is_down(self):
        # Upstream-scope failures do not outlive the message.
        up = self.upstream()
        up.fail("GREETING", "421 4.3.2 Try later")
        d = start_relay(self, up, "none", user=None, retry={"lifetime": "3s"})
        qid = self.submit(d)
        d.wait_event("expired", id=qid, timeout=15)
        m = self.wait_state(d, qid, "failed")
        self.assertIn("expired", m["last_error"])
        d.wait_event("bounce_queued", original=qid)
        self.assertEqual(d.stop(), 0)

    def test_sigterm_while_connecting_to_a_silent_upstream(self):
        # The upstream accepts the connection and says nothing; three
        # messages wait behind it. SIGTERM: out within 10 s, nothing counted
        # as an attempt, all three sent once after the restart.
        up = self.upstream()
        up.fail("GREETING", "stall", times=1)
        d = start_relay(self, up, "none", user=None, extra={"timeout": "60s", "max_connections": 1})
        ids = [self.submit(d, ["s%d@example.test" % i]) for i in range(3)]
        up.wait_for(lambda: up.connections >= 1, what="a connection")
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=12), 0)
        self.assertLess(time.monotonic() - t0, 10.5)
        for q in ids:
            m = d.show(q)
            self.assertIn(m["state"], ("queued", "deferred"), m)
            self.assertEqual(m["attempts"], 0, m)
        d.start()
        up.wait_delivered(3, timeout=15)
        for q in ids:
            self.wait_state(d, q, "sent")
        self.assertEqual(sorted(r for m in up.delivered() for r in m.rcpt_tos),
                         ["s%d@example.test" % i for i in range(3)])
        self.assertEqual(d.stop(), 0)

    def sigterm_during_delivery(self, fault, expect_duplicate):
        up = self.upstream()
        up.fail("DATA", fault, times=1)
        d = start_relay(self, up, "none", user=None, extra={"timeout": "30s"})
        qid = self.submit(d)
        up.wait_for(lambda: up.messages, what="the message text to arrive")
        self.assertEqual(d.show(qid)["state"], "active")
        t0 = time.monotonic()
        rc = d.stop(timeout=12)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 10.5, "SIGTERM took too long")
        d.start()
        up.wait_delivered(1, timeout=15)
        ev = d.wait_event("delivered", id=qid)
        m = self.wait_state(d, qid, "sent")
        accepted = len(up.delivered())
        if expect_duplicate:
            dup = [e for e in d.events(id=qid) if e.get("possible_duplicate") == "yes"]
            self.assertTrue(dup or accepted == 1, "delivered %d times, no possible_duplicate=yes" % accepted)
        else:
            self.assertEqual(accepted, 1, up.messages)
        time.sleep(1.5)
        self.assertEqual(len(up.delivered()), accepted)
        self.assertEqual(d.stop(), 0)
        return m, ev

    def test_sigterm_while_the_upstream_is_slow_to_answer_the_dot(self):
        # The reply comes within the grace period: the delivery completes
        # before exit and is not repeated after the restart.
        self.sigterm_during_delivery("stall:2", expect_duplicate=False)

    def test_sigterm_while_the_upstream_never_answers_the_dot(self):
        self.sigterm_during_delivery("stall", expect_duplicate=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
