#!/usr/bin/python3
"""Built-in OAuth2 (auth = "oauth2", issue 9) against a local authorization
server (oauth2_server.py: HTTPS with a test CA, device, authorization code +
PKCE, client credentials and refresh grants, refresh-token rotation,
scripted errors) and an SMTP upstream that accepts XOAUTH2 only with that
server's current access token.

- device-code login, then mail relayed with XOAUTH2; the access token
  expires and mail keeps flowing on a refreshed token, the rotated refresh
  token on disk;
- kill -9 of outboxd while a refresh waits for its answer: the next start
  still has a valid refresh token and delivers;
- the upstream refuses a token outbox thought valid (535): refreshed once
  more, delivered;
- invalid_grant on refresh: mail deferred (not bounced), the upstream
  suspended, the log and test-upstream say to log in again; after
  `outboxctl oauth2 login` the mail goes without a restart;
- the authorization server down for a while: deferred, then delivered;
- client credentials, and a browser login (PKCE, loopback redirect);
- the token store is mode 0600 and no token is in any log line, any
  outboxctl output or the spool.
"""

import glob
import json
import os
import re
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from oauth2_server import AuthServer  # noqa: E402
from upstream import Upstream, make_certs, relay_toml, upstream_section  # noqa: E402

USER = "ops@example.test"


class OAuth2Relay(unittest.TestCase):
    def setUp(self):
        self.outputs = []   # every outboxctl stdout/stderr, for the no-token check

    def env(self, expires_in=3600, rotate=True, clients=None, retry=None, **keys):
        auth = AuthServer(expires_in=expires_in, rotate=rotate, clients=clients, account=USER).start()
        self.addCleanup(auth.stop)
        up = Upstream("implicit", token_check=auth.check_access).start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-oauth2")
        self.addCleanup(d.cleanup)
        section = upstream_section("mail", up.port, tls="implicit", username=USER, **auth.upstream_keys(**keys))
        r = {"lifetime": "10m"}
        r.update(retry or {})
        d.extra_toml = relay_toml([section], retry=r)
        d.write_config()
        self.store = os.path.join(d.dir, "oauth2", "mail.json")
        return auth, up, d

    def ctl(self, d, *args, check=True):
        p = d.ctl(*args, check=check)
        self.outputs.append(p.stdout + p.stderr)
        return p

    def login_device(self, d, auth):
        p = subprocess.Popen([harness.binpath("outboxctl"), "--config", d.config_path, "oauth2", "login", "mail"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=d.dir)
        lines = []
        code = None
        deadline = time.monotonic() + 20
        while code is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(rb"enter the code (\S+) ", line)
            if m:
                code = m.group(1).decode()
        if code is None:   # stderr is read only now: reading it blocks until outboxctl exits
            p.kill()
            self.fail(b"".join(lines) + p.stderr.read())
        auth.approve(code)
        # The rest of stdout through the same buffered reader (communicate()
        # would skip what readline() has buffered).
        out = b"".join(lines) + p.stdout.read()
        err = p.stderr.read()
        p.wait(timeout=30)
        p.stdout.close()
        p.stderr.close()
        self.outputs.append(out + err)
        self.assertEqual(p.returncode, 0, out + err + repr(auth.requests).encode() + repr(auth.answers).encode())
        self.assertIn(b"signed in", out)
        return out

    def stored(self):
        with open(self.store) as f:
            return json.load(f)

    def submit(self, d, to="x@example.test"):
        with d.smtplib() as s:
            self.assertEqual(s.sendmail("app@client.test", [to], b"Subject: t\r\n\r\nbody\r\n"), {})
            return s.last_queue_id

    def assert_no_token_leaked(self, auth, d):
        self.assertEqual(os.stat(self.store).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.store)).st_mode & 0o777, 0o700)
        places = {"log": d.log_bytes()}
        for i, o in enumerate(self.outputs):
            places["outboxctl output %d" % i] = o
        for f in glob.glob(d.spool_path + "*"):
            with open(f, "rb") as fh:
                places[os.path.basename(f)] = fh.read()
        self.assertTrue(auth.issued)
        for token in auth.issued:
            for where, data in places.items():
                self.assertNotIn(token.encode(), data, "a token is in the %s" % where)

    # ---------------------------------------------------------------------------------
    def test_device_login_relay_and_refresh_with_rotation(self):
        auth, up, d = self.env(expires_in=6)
        out = self.login_device(d, auth)
        self.assertIn(b"To sign in upstream \"mail\"", out)
        first = self.stored()
        self.assertEqual(first["account"], USER)
        self.assertEqual(first["login_method"], "device")
        self.assertIn(first["refresh_token"], auth.current_refresh_tokens())
        d.start()
        q1 = self.submit(d)
        got = up.wait_delivered(1)
        self.assertEqual(got[0].data, d.body(q1))
        self.assertTrue(all(a["mechanism"] == "XOAUTH2" for a in up.auth_attempts))
        self.assertTrue(up.auth_attempts[-1]["success"])
        # The access token runs out; the next mail goes on a refreshed one.
        time.sleep(6.5)
        refreshes_before = len(auth.grants("refresh_token"))
        self.submit(d)
        up.wait_delivered(2)
        self.assertGreater(len(auth.grants("refresh_token")), refreshes_before)
        self.assertEqual([a["success"] for a in up.auth_attempts if not a["success"]], [])
        self.assertNotEqual(up.auth_attempts[0]["password"], up.auth_attempts[-1]["password"])
        now = self.stored()
        self.assertNotEqual(now["refresh_token"], first["refresh_token"])   # rotated ...
        self.assertIn(now["refresh_token"], auth.current_refresh_tokens())  # ... and the new one is on disk
        ev = d.wait_event("oauth2_refreshed", upstream="mail")
        self.assertEqual(ev["refresh_token"], "rotated")
        self.assertIn(ev["reason"], ("expiring", "no_access_token"))
        st = self.ctl(d, "oauth2", "status", "mail").stdout.decode()
        self.assertIn("account:        " + USER, st)
        self.assertIn("device code", st)
        self.assertRegex(st, r"access token:   (valid until|expired)")
        self.assertIn("refresh token:  received", st)
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)

    def test_kill9_during_refresh_then_restart_delivers(self):
        auth, up, d = self.env(expires_in=3)
        self.login_device(d, auth)
        time.sleep(3.5)   # the access token has expired: the first mail needs a refresh
        auth.delay_refresh(30)
        d.start()
        self.submit(d)
        self.assertTrue(auth.refresh_started.wait(15), d.log_tail())
        d.kill9()            # while the token endpoint has not answered
        auth.release.set()   # it answers now, to nobody
        auth.delay_refresh(0)
        d.start()
        up.wait_delivered(1, timeout=30)
        self.assertIn(self.stored()["refresh_token"], auth.current_refresh_tokens())
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)

    def test_invalid_grant_defers_suspends_and_login_again_resumes(self):
        auth, up, d = self.env(expires_in=3)
        self.login_device(d, auth)
        auth.fail_refresh("invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity. "
                                           "Trace ID: 0 Correlation ID: 1 Timestamp: 2026-12-05")
        time.sleep(3.5)
        d.start()
        qid = self.submit(d)
        ev = d.wait_event("oauth2_refresh_failed", upstream="mail", timeout=15)
        self.assertEqual(ev["cause"], "inactivity_expired")
        self.assertIn("outboxctl oauth2 login mail", ev["hint"])
        self.assertNotIn("Trace ID", ev.get("detail", ""))
        # Deferred, never bounced; the upstream suspended, saying what to do.
        d.wait_event("upstream_login_refused", upstream="mail", timeout=15)
        self.assertEqual(d.queue_by_id()[qid]["state"], "deferred")
        self.assertEqual(d.events("bounced"), [])
        ups = json.loads(self.ctl(d, "upstreams", "--json").stdout)
        mail = [u for u in ups if u["name"] == "mail"][0]
        self.assertIn("outboxctl oauth2 login mail", json.dumps(mail))
        self.assertNotEqual(mail.get("state"), "ok")
        t = self.ctl(d, "test-upstream", "mail", check=1)
        self.assertIn(b"outboxctl oauth2 login mail", t.stdout)
        self.assertEqual(len(up.delivered()), 0)
        # The operator logs in again: no restart, the mail goes.
        auth.fail_refresh(None)
        out = self.login_device(d, auth)
        self.assertIn(b"suspension lifted", out)
        up.wait_delivered(1, timeout=20)
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)

    def test_token_refused_by_upstream_is_refreshed_once_more(self):
        # The provider invalidated the access token early (a password change,
        # a policy): outbox's copy still looks valid until the upstream says 535.
        auth, up, d = self.env(expires_in=3600, retry={"initial": "1s", "max": "2s"})
        self.login_device(d, auth)
        d.start()
        self.submit(d)
        up.wait_delivered(1)
        # The first connection QUITs after its 2 s linger: the next message
        # needs a new login, with the token the provider now refuses.
        up.wait_closed(1)
        auth.expire_access()
        refreshes_before = len(auth.grants("refresh_token"))
        self.submit(d)
        up.wait_delivered(2, timeout=30)
        self.assertEqual([a["success"] for a in up.auth_attempts], [True, False, True])
        self.assertEqual(len(auth.grants("refresh_token")), refreshes_before + 1)
        ev = d.wait_event("oauth2_refreshed", upstream="mail")
        self.assertEqual(ev["reason"], "rejected")
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)

    def test_authorization_server_down_defers_then_delivers(self):
        auth, up, d = self.env(expires_in=3, retry={"max": "2s"})
        self.login_device(d, auth)
        auth.down()
        time.sleep(3.5)
        d.start()
        qid = self.submit(d)
        ev = d.wait_event("oauth2_refresh_failed", upstream="mail", timeout=15)
        self.assertEqual(ev["cause"], "network")
        self.assertEqual(d.queue_by_id()[qid]["state"], "deferred")
        time.sleep(3)
        self.assertEqual(len(up.delivered()), 0)
        auth.up()
        up.wait_delivered(1, timeout=30)
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)

    def test_client_credentials(self):
        auth, up, d = self.env(clients={"outbox-app": "app-secret-9Kq"}, client_id="outbox-app",
                               oauth2_grant="client_credentials",
                               oauth2_scope="https://outlook.office365.com/.default")
        secret = os.path.join(d.dir, "client-secret")
        with open(secret, "w") as f:
            f.write("app-secret-9Kq\n")
        os.chmod(secret, 0o600)
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace('oauth2_client_id = "outbox-app"\n',
                                 'oauth2_client_id = "outbox-app"\noauth2_client_secret_file = %s\n'
                                 % json.dumps(secret)))
        # No login at all: outboxd asks for an app-only token itself.
        d.start()
        self.submit(d)
        up.wait_delivered(1)
        self.assertEqual(len(auth.grants("client_credentials")), 1)
        self.assertEqual(self.stored()["grant"], "client_credentials")
        self.assertEqual(self.stored()["refresh_token"], "")
        # The explicit login works too, with no interaction.
        p = self.ctl(d, "oauth2", "login", "mail")
        self.assertIn(b"signed in", p.stdout)
        self.assertEqual(d.stop(), 0)
        self.assertNotIn(b"app-secret-9Kq", d.log_bytes())
        self.assert_no_token_leaked(auth, d)

    def test_browser_login_with_pkce(self):
        auth, up, d = self.env()
        p = subprocess.Popen([harness.binpath("outboxctl"), "--config", d.config_path, "oauth2", "login", "mail",
                              "--browser", "--timeout", "60s"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=d.dir)
        url = None
        lines = []
        while url is None:
            line = p.stdout.readline()
            if not line:   # stderr is read only now: reading it blocks until outboxctl exits
                self.fail(b"".join(lines) + p.stderr.read())
            lines.append(line)
            if line.strip().startswith(auth.base.encode() + b"/authorize?"):
                url = line.strip().decode()
        self.assertIn("code_challenge_method=S256", url)
        self.assertIn("redirect_uri=http%3A%2F%2F127.0.0.1%3A", url)
        # The browser: the server approves and redirects to outboxctl's loopback listener.
        ctx = ssl.create_default_context(cafile=make_certs()["ca"])
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            self.assertIn(b"signed in", r.read())
        out, err = p.communicate(timeout=30)
        self.outputs.append(b"".join(lines) + out + err)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual(self.stored()["login_method"], "authorization_code")
        d.start()
        self.submit(d)
        up.wait_delivered(1)
        t = self.ctl(d, "test-upstream", "mail")
        self.assertRegex(t.stdout.decode(), r"oauth2\s+new access token for %s, valid" % re.escape(USER))
        self.assertEqual(d.stop(), 0)
        self.assert_no_token_leaked(auth, d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
