// sendmail command lines as real callers write them.
#include <doctest/doctest.h>

#include "tools/sendmail/options.h"

using namespace outbox::sendmail;

namespace {

Options ok(std::vector<std::string> args, bool mailq = false) {
  auto r = parse_arguments(args, mailq);
  if (auto* e = std::get_if<UsageError>(&r)) FAIL("unexpected usage error: " << e->message);
  return std::get<Options>(r);
}

std::string usage(std::vector<std::string> args) {
  auto r = parse_arguments(args, false);
  if (auto* e = std::get_if<UsageError>(&r)) return e->message;
  return "no error";
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("cron: sendmail -FCronDaemon -i -B8BITMIME -oem root") {
  Options o = ok({"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"});
  CHECK(o.mode == Mode::Send);
  CHECK(o.full_name == std::optional<std::string>("CronDaemon"));
  CHECK(o.ignore_dots);
  CHECK_FALSE(o.extract_recipients);
  CHECK_FALSE(o.sender);
  CHECK(o.recipients == V{"root"});
  CHECK(o.warnings.empty());
}

TEST_CASE("git send-email: -i -f sender -- r1 r2") {
  Options o = ok({"-i", "-f", "dev@example.com", "--", "a@example.org", "b@example.net"});
  CHECK(o.ignore_dots);
  CHECK(o.sender == std::optional<std::string>("dev@example.com"));
  CHECK(o.recipients == V{"a@example.org", "b@example.net"});
}

TEST_CASE("sender forms") {
  CHECK(ok({"-fa@b.c", "r"}).sender == std::optional<std::string>("a@b.c"));
  CHECK(ok({"-r", "a@b.c", "r"}).sender == std::optional<std::string>("a@b.c"));
  CHECK(ok({"-ra@b.c", "r"}).sender == std::optional<std::string>("a@b.c"));
  CHECK(ok({"-f", "<a@b.c>", "r"}).sender == std::optional<std::string>("a@b.c"));
  CHECK(ok({"-f", "Some One <a@b.c>", "r"}).sender == std::optional<std::string>("a@b.c"));
  CHECK(ok({"-f", "<>", "r"}).sender == std::optional<std::string>(""));
  CHECK(ok({"-f<>", "r"}).sender == std::optional<std::string>(""));
  CHECK(ok({"-f", "", "r"}).sender == std::optional<std::string>(""));
  CHECK(ok({"-f", "root", "r"}).sender == std::optional<std::string>("root"));   // the daemon qualifies it
  CHECK(usage({"-f", "a@b, c@d", "r"}) == "invalid sender address: a@b, c@d");
  CHECK(usage({"-f", "a@b\r\nRCPT TO:<x@y>", "r"}) == "invalid sender address: a@b\\x0D\\x0ARCPT TO:<x@y>");
  CHECK(usage({"-f"}) == "option -f requires an argument");
  CHECK(usage({"-r"}) == "option -r requires an argument");
}

TEST_CASE("-t, -i, -oi and combined flags") {
  Options t = ok({"-t"});
  CHECK(t.extract_recipients);
  CHECK(t.recipients.empty());
  CHECK_FALSE(t.ignore_dots);
  Options ti = ok({"-ti"});
  CHECK(ti.extract_recipients);
  CHECK(ti.ignore_dots);
  CHECK(ok({"-oi", "r"}).ignore_dots);
  CHECK(ok({"-o", "i", "r"}).ignore_dots);
  CHECK_FALSE(ok({"-oem", "r"}).ignore_dots);   // error mode "m", not -i
  CHECK_FALSE(ok({"-oee", "r"}).ignore_dots);
  CHECK_FALSE(ok({"-odb", "r"}).ignore_dots);
  CHECK_FALSE(ok({"-oQ/var/spool/mqueue", "r"}).ignore_dots);
  Options tv = ok({"-tvi", "extra@example.com"});
  CHECK(tv.verbose);
  CHECK(tv.recipients == V{"extra@example.com"});   // added to the header's
}

TEST_CASE("ignored options with arguments do not swallow recipients") {
  Options o = ok({"-B", "8BITMIME", "-N", "never", "-R", "hdrs", "-V", "envid", "-L", "label", "-O",
                  "DeliveryMode=b", "-X", "/tmp/log", "-h", "17", "-G", "-U", "-m", "-n", "-odi", "-om", "root"});
  CHECK(o.recipients == V{"root"});
  CHECK(o.warnings.empty());
  CHECK(ok({"-Ntrue", "-Rfull", "-Vx", "-Lx", "-Ox=y", "-Xf", "r"}).recipients == V{"r"});
  CHECK(usage({"-B"}) == "option -B requires an argument");
}

TEST_CASE("unknown single-letter options are warnings, not errors") {
  Options o = ok({"-Z", "-iK", "root"});
  CHECK(o.ignore_dots);
  CHECK(o.recipients == V{"root"});
  CHECK(o.warnings == V{"ignoring unknown option -Z", "ignoring unknown option -K"});
  CHECK(ok({"--frobnicate", "root"}).warnings == V{"ignoring unknown option --frobnicate"});
}

TEST_CASE("modes") {
  CHECK(ok({"-bp"}).mode == Mode::ListQueue);
  CHECK(ok({}, true).mode == Mode::ListQueue);          // invoked as mailq
  CHECK(ok({"-v"}, true).mode == Mode::ListQueue);
  CHECK(ok({"-bs"}).mode == Mode::SmtpStdin);
  CHECK(ok({"-b", "s"}).mode == Mode::SmtpStdin);
  CHECK(ok({"-bi"}).mode == Mode::Initialize);
  CHECK(ok({"-I"}).mode == Mode::Initialize);
  CHECK(ok({"-q"}).mode == Mode::RetryQueue);
  CHECK(ok({"-q1h"}).mode == Mode::RetryQueue);
  CHECK(ok({"-qRexample.com"}).mode == Mode::RetryQueue);
  CHECK(ok({"-bm", "r"}).mode == Mode::Send);
  CHECK(usage({"-bd"}) == "-bd is not supported: outboxd is the daemon (systemctl start outboxd)");
  CHECK(usage({"-bv", "r"}) == "-bv is not supported (outbox knows -bm, -bp, -bs and -bi)");
}

TEST_CASE("configuration file") {
  CHECK(ok({"-C", "/etc/x.toml", "r"}).config_path == std::optional<std::string>("/etc/x.toml"));
  CHECK(ok({"-C/etc/x.toml", "r"}).config_path == std::optional<std::string>("/etc/x.toml"));
  CHECK(ok({"--config", "/etc/y.toml", "r"}).config_path == std::optional<std::string>("/etc/y.toml"));
  CHECK(ok({"--config=/etc/z.toml", "r"}).config_path == std::optional<std::string>("/etc/z.toml"));
  CHECK(usage({"--config"}) == "option --config requires an argument");
  CHECK(ok({"--config", "/etc/y.toml", "-bp"}).mode == Mode::ListQueue);
}

TEST_CASE("recipients") {
  CHECK(ok({"root", "-oi"}).ignore_dots);   // options after recipients, as glibc getopt allows
  CHECK(ok({"root", "-oi"}).recipients == V{"root"});
  CHECK(ok({"--", "-odd@example.com"}).recipients == V{"-odd@example.com"});
  CHECK(ok({"a@x.org, Bee <b@y.org>", "c@z.org"}).recipients == V{"a@x.org", "b@y.org", "c@z.org"});
  CHECK(usage({}) == "no recipients given (name them as arguments, or use -t to read To:, Cc: and Bcc:)");
  CHECK(usage({"-i", "-f", "a@b"}) == "no recipients given (name them as arguments, or use -t to read To:, Cc: and Bcc:)");
  CHECK(usage({"x@y\r\nDATA"}) == "invalid recipient address: x@y\\x0D\\x0ADATA");
  CHECK(usage({"a@b", "x\x7f"}) == "invalid recipient address: x\\x7F");
  CHECK(usage({"  "}) == "invalid recipient address:   ");
  CHECK(usage({"-F", "a\nb", "r"}) == "invalid full name: it holds a line break");
}

TEST_CASE("--help and --version need nothing else") {
  CHECK(ok({"--help"}).help);
  CHECK(ok({"--version"}).version);
}
