// Routing: which upstreams carry a message, decided by its envelope sender
// against the [[route]] list (SPEC "Configuration", "Relay"), and the
// submission-time sender check for providers that accept only their own
// account as envelope sender (QQ Mail, 163/126/yeah.net: "553 Mail from must
// equal authorized user", "501 mail from address must be same as
// authorization user").
//
// Pure functions over daemon/config.h values: no I/O, no logging, no state.
// Used by the server side at MAIL FROM / end of data, and by the relay
// scheduler when it picks an upstream.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.h"

namespace outbox::routing {

// Glob match of a [[route]] sender pattern against an envelope sender
// ("" = the null sender <>):
//   "*", "?"   any run of characters / any one character;
//   "<>"       only the null sender;
//   a pattern of '*' only ("*") also matches the null sender, no other
//              pattern does;
//   with an '@' in the pattern, the local parts match case-sensitively
//   (RFC 5321 §2.4) and the domains case-insensitively (ASCII); without
//   one, the whole address matches case-insensitively.
bool sender_matches(std::string_view pattern, std::string_view sender);

// The first route whose pattern matches, or nullptr ("no route").
const RouteConfig* find_route(const Config& config, std::string_view sender);

// The upstreams of the first matching route, in failover order. Names that
// do not resolve to an [[upstream]] are skipped (config validation refuses
// them anyway). Empty: no route.
std::vector<const UpstreamConfig*> upstreams_for(const Config& config, std::string_view sender);

// The route a queued message takes: its sender's; a bounce (the null
// sender) that no route takes goes the way its recipient, the original
// sender, would send (SPEC: "a bounce with no route uses its message's
// route"). route nullptr: no route, the message waits.
struct MessageRoute {
  const RouteConfig* route = nullptr;
  bool by_recipient = false;   // a bounce routed as its recipient's mail
};
MessageRoute route_for_message(const Config& config, std::string_view sender,
                               const std::vector<std::string>& recipients);

// The upstreams of route_for_message's route, in failover order. Empty: no
// route, the message waits.
std::vector<const UpstreamConfig*> upstreams_for_message(const Config& config, std::string_view sender,
                                                         const std::vector<std::string>& recipients);

const UpstreamConfig* find_upstream(const Config& config, std::string_view name);

// MAIL FROM sent to the upstream: its envelope_from when set, else the
// message's own sender.
std::string envelope_sender_for(const UpstreamConfig& upstream, std::string_view sender);

// from_header = "rewrite": the address the provider accepts in From: (the
// envelope_from, else a username that is an address); "" when neither.
std::string from_rewrite_address(const UpstreamConfig& upstream);

// true when host belongs to a provider that refuses any envelope sender but
// the authenticated account (QQ, Tencent Exmail, 163, 126, yeah.net, NetEase
// enterprise mail).
bool requires_own_sender(std::string_view host);

struct SenderCheck {
  bool allowed = true;
  int code = 0;           // when refused: 553 (typed, never parsed back out of the text)
  std::string text;       // "5.7.1 Sender <x> is not allowed ..."
  std::string reply() const { return code ? std::to_string(code) + " " + text : std::string(); }
  std::string upstream;   // the upstream that decided
};

// Submission-time check. The first upstream of the sender's route decides
// (a 5xx from it bounces; failover only follows temporary failures): when it
// has no envelope_from, has a username, and its host requires_own_sender(),
// a sender other than the username (case-insensitive) is refused with
//   553 5.7.1 Sender <x> is not allowed through upstream "163": it accepts
//   only someone@163.com as sender; set envelope_from or use that address
// No route, or any other upstream: allowed.
SenderCheck check_sender(const Config& config, std::string_view sender);

}  // namespace outbox::routing
