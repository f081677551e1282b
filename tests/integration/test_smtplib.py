#!/usr/bin/python3
"""Submission with Python's smtplib, exactly as applications use it: the
250 names the queue id, the stored message is the transmitted bytes preceded
only by the trace headers the daemon adds (RFC 6409 §8), outboxctl lists it,
the log has event=accepted. Over TCP (IPv4, IPv6 when present) and the Unix
socket (uid recorded)."""

import datetime
import email.charset
import email.generator
import email.policy
import email.utils
import os
import re
import sys
import unittest
from email.header import Header
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
QUEUED_AS = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9A-Za-z]{12,20})$")
SUBJECT = "Grüße – テスト"


def plain_message(sender, to, date=True, msgid=True, extra=""):
    lines = ["From: Application <%s>" % sender, "To: %s" % ", ".join(to), "Subject: smtplib plain"]
    if date:
        lines.append("Date: " + email.utils.formatdate(localtime=False))
    if msgid:
        lines.append("Message-ID: " + email.utils.make_msgid(domain="client.test"))
    lines += ["", "Hello from smtplib.", ".a line that starts with a dot", "..two dots", ".", "end"]
    return "\r\n".join(lines) + "\r\n" + extra


def legacy_mime(sender, to):
    """email.mime with Header() subject, 8-bit UTF-8 text, a binary attachment;
    no Date, no Message-ID (the daemon must add both)."""
    pol = email.policy.compat32.clone(linesep="\r\n")
    msg = MIMEMultipart(policy=pol)
    msg["From"] = "App <%s>" % sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = Header(SUBJECT, "utf-8")
    cs = email.charset.Charset("utf-8")
    cs.body_encoding = None  # 8bit, not base64
    msg.attach(MIMEText("Grüße aus Köln\n.leading dot\n..two\nテスト\n", "plain", cs, policy=pol))
    att = MIMEApplication(bytes(range(256)) * 40, Name="data.bin", policy=pol)
    att["Content-Disposition"] = 'attachment; filename="data.bin"'
    msg.attach(att)
    return msg


def modern_mime(sender, to, date=True, msgid=True):
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "App <%s>" % sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = SUBJECT
    if date:
        msg["Date"] = email.utils.formatdate()
    if msgid:
        msg["Message-ID"] = email.utils.make_msgid(domain="client.test")
    msg.set_content("Grüße\n.dot\nテスト\n", charset="utf-8", cte="8bit")
    msg.add_attachment(b"\x00\x01\xff binary " * 500, maintype="application", subtype="octet-stream",
                       filename="r.bin")
    return msg


class SmtplibSubmission(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ipv6 = harness.have_ipv6_loopback()
        cls.d = harness.Daemon(ipv6=cls.ipv6)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        cls.d.cleanup()
        assert rc == 0, "outboxd exited %r on SIGTERM" % rc

    # helpers --------------------------------------------------------------------------
    def check_queued(self, qid, sender, rcpts, transmitted, added, client="127.0.0.1"):
        """The message qid holds exactly `transmitted` after the `added` headers,
        is listed as queued with the recipients, and was logged."""
        d = self.d
        stored = d.body(qid)
        fields = harness.assert_stored(self, stored, transmitted, added)
        self.assertIn(b"outbox.test", fields["received"], "Received: lacks the host name")
        if "date" in fields:
            value = fields["date"].split(b":", 1)[1].decode().strip()
            when = email.utils.parsedate_to_datetime(value)
            self.assertIsNotNone(when.tzinfo, value)
            now = datetime.datetime.now(datetime.timezone.utc)
            self.assertLess(abs((now - when).total_seconds()), 300, value)
        if "message-id" in fields:
            value = fields["message-id"].split(b":", 1)[1].decode().strip()
            self.assertRegex(value, r"^<[^<>@\s]+@outbox\.test>$")

        entries = [m for m in d.queue() if m["id"] == qid]
        self.assertEqual(len(entries), 1, "queue --json lists %s %d times" % (qid, len(entries)))
        m = entries[0]
        self.assertEqual(m["state"], "queued")
        self.assertEqual(m["sender"], sender)
        self.assertEqual([r["address"] for r in m["recipients"]], list(rcpts))
        for r in m["recipients"]:
            self.assertEqual(r["state"], "pending")
        self.assertEqual(m["size"], len(stored))
        self.assertRegex(m["created"], RFC3339_UTC)
        self.assertEqual(m["attempts"], 0)

        ev = d.wait_event("accepted", id=qid)
        self.assertEqual(ev["from"], sender)
        self.assertEqual(int(ev["nrcpt"]), len(rcpts))
        self.assertEqual(int(ev["size"]), len(stored))
        self.assertEqual(ev["client"], client)
        return ev

    # tests ----------------------------------------------------------------------------
    def test_sendmail_reply_names_queue_id(self):
        rcpts = ["alice@example.test", "bob@example.net"]
        msg = plain_message("app@client.test", rcpts)
        with self.d.smtplib() as s:
            refused = s.sendmail("app@client.test", rcpts, msg)
            self.assertEqual(refused, {})
            code, text = s.last_reply
            self.assertEqual(code, 250)
            m = QUEUED_AS.match(text)
            self.assertIsNotNone(m, "reply to the final dot: %r" % text)
            qid = m.group(1).decode()
            self.assertEqual(s.last_data, msg.encode())
        self.check_queued(qid, "app@client.test", rcpts, msg.encode(), ["received"])

    def test_low_level_mail_rcpt_data(self):
        msg = plain_message("lowlevel@client.test", ["carol@example.test"]).encode()
        with self.d.smtplib() as s:
            code, _ = s.ehlo()
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8"):
                self.assertTrue(s.has_extn(ext), "EHLO lacks %s: %r" % (ext, s.esmtp_features))
            self.assertEqual(s.mail("lowlevel@client.test")[0], 250)
            self.assertEqual(s.rcpt("carol@example.test")[0], 250)
            code, text = s.data(msg)
            self.assertEqual(code, 250)
            qid = QUEUED_AS.match(text).group(1).decode()
        self.check_queued(qid, "lowlevel@client.test", ["carol@example.test"], msg, ["received"])

    def test_two_messages_in_one_session_get_distinct_sorted_ids(self):
        ids = []
        with self.d.smtplib() as s:
            for i in range(3):
                s.sendmail("app@client.test", ["dave@example.test"], plain_message("app@client.test", ["dave@example.test"]))
                ids.append(s.last_queue_id)
        self.assertEqual(len(set(ids)), 3, ids)
        self.assertEqual(ids, sorted(ids), "ids must sort by time")
        listed = {m["id"] for m in self.d.queue()}
        self.assertTrue(set(ids) <= listed)

    def test_send_message_legacy_mime_gets_date_and_message_id(self):
        rcpts = ["erin@example.test", "frank@example.test"]
        msg = legacy_mime("mime@client.test", rcpts)
        with self.d.smtplib() as s:
            refused = s.send_message(msg, mail_options=["BODY=8BITMIME"])
            self.assertEqual(refused, {})
            self.assertEqual(s.last_reply[0], 250)
            qid = s.last_queue_id
            sent = s.last_data
        self.assertIn(SUBJECT.encode("utf-8"), _decoded_subject(sent))
        self.check_queued(qid, "mime@client.test", rcpts, sent, ["received", "date", "message-id"])

    def test_send_message_modern_mime_keeps_its_date_and_message_id(self):
        rcpts = ["grace@example.test"]
        msg = modern_mime("modern@client.test", rcpts)
        with self.d.smtplib() as s:
            s.send_message(msg, mail_options=["BODY=8BITMIME"])
            qid = s.last_queue_id
            sent = s.last_data
        stored = self.d.body(qid)
        self.assertEqual(stored.count(b"\r\nMessage-ID:") + stored.startswith(b"Message-ID:"), 1)
        self.check_queued(qid, "modern@client.test", rcpts, sent, ["received"])

    def test_only_the_missing_header_is_added(self):
        with self.d.smtplib() as s:
            s.send_message(modern_mime("nomsgid@client.test", ["h@example.test"], date=True, msgid=False))
            qid1, sent1 = s.last_queue_id, s.last_data
            s.send_message(modern_mime("nodate@client.test", ["i@example.test"], date=False, msgid=True))
            qid2, sent2 = s.last_queue_id, s.last_data
        self.check_queued(qid1, "nomsgid@client.test", ["h@example.test"], sent1, ["received", "message-id"])
        self.check_queued(qid2, "nodate@client.test", ["i@example.test"], sent2, ["received", "date"])

    def test_bcc_is_not_transmitted_by_send_message_and_envelope_has_it(self):
        msg = modern_mime("bcc@client.test", ["j@example.test"])
        msg["Bcc"] = "hidden@example.test"
        with self.d.smtplib() as s:
            s.send_message(msg)
            qid, sent = s.last_queue_id, s.last_data
        self.assertNotIn(b"hidden@", sent)
        self.check_queued(qid, "bcc@client.test", ["j@example.test", "hidden@example.test"], sent, ["received"])

    def test_smtputf8_addresses(self):
        msg = modern_mime("app@client.test", ["用户@example.test"])
        with self.d.smtplib() as s:
            s.send_message(msg, from_addr="発信@client.test", to_addrs=["用户@example.test"])
            self.assertEqual(s.last_reply[0], 250, s.last_reply)
            qid, sent = s.last_queue_id, s.last_data
        self.check_queued(qid, "発信@client.test", ["用户@example.test"], sent, ["received"])

    def test_null_sender(self):
        msg = plain_message("mailer-daemon@client.test", ["k@example.test"])
        with self.d.smtplib() as s:
            s.sendmail("<>", ["k@example.test"], msg)
            qid = s.last_queue_id
        self.assertIsNotNone(qid)
        m = [x for x in self.d.queue() if x["id"] == qid][0]
        self.assertIn(m["sender"], ("", "<>"), "null sender in queue --json")
        self.assertEqual(self.d.wait_event("accepted", id=qid)["from"], "<>")

    def test_unix_socket_records_uid(self):
        rcpts = ["local@example.test"]
        msg = plain_message("cron@client.test", rcpts)
        with harness.RecordingSMTPUnix(self.d.socket_path, local_hostname="client.test", timeout=30) as s:
            s.sendmail("cron@client.test", rcpts, msg)
            qid = s.last_queue_id
            self.assertIsNotNone(qid, s.last_reply)
        ev = self.check_queued(qid, "cron@client.test", rcpts, msg.encode(), ["received"], client="unix")
        self.assertEqual(ev.get("uid"), str(os.getuid()), "accepted log line lacks uid=: %s" % ev["_raw"])
        shown = self.d.show(qid)
        self.assertEqual(shown["id"], qid)
        if "uid" in shown:
            self.assertEqual(shown["uid"], os.getuid())

    def test_ipv6_loopback(self):
        if not self.ipv6:
            self.skipTest("no ::1 on this machine")
        rcpts = ["six@example.test"]
        msg = plain_message("v6@client.test", rcpts)
        with harness.RecordingSMTP("::1", self.d.port6, local_hostname="client.test", timeout=30) as s:
            s.sendmail("v6@client.test", rcpts, msg)
            qid = s.last_queue_id
        self.check_queued(qid, "v6@client.test", rcpts, msg.encode(), ["received"], client="::1")

    def test_large_message(self):
        # 3 MiB of 76-column lines: crosses many read buffers and store chunks.
        line = b"0123456789" * 7 + b"abcdef\r\n"
        body = b"".join(b"%06d" % i + line for i in range(3 * 1024 * 1024 // len(line)))
        msg = (b"From: big@client.test\r\nTo: big@example.test\r\nSubject: big\r\n"
               b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <big@client.test>\r\n\r\n" + body)
        with self.d.smtplib() as s:
            s.sendmail("big@client.test", ["big@example.test"], msg)
            qid = s.last_queue_id
        self.check_queued(qid, "big@client.test", ["big@example.test"], msg, ["received"])


def _decoded_subject(raw):
    fields, _ = harness.header_block(raw)
    for name, value in fields:
        if name.lower() == "subject":
            parts = email.header.decode_header(value.split(b":", 1)[1].decode().strip())
            return b"".join(p if isinstance(p, bytes) else p.encode() for p, _ in parts)
    return b""


if __name__ == "__main__":
    unittest.main(verbosity=2)
