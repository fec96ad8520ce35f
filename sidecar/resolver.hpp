// Asynchronous name resolution with c-ares on the libuv loop: every address a host name has,
// which is what "probe every replica" needs (Docker's DNS answers a compose service or Swarm's
// tasks.<service> with one address per container). curl resolves for itself and keeps only
// the address it connects to, and glibc's resolver needs NSS modules a scratch image lacks.
//
// Integration as in curl's multi-uv example, with c-ares's socket-state callback: one uv_poll
// per resolver socket from a fixed pool (freed only in its close callback), one uv_timer for
// c-ares's retransmit timeouts, and one for the lookups' own deadline: a lookup ends within the
// timeout given to init() however many servers and search domains c-ares would try.
#pragma once

#include <ares.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>

#include "poll_slots.hpp"

namespace sidecar {

struct resolved_addresses {
  static constexpr size_t max = 64;
  sockaddr_storage addr[max];
  size_t count = 0;
  bool truncated = false;  // the name had more addresses than `max`
};

class resolver {
 public:
  // status 0 with the addresses (sorted, no duplicates, IPv4 first), or a c-ares status and a
  // one-line reason.
  using done_fn = void (*)(void* ctx, int status, const char* reason,
                           const resolved_addresses& result);
  static constexpr size_t max_sockets = 8;

  explicit resolver(uv_loop_t* loop) : loop_(loop) {}
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  // servers: nullptr (the system's resolv.conf and hosts file) or "ip[:port],..." to ask only
  // those servers (and skip the hosts file). Returns false with *error set.
  bool init(const char* servers, uint64_t timeout_ms, const char** error);
  // Starts one lookup (false: too many in flight). done runs exactly once, on the loop thread,
  // possibly before resolve returns (a hosts-file answer); never after close(). A lookup still
  // unanswered at its deadline (init's timeout after it started) ends with ARES_ETIMEOUT.
  bool resolve(const char* host, done_fn done, void* ctx);
  // Cancels lookups (their callbacks do not run) and closes every handle.
  void close();

  struct internals;

 private:
  friend struct internals;
  using socket_ctx = poll_slot<resolver, ares_socket_t>;
  struct query {
    resolver* owner;
    done_fn done;
    void* ctx;
    uint64_t deadline_ms;  // uv_now by which it must have ended
  };
  static constexpr size_t max_queries = 8;

  bool open_channel(const char* servers, uint64_t per_try_ms, const char** error);

  uv_loop_t* loop_;
  ares_channel channel_ = nullptr;
  uv_timer_t timer_{};
  uv_timer_t deadline_{};
  uint64_t timeout_ms_ = 0;
  bool timer_open_ = false;
  bool closed_ = false;
  bool timing_out_ = false;  // ares_cancel is ending the lookups past their deadline
  socket_ctx sockets_[max_sockets] = {};
  query queries_[max_queries] = {};
  resolved_addresses result_;  // filled in the c-ares callback, handed to done
};

}  // namespace sidecar
