// What the store clients allocate per command, counted (tests/unit/support/counting_malloc):
// their own per-command records come from free lists, so once warm, a batch costs exactly
// what hiredis or libpq themselves allocate for it. Each test runs the same warm batch through
// the bare library (hiredis with its stock libuv adapter; libpq in blocking pipeline mode) and
// through the client, and compares the counts: a client allocating per command would add one
// per command. Not built with sanitizers (they own malloc).
#include <gtest/gtest.h>
#include <hiredis/adapters/libuv.h>
#include <pthread.h>

#include <string>
#include <vector>

#include "counting_malloc.hpp"
#include "loop_run.hpp"
#include "pg_client.hpp"
#include "redis_client.hpp"
#include "store_servers.hpp"

using namespace core;

namespace {

int replies = 0;
void count_reply(void*, const redis_result&) {
  ++replies;
}
void count_result(void*, const pg_query_result&) {
  ++replies;
}

TEST(StoreAlloc, RedisCommandsCostOnlyWhatHiredisAllocates) {
  store_servers::redis_server server;
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    redis_options o;
    o.endpoint.port = server.port();
    redis_client c(&loop, o);
    c.start();
    ASSERT_TRUE(loop_run::until(
        &loop, [&] { return c.state() == store_state::up; }, 5000));
    constexpr int n = 500;
    const char* argv[] = {"INCR", "k"};
    size_t lens[] = {4, 1};
    auto batch = [&] {
      replies = 0;
      for (int i = 0; i < n; ++i) EXPECT_EQ(c.command_argv(count_reply, nullptr, 2, argv, lens), 0);
      EXPECT_TRUE(loop_run::until(
          &loop, [&] { return replies == n; }, 5000));
    };
    batch();  // warm-up: records, hiredis's buffers
    alloc_count::start(pthread_self());
    batch();
    uint64_t client_allocs = alloc_count::stop();

    // The same through bare hiredis.
    redisAsyncContext* ac = redisAsyncConnect("127.0.0.1", server.port());
    ASSERT_NE(ac, nullptr);
    ASSERT_EQ(redisLibuvAttach(ac, &loop), REDIS_OK);
    auto bare = [&] {
      replies = 0;
      for (int i = 0; i < n; ++i) {
        redisAsyncCommandArgv(
            ac, [](redisAsyncContext*, void*, void*) { ++replies; }, nullptr, 2, argv, lens);
      }
      EXPECT_TRUE(loop_run::until(
          &loop, [&] { return replies == n; }, 5000));
    };
    bare();
    alloc_count::start(pthread_self());
    bare();
    uint64_t bare_allocs = alloc_count::stop();
    redisAsyncFree(ac);
    printf("redis, allocations per command: client %.2f, bare hiredis %.2f\n",
           static_cast<double>(client_allocs) / n, static_cast<double>(bare_allocs) / n);
    // hiredis's read buffer may grow once more or less in one run than in the other.
    EXPECT_LE(client_allocs, bare_allocs + 8);
    EXPECT_GT(bare_allocs, static_cast<uint64_t>(n));  // the counting works
  }
  EXPECT_EQ(loop_run::close_loop(&loop), 0);
}

TEST(StoreAlloc, PgQueriesCostOnlyWhatLibpqAllocates) {
  store_servers::pg_server server;
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    pg_options o;
    o.conninfo = server.conninfo();
    o.password = server.password();
    pg_client c(&loop, o);
    c.start();
    ASSERT_TRUE(loop_run::until(
        &loop, [&] { return c.state() == store_state::up; }, 10000));
    constexpr int n = 500;
    const char* values[] = {"41"};
    auto batch = [&] {
      replies = 0;
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(c.query(count_result, nullptr, "SELECT $1::int + 1", 1, values), 0);
      }
      EXPECT_TRUE(loop_run::until(
          &loop, [&] { return replies == n; }, 10000));
    };
    batch();
    alloc_count::start(pthread_self());
    batch();
    uint64_t client_allocs = alloc_count::stop();

    // The same protocol work through bare libpq: blocking pipeline mode, a sync per query.
    std::string conninfo = server.conninfo() + " gssencmode=disable";
    const char* keys[] = {"dbname", "password", nullptr};
    const char* vals[] = {conninfo.c_str(), server.password().c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, vals, 1);
    ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
    ASSERT_EQ(PQenterPipelineMode(conn), 1);
    auto bare = [&] {
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(
            PQsendQueryParams(conn, "SELECT $1::int + 1", 1, nullptr, values, nullptr, nullptr, 0),
            1);
        EXPECT_EQ(PQpipelineSync(conn), 1);
      }
      int syncs = 0;
      while (syncs < n) {
        PGresult* r = PQgetResult(conn);
        if (r == nullptr) continue;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) ++syncs;
        PQclear(r);
      }
    };
    bare();
    alloc_count::start(pthread_self());
    bare();
    uint64_t bare_allocs = alloc_count::stop();
    PQfinish(conn);
    printf("postgres, allocations per query: client %.2f, bare libpq %.2f\n",
           static_cast<double>(client_allocs) / n, static_cast<double>(bare_allocs) / n);
    EXPECT_LE(client_allocs, bare_allocs + 8);
    EXPECT_GT(bare_allocs, static_cast<uint64_t>(n));
  }
  EXPECT_EQ(loop_run::close_loop(&loop), 0);
}

}  // namespace
