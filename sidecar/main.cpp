// sidecar: polls hello's /health on a fixed schedule and prints window reports and alerts.
//   configuration -> core/config, HTTP polling -> sidecar/poller (curl multi on libuv),
//   replicas -> sidecar/resolver (c-ares on libuv) + sidecar/watched_target,
//   samples -> sidecar/latency_ring, line formats -> sidecar/report, loop -> core/loop.
#include <ares.h>
#include <arpa/inet.h>
#include <curl/curl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>

#include "config.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "poller.hpp"
#include "report.hpp"
#include "resolver.hpp"
#include "watched_target.hpp"

namespace {

enum {
  opt_target,
  opt_interval,
  opt_window,
  opt_timeout,
  opt_jitter,
  opt_fail_after,
  opt_recover_after,
  opt_slow,
  opt_log_format,
  opt_metrics_listen,
  opt_replicas,
  opt_max_replicas,
  opt_dns_server,
  opt_probes,
  opt_ca_file,
  opt_count
};

core::cli_option g_options[opt_count] = {
    {"--target", "SIDECAR_TARGET", "http://hello:8080/health", "URL",
     "health endpoint to poll (http or https)"},
    {"--interval", "SIDECAR_INTERVAL", "10s", "DURATION", "time between polls (ms, s or m)"},
    {"--window", "SIDECAR_WINDOW", "60s", "DURATION",
     "report best/worst/average latency of this past window, once per window"},
    {"--timeout", "SIDECAR_TIMEOUT", nullptr, "DURATION",
     "give up on a poll after this long (default: half the interval, at most 5s)"},
    {"--jitter", "SIDECAR_JITTER", "0s", "DURATION",
     "start the schedule after a random delay below this, to spread many sidecars"},
    {"--fail-after", "SIDECAR_FAIL_AFTER", "1", "N",
     "alert once N polls in a row have failed (1: every failure alerts)"},
    {"--recover-after", "SIDECAR_RECOVER_AFTER", "1", "N",
     "after an alert, report RECOVERED once N polls in a row have succeeded"},
    {"--slow", "SIDECAR_SLOW", "0ms", "DURATION",
     "a healthy answer slower than this (measured round trip) is degraded; 0 = off"},
    {"--log-format", "SIDECAR_LOG_FORMAT", "text", "text|json",
     "text: key=value lines; json: one JSON object per line"},
    {"--metrics-listen", "SIDECAR_METRICS_LISTEN", ":9100", "HOST:PORT|off",
     "serve Prometheus metrics on GET /metrics here (off: no listener)"},
    {"--replicas", "SIDECAR_REPLICAS", "on", "on|off",
     "resolve the target's host every poll and probe each of its addresses as a replica"},
    {"--max-replicas", "SIDECAR_MAX_REPLICAS", "16", "N",
     "replicas followed at most (addresses beyond are not probed; a warning says so)"},
    {"--dns-server", "SIDECAR_DNS_SERVER", nullptr, "IP[:PORT][,...]",
     "resolve replicas with these servers only (default: /etc/resolv.conf and /etc/hosts)"},
    {"--probes", "SIDECAR_PROBES", "", "URL[,URL...]",
     "external URLs (http or https) probed on the same schedule: up (2xx) or down, and time"},
    {"--ca-file", "SIDECAR_CA_FILE", nullptr, "PATH",
     "trust the CA certificates in this PEM file for https (default: the system bundle)"},
};

constexpr size_t kMaxProbes = 32;

struct monitor {
  core::event_loop* loop;
  sidecar::poller* poller;
  sidecar::resolver* resolver;
  sidecar::watched_target** targets;  // the main target first, then the probes
  size_t target_count;
  sidecar::metrics_series* series;  // scratch for a scrape, sized at start-up
  uint64_t interval_ms;
  uint64_t window_ms;
  uint64_t start_ms;
  core::http_server* metrics_server;  // nullptr when off
  uint64_t polls_started = 0;         // index of the next poll
  uint64_t reports = 1;               // index of the next report (the first ends one window in)
  uv_timer_t poll_timer{};
  uv_timer_t report_timer{};
};

// Poll k starts at start + k * interval whatever the previous poll took, so the schedule does
// not drift; a poll still running when the next is due makes that one skip. After a stall (the
// process stopped, a starved host) the slots that passed are skipped, not run back to back: the
// late timer runs the latest slot due, once, and the schedule goes on from there.
void skip_missed(uint64_t start_ms, uint64_t period_ms, uint64_t now, uint64_t* index,
                 const char* what) {
  if (now < start_ms) return;
  uint64_t latest = (now - start_ms) / period_ms;
  if (*index < latest) {
    core::log_event("WARN", "loop stalled: skipped=%llu %s",
                    static_cast<unsigned long long>(latest - *index), what);
    *index = latest;
  }
}

void on_poll_timer(uv_timer_t* t);
void on_report_timer(uv_timer_t* t);

void schedule_poll(monitor* m) {
  uint64_t due = m->start_ms + m->polls_started * m->interval_ms;
  uint64_t now = uv_now(m->loop->uv());
  uv_timer_start(&m->poll_timer, on_poll_timer, due > now ? due - now : 0, 0);
}

void on_poll_timer(uv_timer_t* t) {
  auto* m = static_cast<monitor*>(t->data);
  uint64_t now = uv_now(m->loop->uv());
  skip_missed(m->start_ms, m->interval_ms, now, &m->polls_started, "polls");
  for (size_t i = 0; i < m->target_count; ++i) m->targets[i]->poll(now);
  ++m->polls_started;
  schedule_poll(m);
}

// Report r covers the window ending at start + r * window.
void schedule_report(monitor* m) {
  uint64_t due = m->start_ms + m->reports * m->window_ms;
  uint64_t now = uv_now(m->loop->uv());
  uv_timer_start(&m->report_timer, on_report_timer, due > now ? due - now : 0, 0);
}

void on_report_timer(uv_timer_t* t) {
  auto* m = static_cast<monitor*>(t->data);
  uint64_t now = uv_now(m->loop->uv());
  skip_missed(m->start_ms, m->window_ms, now, &m->reports, "reports");
  for (size_t i = 0; i < m->target_count; ++i) m->targets[i]->report(now);
  ++m->reports;
  schedule_report(m);
}

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<monitor*>(ctx);
  core::log_event("SIGNAL", "name=%s action=stop", core::signal_name(signum));
  uv_close(reinterpret_cast<uv_handle_t*>(&m->poll_timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&m->report_timer), nullptr);
  m->poller->close();
  m->resolver->close();
  if (m->metrics_server != nullptr) m->metrics_server->drain(nullptr, nullptr);
}

// Per target: state, replicas, DNS failures; then every replica's and probe's own series.
void write_metrics(const monitor& m, core::buf_writer& w) {
  core::prom_writer p(w);
  p.family("sidecar_target_info", "gauge",
           "1 per watched URL; kind is health (the /health target) or http (an external probe).");
  for (size_t i = 0; i < m.target_count; ++i) {
    const sidecar::watched_target& t = *m.targets[i];
    p.sample("sidecar_target_info",
             {{"target", t.url()},
              {"kind", t.kind() == sidecar::check_kind::http ? "http" : "health"},
              {"replicas", t.follows_replicas() ? "on" : "off"}},
             1);
  }
  p.family("sidecar_target_state", "gauge",
           "1 for the target's current state over its replicas: unknown, healthy, degraded or "
           "down.");
  for (size_t i = 0; i < m.target_count; ++i) {
    const sidecar::watched_target& t = *m.targets[i];
    for (sidecar::health_state s : {sidecar::health_state::unknown, sidecar::health_state::healthy,
                                    sidecar::health_state::degraded, sidecar::health_state::down}) {
      p.sample("sidecar_target_state", {{"target", t.url()}, {"state", sidecar::state_name(s)}},
               s == t.state() ? 1 : 0);
    }
  }
  p.family("sidecar_target_replicas", "gauge", "Addresses of the target being probed now.");
  for (size_t i = 0; i < m.target_count; ++i) {
    const sidecar::watched_target& t = *m.targets[i];
    p.sample_int("sidecar_target_replicas", {{"target", t.url()}}, t.replica_count());
  }
  p.family("sidecar_dns_failures_total", "counter",
           "Polls whose lookup of the target's host failed (replicas followed only).");
  for (size_t i = 0; i < m.target_count; ++i) {
    const sidecar::watched_target& t = *m.targets[i];
    p.sample_int("sidecar_dns_failures_total", {{"target", t.url()}}, t.dns_failures());
  }
  size_t n = 0;
  for (size_t i = 0; i < m.target_count; ++i) n += m.targets[i]->series(m.series + n);
  sidecar::write_probe_metrics(w, m.series, n, m.window_ms);
}

void serve_metrics(void* ctx, const core::http_request& req, core::http_reply& reply) {
  auto* m = static_cast<monitor*>(ctx);
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
  write_metrics(*m, reply.body);
}

void validate_url(const char* url, const core::cli_option& option) {
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
    char why[512];
    snprintf(why, sizeof why, "'%.400s' is not an http:// or https:// URL with a host", url);
    core::option_fail(option, why);
  }
}

// SIDECAR_DNS_SERVER: "IP[:PORT],..." with IPv6 in brackets when a port follows; c-ares would
// accept some nonsense (a port above 65535) and then time every lookup out.
void validate_dns_servers(const char* list) {
  std::string_view rest = list;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    std::string_view host = entry;
    std::string_view port;
    if (!entry.empty() && entry.front() == '[') {
      size_t close = entry.find(']');
      host = close == std::string_view::npos ? std::string_view() : entry.substr(1, close - 1);
      if (close != std::string_view::npos && close + 1 < entry.size()) {
        port = entry[close + 1] == ':' ? entry.substr(close + 2) : std::string_view("x");
      }
    } else if (size_t colon = entry.find(':');
               colon != std::string_view::npos &&
               entry.find(':', colon + 1) == std::string_view::npos) {
      host = entry.substr(0, colon);
      port = entry.substr(colon + 1);
      if (port.empty()) port = "x";
    }
    char ip[64];
    unsigned char buf[sizeof(in6_addr)];
    bool ok = !host.empty() && host.size() < sizeof ip;
    if (ok) {
      memcpy(ip, host.data(), host.size());
      ip[host.size()] = '\0';
      ok = inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1;
    }
    if (ok && !port.empty()) {
      uint64_t n = 0;
      ok = core::parse_uint(port, 1, 65535, &n) == nullptr;
    }
    if (!ok) {
      char why[160];
      snprintf(why, sizeof why, "'%.*s' is not IP[:PORT] (IPv6 as [addr]:port)",
               static_cast<int>(entry.size() < 100 ? entry.size() : 100), entry.data());
      core::option_fail(g_options[opt_dns_server], why);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
}

// SIDECAR_PROBES: URLs separated by commas or white space, split in place (start-up only). A URL
// given twice (or equal to the target) would export the same series twice: refused.
size_t split_probes(char* list, const char* target, const char** out, size_t max) {
  size_t n = 0;
  char* save = nullptr;
  for (char* tok = strtok_r(list, ", \t\n", &save); tok != nullptr;
       tok = strtok_r(nullptr, ", \t\n", &save)) {
    if (n == max) {
      char why[64];
      snprintf(why, sizeof why, "more than %zu URLs", max);
      core::option_fail(g_options[opt_probes], why);
    }
    validate_url(tok, g_options[opt_probes]);
    bool again = strcmp(tok, target) == 0;
    for (size_t i = 0; i < n && !again; ++i) again = strcmp(tok, out[i]) == 0;
    if (again) {
      char why[512];
      snprintf(why, sizeof why, "'%.400s' is watched already (each URL once)", tok);
      core::option_fail(g_options[opt_probes], why);
    }
    out[n++] = tok;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  core::log_init("sidecar");
  core::cli_parse({"sidecar", STACK_VERSION, "polls a /health endpoint and reports latency"}, argc,
                  argv, g_options, opt_count);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    core::config_fail("libcurl initialisation failed");
  }
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
    core::config_fail("c-ares initialisation failed");
  }
  const char* target = g_options[opt_target].value;
  validate_url(target, g_options[opt_target]);
  uint64_t interval_ms = core::option_duration(g_options[opt_interval], 1);
  uint64_t window_ms = core::option_duration(g_options[opt_window], 1);
  if (interval_ms >= window_ms) {
    core::config_fail("--interval (%s) must be shorter than --window (%s)",
                      g_options[opt_interval].value, g_options[opt_window].value);
  }
  uint64_t timeout_ms = interval_ms / 2 < 5000 ? interval_ms / 2 : 5000;
  if (g_options[opt_timeout].value != nullptr) {
    timeout_ms = core::option_duration(g_options[opt_timeout], 1);
    if (timeout_ms >= interval_ms) {
      core::config_fail("--timeout (%s) must be shorter than --interval (%s)",
                        g_options[opt_timeout].value, g_options[opt_interval].value);
    }
  }
  if (timeout_ms == 0) timeout_ms = 1;
  uint64_t jitter_ms = core::option_duration(g_options[opt_jitter], 0);
  if (jitter_ms >= interval_ms && jitter_ms > 0) {
    core::config_fail("--jitter (%s) must be shorter than --interval (%s)",
                      g_options[opt_jitter].value, g_options[opt_interval].value);
  }
  uint64_t fail_after = core::option_uint(g_options[opt_fail_after], 1, 1000000);
  uint64_t recover_after = core::option_uint(g_options[opt_recover_after], 1, 1000000);
  uint64_t slow_ms = core::option_duration(g_options[opt_slow], 0);
  bool follow_replicas = core::option_on_off(g_options[opt_replicas]);
  uint64_t max_replicas = core::option_uint(g_options[opt_max_replicas], 1, 256);
  const char* ca_file = g_options[opt_ca_file].value;
  if (ca_file != nullptr && ca_file[0] == '\0') ca_file = nullptr;
  if (ca_file != nullptr) {
    if (FILE* f = fopen(ca_file, "r")) {
      fclose(f);
    } else {
      core::option_fail(g_options[opt_ca_file], strerror(errno));
    }
  }
  const char* dns_server = g_options[opt_dns_server].value;
  if (dns_server != nullptr && dns_server[0] == '\0') dns_server = nullptr;
  if (dns_server != nullptr) validate_dns_servers(dns_server);
  std::unique_ptr<char[]> probe_text(new char[strlen(g_options[opt_probes].value) + 1]);
  strcpy(probe_text.get(), g_options[opt_probes].value);
  const char* probe_urls[kMaxProbes];
  size_t probe_count = split_probes(probe_text.get(), target, probe_urls, kMaxProbes);
  std::string_view metrics_listen = g_options[opt_metrics_listen].value;
  char metrics_host[64] = "";
  int metrics_port = 0;
  bool metrics_on = metrics_listen != "off";
  if (metrics_on) {
    if (const char* e = core::parse_listen_address(metrics_listen, metrics_host,
                                                   sizeof metrics_host, &metrics_port)) {
      core::option_fail(g_options[opt_metrics_listen], e);
    }
  }
  std::string_view format = g_options[opt_log_format].value;
  if (format == "json") {
    core::log_set_format(core::log_format::json);
  } else if (format != "text") {
    core::option_fail(g_options[opt_log_format], "expected text or json");
  }

  core::event_loop loop;
  // Everything watched, sized once: the main target's replica slots, one slot per probe.
  size_t target_count = 1 + probe_count;
  size_t transfers = (follow_replicas ? max_replicas : 1) + probe_count;
  sidecar::poller poller(loop.uv(), timeout_ms, transfers, ca_file);
  sidecar::resolver resolver(loop.uv());
  std::unique_ptr<std::unique_ptr<sidecar::watched_target>[]> watched(
      new std::unique_ptr<sidecar::watched_target>[target_count]);
  std::unique_ptr<sidecar::watched_target*[]> targets(new sidecar::watched_target*[target_count]);
  const char* error = nullptr;
  bool ok = poller.init(&error) && resolver.init(dns_server, timeout_ms, &error);
  for (size_t i = 0; ok && i < target_count; ++i) {
    sidecar::watch_options o;
    o.url = i == 0 ? target : probe_urls[i - 1];
    o.kind = i == 0 ? sidecar::check_kind::health : sidecar::check_kind::http;
    o.replicas = i == 0 && follow_replicas;
    o.max_replicas = o.replicas ? max_replicas : 1;
    o.window_ms = window_ms;
    o.interval_ms = interval_ms;
    o.slow_ms = slow_ms;
    o.fail_after = static_cast<uint32_t>(fail_after);
    o.recover_after = static_cast<uint32_t>(recover_after);
    watched[i].reset(new sidecar::watched_target(poller, &resolver, o));
    targets[i] = watched[i].get();
    ok = watched[i]->init(&error);
  }
  if (!ok) {
    poller.close();
    resolver.close();
    loop.run();
    core::config_fail("cannot set up polling: %s", error);
  }
  size_t max_series = 0;
  for (size_t i = 0; i < target_count; ++i) max_series += targets[i]->max_series();
  std::unique_ptr<sidecar::metrics_series[]> series(new sidecar::metrics_series[max_series]);

  // The schedule's origin: now, or a random moment within the jitter.
  uint64_t offset =
      jitter_ms > 0
          ? (uv_hrtime() ^ static_cast<uint64_t>(uv_os_getpid()) * 0x9e3779b97f4a7c15ULL) %
                jitter_ms
          : 0;
  monitor m{&loop,         &poller,      &resolver,
            targets.get(), target_count, series.get(),
            interval_ms,   window_ms,    uv_now(loop.uv()) + offset,
            nullptr};

  char interval[32], window[32], timeout[32];
  core::format_duration(interval_ms, interval, sizeof interval);
  core::format_duration(window_ms, window, sizeof window);
  core::format_duration(timeout_ms, timeout, sizeof timeout);
  using core::log_field;
  log_field start[] = {
      log_field::word("version", STACK_VERSION),
      log_field::word("target", target),
      log_field::word("interval", interval),
      log_field::word("window", window),
      log_field::word("timeout", timeout),
      log_field::num("fail_after", fail_after),
      log_field::num("recover_after", recover_after),
      log_field::num("ring", sidecar::latency_ring::capacity_for(window_ms, interval_ms)),
      log_field::word("replicas", targets[0]->follows_replicas() ? "on" : "off"),
      log_field::num("probes", probe_count),
  };
  core::log_fields("START", start);
  for (size_t i = 0; i < probe_count; ++i) {
    log_field probe[] = {log_field::word("target", probe_urls[i])};
    core::log_fields("PROBE", probe);
  }

  core::http_server_config server_config;
  server_config.access_log = false;  // scrapes every few seconds would drown the reports
  server_config.max_connections = 64;
  // Many replicas and probes make a large exposition; it is written from its own buffer.
  server_config.max_response_body = 1024 * 1024;
  // The sidecar promises to stop within a second; a stalled scrape must not hold it up.
  server_config.drain_timeout_ms = 500;
  core::http_server metrics_server(loop.uv(), server_config, serve_metrics, &m);
  if (metrics_on) {
    if (int rc = metrics_server.listen(metrics_host, metrics_port); rc != 0) {
      core::log_event("ERROR", "metrics listen addr=%s:%d error=%s", metrics_host, metrics_port,
                      uv_err_name(rc));
      metrics_server.drain(nullptr, nullptr);
      poller.close();
      resolver.close();
      loop.run();
      core::log_flush();
      fprintf(stderr, "sidecar: error: cannot listen on %s:%d for metrics: %s\n", metrics_host,
              metrics_port, uv_strerror(rc));
      return 1;
    }
    m.metrics_server = &metrics_server;
    core::log_event("LISTEN", "addr=%s path=/metrics", metrics_server.bound_address());
  } else {
    metrics_server.drain(nullptr, nullptr);
  }

  uv_timer_init(loop.uv(), &m.poll_timer);
  m.poll_timer.data = &m;
  uv_timer_init(loop.uv(), &m.report_timer);
  m.report_timer.data = &m;
  schedule_poll(&m);
  schedule_report(&m);
  loop.watch_signals(on_stop_signal, &m);

  int rc = loop.run();
  ares_library_cleanup();
  curl_global_cleanup();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
