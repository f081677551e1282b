#!/usr/bin/python3
"""Outcomes that survive every fault (issue 8, items 3 and 4), against a real
outboxd, a real aiosmtpd upstream and the real spool file:

- kill -9 while the upstream holds its reply to the final dot: after the
  restart the recipients are `uncertain` in the spool, the log says
  possible_duplicate=yes, and the message is sent again (RFC 1047);
- the same with `[retry] uncertain = "hold"`: held, not sent, until
  `outboxctl release`; and held too when the connection is lost after the
  dot while outboxd runs;
- the spool's write lock held by another connection past the busy timeout
  while deliveries run: the group commits fail, the outcomes are kept and
  written late, and every recipient is delivered exactly once;
- a message of one piece is marked when it is handed over (while its RCPT
  still waits); a 4xx before the dot retries it as not sent;
- a mark before the dot that cannot be written: the dot is withheld and the
  message retried as not sent (no possible_duplicate), delivered once."""

import os
import sqlite3
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import BODY, message, start_relay  # noqa: E402

SENDER = "app@client.test"


class RelayUncertain(unittest.TestCase):
    def setUp(self):
        self.up = Upstream("plain").start()
        self.addCleanup(self.up.stop)

    def relay(self, retry=None, **kw):
        self.d = start_relay(self, self.up, "none", user=None, retry=retry, **kw)
        return self.d

    def submit(self, rcpts, subject="uncertain"):
        msg = message(SENDER, rcpts, subject, BODY)
        with self.d.smtplib() as s:
            self.assertEqual(s.sendmail(SENDER, rcpts, msg), {})
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        return qid

    def recipient_states(self, qid):
        db = sqlite3.connect("file:%s?mode=ro" % self.d.spool_path, uri=True)
        try:
            return dict(db.execute("SELECT address, state FROM recipients WHERE message_id = ? ORDER BY rowid",
                                   (qid,)).fetchall())
        finally:
            db.close()

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

    def kill_while_the_dot_waits(self, rcpts):
        """Submits, waits until the upstream has the final dot and holds its
        reply, then kill -9. Returns the queue id."""
        self.up.fail("DATA", "stall", times=1)
        qid = self.submit(rcpts)
        self.up.wait_for(lambda: [m for m in self.up.messages if m.outcome == "stalled"], 15,
                         "the final dot, held without a reply")
        self.d.kill9()
        self.assertEqual(self.recipient_states(qid), {r: "uncertain" for r in rcpts},
                         "the spool must know the dot went out before it was sent")
        return qid

    def test_kill9_between_the_dot_and_the_reply_resends_as_possible_duplicate(self):
        self.relay()
        rcpts = ["one@example.test", "two@example.test"]
        qid = self.kill_while_the_dot_waits(rcpts)
        self.d.start()
        for r in rcpts:
            ev = self.d.wait_event("uncertain", id=qid, to=r)
            self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
            self.assertEqual(ev.get("action"), "resend", ev)
        ev = self.d.wait_event("recovered")
        self.assertEqual(ev["interrupted_deliveries"], "1", ev)
        self.up.wait_delivered(1)
        for r in rcpts:
            ev = self.d.wait_event("delivered", id=qid, to=r)
            self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.wait_state(qid, "sent")
        self.assertEqual(self.recipient_states(qid), {r: "sent" for r in rcpts})
        self.assertEqual([m.outcome for m in self.up.messages], ["stalled", "accepted"])
        self.assertEqual(self.d.stop(), 0)

    def test_kill9_between_the_dot_and_the_reply_with_uncertain_hold_holds_it(self):
        self.relay(retry={"uncertain": "hold"})
        rcpts = ["one@example.test"]
        qid = self.kill_while_the_dot_waits(rcpts)
        self.d.start()
        ev = self.d.wait_event("uncertain", id=qid)
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.assertEqual(ev.get("action"), "hold", ev)
        self.d.wait_event("held", id=qid)
        m = self.wait_state(qid, "held")
        self.assertEqual([r["state"] for r in m["recipients"]], ["uncertain"], m)
        time.sleep(3)   # several claim rounds: a held message is never sent
        self.assertEqual(self.up.delivered(), [])
        self.assertEqual(self.d.show(qid)["state"], "held")
        # The operator decides: released, it goes out, still said to be a possible duplicate.
        self.d.ctl("release", qid)
        self.up.wait_delivered(1)
        ev = self.d.wait_event("delivered", id=qid)
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.wait_state(qid, "sent")
        self.assertEqual(self.d.stop(), 0)

    def test_connection_lost_after_the_dot_with_uncertain_hold_holds_it_while_running(self):
        self.up.fail("DATA", "drop", times=1)
        self.relay(retry={"uncertain": "hold"})
        qid = self.submit(["one@example.test"])
        ev = self.d.wait_event("deferred", id=qid)
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.d.wait_event("held", id=qid, reason="outcome uncertain")
        m = self.wait_state(qid, "held")
        self.assertEqual([r["state"] for r in m["recipients"]], ["uncertain"], m)
        time.sleep(3)   # past the 1 s retry: a held message is not sent
        self.assertEqual(self.up.delivered(), [])
        self.d.ctl("release", qid)
        self.up.wait_delivered(1)
        ev = self.d.wait_event("delivered", id=qid)
        self.assertEqual(ev.get("possible_duplicate"), "yes", ev)
        self.wait_state(qid, "sent")
        self.assertEqual([m.outcome for m in self.up.messages], ["dropped", "accepted"])
        self.assertEqual(self.d.stop(), 0)

    def test_failed_group_commits_during_deliveries_lose_no_outcome_and_duplicate_nothing(self):
        # Every reply to the dot takes 1 s, so deliveries are under way when the lock is taken.
        self.up.fail("DATA", "stall:1")
        # A long SMTP timeout: a delivery waiting for its mark before the dot
        # is not cut by its own data timeout first.
        self.relay(retry={"lifetime": "10m"}, extra={"timeout": "60s", "max_connections": 3})
        qids = {}
        for i in range(5):
            rcpts = ["r%d-a@example.test" % i, "r%d-b@example.test" % i]
            qids[self.submit(rcpts, subject="commit fault %d" % i)] = rcpts
        self.up.wait_for(lambda: [m for m in self.up.messages if m.outcome == "stalled"], 15,
                         "a delivery waiting for its reply")
        # Another connection holds the write lock for 16 s, past the spool's
        # 5 s busy timeout three times: every write outboxd tries meanwhile fails.
        lock = sqlite3.connect(self.d.spool_path, timeout=10, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        held_at = time.monotonic()
        try:
            ev = self.d.wait_event("spool_error", timeout=20, op="delivery outcome")
            self.assertIn("retry_in_s", ev)
            self.assertIn("locked", ev["error"])
            time.sleep(max(0.0, 16 - (time.monotonic() - held_at)))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        cleared = time.monotonic()
        for qid in qids:
            self.wait_state(qid, "sent", timeout=60)
        took = time.monotonic() - cleared
        late = self.d.events("outcome_recorded_late")
        self.assertTrue(late, self.d.log_tail())
        # Once per failure streak, per message.
        failed = [e["id"] for e in self.d.events("spool_error", op="delivery outcome")]
        self.assertEqual(len(failed), len(set(failed)), failed)
        self.assertEqual(sorted(e["id"] for e in late), sorted(failed))
        # Exactly once at the upstream, every recipient.
        for qid, rcpts in qids.items():
            for r in rcpts:
                got = [m for m in self.up.delivered() if r in m.rcpt_tos]
                self.assertEqual(len(got), 1, "%s (%s) delivered %d times\nlog:\n%s"
                                 % (r, qid, len(got), self.d.log_tail(80)))
        self.assertEqual(len(self.up.delivered()), len(qids))
        # Nothing was left for a restart to resend.
        self.assertEqual(self.d.events("recovered"), [])
        dots = self.d.events("spool_error", op="mark dot sent")
        print("group-commit fault: %d outcomes written late, %d final dots withheld, all sent %.1f s after the "
              "lock was released" % (len(late), len(dots), took), file=sys.stderr)
        if os.environ.get("OUTBOX_SHOW_LOG"):
            print(self.d.log_tail(200), file=sys.stderr)
        self.assertEqual(self.d.stop(), 0)

    def test_a_message_of_one_piece_is_marked_when_handed_over_and_a_refusal_before_the_dot_is_no_duplicate(self):
        # Delivery::mark_at_hand: the mark is committed while MAIL..RCPT are
        # under way, so the dot need not wait for it; an answer before the
        # dot settles the recipient as if it had never been marked.
        self.up.fail("RCPT", "stall:2", times=1)
        self.relay()
        a = self.submit(["early@example.test"], subject="marked early")
        self.up.wait_for(lambda: len(self.up.mail_froms) >= 1, 15, "the transaction under way")
        deadline = time.monotonic() + 1.5
        while self.recipient_states(a) != {"early@example.test": "uncertain"} and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.recipient_states(a), {"early@example.test": "uncertain"},
                         "marked while its RCPT still waits for an answer")
        self.wait_state(a, "sent")
        self.assertNotIn("possible_duplicate", self.d.wait_event("delivered", id=a))

        self.up.fail("RCPT", "451 4.3.0 try again later", times=1)
        b = self.submit(["refused@example.test"], subject="refused before the dot")
        ev = self.d.wait_event("deferred", id=b)
        self.assertNotIn("possible_duplicate", ev)
        self.wait_state(b, "sent")
        self.assertNotIn("possible_duplicate", self.d.wait_event("delivered", id=b))
        self.assertEqual(len([m for m in self.up.delivered() if "refused@example.test" in m.rcpt_tos]), 1)
        self.assertEqual(self.d.stop(), 0)

    def test_a_mark_that_cannot_be_written_withholds_the_final_dot(self):
        # Each connection waits 3 s at EHLO, so every message is handed over
        # (and, being of one piece, asks for its mark: Delivery::mark_at_hand)
        # while the write lock is held: the mark before the dot fails and the
        # dot is never sent; the message is retried as not sent.
        self.up.fail("EHLO", "stall:3")
        self.relay(retry={"lifetime": "10m"}, extra={"timeout": "60s", "max_connections": 3})
        qids = {}
        for i in range(3):
            rcpts = ["w%d@example.test" % i]
            qids[self.submit(rcpts, subject="withheld %d" % i)] = rcpts
        self.up.wait_for(lambda: self.up.ehlos >= 3, 15, "three connections at EHLO")
        self.up.clear()   # the retries go straight through
        lock = sqlite3.connect(self.d.spool_path, timeout=10, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        held_at = time.monotonic()
        try:
            ev = self.d.wait_event("spool_error", timeout=30, op="mark dot sent")
            self.assertIn("locked", ev["error"])
            time.sleep(max(0.0, 13 - (time.monotonic() - held_at)))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for qid in qids:
            self.wait_state(qid, "sent", timeout=60)
        withheld = {e["id"] for e in self.d.events("spool_error", op="mark dot sent")}
        for qid, rcpts in qids.items():
            got = [m for m in self.up.delivered() if rcpts[0] in m.rcpt_tos]
            self.assertEqual(len(got), 1, "%s delivered %d times\nlog:\n%s" % (qid, len(got), self.d.log_tail(80)))
            if qid in withheld:
                # Its first try ended before the dot: not a possible duplicate.
                ev = self.d.events("deferred", id=qid)
                self.assertTrue(ev, self.d.log_tail(80))
                self.assertNotIn("possible_duplicate", ev[0])
                self.assertNotIn("possible_duplicate", self.d.wait_event("delivered", id=qid))
        # The upstream never saw a complete DATA for a withheld dot.
        self.assertEqual(len(self.up.messages), len(qids))
        print("withheld dots: %d of %d" % (len(withheld), len(qids)), file=sys.stderr)
        self.assertEqual(self.d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
