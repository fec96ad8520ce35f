// What the two store clients (redis_client.hpp, pg_client.hpp) share: the connection state a
// service reads, the error kinds a callback gets, the reconnect backoff, the secret file, and
// the host lookup that keeps getaddrinfo(3) off the loop.
//
// Why a lookup of our own: hiredis 0.14's redisAsyncConnect and libpq's PQconnectStart both
// resolve a host name with a blocking getaddrinfo() on the calling thread, that is, on the
// loop; a slow or dead DNS server would stall every connection of the service. So a name is
// resolved on libuv's thread pool first and the libraries only ever see an address literal.
// The lookup is c-ares (hosts file, then DNS, per /etc/resolv.conf), not glibc's getaddrinfo:
// a static binary in a scratch image has no NSS modules, so glibc could not resolve there.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace core {

enum class store_state : uint8_t {
  connecting,  // an attempt is under way (lookup, connect, handshake/migrations)
  up,          // commands are accepted
  down,        // no connection; the next attempt waits for the backoff
  closed,      // close() was called: nothing more happens
};
const char* store_state_name(store_state s);

enum class store_error : uint8_t {
  none,
  server,        // the server answered with an error (the reply/result says which)
  timeout,       // no answer in time: the connection was dropped
  disconnected,  // the connection was lost before the answer came
  closed,        // close() was called before the answer came
};
const char* store_error_name(store_error e);

// Capped exponential backoff with "equal jitter": the n-th delay is d/2 + random(0..d/2) with
// d = min(initial * 2^n, max), so replicas that lost the same server do not come back in step,
// and no delay is shorter than half the nominal one.
class backoff {
 public:
  backoff(uint64_t initial_ms, uint64_t max_ms, uint64_t seed);
  uint64_t next_ms();
  void reset() { attempt_ = 0; }
  uint32_t attempt() const { return attempt_; }
  // The nominal (jitter-free) delay of attempt n, for tests and logs.
  uint64_t nominal_ms(uint32_t n) const;

 private:
  uint64_t initial_ms_;
  uint64_t max_ms_;
  uint64_t rng_;
  uint32_t attempt_ = 0;
};

// Reads a password file (a Docker/Kubernetes secret): the whole content without one trailing
// "\n" or "\r\n". Returns nullptr, or a short description of what is wrong (unreadable, empty,
// larger than 4 KiB, a NUL byte or a line break inside).
const char* read_secret_file(const char* path, std::string* out);

// True for an IPv4 or IPv6 address literal (no lookup needed).
bool is_ip_literal(std::string_view host);

// One lookup in flight at a time, owned by a client: c-ares, blocking, in a uv_work_t on the
// thread pool (a lookup per connection attempt: no need for c-ares on the loop itself). The
// request lives here, so the owner must not be freed while active(): the callback always
// runs, with UV_ECANCELED if cancel() came before a worker took it. A lookup ends within
// timeout_ms however many servers resolv.conf lists.
class host_lookup {
 public:
  // ip is the first address found (IPv4 preferred), as text; status 0 or a UV_EAI_* error.
  using done_fn = void (*)(void* ctx, int status, const char* ip);

  int start(uv_loop_t* loop, const char* host, done_fn on_done, void* ctx,
            uint64_t timeout_ms = 5000);
  void cancel();
  bool active() const { return active_; }

 private:
  static void on_work(uv_work_t* req);
  static void on_after_work(uv_work_t* req, int status);
  uv_work_t req_{};
  done_fn on_done_ = nullptr;
  void* ctx_ = nullptr;
  bool active_ = false;
  // Shared with the worker thread only while it runs (handed over by uv_queue_work).
  char host_[256] = "";
  uint64_t timeout_ms_ = 0;
  int status_ = 0;
  char ip_[46] = "";  // INET6_ADDRSTRLEN
};

}  // namespace core
