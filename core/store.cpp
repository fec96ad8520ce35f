#include "store.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
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

namespace {

uv_once_t ares_once = UV_ONCE_INIT;
int ares_init_status = ARES_SUCCESS;
void init_ares() {
  ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

struct lookup_answer {
  bool done = false;
  int status = ARES_ETIMEOUT;
  char* ip;
  size_t ip_size;
};

void on_addrinfo(void* arg, int status, int, ares_addrinfo* res) {
  auto* a = static_cast<lookup_answer*>(arg);
  a->done = true;
  a->status = status;
  if (status == ARES_SUCCESS && res != nullptr) {
    const ares_addrinfo_node* pick = nullptr;
    for (const ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
      if (n->ai_family == AF_INET) {
        pick = n;
        break;
      }
      if (n->ai_family == AF_INET6 && pick == nullptr) pick = n;
    }
    if (pick == nullptr) {
      a->status = ARES_ENODATA;
    } else if (pick->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr, a->ip,
                static_cast<socklen_t>(a->ip_size));
    } else {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr, a->ip,
                static_cast<socklen_t>(a->ip_size));
    }
  }
  if (res != nullptr) ares_freeaddrinfo(res);
}

int uv_status_of(int ares_status) {
  switch (ares_status) {
    case ARES_SUCCESS: return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME: return UV_EAI_NONAME;
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED:
    case ARES_ECONNREFUSED: return UV_EAI_AGAIN;
    case ARES_ENOMEM: return UV_EAI_MEMORY;
    default: return UV_EAI_FAIL;
  }
}

}  // namespace

int host_lookup::start(uv_loop_t* loop, const char* host, done_fn on_done, void* ctx,
                       uint64_t timeout_ms) {
  if (active_) return UV_EBUSY;
  if (strlen(host) >= sizeof host_) return UV_EINVAL;
  uv_once(&ares_once, init_ares);
  if (ares_init_status != ARES_SUCCESS) return UV_EAI_FAIL;
  snprintf(host_, sizeof host_, "%s", host);
  timeout_ms_ = timeout_ms;
  on_done_ = on_done;
  ctx_ = ctx;
  req_.data = this;
  int rc = uv_queue_work(loop, &req_, on_work, on_after_work);
  if (rc == 0) active_ = true;
  return rc;
}

void host_lookup::cancel() {
  if (active_) uv_cancel(reinterpret_cast<uv_req_t*>(&req_));
}

// On a thread-pool thread: a private c-ares channel, driven with poll(2) until the answer or
// the deadline.
void host_lookup::on_work(uv_work_t* req) {
  auto* self = static_cast<host_lookup*>(req->data);
  self->ip_[0] = '\0';
  ares_options opts{};
  opts.timeout = static_cast<int>(self->timeout_ms_ < 2000 ? self->timeout_ms_ : 2000);
  opts.tries = 2;
  ares_channel channel = nullptr;
  if (ares_init_options(&channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) != ARES_SUCCESS) {
    self->status_ = UV_EAI_FAIL;
    return;
  }
  lookup_answer answer;
  answer.ip = self->ip_;
  answer.ip_size = sizeof self->ip_;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ares_getaddrinfo(channel, self->host_, nullptr, &hints, on_addrinfo, &answer);
  uint64_t deadline = uv_hrtime() + self->timeout_ms_ * 1000000ull;
  while (!answer.done) {
    uint64_t now = uv_hrtime();
    if (now >= deadline) {
      ares_cancel(channel);  // runs on_addrinfo with ARES_ECANCELLED
      break;
    }
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    nfds_t n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short ev = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
      if (ev != 0) fds[n++] = pollfd{socks[i], ev, 0};
    }
    timeval tv{};
    timeval max{0, 100000};
    timeval* t = ares_timeout(channel, &max, &tv);
    int wait_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000);
    uint64_t left_ms = (deadline - now) / 1000000ull;
    if (static_cast<uint64_t>(wait_ms) > left_ms) wait_ms = static_cast<int>(left_ms);
    int ready = poll(fds, n, wait_ms < 1 ? 1 : wait_ms);
    if (ready <= 0) {
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts, retries
      continue;
    }
    for (nfds_t i = 0; i < n && !answer.done; ++i) {
      if (fds[i].revents == 0) continue;
      bool in = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
      bool out = (fds[i].revents & POLLOUT) != 0;
      ares_process_fd(channel, in ? fds[i].fd : ARES_SOCKET_BAD, out ? fds[i].fd : ARES_SOCKET_BAD);
    }
  }
  ares_destroy(channel);
  self->status_ = uv_status_of(answer.status);
}

void host_lookup::on_after_work(uv_work_t* req, int status) {
  auto* self = static_cast<host_lookup*>(req->data);
  self->active_ = false;
  int result = status != 0 ? status : self->status_;
  // Last: the callback may free the owner (and this object with it).
  self->on_done_(self->ctx_, result, result == 0 ? self->ip_ : "");
}

}  // namespace core
