// visits' routes: GET /visits (and /) counts one visit and answers its number (JSON, or the
// seed's HTML sentence for a browser), /resetcounter (GET or POST, unless switched off),
// /health, /metrics; everything else is a JSON 404/405.
#pragma once

#include <cstdint>

#include "counter.hpp"
#include "http_server.hpp"
#include "metrics.hpp"

namespace visits {

enum class route : uint8_t { visits, reset, health, metrics, other, count };
const char* route_name(route r);

inline constexpr double duration_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

struct app {
  counter* count = nullptr;
  const core::http_server* server = nullptr;
  const core::redis_client* redis = nullptr;
  const core::pg_client* pg = nullptr;
  bool reset_enabled = true;
  bool draining = false;
  double start_unix = 0;
  uint64_t requests[static_cast<size_t>(route::count)][5] = {};  // [route][1xx..5xx]
  core::fixed_histogram<sizeof duration_buckets / sizeof duration_buckets[0]> durations{
      duration_buckets};
};

void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply);
void observe_request(void* ctx, const core::http_observation& o);
void write_metrics(const app& a, core::buf_writer& w);

}  // namespace visits
