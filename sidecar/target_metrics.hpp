// The sidecar's GET /metrics: per watched target its kind, state, replica count and DNS
// failures, then every replica's and probe's own series (probe_metrics). Rendered on scrape
// into the reply's buffer, with a scratch array of series sized once at start-up.
#pragma once

#include <cstddef>
#include <cstdint>

#include "http_server.hpp"
#include "metrics.hpp"
#include "probe_metrics.hpp"

namespace sidecar {

class watched_target;

struct metrics_page {
  watched_target* const* targets;  // the main target first, then the probes
  size_t count;
  metrics_series* scratch;  // room for every target's max_series()
  uint64_t window_ms;
  const core::http_server* server = nullptr;  // the metrics listener itself
};

// The exposition text of every target and series.
void write_target_metrics(const metrics_page& page, core::buf_writer& w);

// core::http_handler for the metrics listener (ctx: a metrics_page): /metrics with GET or
// HEAD, 404 elsewhere, 405 for other methods.
void serve_metrics(void* ctx, const core::http_request& req, core::http_reply& reply);

}  // namespace sidecar
