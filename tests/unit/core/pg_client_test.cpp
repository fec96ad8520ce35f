// pg_client against a real PostgreSQL (one cluster per test binary, initdb'd as a non-root
// user in a temporary directory, TCP on loopback with scram-sha-256): password from a file,
// bound parameters, a pipeline of queries, migrations, restart and reconnect, timeouts.
#include "pg_client.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "loop_run.hpp"
#include "store_servers.hpp"

using namespace core;

namespace {

store_servers::pg_server* server = nullptr;

class PgEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    server = new store_servers::pg_server;
    std::string error;
    if (!server->start(&error)) {
      delete server;
      server = nullptr;
      FAIL() << "PostgreSQL: " << error;
    }
  }
  void TearDown() override {
    delete server;
    server = nullptr;
  }
};

const auto* pg_env = ::testing::AddGlobalTestEnvironment(new PgEnvironment);

struct outcome {
  int calls = 0;
  store_error error = store_error::none;
  std::vector<std::string> values;  // first column of every row
  std::string detail;
};

void on_result(void* ctx, const pg_query_result& r) {
  auto* o = static_cast<outcome*>(ctx);
  ++o->calls;
  o->error = r.error;
  o->detail = r.detail;
  o->values.clear();
  if (r.error == store_error::none && PQresultStatus(r.result) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r.result); ++i)
      o->values.emplace_back(PQgetvalue(r.result, i, 0));
  }
}

std::string last_detail;
void on_state(void*, store_state, const char* detail) {
  last_detail = detail;
}

class PgClient : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(server, nullptr);
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    std::string error;
    ASSERT_TRUE(server->start(&error)) << error;  // a test may have left it stopped
    std::string why = read_secret_file(server->password_file().c_str(), &password_) == nullptr
                          ? ""
                          : "cannot read the password file";
    ASSERT_EQ(why, "");
    last_detail.clear();
  }
  void TearDown() override {
    clients_.clear();
    EXPECT_EQ(loop_run::close_loop(&loop_), 0);
  }
  pg_options options() {
    pg_options o;
    o.conninfo = server->conninfo();
    o.password = password_;
    o.connect_timeout_ms = 3000;
    o.query_timeout_ms = 3000;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 200;
    return o;
  }
  pg_client& make(pg_options o) {
    clients_.push_back(std::make_unique<pg_client>(&loop_, std::move(o)));
    pg_client& c = *clients_.back();
    c.set_state_callback(on_state, nullptr);
    c.start();
    return c;
  }
  bool wait_state(pg_client& c, store_state s, uint64_t ms = 10000) {
    return loop_run::until(
        &loop_, [&] { return c.state() == s; }, ms);
  }
  bool wait_calls(const outcome& o, int n, uint64_t ms = 5000) {
    return loop_run::until(
        &loop_, [&] { return o.calls >= n; }, ms);
  }

  uv_loop_t loop_{};
  std::string password_;
  std::vector<std::unique_ptr<pg_client>> clients_;
};

TEST_F(PgClient, ConnectsOverTcpWithThePasswordFromAFile) {
  pg_client& c = make(options());
  EXPECT_EQ(c.state(), store_state::connecting);
  outcome early;
  EXPECT_EQ(c.query(on_result, &early, "SELECT 1"), UV_ENOTCONN);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  outcome who;
  ASSERT_EQ(c.query(on_result, &who,
                    "SELECT current_user || ' ' || (SELECT auth_method FROM "
                    "pg_hba_file_rules WHERE type = 'host' LIMIT 1)"),
            0);
  ASSERT_TRUE(wait_calls(who, 1));
  EXPECT_EQ(who.error, store_error::none) << who.detail;
  ASSERT_EQ(who.values.size(), 1u);
  EXPECT_EQ(who.values[0], "postgres scram-sha-256");
}

TEST_F(PgClient, WrongPasswordIsDownWithTheServersReason) {
  pg_options o = options();
  o.password = "wrong";
  o.backoff_initial_ms = 2000;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::down, 5000));
  EXPECT_NE(last_detail.find("password authentication failed"), std::string::npos) << last_detail;
  EXPECT_EQ(c.stats().connects, 0u);
}

const pg_migration notes_schema[] = {
    {1, "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)"},
    {2, "ALTER TABLE notes ADD COLUMN author text"},
    {2, "CREATE INDEX notes_author ON notes (author)"},
};

TEST_F(PgClient, ParametersAreBoundNeverPasted) {
  pg_options o = options();
  o.migrations = notes_schema;
  o.migration_count = 3;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  const char* evil = "x'); DROP TABLE notes; -- \"<script>\" \\ ☃";
  const char* values[] = {evil, nullptr};
  outcome ins, sel;
  ASSERT_EQ(c.query(on_result, &ins,
                    "INSERT INTO notes (body, author) VALUES ($1, $2) RETURNING body", 2, values),
            0);
  const char* key[] = {evil};
  ASSERT_EQ(c.query(on_result, &sel, "SELECT coalesce(author, 'null') FROM notes WHERE body = $1",
                    1, key),
            0);
  ASSERT_TRUE(wait_calls(sel, 1));
  EXPECT_EQ(ins.error, store_error::none) << ins.detail;
  ASSERT_EQ(ins.values.size(), 1u);
  EXPECT_EQ(ins.values[0], evil);
  ASSERT_EQ(sel.values.size(), 1u);
  EXPECT_EQ(sel.values[0], "null");  // the second parameter was SQL NULL
  outcome drop;
  ASSERT_EQ(c.query(on_result, &drop, "DROP TABLE notes; DROP TABLE schema_version"), 0);
  ASSERT_TRUE(wait_calls(drop, 1));
  EXPECT_EQ(drop.error, store_error::server);  // one statement per query in pipeline mode
  outcome cleanup;
  ASSERT_EQ(c.query(on_result, &cleanup, "DROP TABLE notes"), 0);
  ASSERT_EQ(c.query(on_result, &cleanup, "DROP TABLE schema_version"), 0);
  ASSERT_TRUE(wait_calls(cleanup, 2));
  EXPECT_EQ(cleanup.error, store_error::none) << cleanup.detail;
}

// Many queries in one turn, answered in order; a failing one fails alone (its own sync).
TEST_F(PgClient, PipelineDeliversInOrderAndIsolatesErrors) {
  pg_client& c = make(options());
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  constexpr int n = 100;
  std::vector<outcome> got(n);
  std::vector<std::string> texts(n);
  int order = 0;
  std::vector<int> seen(n, -1);
  struct ctx_t {
    outcome* o;
    int* order;
    int* seen_at;
  };
  std::vector<ctx_t> ctxs(n);
  for (int i = 0; i < n; ++i) {
    texts[i] = std::to_string(i);
    ctxs[i] = {&got[i], &order, &seen[i]};
    const char* v[] = {texts[i].c_str()};
    const char* sql = i == 50 ? "SELECT 1 / ($1::int - 50)" : "SELECT $1::int * 2";
    ASSERT_EQ(c.query(
                  [](void* ctx, const pg_query_result& r) {
                    auto* x = static_cast<ctx_t*>(ctx);
                    *x->seen_at = (*x->order)++;
                    on_result(x->o, r);
                  },
                  &ctxs[i], sql, 1, v),
              0);
  }
  EXPECT_EQ(c.pending(), static_cast<size_t>(n));
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return order == n; }, 5000));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(got[i].calls, 1) << i;
    EXPECT_EQ(seen[i], i) << "out of order";
    if (i == 50) {
      EXPECT_EQ(got[i].error, store_error::server);
      EXPECT_NE(got[i].detail.find("division by zero"), std::string::npos) << got[i].detail;
    } else {
      EXPECT_EQ(got[i].error, store_error::none) << i << ": " << got[i].detail;
      ASSERT_EQ(got[i].values.size(), 1u);
      EXPECT_EQ(got[i].values[0], std::to_string(i * 2));
    }
  }
  EXPECT_EQ(c.pending(), 0u);
  EXPECT_EQ(c.state(), store_state::up);
}

const pg_migration counter_v1[] = {
    {1, "CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)"},
    {1, "INSERT INTO counter VALUES (1, 0)"},
};
const pg_migration counter_v2[] = {
    {1, "CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)"},
    {1, "INSERT INTO counter VALUES (1, 0)"},
    {2, "ALTER TABLE counter ADD COLUMN updated timestamptz"},
};

TEST_F(PgClient, MigrationsAreIdempotentAndVersioned) {
  pg_options o = options();
  o.migrations = counter_v1;
  o.migration_count = 2;
  pg_client& a = make(o);
  pg_client& b = make(o);  // two replicas starting together: the advisory lock serialises them
  ASSERT_TRUE(wait_state(a, store_state::up)) << last_detail;
  ASSERT_TRUE(wait_state(b, store_state::up)) << last_detail;
  EXPECT_EQ(a.schema_version(), 1);
  EXPECT_EQ(b.schema_version(), 1);
  outcome rows;
  ASSERT_EQ(a.query(on_result, &rows, "SELECT count(*) FROM counter"), 0);
  ASSERT_TRUE(wait_calls(rows, 1));
  ASSERT_EQ(rows.values.size(), 1u);
  EXPECT_EQ(rows.values[0], "1");  // the INSERT ran once

  o.migrations = counter_v2;
  o.migration_count = 3;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  EXPECT_EQ(c.schema_version(), 2);
  pg_client& d = make(o);  // a connect with nothing to do
  ASSERT_TRUE(wait_state(d, store_state::up)) << last_detail;
  EXPECT_EQ(d.schema_version(), 2);
  outcome versions;
  ASSERT_EQ(d.query(on_result, &versions, "SELECT version FROM schema_version ORDER BY version"),
            0);
  ASSERT_TRUE(wait_calls(versions, 1));
  EXPECT_EQ(versions.values, (std::vector<std::string>{"1", "2"}));
  outcome cleanup;
  ASSERT_EQ(d.query(on_result, &cleanup, "DROP TABLE counter"), 0);
  ASSERT_EQ(d.query(on_result, &cleanup, "DROP TABLE schema_version"), 0);
  ASSERT_TRUE(wait_calls(cleanup, 2));
}

const pg_migration broken[] = {
    {1, "CREATE TABLE half_done (id int)"},
    {2, "CREATE TABLE oops (id nosuchtype)"},
};

TEST_F(PgClient, AFailedMigrationRollsBackAndStaysDown) {
  pg_options o = options();
  o.migrations = broken;
  o.migration_count = 2;
  o.backoff_initial_ms = 5000;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::down)) << last_detail;
  EXPECT_NE(last_detail.find("nosuchtype"), std::string::npos) << last_detail;
  c.close();
  pg_client& check = make(options());
  ASSERT_TRUE(wait_state(check, store_state::up));
  outcome t;
  ASSERT_EQ(check.query(on_result, &t, "SELECT to_regclass('half_done') IS NULL"), 0);
  ASSERT_TRUE(wait_calls(t, 1));
  ASSERT_EQ(t.values.size(), 1u);
  EXPECT_EQ(t.values[0], "t");  // version 1 was rolled back with version 2
}

// SIGKILL of the whole server while queries run: each callback once, with an error; the
// client comes back by itself when the server does.
TEST_F(PgClient, ServerKilledFailsPendingThenReconnects) {
  pg_client& c = make(options());
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  std::vector<outcome> got(10);
  for (auto& o : got) ASSERT_EQ(c.query(on_result, &o, "SELECT pg_sleep(10)"), 0);
  loop_run::for_ms(&loop_, 100);
  server->kill_all(SIGKILL);
  ASSERT_TRUE(wait_state(c, store_state::down, 3000));
  loop_run::for_ms(&loop_, 100);
  for (auto& o : got) {
    EXPECT_EQ(o.calls, 1);
    EXPECT_EQ(o.error, store_error::disconnected);
  }
  EXPECT_EQ(c.pending(), 0u);
  std::string error;
  ASSERT_TRUE(server->restart(&error)) << error;
  ASSERT_TRUE(wait_state(c, store_state::up, 10000)) << last_detail;
  outcome after;
  ASSERT_EQ(c.query(on_result, &after, "SELECT 42"), 0);
  ASSERT_TRUE(wait_calls(after, 1));
  ASSERT_EQ(after.values.size(), 1u);
  EXPECT_EQ(after.values[0], "42");
  EXPECT_EQ(c.stats().disconnects, 1u);
}

TEST_F(PgClient, CleanServerRestartReconnects) {
  pg_client& c = make(options());
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  server->stop();
  ASSERT_TRUE(wait_state(c, store_state::down, 3000));
  std::string error;
  ASSERT_TRUE(server->restart(&error)) << error;
  ASSERT_TRUE(wait_state(c, store_state::up, 10000)) << last_detail;
}

TEST_F(PgClient, SlowQueryTimesOutAndTheConnectionIsRemade) {
  pg_options o = options();
  o.query_timeout_ms = 200;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  loop_run::ticker tick(&loop_);
  outcome slow, fast;
  uint64_t t0 = uv_hrtime();
  ASSERT_EQ(c.query(on_result, &slow, "SELECT pg_sleep(5)"), 0);
  ASSERT_EQ(c.query(on_result, &fast, "SELECT 1"), 0);  // behind it in the pipeline
  ASSERT_TRUE(wait_calls(fast, 1, 3000));
  double ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
  EXPECT_EQ(slow.error, store_error::timeout);
  EXPECT_EQ(fast.error, store_error::timeout);
  EXPECT_GE(ms, 180);
  EXPECT_LT(ms, 1000);
  EXPECT_EQ(c.stats().timeouts, 1u);
  ASSERT_TRUE(wait_state(c, store_state::up, 5000)) << last_detail;
  EXPECT_LT(tick.max_gap_ms(), 100) << "the loop stalled";
  tick.stop();
  outcome again;
  ASSERT_EQ(c.query(on_result, &again, "SELECT 1"), 0);
  ASSERT_TRUE(wait_calls(again, 1));
  EXPECT_EQ(again.error, store_error::none);
}

TEST_F(PgClient, SilentListenerEndsInConnectTimeout) {
  store_servers::silent_listener silent;
  pg_options o = options();
  o.conninfo = "host=127.0.0.1 port=" + std::to_string(silent.port()) + " user=postgres";
  o.connect_timeout_ms = 150;
  o.backoff_initial_ms = 1000;
  loop_run::ticker tick(&loop_);
  uint64_t t0 = uv_hrtime();
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::down, 2000));
  double ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
  EXPECT_GE(ms, 130);  // uv_now is cached per turn: +-1 ms
  EXPECT_LT(ms, 500);
  EXPECT_EQ(last_detail, "connect timeout after 150ms");
  EXPECT_LT(tick.max_gap_ms(), 100);
  tick.stop();
}

TEST_F(PgClient, HostNameAndUriForm) {
  pg_options o = options();
  o.conninfo = "postgresql://postgres@localhost:" + std::to_string(server->port()) + "/postgres";
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
}

// A unix socket directory as host: no lookup, no TCP (trusted locally by this cluster).
TEST_F(PgClient, UnixSocketHost) {
  pg_options o = options();
  o.conninfo = "host=" + server->dir() + " port=" + std::to_string(server->port()) +
               " user=postgres dbname=postgres";
  o.password.clear();
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  outcome where;
  ASSERT_EQ(c.query(on_result, &where, "SELECT coalesce(inet_server_addr()::text, 'local')"), 0);
  ASSERT_TRUE(wait_calls(where, 1));
  ASSERT_EQ(where.values.size(), 1u);
  EXPECT_EQ(where.values[0], "local");
}

TEST_F(PgClient, CloseFailsPendingBeforeReturning) {
  pg_client& c = make(options());
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  outcome a, b;
  ASSERT_EQ(c.query(on_result, &a, "SELECT pg_sleep(5)"), 0);
  ASSERT_EQ(c.query(on_result, &b, "SELECT 1"), 0);
  loop_run::for_ms(&loop_, 20);
  c.close();
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(a.error, store_error::closed);
  EXPECT_EQ(c.state(), store_state::closed);
}

}  // namespace

namespace {

struct storm {
  pg_client* c = nullptr;
  uv_timer_t timer{};
  std::vector<int> calls;
  int ok = 0, failed = 0, refused = 0;

  static void on_done(void* ctx, const pg_query_result& r) {
    auto* id = static_cast<std::pair<storm*, int>*>(ctx);
    ++id->first->calls[static_cast<size_t>(id->second)];
    if (r.error == store_error::none) {
      ++id->first->ok;
    } else {
      ++id->first->failed;
    }
    delete id;
  }
  static void on_tick(uv_timer_t* t) {
    auto* self = static_cast<storm*>(t->data);
    for (int i = 0; i < 5; ++i) {
      auto* ctx = new std::pair<storm*, int>(self, static_cast<int>(self->calls.size()));
      const char* v[] = {"1"};
      if (self->c->query(on_done, ctx, "SELECT $1::int", 1, v) == 0) {
        self->calls.push_back(0);
      } else {
        delete ctx;
        ++self->refused;
      }
    }
  }
};

}  // namespace

// Crashes, clean restarts and stalls under a steady stream of queries: every accepted query's
// callback runs exactly once.
TEST_F(PgClient, CrashStormKeepsExactlyOnce) {
  pg_options o = options();
  o.query_timeout_ms = 300;
  o.connect_timeout_ms = 1000;
  pg_client& c = make(o);
  ASSERT_TRUE(wait_state(c, store_state::up)) << last_detail;
  storm s;
  s.c = &c;
  uv_timer_init(&loop_, &s.timer);
  s.timer.data = &s;
  uv_timer_start(&s.timer, storm::on_tick, 2, 2);
  for (int round = 0; round < 3; ++round) {
    loop_run::for_ms(&loop_, 200);
    if (round == 0) {
      server->kill_all(SIGKILL);
    } else if (round == 1) {
      server->stop();
    } else {
      server->pause();
      loop_run::for_ms(&loop_, 500);
      server->kill_all(SIGKILL);
    }
    loop_run::for_ms(&loop_, 100);
    std::string error;
    ASSERT_TRUE(server->restart(&error)) << error;
    ASSERT_TRUE(wait_state(c, store_state::up, 10000)) << last_detail;
  }
  loop_run::for_ms(&loop_, 100);
  uv_close(reinterpret_cast<uv_handle_t*>(&s.timer), nullptr);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return c.pending() == 0; }, 3000));
  size_t wrong = 0;
  for (int n : s.calls) wrong += n != 1;
  EXPECT_EQ(wrong, 0u) << "callbacks not called exactly once";
  EXPECT_EQ(static_cast<size_t>(s.ok + s.failed), s.calls.size());
  EXPECT_GT(s.ok, 500);
  EXPECT_GT(s.failed, 0);
  EXPECT_GT(s.refused, 0);
  EXPECT_GE(c.stats().timeouts, 1u);
  EXPECT_EQ(c.stats().disconnects, 3u);
}
