// Calling the handler, and answers that come later.
//
// The model is h2o's: the request lives inside its connection; a handler that cannot answer
// at once takes the exchange (http_reply::defer) and answers through a small value it keeps
// (http_deferred), from whatever callback brings its data. What the server guarantees:
//   - answers leave in request order: a connection keeps a queue of exchanges (deferred ones
//     and answers made behind them), and only the ready head of it moves to the output;
//   - nothing after a request without keep-alive is parsed or answered;
//   - an exchange ends exactly once: answered, cancelled (client gone, drain cut) or timed out
//     (504 at answer_timeout_ms); the application hears of the last two through on_cancel,
//     and a late answer() is a no-op, because records are reused under a new generation and
//     freed only with the server;
//   - answer() never re-enters the handler: parked input of a connection whose queue shrank is
//     parsed from an idle callback, not from inside the application's own callback.
// Immediate answers on a connection with nothing pending take the old path straight into the
// output block: hello never touches any of this.
#include <cstdlib>
#include <cstring>
#include <new>

#include "http_internal.hpp"
#include "log.hpp"

namespace core {

using I = http_server::internals;

namespace {

// What the handler call knows that defer() needs.
struct handling {
  http_conn* conn;
  const http_request* request;
  bool head_only;
  bool http10;
};

}  // namespace

http_exchange* I::new_exchange(http_server& s, http_conn* c) {
  http_exchange* x = s.free_exchanges_;
  if (x != nullptr) {
    s.free_exchanges_ = x->next;
  } else {
    x = new (std::nothrow) http_exchange;
    if (x == nullptr) return nullptr;
    x->next_all = s.all_exchanges_;
    s.all_exchanges_ = x;
  }
  x->next = nullptr;
  x->conn = c;
  x->state = http_exchange::unused;
  x->route = http_reply::untagged;
  x->on_cancel = nullptr;
  x->cancel_ctx = nullptr;
  x->status = 0;
  x->body_bytes = 0;
  x->method_name = "";
  return x;
}

// Gives everything an exchange holds back and returns it to the free list under a new
// generation (so any http_deferred for it turns into a no-op).
void I::end_exchange(http_server& s, http_exchange* x) {
  release(s, x->target);
  x->target_len = 0;
  release(s, x->body_block);
  free(x->body_heap);
  x->body_heap = nullptr;
  release(s, x->answer.head);
  x->answer.head_len = 0;
  release_big(x->answer.big, x->answer.big_len);
  ++x->generation;
  x->state = http_exchange::unused;
  x->conn = nullptr;
  x->next = s.free_exchanges_;
  s.free_exchanges_ = x;
}

void I::free_exchanges(http_server& s) {
  for (http_exchange* x = s.all_exchanges_; x != nullptr;) {
    http_exchange* next = x->next_all;
    delete x;
    x = next;
  }
  s.all_exchanges_ = s.free_exchanges_ = nullptr;
}

void I::enqueue(http_conn* c, http_exchange* x) {
  x->next = nullptr;
  if (c->queue_tail != nullptr) {
    c->queue_tail->next = x;
  } else {
    c->queue_head = x;
  }
  c->queue_tail = x;
  ++c->queue_len;
}

static http_exchange* pop(http_conn* c) {
  http_exchange* x = c->queue_head;
  c->queue_head = x->next;
  if (c->queue_head == nullptr) c->queue_tail = nullptr;
  --c->queue_len;
  x->next = nullptr;
  return x;
}

// Answers the handler gave at once go straight to the output, unless an earlier answer of the
// connection is still pending: then they wait in the queue, ready.
static void answer_now(http_conn* c, const handling& h, int status, const char* content_type,
                       std::string_view extra, std::string_view body, uint8_t route) {
  http_server& s = I::srv(c);
  const http_request& req = *h.request;
  if (c->queue_head == nullptr) {
    I::append_response(c, status, content_type, extra, body, h.head_only, req.keep_alive, h.http10);
  } else {
    http_exchange* x = I::new_exchange(s, c);
    if (x == nullptr) {
      log_event("ERROR", "no memory for a queued answer");
      c->stop_parsing = true;
      I::close_conn(c);
      return;
    }
    x->keep_alive = req.keep_alive;
    if (!I::make_answer(s, x->answer, status, content_type, extra, body, h.head_only,
                        req.keep_alive, h.http10)) {
      x->keep_alive = false;
    }
    x->state = http_exchange::ready;
    I::enqueue(c, x);
    ++c->requests;
    if (!x->keep_alive) c->stop_parsing = true;
  }
  I::access_log(c, req.method_name, req.target, status, body.size());
  I::observe(s, req.target, status, route, req.start_ns);
}

void I::handle_request(http_conn* c) {
  http_server& s = srv(c);
  llhttp_t* p = &c->parser;
  http_request req{};
  req.method = static_cast<llhttp_method_t>(p->method);
  req.method_name = llhttp_method_name(req.method);
  req.target =
      c->target != nullptr ? std::string_view(c->target->data, c->target_len) : std::string_view();
  req.version_major = p->http_major;
  req.version_minor = p->http_minor;
  req.keep_alive = llhttp_should_keep_alive(p) != 0 && !s.draining_;
  req.accepts_html = c->accepts_html;
  req.start_ns = c->start_ns;
  if (c->target != nullptr) {
    for (uint8_t i = 0; i < s.config_.captured_count && i < 4; ++i) {
      if (c->cap_len[i] > 0) {
        req.headers[i] = {c->target->data + c->cap_off[i], static_cast<size_t>(c->cap_len[i])};
      }
    }
  }
  if (s.config_.want_peer) {
    s.peer_[0] = '\0';
    sockaddr_storage sa{};
    int sa_len = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&sa), &sa_len) == 0) {
      if (sa.ss_family == AF_INET) {
        uv_ip4_name(reinterpret_cast<sockaddr_in*>(&sa), s.peer_, sizeof s.peer_);
      } else if (sa.ss_family == AF_INET6) {
        uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&sa), s.peer_, sizeof s.peer_);
      }
    }
    req.peer = s.peer_;
  }
  handling h{c, &req, req.method == HTTP_HEAD, p->http_major == 1 && p->http_minor == 0};

  if (c->body_limit > 0) {
    char* text = c->body_heap != nullptr    ? c->body_heap
                 : c->body_block != nullptr ? c->body_block->data
                                            : nullptr;
    req.body = text != nullptr ? std::string_view(text, c->body_len) : std::string_view();
    req.body_kind = c->body_kind;
    if (c->body_kind == body_type::json) {
      static char empty[1];
      if (text == nullptr) text = empty;
      if (!s.json_->parse(text, c->body_len)) {
        // A well-framed request with a bad body: a 400 naming the problem, and the
        // connection goes on.
        char msg[256];
        buf_writer w(msg, sizeof msg);
        w.put("{\"error\":\"");
        json_escape(w, s.json_->error());
        w.put("\"}");
        answer_now(c, h, 400, "application/json", {}, w.view(), http_reply::untagged);
        return;
      }
      req.json = s.json_.get();
    }
  }

  http_reply reply;
  reply.body = buf_writer(s.body_buf_.get(), s.config_.max_response_body);
  reply.internal = &h;
  s.handler_(s.ctx_, req, reply);
  if (reply.deferred()) {
    set_route(reply);
    return;
  }
  if (reply.body.overflow) {
    log_event("ERROR", "response body too large target_bytes=%zu", req.target.size());
    answer_now(c, h, 500, "application/json", {}, "{\"error\":\"internal error\"}", reply.route);
    return;
  }
  answer_now(c, h, reply.status, reply.content_type, reply.extra_headers, reply.body.view(),
             reply.route);
}

void I::count_pending(http_server& s, int delta) {
  s.pending_ = static_cast<size_t>(static_cast<ptrdiff_t>(s.pending_) + delta);
}

void I::set_route(http_reply& reply) {
  reply.deferred_.x_->route = reply.route;
}

http_deferred http_reply::defer(http_cancel_fn on_cancel, void* ctx) {
  if (deferred_.x_ != nullptr || internal == nullptr) return deferred_;
  auto* h = static_cast<handling*>(internal);
  http_conn* c = h->conn;
  http_server& s = I::srv(c);
  http_exchange* x = I::new_exchange(s, c);
  if (x == nullptr) return {};  // no memory: the handler's reply goes out as it is
  const http_request& req = *h->request;
  x->state = http_exchange::pending;
  x->head_only = h->head_only;
  x->keep_alive = req.keep_alive;
  x->http10 = h->http10;
  x->route = route;
  x->start_ns = req.start_ns;
  x->method_name = req.method_name.data();  // llhttp's static names
  x->deadline_ms = I::now(c) + I::config(c).answer_timeout_ms;
  x->on_cancel = on_cancel;
  x->cancel_ctx = ctx;
  // The request's views stay valid while the answer is pending: the exchange takes the
  // memory they point into.
  x->target = c->target;
  x->target_len = c->target_len;
  c->target = nullptr;
  x->body_block = c->body_block;
  x->body_heap = c->body_heap;
  c->body_block = nullptr;
  c->body_heap = nullptr;
  I::enqueue(c, x);
  I::count_pending(s, +1);
  if (!req.keep_alive) c->stop_parsing = true;  // nothing after it is answered
  deferred_ = http_deferred(x, x->generation);
  return deferred_;
}

bool http_deferred::pending() const {
  return x_ != nullptr && x_->generation == generation_ && x_->state == http_exchange::pending;
}

bool http_deferred::answer(int status, const char* content_type, std::string_view body,
                           std::string_view extra_headers) const {
  if (!pending()) return false;
  http_conn* c = x_->conn;
  if (!I::complete(x_, status, content_type, body, extra_headers, false)) return false;
  I::pump(c);
  return true;
}

// Makes a pending exchange's answer (the caller then pumps). server_made: the 504 of the
// answer deadline (the application was told through on_cancel).
bool I::complete(http_exchange* x, int status, const char* content_type, std::string_view body,
                 std::string_view extra, bool server_made) {
  http_conn* c = x->conn;
  if (x->state != http_exchange::pending || c == nullptr || c->closing) return false;
  http_server& s = srv(c);
  bool keep_alive = x->keep_alive && !s.draining_;
  if (!make_answer(s, x->answer, status, content_type, extra, body, x->head_only, keep_alive,
                   x->http10)) {
    keep_alive = false;
  }
  x->keep_alive = keep_alive;
  x->state = http_exchange::ready;
  --s.pending_;
  ++c->requests;
  std::string_view target =
      x->target != nullptr ? std::string_view(x->target->data, x->target_len) : "";
  access_log(c, x->method_name, target, status, body.size());
  observe(s, target, status, server_made ? http_reply::untagged : x->route, x->start_ns);
  // The request's memory is not needed any more.
  release(s, x->target);
  release(s, x->body_block);
  free(x->body_heap);
  x->body_heap = nullptr;
  return true;
}

// Moves the ready head of the queue to the output, in order, and writes it. Inside the parser
// the bytes are only moved (process() flushes when llhttp returns).
void I::pump(http_conn* c) {
  http_server& s = srv(c);
  http_exchange* x;
  while ((x = c->queue_head) != nullptr && x->state == http_exchange::ready && !c->writing &&
         !c->closing) {
    // A big body must leave before what follows it, and the block must have room.
    if (c->big != nullptr || http_server::block_size - c->out_len < x->answer.head_len) {
      if (c->in_parser || !flush(c)) break;
    }
    if (c->out == nullptr || c->out_len == 0) {
      release(s, c->out);
      c->out = x->answer.head;
      c->out_len = x->answer.head_len;
      x->answer.head = nullptr;
    } else {
      memcpy(c->out->data + c->out_len, x->answer.head->data, x->answer.head_len);
      c->out_len += x->answer.head_len;
    }
    x->answer.head_len = 0;
    c->big = x->answer.big;
    c->big_len = x->answer.big_len;
    x->answer.big = nullptr;
    x->answer.big_len = 0;
    bool keep_alive = x->keep_alive;
    end_exchange(s, pop(c));
    if (!keep_alive) {
      // Nothing after a "Connection: close" answer is answered.
      c->stop_parsing = true;
      c->close_after_write = true;
      cancel_queue(c, 499);
      break;
    }
  }
  if (c->queue_full && c->queue_len < config(c).max_pipelined) {
    c->queue_full = false;
    schedule_resume(c);
  }
  if (!c->in_parser) flush(c);
}

// Ends every exchange still queued on a connection that goes away (or after a close answer):
// pending ones are cancelled (on_cancel, logged with log_status), ready ones dropped.
void I::cancel_queue(http_conn* c, int log_status) {
  http_server& s = srv(c);
  while (c->queue_head != nullptr) {
    http_exchange* x = pop(c);
    bool was_pending = x->state == http_exchange::pending;
    http_cancel_fn fn = x->on_cancel;
    void* ctx = x->cancel_ctx;
    if (was_pending) {
      --s.pending_;
      std::string_view target =
          x->target != nullptr ? std::string_view(x->target->data, x->target_len) : "";
      access_log(c, x->method_name, target, log_status, 0);
    }
    end_exchange(s, x);  // first: an answer() from inside on_cancel is a no-op
    if (was_pending && fn != nullptr) fn(ctx);
  }
}

// The sweep's part: a pending answer past its deadline becomes a 504, and the application is
// told (its late answer is then ignored).
void I::check_answer_deadlines(http_conn* c, uint64_t now_ms) {
  http_server& s = srv(c);
  for (http_exchange* x = c->queue_head; x != nullptr; x = x->next) {
    if (x->state != http_exchange::pending || now_ms < x->deadline_ms) continue;
    http_cancel_fn fn = x->on_cancel;
    void* ctx = x->cancel_ctx;
    x->on_cancel = nullptr;
    ++x->generation;  // the application's http_deferred is now stale
    log_event("TIMEOUT", "answer_ms=%llu target_bytes=%u",
              static_cast<unsigned long long>(s.config_.answer_timeout_ms), x->target_len);
    complete(x, 504, "application/json", "{\"error\":\"the service did not answer in time\"}", {},
             true);
    if (fn != nullptr) fn(ctx);
    if (c->closing) return;
  }
  if (!c->closing) pump(c);
}

void I::schedule_resume(http_conn* c) {
  if (c->resume_queued || c->closing) return;
  http_server& s = srv(c);
  c->resume_queued = true;
  c->resume_next = s.resume_list_;
  s.resume_list_ = c;
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&s.resume_))) {
    uv_idle_start(&s.resume_, on_resume);
  }
}

void I::on_resume(uv_idle_t* h) {
  auto& s = *static_cast<http_server*>(h->data);
  uv_idle_stop(h);
  http_conn* list = s.resume_list_;
  s.resume_list_ = nullptr;
  while (list != nullptr) {
    http_conn* c = list;
    list = c->resume_next;
    c->resume_next = nullptr;
    c->resume_queued = false;
    resume_input(c);
  }
}

}  // namespace core
