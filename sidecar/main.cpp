// sidecar: polls hello's /health on a fixed schedule and prints window reports and alerts.
//   knobs             -> sidecar/sidecar_config (flags and environment, validated)
//   the schedule      -> sidecar/scheduler (poll k at origin + k * interval, reports per window)
//   one watched URL   -> sidecar/watched_target (replicas via sidecar/resolver, c-ares on libuv)
//   one replica       -> sidecar/replica_monitor (ring, alert state, metrics)
//   one poll          -> sidecar/poller (curl multi on libuv: facts) + sidecar/verdict (meaning)
//   output            -> sidecar/report (REPORT/ALERT/RECOVERED lines), sidecar/target_metrics
//   loop and signals  -> core/loop; the metrics listener -> core/http_server
// docs/ARCHITECTURE.md follows one poll through them.
#include <ares.h>
#include <curl/curl.h>

#include <cstdio>
#include <memory>

#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "poller.hpp"
#include "resolver.hpp"
#include "scheduler.hpp"
#include "sidecar_config.hpp"
#include "target_metrics.hpp"
#include "watched_target.hpp"

namespace {

struct running {
  sidecar::scheduler* schedule;
  sidecar::poller* poller;
  sidecar::resolver* resolver;
  core::http_server* metrics_server;  // nullptr when off
};

// SIGINT/SIGTERM: nothing new starts, transfers and lookups are cancelled, handles close and
// the loop ends by itself.
void on_stop_signal(void* ctx, int signum) {
  auto* r = static_cast<running*>(ctx);
  core::log_event("SIGNAL", "name=%s action=stop", core::signal_name(signum));
  r->schedule->stop();
  r->poller->close();
  r->resolver->close();
  if (r->metrics_server != nullptr) r->metrics_server->drain(nullptr, nullptr);
}

// Closes what was opened and lets the loop finish, before exiting on a start-up error.
void unwind(core::event_loop& loop, sidecar::poller& poller, sidecar::resolver& resolver) {
  poller.close();
  resolver.close();
  loop.run();
}

void log_start(const sidecar::sidecar_config& c, bool follows_replicas) {
  char interval[32], window[32], timeout[32];
  core::format_duration(c.interval_ms, interval, sizeof interval);
  core::format_duration(c.window_ms, window, sizeof window);
  core::format_duration(c.timeout_ms, timeout, sizeof timeout);
  using core::log_field;
  log_field start[] = {
      log_field::word("version", STACK_VERSION),
      log_field::word("target", c.target),
      log_field::word("interval", interval),
      log_field::word("window", window),
      log_field::word("timeout", timeout),
      log_field::num("fail_after", c.fail_after),
      log_field::num("recover_after", c.recover_after),
      log_field::num("ring", sidecar::latency_ring::capacity_for(c.window_ms, c.interval_ms)),
      log_field::word("replicas", follows_replicas ? "on" : "off"),
      log_field::num("probes", c.probe_count),
  };
  core::log_fields("START", start);
  for (size_t i = 0; i < c.probe_count; ++i) {
    log_field probe[] = {log_field::word("target", c.probe_urls[i])};
    core::log_fields("PROBE", probe);
  }
}

// The schedule's origin: now, or a random moment within the jitter.
uint64_t schedule_origin(uv_loop_t* loop, uint64_t jitter_ms) {
  uint64_t offset =
      jitter_ms > 0
          ? (uv_hrtime() ^ static_cast<uint64_t>(uv_os_getpid()) * 0x9e3779b97f4a7c15ULL) %
                jitter_ms
          : 0;
  return uv_now(loop) + offset;
}

}  // namespace

int main(int argc, char** argv) {
  core::log_init("sidecar");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    core::config_fail("libcurl initialisation failed");
  }
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
    core::config_fail("c-ares initialisation failed");
  }
  sidecar::sidecar_config c;
  sidecar::load_config(argc, argv, &c);
  if (c.json_logs) core::log_set_format(core::log_format::json);

  // Everything watched, sized once: the main target's replica slots, one slot per probe.
  core::event_loop loop;
  size_t target_count = 1 + c.probe_count;
  size_t transfers = (c.follow_replicas ? c.max_replicas : 1) + c.probe_count;
  sidecar::poller poller(loop.uv(), c.timeout_ms, transfers, c.ca_file);
  sidecar::resolver resolver(loop.uv());
  std::unique_ptr<std::unique_ptr<sidecar::watched_target>[]> watched(
      new std::unique_ptr<sidecar::watched_target>[target_count]);
  std::unique_ptr<sidecar::watched_target*[]> targets(new sidecar::watched_target*[target_count]);
  const char* error = nullptr;
  bool ok = poller.init(&error) && resolver.init(c.dns_server, c.timeout_ms, &error);
  for (size_t i = 0; ok && i < target_count; ++i) {
    sidecar::watch_options o;
    o.url = i == 0 ? c.target : c.probe_urls[i - 1];
    o.kind = i == 0 ? sidecar::check_kind::health : sidecar::check_kind::http;
    o.replicas = i == 0 && c.follow_replicas;
    o.max_replicas = o.replicas ? c.max_replicas : 1;
    o.window_ms = c.window_ms;
    o.interval_ms = c.interval_ms;
    o.slow_ms = c.slow_ms;
    o.fail_after = static_cast<uint32_t>(c.fail_after);
    o.recover_after = static_cast<uint32_t>(c.recover_after);
    watched[i].reset(new sidecar::watched_target(poller, &resolver, o));
    targets[i] = watched[i].get();
    ok = watched[i]->init(&error);
  }
  if (!ok) {
    unwind(loop, poller, resolver);
    core::config_fail("cannot set up polling: %s", error);
  }
  size_t max_series = 0;
  for (size_t i = 0; i < target_count; ++i) max_series += targets[i]->max_series();
  std::unique_ptr<sidecar::metrics_series[]> series(new sidecar::metrics_series[max_series]);
  sidecar::metrics_page page{targets.get(), target_count, series.get(), c.window_ms};
  sidecar::scheduler schedule(loop.uv(), targets.get(), target_count, c.interval_ms, c.window_ms,
                              schedule_origin(loop.uv(), c.jitter_ms));
  log_start(c, targets[0]->follows_replicas());

  core::http_server_config server_config;
  server_config.access_log = false;  // scrapes every few seconds would drown the reports
  server_config.max_connections = 64;
  // Many replicas and probes make a large exposition; it is written from its own buffer.
  server_config.max_response_body = 1024 * 1024;
  // The sidecar promises to stop within a second; a stalled scrape must not hold it up.
  server_config.drain_timeout_ms = 500;
  core::http_server metrics_server(loop.uv(), server_config, sidecar::serve_metrics, &page);
  page.server = &metrics_server;
  running run{&schedule, &poller, &resolver, nullptr};
  if (c.metrics_on) {
    if (int rc = metrics_server.listen(c.metrics_host, c.metrics_port); rc != 0) {
      core::log_event("ERROR", "metrics listen addr=%s:%d error=%s", c.metrics_host, c.metrics_port,
                      uv_err_name(rc));
      metrics_server.drain(nullptr, nullptr);
      unwind(loop, poller, resolver);
      core::log_flush();
      fprintf(stderr, "sidecar: error: cannot listen on %s:%d for metrics: %s\n", c.metrics_host,
              c.metrics_port, uv_strerror(rc));
      return 1;
    }
    run.metrics_server = &metrics_server;
    core::log_event("LISTEN", "addr=%s path=/metrics", metrics_server.bound_address());
  } else {
    metrics_server.drain(nullptr, nullptr);
  }

  schedule.start();
  loop.watch_signals(on_stop_signal, &run);
  int rc = loop.run();
  ares_library_cleanup();
  curl_global_cleanup();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
