#include "pg_client.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "log.hpp"

namespace core {

bool check_pg_conninfo(const std::string& conninfo, std::string* why) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    if (why != nullptr) {
      why->assign(err != nullptr ? err : "out of memory");
      while (!why->empty() && (why->back() == '\n' || why->back() == ' ')) why->pop_back();
    }
    PQfreemem(err);
    return false;
  }
  PQconninfoFree(opts);
  return true;
}

namespace {

constexpr uint64_t no_deadline = UINT64_MAX;
// pg_advisory_xact_lock key for migrations: "stores" in ASCII.
constexpr const char* migration_lock_key = "115116111114101115";

void quiet_notices(void*, const char*) {}

// libpq's messages end with a newline (sometimes several lines): keep the first line.
void first_line(const char* in, char* out, size_t size) {
  size_t n = 0;
  while (in != nullptr && in[n] != '\0' && in[n] != '\n' && n + 1 < size) {
    out[n] = in[n];
    ++n;
  }
  out[n] = '\0';
}

}  // namespace

// A poll handle on one libpq socket. Allocated per socket, freed in its close callback.
struct pg_poll {
  uv_poll_t handle{};
  pg_impl* owner = nullptr;
  int fd = -1;
};

struct pg_query {
  pg_query* prev = nullptr;
  pg_query* next = nullptr;
  pg_impl* owner = nullptr;
  pg_client::result_fn fn = nullptr;
  void* ctx = nullptr;
  uint64_t deadline = no_deadline;
  PGresult* held = nullptr;  // the query's result, delivered at its sync point
  bool internal = false;
};

struct pg_impl {
  pg_impl(uv_loop_t* l, pg_options o)
      : loop(l),
        opt(std::move(o)),
        retry(opt.backoff_initial_ms, opt.backoff_max_ms,
              uv_hrtime() ^ reinterpret_cast<uintptr_t>(this)) {
    uv_timer_init(loop, &conn_timer);
    uv_timer_init(loop, &query_timer);
    conn_timer.data = this;
    query_timer.data = this;
    find_host();
  }
  ~pg_impl() {
    for (pg_query* q : all_queries) delete q;
  }

  uv_loop_t* loop;
  pg_options opt;
  backoff retry;
  uv_timer_t conn_timer{};   // connect timeout while connecting, backoff while down
  uv_timer_t query_timer{};  // the oldest pending query's deadline
  host_lookup lookup;
  std::string lookup_host;  // non-empty: resolve this name and pass hostaddr
  bool has_gssencmode = false;
  PGconn* conn = nullptr;
  pg_poll* poll = nullptr;
  bool connecting_phase = false;  // PQconnectPoll drives the socket
  bool want_write = false;
  bool broken = false;  // libpq gave up on the connection during a send: drop it soon
  store_state state = store_state::down;
  bool started = false;
  bool closing = false;
  bool owner_gone = false;
  int open_handles = 2;
  int version = 0;
  // Migration bookkeeping for the connection being set up.
  bool migration_failed = false;
  char migration_error[200] = "";
  int migration_target = 0;
  size_t user_pending = 0;
  pg_client::state_fn on_state = nullptr;
  void* state_ctx = nullptr;
  char detail[256] = "";
  pg_client::counters counts{};

  pg_query* head = nullptr;
  pg_query* tail = nullptr;
  pg_query* free_list = nullptr;
  std::vector<pg_query*> all_queries;

  // Decides once whether the connection string names one host that needs a lookup.
  void find_host() {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(opt.conninfo.c_str(), &err);
    PQfreemem(err);
    if (opts == nullptr) return;  // PQconnectStartParams reports it
    const char* host = nullptr;
    const char* hostaddr = nullptr;
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || o->val[0] == '\0') continue;
      if (strcmp(o->keyword, "host") == 0) host = o->val;
      if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
      if (strcmp(o->keyword, "gssencmode") == 0) has_gssencmode = true;
    }
    if (host != nullptr && hostaddr == nullptr && host[0] != '/' && host[0] != '@' &&
        strchr(host, ',') == nullptr && !is_ip_literal(host)) {
      lookup_host = host;
    }
    PQconninfoFree(opts);
  }

  // ------------------------------------------------------------------- query records

  pg_query* take() {
    pg_query* q = free_list;
    if (q != nullptr) {
      free_list = q->next;
    } else {
      q = new (std::nothrow) pg_query;
      if (q == nullptr) return nullptr;
      try {  // called from C callbacks too: nothing may throw through them
        all_queries.push_back(q);
      } catch (...) {
        delete q;
        return nullptr;
      }
    }
    *q = pg_query{};
    q->owner = this;
    return q;
  }
  void push(pg_query* q) {
    q->prev = tail;
    q->next = nullptr;
    if (tail != nullptr) {
      tail->next = q;
    } else {
      head = q;
    }
    tail = q;
  }
  void unlink(pg_query* q) {
    if (q->prev != nullptr) {
      q->prev->next = q->next;
    } else {
      head = q->next;
    }
    if (q->next != nullptr) {
      q->next->prev = q->prev;
    } else {
      tail = q->prev;
    }
  }
  void give_back(pg_query* q) {
    q->next = free_list;
    free_list = q;
  }

  void set_state(store_state s, const char* why) {
    if (s == state) return;
    state = s;
    log_field f[] = {log_field::word("store", opt.name),
                     log_field::word("state", store_state_name(s)), log_field::text("reason", why)};
    log_fields("STORE", f, s == store_state::down ? 3 : 2);
    if (on_state != nullptr) on_state(state_ctx, s, why);
  }

  // ---------------------------------------------------------------------- the socket

  static void on_poll_closed(uv_handle_t* h) {
    auto* p = static_cast<pg_poll*>(h->data);
    pg_impl* self = p->owner;
    delete p;
    --self->open_handles;
    self->maybe_free();
  }

  void close_poll() {
    if (poll == nullptr) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll->handle), on_poll_closed);
    poll = nullptr;
  }

  // Watches libpq's current socket for `events`. While connecting, every step re-registers
  // (stop + start = a fresh epoll registration), as the socket behind the number may be new.
  bool watch(int events) {
    int fd = PQsocket(conn);
    if (fd < 0) return false;
    if (poll != nullptr && poll->fd != fd) close_poll();
    if (poll == nullptr) {
      auto* p = new (std::nothrow) pg_poll;
      if (p == nullptr) return false;
      if (uv_poll_init(loop, &p->handle, fd) != 0) {
        delete p;
        return false;
      }
      p->handle.data = p;
      p->owner = this;
      p->fd = fd;
      poll = p;
      ++open_handles;
    } else if (connecting_phase) {
      uv_poll_stop(&poll->handle);
    }
    return uv_poll_start(&poll->handle, events, on_poll) == 0;
  }

  static void on_poll(uv_poll_t* h, int status, int events) {
    pg_impl* self = static_cast<pg_poll*>(h->data)->owner;
    if (self->conn == nullptr || self->broken) return;
    if (self->connecting_phase) {
      self->connect_step();
      return;
    }
    // An error status: let libpq find the socket error itself by reading.
    if (status < 0 || (events & UV_READABLE)) {
      if (!self->read_results()) return;
    }
    if (self->want_write || status < 0) self->flush();
  }

  // ----------------------------------------------------------------- connection attempts

  void start_attempt() {
    set_state(store_state::connecting, "");
    // uv_now is cached per loop turn; start() may follow a long blocking start-up.
    uv_update_time(loop);
    uv_timer_start(&conn_timer, on_conn_timer, opt.connect_timeout_ms, 0);
    if (lookup_host.empty()) {
      connect_with(nullptr);
      return;
    }
    if (lookup.active()) {  // a cancelled lookup still running in the thread pool
      attempt_failed("lookup of %s still running", lookup_host.c_str());
      return;
    }
    int rc = lookup.start(loop, lookup_host.c_str(), on_lookup, this);
    if (rc != 0) attempt_failed("lookup: %s", uv_strerror(rc));
  }

  static void on_lookup(void* ctx, int status, const char* ip) {
    auto* self = static_cast<pg_impl*>(ctx);
    if (self->closing) {
      self->maybe_free();
      return;
    }
    if (self->state != store_state::connecting || self->conn != nullptr) return;
    if (status != 0) {
      self->attempt_failed("lookup %s: %s", self->lookup_host.c_str(), uv_strerror(status));
      return;
    }
    self->connect_with(ip);
  }

  void connect_with(const char* hostaddr) {
    const char* keys[8];
    const char* vals[8];
    int n = 0;
    keys[n] = "dbname";  // expanded: the whole connection string or URI
    vals[n++] = opt.conninfo.c_str();
    if (hostaddr != nullptr) {
      keys[n] = "hostaddr";
      vals[n++] = hostaddr;
    }
    if (!opt.password.empty()) {
      keys[n] = "password";
      vals[n++] = opt.password.c_str();
    }
    if (!has_gssencmode) {
      // A GSS attempt costs a round trip per connect, and the static build has no GSSAPI.
      keys[n] = "gssencmode";
      vals[n++] = "disable";
    }
    keys[n] = "fallback_application_name";
    vals[n++] = opt.name;
    keys[n] = nullptr;
    vals[n] = nullptr;
    PGconn* c = PQconnectStartParams(keys, vals, 1);
    if (c == nullptr) {
      attempt_failed("connect: out of memory");
      return;
    }
    if (PQstatus(c) == CONNECTION_BAD) {
      char why[200];
      first_line(PQerrorMessage(c), why, sizeof why);
      PQfinish(c);
      attempt_failed("connect: %s", why);
      return;
    }
    PQsetNoticeProcessor(c, quiet_notices, nullptr);
    conn = c;
    connecting_phase = true;
    // As if PQconnectPoll had asked for writing (libpq's documented first step).
    if (!watch(UV_WRITABLE)) drop(store_error::disconnected, "cannot watch the socket");
  }

  void connect_step() {
    switch (PQconnectPoll(conn)) {
      case PGRES_POLLING_READING:
        if (!watch(UV_READABLE)) drop(store_error::disconnected, "cannot watch the socket");
        return;
      case PGRES_POLLING_WRITING:
        if (!watch(UV_WRITABLE)) drop(store_error::disconnected, "cannot watch the socket");
        return;
      case PGRES_POLLING_OK: connected(); return;
      default: {
        char why[200];
        first_line(PQerrorMessage(conn), why, sizeof why);
        drop(store_error::disconnected, "connect: %s", why);
        return;
      }
    }
  }

  void connected() {
    connecting_phase = false;
    if (PQsetnonblocking(conn, 1) != 0 || PQenterPipelineMode(conn) != 1) {
      char why[200];
      first_line(PQerrorMessage(conn), why, sizeof why);
      drop(store_error::disconnected, "pipeline mode: %s", why);
      return;
    }
    if (!watch(UV_READABLE)) {
      drop(store_error::disconnected, "cannot watch the socket");
      return;
    }
    if (opt.migration_count == 0) {
      now_up();
      return;
    }
    migration_failed = false;
    migration_error[0] = '\0';
    migration_target = 0;
    send_internal("BEGIN", 0, nullptr, on_migration_step);
    const char* key[] = {migration_lock_key};
    send_internal("SELECT pg_advisory_xact_lock($1::bigint)", 1, key, on_migration_step);
    send_internal(
        "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now())",
        0, nullptr, on_migration_step);
    send_internal("SELECT coalesce(max(version), 0) FROM schema_version", 0, nullptr,
                  on_migration_current);
  }

  void now_up() {
    uv_timer_stop(&conn_timer);
    retry.reset();
    ++counts.connects;
    set_state(store_state::up, "");
  }

  // --------------------------------------------------------------------- migrations

  void note_migration_error(const pg_query_result& r, const char* what) {
    if (migration_failed) return;
    migration_failed = true;
    char why[160];
    first_line(r.detail, why, sizeof why);
    snprintf(migration_error, sizeof migration_error, "%s: %s", what, why);
  }

  static void on_migration_step(void* ctx, const pg_query_result& r) {
    auto* self = static_cast<pg_impl*>(ctx);
    if (r.error == store_error::server) self->note_migration_error(r, "schema");
  }

  static void on_migration_current(void* ctx, const pg_query_result& r) {
    auto* self = static_cast<pg_impl*>(ctx);
    if (r.error != store_error::none && r.error != store_error::server) return;  // gone
    int current = 0;
    if (r.error == store_error::server) {
      self->note_migration_error(r, "schema_version");
    } else if (PQntuples(r.result) == 1) {
      current = atoi(PQgetvalue(r.result, 0, 0));
    }
    self->version = current;
    self->migration_target = current;
    if (!self->migration_failed) {
      for (size_t i = 0; i < self->opt.migration_count; ++i) {
        const pg_migration& m = self->opt.migrations[i];
        if (m.version <= current) continue;
        self->send_internal(m.sql, 0, nullptr, on_migration_step);
        bool last_of_version =
            i + 1 == self->opt.migration_count || self->opt.migrations[i + 1].version != m.version;
        if (last_of_version) {
          char v[16];
          snprintf(v, sizeof v, "%d", m.version);
          const char* values[] = {v};
          self->send_internal("INSERT INTO schema_version (version) VALUES ($1::integer)", 1,
                              values, on_migration_step);
          self->migration_target = m.version;
        }
      }
    }
    // COMMIT in a failed transaction rolls back: either way it ends the transaction.
    self->send_internal("COMMIT", 0, nullptr, on_migration_done);
  }

  static void on_migration_done(void* ctx, const pg_query_result& r) {
    auto* self = static_cast<pg_impl*>(ctx);
    if (r.error != store_error::none && r.error != store_error::server) return;
    if (r.error == store_error::server) self->note_migration_error(r, "commit");
    if (self->migration_failed) {
      self->drop(store_error::server, "migration: %s", self->migration_error);
      return;
    }
    if (self->migration_target != self->version) {
      log_field f[] = {
          log_field::word("store", self->opt.name),
          log_field::num("migrated_from", static_cast<uint64_t>(self->version)),
          log_field::num("migrated_to", static_cast<uint64_t>(self->migration_target))};
      log_fields("STORE", f);
    }
    self->version = self->migration_target;
    self->now_up();
  }

  // ------------------------------------------------------------------------- queries

  // libpq closes its socket itself when a send or read fails (EOF, reset). The fd must not be
  // watched a moment longer: its number goes to the next socket anyone opens, and libuv would
  // (re)register or deregister that one. So: stop the poll now, and end the connection from a
  // zero timer, outside the caller's stack (query() must not run other callbacks).
  void fail_soon() {
    if (poll != nullptr) uv_poll_stop(&poll->handle);
    if (broken) return;
    broken = true;
    uv_timer_start(&query_timer, on_query_timer, 0, 0);
  }

  // Sends one query and its sync. Returns 0 or a UV_* error; never ends the connection here
  // (the caller may be in the middle of something): see fail_soon().
  int send_query(pg_client::result_fn fn, void* ctx, const char* sql, int nparams,
                 const char* const* values, bool internal) {
    if (broken) return UV_ENOTCONN;
    pg_query* q = take();
    if (q == nullptr) return UV_ENOMEM;
    if (PQsendQueryParams(conn, sql, nparams, nullptr, values, nullptr, nullptr, 0) != 1) {
      give_back(q);
      if (PQstatus(conn) == CONNECTION_BAD) fail_soon();
      return UV_EIO;
    }
    if (PQpipelineSync(conn) != 1) {
      // The query is queued without its sync: this connection is out of step.
      give_back(q);
      fail_soon();
      return UV_EIO;
    }
    q->fn = fn;
    q->ctx = ctx;
    q->internal = internal;
    q->deadline = internal ? no_deadline : uv_now(loop) + opt.query_timeout_ms;
    push(q);
    if (!internal) {
      ++user_pending;
      if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&query_timer))) {
        uv_timer_start(&query_timer, on_query_timer, opt.query_timeout_ms, 0);
      }
    }
    int rc = PQflush(conn);
    if (rc < 0 || PQstatus(conn) == CONNECTION_BAD) {
      fail_soon();  // the query is queued: its callback comes with the drop
    } else if (rc == 1 && !want_write) {
      want_write = true;
      uv_poll_start(&poll->handle, UV_READABLE | UV_WRITABLE, on_poll);
    }
    return 0;
  }

  void send_internal(const char* sql, int nparams, const char* const* values,
                     pg_client::result_fn fn) {
    if (conn == nullptr) return;
    if (send_query(fn, this, sql, nparams, values, true) != 0 && !migration_failed) {
      migration_failed = true;
      snprintf(migration_error, sizeof migration_error, "cannot send: %s", sql);
    }
  }

  void flush() {
    if (broken) return;
    int rc = PQflush(conn);
    if (rc < 0 || PQstatus(conn) == CONNECTION_BAD) {
      char why[200];
      first_line(PQerrorMessage(conn), why, sizeof why);
      drop(store_error::disconnected, "send: %s", why);
      return;
    }
    bool more = rc == 1;
    if (more != want_write) {
      want_write = more;
      uv_poll_start(&poll->handle, more ? UV_READABLE | UV_WRITABLE : UV_READABLE, on_poll);
    }
  }

  // Reads what arrived and delivers every query whose sync point came. Returns false if the
  // connection ended (or the client closed) meanwhile.
  bool read_results() {
    PGconn* c = conn;
    if (PQconsumeInput(c) != 1) {
      char why[200];
      first_line(PQerrorMessage(c), why, sizeof why);
      drop(store_error::disconnected, "%s", why[0] != '\0' ? why : "connection lost");
      return false;
    }
    int nulls = 0;
    while (conn == c && !PQisBusy(c)) {
      PGresult* r = PQgetResult(c);
      pg_query* q = head;
      if (r == nullptr) {
        // One NULL ends a query's results (its sync follows); two in a row: nothing more now.
        if (q == nullptr || ++nulls == 2) break;
        continue;
      }
      nulls = 0;
      ExecStatusType st = PQresultStatus(r);
      if (q == nullptr) {  // nothing is waiting: cannot happen with one sync per query
        PQclear(r);
        continue;
      }
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        deliver(q);
        continue;
      }
      bool is_error = st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED ||
                      st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
      if (q->held == nullptr) {
        q->held = r;
      } else if (is_error && PQresultStatus(q->held) != PGRES_FATAL_ERROR) {
        PQclear(q->held);  // e.g. the implicit commit failed at the sync point
        q->held = r;
      } else {
        PQclear(r);
      }
    }
    if (conn != c) return false;
    if (PQstatus(c) == CONNECTION_BAD) {
      char why[200];
      first_line(PQerrorMessage(c), why, sizeof why);
      drop(store_error::disconnected, "%s", why[0] != '\0' ? why : "connection lost");
      return false;
    }
    return true;
  }

  void deliver(pg_query* q) {
    unlink(q);
    if (!q->internal) --user_pending;
    pg_client::result_fn fn = q->fn;
    void* ctx = q->ctx;
    PGresult* held = q->held;
    give_back(q);  // before the callback: it may send again
    pg_query_result res{held, store_error::none, ""};
    char why[256];
    if (held == nullptr) {
      res.error = store_error::server;
      res.detail = "no result";
    } else {
      ExecStatusType st = PQresultStatus(held);
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        res.error = store_error::server;
        first_line(st == PGRES_PIPELINE_ABORTED ? "pipeline aborted" : PQresultErrorMessage(held),
                   why, sizeof why);
        res.detail = why;
      }
    }
    fn(ctx, res);
    PQclear(held);
  }

  static void on_query_timer(uv_timer_t* t) {
    auto* self = static_cast<pg_impl*>(t->data);
    if (self->broken) {
      char why[200];
      first_line(PQerrorMessage(self->conn), why, sizeof why);
      self->drop(store_error::disconnected, "%s", why[0] != '\0' ? why : "connection lost");
      return;
    }
    pg_query* oldest = self->head;
    while (oldest != nullptr && oldest->deadline == no_deadline) oldest = oldest->next;
    if (oldest == nullptr || self->conn == nullptr) return;
    uint64_t now = uv_now(self->loop);
    if (oldest->deadline > now) {
      uv_timer_start(t, on_query_timer, oldest->deadline - now, 0);
      return;
    }
    ++self->counts.timeouts;
    self->drop(store_error::timeout, "no result in %llums",
               static_cast<unsigned long long>(self->opt.query_timeout_ms));
  }

  // ------------------------------------------------------------------ ending a connection

  void attempt_failed(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    ++counts.failures;
    go_down();
  }

  // Ends the connection: closes the socket's poll, PQfinish, then fails every pending query
  // (oldest first) with `reason`. State goes down (and a retry is scheduled) before the
  // callbacks run, so a callback that sends again is refused instead of queued on a corpse.
  void drop(store_error reason, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    if (conn == nullptr) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    PGconn* c = conn;
    conn = nullptr;
    connecting_phase = false;
    want_write = false;
    broken = false;
    close_poll();  // stops watching the fd now; libpq closes it next
    PQfinish(c);
    uv_timer_stop(&query_timer);
    if (state == store_state::up) {
      ++counts.disconnects;
    } else if (state == store_state::connecting) {
      ++counts.failures;
    }
    if (!closing) go_down();
    char why[sizeof detail];
    memcpy(why, detail, sizeof why);
    while (head != nullptr) {
      pg_query* q = head;
      unlink(q);
      if (!q->internal) --user_pending;
      pg_client::result_fn fn = q->fn;
      void* ctx = q->ctx;
      PQclear(q->held);
      give_back(q);
      fn(ctx, pg_query_result{nullptr, reason, why});
    }
  }

  void go_down() {
    if (closing) return;
    uv_timer_stop(&conn_timer);
    lookup.cancel();
    set_state(store_state::down, detail);
    if (closing) return;  // the state callback closed us
    uv_timer_start(&conn_timer, on_conn_timer, retry.next_ms(), 0);
  }

  static void on_conn_timer(uv_timer_t* t) {
    auto* self = static_cast<pg_impl*>(t->data);
    if (self->state == store_state::connecting) {
      unsigned long long ms = self->opt.connect_timeout_ms;
      if (self->conn != nullptr) {
        self->drop(store_error::timeout, "connect timeout after %llums", ms);
      } else {
        self->attempt_failed("connect timeout after %llums", ms);
      }
      return;
    }
    if (self->state == store_state::down) self->start_attempt();
  }

  // ---------------------------------------------------------------------------- close

  void close() {
    if (closing) return;
    closing = true;
    lookup.cancel();
    uv_timer_stop(&conn_timer);
    uv_timer_stop(&query_timer);
    state = store_state::closed;
    drop(store_error::closed, "closed");
    for (uv_timer_t* t : {&conn_timer, &query_timer}) {
      uv_close(reinterpret_cast<uv_handle_t*>(t), on_timer_closed);
    }
  }

  static void on_timer_closed(uv_handle_t* h) {
    auto* self = static_cast<pg_impl*>(h->data);
    --self->open_handles;
    self->maybe_free();
  }

  void maybe_free() {
    if (owner_gone && open_handles == 0 && !lookup.active()) delete this;
  }
};

pg_client::pg_client(uv_loop_t* loop, pg_options options)
    : impl_(new pg_impl(loop, std::move(options))) {}

pg_client::~pg_client() {
  impl_->close();
  impl_->owner_gone = true;
  impl_->maybe_free();
}

void pg_client::set_state_callback(state_fn on_state, void* ctx) {
  impl_->on_state = on_state;
  impl_->state_ctx = ctx;
}

void pg_client::start() {
  if (impl_->started || impl_->closing) return;
  impl_->started = true;
  impl_->start_attempt();
}

int pg_client::query(result_fn on_result, void* ctx, const char* sql, int nparams,
                     const char* const* values) {
  if (impl_->state != store_state::up || impl_->conn == nullptr || impl_->broken) {
    return UV_ENOTCONN;
  }
  return impl_->send_query(on_result, ctx, sql, nparams, values, false);
}

void pg_client::close() {
  impl_->close();
}

store_state pg_client::state() const {
  return impl_->state;
}

size_t pg_client::pending() const {
  return impl_->user_pending;
}

int pg_client::schema_version() const {
  return impl_->version;
}

pg_client::counters pg_client::stats() const {
  return impl_->counts;
}

}  // namespace core
