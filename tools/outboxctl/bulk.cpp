#include "tools/outboxctl/bulk.h"

#include <algorithm>

#include "daemon/routing.h"

namespace outbox::ctl {

namespace {

const char* verb(BulkAction a) {
  switch (a) {
    case BulkAction::Delete: return "delete";
    case BulkAction::Hold: return "hold";
    case BulkAction::Release: return "release";
    case BulkAction::Retry: return "retry";
  }
  return "?";
}

const char* done_word(BulkAction a) {
  switch (a) {
    case BulkAction::Delete: return "deleted";
    case BulkAction::Hold: return "held";
    case BulkAction::Release: return "released (due now)";
    case BulkAction::Retry: return "due now";
  }
  return "?";
}

std::string plural(std::size_t n) { return std::to_string(n) + (n == 1 ? " message" : " messages"); }

constexpr std::size_t kBatch = 500;   // changes per transaction: one fsync each, not one per message

}  // namespace

bool action_applies(BulkAction a, const std::string& state) {
  switch (a) {
    case BulkAction::Delete: return state != "incoming";
    case BulkAction::Hold:
    case BulkAction::Retry: return state == "queued" || state == "deferred";
    case BulkAction::Release: return state == "held";
  }
  return false;
}

bool filter_matches(const Filter& f, const queue::MessageRecord& m, const std::string& wait_upstream,
                    std::int64_t now) {
  if (f.state && m.state != *f.state) return false;
  if (f.sender && !routing::sender_matches(*f.sender, m.sender)) return false;
  if (f.recipient && std::none_of(m.recipients.begin(), m.recipients.end(), [&](const auto& r) {
        return routing::sender_matches(*f.recipient, r.address);
      }))
    return false;
  if (f.older_than && now - m.created < static_cast<std::int64_t>(f.older_than->count()) * 1'000'000) return false;
  if (f.upstream && wait_upstream != *f.upstream) return false;
  return true;
}

int cmd_bulk(queue::Spool& spool, BulkAction action, const Filter& f, const Confirm& confirm, std::int64_t now,
             Io io, const std::function<void(const std::string&)>& log) {
  if (!f.any()) {
    io.err << "outboxctl: " << verb(action) << " needs a message id, a filter or --all\n";
    return kExitUsage;
  }
  if (f.state && !is_listed_state(*f.state)) {
    io.err << "outboxctl: unknown state \"" << *f.state << "\"\n";
    return kExitUsage;
  }
  // Selected first, acted on after: a page-wise walk (keyset by id) so a
  // large queue is never held in memory whole, only the matching ids.
  std::vector<std::string> ids;
  std::string after;
  for (;;) {
    auto page = spool.list_page(f.state, after, 1000);
    for (const auto& m : page) {
      if (!action_applies(action, m.state)) continue;
      std::string waits;
      if (f.upstream) {
        auto w = spool.wait_of(m.id);
        if (w) waits = w->upstream;
      }
      if (filter_matches(f, m, waits, now)) ids.push_back(m.id);
    }
    if (page.size() < 1000) break;
    after = page.back().id;
  }
  if (ids.empty()) {
    io.out << "no messages match\n";
    return kExitOk;
  }
  if (!confirm.yes) {
    if (!confirm.interactive || !confirm.in) {
      io.err << "outboxctl: " << plural(ids.size()) << " match; add --yes to " << verb(action)
             << " them (nothing done)\n";
      return kExitUsage;
    }
    io.err << plural(ids.size()) << " match (" << ids.front() << (ids.size() > 1 ? " ..." : "") << "). "
           << verb(action) << " " << (ids.size() == 1 ? "it" : "them") << "? [y/N] " << std::flush;
    std::string answer;
    std::getline(*confirm.in, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      io.out << "nothing done\n";
      return kExitFailure;
    }
  }
  std::size_t done = 0;
  for (std::size_t i = 0; i < ids.size(); i += kBatch) {
    spool.begin();
    try {
      for (std::size_t j = i; j < std::min(ids.size(), i + kBatch); ++j) {
        const auto& id = ids[j];
        bool ok = false;
        switch (action) {
          case BulkAction::Delete: {
            auto m = log ? spool.get(id) : std::nullopt;
            ok = spool.remove(id);
            if (ok && m) {
              std::string to;
              for (const auto& r : m->recipients) to += (to.empty() ? "" : ",") + r.address;
              log("event=deleted id=" + m->id + " state=" + m->state + " from=" +
                  log_value(m->sender.empty() ? "<>" : m->sender) + " to=" + log_value(to) +
                  " nrcpt=" + std::to_string(m->recipients.size()) + " size=" + std::to_string(m->size));
            }
            break;
          }
          case BulkAction::Hold: ok = spool.hold(id); break;
          case BulkAction::Release: ok = spool.release(id); break;
          case BulkAction::Retry: ok = spool.retry(id, now); break;
        }
        // A message the relay finished meanwhile no longer applies: not counted.
        if (ok) ++done;
      }
      spool.commit();
    } catch (...) {
      spool.rollback();
      throw;
    }
  }
  io.out << plural(done) << " " << done_word(action);
  if (done < ids.size()) io.out << " (" << ids.size() - done << " changed state meanwhile)";
  io.out << "\n";
  return kExitOk;
}

}  // namespace outbox::ctl
