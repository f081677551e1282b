#!/usr/bin/python3
"""outboxd as a program (SPEC "Programs", "Configuration", "systemd"):
--version/--help read no configuration, --check, exit 78 on bad configuration
naming file:line:key, exit 70 when the spool or a listener cannot be opened,
SIGTERM/SIGINT exit 0 with a log line, SIGHUP does not kill, TCP and Unix
listeners both serve, the socket has the configured mode."""

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

OUTBOXD = harness.binpath("outboxd")


def run(args, timeout=20, env=None):
    return subprocess.run([OUTBOXD] + args, capture_output=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def line_of(text, needle):
    for i, l in enumerate(text.splitlines(), 1):
        if needle in l:
            return i
    raise AssertionError("%r not in config" % needle)


class ProgramFlags(unittest.TestCase):
    def test_version_and_help_read_no_config(self):
        env = dict(os.environ, OUTBOX_CONFIG="/nonexistent/outbox.toml")
        p = run(["--version"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout.decode(), r"outboxd.*\d+\.\d+\.\d+")
        p = run(["--config", "/nonexistent/outbox.toml", "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run(["--help"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("--config", p.stdout.decode())
        self.assertIn("--check", p.stdout.decode())

    def test_unknown_flag_is_usage_error(self):
        p = run(["--frobnicate"])
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())


class Check(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()

    def tearDown(self):
        self.d.cleanup()

    def write(self, text):
        with open(self.d.config_path, "w") as f:
            f.write(text)
        return text

    def test_check_good_config(self):
        p = run(["--config", self.d.config_path, "--check"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(self.d.spool_path), "--check must not create the spool")
        self.assertFalse(os.path.exists(self.d.socket_path), "--check must not bind")

    def test_check_repository_configs(self):
        # the shipped development config must stay valid
        p = subprocess.run([OUTBOXD, "--config", "etc/outbox.dev.toml", "--check"], capture_output=True,
                           cwd=harness.SOURCE, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)

    def bad(self, mutate, key, expect_line=True):
        base = self.d.config_text()
        text = self.write(mutate(base))
        for args in (["--check"], []):
            p = run(["--config", self.d.config_path] + args)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, harness.EX_CONFIG, "%s: exit %d, stderr %r" % (key, p.returncode, err))
            self.assertIn(key, err, "error does not name the key")
            self.assertIn(self.d.config_path, err, "error does not name the file")
            if expect_line:
                n = line_of(text, expect_line if isinstance(expect_line, str) else key)
                self.assertIn("%s:%d" % (self.d.config_path, n), err, "error does not name the line")
        self.assertFalse(os.path.exists(self.d.spool_path), "a refused config must not create the spool")
        return err

    def test_bad_values_exit_78_with_file_line_key(self):
        cases = [
            (lambda t: t.replace("max_recipients = 100", 'max_recipients = "lots"'), "max_recipients"),
            (lambda t: t.replace('data_timeout = "10m"', 'data_timeout = "10x"'), "data_timeout"),
            (lambda t: t.replace('max_message_size = "35M"', 'max_message_size = "big"'), "max_message_size"),
            (lambda t: t.replace('level = "info"', 'level = "loud"'), "level"),
            (lambda t: re.sub(r'address = "127\.0\.0\.1:\d+"', 'address = "127.0.0.1"', t), "address"),
            (lambda t: t.replace('mode = "0666"', 'mode = "rw-rw-rw-"'), "mode"),
            (lambda t: t + '\n[[route]]\nsender = "*"\nupstreams = ["nowhere"]\n', "upstreams"),
        ]
        for mutate, key in cases:
            with self.subTest(key=key):
                self.bad(mutate, key)

    def test_toml_syntax_error(self):
        text = self.d.config_text().replace("[limits]", "[limits\n")
        self.write(text)
        p = run(["--config", self.d.config_path, "--check"])
        self.assertEqual(p.returncode, harness.EX_CONFIG, p.stderr)
        self.assertRegex(p.stderr.decode(), re.escape(self.d.config_path) + r":\d+")

    def test_missing_required_key(self):
        text = re.sub(r'\[spool\]\npath = [^\n]*\n', "[spool]\n", self.d.config_text())
        self.write(text)
        p = run(["--config", self.d.config_path, "--check"])
        self.assertEqual(p.returncode, harness.EX_CONFIG, p.stderr)
        err = p.stderr.decode()
        self.assertIn(self.d.config_path, err)
        self.assertIn("path", err)

    def test_missing_file(self):
        p = run(["--config", self.d.config_path + ".missing", "--check"])
        self.assertEqual(p.returncode, harness.EX_CONFIG, p.stderr)
        self.assertIn(self.d.config_path + ".missing", p.stderr.decode())


class Startup(unittest.TestCase):
    def test_spool_not_writable_exit_70(self):
        with harness.Daemon() as d:
            blocker = os.path.join(d.dir, "afile")
            with open(blocker, "w") as f:
                f.write("not a directory\n")
            d.spool_path = os.path.join(blocker, "spool.db")   # parent is a file: even root cannot
            d.write_config()
            p = run(["--config", d.config_path])
            self.assertEqual(p.returncode, harness.EX_SOFTWARE, p.stderr)
            self.assertIn(d.spool_path, p.stderr.decode(errors="replace"))
            self.assertFalse(os.path.exists(d.socket_path), "listeners bound before the spool opened")

    def test_port_in_use_exit_70(self):
        with harness.Daemon() as d, socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            d.port = s.getsockname()[1]
            d.write_config()
            p = run(["--config", d.config_path])
            self.assertEqual(p.returncode, harness.EX_SOFTWARE, p.stderr)
            self.assertIn("127.0.0.1:%d" % d.port, p.stderr.decode(errors="replace"))

    def test_path_in_place_of_socket_is_not_removed(self):
        with harness.Daemon() as d:
            with open(d.socket_path, "w") as f:
                f.write("precious\n")
            p = run(["--config", d.config_path])
            self.assertEqual(p.returncode, harness.EX_SOFTWARE, p.stderr)
            with open(d.socket_path) as f:
                self.assertEqual(f.read(), "precious\n")


class Lifecycle(unittest.TestCase):
    def test_both_listeners_serve_and_socket_mode(self):
        with harness.Daemon() as d:
            ready = d.start().wait_ready()
            self.assertIn(str(d.port), ready.get("listeners", ""))
            self.assertIn(d.socket_path, ready.get("listeners", ""))
            mode = stat.S_IMODE(os.stat(d.socket_path).st_mode)
            self.assertEqual(mode, 0o666)
            self.assertTrue(stat.S_ISSOCK(os.stat(d.socket_path).st_mode))
            tcp_id, _ = d.submit()
            unix_id, _ = d.submit(unix=True)
            with d.client() as c:
                greeting = c.reply()
                self.assertEqual(greeting.code, 220)
                self.assertIn("outbox.test", greeting.text)
                r = c.cmd("EHLO client.test")
                self.assertTrue(r.lines[0].startswith("250-outbox.test") or r.lines[0].startswith("250 outbox.test"),
                                r)
            self.assertEqual(d.wait_event("accepted", id=tcp_id)["client"], "127.0.0.1")
            self.assertEqual(d.wait_event("accepted", id=unix_id)["client"], "unix")
            # The accepted line carries the Message-ID: the client's, or the one outbox added.
            self.assertRegex(d.wait_event("accepted", id=tcp_id)["message_id"], r"^<probe\.\d+@client\.test>$")
            bare_id, _ = d.submit(body=b"Subject: no message-id\r\n\r\nhi\r\n")
            self.assertEqual(d.wait_event("accepted", id=bare_id)["message_id"], "<%s@outbox.test>" % bare_id)
            self.assertEqual(d.stop(), 0)
            self.assertFalse(os.path.exists(d.socket_path), "socket file left after a clean stop")

    def test_sigterm_and_sigint_exit_0_with_log(self):
        with harness.Daemon() as d:
            for sig, name in ((signal.SIGTERM, "TERM"), (signal.SIGINT, "INT")):
                d.start()
                t0 = time.monotonic()
                d.proc.send_signal(sig)
                rc = d.proc.wait(10)
                self.assertLess(time.monotonic() - t0, 10)
                self.assertEqual(rc, 0, d.log_tail())
                self.assertTrue(d.events("stopping", since_start=True, signal=name), d.log_tail())
                self.assertTrue(d.events("stopped", since_start=True), d.log_tail())
                d.kill9()   # closes the log file handle

    def test_sigterm_with_an_idle_session(self):
        with harness.Daemon() as d:
            d.start()
            c = d.client()
            c.greet()
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            r = c.reply(timeout=10)
            self.assertEqual(r.code, 421, r)
            self.assertTrue(c.wait_closed(5))
            self.assertEqual(d.proc.wait(10), 0)
            self.assertLess(time.monotonic() - t0, 10)
            c.close()
            d.kill9()

    def test_sighup_does_not_kill(self):
        with harness.Daemon() as d:
            d.start()
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            self.assertTrue(d.running(), d.log_tail())
            d.submit()
            self.assertEqual(d.stop(), 0)

    def test_restart_after_kill9_reuses_stale_socket_and_keeps_mail(self):
        with harness.Daemon() as d:
            d.start()
            qid, _ = d.submit(unix=True)
            d.kill9()
            self.assertTrue(os.path.exists(d.socket_path))
            d.start()
            self.assertIn(qid, d.queue_by_id())
            qid2, _ = d.submit(unix=True)
            ids = list(d.queue_by_id())
            self.assertEqual(ids[-1], qid2, "ids must keep sorting after a restart")
            self.assertGreater(qid2, qid)
            self.assertEqual(d.stop(), 0)

    def test_log_values_round_trip(self):
        # SPEC "Logs": values with space, '"', '=' or '\\' are quoted with '"'
        # and '\\' escaped; parsing the line gives the sender back exactly.
        with harness.Daemon() as d:
            d.start()
            for sender in ('"a b=c\\\\d\\"e"@client.test', "ü@client.test", "plain@client.test"):
                with d.client() as c:
                    c.greet()
                    r = c.submit(sender, ["x@example.test"], b"Subject: q\r\n\r\nq\r\n", mail_params="SMTPUTF8")
                    self.assertEqual(r.code, 250, r)
                ev = d.wait_event("accepted", id=r.queue_id)
                self.assertEqual(ev["from"], sender, ev["_raw"])
                self.assertEqual(d.queue_by_id()[r.queue_id]["sender"], sender)
            self.assertEqual(d.stop(), 0)

    def test_log_fields_are_key_value(self):
        with harness.Daemon() as d:
            d.start()
            d.submit()
            self.assertEqual(d.stop(), 0)
            for line in d.log_lines():
                if not line.strip():
                    continue
                kv = harness.parse_kv(line)
                self.assertIsNotNone(kv, "log line without event=: %r" % line)
                for k in kv:
                    if not k.startswith("_"):
                        self.assertRegex(k, r"^[a-z_][a-z0-9_]*$", line)


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(limits={"max_connections": 5, "max_connections_per_client": 3,
                                       "command_timeout": "2s"})
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        cls.d.cleanup()
        assert rc == 0, rc

    def refused(self, c):
        r = c.reply()
        self.assertEqual((r.code, r.enhanced), (421, "4.7.0"), r)
        self.assertTrue(c.wait_closed(5))
        c.close()

    def test_connection_limits(self):
        d = self.d
        # 127.0.0.1 is in the default trusted_networks: exempt from the
        # per-client cap of 3 (test_submission_abuse refuses an untrusted 3rd).
        tcp = [d.client() for _ in range(4)]
        for c in tcp:
            self.assertEqual(c.reply().code, 220)
        self.assertFalse(d.events("refused", reason="max_connections_per_client"))
        unix = [d.client(unix=True)]                  # Unix peers have no per-client cap
        for c in unix:
            self.assertEqual(c.reply().code, 220)
        self.refused(d.client(unix=True))             # 6th overall
        self.assertTrue(d.events("refused", reason="max_connections"))
        for c in tcp + unix:
            self.assertEqual(c.cmd("QUIT").code, 221)
            c.close()
        time.sleep(0.2)
        with d.client() as c:                         # slots are given back
            c.greet()

    def test_idle_command_timeout(self):
        c = self.d.client()
        c.greet()
        t0 = time.monotonic()
        r = c.reply(timeout=10)
        self.assertEqual((r.code, r.enhanced), (421, "4.4.2"), r)
        self.assertGreater(time.monotonic() - t0, 1.5)
        self.assertTrue(c.wait_closed(5))
        c.close()

    def test_whole_session_in_one_write_then_half_close(self):
        # printf '...' | nc: everything at once, then EOF on our side; the
        # daemon must still answer all of it and store the message.
        c = self.d.client()
        c.send(b"EHLO blast.test\r\nMAIL FROM:<blast@client.test>\r\nRCPT TO:<user@example.test>\r\n"
               b"DATA\r\nSubject: blast\r\n\r\nall at once\r\n.\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        replies = []
        try:
            while True:
                replies.append(c.reply())
        except harness.ConnectionClosed:
            pass
        c.close()
        codes = [r.code for r in replies]
        self.assertEqual(codes, [220, 250, 250, 250, 354, 250, 221], replies)
        qid = replies[5].queue_id
        self.assertTrue(self.d.body(qid).endswith(b"Subject: blast\r\n\r\nall at once\r\n"))

    def test_too_many_errors(self):
        c = self.d.client()
        c.greet()
        replies = [c.cmd("FROB %d" % i) for i in range(10)]
        self.assertTrue(all(500 <= r.code < 600 for r in replies[:-1]), replies)
        r = c.reply() if replies[-1].code != 421 else replies[-1]
        self.assertEqual((r.code, r.enhanced), (421, "4.7.0"), r)
        self.assertTrue(c.wait_closed(5))
        c.close()

    def test_http_request_is_dropped(self):
        c = self.d.client()
        self.assertEqual(c.reply().code, 220)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.reply()
        self.assertEqual(r.code, 421, r)
        self.assertTrue(c.wait_closed(5))
        c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
