// A Redis client on the service's libuv loop: hiredis's async API (0.14) with connect and
// command timeouts, reconnection with capped backoff, and a state the service can read.
//
// Why these rules:
// - A command is accepted only while the state is up; otherwise command() returns an error at
//   once and the callback is never called, so a service can fall back to its other store in
//   the same turn. An accepted command's callback is called exactly once: with the reply, or
//   with an error (timeout, disconnected, closed).
// - A command not answered within command_timeout_ms fails with store_error::timeout and the
//   connection is dropped and re-made: a Redis connection that lost a reply is out of step
//   (the next reply would go to the wrong command). Every other pending command fails too.
// - Commands issued in one loop turn go out in one write: hiredis appends them to its output
//   buffer and writes when the socket is next writable, after the turn's callbacks.
// - "up" means the handshake (AUTH, SELECT, PING) was answered, not merely that TCP
//   connected: a server that accepts connections and never answers stays "connecting" until
//   connect_timeout_ms, then "down".
// - The event glue is our own small adapter, not hiredis 0.14's adapters/libuv.h: that one
//   ignores a poll error status (libuv stops the handle and reports UV_EBADF on POLLERR, e.g. a
//   refused connect), so hiredis never learns the connection failed and it hangs until a
//   timeout; it also leaks its struct when uv_poll_init fails. Ours hands the error to hiredis
//   as a read/write event (it then finds the socket error itself) and, like the stock one,
//   frees its poll handle only in the close callback.
//
// Allocation: hiredis allocates per command (the formatted command, its callback node, the
// reply objects); the client's own per-command record comes from a free list that only grows
// to the largest number of commands in flight. A connection allocates its hiredis context and
// one poll handle.
#pragma once

#include <hiredis/hiredis.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "store.hpp"

namespace core {

// redis://host[:port][/db]; host may be [v6]; a path (host starting with '/') comes from
// unix:///path/to/socket[?db=N]. The password never comes from the URL (use a password file).
struct redis_endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
};
// Returns nullptr, or a short description of what is wrong with the URL.
const char* parse_redis_url(std::string_view url, redis_endpoint* out);

struct redis_options {
  redis_endpoint endpoint;
  std::string password;                // empty: no AUTH
  uint64_t connect_timeout_ms = 2000;  // lookup + TCP connect + handshake
  uint64_t command_timeout_ms = 1000;
  uint64_t backoff_initial_ms = 100;
  uint64_t backoff_max_ms = 5000;
  const char* name = "redis";  // in log lines: STORE store=<name> ...
};

struct redis_result {
  const redisReply* reply;  // the server's answer (valid during the callback only), or null
  store_error error;        // none, server (reply is the error), timeout, disconnected, closed
  const char* detail;       // why, for errors; "" otherwise
};

struct redis_impl;

class redis_client {
 public:
  using reply_fn = void (*)(void* ctx, const redis_result& result);
  using state_fn = void (*)(void* ctx, store_state state, const char* detail);

  redis_client(uv_loop_t* loop, redis_options options);
  // Closes if still open. The handles are released by the loop afterwards (run it).
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  // Called on every state change (never for close()), with a short reason for "down".
  void set_state_callback(state_fn on_state, void* ctx);
  // Starts the first connection attempt.
  void start();

  // 0: sent, on_reply will be called exactly once. < 0 (a UV_* code): not sent, on_reply will
  // not be called (UV_ENOTCONN: not up; UV_EINVAL: hiredis could not format it; UV_ENOMEM).
  int command_argv(reply_fn on_reply, void* ctx, int argc, const char* const* argv,
                   const size_t* lens);
  // hiredis's printf-like format (%s, %b, %d ...).
  int command(reply_fn on_reply, void* ctx, const char* format, ...);

  // Fails every pending command with store_error::closed (before returning), stops
  // reconnecting and closes the handles; uv_loop_close succeeds once the loop ran them out.
  void close();

  store_state state() const;
  size_t pending() const;  // accepted commands not answered yet

  struct counters {
    uint64_t connects;     // times the state went up
    uint64_t disconnects;  // connections lost or dropped after being up
    uint64_t timeouts;     // command timeouts (each drops the connection)
    uint64_t failures;     // connection attempts that failed
  };
  counters stats() const;

 private:
  redis_impl* impl_;
};

}  // namespace core
