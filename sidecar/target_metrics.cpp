#include "target_metrics.hpp"

#include <string_view>

#include "watched_target.hpp"

namespace sidecar {

void write_target_metrics(const metrics_page& page, core::buf_writer& w) {
  core::prom_writer p(w);
  p.family("sidecar_target_info", "gauge",
           "1 per watched URL; kind is health (the /health target) or http (an external probe).");
  for (size_t i = 0; i < page.count; ++i) {
    const watched_target& t = *page.targets[i];
    p.sample("sidecar_target_info",
             {{"target", t.url()},
              {"kind", t.kind() == check_kind::http ? "http" : "health"},
              {"replicas", t.follows_replicas() ? "on" : "off"}},
             1);
  }
  p.family("sidecar_target_state", "gauge",
           "1 for the target's current state over its replicas: unknown, healthy, degraded or "
           "down.");
  for (size_t i = 0; i < page.count; ++i) {
    const watched_target& t = *page.targets[i];
    for (health_state s : {health_state::unknown, health_state::healthy, health_state::degraded,
                           health_state::down}) {
      p.sample("sidecar_target_state", {{"target", t.url()}, {"state", state_name(s)}},
               s == t.state() ? 1 : 0);
    }
  }
  p.family("sidecar_target_replicas", "gauge", "Addresses of the target being probed now.");
  for (size_t i = 0; i < page.count; ++i) {
    const watched_target& t = *page.targets[i];
    p.sample_int("sidecar_target_replicas", {{"target", t.url()}}, t.replica_count());
  }
  p.family("sidecar_dns_failures_total", "counter",
           "Polls whose lookup of the target's host failed (replicas followed only).");
  for (size_t i = 0; i < page.count; ++i) {
    const watched_target& t = *page.targets[i];
    p.sample_int("sidecar_dns_failures_total", {{"target", t.url()}}, t.dns_failures());
  }
  size_t n = 0;
  for (size_t i = 0; i < page.count; ++i) n += page.targets[i]->series(page.scratch + n);
  write_probe_metrics(w, page.scratch, n, page.window_ms);
}

void serve_metrics(void* ctx, const core::http_request& req, core::http_reply& reply) {
  const auto& page = *static_cast<const metrics_page*>(ctx);
  std::string_view path = req.target.substr(0, req.target.find('?'));
  if (path != "/metrics") {
    reply.status = 404;
    reply.body.put("{\"error\":\"not found\"}");
    return;
  }
  if (req.method != HTTP_GET && req.method != HTTP_HEAD) {
    reply.status = 405;
    reply.extra_headers = "Allow: GET, HEAD\r\n";
    reply.body.put("{\"error\":\"method not allowed\"}");
    return;
  }
  reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
  write_target_metrics(page, reply.body);
  if (page.server != nullptr) {
    // Every service's /metrics says how many answers its HTTP server still owes (none here:
    // the sidecar answers at once; the family is there so dashboards treat services alike).
    core::prom_writer p(reply.body);
    p.family("sidecar_http_pending_answers", "gauge",
             "Requests handled whose answer is deferred and not given yet.");
    p.sample_int("sidecar_http_pending_answers", {}, page.server->pending_answers());
  }
}

}  // namespace sidecar
