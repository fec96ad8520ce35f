#include "store.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace core {

const char* store_state_name(store_state s) {
  switch (s) {
    case store_state::connecting: return "connecting";
    case store_state::up: return "up";
    case store_state::down: return "down";
    case store_state::closed: return "closed";
  }
  return "unknown";
}

const char* store_error_name(store_error e) {
  switch (e) {
    case store_error::none: return "none";
    case store_error::server: return "server";
    case store_error::timeout: return "timeout";
    case store_error::disconnected: return "disconnected";
    case store_error::closed: return "closed";
  }
  return "unknown";
}

backoff::backoff(uint64_t initial_ms, uint64_t max_ms, uint64_t seed)
    : initial_ms_(std::max<uint64_t>(initial_ms, 1)),
      max_ms_(std::max(max_ms, std::max<uint64_t>(initial_ms, 1))),
      rng_(seed != 0 ? seed : 0x9e3779b97f4a7c15ull) {}

uint64_t backoff::nominal_ms(uint32_t n) const {
  uint64_t d = initial_ms_;
  for (uint32_t i = 0; i < n && d < max_ms_; ++i) d *= 2;
  return std::min(d, max_ms_);
}

uint64_t backoff::next_ms() {
  uint64_t d = nominal_ms(attempt_);
  if (attempt_ < 64) ++attempt_;
  // xorshift64: plenty for jitter, no global state, reproducible with a seed.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  uint64_t half = d / 2;
  return d - half + (half == 0 ? 0 : rng_ % (half + 1));
}

const char* read_secret_file(const char* path, std::string* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strerror(errno);
  char buf[4097];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const char* why = strerror(errno);
      close(fd);
      return why;
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
    if (len == sizeof buf) break;
  }
  close(fd);
  if (len > 4096) return "larger than 4 KiB";
  if (len > 0 && buf[len - 1] == '\n') --len;
  if (len > 0 && buf[len - 1] == '\r') --len;
  if (len == 0) return "empty";
  for (size_t i = 0; i < len; ++i) {
    if (buf[i] == '\0') return "contains a NUL byte";
    if (buf[i] == '\n' || buf[i] == '\r') return "contains a line break";
  }
  out->assign(buf, len);
  return nullptr;
}

bool is_ip_literal(std::string_view host) {
  char text[INET6_ADDRSTRLEN + 1];
  if (host.empty() || host.size() >= sizeof text) return false;
  memcpy(text, host.data(), host.size());
  text[host.size()] = '\0';
  unsigned char bin[sizeof(in6_addr)];
  return inet_pton(AF_INET, text, bin) == 1 || inet_pton(AF_INET6, text, bin) == 1;
}

int host_lookup::start(uv_loop_t* loop, const char* host, done_fn on_done, void* ctx) {
  if (active_) return UV_EBUSY;
  on_done_ = on_done;
  ctx_ = ctx;
  req_.data = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop, &req_, on_resolved, host, nullptr, &hints);
  if (rc == 0) active_ = true;
  return rc;
}

void host_lookup::cancel() {
  if (active_) uv_cancel(reinterpret_cast<uv_req_t*>(&req_));
}

void host_lookup::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* self = static_cast<host_lookup*>(req->data);
  self->active_ = false;
  char ip[INET6_ADDRSTRLEN] = "";
  if (status == 0) {
    const addrinfo* pick = nullptr;
    for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
      if (a->ai_family == AF_INET) {
        pick = a;
        break;
      }
      if (a->ai_family == AF_INET6 && pick == nullptr) pick = a;
    }
    if (pick == nullptr) {
      status = UV_EAI_NONAME;
    } else if (pick->ai_family == AF_INET) {
      uv_ip4_name(reinterpret_cast<const sockaddr_in*>(pick->ai_addr), ip, sizeof ip);
    } else {
      uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(pick->ai_addr), ip, sizeof ip);
    }
  }
  uv_freeaddrinfo(res);
  // Last: the callback may free the owner (and this object with it).
  self->on_done_(self->ctx_, status, ip);
}

}  // namespace core
