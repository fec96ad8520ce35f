// HTTP GETs with libcurl's multi interface driven by the libuv loop: curl's socket callback
// maps to uv_poll handles, its timer callback to one uv_timer. Many transfers (one per replica
// and per external probe) share the multi handle, its connection cache and the loop.
//
// Why fixed pools: libcurl opens sockets on its own schedule (a reconnect, the resolver); each
// needs a uv_poll_t whose memory may be reused only after its close callback. An array sized at
// start-up with an in-use flag gives that without allocating per poll; so does a transfer
// owning its easy handle and body buffer for the life of the process.
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "poll_slots.hpp"
#include "verdict.hpp"

namespace sidecar {

class poller;

// One URL's easy handle and what a GET of it collects. Owned by its caller, set up once.
// A finished GET is reported as facts (status, body, round trip, error kind), never judged
// here: verdict.hpp's judge() says what they mean.
struct transfer {
  using result_fn = void (*)(void* ctx, const poll_facts& facts);
  static constexpr size_t max_body = max_health_body;

  transfer() = default;
  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;
  bool in_flight() const { return in_flight_; }

 private:
  friend class poller;
  poller* owner_ = nullptr;
  CURL* easy_ = nullptr;
  curl_slist* connect_to_ = nullptr;
  check_kind kind_ = check_kind::health;
  bool in_flight_ = false;
  bool body_overflow_ = false;
  size_t body_len_ = 0;
  uint64_t budget_ms_ = 0;  // this GET's timeout
  result_fn on_result_ = nullptr;
  void* ctx_ = nullptr;
  char curl_error_[CURL_ERROR_SIZE] = "";
  char body_[max_body];
};

class poller {
 public:
  // ca_file: PEM bundle to verify https peers with (nullptr: libcurl's default bundle).
  poller(uv_loop_t* loop, uint64_t timeout_ms, size_t max_transfers, const char* ca_file = nullptr);
  ~poller();
  poller(const poller&) = delete;
  poller& operator=(const poller&) = delete;

  // Sets up the multi handle. Returns false with *error set on failure.
  bool init(const char** error);
  // Prepares t to GET url (which must outlive t); results go to on_result(ctx, ...).
  bool add(transfer& t, const char* url, check_kind kind, transfer::result_fn on_result, void* ctx,
           const char** error);
  // Connect to this address ("10.0.0.3:8080", "[fd00::3]:8080") instead of resolving the URL's
  // host; the Host header and TLS name stay the URL's. nullptr: resolve as usual. Only while
  // the transfer is not in flight. Returns false if curl refused it.
  bool pin_address(transfer& t, const char* address);
  // Starts one GET unless that transfer is already in flight (then returns false). It gives up
  // after budget_ms (what is left of the poll's timeout after a lookup), or the poller's timeout.
  bool start(transfer& t, uint64_t budget_ms = 0);
  // Aborts every transfer and releases curl and every uv handle; the loop then ends by itself.
  void close();
  uint64_t timeout_ms() const { return timeout_ms_; }
  uv_loop_t* loop() const { return loop_; }

  struct internals;

 private:
  friend struct internals;
  using socket_ctx = poll_slot<poller, curl_socket_t>;

  uv_loop_t* loop_;
  uint64_t timeout_ms_;
  const char* ca_file_;
  size_t max_transfers_;
  size_t transfer_count_ = 0;
  size_t max_sockets_;
  CURLM* multi_ = nullptr;
  curl_slist* headers_ = nullptr;
  uv_timer_t timer_{};
  bool timer_open_ = false;
  bool closed_ = false;
  std::unique_ptr<transfer*[]> transfers_;
  std::unique_ptr<socket_ctx[]> sockets_;
};

}  // namespace sidecar
