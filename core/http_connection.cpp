// A connection's life: reading into the loop's one shared buffer and feeding the parser,
// parking input while a write is in flight or too many answers are pending, the periodic sweep
// that enforces the header, idle, answer and linger deadlines (one timer for all connections,
// as Redis's serverCron does), and the lingering close after the last answer.
//
// A connection is freed only in its close callback (libuv may still hold it before that), and
// its pending exchanges are cancelled there, so an application never answers into freed memory.
#include <cstdlib>
#include <cstring>

#include "http_internal.hpp"
#include "log.hpp"

namespace core {

using I = http_server::internals;

void I::link(http_server& s, http_conn* c) {
  c->next = s.conns_;
  if (s.conns_ != nullptr) s.conns_->prev = c;
  s.conns_ = c;
  ++s.conn_count_;
}

void I::unlink(http_server& s, http_conn* c) {
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (s.conns_ == c) s.conns_ = c->next;
  --s.conn_count_;
}

void I::release(http_server& s, block*& b) {
  if (b != nullptr) s.pool_.release(b);
  b = nullptr;
}

// Never frees: memory goes back only in the close callback, after libuv is done with it.
void I::close_conn(http_conn* c) {
  if (c->closing) return;
  c->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_close);
}

void I::on_close(uv_handle_t* h) {
  auto* c = static_cast<http_conn*>(h->data);
  http_server& s = srv(c);
  // The client is gone: whatever it still waits for is cancelled (the application hears of
  // it through on_cancel; its http_deferred turns into a no-op).
  cancel_queue(c, 499);
  if (c->resume_queued) {
    for (http_conn** pp = &s.resume_list_; *pp != nullptr; pp = &(*pp)->resume_next) {
      if (*pp == c) {
        *pp = c->resume_next;
        break;
      }
    }
  }
  release(s, c->target);
  release(s, c->out);
  release(s, c->in);
  release_big(c->big, c->big_len);
  release_body(c);
  if (c->in_request) --s.in_flight_;
  unlink(s, c);
  delete c;
  maybe_finish_drain(s);
}

void I::start_reading(http_conn* c) {
  if (c->reading || c->closing) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read) == 0) {
    c->reading = true;
  } else {
    close_conn(c);
  }
}

void I::stop_reading(http_conn* c) {
  if (!c->reading) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
  c->reading = false;
}

bool I::idle(const http_conn* c) {
  return !c->in_request && !c->writing && c->out_len == 0 && c->in_len == 0 && !c->lingering &&
         c->queue_head == nullptr;
}

void I::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  http_server& s = srv(static_cast<http_conn*>(h->data));
  // One read buffer for the whole loop: input is parsed before the next read happens, and
  // whatever must outlive this callback (the target, a body, parked input) is copied out.
  buf->base = s.read_buf_;
  buf->len = sizeof s.read_buf_;
}

void I::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<http_conn*>(stream->data);
  if (nread == 0) return;  // EAGAIN: nothing to do
  if (nread < 0) {
    stop_reading(c);
    c->peer_eof = true;
    // A half-closed client still gets the answers already made for it; but a client that
    // leaves while an answer is being prepared is gone (nginx's 499): its pending exchanges
    // are cancelled rather than answered into a socket nobody reads.
    if (nread == UV_EOF && !c->lingering && c->queue_head == nullptr &&
        (c->writing || c->out_len > 0)) {
      c->close_after_write = true;
      c->stop_parsing = true;
    } else {
      close_conn(c);
    }
    return;
  }
  c->last_active = now(c);
  if (c->lingering) return;  // discarding until the FIN or the linger deadline
  process(c, buf->base, static_cast<size_t>(nread));
}

// Feeds input to the parser. Answers are gathered in c->out; when the block is nearly full
// the parser pauses, the block is flushed, and parsing continues. If the socket pushes back,
// or too many answers of this connection are pending, the rest of the input is parked in c->in
// and parsed when the write completes or the queue shrinks.
void I::process(http_conn* c, const char* data, size_t len) {
  while (len > 0 && !c->stop_parsing && !c->closing) {
    c->chunk_start = data;
    c->in_parser = true;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    c->in_parser = false;
    c->chunk_ended_lf = data[len - 1] == '\n';
    if (err == HPE_OK) break;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      // An Upgrade request was answered as plain HTTP/1.1 (RFC 9110 7.8 lets a server ignore
      // Upgrade); the client saw no 101, so the connection simply goes on.
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - data);
      data += used;
      len -= used;
      if (err == HPE_PAUSED) {
        llhttp_resume(&c->parser);
      } else {
        llhttp_resume_after_upgrade(&c->parser);
      }
      if (c->stop_parsing) break;
      if (c->queue_full) {
        flush(c);
        park_input(c, data, len);
        stop_reading(c);
        return;
      }
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
    reply_error(c, status,
                c->error_reason != nullptr ? c->error_reason : llhttp_get_error_reason(&c->parser));
    break;
  }
  if (c->queue_head != nullptr) {
    pump(c);
  } else {
    flush(c);
  }
}

void I::park_input(http_conn* c, const char* data, size_t len) {
  if (len == 0 || c->stop_parsing) return;
  if (c->in == nullptr) c->in = srv(c).pool_.acquire();
  // data may already point into c->in (parsing parked input): memmove handles the overlap.
  memmove(c->in->data, data, len);
  c->in_len = static_cast<uint32_t>(len);
}

// Goes on with the input after a write completed or the queue of answers shrank: parses what
// was parked, then reads again (unless something in between stopped the connection).
void I::resume_input(http_conn* c) {
  if (c->queue_full || c->writing || c->closing || c->close_after_write || c->lingering) return;
  if (c->in_len > 0) {
    // It may park again (in place).
    size_t len = c->in_len;
    c->in_len = 0;
    process(c, c->in->data, len);
    if (c->in_len == 0) release(srv(c), c->in);
  }
  if (c->closing || c->writing || c->close_after_write || c->queue_full || c->lingering) return;
  if (c->peer_eof) {
    close_conn(c);
    return;
  }
  start_reading(c);
  if (srv(c).draining_ && idle(c)) close_conn(c);
}

// After the last answer: send our FIN, then wait for the peer's, so that unread input does not
// turn into a reset that destroys the answer in flight (lingering close). Bounded twice: by
// linger_ms after the last byte received and by linger_max_ms in all.
void I::finish_connection(http_conn* c) {
  if (c->closing || c->lingering) return;
  if (c->peer_eof) {
    close_conn(c);
    return;
  }
  c->lingering = true;
  c->last_active = c->request_start = now(c);  // request_start: the linger's start
  release(srv(c), c->in);
  c->in_len = 0;
  if (uv_shutdown(&c->shutdown_req, reinterpret_cast<uv_stream_t*>(&c->tcp), on_shutdown) != 0) {
    close_conn(c);
  }
}

void I::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<http_conn*>(req->handle->data);
  if (c->closing) return;
  if (status < 0 || c->peer_eof) {
    close_conn(c);
    return;
  }
  start_reading(c);  // discard until EOF or the linger deadline
}

// One periodic sweep instead of a timer per connection: header, idle, answer and linger
// deadlines. A connection whose answer is pending is never cut as idle.
void I::on_sweep(uv_timer_t* t) {
  auto& s = *static_cast<http_server*>(t->data);
  const http_server_config& cfg = s.config_;
  uint64_t now_ms = uv_now(s.loop_);
  for (http_conn* c = s.conns_; c != nullptr;) {
    http_conn* next = c->next;  // close_conn never unlinks synchronously, but stay safe
    if (!c->closing && !c->lingering && c->queue_head != nullptr) {
      check_answer_deadlines(c, now_ms);
    }
    if (!c->closing) {
      if (c->lingering) {
        if (now_ms - c->last_active >= cfg.linger_ms ||
            now_ms - c->request_start >= cfg.linger_max_ms) {
          close_conn(c);
        }
      } else if (c->in_request) {
        if (now_ms - c->request_start >= cfg.header_timeout_ms && !c->writing) {
          c->stop_parsing = true;
          reply_error(c, 408, "request timeout");
          flush(c);
        }
      } else if (c->writing) {
        if (now_ms - c->last_active >= cfg.idle_timeout_ms) close_conn(c);
      } else if (idle(c)) {
        // A connection that never sent a request gets the header timeout, not the idle one.
        uint64_t limit = c->requests == 0 ? cfg.header_timeout_ms : cfg.idle_timeout_ms;
        if (now_ms - c->last_active >= limit) close_conn(c);
      }
    }
    c = next;
  }
}

// Deadlines are checked a few times per shortest timeout (at most once a second), so a
// timeout fires within a quarter of its length late.
void I::start_sweep(http_server& s) {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&s.sweep_))) return;
  const http_server_config& cfg = s.config_;
  uint64_t shortest = cfg.header_timeout_ms;
  for (uint64_t t :
       {cfg.idle_timeout_ms, cfg.linger_ms, cfg.linger_max_ms, cfg.answer_timeout_ms}) {
    if (t < shortest) shortest = t;
  }
  uint64_t period = shortest / 4;
  if (period > 1000) period = 1000;
  if (period < 10) period = 10;
  uv_timer_start(&s.sweep_, on_sweep, period, period);
}

}  // namespace core
