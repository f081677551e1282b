#!/usr/bin/python3
"""Installation (SPEC "Programs", "systemd"): `cmake --install BUILD --prefix
DIR` puts the programs, the example configuration, the systemd units and the
man pages under DIR (never outside it); with the /usr prefix the
configuration goes to /etc and the units to /lib/systemd/system (checked
through DESTDIR). The installed programs run, outbox-mailq lists the queue,
and the man pages render without warnings."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(harness.BIN))
UNITS = ["outboxd.service", "outboxd.socket", "outboxd-submission.socket", "outboxd-submissions.socket"]
MAN = ["man8/outboxd.8", "man8/outbox-sendmail.8", "man1/outboxctl.1", "man5/outbox.toml.5"]


def cmake_install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    p = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True, text=True,
                       env=env, timeout=300)
    if p.returncode != 0:
        raise AssertionError("cmake --install failed:\n%s\n%s" % (p.stdout, p.stderr))
    return p.stdout


def tree(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for name in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out.add(os.path.relpath(os.path.join(d, name), root))
    return out


class InstallPrefix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outbox-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        cls.log = cmake_install(cls.prefix)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_files_in_place(self):
        want = {"sbin/outboxd", "bin/outboxctl", "sbin/outbox-sendmail", "bin/outbox-mailq",
                "etc/outbox/outbox.toml"}
        want |= {"lib/systemd/system/" + u for u in UNITS}
        want |= {"share/man/" + m for m in MAN}
        want |= {"share/bash-completion/completions/outboxctl", "share/zsh/vendor-completions/_outboxctl"}
        got = tree(self.prefix)
        self.assertEqual(want - got, set(), sorted(got))
        for prog in ("sbin/outboxd", "bin/outboxctl", "sbin/outbox-sendmail"):
            self.assertTrue(os.access(os.path.join(self.prefix, prog), os.X_OK), prog)
        # mailq under its own name, pointing at outbox-sendmail relatively so
        # that it survives DESTDIR staging.
        link = os.path.join(self.prefix, "bin/outbox-mailq")
        self.assertEqual(os.readlink(link), "../sbin/outbox-sendmail")
        # No plain sendmail/mailq: those come from update-alternatives.
        self.assertNotIn("bin/mailq", got)
        self.assertNotIn("sbin/sendmail", got)
        self.assertEqual(os.stat(os.path.join(self.prefix, "etc/outbox/outbox.toml")).st_mode & 0o777, 0o644)

    def test_installed_programs_run(self):
        env = dict(os.environ, OUTBOX_CONFIG="/nonexistent/outbox.toml")
        for prog, name in (("sbin/outboxd", "outboxd"), ("bin/outboxctl", "outboxctl"),
                           ("sbin/outbox-sendmail", "outbox-sendmail")):
            p = subprocess.run([os.path.join(self.prefix, prog), "--version"], capture_output=True, text=True,
                               env=env, timeout=30)
            self.assertEqual(p.returncode, 0, (prog, p.stderr))
            self.assertRegex(p.stdout, r"^%s \d+\.\d+\.\d+" % name)

    def test_installed_example_config_is_valid(self):
        cfg = os.path.join(self.prefix, "etc/outbox/outbox.toml")
        p = subprocess.run([os.path.join(self.prefix, "sbin/outboxd"), "--config", cfg, "--check"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration ok", p.stdout)

    def test_outbox_mailq_lists_the_queue(self):
        with harness.Daemon(name="outbox-inst") as d:
            d.start()
            d.submit()
            self.assertEqual(d.stop(), 0)
            p = subprocess.run([os.path.join(self.prefix, "bin/outbox-mailq"), "-C", d.config_path],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("user@example.test", p.stdout)
            self.assertRegex(p.stdout, r"-- \d+ Kbytes in 1 Request\.")

    def test_man_pages_render_cleanly(self):
        if not shutil.which("man"):
            self.skipTest("man not installed")
        for m in MAN:
            path = os.path.join(self.prefix, "share/man", m)
            p = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
            self.assertEqual(p.returncode, 0, (m, p.stderr))
            self.assertEqual(p.stderr.strip(), "", m)
            for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
                self.assertIn(section, p.stdout, (m, section))
        for m in ("man8/outboxd.8", "man8/outbox-sendmail.8", "man1/outboxctl.1"):
            with open(os.path.join(self.prefix, "share/man", m)) as f:
                text = f.read()
            self.assertIn("EXIT STATUS", text, m)
            self.assertIn("EXAMPLES", text, m)


class InstallUsr(unittest.TestCase):
    def test_usr_prefix_uses_etc_and_lib_systemd(self):
        tmp = tempfile.mkdtemp(prefix="outbox-destdir-")
        try:
            cmake_install("/usr", destdir=tmp)
            got = tree(tmp)
            for f in ["usr/sbin/outboxd", "usr/bin/outboxctl", "usr/sbin/outbox-sendmail", "usr/bin/outbox-mailq",
                      "etc/outbox/outbox.toml"] + ["lib/systemd/system/" + u for u in UNITS] + \
                     ["usr/share/man/" + m for m in MAN]:
                self.assertIn(f, got)
            self.assertFalse(any(g.startswith("usr/etc") or g.startswith("usr/lib/systemd") for g in got), got)
            # The unit runs the binary where the package puts it.
            with open(os.path.join(tmp, "lib/systemd/system/outboxd.service")) as f:
                unit = f.read()
            self.assertIn("ExecStart=/usr/sbin/outboxd --config /etc/outbox/outbox.toml\n", unit)
            for u in UNITS[1:]:
                with open(os.path.join(tmp, "lib/systemd/system", u)) as f:
                    self.assertIn("Service=outboxd.service\n", f.read())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
