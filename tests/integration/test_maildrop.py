#!/usr/bin/python3
"""Issue 11 item 1: no cron mail is lost while outboxd is down.

outbox-sendmail, run as an ordinary user with outboxd stopped, hands the
message to the set-group-ID outbox-postdrop (installed here as the package
installs it: group-owned by a drop group, mode 2755, the maildrop 1770) and
exits 0. outboxd imports the maildrop at start and, while running, as files
arrive (inotify); the sender's uid is the file's owner, never its contents;
a malformed file is set aside in corrupt/ and logged, a file the sender
rules refuse too; nothing crashes and nothing is dropped silently.
"""

import grp
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_queue_for_every_user import as_user, unprivileged_user  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

DROP_GROUP = "outbox-drop-it"
MESSAGE = b"Subject: nightly backup\n\nbackup finished\n"


def drop_group_gid():
    try:
        return grp.getgrnam(DROP_GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", DROP_GROUP], check=True, capture_output=True)
        return grp.getgrnam(DROP_GROUP).gr_gid


def maildrop_text(sender, rcpts, data, t=1796472000):
    head = "OUTBOX-MAILDROP 1\ntime %d\nhelo host.test\nfrom %s\n" % (t, sender)
    head += "".join("rcpt %s\n" % r for r in rcpts)
    head += "flags\nsize %d\n\n" % len(data)
    return head.encode() + data


class Maildrop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.getuid() != 0:
            raise unittest.SkipTest("needs root to install a set-group-ID helper and run as another user")
        if not shutil.which("setpriv"):
            raise unittest.SkipTest("needs setpriv (util-linux)")
        cls.user, cls.uid, cls.gid = unprivileged_user()
        cls.drop_gid = drop_group_gid()

    def setUp(self):
        self.up = Upstream("plain").start()
        self.addCleanup(self.up.stop)
        # The programs as the package installs them: sendmail, and beside it
        # postdrop set-group-ID to the drop group.
        self.bin = tempfile.mkdtemp(prefix="outbox-maildrop-bin-")
        self.addCleanup(shutil.rmtree, self.bin, True)
        os.chmod(self.bin, 0o755)
        for name in ("outbox-sendmail", "outbox-postdrop"):
            shutil.copy(harness.binpath(name), os.path.join(self.bin, name))
        postdrop = os.path.join(self.bin, "outbox-postdrop")
        os.chown(postdrop, 0, self.drop_gid)
        # Sanitizer runtimes cannot run set-group-ID (LeakSanitizer's ptrace
        # is refused in a non-dumpable process, ThreadSanitizer's re-exec
        # loses its personality): there the helper runs unprivileged and the
        # maildrop is world-writable (sticky); the set-group-ID path itself
        # is this test in the Release run.
        self.setgid = not os.environ.get("OUTBOX_SANITIZER")
        os.chmod(postdrop, 0o2755 if self.setgid else 0o755)

    def daemon(self, extra=""):
        d = harness.Daemon(name="outbox-maildrop", extra_toml=relay_toml([upstream_section("mail", self.up.port)]) + extra)
        self.addCleanup(d.cleanup)
        d.write_config()
        os.chmod(d.dir, 0o755)   # the ordinary user reads the configuration
        os.chmod(d.config_path, 0o644)
        self.maildrop = os.path.join(d.dir, "maildrop")
        os.mkdir(self.maildrop)
        os.chown(self.maildrop, 0, self.drop_gid)
        os.chmod(self.maildrop, 0o1770 if self.setgid else 0o1777)
        return d

    def sendmail_as_user(self, d, *args, data=MESSAGE):
        return as_user(self.uid, self.gid, [os.path.join(self.bin, "outbox-sendmail"), "-C", d.config_path, "-i"]
                       + list(args), input=data)

    def files(self, sub=""):
        p = os.path.join(self.maildrop, sub)
        return sorted(f for f in os.listdir(p) if f != "corrupt") if os.path.isdir(p) else []

    # ---------------------------------------------------------------------------------
    def test_sendmail_while_down_then_imported_at_start_with_the_owner_uid(self):
        d = self.daemon()
        p = self.sendmail_as_user(d, "-v", "ops@example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"outboxd is not running: the message waits in the maildrop", p.stderr)
        (name,) = self.files()
        st = os.stat(os.path.join(self.maildrop, name))
        self.assertEqual(st.st_uid, self.uid)
        if self.setgid:
            self.assertEqual(st.st_gid, self.drop_gid)
        # Quiet without -v: cron mails any output, and there is nothing to say.
        p = self.sendmail_as_user(d, "ops2@example.test")
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        self.assertEqual(len(self.files()), 2)

        d.start()
        got = self.up.wait_delivered(2)
        self.assertEqual(sorted(r for m in got for r in m.rcpt_tos), ["ops2@example.test", "ops@example.test"])
        self.assertIn(b"backup finished", got[0].data)
        ev = d.wait_event("maildrop_imported", file=name)
        self.assertEqual(int(ev["uid"]), self.uid)
        self.assertEqual(ev["submitted"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(name.split(".")[0]))))
        # The spool records the owner's uid, as for the Unix socket.
        self.assertEqual(d.show(ev["id"])["uid"], self.uid)
        self.assertEqual(self.files(), [])
        self.assertEqual(d.stop(), 0)

    def test_a_file_queued_before_a_crash_is_removed_not_queued_twice(self):
        # outboxd stopped (kill -9, power loss) after a file's message was
        # committed and before the file was removed: the commit recorded the
        # file, so the next start removes it instead of queueing it again.
        d = self.daemon()
        p = self.sendmail_as_user(d, "ops@example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        (name,) = self.files()
        path = os.path.join(self.maildrop, name)
        with open(path, "rb") as f:
            text = f.read()
        st = os.stat(path)
        d.start()
        first = d.wait_event("maildrop_imported", file=name)
        self.up.wait_delivered(1)
        self.assertEqual(self.files(), [])
        self.assertEqual(d.stop(), 0)

        def spool(sql, *args):
            db = sqlite3.connect(d.spool_path)
            try:
                with db:
                    return db.execute(sql, args).fetchall()
            finally:
                db.close()
        # The record lives from the commit until the file is gone.
        self.assertEqual(spool("SELECT COUNT(*) FROM maildrop_imports"), [(0,)])
        # The state such a crash leaves: the file back, and its record.
        with open(path, "wb") as f:
            f.write(text)
        os.chown(path, st.st_uid, st.st_gid)
        spool("INSERT INTO maildrop_imports(file, message_id, time) VALUES(?, ?, 0)", name, first["id"])
        d.start()
        ev = d.wait_event("maildrop_imported", file=name, already="yes")
        self.assertEqual(ev["id"], first["id"])
        self.assertEqual(int(ev["uid"]), self.uid)
        self.assertEqual(self.files(), [])
        self.assertEqual(d.stop(), 0)
        self.assertEqual(spool("SELECT COUNT(*) FROM messages"), [(1,)])
        self.assertEqual(spool("SELECT COUNT(*) FROM maildrop_imports"), [(0,)])
        self.assertEqual(len(self.up.delivered()), 1)

    def test_while_running_new_files_are_imported_and_bad_ones_set_aside(self):
        d = self.daemon('\n[[local_user]]\nname = "%s"\nmay_send_as = ["%s@host.test"]\n'
                        % (self.user, self.user) + '[[local_user]]\nname = "root"\nmay_send_as = ["*"]\n')
        d.start()
        d.wait_event("ready")
        # Garbage: set aside, logged, outboxd carries on. Written as every
        # writer must (postdrop does): a tmp.* name, then a rename, so the
        # importer never sees a file half written.
        tmp = os.path.join(self.maildrop, "tmp.x")
        with open(tmp, "wb") as f:
            f.write(b"\x00\xffnot a maildrop file\n")
        os.rename(tmp, os.path.join(self.maildrop, "1.1.garbage"))
        ev = d.wait_event("maildrop_corrupt", file="1.1.garbage", timeout=40)
        self.assertIn("not a maildrop file", ev["reason"])
        self.assertEqual(self.files("corrupt"), ["1.1.garbage"])
        # A file that claims root's identity in its contents, owned by the
        # ordinary user: the owner decides, and the sender rules refuse it.
        claim = maildrop_text("root@host.test", ["ops@example.test"], b"Subject: forged\r\n\r\nx\r\n")
        with open(tmp, "wb") as f:
            f.write(claim)
        os.chown(tmp, self.uid, self.drop_gid)
        os.rename(tmp, os.path.join(self.maildrop, "2.2.forged"))
        ev = d.wait_event("maildrop_rejected", file="2.2.forged", timeout=40)
        self.assertEqual(int(ev["uid"]), self.uid)
        self.assertIn("550", ev["reason"])
        self.assertEqual(self.files("corrupt"), ["1.1.garbage", "2.2.forged"])
        # A good one, dropped while running (as postdrop would: tmp, then rename).
        ok = maildrop_text("%s@host.test" % self.user, ["ops@example.test"], b"Subject: live\r\n\r\nlive\r\n")
        with open(tmp, "wb") as f:
            f.write(ok)
        os.chown(tmp, self.uid, self.drop_gid)
        os.rename(tmp, os.path.join(self.maildrop, "3.3.good"))
        ev = d.wait_event("maildrop_imported", file="3.3.good", timeout=40)
        self.assertEqual(int(ev["uid"]), self.uid)
        got = self.up.wait_delivered(1)
        self.assertIn(b"live", got[0].data)
        self.assertNotIn(b"forged", b"".join(m.data for m in self.up.delivered()))
        self.assertEqual(self.files(), [])
        self.assertEqual(d.stop(), 0)

    def test_no_maildrop_says_why_and_exits_75(self):
        d = self.daemon()
        shutil.rmtree(self.maildrop)
        p = self.sendmail_as_user(d, "ops@example.test")
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertIn(b"is not running", p.stderr)
        self.assertIn(b"the maildrop did not take it either", p.stderr)

    def test_postdrop_checks_its_input(self):
        d = self.daemon()
        p = as_user(self.uid, self.gid, [os.path.join(self.bin, "outbox-postdrop"), "-C", d.config_path],
                    input=b"From evil\n\nnot the format\n")
        self.assertEqual(p.returncode, 65, p.stderr)
        self.assertIn(b"not a maildrop file", p.stderr)
        self.assertEqual(self.files(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
