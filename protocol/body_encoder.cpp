#include "protocol/body_encoder.h"

#include <algorithm>
#include <cstring>

namespace outbox::protocol::client {

std::size_t BodyEncoder::encode(std::string_view in, std::string& out, std::size_t limit) {
  const char* const data = in.data();
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (i < n) {
    char c = data[i];
    if (prev_cr_) {
      prev_cr_ = false;
      out += '\n';   // a CR alone becomes CRLF; CRLF passes
      line_start_ = true;
      line_len_ = 0;
      if (c == '\n') {
        ++i;
        continue;
      }
    }
    if (out.size() >= limit) break;
    if (c == '\r') {
      out += '\r';
      prev_cr_ = true;
      ++i;
      continue;
    }
    if (c == '\n') {
      out += "\r\n";
      line_start_ = true;
      line_len_ = 0;
      ++i;
      continue;
    }
    if (line_len_ >= kMaxLine) {
      out += "\r\n ";
      line_len_ = 1;
      line_start_ = false;
    }
    if (line_start_ && c == '.') out += '.';
    // c and the line's text after it in one append, up to the next CR or LF,
    // the 998 limit or the limit of `out` (memchr: the body's bytes are by
    // far the most of the relay's work for a large message).
    std::size_t room = std::min(n - i, kMaxLine - line_len_);
    room = out.size() < limit ? std::min(room, limit - out.size()) : 1;   // >= 1: c goes in
    const char* end = data + i + room;
    if (const void* lf = std::memchr(data + i + 1, '\n', static_cast<std::size_t>(end - data - i - 1)))
      end = static_cast<const char*>(lf);
    if (const void* cr = std::memchr(data + i + 1, '\r', static_cast<std::size_t>(end - data - i - 1)))
      end = static_cast<const char*>(cr);
    const auto run = static_cast<std::size_t>(end - (data + i));
    out.append(data + i, run);
    line_len_ += run;
    line_start_ = false;
    i += run;
  }
  octets_ += i;
  return i;
}

void BodyEncoder::finish(std::string& out) {
  if (prev_cr_) {
    out += '\n';
    prev_cr_ = false;
    line_start_ = true;
  }
  if (!line_start_) out += "\r\n";
  line_start_ = true;
  line_len_ = 0;
}

}  // namespace outbox::protocol::client
