#include "daemon/routing.h"
#include "protocol/ascii.h"

#include "protocol/address_glob.h"

#include <array>

namespace outbox::routing {

namespace {

using protocol::ascii::iequals;

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

}  // namespace

bool sender_matches(std::string_view pattern, std::string_view sender) {
  return protocol::address_matches(pattern, sender);
}

const RouteConfig* find_route(const Config& config, std::string_view sender) {
  for (const auto& r : config.routes)
    if (sender_matches(r.sender, sender)) return &r;
  return nullptr;
}

const UpstreamConfig* find_upstream(const Config& config, std::string_view name) {
  for (const auto& u : config.upstreams)
    if (u.name == name) return &u;
  return nullptr;
}

namespace {

std::vector<const UpstreamConfig*> upstreams_of(const Config& config, const RouteConfig* route) {
  std::vector<const UpstreamConfig*> out;
  if (!route) return out;
  for (const auto& name : route->upstreams)
    if (const UpstreamConfig* u = find_upstream(config, name)) out.push_back(u);
  return out;
}

}  // namespace

std::vector<const UpstreamConfig*> upstreams_for(const Config& config, std::string_view sender) {
  return upstreams_of(config, find_route(config, sender));
}

MessageRoute route_for_message(const Config& config, std::string_view sender,
                               const std::vector<std::string>& recipients) {
  MessageRoute out{find_route(config, sender), false};
  if (sender.empty() && !recipients.empty() && upstreams_of(config, out.route).empty())
    if (const RouteConfig* r = find_route(config, recipients.front()); r && !upstreams_of(config, r).empty())
      out = {r, true};
  return out;
}

std::vector<const UpstreamConfig*> upstreams_for_message(const Config& config, std::string_view sender,
                                                         const std::vector<std::string>& recipients) {
  return upstreams_of(config, route_for_message(config, sender, recipients).route);
}

std::string envelope_sender_for(const UpstreamConfig& upstream, std::string_view sender) {
  return upstream.envelope_from.empty() ? std::string(sender) : upstream.envelope_from;
}

bool requires_own_sender(std::string_view host) {
  // NetEase and Tencent check MAIL FROM against the login (anchors §3).
  static constexpr std::array<std::string_view, 7> kDomains = {
      "qq.com", "foxmail.com", "163.com", "126.com", "yeah.net", "188.com", "netease.com"};
  while (!host.empty() && host.back() == '.') host.remove_suffix(1);
  for (auto d : kDomains) {
    if (iequals(host, d)) return true;
    if (host.size() > d.size() && host[host.size() - d.size() - 1] == '.' &&
        iequals(host.substr(host.size() - d.size()), d))
      return true;
  }
  return false;
}

SenderCheck check_sender(const Config& config, std::string_view sender) {
  SenderCheck out;
  auto ups = upstreams_for(config, sender);
  if (ups.empty()) return out;
  const UpstreamConfig& u = *ups.front();
  out.upstream = u.name;
  if (!u.envelope_from.empty() || u.username.empty() || !requires_own_sender(u.host)) return out;
  // The username is the mailbox only when it looks like one; otherwise the
  // provider's rule cannot be checked here.
  if (domain_of(u.username).empty()) return out;
  if (!sender.empty() && iequals(sender, u.username)) return out;
  out.allowed = false;
  // RFC 5321 §3.3 / RFC 3463: 553 mailbox name not allowed, 5.7.1 policy.
  out.code = 553;
  out.text = "5.7.1 Sender <" + std::string(sender) + "> is not allowed through upstream \"" +
              u.name + "\": it accepts only " + u.username +
              " as sender; set envelope_from or use that address";
  return out;
}

std::string from_rewrite_address(const UpstreamConfig& u) {
  if (!u.envelope_from.empty()) return u.envelope_from;
  if (u.username.find('@') != std::string::npos) return u.username;
  return {};
}

}  // namespace outbox::routing
