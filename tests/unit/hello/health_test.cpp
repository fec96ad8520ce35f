#include "health.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace hello;

TEST(HealthModel, LatencyInUnitIntervalAndThresholdDecides) {
  health_model h(0.5, 12345);
  int healthy = 0;
  for (int i = 0; i < 10000; ++i) {
    h.record_request();
    ASSERT_GE(h.last_latency(), 0.0);
    ASSERT_LT(h.last_latency(), 1.0);
    EXPECT_EQ(h.healthy(), h.last_latency() < 0.5);
    healthy += h.healthy();
  }
  // Uniform draws: about half are healthy (loose bound, deterministic seed).
  EXPECT_GT(healthy, 4500);
  EXPECT_LT(healthy, 5500);
}

TEST(HealthModel, ExtremeThresholds) {
  health_model never(0.0, 1), always(1.0, 1);
  for (int i = 0; i < 1000; ++i) {
    never.record_request();
    always.record_request();
    EXPECT_FALSE(never.healthy());
    EXPECT_TRUE(always.healthy());
  }
}

TEST(HealthModel, JsonShape) {
  health_model h(1.0, 7);
  char buf[128];
  core::buf_writer w(buf, sizeof buf);
  h.write_json(w);
  std::string s(w.view());
  EXPECT_EQ(s.rfind("{\"healthy\":true,\"latency\":0", 0), 0u) << s;
  EXPECT_EQ(s.back(), '}');
  double parsed = std::stod(s.substr(s.find(':', 12) + 1));
  EXPECT_DOUBLE_EQ(parsed, h.last_latency());  // shortest round-trip representation
}

TEST(HealthModel, SeedsDiffer) {
  EXPECT_NE(random_seed(), random_seed());
}
