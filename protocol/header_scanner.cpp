#include "protocol/header_scanner.h"

namespace outbox::protocol {

namespace {
constexpr std::size_t kMaxName = 64;  // longer names are kept truncated: they match nothing we look for

bool is_ftext(unsigned char c) { return c >= 33 && c <= 126 && c != ':'; }  // RFC 5322 §3.6.8

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
}  // namespace

void HeaderScanner::reset() {
  state_ = State::LineStart;
  name_.clear();
  date_ = false;
  message_id_ = false;
  capturing_ = false;
  message_id_value_.clear();
}

namespace {
void trim(std::string& s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  s.erase(0, i);
}
}  // namespace

std::string HeaderScanner::message_id() const {
  std::string v = message_id_value_;   // trimmed here too: the data may end inside the field
  trim(v);
  return v;
}

void HeaderScanner::field_name_ended() {
  if (iequals(name_, "date")) date_ = true;
  if (iequals(name_, "message-id") && !message_id_) {
    message_id_ = true;
    capturing_ = true;
  }
  name_.clear();
  state_ = State::SkipLine;
}

void HeaderScanner::feed(std::string_view body) {
  for (std::size_t i = 0; i < body.size() && state_ != State::Done; ++i) {
    auto c = static_cast<unsigned char>(body[i]);
    switch (state_) {
      case State::LineStart:
        if (c == ' ' || c == '\t') {
          state_ = State::SkipLine;  // folded continuation of the previous field
          // RFC 5322 §2.2.3: unfolding removes the CRLF, keeps the WSP.
          if (capturing_ && !message_id_value_.empty() && message_id_value_.size() < kMaxMessageId)
            message_id_value_.push_back(' ');
        } else if (is_ftext(c)) {
          if (capturing_) {
            capturing_ = false;
            trim(message_id_value_);
          }
          name_.assign(1, static_cast<char>(c));
          state_ = State::Name;
        } else {
          state_ = State::Done;  // the empty line (CR), or not a header at all
          if (capturing_) {
            capturing_ = false;
            trim(message_id_value_);
          }
        }
        break;
      case State::Name:
        if (c == ':') {
          field_name_ended();
        } else if (is_ftext(c)) {
          if (name_.size() < kMaxName) name_.push_back(static_cast<char>(c));
        } else if (c == ' ' || c == '\t') {
          state_ = State::NameSpace;  // RFC 5322 §4.5 obs-optional: "Date :"
        } else {
          state_ = State::Done;
        }
        break;
      case State::NameSpace:
        if (c == ':') field_name_ended();
        else if (c != ' ' && c != '\t') state_ = State::Done;
        break;
      case State::SkipLine:
        if (c == '\n') {
          state_ = State::LineStart;
        } else if (capturing_ && c != '\r' && message_id_value_.size() < kMaxMessageId &&
                   !(message_id_value_.empty() && (c == ' ' || c == '\t'))) {
          // Control characters never reach a log line.
          message_id_value_.push_back(c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));
        }
        break;
      case State::Done:
        break;
    }
  }
}

}  // namespace outbox::protocol
