// The hasher on a real loop: jobs run on libuv's pool, the queue bound refuses at once, every
// accepted job calls back exactly once, and the loop closes clean.
#include "hasher.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

struct result {
  int calls = 0;
  accounts::hasher::outcome o = accounts::hasher::outcome::error;
  std::string hash;
};

void on_done(void* ctx, accounts::hasher::outcome o, const char* hash) {
  auto* r = static_cast<result*>(ctx);
  ++r->calls;
  r->o = o;
  r->hash = hash;
}

constexpr accounts::hash_params kFast{1, 8u << 20};

}  // namespace

TEST(Hasher, HashesThenVerifiesOffTheLoop) {
  ASSERT_GE(sodium_init(), 0);
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  accounts::hasher h(&loop, 2, kFast);
  result made;
  ASSERT_TRUE(h.hash("correct horse", on_done, &made));
  EXPECT_EQ(h.depth(), 1u);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(made.calls, 1);
  ASSERT_EQ(made.o, accounts::hasher::outcome::hashed);
  EXPECT_EQ(made.hash.rfind("$argon2id$v=19$m=8192,t=1,p=1$", 0), 0u) << made.hash;
  EXPECT_EQ(h.depth(), 0u);

  result good, bad;
  ASSERT_TRUE(h.verify(made.hash, "correct horse", on_done, &good));
  ASSERT_TRUE(h.verify(made.hash, "wrong horse", on_done, &bad));
  result refused;
  EXPECT_FALSE(h.verify(made.hash, "third", on_done, &refused));  // capacity 2
  EXPECT_FALSE(h.has_room());
  EXPECT_EQ(h.refused(), 2u);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(good.calls, 1);
  EXPECT_EQ(good.o, accounts::hasher::outcome::match);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.o, accounts::hasher::outcome::mismatch);
  EXPECT_EQ(refused.calls, 0);
  EXPECT_EQ(h.durations().count, 3u);
  EXPECT_TRUE(h.has_room());
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(Hasher, GarbageStoredHashIsAMismatchNotACrash) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  accounts::hasher h(&loop, 1, kFast);
  result r;
  ASSERT_TRUE(h.verify("$argon2id$v=19$m=1,t=1,p=1$bad", "pw", on_done, &r));
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.o, accounts::hasher::outcome::mismatch);
  std::string too_long(200, 'x');
  EXPECT_FALSE(h.verify(too_long, "pw", on_done, &r));
  EXPECT_EQ(uv_loop_close(&loop), 0);
}
