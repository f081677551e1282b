#!/usr/bin/python3
"""Upstreams outbox must refuse to use, or that refuse outbox (SPEC "Relay"):
a certificate for another name, a self-signed certificate, an upstream
configured for STARTTLS that does not offer it (never a plaintext fallback),
a 535 to AUTH. All are temporary failures of the upstream: the message is
deferred (never bounced; each try counted in attempts, issue 8 item 9),
`outboxctl show` and the log name the problem with a hint, and no mail
reaches the upstream. A refused login is retried on its own slow schedule
(5 minutes, doubling to an hour), never at the message backoff."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream  # noqa: E402
from test_relay_delivery import BODY, PASSWORD, USER, message, start_relay  # noqa: E402

SENDER = "app@client.test"


class RelayRefusals(unittest.TestCase):
    def upstream(self, mode, **kw):
        up = Upstream(mode, **kw).start()
        self.addCleanup(up.stop)
        return up

    def submit(self, d, rcpt="rcpt@example.test"):
        with d.smtplib() as s:
            s.sendmail(SENDER, [rcpt], message(SENDER, [rcpt], "refused", BODY))
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        return qid

    def check_deferred_not_bounced(self, d, up, qid, words, settle=2.5, retried=True):
        """Deferred with `words` (regexes) in the reason, at least twice (the
        upstream is retried; once only for a refused login: its slow
        schedule), nothing sent, nothing bounced."""
        ev = d.wait_event("deferred", id=qid)
        for w in words:
            self.assertRegex(ev["reply"], w)
        time.sleep(settle)
        deadline = time.monotonic() + 5
        m = d.show(qid)
        while m["state"] == "active" and time.monotonic() < deadline:   # caught mid-retry
            time.sleep(0.05)
            m = d.show(qid)
        self.assertEqual(m["state"], "deferred", m)
        self.assertEqual(m["attempts"], len(m["attempts_history"]), "every try is counted, connection failures included")
        self.assertEqual(m["recipients"][0]["state"], "pending")
        for w in words:
            self.assertRegex(m["last_error"], w)
        self.assertTrue(m["attempts_history"], m)
        for h in m["attempts_history"]:
            self.assertEqual(h["upstream"], "mail")
            self.assertEqual(h["outcome"], "deferred")
            for w in words:
                self.assertRegex(h["reply"], w)
        if retried:
            self.assertGreaterEqual(len(d.events("upstream_failed", upstream="mail")), 2,
                                    "the upstream was not retried with the 1 s backoff")
        else:
            self.assertEqual(len(d.events("upstream_failed", upstream="mail")), 1,
                             "a refused login was retried at the message backoff")
            self.assertEqual(len(d.events("upstream_login_refused", upstream="mail")), 1)
        self.assertEqual(up.mail_froms, [], "a MAIL FROM reached the upstream")
        self.assertEqual(up.messages, [])
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.events("bounce_queued"), [])
        self.assertEqual(len(d.queue()), 1)
        self.assertNotIn(PASSWORD.encode(), d.log_bytes())
        return m

    # --- certificates ---------------------------------------------------------------------
    def test_certificate_for_another_name(self):
        up = self.upstream("implicit", cert="wrong", users={USER: PASSWORD})
        d = start_relay(self, up, "implicit", auth="plain")
        qid = self.submit(d)
        self.check_deferred_not_bounced(d, up, qid, [r"certificate", r"mismatch"])
        ev = d.events("upstream_failed", upstream="mail")[-1]
        self.assertIn("does not name 127.0.0.1", ev.get("hint", ""), ev)
        self.assertEqual(up.auth_attempts, [], "credentials were sent to an unverified server")
        self.assertEqual(d.stop(), 0)

    def test_self_signed_certificate(self):
        up = self.upstream("starttls", cert="self", users={USER: PASSWORD})
        d = start_relay(self, up, "starttls", auth="auto")
        qid = self.submit(d)
        self.check_deferred_not_bounced(d, up, qid, [r"certificate", r"self.signed"])
        ev = d.events("upstream_failed", upstream="mail")[-1]
        self.assertIn("not signed by the CA in ca_file", ev.get("hint", ""), ev)
        self.assertEqual(up.auth_attempts, [])
        self.assertEqual(d.stop(), 0)

    def test_trusted_after_the_certificate_is_fixed(self):
        # Same failure, then the operator points ca_file at the server's own
        # certificate and restarts: the message goes out; nothing was lost.
        up = self.upstream("implicit", cert="self", users={USER: PASSWORD})
        d = start_relay(self, up, "implicit", auth="plain")
        qid = self.submit(d)
        d.wait_event("deferred", id=qid)
        import upstream as upmod
        self_pem = upmod.make_certs()["self_cert"]
        d.extra_toml = d.extra_toml.replace(upmod.make_certs()["ca"], self_pem)
        d.write_config()
        d.restart()
        up.wait_delivered(1, timeout=15)
        d.wait_event("delivered", id=qid)
        self.assertEqual(d.stop(), 0)

    # --- STARTTLS --------------------------------------------------------------------------
    def test_starttls_not_offered_is_never_a_plaintext_fallback(self):
        up = self.upstream("plain")
        d = start_relay(self, up, "starttls", user=None)
        qid = self.submit(d)
        self.check_deferred_not_bounced(d, up, qid, [r"STARTTLS not offered"])
        ev = d.events("upstream_failed", upstream="mail")[-1]
        self.assertIn("never falls back to plaintext", ev.get("hint", ""), ev)
        self.assertGreaterEqual(up.ehlos, 2)
        self.assertEqual(d.stop(), 0)

    # --- AUTH ------------------------------------------------------------------------------
    def test_535_to_auth_defers_with_a_hint_and_never_bounces(self):
        up = self.upstream("implicit", users={USER: "the-real-one"})
        d = start_relay(self, up, "implicit", auth="plain")
        qid = self.submit(d)
        m = self.check_deferred_not_bounced(d, up, qid, [r"535"], retried=False)
        ev = d.events("upstream_failed", upstream="mail")[-1]
        self.assertEqual(ev["_level"].lower()[:3], "err", ev)
        self.assertEqual(ev["stage"].lower(), "auth", ev)
        hint = ev.get("hint", "")
        self.assertIn("password_file", hint, ev)
        self.assertIn(USER, hint)
        self.assertIn("password_file", m["last_error"])
        # One login try (the next one in 5 minutes), with the configured secret.
        self.assertEqual(len(up.auth_attempts), 1)
        for a in up.auth_attempts:
            self.assertEqual((a["login"], a["password"], a["success"], a["tls"]), (USER, PASSWORD, False, True))
        self.assertEqual(d.stop(), 0)

    def test_a_password_file_other_users_can_read_is_refused_with_the_chmod(self):
        # ssh and msmtp refuse such a secret; so does outbox (issue 12), and
        # says which chmod fixes it. The message waits, nothing is sent.
        up = self.upstream("implicit", users={USER: PASSWORD})
        d = start_relay(self, up, "implicit", auth="plain")
        pw = os.path.join(d.dir, "upstream.secret")
        os.chmod(pw, 0o644)
        d.restart()
        ev = d.wait_event("upstream_error", upstream="mail")
        self.assertIn("password_file %s is readable by every user (mode 0644): chmod 600 %s" % (pw, pw), ev["error"])
        qid = self.submit(d)
        time.sleep(1)
        self.assertEqual(up.connections, 0)
        os.chmod(pw, 0o600)
        d.restart()
        up.wait_delivered(1, timeout=8)
        d.wait_event("delivered", id=qid)

    def test_missing_password_file_then_fixed(self):
        # A secret outboxd cannot read: the message waits with the reason
        # shown; once the file is there, a restart sends it within seconds.
        up = self.upstream("implicit", users={USER: PASSWORD})
        d = start_relay(self, up, "implicit", auth="plain")
        pw = os.path.join(d.dir, "upstream.secret")
        os.unlink(pw)
        d.restart()
        ev = d.wait_event("upstream_error", upstream="mail")
        self.assertIn("password_file", ev["error"])
        qid = self.submit(d)
        deadline = time.monotonic() + 10
        while "password_file" not in d.show(qid)["last_error"]:
            self.assertLess(time.monotonic(), deadline, d.show(qid))
            time.sleep(0.1)
        m = d.show(qid)
        self.assertIn(m["state"], ("queued", "deferred"))
        self.assertEqual(m["attempts"], 0)
        self.assertEqual(up.connections, 0)
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(pw, 0o600)
        d.restart()
        up.wait_delivered(1, timeout=8)
        d.wait_event("delivered", id=qid)
        self.assertEqual(d.stop(), 0)

    def test_missing_password_file_expires(self):
        up = self.upstream("implicit", users={USER: PASSWORD})
        d = start_relay(self, up, "implicit", auth="plain", retry={"lifetime": "3s"})
        os.unlink(os.path.join(d.dir, "upstream.secret"))
        d.restart()
        qid = self.submit(d)
        ev = d.wait_event("expired", id=qid, timeout=10)
        self.assertIn("password_file", ev["reply"])
        m = d.show(qid)
        self.assertEqual(m["state"], "failed")
        self.assertIn("expired", m["last_error"])
        d.wait_event("bounce_queued", original=qid)
        self.assertEqual(d.stop(), 0)

    def test_535_naming_the_authorization_code(self):
        # Chinese providers answer with words about the authorization code (授权码).
        up = self.upstream("implicit", users={USER: "the-real-one"})
        up.auth_message = "535 Error: authentication failed, please use the authorization code"
        d = start_relay(self, up, "implicit", auth="login")
        qid = self.submit(d)
        self.check_deferred_not_bounced(d, up, qid, [r"535"], settle=1, retried=False)
        ev = d.events("upstream_failed", upstream="mail")[-1]
        self.assertIn("authorization code", ev.get("hint", ""), ev)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
