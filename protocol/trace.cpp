#include "protocol/trace.h"

#include <array>

namespace outbox::protocol {

namespace {
void two_digits(std::string& out, int v) {
  out.push_back(static_cast<char>('0' + v / 10));
  out.push_back(static_cast<char>('0' + v % 10));
}
}  // namespace

std::string rfc5322_date(std::time_t t) {
  // Formatted by hand: strftime's %a/%b follow the locale, RFC 5322 §3.3
  // wants the English names.
  static constexpr std::array<const char*, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string out;
  out += kDays[static_cast<std::size_t>(tm.tm_wday) % 7];
  out += ", ";
  two_digits(out, tm.tm_mday);
  out += ' ';
  out += kMonths[static_cast<std::size_t>(tm.tm_mon) % 12];
  out += ' ';
  out += std::to_string(tm.tm_year + 1900);
  out += ' ';
  two_digits(out, tm.tm_hour);
  out += ':';
  two_digits(out, tm.tm_min);
  out += ':';
  two_digits(out, tm.tm_sec);
  out += " +0000";
  return out;
}

std::string sanitize_trace_token(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    bool bad = c < 0x20 || c == 0x7f || c == '(' || c == ')' || c == '\\';
    out.push_back(bad ? '?' : static_cast<char>(c));
  }
  return out;
}

std::string describe_client(const PeerInfo& peer) {
  if (peer.unix_socket) {
    std::string out = "unix socket";
    if (peer.uid) out += ", uid " + std::to_string(*peer.uid);
    if (!peer.user.empty()) out += ", user " + sanitize_trace_token(peer.user);
    return out;
  }
  std::string addr = sanitize_trace_token(peer.address);
  // RFC 5321 §4.1.3: IPv6 address literals carry the "IPv6:" tag.
  if (addr.find(':') != std::string::npos) return "[IPv6:" + addr + "]";
  return "[" + addr + "]";
}

std::string with_protocol(const ProtocolFlags& f) {
  if (!f.esmtp) return "SMTP";
  std::string out = f.smtputf8 ? "UTF8SMTP" : "ESMTP";
  if (f.tls) out += 'S';
  if (f.authenticated) out += 'A';
  return out;
}

std::string received_field(const TraceInfo& t) {
  std::string out = "Received: from ";
  out += t.helo;
  out += " (";
  out += t.client;
  out += ")\r\n\tby ";
  out += t.hostname;
  out += " (outbox) with ";
  out += t.protocol;
  out += " id ";
  out += t.id;
  if (t.recipient) {
    out += "\r\n\tfor <";
    out += *t.recipient;
    out += '>';
  }
  out += "; ";
  out += rfc5322_date(t.time);
  out += "\r\n";
  return out;
}

}  // namespace outbox::protocol
