// FromRewriter: from_header = "rewrite", streamed (RFC 5322 §3.6.2): the same
// output for every split of the input, nothing after the separator touched,
// memory bounded by the header block.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/from_rewrite.h"

using outbox::protocol::field_named;
using outbox::protocol::FromRewriter;
using outbox::protocol::rewrite_from_header;

namespace {

const std::string kAccount = "me@163.com";

std::string run(const std::vector<std::string>& pieces, std::size_t max_header = FromRewriter::kMaxHeader) {
  FromRewriter r(kAccount, max_header);
  std::string out;
  for (const auto& p : pieces) r.feed(p, out);
  r.finish(out);
  return out;
}

struct Case {
  const char* name;
  std::string in;
  std::string out;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"From moves to Reply-To",
       "Received: x\r\nFrom: Ann <ann@x.org>\r\nTo: b@y\r\n\r\nFrom: body line\r\n",
       "Received: x\r\nFrom: me@163.com\r\nReply-To: Ann <ann@x.org>\r\nTo: b@y\r\n\r\nFrom: body line\r\n"},
      {"folded From moves whole",
       "From: Ann\r\n <ann@x.org>,\r\n\tBob <b@x.org>\r\nSubject: s\r\n\r\nbody\r\n",
       "From: me@163.com\r\nReply-To: Ann\r\n <ann@x.org>,\r\n\tBob <b@x.org>\r\nSubject: s\r\n\r\nbody\r\n"},
      {"an existing Reply-To is kept, From replaced",
       "reply-to: r@x\r\nFROM : a@x\r\n\r\nb\r\n",
       "reply-to: r@x\r\nFrom: me@163.com\r\n\r\nb\r\n"},
      {"no From: one is put first",
       "To: b@y\r\n\r\nFrom: not a header\r\n",
       "From: me@163.com\r\nTo: b@y\r\n\r\nFrom: not a header\r\n"},
      {"only the first From",
       "From: a@x\r\nFrom: c@x\r\n\r\n.\r\n",
       "From: me@163.com\r\nReply-To: a@x\r\nFrom: c@x\r\n\r\n.\r\n"},
      {"no separator: all header",
       "Subject: s\r\nFrom: a@x\r\n",
       "Subject: s\r\nFrom: me@163.com\r\nReply-To: a@x\r\n"},
      {"From-like names are not From",
       "From-Extra: a\r\nFromage: b\r\n\r\nx",
       "From: me@163.com\r\nFrom-Extra: a\r\nFromage: b\r\n\r\nx"},
      {"body bytes after the separator untouched, 8-bit and CRLF CRLF",
       "From: a@x\r\n\r\n\xff\r\n\r\nFrom: z\r\n\r\n",
       "From: me@163.com\r\nReply-To: a@x\r\n\r\n\xff\r\n\r\nFrom: z\r\n\r\n"},
      {"empty message", "", "From: me@163.com\r\n"},
  };
  return c;
}

}  // namespace

TEST_CASE("field_named: case-insensitive, WSP before the colon (RFC 5322 §4.5.3)") {
  CHECK(field_named("From: a", "from"));
  CHECK(field_named("fROM \t: a", "from"));
  CHECK_FALSE(field_named("From-X: a", "from"));
  CHECK_FALSE(field_named("From", "from"));
  CHECK_FALSE(field_named(" From: a", "from"));
}

TEST_CASE("the rewrite, whole and at every split point") {
  for (const auto& c : cases()) {
    CAPTURE(c.name);
    CHECK(run({c.in}) == c.out);
    for (std::size_t i = 0; i <= c.in.size(); ++i) {
      CAPTURE(i);
      CHECK(run({c.in.substr(0, i), c.in.substr(i)}) == c.out);
      for (std::size_t j = i; j <= c.in.size(); ++j)
        CHECK(run({c.in.substr(0, i), c.in.substr(i, j - i), c.in.substr(j)}) == c.out);
    }
  }
}

TEST_CASE("a message's header block is rewritten like the block alone") {
  for (const auto& c : cases()) {
    auto sep = c.in.find("\r\n\r\n");
    if (sep == std::string::npos) continue;
    CAPTURE(c.name);
    CHECK(rewrite_from_header(c.in.substr(0, sep + 2), kAccount) + c.in.substr(sep + 2) == c.out);
  }
}

TEST_CASE("output is released as soon as the separator is seen, then passes through") {
  FromRewriter r(kAccount);
  std::string out;
  r.feed("From: a@x\r\nSubject: s\r\n", out);
  CHECK(out.empty());   // still in the header block
  CHECK_FALSE(r.passing_through());
  r.feed("\r", out);
  CHECK(out.empty());
  r.feed("\nbody", out);
  CHECK(out == "From: me@163.com\r\nReply-To: a@x\r\nSubject: s\r\n\r\nbody");
  CHECK(r.passing_through());
  out.clear();
  r.feed("From: b@x\r\n\r\n", out);
  CHECK(out == "From: b@x\r\n\r\n");
}

TEST_CASE("a header block over the bound passes through unchanged") {
  std::string head = "From: a@x\r\n";
  while (head.size() < 300) head += "X-Pad: 0123456789012345678901234567890\r\n";
  std::string msg = head + "\r\nbody\r\n";
  for (std::size_t step : {1u, 7u, 64u, 1000u}) {
    CAPTURE(step);
    FromRewriter r(kAccount, 256);
    std::string out;
    for (std::size_t i = 0; i < msg.size(); i += step) r.feed(msg.substr(i, step), out);
    r.finish(out);
    CHECK(out == msg);
    CHECK(r.gave_up());
  }
  // The bound is on the header block with its last CRLF, whatever the split.
  const std::size_t block = head.size();
  for (std::size_t bound : {block - 1, block, block + 1, block + 2}) {
    CAPTURE(bound);
    const bool rewritten = bound >= block;
    for (std::size_t i = 0; i <= msg.size(); ++i) {
      CAPTURE(i);
      CHECK((run({msg.substr(0, i), msg.substr(i)}, bound) != msg) == rewritten);
    }
  }
  // No separator at all: the same bound on the whole text.
  CHECK(run({head}, block) != head);
  CHECK(run({head}, block - 1) == head);
}
