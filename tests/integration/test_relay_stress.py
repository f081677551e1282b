#!/usr/bin/python3
"""Many messages through a flaky upstream (SPEC "Relay": exactly once per
recipient, possible duplicates only after a lost reply to the final dot):
parallel submitters, two connections, temporary failures at MAIL, RCPT and
the final dot, dropped connections, a SIGTERM and restart while deliveries run.
Every recipient ends sent; none is accepted twice unless the log says
possible_duplicate=yes for its message; nothing bounces."""

import collections
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import message, start_relay  # noqa: E402

N = 40


class RelayStress(unittest.TestCase):
    def test_flaky_upstream_many_messages(self):
        up = Upstream("starttls", users={"u@provider.test": "pw"}, pipelining=True).start()
        self.addCleanup(up.stop)
        up.fail("MAIL", "451 4.3.0 Busy", times=4)
        up.fail("DATA", "451 4.3.0 Queue full", times=4)
        up.fail("DATA", "drop", times=3)
        for i in range(0, N, 7):
            up.fail("RCPT", "450 4.2.1 Mailbox temporarily unavailable", times=1, address="r%d-b@example.test" % i)
        d = start_relay(self, up, "starttls", auth="auto", user="u@provider.test", password="pw",
                        extra={"max_connections": 2}, retry={"initial": "1s", "max": "1s", "lifetime": "5m"})
        ids = {}
        lock = threading.Lock()
        rnd = random.Random(7)
        sizes = [rnd.choice([1, 50, 3000]) for _ in range(N)]

        def submitter(k):
            for i in range(k, N, 4):
                rc = ["r%d-a@example.test" % i, "r%d-b@example.test" % i]
                body = ["line %d of message %d" % (j, i) for j in range(sizes[i])]
                with d.smtplib() as s:
                    s.sendmail("app@client.test", rc, message("app@client.test", rc, "stress %d" % i, body))
                    with lock:
                        ids[s.last_queue_id] = rc

        ts = harness.run_threads([lambda k=k: submitter(k) for k in range(4)])
        for t in ts:
            t.join(60)
        self.assertEqual(len(ids), N)
        # A SIGTERM while deliveries run, then on again.
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)
        d.start()
        want = sorted(r for rc in ids.values() for r in rc)
        deadline = time.monotonic() + 60
        while True:
            states = collections.Counter(m["state"] for m in d.queue())
            if states.get("sent") == N:
                break
            self.assertLess(time.monotonic(), deadline, "states: %r\n%s" % (states, d.log_tail()))
            time.sleep(0.3)
        got = collections.Counter(r for m in up.delivered() for r in m.rcpt_tos)
        self.assertEqual(sorted(got), want)
        dup_ids = {e["id"] for e in d.events() if e.get("possible_duplicate") == "yes"}
        for qid, rc in ids.items():
            for r in rc:
                if qid not in dup_ids:
                    self.assertEqual(got[r], 1, "%s (%s) accepted %d times" % (r, qid, got[r]))
        # Each delivered copy is exactly the spooled message.
        bodies = {}
        for m in up.delivered():
            for r in m.rcpt_tos:
                bodies[r] = m.data
        for qid, rc in ids.items():
            stored = d.body(qid)
            for r in rc:
                self.assertEqual(bodies[r], stored, r)
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.events("bounce_queued"), [])
        for a in up.auth_attempts:
            self.assertTrue(a["success"] and a["tls"], a)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
