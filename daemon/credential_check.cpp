#include "daemon/credential_check.h"

#include <memory>
#include <utility>

#include "daemon/logging.h"
#include "daemon/password.h"

namespace outbox::daemon {

namespace {

// A valid scrypt hash of the default cost whose password nobody knows.
constexpr const char* kDummyHash =
    "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU";

void wipe(std::string& s) {
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

struct AuthWork {
  uv_work_t req;
  std::string hash;
  bool known = false;
  std::string password;
  bool ok = false;
  std::function<void(bool)> done;
  ~AuthWork() { wipe(password); }
};

}  // namespace

int check_credentials(uv_loop_t* loop, const std::vector<UserConfig>& users, std::string user, std::string& password,
                      std::function<void(bool ok)> done) {
  auto w = std::make_unique<AuthWork>();
  w->req.data = w.get();
  w->password = password;
  wipe(password);
  w->done = std::move(done);
  for (const auto& u : users) {
    if (u.name == user) {
      w->hash = u.password_hash;
      w->known = true;
      break;
    }
  }
  if (!w->known) w->hash = kDummyHash;
  auto work = [](uv_work_t* req) {
    auto* w = static_cast<AuthWork*>(req->data);
    bool match = password::verify_password(w->hash, w->password);
    w->ok = match && w->known;
    wipe(w->password);
  };
  auto after = [](uv_work_t* req, int status) noexcept {
    std::unique_ptr<AuthWork> w(static_cast<AuthWork*>(req->data));
    // A fault here must not cross into libuv: logged; the session waits
    // for its answer until its command deadline.
    try {
      w->done(status == 0 && w->ok);
    } catch (const std::exception& e) {
      log::error(log::Line("auth_error").kv("error", e.what()));
    } catch (...) {
      log::error(log::Line("auth_error").kv("error", "unknown exception"));
    }
  };
  int rc = uv_queue_work(loop, &w->req, work, after);
  if (rc == 0) w.release();   // owned by the request until `after`
  return rc;
}

}  // namespace outbox::daemon
