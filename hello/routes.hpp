// hello's routes: GET / , GET /health, GET /<name>; everything else is a JSON 404/405/400.
#pragma once

#include "health.hpp"
#include "http_server.hpp"

namespace hello {

struct app {
  health_model health;
  bool draining = false;  // stopping soon: /health answers 503 so balancers move away
};

// The http_handler for core::http_server (ctx is an app*).
void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply);

// The path of a request-target: origin-form "/p?q" -> "/p"; absolute-form
// "http://host/p?q" -> "/p"; anything else (authority-form, "*") -> empty.
std::string_view target_path(std::string_view target);

}  // namespace hello
