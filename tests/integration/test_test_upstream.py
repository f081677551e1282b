"""outboxctl test-upstream: connect, TLS, AUTH, QUIT, and plain words with the
fix when something is wrong. Upstreams are real servers started here: a
plaintext aiosmtpd, a closed port, and a server that never answers."""
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


class TestUpstream(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up_port = harness.free_port()
        cls.controller = Controller(Sink(), hostname="127.0.0.1", port=cls.up_port)
        cls.controller.start()
        cls.closed_port = harness.free_port()
        # A server that accepts and never says a word (stalled greeting).
        cls.mute = socket.socket()
        cls.mute.bind(("127.0.0.1", 0))
        cls.mute.listen(8)
        cls.mute_port = cls.mute.getsockname()[1]
        extra = """
[[upstream]]
name = "plain"
host = "127.0.0.1"
port = %d
tls = "none"

[[upstream]]
name = "closed"
host = "127.0.0.1"
port = %d
tls = "none"
connect_timeout = "3s"

[[upstream]]
name = "mixup"
host = "127.0.0.1"
port = %d
tls = "implicit"
timeout = "3s"

[[upstream]]
name = "mute"
host = "127.0.0.1"
port = %d
tls = "none"
timeout = "2s"
""" % (cls.up_port, cls.closed_port, cls.up_port, cls.mute_port)
        cls.d = harness.Daemon(extra_toml=extra, name="outbox-testup")

    @classmethod
    def tearDownClass(cls):
        cls.controller.stop()
        cls.mute.close()
        cls.d.cleanup()

    def probe(self, name, want):
        t0 = time.monotonic()
        p = self.d.ctl("test-upstream", name, "-v", check=want)
        return p.stdout.decode(), time.monotonic() - t0

    def test_ok_prints_the_dialogue(self):
        out, _ = self.probe("plain", 0)
        self.assertIn("C: EHLO outbox.test", out)
        self.assertIn("C: QUIT", out)
        self.assertIn('ok: upstream "plain"', out)

    def test_refused_port_names_host_and_port(self):
        out, _ = self.probe("closed", 1)
        self.assertIn("FAILED", out)
        self.assertIn("connection refused", out)
        self.assertIn("port %d" % self.closed_port, out)
        self.assertIn("hint:", out)

    def test_implicit_tls_against_a_plaintext_port_names_the_mixup(self):
        out, _ = self.probe("mixup", 1)
        self.assertIn("TLS", out)
        self.assertIn('set tls = "starttls"', out)

    def test_stalled_greeting_times_out_within_the_timeout(self):
        out, took = self.probe("mute", 1)
        self.assertIn("FAILED", out)
        self.assertIn("greeting", out.lower())
        self.assertLess(took, 15)

    def test_unknown_upstream(self):
        p = self.d.ctl("test-upstream", "nope", check=1)
        self.assertIn(b'no [[upstream]] named "nope"', p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
