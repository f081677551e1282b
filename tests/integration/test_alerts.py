#!/usr/bin/python3
"""[[alert]] hooks (issue 10 item 6): alerts that do not go through the queue.

A webhook (a test HTTP server on 127.0.0.1 recording every POST) and a
command hook (a real program reading the JSON on its standard input):

- a healthy run (mail relayed, nothing waits long) sends no alert at all;
- an upstream that refuses connections again and again is one incident:
  exactly one upstream_suspended alert, whatever the number of retries; it
  clears when the upstream delivers, and a new outage is a new alert;
- a refused login (535) is one auth_failed alert with the hint;
- the oldest waiting message older than oldest_waiting: one queue_age alert;
- max_per_hour cuts a flood and says so in the log;
- a hook that fails (HTTP 500) is logged, the mail is not affected.
"""

import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import HOST, Upstream, closed_port, relay_toml, upstream_section  # noqa: E402

USER = "app@provider.test"
PASSWORD = "the-right-password"


class Hook:
    """A webhook receiver: every POST body (parsed JSON) in order."""

    def __init__(self, status=200, tls=False):
        self.posts = []
        self.tls = tls
        self.status = status
        self.lock = threading.Lock()
        hook = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with hook.lock:
                    hook.posts.append({"content_type": self.headers.get("Content-Type"),
                                       "json": json.loads(body)})
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.httpd.daemon_threads = True
        if tls:
            import ssl
            from upstream import make_certs
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(make_certs()["good_cert"], make_certs()["good_key"])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://%s:%d/alert" % ("https" if self.tls else "http", HOST, self.port)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self):
        with self.lock:
            return [p["json"] for p in self.posts]

    def wait(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError("expected %d alerts, got %r" % (n, self.events()))


def alert_toml(url=None, command=None, **keys):
    out = "[[alert]]\n"
    if url:
        out += "url = %s\n" % json.dumps(url)
    if command:
        out += "command = %s\n" % json.dumps(command)
    for k, v in keys.items():
        out += "%s = %s\n" % (k, json.dumps(v))
    return out


class Alerts(unittest.TestCase):
    def hook(self, status=200, tls=False):
        h = Hook(status, tls)
        self.addCleanup(h.stop)
        return h

    def daemon(self, upstreams, alerts, retry=None):
        d = harness.Daemon(name="outbox-alerts")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml(upstreams, retry=retry) + "\n" + "\n".join(alerts)
        d.write_config()
        d.start()
        return d

    def submit(self, d, n=1):
        ids = []
        with d.smtplib() as s:
            for i in range(n):
                self.assertEqual(s.sendmail("app@client.test", ["rcpt%d@example.test" % i],
                                            b"Subject: alert test\r\n\r\nbody\r\n"), {})
                ids.append(s.last_queue_id)
        return ids

    # ---------------------------------------------------------------------------------
    def test_healthy_run_sends_nothing(self):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        h = self.hook()
        d = self.daemon([upstream_section("mail", up.port)], [alert_toml(h.url, oldest_waiting="1h")])
        self.submit(d, 5)
        up.wait_delivered(5)
        time.sleep(2.5)   # a queue-age check and any late alert would have happened by now
        self.assertEqual(h.events(), [])
        self.assertEqual(d.events("alert_sent"), [])
        self.assertEqual(d.stop(), 0)

    def test_one_alert_per_outage_cleared_by_a_delivery(self):
        port = closed_port()
        h = self.hook()
        d = self.daemon([upstream_section("mail", port)], [alert_toml(h.url, name="ops", events=["upstream_suspended"])])
        self.submit(d)
        # The relay retries every 1-2 s: several suspensions, one incident.
        d.wait_event("upstream_suspended", upstream="mail", timeout=15)
        deadline = time.monotonic() + 15
        while len(d.events("upstream_suspended", upstream="mail")) < 3:
            self.assertLess(time.monotonic(), deadline, d.log_tail())
            time.sleep(0.2)
        got = h.wait(1)
        time.sleep(1)
        self.assertEqual(len(h.events()), 1, h.events())
        a = got[0]
        self.assertEqual(h.posts[0]["content_type"], "application/json")
        self.assertEqual((a["source"], a["event"], a["severity"], a["subject"]),
                         ("outbox", "upstream_suspended", "warning", "mail"))
        self.assertIn("upstream mail is suspended", a["summary"])
        self.assertEqual(a["details"]["stage"], "connect")
        self.assertTrue(a["hint"])
        self.assertRegex(a["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        ev = d.wait_event("alert_sent", alert="ops", kind="upstream_suspended")
        self.assertEqual(ev["subject"], "mail")
        # The upstream comes back on that port: the mail goes, the incident ends.
        up = Upstream("plain")
        up._kwargs["port"] = port
        up.start()
        self.addCleanup(up.stop)
        up.wait_delivered(1, timeout=20)
        d.wait_event("alert_resolved", kind="upstream_suspended", subject="mail")
        # A new outage is a new incident: a second alert.
        up.stop()
        self.submit(d)
        h.wait(2)
        self.assertEqual([e["event"] for e in h.events()], ["upstream_suspended", "upstream_suspended"])
        self.assertEqual(d.stop(), 0)

    def test_refused_login_is_one_auth_failed_alert_with_the_hint(self):
        up = Upstream("implicit", users={USER: PASSWORD}).start()
        self.addCleanup(up.stop)
        h = self.hook()
        d = harness.Daemon(name="outbox-alerts-auth")
        self.addCleanup(d.cleanup)
        pw = os.path.join(d.dir, "secret")
        with open(pw, "w") as f:
            f.write("a-stale-password\n")
        os.chmod(pw, 0o600)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, tls="implicit", username=USER,
                                                    password_file=pw, auth="plain")]) + "\n" + alert_toml(h.url)
        d.write_config()
        d.start()
        self.submit(d)
        d.wait_event("upstream_login_refused", upstream="mail", timeout=15)
        got = h.wait(1)
        time.sleep(1.5)
        self.assertEqual(len(h.events()), 1, h.events())
        a = got[0]
        self.assertEqual((a["event"], a["severity"], a["subject"]), ("auth_failed", "error", "mail"))
        self.assertIn("535", a["details"]["reply"])
        self.assertIn("outboxctl resume mail", a["hint"])
        self.assertNotIn(PASSWORD, json.dumps(a))
        self.assertNotIn("a-stale-password", json.dumps(a))
        self.assertEqual(d.stop(), 0)

    def test_queue_age_and_command_hook(self):
        tmp = tempfile.mkdtemp(prefix="outbox-alert-cmd-")
        self.addCleanup(shutil.rmtree, tmp, True)
        out = os.path.join(tmp, "alerts.json")
        d = self.daemon([upstream_section("mail", closed_port())],
                        [alert_toml(command=["/bin/sh", "-c", 'cat >> "$0"; echo >> "$0"', out],
                                    events=["queue_age"], oldest_waiting="2s")])
        self.submit(d)
        deadline = time.monotonic() + 20
        while not (os.path.exists(out) and open(out).read().strip()):
            self.assertLess(time.monotonic(), deadline, d.log_tail())
            time.sleep(0.2)
        time.sleep(3)   # more checks, still the same incident
        lines = [json.loads(line) for line in open(out).read().splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["event"], "queue_age")
        self.assertGreaterEqual(int(lines[0]["details"]["age_s"]), 2)
        self.assertEqual(lines[0]["details"]["threshold_s"], "2")
        self.assertTrue(d.events("queue_age"))
        self.assertEqual(d.stop(), 0)

    def test_rate_limit_and_a_failing_hook(self):
        h = self.hook(status=500)
        d = self.daemon([upstream_section("a", closed_port()), upstream_section("b", closed_port())],
                        [alert_toml(h.url, name="pager", max_per_hour=1, events=["upstream_suspended"])],
                        retry=None)
        # Both upstreams fail (route: a then b): two incidents, one alert allowed.
        self.submit(d)
        d.wait_event("alert_suppressed", alert="pager", timeout=20)
        h.wait(1)
        time.sleep(1)
        self.assertEqual(len(h.events()), 1)
        ev = d.wait_event("alert_failed", alert="pager")
        self.assertIn("500", ev["error"])
        # The mail is untouched by the hook's failure: still waiting, not bounced.
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)

    def test_https_hook_ca_file_and_a_hanging_command_cut_by_timeout(self):
        # ca_file: the webhook's certificate is verified against it (posted);
        # without it the system store refuses the test CA (alert_failed).
        # timeout: a command that hangs is killed after 1 s, the mail untouched.
        from upstream import make_certs
        h = self.hook(tls=True)
        d = self.daemon([upstream_section("mail", closed_port())],
                        [alert_toml(h.url, name="verified", ca_file=make_certs()["ca"], events=["upstream_suspended"]),
                         alert_toml(h.url, name="unverified", events=["upstream_suspended"]),
                         alert_toml(command=["/bin/sleep", "30"], name="slow", timeout="1s",
                                    events=["upstream_suspended"])])
        t0 = time.monotonic()
        self.submit(d)
        got = h.wait(1)
        self.assertEqual(got[0]["event"], "upstream_suspended")
        d.wait_event("alert_sent", alert="verified")
        ev = d.wait_event("alert_failed", alert="unverified")
        self.assertRegex(ev["error"].lower(), "certificate|ssl|verify")
        ev = d.wait_event("alert_failed", alert="slow", timeout=15)
        self.assertIn("did not finish within 1 s (killed)", ev["error"])
        self.assertLess(time.monotonic() - t0, 12)
        self.assertEqual(len(h.events()), 1)
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
