#include "resolver.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "address.hpp"
#include "log.hpp"

namespace sidecar {

struct resolver::internals {
  // --- c-ares -> libuv ---------------------------------------------------------------------

  // c-ares says which of its sockets it wants to read or write; (0, 0) means it is about to
  // close that socket, so its poll handle goes first.
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<resolver*>(data);
    socket_ctx* sc = find_socket(self, fd);
    if (!readable && !writable) {
      if (sc != nullptr) release_socket(sc);
      return;
    }
    if (sc == nullptr) sc = acquire_socket(self, fd);
    if (sc == nullptr) {
      // c-ares will time the query out; the lookup fails instead of the loop.
      core::log_event("ERROR", "too many resolver sockets max=%zu", max_sockets);
      return;
    }
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    uv_poll_start(&sc->poll, events, on_poll);
  }

  static socket_ctx* find_socket(resolver* self, ares_socket_t fd) {
    for (socket_ctx& sc : self->sockets_) {
      if (sc.in_use && sc.fd == fd && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&sc.poll))) {
        return &sc;
      }
    }
    return nullptr;
  }

  static socket_ctx* acquire_socket(resolver* self, ares_socket_t fd) {
    return acquire_poll_slot(self->loop_, self->sockets_, max_sockets, self, fd);
  }

  static void release_socket(socket_ctx* sc) { release_poll_slot(sc); }

  static void on_poll(uv_poll_t* h, int status, int events) {
    auto* sc = static_cast<socket_ctx*>(h->data);
    resolver* self = sc->owner;
    // An error on the socket: let c-ares read it and see the failure for itself.
    bool rd = status < 0 || (events & UV_READABLE) != 0;
    bool wr = status >= 0 && (events & UV_WRITABLE) != 0;
    ares_process_fd(self->channel_, rd ? sc->fd : ARES_SOCKET_BAD, wr ? sc->fd : ARES_SOCKET_BAD);
    rearm_timer(self);
  }

  // c-ares keeps its own retransmit deadlines; the one timer fires at the nearest.
  static void rearm_timer(resolver* self) {
    if (self->closed_ || self->channel_ == nullptr) return;
    timeval tv{};
    if (ares_timeout(self->channel_, nullptr, &tv) == nullptr) {
      uv_timer_stop(&self->timer_);
      return;
    }
    uint64_t ms =
        static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
    uv_timer_start(&self->timer_, on_timer, ms == 0 ? 1 : ms, 0);
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<resolver*>(t->data);
    ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_timer(self);
  }

  // --- the lookups' own deadline -------------------------------------------------------------

  // c-ares's timeout is per try and per server: with two servers, or search domains, a lookup
  // could outlast the poll it belongs to. One timer at the earliest deadline of the lookups in
  // flight ends them all (ares_cancel has no per-query form); lookups start together, once per
  // poll, so their deadlines are the same.
  static void rearm_deadline(resolver* self) {
    if (self->closed_) return;
    uint64_t earliest = UINT64_MAX;
    for (const query& q : self->queries_) {
      if (q.done != nullptr && q.deadline_ms < earliest) earliest = q.deadline_ms;
    }
    if (earliest == UINT64_MAX) {
      uv_timer_stop(&self->deadline_);
      return;
    }
    uint64_t now = uv_now(self->loop_);
    uv_timer_start(&self->deadline_, on_deadline, earliest > now ? earliest - now : 0, 0);
  }

  static void on_deadline(uv_timer_t* t) {
    auto* self = static_cast<resolver*>(t->data);
    self->timing_out_ = true;
    ares_cancel(self->channel_);  // every lookup's callback runs now, with ARES_ECANCELLED
    self->timing_out_ = false;
    rearm_timer(self);
    rearm_deadline(self);
  }

  // --- results -----------------------------------------------------------------------------

  static void on_addrinfo(void* arg, int status, int, ares_addrinfo* info) {
    auto* q = static_cast<query*>(arg);
    resolver* self = q->owner;
    done_fn done = q->done;
    void* ctx = q->ctx;
    q->done = nullptr;  // the slot is free again
    resolved_addresses& out = self->result_;
    out.count = 0;
    out.truncated = false;
    if (status == ARES_SUCCESS && info != nullptr) {
      for (ares_addrinfo_node* n = info->nodes; n != nullptr; n = n->ai_next) {
        if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
        if (out.count == resolved_addresses::max) {
          out.truncated = true;
          break;
        }
        sockaddr_storage& a = out.addr[out.count];
        a = sockaddr_storage{};
        memcpy(&a, n->ai_addr,
               std::min(static_cast<size_t>(n->ai_addrlen), sizeof(sockaddr_storage)));
        a.ss_family = static_cast<sa_family_t>(n->ai_family);
        ++out.count;
      }
    }
    if (info != nullptr) ares_freeaddrinfo(info);
    if (status == ARES_ECANCELLED && self->timing_out_) status = ARES_ETIMEOUT;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED || self->closed_) return;
    if (!self->timing_out_) rearm_deadline(self);
    std::sort(out.addr, out.addr + out.count, address_less);
    out.count =
        static_cast<size_t>(std::unique(out.addr, out.addr + out.count, same_address) - out.addr);
    if (status == ARES_SUCCESS && out.count == 0) status = ARES_ENODATA;
    done(ctx, status, status == ARES_SUCCESS ? "" : ares_strerror(status), out);
  }
};

resolver::~resolver() {
  close();
}

// The lookup's time is shared by the servers: c-ares gives each server one try of
// `per_try_ms`, one after the other, so with a dead first server the next one still gets its
// turn before the lookup's deadline.
bool resolver::init(const char* servers, uint64_t timeout_ms, const char** error) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_timer_init(loop_, &deadline_);
  deadline_.data = this;
  timer_open_ = true;
  timeout_ms_ = timeout_ms < 1 ? 1 : timeout_ms;
  if (!open_channel(servers, timeout_ms_, error)) return false;
  size_t count = 0;
  ares_addr_port_node* list = nullptr;
  if (ares_get_servers_ports(channel_, &list) == ARES_SUCCESS) {
    for (ares_addr_port_node* n = list; n != nullptr; n = n->next) ++count;
    ares_free_data(list);
  }
  if (count > 1) {
    // No c-ares call changes the timeout of an open channel; nothing is in flight yet.
    ares_destroy(channel_);
    channel_ = nullptr;
    uint64_t per_try = timeout_ms_ / count;
    if (!open_channel(servers, per_try < 1 ? 1 : per_try, error)) return false;
  }
  return true;
}

bool resolver::open_channel(const char* servers, uint64_t per_try_ms, const char** error) {
  ares_options opts{};
  opts.sock_state_cb = internals::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(per_try_ms);
  opts.tries = 1;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  char dns_only[] = "b";
  if (servers != nullptr) {
    opts.lookups = dns_only;  // the servers given, not the hosts file
    mask |= ARES_OPT_LOOKUPS;
  }
  int rc = ares_init_options(&channel_, &opts, mask);
  if (rc != ARES_SUCCESS) {
    channel_ = nullptr;
    *error = ares_strerror(rc);
    return false;
  }
  if (servers != nullptr) {
    rc = ares_set_servers_ports_csv(channel_, servers);
    if (rc != ARES_SUCCESS) {
      *error = ares_strerror(rc);
      return false;
    }
  }
  return true;
}

bool resolver::resolve(const char* host, done_fn done, void* ctx) {
  if (closed_ || channel_ == nullptr) return false;
  query* q = nullptr;
  for (query& slot : queries_) {
    if (slot.done == nullptr) {
      q = &slot;
      break;
    }
  }
  if (q == nullptr) return false;
  q->owner = this;
  q->done = done;
  q->ctx = ctx;
  q->deadline_ms = uv_now(loop_) + timeout_ms_;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ares_getaddrinfo(channel_, host, nullptr, &hints, internals::on_addrinfo, q);
  internals::rearm_timer(this);
  internals::rearm_deadline(this);
  return true;
}

void resolver::close() {
  if (closed_) return;
  closed_ = true;
  // Callbacks run with ARES_EDESTRUCTION and are dropped; c-ares reports its sockets closed.
  if (channel_ != nullptr) ares_destroy(channel_);
  channel_ = nullptr;
  for (socket_ctx& sc : sockets_) {
    if (sc.in_use) internals::release_socket(&sc);
  }
  for (uv_timer_t* timer : {&timer_, &deadline_}) {
    auto* t = reinterpret_cast<uv_handle_t*>(timer);
    if (timer_open_ && !uv_is_closing(t)) uv_close(t, nullptr);
  }
}

}  // namespace sidecar
