// The server's front door and its end: binding and accepting (or adopting a connected
// socket), the connection limit, and the graceful drain (nginx's order: close the listener,
// close idle keep-alive connections, let in-flight requests and deferred answers finish with
// "Connection: close", cut what remains at a deadline, report when nothing is left).
#include <cstdio>
#include <new>

#include "http_internal.hpp"
#include "log.hpp"

namespace core {

using I = http_server::internals;

void I::on_connection(uv_stream_t* listener, int status) {
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

http_conn* I::new_conn(http_server& s) {
  auto* c = new (std::nothrow) http_conn;
  if (c == nullptr) return nullptr;
  c->server = &s;
  uv_tcp_init(s.loop_, &c->tcp);
  c->tcp.data = c;
  link(s, c);
  return c;
}

void I::start_conn(http_conn* c) {
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

void I::on_deadline(uv_timer_t* t) {
  auto& s = *static_cast<http_server*>(t->data);
  log_event("DRAIN", "deadline=reached cut_connections=%zu pending_answers=%zu", s.conn_count_,
            s.pending_);
  for (http_conn* c = s.conns_; c != nullptr; c = c->next) close_conn(c);
}

// The listener's close may complete while connections are still being answered: on_done waits
// for the last of them (finished_), and runs once.
void I::on_handle_closed(uv_handle_t* h) {
  auto& s = *static_cast<http_server*>(h->data);
  if (--s.handles_open_ == 0) report_drained(s);
}

void I::report_drained(http_server& s) {
  if (!s.finished_ || s.handles_open_ != 0 || s.on_drained_ == nullptr) return;
  auto fn = s.on_drained_;
  s.on_drained_ = nullptr;
  fn(s.drained_ctx_);
}

void I::maybe_finish_drain(http_server& s) {
  if (!s.draining_ || s.finished_ || s.conn_count_ != 0) return;
  s.finished_ = true;
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(&s.sweep_), reinterpret_cast<uv_handle_t*>(&s.deadline_),
        reinterpret_cast<uv_handle_t*>(&s.resume_), reinterpret_cast<uv_handle_t*>(&s.listener_)}) {
    if (h->loop != nullptr && !uv_is_closing(h)) {
      ++s.handles_open_;
      uv_close(h, on_handle_closed);
    }
  }
  report_drained(s);
}

http_server::http_server(uv_loop_t* loop, const http_server_config& config, http_handler handler,
                         void* ctx)
    : loop_(loop), config_(config), handler_(handler), ctx_(ctx), pool_(256) {
  if (config_.max_target_bytes > block_size) config_.max_target_bytes = block_size;
  if (config_.max_response_body < inline_body) config_.max_response_body = inline_body;
  if (config_.max_pipelined == 0) config_.max_pipelined = 1;
  if (config_.linger_max_ms < config_.linger_ms) config_.linger_max_ms = config_.linger_ms;
  body_buf_.reset(new char[config_.max_response_body]);
  if (config_.body_policy != nullptr) {
    json_.reset(new json_doc(config_.json_max_values, config_.json_max_depth));
  }
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  uv_timer_init(loop_, &deadline_);
  deadline_.data = this;
  uv_idle_init(loop_, &resume_);
  resume_.data = this;
}

http_server::~http_server() {
  // The owner drains before destroying; handles must be closed by then. Exchange records are
  // the server's own and go with it.
  internals::free_exchanges(*this);
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
    log_event("DRAIN", "start connections=%zu in_flight=%zu pending_answers=%zu deadline_ms=%llu",
              conn_count_, busy, pending_,
              static_cast<unsigned long long>(config_.drain_timeout_ms));
  }
  uv_timer_start(&deadline_, internals::on_deadline, config_.drain_timeout_ms, 0);
  internals::maybe_finish_drain(*this);
}

}  // namespace core
