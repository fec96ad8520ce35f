#include "hello_metrics.hpp"

#include <cstdio>
#include <cstring>

namespace hello {

const char* route_name(route r) {
  switch (r) {
    case route::root: return "root";
    case route::name: return "name";
    case route::health: return "health";
    case route::status: return "status";
    case route::chaos: return "chaos";
    case route::metrics: return "metrics";
    default: return "other";
  }
}

void write_metrics(core::buf_writer& w, const scrape_inputs& in) {
  core::prom_writer p(w);
  core::write_route_counts(p, "hello_http_requests_total", in.metrics->requests,
                           static_cast<size_t>(route::count),
                           [](size_t r) { return route_name(static_cast<route>(r)); });
  p.family("hello_http_request_duration_seconds", "histogram",
           "From a request's first parsed byte to its answer being queued.");
  p.histogram("hello_http_request_duration_seconds", {}, in.metrics->durations);
  p.family("hello_http_connections_open", "gauge", "Open client connections.");
  p.sample_int("hello_http_connections_open", {}, in.open_connections);
  p.family("hello_http_requests_in_flight", "gauge", "Requests begun and not yet answered.");
  p.sample_int("hello_http_requests_in_flight", {}, in.in_flight);
  p.family("hello_http_pending_answers", "gauge",
           "Requests handled whose answer is deferred and not given yet.");
  p.sample_int("hello_http_pending_answers", {}, in.pending_answers);
  p.family("hello_poisoned", "gauge", "1 while /poison has made this instance unhealthy.");
  p.sample_int("hello_poisoned", {}, in.poisoned ? 1 : 0);
  p.family("hello_draining", "gauge", "1 while the instance is stopping.");
  p.sample_int("hello_draining", {}, in.draining ? 1 : 0);
  p.family("hello_build_info", "gauge", "Always 1; the version is in the label.");
  p.sample_int("hello_build_info", {{"version", in.version}}, 1);

  core::write_process_metrics(p, in.process.start_unix);
}

}  // namespace hello
