#include "latency_ring.hpp"

#include <gtest/gtest.h>

using namespace sidecar;

namespace {
poll_sample ok(uint64_t at, double latency, double rtt = 0.001) {
  return {at, latency, rtt, true, true, false};
}
poll_sample failed(uint64_t at) {
  return {at, 0, 0, false, false, true};
}
}  // namespace

TEST(LatencyRing, CapacityFromWindowAndInterval) {
  EXPECT_EQ(latency_ring::capacity_for(60000, 10000), 8u);
  EXPECT_EQ(latency_ring::capacity_for(1000, 300), 5u);
}

TEST(LatencyRing, WindowStats) {
  latency_ring ring(8);
  ring.push(ok(1000, 0.5));
  ring.push(ok(2000, 0.1));
  ring.push(failed(3000));
  ring.push(ok(4000, 0.3));
  window_stats st = ring.window(4000, 60000);
  EXPECT_EQ(st.polls, 4u);
  EXPECT_EQ(st.samples, 3u);
  EXPECT_EQ(st.failures, 1u);
  EXPECT_DOUBLE_EQ(st.best, 0.1);
  EXPECT_DOUBLE_EQ(st.worst, 0.5);
  EXPECT_DOUBLE_EQ(st.avg, 0.3);
}

TEST(LatencyRing, OnlyThePastWindowCounts) {
  latency_ring ring(8);
  ring.push(ok(1000, 0.9));
  ring.push(ok(61000, 0.2));
  ring.push(ok(62000, 0.4));
  window_stats st = ring.window(62000, 60000);  // (2000, 62000]
  EXPECT_EQ(st.samples, 2u);
  EXPECT_DOUBLE_EQ(st.worst, 0.4);
  st = ring.window(200000, 60000);
  EXPECT_EQ(st.samples, 0u);
  EXPECT_EQ(st.polls, 0u);
}

TEST(LatencyRing, OverwritesOldestWhenFull) {
  latency_ring ring(3);
  for (uint64_t i = 1; i <= 5; ++i) ring.push(ok(i * 10, static_cast<double>(i) / 10));
  EXPECT_EQ(ring.size(), 3u);
  window_stats st = ring.window(50, 1000);
  EXPECT_EQ(st.samples, 3u);
  EXPECT_DOUBLE_EQ(st.best, 0.3);
  EXPECT_DOUBLE_EQ(st.worst, 0.5);
}

TEST(LatencyRing, RoundTripPercentilesNearestRank) {
  latency_ring ring(120);
  for (int i = 1; i <= 100; ++i) ring.push(ok(static_cast<uint64_t>(i), 0.1, i / 1000.0));
  ring.push(failed(101));  // no round trip: not counted
  window_stats st = ring.window(101, 1000);
  EXPECT_EQ(st.rtts, 100u);
  EXPECT_DOUBLE_EQ(st.rtt_p50, 0.050);
  EXPECT_DOUBLE_EQ(st.rtt_p95, 0.095);
  EXPECT_DOUBLE_EQ(st.rtt_p99, 0.099);
  EXPECT_DOUBLE_EQ(st.rtt_max, 0.100);
}
