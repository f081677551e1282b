#!/usr/bin/python3
"""submit_parallel.py: N concurrent smtplib sessions, each submitting one large message.

Used by relay-memory.sh. Each session is an smtplib.SMTP conversation
(EHLO, MAIL FROM with SIZE=, RCPT TO, DATA); the message text is built once,
shared by every thread and written in 64 KiB pieces straight to the socket,
so the load generator itself stays small (smtplib.sendmail() would copy 20 MB
per thread twice, for line-end fixing and dot-stuffing). All sessions start
together (a barrier) to make the load as concurrent as it says.
--mode sendmail uses smtplib.SMTP.sendmail() instead, as an application
would (it dot-stuffs and copies the whole message first).

Prints one JSON object on stdout:
  ok, failed          sessions whose final reply was 250 / anything else
  submit_s            wall time from the barrier until the last session ended
  errors              {reply or exception text: count}
  ids                 the queue ids from "250 2.0.0 Ok: queued as ID"
  gap_354_max_s       longest client-side delay from a 354 to the first octet of text
  gap_354_over_5s     sessions whose delay was over 5 s
"""
import argparse
import json
import smtplib
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--sessions", type=int, default=50)
ap.add_argument("--size-mb", type=float, default=20.0)
ap.add_argument("--timeout", type=float, default=900.0, help="per-reply socket timeout, seconds")
ap.add_argument("--mode", choices=["stream", "sendmail"], default="stream",
                help="stream: the shared text in 64 KiB writes; sendmail: smtplib's own "
                     "sendmail(), which dot-stuffs and copies the whole message in the "
                     "client (GIL-bound work between the 354 and the first byte)")
a = ap.parse_args()

size = int(a.size_mb * 1024 * 1024)
# 78 visible octets + CRLF per line; no line starts with "." (no stuffing
# needed), so the bytes on the wire are the bytes stored.
line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2)[:78] + b"\r\n"
header = (b"From: bench@localdomain\r\nTo: sink@localdomain\r\n"
          b"Subject: relay-memory benchmark\r\nMessage-ID: <bench@localdomain>\r\n\r\n")
# Whole lines only (the final CRLF is part of the message), just under size.
raw = header + line * ((size - len(header)) // len(line))
body = memoryview(raw)
CHUNK = 64 * 1024

barrier = threading.Barrier(a.sessions + 1)
lock = threading.Lock()
result = {"ok": 0, "failed": 0, "errors": {}, "ids": [], "gaps": []}


class TimedSMTP(smtplib.SMTP):
    """Notes when the 354 arrived and when the first octet of text left,
    so a session cut as slow can be told apart: a long gap here is the
    client's own delay (sendmail() preparing the text), not outboxd's."""
    t354 = None
    gap = None

    def getreply(self):
        code, msg = super().getreply()
        if code == 354:
            self.t354 = time.monotonic()
        return code, msg

    def send(self, s):
        if self.t354 is not None and self.gap is None:
            self.gap = time.monotonic() - self.t354
        super().send(s)


def record(ok, text, qid=None):
    with lock:
        if ok:
            result["ok"] += 1
            if qid:
                result["ids"].append(qid)
        else:
            result["failed"] += 1
            result["errors"][text] = result["errors"].get(text, 0) + 1


def session(n):
    try:
        s = TimedSMTP(a.host, a.port, timeout=a.timeout)
    except OSError as e:
        barrier.wait()
        record(False, "connect: %s" % e)
        return
    barrier.wait()
    try:
        s.ehlo("bench%d.localdomain" % n)
        if a.mode == "sendmail":
            refused = s.sendmail("bench@localdomain", ["sink%d@localdomain" % n], raw,
                                 mail_options=["SIZE=%d" % len(raw)])
            # sendmail() raises on a refused message; it returns the
            # recipients refused at RCPT (none expected). No queue id here.
            record(not refused, str(refused))
            s.quit()
            return
        code, msg = s.mail("bench@localdomain", ["SIZE=%d" % len(body)])
        if code != 250:
            raise smtplib.SMTPResponseException(code, msg)
        code, msg = s.rcpt("sink%d@localdomain" % n)
        if code not in (250, 251):
            raise smtplib.SMTPResponseException(code, msg)
        s.putcmd("data")
        code, msg = s.getreply()
        if code != 354:
            raise smtplib.SMTPResponseException(code, msg)
        s.gap = time.monotonic() - s.t354
        for off in range(0, len(body), CHUNK):
            s.sock.sendall(body[off:off + CHUNK])
        s.sock.sendall(b".\r\n")
        code, msg = s.getreply()
        text = msg.decode("utf-8", "replace")
        if code == 250:
            record(True, None, text.rsplit(" ", 1)[-1])
        else:
            record(False, "%d %s" % (code, text))
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    except smtplib.SMTPResponseException as e:
        record(False, "%d %s" % (e.smtp_code, e.smtp_error.decode("utf-8", "replace")))
    except (smtplib.SMTPException, OSError) as e:
        # A cut session: smtplib reads the 421 only if it gets to read at all;
        # a reset while sending shows up as an OSError.
        record(False, "%s: %s" % (type(e).__name__, e))
    finally:
        if s.gap is not None:
            with lock:
                result["gaps"].append(s.gap)
        try:
            s.close()
        except OSError:
            pass


threads = [threading.Thread(target=session, args=(i,)) for i in range(a.sessions)]
for t in threads:
    t.start()
barrier.wait()
t0 = time.monotonic()
for t in threads:
    t.join()
result["submit_s"] = round(time.monotonic() - t0, 3)
gaps = sorted(result.pop("gaps"))
# From the 354 to the first octet of text, per session (client side).
result["gap_354_max_s"] = round(gaps[-1], 3) if gaps else None
result["gap_354_over_5s"] = sum(1 for g in gaps if g > 5)
result["bytes_per_message"] = len(body)
print(json.dumps(result))
