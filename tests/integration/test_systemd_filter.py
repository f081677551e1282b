#!/usr/bin/python3
"""outboxd under the shipped unit's system-call filter (issue 12 item 4).

systemd is not PID 1 here, so the filter is built the way systemd builds it:
the SystemCallFilter= lines of systemd/outboxd.service, in order (the first
line is an allow list, so its default action kills; later `~` lines take
sets away, later plain lines give them back), each @set expanded with
systemd's own definitions (`systemd-analyze syscall-filter`), loaded with
libseccomp (python3-seccomp) in the child before exec, default action:
kill the process (SIGSYS), as systemd does without SystemCallErrorNumber=.

Under it, outboxd must run the documented configuration: a Unix listener
with `group =` (chown), a TCP listener, a message accepted, written to the
spool and relayed to a local delivery target (threads, fsync, rename), then
SIGTERM. A control run with the unit's filter minus its `@chown` line shows
the test sees the defect it guards against (SIGSYS at start)."""

import errno
import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "systemd", "outboxd.service")

_sets = {}


def expand(name):
    """A syscall name, or an @set expanded (recursively) by systemd itself."""
    if not name.startswith("@"):
        return {name}
    if name not in _sets:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                             check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            names |= expand(line)
        _sets[name] = names
    return _sets[name]


def unit_filter_lines(text):
    return [m.group(1).split() for m in re.finditer(r"^SystemCallFilter=(.*)$", text, re.M)]


def allowed_syscalls(lines):
    allowed = None
    for words in lines:
        deny = words[0].startswith("~")
        names = set()
        for w in words:
            names |= expand(w.lstrip("~"))
        if allowed is None:
            assert not deny, "the unit's first SystemCallFilter= is expected to be an allow list"
            allowed = set(names)
        elif deny:
            allowed -= names
        else:
            allowed |= names
    return allowed


def seccomp_preexec(allowed):
    import seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    for name in sorted(allowed):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (ValueError, RuntimeError, OSError):
            pass   # not a system call of this architecture (chown32 on x86_64)
    return f.load


def a_group():
    for name in ("nogroup", "daemon", "users"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            pass
    raise unittest.SkipTest("no group to use")


class UnitFilter(unittest.TestCase):
    def setUp(self):
        if os.environ.get("OUTBOX_SANITIZER"):
            # ASan/TSan runtimes make system calls a production build never
            # does (TSan re-executes itself with personality()); the filter is
            # the Release binary's, checked in the Release build of CI.
            self.skipTest("under a sanitizer runtime (OUTBOX_SANITIZER)")
        if shutil.which("systemd-analyze") is None:
            self.fail("systemd-analyze is needed (Debian package systemd; tools/install-deps.sh installs it)")
        with open(UNIT) as f:
            self.lines = unit_filter_lines(f.read())
        self.assertTrue(self.lines, "no SystemCallFilter= in the unit")
        self.group = a_group()
        self.md = tempfile.mkdtemp(prefix="outbox-filter-md-")
        self.addCleanup(shutil.rmtree, self.md, True)

    def daemon(self):
        d = harness.Daemon(name="outbox-filter", extra_toml=(
            '[[upstream]]\nname = "outgoing"\ndeliver = "maildir:%s"\n'
            '[[route]]\nsender = "*"\nupstreams = ["outgoing"]\n' % os.path.join(self.md, "out")))
        # The harness's Unix listener, with the group the report used.
        d.config_text_base = d.config_text
        d.config_text = lambda: d.config_text_base().replace('mode = "0666"\n', 'mode = "0660"\ngroup = "%s"\n'
                                                              % self.group, 1)
        d.write_config()
        self.addCleanup(d.cleanup)
        return d

    def test_the_documented_configuration_runs_under_the_units_filter(self):
        allowed = allowed_syscalls(self.lines)
        d = self.daemon()
        p = subprocess.run([harness.binpath("outboxd"), "--check", "--config", d.config_path],
                           preexec_fn=seccomp_preexec(allowed), capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)   # ExecStartPre=
        d.start(preexec=seccomp_preexec(allowed))
        st = os.stat(d.socket_path)
        self.assertEqual(st.st_gid, grp.getgrnam(self.group).gr_gid)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        qid, _ = d.submit()
        d.wait_event("delivered", id=qid, timeout=15)
        self.assertEqual(len(os.listdir(os.path.join(self.md, "out", "new"))), 1)
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(timeout=15), 0, d.log_tail())

    def test_control_without_the_chown_line_the_filter_kills_it(self):
        without = [w for w in self.lines if w != ["@chown"]]
        self.assertNotEqual(without, self.lines, "the unit gives @chown back explicitly")
        allowed = allowed_syscalls(without)
        d = self.daemon()
        d.start(wait=False, preexec=seccomp_preexec(allowed))
        rc = d.proc.wait(timeout=15)
        self.assertEqual(rc, -signal.SIGSYS, d.log_tail())


if __name__ == "__main__":
    unittest.main()
