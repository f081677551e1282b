#!/usr/bin/python3
"""The spool cannot be written (disk full): RFC 5321 §6.1 still holds. Writes
past a file-size limit (RLIMIT_FSIZE, e.g. systemd LimitFSIZE=; outboxd must
ignore SIGXFSZ, then they fail with EFBIG as they would with ENOSPC) must give
`451 4.3.0` to the end of data,
leave nothing half-written, keep every message that got a 250, keep the daemon
and the session alive, and recover as soon as there is room again - without a
restart."""

import os
import resource
import signal
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LIMIT = 3 << 20


class SpoolFull(unittest.TestCase):
    def test_full_spool_gives_451_and_recovers(self):
        with harness.Daemon() as d:
            d.start(preexec=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_DFL))
            pid = d.proc.pid
            # soft limit only: raising it again needs no privilege
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
            lock = threading.Lock()
            acked = {}      # id -> body
            refused = []    # bodies that got 451
            errors = []

            def client(k):
                try:
                    with d.client(timeout=30) as c:
                        c.greet()
                        n451 = 0
                        for i in range(60):
                            body = (b"Subject: fill %d-%d\r\nX-Token: fill-%d-%d\r\n\r\n" % (k, i, k, i)
                                    + (b"%02d" % k + b"f" * 96 + b"\r\n") * 2000)
                            r = c.submit("fill@client.test", ["sink@example.test"], body)
                            with lock:
                                if r.code == 250:
                                    acked[r.queue_id] = body
                                else:
                                    refused.append((r, body))
                            if r.code != 250:
                                if (r.code, r.enhanced) != (451, "4.3.0"):
                                    errors.append(r)
                                    return
                                n451 += 1
                                # the session survives a refused message
                                if c.cmd("RSET").code != 250:
                                    errors.append("RSET after 451")
                                    return
                                if n451 >= 3:
                                    break
                        c.cmd("QUIT")
                except Exception as e:   # noqa: BLE001 - reported below
                    errors.append(repr(e))

            for t in harness.run_threads([lambda k=k: client(k) for k in range(4)]):
                t.join(120)
            self.assertEqual(errors, [])
            self.assertTrue(d.running(), "outboxd died when the spool filled:\n" + d.log_tail())
            self.assertTrue(refused, "the spool never filled up")
            self.assertTrue(acked, "nothing fitted at all")
            errs = d.events("spool_error")
            self.assertTrue(errs, "no event=spool_error logged")
            # one failure is a few lines, not one per 64 KiB chunk of the body
            per_id = {}
            for e in errs:
                per_id[e.get("id")] = per_id.get(e.get("id"), 0) + 1
            self.assertLessEqual(max(per_id.values()), 3, "log lines per failed message: %r" % per_id)

            def check():
                listed = d.queue_by_id()
                self.assertEqual(set(listed), set(acked), "listed messages differ from the 250'd ones")
                for qid, body in acked.items():
                    added = ["received"] if b"\r\nMessage-ID:" in body else ["received", "date", "message-id"]
                    harness.assert_stored(self, d.body(qid), body, added)

            check()
            # room again: accepted at once, no restart
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            qid, body = d.submit()
            acked[qid] = body
            for _, body in refused[:2]:
                with d.client() as c:
                    c.greet()
                    r = c.submit("fill@client.test", ["sink@example.test"], body)
                    self.assertEqual(r.code, 250, r)
                    acked[r.queue_id] = body
            self.assertEqual(d.stop(), 0)
            d.start()
            check()
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
