#!/usr/bin/python3
"""Abuse of the submission service over real sockets: open-relay probes from
an untrusted address (all 530) and from a trusted one (taken as written, or
501 when malformed), AUTH brute force (421 after max_auth_failures, every
535 slowed down, across connections too), slowloris (min_data_rate cuts a
1 byte/s client with 421 while others submit), pre-greet traffic (554),
connection limits (421 4.7.0)."""

import os
import signal
import smtplib
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_submission_tls import PASSWORD, USER, TlsClient, _plain, tls_daemon  # noqa: E402

# RFC 5321 address forms an open-relay tester tries (S8 in the security notes).
RELAY_PROBES = [
    "victim@outside.test",
    "user%outside.test@localhost",          # the % hack
    "outside.test!user@localhost",          # UUCP bang path
    "@relay.test:user@outside.test",        # source route (RFC 5321 App. C)
    "@a.test,@b.test:user@outside.test",
    '"user@outside.test"@localhost',        # quoted local part holding an @
    "user@[192.0.2.1]",                     # address literal
    "user@outside.test.",                   # trailing dot
    "user@@outside.test",
    "@relay.test:",
]


class OpenRelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon(extra='\n[[listen]]\nname = "untrusted"\naddress = "127.0.0.1:%d"\n'
                                 'trusted_networks = []\n' % harness.free_port())
        cls.d.untrusted = int(cls.d.extra_toml.rsplit("127.0.0.1:", 1)[1].split('"')[0])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def test_untrusted_plaintext_refuses_every_probe(self):
        for probe in RELAY_PROBES:
            with self.subTest(probe=probe):
                with harness.SMTPClient(("127.0.0.1", self.d.untrusted)) as c:
                    c.greet()
                    r = c.cmd("MAIL FROM:<someone@example.com>")
                    self.assertEqual((r.code, r.text), (530, "5.7.0 Authentication required"))
                    # 530 before the address is even looked at (RFC 6409 §4.3).
                    r = c.cmd("MAIL FROM:<%s>" % probe)
                    self.assertEqual(r.code, 530, r)
                    r = c.cmd("RCPT TO:<%s>" % probe)
                    self.assertEqual(r.code, 503, r)
                    self.assertEqual(c.cmd("DATA").code, 503)
        self.assertTrue(self.d.events("rejected", reason="authentication_required"))
        self.assertEqual([m for m in self.d.queue() if m["sender"] != "app@example.com"], [])

    def test_untrusted_over_tls_without_auth_refuses_every_probe(self):
        with TlsClient(("127.0.0.1", self.d.open)) as c:
            c.greet()
            self.assertEqual(c.cmd("STARTTLS").code, 220)
            c.starttls(self.d.ctx)
            c.cmd("EHLO client.test")
            # max_errors (10) would close the session after a few probes.
            for probe in RELAY_PROBES[:4]:
                r = c.cmd("MAIL FROM:<%s>" % probe)
                self.assertEqual(r.code, 530, r)
                r = c.cmd("RCPT TO:<%s>" % probe)
                self.assertEqual(r.code, 503, r)
        self.assertEqual([m for m in self.d.queue() if m["sender"] != "app@example.com"], [])

    def test_trusted_client_gets_addresses_taken_as_written_or_501(self):
        accepted = {}
        with self.d.client() as c:
            c.greet()
            self.assertEqual(c.cmd("MAIL FROM:<app@example.com>").code, 250)
            for probe in RELAY_PROBES:
                r = c.cmd("RCPT TO:<%s>" % probe)
                self.assertIn(r.code, (250, 501), (probe, r))
                if r.code == 501:
                    self.assertEqual(r.text, "5.1.3 Bad recipient address syntax")
                else:
                    accepted[probe] = True
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(b"Subject: relay probes\r\n\r\nx\r\n.\r\n")
            r = c.reply()
            self.assertEqual(r.code, 250, r)
            qid = r.queue_id
        stored = sorted(x["address"] for x in self.d.show(qid)["recipients"])
        expect = sorted({
            "victim@outside.test",
            "user%outside.test@localhost",
            "outside.test!user@localhost",
            "user@outside.test",                 # both source routes, stripped (RFC 5321 §4.1.2)
            '"user@outside.test"@localhost',
            "user@[192.0.2.1]",
        })
        self.assertEqual(stored, expect)
        for bad in ("user@outside.test.", "user@@outside.test", "@relay.test:"):
            self.assertNotIn(bad, accepted)


class BruteForceTest(unittest.TestCase):
    def setUp(self):
        self.d = tls_daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def tls_client(self):
        c = TlsClient(("127.0.0.1", self.d.smtps), timeout=60)
        c.starttls(self.d.ctx)
        c.greet()
        return c

    def timed_auth(self, c, password):
        t0 = time.monotonic()
        r = c.cmd("AUTH PLAIN " + _plain(USER, password), timeout=60)
        return r, time.monotonic() - t0

    def test_failures_are_slowed_and_cut_off(self):
        times = []
        with self.tls_client() as c:
            for i in range(3):
                r, dt = self.timed_auth(c, "guess-%d" % i)
                self.assertEqual((r.code, r.text), (535, "5.7.8 Authentication credentials invalid"))
                times.append(dt)
            r = c.reply()
            self.assertEqual((r.code, r.text), (421, "4.7.0 outbox.test Error: too many authentication failures"))
            self.assertTrue(c.wait_closed(5))
        # 1 s, 2 s, 4 s (plus scrypt): each failure waits longer than the last.
        self.assertGreater(times[0], 0.9, times)
        self.assertGreater(times[1], times[0] + 0.7, times)
        self.assertGreater(times[2], times[1] + 1.5, times)
        self.d.wait_event("disconnect", reason="too_many_auth_failures")
        self.assertEqual(len(self.d.events("auth_failed", user=USER)), 3)
        # A new connection from the same address starts slow (8 s): the delay
        # is kept per address and per user, not per connection.
        with self.tls_client() as c:
            r, dt = self.timed_auth(c, "guess-3")
            self.assertEqual(r.code, 535)
            self.assertGreater(dt, 6.0)
            # Success is never delayed.
            r, dt = self.timed_auth(c, PASSWORD)
            self.assertEqual(r.code, 235)
            self.assertLess(dt, 2.0)
        log = self.d.log_bytes()
        for secret in (b"guess-0", b"guess-1", b"guess-2", b"guess-3", PASSWORD.encode()):
            self.assertNotIn(secret, log)

    def test_many_connections_in_parallel_all_slowed(self):
        # Five guessers at once from one address: the later ones wait longer.
        results = []

        def guess(i):
            with self.tls_client() as c:
                r, dt = self.timed_auth(c, "parallel-%d" % i)
                results.append((r.code, dt))

        ts = harness.run_threads([lambda i=i: guess(i) for i in range(5)])
        for t in ts:
            t.join(120)
        self.assertEqual(sorted(code for code, _ in results), [535] * 5)
        self.assertGreater(max(dt for _, dt in results), 8.0, results)
        # Meanwhile the loop kept serving others (scrypt is off the loop thread).
        with self.d.client() as c:
            t0 = time.monotonic()
            c.greet()
            self.assertLess(time.monotonic() - t0, 2.0)


class SlowlorisTest(unittest.TestCase):
    def test_trickling_client_cut_while_others_submit(self):
        d = harness.Daemon(limits={"min_data_rate": "500/s"}, name="outbox-slow")
        self.addCleanup(d.cleanup)
        d.start()
        slow = d.client(timeout=30)
        slow.greet()
        self.assertEqual(slow.cmd("MAIL FROM:<slowloris@client.test>").code, 250)
        self.assertEqual(slow.cmd("RCPT TO:<rcpt@dest.test>").code, 250)
        self.assertEqual(slow.cmd("DATA").code, 354)

        # A client above the rate (about 2 KB/s), during the same time.
        steady_result = {}

        def steady():
            with d.client(timeout=30) as c:
                c.greet()
                c.cmd("MAIL FROM:<steady@client.test>")
                c.cmd("RCPT TO:<rcpt@dest.test>")
                c.cmd("DATA")
                c.send(b"Subject: steady\r\n\r\n")
                for _ in range(14):
                    c.send(b"s" * 2046 + b"\r\n")
                    time.sleep(1)
                c.send(b".\r\n")
                steady_result["reply"] = c.reply()

        t = harness.run_threads([steady])[0]
        t0 = time.monotonic()
        reply = None
        while time.monotonic() - t0 < 30:
            try:
                slow.send(b"x")
            except OSError:
                break
            if not slow.nothing_pending(1.0):
                break
        reply = slow.reply(timeout=5)
        elapsed = time.monotonic() - t0
        self.assertEqual((reply.code, reply.text), (421, "4.4.2 outbox.test Error: data rate too low"))
        self.assertGreater(elapsed, 9.0)
        self.assertLess(elapsed, 16.0)
        self.assertTrue(slow.wait_closed(5))
        slow.close()
        # Others are served meanwhile.
        qid, _ = d.submit(sender="other@client.test")
        t.join(60)
        self.assertEqual(steady_result["reply"].code, 250, steady_result)
        ev = d.wait_event("disconnect", reason="slow_data")
        self.assertEqual(ev["client"], "127.0.0.1")
        senders = sorted(m["sender"] for m in d.queue())
        self.assertEqual(senders, ["other@client.test", "steady@client.test"])


class PregreetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon(extra='\n[[listen]]\nname = "untrusted"\naddress = "127.0.0.1:%d"\n'
                                 'trusted_networks = []\n' % harness.free_port())
        cls.d.untrusted = int(cls.d.extra_toml.rsplit("127.0.0.1:", 1)[1].split('"')[0])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def talk_first(self, port, data=b"EHLO early.test\r\n"):
        """Connects and sends while the daemon is stopped (SIGSTOP), so the
        bytes are on the socket before any 220 can exist."""
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(data)
            time.sleep(0.2)
        finally:
            self.d.proc.send_signal(signal.SIGCONT)
        c = harness.SMTPClient.__new__(harness.SMTPClient)
        c.sock, c.timeout, c.buf, c.eof = s, 10.0, b"", False
        return c

    def test_untrusted_client_talking_first_gets_554(self):
        with self.talk_first(self.d.untrusted) as c:
            r = c.reply()
            self.assertEqual((r.code, r.text), (554, "5.5.1 Error: SMTP protocol synchronization"))
            self.assertTrue(c.wait_closed(5))
        self.d.wait_event("rejected", reason="pregreet", client="127.0.0.1")

    def test_trusted_client_talking_first_is_served(self):
        with self.talk_first(self.d.port) as c:
            self.assertEqual(c.reply().code, 220)
            self.assertEqual(c.reply().code, 250)

    def test_patient_client_is_served(self):
        with harness.SMTPClient(("127.0.0.1", self.d.untrusted)) as c:
            c.greet()

    def test_implicit_tls_data_with_the_finished_message_gets_554(self):
        raw = socket.create_connection(("127.0.0.1", self.d.smtps), timeout=10)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.d.ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = out.read()
                if data:
                    raw.sendall(data)
                chunk = raw.recv(65536)
                self.assertTrue(chunk, "closed during the handshake")
                inc.write(chunk)
        obj.write(b"EHLO early.test\r\n")
        raw.sendall(out.read())   # the client's Finished and the EHLO in one segment
        buf = b""
        deadline = time.monotonic() + 10
        while b"\r\n" not in buf and time.monotonic() < deadline:
            try:
                buf += obj.read(65536)
            except ssl.SSLWantReadError:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                inc.write(chunk)
            except ssl.SSLZeroReturnError:
                break
        raw.close()
        self.assertTrue(buf.startswith(b"554 5.5.1 Error: SMTP protocol synchronization\r\n"), buf)


class ConnectionLimitsTest(unittest.TestCase):
    def hold(self, d, n):
        out = []
        for _ in range(n):
            c = d.client()
            c.greet()
            out.append(c)
        return out

    def test_max_connections(self):
        d = harness.Daemon(limits={"max_connections": 3, "max_connections_per_client": 50}, name="outbox-lim")
        self.addCleanup(d.cleanup)
        d.start()
        held = self.hold(d, 3)
        with d.client() as c:
            r = c.reply()
            self.assertEqual((r.code, r.text), (421, "4.7.0 Too many connections, try again later"))
            self.assertTrue(c.wait_closed(5))
        d.wait_event("refused", reason="max_connections")
        for c in held:
            c.close()
        time.sleep(0.3)
        d.submit()

    def test_max_connections_per_client(self):
        # 127.0.0.1 outside trusted_networks: it counts like any remote client.
        d = harness.Daemon(limits={"max_connections": 50, "max_connections_per_client": 2}, name="outbox-lim",
                           tcp_listen_extra={"trusted_networks": ["10.0.0.0/8"]})
        self.addCleanup(d.cleanup)
        d.start()
        held = self.hold(d, 2)
        with d.client() as c:
            r = c.reply()
            self.assertEqual((r.code, r.text), (421, "4.7.0 Too many connections from your address, try again later"))
        d.wait_event("refused", reason="max_connections_per_client", client="127.0.0.1")
        # Unix-socket peers are not counted per address.
        with d.client(unix=True) as c:
            c.greet()
        for c in held:
            c.close()
        time.sleep(0.3)
        d.submit(unix=True)

    def test_trusted_networks_are_exempt_from_the_per_client_cap(self):
        # An application's pool of 25 on localhost with the default cap of 20
        # (Postfix exempts $mynetworks the same way); max_connections still holds.
        d = harness.Daemon(limits={"max_connections": 30, "max_connections_per_client": 20}, name="outbox-lim")
        self.addCleanup(d.cleanup)
        d.start()
        pool = []
        for _ in range(25):
            s = smtplib.SMTP(d.host, d.port, local_hostname="client.test", timeout=30)
            pool.append(s)
        for i, s in enumerate(pool):
            code, _ = s.ehlo()
            self.assertEqual(code, 250, "connection %d" % i)
        for i, s in enumerate(pool):
            refused = s.sendmail("app@client.test", ["user@example.test"],
                                 b"From: <app@client.test>\r\nSubject: pool %d\r\n\r\nbody\r\n" % i)
            self.assertEqual(refused, {})
        self.assertEqual(d.events("refused"), [])
        # The global cap still applies to trusted clients.
        extra = [d.client() for _ in range(6)]
        r = extra[-1].reply()
        self.assertEqual((r.code, r.text), (421, "4.7.0 Too many connections, try again later"))
        for c in extra:
            c.close()
        for s in pool:
            s.quit()


if __name__ == "__main__":
    unittest.main(verbosity=2)
