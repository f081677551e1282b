#include "tools/sendmail/mailq.h"

#include "protocol/printable.h"

#include <ctime>
#include <string_view>

namespace outbox::sendmail {

namespace {

bool listed(const std::string& state) {
  return state == queue::kQueued || state == queue::kActive || state == queue::kDeferred || state == queue::kHeld;
}

std::string left(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

std::string right(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

// Postfix's L_STRING_FORMAT "%-17s %8s %-19s %s".
std::string columns(const std::string& id, const std::string& size, const std::string& date, const std::string& who) {
  return left(id, 17) + " " + right(size, 8) + " " + left(date, 19) + " " + who + "\n";
}

// asctime() without the year: "Mon Jan  1 12:00:00", local time as Postfix.
std::string arrival(std::int64_t micros) {
  std::time_t t = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S", &tm);
  return buf;
}

// Mail and upstream replies are not trusted text: printed through the one
// escaper outboxctl uses too (protocol/printable.h).
using protocol::printable;

}  // namespace

std::string format_mailq(const std::vector<queue::MessageRecord>& messages, std::optional<std::int64_t> others) {
  std::string out;
  std::uint64_t total = 0;
  std::size_t count = 0;
  for (const auto& m : messages) {
    if (!listed(m.state)) continue;
    if (count++ == 0)
      out += columns("----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------");
    else
      out += "\n";
    std::string id = m.id + (m.state == queue::kActive ? "*" : m.state == queue::kHeld ? "!" : "");
    out += columns(id, std::to_string(m.size), arrival(m.created),
                   m.sender.empty() ? "MAILER-DAEMON" : printable(m.sender));
    std::string shown;   // the reason printed last; "" before the first
    for (const auto& r : m.recipients) {
      // Still to deliver: pending, or uncertain (sent once with no reply known).
      if (r.state != queue::kPending && r.state != queue::kUncertain) continue;
      std::string why = !r.last_reply.empty() ? r.last_reply : m.last_error;
      if (why != shown) {
        std::string text = why.empty() ? "reason unavailable" : printable(why);
        // Right-aligned to column 78, as Postfix does.
        std::size_t pad = text.size() < 76 ? 76 - text.size() : 0;
        out += std::string(pad, ' ') + "(" + text + ")\n";
        shown = why;
      }
      out += columns("", "", "", printable(r.address));
    }
    total += m.size;
  }
  std::string hidden;
  if (others && *others > 0)
    hidden = std::to_string(*others) + (*others == 1 ? " message" : " messages") + " of other users not shown";
  if (count == 0) return hidden.empty() ? "Mail queue is empty\n" : "Mail queue is empty (" + hidden + ")\n";
  if (!hidden.empty()) out += "\n-- " + hidden + ".";
  out += "\n-- " + std::to_string(total / 1024) + " Kbytes in " + std::to_string(count) + " Request" +
         (count == 1 ? "" : "s") + ".\n";
  return out;
}

}  // namespace outbox::sendmail
