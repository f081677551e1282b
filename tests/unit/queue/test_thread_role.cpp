#include <doctest/doctest.h>

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <string>
#include <thread>

#include "queue/thread_role.h"

using outbox::queue::current_thread_role;
using outbox::queue::set_thread_role;
using outbox::queue::ThreadRole;

namespace {
std::string this_thread_name() {
  char buf[16] = {};
  pthread_getname_np(pthread_self(), buf, sizeof buf);
  return buf;
}
int this_thread_policy() {
  int policy = -1;
  sched_param p{};
  pthread_getschedparam(pthread_self(), &policy, &p);
  return policy;
}
}  // namespace

TEST_CASE("a background thread is named and runs under SCHED_BATCH; a latency thread under SCHED_OTHER") {
  std::string name_bg, name_fg;
  int policy_bg = -1, policy_fg = -1, policy_back = -1;
  ThreadRole role_bg = ThreadRole::Latency, role_fg = ThreadRole::Background, role_back = ThreadRole::Background;
  bool ok_bg = false, ok_fg = false, ok_back = false;
  std::thread([&] {
    ok_bg = set_thread_role("relay", ThreadRole::Background);
    name_bg = this_thread_name();
    policy_bg = this_thread_policy();
    role_bg = current_thread_role();
    // Back to the default class: allowed without privilege (sched(7)), so a
    // thread that changes role is never stuck in the batch class.
    ok_back = set_thread_role("relay", ThreadRole::Latency);
    policy_back = this_thread_policy();
    role_back = current_thread_role();
  }).join();
  std::thread([&] {
    ok_fg = set_thread_role("store", ThreadRole::Latency);
    name_fg = this_thread_name();
    policy_fg = this_thread_policy();
    role_fg = current_thread_role();
  }).join();
  CHECK(ok_bg);
  CHECK(name_bg == "relay");
  CHECK(policy_bg == SCHED_BATCH);
  CHECK(role_bg == ThreadRole::Background);
  CHECK(ok_back);
  CHECK(policy_back == SCHED_OTHER);
  CHECK(role_back == ThreadRole::Latency);
  CHECK(ok_fg);
  CHECK(name_fg == "store");
  CHECK(policy_fg == SCHED_OTHER);
  CHECK(role_fg == ThreadRole::Latency);
}

TEST_CASE("a role touches only its own thread") {
  const int before = this_thread_policy();
  std::thread([] { set_thread_role("checkpoint", ThreadRole::Background); }).join();
  CHECK(this_thread_policy() == before);
  CHECK(current_thread_role() == ThreadRole::Latency);
}

TEST_CASE("a name longer than the kernel keeps (15 octets) is cut, not refused") {
  std::string name;
  bool ok = false;
  std::thread([&] {
    ok = set_thread_role("a-name-that-is-far-too-long", ThreadRole::Latency);
    name = this_thread_name();
  }).join();
  CHECK(ok);
  CHECK(name == "a-name-that-is-");
}
