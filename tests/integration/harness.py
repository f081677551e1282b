"""Integration-test harness for outbox: real binaries, real sockets, real SQLite.

Stdlib only. Every test file imports this module; it

- makes a private temp dir per daemon (config, spool, Unix socket, log),
- writes a TOML configuration (TCP listener on 127.0.0.1 on a free port,
  Unix socket listener with mode 0666, [host] outbox.test / example.test,
  tunable [limits]),
- starts `outboxd --config FILE` with stderr captured to a file and waits for
  its `event=ready` line,
- stops it (SIGTERM), kills it (SIGKILL) and restarts it,
- parses the key=value log (SPEC "Logs"),
- runs outboxctl / outbox-sendmail / mailq with the same configuration,
- speaks raw SMTP over TCP or the Unix socket (for bytes smtplib refuses to send).

Daemons are always cleaned up: atexit, and PR_SET_PDEATHSIG so that a test
process killed by ctest's timeout does not leave an outboxd behind.

Environment: OUTBOX_BIN (directory of outboxd, outboxctl, outbox-sendmail,
mailq; default <source>/build/bin), OUTBOX_KEEP_TMP=1 keeps the temp dirs.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.environ.get("OUTBOX_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("OUTBOX_BIN") or os.path.join(SOURCE, "build", "bin")

QUEUE_ID_RE = re.compile(rb"queued as ([0-9A-Za-z]{12,20})\b")
ID_CHARS_RE = re.compile(r"^[0-9A-Za-z]{12,20}$")

READY_TIMEOUT = 20.0

# sysexits.h
EX_USAGE = 64
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


def binpath(name):
    return os.path.join(BIN, name)


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind port 0, read it back, close)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- key=value logs ------------------------------------------------------------

def parse_kv(line):
    """Parses one log line into a dict from its `event=` field on.

    Values may be "quoted" with \\" and \\\\ escapes; control bytes appear as
    \\xNN (SPEC "Logs"). The word before `event=` (the level) is kept as
    `_level`, the whole line as `_raw`. Returns None for lines without event=.
    """
    m = re.search(r"(?:^|(?<=\s))event=", line)
    if not m:
        return None
    start = m.start()
    head = line[:start].split()
    out = {"_raw": line, "_level": head[-1] if head else ""}
    s = line[start:]
    pos, n = 0, len(s)
    while pos < n:
        while pos < n and s[pos] == " ":
            pos += 1
        if pos >= n:
            break
        eq = s.find("=", pos)
        sp = s.find(" ", pos)
        if eq < 0 or (0 <= sp < eq):
            # a word without '=': not ours; skip it
            pos = n if sp < 0 else sp
            continue
        key = s[pos:eq]
        pos = eq + 1
        if pos < n and s[pos] == '"':
            pos += 1
            val = []
            while pos < n and s[pos] != '"':
                c = s[pos]
                if c == "\\" and pos + 1 < n:
                    nxt = s[pos + 1]
                    if nxt == "x" and pos + 3 < n:
                        val.append(chr(int(s[pos + 2:pos + 4], 16)))
                        pos += 4
                        continue
                    val.append(nxt)
                    pos += 2
                    continue
                val.append(c)
                pos += 1
            pos += 1
            out[key] = "".join(val)
        else:
            end = s.find(" ", pos)
            if end < 0:
                end = n
            out[key] = s[pos:end]
            pos = end
    return out


# --- SMTP over raw sockets ------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class Reply:
    def __init__(self, lines):
        self.lines = lines                      # decoded lines without CRLF
        self.code = int(lines[-1][:3])
        self.text = "\n".join(l[4:] for l in lines)
        last = lines[-1][4:]
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", last)
        self.enhanced = m.group(1) if m else None

    @property
    def queue_id(self):
        m = QUEUE_ID_RE.search(self.text.encode("utf-8", "surrogateescape"))
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "Reply(%r)" % (self.lines,)


class SMTPClient:
    """A raw SMTP client: bytes in, parsed replies out. addr: (host, port) or a
    Unix socket path."""

    def __init__(self, addr, timeout=10.0):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        try:
            self.sock.connect(addr)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a TCP RST (SO_LINGER 0) where possible: an abrupt client."""
        try:
            if self.sock.family != socket.AF_UNIX:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed by the server")
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self, timeout=None):
        """Reads one (possibly multi-line) reply."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines = []
        while True:
            line = self.read_line(max(0.001, deadline - time.monotonic()))
            text = line.decode("utf-8", "surrogateescape")
            if len(text) < 3 or not text[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            lines.append(text)
            if len(text) == 3 or text[3] == " ":
                return Reply(lines)
            if text[3] != "-":
                raise AssertionError("malformed reply line %r" % line)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def wait_closed(self, timeout=5.0):
        """True when the server closes the connection within timeout (any
        unread bytes are kept in self.buf)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except ConnectionClosed:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def nothing_pending(self, wait=0.3):
        """True when the server sends nothing more within `wait` seconds."""
        if self.buf:
            return False
        try:
            self._fill(time.monotonic() + wait)
        except (socket.timeout, TimeoutError):
            return True
        except ConnectionClosed:
            return not self.buf
        return False

    # conveniences -------------------------------------------------------------
    def greet(self, ehlo="client.test"):
        r = self.reply()
        assert r.code == 220, r
        r = self.cmd("EHLO " + ehlo)
        assert r.code == 250, r
        return r

    def submit(self, sender, rcpts, body, mail_params=""):
        """MAIL/RCPT/DATA with dot-stuffing; returns the final Reply.
        body: bytes with CRLF line ends (not stuffed, no final dot)."""
        r = self.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
        assert r.code == 250, r
        for rc in rcpts:
            r = self.cmd("RCPT TO:<%s>" % rc)
            assert r.code == 250, r
        r = self.cmd("DATA")
        assert r.code == 354, r
        self.send(dot_stuff(body) + b".\r\n")
        return self.reply(timeout=30)


def dot_stuff(body):
    """RFC 5321 §4.5.2 transparency; ensures a final CRLF."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP as applications use it, remembering what DATA carried and
    the reply text to the final dot (sendmail()/send_message() discard it)."""

    last_data = None
    last_reply = None

    def data(self, msg):
        code, resp = super().data(msg)
        self.last_data = msg if msg.endswith(b"\r\n") else msg + b"\r\n"
        self.last_reply = (code, resp)
        return code, resp

    @property
    def last_queue_id(self):
        if not self.last_reply:
            return None
        m = QUEUE_ID_RE.search(self.last_reply[1])
        return m.group(1).decode() if m else None


class RecordingSMTPUnix(RecordingSMTP):
    """smtplib over a Unix socket (smtplib.LMTP knows Unix sockets, but speaks
    LHLO; this speaks EHLO)."""

    def connect(self, host="localhost", port=0, source_address=None):
        if host and host.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.file = None
            self.sock.connect(host)
            code, msg = self.getreply()
            return code, msg
        return super().connect(host, port, source_address)


# --- message bodies ---------------------------------------------------------------

def header_block(stored):
    """Splits stored message bytes into (list of (name, raw field bytes), rest)
    at the first empty line; raw field bytes include continuation lines."""
    head, sep, rest = stored.partition(b"\r\n\r\n")
    fields = []
    for line in (head + b"\r\n").split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
        else:
            name = line.split(b":", 1)[0].decode("ascii", "replace")
            fields.append((name, line))
    return fields, rest


def parse_prefix(prefix):
    """Parses the bytes the daemon put before the submitted message into
    [(name, raw)] header fields; asserts they are well-formed header lines."""
    assert prefix.endswith(b"\r\n") or prefix == b"", "prefix does not end in CRLF: %r" % prefix[-40:]
    fields = []
    for line in prefix.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line, line
        if line[:1] in (b" ", b"\t"):
            assert fields, "prefix starts with a continuation line"
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
            continue
        assert re.match(rb"^[!-9;-~]+:", line), "not a header line: %r" % line
        fields.append((line.split(b":", 1)[0].decode().lower(), line))
    return fields


# --- the daemon -----------------------------------------------------------------

_daemons = []


def _set_pdeathsig():
    # Linux: SIGKILL this child when the test process dies (ctest timeout).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _cleanup_all():
    for d in list(_daemons):
        d.cleanup()


atexit.register(_cleanup_all)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, toml_value(x)) for k, x in v.items()) + " }"
    raise TypeError(v)


class Daemon:
    """One outboxd with its own temp dir. Use as a context manager or call
    cleanup(); atexit does it anyway."""

    def __init__(self, limits=None, ipv6=False, extra_toml="", host_extra=None, tcp=True,
                 unix=True, log_level="info", name="outbox-it", tcp_listen_extra=None):
        self.dir = tempfile.mkdtemp(prefix=name + "-")
        # Readable by other users: a test may submit as nobody over the socket.
        os.chmod(self.dir, 0o755)
        self.config_path = os.path.join(self.dir, "outbox.toml")
        self.spool_path = os.path.join(self.dir, "spool.db")
        self.socket_path = os.path.join(self.dir, "submit.sock") if unix else None
        self.log_path = os.path.join(self.dir, "outboxd.log")
        self.host = "127.0.0.1"
        self.port = free_port() if tcp else None
        self.port6 = free_port("::1") if ipv6 else None
        self.limits = {
            "max_message_size": "35M",
            "max_recipients": 100,
            "max_connections": 200,
            "max_connections_per_client": 50,
            "command_timeout": "5m",
            "data_timeout": "10m",
        }
        self.limits.update(limits or {})
        self.host_extra = host_extra or {}
        # Extra keys of the TCP [[listen]] table (e.g. trusted_networks).
        self.tcp_listen_extra = tcp_listen_extra or {}
        self.extra_toml = extra_toml
        self.log_level = log_level
        self.proc = None
        self._started_once = False
        self.log_offset = 0
        self._logfile = None
        self.write_config()
        _daemons.append(self)

    # configuration ------------------------------------------------------------
    def config_text(self):
        out = []
        out.append("[spool]\npath = %s\n" % toml_value(self.spool_path))
        out.append("[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n")
        for k, v in self.host_extra.items():
            out.append("%s = %s\n" % (k, toml_value(v)))
        if self.socket_path:
            out.append("[[listen]]\nname = \"local\"\npath = %s\nmode = \"0666\"\n" % toml_value(self.socket_path))
        extra = "".join("%s = %s\n" % (k, toml_value(v)) for k, v in self.tcp_listen_extra.items())
        if self.port:
            out.append("[[listen]]\nname = \"smtp\"\naddress = \"127.0.0.1:%d\"\n%s" % (self.port, extra))
        if self.port6:
            out.append("[[listen]]\nname = \"smtp6\"\naddress = \"[::1]:%d\"\n%s" % (self.port6, extra))
        out.append("[limits]\n")
        for k, v in self.limits.items():
            out.append("%s = %s\n" % (k, toml_value(v)))
        out.append("[log]\nlevel = %s\n" % toml_value(self.log_level))
        if self.extra_toml:
            out.append(self.extra_toml + "\n")
        return "\n".join(out)

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        os.chmod(self.config_path, 0o644)

    @property
    def addr(self):
        return (self.host, self.port)

    # process control ------------------------------------------------------------
    def start(self, wait=True, preexec=None):
        """preexec: an extra callable run in the child before exec."""
        assert self.proc is None or self.proc.poll() is not None, "already running"

        def child_setup():
            _set_pdeathsig()
            if preexec:
                preexec()
        for attempt in range(3):
            self._logfile = open(self.log_path, "ab")
            self.log_offset = self._logfile.tell()
            self.proc = subprocess.Popen(
                [binpath("outboxd"), "--config", self.config_path],
                stdin=subprocess.DEVNULL, stdout=self._logfile, stderr=self._logfile,
                cwd=self.dir, preexec_fn=child_setup)
            if not wait:
                return self
            try:
                self.wait_ready()
                self._started_once = True
                return self
            except AssertionError:
                # Another test (ctest -j) took "our" free port between
                # free_port() and the bind: on a first start, pick new ports.
                lost_race = (not self._started_once and self.proc.poll() == EX_SOFTWARE and
                             b"cannot listen" in self.log_bytes(since_start=True))
                self._close_log()
                if not lost_race or attempt == 2:
                    raise
                self.port = free_port() if self.port else None
                self.port6 = free_port("::1") if self.port6 else None
                self.write_config()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events(since_start=True):
                if ev.get("event") == "ready":
                    return ev
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("outboxd exited with %d before ready; log:\n%s" % (rc, self.log_tail()))
            time.sleep(0.05)
        raise AssertionError("outboxd not ready after %.0f s; log:\n%s" % (timeout, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("outboxd did not exit within %.0f s of SIGTERM; log:\n%s"
                                     % (timeout, self.log_tail()))
        self._close_log()
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def restart(self, hard=False):
        if hard:
            self.kill9()
        else:
            rc = self.stop()
            assert rc == 0, "outboxd exited %r on SIGTERM" % rc
        return self.start()

    def _close_log(self):
        if self._logfile:
            self._logfile.close()
            self._logfile = None

    def cleanup(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        finally:
            self._close_log()
            if self in _daemons:
                _daemons.remove(self)
            if os.environ.get("OUTBOX_KEEP_TMP"):
                sys.stderr.write("outbox-it: kept %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # logs ---------------------------------------------------------------------------
    def log_bytes(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def log_lines(self, since_start=False):
        return self.log_bytes(since_start).decode("utf-8", "surrogateescape").splitlines()

    def events(self, name=None, since_start=False, **match):
        out = []
        for line in self.log_lines(since_start):
            kv = parse_kv(line)
            if kv is None:
                continue
            if name is not None and kv.get("event") != name:
                continue
            if all(kv.get(k) == v for k, v in match.items()):
                out.append(kv)
        return out

    def wait_event(self, name, timeout=10.0, **match):
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(name, **match)
            if evs:
                return evs[-1]
            if time.monotonic() > deadline:
                raise AssertionError("no event=%s %r in the log after %.0f s:\n%s"
                                     % (name, match, timeout, self.log_tail()))
            time.sleep(0.05)

    def log_tail(self, n=40):
        return "\n".join(self.log_lines()[-n:])

    # tools ----------------------------------------------------------------------------
    def ctl(self, *args, check=True, timeout=30, input=None):
        """outboxctl --config FILE args...; check: expected exit code (True = 0)."""
        p = subprocess.run([binpath("outboxctl"), "--config", self.config_path] + list(args),
                           input=input, capture_output=True, timeout=timeout, cwd=self.dir)
        want = 0 if check is True else check
        if check is not False and p.returncode != want:
            raise AssertionError("outboxctl %s exited %d (wanted %d)\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), p.returncode, want, p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def ctl_json(self, *args, timeout=30):
        p = self.ctl(*args, timeout=timeout)
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError("outboxctl %s: not JSON (%s): %r" % (" ".join(args), e, p.stdout[:2000]))

    def queue(self, state=None, timeout=30):
        args = ["queue", "--json"] + (["--state", state] if state else [])
        q = self.ctl_json(*args, timeout=timeout)
        assert isinstance(q, list), q
        return q

    def queue_by_id(self, timeout=30):
        return {m["id"]: m for m in self.queue(timeout=timeout)}

    def body(self, qid):
        return self.ctl("show", qid, "--body").stdout

    def show(self, qid):
        return self.ctl_json("show", qid, "--json")

    def sendmail(self, args, input=b"", name="outbox-sendmail", timeout=30, env=None, config_flag=True,
                 preexec_fn=None):
        argv = [binpath(name)]
        if config_flag:
            argv += ["-C", self.config_path]
        argv += list(args)
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, cwd=self.dir,
                              env=e, preexec_fn=preexec_fn)

    # SMTP ------------------------------------------------------------------------------
    def client(self, unix=False, timeout=10.0):
        return SMTPClient(self.socket_path if unix else self.addr, timeout)

    def smtplib(self, timeout=30):
        return RecordingSMTP(self.host, self.port, local_hostname="client.test", timeout=timeout)

    def submit(self, sender="app@client.test", rcpts=("user@example.test",), body=None, unix=False):
        """A plain, known-good submission over raw SMTP; returns (id, body)."""
        if body is None:
            body = (b"From: <%s>\r\nTo: <%s>\r\nSubject: probe\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
                    b"Message-ID: <probe.%d@client.test>\r\n\r\nprobe body\r\n"
                    % (sender.encode(), rcpts[0].encode(), time.monotonic_ns()))
        with self.client(unix=unix) as c:
            c.greet()
            r = c.submit(sender, rcpts, body)
            assert r.code == 250 and r.queue_id, r
            c.cmd("QUIT")
            return r.queue_id, body


def assert_stored(testcase, stored, submitted, expect_added=("received",)):
    """stored == added trace headers + submitted, where the added headers are
    exactly the set expect_added (Received: first)."""
    testcase.assertTrue(stored.endswith(submitted),
                        "stored message does not end with the submitted bytes:\nstored: %r\nsubmitted: %r"
                        % (stored[:3000], submitted[:3000]))
    prefix = stored[:len(stored) - len(submitted)]
    fields = parse_prefix(prefix)
    names = [n for n, _ in fields]
    testcase.assertTrue(names and names[0] == "received", "Received: is not on top: %r" % prefix)
    testcase.assertEqual(sorted(names), sorted(expect_added), "added headers: %r" % prefix)
    return dict(fields)


def run_threads(fns):
    ts = [threading.Thread(target=f, daemon=True) for f in fns]
    for t in ts:
        t.start()
    return ts


# --- TLS and AUTH helpers (security tests) -------------------------------------------

def make_test_certs(directory, names=("localhost",), ips=("127.0.0.1", "::1")):
    """A throw-away CA and a server certificate signed by it, made with the
    openssl CLI at test time (no keys in the tree). Returns a dict with
    ca, cert, key paths; the server certificate names `names` and `ips`."""
    ca_key = os.path.join(directory, "ca.key")
    ca = os.path.join(directory, "ca.pem")
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    cert = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "server.ext")
    san = ",".join(["DNS:" + n for n in names] + ["IP:" + i for i in ips])
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n" % san)

    def run(*args):
        p = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
        "-out", ca, "-days", "2", "-subj", "/CN=outbox test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=%s" % names[0])
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)
    return {"ca": ca, "cert": cert, "key": key}


def client_tls_context(ca_file):
    """What an application does: verify the chain and the name (here the IP)."""
    import ssl
    ctx = ssl.create_default_context(cafile=ca_file)
    return ctx


def scrypt_hash(password, ln=15, r=8, p=1, salt=None):
    """A [[user]] password_hash in outbox's format, made with Python's own
    scrypt (a cross-check of the format): $scrypt$ln=..,r=..,p=..$salt$key,
    standard base64 without padding."""
    import base64
    import hashlib
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.scrypt(password.encode() if isinstance(password, str) else password, salt=salt,
                         n=1 << ln, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
    return "$scrypt$ln=%d,r=%d,p=%d$%s$%s" % (ln, r, p, b64(salt), b64(key))
