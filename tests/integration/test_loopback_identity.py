#!/usr/bin/python3
"""Loopback identity (issue 11 item 3): for a TCP client on 127.0.0.1 outboxd
asks the kernel (inet_diag) which uid owns the client's socket, records it
with the message exactly as for the Unix socket, and applies [[local_user]]
rules to it; `[limits] loopback_identity = "off"` does neither. Clients are
real smtplib processes run as root and as nobody (setuid in the child)."""

import os
import pwd
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NOBODY = pwd.getpwnam("nobody").pw_uid

CLIENT = r"""
import smtplib, sys
host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP(host, port, timeout=30)
s.ehlo("client.test")
code, msg = s.mail(sender)
if code != 250:
    print(code, msg.decode()); sys.exit(0)
s.rcpt("user@example.test")
code, msg = s.data(b"Subject: loopback\r\n\r\nhello\r\n")
print(code, msg.decode())
s.quit()
"""


def as_user(uid):
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return drop


class LoopbackIdentity(unittest.TestCase):
    def daemon(self, extra="", limits=None):
        d = harness.Daemon(name="outbox-loopid", extra_toml=extra, limits=limits)
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def send(self, d, sender, uid=None):
        p = subprocess.run(["/usr/bin/python3", "-c", CLIENT, d.host, str(d.port), sender], capture_output=True,
                           text=True, timeout=60, preexec_fn=as_user(uid) if uid is not None else None)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def test_the_uid_is_recorded_for_root_and_for_nobody(self):
        d = self.daemon()
        self.assertTrue(self.send(d, "root@client.test").startswith("250"))
        self.assertTrue(self.send(d, "nobody@client.test", NOBODY).startswith("250"))
        by_sender = {m["sender"]: m for m in d.queue()}
        self.assertEqual(by_sender["root@client.test"]["uid"], 0)
        self.assertEqual(by_sender["nobody@client.test"]["uid"], NOBODY)
        self.assertEqual(by_sender["nobody@client.test"]["client"], "127.0.0.1")
        ev = d.wait_event("accepted", **{"from": "nobody@client.test"})
        self.assertEqual(ev["uid"], str(NOBODY))

    def test_local_user_rules_apply_over_loopback_as_over_the_unix_socket(self):
        d = self.daemon('[[local_user]]\nname = "root"\nmay_send_as = ["*@client.test"]\n')
        self.assertTrue(self.send(d, "app@client.test").startswith("250"))
        tcp = self.send(d, "app@client.test", NOBODY)
        self.assertEqual(tcp, "550 5.7.1 Local user nobody may not submit mail")
        # The same refusal over the Unix socket, for the same user.
        p = d.sendmail(["-i", "-f", "app@client.test", "user@example.test"], b"Subject: x\n\nx\n",
                       preexec_fn=as_user(NOBODY))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"Local user nobody may not submit mail", p.stderr)
        self.assertEqual(self.send(d, "ceo@elsewhere.test"),
                         "550 5.7.1 Sender address <ceo@elsewhere.test> not owned by user root")
        self.assertTrue(d.events("rejected", reason="local_user_not_allowed"))

    def test_off_records_nothing_and_applies_no_local_rules(self):
        d = self.daemon('[[local_user]]\nname = "root"\nmay_send_as = ["*@client.test"]\n',
                        limits={"loopback_identity": "off"})
        self.assertTrue(self.send(d, "app@client.test", NOBODY).startswith("250"))
        (m,) = d.queue()
        self.assertIsNone(m["uid"])


if __name__ == "__main__":
    unittest.main()
