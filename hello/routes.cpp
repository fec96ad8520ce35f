#include "routes.hpp"

#include "greeting.hpp"

#include <cstdio>

namespace hello {
namespace {

constexpr std::string_view kAllow = "Allow: GET, HEAD\r\n";
constexpr std::string_view kAllowChaos = "Allow: GET, POST\r\n";

void html_escape(core::buf_writer& w, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '<': w.put("&lt;"); break;
      case '>': w.put("&gt;"); break;
      case '&': w.put("&amp;"); break;
      case '"': w.put("&quot;"); break;
      default: w.put(c);
    }
  }
}

}  // namespace

void write_status(const app& a, bool html, core::http_reply& reply);

std::string_view target_path(std::string_view target) {
  size_t end = target.find_first_of("?#");
  if (end != std::string_view::npos) target = target.substr(0, end);
  if (!target.empty() && target.front() == '/') return target;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size()) {
      bool match = true;
      for (size_t i = 0; i < scheme.size() && match; ++i) {
        char c = target[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        match = c == scheme[i];
      }
      if (match) {
        size_t slash = target.find('/', scheme.size());
        return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      }
    }
  }
  return {};
}

void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply) {
  auto& a = *static_cast<app*>(ctx);
  std::string_view raw = target_path(request.target);
  // Whatever this request is, it "took" a simulated latency that the next /health reports.
  struct record_on_exit {
    health_model& h;
    ~record_on_exit() { h.record_request(); }
  } record{a.health};
  reply.route = static_cast<uint8_t>(route::other);

  if (raw.empty()) return reply.error(400, "bad request-target");
  char decoded[max_name_bytes + 1];
  size_t len = 0;
  switch (percent_decode(raw, decoded, sizeof decoded, &len)) {
    case decode_result::ok: break;
    case decode_result::bad_escape: return reply.error(400, "bad percent-encoding in path");
    case decode_result::too_long: return reply.error(414, "name too long");
  }
  std::string_view path(decoded, len);
  if (!valid_utf8(path)) return reply.error(400, "path is not valid UTF-8");

  enum class kind { root, health, status, metrics, poison, antidote, die, name, none };
  kind k = kind::none;
  if (path == "/") {
    k = kind::root;
  } else if (path == "/health") {
    k = kind::health;
  } else if (path == "/status") {
    k = kind::status;
  } else if (path == "/metrics") {
    k = kind::metrics;
  } else if (a.chaos && path == "/poison") {
    k = kind::poison;
  } else if (a.chaos && path == "/antidote") {
    k = kind::antidote;
  } else if (a.chaos && path == "/die") {
    k = kind::die;
  } else if (!a.chaos && (path == "/poison" || path == "/antidote" || path == "/die")) {
    k = kind::none;  // switched off: as if they did not exist
  } else if (path.find('/', 1) == std::string_view::npos) {
    k = kind::name;
  }
  switch (k) {
    case kind::root: reply.route = static_cast<uint8_t>(route::root); break;
    case kind::health: reply.route = static_cast<uint8_t>(route::health); break;
    case kind::status: reply.route = static_cast<uint8_t>(route::status); break;
    case kind::metrics: reply.route = static_cast<uint8_t>(route::metrics); break;
    case kind::name: reply.route = static_cast<uint8_t>(route::name); break;
    case kind::poison:
    case kind::antidote:
    case kind::die: reply.route = static_cast<uint8_t>(route::chaos); break;
    case kind::none: return reply.error(404, "not found");
  }
  if (path.size() - 1 > max_name_bytes) return reply.error(414, "name too long");
  bool chaos_route = k == kind::poison || k == kind::antidote || k == kind::die;
  // The chaos routes change state, so HEAD (which must not) is not among their methods.
  bool method_ok = chaos_route ? request.method == HTTP_GET || request.method == HTTP_POST
                               : request.method == HTTP_GET || request.method == HTTP_HEAD;
  if (!method_ok) {
    reply.extra_headers = chaos_route ? kAllowChaos : kAllow;
    return reply.error(405, "method not allowed");
  }
  switch (k) {
    case kind::root: write_greeting(reply.body, "World"); break;
    case kind::health:
      if (a.draining || a.poisoned) {
        reply.status = 503;
        reply.body.put("{\"healthy\":false,\"latency\":");
        reply.body.put_double(a.health.last_latency());
        reply.body.put(a.draining ? ",\"draining\":true}" : ",\"poisoned\":true}");
      } else {
        a.health.write_json(reply.body);
      }
      break;
    case kind::status: write_status(a, request.accepts_html, reply); break;
    case kind::metrics: {
      reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
      scrape_inputs in{&a.metrics,
                       a.server != nullptr ? a.server->connection_count() : 0,
                       a.server != nullptr ? a.server->requests_in_flight() : 0,
                       a.server != nullptr ? a.server->pending_answers() : 0,
                       a.poisoned,
                       a.draining,
                       STACK_VERSION,
                       {a.start_unix}};
      write_metrics(reply.body, in);
      break;
    }
    case kind::poison:
    case kind::antidote:
    case kind::die: {
      if (k != kind::die) a.poisoned = k == kind::poison;
      const char* state = k == kind::die ? "dying" : a.poisoned ? "poisoned" : "healthy";
      reply.body.put("{\"instance\":\"");
      core::json_escape(reply.body, a.instance);
      reply.body.put("\",\"state\":\"");
      reply.body.put(state);
      reply.body.put("\"}");
      if (k == kind::die && a.on_die != nullptr) a.on_die(a.die_ctx);
      break;
    }
    default: {
      char name[max_capitalized_bytes];
      size_t n = capitalize(path.substr(1), name, sizeof name);
      write_greeting(reply.body, std::string_view(name, n));
    }
  }
}

void write_status(const app& a, bool html, core::http_reply& reply) {
  const char* state = a.draining ? "draining" : a.poisoned ? "poisoned" : "healthy";
  reply.status = a.draining ? 503 : a.poisoned ? 410 : 200;
  double uptime = static_cast<double>(uv_hrtime() - a.start_ns) / 1e9;
  char up[32];
  snprintf(up, sizeof up, "%.3f", uptime);
  core::buf_writer& w = reply.body;
  if (!html) {
    w.put("{\"instance\":\"");
    core::json_escape(w, a.instance);
    w.put("\",\"state\":\"");
    w.put(state);
    w.put("\",\"uptime_s\":");
    w.put(up);
    w.put(",\"requests\":");
    w.put_uint(a.requests);
    w.put(",\"version\":\"" STACK_VERSION "\"}");
    return;
  }
  reply.content_type = "text/html; charset=utf-8";
  w.put("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>hello ");
  html_escape(w, a.instance);
  w.put("</title></head>\n<body><h1>hello ");
  html_escape(w, a.instance);
  w.put("</h1>\n<table>\n<tr><th>state</th><td>");
  w.put(state);
  w.put("</td></tr>\n<tr><th>uptime</th><td>");
  w.put(up);
  w.put(" s</td></tr>\n<tr><th>requests served</th><td>");
  w.put_uint(a.requests);
  w.put("</td></tr>\n<tr><th>version</th><td>" STACK_VERSION "</td></tr>\n</table>\n");
  w.put(
      "<p>Try <a href=\"/poison\">/poison</a>, <a href=\"/antidote\">/antidote</a> and "
      "<a href=\"/die\">/die</a> (when chaos endpoints are on).</p>\n</body></html>\n");
}

void observe_request(void* ctx, const core::http_observation& o) {
  auto& a = *static_cast<app*>(ctx);
  ++a.requests;
  // The handler tagged the route it served; the server's own rejections are "other".
  route r =
      o.route < static_cast<uint8_t>(route::count) ? static_cast<route>(o.route) : route::other;
  a.metrics.observe(r, o.status, static_cast<double>(uv_hrtime() - o.start_ns) / 1e9);
}

}  // namespace hello
