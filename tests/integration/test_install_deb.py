#!/usr/bin/python3
"""The Debian package (SPEC "Programs": `cpack -G DEB` in the build
directory): built from the test's build directory into a temp dir, then read
with dpkg-deb (never installed): name, Depends from dpkg-shlibdeps plus
adduser, no Conflicts with other MTAs, the files, the conffile and the
maintainer scripts (user, spool, sendmail alternative that never clobbers
another MTA's sendmail, systemd)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(harness.BIN))
HAVE_TOOLS = all(shutil.which(t) for t in ("cpack", "dpkg-deb", "dpkg-shlibdeps"))


@unittest.skipUnless(HAVE_TOOLS, "cpack, dpkg-deb or dpkg-shlibdeps missing (tools/install-deps.sh adds dpkg-dev)")
class DebPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outbox-deb-")
        # -B: package and staging go to the temp dir; the build dir is only read
        # (its preinstall step rebuilds nothing when it is up to date).
        t0 = time.monotonic()
        p = subprocess.run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
                            "-B", cls.tmp], capture_output=True, text=True, timeout=540, cwd=cls.tmp)
        cls.seconds = time.monotonic() - t0
        if p.returncode != 0:
            raise AssertionError("cpack failed:\n%s\n%s" % (p.stdout[-3000:], p.stderr[-3000:]))
        debs = [f for f in os.listdir(cls.tmp) if f.endswith(".deb")]
        assert len(debs) == 1, debs
        cls.deb = os.path.join(cls.tmp, debs[0])
        cls.control = os.path.join(cls.tmp, "control")
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        p = subprocess.run(["dpkg-deb", "--field", self.deb, name], capture_output=True, text=True, check=True)
        return p.stdout.strip()

    def script(self, name):
        with open(os.path.join(self.control, name)) as f:
            return f.read()

    def test_control_fields(self):
        self.assertEqual(self.field("Package"), "outbox")
        self.assertRegex(self.field("Version"), r"^\d+\.\d+\.\d+")
        self.assertEqual(self.field("Section"), "mail")
        deps = [d.strip().split()[0] for d in self.field("Depends").split(",")]
        for want in ("adduser", "libc6", "libuv1", "libsqlite3-0", "libssl3", "libsystemd0"):
            self.assertIn(want, deps)
        # An MTA for the packages that depend on one (default-mta | mail-transport-agent).
        self.assertEqual(self.field("Provides"), "mail-transport-agent")
        # Installable next to Postfix/Exim: no Conflicts, no Replaces.
        self.assertEqual(self.field("Conflicts"), "")
        self.assertEqual(self.field("Replaces"), "")
        info = subprocess.run(["dpkg-deb", "--info", self.deb], capture_output=True, text=True, check=True).stdout
        for name in ("conffiles", "postinst", "prerm", "postrm"):
            self.assertRegex(info, r"\b%s\b" % name)

    def test_contents(self):
        out = subprocess.run(["dpkg-deb", "--contents", self.deb], capture_output=True, text=True,
                             check=True).stdout
        entries = {}
        for line in out.splitlines():
            parts = line.split()
            path = parts[5][1:] if parts[5].startswith("./") else parts[5]
            entries[path.rstrip("/")] = (parts[0], parts[6:])
        for path in ("/usr/sbin/outboxd", "/usr/bin/outboxctl", "/usr/sbin/outbox-sendmail", "/usr/sbin/outbox-postdrop"):
            self.assertIn(path, entries)
            self.assertTrue(entries[path][0].startswith("-rwxr-xr-x"), (path, entries[path]))
        self.assertEqual(entries["/usr/bin/outbox-mailq"][1], ["->", "../sbin/outbox-sendmail"])
        for path in ("/etc/outbox/outbox.toml", "/lib/systemd/system/outboxd.service",
                     "/lib/systemd/system/outboxd.socket", "/lib/systemd/system/outboxd-submission.socket",
                     "/lib/systemd/system/outboxd-submissions.socket", "/usr/share/man/man8/outboxd.8",
                     "/usr/share/man/man1/outboxctl.1", "/usr/share/man/man5/outbox.toml.5",
                     "/usr/share/man/man8/outbox-sendmail.8"):
            self.assertIn(path, entries)
        # sendmail and mailq are never shipped: update-alternatives makes them.
        for path in ("/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/lib/sendmail"):
            self.assertNotIn(path, entries)
        # Owned by root in the archive (the spool is made by postinst).
        self.assertNotIn("/var/lib/outbox", entries)

    def test_conffiles(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/outbox/outbox.toml"])

    def test_maintainer_scripts(self):
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, name)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o755, name)
            p = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, (name, p.stderr))
            self.assertTrue(self.script(name).startswith("#!/bin/sh\n"))
            self.assertIn("set -e", self.script(name))
        post = self.script("postinst")
        self.assertRegex(post, r"adduser --system .*--home /var/lib/outbox")
        self.assertIn("install -d -o outbox -g outbox -m 0750 /var/lib/outbox", post)
        # The maildrop: a dedicated group, a sticky group-writable directory,
        # the helper set-group-ID through dpkg-statoverride.
        self.assertIn("addgroup --system --quiet outbox-drop", post)
        self.assertIn("install -d -o outbox -g outbox-drop -m 1770 /var/spool/outbox/maildrop", post)
        self.assertIn("dpkg-statoverride --update --add root outbox-drop 2755 /usr/sbin/outbox-postdrop", post)
        self.assertRegex(post, r"for unit in outboxd.service outboxd.socket; do")
        self.assertRegex(post, r"update-alternatives --install \"\$SENDMAIL\" sendmail /usr/sbin/outbox-sendmail 25"
                               r" \\\s+--slave /usr/bin/mailq mailq /usr/sbin/outbox-sendmail")
        self.assertIn("dpkg-query -S", post)
        self.assertIn("[ -d /run/systemd/system ]", post)
        self.assertIn("deb-systemd-helper", post)
        prerm = self.script("prerm")
        self.assertIn("update-alternatives --remove sendmail /usr/sbin/outbox-sendmail", prerm)
        postrm = self.script("postrm")
        purge = postrm[postrm.index("    purge)"):]
        remove = postrm[postrm.index("    remove)"):postrm.index("    purge)")]
        self.assertIn("rm -rf /var/lib/outbox", purge)
        self.assertIn("deluser --system", purge)
        self.assertNotIn("/var/lib/outbox", remove)

    def test_postinst_never_clobbers_another_sendmail(self):
        # The decision in postinst, run against a fake /usr/sbin/sendmail: a
        # regular file (another MTA's) is left alone with a note; a missing one
        # or the alternatives link gets the alternative.
        post = self.script("postinst")
        fn = re.search(r"^sendmail_is_free\(\) \{.*?^\}", post, re.S | re.M).group(0)
        d = tempfile.mkdtemp(dir=self.tmp)
        target = os.path.join(d, "sendmail")

        def free():
            return subprocess.run(["sh", "-c", "SENDMAIL=%s\n%s\nsendmail_is_free" % (target, fn)]).returncode == 0

        self.assertTrue(free())
        os.symlink("/etc/alternatives/sendmail", target)
        self.assertTrue(free())
        os.unlink(target)
        os.symlink("../lib/sendmail", target)
        self.assertFalse(free())
        os.unlink(target)
        with open(target, "w") as f:
            f.write("#!/bin/sh\n")
        self.assertFalse(free())

    def test_shellcheck_clean(self):
        if not shutil.which("shellcheck"):
            self.skipTest("shellcheck not installed")
        for name in ("postinst", "prerm", "postrm"):
            p = subprocess.run(["shellcheck", "-s", "sh", os.path.join(self.control, name)],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, (name, p.stdout))


if __name__ == "__main__":
    unittest.main(verbosity=2)
