#!/usr/bin/python3
"""outboxd --check and outboxctl check, run as programs: what loads but cannot
work is reported with FILE:LINE (errors exit 78, warnings exit 0 and are
printed), a directory given as --config is named as one, a misspelt key gets
"did you mean"."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

OUTBOXD = harness.binpath("outboxd")
OUTBOXCTL = harness.binpath("outboxctl")

BASE = """[spool]
path = "spool.db"
[[listen]]
path = "submit.sock"
"""


def line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in config" % needle)


class ConfigCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="outbox-check-")
        self.path = os.path.join(self.dir, "outbox.toml")
        self.secret = os.path.join(self.dir, "secret")
        with open(self.secret, "w") as f:
            f.write("pw\n")
        os.chmod(self.secret, 0o600)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)
        return text

    def both(self, *extra, env=None):
        """Run outboxd --check and outboxctl check; they must agree."""
        e = dict(os.environ)
        e.pop("CREDENTIALS_DIRECTORY", None)
        e.pop("OUTBOX_TEST_PW", None)
        e.update(env or {})
        out = []
        for argv in ([OUTBOXD, "--config", self.path, "--check"], [OUTBOXCTL, "--config", self.path, "check"]):
            p = subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=20, cwd=self.dir, env=e)
            out.append(p)
        self.assertEqual(out[0].returncode, out[1].returncode, (out[0].stderr, out[1].stderr))
        self.assertEqual(out[0].stderr.replace("outboxd: ", ""), out[1].stderr.replace("outboxctl: ", ""))
        return out[0]

    def test_sound_config_is_ok(self):
        self.write(BASE + '[[upstream]]\nname = "u"\nhost = "smtp.example.com"\nusername = "a@example.com"\n'
                   'password_file = "%s"\n' % self.secret)
        p = self.both()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.assertIn("configuration ok", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "spool.db")), "--check must not create the spool")

    def test_errors_exit_78_with_file_and_line(self):
        text = self.write(BASE + '[limits]\nmax_message_size = 35\n'
                          '[[upstream]]\nname = "u"\nhost = "smtp.example.com"\nusername = "a@example.com"\n'
                          'password_file = "%s/missing"\n'
                          '[[upstream]]\nname = "v"\nhost = "smtp.example.com"\nusername = "a@example.com"\n'
                          'password_env = "OUTBOX_TEST_PW"\n' % self.dir)
        p = self.both()
        self.assertEqual(p.returncode, harness.EX_CONFIG, p.stderr)
        err = p.stderr
        self.assertIn("%s:%d: limits.max_message_size: 35 bytes" % (self.path, line_of(text, "max_message_size")), err)
        self.assertIn('write "35M"', err)
        self.assertIn("%s:%d: upstream[0].password_file:" % (self.path, line_of(text, "password_file")), err)
        self.assertIn("No such file or directory", err)
        self.assertIn("%s:%d: upstream[1].password_env: $OUTBOX_TEST_PW is not set" % (
            self.path, line_of(text, "password_env")), err)
        self.assertIn("3 error(s)", err)
        # set, the variable is fine
        p = self.both(env={"OUTBOX_TEST_PW": "x"})
        self.assertNotIn("password_env", p.stderr)

    def test_warnings_exit_0_and_are_printed(self):
        text = self.write(BASE + '[[upstream]]\nname = "163"\nhost = "smtp.163.com"\nport = 465\n'
                          'tls = "starttls"\nusername = "me@163.com"\npassword_credential = "pw"\n')
        p = self.both()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration ok, 3 warning(s)", p.stdout)
        self.assertIn('%s:%d: upstream[0].port: warning: port 465' % (self.path, line_of(text, "port")), p.stderr)
        self.assertIn('set tls = "implicit"', p.stderr)
        self.assertIn('set envelope_from = "me@163.com" and from_header = "rewrite"', p.stderr)
        self.assertIn("$CREDENTIALS_DIRECTORY is set only inside the service", p.stderr)
        # Inside the service (systemd sets the variable): the credential file itself is checked.
        creds = os.path.join(self.dir, "creds")
        os.mkdir(creds)
        p = self.both(env={"CREDENTIALS_DIRECTORY": creds})
        self.assertEqual(p.returncode, harness.EX_CONFIG, p.stderr)
        self.assertIn('credential "%s/pw" cannot be read' % creds, p.stderr)
        shutil.copy(self.secret, os.path.join(creds, "pw"))
        p = self.both(env={"CREDENTIALS_DIRECTORY": creds})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("password_credential", p.stderr)

    def test_directory_and_typo(self):
        p = subprocess.run([OUTBOXD, "--config", self.dir, "--check"], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, harness.EX_CONFIG)
        self.assertIn("%s: is a directory, not a configuration file" % self.dir, p.stderr)
        self.assertNotIn("required key", p.stderr)
        text = self.write(BASE + "[limits]\nmax_mesage_size = \"1M\"\n")
        p = self.both()
        self.assertEqual(p.returncode, harness.EX_CONFIG)
        self.assertIn('%s:%d: limits.max_mesage_size: unknown key (did you mean "max_message_size"?)' % (
            self.path, line_of(text, "max_mesage_size")), p.stderr)


if __name__ == "__main__":
    unittest.main()
