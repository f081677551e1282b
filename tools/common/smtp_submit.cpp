#include "tools/common/smtp_submit.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <sysexits.h>

namespace outbox::sendmail {

namespace {


std::string upper_word(std::string_view line) {
  std::string w;
  for (char c : line) {
    if (c == ' ') break;
    w += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return w;
}

std::string angle(const std::string& address) { return "<" + address + ">"; }

}  // namespace

std::string enhanced_code(const Reply& r) { return r.enhanced ? r.enhanced->str() : std::string(); }

void SmtpChannel::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ChannelError(std::string("write: ") + std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void SmtpChannel::send_line(std::string_view line) {
  if (trace_) trace_('>', line);
  std::string l(line);
  l += "\r\n";
  write_all(l);
}

void SmtpChannel::send_raw(std::string_view bytes) { write_all(bytes); }

Reply SmtpChannel::read_reply(int timeout_ms) {
  for (;;) {
    Reply r;
    switch (parser_.next(r)) {
      case protocol::ReplyParser::Result::Reply:
        if (trace_)
          for (std::size_t i = 0; i < r.lines.size(); ++i)
            trace_('<', std::to_string(r.code) + (i + 1 < r.lines.size() ? "-" : " ") + r.lines[i]);
        return r;
      case protocol::ReplyParser::Result::Error:
        throw ChannelError("malformed reply: " + parser_.error());
      case protocol::ReplyParser::Result::NeedMore:
        break;
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) throw ChannelError(std::string("poll: ") + std::strerror(errno));
    if (rc == 0) throw ChannelError("timed out waiting for a reply");
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ChannelError(std::string("read: ") + std::strerror(errno));
    if (n == 0) throw ChannelError("connection closed by outboxd");
    parser_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
  }
}

int exit_code_for(Stage stage, const Reply& reply) {
  int cls = reply.code / 100;
  if (cls == 4) return EX_TEMPFAIL;
  if (cls != 5) return EX_PROTOCOL;
  std::string esc = enhanced_code(reply);
  if (esc.rfind("5.7.", 0) == 0) return EX_NOPERM;
  switch (stage) {
    case Stage::Greeting:
    case Stage::Ehlo: return EX_UNAVAILABLE;
    case Stage::Mail: return reply.code == 552 || esc == "5.3.4" ? EX_DATAERR : EX_NOPERM;
    case Stage::Rcpt: return EX_NOUSER;
    case Stage::Data:
    case Stage::EndOfData: return EX_DATAERR;
  }
  return EX_PROTOCOL;
}

namespace {

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::Greeting: return "the greeting";
    case Stage::Ehlo: return "EHLO";
    case Stage::Mail: return "MAIL FROM";
    case Stage::Rcpt: return "RCPT TO";
    case Stage::Data: return "DATA";
    case Stage::EndOfData: return "the end of data";
  }
  return "?";
}

// One transaction; refusals and errors go into the SubmitResult.
class Transaction {
 public:
  Transaction(SmtpChannel& c, const Submission& s, const Timeouts& t, SubmitResult& r)
      : c_(c), s_(s), t_(t), r_(r) {}

  void run() {
    try {
      if (!expect(Stage::Greeting, 220, "outboxd is not accepting mail now")) return quit();
      c_.send_line("EHLO " + s_.helo);
      Reply ehlo = c_.read_reply(t_.reply_ms);
      if (ehlo.code != 250) {
        fail(Stage::Ehlo, ehlo, "outboxd refused the session");
        return quit();
      }
      for (std::size_t i = 1; i < ehlo.lines.size(); ++i) caps_.insert(upper_word(ehlo.lines[i]));
      // RFC 5321 §4.5.3.1.10: a server may cap recipients per transaction
      // with 452 4.5.3; the rest then go in further transactions.
      std::vector<std::string> todo = s_.recipients;
      while (!todo.empty()) {
        std::vector<std::string> rest;
        if (!mail() || !rcpts(todo, rest)) return quit();
        if (!send_data()) return quit();
        todo.swap(rest);
      }
      quit();
    } catch (const ChannelError& e) {
      lost(e.what());
    }
  }

 private:
  bool send_data() {
    {
      stage_ = Stage::Data;
      c_.send_line("DATA");
      Reply data = c_.read_reply(t_.reply_ms);
      if (data.code != 354) {
        fail(Stage::Data, data, "message refused");
        return false;
      }
      c_.send_raw(s_.data);
      c_.send_line(".");
      stage_ = Stage::EndOfData;   // from here a lost connection is ambiguous
      Reply done = c_.read_reply(t_.end_of_data_ms);
      if (done.code / 100 != 2) {
        fail(Stage::EndOfData, done, "message refused");
        return false;
      }
      auto pos = done.one_line().find("queued as ");
      if (pos != std::string::npos) {
        std::string id = done.one_line().substr(pos + 10);
        id.erase(std::find_if(id.begin(), id.end(), [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); }),
                 id.end());
        r_.queue_id = id;
      }
      return true;
    }
  }

  bool expect(Stage stage, int code, const char* what) {
    stage_ = stage;
    Reply r = c_.read_reply(t_.reply_ms);
    if (r.code == code) return true;
    fail(stage, r, what);
    return false;
  }

  bool mail() {
    stage_ = Stage::Mail;
    std::string cmd = "MAIL FROM:" + angle(s_.sender);
    if (caps_.count("SIZE")) cmd += " SIZE=" + std::to_string(s_.data.size());
    if (s_.body_8bit && caps_.count("8BITMIME")) cmd += " BODY=8BITMIME";   // RFC 6152
    if (s_.smtputf8 && caps_.count("SMTPUTF8")) cmd += " SMTPUTF8";         // RFC 6531 §3.4
    c_.send_line(cmd);
    Reply r = c_.read_reply(t_.reply_ms);
    if (r.code == 250) return true;
    fail(Stage::Mail, r, ("sender " + angle(s_.sender) + " refused").c_str());
    return false;
  }

  // Every recipient, so that all refusals are reported at once.
  // A 452 4.5.3 after at least one accepted recipient ends this batch:
  // that recipient and the ones after it go into `rest`.
  bool rcpts(const std::vector<std::string>& batch, std::vector<std::string>& rest) {
    stage_ = Stage::Rcpt;
    bool ok = true;
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& rcpt = batch[i];
      c_.send_line("RCPT TO:" + angle(rcpt));
      Reply r = c_.read_reply(t_.reply_ms);
      if (r.code == 250 || r.code == 251) {
        ++accepted;
        continue;
      }
      if (r.code == 452 && ok && accepted > 0 && r.one_line().find("4.5.3") != std::string::npos) {
        rest.assign(batch.begin() + static_cast<std::ptrdiff_t>(i), batch.end());
        return true;
      }
      ok = false;
      fail(Stage::Rcpt, r, ("recipient " + angle(rcpt) + (r.code / 100 == 4 ? " deferred" : " refused")).c_str());
    }
    return ok;
  }

  // The most severe outcome wins: a permanent refusal over a temporary one.
  void fail(Stage stage, const Reply& reply, const std::string& what) {
    r_.errors.push_back(what + ": " + reply.one_line());
    int code = exit_code_for(stage, reply);
    if (r_.exit_code == 0 || r_.exit_code == EX_TEMPFAIL) r_.exit_code = code;
  }

  void lost(const std::string& why) {
    if (stage_ == Stage::EndOfData) {
      r_.maybe_queued = true;
      r_.errors.push_back("connection lost waiting for the reply to the message (" + why +
                          "); it may or may not have been queued");
    } else {
      r_.errors.push_back(std::string("connection to outboxd lost at ") + stage_name(stage_) + " (" + why + ")");
    }
    r_.exit_code = EX_TEMPFAIL;
  }

  void quit() {
    try {
      c_.send_line("QUIT");
      c_.read_reply(5000);
    } catch (const ChannelError&) {
      // The transaction is already decided; a lost QUIT changes nothing.
    }
  }

  SmtpChannel& c_;
  const Submission& s_;
  const Timeouts& t_;
  SubmitResult& r_;
  std::set<std::string> caps_;
  Stage stage_ = Stage::Greeting;
};

}  // namespace

SubmitResult submit(SmtpChannel& channel, const Submission& s, const Timeouts& t) {
  SubmitResult r;
  Transaction(channel, s, t, r).run();
  if (r.exit_code != 0 && !r.maybe_queued) r.errors.push_back("message not sent");
  return r;
}

}  // namespace outbox::sendmail
