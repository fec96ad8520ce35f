// The llhttp glue (Node's node_http_parser.cc is the model): one callback per parser event,
// our own limits reported as HPE_USER with a reason (never an exception through C), header
// spans copied only when they must outlive a read, and the checks llhttp 8's lenient build
// leaves to us (token header names, obs-fold, Host rules). Also where a route's body is taken:
// the application's body_policy is asked once the head is complete, and the body is gathered
// whole (or discarded) as it arrives.
#include <array>
#include <cstdlib>
#include <cstring>

#include "http_internal.hpp"

namespace core {

using I = http_server::internals;

int I::on_message_begin(llhttp_t* p) {
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
  c->ctype_len = 0;
  c->expect = ex_none;
  c->error_status = 0;
  c->error_reason = nullptr;
  c->body_len = 0;
  c->body_limit = 0;
  c->body_kind = body_type::none;
  c->capture = 0xff;
  c->captured_len = 0;
  for (uint16_t& n : c->cap_len) n = 0;
  return 0;
}

int I::reject(llhttp_t* p, uint16_t status, const char* reason) {
  auto* c = static_cast<http_conn*>(p->data);
  c->error_status = status;
  c->error_reason = reason;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

namespace {

void buffer_lower(char* buf, uint8_t& len, size_t cap, const char* at, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (len >= cap) {
      len = static_cast<uint8_t>(cap + 1);  // too long to be a value we look for
      return;
    }
    char ch = at[i];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    buf[len++] = ch;
  }
}

std::string_view buffered(const char* buf, uint8_t len, size_t cap) {
  if (len > cap) return {};
  return {buf, len};
}

// RFC 9110 5.6.2: a field name is a token. llhttp 8 (lenient build) lets spaces through,
// including the "Name : value" form that RFC 9112 5.1 says must be rejected.
bool is_tchar(unsigned char ch) {
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

// The media type of a Content-Type value (parameters such as charset ignored).
body_type media_type(std::string_view v) {
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  if (v == "application/json") return body_type::json;
  // Structured syntax suffix (RFC 6839), e.g. application/merge-patch+json.
  if (v.size() > 5 && v.substr(v.size() - 5) == "+json" && v.find('/') != std::string_view::npos)
    return body_type::json;
  if (v == "application/x-www-form-urlencoded") return body_type::form;
  return body_type::none;
}

int count_header_bytes(llhttp_t* p, size_t len) {
  auto* c = static_cast<http_conn*>(p->data);
  c->header_bytes += static_cast<uint32_t>(len);
  if (c->header_bytes > I::config(c).max_header_bytes) {
    return I::reject(p, 431, "header block too large");
  }
  return 0;
}

}  // namespace

int I::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<http_conn*>(p->data);
  for (size_t i = 0; i < len; ++i) {
    if (!is_tchar(static_cast<unsigned char>(at[i]))) return reject(p, 400, "invalid header name");
  }
  c->name_seen = c->name_seen || len > 0;
  buffer_lower(c->header_buf, c->header_len, sizeof c->header_buf, at, len);
  return count_header_bytes(p, len);
}

int I::on_header_field_complete(llhttp_t* p) {
  auto* c = static_cast<http_conn*>(p->data);
  if (!c->name_seen) return reject(p, 400, "empty header name");
  c->name_seen = false;
  c->value_spans = 0;
  if (++c->header_count > config(c).max_headers) {
    return reject(p, 431, "too many header fields");
  }
  std::string_view name = buffered(c->header_buf, c->header_len, sizeof c->header_buf);
  c->header_kind = name == "host"           ? hk_host
                   : name == "expect"       ? hk_expect
                   : name == "accept"       ? hk_accept
                   : name == "content-type" ? hk_content_type
                                            : hk_other;
  c->capture = 0xff;
  if (c->header_kind == hk_other && !name.empty()) {
    const http_server_config& cfg = config(c);
    for (uint8_t i = 0; i < cfg.captured_count && i < 4; ++i) {
      if (name == cfg.captured_headers[i]) {
        c->header_kind = hk_captured;
        c->capture = i;
        c->cap_off[i] = static_cast<uint16_t>(c->target_len + c->captured_len);
        c->cap_len[i] = 0;
      }
    }
  }
  if (c->header_kind == hk_content_type) {  // the last one counts
    c->ctype_len = 0;
    c->ctype_done = false;
  }
  c->html_match = 0;
  c->header_len = 0;
  return count_header_bytes(p, 4);  // ": " and CRLF
}

int I::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<http_conn*>(p->data);
  // A value arrives in several spans only across reads, or through an obs-fold (a CRLF and
  // a space inside it), which llhttp 8 accepts and RFC 9112 5.2 lets a server reject. A
  // span that does not start where this read starts, or that follows a read ending in LF,
  // is a fold.
  if (c->value_spans > 0 && (at != c->chunk_start || c->chunk_ended_lf)) {
    return reject(p, 400, "obsolete line folding in a header");
  }
  if (c->value_spans < 255) ++c->value_spans;
  if (c->header_kind == hk_expect) {
    buffer_lower(c->header_buf, c->header_len, sizeof c->header_buf, at, len);
  } else if (c->header_kind == hk_captured) {
    // Kept after the target in the same block (the target is complete before any header).
    http_server& s = srv(c);
    if (c->target_len + c->captured_len + len > http_server::block_size) {
      return reject(p, 431, "header values too large");
    }
    if (c->target == nullptr) c->target = s.pool_.acquire();
    memcpy(c->target->data + c->target_len + c->captured_len, at, len);
    c->captured_len += static_cast<uint32_t>(len);
    c->cap_len[c->capture] = static_cast<uint16_t>(c->cap_len[c->capture] + len);
  } else if (c->header_kind == hk_content_type) {
    // Only the media type matters (parameters such as charset are not ours to check): the
    // buffer stops at the first ';'.
    std::string_view v(at, len);
    if (!c->ctype_done) {
      size_t semi = v.find(';');
      if (semi != std::string_view::npos) {
        v = v.substr(0, semi);
        c->ctype_done = true;
      }
      buffer_lower(c->ctype_buf, c->ctype_len, sizeof c->ctype_buf, v.data(), v.size());
    }
  } else if (c->header_kind == hk_accept && !c->accepts_html) {
    // Streams an Accept value (it may straddle reads) looking for "text/html", any case.
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
  return count_header_bytes(p, len);
}

int I::on_header_value_complete(llhttp_t* p) {
  auto* c = static_cast<http_conn*>(p->data);
  if (c->header_kind == hk_host) {
    if (c->host_count < 255) ++c->host_count;
  } else if (c->header_kind == hk_expect) {
    // Several Expect fields, or a list, are an expectation we cannot meet as a whole.
    bool cont = buffered(c->header_buf, c->header_len, sizeof c->header_buf) == "100-continue";
    c->expect = c->expect == ex_none && cont ? ex_continue : ex_other;
  }
  c->header_kind = hk_other;
  c->header_len = 0;
  return 0;
}

int I::on_url(llhttp_t* p, const char* at, size_t len) {
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
int I::on_headers_complete(llhttp_t* p) {
  auto* c = static_cast<http_conn*>(p->data);
  http_server& s = srv(c);
  if (p->http_major != 1) return reject(p, 505, "only HTTP/1.x is served");
  bool http11 = p->http_minor >= 1;
  if (p->method == HTTP_CONNECT) return reject(p, 501, "CONNECT is not supported");
  if (c->host_count > 1) return reject(p, 400, "more than one Host header");
  if (http11 && c->host_count == 0) return reject(p, 400, "HTTP/1.1 request without Host");
  bool has_body =
      (p->flags & F_CHUNKED) != 0 || ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
  uint64_t limit = s.config_.max_body_bytes;
  if (s.config_.body_policy != nullptr) {
    std::string_view target =
        c->target != nullptr ? std::string_view(c->target->data, c->target_len) : "";
    body_policy bp = s.config_.body_policy(s.ctx_, static_cast<llhttp_method_t>(p->method), target);
    if (bp.max_bytes > 0) {
      body_type kind = media_type(buffered(c->ctype_buf, c->ctype_len, sizeof c->ctype_buf));
      if (bp.json || bp.form) {
        bool ok = (kind == body_type::json && bp.json) || (kind == body_type::form && bp.form);
        if (!ok) {
          return reject(p, 415,
                        bp.json && bp.form ? "Content-Type must be application/json or "
                                             "application/x-www-form-urlencoded"
                        : bp.json          ? "Content-Type must be application/json"
                                  : "Content-Type must be application/x-www-form-urlencoded");
        }
      }
      c->body_kind = kind;
      c->body_limit = bp.max_bytes;
      limit = bp.max_bytes;
    }
  }
  if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > limit) {
    return reject(p, 413, "request body too large");
  }
  if (http11 && c->expect == ex_other) return reject(p, 417, "unsupported expectation");
  if (http11 && c->expect == ex_continue && has_body && c->queue_head == nullptr) {
    // The client waits for this before sending the body; it is flushed when parsing stops.
    // Behind a pending answer it would jump the queue (a 1xx before earlier finals): then the
    // client sends its body after its own wait, as RFC 9110 10.1.1 lets it.
    append_raw(c, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  return 0;
}

int I::on_body(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<http_conn*>(p->data);
  http_server& s = srv(c);
  c->body_bytes += len;
  if (c->body_limit == 0) {
    // Discarded; chunked bodies count against the same limit.
    if (c->body_bytes > s.config_.max_body_bytes) return reject(p, 413, "request body too large");
    return 0;
  }
  if (c->body_bytes > c->body_limit) return reject(p, 413, "request body too large");
  // Gathered whole, with one byte to spare (the JSON reader puts a NUL after the text): in a
  // pool block while it fits, else in one buffer of the route's limit.
  size_t need = c->body_len + len + 1;
  if (c->body_heap == nullptr && need > http_server::block_size) {
    auto* heap = static_cast<char*>(malloc(static_cast<size_t>(c->body_limit) + 1));
    if (heap == nullptr) return reject(p, 503, "no memory for the request body");
    if (c->body_len > 0) memcpy(heap, c->body_block->data, c->body_len);
    release(s, c->body_block);
    c->body_heap = heap;
  } else if (c->body_heap == nullptr && c->body_block == nullptr) {
    c->body_block = s.pool_.acquire();
  }
  char* dst = c->body_heap != nullptr ? c->body_heap : c->body_block->data;
  memcpy(dst + c->body_len, at, len);
  c->body_len += static_cast<uint32_t>(len);
  return 0;
}

void I::release_body(http_conn* c) {
  release(srv(c), c->body_block);
  free(c->body_heap);
  c->body_heap = nullptr;
  c->body_len = 0;
}

int I::on_message_complete(llhttp_t* p) {
  auto* c = static_cast<http_conn*>(p->data);
  handle_request(c);
  c->in_request = false;
  --srv(c).in_flight_;
  release(srv(c), c->target);
  c->target_len = 0;
  release_body(c);
  if (c->stop_parsing) return HPE_PAUSED;
  if (c->queue_len >= config(c).max_pipelined) {
    c->queue_full = true;
    return HPE_PAUSED;
  }
  // Keep room for the next answer; otherwise pause so the block can be flushed first. A big
  // body must go out before anything that follows it.
  if (http_server::block_size - c->out_len < kMaxResponse || c->big != nullptr) return HPE_PAUSED;
  return 0;
}

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

}  // namespace core
