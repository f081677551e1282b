#!/usr/bin/python3
"""Hostile and broken clients (SPEC "SMTP submission"; reference
security-and-reliability.md S1, S2, S9-S14): SMTP smuggling end-of-data
variants, bare CR/LF/NUL, oversize lines and messages, recipient floods,
invalid UTF-8, stalls and abrupt disconnects mid-DATA. After each: nothing
from the bad transaction is stored, another client can still submit, and the
daemon is alive at the end."""

import os
import select
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MAX_SIZE = 100 * 1024   # "100K"

SMUGGLED = (b"MAIL FROM:<smuggler@attacker.test>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"From: smuggler@attacker.test\r\nSubject: smuggled\r\n\r\nSMUGGLED\r\n")

# RFC 5321 §4.1.1.4: only <CRLF>.<CRLF> ends the data. Each of these must be
# taken as body bytes, then refused as a whole with 550 5.6.0.
FAKE_ENDS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\n", b"\n.\r", b"\r.\r\n",
             b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(limits={"max_message_size": "100K", "data_timeout": "2s",
                                       "command_timeout": "30s", "max_recipients": 100})
        cls.d.start()
        cls.expected = set()   # ids we meant to store

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    # helpers ----------------------------------------------------------------------------
    def bystander(self):
        """Another client submits successfully while the bad one is busy."""
        qid, _ = self.d.submit(sender="bystander@client.test")
        self.expected.add(qid)
        return qid

    def assert_only_expected_stored(self):
        listed = self.d.queue()
        ids = {m["id"] for m in listed}
        self.assertEqual(ids - self.expected, set(),
                         "stored but never acknowledged: %r" % [m for m in listed if m["id"] not in self.expected])
        self.assertEqual(self.expected - ids, set(), "acknowledged but not listed")
        for m in listed:
            self.assertNotIn(m["sender"], ("smuggler@attacker.test",))
            self.assertFalse(m["sender"].startswith("bad-"), m)

    def open_data(self, sender, rcpt="user@example.test"):
        c = self.d.client()
        c.greet()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        self.assertEqual(r.code, 250, r)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        self.assertEqual(r.code, 250, r)
        r = c.cmd("DATA")
        self.assertEqual(r.code, 354, r)
        return c

    def assert_session_continues(self, c):
        """No unsolicited replies (nothing smuggled was executed), and the
        session still answers in order."""
        self.assertTrue(c.nothing_pending(0.3), "extra bytes from the server: %r" % c.buf)
        r = c.cmd("NOOP")
        self.assertEqual(r.code, 250, r)
        r = c.cmd("QUIT")
        self.assertEqual(r.code, 221, r)
        self.assertTrue(c.wait_closed(5))

    # tests -------------------------------------------------------------------------------
    def test_smuggling_end_of_data_variants(self):
        for fake in FAKE_ENDS:
            with self.subTest(fake=fake):
                c = self.open_data("bad-smuggle@client.test")
                c.send(b"From: bad-smuggle@client.test\r\nSubject: smuggle\r\n\r\nTesting" + fake + SMUGGLED)
                self.bystander()
                c.send(b"\r\n.\r\n")
                r = c.reply()
                self.assertEqual((r.code, r.enhanced), (550, "5.6.0"), r)
                self.assert_session_continues(c)
                c.close()
        self.assert_only_expected_stored()

    def test_bare_lf_and_cr_inside_body(self):
        for body in (b"Subject: lf\r\n\r\nline one\nline two\r\n",
                     b"Subject: cr\r\n\r\nline one\rline two\r\n",
                     b"Subject: lf\nX-Injected: 1\r\n\r\nbody\r\n",
                     b"Subject: end\r\n\r\nlast line with bare LF\n"):
            with self.subTest(body=body):
                c = self.open_data("bad-bare@client.test")
                c.send(body + b"\r\n.\r\n")
                r = c.reply()
                self.assertEqual((r.code, r.enhanced), (550, "5.6.0"), r)
                self.assert_session_continues(c)
                c.close()
        self.assert_only_expected_stored()

    def test_bare_lf_and_cr_in_commands(self):
        c = self.d.client()
        c.greet()
        # S2: one 500 5.5.2 for the whole line, not two commands.
        c.send(b"MAIL FROM:<bad-lf@client.test>\nRCPT TO:<victim@example.test>\r\n")
        r = c.reply()
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        self.assertTrue(c.nothing_pending(0.3), c.buf)
        r = c.cmd("RCPT TO:<victim@example.test>")
        self.assertEqual(r.code, 503, "MAIL FROM before the bare LF was executed: %r" % r)
        r = c.cmd(b"EHLO x\rX-Injected: 1")
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        self.assertTrue(c.nothing_pending(0.3), c.buf)
        r = c.cmd("NOOP")
        self.assertEqual(r.code, 250, r)
        c.close()
        self.assert_only_expected_stored()

    def test_ten_thousand_byte_command(self):
        c = self.d.client()
        c.greet()
        c.send(b"MAIL FROM:<" + b"a" * 5000)
        self.bystander()     # another client is served while this line is open
        c.send(b"a" * (10000 - 5000 - 11 - 14) + b"@client.test>\r\n")
        r = c.reply()
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        self.assertTrue(c.nothing_pending(0.3), "more than one reply to one long line: %r" % c.buf)
        r = c.cmd("NOOP")
        self.assertEqual(r.code, 250, r)
        # and the session still carries mail
        r = c.submit("long-line-ok@client.test", ["user@example.test"],
                     b"Subject: after a long line\r\n\r\nok\r\n")
        self.assertEqual(r.code, 250, r)
        self.expected.add(r.queue_id)
        # a far longer line (256 KiB) is not buffered whole and gets one reply too
        c.send(b"NOOP " + b"x" * (256 * 1024) + b"\r\n")
        r = c.reply()
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        self.assertEqual(c.cmd("NOOP").code, 250)
        c.close()
        self.assert_only_expected_stored()

    def test_size_declared_too_big_at_mail(self):
        c = self.d.client()
        c.reply()
        r = c.cmd("EHLO client.test")
        self.assertIn("SIZE %d" % MAX_SIZE, [l[4:] for l in r.lines], "EHLO must advertise the limit")
        r = c.cmd("MAIL FROM:<bad-size@client.test> SIZE=%d" % (MAX_SIZE + 1))
        self.assertEqual((r.code, r.enhanced), (552, "5.3.4"), r)
        r = c.cmd("RCPT TO:<user@example.test>")
        self.assertEqual(r.code, 503, "RCPT accepted after a refused MAIL: %r" % r)
        self.bystander()
        r = c.submit("size-ok@client.test", ["user@example.test"], b"Subject: small\r\n\r\nsmall\r\n",
                     mail_params="SIZE=1000")
        self.assertEqual(r.code, 250, r)
        self.expected.add(r.queue_id)
        c.close()
        self.assert_only_expected_stored()

    def test_size_exceeded_without_size(self):
        c = self.open_data("bad-size2@client.test")
        line = b"y" * 98 + b"\r\n"
        c.send(b"Subject: too big\r\n\r\n" + line * (MAX_SIZE // 200))
        self.bystander()
        c.send(line * (MAX_SIZE // 100 + 10))
        c.send(b".\r\n")
        r = c.reply(timeout=20)
        self.assertEqual((r.code, r.enhanced), (552, "5.3.4"), r)
        self.assert_session_continues(c)
        c.close()
        self.assert_only_expected_stored()

    def test_oversize_then_fake_end_is_not_resynced(self):
        # chasquid bad_data_dot_on_message_too_big: after the limit the
        # server must still read to the real end, not resync on a fake one.
        c = self.open_data("bad-size3@client.test")
        c.send(b"Subject: too big\r\n\r\n" + (b"z" * 98 + b"\r\n") * (MAX_SIZE // 100 + 10))
        c.send(b"x\n.\n" + SMUGGLED + b"\r\n.\r\n")
        r = c.reply(timeout=20)
        self.assertIn(r.code, (550, 552), r)
        self.assert_session_continues(c)
        c.close()
        self.assert_only_expected_stored()

    def test_thousand_recipients_pipelined(self):
        c = self.d.client(timeout=20)
        c.greet()
        cmds = [b"MAIL FROM:<flood@client.test>\r\n"]
        cmds += [b"RCPT TO:<r%04d@example.test>\r\n" % i for i in range(1000)]
        c.send(b"".join(cmds))
        self.bystander()
        r = c.reply()
        self.assertEqual(r.code, 250, r)
        replies = c.replies(1000)
        ok = [i for i, r in enumerate(replies) if r.code == 250]
        self.assertEqual(ok, list(range(100)), "accepted recipients")
        for r in replies[100:]:
            self.assertEqual((r.code, r.enhanced), (452, "4.5.3"), r)
        r = c.cmd("DATA")
        self.assertEqual(r.code, 354, r)
        c.send(b"Subject: flood\r\n\r\nto a hundred\r\n.\r\n")
        r = c.reply(timeout=20)
        self.assertEqual(r.code, 250, r)
        self.expected.add(r.queue_id)
        m = self.d.show(r.queue_id)
        self.assertEqual([x["address"] for x in m["recipients"]], ["r%04d@example.test" % i for i in range(100)])
        c.close()
        self.assert_only_expected_stored()

    def test_nul_bytes(self):
        c = self.d.client()
        c.greet()
        r = c.cmd(b"MAIL FROM:<bad-nul\x00byte@client.test>")
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        r = c.cmd(b"NOOP\x00")
        self.assertEqual((r.code, r.enhanced), (500, "5.5.2"), r)
        self.assertEqual(c.cmd("NOOP").code, 250)
        c.close()
        c = self.open_data("bad-nul@client.test")
        c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n")
        self.bystander()
        c.send(b".\r\n")
        r = c.reply()
        self.assertEqual((r.code, r.enhanced), (550, "5.6.0"), r)
        self.assert_session_continues(c)
        c.close()
        self.assert_only_expected_stored()

    def test_invalid_utf8_addresses(self):
        c = self.d.client()
        c.greet()
        for line in (b"MAIL FROM:<bad-\xff@client.test>",
                     b"MAIL FROM:<bad-\xc3\x28@client.test> SMTPUTF8",
                     b"MAIL FROM:<bad-\xe2\x82@client.test> SMTPUTF8",
                     b"MAIL FROM:<bad-\xc3\xbc@client.test>"):   # valid UTF-8, but no SMTPUTF8
            with self.subTest(line=line):
                r = c.cmd(line)
                self.assertTrue(500 <= r.code < 600, "%r -> %r" % (line, r))
        r = c.cmd("MAIL FROM:<utf8-ok@client.test> SMTPUTF8")
        self.assertEqual(r.code, 250, r)
        for line in (b"RCPT TO:<\xff@example.test>", b"RCPT TO:<ok@\xfe\xffexample.test>"):
            r = c.cmd(line)
            self.assertTrue(500 <= r.code < 600, "%r -> %r" % (line, r))
        r = c.cmd("RCPT TO:<ok@example.test>".encode())
        self.assertEqual(r.code, 250, r)
        r = c.cmd("RCPT TO:<ünï@example.test>".encode())
        self.assertEqual(r.code, 250, r)
        self.assertEqual(c.cmd("RSET").code, 250)
        c.close()
        self.bystander()
        self.assert_only_expected_stored()

    def test_stall_mid_data_times_out(self):
        c = self.open_data("bad-stall@client.test")
        c.send(b"Subject: stall\r\n\r\nhalf a message")
        t0 = time.monotonic()
        self.bystander()
        r = c.reply(timeout=15)
        elapsed = time.monotonic() - t0
        self.assertEqual((r.code, r.enhanced), (421, "4.4.2"), r)
        self.assertIn("timeout exceeded", r.text)
        self.assertLess(elapsed, 10, "data_timeout is 2s")
        self.assertTrue(c.wait_closed(5), "connection not closed after 421")
        c.close()
        self.assert_only_expected_stored()

    def test_trickle_below_min_data_rate_times_out(self):
        # SPEC min_data_rate (default 500/s): a client that keeps each gap
        # under data_timeout (2s) but sends 50 bytes a second must still be
        # cut off (Postfix smtpd_min_data_rate), not hold the slot for an hour.
        c = self.open_data("bad-trickle@client.test")
        c.send(b"Subject: trickle\r\n\r\n")
        t0 = time.monotonic()
        r = None
        while time.monotonic() - t0 < 20:
            try:
                c.send(b"t" * 48 + b"\r\n")
            except OSError:
                break
            if not c.nothing_pending(1.0):
                break
        r = c.reply(timeout=5)
        self.assertEqual((r.code, r.enhanced), (421, "4.4.2"), r)
        self.assertIn("data rate too low", r.text)
        self.assertLess(time.monotonic() - t0, 12, "trickling client kept for too long")
        self.assertTrue(c.wait_closed(5))
        c.close()
        self.bystander()
        self.assert_only_expected_stored()

    def test_abrupt_disconnect_mid_data(self):
        for abort in (True, False):
            with self.subTest(rst=abort):
                c = self.open_data("bad-abort@client.test")
                c.send(b"Subject: abort\r\n\r\n" + (b"q" * 78 + b"\r\n") * 600)   # ~48 KB, under the limit
                time.sleep(0.3)   # let the daemon spool what it got
                # while it is incoming it is invisible
                self.assertEqual([m for m in self.d.queue() if m["sender"] == "bad-abort@client.test"], [])
                self.bystander()
                if abort:
                    c.abort()
                else:
                    c.close()
                time.sleep(0.3)
                self.assert_only_expected_stored()
        # the daemon noticed and discarded (it stays discarded across a restart)
        self.assertTrue(self.d.running())

    def test_commands_pipelined_behind_the_dot_while_it_commits(self):
        """The socket is still read while a message commits (RFC 2920 §3.1):
        what arrives behind the dot, even in later segments, waits and is
        answered in order after the 250; the next message too."""
        c = self.open_data("pipelined-1@client.test")
        c.send(b"Subject: one\r\n\r\nfirst\r\n.\r\n")
        c.send(b"MAIL FROM:<pipelined-2@client.test>\r\n")   # no wait: lands during the commit
        c.send(b"RCPT TO:<user@example.test>\r\nDATA\r\n")
        r = c.reply(timeout=20)
        self.assertEqual(r.code, 250, r)
        first = r.queue_id
        self.expected.add(first)
        self.assertEqual([x.code for x in c.replies(3)], [250, 250, 354])
        c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n" + b"NOOP\r\n" * 5000)
        r = c.reply(timeout=20)
        self.assertEqual(r.code, 250, r)
        self.expected.add(r.queue_id)
        self.assertNotEqual(r.queue_id, first)
        self.assertEqual([x.code for x in c.replies(5000, timeout=20)], [250] * 5000)
        self.assertEqual(self.d.show(first)["sender"], "pipelined-1@client.test")
        self.assertEqual(self.d.show(r.queue_id)["sender"], "pipelined-2@client.test")
        self.assert_session_continues(c)
        self.assert_only_expected_stored()

    def test_client_that_never_reads_its_replies(self):
        """Pipelined NOOPs from a client that reads nothing: the daemon must
        stop reading (back-pressure) instead of queueing replies without
        bound, and answer every command in order once the client reads."""
        pid = self.d.proc.pid
        rss0 = _rss_kib(pid)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(self.d.addr)
        s.setblocking(False)
        line = b"NOOP\r\n"
        chunk = line * 10000
        sent = 0
        limit = 16 * 1024 * 1024
        while sent < limit:
            _, w, _ = select.select([], [s], [], 2.0)
            if not w:
                break          # the daemon stopped reading: good
            try:
                sent += s.send(chunk[sent % len(chunk):])
            except BlockingIOError:
                continue
        grown = _rss_kib(pid) - rss0
        self.assertLess(sent, limit, "the daemon read 16 MiB of commands whose replies nobody read")
        if not _sanitized(pid):   # ASan's quarantine keeps freed memory resident
            self.assertLess(grown, 32 * 1024, "outboxd grew by %d KiB buffering replies" % grown)
        self.bystander()
        # now read everything: one 220, then one 250 per complete NOOP, then 221
        got = bytearray()
        reader_done = threading.Event()

        def reader():
            s2 = s.dup()
            s2.setblocking(True)
            s2.settimeout(30)
            try:
                while True:
                    b = s2.recv(1 << 20)
                    if not b:
                        break
                    got.extend(b)
            except OSError:
                pass
            s2.close()
            reader_done.set()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        s.setblocking(True)
        s.settimeout(30)
        rest = len(line) - sent % len(line)
        s.sendall(line[len(line) - rest:] if rest != len(line) else b"")
        s.sendall(b"QUIT\r\n")
        reader_done.wait(60)
        s.close()
        replies = bytes(got).split(b"\r\n")
        self.assertTrue(replies[0].startswith(b"220 "), replies[:2])
        n = -(-sent // len(line))
        self.assertEqual(replies[1:n + 1], [b"250 2.0.0 Ok"] * n)
        self.assertTrue(replies[n + 1].startswith(b"221 "), replies[n - 1:n + 3])

    def test_zz_daemon_alive_and_state_survives_restart(self):
        self.assertTrue(self.d.running(), "outboxd died:\n" + self.d.log_tail())
        self.bystander()
        self.assertEqual(self.d.stop(), 0)
        self.assert_only_expected_stored()
        self.d.start()
        self.assert_only_expected_stored()
        self.bystander()
        self.assertEqual(self.d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
