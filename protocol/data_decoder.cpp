#include "protocol/data_decoder.h"

#include <algorithm>
#include <cstring>

namespace outbox::protocol {

void DataDecoder::reset() {
  state_ = State::LineStart;
  bad_ = false;
}

DataDecoder::Result DataDecoder::decode(std::string_view in, std::string& out, std::size_t out_limit) {
  std::size_t i = 0;
  // One input byte appends at most two output bytes (a held CR plus itself).
  while (i < in.size() && out.size() + 2 <= out_limit) {
    char c = in[i];
    switch (state_) {
      case State::Mid: {
        if (c == '\r') {
          state_ = State::CR;
          ++i;
          break;
        }
        if (c == '\n' || c == '\0') {  // never legal in a body (RFC 5321 §2.3.8; RFC 2045 §2.8 forbids NUL)
          bad_ = true;
          out.push_back(c);
          ++i;
          break;
        }
        // Fast path: copy the run of ordinary bytes up to the next CR/LF/NUL.
        // memchr per stop byte: a body line ends at CR, so that search is
        // short; LF and NUL are looked for only up to it.
        std::size_t room = out_limit - out.size();
        const char* p = in.data() + i + 1;
        const char* end = in.data() + std::min(in.size(), i + room);
        if (p < end) {
          if (const void* q = std::memchr(p, '\r', static_cast<std::size_t>(end - p))) end = static_cast<const char*>(q);
          if (const void* q = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) end = static_cast<const char*>(q);
          if (const void* q = std::memchr(p, '\0', static_cast<std::size_t>(end - p))) end = static_cast<const char*>(q);
        } else {
          end = p;
        }
        std::size_t j = static_cast<std::size_t>(end - in.data());
        out.append(in.substr(i, j - i));
        i = j;
        break;
      }
      case State::LineStart:
        if (c == '.') {
          state_ = State::Dot;
        } else if (c == '\r') {
          state_ = State::CR;
        } else {
          if (c == '\n' || c == '\0') bad_ = true;
          out.push_back(c);
          state_ = State::Mid;
        }
        ++i;
        break;
      case State::Dot:
        if (c == '\r') {
          state_ = State::DotCR;
        } else {
          // §4.5.2: the leading dot goes, whatever follows. "\r\n.\n" is not
          // the end: the LF is bare.
          if (c == '\n' || c == '\0') bad_ = true;
          out.push_back(c);
          state_ = State::Mid;
        }
        ++i;
        break;
      case State::DotCR:
        if (c == '\n') {
          state_ = State::LineStart;
          return {i + 1, true};
        }
        bad_ = true;  // ".\r" then not LF: a bare CR; c is looked at again as line text
        out.push_back('\r');
        state_ = State::Mid;
        if (c == '\r') {
          state_ = State::CR;
          ++i;
        }
        break;
      case State::CR:
        if (c == '\n') {
          out.append("\r\n");
          state_ = State::LineStart;
          ++i;
        } else {
          bad_ = true;  // the held CR was bare; c is looked at again as line text
          out.push_back('\r');
          state_ = State::Mid;
          if (c == '\r') {
            state_ = State::CR;
            ++i;
          }
        }
        break;
    }
  }
  return {i, false};
}

}  // namespace outbox::protocol
