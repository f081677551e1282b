#!/usr/bin/python3
"""Provider profiles and their reply tables (SPEC "Provider profiles", issue
10 items 1-2). The test upstream answers with each provider's real reply
texts; outboxd, configured with that provider's profile (host, port and TLS
overridden to reach the test upstream: explicit keys win), takes the
profile's action: nothing bounced that the provider would accept later,
nothing retried that it refuses for good, the action and the provider's
meaning in plain words in the log, `outboxctl show` and `outboxctl
upstreams`."""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream import Upstream, relay_toml, upstream_section  # noqa: E402

SENDER = "app@client.test"
RCPT = "rcpt@example.test"
BODY = "Subject: provider test\r\nFrom: app@client.test\r\nTo: rcpt@example.test\r\n\r\nhello\r\n"


class RelayProviders(unittest.TestCase):
    def start(self, provider, stage, reply, times=1, extra=""):
        up = Upstream("plain").start()
        self.addCleanup(up.stop)
        up.fail(stage, reply, times=times)
        d = harness.Daemon(name="outbox-providers")
        self.addCleanup(d.cleanup)
        d.extra_toml = relay_toml([upstream_section("mail", up.port, provider=provider)],
                                  retry={"lifetime": "1h"}) + "\n" + extra
        d.write_config()
        d.start()
        with d.smtplib() as s:
            s.sendmail(SENDER, [RCPT], BODY)
            qid = s.last_queue_id
        self.assertIsNotNone(qid)
        return d, up, qid

    def upstream_row(self, d):
        rows = d.ctl_json("upstreams", "--json")
        return [r for r in rows if r["name"] == "mail"][0]

    def kept_for_later(self, d, up, qid, action, reason, until_s, words):
        """Deferred (never bounced), the upstream suspended for about
        `until_s` with `reason`, the action and meaning in the log, show and
        upstreams; `outboxctl resume` then delivers it (the provider takes
        it once its condition is over)."""
        ev = d.wait_event("deferred", id=qid)
        self.assertEqual(ev.get("action"), action, ev)
        for w in words:
            self.assertIn(w, ev["reply"] + " " + ev["hint"])
        sus = d.wait_event("upstream_suspended", upstream="mail")
        self.assertEqual(sus["reason"], reason, sus)
        self.assertEqual(sus["action"], action, sus)
        self.assertAlmostEqual(float(sus["until_s"]), until_s, delta=max(2.0, until_s * 0.25))
        time.sleep(1.5)   # with a 1 s retry curve, a retry would have come by now
        self.assertEqual(len(up.mail_froms), 1, "retried although the provider asked to wait")
        m = d.show(qid)
        self.assertEqual(m["state"], "deferred", m)
        self.assertEqual(m["recipients"][0]["state"], "pending")
        for w in words:
            self.assertIn(w, m["last_error"])
        self.assertEqual(m["attempts"], 1, m)
        row = self.upstream_row(d)
        self.assertEqual(row["state"], "suspended", row)
        self.assertEqual(row["reason"], reason, row)
        self.assertIn(words[-1], row["last_reply"])   # the provider's meaning, kept with the suspension
        self.assertEqual(d.events("bounced"), [])
        self.assertEqual(d.events("bounce_queued"), [])
        # The condition is over: the operator resumes, the mail goes.
        d.ctl("resume", "mail")
        up.wait_delivered(1)
        d.wait_event("delivered", id=qid)
        self.assertEqual(d.show(qid)["state"], "sent")
        return m

    def refused_for_good(self, d, up, qid, words):
        """Bounced at the first try (never retried), with the provider's
        meaning and the fix in the log and in show."""
        ev = d.wait_event("bounced", id=qid)
        self.assertEqual(ev.get("action"), "fail", ev)
        for w in words:
            self.assertIn(w, ev["reply"] + " " + ev["hint"])
        d.wait_event("bounce_queued", original=qid)
        m = d.show(qid)
        self.assertEqual(m["state"], "failed", m)
        self.assertEqual(m["attempts"], 1, m)
        for w in words:
            self.assertIn(w, m["last_error"])
        time.sleep(1.5)
        self.assertEqual(len([x for x in up.mail_froms if x == SENDER]), 1, "a permanent refusal was retried")
        self.assertEqual(d.events("deferred", id=qid), [])
        return m

    # --- Gmail ------------------------------------------------------------------------------------
    def test_gmail_daily_limit_holds_the_upstream_for_a_day_never_bounces(self):
        out = os.path.join(tempfile.mkdtemp(prefix="outbox-quota-alert-"), "alerts.jsonl")
        self.addCleanup(shutil.rmtree, os.path.dirname(out), True)
        hook = ('[[alert]]\nname = "quota"\nevents = ["quota_exhausted"]\n'
                'command = ["/bin/sh", "-c", "cat >> %s; echo >> %s"]\n' % (out, out))
        d, up, qid = self.start("gmail", "MAIL", "550 5.4.5 Daily user sending limit exceeded. For more "
                                "information on Gmail sending limits go to https://support.google.com/a/answer/166852",
                                extra=hook)
        # The quota_exhausted alert, through its hook, not through the queue.
        ev = d.wait_event("alert_sent", alert="quota", kind="quota_exhausted")
        self.assertEqual(ev["subject"], "mail")
        (alert,) = [json.loads(x) for x in open(out).read().splitlines() if x.strip()]
        self.assertEqual((alert["event"], alert["subject"]), ("quota_exhausted", "mail"))
        self.assertIn("550 5.4.5", alert["summary"])
        # Before the resume in kept_for_later: the human listing says why in plain words.
        ev = d.wait_event("upstream_suspended", upstream="mail")
        self.assertEqual(ev["reason"], "quota_reached")
        self.assertIn("the account's quota at the provider is used up", d.ctl("upstreams").stdout.decode())
        self.kept_for_later(d, up, qid, "hold", "quota_reached", 86400,
                            ["550 5.4.5", "gmail: the account's daily sending limit is reached", "not bounced"])

    # --- Amazon SES -----------------------------------------------------------------------------
    def test_ses_throttling_after_data_is_kept_and_retried(self):
        d, up, qid = self.start("ses:eu-west-1", "DATA", "454 Throttling failure: Maximum sending rate exceeded.")
        self.kept_for_later(d, up, qid, "pause", "throttled", 60,
                            ["454 Throttling failure", "ses: the SES account's per-second sending rate"])

    # --- Microsoft 365 --------------------------------------------------------------------------
    def test_microsoft_concurrency_lowers_the_connections(self):
        d, up, qid = self.start("microsoft365", "MAIL",
                                "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
                                "for more information.")
        low = d.wait_event("upstream_concurrency_lowered", upstream="mail")
        self.assertIn(low["max_connections"], ("1", "2"), low)
        self.kept_for_later(d, up, qid, "lower-concurrency", "throttled", 60,
                            ["432 4.3.2", "one connection fewer"])

    def test_microsoft_continuous_error_throttling_suspends_and_warns(self):
        d, up, qid = self.start("microsoft365", "MAIL",
                                "550 5.2.254 Sender throttled due to continuous invalid recipients errors")
        self.kept_for_later(d, up, qid, "suspend", "provider_stop", 3600,
                            ["550 5.2.254", "throttles this sender because of continuous errors", "suspends"])
        sus = d.events("upstream_suspended", upstream="mail")[0]
        self.assertIn("outboxctl resume mail", sus["hint"])

    # --- 163 --------------------------------------------------------------------------------------
    def test_163_sfq_pauses_fifteen_minutes(self):
        d, up, qid = self.start("163", "MAIL", "451 MI:SFQ 163 smtp14,EsCowAD3Xq1kZ2Vm9A,0 1733400000")
        self.kept_for_later(d, up, qid, "pause", "throttled", 900, ["451 MI:SFQ", "within 15 minutes"])

    def test_163_icc_at_the_greeting_lowers_the_connections(self):
        d, up, qid = self.start("163", "GREETING",
                                "421 HL:ICC 163 smtp14,EsCowAD3Xq1kZ2Vm9A,0 1733400000, please see "
                                "http://mail.163.com/help/")
        d.wait_event("upstream_concurrency_lowered", upstream="mail")
        sus = d.wait_event("upstream_suspended", upstream="mail")
        self.assertEqual(sus["action"], "lower-concurrency")
        self.assertEqual(up.mail_froms, [])
        m = d.show(qid)
        self.assertEqual(m["state"], "deferred")
        self.assertIn("too many concurrent connections", m["last_error"])
        self.assertEqual(d.events("bounced"), [])

    def test_163_spam_is_refused_for_good(self):
        d, up, qid = self.start("163", "DATA", "554 DT:SPM 163 smtp10,DsCowADHfYtkZ2VmeW,0 1733400000, please see "
                                "http://mail.163.com/help/help_spam_16.htm?ip=203.0.113.7")
        self.refused_for_good(d, up, qid, ["554 DT:SPM", "163 classified the message as spam"])

    def test_163_temporary_spam_suspicion_retries_this_message_later(self):
        d, up, qid = self.start("163", "DATA", "451 DT:SPM 163 smtp10,DsCowADHfYtkZ2VmeW,0 1733400000")
        ev = d.wait_event("deferred", id=qid)
        self.assertEqual(ev["action"], "retry")
        m = d.show(qid)
        self.assertEqual(m["attempts"], 1, "a message-level retry is counted")
        nxt = datetime.datetime.fromisoformat(m["next_attempt"].replace("Z", "+00:00")).timestamp()
        self.assertGreaterEqual(nxt - time.time(), 100, m)
        self.assertEqual(d.events("upstream_suspended"), [], "the upstream is fine")
        self.assertEqual(self.upstream_row(d)["state"], "ok")
        time.sleep(1.5)
        self.assertEqual(len(up.mail_froms), 1, "retried before the 2 minutes the provider asks for")

    def test_163_sender_mismatch_fails_with_the_fix(self):
        d, up, qid = self.start("163", "MAIL", "553 Mail from must equal authorized user")
        self.refused_for_good(d, up, qid, ["553 Mail from must equal authorized user", "envelope_from"])

    # --- QQ ------------------------------------------------------------------------------------------
    def test_qq_sender_mismatch_fails_with_the_fix(self):
        d, up, qid = self.start("qq", "MAIL", "501 mail from address must be same as authorization user")
        self.refused_for_good(d, up, qid, ["501 mail from address must be same as authorization user",
                                           "from_header"])

    # --- outboxctl providers ------------------------------------------------------------------------
    def test_outboxctl_providers_prints_the_table_with_sources(self):
        ctl = os.path.join(harness.BIN, "outboxctl")
        out = subprocess.run([ctl, "providers"], capture_output=True, check=True).stdout.decode()
        self.assertTrue(out.startswith("gmail: "), out[:200])
        for name in ("google-workspace:", "microsoft365:", "ses:REGION:", "qq:", "163:", "126:"):
            self.assertIn("\n" + name, out)
        self.assertIn("550 5.4.5 -> hold 24 hours", out)
        self.assertIn("source: learn.microsoft.com", out)
        j = json.loads(subprocess.run([ctl, "providers", "ses:us-east-1", "--json"], capture_output=True,
                                      check=True).stdout)
        self.assertEqual(j[0]["host"], "email-smtp.us-east-1.amazonaws.com")
        bad = subprocess.run([ctl, "providers", "yahoo"], capture_output=True)
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"unknown provider \"yahoo\"", bad.stderr)


if __name__ == "__main__":
    unittest.main()
