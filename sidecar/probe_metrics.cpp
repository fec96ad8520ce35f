#include "probe_metrics.hpp"

#include "config.hpp"

namespace sidecar {

void probe_metrics::record(const poll_result& r) {
  has_probe = true;
  success = r.result == outcome::ok;
  duration = r.rtt;
  http_status = r.http_status;
  has_latency = r.has_latency;
  reported_latency = r.latency;
  last_outcome = r.result;
  ++probes;
  auto index = static_cast<size_t>(r.result);
  if (r.result != outcome::ok && index < sizeof failures / sizeof failures[0]) ++failures[index];
  if (r.has_rtt) round_trips.observe(r.rtt);
}

void probe_metrics::write(core::buf_writer& w, const char* target, health_state state,
                          uint64_t window_ms) const {
  core::prom_writer p(w);
  std::string_view t = target;
  p.family("probe_success", "gauge", "Whether the last probe succeeded (a healthy 200 answer).");
  p.sample("probe_success", {{"target", t}}, has_probe && success ? 1 : 0);
  p.family("probe_duration_seconds", "gauge", "Round trip of the last probe, measured.");
  p.sample("probe_duration_seconds", {{"target", t}}, duration);
  p.family("probe_http_status_code", "gauge", "HTTP status of the last probe (0: no answer).");
  p.sample_int("probe_http_status_code", {{"target", t}}, static_cast<uint64_t>(http_status));
  p.family("probe_failure_info", "gauge",
           "1 for the reason the last probe failed (absent when it succeeded).");
  if (has_probe && !success) {
    p.sample("probe_failure_info", {{"target", t}, {"reason", outcome_name(last_outcome)}}, 1);
  }
  p.family("sidecar_reported_latency_seconds", "gauge",
           "The latency the target's /health reported in the last answer that carried one.");
  if (has_latency) p.sample("sidecar_reported_latency_seconds", {{"target", t}}, reported_latency);
  p.family("sidecar_target_state", "gauge",
           "1 for the target's current state: unknown, healthy, degraded or down.");
  for (health_state s :
       {health_state::unknown, health_state::healthy, health_state::degraded, health_state::down}) {
    p.sample("sidecar_target_state", {{"target", t}, {"state", state_name(s)}}, s == state ? 1 : 0);
  }
  p.family("sidecar_probes_total", "counter", "Probes completed since start.");
  p.sample_int("sidecar_probes_total", {{"target", t}}, probes);
  p.family("sidecar_probe_failures_total", "counter", "Failed probes since start, by reason.");
  for (outcome o : {outcome::status, outcome::unhealthy, outcome::slow, outcome::timeout,
                    outcome::connect, outcome::dns, outcome::body}) {
    p.sample_int("sidecar_probe_failures_total", {{"target", t}, {"reason", outcome_name(o)}},
                 failures[static_cast<size_t>(o)]);
  }
  p.family("sidecar_probe_round_trip_seconds", "histogram",
           "Measured round trips of probes that got an HTTP answer.");
  p.histogram("sidecar_probe_round_trip_seconds", {{"target", t}}, round_trips);

  char window_text[32];
  size_t n = core::format_duration(window_ms, window_text, sizeof window_text);
  std::string_view win(window_text, n);
  p.family("sidecar_window_samples", "gauge",
           "Probes with a reported latency in the last completed window.");
  p.family("sidecar_window_failures", "gauge", "Failed probes in the last completed window.");
  p.family("sidecar_window_latency_seconds", "gauge",
           "Best, worst and average reported latency of the last completed window.");
  p.family("sidecar_window_round_trip_seconds", "gauge",
           "Measured round-trip percentiles (50, 95, 99, 100 = max) of the last window.");
  if (!has_window) return;
  p.sample_int("sidecar_window_samples", {{"target", t}, {"window", win}}, window.samples);
  p.sample_int("sidecar_window_failures", {{"target", t}, {"window", win}}, window.failures);
  if (window.samples > 0) {
    p.sample("sidecar_window_latency_seconds", {{"target", t}, {"window", win}, {"stat", "best"}},
             window.best);
    p.sample("sidecar_window_latency_seconds", {{"target", t}, {"window", win}, {"stat", "worst"}},
             window.worst);
    p.sample("sidecar_window_latency_seconds", {{"target", t}, {"window", win}, {"stat", "avg"}},
             window.avg);
  }
  if (window.rtts > 0) {
    const struct {
      const char* q;
      double v;
    } qs[] = {{"0.5", window.rtt_p50},
              {"0.95", window.rtt_p95},
              {"0.99", window.rtt_p99},
              {"1", window.rtt_max}};
    for (const auto& q : qs) {
      p.sample("sidecar_window_round_trip_seconds",
               {{"target", t}, {"window", win}, {"percentile", q.q}}, q.v);
    }
  }
}

}  // namespace sidecar
