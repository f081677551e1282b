// One recipient's result as the relay's client session reports it, for the
// tests of what the relay makes of reports (outcome_report, settle).
#pragma once
#include <string>
#include <utility>

#include "protocol/client_session.h"

namespace outbox::test {

inline protocol::client::RecipientResult recipient_result(std::string address, protocol::client::Outcome o, int code,
                                                          protocol::EnhancedStatus st, std::string text,
                                                          protocol::client::Stage stage = protocol::client::Stage::Rcpt) {
  protocol::client::RecipientResult r;
  r.address = std::move(address);
  r.outcome = o;
  r.stage = stage;
  r.status = st;
  r.reply = protocol::SmtpReply::make(code, st, std::move(text));
  return r;
}

}  // namespace outbox::test
