// Password hashing and verification (argon2id, libsodium's crypto_pwhash_str*) on libuv's
// thread pool, never on the loop, behind a bounded queue.
//
// Why a bound: one argon2id costs tens of milliseconds and 19 MiB; the pool has 4 threads
// (UV_THREADPOOL_SIZE). Without a bound a login flood would queue thousands of jobs, each
// client waiting longer than it will, and memory growing. With `capacity` jobs at most
// (running + waiting), the excess is refused at once (the route answers 503 + Retry-After),
// and the loop (health checks, /auth, page views) never waits for any of it.
//
// Parameters (OWASP password storage cheat sheet, 2023+): argon2id, m = 19 MiB, t = 2, p = 1,
// the first of OWASP's equivalent configurations: the smallest memory that still costs an
// attacker's GPU, with two passes to make up for it. libsodium's INTERACTIVE (64 MiB, t = 2)
// is also above OWASP's floor, but 64 MiB per thread would give 256 MiB of peaks for four
// threads in a small container. The parameters are in each stored hash ($argon2id$v=19$m=...),
// so they can be raised later without breaking old hashes.
//
// Records are made once (capacity of them) and reused; passwords are wiped after use.
#pragma once

#include <sodium.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "metrics.hpp"

namespace accounts {

inline constexpr size_t min_password_bytes = 8;
inline constexpr size_t max_password_bytes = 128;

struct hash_params {
  uint64_t ops = 2;                // t
  size_t mem_bytes = 19ull << 20;  // m = 19 MiB
};

inline constexpr double hash_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0};

class hasher {
 public:
  enum class outcome : uint8_t { match, mismatch, hashed, error };
  // hash: the new hash string for hash jobs (valid during the call only), else "".
  using done_fn = void (*)(void* ctx, outcome o, const char* hash);

  hasher(uv_loop_t* loop, size_t capacity, hash_params params);
  ~hasher();
  hasher(const hasher&) = delete;
  hasher& operator=(const hasher&) = delete;

  // false: the queue is full (nothing queued, on_done never called). Otherwise on_done runs
  // exactly once on the loop thread, also when the loop is stopping.
  bool hash(std::string_view password, done_fn on_done, void* ctx);
  bool verify(std::string_view stored, std::string_view password, done_fn on_done, void* ctx);

  // Whether a job would be taken now; a "no" counts as refused (the caller answers 503).
  bool has_room() {
    if (free_count_ > 0) return true;
    ++refused_;
    return false;
  }
  size_t depth() const { return capacity_ - free_count_; }
  size_t capacity() const { return capacity_; }
  uint64_t refused() const { return refused_; }
  const core::fixed_histogram<sizeof hash_buckets / sizeof hash_buckets[0]>& durations() const {
    return durations_;
  }

  // A hash made here and now (start-up only: blocking), e.g. the dummy hash verified for
  // unknown e-mails so they cost what a wrong password costs.
  static std::string hash_now(std::string_view password, hash_params params);

 private:
  struct job;
  job* take();
  bool submit(job* j);
  static void on_work(uv_work_t* req);
  static void on_after_work(uv_work_t* req, int status);

  uv_loop_t* loop_;
  size_t capacity_;
  hash_params params_;
  std::unique_ptr<job[]> jobs_;
  job* free_ = nullptr;
  size_t free_count_ = 0;
  uint64_t refused_ = 0;
  core::fixed_histogram<sizeof hash_buckets / sizeof hash_buckets[0]> durations_{hash_buckets};
};

}  // namespace accounts
