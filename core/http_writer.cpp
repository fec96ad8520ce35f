// Response bytes and the write path. Answers are formatted straight into the connection's
// pooled block (head and bodies up to inline_body); a larger body goes in a buffer of its own
// written right after, in the same gathered write. One try-write per batch; only when the
// socket pushes back is a uv_write queued (h2o's one write in flight per connection), and the
// buffers live until its callback.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "http_internal.hpp"
#include "log.hpp"

namespace core {

using I = http_server::internals;

std::string_view I::http_date(http_server& s) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec != s.date_sec_) {
    format_http_date(ts.tv_sec, s.date_);
    s.date_sec_ = ts.tv_sec;
  }
  return {s.date_, 29};
}

void I::append_raw(http_conn* c, std::string_view bytes) {
  if (c->out == nullptr) c->out = srv(c).pool_.acquire();
  if (bytes.size() > http_server::block_size - c->out_len) return;  // never: kMaxResponse free
  memcpy(c->out->data + c->out_len, bytes.data(), bytes.size());
  c->out_len += static_cast<uint32_t>(bytes.size());
}

void I::release_big(char*& big, size_t& len) {
  free(big);
  big = nullptr;
  len = 0;
}

// Formats one answer at a.head + a.head_len (the block is taken from the pool if absent); a
// body over inline_body is copied to a buffer of its own in a.big. Returns false when it could
// not be made as asked (no memory, too large): a 500 that closes the connection was made instead.
bool I::make_answer(http_server& s, http_answer_bytes& a, int status, const char* content_type,
                    std::string_view extra, std::string_view body, bool head_only, bool keep_alive,
                    bool http10) {
  bool as_asked = true;
  if (a.head == nullptr) a.head = s.pool_.acquire();
  // 204 and 304 never carry a body (RFC 9110 15.3.5, 15.4.5): whatever was written is dropped.
  if (status == 204 || status == 304) body = {};
  if (body.size() > s.config_.max_response_body) {
    log_event("ERROR", "response body too large bytes=%zu limit=%zu", body.size(),
              s.config_.max_response_body);
    as_asked = false;
  }
  bool big = as_asked && !head_only && body.size() > http_server::inline_body;
  if (big) {
    a.big = static_cast<char*>(malloc(body.size()));
    if (a.big == nullptr) {
      log_event("ERROR", "no memory for a response body bytes=%zu", body.size());
      as_asked = false;
      big = false;
    } else {
      memcpy(a.big, body.data(), body.size());
      a.big_len = body.size();
    }
  }
  if (!as_asked) {
    status = 500;
    content_type = "application/json";
    extra = {};
    body = "{\"error\":\"internal error\"}";
    keep_alive = false;
  }
  buf_writer w(a.head->data + a.head_len, http_server::block_size - a.head_len);
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
  if (w.overflow) {
    // Cannot happen: the parser pauses while less than kMaxResponse is free.
    log_event("ERROR", "response did not fit status=%d", status);
    return false;
  }
  a.head_len += static_cast<uint32_t>(w.len);
  return as_asked;
}

void I::append_response(http_conn* c, int status, const char* content_type, std::string_view extra,
                        std::string_view body, bool head_only, bool keep_alive, bool http10) {
  http_server& s = srv(c);
  http_answer_bytes a{c->out, c->out_len, c->big, c->big_len};
  bool ok = make_answer(s, a, status, content_type, extra, body, head_only, keep_alive, http10);
  c->out = a.head;
  c->out_len = a.head_len;
  c->big = a.big;
  c->big_len = a.big_len;
  ++c->requests;
  if (!keep_alive || !ok) {
    c->stop_parsing = true;
    c->close_after_write = true;
  }
}

void I::access_log(http_conn* c, std::string_view method, std::string_view target, int status,
                   size_t bytes) {
  if (!config(c).access_log) return;
  char escaped[512];
  log_escape(target, escaped, sizeof escaped);
  log_event("ACCESS", "method=%.*s target=\"%s\" status=%d bytes=%zu",
            static_cast<int>(method.size()), method.data(), escaped, status, bytes);
}

void I::observe(http_server& s, std::string_view target, int status, uint8_t route,
                uint64_t start_ns) {
  if (s.config_.observer == nullptr) return;
  s.config_.observer(s.config_.observer_ctx, http_observation{target, status, route, start_ns});
}

// One error answer, then the connection closes: after a framing error nothing that follows
// on the connection can be trusted. Behind answers still pending it waits its turn.
void I::reply_error(http_conn* c, int status, const char* reason) {
  http_server& s = srv(c);
  // {"error":"<reason phrase>","detail":"<what exactly>"}: the phrase for programs, the detail
  // for the person reading it.
  char body[256];
  buf_writer w(body, sizeof body);
  w.put("{\"error\":\"");
  json_escape(w, http_reason(status));
  if (reason != nullptr && *reason != '\0') {
    w.put("\",\"detail\":\"");
    json_escape(w, reason);
  }
  w.put("\"}");
  if (c->queue_head != nullptr) {
    http_exchange* x = new_exchange(s, c);
    if (x == nullptr) {
      close_conn(c);
    } else {
      make_answer(s, x->answer, status, "application/json", {}, w.view(), false, false, false);
      x->state = http_exchange::ready;
      x->keep_alive = false;
      enqueue(c, x);
      ++c->requests;
    }
    c->stop_parsing = true;
  } else {
    append_response(c, status, "application/json", {}, w.view(), false, false, false);
  }
  const char* target = c->target != nullptr ? c->target->data : "";
  if (c->in_request) {
    c->in_request = false;
    --s.in_flight_;
  }
  observe(s, std::string_view(target, c->target_len), status, http_reply::untagged,
          c->start_ns != 0 ? c->start_ns : uv_hrtime());
  access_log(c, "-", std::string_view(target, c->target_len), status, w.len);
  if (status != 503 && status != 408) {
    char why[160];
    log_escape(reason != nullptr ? reason : "", why, sizeof why);
    log_event("REJECT", "status=%d reason=\"%s\"", status, why);
  }
}

// Writes gathered answers. Returns true when nothing is left pending. A connection marked
// close_after_write is finished once its output and its queue of answers are both empty.
bool I::flush(http_conn* c) {
  if (c->closing) return false;
  if (c->writing) return false;
  if (c->out_len == 0 && c->big == nullptr) {
    release(srv(c), c->out);
    if (c->close_after_write && c->queue_head == nullptr) finish_connection(c);
    return !c->close_after_write;
  }
  uv_buf_t b[2] = {uv_buf_init(c->out != nullptr ? c->out->data : nullptr, c->out_len),
                   uv_buf_init(c->big, static_cast<unsigned>(c->big_len))};
  unsigned nbufs = c->big != nullptr ? 2 : 1;
  size_t total = c->out_len + c->big_len;
  auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
  int n = uv_try_write(stream, b, nbufs);
  if (n >= 0 && static_cast<size_t>(n) == total) {
    c->out_len = 0;
    release(srv(c), c->out);
    release_big(c->big, c->big_len);
    c->last_active = now(c);
    if (c->close_after_write) {
      if (c->queue_head == nullptr) finish_connection(c);
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

void I::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<http_conn*>(req->handle->data);
  c->writing = false;
  c->out_len = 0;
  release(srv(c), c->out);
  release_big(c->big, c->big_len);
  if (c->closing) return;
  if (status < 0) {
    close_conn(c);
    return;
  }
  c->last_active = now(c);
  if (c->queue_head != nullptr) {
    pump(c);  // answers that became ready meanwhile go out now
  } else if (c->close_after_write) {
    finish_connection(c);
    return;
  }
  resume_input(c);
}

}  // namespace core
