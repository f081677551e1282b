#!/usr/bin/python3
"""latency_client.py: SMTP load that times the 250 after the final dot.

Postfix's smtp-source gives a rate but no per-message timing; this client
gives both. N concurrent sessions (threads, blocking sockets, stdlib only)
share a fixed number of messages. Each message is EHLO, MAIL FROM, RCPT TO,
DATA, the text, then the final "\\r\\n.\\r\\n" in a write of its own; the
latency is from just before that write to the arrival of the complete 250
reply (time.perf_counter_ns), i.e. what the server spends between the end
of the data and its durable "queued" answer. One message per connection
(QUIT, new connection) unless --reuse (RSET-free: MAIL again on the same
connection, as smtp-source -d does).

  latency_client.py TARGET [--sessions 20] [--messages 1000] [--size 5000]
                    [--reuse] [--from a@example.com] [--to b@example.com]
                    [--timeout 60] [--dump FILE]
  TARGET: 127.0.0.1:PORT, localhost:PORT or unix:/path (loopback only)

Prints one JSON object on stdout:
  count       messages answered 250 after the dot (the latency samples)
  errors      messages that failed (any other reply, a timeout, a reset)
  first_error the first failure's text, or null
  p50_ms p90_ms p99_ms max_ms min_ms mean_ms   latency of the 250 after the dot
              (nearest-rank percentiles over all samples)
  rate_per_s  count / wall time of the whole load (all sessions)
  wall_s, sessions, messages, size, reuse
Exit status 0 if every message got its 250, 1 otherwise.
The client is Python and shares the machine's cores with the server: its
own scheduling delay is in every sample, for every server alike, so compare
servers measured in one run, not absolute figures.
"""
import argparse
import json
import socket
import sys
import threading
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("target", help="127.0.0.1:PORT, localhost:PORT or unix:/path")
ap.add_argument("--sessions", type=int, default=20)
ap.add_argument("--messages", type=int, default=1000)
ap.add_argument("--size", type=int, default=5000, help="message size in bytes (headers included)")
ap.add_argument("--reuse", action="store_true", help="keep the connection for the next message")
ap.add_argument("--from", dest="sender", default="a@example.com")
ap.add_argument("--to", dest="rcpt", default="b@example.com")
ap.add_argument("--timeout", type=float, default=60.0, help="per-reply socket timeout, seconds")
ap.add_argument("--dump", metavar="FILE", help="write every sample as a line 'END_MS LATENCY_MS' "
                "(END_MS: when its 250 arrived, from the start of the load), in arrival order")
a = ap.parse_args()

if a.target.startswith("unix:"):
    family, addr = socket.AF_UNIX, a.target[5:]
else:
    host, _, port = a.target.rpartition(":")
    if not (host.startswith("127.") or host == "localhost"):
        sys.exit("refusing non-loopback target %s" % a.target)
    family, addr = socket.AF_INET, (host if host != "localhost" else "127.0.0.1", int(port))

# The text: headers, then 78-octet lines; no line starts with "." (nothing
# to stuff). Without its last CRLF: that CRLF is the start of "\r\n.\r\n".
line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2)[:78] + b"\r\n"
header = (b"From: <" + a.sender.encode() + b">\r\nTo: <" + a.rcpt.encode() + b">\r\n"
          b"Subject: latency benchmark\r\n\r\n")
nlines = max(1, (a.size - len(header)) // len(line))
text = header + line * nlines
text += b"x" * max(0, a.size - len(text) - 2) + b"\r\n"
body = text[:-2]
DOT = b"\r\n.\r\n"


class Conn:
    def __init__(self):
        self.s = socket.socket(family, socket.SOCK_STREAM)
        self.s.settimeout(a.timeout)
        self.s.connect(addr)
        if family == socket.AF_INET:
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """Reads one complete reply (all its lines); returns (code, last line)."""
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                d = self.s.recv(65536)
                if not d:
                    raise ConnectionError("connection closed by the server")
                self.buf += d
                continue
            ln, self.buf = self.buf[:i], self.buf[i + 2:]
            if len(ln) < 4 or ln[3:4] != b"-":
                return ln[:3], ln

    def cmd(self, c, want):
        self.s.sendall(c)
        code, ln = self.reply()
        if code != want:
            raise RuntimeError("%s -> %s" % (c.strip().decode(), ln.decode(errors="replace")))

    def greet(self):
        code, ln = self.reply()
        if code != b"220":
            raise RuntimeError("greeting %s" % ln.decode(errors="replace"))
        self.cmd(b"EHLO latency.localdomain\r\n", b"250")

    def send(self):
        """One message; returns the latency of the 250 after the dot, ns."""
        self.cmd(b"MAIL FROM:<" + a.sender.encode() + b">\r\n", b"250")
        self.cmd(b"RCPT TO:<" + a.rcpt.encode() + b">\r\n", b"250")
        self.cmd(b"DATA\r\n", b"354")
        self.s.sendall(body)
        t0 = time.perf_counter_ns()
        self.s.sendall(DOT)
        code, ln = self.reply()
        t1 = time.perf_counter_ns()
        if code != b"250":
            raise RuntimeError("dot -> %s" % ln.decode(errors="replace"))
        return t1 - t0

    def quit(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.s.close()


lock = threading.Lock()
left = [a.messages]
samples, errors, ends = [], [], []


def take():
    with lock:
        if left[0] <= 0:
            return False
        left[0] -= 1
        return True


def worker(start):
    start.wait()
    c = None
    while take():
        try:
            if c is None:
                c = Conn()
                c.greet()
            ns = c.send()
            end = time.perf_counter_ns()
            with lock:
                samples.append(ns)
                if a.dump:
                    ends.append((end, ns))
        except (OSError, RuntimeError, ConnectionError) as e:
            with lock:
                errors.append(str(e) or type(e).__name__)
            if c is not None:
                c.s.close()
            c = None
            continue
        if not a.reuse:
            c.quit()
            c = None
    if c is not None:
        c.quit()


start = threading.Barrier(a.sessions + 1)
threads = [threading.Thread(target=worker, args=(start,), daemon=True) for _ in range(a.sessions)]
for t in threads:
    t.start()
start.wait()
w0 = time.perf_counter_ns()
for t in threads:
    t.join()
wall = (time.perf_counter_ns() - w0) / 1e9

s = sorted(samples)
if a.dump:
    with open(a.dump, "w") as f:
        for end, ns in sorted(ends):
            f.write("%.3f %.3f\n" % ((end - w0) / 1e6, ns / 1e6))


def pct(p):  # nearest rank
    if not s:
        return None
    k = max(1, -(-len(s) * p // 100))  # ceil(n*p/100)
    return round(s[int(k) - 1] / 1e6, 3)


out = {
    "count": len(s), "errors": len(errors), "first_error": errors[0] if errors else None,
    "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
    "max_ms": round(s[-1] / 1e6, 3) if s else None, "min_ms": round(s[0] / 1e6, 3) if s else None,
    "mean_ms": round(sum(s) / len(s) / 1e6, 3) if s else None,
    "rate_per_s": round(len(s) / wall, 1) if wall > 0 else None, "wall_s": round(wall, 3),
    "sessions": a.sessions, "messages": a.messages, "size": len(text), "reuse": a.reuse,
}
print(json.dumps(out))
sys.exit(0 if not errors and len(s) == a.messages else 1)
