// The sidecar's Prometheus metrics per probed address (a target's replica, or an external
// probe): the last probe (blackbox_exporter's names), counters of probes and failures by
// reason, a round-trip histogram, and the last window's statistics. Updated once per poll and
// per report with plain stores; rendered on scrape, every family once with a sample per series.
#pragma once

#include <cstdint>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "metrics.hpp"
#include "poller.hpp"

namespace sidecar {

inline constexpr double round_trip_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05,   0.1,   0.25,   0.5,   1,    2.5};

struct probe_metrics {
  // The last poll.
  bool has_probe = false;
  bool success = false;
  double duration = 0;  // measured round trip, seconds
  long http_status = 0;
  bool has_latency = false;
  double reported_latency = 0;
  outcome last_outcome = outcome::ok;
  // Since start.
  uint64_t probes = 0;
  uint64_t failures[outcome_count] = {};  // by outcome (index 0, ok, unused)
  core::fixed_histogram<sizeof round_trip_buckets / sizeof round_trip_buckets[0]> round_trips{
      round_trip_buckets};
  // The last completed window (updated at each REPORT).
  bool has_window = false;
  window_stats window;

  void record(const poll_result& r);
};

// One labelled set of probe metrics: {target, replica}.
struct metrics_series {
  const probe_metrics* metrics;
  const char* target;
  const char* replica;
  health_state state;
};

// The exposition text of every series, family by family.
void write_probe_metrics(core::buf_writer& w, const metrics_series* series, size_t n,
                         uint64_t window_ms);

}  // namespace sidecar
