"""A local OAuth2 authorization server for the integration tests, in the
test process (http.server over TLS with the test CA of upstream.make_certs(),
on 127.0.0.1 only, a free port).

Grants (RFC 6749, RFC 7636, RFC 8628):
- POST /device: device authorization (RFC 8628 §3.1/3.2); the test plays the
  user with approve(user_code) or deny(user_code); polling faster than the
  interval gets slow_down (§3.5).
- GET /authorize: authorization code with PKCE S256; the "user" approves at
  once and is redirected to redirect_uri with code and state.
- POST /token: authorization_code (the code_verifier must match the
  challenge), device_code, refresh_token, client_credentials.

Tokens: every access token lives `expires_in` seconds. With rotate=True each
refresh issues a new refresh token; the old one stays valid until the new one
is first used (a client killed before it stored the new one can still use
the old one), then it is revoked. check_access(user, token) is what the test
SMTP upstream asks: XOAUTH2 is accepted only with a current access token of
this server.

Scripted behaviour: fail_refresh(error, description, status), revoke(),
delay_refresh(seconds) (then refresh_started is set while the answer waits),
down() / up() (the port refuses connections meanwhile).
"""

import base64
import hashlib
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse

from upstream import HOST, _free_port, make_certs


class AuthServer:
    def __init__(self, clients=None, expires_in=3600, rotate=True, interval=1, device_expires_in=20,
                 account="ops@example.test"):
        # client_id -> client secret (None: a public client)
        self.clients = dict(clients or {"outbox-test": None})
        self.expires_in = expires_in
        self.rotate = rotate
        self.interval = interval
        self.device_expires_in = device_expires_in
        self.account = account
        self.port = _free_port()
        self.lock = threading.RLock()
        self.access = {}        # token -> dict(user, expires)
        self.refresh = {}       # token -> dict(user, client, valid, successor, scope)
        self.devices = {}       # device_code -> dict(user_code, state, expires, last_poll, client, scope)
        self.codes = {}         # code -> dict(client, redirect_uri, challenge, scope, used)
        self.requests = []      # dict(path, grant_type, refresh_token, time)
        self.issued = []        # every token string handed out (for "never logged" checks)
        self.answers = []       # (path, status, error) of every answer
        self.refresh_error = None   # (status, error, description) answered to refresh grants
        self.refresh_delay = 0.0
        self.refresh_started = threading.Event()
        self.release = threading.Event()
        self._httpd = None
        self._thread = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self):
        certs = make_certs()
        server = self

        class Handler(_Handler):
            auth = server

        httpd = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        httpd.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs["good_cert"], certs["good_key"])
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.release.set()

    down = stop

    def up(self):
        return self.start()

    @property
    def base(self):
        return "https://%s:%d" % (HOST, self.port)

    def upstream_keys(self, client_id="outbox-test", **extra):
        """The [[upstream]] keys that point outboxd at this server."""
        keys = {"auth": "oauth2", "oauth2_client_id": client_id,
                "oauth2_token_url": self.base + "/token",
                "oauth2_device_authorization_url": self.base + "/device",
                "oauth2_authorization_url": self.base + "/authorize",
                "oauth2_scope": "https://outlook.office.com/SMTP.Send offline_access",
                "oauth2_ca_file": make_certs()["ca"]}
        keys.update(extra)
        return keys

    # --- the test plays the user and the provider ------------------------------------------
    def approve(self, user_code, user=None):
        with self.lock:
            for d in self.devices.values():
                if d["user_code"] == user_code:
                    self.answers.append(("approve", time.time(), id(d)))
                    d["state"] = "approved"
                    d["user"] = user or self.account
                    return True
        raise AssertionError("no device code %r" % user_code)

    def deny(self, user_code):
        with self.lock:
            for d in self.devices.values():
                if d["user_code"] == user_code:
                    d["state"] = "denied"

    def fail_refresh(self, error="invalid_grant", description="", status=400):
        with self.lock:
            self.refresh_error = (status, error, description) if error else None

    def revoke(self):
        """Every refresh and access token dies (the user signed the app out)."""
        with self.lock:
            for r in self.refresh.values():
                r["valid"] = False
            self.access.clear()

    def expire_access(self):
        with self.lock:
            for a in self.access.values():
                a["expires"] = 0

    def delay_refresh(self, seconds):
        self.refresh_delay = seconds
        self.refresh_started.clear()
        self.release.clear()

    def check_access(self, user, token):
        with self.lock:
            a = self.access.get(token)
            return a is not None and a["user"] in (user, "*") and a["expires"] > time.time()

    def current_refresh_tokens(self):
        with self.lock:
            return [t for t, r in self.refresh.items() if r["valid"]]

    def grants(self, grant_type=None):
        with self.lock:
            return [r for r in self.requests if grant_type is None or r.get("grant_type") == grant_type]

    # --- token issuing (under the lock) -----------------------------------------------------
    def _issue(self, user, client, scope, with_refresh=True, predecessor=None):
        at = "at-" + secrets.token_urlsafe(24)
        self.access[at] = {"user": user, "expires": time.time() + self.expires_in}
        self.issued.append(at)
        out = {"access_token": at, "token_type": "Bearer", "expires_in": self.expires_in, "scope": scope}
        if with_refresh:
            if predecessor is not None and not self.rotate:
                return out   # no rotation: the client keeps its refresh token
            rt = "rt-" + secrets.token_urlsafe(32)
            self.refresh[rt] = {"user": user, "client": client, "valid": True, "successor": None, "scope": scope,
                                "predecessor": predecessor}
            if predecessor is not None:
                self.refresh[predecessor]["successor"] = rt
            self.issued.append(rt)
            out["refresh_token"] = rt
        return out


class _Handler(http.server.BaseHTTPRequestHandler):
    auth = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, obj=None, headers=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        with self.auth.lock:
            self.auth.answers.append((self.path, status, (obj or {}).get("error")))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, error, description="", status=400):
        self._send(status, {"error": error, "error_description": description})

    def _form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def _client_ok(self, f):
        a = self.auth
        cid = f.get("client_id")
        if cid not in a.clients:
            return False
        want = a.clients[cid]
        return want is None or f.get("client_secret") == want

    def do_GET(self):
        a = self.auth
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/authorize":
            return self._send(404, {"error": "not_found"})
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if q.get("response_type") != "code" or q.get("client_id") not in a.clients:
            return self._send(400, {"error": "invalid_request"})
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self._send(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
        redirect = q.get("redirect_uri", "")
        if not redirect.startswith("http://127.0.0.1:"):
            return self._send(400, {"error": "invalid_request", "error_description": "loopback redirect only"})
        code = "code-" + secrets.token_urlsafe(16)
        with a.lock:
            a.codes[code] = {"client": q["client_id"], "redirect_uri": redirect, "challenge": q["code_challenge"],
                             "scope": q.get("scope", ""), "used": False}
            a.requests.append({"path": "/authorize", "time": time.time(), "login_hint": q.get("login_hint")})
        loc = redirect + "?" + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
        self._send(302, None, {"Location": loc})

    def do_POST(self):
        a = self.auth
        f = self._form()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/device":
            return self._device(f)
        if path != "/token":
            return self._send(404, {"error": "not_found"})
        gt = f.get("grant_type")
        with a.lock:
            a.requests.append({"path": path, "grant_type": gt, "refresh_token": f.get("refresh_token"),
                               "time": time.time()})
        if not self._client_ok(f):
            return self._error("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401)
        if gt == "refresh_token":
            return self._refresh(f)
        if gt == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_token(f)
        if gt == "authorization_code":
            return self._code_token(f)
        if gt == "client_credentials":
            with a.lock:
                out = a._issue("app:" + f["client_id"], f["client_id"], f.get("scope", ""), with_refresh=False)
                # App-only tokens may send as any mailbox of the tenant.
                a.access[out["access_token"]]["user"] = "*"
            return self._send(200, out)
        return self._error("unsupported_grant_type")

    def _device(self, f):
        a = self.auth
        if f.get("client_id") not in a.clients:
            return self._error("invalid_client", "", 401)
        dc = "dc-" + secrets.token_urlsafe(24)
        uc = "%04d-%04d" % (secrets.randbelow(10000), secrets.randbelow(10000))
        with a.lock:
            a.devices[dc] = {"user_code": uc, "state": "pending", "expires": time.time() + a.device_expires_in,
                             "last_poll": 0.0, "client": f["client_id"], "scope": f.get("scope", "")}
        self._send(200, {"device_code": dc, "user_code": uc, "verification_uri": a.base + "/device-login",
                         "expires_in": a.device_expires_in, "interval": a.interval,
                         "message": "To sign in, use a web browser to open the page and enter the code."})

    def _device_token(self, f):
        a = self.auth
        with a.lock:
            d = a.devices.get(f.get("device_code"))
            if d is None:
                return self._error("invalid_grant", "unknown device code")
            now = time.time()
            if now > d["expires"]:
                return self._error("expired_token")
            # RFC 8628 §3.5: polling faster than the interval is slow_down.
            too_fast = now - d["last_poll"] < a.interval - 0.2
            d["last_poll"] = now
            if too_fast:
                return self._error("slow_down")
            a.answers.append(("poll", d["state"], id(d), time.time()))
            if d["state"] == "pending":
                return self._error("authorization_pending")
            if d["state"] == "denied":
                return self._error("access_denied")
            if d["state"] == "used":
                return self._error("invalid_grant", "device code already used")
            d["state"] = "used"
            out = a._issue(d["user"], d["client"], d["scope"])
        self._send(200, out)

    def _code_token(self, f):
        a = self.auth
        with a.lock:
            c = a.codes.get(f.get("code"))
            if c is None or c["used"]:
                return self._error("invalid_grant", "AADSTS54005: the code was already redeemed or is unknown")
            c["used"] = True
            if c["redirect_uri"] != f.get("redirect_uri") or c["client"] != f.get("client_id"):
                return self._error("invalid_grant", "redirect_uri or client mismatch")
            verifier = f.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != c["challenge"]:
                return self._error("invalid_grant", "PKCE verification failed")
            out = a._issue(a.account, c["client"], c["scope"])
        self._send(200, out)

    def _refresh(self, f):
        a = self.auth
        if a.refresh_delay:
            a.refresh_started.set()
            a.release.wait(a.refresh_delay)
        with a.lock:
            if a.refresh_error:
                status, error, desc = a.refresh_error
                return self._error(error, desc, status)
            rt = f.get("refresh_token")
            r = a.refresh.get(rt)
            if r is None or not r["valid"]:
                return self._error("invalid_grant", "AADSTS70000: The provided refresh token is revoked or expired.")
            # The predecessor dies once its successor is used.
            if r.get("predecessor") and r["predecessor"] in a.refresh:
                a.refresh[r["predecessor"]]["valid"] = False
            out = a._issue(r["user"], r["client"], r["scope"], predecessor=rt)
        self._send(200, out)
