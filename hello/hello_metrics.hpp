// hello's Prometheus metrics: requests by route and status class, a request-duration
// histogram, connection and state gauges, build info and the standard process metrics.
// Counting is array increments in the server's observer hook (no allocation per request);
// only a scrape formats text (and reads /proc).
#pragma once

#include <cstdint>
#include <string_view>

#include "metrics.hpp"

namespace hello {

enum class route : uint8_t { root, name, health, status, chaos, metrics, other, count };
const char* route_name(route r);

inline constexpr double duration_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                              0.0025,  0.005,  0.01,    0.025,  0.1};

struct hello_metrics {
  uint64_t requests[static_cast<size_t>(route::count)][5] = {};  // [route][1xx..5xx]
  core::fixed_histogram<sizeof duration_buckets / sizeof duration_buckets[0]> durations{
      duration_buckets};

  void observe(route r, int status, double seconds) {
    ++requests[static_cast<size_t>(r)][core::status_class(status)];
    durations.observe(seconds);
  }
};

struct process_facts {
  double start_unix = 0;  // process_start_time_seconds
};

struct scrape_inputs {
  const hello_metrics* metrics;
  size_t open_connections;
  size_t in_flight;
  size_t pending_answers;
  bool poisoned;
  bool draining;
  const char* version;
  process_facts process;
};

void write_metrics(core::buf_writer& w, const scrape_inputs& in);

}  // namespace hello
