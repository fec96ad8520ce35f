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

void write_probe_metrics(core::buf_writer& w, const metrics_series* series, size_t n,
                         uint64_t window_ms) {
  core::prom_writer p(w);
  // Each family once, then its sample for every series.
  auto each = [&](auto f) {
    for (size_t i = 0; i < n; ++i) {
      f(*series[i].metrics, std::string_view(series[i].target),
        std::string_view(series[i].replica));
    }
  };
  p.family("probe_success", "gauge", "Whether the last probe succeeded (a healthy 200 answer).");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    p.sample("probe_success", {{"target", t}, {"replica", r}}, m.has_probe && m.success ? 1 : 0);
  });
  p.family("probe_duration_seconds", "gauge", "Round trip of the last probe, measured.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    p.sample("probe_duration_seconds", {{"target", t}, {"replica", r}}, m.duration);
  });
  p.family("probe_http_status_code", "gauge", "HTTP status of the last probe (0: no answer).");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    p.sample_int("probe_http_status_code", {{"target", t}, {"replica", r}},
                 static_cast<uint64_t>(m.http_status));
  });
  p.family("probe_failure_info", "gauge",
           "1 for the reason the last probe failed (absent when it succeeded).");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (m.has_probe && !m.success) {
      p.sample("probe_failure_info",
               {{"target", t}, {"replica", r}, {"reason", outcome_name(m.last_outcome)}}, 1);
    }
  });
  p.family("sidecar_reported_latency_seconds", "gauge",
           "The latency the target's /health reported in the last answer that carried one.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (m.has_latency) {
      p.sample("sidecar_reported_latency_seconds", {{"target", t}, {"replica", r}},
               m.reported_latency);
    }
  });
  p.family("sidecar_replica_state", "gauge",
           "1 for the replica's current state: unknown, healthy, degraded or down.");
  for (size_t i = 0; i < n; ++i) {
    for (health_state st : {health_state::unknown, health_state::healthy, health_state::degraded,
                            health_state::down}) {
      p.sample(
          "sidecar_replica_state",
          {{"target", series[i].target}, {"replica", series[i].replica}, {"state", state_name(st)}},
          st == series[i].state ? 1 : 0);
    }
  }
  p.family("sidecar_probes_total", "counter", "Probes completed since this replica was seen.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    p.sample_int("sidecar_probes_total", {{"target", t}, {"replica", r}}, m.probes);
  });
  p.family("sidecar_probe_failures_total", "counter",
           "Failed probes since this replica was seen, by reason.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    for (outcome o : {outcome::status, outcome::unhealthy, outcome::slow, outcome::timeout,
                      outcome::connect, outcome::dns, outcome::body}) {
      p.sample_int("sidecar_probe_failures_total",
                   {{"target", t}, {"replica", r}, {"reason", outcome_name(o)}},
                   m.failures[static_cast<size_t>(o)]);
    }
  });
  p.family("sidecar_probe_round_trip_seconds", "histogram",
           "Measured round trips of probes that got an HTTP answer.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    p.histogram("sidecar_probe_round_trip_seconds", {{"target", t}, {"replica", r}}, m.round_trips);
  });

  char window_text[32];
  size_t len = core::format_duration(window_ms, window_text, sizeof window_text);
  std::string_view win(window_text, len);
  p.family("sidecar_window_samples", "gauge",
           "Probes with a reported latency in the last completed window.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (m.has_window) {
      p.sample_int("sidecar_window_samples", {{"target", t}, {"replica", r}, {"window", win}},
                   m.window.samples);
    }
  });
  p.family("sidecar_window_failures", "gauge", "Failed probes in the last completed window.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (m.has_window) {
      p.sample_int("sidecar_window_failures", {{"target", t}, {"replica", r}, {"window", win}},
                   m.window.failures);
    }
  });
  p.family("sidecar_window_latency_seconds", "gauge",
           "Best, worst and average reported latency of the last completed window.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (!m.has_window || m.window.samples == 0) return;
    const struct {
      const char* stat;
      double v;
    } stats[] = {{"best", m.window.best}, {"worst", m.window.worst}, {"avg", m.window.avg}};
    for (const auto& s : stats) {
      p.sample("sidecar_window_latency_seconds",
               {{"target", t}, {"replica", r}, {"window", win}, {"stat", s.stat}}, s.v);
    }
  });
  p.family("sidecar_window_round_trip_seconds", "gauge",
           "Measured round-trip percentiles (50, 95, 99, 100 = max) of the last window.");
  each([&](const probe_metrics& m, std::string_view t, std::string_view r) {
    if (!m.has_window || m.window.rtts == 0) return;
    const struct {
      const char* q;
      double v;
    } qs[] = {{"0.5", m.window.rtt_p50},
              {"0.95", m.window.rtt_p95},
              {"0.99", m.window.rtt_p99},
              {"1", m.window.rtt_max}};
    for (const auto& q : qs) {
      p.sample("sidecar_window_round_trip_seconds",
               {{"target", t}, {"replica", r}, {"window", win}, {"percentile", q.q}}, q.v);
    }
  });
}

}  // namespace sidecar
