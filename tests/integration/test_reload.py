"""SIGHUP: outboxd re-reads its configuration without dropping a connection
or a message; a bad new configuration is refused with the reason logged and
the old one stays in effect. A message queued with "no route" is delivered as
soon as a reload adds the route."""
import os
import signal
import smtplib
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402


class Recorder:
    def __init__(self):
        self.got = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 stored"


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


class Reload(unittest.TestCase):
    def setUp(self):
        self.rec = Recorder()
        self.up_port = harness.free_port()
        self.up = Controller(self.rec, hostname="127.0.0.1", port=self.up_port)
        self.up.start()
        self.d = harness.Daemon(name="outbox-reload")
        self.d.start()

    def tearDown(self):
        self.up.stop()
        self.d.cleanup()

    def hup(self):
        os.kill(self.d.proc.pid, signal.SIGHUP)

    def test_route_added_by_reload_delivers_queued_mail(self):
        with smtplib.SMTP(*self.d.addr) as s:
            s.sendmail("app@example.test", ["ops@example.org"], b"Subject: waiting\r\n\r\nfor a route\r\n")
        q = wait_for(lambda: [m for m in self.d.queue() if m["last_error"] == "no route"])
        self.assertTrue(q, self.d.queue())
        self.assertEqual(self.rec.got, [])

        self.d.extra_toml = """
[[upstream]]
name = "local"
host = "127.0.0.1"
port = %d
tls = "none"

[[route]]
sender = "*"
upstreams = ["local"]
""" % self.up_port
        self.d.write_config()
        self.hup()
        self.assertTrue(self.d.wait_event("reload", status="ok"))
        self.assertTrue(wait_for(lambda: self.rec.got), "not delivered after the reload")
        self.assertEqual(self.rec.got[0][1], ["ops@example.org"])
        self.assertTrue(wait_for(lambda: [m for m in self.d.queue() if m["state"] == "sent"]))

    def test_bad_config_is_refused_and_the_old_one_stays(self):
        good = self.d.config_text()
        with open(self.d.config_path, "a") as f:
            f.write("\n[limits]\nno_such_key = 1\n")
        self.hup()
        ev = self.d.wait_event("reload", status="refused")
        self.assertTrue(ev)
        self.assertIn("outbox.toml", ev["error"])
        # Still serving, with the old settings.
        with smtplib.SMTP(*self.d.addr) as s:
            code, _ = s.noop()
            self.assertEqual(code, 250)
            s.sendmail("app@example.test", ["a@example.org"], b"Subject: after\r\n\r\nx\r\n")
        self.assertTrue(self.d.running())
        with open(self.d.config_path, "w") as f:
            f.write(good)

    def test_open_transaction_survives_a_reload(self):
        s = smtplib.SMTP(*self.d.addr)
        s.ehlo("app.test")
        self.assertEqual(s.mail("app@example.test")[0], 250)
        self.assertEqual(s.rcpt("a@example.org")[0], 250)
        self.hup()
        self.assertTrue(self.d.wait_event("reload", status="ok"))
        code, msg = s.data(b"Subject: across a reload\r\n\r\nbody\r\n")
        self.assertEqual(code, 250, msg)
        self.assertIn(b"queued as", msg)
        s.quit()


if __name__ == "__main__":
    unittest.main(verbosity=2)
