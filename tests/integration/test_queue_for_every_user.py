"""Issue 11 item 4: the queue for every local user through outboxd's query
socket: mailq, sendmail -bp and outboxctl as an unprivileged user see their
own messages and a count of the rest, root all; not running vs no
permission; bad query requests answered. Real processes: clients run as an
unprivileged user (nobody, or one made with useradd) through setpriv."""
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def unprivileged_user():
    """(name, uid, gid) of a user that is not root; nobody, else one made now."""
    for name in ("nobody", "outbox-it-user"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_name, pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "outbox-it-user"],
                   check=True, capture_output=True)
    pw = pwd.getpwnam("outbox-it-user")
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def as_user(uid, gid, argv, **kw):
    """argv run as uid:gid with no supplementary groups (setpriv)."""
    return subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups"] + list(argv),
                          capture_output=True, timeout=60, **kw)


# A tiny SMTP client run as another user: connects, sends MAIL FROM, prints
# the reply, and with a recipient goes on to submit. Prints JSON.
SMTP_SCRIPT = textwrap.dedent("""
    import json, socket, sys
    addr, sender, rcpt = sys.argv[1], sys.argv[2], sys.argv[3]
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX); s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam); s.connect((host.strip("[]"), int(port)))
    f = s.makefile("rb")
    def reply():
        lines = []
        while True:
            l = f.readline().decode().rstrip("\\r\\n")
            lines.append(l)
            if len(l) < 4 or l[3] != "-":
                return lines[-1]
    def cmd(c):
        s.sendall(c.encode() + b"\\r\\n")
        return reply()
    out = {"greeting": reply(), "ehlo": cmd("EHLO client.test"), "mail": cmd("MAIL FROM:<%s>" % sender)}
    if rcpt and out["mail"].startswith("250"):
        out["rcpt"] = cmd("RCPT TO:<%s>" % rcpt)
        out["data"] = cmd("DATA")
        out["end"] = cmd("Subject: identity\\r\\n\\r\\nbody\\r\\n.")
    cmd("QUIT")
    print(json.dumps(out))
""")


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.getuid() != 0:
            raise unittest.SkipTest("needs root to run clients as another user")
        if not shutil.which("setpriv"):
            raise unittest.SkipTest("needs setpriv (util-linux)")
        cls.user, cls.uid, cls.gid = unprivileged_user()

    def smtp_as(self, uid, gid, addr, sender, rcpt=""):
        p = as_user(uid, gid, ["/usr/bin/python3", "-c", SMTP_SCRIPT, addr, sender, rcpt])
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def daemon(self, extra="", limits=None, ipv6=False, name="outbox-ident"):
        d = harness.Daemon(extra_toml=extra, limits=limits, ipv6=ipv6, name=name)
        self.addCleanup(d.cleanup)
        d.start()
        return d


class QueueForEveryUser(Base):
    def mailq_as(self, d, uid, gid, name="mailq"):
        return as_user(uid, gid, [harness.binpath(name), "-C", d.config_path] + (["-bp"] if name != "mailq" else []))

    def ctl_as(self, d, uid, gid, *args):
        return as_user(uid, gid, [harness.binpath("outboxctl"), "--config", d.config_path] + list(args))

    def submit_as_user(self, d):
        p = as_user(self.uid, self.gid, [harness.binpath("outbox-sendmail"), "-C", d.config_path, "-i",
                                         "mine@example.test"], input=b"Subject: mine\n\nbody\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        return [m for m in d.queue() if m["uid"] == self.uid][-1]["id"]

    def test_ordinary_user_sees_own_messages_and_a_count_root_all(self):
        d = self.daemon()
        mine = self.submit_as_user(d)
        theirs = [d.submit()[0], d.submit(unix=True)[0]]
        # The spool file is not the user's to read: the answer comes from outboxd.
        self.assertNotEqual(as_user(self.uid, self.gid, ["test", "-r", d.spool_path]).returncode, 0)
        for name in ("mailq", "outbox-sendmail"):
            p = self.mailq_as(d, self.uid, self.gid, name)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = p.stdout.decode()
            self.assertIn(mine, out)
            for other in theirs:
                self.assertNotIn(other, out)
            self.assertNotIn("app@client.test", out)   # not even the others' senders
            self.assertIn("-- 2 messages of other users not shown.", out)
            self.assertEqual(out.rstrip("\n").splitlines()[-1], "-- 0 Kbytes in 1 Request.")
        p = d.sendmail([], name="mailq")
        self.assertEqual(p.returncode, 0, p.stderr)
        for qid in [mine] + theirs:
            self.assertIn(qid, p.stdout.decode())
        self.assertIn("in 3 Requests.", p.stdout.decode())
        self.assertNotIn("not shown", p.stdout.decode())

        # outboxctl queue / show as that user.
        p = self.ctl_as(d, self.uid, self.gid, "queue")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(mine, p.stdout.decode())
        self.assertIn("-- 2 messages of other users not shown", p.stdout.decode())
        p = self.ctl_as(d, self.uid, self.gid, "queue", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([m["id"] for m in json.loads(p.stdout)], [mine])
        self.assertIn(b"2 messages of other users not shown", p.stderr)
        p = self.ctl_as(d, self.uid, self.gid, "show", mine, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        shown = json.loads(p.stdout)
        self.assertEqual((shown["id"], shown["uid"]), (mine, self.uid))
        self.assertEqual(shown, d.show(mine))   # the same object root reads from the spool
        p = self.ctl_as(d, self.uid, self.gid, "show", mine)
        self.assertIn(b"Subject: mine", p.stdout)
        for other in theirs:
            p = self.ctl_as(d, self.uid, self.gid, "show", other)
            self.assertEqual(p.returncode, 3)
            self.assertEqual(p.stderr.decode().strip(), "outboxctl: no such message: %s" % other)
            self.assertEqual(p.stdout, b"")
        p = self.ctl_as(d, self.uid, self.gid, "show", mine, "--body")
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"only root and the outbox group", p.stderr)

        # Root still reads the spool itself with outboxd stopped.
        self.assertEqual(d.stop(), 0)
        p = d.sendmail([], name="mailq")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("in 3 Requests.", p.stdout.decode())

    def test_errors_say_not_running_or_no_permission(self):
        d = self.daemon()
        query = os.path.join(d.dir, "query.sock")
        self.assertTrue(os.path.exists(query))
        # Running, but the socket shuts this user out.
        os.chmod(query, 0o600)
        p = self.mailq_as(d, self.uid, self.gid)
        self.assertEqual(p.returncode, 69)
        self.assertIn("no permission on %s (Permission denied)" % query, p.stderr.decode())
        self.assertNotIn("not running", p.stderr.decode())
        p = self.ctl_as(d, self.uid, self.gid, "queue")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no permission on %s" % query, p.stderr.decode())
        # Submission socket likewise: no "is outboxd running?" guess.
        os.chmod(d.socket_path, 0o600)
        p = as_user(self.uid, self.gid, [harness.binpath("outbox-sendmail"), "-C", d.config_path, "-i", "x@example.test"],
                    input=b"Subject: x\n\nx\n")
        self.assertEqual(p.returncode, harness.EX_TEMPFAIL)
        self.assertIn("no permission on %s" % d.socket_path, p.stderr.decode())
        os.chmod(query, 0o666)
        # Stopped: the socket is gone.
        self.assertEqual(d.stop(), 0)
        p = self.mailq_as(d, self.uid, self.gid)
        self.assertEqual(p.returncode, 69)
        self.assertEqual(p.stderr.decode().strip(),
                         "mailq: cannot list the queue: outboxd is not running (socket %s missing)" % query)
        # Killed: the socket file stays, nobody listens.
        d.start()
        d.kill9()
        self.assertTrue(os.path.exists(query))
        p = self.mailq_as(d, self.uid, self.gid)
        self.assertEqual(p.returncode, 69)
        self.assertIn("outboxd is not running (connection refused on %s)" % query, p.stderr.decode())
        p = self.ctl_as(d, self.uid, self.gid, "queue")
        self.assertEqual(p.returncode, 1)
        self.assertIn("outboxd is not running (connection refused", p.stderr.decode())

    def test_query_socket_off(self):
        d = harness.Daemon(name="outbox-ident")
        self.addCleanup(d.cleanup)
        d.extra_toml = ""
        d.write_config()
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("[spool]\n", "[spool]\nquery_socket = \"\"\n", 1))
        d.start()
        self.assertFalse(os.path.exists(os.path.join(d.dir, "query.sock")))
        p = self.mailq_as(d, self.uid, self.gid)
        self.assertEqual(p.returncode, 69)
        self.assertIn("query_socket is off", p.stderr.decode())

    def test_bad_requests_are_answered_not_fatal(self):
        import socket
        d = self.daemon()
        query = os.path.join(d.dir, "query.sock")
        s = socket.socket(socket.AF_UNIX)
        s.connect(query)
        f = s.makefile("rb")
        s.sendall(b'{"op":"drop"}\n{"op":"list","limit":5000}\nnot json\n')
        for _ in range(3):
            a = json.loads(f.readline())
            self.assertEqual((a["ok"], a["code"]), (False, "bad_request"))
        s.sendall(b'{"op":"list"}\n')
        a = json.loads(f.readline())
        self.assertEqual((a["ok"], a["scope"]), (True, "all"))   # root
        s.sendall(b"x" * 20000)
        a = json.loads(f.readline())
        self.assertEqual(a["code"], "bad_request")
        try:
            rest = f.read()
        except ConnectionResetError:   # closed with our unread bytes in its buffer
            rest = b""
        self.assertEqual(rest, b"")   # and hung up, answering once
        f.close()
        s.close()
        self.assertTrue(d.running())
        d.submit()


if __name__ == "__main__":
    unittest.main(verbosity=2)
