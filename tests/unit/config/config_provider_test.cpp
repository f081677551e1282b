// provider = "NAME" on an [[upstream]] (SPEC "Provider profiles"): the
// compiled-in table parses and names its sources, a profile fills what the
// entry leaves out, and every key written in the entry wins.
#include <doctest/doctest.h>

#include "config_support.h"
#include "daemon/providers.h"

using namespace outbox;
using namespace std::chrono_literals;
using outbox::test::error_of;
using outbox::test::kMinimal;
using outbox::test::load_text;

namespace {

const UpstreamConfig& only_upstream(const Config& c) {
  REQUIRE(c.upstreams.size() == 1);
  return c.upstreams[0];
}

}  // namespace

TEST_CASE("the compiled-in provider table parses, and every profile and rule names its source") {
  const auto& all = provider_profiles();
  for (const char* name : {"gmail", "google-workspace", "google-relay", "microsoft365", "outlook", "ses", "qq", "163",
                           "126"}) {
    bool found = false;
    for (const auto& p : all) found = found || p.name == name;
    CHECK_MESSAGE(found, name);
  }
  for (const auto& p : all) {
    CAPTURE(p.name);
    CHECK_FALSE(p.source.empty());
    CHECK_FALSE(p.title.empty());
    REQUIRE(p.replies);
    for (const auto& r : p.replies->rules) {
      CHECK_FALSE(r.source.empty());
      CHECK_FALSE(r.meaning.empty());
    }
  }
}

TEST_CASE("a broken provider table is refused with the place and the problem") {
  auto err = [](const std::string& text) {
    try {
      parse_provider_profiles(text);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string head =
      "[[provider]]\nname = \"x\"\ntitle = \"X\"\nhost = \"h\"\nport = 465\ntls = \"implicit\"\nauth = \"auto\"\n"
      "oauth2 = \"no\"\nsender = \"any\"\nsource = \"s\"\n";
  CHECK(err(head) == "no error");
  CHECK(err(head + "[[provider.reply]]\ncode = 550\naction = \"explode\"\nmeaning = \"m\"\nsource = \"s\"\n") ==
        "providers.toml: provider \"x\" reply[0]: unknown action");
  CHECK(err(head + "[[provider.reply]]\naction = \"fail\"\nmeaning = \"m\"\nsource = \"s\"\n") ==
        "providers.toml: provider \"x\" reply[0]: a rule needs code, enhanced or text");
  CHECK(err(head + "[[provider.reply]]\ncode = 550\naction = \"fail\"\nmeaning = \"m\"\n") ==
        "providers.toml: provider \"x\" reply[0]: source is missing");
  CHECK(err(head + "rate = [\"lots\"]\n") == "providers.toml: provider \"x\": rate[0] is not a rate");
  CHECK(err(head + head) == "providers.toml: provider \"x\": named twice");
}

TEST_CASE("provider = \"microsoft365\" fills host, port, TLS, limits and the sender rule") {
  Config c = load_text(kMinimal +
                       "[[upstream]]\nname = \"m365\"\nprovider = \"microsoft365\"\n"
                       "username = \"cron@example.com\"\npassword_file = \"/etc/outbox/secrets/m365\"\n");
  const auto& u = only_upstream(c);
  CHECK(u.provider == "microsoft365");
  CHECK(u.provider_oauth2 == "required");
  CHECK(u.host == "smtp.office365.com");
  CHECK(u.port == 587);
  CHECK(u.tls == TlsMode::StartTls);
  CHECK(u.auth == "auto");
  CHECK(u.max_connections == 3);
  CHECK(u.rate == std::vector<std::string>{"30/min"});
  CHECK(u.envelope_from == "cron@example.com");
  CHECK(u.from_header == "rewrite");
  REQUIRE(u.replies);
  CHECK(u.replies->provider == "microsoft365");
}

TEST_CASE("every key written in the [[upstream]] wins over its profile") {
  Config c = load_text(kMinimal +
                       "[[upstream]]\nname = \"m365\"\nprovider = \"microsoft365\"\nhost = \"smtp-relay.example\"\n"
                       "port = 2525\nusername = \"cron@example.com\"\npassword_file = \"/etc/outbox/secrets/m365\"\n"
                       "envelope_from = \"alerts@example.com\"\nfrom_header = \"keep\"\nmax_connections = 1\n"
                       "rate = [\"10/min\"]\nmax_message_size = \"10M\"\n");
  const auto& u = only_upstream(c);
  CHECK(u.host == "smtp-relay.example");
  CHECK(u.port == 2525);
  CHECK(u.envelope_from == "alerts@example.com");
  CHECK(u.from_header == "keep");
  CHECK(u.max_connections == 1);
  CHECK(u.rate == std::vector<std::string>{"10/min"});
  CHECK(u.max_message_size == 10u << 20);
  CHECK(u.replies);   // the reply rules stay: they describe the provider, not the entry
}

TEST_CASE("a TLS mode other than the profile's takes that mode's port") {
  Config c = load_text(kMinimal + "[[upstream]]\nname = \"g\"\nprovider = \"gmail\"\ntls = \"starttls\"\n");
  const auto& u = only_upstream(c);
  CHECK(u.host == "smtp.gmail.com");
  CHECK(u.tls == TlsMode::StartTls);
  CHECK(u.port == 587);
  Config d = load_text(kMinimal + "[[upstream]]\nname = \"g\"\nprovider = \"gmail\"\n");
  CHECK(only_upstream(d).port == 465);
  CHECK(only_upstream(d).tls == TlsMode::Implicit);
  CHECK(only_upstream(d).rate == std::vector<std::string>{"500/day"});
  CHECK(only_upstream(d).envelope_from.empty());   // Gmail rewrites the sender itself
  CHECK(only_upstream(d).from_header == "keep");
}

TEST_CASE("163 and QQ: the account becomes the sender; a username that is not an address fills nothing") {
  Config c = load_text(kMinimal +
                       "[[upstream]]\nname = \"163\"\nprovider = \"163\"\nusername = \"someone@163.com\"\n"
                       "password_file = \"/etc/outbox/secrets/163\"\n");
  CHECK(only_upstream(c).host == "smtp.163.com");
  CHECK(only_upstream(c).port == 465);
  CHECK(only_upstream(c).envelope_from == "someone@163.com");
  CHECK(only_upstream(c).from_header == "rewrite");
  Config q = load_text(kMinimal +
                       "[[upstream]]\nname = \"qq\"\nprovider = \"qq\"\nusername = \"12345\"\n"
                       "password_file = \"/etc/outbox/secrets/qq\"\n");
  CHECK(only_upstream(q).envelope_from.empty());
  CHECK(only_upstream(q).from_header == "keep");
}

TEST_CASE("ses:REGION fills the regional host; the region is required and checked") {
  Config c = load_text(kMinimal + "[[upstream]]\nname = \"ses\"\nprovider = \"ses:eu-west-1\"\n");
  CHECK(only_upstream(c).host == "email-smtp.eu-west-1.amazonaws.com");
  CHECK(only_upstream(c).port == 465);
  CHECK(only_upstream(c).max_message_size == 40u << 20);
  CHECK(error_of(kMinimal + "[[upstream]]\nname = \"ses\"\nprovider = \"ses\"\n") ==
        "FILE:8: upstream[0].provider: \"ses\" needs its region: provider = \"ses:eu-west-1\"");
  CHECK(error_of(kMinimal + "[[upstream]]\nname = \"ses\"\nprovider = \"ses:EU WEST\"\n") ==
        "FILE:8: upstream[0].provider: \"ses\" needs its region: provider = \"ses:eu-west-1\"");
  CHECK(error_of(kMinimal + "[[upstream]]\nname = \"g\"\nprovider = \"gmail:eu\"\n") ==
        "FILE:8: upstream[0].provider: provider \"gmail\" takes no region");
}

TEST_CASE("unknown provider, and provider with deliver, are refused") {
  std::string e = error_of(kMinimal + "[[upstream]]\nname = \"x\"\nprovider = \"yahoo\"\n");
  CHECK(e.rfind("FILE:8: upstream[0].provider: unknown provider \"yahoo\" (known: gmail, ", 0) == 0);
  CHECK(e.find("ses:REGION") != std::string::npos);
  CHECK(error_of(kMinimal + "[[upstream]]\nname = \"x\"\nprovider = \"gmail\"\ndeliver = \"maildir:/tmp/x\"\n") ==
        "FILE:8: upstream[0].provider: has no effect with deliver");
  // Without a provider, host is still required.
  CHECK(error_of(kMinimal + "[[upstream]]\nname = \"x\"\n") == "FILE:6: upstream[0].host: required key is missing");
}
