#include "sidecar_config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "url.hpp"

namespace sidecar {
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

void validate_url(const char* url, const core::cli_option& option) {
  url_parts parts;
  if (parse_url(url, &parts) != nullptr) {
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

void load_config(int argc, char** argv, sidecar_config* c) {
  core::cli_parse({"sidecar", STACK_VERSION, "polls a /health endpoint and reports latency"}, argc,
                  argv, g_options, opt_count);
  c->target = g_options[opt_target].value;
  validate_url(c->target, g_options[opt_target]);
  c->interval_ms = core::option_duration(g_options[opt_interval], 1);
  c->window_ms = core::option_duration(g_options[opt_window], 1);
  if (c->interval_ms >= c->window_ms) {
    core::config_fail("--interval (%s) must be shorter than --window (%s)",
                      g_options[opt_interval].value, g_options[opt_window].value);
  }
  c->timeout_ms = c->interval_ms / 2 < 5000 ? c->interval_ms / 2 : 5000;
  if (g_options[opt_timeout].value != nullptr) {
    c->timeout_ms = core::option_duration(g_options[opt_timeout], 1);
    if (c->timeout_ms >= c->interval_ms) {
      core::config_fail("--timeout (%s) must be shorter than --interval (%s)",
                        g_options[opt_timeout].value, g_options[opt_interval].value);
    }
  }
  if (c->timeout_ms == 0) c->timeout_ms = 1;
  c->jitter_ms = core::option_duration(g_options[opt_jitter], 0);
  if (c->jitter_ms >= c->interval_ms && c->jitter_ms > 0) {
    core::config_fail("--jitter (%s) must be shorter than --interval (%s)",
                      g_options[opt_jitter].value, g_options[opt_interval].value);
  }
  c->fail_after = core::option_uint(g_options[opt_fail_after], 1, 1000000);
  c->recover_after = core::option_uint(g_options[opt_recover_after], 1, 1000000);
  c->slow_ms = core::option_duration(g_options[opt_slow], 0);
  c->follow_replicas = core::option_on_off(g_options[opt_replicas]);
  c->max_replicas = core::option_uint(g_options[opt_max_replicas], 1, 256);
  c->ca_file = g_options[opt_ca_file].value;
  if (c->ca_file != nullptr && c->ca_file[0] == '\0') c->ca_file = nullptr;
  if (c->ca_file != nullptr) {
    if (FILE* f = fopen(c->ca_file, "r")) {
      fclose(f);
    } else {
      core::option_fail(g_options[opt_ca_file], strerror(errno));
    }
  }
  c->dns_server = g_options[opt_dns_server].value;
  if (c->dns_server != nullptr && c->dns_server[0] == '\0') c->dns_server = nullptr;
  if (c->dns_server != nullptr) validate_dns_servers(c->dns_server);
  c->probe_text.reset(new char[strlen(g_options[opt_probes].value) + 1]);
  strcpy(c->probe_text.get(), g_options[opt_probes].value);
  c->probe_count =
      split_probes(c->probe_text.get(), c->target, c->probe_urls, sidecar_config::max_probes);
  std::string_view metrics_listen = g_options[opt_metrics_listen].value;
  c->metrics_on = metrics_listen != "off";
  if (c->metrics_on) {
    if (const char* e = core::parse_listen_address(metrics_listen, c->metrics_host,
                                                   sizeof c->metrics_host, &c->metrics_port)) {
      core::option_fail(g_options[opt_metrics_listen], e);
    }
  }
  std::string_view format = g_options[opt_log_format].value;
  if (format != "json" && format != "text") {
    core::option_fail(g_options[opt_log_format], "expected text or json");
  }
  c->json_logs = format == "json";
}

}  // namespace sidecar
