// hello's routes: GET /, /<name>, /health, /status, /metrics, and the health playground's
// /poison, /antidote, /die (seed 004); everything else is a JSON 404/405/400.
#pragma once

#include "health.hpp"
#include "hello_metrics.hpp"
#include "http_server.hpp"

namespace hello {

struct app {
  explicit app(health_model h) : health(h) {}

  health_model health;
  bool draining = false;                // stopping soon: /health answers 503 so balancers move away
  bool poisoned = false;                // /poison: /health 503, /status 410, until /antidote
  bool chaos = true;                    // /poison, /antidote, /die enabled
  std::string_view instance = "hello";  // X-Served-By, /status
  uint64_t start_ns = 0;                // uv_hrtime() at start
  double start_unix = 0;
  uint64_t requests = 0;  // answered so far (handler and rejections)
  hello_metrics metrics;
  const core::http_server* server = nullptr;  // for connection gauges
  void (*on_die)(void* ctx) = nullptr;        // /die: end the process after answering
  void* die_ctx = nullptr;
};

// The server's observer hook (ctx is an app*): counts every answered request for /metrics.
void observe_request(void* ctx, const core::http_observation& o);

// The http_handler for core::http_server (ctx is an app*).
void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply);

// The path of a request-target: origin-form "/p?q" -> "/p"; absolute-form
// "http://host/p?q" -> "/p"; anything else (authority-form, "*") -> empty.
std::string_view target_path(std::string_view target);

}  // namespace hello
