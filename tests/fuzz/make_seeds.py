#!/usr/bin/python3
"""Writes the checked-in seed corpora of the fuzz targets (tests/fuzz/corpus/).
Rerun after changing the input format of a target; libFuzzer minimises
nothing here, the seeds are meant to be read by people too."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

# --- fuzz_server_session: 4 config bytes, then steps --------------------------------
TLS = {"none": 0, "starttls": 1, "implicit": 2}
AUTH = {"none": 0, "optional": 1, "required": 2}
COMMIT_OK, COMMIT_FAIL, AUTH_ANSWER, TLS_DONE, TIMEOUT, SLOW, SHUTDOWN = 0x15, 0x05, 0x06, 0x07, 0x1F, 0x27, 0xAF


def config(tls="none", auth="none", trusted=True, unix=False, policy=False, local_users=False,
           max_errors=10, auth_failures=3, size16=64, rcpts=5, pregreet=False, www_data=False):
    b0 = TLS[tls] | (AUTH[auth] << 2) | (0x10 if trusted else 0) | (0x20 if unix else 0) | \
        (0x40 if policy else 0) | (0x80 if local_users else 0)
    b1 = (max_errors & 15) | ((auth_failures & 3) << 4)
    b3 = (rcpts & 7) | (0x38 if pregreet else 0) | (0x40 if www_data else 0)
    return bytes([b0, b1, size16, b3])


def feed(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    out = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        out += bytes([0, len(part)]) + part
    return out


def session(cfg, *steps):
    out = cfg
    for s in steps:
        out += bytes([s]) if isinstance(s, int) else feed(s)
    return out


PLAIN_ALICE = "AGFsaWNlAHNlY3JldA=="       # \0alice\0secret
MSG = "Subject: seed\r\nFrom: <alice@example.org>\r\n\r\nhello\r\n..dot\r\n.\r\n"
SMUGGLE = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\n", "\n.\r", "\r.\r\n", "\r\n.\r", "\r\n\0.\r\n",
           "\r\n.\0\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n"]

SESSION_SEEDS = {
    "happy_path": session(config(), "EHLO client.test\r\n", "MAIL FROM:<alice@example.org>\r\n",
                          "RCPT TO:<bob@example.net>\r\n", "DATA\r\n", MSG, COMMIT_OK, "QUIT\r\n"),
    "pipelined_two_messages": session(config(), "EHLO c\r\nMAIL FROM:<a@example.org> SIZE=50 BODY=8BITMIME\r\n"
                                      "RCPT TO:<b@example.net>\r\nRCPT TO:<root>\r\nDATA\r\n" + MSG +
                                      "MAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n" + MSG + "QUIT\r\n",
                                      COMMIT_OK, COMMIT_FAIL),
    "helo_vrfy_help_noop_rset": session(config(), "HELO old.test\r\nVRFY root\r\nHELP\r\nNOOP x\r\nRSET\r\n"
                                        "EXPN list\r\n\r\nFOO\r\nQUIT\r\n"),
    "starttls_injection": session(config(tls="starttls", auth="optional", trusted=False),
                                  "EHLO c\r\nSTARTTLS\r\nNOOP\r\nMAIL FROM:<i@attacker.test>\r\n", "RSET\r\n",
                                  TLS_DONE, "EHLO c\r\nAUTH PLAIN " + PLAIN_ALICE + "\r\n", AUTH_ANSWER,
                                  "MAIL FROM:<alice@example.org>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n" + MSG,
                                  COMMIT_OK),
    "auth_plain_implicit_policy": session(config(tls="implicit", auth="required", trusted=False, policy=True),
                                          "EHLO c\r\nMAIL FROM:<a@example.org>\r\nAUTH PLAIN " + PLAIN_ALICE +
                                          "\r\n", AUTH_ANSWER, "MAIL FROM:<ceo@example.net>\r\n"
                                          "MAIL FROM:<alice@EXAMPLE.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                                          + MSG, COMMIT_OK, "AUTH PLAIN " + PLAIN_ALICE + "\r\nQUIT\r\n"),
    "auth_login_cancel_bad": session(config(tls="implicit", auth="optional", trusted=False),
                                     "EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
                                     AUTH_ANSWER, "AUTH PLAIN\r\n!!!\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\n"),
    "auth_brute_force": session(config(tls="implicit", auth="required", trusted=False, auth_failures=3),
                                "EHLO c\r\n", *sum([["AUTH PLAIN AGFsaWNlAGd1ZXNz\r\n", AUTH_ANSWER | 0x20]
                                                    for _ in range(4)], [])),
    "auth_pending_pipelined": session(config(unix=True, auth="optional"),
                                      "EHLO c\r\nAUTH PLAIN " + PLAIN_ALICE + "\r\nMAIL FROM:<a@example.org>\r\n"
                                      "RCPT TO:<b@example.net>\r\n", TIMEOUT, AUTH_ANSWER | 0x10),
    "auth_long_response": session(config(tls="implicit", auth="optional"),
                                  "EHLO c\r\nAUTH LOGIN\r\n" + "A" * 12286 + "\r\n" + "B" * 12300 + "\r\nNOOP\r\n"),
    "bare_lf_in_command": session(config(), "EHLO c\r\nMAIL FROM:<a@example.org>\nRCPT TO:<c@d.test>\r\n"
                                  "MAIL FROM:<a@b\r.test>\r\nEHLO x\rX-Injected: 1\r\nQUIT\r\n"),
    "long_line": session(config(), "EHLO c\r\nMAIL FROM:<" + "a" * 2000 + "@client.test>\r\nNOOP\r\n"),
    "size_limits": session(config(size16=4), "EHLO c\r\nMAIL FROM:<a@example.org> SIZE=99999\r\n"
                           "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + "x" * 200 +
                           "\r\n.\r\nQUIT\r\n"),
    "recipient_flood": session(config(rcpts=3), "EHLO c\r\nMAIL FROM:<a@example.org>\r\n" +
                               "".join("RCPT TO:<r%d@example.net>\r\n" % i for i in range(12)) + "RCPT TO:<r1@EXAMPLE.net>\r\nDATA\r\n"
                               + MSG, COMMIT_OK),
    "utf8_addresses": session(config(), "EHLO c\r\nMAIL FROM:<ü@exämple.test> SMTPUTF8\r\nRCPT TO:<δ@παράδειγμα.test>\r\n"
                              "RCPT TO:<bad\xc3\x28@x.test>\r\nDATA\r\n" + MSG, COMMIT_OK,
                              "MAIL FROM:<ü@exämple.test>\r\n"),
    "relay_probes": session(config(trusted=False, max_errors=0),
                            "EHLO c\r\nMAIL FROM:<user%outside.test@localhost>\r\nRCPT TO:<@a,@b:u@c.test>\r\n"
                            "MAIL FROM:<\"u@other\"@localhost>\r\nRCPT TO:<u@[1.2.3.4]>\r\nDATA\r\n"),
    "http_request": session(config(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "pregreet_untrusted": session(config(trusted=False, pregreet=True), "EHLO early\r\n"),
    "local_user_policy": session(config(unix=True, policy=True, local_users=True, www_data=True),
                                 "EHLO c\r\nMAIL FROM:<noreply@example.org>\r\nRSET\r\nMAIL FROM:<ceo@example.org>\r\n"),
    "timeout_mid_data": session(config(), "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                                "DATA\r\nSubject: half\r\n", TIMEOUT),
    "slow_data": session(config(), "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx", SLOW),
    "shutdown_while_committing": session(config(), "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                                         "DATA\r\n" + MSG + "NOOP\r\n", SHUTDOWN, COMMIT_OK),
}
for i in (0, 1, 2, 3, 8, 10):   # the decoder target has them all
    seq = SMUGGLE[i]
    SESSION_SEEDS["smuggle_%02d" % i] = session(
        config(), "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
        "Subject: s\r\n\r\nTesting" + seq + "MAIL FROM:<smuggler@attacker.test>\r\nRCPT TO:<victim@example.net>\r\n"
        "DATA\r\nX-Test-Id: SMUGGLED\r\n\r\nsmuggled\r\n.\r\n", COMMIT_OK, "QUIT\r\n")

# --- fuzz_data_decoder: 1 seed byte, then the DATA stream ----------------------------------
DECODER_SEEDS = {
    "simple": b"\x01Subject: x\r\n\r\nbody\r\n.\r\n",
    "empty": b"\x02.\r\n",
    "stuffed": b"\x03..leading dot\r\n...two\r\n.x\r\n.\r\nafter",
    "no_end": b"\x04line one\r\nline two\r\n",
    "crlf_split": b"\x05a\r\n\r\n.\r",
    "nul": b"\x06a\0b\r\n.\r\n",
}
for i, seq in enumerate(SMUGGLE):
    DECODER_SEEDS["smuggle_%02d" % i] = bytes([7 + i]) + b"Testing" + seq.encode() + b"MAIL FROM:<s@a.test>\r\n.\r\n"

# --- fuzz_address: raw text --------------------------------------------------------------------
ADDRESS_SEEDS = {
    "plain": b"<a@b.test>",
    "null": b"<>",
    "bare": b"root",
    "no_brackets": b"user@example.test",
    "source_route": b"<@a.test,@b.test:u@c.test>",
    "quoted": b"<\"u@other\"@localhost>",
    "quoted_escape": b"<\"a\\\"b c\"@example.test>",
    "literal4": b"<u@[192.0.2.1]>",
    "literal6": b"<u@[IPv6:2001:db8::1]>",
    "percent": b"<user%other.test@localhost>",
    "bang": b"<other.test!user@localhost>",
    "params": b"<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>",
    "mail_cmd": b"MAIL FROM:<a@b.test> SIZE=10",
    "rcpt_cmd": b"RCPT TO: <postmaster>",
    "utf8": "<ü@exämple.test>".encode(),
    "bad_utf8": b"<bad\xc3\x28@x.test>",
    "long_local": b"<" + b"l" * 64 + b"@example.test>",
    "trailing_dot": b"<a@b.test.>",
    "cr_inside": b"<a\r@b.test>",
    "literal_gt": b"u@[2:>b8]",            # fuzz_address finding: must be refused
}


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("fuzz_server_session", SESSION_SEEDS)
    write("fuzz_data_decoder", DECODER_SEEDS)
    write("fuzz_address", ADDRESS_SEEDS)
    print("seeds:", len(SESSION_SEEDS), len(DECODER_SEEDS), len(ADDRESS_SEEDS))
