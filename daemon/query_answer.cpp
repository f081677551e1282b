#include "daemon/query_answer.h"

namespace outbox::query {

namespace {
struct StopReading {};   // thrown from a read_body sink to stop early
}  // namespace

std::string read_header_section(queue::Spool& spool, const std::string& id, std::size_t max_bytes) {
  std::string h;
  try {
    spool.read_body(id, [&](std::string_view chunk) {
      std::size_t from = h.size() < 3 ? 0 : h.size() - 3;   // a CRLFCRLF may straddle chunks
      h.append(chunk);
      auto end = h.find("\r\n\r\n", from);
      if (end != std::string::npos) {
        h.resize(end + 4);
        throw StopReading{};
      }
      if (h.size() >= max_bytes) {
        h.resize(max_bytes);
        throw StopReading{};
      }
    });
  } catch (const StopReading&) {
  }
  return h;
}

Answer answer(queue::Spool& spool, const Request& request, const View& view) {
  if (const auto* bad = std::get_if<BadRequest>(&request)) return ErrorAnswer{ErrorCode::BadRequest, bad->why};
  if (const auto* show = std::get_if<ShowRequest>(&request)) {
    auto m = spool.get(show->id);
    if (!m || !visible(view, *m)) return ErrorAnswer{ErrorCode::NotFound, "no such message: " + show->id};
    ShowAnswer s{view, std::move(*m), read_header_section(spool, show->id)};
    return s;
  }
  const auto& list = std::get<ListRequest>(request);
  queue::Spool::ListFilter f;
  f.state = list.state;
  f.unfinished_only = list.unfinished;
  if (view.scope == Scope::Own) f.uid = static_cast<std::int64_t>(view.uid);
  ListAnswer a;
  a.view = view;
  // One more than asked tells whether another page follows.
  auto page = spool.list_page(f, list.after, list.limit + 1);
  if (static_cast<int>(page.size()) > list.limit) {
    page.resize(static_cast<std::size_t>(list.limit));
    a.next_after = page.back().id;
  }
  for (auto& m : page)
    if (visible(view, m)) a.messages.push_back(std::move(m));   // the filter did it; never trust one place
  if (view.scope == Scope::Own && list.after.empty()) a.others = spool.count_not_of_uid(f, view.uid);
  return a;
}

}  // namespace outbox::query
