#!/usr/bin/python3
"""The fault tests of test_relay_faults.py again, against an upstream that
offers PIPELINING (RFC 2920): outbox then sends [RSET] MAIL, every RCPT and
DATA in one write, and must still map each reply to its command."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import Upstream  # noqa: E402
import test_relay_faults  # noqa: E402


class PipelinedRelayFaults(test_relay_faults.RelayFaults):
    def setUp(self):
        self.up = Upstream("plain", pipelining=True).start()
        self.addCleanup(self.up.stop)

    def test_upstream_offers_pipelining(self):
        self.relay()
        self.submit(["a@example.test", "b@example.test"])
        self.up.wait_delivered(1)
        self.assertEqual(self.up.ehlos, 1)
        self.assertEqual(self.up.sent_behind_mail, [b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"])
        self.stop_clean()




if __name__ == "__main__":
    unittest.main(verbosity=2)
