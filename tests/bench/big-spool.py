#!/usr/bin/python3
"""A spool with 1,000,000 deferred messages: does outboxd still start, idle
and accept mail as it does on an empty one? (issue 8: statements whose cost
must not grow with the queue.)

  /usr/bin/python3 tests/bench/big-spool.py [--messages N] [--submissions M]

Builds the binaries' spool schema with a real outboxd start, stops it, inserts
N deferred messages (one recipient each, next attempt in 1-2 hours; no body
chunks: they are never read here) directly
with SQL in one transaction, starts outboxd on it relaying to an aiosmtpd
upstream, and measures: start-to-ready time, RSS, CPU over 10 idle seconds,
`outboxctl queue | head` and `outboxctl stats` time, M submissions in one
smtplib session (each message delivered to the upstream), and the median and
worst latency of one submission every 100 ms over 35 s, against the same on
an empty spool."""

import argparse
import os
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK   # utime + stime


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def body(i):
    return (b"From: <app@client.test>\r\nTo: <user@example.test>\r\nSubject: bench %d\r\n"
            b"Message-ID: <bench.%d.%d@client.test>\r\n\r\n" % (i, i, time.monotonic_ns())) + b"x" * 2000 + b"\r\n"


def submissions(d, up, m):
    """(accepted s, delivered s, slowest single submission s)"""
    before = len(up.messages)
    t = time.monotonic()
    worst = 0.0
    with d.smtplib(timeout=120) as s:
        for i in range(m):
            t1 = time.monotonic()
            s.sendmail("app@client.test", ["user@example.test"], body(i))
            worst = max(worst, time.monotonic() - t1)
    accepted = time.monotonic() - t
    up.wait_delivered(before + m, timeout=600)
    return accepted, time.monotonic() - t, worst


def fill(path, n):
    db = sqlite3.connect(path, isolation_level=None)
    now = int(time.time() * 1e6)
    t = time.monotonic()
    db.execute("BEGIN")
    db.execute("WITH RECURSIVE k(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM k WHERE v < ?) "
               "INSERT INTO messages(id, state, sender, size, created, attempts, next_attempt, last_error, client, "
               "helo, prefix, updated, wait_reason, wait_upstream) "
               "SELECT printf('BIG%09d', v), 'deferred', 'app@client.test', 2100, ?2 - 86400000000 + v, 3, "
               "?2 + 3600000000 + v * 3, '421 4.7.0 try later', 'unix', 'client.test', x'', ?2, 0, '' FROM k",
               (n, now))
    db.execute("INSERT INTO recipients(message_id, address, state, attempts, next_attempt, last_reply, updated) "
               "SELECT id, 'user@example.test', 'pending', 3, next_attempt, '421 4.7.0 try later', updated "
               "FROM messages WHERE id LIKE 'BIG%'")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.monotonic() - t


def measure(label, d, up, m):
    r = {}
    t = time.monotonic()
    d.start(wait=False)
    d.wait_ready(timeout=600)
    r["start_to_ready_s"] = time.monotonic() - t
    pid = d.proc.pid
    time.sleep(2)
    c0 = cpu_seconds(pid)
    time.sleep(10)
    r["idle_cpu_10s"] = cpu_seconds(pid) - c0
    r["rss_mib"] = rss_kib(pid) / 1024
    exe = harness.binpath("outboxctl")
    t = time.monotonic()
    subprocess.run("%s --config %s queue | head -n 20 >/dev/null" % (exe, d.config_path), shell=True, check=True)
    r["queue_head_s"] = time.monotonic() - t
    # Spool::stats(), which outboxd's STATUS= report runs on the writer
    # thread every 30 s: as long as this, submissions wait.
    t = time.monotonic()
    subprocess.run([exe, "--config", d.config_path, "stats"], check=True, stdout=subprocess.DEVNULL)
    r["stats_s"] = time.monotonic() - t
    # Three bursts: one stall (a periodic job on the writer) shows as one slow
    # burst and a large worst single submission, not as a slower median.
    runs = sorted(submissions(d, up, m) for _ in range(3))
    r["submit_%d_accepted_s_best" % m] = runs[0][0]
    r["submit_%d_accepted_s_worst" % m] = runs[-1][0]
    r["submit_%d_delivered_s_best" % m] = runs[0][1]
    r["submit_worst_single_ms"] = max(x[2] for x in runs) * 1000
    r["rss_after_mib"] = rss_kib(pid) / 1024
    # One submission every 100 ms for 35 s: long enough to catch the STATUS=
    # report (Spool::stats() on the writer every 30 s) stalling the writer.
    lat = []
    with d.smtplib(timeout=120) as s:
        end = time.monotonic() + 35
        i = 0
        while time.monotonic() < end:
            t = time.monotonic()
            s.sendmail("app@client.test", ["user@example.test"], body(i))
            lat.append(time.monotonic() - t)
            i += 1
            time.sleep(0.1)
    lat.sort()
    r["paced_p50_ms"] = lat[len(lat) // 2] * 1000
    r["paced_max_ms"] = lat[-1] * 1000
    d.stop()
    print("%-10s %s" % (label, "  ".join("%s=%.3f" % kv for kv in r.items())), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the spool (its path is printed)")
    a = ap.parse_args()
    up = Upstream("plain").start()
    try:
        d = harness.Daemon(name="outbox-bigspool")
        d.extra_toml = relay_toml([upstream_section("mail", up.port)])
        d.write_config()
        measure("empty", d, up, a.submissions)
        fill_s = fill(d.spool_path, a.messages)
        size = os.path.getsize(d.spool_path)
        print("filled     %d deferred messages in %.1fs; spool %.0f MiB" % (a.messages, fill_s, size / 2**20),
              flush=True)
        measure("%dk" % (a.messages // 1000), d, up, a.submissions)
        if a.keep:
            harness._daemons.remove(d)   # atexit would remove its directory
            print("spool kept: %s" % d.spool_path)
        else:
            d.cleanup()
    finally:
        up.stop()


if __name__ == "__main__":
    main()
