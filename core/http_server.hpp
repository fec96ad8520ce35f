// HTTP/1.1 server on a libuv loop with llhttp parsing: listener, connection lifecycle,
// keep-alive and pipelining, limits, timeouts swept by one periodic timer, graceful drain,
// request bodies, and answers that come later.
//
// Shape (docs/ARCHITECTURE.md has the whole story): one shared read buffer for the loop; each
// connection owns a small fixed struct and borrows 16 KiB blocks from a pool only while it has
// a request or a response in flight. Answers of all requests parsed from one read are gathered
// in one block and written with a single try-write; only when the socket pushes back is a
// uv_write queued, reading stops, and unparsed input is parked until the write completes (one
// write in flight per connection, answers in request order).
//
// A handler answers at once by filling its http_reply (hello: no allocation, no copy), or
// takes the exchange with http_reply::defer() and answers later, from any callback on the
// loop thread, through the http_deferred it got (h2o's request/generator model, in small).
// Pipelined requests behind a deferred one are still parsed and handled (up to
// max_pipelined); their answers wait in request order.
//
// The implementation is in parts: http_listener.cpp (accept, adopt, drain),
// http_connection.cpp (lifecycle, reading, timeouts, lingering close), http_parser.cpp (the
// llhttp glue and request checks), http_writer.cpp (response bytes, the write path) and
// http_exchange.cpp (calling the handler, deferred answers, their queue and deadline).
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "block_pool.hpp"
#include "json.hpp"
#include "response.hpp"

namespace core {

// What a request's body was, when its route asked for it (see body_policy).
enum class body_type : uint8_t { none, json, form };

struct http_request {
  llhttp_method_t method;
  std::string_view method_name;
  std::string_view target;  // request-target as received (path and query)
  uint8_t version_major;
  uint8_t version_minor;
  bool keep_alive;    // the connection stays open after this answer
  bool accepts_html;  // an Accept header mentions text/html (a browser)
  uint64_t start_ns;  // uv_hrtime() when the request's first byte was parsed
  // The whole body, when the route asked for it (body_policy); empty otherwise. target and
  // body stay valid until the exchange is answered or cancelled, deferred or not.
  std::string_view body;
  body_type body_kind = body_type::none;
  // A JSON body already checked (RFC 8259, strict) and parsed. Valid during the handler
  // call only; the strings it holds point into `body` and live as long as it does.
  const json_doc* json = nullptr;
  // Values of the header fields the server was asked to keep (http_server_config::
  // captured_headers), in that order; empty when absent (the last one wins when repeated).
  // They live with `target` (the same pooled block): valid until the exchange ends.
  std::string_view headers[4];
  // The client's address ("203.0.113.7" or "2001:db8::1"; empty for an adopted socket that is
  // not TCP), when http_server_config::want_peer asks for it. Valid during the handler call
  // only.
  std::string_view peer;
};

// What a route wants of a request's body, decided from the request line before any body byte
// is read. The default (max_bytes 0) reads and discards the body, as for every route that does
// not ask. A route that accepts JSON or a form answers 415 to any other Content-Type (or none),
// 413 to a body over max_bytes, and 400 to JSON that is not valid.
struct body_policy {
  uint32_t max_bytes = 0;  // 0: discard
  bool json = false;       // accept application/json (and */*+json)
  bool form = false;       // accept application/x-www-form-urlencoded
};
using http_body_policy = body_policy (*)(void* ctx, llhttp_method_t method,
                                         std::string_view target);

struct http_exchange;

// A deferred answer: a small value the application keeps (copyable) and answers through once.
// Safe to use after the exchange is gone (client left, deadline passed, server drained):
// answer() then does nothing and returns false. The records behind it live as long as the
// server, so a stale http_deferred never points at freed memory.
class http_deferred {
 public:
  http_deferred() = default;
  // Still waiting for its answer.
  bool pending() const;
  // Answers it (loop thread only). The body is copied; any size up to the server's
  // max_response_body (larger -> 500). content_type and extra_headers must be static storage
  // ("Name: value\r\n" lines). Returns false, doing nothing, if the exchange is gone.
  bool answer(int status, const char* content_type, std::string_view body,
              std::string_view extra_headers = {}) const;

 private:
  friend struct http_reply;
  friend class http_server;
  http_deferred(http_exchange* x, uint32_t generation) : x_(x), generation_(generation) {}
  http_exchange* x_ = nullptr;
  uint32_t generation_ = 0;
};

// Called once when a deferred exchange ends without the application's answer: the client went
// away, the answer deadline passed (the client gets 504), or the drain deadline cut the
// connection. After it, http_deferred::answer() is a no-op. Must not throw; it may answer
// other exchanges.
using http_cancel_fn = void (*)(void* ctx);

struct http_reply {
  static constexpr uint8_t untagged = 0xff;

  int status = 200;
  const char* content_type = "application/json";
  std::string_view extra_headers;  // complete "Name: value\r\n" lines (static storage)
  buf_writer body;                 // the server's scratch buffer; write the body here
  // The route that served the request, as the application numbers its routes: handed to the
  // observer, so metrics label the route the handler chose instead of guessing from the target.
  uint8_t route = untagged;

  // {"error":"<message>"} with `status` (message JSON-escaped; whatever was written is replaced).
  void error(int status, std::string_view message) {
    this->status = status;
    body.reset();
    body.put("{\"error\":\"");
    json_escape(body, message);
    body.put("\"}");
  }

  // Takes the exchange: the handler returns without an answer and answers later through the
  // returned value. on_cancel (optional) runs if the exchange ends first. Whatever was written
  // to this reply is ignored.
  http_deferred defer(http_cancel_fn on_cancel = nullptr, void* ctx = nullptr);

  // Internal: the exchange being handled (set by the server).
  void* internal = nullptr;
  http_deferred deferred_;
  bool deferred() const { return deferred_.x_ != nullptr; }
};

// Called once per complete request, on the loop thread. Must not throw or block.
using http_handler = void (*)(void* ctx, const http_request& request, http_reply& reply);

// One answered request, for metrics: the handler's or the server's own (then route is
// http_reply::untagged and target is what arrived of it, possibly empty).
struct http_observation {
  std::string_view target;
  int status;
  uint8_t route;
  uint64_t start_ns;
};

struct http_server_config {
  uint64_t header_timeout_ms = 10'000;  // a request must arrive whole within this
  uint64_t idle_timeout_ms = 75'000;    // keep-alive connection with nothing in flight
  uint64_t drain_timeout_ms = 8'000;    // graceful stop deadline
  // Lingering close after the last answer: wait for the peer's FIN at most linger_ms after the
  // last byte received, and linger_max_ms in all (nginx's lingering_timeout and lingering_time:
  // a client that keeps trickling cannot hold the connection).
  uint64_t linger_ms = 2'000;
  uint64_t linger_max_ms = 5'000;
  // A deferred answer not given within this gets 504 (and the application's on_cancel).
  uint64_t answer_timeout_ms = 10'000;
  uint32_t max_connections = 10'000;      // above it: 503 and close
  uint32_t max_target_bytes = 8 * 1024;   // request-target; longer -> 414
  uint64_t max_body_bytes = 1024 * 1024;  // a discarded request body; larger -> 413
  uint32_t max_header_bytes = 16 * 1024;  // all header fields and values; larger -> 431
  uint32_t max_headers = 100;             // header fields; more -> 431
  // Requests of one connection handled but not yet answered (pipelining behind a deferred
  // answer); beyond it the connection's input waits.
  uint32_t max_pipelined = 16;
  // Largest answer body, immediate (the handler's scratch buffer) or deferred. Bodies up to
  // http_server::inline_body go out from the connection's pooled block; larger ones are written
  // from a buffer of their own in the same gathered write.
  size_t max_response_body = 1024 * 1024;
  // Which requests get their body delivered (nullptr: none; bodies are discarded).
  http_body_policy body_policy = nullptr;
  // JSON bodies: most values and deepest nesting accepted (400 beyond).
  uint32_t json_max_values = 256;
  uint32_t json_max_depth = 32;
  // Header fields handed to the handler as http_request::headers (lower-case names of at most
  // 16 bytes, up to 4, static storage; e.g. "authorization", "cookie"). Their values share the
  // request-target's 16 KiB block: a request whose target and kept values do not fit gets 431.
  const char* const* captured_headers = nullptr;
  // Fill http_request::peer (one getpeername(2) per request: only for services that use it,
  // so that an idle connection keeps no copy of its address).
  bool want_peer = false;
  uint8_t captured_count = 0;
  bool access_log = true;
  // Complete "Name: value\r\n" lines added to every answer, errors included (static storage).
  std::string_view common_headers;
  // Called once per answered request. For metrics; must not throw or block.
  void (*observer)(void* ctx, const http_observation& o) = nullptr;
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

  // Graceful stop: closes the listener and idle connections at once; requests in flight and
  // deferred answers are answered with "Connection: close"; at the drain deadline whatever
  // remains is cut (pending exchanges are cancelled). on_done runs once, when no connection is
  // left and the server's handles are closed.
  void drain(void (*on_done)(void* ctx), void* ctx);
  bool draining() const { return draining_; }
  size_t connection_count() const { return conn_count_; }
  size_t requests_in_flight() const { return in_flight_; }
  // Deferred answers the application has not given yet.
  size_t pending_answers() const { return pending_; }

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
  uv_idle_t resume_{};  // parses parked input of connections whose queue shrank
  http_conn* resume_list_ = nullptr;
  bool listening_ = false;
  bool draining_ = false;
  bool finished_ = false;
  int handles_open_ = 0;
  void (*on_drained_)(void*) = nullptr;
  void* drained_ctx_ = nullptr;
  char bound_[64] = "";
  http_conn* conns_ = nullptr;  // intrusive list of live connections
  size_t conn_count_ = 0;
  size_t in_flight_ = 0;                     // requests begun and not yet handled
  size_t pending_ = 0;                       // deferred exchanges not yet answered
  http_exchange* free_exchanges_ = nullptr;  // records are reused, freed with the server
  http_exchange* all_exchanges_ = nullptr;
  pool pool_;
  char read_buf_[block_size];
  std::unique_ptr<char[]> body_buf_;  // config_.max_response_body bytes
  std::unique_ptr<json_doc> json_;
  char peer_[46] = "";  // http_request::peer of the request being handled
  int64_t date_sec_ = -1;
  char date_[30] = "";
};

}  // namespace core
