// respond_to(): what the relay does about one operator_log row, and the line
// it logs first (daemon/operator_actions.h). No spool, no scheduler.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "daemon/operator_actions.h"

using namespace outbox;
using namespace outbox::daemon;
using Step = OperatorResponse::Step;

namespace {

queue::OperatorAction row(std::string action, std::string target, std::optional<std::int64_t> uid = 1000,
                          std::string detail = "") {
  queue::OperatorAction a;
  a.seq = 7;
  a.time = 1'700'000'000'000'000;
  a.uid = uid;
  a.action = std::move(action);
  a.target = std::move(target);
  a.detail = std::move(detail);
  return a;
}

}  // namespace

TEST_CASE("respond_to: each operator action's step and line") {
  struct Row {
    const char* name;
    queue::OperatorAction a;
    Step step;
    std::string upstream;
    std::string line;
  };
  const Row rows[] = {
      {"retry: claim now", row("retry", "0000000000000A"), Step::Kick, "",
       "event=operator action=retry id=0000000000000A uid=1000"},
      {"retry_all names no message", row("retry_all", ""), Step::Kick, "", "event=operator action=retry_all uid=1000"},
      {"release: claim now", row("release", "0000000000000A"), Step::Kick, "",
       "event=operator action=release id=0000000000000A uid=1000"},
      {"resume names an upstream, not a message", row("resume", "gmail"), Step::Resume, "gmail",
       "event=operator action=resume upstream=gmail uid=1000"},
      {"hold: the spool says it all", row("hold", "0000000000000A"), Step::Nothing, "",
       "event=operator action=hold id=0000000000000A uid=1000"},
      {"delete: the spool says it all", row("delete", "0000000000000A", 0, "2 recipients"), Step::Nothing, "",
       "event=operator action=delete id=0000000000000A uid=0 detail=\"2 recipients\""},
      {"no uid (written by hand)", row("retry", "0000000000000A", std::nullopt), Step::Kick, "",
       "event=operator action=retry id=0000000000000A"},
      {"an action this relay does not know is logged, nothing more", row("purge", "x"), Step::Nothing, "",
       "event=operator action=purge id=x uid=1000"},
      {"actions are matched exactly", row("Resume", "gmail"), Step::Nothing, "",
       "event=operator action=Resume id=gmail uid=1000"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto got = respond_to(r.a);
    CHECK(got.step == r.step);
    CHECK(got.upstream == r.upstream);
    CHECK(got.line.str() == r.line);
  }
}

TEST_CASE("resume_unknown_line: a resume the running configuration cannot follow") {
  CHECK(resume_unknown_line("old").str() ==
        "event=operator action=resume upstream=old error=\"no such upstream in the running configuration\"");
}
