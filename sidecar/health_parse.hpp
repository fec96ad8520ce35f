// Reads hello's /health answer: {"healthy":true,"latency":0.79...}. Strict JSON (RFC 8259,
// core::json_doc): the whole body must be one object; unknown members are allowed and skipped;
// `healthy` must be a boolean and `latency` a finite number >= 0. No allocation.
#pragma once

#include <string_view>

namespace sidecar {

struct health_reading {
  bool healthy = false;
  double latency = 0;
};

// Returns nullptr on success, else a short description of what is wrong with the body (valid
// until the next call).
const char* parse_health(std::string_view body, health_reading* out);

}  // namespace sidecar
