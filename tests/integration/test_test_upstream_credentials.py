#!/usr/bin/python3
"""outboxctl test-upstream run from a shell for an upstream whose secret is a
systemd credential (password_credential = "ID"): without $CREDENTIALS_DIRECTORY
it reads the file PID 1 would hand the service, from the LoadCredential= of
outboxd.service and its drop-ins (the load path from $SYSTEMD_UNIT_PATH,
which systemd itself honours), and authenticates with it against a real
STARTTLS + AUTH upstream (issue 12 items 2 and 3: it failed with a hint to
add what was already there)."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, upstream_section  # noqa: E402


class CredentialFromUnit(unittest.TestCase):
    def setUp(self):
        self.up = Upstream(mode="starttls", users={"app@example.net": "s3cret-code"})
        self.up.start()
        self.addCleanup(self.up.stop)
        self.tmp = tempfile.mkdtemp(prefix="outbox-units-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.units = os.path.join(self.tmp, "system")
        os.makedirs(os.path.join(self.units, "outboxd.service.d"))
        shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "systemd", "outboxd.service"), self.units)
        self.secret = os.path.join(self.tmp, "mail-secret")
        with open(self.secret, "w") as f:
            f.write("s3cret-code\n")
        os.chmod(self.secret, 0o600)
        self.d = harness.Daemon(name="outbox-cred", extra_toml=upstream_section(
            "mail", self.up.port, tls="starttls", username="app@example.net", password_credential="mail"))
        self.addCleanup(self.d.cleanup)

    def ctl(self, *args, check=0):
        env = dict(os.environ, SYSTEMD_UNIT_PATH=self.units)
        env.pop("CREDENTIALS_DIRECTORY", None)
        import subprocess
        p = subprocess.run([harness.binpath("outboxctl"), "--config", self.d.config_path] + list(args),
                           capture_output=True, env=env, timeout=60)
        self.assertEqual(p.returncode, check, (p.stdout, p.stderr))
        return p.stdout.decode()

    def test_reads_the_credential_the_service_would_get(self):
        with open(os.path.join(self.units, "outboxd.service.d", "override.conf"), "w") as f:
            f.write("[Service]\nLoadCredential=mail:%s\n" % self.secret)
        out = self.ctl("test-upstream", "mail")
        self.assertIn("  secret    credential mail from %s (LoadCredential= of outboxd.service)" % self.secret, out)
        self.assertIn("  auth ", out)
        self.assertIn('ok: upstream "mail"', out)
        self.assertIn("authenticated as app@example.net", out)
        self.assertNotIn("s3cret-code", out)
        self.assertEqual([(a["login"], a["success"]) for a in self.up.auth_attempts], [("app@example.net", True)])

    def test_without_the_setting_it_says_how_to_add_it(self):
        out = self.ctl("test-upstream", "mail", check=1)
        self.assertIn("$CREDENTIALS_DIRECTORY is not set and outboxd.service has no LoadCredential=mail:PATH", out)
        self.assertIn("systemctl edit outboxd.service", out)


if __name__ == "__main__":
    unittest.main()
