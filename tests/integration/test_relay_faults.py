#!/usr/bin/python3
"""Relay faults against a real upstream that misbehaves on purpose (SPEC
"Relay", "[retry]", "[bounces]"): 421 at the greeting, 451 at MAIL, 451 to
the final dot K times, 550 for one of three recipients (bounce with a DSN,
RFC 3464), the connection dropped after the final dot (RFC 1047 duplicate),
a stalled upstream, a null sender that must never get a DSN, and
`outboxctl retry ID`. Retry policy: initial 1 s, max 2 s, factor 2, no
jitter, lifetime 20 s."""

import datetime
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import BODY, message, start_relay  # noqa: E402

SENDER = "app@client.test"


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class RelayFaults(unittest.TestCase):
    def setUp(self):
        self.up = Upstream("plain").start()
        self.addCleanup(self.up.stop)

    def relay(self, **kw):
        self.d = start_relay(self, self.up, "none", user=None, **kw)
        return self.d

    def submit(self, rcpts=("rcpt@example.test",), sender=SENDER):
        rcpts = list(rcpts)
        msg = message(sender or "mailer-daemon@client.test", rcpts, "fault", BODY)
        with self.d.smtplib() as s:
            s.sendmail(sender or "<>", rcpts, msg)
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        return qid

    def wait_state(self, qid, state, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            m = self.d.show(qid)
            if m["state"] == state:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("%s is %s, not %s, after %.0f s: %r\nlog:\n%s"
                                     % (qid, m["state"], state, timeout, m, self.d.log_tail()))
            time.sleep(0.1)

    def stop_clean(self):
        self.assertEqual(self.d.stop(), 0)

    def no_bounce(self):
        self.assertEqual(self.d.events("bounce_queued"), [])
        self.assertEqual(self.d.events("bounced"), [])
        self.assertEqual([m for m in self.up.messages if m.mail_from == ""], [])

    # --- the upstream, not the message, fails ---------------------------------------------
    def test_421_at_greeting_suspends_the_upstream_then_delivers(self):
        self.up.fail("GREETING", "421 4.3.2 Service not available, closing channel")
        self.relay()
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid)
        self.assertIn("421", ev["reply"])
        self.d.wait_event("upstream_failed", upstream="mail")
        m = self.wait_state(qid, "deferred")
        # Every try counts, a refused connection included (issue 8 item 9).
        self.assertEqual(m["attempts"], len(m["attempts_history"]))
        self.assertGreaterEqual(m["attempts"], 1)
        self.assertIn("421", m["last_error"])
        self.assertEqual(self.up.mail_froms, [])
        time.sleep(2.5)   # a few more refused connections while the fault lasts
        m = self.d.show(qid)
        self.assertEqual(m["attempts"], len(m["attempts_history"]))
        self.up.clear()
        self.up.wait_delivered(1)
        self.d.wait_event("delivered", id=qid)
        m = self.wait_state(qid, "sent")
        self.assertEqual(m["attempts"], len(m["attempts_history"]))
        self.assertEqual(len(self.up.delivered()), 1)
        self.no_bounce()
        self.stop_clean()

    # --- temporary failures of the message ------------------------------------------------
    def test_451_at_mail_is_retried(self):
        self.up.fail("MAIL", "451 4.3.0 Temporary local problem", times=1)
        self.relay()
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid)
        self.assertEqual(ev["reply"], "451 4.3.0 Temporary local problem")
        self.assertEqual(ev["dsn"], "4.3.0")
        self.assertEqual(ev["attempt"], "1")
        self.up.wait_delivered(1)
        ev = self.d.wait_event("delivered", id=qid)
        self.assertEqual(ev["attempt"], "2")
        m = self.wait_state(qid, "sent")
        self.assertEqual(m["attempts"], 2)
        self.assertEqual([h["outcome"] for h in m["attempts_history"]], ["deferred", "delivered"])
        self.assertEqual(m["attempts_history"][0]["reply"], "451 4.3.0 Temporary local problem")
        self.assertEqual(len(self.up.delivered()), 1)
        self.no_bounce()
        self.stop_clean()

    def test_451_to_the_final_dot_k_times_follows_the_backoff(self):
        K = 3
        self.up.fail("DATA", "451 4.3.0 Please try again later", times=K)
        # initial 1 s, factor 2, max 4 s: delays 1, 2, 4 s
        self.relay(retry={"max": "4s"})
        qid = self.submit()
        self.up.wait_delivered(1, timeout=30)
        ev = self.d.wait_event("delivered", id=qid)
        self.assertEqual(ev["attempt"], str(K + 1))
        m = self.wait_state(qid, "sent")
        self.assertEqual(m["attempts"], K + 1)
        hist = m["attempts_history"]
        self.assertEqual([h["outcome"] for h in hist], ["deferred"] * K + ["delivered"])
        for h in hist[:K]:
            self.assertEqual(h["reply"], "451 4.3.0 Please try again later")
        # Delivered exactly once; every attempt carried the whole message.
        self.assertEqual(len(self.up.delivered()), 1)
        tries = [x for x in self.up.messages]
        self.assertEqual(len(tries), K + 1, tries)
        # Attempt n+1 starts initial * factor^(n-1) after attempt n failed.
        # The upstream's clock is exact; the history's has whole seconds.
        for n in range(1, K + 1):
            want = min(1.0 * 2 ** (n - 1), 4.0)
            got = tries[n].time - tries[n - 1].time
            self.assertGreaterEqual(got, want - 0.05, "attempt %d came %.2f s after the previous" % (n + 1, got))
            self.assertLess(got, want + 1.5, "attempt %d came %.2f s after the previous" % (n + 1, got))
            hgot = parse_time(hist[n]["time"]) - parse_time(hist[n - 1]["time"])
            self.assertGreaterEqual(hgot, want - 1)
            self.assertLessEqual(hgot, want + 2)
        self.no_bounce()
        self.stop_clean()

    # --- permanent failure of one recipient -----------------------------------------------
    def test_550_for_one_of_three_recipients_bounces_it_alone(self):
        good = ["good1@example.test", "good2@example.test"]
        bad = "nobody@example.test"
        self.up.fail("RCPT", "550 5.1.1 <nobody@example.test>: Recipient address rejected", address=bad)
        self.relay()
        qid = self.submit([good[0], bad, good[1]])
        ev = self.d.wait_event("bounced", id=qid)
        self.assertEqual(ev["to"], bad)
        self.assertEqual(ev["dsn"], "5.1.1")
        self.assertIn("Recipient address rejected", ev["reply"])
        for g in good:
            self.d.wait_event("delivered", id=qid, to=g)
        m = self.wait_state(qid, "failed")
        states = {r["address"]: r["state"] for r in m["recipients"]}
        self.assertEqual(states, {good[0]: "sent", bad: "failed", good[1]: "sent"})
        self.assertIsNone(m["next_attempt"])

        # The DSN: queued once, from <>, to the sender, delivered upstream.
        bq = self.d.wait_event("bounce_queued", original=qid)
        dsn = self.up.wait_for(lambda: [x for x in self.up.delivered() if x.mail_from == ""], what="the DSN")
        self.assertEqual(len(dsn), 1, dsn)
        self.assertEqual(dsn[0].rcpt_tos, [SENDER])
        data = dsn[0].data
        self.assertRegex(data, rb"(?im)^Content-Type: multipart/report;\s*report-type=delivery-status")
        self.assertIn(b"Final-Recipient: rfc822; " + bad.encode(), data)
        self.assertIn(b"Action: failed", data)
        self.assertIn(b"Status: 5.1.1", data)
        for g in good:
            self.assertNotIn(b"rfc822; " + g.encode(), data)
        self.assertIn(b"Subject: fault", data)          # the original headers come back
        self.assertNotIn(b"Hello through the relay", data)   # but not the body
        self.assertEqual(data, self.d.body(bq["id"]))
        self.d.wait_event("delivered", id=bq["id"])
        self.assertEqual(self.d.show(bq["id"])["sender"], "")

        time.sleep(3)    # several retry periods: nothing is sent again
        for g in good:
            self.assertEqual(len(self.up.received_for(g)), 1)
        self.assertEqual([a for a, _ in self.up.rcpt_log].count(bad), 1, "the 550 recipient was retried")
        self.assertEqual(len(self.d.events("bounce_queued", original=qid)), 1)
        self.assertEqual(len([x for x in self.up.messages if x.mail_from == ""]), 1)
        self.stop_clean()

    def test_null_sender_never_gets_a_dsn(self):
        bad = "gone@example.test"
        self.up.fail("RCPT", "550 5.1.1 User unknown", address=bad)
        self.relay()
        qid = self.submit([bad], sender="")
        ev = self.d.wait_event("bounced", id=qid)
        self.assertEqual(ev["from"], "<>")
        self.wait_state(qid, "failed")
        time.sleep(2)
        self.assertEqual(self.d.events("bounce_queued"), [])
        self.assertEqual(self.up.messages, [])
        self.assertEqual(len(self.d.queue()), 1)
        self.stop_clean()

    def test_5xx_to_the_data_bounces_every_recipient_once(self):
        self.up.fail("DATA", "554 5.6.0 Message content rejected")
        self.relay()
        rcpts = ["a@example.test", "b@example.test"]
        qid = self.submit(rcpts)
        for r in rcpts:
            self.d.wait_event("bounced", id=qid, to=r)
        self.wait_state(qid, "failed")
        bq = self.d.wait_event("bounce_queued", original=qid)
        # The DSN itself meets the same 554 and fails; its sender is <>, so
        # there is no DSN about the DSN.
        self.d.wait_event("bounced", id=bq["id"])
        self.wait_state(bq["id"], "failed")
        time.sleep(2)
        self.assertEqual(len(self.d.events("bounce_queued")), 1)
        self.assertEqual(len(self.d.queue()), 2)
        self.stop_clean()

    def test_451_for_one_recipient_retries_only_that_one(self):
        busy, ok = "busy@example.test", "ok@example.test"
        self.up.fail("RCPT", "451 4.2.0 Mailbox busy", times=1, address=busy)
        self.relay()
        qid = self.submit([ok, busy])
        ev = self.d.wait_event("deferred", id=qid)
        self.assertEqual(ev["to"], busy)
        self.d.wait_event("delivered", id=qid, to=ok)
        self.d.wait_event("delivered", id=qid, to=busy)
        m = self.wait_state(qid, "sent")
        self.assertEqual(m["attempts"], 2)
        self.assertEqual([x.rcpt_tos for x in self.up.delivered()], [[ok], [busy]])
        self.no_bounce()
        self.stop_clean()

    def test_recipient_limit_of_the_upstream(self):
        # 452 to the recipients over the upstream's limit: they go in later
        # transactions, each recipient exactly once (RFC 5321 §4.5.3.1.10).
        self.up.max_rcpts = 3
        self.relay()
        rcpts = ["m%d@example.test" % i for i in range(7)]
        qid = self.submit(rcpts)
        self.up.wait_for(lambda: sum(len(m.rcpt_tos) for m in self.up.delivered()) >= 7, timeout=20,
                         what="all 7 recipients")
        m = self.wait_state(qid, "sent")
        got = sorted(r for x in self.up.delivered() for r in x.rcpt_tos)
        self.assertEqual(got, sorted(rcpts))
        self.assertTrue(all(len(x.rcpt_tos) <= 3 for x in self.up.delivered()))
        self.assertEqual(len(self.up.delivered()), 3)
        self.assertTrue(all(x.data == self.d.body(qid) for x in self.up.delivered()))
        self.no_bounce()
        self.stop_clean()

    def test_each_failed_recipient_is_reported_once(self):
        # One recipient refused at once, another expires later: the sender
        # hears about each exactly once (Postfix sends one bounce per
        # failure; never a recipient twice).
        bad, busy, ok = "bad@example.test", "busy@example.test", "ok@example.test"
        self.up.fail("RCPT", "550 5.1.1 No such user", address=bad)
        self.up.fail("RCPT", "451 4.2.0 Mailbox busy", address=busy)
        self.relay(retry={"lifetime": "3s"})
        qid = self.submit([bad, busy, ok])
        self.d.wait_event("bounced", id=qid, to=bad)
        self.d.wait_event("expired", id=qid, to=busy, timeout=15)
        self.wait_state(qid, "failed")
        dsns = self.up.wait_for(lambda: [x for x in self.up.delivered() if x.mail_from == ""], what="the DSNs")
        time.sleep(2)
        dsns = [x for x in self.up.delivered() if x.mail_from == ""]
        named = [r for x in dsns for r in (bad, busy, ok) if b"Final-Recipient: rfc822; " + r.encode() in x.data]
        self.assertEqual(sorted(named), sorted([bad, busy]), "DSNs: %r" % [x.data for x in dsns])
        self.assertEqual(len(self.up.received_for(ok)), 1)
        # Prometheus: failures by enhanced status code (issue 10 item 6).
        prom = self.d.ctl("stats", "--prometheus").stdout.decode()
        self.assertIn("# TYPE outbox_delivery_failures_total counter", prom)
        self.assertIn('outbox_delivery_failures_total{status="5.1.1",result="failed"} 1\n', prom)
        self.assertIn('outbox_delivery_failures_total{status="4.4.7",result="failed"} 1\n', prom)
        deferred = re.search(r'outbox_delivery_failures_total\{status="4\.2\.0",result="deferred"\} (\d+)', prom)
        self.assertTrue(deferred and int(deferred.group(1)) >= 1, prom)
        stats = self.d.ctl_json("stats", "--json")
        self.assertIn({"status": "5.1.1", "result": "failed", "count": 1}, stats["failures"])
        self.stop_clean()

    def test_stalled_greeting_is_an_upstream_timeout(self):
        self.up.fail("GREETING", "stall", times=1)
        self.relay(extra={"timeout": "1s"})
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid, timeout=10)
        self.assertIn("timeout waiting for the greeting", ev["reply"])
        self.d.wait_event("upstream_failed", upstream="mail")
        self.up.wait_delivered(1)
        m = self.wait_state(qid, "sent")
        self.assertEqual(m["attempts"], 2, "the timed-out greeting was a try")
        self.stop_clean()

    def test_implicit_tls_against_a_plaintext_server(self):
        self.d = harness.Daemon(name="outbox-relay")
        self.addCleanup(self.d.cleanup)
        import upstream as upmod
        self.d.extra_toml = upmod.relay_toml([upmod.upstream_section("mail", self.up.port, tls="implicit")])
        self.d.write_config()
        self.d.start()
        qid = self.submit()
        ev = self.d.wait_event("upstream_failed", upstream="mail", timeout=10)
        self.assertEqual(ev["stage"].lower(), "tls", ev)
        self.assertIn("starts in plaintext", ev.get("hint", ""), ev)
        self.wait_state(qid, "deferred")
        self.assertEqual(self.up.mail_froms, [])
        self.no_bounce()
        self.stop_clean()

    # --- connection trouble -----------------------------------------------------------------
    def test_connection_dropped_after_the_final_dot_is_retried_as_possible_duplicate(self):
        self.up.fail("DATA", "drop", times=1)
        self.relay()
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid)
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.assertIn("may have been delivered", ev["reply"])
        self.up.wait_delivered(1)
        ev = self.d.wait_event("delivered", id=qid)
        self.assertEqual(ev["attempt"], "2")
        m = self.wait_state(qid, "sent")
        self.assertEqual([h["outcome"] for h in m["attempts_history"]], ["possible_duplicate", "delivered"])
        outcomes = [x.outcome for x in self.up.messages]
        self.assertEqual(outcomes, ["dropped", "accepted"])
        self.no_bounce()
        self.stop_clean()

    def test_stall_at_mail_longer_than_timeout_defers_then_delivers(self):
        self.up.fail("MAIL", "stall", times=1)
        self.relay(extra={"timeout": "2s"})
        t0 = time.monotonic()
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid, timeout=15)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.assertIn("timeout", ev["reply"])
        self.assertIn("MAIL FROM", ev["reply"])
        self.assertEqual(ev["dsn"], "4.4.2")
        self.up.wait_delivered(1)
        self.d.wait_event("delivered", id=qid)
        m = self.wait_state(qid, "sent")
        self.assertIn("timeout", m["attempts_history"][0]["reply"])
        self.assertEqual(len(self.up.delivered()), 1)
        self.no_bounce()
        self.stop_clean()

    def test_stall_after_the_final_dot_is_a_possible_duplicate(self):
        # The reply to the dot may take up to 2 x timeout (RFC 5321 §4.5.3.2.6 gives it the longest).
        self.up.fail("DATA", "stall", times=1)
        self.relay(extra={"timeout": "1s"})
        qid = self.submit()
        ev = self.d.wait_event("deferred", id=qid, timeout=15)
        self.assertIn("timeout", ev["reply"])
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.up.wait_delivered(1)
        self.d.wait_event("delivered", id=qid)
        self.wait_state(qid, "sent")
        self.assertEqual([x.outcome for x in self.up.messages], ["stalled", "accepted"])
        self.stop_clean()

    # --- outboxctl retry ----------------------------------------------------------------------
    def test_outboxctl_retry_makes_a_deferred_message_due_now(self):
        self.up.fail("MAIL", "451 4.3.0 Not now", times=1)
        self.relay(retry={"initial": "10m", "max": "1h", "lifetime": "1d"})
        qid = self.submit()
        self.d.wait_event("deferred", id=qid)
        m = self.wait_state(qid, "deferred")
        self.assertGreater(parse_time(m["next_attempt"]) - time.time(), 500)
        time.sleep(1.5)
        self.assertEqual(self.up.delivered(), [])
        t0 = time.monotonic()
        self.d.ctl("retry", qid)
        self.up.wait_delivered(1, timeout=10)
        self.assertLess(time.monotonic() - t0, 5, "retry did not make the message due now")
        self.d.wait_event("delivered", id=qid)
        self.assertEqual(self.wait_state(qid, "sent")["attempts"], 2)
        self.stop_clean()


if __name__ == "__main__":
    unittest.main(verbosity=2)
