#include "poller.hpp"

#include <cstdio>
#include <cstring>

#include "health_parse.hpp"
#include "log.hpp"

namespace sidecar {

const char* outcome_name(outcome o) {
  switch (o) {
    case outcome::ok: return "ok";
    case outcome::status: return "status";
    case outcome::unhealthy: return "unhealthy";
    case outcome::slow: return "slow";
    case outcome::timeout: return "timeout";
    case outcome::connect: return "connect";
    case outcome::dns: return "dns";
    case outcome::body: return "body";
  }
  return "unknown";
}

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
        core::log_event("ERROR", "too many sockets max=%zu", max_sockets);
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
    for (socket_ctx& sc : self->sockets_) {
      if (sc.in_use) continue;
      if (uv_poll_init_socket(self->loop_, &sc.poll, fd) != 0) return nullptr;
      sc.in_use = true;
      sc.owner = self;
      sc.fd = fd;
      sc.poll.data = &sc;
      return &sc;
    }
    return nullptr;
  }

  // The slot becomes free only in the close callback, once libuv is done with the handle.
  static void release_socket(socket_ctx* sc) {
    auto* h = reinterpret_cast<uv_handle_t*>(&sc->poll);
    if (uv_is_closing(h)) return;
    uv_poll_stop(&sc->poll);
    uv_close(h,
             [](uv_handle_t* closed) { static_cast<socket_ctx*>(closed->data)->in_use = false; });
  }

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
    auto* self = static_cast<poller*>(userp);
    size_t len = size * n;
    if (len > max_body - self->body_len_) {
      self->body_overflow_ = true;
      return 0;  // aborts the transfer: the target is not a health endpoint we can trust
    }
    memcpy(self->body_ + self->body_len_, data, len);
    self->body_len_ += len;
    return len;
  }

  // --- results -----------------------------------------------------------------------------

  static void check_done(poller* self) {
    CURLMsg* msg = nullptr;
    int left = 0;
    while ((msg = curl_multi_info_read(self->multi_, &left)) != nullptr) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURLcode code = msg->data.result;
      curl_multi_remove_handle(self->multi_, msg->easy_handle);
      self->in_flight_ = false;
      poll_result r;
      classify(self, code, r);
      self->on_result_(self->ctx_, r);
    }
  }

  static void classify(poller* self, CURLcode code, poll_result& r) {
    curl_off_t total_us = 0;
    curl_easy_getinfo(self->easy_, CURLINFO_TOTAL_TIME_T, &total_us);
    r.rtt = static_cast<double>(total_us) / 1e6;
    curl_easy_getinfo(self->easy_, CURLINFO_RESPONSE_CODE, &r.http_status);
    r.has_rtt = r.http_status != 0;
    const char* why = self->curl_error_[0] != '\0' ? self->curl_error_ : curl_easy_strerror(code);
    switch (code) {
      case CURLE_OK: break;
      case CURLE_OPERATION_TIMEDOUT:
        r.result = outcome::timeout;
        snprintf(r.detail, sizeof r.detail, "no answer within %llums",
                 static_cast<unsigned long long>(self->timeout_ms_));
        return;
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
        r.result = outcome::dns;
        snprintf(r.detail, sizeof r.detail, "%s", why);
        return;
      case CURLE_WRITE_ERROR:
        if (self->body_overflow_) {
          r.result = outcome::body;
          snprintf(r.detail, sizeof r.detail, "body larger than %zu bytes", max_body);
          return;
        }
        [[fallthrough]];
      default:
        r.result = outcome::connect;
        snprintf(r.detail, sizeof r.detail, "%s", why);
        return;
    }
    if (r.http_status != 200) {
      r.result = outcome::status;
      snprintf(r.detail, sizeof r.detail, "HTTP %ld", r.http_status);
      return;
    }
    health_reading reading;
    if (const char* err = parse_health(std::string_view(self->body_, self->body_len_), &reading)) {
      r.result = outcome::body;
      // The raw start of the body; the log line escapes it (once) for text or JSON.
      int shown = static_cast<int>(self->body_len_ < 40 ? self->body_len_ : 40);
      snprintf(r.detail, sizeof r.detail, "%s: %.*s", err, shown, self->body_);
      return;
    }
    r.has_latency = true;
    r.latency = reading.latency;
    r.healthy = reading.healthy;
    if (!reading.healthy) {
      r.result = outcome::unhealthy;
      snprintf(r.detail, sizeof r.detail, "healthy=false latency=%.6f", reading.latency);
    }
  }
};

poller::poller(uv_loop_t* loop, const char* url, uint64_t timeout_ms, result_fn on_result,
               void* ctx)
    : loop_(loop), url_(url), timeout_ms_(timeout_ms), on_result_(on_result), ctx_(ctx) {}

poller::~poller() {
  close();
}

bool poller::init(const char** error) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  multi_ = curl_multi_init();
  easy_ = curl_easy_init();
  if (multi_ == nullptr || easy_ == nullptr) {
    *error = "libcurl initialisation failed";
    return false;
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, internals::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, internals::on_timer_change);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  headers_ = curl_slist_append(nullptr, "Accept: application/json");
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption opt, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy_, opt, value);
  };
  set(CURLOPT_URL, url_);
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms_));
  set(CURLOPT_USERAGENT, "hello-sidecar/" STACK_VERSION);
  set(CURLOPT_HTTPHEADER, headers_);
  set(CURLOPT_WRITEFUNCTION, internals::on_body);
  set(CURLOPT_WRITEDATA, this);
  set(CURLOPT_ERRORBUFFER, curl_error_);
  set(CURLOPT_FOLLOWLOCATION, 0L);
  if (rc != CURLE_OK) {
    *error = curl_easy_strerror(rc);
    return false;
  }
  return true;
}

bool poller::start() {
  if (in_flight_ || closed_) return false;
  body_len_ = 0;
  body_overflow_ = false;
  curl_error_[0] = '\0';
  if (curl_multi_add_handle(multi_, easy_) != CURLM_OK) return false;
  in_flight_ = true;
  return true;
}

void poller::close() {
  if (closed_) return;
  closed_ = true;
  if (multi_ != nullptr) {
    // Removing a running transfer closes its connection; curl reports the socket as REMOVE.
    if (in_flight_ && easy_ != nullptr) curl_multi_remove_handle(multi_, easy_);
    in_flight_ = false;
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
  }
  if (easy_ != nullptr) curl_easy_cleanup(easy_);
  easy_ = nullptr;
  curl_slist_free_all(headers_);
  headers_ = nullptr;
  // Anything curl did not hand back (it should have) is closed here.
  for (socket_ctx& sc : sockets_) {
    if (sc.in_use) internals::release_socket(&sc);
  }
  auto* t = reinterpret_cast<uv_handle_t*>(&timer_);
  if (t->loop != nullptr && !uv_is_closing(t)) uv_close(t, nullptr);
}

}  // namespace sidecar
