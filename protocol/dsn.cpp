#include "protocol/dsn.h"

#include "protocol/base64.h"

#include <array>
#include <cstdio>

namespace outbox::protocol {

namespace {

constexpr std::size_t kMaxLine = 998;   // RFC 5322 §2.1.1, without CRLF

bool has_8bit(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

// Days since 1970-01-01 -> civil date (proleptic Gregorian), H. Hinnant's algorithm.
void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(yoe + era * 400 + (m <= 2 ? 1 : 0));
}

// Word-wraps text to lines of about `width` octets, continuation lines
// starting with `indent`; a word longer than the hard limit is cut.
std::string wrap(std::string_view text, std::size_t width, std::string_view indent) {
  std::string out, line;
  auto push = [&] {
    out += line;
    out += "\r\n";
    line.assign(indent);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t sp = text.find(' ', i);
    std::string_view word = text.substr(i, sp == std::string_view::npos ? std::string_view::npos : sp - i);
    i = sp == std::string_view::npos ? text.size() : sp + 1;
    if (word.empty()) continue;
    bool at_start = line.size() <= indent.size();
    if (!at_start && line.size() + 1 + word.size() > width) push();
    at_start = line.size() <= indent.size();
    if (!at_start) line += ' ';
    while (line.size() + word.size() > kMaxLine) {   // a monster word: cut it
      std::size_t room = kMaxLine - line.size();
      line.append(word.substr(0, room));
      word.remove_prefix(room);
      push();
    }
    line.append(word);
  }
  if (line.size() > indent.size() || out.empty()) {
    out += line;
    out += "\r\n";
  }
  return out;
}

// A header-like field "Name: value", folded at spaces (RFC 5322 §2.2.3).
std::string field(std::string_view name, std::string_view value) {
  std::string s(name);
  s += ": ";
  s.append(value);
  return wrap(s, 78, " ");
}

// The original header section with CRLF line ends, no line over 998 octets
// (split with CRLF SP, i.e. folded), ending in CRLF, without the blank line.
std::string clean_headers(std::string_view h) {
  h = header_section(h);
  std::string out;
  std::size_t col = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    char c = h[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < h.size() && h[i + 1] == '\n') ++i;
      out += "\r\n";
      col = 0;
      continue;
    }
    if (col == kMaxLine) {
      out += "\r\n ";
      col = 1;
    }
    out += c;
    ++col;
  }
  while (out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0) out.resize(out.size() - 2);
  if (!out.empty() && (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0)) out += "\r\n";
  return out;
}

std::string address_type(std::string_view a) { return has_8bit(a) ? "utf-8; " : "rfc822; "; }

std::string recipient_text(const DsnRecipient& r, const DsnInput& in) {
  std::string what;
  if (!r.remote_mta.empty() && r.smtp_diagnostic) {
    what = "host " + r.remote_mta + " said: " + r.diagnostic;
    if (!r.in_reply_to.empty()) what += " (in reply to " + r.in_reply_to + " command)";
  } else {
    what = r.diagnostic;
  }
  std::string line = "<" + r.address + ">: ";
  if (r.expired) {
    line += "delivery time expired";
    if (!in.lifetime_text.empty()) line += " after " + in.lifetime_text;
    line += what.empty() ? "" : "; last error: " + what;
  } else {
    line += what.empty() ? "delivery failed" : what;
  }
  return wrap(line, 76, "    ");
}

}  // namespace

std::string rfc5322_date_us(std::int64_t us) {
  std::int64_t secs = us >= 0 ? us / 1'000'000 : -((-us + 999'999) / 1'000'000);
  std::int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  std::int64_t rem = secs - days * 86400;
  int y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  static constexpr std::array<const char*, 7> kDays = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::int64_t wd = days % 7;
  if (wd < 0) wd += 7;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d +0000", kDays[static_cast<std::size_t>(wd)], d,
                kMonths[m - 1], y, static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60),
                static_cast<int>(rem % 60));
  return buf;
}

std::string_view header_section(std::string_view message) {
  // The first empty line ends the header section (RFC 5322 §2.1). A stored
  // message has CRLF only; a lone LF is tolerated here all the same.
  auto empty_at = [&](std::size_t i) {
    return message.compare(i, 2, "\r\n") == 0 || message.compare(i, 1, "\n") == 0;
  };
  if (empty_at(0)) return {};
  for (std::size_t i = message.find('\n'); i != std::string_view::npos; i = message.find('\n', i + 1))
    if (i + 1 < message.size() && empty_at(i + 1)) return message.substr(0, i + 1);
  return message;
}

bool should_bounce(std::string_view sender, bool bounces_enabled) {
  // RFC 5321 §4.5.5 / RFC 3464 §2: notifications are never sent for <>.
  return bounces_enabled && !sender.empty() && sender != "<>";
}

DsnRecipient dsn_recipient(const client::RecipientResult& r, std::string remote_mta) {
  DsnRecipient d;
  d.address = r.address;
  d.action = r.outcome == client::Outcome::Permanent ? DsnRecipient::Action::Failed : DsnRecipient::Action::Delayed;
  d.status = r.status;
  d.remote_mta = std::move(remote_mta);
  if (r.reply) {
    d.diagnostic = r.reply->one_line();
    d.smtp_diagnostic = true;
    d.in_reply_to = std::string(client::stage_command(r.stage));
  } else {
    d.diagnostic = r.detail;
    d.smtp_diagnostic = false;
  }
  return d;
}

DsnMessage build_dsn(const DsnInput& in) {
  DsnMessage out;
  const bool failure = in.kind == DsnInput::Kind::Failure;
  bool intl = in.original_smtputf8 || has_8bit(in.original_sender);
  for (const auto& r : in.recipients) intl = intl || has_8bit(r.address);
  const std::string headers = clean_headers(in.original_headers);

  // --- the three parts ---
  std::string text;
  text += wrap("This is the mail system at host " + in.reporting_host + ".", 76, "");
  text += "\r\n";
  if (failure) {
    text += wrap("Your message could not be delivered to one or more recipients. "
                 "The reasons are below, followed by the headers of your message.",
                 76, "");
  } else {
    std::string until = in.retry_until ? " until " + rfc5322_date_us(*in.retry_until) : "";
    text += wrap("Your message could not be delivered yet to one or more recipients. "
                 "It is still queued and will be tried again" + until +
                     "; you do not need to send it again.",
                 76, "");
  }
  text += "\r\n";
  for (const auto& r : in.recipients) text += recipient_text(r, in);

  std::string status;
  status += field("Reporting-MTA", "dns; " + in.reporting_host);
  if (!in.queue_id.empty()) status += field("X-Outbox-Queue-ID", in.queue_id);
  status += field("Arrival-Date", rfc5322_date_us(in.arrival));
  for (const auto& r : in.recipients) {
    status += "\r\n";   // RFC 3464 §2.1: per-recipient groups separated by a blank line
    status += field("Final-Recipient", address_type(r.address) + r.address);
    status += field("Action", r.action == DsnRecipient::Action::Failed ? "failed" : "delayed");
    status += field("Status", r.status.str());
    if (!r.remote_mta.empty()) status += field("Remote-MTA", "dns; " + r.remote_mta);
    if (!r.diagnostic.empty())
      status += field("Diagnostic-Code", (r.smtp_diagnostic ? "smtp; " : "X-Outbox; ") + r.diagnostic);
    if (r.last_attempt) status += field("Last-Attempt-Date", rfc5322_date_us(*r.last_attempt));
    if (r.action == DsnRecipient::Action::Delayed && in.retry_until)
      status += field("Will-Retry-Until", rfc5322_date_us(*in.retry_until));
  }

  // --- a boundary that occurs in none of the parts (RFC 2046 §5.1.1) ---
  std::string base = in.queue_id + "." + std::to_string(in.date / 1'000'000) + "/" + in.reporting_host;
  if (base.size() > 60) base.resize(60);
  std::string boundary = base;
  for (int n = 1;; ++n) {
    std::string dash = "--" + boundary;
    if (text.find(dash) == std::string::npos && status.find(dash) == std::string::npos &&
        headers.find(dash) == std::string::npos)
      break;
    boundary = base + "." + std::to_string(n);
  }

  const bool text_8bit = has_8bit(text);
  // The notice itself needs SMTPUTF8 only when its own envelope/header
  // address (the original sender) is non-ASCII. Otherwise its 8-bit
  // message/global-* parts go base64-encoded (RFC 6533 §6), so the DSN
  // reaches upstreams that do not offer SMTPUTF8.
  const bool needs_smtputf8 = has_8bit(in.original_sender);
  // Only the text part, or 8-bit parts under SMTPUTF8, travel as 8bit.
  const bool any_8bit = text_8bit || needs_smtputf8;
  std::string& m = out.bytes;
  m += "From: MAILER-DAEMON@" + in.reporting_host + " (Mail Delivery System)\r\n";
  m += field("To", "<" + in.original_sender + ">");
  m += field("Subject", failure ? "Undelivered Mail Returned to Sender" : "Delayed Mail (still being retried)");
  m += "Date: " + rfc5322_date_us(in.date) + "\r\n";
  m += field("Message-ID", in.message_id);
  m += "Auto-Submitted: auto-replied\r\n";   // RFC 3834 §5: no auto-replies to this
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=" +
       std::string(intl ? "global-delivery-status" : "delivery-status") + ";\r\n";
  m += "\tboundary=\"" + boundary + "\"\r\n";
  m += std::string("Content-Transfer-Encoding: ") + (any_8bit ? "8bit" : "7bit") + "\r\n";
  m += "\r\n";
  m += "This is a MIME-encapsulated message.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\n";
  m += std::string("Content-Type: text/plain; charset=") + (text_8bit ? "utf-8" : "us-ascii") + "\r\n";
  if (text_8bit) m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "\r\n" + text + "\r\n";

  auto part = [&](const std::string& body) {
    if (!has_8bit(body)) return "\r\n" + body + "\r\n";
    if (needs_smtputf8) return "Content-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n";
    std::string b64 = base64_encode(body), folded;
    for (std::size_t i = 0; i < b64.size(); i += 76) folded += b64.substr(i, 76) + "\r\n";
    return "Content-Transfer-Encoding: base64\r\n\r\n" + folded;
  };
  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\n";
  m += std::string("Content-Type: message/") + (intl ? "global-delivery-status" : "delivery-status") + "\r\n";
  m += part(status);

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Undelivered Message Headers\r\n";
  m += std::string("Content-Type: ") + (intl ? "message/global-headers" : "text/rfc822-headers") + "\r\n";
  m += part(headers);
  m += "--" + boundary + "--\r\n";

  out.smtputf8 = needs_smtputf8;
  out.body_8bit = has_8bit(m);
  return out;
}

}  // namespace outbox::protocol
