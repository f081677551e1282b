#!/usr/bin/python3
"""The OAuth2 token command as outboxd runs it (docs/reference/operations.md
"OAuth2 token command"): started without a shell, with PATH, HOME, LANG and
only the variables the upstream names in oauth2_token_env. Another upstream's
password_env secret and CREDENTIALS_DIRECTORY, both in outboxd's own
environment, never reach it; the token it prints is used for XOAUTH2 and
never logged."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

USER = "app@provider.test"
OTHER_SECRET = "other-upstream-password-7f3k"
TOKEN = "ya29.token-from-command-Q2"


class TokenCommand(unittest.TestCase):
    def test_minimal_environment_and_named_variables(self):
        up = Upstream("implicit", tokens={USER: TOKEN}).start()
        self.addCleanup(up.stop)
        d = harness.Daemon(name="outbox-token")
        self.addCleanup(d.cleanup)
        envfile = os.path.join(d.dir, "token-env")
        script = os.path.join(d.dir, "get-token")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nenv > %s\necho %s\n" % (envfile, TOKEN))
        os.chmod(script, 0o755)
        mail = upstream_section("mail", up.port, tls="implicit", username=USER, auth="xoauth2",
                                oauth2_token_command=[script], oauth2_token_env=["TOKEN_HELPER_ACCOUNT"])
        # Never used for delivery (the route names "mail" only); its secret is
        # loaded from outboxd's environment.
        other = upstream_section("other", up.port, tls="implicit", username="someone",
                                 password_env="OUTBOX_OTHER_PW")
        d.extra_toml = relay_toml([mail, other], routes=(("*", ["mail"]),))
        d.write_config()

        def env():
            os.environ["OUTBOX_OTHER_PW"] = OTHER_SECRET
            os.environ["CREDENTIALS_DIRECTORY"] = d.dir
            os.environ["TOKEN_HELPER_ACCOUNT"] = "tenant-42"
            os.environ["LANG"] = "C.UTF-8"
        d.start(preexec=env)
        with d.smtplib() as s:
            self.assertEqual(s.sendmail("app@client.test", ["x@example.test"],
                                        b"Subject: t\r\n\r\nbody\r\n"), {})
            qid = s.last_queue_id
        got = up.wait_delivered(1)
        self.assertEqual(got[0].data, d.body(qid))
        self.assertEqual([(a["mechanism"], a["success"]) for a in up.auth_attempts], [("XOAUTH2", True)])
        with open(envfile) as f:
            seen = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        self.assertEqual(seen.get("TOKEN_HELPER_ACCOUNT"), "tenant-42")
        self.assertEqual(seen.get("LANG"), "C.UTF-8")
        self.assertIn("PATH", seen)
        self.assertNotIn("OUTBOX_OTHER_PW", seen)
        self.assertNotIn("CREDENTIALS_DIRECTORY", seen)
        self.assertNotIn(OTHER_SECRET, open(envfile).read())
        # Only what the upstream named and the fixed three (sh adds PWD, SHLVL, _).
        self.assertLessEqual(set(seen) - {"PWD", "SHLVL", "_", "OLDPWD"},
                             {"PATH", "HOME", "LANG", "TOKEN_HELPER_ACCOUNT"})
        self.assertNotIn(TOKEN.encode(), d.log_bytes())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
