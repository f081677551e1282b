#include "protocol/from_rewrite.h"

#include <cctype>

namespace outbox::protocol {

bool field_named(std::string_view line, std::string_view name) {
  if (line.size() <= name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  std::size_t i = name.size();
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;   // RFC 5322 §4.5.3 obs-optional
  return i < line.size() && line[i] == ':';
}

std::string rewrite_from_header(std::string_view head, std::string_view account) {
  const std::size_t head_end = head.size();
  std::size_t from_at = std::string_view::npos, from_end = 0;
  bool has_reply_to = false;
  for (std::size_t pos = 0; pos < head_end;) {
    std::size_t end = pos;   // the field runs to a CRLF not followed by WSP (RFC 5322 §2.2.3)
    do {
      std::size_t crlf = head.find("\r\n", end);
      end = crlf == std::string_view::npos || crlf + 2 > head_end ? head_end : crlf + 2;
    } while (end < head_end && (head[end] == ' ' || head[end] == '\t'));
    std::string_view field = head.substr(pos, end - pos);
    if (field_named(field, "reply-to")) has_reply_to = true;
    if (from_at == std::string_view::npos && field_named(field, "from")) {
      from_at = pos;
      from_end = end;
    }
    pos = end;
  }
  std::string fresh = "From: " + std::string(account) + "\r\n";
  if (from_at == std::string_view::npos) return fresh + std::string(head);
  if (!has_reply_to) {
    std::string_view old = head.substr(from_at, from_end - from_at);
    fresh += "Reply-To";
    fresh += old.substr(old.find(':'));
  }
  std::string out;
  out.reserve(head.size() + fresh.size());
  out.append(head.substr(0, from_at));
  out += fresh;
  out.append(head.substr(from_end));
  return out;
}

FromRewriter::FromRewriter(std::string account, std::size_t max_header)
    : account_(std::move(account)), max_header_(max_header) {}

void FromRewriter::feed(std::string_view bytes, std::string& out) {
  if (state_ == State::Body) {
    out.append(bytes);
    return;
  }
  // The separator may straddle pieces: look again from 3 octets back.
  std::size_t from = head_.size() >= 3 ? head_.size() - 3 : 0;
  head_.append(bytes);
  std::size_t sep = head_.find("\r\n\r\n", from);
  // The decision depends only on where the separator is, never on how the
  // input was split: a block (with its last CRLF) of at most max_header_
  // octets is rewritten, a longer one passes unchanged.
  if (sep != std::string::npos) {
    std::size_t head_end = sep + 2;   // the block keeps its last CRLF; the empty line follows
    if (head_end <= max_header_) {
      out += rewrite_from_header(std::string_view(head_).substr(0, head_end), account_);
      out.append(head_, head_end, std::string::npos);
    } else {
      gave_up_ = true;
      out += head_;
    }
    head_.clear();
    head_.shrink_to_fit();
    state_ = State::Body;
    return;
  }
  if (head_.size() >= max_header_ + 2) {   // a separator still to come would end the block past the bound
    gave_up_ = true;
    out += head_;
    head_.clear();
    head_.shrink_to_fit();
    state_ = State::Body;
  }
}

void FromRewriter::finish(std::string& out) {
  if (state_ == State::Header) {
    // No separator: the whole message is header.
    if (head_.size() <= max_header_) {
      out += rewrite_from_header(head_, account_);
    } else {
      gave_up_ = true;
      out += head_;
    }
    head_.clear();
    state_ = State::Body;
  }
}

}  // namespace outbox::protocol
