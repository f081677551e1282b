"""A real SMTP upstream for relay tests, in the test process (aiosmtpd on a
thread), on 127.0.0.1 only.

- Modes: "plain" (no TLS offered), "starttls" (STARTTLS offered; with
  require_starttls MAIL before TLS is refused), "implicit" (SMTPS: TLS from
  the first byte, RFC 8314).
- AUTH PLAIN and LOGIN when `users` is given (AUTH only offered over TLS).
- Records every message it answered (envelope, bytes as received after
  dot-unstuffing, whether TLS and AUTH were in use), every MAIL FROM it saw,
  every AUTH attempt, every connection.
- Fault injection: `fail(stage, reply, times=None, address=None)` where stage
  is GREETING, EHLO, MAIL, RCPT, DATA (the reply to the final dot) and reply is
  an SMTP reply line, "drop" (close the connection without replying),
  "stall:SECONDS" (reply only after that long), or "stall" (never reply).
- Certificates: make_certs() builds a test CA and leaves with the openssl CLI:
  "good" (localhost, 127.0.0.1, signed by the CA), "wrong" (wrong.example,
  signed by the CA), "self" (localhost, 127.0.0.1, self-signed).
"""

import asyncio
import logging
import os
import ssl
import subprocess
import tempfile
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd logs every command at INFO; the test output needs none of it.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

HOST = "127.0.0.1"

_certs = None
_certs_lock = threading.Lock()


def _openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))


def make_certs():
    """Makes (once per process) a CA and three leaves in a temp dir; returns a
    dict name -> path: ca, good_cert, good_key, wrong_cert, wrong_key,
    self_cert, self_key."""
    global _certs
    with _certs_lock:
        if _certs:
            return _certs
        d = tempfile.mkdtemp(prefix="outbox-it-certs-")
        os.chmod(d, 0o755)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                 "-days", "2", "-subj", "/CN=outbox test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

        def leaf(name, cn, san):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                     "-subj", "/CN=" + cn, cwd=d)
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % san)
            _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)

        leaf("good", "localhost", "DNS:localhost,IP:127.0.0.1")
        leaf("wrong", "wrong.example", "DNS:wrong.example")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem",
                 "-days", "2", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
        _certs = {
            "dir": d, "ca": os.path.join(d, "ca.pem"),
            "good_cert": os.path.join(d, "good.pem"), "good_key": os.path.join(d, "good.key"),
            "wrong_cert": os.path.join(d, "wrong.pem"), "wrong_key": os.path.join(d, "wrong.key"),
            "self_cert": os.path.join(d, "self.pem"), "self_key": os.path.join(d, "self.key"),
        }
        return _certs


class Received:
    """One message as the upstream saw it."""

    def __init__(self, envelope, session, outcome):
        # aiosmtpd keeps the null reverse-path as "<>"; "" here, as in outboxctl.
        self.mail_from = "" if envelope.mail_from in ("<>", None) else envelope.mail_from
        self.mail_options = list(envelope.mail_options)
        self.rcpt_tos = list(envelope.rcpt_tos)
        self.data = envelope.original_content          # bytes, dot-unstuffed, CRLF
        self.tls = session.ssl is not None or getattr(session, "implicit_tls", False)
        self.auth_login = session.login_data          # bytes or None
        self.outcome = outcome                         # "accepted", "dropped", "stalled", or the reply
        self.time = time.time()

    def __repr__(self):
        return "Received(from=%r, to=%r, %d bytes, %s)" % (self.mail_from, self.rcpt_tos, len(self.data or b""),
                                                           self.outcome)


class _Rule:
    def __init__(self, stage, reply, times, address):
        self.stage = stage
        self.reply = reply
        self.times = times          # None = until cleared
        self.address = address      # RCPT only: which recipient (lower-cased)
        self.used = 0


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP with a greeting fault and connection bookkeeping."""

    def __init__(self, upstream, *args, **kwargs):
        self._upstream = upstream
        super().__init__(*args, **kwargs)

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.session.implicit_tls = transport.get_extra_info("ssl_object") is not None
            self._epoch = self._upstream._epoch
            self._upstream._connection_opened()

    def connection_lost(self, exc):
        # Once per connection (a STARTTLS upgrade keeps the same protocol).
        if not getattr(self, "_counted_closed", False):
            self._counted_closed = True
            self._upstream._connection_closed(getattr(self, "_epoch", None))
        super().connection_lost(exc)

    async def _handle_client(self):
        rule = self._upstream._take("GREETING")
        if rule is not None:
            if await self._upstream._act(self, rule):
                await self.push(rule)
                self.transport.close()
            return
        await super()._handle_client()


class Upstream:
    def __init__(self, mode="plain", cert="good", users=None, exclude_auth=(), require_starttls=True,
                 smtputf8=True, pipelining=False, tokens=None, size_limit=50 * 1024 * 1024, name="upstream",
                 token_check=None):
        assert mode in ("plain", "starttls", "implicit"), mode
        self.mode = mode
        self.cert = cert
        self.users = dict(users or {})       # login -> password
        self.tokens = dict(tokens or {})     # login -> OAuth2 bearer token (AUTH XOAUTH2)
        # token_check(login, token) -> bool: XOAUTH2 asks it instead of `tokens`
        # (oauth2_server.AuthServer.check_access: only its current tokens pass).
        self.token_check = token_check
        self.name = name
        self.port = None
        self.host = HOST
        self._lock = threading.Lock()
        self._rules = []
        self.messages = []          # Received, every DATA the upstream finished reading
        self.mail_froms = []        # every MAIL FROM address
        self.sent_behind_mail = []  # bytes already received after each MAIL FROM line
        self.sent_behind_dot = []   # ... and after each final dot (the next message's commands)
        self.rcpt_log = []          # (address, reply)
        self.auth_attempts = []     # dict(mechanism, login, password, success, tls)
        self.connections = 0
        self.closed = 0             # connections ended (either side)
        self._epoch = 0
        self.ehlos = 0
        self.auth_message = None    # the reply to a refused AUTH (default aiosmtpd's 535 5.7.8)
        self.max_rcpts = None       # recipients per transaction; more get 452 4.5.3 (RFC 5321 §4.5.3.1.10)
        # aiosmtpd reads commands one line at a time, so pipelined commands
        # (RFC 2920) work; it just does not say so.
        self.pipelining = pipelining
        ctx = None
        if mode != "plain":
            certs = make_certs()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(certs[cert + "_cert"], certs[cert + "_key"])
        kwargs = dict(hostname=HOST, port=0, server_hostname="upstream.test", enable_SMTPUTF8=smtputf8,
                      data_size_limit=size_limit, decode_data=False, ready_timeout=10)
        if mode == "implicit":
            kwargs["ssl_context"] = ctx
        elif mode == "starttls":
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = require_starttls
        if self.users or self.tokens or self.token_check:
            kwargs["authenticator"] = self._authenticate
            # Implicit TLS is TLS from the first byte; aiosmtpd only knows STARTTLS.
            kwargs["auth_require_tls"] = mode != "implicit"
            exclude = list(exclude_auth)
            if not self.tokens and not self.token_check:
                exclude.append("XOAUTH2")
            if not self.users:
                exclude += ["PLAIN", "LOGIN"]
            kwargs["auth_exclude_mechanism"] = exclude
        else:
            kwargs["auth_exclude_mechanism"] = ["XOAUTH2"]
        self._kwargs = kwargs
        self._controller = None

    # lifecycle --------------------------------------------------------------------
    def start(self):
        up = self

        class _Controller(Controller):
            def factory(self):
                return _FaultySMTP(up, self.handler, **self.SMTP_kwargs)

        kw = dict(self._kwargs)
        hostname, port = kw.pop("hostname"), kw.pop("port")
        ssl_context = kw.pop("ssl_context", None)
        ready_timeout = kw.pop("ready_timeout")
        server_hostname = kw.pop("server_hostname")
        if port == 0:
            port = _free_port()
        self._controller = _Controller(self, hostname=hostname, port=port, ssl_context=ssl_context,
                                       ready_timeout=ready_timeout, server_hostname=server_hostname, **kw)
        self._controller.start()
        self.port = port
        # The controller's own start-up probe is not a client (its close may
        # still come: the epoch tells it apart).
        with self._lock:
            self.connections = 0
            self.closed = 0
            self._epoch += 1
        return self

    def stop(self):
        if self._controller is not None:
            try:
                self._controller.stop(no_assert=True)
            except Exception:
                pass
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # faults ---------------------------------------------------------------------------
    def fail(self, stage, reply, times=None, address=None):
        """From now on answer `stage` with `reply` (`times` times, or until
        clear())."""
        stage = stage.upper()
        assert stage in ("GREETING", "EHLO", "MAIL", "RCPT", "DATA"), stage
        with self._lock:
            self._rules.append(_Rule(stage, reply, times, address.lower() if address else None))

    def clear(self):
        with self._lock:
            self._rules = []

    def _take(self, stage, address=None):
        with self._lock:
            for r in self._rules:
                if r.stage != stage or (r.address is not None and r.address != (address or "").lower()):
                    continue
                if r.times is not None and r.used >= r.times:
                    continue
                r.used += 1
                return r.reply
        return None

    async def _act(self, server, reply):
        """Carries out drop/stall. True: send `reply` as the answer; False:
        carry on as if there were no fault (after "stall:N"). "drop" and
        "stall" never return: the client's close cancels the handler."""
        if reply == "drop":
            server.transport.abort()
            await asyncio.sleep(3600)
        if reply == "stall":
            await asyncio.sleep(3600)
        if reply.startswith("stall:"):
            await asyncio.sleep(float(reply.split(":", 1)[1]))
            return False
        return True

    # bookkeeping ---------------------------------------------------------------------
    def _connection_opened(self):
        with self._lock:
            self.connections += 1

    def _connection_closed(self, epoch):
        with self._lock:
            if epoch == self._epoch:
                self.closed += 1

    def wait_closed(self, n=1, timeout=20.0):
        """n connections have ended (outboxd QUITs an idle one after its 2 s
        linger): the next message needs a new connection and a new login."""
        return self.wait_for(lambda: self.closed >= n, timeout, "%d closed connection(s)" % n)

    def delivered(self):
        """Messages answered with 250 to the final dot."""
        with self._lock:
            return [m for m in self.messages if m.outcome == "accepted"]

    def received_for(self, rcpt):
        with self._lock:
            return [m for m in self.messages if rcpt in m.rcpt_tos]

    def wait_for(self, pred, timeout=20.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("upstream %s: %s not met within %.0f s; messages=%r auth=%r"
                             % (self.name, what, timeout, self.messages, self.auth_attempts))

    def wait_delivered(self, n=1, timeout=20.0):
        return self.wait_for(lambda: len(self.delivered()) >= n and self.delivered(), timeout,
                             "%d delivered message(s)" % n)

    # aiosmtpd hooks -------------------------------------------------------------------
    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = False
        login = password = None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            ok = self.users.get(login) == password
        with self._lock:
            self.auth_attempts.append({"mechanism": mechanism, "login": login, "password": password,
                                       "success": ok, "tls": session.ssl is not None
                                       or getattr(session, "implicit_tls", False)})
        return AuthResult(success=ok, handled=False, message=None if ok else self.auth_message,
                          auth_data=auth_data if ok else None)

    async def auth_XOAUTH2(self, server, args):
        """Google's SASL XOAUTH2: base64("user=U^Aauth=Bearer T^A^A"); a bad
        token gets a 334 with a JSON error, then 535 after the client's
        empty line (https://developers.google.com/gmail/imap/xoauth2-protocol)."""
        import base64
        if len(args) < 2:
            raw = await server.challenge_auth("")
        else:
            try:
                raw = base64.b64decode(args[1], validate=True)
            except Exception:
                raw = b""
        user = token = None
        parts = raw.split(b"\x01") if isinstance(raw, bytes) else []
        if len(parts) >= 2 and parts[0].startswith(b"user=") and parts[1].startswith(b"auth=Bearer "):
            user = parts[0][5:].decode("utf-8", "replace")
            token = parts[1][len(b"auth=Bearer "):].decode("utf-8", "replace")
        if self.token_check is not None:
            ok = user is not None and token is not None and self.token_check(user, token)
        else:
            ok = user is not None and self.tokens.get(user) == token
        tls = server.session.ssl is not None or getattr(server.session, "implicit_tls", False)
        with self._lock:
            self.auth_attempts.append({"mechanism": "XOAUTH2", "login": user, "password": token,
                                       "success": ok, "tls": tls})
        if ok:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), token.encode()))
        await server.challenge_auth(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and Password not accepted. Learn more at https://support.google.com/mail/?p=BadCredentials")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self._lock:
            self.ehlos += 1
        session.host_name = hostname
        rule = self._take("EHLO")
        if rule is not None and await self._act(server, rule):
            return [rule]
        if self.pipelining:
            responses = responses[:-1] + ["250-PIPELINING"] + responses[-1:]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # What the client had already sent behind MAIL: with PIPELINING the
        # RCPTs and DATA come in the same write (RFC 2920 §3.1).
        behind = bytes(getattr(server._reader, "_buffer", b""))
        with self._lock:
            self.mail_froms.append("" if address == "<>" else address)
            self.sent_behind_mail.append(behind)
        rule = self._take("MAIL")
        if rule is not None and await self._act(server, rule):
            return rule
        if (self.users or self.tokens or self.token_check) and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self._take("RCPT", address)
        if rule is not None and await self._act(server, rule):
            reply = rule
        elif self.max_rcpts is not None and len(envelope.rcpt_tos) >= self.max_rcpts:
            reply = "452 4.5.3 Too many recipients"
        else:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            reply = "250 2.1.5 OK"
        with self._lock:
            self.rcpt_log.append((address, reply))
        return reply

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.sent_behind_dot.append(bytes(getattr(server._reader, "_buffer", b"")))
        rule = self._take("DATA")
        if rule is not None:
            outcome = {"drop": "dropped"}.get(rule, "stalled" if rule.startswith("stall") else rule)
            rec = Received(envelope, session, outcome)
            with self._lock:
                self.messages.append(rec)
            if await self._act(server, rule):
                return rule
            with self._lock:
                self.messages.remove(rec)
        with self._lock:
            self.messages.append(Received(envelope, session, "accepted"))
            n = len(self.messages)
        return "250 2.0.0 OK: queued as UP%d" % n


def _free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def closed_port():
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return _free_port()


# --- outboxd configuration for relay tests ----------------------------------------------

FAST_RETRY = {"initial": "1s", "max": "2s", "factor": 2.0, "jitter": 0.0, "lifetime": "20s"}


def _toml(v):
    import json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)


def upstream_section(name, port, tls="none", **keys):
    """One [[upstream]] table for 127.0.0.1:port; keys override or add
    (ca_file, username, password_file, auth, timeout, ...)."""
    out = {"name": name, "host": HOST, "port": port, "tls": tls, "timeout": "3s", "connect_timeout": "2s"}
    if tls != "none":
        out["ca_file"] = make_certs()["ca"]
    out.update(keys)
    return "[[upstream]]\n" + "".join("%s = %s\n" % (k, _toml(v)) for k, v in out.items() if v is not None)


def relay_toml(upstreams, routes=(("*", None),), retry=None, bounces=True):
    """[[upstream]]s (already rendered), [[route]]s (sender, [names] or None =
    every upstream in order), [retry] (FAST_RETRY updated by `retry`) and
    [bounces]."""
    names = []
    for u in upstreams:
        for line in u.splitlines():
            if line.startswith("name = "):
                names.append(line.split("=", 1)[1].strip().strip('"'))
    parts = list(upstreams)
    for sender, ups in routes:
        parts.append("[[route]]\nsender = %s\nupstreams = %s\n" % (_toml(sender), _toml(list(ups or names))))
    r = dict(FAST_RETRY)
    r.update(retry or {})
    parts.append("[retry]\n" + "".join("%s = %s\n" % (k, _toml(v)) for k, v in r.items()))
    parts.append("[bounces]\nenabled = %s\n" % _toml(bounces))
    return "\n".join(parts)
