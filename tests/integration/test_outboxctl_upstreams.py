#!/usr/bin/python3
"""outboxctl upstreams / resume / retry behind a suspended upstream, the
operator log, and a streaming `outboxctl queue | head` on a large queue,
against a running outboxd (docs/reference/spool-and-outboxctl.md). The
suspension is written into the spool's upstreams table as the relay would
persist it; the messages wait on a route that matches no sender, so the
relay leaves them alone."""

import os
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import closed_port, relay_toml, upstream_section  # noqa: E402


class Upstreams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(name="outbox-ctl-up")
        cls.d.extra_toml = relay_toml([upstream_section("mail", closed_port()), upstream_section("backup", closed_port())],
                                      routes=(("nobody@nowhere.test", None),), bounces=False)
        cls.d.write_config()
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def db(self):
        c = sqlite3.connect(self.d.spool_path, timeout=30, isolation_level=None)
        self.addCleanup(c.close)
        return c

    def test_1_upstreams_retry_resume_and_the_operator_log(self):
        d = self.d
        out = d.ctl("upstreams").stdout.decode()
        self.assertEqual(out, "mail: ok; failures 0, in flight 0, waiting 0\n"
                              "backup: ok; failures 0, in flight 0, waiting 0\n")
        qid, _ = d.submit()
        until = int((time.time() + 600) * 1e6)
        db = self.db()
        db.execute("INSERT INTO upstreams(name, suspended_until, reason, failures, stage, last_reply, updated) "
                   "VALUES('mail', ?, 2, 4, 'mail', '421 4.7.0 Try again later', 1)", (until,))
        db.execute("UPDATE messages SET wait_reason = 2, wait_upstream = 'mail' WHERE id = ?", (qid,))

        out = d.ctl("upstreams").stdout.decode()
        self.assertRegex(out, r"^mail: suspended until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (9|10)m\), throttled by "
                              r"the provider; failures 4, in flight 0, waiting 1\n"
                              r"  last failure at mail: 421 4\.7\.0 Try again later\n"
                              r"backup: ok; failures 0, in flight 0, waiting 0\n$")
        j = d.ctl_json("upstreams", "--json")
        self.assertEqual([u["name"] for u in j], ["mail", "backup"])
        self.assertEqual((j[0]["state"], j[0]["reason"], j[0]["failures"], j[0]["waiting"]),
                         ("suspended", "throttled", 4, 1))

        p = d.ctl("retry", qid)
        self.assertRegex(p.stdout.decode(), r"^%s: due now, but upstream mail is suspended until \S+Z "
                                            r"\(throttled by the provider\); `outboxctl resume mail` to lift it\n$"
                         % qid)
        self.assertEqual(d.ctl("resume", "mail").stdout, b"mail: resumed (its waiting messages are due at once)\n")
        self.assertIn(b"is not suspended", d.ctl("resume", "mail", check=1).stderr)
        self.assertIn(b"is not suspended", d.ctl("resume", "backup", check=1).stderr)
        self.assertIn(b"no upstream named", d.ctl("resume", "nope", check=3).stderr)
        self.assertTrue(d.ctl("upstreams").stdout.startswith(b"mail: ok; failures 0"))
        d.ctl("hold", qid)
        d.ctl("release", qid)
        d.ctl("delete", qid)
        rows = db.execute("SELECT action, target, uid FROM operator_log ORDER BY seq").fetchall()
        uid = os.getuid()
        self.assertEqual(rows, [("retry", qid, uid), ("resume", "mail", uid), ("hold", qid, uid),
                                ("release", qid, uid), ("delete", qid, uid)])

    def test_1b_sendmail_q_is_an_operator_action_too(self):
        # `sendmail -q` makes every waiting message due, like `outboxctl retry --all`:
        # logged with the caller's uid, and outboxd says who did it.
        d = self.d
        db = self.db()
        before = db.execute("SELECT COALESCE(MAX(seq), 0) FROM operator_log").fetchone()[0]
        d.sendmail(["-q"])
        rows = db.execute("SELECT action, target, uid FROM operator_log WHERE seq > ?", (before,)).fetchall()
        self.assertEqual(rows, [("retry_all", "", os.getuid())])
        ev = d.wait_event("operator", action="retry_all")
        self.assertEqual(ev.get("uid"), str(os.getuid()), ev)

    def test_2_queue_streams_to_head_on_a_large_queue(self):
        d = self.d
        qid, _ = d.submit()
        db = self.db()
        # 30,000 deferred copies of a real message, as a long outage leaves them.
        db.execute("BEGIN")
        db.execute("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 30000) "
                   "INSERT INTO messages(id, state, sender, size, created, attempts, next_attempt, last_error, "
                   "client, helo, prefix, updated) SELECT printf('Z%07d', v), 'deferred', sender, size, created, 3, "
                   "next_attempt + 3600000000, '421 later', client, helo, prefix, updated FROM messages, n "
                   "WHERE id = ?", (qid,))
        db.execute("INSERT INTO recipients(message_id, address, state, next_attempt) SELECT id, 'r@example.test', "
                   "'pending', next_attempt FROM messages WHERE id LIKE 'Z%'")
        db.execute("COMMIT")
        exe = harness.binpath("outboxctl")
        t = time.monotonic()
        p = subprocess.run("%s --config %s queue | head -n 3" % (exe, d.config_path), shell=True,
                           capture_output=True, timeout=60)
        head_s = time.monotonic() - t
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 3, p.stdout)
        self.assertTrue(lines[0].startswith("ID "), lines)
        self.assertEqual(p.stderr, b"", "a closed pipe is not an error")
        t = time.monotonic()
        full = d.ctl("queue", timeout=120).stdout
        full_s = time.monotonic() - t
        self.assertIn(b"-- 30001 messages", full)
        sys.stderr.write("queue | head: %.3fs; the whole listing of 30001: %.3fs\n" % (head_s, full_s))
        # Streamed: head's three lines come long before the whole listing
        # would (relative, so that a slow build under load does not matter).
        self.assertLess(head_s, full_s / 2)
        j = d.ctl_json("queue", "--json", "--state", "deferred", timeout=120)
        self.assertEqual(len(j), 30000)
        self.assertEqual(j[0]["id"], "Z0000001")
        db.execute("DELETE FROM messages WHERE id LIKE 'Z%'")


class AgainstTheRelay(unittest.TestCase):
    """The same commands against a suspension the relay made itself: a 535
    at AUTH (RFC 4954 §6) suspends the upstream; the operator sees it, is
    told why a retry will not go, fixes the secret and resumes it."""

    def test_535_upstreams_retry_resume_delivers(self):
        from upstream import Upstream
        from test_relay_delivery import BODY, PASSWORD, USER, message, start_relay
        up = Upstream("implicit", users={USER: PASSWORD}).start()
        self.addCleanup(up.stop)
        d = start_relay(self, up, "implicit", auth="plain", password="a-stale-password")
        sender = "app@client.test"
        with d.smtplib() as s:
            s.sendmail(sender, ["rcpt@example.test"], message(sender, ["rcpt@example.test"], "suspended", BODY))
            qid = s.last_queue_id
        d.wait_event("upstream_login_refused", upstream="mail", timeout=15)
        deadline = time.monotonic() + 15
        while True:
            j = d.ctl_json("upstreams", "--json")
            if j[0]["state"] == "suspended" and j[0]["waiting"] == 1:
                break
            self.assertLess(time.monotonic(), deadline, "not suspended with one waiting: %r" % j)
            time.sleep(0.2)
        self.assertEqual((j[0]["name"], j[0]["reason"], j[0]["stage"]), ("mail", "auth_failed", "auth"))
        self.assertIn("535", j[0]["last_reply"])
        out = d.ctl("upstreams").stdout.decode()
        self.assertRegex(out, r"^mail: suspended until \S+Z \(in [45]m\), authentication failed; failures \d+, "
                              r"in flight 0, waiting 1\n  last failure at auth: 535")
        p = d.ctl("retry", qid)
        self.assertRegex(p.stdout.decode(), r"^%s: due now, but upstream mail is suspended until \S+Z "
                                            r"\(authentication failed\); `outboxctl resume mail` to lift it\n$" % qid)
        self.assertEqual(up.delivered(), [])
        # The relay acts on the retry on its own (claims the message and parks
        # it again for the suspension) before the resume comes: the park is
        # clamped to the message's 20 s lifetime, and it must still be
        # released by the resume (it once was typed "unusable" and was not).
        d.wait_event("operator", action="retry", timeout=15)
        deadline = time.monotonic() + 15
        while True:
            j = d.ctl_json("upstreams", "--json")
            if j[0]["in_flight"] == 0 and j[0]["waiting"] == 1:
                break
            self.assertLess(time.monotonic(), deadline, "not parked again after the retry: %r" % j)
            time.sleep(0.2)

        # The provider side is fixed (the account unlocked: the same password
        # now works), so nothing in outboxd's configuration changes and only
        # the operator's resume lifts the suspension.
        up.users[USER] = "a-stale-password"
        d.ctl("resume", "mail")
        up.wait_delivered(1, timeout=10)
        op = d.wait_event("operator", action="resume")
        self.assertEqual(op["uid"], str(os.getuid()))
        d.wait_event("delivered", id=qid)
        self.assertTrue(d.ctl("upstreams").stdout.startswith(b"mail: ok; failures 0"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
