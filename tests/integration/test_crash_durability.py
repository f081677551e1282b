#!/usr/bin/python3
"""The 250 promise (RFC 5321 §6.1, SPEC "SMTP submission"): a message is
acknowledged only once it is durably in the spool. 20 concurrent clients
submit continuously while outboxd is killed with SIGKILL at several points;
after each restart

- every message that got a 250 is listed, complete and byte-identical;
- every listed message got a 250, or its 250 may have been lost in flight
  (the client sent the final dot and the connection died before the reply:
  RFC 1047) - those are allowed only when complete and byte-identical;
- nothing is listed twice, nothing refused or cut off mid-DATA is listed.

Then SIGTERM while clients are mid-DATA: exit 0 within 10 s, every client
got a 250, a 421/451 or a closed connection, and every 250 is kept."""

import base64
import concurrent.futures
import hashlib
import os
import random
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS = 20


def make_message(token, size):
    """A message of about `size` bytes whose headers name a unique token and
    the SHA-256 of the body; lines starting with '.' exercise dot-stuffing."""
    rnd = random.Random(token)
    lines = []
    n = 0
    i = 0
    while n < size:
        chunk = base64.b64encode(rnd.randbytes(57)).decode()
        line = ("." if i % 7 == 0 else "") + chunk
        lines.append(line)
        n += len(line) + 2
        i += 1
    body = ("\r\n".join(lines) + "\r\n").encode()
    sha = hashlib.sha256(body).hexdigest()
    head = ("From: load@client.test\r\nTo: sink@example.test\r\nSubject: load %s\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <%s@client.test>\r\n"
            "X-Token: %s\r\nX-Body-SHA256: %s\r\n\r\n" % (token, token, token, sha)).encode()
    return head + body


def token_of(stored):
    fields, body = harness.header_block(stored)
    tok = sha = None
    for name, raw in fields:
        if name.lower() == "x-token":
            tok = raw.split(b":", 1)[1].strip().decode()
        elif name.lower() == "x-body-sha256":
            sha = raw.split(b":", 1)[1].strip().decode()
    return tok, sha, body


class Load:
    """Clients that submit until told to stop, recording exactly what each
    reply told them. Shared state under one lock."""

    def __init__(self, addr, round_name, sizes=(1000, 8000), big_every=0, big_size=1 << 20):
        self.addr = addr
        self.round = round_name
        self.sizes = sizes
        self.big_every = big_every
        self.big_size = big_size
        self.lock = threading.Lock()
        self.acked = {}        # id -> token
        self.messages = {}     # token -> bytes
        self.uncertain = set()  # tokens whose final dot may have reached the daemon
        self.refused = {}      # token -> reply
        self.cut = set()       # tokens whose DATA was cut before the final dot
        self.big_bytes = 0     # bytes of big bodies written, all clients
        self.big_open = 0      # clients in the middle of a big body
        self.big_done = 0      # big messages acknowledged
        self.stop = threading.Event()
        self.errors = []
        self.threads = []

    def start(self, n=CLIENTS):
        self.threads = harness.run_threads([lambda k=k: self.client(k) for k in range(n)])

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
            if t.is_alive():
                raise AssertionError("a client thread hangs")
        if self.errors:
            raise AssertionError("client errors: %r" % self.errors[:5])

    def n_acked(self):
        with self.lock:
            return len(self.acked)

    def client(self, k):
        rnd = random.Random("%s-%d" % (self.round, k))
        seq = 0
        while not self.stop.is_set():
            try:
                c = harness.SMTPClient(self.addr, timeout=20)
            except OSError:
                time.sleep(0.02)
                continue
            try:
                if c.reply().code != 220:
                    raise harness.ConnectionClosed("refused at connect (shutting down)")
                if c.cmd("EHLO client.test").code != 250:
                    raise harness.ConnectionClosed("EHLO refused")
                # a few messages per connection, as real clients do
                for _ in range(rnd.randint(1, 4)):
                    if self.stop.is_set():
                        break
                    seq += 1
                    token = "%s-%02d-%05d" % (self.round, k, seq)
                    big = self.big_every and seq % self.big_every == 1
                    msg = make_message(token, self.big_size if big else rnd.randint(*self.sizes))
                    with self.lock:
                        self.messages[token] = msg
                    self.one(c, token, msg, big, rnd)
                c.cmd("QUIT")
            except (OSError, harness.ConnectionClosed, socket.timeout):
                pass   # the daemon went away; whatever was in flight is recorded
            except AssertionError as e:
                self.errors.append(str(e))
            finally:
                c.close()

    @staticmethod
    def expect(c, line, code):
        r = c.cmd(line)
        if r.code == 421:   # the daemon is stopping (SIGTERM test): as good as closed
            raise harness.ConnectionClosed(r.text)
        if r.code != code:
            raise AssertionError("%s: %r" % (line, r))

    def one(self, c, token, msg, big, rnd):
        self.expect(c, "MAIL FROM:<load@client.test>", 250)
        self.expect(c, "RCPT TO:<sink-%s@example.test>" % token, 250)
        self.expect(c, "DATA", 354)
        data = harness.dot_stuff(msg)
        with self.lock:
            self.cut.add(token)
            if big:
                self.big_open += 1
        try:
            # Big bodies go in pieces with pauses, so that at any moment some
            # clients are inside DATA without their final dot sent: socket
            # buffers would otherwise swallow a whole MiB at once.
            step = 256 * 1024 if big else len(data)
            for off in range(0, len(data), step):
                c.send(data[off:off + step])
                if big:
                    with self.lock:
                        self.big_bytes += len(data[off:off + step])
                    time.sleep(rnd.uniform(0.01, 0.08))
        finally:
            if big:
                with self.lock:
                    self.big_open -= 1
        with self.lock:
            self.cut.discard(token)
            self.uncertain.add(token)
        c.send(b".\r\n")
        r = c.reply(timeout=30)
        with self.lock:
            self.uncertain.discard(token)
            if r.code == 250:
                qid = r.queue_id
                if not qid:
                    self.errors.append("250 without a queue id: %r" % r)
                self.acked[qid] = token
                self.big_done += 1 if big else 0
            else:
                self.refused[token] = r


class CrashDurability(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(limits={"max_connections_per_client": 100, "max_connections": 200})
        cls.d.start()
        cls.acked = {}      # id -> token, every round
        cls.messages = {}   # token -> bytes, every round
        cls.uncertain = set()
        cls.verified = set()   # ids whose body was already compared
        cls.stored_tokens = {}  # token -> the one id that holds it

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def run_round(self, name, kill_when, **load_kw):
        d = self.d
        load = Load(d.addr, name, **load_kw)
        load.start()
        try:
            kill_when(load)
        finally:
            d.kill9()
            load.join()
        self.acked.update(load.acked)
        self.messages.update(load.messages)
        self.uncertain |= load.uncertain
        sys.stderr.write("round %s: %d acked, %d in flight at the kill, %d cut mid-DATA, %d refused\n"
                         % (name, len(load.acked), len(load.uncertain), len(load.cut), len(load.refused)))
        for token, r in load.refused.items():
            self.fail("round %s: message %s refused: %r" % (name, token, r))
        t0 = time.monotonic()
        d.start()
        t1 = time.monotonic()
        self.verify()
        sys.stderr.write("  restart %.2f s, verify %.2f s\n" % (t1 - t0, time.monotonic() - t1))
        return load

    def verify(self):
        d = self.d
        listed = d.queue()
        by_id = {m["id"]: m for m in listed}
        self.assertEqual(len(by_id), len(listed), "an id is listed twice")
        missing = set(self.acked) - set(by_id)
        self.assertEqual(missing, set(), "acknowledged (250) but lost after kill -9: %r"
                         % sorted((i, self.acked[i]) for i in missing)[:10])
        for m in listed:
            self.assertEqual(m["state"], "queued", m)
        # compare bodies of everything not compared yet (acked ones never change)
        todo = [i for i in by_id if i not in self.verified]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            bodies = dict(zip(todo, ex.map(d.body, todo)))
        for qid, stored in bodies.items():
            tok, sha, body = token_of(stored)
            self.assertIsNotNone(tok, "%s has no X-Token: %r" % (qid, stored[:500]))
            if qid in self.acked:
                self.assertEqual(tok, self.acked[qid], "%s holds another message" % qid)
            else:
                self.assertIn(tok, self.uncertain,
                              "%s (%s) is listed but never got a 250 and was not in flight" % (qid, tok))
                sys.stderr.write("  %s: 250 lost in flight, message kept complete\n" % tok)
            self.assertNotIn(tok, self.stored_tokens,
                             "message %s stored twice: %s and %s" % (tok, self.stored_tokens.get(tok), qid))
            self.stored_tokens[tok] = qid
            harness.assert_stored(self, stored, self.messages[tok], ["received"])
            self.assertEqual(hashlib.sha256(body).hexdigest(), sha, "%s: body does not match its hash" % qid)
            self.assertEqual(by_id[qid]["size"], len(stored))
            self.verified.add(qid)

    # kill points ----------------------------------------------------------------------
    def test_kill9_rounds(self):
        def after(seconds):
            return lambda load: time.sleep(seconds)

        def after_acks(n):
            def wait(load):
                deadline = time.monotonic() + 20
                while load.n_acked() < n and time.monotonic() < deadline:
                    time.sleep(0.002)
            return wait

        def mid_big(load):
            # several clients are inside a 1 MiB DATA and others are committing
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with load.lock:
                    if load.big_open >= 3 and load.big_done >= 3:
                        return
                time.sleep(0.002)

        self.run_round("r1", after(0.3))
        self.run_round("r2", after(1.0))
        self.run_round("r3", after(2.0))
        big = self.run_round("r4", mid_big, big_every=2)
        self.assertGreater(len(big.cut), 0, "no client was mid-DATA at the kill")
        # the half-received messages were found and dropped at start (SPEC)
        rec = self.d.events("recovered", since_start=True)
        self.assertTrue(rec and int(rec[0].get("discarded_incomplete", 0)) >= 1,
                        "no event=recovered discarded_incomplete=N after killing mid-DATA: %r" % rec)
        self.run_round("r5", after_acks(30))
        self.run_round("r6", after(random.Random(6).uniform(0.05, 1.5)))
        self.assertGreater(len(self.acked), 50, "too little load to mean anything")

    def test_reload_storm_under_load(self):
        # SIGHUP re-reads the configuration "without dropping mail" (SPEC):
        # ten reloads while 20 clients submit refuse nothing and lose nothing.
        d = self.d
        if not d.running():
            d.start()
        load = Load(d.addr, "hup")
        load.start()
        for _ in range(10):
            time.sleep(0.15)
            d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        load.join()
        self.assertTrue(d.running(), d.log_tail())
        self.assertEqual(load.refused, {})
        self.assertEqual(load.uncertain, set(), "a connection died during a reload")
        self.assertGreaterEqual(len(d.events("reload", since_start=True)), 1)
        self.acked.update(load.acked)
        self.messages.update(load.messages)
        self.verify()

    def test_sigterm_with_clients_mid_data(self):
        d = self.d
        if not d.running():
            d.start()
        load = Load(d.addr, "term")
        load.start(10)
        # clients that are inside DATA when SIGTERM arrives
        mids = []
        results = {}
        ready = threading.Barrier(7)
        go = threading.Event()

        def mid(k):
            token = "term-mid-%d" % k
            msg = make_message(token, 200000)
            data = harness.dot_stuff(msg)
            with load.lock:
                load.messages[token] = msg
            c = harness.SMTPClient(d.addr, timeout=20)
            try:
                c.greet()
                c.cmd("MAIL FROM:<mid@client.test>")
                c.cmd("RCPT TO:<mid-%d@example.test>" % k)
                assert c.cmd("DATA").code == 354
                c.send(data[:len(data) // 2])
                ready.wait(20)
                go.wait(20)
                if k >= 4:
                    time.sleep(1.0)   # finishes late, still inside the grace
                if k == 5:
                    # never finishes: must be cut off (421), not waited for forever
                    closed = c.wait_closed(15)
                    results[token] = ("closed" if closed else "still open", bytes(c.buf))
                    return
                c.send(data[len(data) // 2:])
                with load.lock:
                    load.uncertain.add(token)
                c.send(b".\r\n")
                r = c.reply(timeout=15)
                with load.lock:
                    load.uncertain.discard(token)
                    if r.code == 250:
                        load.acked[r.queue_id] = token
                results[token] = r
            except (OSError, harness.ConnectionClosed, socket.timeout) as e:
                results[token] = ("closed", repr(e))
            finally:
                c.close()

        mids = harness.run_threads([lambda k=k: mid(k) for k in range(6)])
        ready.wait(20)
        time.sleep(0.3)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        go.set()
        try:
            rc = d.proc.wait(10.5)
        except Exception:
            self.fail("outboxd did not exit within 10 s of SIGTERM:\n" + d.log_tail())
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLess(elapsed, 10.5)
        d.kill9()   # closes the log handle; the process is gone already
        load.join()
        for t in mids:
            t.join(20)
        for token, r in results.items():
            if isinstance(r, harness.Reply):
                self.assertIn(r.code, (250, 421, 451), "%s: %r" % (token, r))
            else:
                self.assertEqual(r[0], "closed", "%s: %r" % (token, r))
                if isinstance(r[1], bytes) and r[1]:
                    self.assertTrue(r[1].startswith(b"421") or r[1].startswith(b"451"), r)
        for ok in ("term-mid-0", "term-mid-1", "term-mid-2", "term-mid-3"):
            self.assertIn(ok, results)
        self.assertTrue(d.events("stopping"), "no event=stopping in the log")
        self.assertTrue(d.events("stopped"), "no event=stopped in the log")
        self.acked.update(load.acked)
        self.messages.update(load.messages)
        self.uncertain |= load.uncertain
        sys.stderr.write("sigterm: %d acked by load, mid-DATA results %r\n"
                         % (len(load.acked), {k: (v.code if isinstance(v, harness.Reply) else v[0])
                                              for k, v in results.items()}))
        self.verify()      # with the daemon stopped: reading works
        d.start()
        self.verify()


if __name__ == "__main__":
    unittest.main(verbosity=2)
