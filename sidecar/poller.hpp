// One HTTP GET at a time against the target, with libcurl's multi interface driven by the libuv
// loop: curl's socket callback maps to uv_poll handles, its timer callback to one uv_timer.
//
// Why a fixed pool of poll contexts: libcurl opens sockets on its own schedule (a reconnect, the
// resolver); each needs a uv_poll_t whose memory may be reused only after its close callback.
// A small array with an in-use flag gives that without allocating per poll.
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace sidecar {

enum class outcome : uint8_t { ok, status, unhealthy, slow, timeout, connect, dns, body };
const char* outcome_name(outcome o);

struct poll_result {
  outcome result = outcome::ok;
  long http_status = 0;
  bool has_latency = false;
  double latency = 0;  // reported by /health, seconds
  bool healthy = false;
  bool has_rtt = false;  // an HTTP answer came back (any status)
  double rtt = 0;        // measured round trip, seconds
  char detail[CURL_ERROR_SIZE] = "";
};

class poller {
 public:
  using result_fn = void (*)(void* ctx, const poll_result& result);
  static constexpr size_t max_body = 16 * 1024;
  static constexpr size_t max_sockets = 16;

  poller(uv_loop_t* loop, const char* url, uint64_t timeout_ms, result_fn on_result, void* ctx);
  ~poller();
  poller(const poller&) = delete;
  poller& operator=(const poller&) = delete;

  // Sets up the multi and easy handles. Returns false with *error set on failure.
  bool init(const char** error);
  // Starts one GET unless one is already in flight (then returns false).
  bool start();
  bool in_flight() const { return in_flight_; }
  // Aborts any transfer and releases curl and every uv handle; the loop then ends by itself.
  void close();

  struct internals;

 private:
  friend struct internals;
  struct socket_ctx {
    uv_poll_t poll;
    poller* owner;
    curl_socket_t fd;
    bool in_use;
  };

  uv_loop_t* loop_;
  const char* url_;
  uint64_t timeout_ms_;
  result_fn on_result_;
  void* ctx_;
  CURLM* multi_ = nullptr;
  CURL* easy_ = nullptr;
  curl_slist* headers_ = nullptr;
  uv_timer_t timer_{};
  bool in_flight_ = false;
  bool closed_ = false;
  size_t body_len_ = 0;
  bool body_overflow_ = false;
  char body_[max_body];
  char curl_error_[CURL_ERROR_SIZE] = "";
  socket_ctx sockets_[max_sockets] = {};
};

}  // namespace sidecar
