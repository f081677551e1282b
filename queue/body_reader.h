// BodyReader: a message's bytes in bounded pieces, for the relay to stream.
//
// Its own thread and its own read-only Spool connection: not libuv's thread
// pool (a slow disk read there would hold up DNS lookups and token commands)
// and no mutex shared with the writer or any other reader. Requests come from
// the owner's thread; each answer is posted back through the injected Poster
// (the daemon's LoopPoster; tests run them inline or on their own thread).
// One piece read from the spool is the stored prefix and/or chunk rows, at
// most piece_bytes - 1 + one chunk row (Spool::read_body_part); a text handed
// over from memory (remember) is one piece of at most kRememberTextBytes. So
// a delivery holds one bounded piece at a time whatever the message's size.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace outbox::queue {

class Spool;

class BodyReader {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  static constexpr std::size_t kPieceBytes = 64 * 1024;
  static constexpr std::int64_t kStart = -1;   // from the stored prefix (Spool::kPrefixSeq)

  enum class Status {
    More,      // bytes is a piece; ask again from next_seq
    End,       // bytes is the last piece (may be empty)
    Missing,   // the message is gone (deleted meanwhile, outboxctl delete)
    Error,     // the spool could not be read (error says why)
  };
  struct Piece {
    Status status = Status::Error;
    std::string bytes;
    std::int64_t next_seq = kStart;
    std::string error;
  };
  using Done = std::function<void(Piece)>;

  // The connection is opened on the reader's thread at the first request (and
  // again after a failure), so a constructor never blocks on the disk.
  BodyReader(std::string spool_path, Poster post, std::size_t piece_bytes = kPieceBytes);
  ~BodyReader();   // answers nothing more; joins the thread
  BodyReader(const BodyReader&) = delete;
  BodyReader& operator=(const BodyReader&) = delete;

  // Owner's thread. done runs through the Poster, exactly once unless the
  // reader is destroyed first.
  void read(std::string id, std::int64_t from_seq, Done done);

  // Owner's thread: the whole stored text (prefix and body, exactly as
  // read_body_part would give it) of a message just committed, handed over
  // by the submission side. The next read of it from kStart answers from
  // memory (one End piece, through the Poster) without the spool, and
  // forgets it; later reads (a retry) go to the spool. Texts of at most
  // kRememberTextBytes are kept, at most kRememberBytes in all (when full,
  // a new text is not kept unless an older one was passed over): at full speed the relay claims a message milliseconds
  // after its 250, while its pages are still in the writer's WAL and this
  // reader's cache has been invalidated by every commit since (3 preads and
  // a thread hand-off per message, docs/performance.md, round four; for a
  // 100 KB message the reader's thread cost as much CPU as the relay's
  // loop, round six). A remembered text comes as one End piece, which may
  // be longer than piece_bytes: the caller (daemon/body_pump.h) slices it.
  void remember(std::string id, std::string text);
  // Where an answer made on the owner's thread (a remembered text) goes; by
  // default the Poster too. The daemon gives its loop's immediate queue
  // (daemon/loop_immediate.h): the answer runs after the caller returns,
  // in the same loop turn, with no thread hand-off to wake the loop.
  void set_owner_poster(Poster p) { owner_post_ = std::move(p); }
  static constexpr std::size_t kRememberBytes = 4 * 1024 * 1024;
  static constexpr std::size_t kRememberTextBytes = 256 * 1024;
  // A text not read while texts kept this many after it were: passed over.
  static constexpr std::uint64_t kPassedOver = 256;
  std::size_t remembered_bytes() const { return fresh_bytes_; }

 private:
  struct Request {
    std::string id;
    std::int64_t from_seq = kStart;
    Done done;
  };
  void run();
  Piece serve(const Request& r);

  std::string path_;
  Poster post_;
  Poster owner_post_;   // empty: post_
  // remember(): owner's thread only, like read().
  struct Fresh {
    std::string text;
    std::uint64_t seq = 0;   // remember_seq_ when it was kept
  };
  std::unordered_map<std::string, Fresh> fresh_;
  std::uint64_t remember_seq_ = 0;
  std::uint64_t last_read_seq_ = 0;   // the latest-kept text read so far
  std::deque<std::string> fresh_order_;   // ids, oldest first (some already read)
  std::size_t fresh_bytes_ = 0;
  std::size_t piece_bytes_;
  std::unique_ptr<Spool> spool_;   // reader thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace outbox::queue
