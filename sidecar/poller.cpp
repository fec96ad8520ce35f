#include "poller.hpp"

#include <cstdio>
#include <cstring>

#include "log.hpp"

namespace sidecar {

struct poller::internals {
  // --- curl -> libuv -----------------------------------------------------------------------

  static int on_socket(CURL*, curl_socket_t fd, int what, void* userp, void* socketp) {
    auto* self = static_cast<poller*>(userp);
    auto* sc = static_cast<socket_ctx*>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (sc != nullptr) {
        release_socket(sc);
        curl_multi_assign(self->multi_, fd, nullptr);
      }
      return 0;
    }
    if (sc == nullptr) {
      sc = acquire_socket(self, fd);
      if (sc == nullptr) {
        core::log_event("ERROR", "too many sockets max=%zu", self->max_sockets_);
        return -1;
      }
      curl_multi_assign(self->multi_, fd, sc);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
  }

  static socket_ctx* acquire_socket(poller* self, curl_socket_t fd) {
    return acquire_poll_slot(self->loop_, self->sockets_.get(), self->max_sockets_, self, fd);
  }

  static void release_socket(socket_ctx* sc) { release_poll_slot(sc); }

  static void on_poll(uv_poll_t* h, int status, int events) {
    auto* sc = static_cast<socket_ctx*>(h->data);
    poller* self = sc->owner;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(self->multi_, sc->fd, flags, &running);
    check_done(self);
  }

  static int on_timer_change(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<poller*>(userp);
    if (self->closed_) return 0;
    if (timeout_ms < 0) {
      uv_timer_stop(&self->timer_);
    } else {
      // Even a 0 ms timeout goes through the loop: curl must not be re-entered from here.
      uv_timer_start(&self->timer_, on_timer, static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<poller*>(t->data);
    int running = 0;
    curl_multi_socket_action(self->multi_, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(self);
  }

  static size_t on_body(char* data, size_t size, size_t n, void* userp) {
    auto* t = static_cast<transfer*>(userp);
    size_t len = size * n;
    if (t->kind_ == check_kind::http) {
      t->body_len_ += len;  // a web page: read and dropped, so any size costs nothing
      return len;
    }
    if (len > transfer::max_body - t->body_len_) {
      t->body_overflow_ = true;
      return 0;  // aborts the transfer: the target is not a health endpoint we can trust
    }
    memcpy(t->body_ + t->body_len_, data, len);
    t->body_len_ += len;
    return len;
  }

  // --- results -----------------------------------------------------------------------------

  static void check_done(poller* self) {
    CURLMsg* msg = nullptr;
    int left = 0;
    while (!self->closed_ && (msg = curl_multi_info_read(self->multi_, &left)) != nullptr) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURLcode code = msg->data.result;
      transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      curl_multi_remove_handle(self->multi_, msg->easy_handle);
      if (t == nullptr) continue;
      t->in_flight_ = false;
      poll_facts facts;
      collect(self, *t, code, facts);
      t->on_result_(t->ctx_, facts);
    }
  }

  // What the GET came to, as facts; the body stays in the transfer until its next start.
  static void collect(poller* self, transfer& t, CURLcode code, poll_facts& f) {
    curl_off_t total_us = 0;
    curl_easy_getinfo(t.easy_, CURLINFO_TOTAL_TIME_T, &total_us);
    f.round_trip = static_cast<double>(total_us) / 1e6;
    curl_easy_getinfo(t.easy_, CURLINFO_RESPONSE_CODE, &f.http_status);
    f.timeout_ms = self->timeout_ms_;
    f.error_text = t.curl_error_[0] != '\0' ? t.curl_error_ : curl_easy_strerror(code);
    switch (code) {
      case CURLE_OK:
        f.error_text = "";
        if (t.kind_ == check_kind::health) f.body = std::string_view(t.body_, t.body_len_);
        break;
      case CURLE_OPERATION_TIMEDOUT: f.error = transport_error::timeout; break;
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY: f.error = transport_error::resolve; break;
      case CURLE_WRITE_ERROR:
        f.error = t.body_overflow_ ? transport_error::body_too_large : transport_error::connect;
        break;
      default: f.error = transport_error::connect; break;
    }
  }
};

poller::poller(uv_loop_t* loop, uint64_t timeout_ms, size_t max_transfers, const char* ca_file)
    : loop_(loop),
      timeout_ms_(timeout_ms),
      ca_file_(ca_file),
      max_transfers_(max_transfers),
      // A connection per transfer, plus room for reconnects whose old socket is still closing.
      max_sockets_(2 * max_transfers + 4),
      transfers_(new transfer*[max_transfers]()),
      sockets_(new socket_ctx[2 * max_transfers + 4]()) {}

poller::~poller() {
  close();
}

bool poller::init(const char** error) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    *error = "libcurl initialisation failed";
    return false;
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, internals::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, internals::on_timer_change);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Keep one idle connection per replica and probe: polls reuse them (keep-alive).
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(max_transfers_ + 4));
  headers_ = curl_slist_append(nullptr, "Accept: application/json");
  return true;
}

bool poller::add(transfer& t, const char* url, check_kind kind, transfer::result_fn on_result,
                 void* ctx, const char** error) {
  if (transfer_count_ == max_transfers_) {
    *error = "too many transfers";
    return false;
  }
  t.easy_ = curl_easy_init();
  if (t.easy_ == nullptr) {
    *error = "libcurl initialisation failed";
    return false;
  }
  transfers_[transfer_count_++] = &t;
  t.owner_ = this;
  t.kind_ = kind;
  t.on_result_ = on_result;
  t.ctx_ = ctx;
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption opt, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(t.easy_, opt, value);
  };
  set(CURLOPT_URL, url);
  set(CURLOPT_PRIVATE, static_cast<void*>(&t));
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms_));
  t.budget_ms_ = timeout_ms_;
  set(CURLOPT_USERAGENT, "hello-sidecar/" STACK_VERSION);
  set(CURLOPT_WRITEFUNCTION, internals::on_body);
  set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
  set(CURLOPT_ERRORBUFFER, t.curl_error_);
  if (ca_file_ != nullptr) set(CURLOPT_CAINFO, ca_file_);
  if (kind == check_kind::health) {
    set(CURLOPT_HTTPHEADER, headers_);
    set(CURLOPT_FOLLOWLOCATION, 0L);
  } else {
    set(CURLOPT_FOLLOWLOCATION, 1L);
    set(CURLOPT_MAXREDIRS, 5L);
    set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  }
  if (rc != CURLE_OK) {
    *error = curl_easy_strerror(rc);
    return false;
  }
  return true;
}

bool poller::pin_address(transfer& t, const char* address) {
  if (t.in_flight_ || t.easy_ == nullptr) return false;
  curl_slist_free_all(t.connect_to_);
  t.connect_to_ = nullptr;
  if (address != nullptr) {
    // "HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT" with HOST and PORT empty: any URL.
    char line[96];
    snprintf(line, sizeof line, "::%s", address);
    t.connect_to_ = curl_slist_append(nullptr, line);
    if (t.connect_to_ == nullptr) return false;
  }
  return curl_easy_setopt(t.easy_, CURLOPT_CONNECT_TO, t.connect_to_) == CURLE_OK;
}

bool poller::start(transfer& t, uint64_t budget_ms) {
  if (t.in_flight_ || closed_ || t.easy_ == nullptr) return false;
  if (budget_ms == 0 || budget_ms > timeout_ms_) budget_ms = timeout_ms_;
  if (budget_ms != t.budget_ms_) {
    curl_easy_setopt(t.easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(budget_ms));
    curl_easy_setopt(t.easy_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(budget_ms));
    t.budget_ms_ = budget_ms;
  }
  t.body_len_ = 0;
  t.body_overflow_ = false;
  t.curl_error_[0] = '\0';
  if (curl_multi_add_handle(multi_, t.easy_) != CURLM_OK) return false;
  t.in_flight_ = true;
  return true;
}

void poller::close() {
  if (closed_) return;
  closed_ = true;
  for (size_t i = 0; i < transfer_count_; ++i) {
    transfer& t = *transfers_[i];
    // Removing a running transfer closes its connection; curl reports the socket as REMOVE.
    if (t.in_flight_ && multi_ != nullptr) curl_multi_remove_handle(multi_, t.easy_);
    t.in_flight_ = false;
  }
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
  multi_ = nullptr;
  for (size_t i = 0; i < transfer_count_; ++i) {
    transfer& t = *transfers_[i];
    if (t.easy_ != nullptr) curl_easy_cleanup(t.easy_);
    t.easy_ = nullptr;
    curl_slist_free_all(t.connect_to_);
    t.connect_to_ = nullptr;
  }
  transfer_count_ = 0;
  curl_slist_free_all(headers_);
  headers_ = nullptr;
  // Anything curl did not hand back (it should have) is closed here.
  for (size_t i = 0; i < max_sockets_; ++i) {
    if (sockets_[i].in_use) internals::release_socket(&sockets_[i]);
  }
  auto* t = reinterpret_cast<uv_handle_t*>(&timer_);
  if (timer_open_ && !uv_is_closing(t)) uv_close(t, nullptr);
}

}  // namespace sidecar
