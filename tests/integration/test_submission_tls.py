#!/usr/bin/python3
"""Submission on 587 (STARTTLS) and 465 (implicit TLS) with SMTP AUTH, as
applications and tools do it: Python smtplib exactly as documented, swaks,
Postfix's smtp-source. AUTH only inside TLS (538 and not advertised outside),
535 on wrong credentials, 550 5.7.1 for senders outside may_send_as, 530 for
MAIL without AUTH; STARTTLS command injection probes over a real socket;
sender rights of local users on the Unix socket.

Certificates come from the openssl CLI at test time; the [[user]] hash from
Python's hashlib.scrypt in outbox's format (a cross-check of the format)."""

import os
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

USER = "app"
PASSWORD = "correct horse battery staple"


def message(sender, to, subject="tls submission"):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "Message-ID: <%d@client.test>\r\n\r\nbody over TLS\r\n"
            % (sender, to, subject, time.monotonic_ns())).encode()


def tls_daemon(limits=None, users=None, extra=""):
    """A daemon with: the harness's Unix socket and trusted plaintext TCP
    listener ("smtp", 127.0.0.0/8 trusted), "submission" (STARTTLS, auth
    required, nothing trusted), "smtps" (implicit TLS, auth required, nothing
    trusted), "open" (STARTTLS, auth optional, nothing trusted)."""
    d = harness.Daemon(limits=limits, name="outbox-sec")
    certs = harness.make_test_certs(d.dir)
    d.certs = certs
    d.submission = harness.free_port()
    d.smtps = harness.free_port()
    d.open = harness.free_port()
    if users is None:
        users = [(USER, harness.scrypt_hash(PASSWORD), ["*@example.com", "noreply@other.test"])]
    toml = []
    for name, port, tls, auth in (("submission", d.submission, "starttls", "required"),
                                  ("smtps", d.smtps, "implicit", "required"),
                                  ("open", d.open, "starttls", "optional")):
        toml.append('[[listen]]\nname = "%s"\naddress = "127.0.0.1:%d"\ntrusted_networks = []\n'
                    'tls = "%s"\nauth = "%s"\n' % (name, port, tls, auth))
    toml.append("[tls]\ncert = %s\nkey = %s\n" % (harness.toml_value(certs["cert"]), harness.toml_value(certs["key"])))
    for name, h, senders in users:
        toml.append("[[user]]\nname = %s\npassword_hash = %s\nmay_send_as = %s\n"
                    % (harness.toml_value(name), harness.toml_value(h), harness.toml_value(senders)))
    d.extra_toml = "\n".join(toml) + extra
    d.write_config()
    d.ctx = harness.client_tls_context(certs["ca"])
    return d


class TlsClient(harness.SMTPClient):
    """The harness's raw client, able to switch its socket to TLS."""

    def starttls(self, ctx):
        assert not self.buf, "bytes after the 220 to STARTTLS: %r" % self.buf
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")


class SubmissionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon()
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def queued(self, qid):
        q = self.d.queue_by_id()
        self.assertIn(qid, q)
        return q[qid]

    def last_queue_id(self, s):
        return harness.QUEUE_ID_RE.search(s.last_reply[1]).group(1).decode()

    # --- smtplib, exactly as documented -----------------------------------------------------

    def test_starttls_login_sendmail(self):
        with harness.RecordingSMTP("127.0.0.1", self.d.submission, local_hostname="client.test", timeout=30) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"), "AUTH advertised before TLS")
            s.starttls(context=self.d.ctx)
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertIn("PLAIN", s.esmtp_features["auth"].split())
            self.assertIn("LOGIN", s.esmtp_features["auth"].split())
            code, text = s.login(USER, PASSWORD)
            self.assertEqual((code, text), (235, b"2.7.0 Authentication successful"))
            msg = message("someone@example.com", "rcpt@dest.test")
            self.assertEqual(s.sendmail("someone@example.com", ["rcpt@dest.test"], msg), {})
            qid = s.last_queue_id
        m = self.queued(qid)
        self.assertEqual(m["sender"], "someone@example.com")
        stored = self.d.body(qid)
        harness.assert_stored(self, stored, msg)
        self.assertRegex(stored.split(b"\r\n\r\n")[0], rb"with ESMTPSA id " + qid.encode())
        ev = self.d.wait_event("auth", user=USER)
        self.assertEqual(ev["mechanism"], "PLAIN")
        self.assertEqual(ev["client"], "127.0.0.1")
        self.assertEqual(self.d.wait_event("accepted", id=qid)["user"], USER)

    def test_smtp_ssl_login_sendmail(self):
        with _RecordingSSL("127.0.0.1", self.d.smtps, local_hostname="client.test", context=self.d.ctx,
                           timeout=30) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertTrue(s.has_extn("auth"))
            s.login(USER, PASSWORD)
            msg = message("noreply@other.test", "rcpt@dest.test", "implicit")
            self.assertEqual(s.sendmail("noreply@other.test", ["rcpt@dest.test"], msg), {})
            qid = s.last_queue_id
        self.assertEqual(self.queued(qid)["sender"], "noreply@other.test")
        self.assertIn(b" with ESMTPSA id " + qid.encode(), self.d.body(qid))

    def test_auth_login_mechanism(self):
        with _RecordingSSL("127.0.0.1", self.d.smtps, local_hostname="client.test", context=self.d.ctx,
                           timeout=30) as s:
            s.ehlo()
            s.user, s.password = USER, PASSWORD
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235)
            msg = message("x@example.com", "rcpt@dest.test", "login")
            s.sendmail("x@example.com", ["rcpt@dest.test"], msg)
        self.d.wait_event("auth", user=USER, mechanism="LOGIN")

    def test_wrong_password_535(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.d.smtps, local_hostname="client.test", context=self.d.ctx,
                              timeout=30) as s:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login(USER, "not the password")
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertEqual(cm.exception.smtp_error, b"5.7.8 Authentication credentials invalid")
        # smtplib tries PLAIN, then LOGIN, after a 535.
        ev = self.d.wait_event("auth_failed", user=USER, mechanism="PLAIN")
        self.assertEqual(ev["client"], "127.0.0.1")
        self.assertNotIn(b"not the password", self.d.log_bytes())
        self.assertNotIn(PASSWORD.encode(), self.d.log_bytes())

    def test_unknown_user_535(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.d.smtps, context=self.d.ctx, timeout=30) as s:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("nosuchuser", PASSWORD)
            self.assertEqual(cm.exception.smtp_code, 535)

    def test_auth_before_starttls_538_and_not_advertised(self):
        with TlsClient(("127.0.0.1", self.d.submission)) as c:
            r = c.greet()
            self.assertFalse(any(l[4:].upper().startswith("AUTH") for l in r.lines), r)
            r = c.cmd("AUTH PLAIN " + _plain(USER, PASSWORD))
            self.assertEqual((r.code, r.text), (538, "5.7.11 Encryption required for requested authentication mechanism"))
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.code, 538)
            # MAIL without AUTH: 530 (RFC 6409 §4.3).
            r = c.cmd("MAIL FROM:<someone@example.com>")
            self.assertEqual((r.code, r.text), (530, "5.7.0 Authentication required"))
        # smtplib refuses too: it sees no AUTH extension.
        with smtplib.SMTP("127.0.0.1", self.d.submission, timeout=30) as s:
            with self.assertRaises(smtplib.SMTPNotSupportedError):
                s.login(USER, PASSWORD)

    def test_sender_outside_may_send_as_550(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.d.smtps, context=self.d.ctx, timeout=30) as s:
            s.login(USER, PASSWORD)
            for sender in ("ceo@example.net", "someone@example.com.evil.test", "noreply2@other.test", ""):
                with self.subTest(sender=sender):
                    with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                        s.sendmail(sender, ["rcpt@dest.test"], message("x@x.test", "rcpt@dest.test"))
                    self.assertEqual(cm.exception.smtp_code, 550)
                    shown = sender if sender else ""
                    self.assertEqual(cm.exception.smtp_error,
                                     ("5.7.1 Sender address <%s> not owned by user %s" % (shown, USER)).encode())
                    s.rset()
            # The domain is compared without regard to case.
            self.assertEqual(s.sendmail("Someone@EXAMPLE.com", ["rcpt@dest.test"],
                                        message("Someone@EXAMPLE.com", "rcpt@dest.test")), {})
        ev = self.d.wait_event("rejected", reason="sender_not_owned", user=USER)
        self.assertIn(ev["from"], ("ceo@example.net", "someone@example.com.evil.test", "noreply2@other.test", "<>"))

    def test_mail_without_auth_on_required_530(self):
        for port, implicit in ((self.d.smtps, True), (self.d.submission, False)):
            with self.subTest(implicit=implicit):
                if implicit:
                    s = smtplib.SMTP_SSL("127.0.0.1", port, context=self.d.ctx, timeout=30)
                else:
                    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
                    s.starttls(context=self.d.ctx)
                with s:
                    with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                        s.sendmail("someone@example.com", ["rcpt@dest.test"], b"Subject: x\r\n\r\nx\r\n")
                    self.assertEqual((cm.exception.smtp_code, cm.exception.smtp_error),
                                     (530, b"5.7.0 Authentication required"))

    def test_auth_twice_and_in_transaction_503(self):
        with TlsClient(("127.0.0.1", self.d.smtps)) as c:
            c.starttls(self.d.ctx)
            c.greet()
            self.assertEqual(c.cmd("AUTH PLAIN " + _plain(USER, PASSWORD)).code, 235)
            r = c.cmd("AUTH PLAIN " + _plain(USER, PASSWORD))
            self.assertEqual((r.code, r.text), (503, "5.5.1 Error: already authenticated"))
        with TlsClient(("127.0.0.1", self.d.open)) as c:
            c.greet()
            self.assertEqual(c.cmd("STARTTLS").code, 220)
            c.starttls(self.d.ctx)
            c.cmd("EHLO client.test")
            # auth = optional, untrusted: MAIL still needs AUTH.
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>").code, 530)
            self.assertEqual(c.cmd("AUTH PLAIN " + _plain(USER, PASSWORD)).code, 235)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>").code, 250)
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.code, 503)

    def test_auth_exchange_details(self):
        with TlsClient(("127.0.0.1", self.d.smtps)) as c:
            c.starttls(self.d.ctx)
            c.greet()
            r = c.cmd("AUTH PLAIN")
            self.assertEqual(r.lines, ["334 "])
            r = c.cmd("*")
            self.assertEqual((r.code, r.text), (501, "5.7.0 Authentication aborted"))
            r = c.cmd("AUTH PLAIN !!!notbase64")
            self.assertEqual((r.code, r.text), (501, "5.5.2 Cannot decode response"))
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.lines, ["334 VXNlcm5hbWU6"])
            r = c.cmd("A" * 12287)
            self.assertEqual((r.code, r.text), (500, "5.5.6 Authentication exchange line is too long"))
            r = c.cmd("AUTH CRAM-MD5")
            self.assertEqual((r.code, r.text), (504, "5.5.4 Unrecognized authentication type"))
            r = c.cmd("AUTH LOGIN")
            c.cmd(_b64(USER))
            r = c.cmd(_b64(PASSWORD))
            self.assertEqual(r.code, 235)

    # --- other clients ---------------------------------------------------------------------------

    def swaks(self, *args):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        return subprocess.run(["swaks", "--server", "127.0.0.1"] + list(args), capture_output=True, timeout=60)

    def test_swaks_starttls_and_implicit(self):
        for flag, port in (("--tls", self.d.submission), ("--tlsc", self.d.smtps)):
            for mech in ("PLAIN", "LOGIN"):
                with self.subTest(flag=flag, mech=mech):
                    p = self.swaks("--port", str(port), flag, "--auth", mech, "--au", USER, "--ap", PASSWORD,
                                   "--from", "swaks@example.com", "--to", "rcpt@dest.test", "--helo", "client.test",
                                   "--header", "Subject: swaks " + flag)
                    out = p.stdout.decode(errors="replace")
                    self.assertEqual(p.returncode, 0, out + p.stderr.decode(errors="replace"))
                    self.assertIn("235 2.7.0 Authentication successful", out)
                    m = re.search(r"250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)", out)
                    self.assertTrue(m, out)
                    self.assertEqual(self.queued(m.group(1))["sender"], "swaks@example.com")
        # swaks with a wrong password gets the 535 and exits non-zero.
        p = self.swaks("--port", str(self.d.smtps), "--tlsc", "--auth", "PLAIN", "--au", USER, "--ap", "wrong",
                       "--from", "swaks@example.com", "--to", "rcpt@dest.test")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("535 5.7.8", p.stdout.decode(errors="replace"))

    def test_tls12_ciphers_are_mozilla_intermediate(self):
        # OpenSSL's defaults let a client negotiate AES128-SHA (CBC, RSA key
        # exchange): refused now; an ECDHE AEAD suite and TLS 1.3 work.
        def s_client(*args):
            return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.d.smtps, "-brief"] +
                                  list(args), input=b"QUIT\r\n", capture_output=True, timeout=30)
        # (The test certificate is ECDSA P-256.)
        for weak in ("AES128-SHA", "AES256-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"):
            with self.subTest(cipher=weak):
                p = s_client("-tls1_2", "-cipher", weak)
                self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        for good in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
            p = s_client("-tls1_2", "-cipher", good)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(good.encode(), p.stderr + p.stdout)
        p = s_client("-tls1_3")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"TLSv1.3", p.stderr + p.stdout)
        p = s_client("-tls1_1")
        self.assertNotEqual(p.returncode, 0)

    def test_smtp_source_on_the_trusted_plaintext_listener(self):
        # smtp-source speaks no TLS and no AUTH: it is what a trusted host's
        # bulk sender looks like, so it uses the plaintext listener whose
        # trusted_networks hold 127.0.0.0/8.
        exe = "/usr/sbin/smtp-source"
        if not os.path.exists(exe):
            self.skipTest("smtp-source not installed")
        before = len(self.d.queue())
        p = subprocess.run([exe, "-s", "3", "-m", "9", "-l", "2000", "-f", "bulk@example.com",
                            "-t", "rcpt@dest.test", "127.0.0.1:%d" % self.d.port],
                           capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        q = [m for m in self.d.queue() if m["sender"] == "bulk@example.com"]
        self.assertEqual(len(q), 9, q)
        self.assertEqual(len(self.d.queue()), before + 9)
        # On the listeners without trust it gets 530 and stores nothing.
        p = subprocess.run([exe, "-m", "1", "-f", "bulk2@example.com", "-t", "rcpt@dest.test",
                            "127.0.0.1:%d" % self.d.open], capture_output=True, timeout=60)
        self.assertFalse([m for m in self.d.queue() if m["sender"] == "bulk2@example.com"])

    # --- STARTTLS injection (CVE-2011-0411) over a real socket ------------------------------------

    def test_starttls_command_injection_is_discarded(self):
        probes = [b"NOOP\r\n", b"EHLO injected.test\r\n", b"MAIL FROM:<i@attacker.test>\r\n", b"RSET\r\n",
                  b"NOOP\r\nNOOP\r\nNOOP\r\n", b"RSET", b"HELP\r\n"]
        for injected in probes:
            with self.subTest(injected=injected):
                with TlsClient(("127.0.0.1", self.d.open)) as c:
                    c.greet()
                    c.send(b"STARTTLS\r\n" + injected)   # one segment
                    r = c.reply()
                    self.assertEqual((r.code, r.text), (220, "2.0.0 Ready to start TLS"))
                    c.starttls(self.d.ctx)
                    # The first reply inside TLS answers what we send now.
                    c.send(b"VRFY postmaster\r\n")
                    r = c.reply()
                    self.assertEqual(r.code, 252, "reply to injected plaintext inside TLS: %r" % (r,))
                    self.assertTrue(c.nothing_pending(0.3), "extra reply: %r" % c.buf)
                    # The session starts over: EHLO required (RFC 3207 §4.2).
                    r = c.cmd("MAIL FROM:<a@example.com>")
                    self.assertEqual((r.code, r.text), (503, "5.5.1 Error: send HELO/EHLO first"))
                    r = c.cmd("EHLO client.test")
                    self.assertEqual(r.code, 250)
                    self.assertNotIn("250-STARTTLS", r.lines)
        self.assertTrue(self.d.events("discarded", reason="pipelined_after_starttls"))

    def test_starttls_split_across_segments_still_discarded(self):
        with TlsClient(("127.0.0.1", self.d.open)) as c:
            c.greet()
            c.send(b"STARTTLS\r\n")
            self.assertEqual(c.reply().code, 220)
            # Plaintext sent after the 220 but before the ClientHello.
            c.send(b"NOOP\r\n")
            time.sleep(0.2)
            try:
                c.starttls(self.d.ctx)
            except (ssl.SSLError, OSError):
                return  # refusing the handshake is fine too; executing NOOP is not
            c.send(b"VRFY x\r\n")
            self.assertEqual(c.reply().code, 252)


class LocalUserTest(unittest.TestCase):
    """[[local_user]] on the Unix socket: listed users only, with their senders."""

    def daemon(self, local_users):
        extra = ""
        for name, senders in local_users:
            extra += "[[local_user]]\nname = %s\nmay_send_as = %s\n" % (harness.toml_value(name),
                                                                    harness.toml_value(senders))
        d = harness.Daemon(extra_toml=extra, name="outbox-local")
        d.start()
        self.addCleanup(d.cleanup)
        return d

    def test_listed_user_only_its_senders(self):
        me = pwd.getpwuid(os.getuid()).pw_name
        d = self.daemon([(me, ["me@example.com", "*@ops.example.com"])])
        with d.client(unix=True) as c:
            c.greet()
            r = c.cmd("MAIL FROM:<me@example.com>")
            self.assertEqual(r.code, 250)
            c.cmd("RSET")
            r = c.cmd("MAIL FROM:<cron@OPS.example.com>")
            self.assertEqual(r.code, 250)
            c.cmd("RSET")
            r = c.cmd("MAIL FROM:<ceo@example.com>")
            self.assertEqual((r.code, r.text), (550, "5.7.1 Sender address <ceo@example.com> not owned by user %s" % me))
        d.wait_event("rejected", reason="sender_not_owned", user=me)
        # TCP from loopback: the kernel names the same local user (issue 11,
        # loopback identity), so the same rule and the same 550.
        with d.client() as c:
            c.greet()
            r = c.cmd("MAIL FROM:<ceo@example.com>")
            self.assertEqual((r.code, r.text), (550, "5.7.1 Sender address <ceo@example.com> not owned by user %s" % me))
            c.cmd("RSET")
            self.assertEqual(c.cmd("MAIL FROM:<me@example.com>").code, 250)

    def test_unlisted_user_may_not_submit(self):
        me = pwd.getpwuid(os.getuid()).pw_name
        d = self.daemon([("somebody-else", ["*"])])
        with d.client(unix=True) as c:
            c.greet()
            r = c.cmd("MAIL FROM:<me@example.com>")
            self.assertEqual((r.code, r.text), (550, "5.7.1 Local user %s may not submit mail" % me))
        d.wait_event("rejected", reason="local_user_not_allowed")
        # outbox-sendmail reports it as a policy refusal (EX_NOPERM).
        p = d.sendmail(["rcpt@dest.test"], input=b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual(p.returncode, harness.EX_NOPERM, p.stderr)

    def test_no_local_users_listed_means_anyone(self):
        d = self.daemon([])
        with d.client(unix=True) as c:
            c.greet()
            self.assertEqual(c.cmd("MAIL FROM:<anyone@anywhere.test>").code, 250)


class ConfigTest(unittest.TestCase):
    def test_bad_password_hash_refused_at_start(self):
        d = harness.Daemon(extra_toml='[[user]]\nname = "u"\npassword_hash = "plaintext-oops"\n', name="outbox-cfg")
        self.addCleanup(d.cleanup)
        p = subprocess.run([harness.binpath("outboxd"), "--config", d.config_path, "--check"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, harness.EX_CONFIG)
        self.assertIn(b"user[0].password_hash", p.stderr)
        self.assertNotIn(b"plaintext-oops", p.stderr)  # the (would-be) secret is not echoed

    def test_pbkdf2_hash_from_the_config_works(self):
        import base64
        import hashlib
        salt = os.urandom(16)
        key = hashlib.pbkdf2_hmac("sha256", b"pbkdf2-pw", salt, 20000, 32)
        b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
        h = "$pbkdf2-sha256$i=20000$%s$%s" % (b64(salt), b64(key))
        d = tls_daemon(users=[("legacy", h, ["*"])])
        self.addCleanup(d.cleanup)
        d.start()
        with smtplib.SMTP_SSL("127.0.0.1", d.smtps, context=d.ctx, timeout=30) as s:
            self.assertEqual(s.login("legacy", "pbkdf2-pw")[0], 235)


class _RecordingSSL(smtplib.SMTP_SSL):
    """SMTP_SSL remembering the reply to the final dot, like harness.RecordingSMTP."""

    last_reply = None

    def data(self, msg):
        code, resp = super().data(msg)
        self.last_reply = (code, resp)
        return code, resp

    @property
    def last_queue_id(self):
        m = harness.QUEUE_ID_RE.search(self.last_reply[1])
        return m.group(1).decode() if m else None


def _b64(s):
    import base64
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _plain(user, password):
    return _b64(b"\0" + user.encode() + b"\0" + password.encode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
