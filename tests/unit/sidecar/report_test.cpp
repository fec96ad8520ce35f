#include "report.hpp"

#include <gtest/gtest.h>

#include <cstring>

using namespace sidecar;

TEST(Report, WithSamples) {
  window_stats st;
  st.samples = 6;
  st.failures = 1;
  st.best = 0.012345;
  st.worst = 0.912345;
  st.avg = 0.456789;
  char out[256];
  format_report(out, sizeof out, st, 60000);
  EXPECT_STREQ(out, "window=60s samples=6 failures=1 best=0.012345s worst=0.912345s avg=0.456789s");
}

TEST(Report, WithoutSamplesSaysSoPlainly) {
  window_stats st;
  st.failures = 6;
  char out[256];
  format_report(out, sizeof out, st, 60000);
  EXPECT_STREQ(out, "window=60s samples=0 failures=6 no latency samples in the past 60s");
}

TEST(Alert, NamesReasonTargetAndDetail) {
  poll_result r;
  r.result = outcome::status;
  strcpy(r.detail, "HTTP 503");
  char out[512];
  format_alert(out, sizeof out, r, "http://hello:8080/health");
  EXPECT_STREQ(out, "reason=status target=http://hello:8080/health detail=\"HTTP 503\"");
  strcpy(r.detail, "bad \"body\"\n");
  r.result = outcome::body;
  format_alert(out, sizeof out, r, "http://h/");
  EXPECT_STREQ(out, "reason=body target=http://h/ detail=\"bad \\\"body\\\"\\x0a\"");
}
