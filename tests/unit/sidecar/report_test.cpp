#include "report.hpp"

#include <gtest/gtest.h>

#include <cstring>

using namespace sidecar;
using core::log_format;

TEST(Report, WithSamples) {
  window_stats st;
  st.samples = 6;
  st.failures = 1;
  st.best = 0.012345;
  st.worst = 0.912345;
  st.avg = 0.456789;
  st.rtts = 6;
  st.rtt_p50 = 0.0012345;
  st.rtt_p95 = 0.002;
  st.rtt_p99 = 0.003;
  st.rtt_max = 0.004;
  char out[512];
  report_labels who{"http://h/", "10.0.0.3:8080"};
  format_report(log_format::text, out, sizeof out, who, st, 60000, health_state::healthy);
  EXPECT_STREQ(out,
               "target=http://h/ replica=10.0.0.3:8080 window=60s state=healthy samples=6 "
               "failures=1 best=0.012345s worst=0.912345s "
               "avg=0.456789s rtt_p50=1.234ms rtt_p95=2.000ms rtt_p99=3.000ms rtt_max=4.000ms");
  format_report(log_format::json, out, sizeof out, who, st, 60000, health_state::healthy);
  EXPECT_STREQ(out,
               ",\"target\":\"http://h/"
               "\",\"replica\":\"10.0.0.3:8080\",\"window\":\"60s\",\"state\":\"healthy\","
               "\"samples\":6,\"failures\":1,"
               "\"best_s\":0.012345,\"worst_s\":0.912345,\"avg_s\":0.456789,\"rtt_p50_ms\":1.234,"
               "\"rtt_p95_ms\":2.000,\"rtt_p99_ms\":3.000,\"rtt_max_ms\":4.000");
}

TEST(Report, WithoutSamplesSaysSoPlainly) {
  window_stats st;
  st.failures = 6;
  char out[256];
  report_labels who{"http://h/", nullptr, 3};
  format_report(log_format::text, out, sizeof out, who, st, 60000, health_state::down);
  EXPECT_STREQ(out,
               "target=http://h/ replicas=3 window=60s state=down samples=0 failures=6 no latency "
               "samples in the past 60s");
  format_report(log_format::json, out, sizeof out, who, st, 60000, health_state::down);
  EXPECT_STREQ(
      out,
      ",\"target\":\"http://h/"
      "\",\"replicas\":3,\"window\":\"60s\",\"state\":\"down\",\"samples\":0,\"failures\":6,"
      "\"note\":\"no latency samples in the past 60s\"");
}

TEST(Report, ABadStateSaysWhyAHealthyOneDoesNot) {
  window_stats st;
  st.failures = 6;
  char out[256];
  report_labels who{"http://h/", nullptr, 3};
  format_report(log_format::text, out, sizeof out, who, st, 60000, health_state::down,
                outcome::timeout);
  EXPECT_STREQ(out,
               "target=http://h/ replicas=3 window=60s state=down reason=timeout samples=0 "
               "failures=6 no latency samples in the past 60s");
  format_report(log_format::json, out, sizeof out, who, st, 60000, health_state::degraded,
                outcome::unhealthy);
  EXPECT_NE(strstr(out, "\"state\":\"degraded\",\"reason\":\"unhealthy\",\"samples\""), nullptr)
      << out;
  // A stale reason is never shown beside a good state.
  format_report(log_format::text, out, sizeof out, who, st, 60000, health_state::healthy,
                outcome::timeout);
  EXPECT_EQ(strstr(out, "reason="), nullptr) << out;
}

TEST(Alert, NamesReasonTargetStateCountAndDetail) {
  poll_result r;
  r.result = outcome::status;
  strcpy(r.detail, "HTTP 503");
  char out[512];
  format_alert(log_format::text, out, sizeof out, r, "http://hello:8080/health", "10.0.0.3:8080",
               health_state::down, 3);
  EXPECT_STREQ(out,
               "reason=status target=http://hello:8080/health replica=10.0.0.3:8080 state=down "
               "consecutive=3 "
               "detail=\"HTTP 503\"");
  strcpy(r.detail, "bad \"body\"\n");
  r.result = outcome::body;
  format_alert(log_format::text, out, sizeof out, r, "http://h/", "h:80", health_state::down, 1);
  EXPECT_STREQ(out,
               "reason=body target=http://h/ replica=h:80 state=down consecutive=1 "
               "detail=\"bad \\\"body\\\"\\x0a\"");
  format_alert(log_format::json, out, sizeof out, r, "http://h/", "h:80", health_state::down, 1);
  EXPECT_STREQ(
      out,
      ",\"reason\":\"body\",\"target\":\"http://h/\",\"replica\":\"h:80\",\"state\":\"down\","
      "\"consecutive\":1,\"detail\":\"bad \\\"body\\\"\\n\"");
}

TEST(Recovered, SaysHowLongAndHowMany) {
  alert_step step;
  step.recovered = true;
  step.bad_for_ms = 12500;
  step.failures_in_run = 3;
  char out[256];
  format_recovered(log_format::text, out, sizeof out, "http://h/", "h:80", step);
  EXPECT_STREQ(out, "target=http://h/ replica=h:80 state=healthy after=12.500s failures=3");
}

TEST(Report, ExternalProbeHasPollsAndRoundTripsOnly) {
  window_stats st;
  st.polls = 6;
  st.failures = 2;
  st.rtts = 4;
  st.rtt_p50 = st.rtt_p95 = st.rtt_p99 = st.rtt_max = 0.1;
  char out[512];
  report_labels who{"https://example.org/", nullptr, 1, check_kind::http};
  format_report(log_format::text, out, sizeof out, who, st, 60000, health_state::degraded);
  EXPECT_STREQ(out,
               "target=https://example.org/ replicas=1 window=60s state=degraded polls=6 "
               "failures=2 rtt_p50=100.000ms rtt_p95=100.000ms rtt_p99=100.000ms "
               "rtt_max=100.000ms");
}
