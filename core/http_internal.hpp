// Private to core's HTTP server: the connection and exchange records and the functions the
// server's parts (http_listener, http_connection, http_parser, http_writer, http_exchange)
// call in one another. Nothing outside core/http_*.cpp includes this.
//
// Ownership in one paragraph: a connection (http_conn) is allocated at accept and deleted only
// in its close callback. It borrows pool blocks for the request-target, parked input, gathered
// output and a request body, and returns each as soon as it is empty. Exchanges
// (http_exchange) are records owned by the server, reused through a free list and freed only
// with the server; a connection holds a queue of them, in request order, only while some
// answer of it is deferred. A generation number on each record makes a stale http_deferred
// harmless.
#pragma once

#include <cstdint>

#include "http_server.hpp"

namespace core {

using block = http_server::pool::block;

// Largest answer one request puts in a block: head + an inline body.
inline constexpr size_t kMaxResponse = http_server::inline_body + 1024;

// The bytes of one answer, made before it can be written: head and inline body in a block,
// a larger body in a buffer of its own.
struct http_answer_bytes {
  block* head = nullptr;
  uint32_t head_len = 0;
  char* big = nullptr;
  size_t big_len = 0;
};

// One request between "handled" and "its answer moved to the connection's output".
struct http_exchange {
  enum state_t : uint8_t { unused, pending, ready };

  http_exchange* next = nullptr;      // the connection's queue, or the server's free list
  http_exchange* next_all = nullptr;  // every record the server made (freed with it)
  http_conn* conn = nullptr;
  uint32_t generation = 0;  // bumped whenever the record ends an exchange
  state_t state = unused;
  bool head_only = false;   // HEAD: the answer has no body
  bool keep_alive = false;  // as the request asked (drain may still close)
  bool http10 = false;
  uint8_t route = http_reply::untagged;
  uint64_t deadline_ms = 0;  // uv_now by which a pending answer must come
  uint64_t start_ns = 0;
  const char* method_name = "";
  http_cancel_fn on_cancel = nullptr;
  void* cancel_ctx = nullptr;
  // What the request's views point into, kept while the answer is pending.
  block* target = nullptr;
  uint32_t target_len = 0;
  block* body_block = nullptr;
  char* body_heap = nullptr;
  http_answer_bytes answer;  // when ready
  int status = 0;
  size_t body_bytes = 0;  // answer body size, for the access log
};

struct http_conn {
  uv_tcp_t tcp{};
  // One write in flight, and the shutdown only once the last write is done (finish_connection
  // runs with nothing written any more): the two requests share their memory.
  union {
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
  };
  llhttp_t parser{};
  http_server* server = nullptr;
  http_conn* prev = nullptr;
  http_conn* next = nullptr;
  http_conn* resume_next = nullptr;  // the server's resume list
  block* target = nullptr;           // request-target, copied as it arrives (it may straddle reads)
  block* out = nullptr;              // gathered answers not yet written
  block* in = nullptr;               // input parked while a write is in flight or the queue is full
  char* big = nullptr;  // a body over inline_body, written after c->out (its own buffer)
  size_t big_len = 0;
  // The current request's body, when its route asked for it: a pool block, or a buffer of
  // its own past a block's size.
  block* body_block = nullptr;
  char* body_heap = nullptr;
  uint32_t body_len = 0;
  uint32_t body_limit = 0;  // 0: the body is discarded
  // Exchanges handled and not yet moved to the output, in request order (deferred answers and
  // the answers queued behind them).
  http_exchange* queue_head = nullptr;
  http_exchange* queue_tail = nullptr;
  uint32_t queue_len = 0;
  uint32_t target_len = 0;
  uint32_t out_len = 0;
  uint32_t in_len = 0;
  uint32_t requests = 0;     // answered on this connection
  uint64_t last_active = 0;  // uv_now of the last read or completed write
  // uv_now of the first byte of the current request; once lingering, when the linger began
  uint64_t request_start = 0;
  uint64_t body_bytes = 0;             // body bytes of the current request
  const char* error_reason = nullptr;  // why, for the REJECT log line
  uint32_t header_bytes = 0;           // field and value bytes of the current request
  uint16_t header_count = 0;
  uint16_t error_status = 0;  // status to answer when a callback rejects the request
  uint32_t captured_len = 0;  // bytes of kept header values after the target in c->target
  uint16_t cap_off[4] = {};   // each kept value: offset in c->target (after the target)
  uint16_t cap_len[4] = {};
  uint64_t start_ns = 0;              // uv_hrtime() at message begin
  const char* chunk_start = nullptr;  // start of the input being parsed now
  char header_buf[16];  // current field name, then (for Expect) its value, lower-cased
  char ctype_buf[36];   // the Content-Type's media type (up to ';'), lower-cased
  // One-byte fields together (no padding between them).
  body_type body_kind = body_type::none;
  uint8_t host_count = 0;
  uint8_t header_kind = 0;  // what the current header field is (header_kind enum)
  uint8_t header_len = 0;   // bytes in header_buf
  uint8_t html_match = 0;   // chars of "text/html" matched so far in an Accept value
  uint8_t ctype_len = 0;    // bytes in ctype_buf (more than its size: too long to be ours)
  bool ctype_done = false;  // the Content-Type's ';' was seen
  bool accepts_html = false;
  uint8_t capture = 0xff;       // index of the kept header whose value is arriving, or 0xff
  uint8_t expect = 0;           // expect_kind of the current request
  bool name_seen = false;       // the current header field name has a byte
  uint8_t value_spans = 0;      // spans of the current header value (obs-fold detection)
  bool chunk_ended_lf = false;  // the previous input chunk ended with LF
  bool in_request = false;      // a message has begun and is not complete
  bool writing = false;         // a uv_write is in flight
  bool reading = false;
  bool stop_parsing = false;  // the last request is in: ignore further input
  bool queue_full = false;    // parsing waits for the queue of exchanges to shrink
  bool close_after_write = false;
  bool peer_eof = false;
  bool lingering = false;  // answered and shut down: waiting for the peer's FIN
  bool closing = false;
  bool in_parser = false;      // inside llhttp_execute: answers wait for process() to flush
  bool resume_queued = false;  // on the server's resume list
};

enum header_kind : uint8_t {
  hk_other,
  hk_host,
  hk_expect,
  hk_accept,
  hk_content_type,
  hk_captured
};
enum expect_kind : uint8_t { ex_none, ex_continue, ex_other };

struct http_server::internals {
  static llhttp_settings_t settings;

  static http_server& srv(http_conn* c) { return *c->server; }
  static uint64_t now(http_conn* c) { return uv_now(srv(c).loop_); }
  static const http_server_config& config(http_conn* c) { return c->server->config_; }

  // http_listener.cpp: accepting, and the end of a drain.
  static void on_connection(uv_stream_t* listener, int status);
  static http_conn* new_conn(http_server& s);
  static void start_conn(http_conn* c);
  static void maybe_finish_drain(http_server& s);
  static void on_handle_closed(uv_handle_t* h);
  static void report_drained(http_server& s);
  static void on_deadline(uv_timer_t* t);

  // http_connection.cpp: lifecycle, reading, timeouts, lingering close.
  static void link(http_server& s, http_conn* c);
  static void unlink(http_server& s, http_conn* c);
  static void release(http_server& s, block*& b);
  static void close_conn(http_conn* c);
  static void on_close(uv_handle_t* h);
  static void start_reading(http_conn* c);
  static void stop_reading(http_conn* c);
  static bool idle(const http_conn* c);
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void process(http_conn* c, const char* data, size_t len);
  static void park_input(http_conn* c, const char* data, size_t len);
  static void resume_input(http_conn* c);
  static void schedule_resume(http_conn* c);
  static void on_resume(uv_idle_t* h);
  static void finish_connection(http_conn* c);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_sweep(uv_timer_t* t);
  static void start_sweep(http_server& s);

  // http_parser.cpp: llhttp callbacks and the request checks.
  static int on_message_begin(llhttp_t* p);
  static int reject(llhttp_t* p, uint16_t status, const char* reason);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_field_complete(llhttp_t* p);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_header_value_complete(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  static void release_body(http_conn* c);

  // http_writer.cpp: response bytes and the write path.
  static std::string_view http_date(http_server& s);
  static void append_raw(http_conn* c, std::string_view bytes);
  static bool make_answer(http_server& s, http_answer_bytes& a, int status,
                          const char* content_type, std::string_view extra, std::string_view body,
                          bool head_only, bool keep_alive, bool http10);
  static void append_response(http_conn* c, int status, const char* content_type,
                              std::string_view extra, std::string_view body, bool head_only,
                              bool keep_alive, bool http10);
  static void access_log(http_conn* c, std::string_view method, std::string_view target, int status,
                         size_t bytes);
  static void observe(http_server& s, std::string_view target, int status, uint8_t route,
                      uint64_t start_ns);
  static void reply_error(http_conn* c, int status, const char* reason);
  static bool flush(http_conn* c);
  static void on_write(uv_write_t* req, int status);
  static void release_big(char*& big, size_t& len);

  // http_exchange.cpp: calling the handler; deferred answers, their queue and deadline.
  static void handle_request(http_conn* c);
  static http_exchange* new_exchange(http_server& s, http_conn* c);
  static void end_exchange(http_server& s, http_exchange* x);
  static void enqueue(http_conn* c, http_exchange* x);
  static bool complete(http_exchange* x, int status, const char* content_type,
                       std::string_view body, std::string_view extra, bool server_made);
  static void pump(http_conn* c);
  static void cancel_queue(http_conn* c, int log_status);
  static void check_answer_deadlines(http_conn* c, uint64_t now_ms);
  static void free_exchanges(http_server& s);
  static void set_route(http_reply& reply);
  static void count_pending(http_server& s, int delta);
};

}  // namespace core
