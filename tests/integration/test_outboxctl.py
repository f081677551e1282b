#!/usr/bin/python3
"""outboxctl against real submitted mail (SPEC "outboxctl"): queue, show,
hold/release, retry, delete, stats, exit codes 0/1/2/3; everything both while
outboxd runs and after it stopped (reading and changes work either way)."""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NO_SUCH = 3
USAGE = 2


def find_state_counts(obj):
    """The dict in stats --json that maps state names to counts (wherever the
    layout puts it)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("queued"), int) and isinstance(obj.get("held", 0), int):
            return obj
        for v in obj.values():
            r = find_state_counts(v)
            if r is not None:
                return r
    elif isinstance(obj, list):
        # [{"state": "queued", "count": 3}, ...]
        if obj and all(isinstance(x, dict) and "state" in x and "count" in x for x in obj):
            return {x["state"]: x["count"] for x in obj}
        for v in obj:
            r = find_state_counts(v)
            if r is not None:
                return r
    return None


class Outboxctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def submit(self, n, tag):
        ids = []
        for i in range(n):
            rcpts = ["%s-%d-a@example.test" % (tag, i), "%s-%d-b@example.net" % (tag, i)]
            body = (b"From: %s@client.test\r\nTo: %s\r\nSubject: ctl %s %d\r\n"
                    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <%s.%d@client.test>\r\n\r\nbody\r\n"
                    % (tag.encode(), rcpts[0].encode(), tag.encode(), i, tag.encode(), i))
            qid, _ = self.d.submit(sender="%s@client.test" % tag, rcpts=rcpts, body=body)
            ids.append(qid)
        return ids

    def state_of(self, qid):
        for m in self.d.queue():
            if m["id"] == qid:
                return m["state"]
        return None

    def check_entry_fields(self, m):
        for key in ("id", "state", "sender", "recipients", "size", "created", "attempts", "next_attempt",
                    "last_error"):
            self.assertIn(key, m, "queue --json entry lacks %r: %r" % (key, m))
        self.assertTrue(harness.ID_CHARS_RE.match(m["id"]), m["id"])
        self.assertIn(m["state"], ("queued", "active", "deferred", "held", "sent", "failed"))
        self.assertIsInstance(m["size"], int)
        self.assertIsInstance(m["attempts"], int)
        self.assertRegex(m["created"], RFC3339_UTC)
        if m["next_attempt"] is not None:
            self.assertRegex(m["next_attempt"], RFC3339_UTC)
        self.assertTrue(m["last_error"] is None or isinstance(m["last_error"], str), m)
        for r in m["recipients"]:
            for key in ("address", "state", "last_reply"):
                self.assertIn(key, r, "recipient lacks %r: %r" % (key, r))
            self.assertIn(r["state"], ("pending", "sent", "failed"))

    def exercise(self, running):
        """The whole command set; `running` only changes what we expect of logs."""
        d = self.d
        tag = "run" if running else "stopped"
        # --- reading -----------------------------------------------------------------
        if running:
            ids = self.submit(3, tag)
        else:
            ids = [m["id"] for m in d.queue() if m["sender"].startswith("pre-stop")]
            self.assertEqual(len(ids), 3)
            tag = "pre-stop"
        q = d.queue()
        by_id = {m["id"]: m for m in q}
        for qid in ids:
            self.assertIn(qid, by_id)
            self.check_entry_fields(by_id[qid])
            self.assertEqual(by_id[qid]["state"], "queued")
            self.assertEqual(by_id[qid]["sender"], "%s@client.test" % tag)
            self.assertEqual(len(by_id[qid]["recipients"]), 2)
        self.assertEqual([m["id"] for m in q], sorted(m["id"] for m in q), "queue is not in id (time) order")

        text = d.ctl("queue").stdout.decode()
        for qid in ids:
            self.assertIn(qid, text)
            self.assertIn(by_id[qid]["recipients"][0]["address"], text)
        self.assertIn("%s@client.test" % tag, text)

        queued = d.queue("queued")
        self.assertTrue(all(m["state"] == "queued" for m in queued))
        self.assertTrue(set(ids) <= {m["id"] for m in queued})
        text = d.ctl("queue", "--state", "queued").stdout.decode()
        for qid in ids:
            self.assertIn(qid, text)

        shown = d.show(ids[0])
        self.check_entry_fields(shown)
        self.assertEqual(shown["id"], ids[0])
        self.assertIn("attempts_history", shown)
        self.assertIsInstance(shown["attempts_history"], list)
        text = d.ctl("show", ids[0]).stdout.decode()
        self.assertIn(ids[0], text)
        self.assertIn("%s@client.test" % tag, text)
        for r in shown["recipients"]:
            self.assertIn(r["address"], text)
        self.assertIn("Subject: ctl %s 0" % tag, text, "show prints the headers")
        body = d.body(ids[0])
        self.assertTrue(body.startswith(b"Received:"), body[:200])
        self.assertTrue(body.endswith(b"\r\n\r\nbody\r\n"), body[-100:])
        self.assertEqual(len(body), shown["size"])

        # --- no such message ----------------------------------------------------------------
        for args in (["show", "NOPE"], ["show", "00000000000000"], ["show", "NOPE", "--json"],
                     ["hold", "NOPE"], ["release", "NOPE"], ["retry", "NOPE"], ["delete", "NOPE"]):
            p = d.ctl(*args, check=NO_SUCH)
            self.assertTrue(p.stderr.strip(), "%s: no reason on stderr" % args)

        # --- changes -----------------------------------------------------------------------
        d.ctl("hold", ids[1])
        self.assertEqual(self.state_of(ids[1]), "held")
        held = d.queue("held")
        self.assertEqual([m["id"] for m in held if m["id"] in ids], [ids[1]])
        self.assertNotIn(ids[1], {m["id"] for m in d.queue("queued")})
        d.ctl("release", ids[1])
        self.assertEqual(self.state_of(ids[1]), "queued")

        d.ctl("retry", ids[2])
        m = d.show(ids[2])
        self.assertIn(m["state"], ("queued", "active", "deferred"))
        d.ctl("retry", "--all")

        p = d.ctl("delete", ids[0])
        self.assertIsNone(self.state_of(ids[0]))
        d.ctl("show", ids[0], check=NO_SUCH)
        # "remove, with a log line": outboxctl writes it (stdout/stderr; and syslog)
        out = (p.stdout + b"\n" + p.stderr).decode(errors="replace").splitlines()
        logged = [kv for kv in map(harness.parse_kv, out) if kv and kv.get("event") == "deleted"]
        logged += d.events("deleted", id=ids[0])
        self.assertTrue(logged, "delete left no event=deleted line (stdout %r, stderr %r)" % (p.stdout, p.stderr))
        self.assertEqual(logged[0]["id"], ids[0])
        self.assertEqual(logged[0].get("from"), "%s@client.test" % tag)

        # --- stats -------------------------------------------------------------------------
        stats = d.ctl_json("stats", "--json")
        counts = find_state_counts(stats)
        self.assertIsNotNone(counts, "stats --json has no counts by state: %r" % stats)
        q = d.queue()
        for state in ("queued", "held"):
            self.assertEqual(counts.get(state, 0), sum(1 for m in q if m["state"] == state),
                             "stats count for %s: %r" % (state, stats))
        self.assertEqual(d.ctl("stats").returncode, 0)
        prom = d.ctl("stats", "--prometheus").stdout.decode()
        samples = [l for l in prom.splitlines() if l and not l.startswith("#")]
        self.assertTrue(samples, prom)
        for l in samples:
            self.assertRegex(l, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.eE+-]+(\s+\d+)?$|^\S+ (NaN|[+-]Inf)$')
        self.assertTrue(any('"queued"' in l for l in samples), prom)
        return ids

    def test_1_while_running(self):
        self.exercise(running=True)

    def test_2_after_stop(self):
        d = self.d
        self.submit(3, "pre-stop")
        self.assertEqual(d.stop(), 0)
        self.exercise(running=False)
        # and the daemon sees the changes made while it was down
        d.start()
        q = d.queue()
        self.assertEqual(len([m for m in q if m["sender"] == "pre-stop@client.test"]), 2)

    def test_3_hold_survives_restart(self):
        d = self.d
        if not d.running():
            d.start()
        (qid,) = self.submit(1, "holdme")
        d.ctl("hold", qid)
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(self.state_of(qid), "held")
        d.ctl("release", qid)
        self.assertEqual(self.state_of(qid), "queued")

    def test_usage_errors_exit_2(self):
        for args in (["frobnicate"], ["show"], ["queue", "--state"], ["hold"]):
            p = self.d.ctl(*args, check=USAGE)
            self.assertTrue(p.stderr.strip() or p.stdout.strip())

    def test_help_version_hash_read_no_config(self):
        env = dict(os.environ, OUTBOX_CONFIG="/nonexistent/outbox.toml")
        exe = harness.binpath("outboxctl")
        for args in (["--help"], ["--version"]):
            p = subprocess.run([exe] + args, capture_output=True, env=env, timeout=10)
            self.assertEqual(p.returncode, 0, (args, p.stderr))
            self.assertTrue(p.stdout.strip())
        p = subprocess.run([exe, "hash-password"], input=b"s3cret-app-code\n", capture_output=True, env=env,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertEqual(len(out.strip().splitlines()), 1, "stdout holds only the hash: %r" % out)
        self.assertTrue(out.startswith("$scrypt$"), out)
        self.assertNotIn("s3cret", out + p.stderr.decode(errors="replace"))


class UnderLoad(unittest.TestCase):
    """Operators change the queue while mail pours in: outboxctl's writes and
    the daemon's commits share one SQLite file; neither may fail for it."""

    def test_changes_while_clients_submit(self):
        with harness.Daemon() as d:
            d.start()
            stop = threading.Event()
            lock = threading.Lock()
            acked, bad = [], []

            # Paced and bounded: outboxd accepts thousands a second, and the
            # listings (under ASan, with the clients at full speed for the
            # minute the rounds may take: 300,000 messages) must stay listings,
            # not a benchmark.
            limit = 6000

            def client(k):
                while not stop.is_set():
                    try:
                        with d.client(timeout=30) as c:
                            c.greet()
                            for i in range(200):   # one connection, as a busy application does
                                with lock:
                                    if len(acked) + len(bad) >= limit:
                                        stop.set()
                                if stop.is_set():
                                    break
                                time.sleep(0.01)
                                body = b"Subject: load %d %d\r\n\r\n" % (k, i) + b"z" * 2000 + b"\r\n"
                                r = c.submit("load@client.test", ["sink@example.test"], body)
                                with lock:
                                    (acked if r.code == 250 else bad).append(r.queue_id if r.code == 250 else r)
                            c.cmd("QUIT")
                    except Exception as e:   # noqa: BLE001 - reported below
                        with lock:
                            bad.append(repr(e))
                        return

            threads = harness.run_threads([lambda k=k: client(k) for k in range(10)])
            deleted, held = set(), set()
            # ASan beside other tests on two cores: 15 rounds took over a minute.
            deadline = time.monotonic() + 240
            rounds = 0
            while rounds < 15 and time.monotonic() < deadline:
                with lock:
                    ids = [i for i in acked if i not in deleted]
                if len(ids) < 3:
                    time.sleep(0.05)
                    continue
                rounds += 1
                if rounds % 5 == 0:
                    d.queue(timeout=120)   # ASan beside other tests: a loaded daemon lists slowly
                victim, keep = ids[-1], ids[-2]
                d.ctl("hold", keep)
                held.add(keep)
                d.ctl("delete", victim)
                deleted.add(victim)
                held.discard(victim)   # once the clients stop, the last ids repeat: a held one may go
                if rounds % 2:
                    d.ctl("release", keep)
                    held.discard(keep)
                d.ctl("retry", "--all")
                d.ctl_json("stats", "--json")
            stop.set()
            for t in threads:
                t.join(60)
            self.assertEqual(bad, [], "clients refused while outboxctl wrote")
            self.assertEqual(rounds, 15)
            q = d.queue_by_id(timeout=120)
            self.assertEqual(set(q), set(acked) - deleted)
            for qid in held:
                self.assertEqual(q[qid]["state"], "held")
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
