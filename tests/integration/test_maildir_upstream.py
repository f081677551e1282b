#!/usr/bin/python3
"""The local delivery target: [[upstream]] deliver = "maildir:PATH" (issue 12
item 9, docs/spec.md "Local delivery target"). Real outboxd, real files:
each relayed message becomes one file in PATH/new/ (envelope lines, then the
message as an SMTP upstream would receive it), through the same scheduler,
history and logs as an SMTP upstream; a maildir that cannot be written
suspends the upstream and defers, never bounces; the development config of
README command (a) shows a message go all the way."""

import glob
import os
import random
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def maildir_toml(path, extra=""):
    return ('[retry]\ninitial = "1s"\nmax = "2s"\n'
            '[[upstream]]\nname = "outgoing"\ndeliver = "maildir:%s"\n%s'
            '[[route]]\nsender = "*"\nupstreams = ["outgoing"]\n' % (path, extra))


def wait_files(d, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(glob.glob(os.path.join(d, "new", "*")))
        if len(files) >= n or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


class Maildir(unittest.TestCase):
    def daemon(self, path, extra=""):
        d = harness.Daemon(name="outbox-maildir", extra_toml=maildir_toml(path, extra))
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def test_messages_are_written_whole_with_their_envelope_and_the_story_is_told(self):
        md = tempfile.mkdtemp(prefix="outbox-md-")
        self.addCleanup(shutil.rmtree, md, True)
        target = os.path.join(md, "outgoing")
        d = self.daemon(target)
        # A body of 8-bit lines of up to 998 octets, several pieces long (the
        # body streams from the spool in 64 KiB pieces).
        rnd = random.Random(12)
        lines = []
        for _ in range(400):
            n = rnd.randint(1, 998)
            line = bytes(rnd.choice(b"abcXYZ .\xc3\xa9\xe2") for _ in range(n))
            lines.append(line)
        body = b"\r\n".join(lines) + b"\r\n"
        msg = b"From: app@client.test\r\nTo: a@example.test\r\nSubject: maildir\r\n\r\n" + body
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.sendmail("app@client.test", ["a@example.test", "b@example.test"], msg)
        files = wait_files(target, 1)
        self.assertEqual(len(files), 1, os.listdir(target))
        data = open(files[0], "rb").read()
        self.assertTrue(data.startswith(b"Return-Path: <app@client.test>\r\n"
                                        b"X-Envelope-To: <a@example.test>\r\n"
                                        b"X-Envelope-To: <b@example.test>\r\n"), data[:200])
        self.assertTrue(data.endswith(msg), "the message is not byte-identical after the envelope lines")
        # The probe left nothing behind. (A lapsed suspension may already be
        # writing the message itself: its file in tmp/ is named after its
        # queue id, "...Q<id>.host", until the rename to new/.)
        left = [f for f in os.listdir(os.path.join(target, "tmp")) if ("Q%s." % qid) not in f]
        self.assertEqual(left, [])
        name = os.path.basename(files[0])
        ev = d.wait_event("delivered", to="b@example.test")
        qid = ev["id"]
        self.assertIn("Q%s." % qid, name)
        self.assertEqual(ev["relay"], "outgoing[maildir:%s]" % target)
        self.assertIn("written to %s" % files[0], ev["reply"])
        # outboxctl show tells the story, like for any upstream.
        show = d.ctl("show", qid).stdout.decode()
        self.assertIn("delivered", show)
        self.assertIn("written to", show)
        self.assertEqual(d.show(qid)["state"], "sent")

    def test_a_maildir_that_cannot_be_written_suspends_the_upstream_and_defers_until_fixed(self):
        md = tempfile.mkdtemp(prefix="outbox-md-")
        self.addCleanup(shutil.rmtree, md, True)
        blocker = os.path.join(md, "blocker")
        with open(blocker, "w") as f:
            f.write("a file where the maildir's parent should be\n")
        target = os.path.join(blocker, "outgoing")
        d = self.daemon(target)
        qid, _ = d.submit()
        ev = d.wait_event("upstream_failed", upstream="outgoing", timeout=15)
        self.assertIn("cannot write to maildir %s" % target, ev["error"])
        out = d.ctl("upstreams").stdout.decode()
        self.assertRegex(out, r"^outgoing: suspended until ")
        # The event is logged when the attempt fails; the deferral is committed
        # by the store writer just after, and a lapsed 1-2 s suspension may
        # lease the message again: "active" is a moment, never an end.
        deadline = time.monotonic() + 15
        while True:
            state = d.show(qid)["state"]
            if state in ("queued", "deferred"):
                break
            self.assertEqual(state, "active")
            self.assertLess(time.monotonic(), deadline, d.log_tail())
            time.sleep(0.05)
        self.assertEqual(d.events("bounced"), [])
        p = d.ctl("test-upstream", "outgoing", check=1)
        self.assertIn("FAILED: upstream \"outgoing\" (maildir:%s): cannot write" % target, p.stdout.decode())
        self.assertIn("hint: ", p.stdout.decode())
        # The operator fixes it, checks, and resumes: delivered within seconds.
        os.unlink(blocker)
        self.assertEqual(d.ctl("test-upstream", "outgoing").stdout.decode(),
                         "ok: upstream \"outgoing\" (maildir:%s): writable\n" % target)
        p = d.ctl("resume", "outgoing", check=False)
        if p.returncode != 0:
            # A slow build (ASan beside other tests) can take longer than this
            # test's 1-2 s suspension: it lapsed, and the message's own retry
            # (at most 2 s) delivers it all the same.
            self.assertIn(b"is not suspended", p.stderr)
        files = wait_files(target, 1)
        self.assertEqual(len(files), 1)
        d.wait_event("delivered", id=qid, timeout=15)
        self.assertEqual(d.show(qid)["state"], "sent")
        # Neither test-upstream's probe nor the delivery left a file in tmp/.
        # (Checked only now: a lapsed suspension lets the delivery write its
        # tmp/ file while test-upstream runs, a moment before its rename.)
        self.assertEqual(os.listdir(os.path.join(target, "tmp")), [])

    def test_config_refuses_network_keys_and_unknown_targets(self):
        d = harness.Daemon(name="outbox-maildir-cfg")
        self.addCleanup(d.cleanup)
        for extra_upstream, needle in (
                ('[[upstream]]\nname = "o"\ndeliver = "maildir:/tmp/x"\nhost = "smtp.example.net"\n',
                 'host: has no effect with deliver = "maildir:/tmp/x"'),
                ('[[upstream]]\nname = "o"\ndeliver = "maildir:/tmp/x"\nfrom_header = "rewrite"\n',
                 'from_header: has no effect'),
                ('[[upstream]]\nname = "o"\ndeliver = "mbox:/tmp/x"\n', 'is not a delivery target'),
                ('[[upstream]]\nname = "o"\ndeliver = "maildir:"\n', 'is not a delivery target')):
            d.extra_toml = extra_upstream
            d.write_config()
            p = subprocess.run([harness.binpath("outboxd"), "--check", "--config", d.config_path],
                               capture_output=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, extra_upstream)
            self.assertIn(needle, p.stderr.decode(), extra_upstream)

    def test_the_development_config_delivers_all_the_way(self):
        # README command (a): outboxd on etc/outbox.dev.toml from the source
        # tree's root; here from a copy of it, so the tree stays clean.
        work = tempfile.mkdtemp(prefix="outbox-dev-")
        self.addCleanup(shutil.rmtree, work, True)
        os.makedirs(os.path.join(work, "etc"))
        text = open(os.path.join(ROOT, "etc", "outbox.dev.toml")).read()
        port = harness.free_port()
        text = text.replace("127.0.0.1:2525", "127.0.0.1:%d" % port)
        with open(os.path.join(work, "etc", "outbox.dev.toml"), "w") as f:
            f.write(text)
        log = open(os.path.join(work, "outboxd.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([harness.binpath("outboxd"), "--config", "etc/outbox.dev.toml"], cwd=work,
                             stderr=log, stdout=log)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait()))
        deadline = time.monotonic() + 15
        while b"event=ready" not in open(os.path.join(work, "outboxd.log"), "rb").read():
            self.assertLess(time.monotonic(), deadline, open(os.path.join(work, "outboxd.log"), "rb").read())
            self.assertIsNone(p.poll())
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("me@localhost", ["you@example.com"], b"Subject: first message\r\n\r\nhello\r\n")
        files = wait_files(os.path.join(work, "var", "outgoing"), 1)
        self.assertEqual(len(files), 1, open(os.path.join(work, "outboxd.log"), "rb").read())
        self.assertTrue(open(files[0], "rb").read().endswith(b"hello\r\n"))
        q = subprocess.run([harness.binpath("outboxctl"), "--config", "etc/outbox.dev.toml", "queue", "--json",
                            "--state", "sent"], cwd=work, capture_output=True, timeout=30)
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertIn(b'"sent"', q.stdout)
        # And the next ones, one at a time: each reaches the maildir (a
        # maildir connection once carried one message and was never handed
        # another, so the third of them stalled 'active' for ever).
        for i in range(2, 7):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.sendmail("me@localhost", ["you@example.com"], b"Subject: message %d\r\n\r\nhello\r\n" % i)
            files = wait_files(os.path.join(work, "var", "outgoing"), i)
            with open(os.path.join(work, "outboxd.log"), "rb") as f:
                self.assertEqual(len(files), i, f.read()[-4000:])
        p.terminate()
        self.assertEqual(p.wait(timeout=15), 0)


if __name__ == "__main__":
    unittest.main()
