// HTTP/1.1 server on a libuv loop with llhttp parsing: listener, connection lifecycle,
// keep-alive and pipelining, limits, timeouts swept by one periodic timer, graceful drain.
//
// Shape (see docs/ARCHITECTURE.md): one shared read buffer for the loop; each connection owns
// a small fixed struct and borrows 16 KiB blocks from a pool only while it has a request or a
// response in flight. Responses of all requests parsed from one read are gathered in one block
// and written with a single try-write; only when the socket pushes back is a uv_write queued,
// reading stops, and unparsed input is parked until the write completes (one write in flight
// per connection, answers in request order).
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "block_pool.hpp"
#include "response.hpp"

namespace core {

struct http_request {
  llhttp_method_t method;
  std::string_view method_name;
  std::string_view target;  // request-target as received (path and query)
  uint8_t version_major;
  uint8_t version_minor;
  bool keep_alive;    // the connection stays open after this answer
  bool accepts_html;  // an Accept header mentions text/html (a browser)
  uint64_t start_ns;  // uv_hrtime() when the request's first byte was parsed
};

struct http_reply {
  int status = 200;
  const char* content_type = "application/json";
  std::string_view extra_headers;  // complete "Name: value\r\n" lines (static storage)
  buf_writer body;                 // the server's scratch buffer; write the body here
};

// Called once per complete request, on the loop thread. Must not throw or block.
using http_handler = void (*)(void* ctx, const http_request& request, http_reply& reply);

struct http_server_config {
  uint64_t header_timeout_ms = 10'000;    // a request must arrive whole within this
  uint64_t idle_timeout_ms = 75'000;      // keep-alive connection with nothing in flight
  uint64_t drain_timeout_ms = 8'000;      // graceful stop deadline
  uint64_t linger_ms = 2'000;             // after the last answer, wait this long for the FIN
  uint32_t max_connections = 10'000;      // above it: 503 and close
  uint32_t max_target_bytes = 8 * 1024;   // request-target; longer -> 414
  uint64_t max_body_bytes = 1024 * 1024;  // request body; larger -> 413
  uint32_t max_header_bytes = 16 * 1024;  // all header fields and values; larger -> 431
  uint32_t max_headers = 100;             // header fields; more -> 431
  // The handler's body scratch. Bodies up to http_server::inline_body go out from the
  // connection's pooled block; larger ones (the sidecar's /metrics with many replicas) are
  // copied to a buffer of their own for the write, allocated for that answer only.
  size_t max_response_body = 8 * 1024;
  bool access_log = true;
  // Complete "Name: value\r\n" lines added to every answer, errors included (static storage).
  std::string_view common_headers;
  // Called once per answered request, handler's or the server's own rejection (then target is
  // what arrived of it, possibly empty). For metrics; must not throw or block.
  void (*observer)(void* ctx, std::string_view target, int status, uint64_t start_ns) = nullptr;
  void* observer_ctx = nullptr;
};

struct http_conn;

class http_server {
 public:
  static constexpr size_t block_size = 16 * 1024;
  static constexpr size_t inline_body = 8 * 1024;  // largest body written from the block

  http_server(uv_loop_t* loop, const http_server_config& config, http_handler handler, void* ctx);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Binds host:port (numeric) and starts accepting. Returns 0 or a libuv error code.
  int listen(const char* host, int port);
  // "ip:port" actually bound (useful with port 0).
  const char* bound_address() const { return bound_; }

  // Serves an already connected stream socket (tests and the fuzzer use one end of a
  // socketpair). The server owns fd from here on. Returns 0 or a libuv error code.
  int adopt(uv_os_sock_t fd);

  // Graceful stop: closes the listener and idle connections at once; requests in flight are
  // answered with "Connection: close"; at the drain deadline whatever remains is cut.
  // on_done runs once, when no connection is left and the server's handles are closed.
  void drain(void (*on_done)(void* ctx), void* ctx);
  bool draining() const { return draining_; }
  size_t connection_count() const { return conn_count_; }
  size_t requests_in_flight() const { return in_flight_; }

  // Internal, for the connection callbacks.
  using pool = block_pool<block_size>;
  struct internals;

 private:
  friend struct internals;

  uv_loop_t* loop_;
  http_server_config config_;
  http_handler handler_;
  void* ctx_;
  uv_tcp_t listener_{};
  uv_timer_t sweep_{};
  uv_timer_t deadline_{};
  bool listening_ = false;
  bool draining_ = false;
  bool finished_ = false;
  int handles_open_ = 0;
  void (*on_drained_)(void*) = nullptr;
  void* drained_ctx_ = nullptr;
  char bound_[64] = "";
  http_conn* conns_ = nullptr;  // intrusive list of live connections
  size_t conn_count_ = 0;
  size_t in_flight_ = 0;  // requests begun and not yet answered
  pool pool_;
  char read_buf_[block_size];
  std::unique_ptr<char[]> body_buf_;  // config_.max_response_body bytes
  int64_t date_sec_ = -1;
  char date_[30] = "";
};

}  // namespace core
