"""Submission-time sender check: when the sender's route goes first to an
upstream that accepts only its own account as envelope sender (163, QQ...),
another sender is refused at MAIL with a reply that says what to do, instead
of a bounce later. No upstream is contacted: refused mail is never queued."""
import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

EXTRA = """
[[upstream]]
name = "163"
host = "smtp.163.com"
username = "someone@163.com"
password_env = "OUTBOX_TEST_UNSET_SECRET"

[[route]]
sender = "*@163.com"
upstreams = ["163"]
"""


class SenderCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(extra_toml=EXTRA, name="outbox-sendercheck")
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_other_sender_through_163_is_refused_at_mail(self):
        with smtplib.SMTP(*self.d.addr) as s:
            s.ehlo("app.test")
            code, text = s.mail("other@163.com")
            self.assertEqual(code, 553)
            text = text.decode()
            self.assertIn('upstream "163"', text)
            self.assertIn("someone@163.com", text)
            self.assertIn("envelope_from", text)
        self.assertEqual(self.d.queue(), [])
        self.assertTrue(self.d.events("rejected", reason="upstream_sender_mismatch"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
