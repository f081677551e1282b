#include "daemon/query_protocol.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "protocol/base64.h"

namespace outbox::query {

namespace {

using json = nlohmann::json;

// Invalid UTF-8 in mail data (an upstream's reply) becomes U+FFFD rather
// than an exception, as in `outboxctl --json`.
std::string line_of(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

bool is_listed_state(std::string_view s) {
  for (const char* k : {queue::kQueued, queue::kActive, queue::kDeferred, queue::kHeld, queue::kSent, queue::kFailed})
    if (s == k) return true;
  return false;
}

bool is_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
         });
}

json opt(const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); }

std::optional<std::int64_t> get_opt(const json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<std::int64_t>();
}

json record_json(const queue::MessageRecord& m) {
  json rcpts = json::array();
  for (const auto& r : m.recipients)
    rcpts.push_back({{"address", r.address}, {"state", r.state}, {"attempts", r.attempts},
                     {"next_attempt", opt(r.next_attempt)}, {"last_reply", r.last_reply},
                     {"updated", opt(r.updated)}});
  json history = json::array();
  for (const auto& a : m.history)
    history.push_back({{"time", a.time}, {"upstream", a.upstream}, {"recipients", a.recipients},
                       {"reply", a.reply}, {"outcome", a.outcome}});
  return {{"id", m.id}, {"state", m.state}, {"sender", m.sender}, {"recipients", rcpts},
          {"size", m.size}, {"created", m.created}, {"attempts", m.attempts},
          {"next_attempt", opt(m.next_attempt)}, {"last_error", m.last_error}, {"client", m.client},
          {"uid", opt(m.uid)}, {"helo", m.helo}, {"smtputf8", m.smtputf8}, {"body_8bit", m.body_8bit},
          {"history", history}};
}

queue::MessageRecord record_from(const json& j) {
  queue::MessageRecord m;
  m.id = j.at("id").get<std::string>();
  m.state = j.at("state").get<std::string>();
  m.sender = j.at("sender").get<std::string>();
  for (const auto& r : j.at("recipients")) {
    queue::RecipientRecord rr;
    rr.address = r.at("address").get<std::string>();
    rr.state = r.at("state").get<std::string>();
    rr.attempts = r.at("attempts").get<int>();
    rr.next_attempt = get_opt(r, "next_attempt");
    rr.last_reply = r.at("last_reply").get<std::string>();
    rr.updated = get_opt(r, "updated");
    m.recipients.push_back(std::move(rr));
  }
  m.size = j.at("size").get<std::uint64_t>();
  m.created = j.at("created").get<std::int64_t>();
  m.attempts = j.at("attempts").get<int>();
  m.next_attempt = get_opt(j, "next_attempt");
  m.last_error = j.at("last_error").get<std::string>();
  m.client = j.at("client").get<std::string>();
  m.uid = get_opt(j, "uid");
  m.helo = j.at("helo").get<std::string>();
  m.smtputf8 = j.at("smtputf8").get<bool>();
  m.body_8bit = j.at("body_8bit").get<bool>();
  for (const auto& a : j.at("history")) {
    queue::AttemptRecord ar;
    ar.time = a.at("time").get<std::int64_t>();
    ar.upstream = a.at("upstream").get<std::string>();
    ar.recipients = a.at("recipients").get<std::vector<std::string>>();
    ar.reply = a.at("reply").get<std::string>();
    ar.outcome = a.at("outcome").get<std::string>();
    m.history.push_back(std::move(ar));
  }
  return m;
}

json view_json(const View& v) { return {{"scope", v.scope == Scope::All ? "all" : "own"}, {"uid", v.uid}}; }

View view_from(const json& j) {
  View v;
  std::string scope = j.at("scope").get<std::string>();
  if (scope != "all" && scope != "own") throw std::runtime_error("unknown scope " + scope);
  v.scope = scope == "all" ? Scope::All : Scope::Own;
  v.uid = j.at("uid").get<std::uint32_t>();
  return v;
}

const char* code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::BadRequest: return "bad_request";
    case ErrorCode::Unavailable: break;
  }
  return "unavailable";
}

}  // namespace

View decide_view(const PeerCred& peer, const DaemonIdentity& daemon) {
  View v{Scope::Own, peer.uid};
  bool member = peer.gid == daemon.gid ||
                std::find(peer.groups.begin(), peer.groups.end(), daemon.gid) != peer.groups.end();
  if (peer.uid == 0 || peer.uid == daemon.uid || member) v.scope = Scope::All;
  return v;
}

bool visible(const View& v, const queue::MessageRecord& m) {
  if (v.scope == Scope::All) return true;
  return m.uid && *m.uid >= 0 && static_cast<std::uint64_t>(*m.uid) == v.uid;
}

std::string encode(const ListRequest& r) {
  return line_of({{"op", "list"}, {"state", r.state ? json(*r.state) : json(nullptr)},
                  {"unfinished", r.unfinished}, {"after", r.after}, {"limit", r.limit}});
}

std::string encode(const ShowRequest& r) { return line_of({{"op", "show"}, {"id", r.id}}); }

Request decode_request(std::string_view line) {
  if (line.size() >= kMaxRequestBytes) return BadRequest{"request longer than " + std::to_string(kMaxRequestBytes) + " bytes"};
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return BadRequest{"not a JSON object"};
  auto op = j.find("op");
  if (op == j.end() || !op->is_string()) return BadRequest{"no \"op\""};
  try {
    if (*op == "list") {
      ListRequest r;
      if (auto it = j.find("state"); it != j.end() && !it->is_null()) {
        if (!it->is_string() || !is_listed_state(it->get<std::string>())) return BadRequest{"unknown state"};
        r.state = it->get<std::string>();
      }
      if (auto it = j.find("unfinished"); it != j.end()) r.unfinished = it->get<bool>();
      if (auto it = j.find("after"); it != j.end()) {
        r.after = it->get<std::string>();
        if (!r.after.empty() && !is_id(r.after)) return BadRequest{"\"after\" is not a queue id"};
      }
      if (auto it = j.find("limit"); it != j.end()) {
        if (!it->is_number_integer()) return BadRequest{"\"limit\" is not an integer"};
        auto n = it->get<std::int64_t>();
        if (n < 1 || n > kMaxPage) return BadRequest{"\"limit\" must be 1.." + std::to_string(kMaxPage)};
        r.limit = static_cast<int>(n);
      }
      return r;
    }
    if (*op == "show") {
      auto it = j.find("id");
      if (it == j.end() || !it->is_string()) return BadRequest{"no \"id\""};
      ShowRequest r{it->get<std::string>()};
      // A malformed id is no message at all: the same answer as an unknown one.
      return r;
    }
  } catch (const json::exception&) {
    return BadRequest{"a field has the wrong type"};
  }
  return BadRequest{"unknown op"};
}

std::string encode(const Answer& a) {
  if (const auto* e = std::get_if<ErrorAnswer>(&a))
    return line_of({{"ok", false}, {"code", code_name(e->code)}, {"error", e->error}});
  if (const auto* l = std::get_if<ListAnswer>(&a)) {
    json j = view_json(l->view);
    j["ok"] = true;
    json msgs = json::array();
    for (const auto& m : l->messages) msgs.push_back(record_json(m));
    j["messages"] = std::move(msgs);
    j["next_after"] = l->next_after;
    j["others"] = opt(l->others);
    return line_of(j);
  }
  const auto& s = std::get<ShowAnswer>(a);
  json j = view_json(s.view);
  j["ok"] = true;
  j["message"] = record_json(s.message);
  j["headers_b64"] = protocol::base64_encode(s.headers);
  return line_of(j);
}

Answer decode_answer(std::string_view line, bool expect_show) {
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return ErrorAnswer{ErrorCode::Unavailable, "outboxd sent an answer that is not JSON"};
  try {
    if (!j.at("ok").get<bool>()) {
      std::string code = j.at("code").get<std::string>();
      ErrorCode c = code == "not_found" ? ErrorCode::NotFound
                    : code == "bad_request" ? ErrorCode::BadRequest
                                            : ErrorCode::Unavailable;
      return ErrorAnswer{c, j.at("error").get<std::string>()};
    }
    if (expect_show) {
      ShowAnswer s;
      s.view = view_from(j);
      s.message = record_from(j.at("message"));
      auto h = protocol::base64_decode(j.at("headers_b64").get<std::string>());
      if (!h) throw std::runtime_error("headers_b64 is not base64");
      s.headers = std::move(*h);
      return s;
    }
    ListAnswer l;
    l.view = view_from(j);
    for (const auto& m : j.at("messages")) l.messages.push_back(record_from(m));
    l.next_after = j.at("next_after").get<std::string>();
    l.others = get_opt(j, "others");
    return l;
  } catch (const std::exception& e) {
    return ErrorAnswer{ErrorCode::Unavailable, std::string("outboxd sent a malformed answer: ") + e.what()};
  }
}

}  // namespace outbox::query
