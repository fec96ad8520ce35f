// redis_client against a real redis-server (started per test on a free loopback port): the
// happy path, one write per turn, every pending callback exactly once when the server dies,
// reconnection with backoff, timeouts against a server that never answers, a clean close.
#include "redis_client.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "loop_run.hpp"
#include "store_servers.hpp"

using namespace core;

namespace {

struct outcome {
  int calls = 0;
  store_error error = store_error::none;
  long long integer = 0;
  std::string text;
};

void on_reply(void* ctx, const redis_result& r) {
  auto* o = static_cast<outcome*>(ctx);
  ++o->calls;
  o->error = r.error;
  if (r.reply != nullptr && r.reply->type == REDIS_REPLY_INTEGER) o->integer = r.reply->integer;
  if (r.reply != nullptr && r.reply->str != nullptr) o->text.assign(r.reply->str, r.reply->len);
  if (r.error != store_error::none) o->text = r.detail;
}

struct state_log {
  std::vector<store_state> states;
  std::string last_detail;  // of the last "down"
  static void on_state(void* ctx, store_state s, const char* detail) {
    auto* self = static_cast<state_log*>(ctx);
    self->states.push_back(s);
    if (s == store_state::down) self->last_detail = detail;
  }
  int count(store_state s) const {
    int n = 0;
    for (store_state x : states) n += x == s;
    return n;
  }
};

class RedisClient : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    std::string error;
    ASSERT_TRUE(server_.start(&error)) << error;
  }
  void TearDown() override {
    client_.reset();
    EXPECT_EQ(loop_run::close_loop(&loop_), 0);
  }
  redis_options options() {
    redis_options o;
    o.endpoint.host = "127.0.0.1";
    o.endpoint.port = server_.port();
    o.connect_timeout_ms = 500;
    o.command_timeout_ms = 500;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 200;
    return o;
  }
  redis_client& make(redis_options o) {
    client_ = std::make_unique<redis_client>(&loop_, std::move(o));
    client_->set_state_callback(state_log::on_state, &states_);
    client_->start();
    return *client_;
  }
  bool wait_state(store_state s, uint64_t ms = 5000) {
    return loop_run::until(
        &loop_, [&] { return client_->state() == s; }, ms);
  }

  uv_loop_t loop_{};
  store_servers::redis_server server_;
  std::unique_ptr<redis_client> client_;
  state_log states_;
};

TEST_F(RedisClient, ConnectsAndAnswersInOrder) {
  redis_client& c = make(options());
  EXPECT_EQ(c.state(), store_state::connecting);
  outcome early;
  EXPECT_EQ(c.command(on_reply, &early, "PING"), UV_ENOTCONN);  // not up: refused at once
  ASSERT_TRUE(wait_state(store_state::up));
  outcome set, get;
  ASSERT_EQ(c.command(on_reply, &set, "SET %s %b", "k", "v\0w", size_t{3}), 0);
  const char* argv[] = {"GET", "k"};
  size_t lens[] = {3, 1};
  ASSERT_EQ(c.command_argv(on_reply, &get, 2, argv, lens), 0);
  EXPECT_EQ(c.pending(), 2u);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return get.calls == 1; }, 2000));
  EXPECT_EQ(set.error, store_error::none);
  EXPECT_EQ(set.text, "OK");
  EXPECT_EQ(get.text, std::string("v\0w", 3));
  EXPECT_EQ(early.calls, 0);
  EXPECT_EQ(c.pending(), 0u);
  EXPECT_EQ(c.stats().connects, 1u);
}

TEST_F(RedisClient, ServerErrorsAreRepliesNotDisconnects) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  outcome bad, good;
  ASSERT_EQ(c.command(on_reply, &bad, "INCR %s", "k"), 0);
  ASSERT_EQ(c.command(on_reply, &bad, "NOSUCHCOMMAND"), 0);
  ASSERT_EQ(c.command(on_reply, &good, "PING"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return good.calls == 1; }, 2000));
  EXPECT_EQ(bad.calls, 2);
  EXPECT_EQ(bad.error, store_error::server);
  EXPECT_NE(bad.text.find("unknown command"), std::string::npos) << bad.text;
  EXPECT_EQ(c.state(), store_state::up);
}

// A turn's commands leave in one write(2), and come back in order.
TEST_F(RedisClient, OneTurnsCommandsGoOutInOneWrite) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  constexpr int n = 200;
  std::vector<outcome> got(n);
  uint64_t writes_before = loop_run::write_syscalls();
  for (int i = 0; i < n; ++i) ASSERT_EQ(c.command(on_reply, &got[i], "INCR %s", "counter"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return got[n - 1].calls == 1; }, 3000));
  uint64_t writes = loop_run::write_syscalls() - writes_before;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(got[i].calls, 1);
    EXPECT_EQ(got[i].integer, i + 1) << "replies out of order at " << i;
  }
  EXPECT_EQ(writes, 1u) << "the turn's " << n << " commands took " << writes << " writes";
}

// SIGKILL while commands wait for answers: each callback exactly once, with an error; then the
// client reconnects (with backoff) once the server is back.
TEST_F(RedisClient, ServerKilledFailsEveryPendingOnceThenReconnects) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  server_.pause();  // the commands go out but are not answered
  constexpr int n = 50;
  std::vector<outcome> got(n);
  for (int i = 0; i < n; ++i) ASSERT_EQ(c.command(on_reply, &got[i], "INCR %s", "k"), 0);
  loop_run::for_ms(&loop_, 50);
  EXPECT_EQ(c.pending(), static_cast<size_t>(n));
  server_.kill_all(SIGKILL);
  ASSERT_TRUE(wait_state(store_state::down, 2000));
  loop_run::for_ms(&loop_, 100);  // any second call would show up here
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(got[i].calls, 1) << i;
    EXPECT_EQ(got[i].error, store_error::disconnected) << i;
  }
  EXPECT_EQ(c.pending(), 0u);
  outcome refused;
  EXPECT_EQ(c.command(on_reply, &refused, "PING"), UV_ENOTCONN);

  // Refused connects while the server is away: retried, spaced by the backoff.
  loop_run::for_ms(&loop_, 600);
  uint64_t failures = c.stats().failures;
  EXPECT_GE(failures, 3u);   // 20, 40, 80, 160, 200... ms apart
  EXPECT_LE(failures, 12u);  // not a busy loop
  EXPECT_NE(states_.last_detail.find("refused"), std::string::npos) << states_.last_detail;

  std::string error;
  ASSERT_TRUE(server_.restart(&error)) << error;
  ASSERT_TRUE(wait_state(store_state::up, 3000));
  outcome after;
  ASSERT_EQ(c.command(on_reply, &after, "INCR %s", "k"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return after.calls == 1; }, 2000));
  EXPECT_EQ(after.integer, 1);  // a new, empty server
  EXPECT_EQ(c.stats().connects, 2u);
  EXPECT_EQ(c.stats().disconnects, 1u);
}

// A server that stops answering (SIGSTOP: TCP still accepted): the command times out, the
// connection is dropped, new attempts time out in the handshake, and the loop never stalls.
TEST_F(RedisClient, UnansweredCommandTimesOutWithoutStallingTheLoop) {
  redis_options o = options();
  o.command_timeout_ms = 200;
  o.connect_timeout_ms = 200;
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::up));
  loop_run::ticker tick(&loop_);
  server_.pause();
  outcome a, b;
  uint64_t t0 = uv_hrtime();
  ASSERT_EQ(c.command(on_reply, &a, "PING"), 0);
  ASSERT_EQ(c.command(on_reply, &b, "PING"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return b.calls == 1; }, 2000));
  double waited_ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
  EXPECT_EQ(a.error, store_error::timeout);
  EXPECT_EQ(b.error, store_error::timeout);
  EXPECT_GE(waited_ms, 180);
  EXPECT_LT(waited_ms, 600);
  EXPECT_EQ(c.stats().timeouts, 1u);
  // Reconnect attempts: TCP connects, the PING is never answered: connect timeouts.
  loop_run::for_ms(&loop_, 800);
  EXPECT_NE(c.state(), store_state::up);
  EXPECT_GE(c.stats().failures, 1u);
  EXPECT_NE(states_.last_detail.find("connect timeout"), std::string::npos) << states_.last_detail;
  EXPECT_LT(tick.max_gap_ms(), 100) << "the loop stalled";
  server_.resume();
  ASSERT_TRUE(wait_state(store_state::up, 3000));
  tick.stop();
  outcome after;
  ASSERT_EQ(c.command(on_reply, &after, "PING"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return after.calls == 1; }, 2000));
  EXPECT_EQ(after.text, "PONG");
}

TEST_F(RedisClient, SilentListenerEndsInConnectTimeout) {
  store_servers::silent_listener silent;
  redis_options o = options();
  o.endpoint.port = silent.port();
  o.connect_timeout_ms = 150;
  o.backoff_initial_ms = 1000;
  loop_run::ticker tick(&loop_);
  uint64_t t0 = uv_hrtime();
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::down, 2000));
  double ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
  EXPECT_GE(ms, 130);  // uv_now is cached per turn: +-1 ms
  EXPECT_LT(ms, 500);
  EXPECT_EQ(states_.last_detail, "connect timeout after 150ms");
  EXPECT_LT(tick.max_gap_ms(), 100);
  tick.stop();
  c.close();
}

TEST_F(RedisClient, CloseFailsPendingBeforeReturningAndLeavesNoHandle) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  server_.pause();
  outcome a, b;
  ASSERT_EQ(c.command(on_reply, &a, "PING"), 0);
  ASSERT_EQ(c.command(on_reply, &b, "PING"), 0);
  loop_run::for_ms(&loop_, 20);
  c.close();
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(a.error, store_error::closed);
  EXPECT_EQ(c.state(), store_state::closed);
  outcome late;
  EXPECT_EQ(c.command(on_reply, &late, "PING"), UV_ENOTCONN);
  server_.resume();
  // TearDown checks uv_loop_close() == 0 with the client object still alive.
}

// A reply callback that closes the client: hiredis defers its free until the callback returns.
TEST_F(RedisClient, CloseFromInsideAReplyCallback) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  struct closer {
    redis_client* c;
    int calls = 0;
    static void on(void* ctx, const redis_result& r) {
      auto* self = static_cast<closer*>(ctx);
      ++self->calls;
      if (r.error == store_error::none) self->c->close();
    }
  } first{&c}, second{&c};
  ASSERT_EQ(c.command(closer::on, &first, "PING"), 0);
  ASSERT_EQ(c.command(closer::on, &second, "PING"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return second.calls == 1; }, 2000));
  EXPECT_EQ(first.calls, 1);
  EXPECT_EQ(c.state(), store_state::closed);
}

TEST_F(RedisClient, DestroyedWhileConnectingIsClean) {
  store_servers::silent_listener silent;
  redis_options o = options();
  o.endpoint.port = silent.port();
  make(o);
  loop_run::for_ms(&loop_, 20);
  client_.reset();  // handles close on the loop afterwards (TearDown runs it)
}

TEST_F(RedisClient, HostNameIsLookedUpOffTheLoop) {
  redis_options o = options();
  o.endpoint.host = "localhost";
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::up));
  outcome pong;
  ASSERT_EQ(c.command(on_reply, &pong, "PING"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return pong.calls == 1; }, 2000));
  EXPECT_EQ(pong.text, "PONG");
}

TEST_F(RedisClient, UnixSocketUrl) {
  redis_options o = options();
  ASSERT_EQ(parse_redis_url("unix://" + server_.unix_socket() + "?db=2", &o.endpoint), nullptr);
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::up));
  outcome info;
  ASSERT_EQ(c.command(on_reply, &info, "CLIENT INFO"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return info.calls == 1; }, 2000));
  EXPECT_NE(info.text.find(" db=2 "), std::string::npos) << info.text;
  EXPECT_NE(info.text.find("laddr=" + server_.unix_socket()), std::string::npos) << info.text;
}

// What a service does when its store comes (back) up: send at once, from the state callback
// (visits re-seeds Redis from PostgreSQL there).
TEST_F(RedisClient, CommandsFromTheUpCallback) {
  struct seeder {
    redis_client* c = nullptr;
    outcome set;
    int ups = 0;
    static void on_state(void* ctx, store_state s, const char*) {
      auto* self = static_cast<seeder*>(ctx);
      if (s != store_state::up) return;
      ++self->ups;
      EXPECT_EQ(self->c->command(on_reply, &self->set, "SET %s %d", "seeded", self->ups), 0);
    }
  } seed;
  client_ = std::make_unique<redis_client>(&loop_, options());
  seed.c = client_.get();
  client_->set_state_callback(seeder::on_state, &seed);
  client_->start();
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return seed.set.calls == 1; }, 3000));
  EXPECT_EQ(seed.set.text, "OK");
  server_.kill_all(SIGKILL);
  std::string error;
  ASSERT_TRUE(server_.restart(&error)) << error;
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return seed.set.calls == 2; }, 5000));
  EXPECT_EQ(seed.set.error, store_error::none);
  EXPECT_EQ(seed.ups, 2);
}

class RedisClientAuth : public RedisClient {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    std::string error;
    ASSERT_TRUE(server_.start(&error, "pw with spaces")) << error;
  }
};

TEST_F(RedisClientAuth, PasswordAndDatabaseAreTheHandshake) {
  redis_options o = options();
  o.password = "pw with spaces";
  o.endpoint.db = 3;
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::up));
  outcome info;
  ASSERT_EQ(c.command(on_reply, &info, "CLIENT INFO"), 0);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return info.calls == 1; }, 2000));
  EXPECT_NE(info.text.find(" db=3 "), std::string::npos) << info.text;
}

TEST_F(RedisClientAuth, WrongPasswordIsDownWithTheServersReason) {
  redis_options o = options();
  o.password = "wrong";
  o.backoff_initial_ms = 1000;
  redis_client& c = make(o);
  ASSERT_TRUE(wait_state(store_state::down, 2000));
  EXPECT_NE(states_.last_detail.find("handshake:"), std::string::npos) << states_.last_detail;
  EXPECT_EQ(c.stats().connects, 0u);
}

}  // namespace

namespace {

// Sends a burst of commands every 2 ms while up; counts each callback per command.
struct storm {
  redis_client* c = nullptr;
  uv_timer_t timer{};
  std::vector<int> calls;  // per accepted command
  int ok = 0, failed = 0, refused = 0;

  static void on_done(void* ctx, const redis_result& r) {
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
    for (int i = 0; i < 10; ++i) {
      auto* ctx = new std::pair<storm*, int>(self, static_cast<int>(self->calls.size()));
      if (self->c->command(on_done, ctx, "INCR %s", "storm") == 0) {
        self->calls.push_back(0);
      } else {
        delete ctx;
        ++self->refused;
      }
    }
  }
};

}  // namespace

// Crashes and restarts under a steady stream of commands: every accepted command's callback
// runs exactly once, whatever the moment of the crash.
TEST_F(RedisClient, CrashStormKeepsExactlyOnce) {
  redis_client& c = make(options());
  ASSERT_TRUE(wait_state(store_state::up));
  storm s;
  s.c = &c;
  uv_timer_init(&loop_, &s.timer);
  s.timer.data = &s;
  uv_timer_start(&s.timer, storm::on_tick, 2, 2);
  for (int round = 0; round < 4; ++round) {
    loop_run::for_ms(&loop_, 150);
    if (round % 2 == 0) {
      server_.kill_all(SIGKILL);
    } else {
      server_.pause();  // unanswered: command timeouts
      loop_run::for_ms(&loop_, 700);
      server_.kill_all(SIGKILL);
    }
    loop_run::for_ms(&loop_, 100);
    std::string error;
    ASSERT_TRUE(server_.restart(&error)) << error;
    ASSERT_TRUE(wait_state(store_state::up, 5000));
  }
  loop_run::for_ms(&loop_, 100);
  uv_close(reinterpret_cast<uv_handle_t*>(&s.timer), nullptr);
  ASSERT_TRUE(loop_run::until(
      &loop_, [&] { return c.pending() == 0; }, 3000));
  size_t wrong = 0;
  for (int n : s.calls) wrong += n != 1;
  EXPECT_EQ(wrong, 0u) << "callbacks not called exactly once";
  EXPECT_EQ(static_cast<size_t>(s.ok + s.failed), s.calls.size());
  EXPECT_GT(s.ok, 1000);
  EXPECT_GT(s.failed, 0);
  EXPECT_GT(s.refused, 0);
  EXPECT_GE(c.stats().timeouts, 2u);
  EXPECT_EQ(c.stats().disconnects, 4u);
}
