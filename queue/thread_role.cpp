#include "queue/thread_role.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>

namespace outbox::queue {

bool set_thread_role(const char* name, ThreadRole role) noexcept {
  // The kernel keeps 15 octets and pthread_setname_np refuses more (ERANGE):
  // cut, so a long name still names the thread.
  char cut[16] = {};
  std::strncpy(cut, name, sizeof cut - 1);
  pthread_setname_np(pthread_self(), cut);
  sched_param param{};
  param.sched_priority = 0;   // the only priority SCHED_OTHER and SCHED_BATCH take
  const int policy = role == ThreadRole::Background ? SCHED_BATCH : SCHED_OTHER;
  return pthread_setschedparam(pthread_self(), policy, &param) == 0;
}

ThreadRole current_thread_role() noexcept {
  int policy = SCHED_OTHER;
  sched_param param{};
  if (pthread_getschedparam(pthread_self(), &policy, &param) != 0) return ThreadRole::Latency;
  return policy == SCHED_BATCH ? ThreadRole::Background : ThreadRole::Latency;
}

}  // namespace outbox::queue
