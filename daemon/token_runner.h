// TokenRunner: fetches OAuth2 access tokens (oauth2_token_command or
// oauth2_token_file) on its own thread, never on the event loop and never on
// libuv's thread pool (a slow command must not hold up scrypt, DNS or body
// reads). Requests are queued; each completion is handed to the injected
// Poster (the daemon's LoopPoster; tests run it inline).
//
// The command (run_token_command) is started with posix_spawn, argv without
// a shell, in its own process group, with a minimal environment: PATH, HOME,
// LANG and the variables the upstream names in oauth2_token_env. Nothing else
// of outboxd's environment (other upstreams' password_env secrets,
// CREDENTIALS_DIRECTORY, NOTIFY_SOCKET, LISTEN_FDS) reaches it. Its stdout is
// read up to a bound; its stderr is summarized for the error; past the
// timeout the process group gets SIGTERM, then SIGKILL, and is reaped.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/config.h"

namespace outbox::daemon {

struct TokenResult {
  bool ok = false;
  std::string token;   // first line of the command's stdout (or the file)
  std::string error;   // names the upstream and the command; never the token
};

struct TokenLimits {
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds kill_grace{1000};   // SIGTERM -> SIGKILL
  std::size_t max_output = 64 * 1024;           // stdout bytes; more is an error
};

// The environment the token command gets, from outboxd's own (get: getenv).
std::vector<std::string> token_environment(const std::vector<std::string>& extra,
                                           const std::function<const char*(const char*)>& get);

// Runs one command synchronously on the calling thread. cancel (may be null)
// is polled: when it turns true the command is killed as on a timeout.
TokenResult run_token_command(const std::string& upstream, const std::vector<std::string>& argv,
                              const std::vector<std::string>& env_names, const TokenLimits& limits,
                              const std::atomic<bool>* cancel = nullptr);

// The token for an upstream: its oauth2_token_file or its command.
TokenResult fetch_token(const UpstreamConfig& u, const TokenLimits& limits,
                        const std::atomic<bool>* cancel = nullptr);

class TokenRunner {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  using Done = std::function<void(TokenResult)>;

  explicit TokenRunner(Poster post, TokenLimits limits = {});
  // Kills a command in progress; requests not started complete with an error.
  ~TokenRunner();
  TokenRunner(const TokenRunner&) = delete;
  TokenRunner& operator=(const TokenRunner&) = delete;

  // Any thread. The upstream is copied: a reload may free the original.
  void fetch(const UpstreamConfig& u, Done done);

 private:
  struct Request {
    UpstreamConfig upstream;
    Done done;
  };
  void loop();

  Poster post_;
  TokenLimits limits_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

// The relay's runner until the relay owns one: one worker thread for the
// process; completions run on the runner thread (the caller hops to its loop).
TokenRunner& process_token_runner();

}  // namespace outbox::daemon
