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

[[upstream]]
name = "starttls-on-implicit"
host = "127.0.0.1"
port = %d
tls = "starttls"
allow_plaintext = true
""" % (cls.up_port, cls.closed_port, cls.up_port, cls.mute_port, cls.mute_port)
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

    def test_each_stage_is_printed_as_it_completes_with_its_time(self):
        p = self.d.ctl("test-upstream", "plain")
        lines = p.stdout.decode().splitlines()
        stages = [ln.split()[0] for ln in lines if ln.startswith("  ")]
        self.assertEqual(stages, ["resolve", "connect", "greeting", "ehlo", "quit"], lines)
        self.assertRegex(lines[1], r"^  connect\s+127\.0\.0\.1:%d\s+\d+ ms$" % self.up_port)
        self.assertRegex(lines[2], r"^  greeting\s+220 .*\s+\d+ ms$")
        self.assertTrue(lines[-1].startswith('ok: upstream "plain"'))

    def test_a_server_waiting_for_implicit_tls_is_named_within_the_total_timeout(self):
        # The case: tls = "starttls" (per-reply timeout 5 minutes)
        # against a port that waits for a ClientHello: it used to print
        # nothing for 5 minutes. Now it stops at --timeout and says why.
        t0 = time.monotonic()
        p = self.d.ctl("test-upstream", "starttls-on-implicit", "--timeout", "2s", check=1)
        took = time.monotonic() - t0
        out = p.stdout.decode()
        self.assertLess(took, 8, out)
        self.assertIn("  connect ", out)
        self.assertIn("FAILED", out)
        self.assertIn("gives up after 2 s", out)
        self.assertIn('set tls = "implicit"', out)
        self.assertIn(b"is not a duration", self.d.ctl("test-upstream", "plain", "--timeout", "x", check=2).stderr)

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
