#!/usr/bin/python3
"""sd_notify (SPEC "systemd"): READY=1 once the listeners accept connections
and the spool is open, STATUS= with the number of messages queued (at start
and every 30 s), WATCHDOG=1 every WATCHDOG_USEC/2, RELOADING=1 then READY=1
on SIGHUP, STOPPING=1 on SIGTERM.
The test plays systemd: it binds the NOTIFY_SOCKET datagram socket."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def links_libsystemd():
    p = subprocess.run(["ldd", harness.binpath("outboxd")], capture_output=True, text=True)
    return "libsystemd" in p.stdout


class Notifications:
    """The receiving end of NOTIFY_SOCKET, with every datagram kept in order."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="outbox-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []   # (monotonic time, assignment)

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)

    def poll(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return False
        now = time.monotonic()
        for line in data.decode().split("\n"):
            if line:
                self.got.append((now, line))
        return True

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            for _, line in self.got:
                if pred(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; got %r" % (what, timeout, [l for _, l in self.got]))
            self.poll(min(left, 0.5))

    def lines(self, prefix):
        return [l for _, l in self.got if l.startswith(prefix)]


@unittest.skipUnless(links_libsystemd(), "outboxd built without libsystemd")
class Notify(unittest.TestCase):
    def setUp(self):
        self.n = Notifications()
        self.d = harness.Daemon(name="outbox-notify")

    def tearDown(self):
        self.d.cleanup()
        self.n.close()

    def start(self, watchdog_usec=None):
        old = dict(os.environ)
        os.environ["NOTIFY_SOCKET"] = self.n.path
        # Without WATCHDOG_PID, sd_watchdog_enabled() takes WATCHDOG_USEC as ours.
        os.environ.pop("WATCHDOG_PID", None)
        if watchdog_usec:
            os.environ["WATCHDOG_USEC"] = str(watchdog_usec)
        else:
            os.environ.pop("WATCHDOG_USEC", None)
        try:
            self.d.start(wait=False)
        finally:
            os.environ.clear()
            os.environ.update(old)

    def test_ready_status_watchdog_stopping(self):
        self.start(watchdog_usec=2_000_000)
        self.n.wait_for(lambda l: l == "READY=1", 20, "READY=1")
        # READY=1 means "serving": both listeners take connections at once,
        # and the ready log line is already written.
        with self.d.client() as c:
            self.assertEqual(c.reply().code, 220)
        with self.d.client(unix=True) as c:
            self.assertEqual(c.reply().code, 220)
        self.assertTrue(self.d.events("ready", since_start=True))
        self.n.wait_for(lambda l: l == "STATUS=0 messages queued", 10, "STATUS at start")

        # WATCHDOG=1 every second (half of 2 s), for as long as it runs.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            self.n.poll(0.5)
        pings = [t for t, l in self.n.got if l == "WATCHDOG=1" and t >= t0]
        self.assertGreaterEqual(len(pings), 3, self.n.got)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), 1.9, gaps)

        # STATUS follows the queue: two messages (no route, so they stay queued)
        # show within the 30 s refresh.
        self.d.submit()
        self.d.submit(unix=True)
        self.n.wait_for(lambda l: l == "STATUS=2 messages queued", 40, "STATUS with 2 messages")

        # SIGHUP (ExecReload=): RELOADING=1, then READY=1 again.
        self.d.proc.send_signal(1)
        self.n.wait_for(lambda l: l == "RELOADING=1", 10, "RELOADING=1")
        self.d.wait_event("reload", status="ok")
        self.n.wait_for(lambda l: [x for _, x in self.n.got].count("READY=1") == 2, 10, "READY=1 after reload")

        self.d.proc.send_signal(15)
        self.n.wait_for(lambda l: l == "STOPPING=1", 10, "STOPPING=1")
        self.assertEqual(self.d.proc.wait(15), 0)
        order = [l for _, l in self.n.got if l in ("READY=1", "RELOADING=1", "STOPPING=1")]
        self.assertEqual(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"])

    def test_status_at_start_counts_the_spool(self):
        self.d.start()
        self.d.submit()
        self.assertEqual(self.d.stop(), 0)
        self.start()
        self.n.wait_for(lambda l: l == "READY=1", 20, "READY=1")
        self.n.wait_for(lambda l: l == "STATUS=1 message queued", 10, "STATUS with 1 message")
        # No WATCHDOG_USEC, no pings.
        time.sleep(1.0)
        while self.n.poll(0.1):
            pass
        self.assertEqual(self.n.lines("WATCHDOG"), [])

    def test_no_ready_when_a_listener_cannot_bind(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", self.d.port))
            busy.listen(1)
            self.start()
            self.assertEqual(self.d.proc.wait(20), harness.EX_SOFTWARE)
        while self.n.poll(0.2):
            pass
        self.assertNotIn("READY=1", [l for _, l in self.n.got])


if __name__ == "__main__":
    unittest.main(verbosity=2)
