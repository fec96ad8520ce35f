// alert-sink: the stack's Alertmanager receiver that needs no internet. Alertmanager's webhook
// POSTs its notifications here; each alert in them becomes one line on stdout, firing or
// resolved, so `compose logs alert-sink` is the alert log (README "Observability").
//   HTTP -> core/http_server (JSON bodies checked and parsed by core), loop and signals ->
//   core/loop, logs -> core/log, configuration -> core/config; the image's HEALTHCHECK uses
//   core's one-GET health check (core/healthcheck), like every service.
//
// Routes: POST /alerts (Alertmanager's webhook payload, version 4), GET /health (200).
#include <cstdio>
#include <string_view>

#include "config.hpp"
#include "healthcheck.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"

namespace {

enum { opt_listen, opt_max_body, opt_count };

core::cli_option g_options[opt_count] = {
    {"--listen", "ALERT_SINK_LISTEN", "0.0.0.0:8080", "HOST:PORT", "address to listen on"},
    {"--max-body", "ALERT_SINK_MAX_BODY", "1MiB", "BYTES",
     "largest notification accepted; larger gets 413 (Alertmanager then retries)"},
};

enum route : uint8_t { route_alerts, route_health, route_other };

uint32_t g_max_body = 1 << 20;

// Only POST /alerts reads its body, as JSON; every other body is discarded unread.
core::body_policy body_policy(void*, llhttp_method_t method, std::string_view target) {
  core::body_policy p;
  if (method == HTTP_POST && target == "/alerts") {
    p.max_bytes = g_max_body;
    p.json = true;
  }
  return p;
}

std::string_view str(core::json_ref r) {
  return r.string().value_or(std::string_view{});
}

// One ALERT line per alert: the fields people grep for first (status, alertname, severity,
// where), then every label as k=v in one field, then the summary. Labels and annotations are
// free text: core's log escapes them, so a hostile label cannot forge a line.
void log_alert(core::json_ref a, std::string_view receiver) {
  core::json_ref labels = a["labels"];
  char label_text[1024];
  size_t len = 0;
  for (size_t i = 0; i < labels.size() && len + 1 < sizeof label_text; ++i) {
    int n = snprintf(label_text + len, sizeof label_text - len, "%s%.*s=%.*s", i ? "," : "",
                     static_cast<int>(labels.key_at(i).size()), labels.key_at(i).data(),
                     static_cast<int>(str(labels.at(i)).size()), str(labels.at(i)).data());
    if (n < 0) break;
    len += static_cast<size_t>(n);
  }
  if (len >= sizeof label_text) len = sizeof label_text - 1;
  std::string_view where = str(labels["instance"]);
  if (where.empty()) where = str(labels["replica"]);
  core::log_field f[] = {
      core::log_field::word("status", str(a["status"])),
      core::log_field::word("alertname", str(labels["alertname"])),
      core::log_field::word("severity", str(labels["severity"])),
      core::log_field::text("where", where),
      core::log_field::word("starts_at", str(a["startsAt"])),
      core::log_field::word("receiver", receiver),
      core::log_field::text("labels", std::string_view(label_text, len)),
      core::log_field::text("summary", str(a["annotations"]["summary"])),
  };
  core::log_fields("ALERT", f);
}

void handle(void*, const core::http_request& req, core::http_reply& reply) {
  if (req.target == "/health" && (req.method == HTTP_GET || req.method == HTTP_HEAD)) {
    reply.route = route_health;
    reply.body.put("{\"healthy\":true}");
    return;
  }
  if (req.target != "/alerts") {
    reply.route = route_other;
    reply.status = 404;
    reply.body.put("{\"error\":\"not found\"}");
    return;
  }
  reply.route = route_alerts;
  if (req.method != HTTP_POST) {
    reply.status = 405;
    reply.extra_headers = "Allow: POST\r\n";
    reply.body.put("{\"error\":\"method not allowed\"}");
    return;
  }
  // core has checked the Content-Type and the JSON already (415 / 400 otherwise).
  core::json_ref alerts = req.json->root()["alerts"];
  if (!alerts.is(core::json_type::array)) {
    reply.status = 400;
    reply.body.put("{\"error\":\"expected an Alertmanager webhook payload with alerts\"}");
    return;
  }
  std::string_view receiver = str(req.json->root()["receiver"]);
  for (size_t i = 0; i < alerts.size(); ++i) log_alert(alerts.at(i), receiver);
  reply.body.put("{\"logged\":");
  reply.body.put_uint(alerts.size());
  reply.body.put('}');
}

struct sink_main {
  core::http_server* server;
};

void on_stop_signal(void* ctx, int signum) {
  core::log_event("SIGNAL", "name=%s action=drain", core::signal_name(signum));
  static_cast<sink_main*>(ctx)->server->drain(nullptr, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = core::healthcheck_mode("alert-sink", argc, argv); rc >= 0) return rc;
  core::log_init("alert-sink");
  core::cli_parse(
      {"alert-sink", STACK_VERSION,
       "Alertmanager webhook receiver: one ALERT line on stdout per alert", core::healthcheck_help},
      argc, argv, g_options, opt_count);
  char host[64];
  int port = 0;
  if (const char* e =
          core::parse_listen_address(g_options[opt_listen].value, host, sizeof host, &port)) {
    core::option_fail(g_options[opt_listen], e);
  }
  g_max_body = static_cast<uint32_t>(core::option_size(g_options[opt_max_body], 1024, 64 << 20));

  core::http_server_config config;
  config.access_log = false;  // the ALERT lines are the log
  config.max_body_bytes = g_max_body;
  config.max_response_body = 4096;
  config.body_policy = body_policy;
  // A notification carries a group of alerts of ~30 values each.
  config.json_max_values = 1 << 16;

  core::event_loop loop;
  core::http_server server(loop.uv(), config, handle, nullptr);
  sink_main m{&server};
  core::log_event("START", "version=%s listen=%s:%d max_body=%u", STACK_VERSION, host, port,
                  g_max_body);
  if (int rc = server.listen(host, port); rc != 0) {
    fprintf(stderr, "alert-sink: error: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    server.drain(nullptr, nullptr);
    loop.run();
    return 1;
  }
  core::log_event("LISTEN", "addr=%s", server.bound_address());
  loop.watch_signals(on_stop_signal, &m);
  int rc = loop.run();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
