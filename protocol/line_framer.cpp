#include "protocol/line_framer.h"

namespace outbox::protocol {

LineFramer::LineFramer(std::size_t max_octets) : max_content_(max_octets - 2) {}

void LineFramer::reset() {
  line_.clear();
  length_ = 0;
  cr_ = false;
  bad_ = false;
  taken_ = false;
}

LineFramer::Status LineFramer::finish() {
  Status s = bad_ ? Status::BadBytes : length_ > max_content_ ? Status::TooLong : Status::Line;
  if (s != Status::Line) line_.clear();
  taken_ = true;
  length_ = 0;
  cr_ = false;
  bad_ = false;
  return s;
}

LineFramer::Result LineFramer::next(std::string_view in) {
  if (taken_) {  // the previous line was handed out; start a fresh one
    line_.clear();
    taken_ = false;
  }
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (cr_) {
      if (c == '\n') return {i + 1, finish()};
      bad_ = true;  // bare CR
      cr_ = false;
      ++length_;
    }
    if (c == '\r') {
      cr_ = true;
      continue;
    }
    if (c == '\n' || c == '\0') bad_ = true;
    ++length_;
    if (!bad_ && length_ <= max_content_) line_.push_back(c);
  }
  return {in.size(), Status::NeedMore};
}

}  // namespace outbox::protocol
