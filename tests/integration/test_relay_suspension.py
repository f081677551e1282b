#!/usr/bin/python3
"""Upstream suspensions are typed, persistent and liftable (issue 8 items 7,
13): a 535 at AUTH suspends the upstream with reason AuthFailed and the reply,
in the spool's upstreams table; the login is not tried again at the message
backoff; the operator is told once; a restart keeps the suspension; a
`resume` row in operator_log (what `outboxctl resume NAME` writes) lifts it
within about a second, logged as event=operator."""

import os
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import BODY, PASSWORD, USER, message, start_relay  # noqa: E402
from upstream import relay_toml, upstream_section  # noqa: E402

SENDER = "app@client.test"
AUTH_FAILED = 1   # queue::SuspendReason::AuthFailed


def upstream_row(d, name):
    con = sqlite3.connect("file:%s?mode=ro" % d.spool_path, uri=True, timeout=10)
    try:
        con.row_factory = sqlite3.Row
        r = con.execute("SELECT * FROM upstreams WHERE name = ?", (name,)).fetchone()
        return dict(r) if r else None
    finally:
        con.close()


class RelaySuspension(unittest.TestCase):
    def test_535_suspends_persists_survives_restart_and_resume_lifts_it(self):
        up = Upstream("implicit", users={USER: PASSWORD}).start()
        self.addCleanup(up.stop)
        d = start_relay(self, up, "implicit", auth="plain", password="a-stale-password")
        with d.smtplib() as s:
            s.sendmail(SENDER, ["rcpt@example.test"], message(SENDER, ["rcpt@example.test"], "suspended", BODY))
            qid = s.last_queue_id
        ev = d.wait_event("upstream_login_refused", upstream="mail", timeout=15)
        self.assertIn("535", ev["reply"])
        self.assertIn("outboxctl resume mail", ev["hint"])
        deadline = time.monotonic() + 10
        row = upstream_row(d, "mail")
        while (row is None or row["reason"] != AUTH_FAILED) and time.monotonic() < deadline:
            time.sleep(0.1)
            row = upstream_row(d, "mail")
        self.assertIsNotNone(row)
        self.assertEqual(row["reason"], AUTH_FAILED, row)
        self.assertIn("535", row["last_reply"])
        self.assertEqual(row["stage"], "auth")
        # The slow schedule: 5 minutes, not the 1 s message backoff of this config.
        self.assertGreater(row["suspended_until"] / 1e6 - time.time(), 250, row)
        time.sleep(3)
        self.assertEqual(len(up.auth_attempts), 1, "the refused login was retried at the message backoff")
        self.assertEqual(len(d.events("upstream_login_refused")), 1, "the operator is told once per suspension")
        m = d.show(qid)
        self.assertEqual(m["state"], "deferred", m)
        self.assertEqual(m["attempts"], 1, "the refused login was this message's try")

        # The operator fixes the secret and restarts: still suspended (the
        # suspension is in the spool), so no login at start.
        with open(os.path.join(d.dir, "upstream.secret"), "w") as f:
            f.write(PASSWORD + "\n")
        self.assertEqual(d.stop(), 0)
        d.start()
        restored = d.wait_event("upstream_suspended", upstream="mail", restored="yes", timeout=10)
        self.assertEqual(restored["reason"], "auth_failed")
        time.sleep(2.5)
        self.assertEqual(len(up.auth_attempts), 1, "a restart lifted the suspension")
        self.assertEqual(up.delivered(), [])
        self.assertEqual(upstream_row(d, "mail")["reason"], AUTH_FAILED)

        # `outboxctl resume mail` writes this row; outboxd notices within a second.
        con = sqlite3.connect(d.spool_path, timeout=10)
        with con:
            con.execute("INSERT INTO operator_log(time, uid, action, target) VALUES (?, ?, 'resume', 'mail')",
                        (int(time.time() * 1e6), os.getuid()))
        con.close()
        t0 = time.monotonic()
        try:
            up.wait_delivered(1, timeout=10)
        except AssertionError:
            print(d.log_tail(30))
            raise
        self.assertLess(time.monotonic() - t0, 3.0, "resume took too long to take effect")
        op = d.wait_event("operator", action="resume")
        self.assertEqual(op["upstream"], "mail")
        self.assertEqual(op["uid"], str(os.getuid()))
        d.wait_event("delivered", id=qid)
        row = upstream_row(d, "mail")
        self.assertIsNone(row["suspended_until"], row)
        self.assertEqual(row["reason"], 0)
        self.assertEqual(len(up.delivered()), 1)
        self.assertNotIn(PASSWORD.encode(), d.log_bytes())
        self.assertEqual(d.stop(), 0)

    def test_connections_failing_in_one_outage_count_once(self):
        """Four connections opened together to an upstream that accepts and
        never greets: all four time out in the same outage. The backoff takes
        one step (failures=1, the first retry interval), not four, and the
        suspension is logged once; each connection still logs what it met."""
        import socket
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 0))
        lst.listen(16)   # the kernel completes the handshakes; nothing is ever sent
        self.addCleanup(lst.close)
        port = lst.getsockname()[1]
        d = harness.Daemon(name="outbox-outage")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", port, max_connections=4, timeout="3s")],
                                  retry={"initial": "30s", "max": "600s"})
        d.write_config()
        d.start()
        for i in range(4):
            d.submit(SENDER, ["rcpt%d@example.test" % i])
        failed = []
        deadline = time.monotonic() + 20
        while len(failed) < 4 and time.monotonic() < deadline:
            failed = d.events("upstream_failed", upstream="mail")
            time.sleep(0.1)
        self.assertEqual(len(failed), 4, d.log_tail(30))
        for ev in failed:
            self.assertEqual(ev["stage"], "greeting", ev)
        time.sleep(0.5)
        sus = d.events("upstream_suspended", upstream="mail")
        self.assertEqual(len(sus), 1, sus)
        self.assertEqual(sus[0]["failures"], "1")
        self.assertLessEqual(float(sus[0]["until_s"]), 30.5)
        row = upstream_row(d, "mail")
        self.assertEqual(row["failures"], 1, row)
        self.assertLess(row["suspended_until"] / 1e6 - time.time(), 31, row)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
