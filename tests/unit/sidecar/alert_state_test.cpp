#include "alert_state.hpp"

#include <gtest/gtest.h>

using namespace sidecar;

TEST(AlertState, EveryFailureAlertsByDefaultAndRecoveryIsReported) {
  alert_state a(1, 1);
  EXPECT_EQ(a.state(), health_state::unknown);
  EXPECT_FALSE(a.on_result(outcome::ok, 0).alert);
  EXPECT_EQ(a.state(), health_state::healthy);
  alert_step s = a.on_result(outcome::status, 10000);
  EXPECT_TRUE(s.alert);
  EXPECT_EQ(s.consecutive, 1u);
  EXPECT_EQ(a.state(), health_state::down);
  s = a.on_result(outcome::timeout, 20000);
  EXPECT_TRUE(s.alert);
  EXPECT_EQ(s.consecutive, 2u);
  s = a.on_result(outcome::ok, 30000);
  EXPECT_FALSE(s.alert);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.bad_for_ms, 20000u);
  EXPECT_EQ(s.failures_in_run, 2u);
  EXPECT_EQ(a.state(), health_state::healthy);
  EXPECT_FALSE(a.on_result(outcome::ok, 40000).recovered);  // only once
}

TEST(AlertState, UnhealthyAndSlowAreDegraded) {
  alert_state a(1, 1);
  a.on_result(outcome::unhealthy, 0);
  EXPECT_EQ(a.state(), health_state::degraded);
  a.on_result(outcome::ok, 1);
  a.on_result(outcome::slow, 2);
  EXPECT_EQ(a.state(), health_state::degraded);
  a.on_result(outcome::dns, 3);
  EXPECT_EQ(a.state(), health_state::down);
}

TEST(AlertState, ThresholdsStopFlapping) {
  alert_state a(3, 2);
  a.on_result(outcome::ok, 0);
  EXPECT_FALSE(a.on_result(outcome::status, 1).alert);
  EXPECT_FALSE(a.on_result(outcome::status, 2).alert);
  EXPECT_EQ(a.state(), health_state::healthy);          // not confirmed yet
  EXPECT_FALSE(a.on_result(outcome::ok, 3).recovered);  // nothing alerted: nothing to recover
  EXPECT_FALSE(a.on_result(outcome::status, 4).alert);
  EXPECT_FALSE(a.on_result(outcome::status, 5).alert);
  alert_step s = a.on_result(outcome::status, 6);
  EXPECT_TRUE(s.alert);
  EXPECT_EQ(s.consecutive, 3u);
  EXPECT_EQ(a.state(), health_state::down);
  EXPECT_FALSE(a.on_result(outcome::ok, 7).recovered);  // 1 of 2
  // One failure after one success: still down, not yet N in a row, so no new ALERT.
  EXPECT_FALSE(a.on_result(outcome::status, 8).alert);
  EXPECT_EQ(a.state(), health_state::down);
  EXPECT_FALSE(a.on_result(outcome::ok, 9).recovered);
  s = a.on_result(outcome::ok, 10);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.bad_for_ms, 6u);  // from the first failure of the run (t=4)
  EXPECT_EQ(s.failures_in_run, 4u);
}

TEST(AlertState, FailuresBelowThresholdLeaveUnknown) {
  alert_state a(10, 1);
  EXPECT_FALSE(a.on_result(outcome::status, 0).alert);
  EXPECT_EQ(a.state(), health_state::down);  // nothing good was ever seen
  a.on_result(outcome::ok, 1);
  EXPECT_EQ(a.state(), health_state::healthy);
  a.on_result(outcome::unhealthy, 2);
  EXPECT_EQ(a.state(), health_state::healthy);  // one failure below the threshold: no flap
}

TEST(AlertState, ReasonIsTheFailureBehindTheState) {
  alert_state a(2, 1);
  EXPECT_EQ(a.reason(), outcome::ok);
  a.on_result(outcome::timeout, 0);  // below the threshold: unknown -> down, says why
  EXPECT_EQ(a.state(), health_state::down);
  EXPECT_EQ(a.reason(), outcome::timeout);
  a.on_result(outcome::ok, 10);
  EXPECT_EQ(a.reason(), outcome::ok);
  a.on_result(outcome::status, 20);  // one failure below the threshold: still healthy
  EXPECT_EQ(a.state(), health_state::healthy);
  EXPECT_EQ(a.reason(), outcome::ok);
  a.on_result(outcome::unhealthy, 30);  // the second alerts
  EXPECT_EQ(a.state(), health_state::degraded);
  EXPECT_EQ(a.reason(), outcome::unhealthy);
  a.on_result(outcome::ok, 40);  // recover_after 1
  EXPECT_EQ(a.state(), health_state::healthy);
  EXPECT_EQ(a.reason(), outcome::ok);
}
