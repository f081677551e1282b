#!/usr/bin/python3
"""Relay happy paths end to end: Python smtplib submits to outboxd, outboxd
relays to a real SMTP upstream (aiosmtpd in this process) over implicit TLS
(RFC 8314) and STARTTLS (RFC 3207), authenticated with AUTH PLAIN and LOGIN
(RFC 4954), the certificate verified against a test CA (ca_file, verify =
true, tls_name defaulting to the host). The upstream receives exactly the
bytes `outboxctl show ID --body` prints; the spool, `outboxctl show --json`
and the log tell the same story (SPEC "Relay", "outboxctl", "Logs")."""

import email.utils
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import upstream  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

USER = "app@provider.test"
PASSWORD = "auth-code-Zq9"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def message(sender, rcpts, subject, body_lines):
    lines = ["From: App <%s>" % sender, "To: %s" % ", ".join(rcpts), "Subject: " + subject,
             "Date: " + email.utils.formatdate(), "Message-ID: " + email.utils.make_msgid(domain="client.test"),
             ""] + body_lines
    return ("\r\n".join(lines) + "\r\n").encode()


BODY = ["Hello through the relay.", ".a line starting with a dot", "..two dots", ".", "",
        "tab\there   trailing spaces   ", "x" * 900, "end"]


def start_relay(test, up, tls, auth=None, user=USER, password=PASSWORD, extra=None, retry=None, name="outbox-relay"):
    """An outboxd relaying everything to `up`; returns the daemon (cleaned up
    with the test)."""
    d = harness.Daemon(name=name)
    test.addCleanup(d.cleanup)
    keys = dict(extra or {})
    if user is not None:
        pw = os.path.join(d.dir, "upstream.secret")
        with open(pw, "w") as f:
            f.write(password + "\n")
        os.chmod(pw, 0o600)
        keys.update(username=user, password_file=pw)
        if auth:
            keys["auth"] = auth
    d.extra_toml = relay_toml([upstream_section("mail", up.port, tls=tls, **keys)], retry=retry)
    d.write_config()
    d.start()
    return d


class RelayDelivery(unittest.TestCase):
    def upstream(self, mode, **kw):
        up = Upstream(mode, **kw).start()
        self.addCleanup(up.stop)
        return up

    def submit(self, d, sender, rcpts, msg):
        with d.smtplib() as s:
            refused = s.sendmail(sender, rcpts, msg)
            self.assertEqual(refused, {})
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        return qid

    def check_delivered(self, d, up, qid, sender, rcpts, mechanism, tls):
        got = up.wait_delivered(1)
        self.assertEqual(len(got), 1, got)
        m = got[0]
        stored = d.body(qid)
        # Byte for byte what the spool holds (dot-stuffing undone by the upstream).
        self.assertEqual(m.data, stored)
        self.assertEqual(m.mail_from, sender)
        self.assertEqual(m.rcpt_tos, rcpts)
        self.assertEqual(m.tls, tls)
        self.assertIn("SIZE=%d" % len(stored), m.mail_options)
        self.assertEqual(up.sent_behind_mail, [b""], "commands pipelined to a server without PIPELINING")
        if mechanism:
            self.assertEqual(m.auth_login, USER.encode())
            self.assertEqual(len(up.auth_attempts), 1, up.auth_attempts)
            a = up.auth_attempts[0]
            self.assertEqual((a["mechanism"], a["login"], a["password"], a["success"], a["tls"]),
                             (mechanism, USER, PASSWORD, True, True))
        else:
            self.assertEqual(up.auth_attempts, [])

        evs = [d.wait_event("delivered", id=qid, to=r) for r in rcpts]
        for ev in evs:
            self.assertEqual(ev["from"], sender)
            self.assertEqual(ev["relay"], "mail[127.0.0.1:%d]" % up.port)
            self.assertRegex(ev["delay"], r"^\d+(\.\d+)?$")
            self.assertLess(float(ev["delay"]), 30)
            self.assertEqual(ev["attempt"], "1")
            self.assertEqual(ev["dsn"], "2.0.0")
            self.assertTrue(ev["reply"].startswith("250 2.0.0 OK: queued as UP"), ev)
            self.assertNotIn("possible_duplicate", ev)
        log = d.log_bytes()
        self.assertNotIn(PASSWORD.encode(), log)
        self.assertNotIn(b"Hello through the relay", log)

        shown = d.show(qid)
        self.assertEqual(shown["state"], "sent")
        self.assertEqual(shown["attempts"], 1)
        self.assertIsNone(shown["next_attempt"])
        self.assertEqual([r["address"] for r in shown["recipients"]], rcpts)
        for r in shown["recipients"]:
            self.assertEqual(r["state"], "sent")
            self.assertTrue(r["last_reply"].startswith("250"), r)
        hist = shown["attempts_history"]
        self.assertEqual(len(hist), 1, hist)
        h = hist[0]
        self.assertEqual(h["upstream"], "mail")
        self.assertEqual(h["outcome"], "delivered")
        self.assertTrue(h["reply"].startswith("250 2.0.0 OK: queued as UP"), h)
        self.assertEqual(sorted(h["recipients"]), sorted(rcpts))
        self.assertRegex(h["time"], RFC3339_UTC)
        self.assertNotIn(PASSWORD, d.ctl("show", qid).stdout.decode())
        return m

    def run_case(self, mode, tls, auth, mechanism, **upkw):
        up = self.upstream(mode, users={USER: PASSWORD}, **upkw)
        d = start_relay(self, up, tls, auth=auth)
        sender, rcpts = "app@client.test", ["alice@example.test", "bob@example.net"]
        msg = message(sender, rcpts, "relay %s %s" % (mode, auth), BODY)
        qid = self.submit(d, sender, rcpts, msg)
        m = self.check_delivered(d, up, qid, sender, rcpts, mechanism, tls=True)
        self.assertTrue(m.data.endswith(msg))
        self.assertEqual(d.stop(), 0)

    def test_threads_are_named_and_relaying_yields_to_submission(self):
        """Every thread of outboxd is named (top -H, perf) and the relay, its
        body reads and the WAL checkpointer run under SCHED_BATCH: same share
        of the CPU, but their wake-ups never preempt the submission loop or
        the store writer a waiting client depends on (queue/thread_role.h)."""
        up = self.upstream("starttls", users={USER: PASSWORD})
        d = start_relay(self, up, "starttls", auth="plain")
        sender, rcpts = "app@client.test", ["alice@example.test"]
        qid = self.submit(d, sender, rcpts, message(sender, rcpts, "threads", BODY))
        self.assertEqual(len(up.wait_delivered(1)), 1)
        self.assertEqual(d.show(qid)["state"], "sent")
        pid = d.proc.pid
        threads = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
            # comm is between the first "(" and the last ")"; policy is
            # field 41 (proc(5)), the 39th after the ")".
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            policy = int(stat[stat.rindex(")") + 2:].split()[38])
            threads.setdefault(comm, []).append((int(tid), policy))
        SCHED_OTHER, SCHED_BATCH = 0, 3
        main = [p for t, p in threads.get("outboxd", []) if t == pid]
        self.assertEqual(main, [SCHED_OTHER], threads)
        for name in ("relay", "body-reader", "checkpoint"):
            self.assertIn(name, threads, threads)
            self.assertEqual({p for _, p in threads[name]}, {SCHED_BATCH}, (name, threads))
        self.assertIn("store", threads, threads)
        self.assertEqual({p for _, p in threads["store"]}, {SCHED_OTHER}, threads)
        self.assertEqual(d.stop(), 0)

    # implicit TLS (port 465 style) -----------------------------------------------------
    def test_implicit_tls_auth_plain(self):
        self.run_case("implicit", "implicit", "plain", "PLAIN")

    def test_implicit_tls_auth_login(self):
        self.run_case("implicit", "implicit", "login", "LOGIN")

    # STARTTLS (port 587 style) ---------------------------------------------------------
    def test_starttls_auth_auto_picks_plain(self):
        self.run_case("starttls", "starttls", "auto", "PLAIN")

    def test_starttls_auth_login(self):
        self.run_case("starttls", "starttls", "login", "LOGIN")

    def test_starttls_auth_auto_falls_back_to_login(self):
        self.run_case("starttls", "starttls", "auto", "LOGIN", exclude_auth=["PLAIN"])

    # certificate names -------------------------------------------------------------------
    def simple_relay(self, up, tls, **keys):
        d = harness.Daemon(name="outbox-relay")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls=tls, **keys)])
        d.write_config()
        d.start()
        qid = self.submit(d, "app@client.test", ["n@example.test"],
                          message("app@client.test", ["n@example.test"], "names", BODY))
        got = up.wait_delivered(1)
        self.assertEqual(got[0].data, d.body(qid))
        self.assertTrue(got[0].tls)
        self.assertEqual(d.stop(), 0)

    def test_host_name_verified_by_dns_name(self):
        # host = "localhost": the certificate's DNS name is checked (and ::1,
        # where nothing listens, is skipped for 127.0.0.1 if tried first).
        self.simple_relay(self.upstream("implicit"), "implicit", host="localhost")

    def test_tls_name_names_the_certificate(self):
        # The server's certificate names wrong.example only: tls_name says so.
        self.simple_relay(self.upstream("starttls", cert="wrong"), "starttls", tls_name="wrong.example")

    def test_verify_false_accepts_a_self_signed_certificate(self):
        self.simple_relay(self.upstream("implicit", cert="self"), "implicit", verify=False, ca_file=None)

    # XOAUTH2 (Gmail, Microsoft 365) -------------------------------------------------------
    def test_xoauth2_token_file(self):
        up = self.upstream("implicit", tokens={USER: "ya29.token-from-file"})
        d = harness.Daemon(name="outbox-relay")
        self.addCleanup(d.cleanup)
        tok = os.path.join(d.dir, "token")
        with open(tok, "w") as f:
            f.write("ya29.token-from-file\n")
        os.chmod(tok, 0o600)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls="implicit", username=USER, auth="xoauth2",
                                                    oauth2_token_file=tok)])
        d.write_config()
        d.start()
        qid = self.submit(d, "app@client.test", ["x@example.test"], message("app@client.test", ["x@example.test"],
                                                                            "xoauth2", BODY))
        got = up.wait_delivered(1)
        self.assertEqual(got[0].data, d.body(qid))
        self.assertEqual([(a["mechanism"], a["login"], a["success"]) for a in up.auth_attempts],
                         [("XOAUTH2", USER, True)])
        self.assertNotIn(b"ya29.token-from-file", d.log_bytes())
        self.assertEqual(d.stop(), 0)

    def test_xoauth2_token_command_and_a_refused_token(self):
        up = self.upstream("implicit", tokens={USER: "fresh-token"})
        d = harness.Daemon(name="outbox-relay")
        self.addCleanup(d.cleanup)
        script = os.path.join(d.dir, "get-token")
        state = os.path.join(d.dir, "calls")
        # The first token is stale (the provider refuses it); later calls give a fresh one.
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho x >> %s\nif [ $(wc -l < %s) -le 1 ]; then echo stale-token; "
                    "else echo fresh-token; fi\n" % (state, state))
        os.chmod(script, 0o755)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls="implicit", username=USER, auth="xoauth2",
                                                    oauth2_token_command=[script])])
        d.write_config()
        d.start()
        qid = self.submit(d, "app@client.test", ["x@example.test"], message("app@client.test", ["x@example.test"],
                                                                            "xoauth2", BODY))
        ev = d.wait_event("upstream_failed", upstream="mail")
        self.assertIn("535", ev["error"])
        self.assertIn("token", ev.get("hint", ""), ev)
        got = up.wait_delivered(1, timeout=10)
        self.assertEqual(got[0].data, d.body(qid))
        self.assertEqual([(a["password"], a["success"]) for a in up.auth_attempts],
                         [("stale-token", False), ("fresh-token", True)])
        m = d.show(qid)
        self.assertEqual(m["attempts"], 2, "the refused login was a try of this message (issue 8 item 9)")
        self.assertNotIn(b"stale-token", d.log_bytes())
        self.assertEqual(d.stop(), 0)

    # plaintext loopback, no AUTH ---------------------------------------------------------
    def test_plaintext_8bit_and_several_messages(self):
        up = self.upstream("plain")
        d = start_relay(self, up, "none", user=None)
        sender = "cron@client.test"
        msgs = {}
        for i in range(3):
            rc = ["r%d@example.test" % i]
            body = message(sender, rc, "eight bit %d" % i,
                           ["Grüße aus Köln, テスト %d" % i, ".", ".."]).replace(b"\r\n", b"\r\n", 1)
            body = body.decode().encode("utf-8")
            with d.smtplib() as s:
                s.sendmail(sender, rc, body, mail_options=["BODY=8BITMIME"])
                msgs[s.last_queue_id] = (rc, body)
        up.wait_delivered(3)
        for qid, (rc, body) in msgs.items():
            got = up.received_for(rc[0])
            self.assertEqual(len(got), 1, got)
            self.assertEqual(got[0].data, d.body(qid))
            self.assertTrue(got[0].data.endswith(body))
            self.assertIn("BODY=8BITMIME", got[0].mail_options)
            self.assertFalse(got[0].tls)
            d.wait_event("delivered", id=qid)
            self.assertEqual(d.show(qid)["state"], "sent")
        self.assertEqual(len(up.delivered()), 3)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
