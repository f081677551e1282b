"""Issue 10 item 4: the fleet ledger. Two outboxd instances send through one
upstream account and share its budget through a real redis-server started
here: together they stay within the limit. With Redis stopped both keep
accepting and delivering at [quota] fallback_share of the limit, and the log
says so. Real processes, loopback only."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
WINDOW = 20   # s: rate = ["4/20s"]


class Redis:
    def __init__(self, password=None):
        self.dir = tempfile.mkdtemp(prefix="outbox-redis-")
        self.port = harness.free_port()
        extra = ["--requirepass", password] if password else []
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir] + extra,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SlowProxy:
    """Between outboxd and Redis: every answer held back `delay` seconds, so
    that a message waits for the fleet's ledger while its connection goes on
    (its message before reaches its final dot and says ready)."""

    def __init__(self, port, delay):
        self.port, self.delay = port, delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.listener.getsockname()[1]

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            self.socks += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.listener.close()
        for s in self.socks:
            s.close()


@unittest.skipUnless(os.path.exists(REDIS), "redis-server is not installed")
class FleetQuota(unittest.TestCase):
    def setUp(self):
        self.up = Upstream("plain").start()
        self.addCleanup(self.up.stop)

    def daemon(self, name, url, extra=""):
        d = harness.Daemon(name=name)
        self.addCleanup(d.cleanup)
        d.extra_toml = (relay_toml([upstream_section("mail", self.up.port, rate=["4/%ds" % WINDOW],
                                                     max_connections=1)], retry={"max": "2s"}) +
                        '\n[quota]\nstore = "%s"\nfallback_share = 0.5\n%s' % (url, extra))
        d.write_config()
        d.start()
        d.wait_event("quota_store")
        return d

    def secret(self, text):
        folder = tempfile.mkdtemp(prefix="outbox-redis-secret-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "redis.secret")
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, 0o600)
        return path

    def start_fleet(self):
        self.redis = Redis()
        self.addCleanup(self.redis.stop)
        self.hosts = [self.daemon("outbox-fleet-a", self.redis.url), self.daemon("outbox-fleet-b", self.redis.url)]

    def submit(self, d, n, tag):
        ids = []
        with d.smtplib() as s:
            for i in range(n):
                self.assertEqual(s.sendmail("app@client.test", ["%s%d@example.test" % (tag, i)],
                                            b"Subject: fleet\r\n\r\nbody\r\n"), {})
                ids.append(s.last_queue_id)
        return ids

    def delivered_ids(self, d, ids):
        return [q for q in ids if d.show(q)["state"] == "sent"]

    def test_two_hosts_share_one_budget_and_fall_back_when_redis_is_gone(self):
        self.start_fleet()
        a, b = self.hosts
        t0 = time.monotonic()
        ids_a = self.submit(a, 4, "a")
        self.up.wait_delivered(4)
        ids_b = self.submit(b, 4, "b")
        time.sleep(3)
        # The account's 4 per window are used by host A: B waits, and says why.
        self.assertEqual(len(self.up.delivered()), 4, "the fleet exceeded the account's limit")
        self.assertEqual(self.delivered_ids(b, ids_b), [])
        waiting = b.show(ids_b[0])
        self.assertIn("the fleet's shared ledger says it is used up", waiting["last_error"])
        self.assertRegex(waiting["last_error"], r"quota: 4/4 messages per 20 s")
        self.assertEqual(b.events("bounced"), [])

        # Redis goes away: both keep accepting and delivering, each at half
        # the limit (2 per window), and the log says so.
        self.redis.stop()
        ids_a2 = self.submit(a, 4, "c")
        for d in (a, b):
            ev = d.wait_event("quota_store_unreachable", timeout=WINDOW + 15)
            self.assertEqual(ev["share"], "0.5")
            self.assertIn("still accepted and delivered", ev["hint"])
        deadline = time.monotonic() + 3 * WINDOW + 20
        seen = {}
        while time.monotonic() < deadline:
            for d, ids in ((b, ids_b), (a, ids_a2)):
                for q in self.delivered_ids(d, ids):
                    seen.setdefault(q, time.monotonic())
            if len(seen) == 8:
                break
            time.sleep(0.5)
        self.assertEqual(len(seen), 8, "not all delivered at the fallback share")
        # Paced: neither host sent its four in one window (2 per window each).
        for ids in (ids_b, ids_a2):
            times = sorted(seen[q] for q in ids)
            self.assertGreater(times[-1] - times[0], WINDOW * 0.6, times)
        self.assertGreater(time.monotonic() - t0, WINDOW)
        self.assertEqual(len(self.up.delivered()), 12)
        for d in (a, b):
            self.assertEqual(d.events("bounced"), [])
            self.assertEqual(d.stop(), 0)

    def test_password_file_authenticates_and_a_wrong_one_is_named(self):
        redis = Redis(password="s3cret-fleet")
        self.addCleanup(redis.stop)
        good = self.daemon("outbox-fleet-auth", redis.url, 'password_file = "%s"\n' % self.secret("s3cret-fleet"))
        bad = self.daemon("outbox-fleet-bad", redis.url, 'password_file = "%s"\n' % self.secret("wrong"))
        self.submit(good, 1, "g")
        self.up.wait_delivered(1)
        time.sleep(1)
        self.assertEqual(good.events("quota_store_unreachable"), [])
        self.submit(bad, 1, "w")
        ev = bad.wait_event("quota_store_unreachable")
        self.assertRegex(ev["error"], "WRONGPASS|invalid username-password|invalid password")
        self.assertNotIn("wrong", ev["error"].replace("WRONGPASS", "").replace("wrong password", ""))
        self.up.wait_delivered(2)   # still delivered, on the local ledger

    def test_messages_that_wait_for_a_slow_ledger_each_go_once(self):
        # One connection; each start waits 0.3 s for the ledger. While a
        # message waits, the one before it reaches its final dot and the
        # connection says ready. Taken as ready for more, it was given a
        # third message, which replaced the waiting one: that one stayed
        # 'active', never sent, until a restart.
        self.redis = Redis()
        self.addCleanup(self.redis.stop)
        proxy = SlowProxy(self.redis.port, 0.3)
        self.addCleanup(proxy.stop)
        d = self.daemon("outbox-fleet-slow", proxy.url)
        ids = self.submit(d, 4, "s")
        self.up.wait_delivered(4, timeout=15)
        deadline = time.monotonic() + 10
        while self.delivered_ids(d, ids) != ids and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.delivered_ids(d, ids), ids, [d.show(q)["state"] for q in ids])
        time.sleep(0.5)
        self.assertEqual(sorted(r for m in self.up.delivered() for r in m.rcpt_tos),
                         ["s%d@example.test" % i for i in range(4)], "each message once")

    def test_timeout_bounds_a_store_that_never_answers(self):
        # A listener that accepts and never says anything: each question is
        # given up after [quota] timeout, and the mail goes on the local ledger.
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        self.addCleanup(mute.close)
        d = self.daemon("outbox-fleet-mute", "redis://127.0.0.1:%d/0" % mute.getsockname()[1], 'timeout = "1s"\n')
        t0 = time.monotonic()
        self.submit(d, 1, "m")
        ev = d.wait_event("quota_store_unreachable", timeout=15)
        self.up.wait_delivered(1)
        self.assertLess(time.monotonic() - t0, 6)
        self.assertTrue(ev["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
