#!/usr/bin/python3
"""The relay and the queue together (SPEC "Relay", "Queue states",
"outboxctl"): several messages over one reused connection, held messages
stay put until released, rate ceilings defer instead of failing, a crash
(SIGKILL) mid-delivery loses nothing, `retry --all`, envelope_from, a large
message byte for byte, SMTPUTF8 mail to an upstream without SMTPUTF8."""

import email.utils
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import BODY, message, start_relay  # noqa: E402

SENDER = "app@client.test"


class RelayQueueing(unittest.TestCase):
    def upstream(self, mode="plain", **kw):
        up = Upstream(mode, **kw).start()
        self.addCleanup(up.stop)
        return up

    def submit(self, d, rcpts=("rcpt@example.test",), sender=SENDER, msg=None, **kw):
        rcpts = list(rcpts)
        msg = msg or message(sender, rcpts, "queueing", BODY)
        with d.smtplib() as s:
            s.sendmail(sender, rcpts, msg, **kw)
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

    def test_messages_share_one_connection(self):
        up = self.upstream()
        up.fail("GREETING", "421 4.3.2 Not yet")
        d = start_relay(self, up, "none", user=None, extra={"max_connections": 1},
                        retry={"initial": "2s", "max": "2s"})
        ids = [self.submit(d, ["r%d@example.test" % i]) for i in range(5)]
        for q in ids:
            d.wait_event("deferred", id=q)
        with up._lock:
            up.connections = 0
        up.clear()
        up.wait_delivered(5, timeout=15)
        for q in ids:
            d.wait_event("delivered", id=q)
            self.wait_state(d, q, "sent")
        self.assertEqual(up.connections, 1, "max_connections = 1 and 5 due messages: one connection, reused")
        self.assertEqual(sorted(r for m in up.delivered() for r in m.rcpt_tos),
                         ["r%d@example.test" % i for i in range(5)])
        self.assertEqual(d.stop(), 0)

    def test_held_message_waits_for_release(self):
        up = self.upstream()
        up.fail("MAIL", "451 4.3.0 Later", times=1)
        d = start_relay(self, up, "none", user=None)
        qid = self.submit(d)
        d.wait_event("deferred", id=qid)
        d.ctl("hold", qid)
        self.assertEqual(d.show(qid)["state"], "held")
        time.sleep(3)
        self.assertEqual(up.delivered(), [])
        self.assertEqual(d.show(qid)["state"], "held")
        d.ctl("release", qid)
        up.wait_delivered(1, timeout=10)
        self.wait_state(d, qid, "sent")
        self.assertEqual(d.stop(), 0)

    def test_rate_ceiling_defers_the_excess(self):
        up = self.upstream()
        d = start_relay(self, up, "none", user=None, extra={"rate": ["2/min"]})
        ids = [self.submit(d, ["r%d@example.test" % i]) for i in range(3)]
        up.wait_delivered(2)
        time.sleep(2)
        self.assertEqual(len(up.delivered()), 2)
        waiting = [d.show(q) for q in ids if d.show(q)["state"] != "sent"]
        self.assertEqual(len(waiting), 1, waiting)
        w = waiting[0]
        self.assertIn(w["state"], ("queued", "deferred"))
        self.assertIn("quota: 2/2 messages per minute, next slot", w["last_error"])
        self.assertEqual(w["attempts"], 0, "a rate ceiling is not a failed attempt")
        self.assertIsNotNone(w["next_attempt"])
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)

    def test_sigkill_mid_delivery_loses_nothing(self):
        up = self.upstream()
        up.fail("DATA", "stall", times=1)
        d = start_relay(self, up, "none", user=None, extra={"timeout": "30s"})
        qid = self.submit(d)
        up.wait_for(lambda: up.messages, what="the message text")
        self.assertEqual(d.show(qid)["state"], "active")
        d.kill9()
        d.start()
        d.wait_event("recovered")
        up.wait_delivered(1, timeout=10)
        d.wait_event("delivered", id=qid)
        self.wait_state(d, qid, "sent")
        self.assertEqual(d.stop(), 0)

    def test_retry_all(self):
        up = self.upstream()
        up.fail("MAIL", "451 4.3.0 Later", times=2)
        d = start_relay(self, up, "none", user=None, retry={"initial": "10m", "max": "1h", "lifetime": "1d"})
        ids = [self.submit(d, ["r%d@example.test" % i]) for i in range(2)]
        for q in ids:
            d.wait_event("deferred", id=q)
            self.wait_state(d, q, "deferred")
        d.ctl("retry", "--all")
        up.wait_delivered(2, timeout=10)
        for q in ids:
            self.wait_state(d, q, "sent")
        self.assertEqual(d.stop(), 0)

    def test_envelope_from(self):
        up = self.upstream()
        d = start_relay(self, up, "none", user=None, extra={"envelope_from": "account@provider.test"})
        qid = self.submit(d)
        got = up.wait_delivered(1)
        self.assertEqual(got[0].mail_from, "account@provider.test")
        self.assertEqual(got[0].data, d.body(qid))
        self.assertEqual(d.show(qid)["sender"], SENDER)
        self.assertEqual(d.stop(), 0)

    def test_from_header_rewrite(self):
        # SPEC [[upstream]] from_header = "rewrite": the account goes into
        # From:, the author's From: (folded here) moves to Reply-To:.
        up = self.upstream()
        d = start_relay(self, up, "none", user=None,
                        extra={"envelope_from": "account@provider.test", "from_header": "rewrite"})
        author = b"From: \"Application, Inc.\"\r\n <app@client.test>\r\n"
        rest = (b"To: rcpt@example.test\r\nSubject: rewrite\r\nDate: " + email.utils.formatdate().encode()
                + b"\r\nMessage-ID: <rw@client.test>\r\n\r\nFrom: this body line stays\r\n")
        qid = self.submit(d, msg=b"Subject: first\r\n" + author + rest)
        got = up.wait_delivered(1)[0]
        stored = d.body(qid)
        self.assertIn(author, stored, "the spool keeps the original")
        want = stored.replace(author, b"From: account@provider.test\r\nReply-To: \"Application, Inc.\"\r\n"
                                      b" <app@client.test>\r\n")
        self.assertEqual(got.data, want)
        self.assertEqual(got.mail_from, "account@provider.test")

        # A message that has its own Reply-To: keeps it; only From: changes.
        msg = b"Reply-To: <replies@client.test>\r\nFrom: <app@client.test>\r\n" + rest
        qid = self.submit(d, msg=msg)
        got = up.wait_delivered(2)[1]
        self.assertEqual(got.data, d.body(qid).replace(b"From: <app@client.test>\r\n",
                                                       b"From: account@provider.test\r\n"))
        self.assertEqual(got.data.count(b"Reply-To:"), 1)
        self.assertEqual(d.stop(), 0)

    def test_large_message_byte_for_byte(self):
        up = self.upstream("implicit")
        d = start_relay(self, up, "implicit", user=None)
        line = b"0123456789" * 7 + b"abcdef\r\n"
        body = b"".join((b"." if i % 7 == 0 else b"") + b"%06d" % i + line for i in range(6 * 1024 * 1024 // len(line)))
        msg = (b"From: big@client.test\r\nTo: big@example.test\r\nSubject: big\r\nDate: "
               + email.utils.formatdate().encode() + b"\r\nMessage-ID: <big@client.test>\r\n\r\n" + body)
        qid = self.submit(d, ["big@example.test"], msg=msg)
        got = up.wait_delivered(1, timeout=30)
        self.assertEqual(got[0].data, d.body(qid))
        self.assertTrue(got[0].data.endswith(msg))
        self.wait_state(d, qid, "sent")
        self.assertEqual(d.stop(), 0)

    def test_message_over_the_upstreams_size_limit_bounces_before_sending(self):
        up = self.upstream(size_limit=5000)
        d = start_relay(self, up, "none", user=None)
        qid = self.submit(d, msg=message(SENDER, ["rcpt@example.test"], "big", ["y" * 70] * 150))
        ev = d.wait_event("bounced", id=qid)
        self.assertEqual(ev["dsn"], "5.3.4")
        self.assertIn("exceeds the upstream's limit of 5000", ev["reply"])
        self.wait_state(d, qid, "failed")
        dsn = up.wait_for(lambda: [m for m in up.delivered() if m.mail_from == ""], what="the DSN")
        self.assertIn(b"Status: 5.3.4", dsn[0].data)
        self.assertEqual([f for f in up.mail_froms if f == SENDER], [], "the message itself was sent")
        self.assertEqual(d.stop(), 0)

    def submit_utf8(self, up):
        d = start_relay(self, up, "none", user=None)
        rc = ["用户@example.test"]
        qid = self.submit(d, rc, msg=message(SENDER, rc, "utf8", ["テスト"]).decode().encode("utf-8"),
                          mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        return d, qid

    def test_smtputf8_mail_to_an_upstream_without_smtputf8(self):
        up = self.upstream(smtputf8=False)
        d, qid = self.submit_utf8(up)
        ev = d.wait_event("bounced", id=qid)
        self.assertEqual(ev["dsn"], "5.6.7")
        self.assertIn("SMTPUTF8", ev["reply"])
        m = self.wait_state(d, qid, "failed")
        self.assertEqual(m["recipients"][0]["state"], "failed")
        bq = d.wait_event("bounce_queued", original=qid)
        # The status part is base64 (RFC 6533 §6); the text part says why.
        self.assertIn(b"needs SMTPUTF8", d.body(bq["id"]))
        self.assertEqual([f for f in up.mail_froms if f == SENDER], [], "the SMTPUTF8 message itself was sent")
        self.assertEqual(d.stop(), 0)

    def test_dsn_of_smtputf8_mail_reaches_an_upstream_without_smtputf8(self):
        # The DSN about an SMTPUTF8 message to an ASCII sender needs no
        # SMTPUTF8: its message/global-* parts go base64 (RFC 6533 §6).
        up = self.upstream(smtputf8=False)
        d, qid = self.submit_utf8(up)
        bq = d.wait_event("bounce_queued", original=qid)
        dsn = up.wait_for(lambda: [m for m in up.delivered() if m.mail_from == ""], timeout=5, what="the DSN")
        self.assertEqual(dsn[0].rcpt_tos, [SENDER])
        self.wait_state(d, bq["id"], "sent")

if __name__ == "__main__":
    unittest.main(verbosity=2)
