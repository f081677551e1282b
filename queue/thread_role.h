#pragma once
// What each of outboxd's threads is, told to the kernel once, from the thread
// itself, when it starts: a name (top -H, perf, /proc/PID/task/*/comm; at most
// 15 octets) and how the scheduler should treat it.
//
// A client waiting for its reply depends on the submission loop and the store
// writer: those are Latency threads (the default class, SCHED_OTHER). The
// relay, its body reads, a maildir upstream's file work and the WAL
// checkpointer are Background work that no one waits on reply by reply; the
// queue absorbs any delay. They run under SCHED_BATCH (sched(7)): the same
// share of the CPU as any other thread of the same nice value, so a busy host
// never starves them, but a wake-up of theirs does not preempt a thread that
// is running. On a machine whose cores are all busy this lets a submission's
// turn finish before the relay's (docs/performance.md, round eight). Needs
// no privilege; the shipped unit's system-call filter allows the call.
namespace outbox::queue {

enum class ThreadRole { Latency, Background };

// Names the calling thread and sets its scheduling class. Returns false when
// the kernel refused the class (the name is still set); never throws.
bool set_thread_role(const char* name, ThreadRole role) noexcept;

// The calling thread's class as the kernel has it (for tests).
ThreadRole current_thread_role() noexcept;

}  // namespace outbox::queue
