#!/usr/bin/python3
"""outbox-sendmail and mailq as cron, PHP mail() and scripts use them (SPEC
"outbox-sendmail"): -t -i with LF input, Bcc handling, cron's flags, -f <>,
a lone dot without -i, mailq's Postfix format, exit 75 when the daemon is down."""

import os
import time
import pwd
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ME = pwd.getpwuid(os.getuid()).pw_name
DEFAULT_SENDER = ME + "@example.test"


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Sendmail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        cls.d.cleanup()
        assert rc == 0, "outboxd exited %r on SIGTERM" % rc

    def run_sendmail(self, args, data, expect=0, **kw):
        before = {m["id"] for m in self.d.queue()}
        p = self.d.sendmail(args, data, **kw)
        self.assertEqual(p.returncode, expect, "outbox-sendmail %s exited %d\nstderr: %s"
                         % (" ".join(args), p.returncode, p.stderr.decode(errors="replace")))
        after = {m["id"]: m for m in self.d.queue()}
        new = [after[i] for i in after if i not in before]
        return p, new

    def one_new(self, args, data, **kw):
        p, new = self.run_sendmail(args, data, **kw)
        self.assertEqual(p.stdout, b"", "sendmail printed on stdout")
        self.assertEqual(len(new), 1, "expected one new message, got %r" % new)
        return new[0]

    def test_t_i_lf_message_with_to_cc_bcc(self):
        msg = (b"From: Sender Name <sender@client.test>\n"
               b"To: Alice <alice@example.test>, bob@example.test\n"
               b"Cc: carol@example.test\n"
               b"Bcc: dave@example.test,\n"
               b" erin@example.test\n"
               b"Subject: sendmail -t test\n"
               b"Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
               b"Message-ID: <t-i-test@client.test>\n"
               b"\n"
               b"body line 1\n"
               b".\n"
               b"..two dots\n"
               b".leading\n"
               b"Bcc: this is body text, not a header\n"
               b"last line\n")
        m = self.one_new(["-t", "-i"], msg)
        addrs = [r["address"] for r in m["recipients"]]
        self.assertEqual(sorted(addrs), sorted(["alice@example.test", "bob@example.test", "carol@example.test",
                                                "dave@example.test", "erin@example.test"]))
        self.assertEqual(len(addrs), len(set(addrs)), "duplicate recipients %r" % addrs)
        self.assertEqual(m["sender"], DEFAULT_SENDER)
        self.assertEqual(m["state"], "queued")
        stored = self.d.body(m["id"])
        expected = crlf(msg.replace(b"Bcc: dave@example.test,\n erin@example.test\n", b""))
        harness.assert_stored(self, stored, expected, ["received"])
        self.assertNotIn(b"dave@", stored.split(b"\r\n\r\n", 1)[0])
        self.assertNotIn(b"\n", stored.replace(b"\r\n", b""), "bare LF stored")
        ev = self.d.wait_event("accepted", id=m["id"])
        self.assertEqual(ev["client"], "unix")
        self.assertEqual(ev.get("uid"), str(os.getuid()))
        self.assertEqual(ev["nrcpt"], "5")

    def test_missing_date_and_message_id_are_added(self):
        msg = b"From: someone@client.test\nTo: frank@example.test\nSubject: minimal\n\nhello\n"
        m = self.one_new(["-t", "-i"], msg)
        stored = self.d.body(m["id"])
        harness.assert_stored(self, stored, crlf(msg), ["received", "date", "message-id"])

    def test_crlf_input_is_kept(self):
        msg = b"From: a@client.test\r\nTo: g@example.test\r\nSubject: crlf\r\n\r\nline\r\n"
        m = self.one_new(["-i", "g@example.test"], msg)
        stored = self.d.body(m["id"])
        self.assertTrue(stored.endswith(msg), stored)
        self.assertNotIn(b"\r\r\n", stored)

    def test_nul_bytes_are_removed_not_refused(self):
        # A cron job's output with stray NULs used to exit 65 with nothing
        # queued (the daemon refuses NUL, RFC 5321 §4.5.2): now repaired.
        msg = b"From: a@client.test\nTo: n@example.test\nSubject: nul\n\nbinary\x00junk\x00\x00 here\n"
        p, new = self.run_sendmail(["-i", "-v", "n@example.test"], msg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"removed 3 NUL bytes (SMTP cannot carry them)", p.stderr)
        self.assertEqual(len(new), 1)
        stored = self.d.body(new[0]["id"])
        self.assertNotIn(b"\x00", stored)
        self.assertTrue(stored.endswith(b"\r\n\r\nbinaryjunk here\r\n"), stored)

    def test_cron_invocation(self):
        # What Debian's cron passes: sendmail -FCronDaemon -i -B8BITMIME -oem root
        msg = ("From: root (Cron Daemon)\n"
               "To: root\n"
               "Subject: Cron <root@host> /usr/local/bin/backup\n"
               "MIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=UTF-8\n"
               "Content-Transfer-Encoding: 8bit\n"
               "X-Cron-Env: <SHELL=/bin/sh>\n"
               "X-Cron-Env: <HOME=/root>\n"
               "\n"
               "backup done: Grüße\n").encode()
        m = self.one_new(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], msg)
        self.assertEqual([r["address"] for r in m["recipients"]], ["root@example.test"])
        self.assertEqual(m["sender"], DEFAULT_SENDER)
        stored = self.d.body(m["id"])
        harness.assert_stored(self, stored, crlf(msg), ["received", "date", "message-id"])

    def test_missing_from_is_added_by_sendmail(self):
        # Like Postfix's cleanup for sendmail(1) mail: From: the calling user.
        m = self.one_new(["-i", "root"], b"To: root\nSubject: no from, no -F\n\nbody\n")
        fields, rest = harness.header_block(self.d.body(m["id"]))
        froms = [v for n, v in fields if n.lower() == "from"]
        self.assertEqual(len(froms), 1, fields)
        self.assertIn(DEFAULT_SENDER.encode(), froms[0])
        self.assertEqual(rest, b"body\r\n")

    def test_F_names_a_missing_from(self):
        msg = b"To: root\nSubject: no from\n\nbody\n"
        m = self.one_new(["-FCronDaemon", "-i", "root"], msg)
        stored = self.d.body(m["id"])
        fields, rest = harness.header_block(stored)
        froms = [v for n, v in fields if n.lower() == "from"]
        self.assertEqual(len(froms), 1, stored)
        self.assertIn(b"CronDaemon", froms[0])
        self.assertIn(DEFAULT_SENDER.encode(), froms[0])
        self.assertEqual(rest, b"body\r\n")
        kept = [v for n, v in fields if n.lower() not in ("from", "received", "date", "message-id")]
        self.assertEqual(kept, [b"To: root", b"Subject: no from"])

    def test_f_null_sender_and_sender_forms(self):
        msg = b"Subject: bounce-ish\n\nx\n"
        m = self.one_new(["-f", "<>", "-i", "h@example.test"], msg)
        self.assertIn(m["sender"], ("", "<>"))
        self.assertEqual(self.d.wait_event("accepted", id=m["id"])["from"], "<>")
        for args in (["-f", "s1@client.test"], ["-fs2@client.test"], ["-r", "s3@client.test"]):
            m = self.one_new(args + ["-i", "h@example.test"], msg)
            self.assertEqual(m["sender"], (args[-1][2:] if len(args) == 1 else args[-1]))

    def test_recipients_after_double_dash(self):
        m = self.one_new(["-i", "--", "i@example.test", "j@example.test"], b"Subject: dd\n\nx\n")
        self.assertEqual(sorted(r["address"] for r in m["recipients"]), ["i@example.test", "j@example.test"])

    def test_lone_dot_ends_input_without_i(self):
        msg = b"Subject: dot\n\nline\n.\nafter the dot\n"
        m = self.one_new(["k@example.test"], msg)
        stored = self.d.body(m["id"])
        self.assertTrue(stored.endswith(b"\r\n\r\nline\r\n"), stored)
        self.assertNotIn(b"after the dot", stored)

    def test_config_flag_forms(self):
        msg = b"Subject: cfg\n\nx\n"
        self.one_new(["--config", self.d.config_path, "-i", "l@example.test"], msg, config_flag=False)
        self.one_new(["-i", "l@example.test"], msg, config_flag=False, env={"OUTBOX_CONFIG": self.d.config_path})

    def test_bi_exits_0(self):
        p = self.d.sendmail(["-bi"])
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_bs_speaks_smtp_on_stdin(self):
        dialog = (b"EHLO client.test\r\nMAIL FROM:<bs@client.test>\r\nRCPT TO:<m@example.test>\r\nDATA\r\n"
                  b"Subject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n")
        p = self.d.sendmail(["-bs"], dialog)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout
        self.assertTrue(out.startswith(b"220 "), out)
        m = harness.QUEUE_ID_RE.search(out)
        self.assertIsNotNone(m, out)
        self.assertIn(b"\r\n221 ", out)
        qid = m.group(1).decode()
        self.assertTrue(self.d.body(qid).endswith(b"Subject: bs\r\n\r\nvia -bs\r\n"))

    def test_more_recipients_than_max_recipients(self):
        # RFC 5321 §4.5.3.1.10: 452 for excess recipients means "send the
        # rest in another transaction"; a -t message to 150 people must not
        # fail for ever with 75 (Postfix's sendmail has no such limit).
        rcpts = ["list%03d@example.test" % i for i in range(150)]
        msg = ("From: boss@client.test\nTo: %s\nSubject: all hands\n\nhello all\n" % ",\n ".join(rcpts)).encode()
        p, new = self.run_sendmail(["-t", "-i"], msg)
        got = sorted(r["address"] for m in new for r in m["recipients"])
        self.assertEqual(got, rcpts)
        for m in new:
            harness.assert_stored(self, self.d.body(m["id"]), crlf(msg), ["received", "date", "message-id"])

    def test_refused_recipient_exit_67(self):
        p, new = self.run_sendmail(["-i", "bad@@example.test"], b"Subject: x\n\nx\n", expect=harness.EX_NOUSER)
        self.assertEqual(new, [])
        self.assertNotEqual(p.stderr, b"")

    def test_mailq_format(self):
        # at least one message queued
        self.one_new(["-i", "mq@example.test"], b"Subject: mailq\n\nx\n")
        q = [m for m in self.d.queue() if m["state"] not in ("sent", "failed")]
        for argv, name in ((["-bp"], "outbox-sendmail"), ([], "mailq")):
            p = self.d.sendmail(argv, name=name)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = p.stdout.decode()
            for m in q:
                self.assertIn(m["id"], out)
            last = out.rstrip("\n").splitlines()[-1]
            mm = re.match(r"^-- (\d+) Kbytes in (\d+) Requests?\.$", last)
            self.assertIsNotNone(mm, "last line of %s: %r" % (name, last))
            total = sum(m["size"] for m in q)
            self.assertIn(int(mm.group(1)), (total // 1024, (total + 1023) // 1024))
            self.assertEqual(int(mm.group(2)), len(q))

    def test_as_another_user(self):
        if os.getuid() != 0:
            self.skipTest("needs root to switch to nobody")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")

        def drop():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        m = self.one_new(["-i", "n@example.test"], b"Subject: nobody\n\nx\n", preexec_fn=drop)
        self.assertEqual(m["sender"], "nobody@example.test")
        self.assertEqual(self.d.wait_event("accepted", id=m["id"]).get("uid"), str(nobody.pw_uid))


class MailqEmpty(unittest.TestCase):
    def test_empty_queue(self):
        with harness.Daemon() as d:
            d.start()
            self.assertEqual(d.stop(), 0)
            p = d.sendmail([], name="mailq")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.decode().strip(), "Mail queue is empty")


class ConfigTypo(unittest.TestCase):
    def test_a_typo_elsewhere_is_a_warning_not_a_lost_message(self):
        # Issue 12 item 6: the tools read the keys they use; a typo in a
        # part they do not (an operator editing before a reload) is a warning.
        with harness.Daemon() as d:
            d.start()
            with open(d.config_path, "a") as f:
                f.write("\n[retry]\nintial = \"1m\"\n")
            p = d.sendmail(["-i", "x@example.test"], b"Subject: typo\n\nbody\n")
            self.assertEqual(p.returncode, 0, p.stderr)
            err = p.stderr.decode()
            self.assertIn("warning: %s:" % d.config_path, err)
            self.assertIn('retry.intial: unknown key (did you mean "initial"?); ignored', err)
            self.assertEqual(len(d.queue()), 1)   # through the configured socket, into the spool
            q = d.ctl("queue", check=False)
            self.assertEqual(q.returncode, 0, q.stderr)
            self.assertEqual(q.stderr.decode().count("retry.intial: unknown key"), 1)
            p = d.sendmail([], name="mailq")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b"x@example.test", p.stdout)
            # outboxctl check stays strict.
            self.assertNotEqual(d.ctl("check", check=False).returncode, 0)


class DaemonDown(unittest.TestCase):
    def test_maildrop_keeps_mail_while_the_daemon_is_stopped(self):
        # Issue 11 item 1: cron does not retry, so a stopped outboxd must not
        # cost its mail: the maildrop keeps it (test_maildrop.py has the
        # set-group-ID helper as an ordinary user; here root, as cron runs).
        with harness.Daemon() as d:
            d.start()
            d.submit()
            self.assertEqual(d.stop(), 0)
            maildrop = os.path.join(d.dir, "maildrop")   # made by outboxd at its start
            before = d.queue()   # reading works with the daemon stopped
            self.assertEqual(len(before), 1)
            p = d.sendmail(["-t", "-i"], b"To: x@example.test\nSubject: down\n\nbody\n")
            self.assertEqual((p.returncode, p.stderr), (0, b""))
            self.assertEqual(d.queue(), before)           # not in the spool yet ...
            self.assertEqual(len(os.listdir(maildrop)), 1)  # ... but durable in the maildrop
            # A daemon killed hard leaves its socket file: connection refused, same answer.
            d.start()
            d.kill9()
            p = d.sendmail(["-i", "-v", "x@example.test"], b"Subject: killed\n\nbody\n")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b"the message waits in the maildrop", p.stderr)
            # The next start takes both.
            d.start()
            deadline = time.monotonic() + 20
            while len(d.events("maildrop_imported")) < 2:
                self.assertLess(time.monotonic(), deadline, d.log_tail())
                time.sleep(0.1)
            self.assertEqual(len(d.queue()), 3)
            self.assertEqual([f for f in os.listdir(maildrop) if f != "corrupt"], [])
            self.assertEqual(d.stop(), 0)
            # No maildrop either: 75, and the reason names both.
            os.rename(maildrop, maildrop + ".gone")
            p = d.sendmail(["-i", "x@example.test"], b"Subject: lost?\n\nbody\n")
            self.assertEqual(p.returncode, harness.EX_TEMPFAIL, p.stderr)
            err = p.stderr.decode(errors="replace")
            self.assertIn(d.socket_path, err)
            self.assertIn("the maildrop did not take it either", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
