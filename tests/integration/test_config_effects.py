"""Config keys whose effect no other test showed (issue 12 item 5: every key
has an effect a test shows; docs/config-key-effects.md is the table).
Real outboxd, real clients and a real aiosmtpd upstream."""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

SENDER = "app@client.test"


class ConfigEffects(unittest.TestCase):
    def daemon(self, **kw):
        d = harness.Daemon(name="outbox-effects", **kw)
        self.addCleanup(d.cleanup)
        return d

    def upstream(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        return up

    def test_session_timeout_ends_a_session_that_keeps_talking(self):
        # [limits] session_timeout bounds the whole session, however busy:
        # a client that sends NOOP every 0.3 s never trips command_timeout.
        d = self.daemon(limits={"session_timeout": "2s", "command_timeout": "1m"})
        d.start()
        with d.client() as c:
            c.greet()
            t0 = time.monotonic()
            last = None
            while time.monotonic() - t0 < 10:
                last = c.cmd("NOOP")
                if last.code != 250:
                    break
                time.sleep(0.3)
            elapsed = time.monotonic() - t0
            self.assertEqual((last.code, last.enhanced), (421, "4.4.2"), last)
            self.assertGreater(elapsed, 1.5)
            self.assertLess(elapsed, 6)
            self.assertTrue(c.wait_closed(5))
        self.assertTrue(d.events("timeout", phase="session"))

    def test_host_aliases_rewrite_local_recipients_at_rcpt(self):
        # [host] aliases: root's cron mail goes to a real mailbox, not to
        # root@<domain>; the full address is looked up before the local part.
        d = self.daemon(host_extra={"aliases": {"root": "ops@company.test",
                                                '"postmaster@example.test"': "admin@company.test"}})
        d.start()
        p = d.sendmail(["-f", SENDER, "root", "postmaster", "someone@other.test"],
                       b"Subject: cron\n\nreport\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        (m,) = d.queue()
        rcpts = sorted(r["address"] for r in d.show(m["id"])["recipients"])
        self.assertEqual(rcpts, ["admin@company.test", "ops@company.test", "someone@other.test"])

    def test_bounces_disabled_fails_the_recipient_without_a_dsn(self):
        # [bounces] enabled = false: a refused recipient is failed and logged,
        # and no DSN message is queued or sent to the sender.
        up = self.upstream()
        up.fail("RCPT", "550 5.1.1 No such user", address="bad@example.test")
        d = self.daemon()
        d.extra_toml = relay_toml([upstream_section("mail", up.port)], bounces=False)
        d.write_config()
        d.start()
        qid, _ = d.submit(SENDER, ["bad@example.test", "ok@example.test"])
        d.wait_event("bounced", id=qid, to="bad@example.test")
        up.wait_delivered(1)
        time.sleep(1.5)
        self.assertEqual(d.events("bounce_queued"), [])
        self.assertEqual([m["id"] for m in d.queue()], [qid])
        self.assertEqual([x.mail_from for x in up.delivered()], [SENDER])

        # The same with bounces on: a DSN is queued and sent (the control).
        up2 = self.upstream()
        up2.fail("RCPT", "550 5.1.1 No such user", address="bad@example.test")
        d2 = self.daemon()
        d2.extra_toml = relay_toml([upstream_section("mail", up2.port)], bounces=True)
        d2.write_config()
        d2.start()
        qid2, _ = d2.submit(SENDER, ["bad@example.test", "ok@example.test"])
        d2.wait_event("bounce_queued", original=qid2)
        up2.wait_for(lambda: [x for x in up2.delivered() if x.mail_from == ""], what="the DSN")

    def test_connect_timeout_gives_up_on_a_host_that_never_answers(self):
        # A listener whose accept queue is full drops new SYNs: connect()
        # hangs as it would to a firewalled host. connect_timeout (1s), not
        # the 30 s reply timeout, decides when the try ends.
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        self.addCleanup(full.close)
        port = full.getsockname()[1]
        fillers = []
        for _ in range(4):   # the queue holds backlog+1; more only hang
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.3)
        self.addCleanup(lambda: [s.close() for s in fillers])
        d = self.daemon()
        d.extra_toml = relay_toml([upstream_section("mail", port, timeout="30s", connect_timeout="1s")])
        d.write_config()
        d.start()
        t0 = time.monotonic()
        qid, _ = d.submit(SENDER, ["rcpt@example.test"])
        ev = d.wait_event("upstream_failed", upstream="mail", timeout=15)
        self.assertLess(time.monotonic() - t0, 6)
        self.assertEqual(ev["stage"], "connect", ev)
        self.assertIn("timed out", ev["reply"] if "reply" in ev else ev.get("error", ""), ev)
        d.wait_event("deferred", id=qid)

    def test_upstream_max_message_size_is_checked_at_submission(self):
        # [[upstream]] max_message_size: the route's upstream takes 2K, the
        # listener 35M. A larger message is refused before it is accepted,
        # naming the upstream; a smaller one is relayed.
        up = self.upstream()
        d = self.daemon()
        d.extra_toml = relay_toml([upstream_section("mail", up.port, max_message_size="2K")])
        d.write_config()
        d.start()
        big = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n"
        big = big * 40
        with d.client() as c:
            c.greet()
            r = c.cmd("MAIL FROM:<%s> SIZE=%d" % (SENDER, len(big)))
            self.assertEqual((r.code, r.text), (552, '5.3.4 Message size exceeds the limit of upstream "mail" (2048 bytes)'))
            r = c.submit(SENDER, ["rcpt@example.test"], big)
            self.assertEqual(r.code, 552, r)
            self.assertIn('upstream "mail"', r.text)
        self.assertEqual(d.queue(), [])
        qid, _ = d.submit(SENDER, ["rcpt@example.test"])
        up.wait_delivered(1)
        d.wait_event("delivered", id=qid)

    def test_log_level_warning_keeps_only_warnings_and_errors(self):
        # [log] level = "warning": the ready and accepted lines (info) are
        # not written; the default "info" writes them.
        quiet = self.daemon(log_level="warning")
        quiet.start(wait=False)   # no "ready" line to wait for at this level
        deadline = time.monotonic() + 20
        while True:
            try:
                quiet.submit()
                break
            except (ConnectionError, FileNotFoundError, OSError):
                self.assertLess(time.monotonic(), deadline, quiet.log_tail())
                time.sleep(0.1)
        chatty = self.daemon()
        chatty.start()
        chatty.submit()
        chatty.wait_event("accepted")
        time.sleep(0.5)
        self.assertEqual(quiet.events("accepted"), [])
        self.assertEqual(quiet.events("ready", since_start=True), [])


if __name__ == "__main__":
    unittest.main()
