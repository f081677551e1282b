#include "daemon/operator_actions.h"

namespace outbox::daemon {

OperatorResponse respond_to(const queue::OperatorAction& a) {
  // journalctl | grep id=ID (or upstream=NAME) tells the whole story,
  // the operator's uid included.
  OperatorResponse r{log::Line("operator")};
  r.line.kv("action", a.action);
  if (a.action == "resume") r.line.kv("upstream", a.target);
  else if (!a.target.empty()) r.line.kv("id", a.target);
  if (a.uid) r.line.kv("uid", *a.uid);
  if (!a.detail.empty()) r.line.kv("detail", a.detail);
  if (a.action == "resume") {
    r.step = OperatorResponse::Step::Resume;
    r.upstream = a.target;
  } else if (a.action == "retry" || a.action == "retry_all" || a.action == "release") {
    r.step = OperatorResponse::Step::Kick;
  }
  return r;
}

log::Line resume_unknown_line(const std::string& upstream) {
  return log::Line("operator").kv("action", "resume").kv("upstream", upstream)
      .kv("error", "no such upstream in the running configuration");
}

}  // namespace outbox::daemon
