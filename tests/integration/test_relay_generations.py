#!/usr/bin/python3
"""Configuration generations (issue 8 items 2, 6): a SIGHUP that renames,
removes and re-adds an upstream while deliveries to it are in flight and
failing never crashes outboxd, and every message is delivered exactly once
under the new configuration; 300 SIGHUPs under a light load leave RSS
within 5 MB (old generations and their secrets are freed)."""

import collections
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402
from test_relay_delivery import BODY, message  # noqa: E402

SENDER = "app@client.test"


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class RelayGenerations(unittest.TestCase):
    def upstream(self, **kw):
        up = Upstream("plain", **kw).start()
        self.addCleanup(up.stop)
        return up

    def configure(self, d, ups, route):
        d.extra_toml = relay_toml([upstream_section(name, port, timeout="2s") for name, port in ups],
                                  routes=[("*", route)], retry={"lifetime": "10m"})
        d.write_config()

    def hup(self, d, expect_ok=True):
        n = len(d.events("reload", status="ok"))
        os.kill(d.proc.pid, signal.SIGHUP)
        if expect_ok:
            deadline = time.monotonic() + 10
            while len(d.events("reload", status="ok")) <= n:
                self.assertTrue(d.running(), "outboxd exited with %s; %s" % (d.proc.poll(), d.log_tail()))
                self.assertLess(time.monotonic(), deadline, d.log_tail())
                time.sleep(0.02)

    def test_rename_remove_readd_while_failing_deliveries_are_in_flight(self):
        u1, u2 = self.upstream(name="u1"), self.upstream(name="u2")
        # Deliveries are slow to start (a 0.7 s greeting) and then refused
        # with replies of scope upstream (throttling): they are in flight
        # and failing when the configuration changes under them.
        for u in (u1, u2):
            u.fail("GREETING", "stall:0.7")
            u.fail("MAIL", "421 4.7.0 Too many connections, slow down")
        d = harness.Daemon(name="outbox-gen")
        self.addCleanup(d.cleanup)
        self.configure(d, [("alpha", u1.port)], ["alpha"])
        d.start()
        rcpts = ["r%02d@example.test" % i for i in range(12)]
        with d.smtplib() as s:
            for r in rcpts:
                s.sendmail(SENDER, [r], message(SENDER, [r], "generations", BODY))
        u1.wait_for(lambda: u1.connections >= 1, what="a delivery in flight")
        generations = [
            ([("beta", u1.port)], ["beta"]),                       # alpha renamed
            ([("gamma", u2.port)], ["gamma"]),                     # beta removed
            ([("alpha", u1.port), ("gamma", u2.port)], ["alpha", "gamma"]),   # alpha re-added
        ]
        for _ in range(4):
            for ups, route in generations:
                self.configure(d, ups, route)
                self.hup(d)
                time.sleep(0.35)   # inside the stalled greetings and the 421s that follow
        self.assertTrue(d.events("upstream_failed") or d.events("upstream_suspended"), d.log_tail())
        # The last generation stays; the faults clear: every message goes out once.
        u1.clear()
        u2.clear()
        deadline = time.monotonic() + 60
        while len(u1.delivered()) + len(u2.delivered()) < len(rcpts):
            self.assertTrue(d.running(), d.log_tail())
            self.assertLess(time.monotonic(), deadline, (len(u1.delivered()), len(u2.delivered()), d.log_tail()))
            time.sleep(0.1)
        time.sleep(1.5)   # a duplicate would arrive now
        got = collections.Counter()
        for m in u1.delivered() + u2.delivered():
            for r in m.rcpt_tos:
                got[r] += 1
        self.assertEqual(dict(got), {r: 1 for r in rcpts})
        for ev in d.events("delivered"):
            self.assertRegex(ev["relay"], r"^(alpha|gamma)\[", "delivered under an old generation's name")
        self.assertTrue(d.running())
        self.assertEqual(d.events("relay_error"), [], d.log_tail())
        self.assertEqual(d.stop(), 0)
        left = [m for m in d.queue() if m["state"] not in ("sent", "failed")]
        self.assertEqual(left, [])

    def test_300_reloads_under_light_load_do_not_grow_rss(self):
        # Implicit TLS and AUTH: every generation loads the secret and builds
        # a TLS client context; all of it must be freed with the generation.
        u = Upstream("implicit", users={"app@provider.test": "a-password-rotated-by-every-reload"}).start()
        self.addCleanup(u.stop)
        d = harness.Daemon(name="outbox-gen-rss")
        self.addCleanup(d.cleanup)
        secret = os.path.join(d.dir, "secret")
        with open(secret, "w") as f:
            f.write("a-password-rotated-by-every-reload\n")
        os.chmod(secret, 0o600)
        d.extra_toml = relay_toml([upstream_section("mail", u.port, tls="implicit", username="app@provider.test",
                                                    password_file=secret, auth="plain")])
        d.write_config()
        d.start()
        stop = threading.Event()
        sent = []

        def load():
            with d.smtplib() as s:
                i = 0
                while not stop.is_set():
                    r = "load%d@example.test" % i
                    s.sendmail(SENDER, [r], message(SENDER, [r], "load", ["x" * 200] * 20))
                    sent.append(r)
                    i += 1
                    time.sleep(0.05)

        t = threading.Thread(target=load)
        t.start()
        try:
            for i in range(30):   # warm-up: allocator pools, first TLS/secret loads, log buffers
                self.hup(d)
            time.sleep(0.5)
            before = vm_rss_kb(d.proc.pid)
            for i in range(300):
                self.hup(d)
        finally:
            stop.set()
            t.join()
        u.wait_delivered(len(sent), timeout=30)
        time.sleep(1.5)   # the last deliveries end, their generations are freed
        after = vm_rss_kb(d.proc.pid)
        print("VmRSS before %d kB, after 300 reloads %d kB, growth %d kB, %d messages"
              % (before, after, after - before, len(sent)))
        # Under a sanitizer (tests/CMakeLists.txt sets OUTBOX_SANITIZER) RSS
        # measures its shadow memory and quarantine, not outboxd: the 300
        # reloads still run there, for races and leaks; the bound is checked
        # in the Release run.
        if not os.environ.get("OUTBOX_SANITIZER"):
            self.assertLess(after - before, 5 * 1024)
        self.assertEqual(len(d.events("reload", status="ok")), 330)
        self.assertEqual(len(u.delivered()), len(sent))
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
