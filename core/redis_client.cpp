#include "redis_client.hpp"

#include <hiredis/async.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "log.hpp"

namespace core {

// ------------------------------------------------------------------------------------ URL

namespace {

bool parse_port_db(std::string_view digits, int max, int* out) {
  if (digits.empty() || digits.size() > 5) return false;
  int v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

}  // namespace

const char* parse_redis_url(std::string_view url, redis_endpoint* out) {
  redis_endpoint ep;
  if (url.starts_with("unix://")) {
    std::string_view path = url.substr(7);
    size_t q = path.find('?');
    std::string_view query = q == std::string_view::npos ? "" : path.substr(q + 1);
    path = path.substr(0, q);
    if (path.empty() || path[0] != '/') return "unix:// needs an absolute socket path";
    if (!query.empty()) {
      if (!query.starts_with("db=") || !parse_port_db(query.substr(3), 65535, &ep.db)) {
        return "the only query is ?db=N";
      }
    }
    ep.host.assign(path);
    ep.port = 0;
    *out = std::move(ep);
    return nullptr;
  }
  if (url.starts_with("rediss://")) return "TLS (rediss://) is not supported";
  if (!url.starts_with("redis://")) return "must start with redis:// or unix://";
  std::string_view rest = url.substr(8);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (authority.find('@') != std::string_view::npos) {
    return "credentials in the URL are not supported (use the password file)";
  }
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated [IPv6] host";
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return "junk after ]";
      port = after.substr(1);
      if (port.empty()) return "empty port";
    }
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return "empty port";
    }
  }
  if (host.empty()) return "no host";
  if (host.size() > 253) return "host name too long";
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return "bad character in host";
  }
  if (!port.empty() && (!parse_port_db(port, 65535, &ep.port) || ep.port == 0)) {
    return "port must be 1..65535";
  }
  if (!path.empty() && !parse_port_db(path, 65535, &ep.db)) return "database must be 0..65535";
  ep.host.assign(host);
  *out = std::move(ep);
  return nullptr;
}

// ---------------------------------------------------------------------------- the adapter

namespace {

// Our event glue between one redisAsyncContext and a uv_poll_t (see the header for why not
// hiredis's adapters/libuv.h). Allocated per connection, freed in the poll's close callback.
struct redis_poll {
  uv_poll_t handle{};
  redisAsyncContext* ac = nullptr;  // null once hiredis called cleanup
  int events = 0;

  static void on_poll(uv_poll_t* h, int status, int events) {
    auto* p = static_cast<redis_poll*>(h->data);
    // On a poll error libuv has stopped the handle: let hiredis try what it waited for and
    // find the socket error itself (refused connect, reset).
    int ev = status < 0 ? p->events : events;
    if (p->ac != nullptr && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac != nullptr && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
  }
  void update(int ev) {
    events = ev;
    // Always (re)start: after an error status the handle was stopped by libuv.
    if (events != 0) {
      uv_poll_start(&handle, events, on_poll);
    } else {
      uv_poll_stop(&handle);
    }
  }
  static void add_read(void* d) {
    auto* p = static_cast<redis_poll*>(d);
    p->update(p->events | UV_READABLE);
  }
  static void del_read(void* d) {
    auto* p = static_cast<redis_poll*>(d);
    p->update(p->events & ~UV_READABLE);
  }
  static void add_write(void* d) {
    auto* p = static_cast<redis_poll*>(d);
    p->update(p->events | UV_WRITABLE);
  }
  static void del_write(void* d) {
    auto* p = static_cast<redis_poll*>(d);
    p->update(p->events & ~UV_WRITABLE);
  }
  static void on_closed(uv_handle_t* h) { delete static_cast<redis_poll*>(h->data); }
  // hiredis is about to close the socket: stop watching it now (uv_close does so at once),
  // free the memory later.
  static void cleanup(void* d) {
    auto* p = static_cast<redis_poll*>(d);
    p->ac = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), on_closed);
  }

  static int attach(redisAsyncContext* ac, uv_loop_t* loop) {
    auto* p = new (std::nothrow) redis_poll;
    if (p == nullptr) return UV_ENOMEM;
    int rc = uv_poll_init(loop, &p->handle, ac->c.fd);
    if (rc != 0) {
      delete p;  // never registered with the loop
      return rc;
    }
    p->handle.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
  }
};

constexpr uint64_t no_deadline = UINT64_MAX;

}  // namespace

// ------------------------------------------------------------------------------ the client

struct redis_cmd {
  redis_cmd* prev = nullptr;
  redis_cmd* next = nullptr;
  redis_impl* owner = nullptr;
  redis_client::reply_fn fn = nullptr;
  void* ctx = nullptr;
  uint64_t deadline = no_deadline;
  bool internal = false;
};

struct redis_impl {
  redis_impl(uv_loop_t* l, redis_options o)
      : loop(l),
        opt(std::move(o)),
        retry(opt.backoff_initial_ms, opt.backoff_max_ms,
              uv_hrtime() ^ reinterpret_cast<uintptr_t>(this)) {
    uv_timer_init(loop, &conn_timer);
    uv_timer_init(loop, &cmd_timer);
    conn_timer.data = this;
    cmd_timer.data = this;
  }
  ~redis_impl() {
    for (redis_cmd* c : all_cmds) delete c;
  }

  uv_loop_t* loop;
  redis_options opt;
  backoff retry;
  uv_timer_t conn_timer{};  // connect timeout while connecting, backoff while down
  uv_timer_t cmd_timer{};   // the oldest pending command's deadline
  host_lookup lookup;
  redisAsyncContext* ac = nullptr;  // null when there is no live connection
  store_state state = store_state::down;
  bool started = false;
  bool closing = false;
  bool owner_gone = false;
  int open_handles = 2;
  size_t user_pending = 0;
  redis_client::state_fn on_state = nullptr;
  void* state_ctx = nullptr;
  // Why the current connection ended: what pending callbacks are told.
  store_error drop_reason = store_error::disconnected;
  char drop_detail[160] = "";
  redis_client::counters counts{};

  // Pending commands, oldest first (hiredis answers in this order); free records.
  redis_cmd* head = nullptr;
  redis_cmd* tail = nullptr;
  redis_cmd* free_list = nullptr;
  std::vector<redis_cmd*> all_cmds;

  redis_cmd* take_cmd() {
    redis_cmd* c = free_list;
    if (c != nullptr) {
      free_list = c->next;
    } else {
      c = new (std::nothrow) redis_cmd;
      if (c == nullptr) return nullptr;
      try {  // called from C callbacks too: nothing may throw through them
        all_cmds.push_back(c);
      } catch (...) {
        delete c;
        return nullptr;
      }
    }
    *c = redis_cmd{};
    c->owner = this;
    return c;
  }
  void push(redis_cmd* c) {
    c->prev = tail;
    c->next = nullptr;
    if (tail != nullptr) {
      tail->next = c;
    } else {
      head = c;
    }
    tail = c;
  }
  void unlink(redis_cmd* c) {
    if (c->prev != nullptr) {
      c->prev->next = c->next;
    } else {
      head = c->next;
    }
    if (c->next != nullptr) {
      c->next->prev = c->prev;
    } else {
      tail = c->prev;
    }
  }
  void give_back(redis_cmd* c) {
    c->next = free_list;
    free_list = c;
  }

  void set_state(store_state s, const char* detail) {
    if (s == state) return;
    state = s;
    log_field f[] = {log_field::word("store", opt.name),
                     log_field::word("state", store_state_name(s)),
                     log_field::text("reason", detail)};
    log_fields("STORE", f, s == store_state::down ? 3 : 2);
    if (on_state != nullptr) on_state(state_ctx, s, detail);
  }

  // ---------------------------------------------------------------- connection attempts

  void start_attempt() {
    set_state(store_state::connecting, "");
    // uv_now is cached per loop turn; start() may follow a long blocking start-up.
    uv_update_time(loop);
    uv_timer_start(&conn_timer, on_conn_timer, opt.connect_timeout_ms, 0);
    const std::string& host = opt.endpoint.host;
    if (host[0] == '/' || is_ip_literal(host)) {
      connect_to(host.c_str());
      return;
    }
    if (lookup.active()) {  // a cancelled lookup still running in the thread pool
      attempt_failed("lookup of %s still running", host.c_str());
      return;
    }
    int rc = lookup.start(loop, host.c_str(), on_lookup, this);
    if (rc != 0) attempt_failed("lookup: %s", uv_strerror(rc));
  }

  static void on_lookup(void* ctx, int status, const char* ip) {
    auto* self = static_cast<redis_impl*>(ctx);
    if (self->closing) {
      self->maybe_free();
      return;
    }
    if (self->state != store_state::connecting || self->ac != nullptr) return;  // timed out
    if (status != 0) {
      self->attempt_failed("lookup %s: %s", self->opt.endpoint.host.c_str(), uv_strerror(status));
      return;
    }
    self->connect_to(ip);
  }

  void connect_to(const char* addr) {
    redisAsyncContext* c = opt.endpoint.host[0] == '/' ? redisAsyncConnectUnix(addr)
                                                       : redisAsyncConnect(addr, opt.endpoint.port);
    if (c == nullptr) {
      attempt_failed("connect: out of memory");
      return;
    }
    if (c->err != 0) {
      char why[128];
      snprintf(why, sizeof why, "%s", c->errstr);
      redisAsyncFree(c);
      attempt_failed("connect: %s", why);
      return;
    }
    int rc = redis_poll::attach(c, loop);
    if (rc != 0) {
      redisAsyncFree(c);
      attempt_failed("poll: %s", uv_strerror(rc));
      return;
    }
    c->data = this;
    redisAsyncSetConnectCallback(c, on_connect);
    redisAsyncSetDisconnectCallback(c, on_disconnect);
    ac = c;
    // The handshake, queued before the TCP connect completes: hiredis sends it when writable.
    if (!opt.password.empty()) {
      const char* argv[] = {"AUTH", opt.password.c_str()};
      size_t lens[] = {4, opt.password.size()};
      send_internal(2, argv, lens, on_handshake_step);
    }
    if (opt.endpoint.db != 0) {
      char db[16];
      int n = snprintf(db, sizeof db, "%d", opt.endpoint.db);
      const char* argv[] = {"SELECT", db};
      size_t lens[] = {6, static_cast<size_t>(n)};
      send_internal(2, argv, lens, on_handshake_step);
    }
    const char* argv[] = {"PING"};
    size_t lens[] = {4};
    send_internal(1, argv, lens, on_handshake_done);
  }

  void send_internal(int argc, const char** argv, const size_t* lens, redis_client::reply_fn fn) {
    redis_cmd* c = take_cmd();
    if (c == nullptr) return;  // the PING's absence ends in the connect timeout
    c->fn = fn;
    c->ctx = this;
    c->internal = true;
    if (redisAsyncCommandArgv(ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
      give_back(c);
      return;
    }
    push(c);
  }

  static void on_handshake_step(void* ctx, const redis_result& r) {
    auto* self = static_cast<redis_impl*>(ctx);
    if (r.error == store_error::server) {
      // Inside hiredis's reply callback: its free is deferred until we return. Safe.
      self->drop(store_error::server, "handshake: %s", r.detail);
    }
  }

  static void on_handshake_done(void* ctx, const redis_result& r) {
    auto* self = static_cast<redis_impl*>(ctx);
    if (r.error == store_error::server) {
      self->drop(store_error::server, "handshake: %s", r.detail);
      return;
    }
    if (r.error != store_error::none || self->ac == nullptr) return;
    uv_timer_stop(&self->conn_timer);
    self->retry.reset();
    ++self->counts.connects;
    self->set_state(store_state::up, "");
  }

  static void on_connect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<redis_impl*>(c->data);
    if (status == REDIS_OK || c != self->ac) return;
    // hiredis frees the context right after this returns (and fails the queued handshake).
    self->connection_ended(store_error::disconnected, c->errstr, false);
  }

  static void on_disconnect(const redisAsyncContext* c, int) {
    auto* self = static_cast<redis_impl*>(c->data);
    if (c != self->ac) return;  // we dropped it ourselves
    self->connection_ended(store_error::disconnected,
                           c->err != 0 ? c->errstr : "server closed the connection", false);
  }

  void attempt_failed(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(drop_detail, sizeof drop_detail, fmt, ap);
    va_end(ap);
    ++counts.failures;
    go_down();
  }

  // Ends the live connection. free_context: we end it (hiredis then fails every pending
  // command with a NULL reply, through on_reply); otherwise hiredis is already ending it.
  void drop(store_error reason, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    char why[sizeof drop_detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    connection_ended(reason, why, true);
  }

  void connection_ended(store_error reason, const char* detail, bool free_context) {
    redisAsyncContext* c = ac;
    if (c == nullptr) return;
    ac = nullptr;
    drop_reason = reason;
    snprintf(drop_detail, sizeof drop_detail, "%s", detail);
    uv_timer_stop(&cmd_timer);
    if (state == store_state::up) {
      ++counts.disconnects;
    } else if (state == store_state::connecting) {
      ++counts.failures;
    }
    if (!closing) go_down();
    // Last: this runs the pending callbacks, which may call back into the client.
    if (free_context) redisAsyncFree(c);
  }

  void go_down() {
    if (closing) return;
    uv_timer_stop(&conn_timer);
    lookup.cancel();
    set_state(store_state::down, drop_detail);
    if (closing) return;  // the state callback closed us
    uv_timer_start(&conn_timer, on_conn_timer, retry.next_ms(), 0);
  }

  static void on_conn_timer(uv_timer_t* t) {
    auto* self = static_cast<redis_impl*>(t->data);
    if (self->state == store_state::connecting) {
      char why[64];
      snprintf(why, sizeof why, "connect timeout after %llums",
               static_cast<unsigned long long>(self->opt.connect_timeout_ms));
      if (self->ac != nullptr) {
        self->connection_ended(store_error::timeout, why, true);
      } else {
        self->attempt_failed("%s", why);
      }
      return;
    }
    if (self->state == store_state::down) self->start_attempt();
  }

  // ---------------------------------------------------------------------------- commands

  int send(redis_client::reply_fn fn, void* ctx, int argc, const char* const* argv,
           const size_t* lens, const char* format, va_list* ap) {
    if (state != store_state::up || ac == nullptr) return UV_ENOTCONN;
    redis_cmd* c = take_cmd();
    if (c == nullptr) return UV_ENOMEM;
    c->fn = fn;
    c->ctx = ctx;
    c->deadline = uv_now(loop) + opt.command_timeout_ms;
    int rc = format != nullptr ? redisvAsyncCommand(ac, on_reply, c, format, *ap)
                               : redisAsyncCommandArgv(ac, on_reply, c, argc,
                                                       const_cast<const char**>(argv), lens);
    if (rc != REDIS_OK) {
      give_back(c);
      // hiredis refuses commands on a connection it is ending, and malformed formats.
      return (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0 ? UV_ENOTCONN : UV_EINVAL;
    }
    push(c);
    ++user_pending;
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&cmd_timer))) {
      uv_timer_start(&cmd_timer, on_cmd_timer, opt.command_timeout_ms, 0);
    }
    return 0;
  }

  static void on_reply(redisAsyncContext* c, void* reply, void* privdata) {
    auto* cmd = static_cast<redis_cmd*>(privdata);
    redis_impl* self = cmd->owner;
    auto* r = static_cast<redisReply*>(reply);
    if (r == nullptr && c == self->ac) {
      // hiredis is failing its queue before telling us the connection is gone.
      self->connection_ended(store_error::disconnected, c->err != 0 ? c->errstr : "connection lost",
                             false);
    }
    self->unlink(cmd);
    if (!cmd->internal) --self->user_pending;
    redis_client::reply_fn fn = cmd->fn;
    void* ctx = cmd->ctx;
    self->give_back(cmd);  // before the callback: it may send again
    redis_result res{r, store_error::none, ""};
    if (r == nullptr) {
      res.error = self->drop_reason;
      res.detail = self->drop_detail;
    } else if (r->type == REDIS_REPLY_ERROR) {
      res.error = store_error::server;
      res.detail = r->str;
    }
    fn(ctx, res);
  }

  static void on_cmd_timer(uv_timer_t* t) {
    auto* self = static_cast<redis_impl*>(t->data);
    redis_cmd* oldest = self->head;
    while (oldest != nullptr && oldest->deadline == no_deadline) oldest = oldest->next;
    if (oldest == nullptr || self->ac == nullptr) return;
    uint64_t now = uv_now(self->loop);
    if (oldest->deadline > now) {
      uv_timer_start(t, on_cmd_timer, oldest->deadline - now, 0);
      return;
    }
    ++self->counts.timeouts;
    self->drop(store_error::timeout, "no reply in %llums",
               static_cast<unsigned long long>(self->opt.command_timeout_ms));
  }

  // ------------------------------------------------------------------------------- close

  void close() {
    if (closing) return;
    closing = true;
    lookup.cancel();
    uv_timer_stop(&conn_timer);
    uv_timer_stop(&cmd_timer);
    state = store_state::closed;
    if (ac != nullptr) connection_ended(store_error::closed, "closed", true);
    for (uv_timer_t* t : {&conn_timer, &cmd_timer}) {
      uv_close(reinterpret_cast<uv_handle_t*>(t), on_timer_closed);
    }
  }

  static void on_timer_closed(uv_handle_t* h) {
    auto* self = static_cast<redis_impl*>(h->data);
    --self->open_handles;
    self->maybe_free();
  }

  // The owner is gone and the loop holds nothing of ours: free.
  void maybe_free() {
    if (owner_gone && open_handles == 0 && !lookup.active()) delete this;
  }
};

redis_client::redis_client(uv_loop_t* loop, redis_options options)
    : impl_(new redis_impl(loop, std::move(options))) {}

redis_client::~redis_client() {
  impl_->close();
  impl_->owner_gone = true;
  impl_->maybe_free();
}

void redis_client::set_state_callback(state_fn on_state, void* ctx) {
  impl_->on_state = on_state;
  impl_->state_ctx = ctx;
}

void redis_client::start() {
  if (impl_->started || impl_->closing) return;
  impl_->started = true;
  impl_->start_attempt();
}

int redis_client::command_argv(reply_fn on_reply, void* ctx, int argc, const char* const* argv,
                               const size_t* lens) {
  return impl_->send(on_reply, ctx, argc, argv, lens, nullptr, nullptr);
}

int redis_client::command(reply_fn on_reply, void* ctx, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  int rc = impl_->send(on_reply, ctx, 0, nullptr, nullptr, format, &ap);
  va_end(ap);
  return rc;
}

void redis_client::close() {
  impl_->close();
}

store_state redis_client::state() const {
  return impl_->state;
}

size_t redis_client::pending() const {
  return impl_->user_pending;
}

redis_client::counters redis_client::stats() const {
  return impl_->counts;
}

}  // namespace core
