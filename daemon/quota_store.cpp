#include "daemon/quota_store.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>

#include "queue/thread_role.h"

namespace outbox::daemon {

// KEYS: per window, the sorted set of starts and its running weight.
// ARGV: now (µs), member, recipients, mode ("reserve" | "record"), then per
// window: length (µs), count, 1 when it counts recipients.
// Returns {1} (added), {0, free_at, window (1-based), used} (a window is
// full: nothing added), or {2} (record: already there).
const char* const kQuotaScript = R"lua(
local now = tonumber(ARGV[1])
local member = ARGV[2]
local rcpts = tonumber(ARGV[3])
local mode = ARGV[4]
local n = #KEYS / 2
local function weight(m, isr)
  if isr == 1 then return tonumber(string.match(m, ':(%d+)$')) or 1 end
  return 1
end
local sums = {}
local full_at, full_i, full_used = 0, 0, 0
for i = 1, n do
  local z, s = KEYS[2 * i - 1], KEYS[2 * i]
  local per = tonumber(ARGV[4 + 3 * (i - 1) + 1])
  local count = tonumber(ARGV[4 + 3 * (i - 1) + 2])
  local isr = tonumber(ARGV[4 + 3 * (i - 1) + 3])
  local sum = tonumber(redis.call('GET', s) or '0')
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - per)
  if #old > 0 then
    for _, m in ipairs(old) do sum = sum - weight(m, isr) end
    if sum < 0 then sum = 0 end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - per)
    redis.call('SET', s, sum, 'KEEPTTL')
  end
  sums[i] = sum
  if mode == 'reserve' then
    local need = 1
    if isr == 1 then need = rcpts end
    if sum > 0 and sum + need > count then
      local excess = sum + need - count
      local items = redis.call('ZRANGE', z, 0, excess - 1, 'WITHSCORES')
      local freed, at = 0, now + per
      for k = 1, #items, 2 do
        freed = freed + weight(items[k], isr)
        at = tonumber(items[k + 1]) + per
        if freed >= excess then break end
      end
      if at > full_at then full_at, full_i, full_used = at, i, sum end
    end
  end
end
if full_i > 0 then return {0, full_at, full_i, full_used} end
if mode == 'record' and redis.call('ZSCORE', KEYS[1], member) then return {2} end
for i = 1, n do
  local z, s = KEYS[2 * i - 1], KEYS[2 * i]
  local per = tonumber(ARGV[4 + 3 * (i - 1) + 1])
  local isr = tonumber(ARGV[4 + 3 * (i - 1) + 3])
  redis.call('ZADD', z, now, member)
  redis.call('INCRBY', s, weight(member, isr))
  local ttl = math.floor(per / 1000) + 1000
  redis.call('PEXPIRE', z, ttl)
  redis.call('PEXPIRE', s, ttl)
end
return {1}
)lua";

std::vector<std::string> quota_script_args(const QuotaRequest& r, bool record) {
  std::vector<std::string> keys, argv;
  for (const auto& w : r.windows) {
    std::string k = "outbox:quota:" + r.account + ":" + std::to_string(w.per_us / 1'000'000) + ":" +
                    (w.recipients ? "r" : "m");
    keys.push_back(k);
    keys.push_back(k + ":sum");
  }
  argv = {std::to_string(r.now), r.member, std::to_string(std::max<std::uint32_t>(r.recipients, 1)),
          record ? "record" : "reserve"};
  for (const auto& w : r.windows) {
    argv.push_back(std::to_string(w.per_us));
    argv.push_back(std::to_string(w.count));
    argv.push_back(w.recipients ? "1" : "0");
  }
  std::vector<std::string> out{std::to_string(keys.size())};
  out.insert(out.end(), keys.begin(), keys.end());
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

QuotaAnswer quota_answer(const std::vector<long long>& reply, const QuotaRequest& r) {
  QuotaAnswer a;
  if (reply.empty()) {
    a.error = "an empty answer from the quota script";
    return a;
  }
  if (reply[0] == 1 || reply[0] == 2) {
    a.kind = QuotaAnswer::Kind::Granted;
    return a;
  }
  if (reply[0] == 0 && reply.size() == 4 && reply[2] >= 1 && static_cast<std::size_t>(reply[2]) <= r.windows.size()) {
    a.kind = QuotaAnswer::Kind::Denied;
    a.free_at = reply[1];
    a.window = r.windows[static_cast<std::size_t>(reply[2] - 1)];
    a.used = static_cast<std::uint64_t>(std::max<long long>(reply[3], 0));
    return a;
  }
  a.error = "an answer the quota script never gives";
  return a;
}

QuotaStore::QuotaStore(RedisTarget target, std::string password, std::chrono::milliseconds timeout)
    : target_(std::move(target)), password_(std::move(password)), timeout_(timeout) {
  thread_ = std::thread([this] { loop(); });
}

QuotaStore::~QuotaStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  drop_connection();
}

void QuotaStore::reserve(QuotaRequest r, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      jobs_.push_back(Job{std::move(r), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  QuotaAnswer a;
  a.error = "shutting down";
  done(a);
}

void QuotaStore::drop_connection() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

namespace {

struct ReplyGuard {
  redisReply* r;
  ~ReplyGuard() {
    if (r) freeReplyObject(r);
  }
};

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

redisReply* command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
}

}  // namespace

bool QuotaStore::connect(std::string* error) {
  if (ctx_) return true;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_try_) {
    *error = "unreachable (next try within " + std::to_string(kRetryEvery.count()) + " s)";
    return false;
  }
  next_try_ = now + kRetryEvery;
  ctx_ = redisConnectWithTimeout(target_.host.c_str(), target_.port, to_timeval(timeout_));
  if (!ctx_ || ctx_->err) {
    *error = ctx_ ? std::string(ctx_->errstr) : "out of memory";
    drop_connection();
    return false;
  }
  redisSetTimeout(ctx_, to_timeval(timeout_));
  auto check = [&](const std::vector<std::string>& args) {
    ReplyGuard g{command(ctx_, args)};
    if (!g.r || g.r->type == REDIS_REPLY_ERROR) {
      *error = g.r ? std::string(g.r->str, g.r->len) : std::string(ctx_->errstr);
      return false;
    }
    return true;
  };
  if ((!password_.empty() && !check({"AUTH", password_})) || (target_.db != 0 && !check({"SELECT", std::to_string(target_.db)}))) {
    drop_connection();
    return false;
  }
  return true;
}

QuotaAnswer QuotaStore::run(const QuotaRequest& r, bool record) {
  QuotaAnswer a;
  if (!connect(&a.error)) return a;
  std::vector<std::string> args{"EVAL", kQuotaScript};
  auto rest = quota_script_args(r, record);
  args.insert(args.end(), rest.begin(), rest.end());
  ReplyGuard g{command(ctx_, args)};
  if (!g.r) {
    a.error = ctx_->errstr[0] ? std::string(ctx_->errstr) : "no answer";
    drop_connection();
    next_try_ = std::chrono::steady_clock::now() + kRetryEvery;
    return a;
  }
  if (g.r->type == REDIS_REPLY_ERROR) {
    a.error = std::string(g.r->str, g.r->len);
    return a;
  }
  std::vector<long long> v;
  if (g.r->type == REDIS_REPLY_ARRAY)
    for (std::size_t i = 0; i < g.r->elements; ++i)
      v.push_back(g.r->element[i]->type == REDIS_REPLY_INTEGER ? g.r->element[i]->integer : -1);
  return quota_answer(v, r);
}

void QuotaStore::loop() {
  queue::set_thread_role("quota", queue::ThreadRole::Latency);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) {
        if (stopping_) return;
        continue;
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // Back after an outage: what was started meanwhile goes in first, so
    // the other hosts see it (a member already there is not counted again).
    while (!unsynced_.empty() && run(unsynced_.front(), true).kind != QuotaAnswer::Kind::Unavailable)
      unsynced_.pop_front();
    QuotaAnswer a = unsynced_.empty() ? run(job.req, false) : QuotaAnswer{};
    if (a.kind == QuotaAnswer::Kind::Unavailable) {
      if (a.error.empty()) a.error = "unreachable";
      // The relay sends it on its local ledger: remember it for Redis.
      if (unsynced_.size() < kMaxUnsynced) unsynced_.push_back(job.req);
    }
    job.done(std::move(a));
  }
}

}  // namespace outbox::daemon
