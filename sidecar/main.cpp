// sidecar: polls hello's /health on a fixed schedule and prints window reports and alerts.
//   configuration -> core/config, HTTP polling -> sidecar/poller (curl multi on libuv),
//   samples -> sidecar/latency_ring, line formats -> sidecar/report, loop -> core/loop.
#include <curl/curl.h>

#include <cstdio>
#include <cstring>

#include "config.hpp"
#include "latency_ring.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "poller.hpp"
#include "report.hpp"

namespace {

enum { opt_target, opt_interval, opt_window, opt_timeout, opt_count };

core::cli_option g_options[opt_count] = {
    {"--target", "SIDECAR_TARGET", "http://hello:8080/health", "URL",
     "health endpoint to poll (http or https)"},
    {"--interval", "SIDECAR_INTERVAL", "10s", "DURATION", "time between polls (ms, s or m)"},
    {"--window", "SIDECAR_WINDOW", "60s", "DURATION",
     "report best/worst/average latency of this past window, once per window"},
    {"--timeout", "SIDECAR_TIMEOUT", nullptr, "DURATION",
     "give up on a poll after this long (default: half the interval, at most 5s)"},
};

struct monitor {
  core::event_loop* loop;
  sidecar::poller* poller;
  sidecar::latency_ring* ring;
  const char* target;
  uint64_t interval_ms;
  uint64_t window_ms;
  uint64_t start_ms;
  uint64_t polls_started = 0;
  uint64_t reports = 0;
  uv_timer_t poll_timer{};
  uv_timer_t report_timer{};
};

// Poll k starts at start + k * interval whatever the previous poll took, so the schedule does
// not drift; a poll still running when the next is due makes that one skip.
void schedule_poll(monitor* m);

void on_poll_timer(uv_timer_t* t) {
  auto* m = static_cast<monitor*>(t->data);
  if (!m->poller->start()) core::log_event("WARN", "poll skipped: previous poll still running");
  ++m->polls_started;
  schedule_poll(m);
}

void schedule_poll(monitor* m) {
  uint64_t due = m->start_ms + m->polls_started * m->interval_ms;
  uint64_t now = uv_now(m->loop->uv());
  uv_timer_start(&m->poll_timer, on_poll_timer, due > now ? due - now : 0, 0);
}

void schedule_report(monitor* m);

void on_report_timer(uv_timer_t* t) {
  auto* m = static_cast<monitor*>(t->data);
  char line[256];
  sidecar::format_report(line, sizeof line, m->ring->window(uv_now(m->loop->uv()), m->window_ms),
                         m->window_ms);
  core::log_event("REPORT", "%s", line);
  schedule_report(m);
}

void schedule_report(monitor* m) {
  ++m->reports;
  uint64_t due = m->start_ms + m->reports * m->window_ms;
  uint64_t now = uv_now(m->loop->uv());
  uv_timer_start(&m->report_timer, on_report_timer, due > now ? due - now : 0, 0);
}

void on_result(void* ctx, const sidecar::poll_result& r) {
  auto* m = static_cast<monitor*>(ctx);
  sidecar::poll_sample s;
  s.at_ms = uv_now(m->loop->uv());
  s.has_latency = r.has_latency;
  s.latency = r.latency;
  s.failed = r.result != sidecar::outcome::ok;
  m->ring->push(s);
  if (s.failed) {
    char line[1024];
    sidecar::format_alert(line, sizeof line, r, m->target);
    core::log_event("ALERT", "%s", line);
  }
}

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<monitor*>(ctx);
  core::log_event("SIGNAL", "name=%s action=stop", core::signal_name(signum));
  uv_close(reinterpret_cast<uv_handle_t*>(&m->poll_timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&m->report_timer), nullptr);
  m->poller->close();
}

uint64_t duration_option(int index, const char* name) {
  uint64_t ms = 0;
  if (const char* e = core::parse_duration_ms(g_options[index].value, &ms)) {
    core::config_fail("%s/%s '%s': %s", g_options[index].flag, g_options[index].env,
                      g_options[index].value, e);
  }
  if (ms == 0) core::config_fail("%s must be greater than 0", name);
  return ms;
}

void validate_url(const char* url) {
  CURLU* u = curl_url();
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
  char* scheme = nullptr;
  char* host = nullptr;
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
  bool ok = rc == CURLUE_OK && scheme != nullptr &&
            (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  if (!ok) {
    core::config_fail("--target/SIDECAR_TARGET '%s': not an http:// or https:// URL with a host",
                      url);
  }
}

}  // namespace

int main(int argc, char** argv) {
  core::log_init("sidecar");
  core::cli_parse({"sidecar", STACK_VERSION, "polls a /health endpoint and reports latency"}, argc,
                  argv, g_options, opt_count);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    core::config_fail("libcurl initialisation failed");
  }
  const char* target = g_options[opt_target].value;
  validate_url(target);
  uint64_t interval_ms = duration_option(opt_interval, "--interval");
  uint64_t window_ms = duration_option(opt_window, "--window");
  if (interval_ms >= window_ms) {
    core::config_fail("--interval (%s) must be shorter than --window (%s)",
                      g_options[opt_interval].value, g_options[opt_window].value);
  }
  uint64_t timeout_ms = interval_ms / 2 < 5000 ? interval_ms / 2 : 5000;
  if (g_options[opt_timeout].value != nullptr) {
    timeout_ms = duration_option(opt_timeout, "--timeout");
    if (timeout_ms >= interval_ms) {
      core::config_fail("--timeout (%s) must be shorter than --interval (%s)",
                        g_options[opt_timeout].value, g_options[opt_interval].value);
    }
  }
  if (timeout_ms == 0) timeout_ms = 1;

  core::event_loop loop;
  sidecar::latency_ring ring(sidecar::latency_ring::capacity_for(window_ms, interval_ms));
  monitor m{&loop, nullptr, &ring, target, interval_ms, window_ms, uv_now(loop.uv())};
  sidecar::poller poller(loop.uv(), target, timeout_ms, on_result, &m);
  m.poller = &poller;
  const char* error = nullptr;
  if (!poller.init(&error)) {
    poller.close();
    loop.run();
    core::config_fail("cannot set up polling: %s", error);
  }

  char interval[32], window[32], timeout[32];
  core::format_duration(interval_ms, interval, sizeof interval);
  core::format_duration(window_ms, window, sizeof window);
  core::format_duration(timeout_ms, timeout, sizeof timeout);
  core::log_event("START", "version=%s target=%s interval=%s window=%s timeout=%s ring=%zu",
                  STACK_VERSION, target, interval, window, timeout, ring.capacity());

  uv_timer_init(loop.uv(), &m.poll_timer);
  m.poll_timer.data = &m;
  uv_timer_init(loop.uv(), &m.report_timer);
  m.report_timer.data = &m;
  schedule_poll(&m);
  schedule_report(&m);
  loop.watch_signals(on_stop_signal, &m);

  int rc = loop.run();
  curl_global_cleanup();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
