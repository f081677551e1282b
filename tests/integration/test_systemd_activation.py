#!/usr/bin/python3
"""Socket activation (SPEC "systemd"; sd_listen_fds(3)): outboxd serves the
listening sockets it inherits (LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES),
each in place of the [[listen]] whose name equals the socket's name, else the
one bound to the same address or path; listeners without an inherited socket
are bound as usual; an inherited socket no [[listen]] claims is refused with
exit 78. Also through systemd-socket-activate(1) when it is installed."""

import os
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Runs in the child: moves the given fds to 3, 4, ... (via fds >= 100 so that
# a source already at 3 or 4 is not clobbered), sets LISTEN_PID to its own pid
# (exec keeps it) and execs outboxd. A shell's "LISTEN_PID=$$ exec" would do
# the same, but dash cannot name fds above 9.
WRAPPER = r"""
import fcntl, os, sys
n = int(sys.argv[1])
src = [int(x) for x in sys.argv[2:2 + n]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in src]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
for fd in high:
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(n)
argv = sys.argv[2 + n:]
os.execv(argv[0], argv)
"""


def listening_tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def listening_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o666)
    s.listen(16)
    return s


def spawn(d, argv, pass_fds=(), env_extra=None, drop_env=()):
    """Starts argv as the daemon of harness.Daemon d (its log, its stop())."""
    env = dict(os.environ)
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET") + tuple(drop_env):
        env.pop(k, None)
    env.update(env_extra or {})
    d._logfile = open(d.log_path, "ab")
    d.log_offset = d._logfile.tell()
    d.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=d._logfile, stderr=d._logfile,
                              cwd=d.dir, env=env, pass_fds=pass_fds, preexec_fn=harness._set_pdeathsig)
    return d.proc


def activated(d, socks, names=None):
    fds = [s.fileno() for s in socks]
    argv = ["/usr/bin/python3", "-c", WRAPPER, str(len(fds))] + [str(f) for f in fds] + \
        [harness.binpath("outboxd"), "--config", d.config_path]
    env = {"LISTEN_FDNAMES": ":".join(names)} if names is not None else {}
    return spawn(d, argv, pass_fds=fds, env_extra=env)


class SocketActivation(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(name="outbox-act")
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.d.cleanup()

    def submit_both(self):
        ids = []
        with self.d.smtplib() as s:
            s.sendmail("app@client.test", ["tcp@example.test"], b"Subject: tcp\r\n\r\nover TCP\r\n")
            ids.append(s.last_queue_id)
        s = harness.RecordingSMTPUnix(local_hostname="client.test", timeout=30)
        try:
            s.connect(self.d.socket_path)
            s.sendmail("app@client.test", ["unix@example.test"], b"Subject: unix\r\n\r\nover Unix\r\n")
            ids.append(s.last_queue_id)
        finally:
            s.quit()
        queue = self.d.queue_by_id()
        for qid in ids:
            self.assertIn(qid, queue)
        rcpts = sorted(r["address"] for m in queue.values() for r in m["recipients"])
        self.assertEqual(rcpts, ["tcp@example.test", "unix@example.test"])
        return ids

    def test_named_sockets_serve_both_listeners(self):
        tcp = listening_tcp(self.d.port)
        unix = listening_unix(self.d.socket_path)
        self.socks += [tcp, unix]
        ino = os.stat(self.d.socket_path).st_ino
        activated(self.d, [tcp, unix], ["smtp", "local"])
        ready = self.d.wait_ready()
        self.assertEqual(ready.get("activated"), "2", ready)
        acts = self.d.events("listener_activated")
        self.assertEqual(sorted(e["fdname"] for e in acts), ["local", "smtp"], acts)
        self.assertEqual({e["fdname"]: e["fd"] for e in acts}, {"smtp": "3", "local": "4"})
        # outboxd used the socket file it was given, not one of its own.
        self.assertEqual(os.stat(self.d.socket_path).st_ino, ino)
        self.submit_both()
        self.assertEqual(self.d.stop(), 0)
        # The socket file belongs to whoever passed it (outboxd.socket): it
        # stays, and the socket still accepts connections for the next start.
        self.assertTrue(stat.S_ISSOCK(os.stat(self.d.socket_path).st_mode))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(self.d.socket_path)

    def test_names_in_either_order(self):
        tcp = listening_tcp(self.d.port)
        unix = listening_unix(self.d.socket_path)
        self.socks += [tcp, unix]
        activated(self.d, [unix, tcp], ["local", "smtp"])
        self.assertEqual(self.d.wait_ready().get("activated"), "2")
        self.submit_both()

    def test_unnamed_sockets_match_by_address_and_path(self):
        tcp = listening_tcp(self.d.port)
        unix = listening_unix(self.d.socket_path)
        self.socks += [tcp, unix]
        activated(self.d, [tcp, unix])          # no LISTEN_FDNAMES
        self.assertEqual(self.d.wait_ready().get("activated"), "2")
        self.submit_both()

    def test_listener_without_socket_is_bound_by_outboxd(self):
        tcp = listening_tcp(self.d.port)
        self.socks.append(tcp)
        activated(self.d, [tcp], ["smtp"])
        ready = self.d.wait_ready()
        self.assertEqual(ready.get("activated"), "1")
        self.assertIn("unix:" + self.d.socket_path, ready["listeners"])
        self.submit_both()
        self.assertEqual(self.d.stop(), 0)
        # Its own socket file outboxd removes on exit, as without activation.
        self.assertFalse(os.path.exists(self.d.socket_path))

    def test_unclaimed_socket_is_refused(self):
        other = listening_tcp(harness.free_port())
        self.socks.append(other)
        p = activated(self.d, [other], ["bogus"])
        self.assertEqual(p.wait(20), harness.EX_CONFIG)
        log = self.d.log_bytes(since_start=True).decode()
        self.assertIn("FileDescriptorName=bogus", log)
        self.assertIn("matches no [[listen]]", log)
        self.assertIn('name = "bogus"', log)

    def test_name_of_the_other_kind_is_refused(self):
        tcp = listening_tcp(harness.free_port())
        self.socks.append(tcp)
        p = activated(self.d, [tcp], ["local"])
        self.assertEqual(p.wait(20), harness.EX_CONFIG)
        log = self.d.log_bytes(since_start=True).decode()
        self.assertIn("Unix socket (path) listener", log)

    def test_two_sockets_for_one_listener_are_refused(self):
        a = listening_tcp(self.d.port)
        b = listening_tcp(harness.free_port())
        self.socks += [a, b]
        p = activated(self.d, [a, b], ["smtp", "smtp"])
        self.assertEqual(p.wait(20), harness.EX_CONFIG)
        self.assertIn("already has inherited socket fd 3", self.d.log_bytes(since_start=True).decode())

    def test_listen_pid_of_another_process_is_ignored(self):
        # LISTEN_PID names someone else: the fds are not ours (sd_listen_fds
        # returns 0) and outboxd binds everything itself.
        spawn(self.d, [harness.binpath("outboxd"), "--config", self.d.config_path],
              env_extra={"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "smtp:local"})
        self.assertEqual(self.d.wait_ready().get("activated"), "0")
        self.submit_both()


@unittest.skipUnless(shutil.which("systemd-socket-activate"), "systemd-socket-activate not installed")
class SystemdSocketActivate(unittest.TestCase):
    def test_systemd_socket_activate(self):
        d = harness.Daemon(name="outbox-ssa")
        try:
            spawn(d, [shutil.which("systemd-socket-activate"), "-l", "127.0.0.1:%d" % d.port, "--fdname=smtp",
                      harness.binpath("outboxd"), "--config", d.config_path])
            deadline = time.monotonic() + 10
            while b"Listening on" not in d.log_bytes(since_start=True):
                self.assertLess(time.monotonic(), deadline, d.log_tail())
                time.sleep(0.05)
            # It starts outboxd on the first connection, which waits in the
            # backlog meanwhile: smtplib's greeting comes from the new outboxd.
            with d.smtplib() as s:
                ready = d.wait_ready()
                self.assertEqual(ready.get("activated"), "1", ready)
                self.assertEqual(d.events("listener_activated")[0]["fdname"], "smtp")
                s.sendmail("app@client.test", ["ssa@example.test"], b"Subject: ssa\r\n\r\nactivated\r\n")
                qid = s.last_queue_id
            self.assertIn(qid, d.queue_by_id())
            d.submit(unix=True)
            self.assertEqual(len(d.queue()), 2)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
