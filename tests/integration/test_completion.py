#!/usr/bin/python3
"""Shell completion for outboxctl (issue 12 item 8): the bash script run by a
real bash against the built outboxctl and a running outboxd (subcommands and
options read from --help, queue ids, upstream names, state values), and the
zsh script parsed by a real zsh."""

import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import closed_port, relay_toml, upstream_section  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASH = os.path.join(ROOT, "tools", "completion", "outboxctl.bash")
ZSH = os.path.join(ROOT, "tools", "completion", "_outboxctl")


def complete(words):
    """COMPREPLY for a command line whose last word is being completed."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _outboxctl; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    env = dict(os.environ, PATH=os.path.dirname(harness.binpath("outboxctl")) + ":" + os.environ["PATH"])
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "complete", BASH] + list(words),
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return sorted(x for x in p.stdout.split("\n") if x)


class Completion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(name="outbox-completion")
        cls.d.extra_toml = relay_toml([upstream_section("gmail", closed_port()), upstream_section("relay163", closed_port())],
                                      routes=(("nobody@nowhere.test", None),), bounces=False)
        cls.d.write_config()
        cls.d.start()
        cls.qid, _ = cls.d.submit()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_subcommands_and_options_come_from_the_program(self):
        subs = complete(["outboxctl", ""])
        for s in ("queue", "show", "hold", "route", "test-upstream", "upstreams", "--config"):
            self.assertIn(s, subs)
        self.assertEqual(complete(["outboxctl", "te"]), ["test-upstream"])
        self.assertEqual(complete(["outboxctl", "--config", self.d.config_path, "ro"]), ["route"])
        opts = complete(["outboxctl", "hold", "--s"])
        self.assertIn("--sender", opts)
        self.assertIn("--state", opts)
        self.assertEqual(complete(["outboxctl", "queue", "--state", "de"]), ["deferred"])

    def test_ids_and_upstream_names_from_the_running_queue(self):
        cfg = ["--config", self.d.config_path]
        self.assertEqual(complete(["outboxctl"] + cfg + ["show", ""]), [self.qid])
        self.assertEqual(complete(["outboxctl"] + cfg + ["hold", self.qid[:5]]), [self.qid])
        self.assertEqual(complete(["outboxctl"] + cfg + ["resume", ""]), ["gmail", "relay163"])
        self.assertEqual(complete(["outboxctl"] + cfg + ["test-upstream", "re"]), ["relay163"])
        self.assertEqual(complete(["outboxctl"] + cfg + ["retry", "--upstream", "g"]), ["gmail"])

    def test_zsh_script_parses(self):
        zsh = shutil.which("zsh")
        self.assertIsNotNone(zsh, "zsh is installed by tools/install-deps.sh")
        p = subprocess.run([zsh, "-n", ZSH], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(ZSH) as f:
            self.assertEqual(f.readline().strip(), "#compdef outboxctl")


if __name__ == "__main__":
    unittest.main()
