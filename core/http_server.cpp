#include "http_server.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>

#include "log.hpp"

namespace core {

using block = http_server::pool::block;

// Largest answer one request puts in the connection's block: head + an inline body.
static constexpr size_t kMaxResponse = http_server::inline_body + 1024;

struct http_conn {
  uv_tcp_t tcp{};
  uv_write_t write_req{};
  uv_shutdown_t shutdown_req{};
  llhttp_t parser{};
  http_server* server = nullptr;
  http_conn* prev = nullptr;
  http_conn* next = nullptr;
  block* target = nullptr;  // request-target, copied as it arrives (it may straddle reads)
  block* out = nullptr;     // gathered answers not yet written
  block* in = nullptr;      // input parked while a write is in flight
  char* big = nullptr;      // a body over inline_body, written after c->out (its own buffer)
  size_t big_len = 0;
  uint32_t target_len = 0;
  uint32_t out_len = 0;
  uint32_t in_len = 0;
  uint32_t requests = 0;               // answered on this connection
  uint64_t last_active = 0;            // uv_now of the last read or completed write
  uint64_t request_start = 0;          // uv_now of the first byte of the current request
  uint64_t body_bytes = 0;             // body bytes of the current request (discarded)
  const char* error_reason = nullptr;  // why, for the REJECT log line
  uint32_t header_bytes = 0;           // field and value bytes of the current request
  uint16_t header_count = 0;
  uint16_t error_status = 0;  // status to answer when a callback rejects the request
  uint8_t host_count = 0;
  uint8_t header_kind = 0;  // what the current header field is (header_kind enum)
  uint8_t header_len = 0;   // bytes in header_buf
  uint8_t html_match = 0;   // chars of "text/html" matched so far in an Accept value
  bool accepts_html = false;
  uint64_t start_ns = 0;              // uv_hrtime() at message begin
  uint8_t expect = 0;                 // expect_kind of the current request
  bool name_seen = false;             // the current header field name has a byte
  uint8_t value_spans = 0;            // spans of the current header value (obs-fold detection)
  bool chunk_ended_lf = false;        // the previous input chunk ended with LF
  const char* chunk_start = nullptr;  // start of the input being parsed now
  char header_buf[16];      // current field name, then (for Expect) its value, lower-cased
  bool in_request = false;  // a message has begun and is not complete
  bool writing = false;     // a uv_write is in flight
  bool reading = false;
  bool stop_parsing = false;  // the last answer is queued: ignore further input
  bool close_after_write = false;
  bool peer_eof = false;
  bool lingering = false;  // answered and shut down: waiting for the peer's FIN
  bool closing = false;
};

enum header_kind : uint8_t { hk_other, hk_host, hk_expect, hk_accept };
enum expect_kind : uint8_t { ex_none, ex_continue, ex_other };

struct http_server::internals {
  static llhttp_settings_t settings;

  static http_server& srv(http_conn* c) { return *c->server; }
  static uint64_t now(http_conn* c) { return uv_now(srv(c).loop_); }

  // --- connection list and lifecycle -------------------------------------------------------

  static void link(http_server& s, http_conn* c) {
    c->next = s.conns_;
    if (s.conns_ != nullptr) s.conns_->prev = c;
    s.conns_ = c;
    ++s.conn_count_;
  }

  static void unlink(http_server& s, http_conn* c) {
    if (c->prev != nullptr) c->prev->next = c->next;
    if (c->next != nullptr) c->next->prev = c->prev;
    if (s.conns_ == c) s.conns_ = c->next;
    --s.conn_count_;
  }

  static void release(http_server& s, block*& b) {
    if (b != nullptr) s.pool_.release(b);
    b = nullptr;
  }

  static void release_big(http_conn* c) {
    free(c->big);
    c->big = nullptr;
    c->big_len = 0;
  }

  // Never frees: memory goes back only in the close callback, after libuv is done with it.
  static void close_conn(http_conn* c) {
    if (c->closing) return;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_close);
  }

  static void on_close(uv_handle_t* h) {
    auto* c = static_cast<http_conn*>(h->data);
    http_server& s = srv(c);
    release(s, c->target);
    release(s, c->out);
    release(s, c->in);
    release_big(c);
    if (c->in_request) --s.in_flight_;
    unlink(s, c);
    delete c;
    maybe_finish_drain(s);
  }

  static void start_reading(http_conn* c) {
    if (c->reading || c->closing) return;
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read) == 0) {
      c->reading = true;
    } else {
      close_conn(c);
    }
  }

  static void stop_reading(http_conn* c) {
    if (!c->reading) return;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    c->reading = false;
  }

  static bool idle(const http_conn* c) {
    return !c->in_request && !c->writing && c->out_len == 0 && c->in_len == 0 && !c->lingering;
  }

  // --- accepting ---------------------------------------------------------------------------

  static void on_connection(uv_stream_t* listener, int status) {
    auto& s = *static_cast<http_server*>(listener->data);
    if (status < 0) {
      log_event("ERROR", "accept error=%s", uv_err_name(status));
      return;
    }
    http_conn* c = new_conn(s);
    if (c == nullptr) return;  // the pending connection stays in the backlog
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      close_conn(c);
      return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    start_conn(c);
  }

  static http_conn* new_conn(http_server& s) {
    auto* c = new (std::nothrow) http_conn;
    if (c == nullptr) return nullptr;
    c->server = &s;
    uv_tcp_init(s.loop_, &c->tcp);
    c->tcp.data = c;
    link(s, c);
    return c;
  }

  static void start_conn(http_conn* c) {
    http_server& s = srv(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->last_active = c->request_start = uv_now(s.loop_);
    if (s.conn_count_ > s.config_.max_connections) {
      reply_error(c, 503, "too many connections");
      flush(c);
      return;
    }
    start_reading(c);
  }

  // --- reading and parsing -----------------------------------------------------------------

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    http_server& s = srv(static_cast<http_conn*>(h->data));
    // One read buffer for the whole loop: input is parsed before the next read happens, and
    // whatever must outlive this callback (the target, parked input) is copied out.
    buf->base = s.read_buf_;
    buf->len = sizeof s.read_buf_;
  }

  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<http_conn*>(stream->data);
    if (nread == 0) return;  // EAGAIN: nothing to do
    if (nread < 0) {
      stop_reading(c);
      c->peer_eof = true;
      // A half-closed client still gets the answers it asked for before its FIN.
      if (nread == UV_EOF && !c->lingering && (c->writing || c->out_len > 0)) {
        c->close_after_write = true;
        c->stop_parsing = true;
      } else {
        close_conn(c);
      }
      return;
    }
    c->last_active = now(c);
    if (c->lingering) return;  // discarding until the FIN
    process(c, buf->base, static_cast<size_t>(nread));
  }

  // Feeds input to the parser. Answers are gathered in c->out; when the block is nearly full
  // the parser pauses, the block is flushed, and parsing continues. If the socket pushes back,
  // the rest of the input is parked in c->in and parsed when the write completes.
  static void process(http_conn* c, const char* data, size_t len) {
    while (len > 0 && !c->stop_parsing && !c->closing) {
      c->chunk_start = data;
      llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
      c->chunk_ended_lf = data[len - 1] == '\n';
      if (err == HPE_OK) break;
      if (err == HPE_PAUSED) {
        size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - data);
        data += used;
        len -= used;
        llhttp_resume(&c->parser);
        if (c->stop_parsing) break;
        if (!flush(c)) {
          park_input(c, data, len);
          return;
        }
        continue;
      }
      if (err == HPE_PAUSED_UPGRADE) {
        // An Upgrade request was answered as plain HTTP/1.1 (RFC 9110 7.8 lets a server ignore
        // Upgrade); the client saw no 101, so the connection simply goes on.
        size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - data);
        data += used;
        len -= used;
        llhttp_resume_after_upgrade(&c->parser);
        if (c->stop_parsing) break;
        if (!flush(c)) {
          park_input(c, data, len);
          return;
        }
        continue;
      }
      if (err == HPE_PAUSED_H2_UPGRADE) {
        reply_error(c, 505, "HTTP/2 connection preface");
        break;
      }
      // Our own checks set error_status; llhttp reports them as HPE_USER or HPE_CB_*.
      int status = c->error_status != 0 ? c->error_status : 400;
      reply_error(
          c, status,
          c->error_reason != nullptr ? c->error_reason : llhttp_get_error_reason(&c->parser));
      break;
    }
    flush(c);
  }

  static void park_input(http_conn* c, const char* data, size_t len) {
    if (len == 0 || c->stop_parsing) return;
    if (c->in == nullptr) c->in = srv(c).pool_.acquire();
    // data may already point into c->in (parsing parked input): memmove handles the overlap.
    memmove(c->in->data, data, len);
    c->in_len = static_cast<uint32_t>(len);
  }

  static int on_message_begin(llhttp_t* p) {
    auto* c = static_cast<http_conn*>(p->data);
    c->in_request = true;
    ++srv(c).in_flight_;
    c->request_start = now(c);
    c->start_ns = uv_hrtime();
    c->accepts_html = false;
    c->html_match = 0;
    c->target_len = 0;
    c->body_bytes = 0;
    c->header_bytes = 0;
    c->header_count = 0;
    c->host_count = 0;
    c->header_len = 0;
    c->expect = ex_none;
    c->error_status = 0;
    c->error_reason = nullptr;
    return 0;
  }

  static int reject(llhttp_t* p, uint16_t status, const char* reason) {
    auto* c = static_cast<http_conn*>(p->data);
    c->error_status = status;
    c->error_reason = reason;
    llhttp_set_error_reason(p, reason);
    return HPE_USER;
  }

  static void buffer_lower(http_conn* c, const char* at, size_t len) {
    for (size_t i = 0; i < len; ++i) {
      if (c->header_len >= sizeof c->header_buf) {
        c->header_len = sizeof c->header_buf + 1;  // too long to be a name we look for
        return;
      }
      char ch = at[i];
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      c->header_buf[c->header_len++] = ch;
    }
  }

  static std::string_view buffered(const http_conn* c) {
    if (c->header_len > sizeof c->header_buf) return {};
    return {c->header_buf, c->header_len};
  }

  static int count_header_bytes(llhttp_t* p, size_t len) {
    auto* c = static_cast<http_conn*>(p->data);
    c->header_bytes += static_cast<uint32_t>(len);
    if (c->header_bytes > srv(c).config_.max_header_bytes) {
      return reject(p, 431, "header block too large");
    }
    return 0;
  }

  // RFC 9110 5.6.2: a field name is a token. llhttp 8 (lenient build) lets spaces through,
  // including the "Name : value" form that RFC 9112 5.1 says must be rejected.
  static bool is_tchar(unsigned char ch) {
    static constexpr auto table = [] {
      std::array<bool, 256> t{};
      for (int i = '0'; i <= '9'; ++i) t[i] = true;
      for (int i = 'a'; i <= 'z'; ++i) t[i] = true;
      for (int i = 'A'; i <= 'Z'; ++i) t[i] = true;
      for (char ch : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(ch)] = true;
      return t;
    }();
    return table[ch];
  }

  static int on_header_field(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<http_conn*>(p->data);
    for (size_t i = 0; i < len; ++i) {
      if (!is_tchar(static_cast<unsigned char>(at[i])))
        return reject(p, 400, "invalid header name");
    }
    c->name_seen = c->name_seen || len > 0;
    buffer_lower(c, at, len);
    return count_header_bytes(p, len);
  }

  static int on_header_field_complete(llhttp_t* p) {
    auto* c = static_cast<http_conn*>(p->data);
    if (!c->name_seen) return reject(p, 400, "empty header name");
    c->name_seen = false;
    c->value_spans = 0;
    if (++c->header_count > srv(c).config_.max_headers) {
      return reject(p, 431, "too many header fields");
    }
    std::string_view name = buffered(c);
    c->header_kind = name == "host"     ? hk_host
                     : name == "expect" ? hk_expect
                     : name == "accept" ? hk_accept
                                        : hk_other;
    c->html_match = 0;
    c->header_len = 0;
    return count_header_bytes(p, 4);  // ": " and CRLF
  }

  static int on_header_value(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<http_conn*>(p->data);
    // A value arrives in several spans only across reads, or through an obs-fold (a CRLF and
    // a space inside it), which llhttp 8 accepts and RFC 9112 5.2 lets a server reject. A
    // span that does not start where this read starts, or that follows a read ending in LF,
    // is a fold.
    if (c->value_spans > 0 && (at != c->chunk_start || c->chunk_ended_lf)) {
      return reject(p, 400, "obsolete line folding in a header");
    }
    if (c->value_spans < 255) ++c->value_spans;
    if (c->header_kind == hk_expect) buffer_lower(c, at, len);
    if (c->header_kind == hk_accept && !c->accepts_html) match_html(c, at, len);
    return count_header_bytes(p, len);
  }

  // Streams an Accept value (it may straddle reads) looking for "text/html", any case.
  static void match_html(http_conn* c, const char* at, size_t len) {
    static constexpr std::string_view needle = "text/html";
    for (size_t i = 0; i < len && !c->accepts_html; ++i) {
      char ch = at[i];
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      if (ch == needle[c->html_match]) {
        if (++c->html_match == needle.size()) c->accepts_html = true;
      } else {
        c->html_match = ch == needle[0] ? 1 : 0;  // no other prefix of "text/html" repeats
      }
    }
  }

  static int on_header_value_complete(llhttp_t* p) {
    auto* c = static_cast<http_conn*>(p->data);
    if (c->header_kind == hk_host) {
      if (c->host_count < 255) ++c->host_count;
    } else if (c->header_kind == hk_expect) {
      // Several Expect fields, or a list, are an expectation we cannot meet as a whole.
      c->expect = c->expect == ex_none && buffered(c) == "100-continue" ? ex_continue : ex_other;
    }
    c->header_kind = hk_other;
    c->header_len = 0;
    return 0;
  }

  static int on_url(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<http_conn*>(p->data);
    http_server& s = srv(c);
    if (c->target_len + len > s.config_.max_target_bytes) {
      return reject(p, 414, "request-target too long");
    }
    for (size_t i = 0; i < len; ++i) {
      auto ch = static_cast<unsigned char>(at[i]);
      if (ch <= 0x20 || ch == 0x7f) return reject(p, 400, "invalid character in request-target");
    }
    if (c->target == nullptr) c->target = s.pool_.acquire();
    memcpy(c->target->data + c->target_len, at, len);
    c->target_len += static_cast<uint32_t>(len);
    return 0;
  }

  // Checks that need the whole header block. The handler never runs for a rejected request.
  static int on_headers_complete(llhttp_t* p) {
    auto* c = static_cast<http_conn*>(p->data);
    http_server& s = srv(c);
    if (p->http_major != 1) return reject(p, 505, "only HTTP/1.x is served");
    bool http11 = p->http_minor >= 1;
    if (p->method == HTTP_CONNECT) return reject(p, 501, "CONNECT is not supported");
    if (c->host_count > 1) return reject(p, 400, "more than one Host header");
    if (http11 && c->host_count == 0) return reject(p, 400, "HTTP/1.1 request without Host");
    bool has_body = (p->flags & F_CHUNKED) != 0 ||
                    ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
    if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > s.config_.max_body_bytes) {
      return reject(p, 413, "request body too large");
    }
    if (http11 && c->expect == ex_other) return reject(p, 417, "unsupported expectation");
    if (http11 && c->expect == ex_continue && has_body) {
      // The client waits for this before sending the body; it is flushed when parsing stops.
      append_raw(c, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    return 0;
  }

  static int on_body(llhttp_t* p, const char*, size_t len) {
    auto* c = static_cast<http_conn*>(p->data);
    // Bodies are read and discarded; chunked bodies count against the same limit.
    c->body_bytes += len;
    if (c->body_bytes > srv(c).config_.max_body_bytes) {
      return reject(p, 413, "request body too large");
    }
    return 0;
  }

  static int on_message_complete(llhttp_t* p) {
    auto* c = static_cast<http_conn*>(p->data);
    handle_request(c);
    c->in_request = false;
    --srv(c).in_flight_;
    release(srv(c), c->target);
    c->target_len = 0;
    if (c->stop_parsing) return HPE_PAUSED;
    // Keep room for the next answer; otherwise pause so the block can be flushed first. A big
    // body must go out before anything that follows it.
    if (block_size - c->out_len < kMaxResponse || c->big != nullptr) return HPE_PAUSED;
    return 0;
  }

  // --- answering ---------------------------------------------------------------------------

  static std::string_view http_date(http_server& s) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != s.date_sec_) {
      format_http_date(ts.tv_sec, s.date_);
      s.date_sec_ = ts.tv_sec;
    }
    return {s.date_, 29};
  }

  static void append_raw(http_conn* c, std::string_view bytes) {
    if (c->out == nullptr) c->out = srv(c).pool_.acquire();
    if (bytes.size() > block_size - c->out_len) return;  // never: kMaxResponse stays free
    memcpy(c->out->data + c->out_len, bytes.data(), bytes.size());
    c->out_len += static_cast<uint32_t>(bytes.size());
  }

  static void append_response(http_conn* c, int status, const char* content_type,
                              std::string_view extra, std::string_view body, bool head_only,
                              bool keep_alive, bool http10) {
    http_server& s = srv(c);
    if (c->out == nullptr) c->out = s.pool_.acquire();
    buf_writer w(c->out->data + c->out_len, block_size - c->out_len);
    // A body too large for the block gets a buffer of its own, written right after the head.
    bool big = !head_only && body.size() > inline_body;
    if (big) {
      c->big = static_cast<char*>(malloc(body.size()));
      if (c->big == nullptr) {
        log_event("ERROR", "no memory for a response body bytes=%zu", body.size());
        status = 500;
        body = "{\"error\":\"internal error\"}";
        big = false;
        keep_alive = false;
      } else {
        memcpy(c->big, body.data(), body.size());
        c->big_len = body.size();
      }
    }
    response_head h;
    h.status = status;
    h.content_type = content_type;
    h.content_length = body.size();
    h.connection =
        !keep_alive ? conn_header::close : (http10 ? conn_header::keep_alive : conn_header::none);
    h.date = http_date(s);
    h.common_headers = s.config_.common_headers;
    h.extra_headers = extra;
    write_response_head(w, h);
    if (!head_only && !big) w.put(body);
    if (!w.overflow) {
      c->out_len += static_cast<uint32_t>(w.len);
    } else {
      // Cannot happen: the parser pauses while less than kMaxResponse is free.
      log_event("ERROR", "response did not fit status=%d", status);
      c->stop_parsing = true;
      c->close_after_write = true;
    }
    ++c->requests;
    if (!keep_alive) {
      c->stop_parsing = true;
      c->close_after_write = true;
    }
  }

  static void access_log(http_conn* c, std::string_view method, std::string_view target, int status,
                         size_t bytes) {
    if (!srv(c).config_.access_log) return;
    char escaped[512];
    log_escape(target, escaped, sizeof escaped);
    log_event("ACCESS", "method=%.*s target=\"%s\" status=%d bytes=%zu",
              static_cast<int>(method.size()), method.data(), escaped, status, bytes);
  }

  static void handle_request(http_conn* c) {
    http_server& s = srv(c);
    llhttp_t* p = &c->parser;
    http_request req{};
    req.method = static_cast<llhttp_method_t>(p->method);
    req.method_name = llhttp_method_name(req.method);
    req.target = c->target != nullptr ? std::string_view(c->target->data, c->target_len)
                                      : std::string_view();
    req.version_major = p->http_major;
    req.version_minor = p->http_minor;
    req.keep_alive = llhttp_should_keep_alive(p) != 0 && !s.draining_;
    req.accepts_html = c->accepts_html;
    req.start_ns = c->start_ns;
    bool http10 = p->http_major == 1 && p->http_minor == 0;

    http_reply reply;
    reply.body = buf_writer(s.body_buf_.get(), s.config_.max_response_body);
    s.handler_(s.ctx_, req, reply);
    if (reply.body.overflow) {
      log_event("ERROR", "response body too large target_bytes=%zu", req.target.size());
      reply = http_reply{};
      reply.status = 500;
      reply.body = buf_writer(s.body_buf_.get(), s.config_.max_response_body);
      reply.body.put("{\"error\":\"internal error\"}");
    }
    append_response(c, reply.status, reply.content_type, reply.extra_headers, reply.body.view(),
                    req.method == HTTP_HEAD, req.keep_alive, http10);
    access_log(c, req.method_name, req.target, reply.status, reply.body.len);
    if (s.config_.observer != nullptr) {
      s.config_.observer(s.config_.observer_ctx, req.target, reply.status, req.start_ns);
    }
  }

  // One error answer, then the connection closes: after a framing error nothing that follows
  // on the connection can be trusted.
  static void reply_error(http_conn* c, int status, const char* reason) {
    char body[128];
    buf_writer w(body, sizeof body);
    w.put("{\"error\":\"");
    json_escape(w, http_reason(status));
    w.put("\"}");
    append_response(c, status, "application/json", {}, w.view(), false, false, false);
    const char* target = c->target != nullptr ? c->target->data : "";
    http_server& s = srv(c);
    if (c->in_request) {
      c->in_request = false;
      --s.in_flight_;
    }
    if (s.config_.observer != nullptr) {
      s.config_.observer(s.config_.observer_ctx, std::string_view(target, c->target_len), status,
                         c->start_ns != 0 ? c->start_ns : uv_hrtime());
    }
    access_log(c, "-", std::string_view(target, c->target_len), status, w.len);
    if (status != 503 && status != 408) {
      char why[160];
      log_escape(reason != nullptr ? reason : "", why, sizeof why);
      log_event("REJECT", "status=%d reason=\"%s\"", status, why);
    }
  }

  // --- writing -----------------------------------------------------------------------------

  // Writes gathered answers. Returns true when nothing is left pending.
  static bool flush(http_conn* c) {
    if (c->closing) return false;
    if (c->writing) return false;
    if (c->out_len == 0) {
      release(srv(c), c->out);
      if (c->close_after_write) finish_connection(c);
      return !c->close_after_write;
    }
    uv_buf_t b[2] = {uv_buf_init(c->out->data, c->out_len),
                     uv_buf_init(c->big, static_cast<unsigned>(c->big_len))};
    unsigned nbufs = c->big != nullptr ? 2 : 1;
    size_t total = c->out_len + c->big_len;
    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    int n = uv_try_write(stream, b, nbufs);
    if (n >= 0 && static_cast<size_t>(n) == total) {
      c->out_len = 0;
      release(srv(c), c->out);
      release_big(c);
      c->last_active = now(c);
      if (c->close_after_write) {
        finish_connection(c);
        return false;
      }
      return true;
    }
    if (n < 0 && n != UV_EAGAIN) {
      close_conn(c);
      return false;
    }
    if (n < 0) n = 0;
    // The socket pushed back: one uv_write for the rest; stop reading until it completes.
    uv_buf_t* rest = b;
    auto done = static_cast<size_t>(n);
    if (done >= c->out_len) {  // only part of the big body is left
      b[1] = uv_buf_init(c->big + (done - c->out_len),
                         static_cast<unsigned>(c->big_len - (done - c->out_len)));
      rest = &b[1];
      nbufs = 1;
    } else {
      b[0] = uv_buf_init(c->out->data + done, c->out_len - static_cast<unsigned>(done));
    }
    if (uv_write(&c->write_req, stream, rest, nbufs, on_write) != 0) {
      close_conn(c);
      return false;
    }
    c->writing = true;
    stop_reading(c);
    return false;
  }

  static void on_write(uv_write_t* req, int status) {
    auto* c = static_cast<http_conn*>(req->handle->data);
    c->writing = false;
    c->out_len = 0;
    release(srv(c), c->out);
    release_big(c);
    if (c->closing) return;
    if (status < 0) {
      close_conn(c);
      return;
    }
    c->last_active = now(c);
    if (c->close_after_write) {
      finish_connection(c);
      return;
    }
    if (c->in_len > 0) {
      // Parse what arrived while we were writing; it may park again (in place).
      size_t len = c->in_len;
      c->in_len = 0;
      process(c, c->in->data, len);
      if (c->in_len == 0) release(srv(c), c->in);
    }
    if (c->closing || c->writing || c->close_after_write) return;
    if (c->peer_eof) {
      close_conn(c);
      return;
    }
    start_reading(c);
    if (srv(c).draining_ && idle(c)) close_conn(c);
  }

  // After the last answer: send our FIN, then wait briefly for the peer's, so that unread
  // input does not turn into a reset that destroys the answer in flight (lingering close).
  static void finish_connection(http_conn* c) {
    if (c->closing || c->lingering) return;
    if (c->peer_eof) {
      close_conn(c);
      return;
    }
    c->lingering = true;
    c->last_active = now(c);
    release(srv(c), c->in);
    c->in_len = 0;
    if (uv_shutdown(&c->shutdown_req, reinterpret_cast<uv_stream_t*>(&c->tcp), on_shutdown) != 0) {
      close_conn(c);
    }
  }

  static void on_shutdown(uv_shutdown_t* req, int status) {
    auto* c = static_cast<http_conn*>(req->handle->data);
    if (c->closing) return;
    if (status < 0 || c->peer_eof) {
      close_conn(c);
      return;
    }
    start_reading(c);  // discard until EOF or the linger deadline
  }

  // --- timers ------------------------------------------------------------------------------

  // One periodic sweep instead of a timer per connection: header, idle and linger deadlines.
  static void on_sweep(uv_timer_t* t) {
    auto& s = *static_cast<http_server*>(t->data);
    uint64_t now_ms = uv_now(s.loop_);
    for (http_conn* c = s.conns_; c != nullptr;) {
      http_conn* next = c->next;  // close_conn never unlinks synchronously, but stay safe
      if (!c->closing) {
        if (c->lingering) {
          if (now_ms - c->last_active >= s.config_.linger_ms) close_conn(c);
        } else if (c->in_request) {
          if (now_ms - c->request_start >= s.config_.header_timeout_ms && !c->writing) {
            c->stop_parsing = true;
            reply_error(c, 408, "request timeout");
            flush(c);
          }
        } else if (c->writing) {
          if (now_ms - c->last_active >= s.config_.idle_timeout_ms) close_conn(c);
        } else if (idle(c)) {
          // A connection that never sent a request gets the header timeout, not the idle one.
          uint64_t limit =
              c->requests == 0 ? s.config_.header_timeout_ms : s.config_.idle_timeout_ms;
          if (now_ms - c->last_active >= limit) close_conn(c);
        }
      }
      c = next;
    }
  }

  // Deadlines are checked a few times per shortest timeout (at most once a second), so a
  // timeout fires within a quarter of its length late.
  static void start_sweep(http_server& s) {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(&s.sweep_))) return;
    uint64_t shortest = s.config_.header_timeout_ms;
    if (s.config_.idle_timeout_ms < shortest) shortest = s.config_.idle_timeout_ms;
    if (s.config_.linger_ms < shortest) shortest = s.config_.linger_ms;
    uint64_t period = shortest / 4;
    if (period > 1000) period = 1000;
    if (period < 10) period = 10;
    uv_timer_start(&s.sweep_, on_sweep, period, period);
  }

  static void on_deadline(uv_timer_t* t) {
    auto& s = *static_cast<http_server*>(t->data);
    log_event("DRAIN", "deadline=reached cut_connections=%zu", s.conn_count_);
    for (http_conn* c = s.conns_; c != nullptr; c = c->next) close_conn(c);
  }

  static void on_handle_closed(uv_handle_t* h) {
    auto& s = *static_cast<http_server*>(h->data);
    if (--s.handles_open_ == 0 && s.on_drained_ != nullptr) s.on_drained_(s.drained_ctx_);
  }

  static void maybe_finish_drain(http_server& s) {
    if (!s.draining_ || s.finished_ || s.conn_count_ != 0) return;
    s.finished_ = true;
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&s.sweep_), reinterpret_cast<uv_handle_t*>(&s.deadline_),
          reinterpret_cast<uv_handle_t*>(&s.listener_)}) {
      if (h->loop != nullptr && !uv_is_closing(h)) {
        ++s.handles_open_;
        uv_close(h, on_handle_closed);
      }
    }
    if (s.handles_open_ == 0 && s.on_drained_ != nullptr) s.on_drained_(s.drained_ctx_);
  }
};

llhttp_settings_t http_server::internals::settings = [] {
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_message_begin = on_message_begin;
  st.on_url = on_url;
  st.on_header_field = on_header_field;
  st.on_header_field_complete = on_header_field_complete;
  st.on_header_value = on_header_value;
  st.on_header_value_complete = on_header_value_complete;
  st.on_headers_complete = on_headers_complete;
  st.on_body = on_body;
  st.on_message_complete = on_message_complete;
  return st;
}();

http_server::http_server(uv_loop_t* loop, const http_server_config& config, http_handler handler,
                         void* ctx)
    : loop_(loop), config_(config), handler_(handler), ctx_(ctx), pool_(256) {
  if (config_.max_target_bytes > block_size) config_.max_target_bytes = block_size;
  if (config_.max_response_body < inline_body) config_.max_response_body = inline_body;
  body_buf_.reset(new char[config_.max_response_body]);
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  uv_timer_init(loop_, &deadline_);
  deadline_.data = this;
}

http_server::~http_server() {
  // The owner drains before destroying; handles must be closed by then.
}

int http_server::listen(const char* host, int port) {
  sockaddr_storage addr{};
  int rc = uv_ip4_addr(host, port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(host, port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) return rc;
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 1024, internals::on_connection);
  if (rc != 0) return rc;
  listening_ = true;
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  char ip[INET6_ADDRSTRLEN] = "";
  int bound_port = 0;
  if (bound.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&bound);
    uv_ip6_name(a6, ip, sizeof ip);
    bound_port = ntohs(a6->sin6_port);
    snprintf(bound_, sizeof bound_, "[%s]:%d", ip, bound_port);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&bound);
    uv_ip4_name(a4, ip, sizeof ip);
    bound_port = ntohs(a4->sin_port);
    snprintf(bound_, sizeof bound_, "%s:%d", ip, bound_port);
  }
  internals::start_sweep(*this);
  return 0;
}

int http_server::adopt(uv_os_sock_t fd) {
  if (draining_) return UV_ECANCELED;
  http_conn* c = internals::new_conn(*this);
  if (c == nullptr) return UV_ENOMEM;
  int rc = uv_tcp_open(&c->tcp, fd);
  if (rc != 0) {
    internals::close_conn(c);
    return rc;
  }
  internals::start_sweep(*this);
  internals::start_conn(c);
  return 0;
}

void http_server::drain(void (*on_done)(void*), void* ctx) {
  if (draining_) return;
  draining_ = true;
  bool was_listening = listening_;
  on_drained_ = on_done;
  drained_ctx_ = ctx;
  if (listening_) {
    // Stop accepting: close the listener now (its close completes with the others).
    ++handles_open_;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), internals::on_handle_closed);
    listening_ = false;
  } else if (listener_.loop != nullptr &&
             !uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_))) {
    ++handles_open_;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), internals::on_handle_closed);
  }
  size_t busy = 0;
  for (http_conn* c = conns_; c != nullptr; c = c->next) {
    if (internals::idle(c)) {
      internals::close_conn(c);
    } else {
      ++busy;
    }
  }
  if (was_listening || conn_count_ > 0) {
    log_event("DRAIN", "start connections=%zu in_flight=%zu deadline_ms=%llu", conn_count_, busy,
              static_cast<unsigned long long>(config_.drain_timeout_ms));
  }
  uv_timer_start(&deadline_, internals::on_deadline, config_.drain_timeout_ms, 0);
  internals::maybe_finish_drain(*this);
}

}  // namespace core
