#include "block_pool.hpp"

#include <gtest/gtest.h>

TEST(BlockPool, ReusesReleasedBlocks) {
  core::block_pool<64> pool(2);
  auto* a = pool.acquire();
  auto* b = pool.acquire();
  EXPECT_EQ(pool.in_use(), 2u);
  pool.release(a);
  EXPECT_EQ(pool.free_count(), 1u);
  EXPECT_EQ(pool.acquire(), a);
  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.free_count(), 2u);
}

TEST(BlockPool, KeepsAtMostMaxFree) {
  core::block_pool<64> pool(1);
  auto* a = pool.acquire();
  auto* b = pool.acquire();
  pool.release(a);
  pool.release(b);  // freed, not kept
  EXPECT_EQ(pool.free_count(), 1u);
}
