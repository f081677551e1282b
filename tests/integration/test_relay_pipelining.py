#!/usr/bin/python3
"""The fault tests of test_relay_faults.py again, against an upstream that
offers PIPELINING (RFC 2920): outbox then sends [RSET] MAIL, every RCPT and
DATA in one write, and the next message's behind the previous one's final
dot, and must still map each reply to its command."""

import os
import time
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import Upstream  # noqa: E402
import test_relay_faults  # noqa: E402


class PipelinedRelayFaults(test_relay_faults.RelayFaults):
    def setUp(self):
        self.up = Upstream("plain", pipelining=True).start()
        self.addCleanup(self.up.stop)

    def test_upstream_offers_pipelining(self):
        self.relay()
        self.submit(["a@example.test", "b@example.test"])
        self.up.wait_delivered(1)
        self.assertEqual(self.up.ehlos, 1)
        self.assertEqual(self.up.sent_behind_mail, [b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"])
        self.stop_clean()

    def test_the_next_message_follows_the_final_dot_in_the_same_write(self):
        # RFC 2920 §3.1: the message text may open a group; the next MAIL,
        # RCPT and DATA go with the dot, one round trip per message. One
        # connection; the first message's MAIL stalls while four more queue.
        self.up.fail("MAIL", "stall:2", times=1)
        self.relay(extra={"max_connections": 1})
        qids = [self.submit(["r%d@example.test" % i]) for i in range(5)]
        self.up.wait_delivered(5)
        for qid in qids:
            self.wait_state(qid, "sent")
        self.assertEqual(self.up.connections, 1)
        self.assertEqual(len(self.up.sent_behind_dot), 5)
        followed = [b.startswith(b"MAIL FROM:<") and b.endswith(b"DATA\r\n") for b in self.up.sent_behind_dot[:4]]
        self.assertEqual(followed, [True] * 4, self.up.sent_behind_dot)
        self.assertEqual(self.up.sent_behind_dot[4], b"")
        # No RSET: the dot ended each transaction (RFC 5321 §4.1.1.4).
        self.assertNotIn(b"RSET", b"".join(self.up.sent_behind_dot))
        self.assertEqual([m.rcpt_tos for m in self.up.messages], [["r%d@example.test" % i] for i in range(5)])
        self.stop_clean()

    def test_a_throttled_dot_keeps_its_suspension_when_the_message_behind_it_is_delivered(self):
        # 163's "451 MI:SFQ" (15 minutes) to the first message's dot; the
        # second one's commands were already behind that dot and it goes
        # through. That says nothing of the upstream after the refusal: the
        # upstream stays suspended and the others wait (no new connection).
        self.up.fail("MAIL", "stall:2", times=1)
        self.up.fail("DATA", "451 MI:SFQ sender frequency limited", times=1)
        self.relay(extra={"max_connections": 1})
        qids = [self.submit(["r%d@example.test" % i]) for i in range(4)]
        self.wait_state(qids[1], "sent")
        self.assertTrue(self.up.sent_behind_dot[0].startswith(b"MAIL FROM:<"), self.up.sent_behind_dot)
        self.d.wait_event("upstream_suspended", upstream="mail")
        self.up.wait_closed(1)   # QUIT after the message behind the refused dot
        time.sleep(1.5)          # the next scheduling pass
        j = self.d.ctl_json("upstreams", "--json")
        self.assertEqual((j[0]["name"], j[0]["state"]), ("mail", "suspended"), j)
        self.assertEqual(self.up.connections, 1)
        self.assertEqual([m.rcpt_tos for m in self.up.messages if m.outcome == "accepted"],
                         [["r1@example.test"]])
        self.assertNotEqual(self.d.show(qids[0])["state"], "sent")
        for qid in qids[2:]:
            self.assertNotEqual(self.d.show(qid)["state"], "sent")
        self.assertEqual(self.d.ctl("resume", "mail").returncode, 0)
        for qid in qids:
            self.wait_state(qid, "sent")
        self.stop_clean()

    def test_a_message_taken_ahead_is_retried_as_not_sent_when_the_connection_drops(self):
        # A small message's connection asks for the next one while it is
        # still being sent, so that the next one's mark (its recipients'
        # "possibly delivered" state) is written during the transfer. The
        # connection drops at the first final dot: the first is a possible
        # duplicate (RFC 1047); the second, whose commands followed the dot,
        # and the third, taken ahead and never sent, are retried as not sent.
        self.up.fail("MAIL", "stall:2", times=1)
        self.up.fail("DATA", "drop", times=1)
        self.relay(extra={"max_connections": 1})
        qids = [self.submit(["r%d@example.test" % i]) for i in range(4)]
        for qid in qids:
            self.wait_state(qid, "sent", timeout=60)
        first = self.d.events("deferred", id=qids[0])
        self.assertEqual(first[0].get("possible_duplicate"), "yes", first)
        behind = self.d.events("deferred", id=qids[1])
        self.assertEqual(len(behind), 1, behind)
        self.assertIsNone(behind[0].get("possible_duplicate"), behind)
        ahead = self.d.events("deferred", id=qids[2])
        self.assertEqual(len(ahead), 1, ahead)
        self.assertIn("before this message was sent", ahead[0]["reply"])
        self.assertIsNone(ahead[0].get("possible_duplicate"), ahead)
        self.assertEqual(ahead[0]["dsn"], "4.4.2")
        self.assertEqual(self.d.events("deferred", id=qids[3]), [])
        # Each delivered once (the first twice at most: it may have been).
        accepted = sorted(m.rcpt_tos[0] for m in self.up.messages if m.outcome == "accepted")
        self.assertEqual(accepted, ["r%d@example.test" % i for i in range(4)])
        self.assertEqual([m.rcpt_tos[0] for m in self.up.messages if m.outcome == "dropped"], ["r0@example.test"])
        for qid in qids[1:3]:
            self.assertNotIn("possible_duplicate", [h["outcome"] for h in self.d.show(qid)["attempts_history"]])
        self.no_bounce()
        self.stop_clean()

    def test_a_connection_told_to_quit_while_its_message_is_under_way_quits_after_it(self):
        # The only message's MAIL stalls past the 2 s idle linger: the
        # connection had said it could take one more, found nothing, and the
        # scheduler's QUIT comes while the message is still under way. It
        # goes out first; then QUIT, behind its final dot.
        self.up.fail("MAIL", "stall:3", times=1)
        self.relay(extra={"max_connections": 1, "timeout": "10s"})
        qid = self.submit(["solo@example.test"])
        self.wait_state(qid, "sent", timeout=30)
        self.up.wait_closed(1, timeout=10)
        self.assertEqual(self.up.connections, 1)
        self.assertEqual(self.up.sent_behind_dot, [b"QUIT\r\n"])
        self.stop_clean()


if __name__ == "__main__":
    unittest.main(verbosity=2)
