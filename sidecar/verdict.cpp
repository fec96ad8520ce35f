#include "verdict.hpp"

#include <cstdio>

#include "health_parse.hpp"

namespace sidecar {

const char* outcome_name(outcome o) {
  switch (o) {
    case outcome::ok: return "ok";
    case outcome::status: return "status";
    case outcome::unhealthy: return "unhealthy";
    case outcome::slow: return "slow";
    case outcome::timeout: return "timeout";
    case outcome::connect: return "connect";
    case outcome::dns: return "dns";
    case outcome::body: return "body";
  }
  return "unknown";
}

const char* state_name(health_state s) {
  switch (s) {
    case health_state::unknown: return "unknown";
    case health_state::healthy: return "healthy";
    case health_state::degraded: return "degraded";
    case health_state::down: return "down";
  }
  return "unknown";
}

health_state state_of(outcome o) {
  switch (o) {
    case outcome::ok: return health_state::healthy;
    case outcome::unhealthy:
    case outcome::slow: return health_state::degraded;
    default: return health_state::down;
  }
}

namespace {

// Sets the outcome and its detail; returns r for the caller's return.
template <class... Args>
poll_result& fail(poll_result& r, outcome o, const char* format, Args... args) {
  r.result = o;
  r.state = state_of(o);
  snprintf(r.detail, sizeof r.detail, format, args...);
  return r;
}

}  // namespace

poll_result judge(const poll_facts& facts, const check_policy& policy) {
  poll_result r;
  r.http_status = facts.http_status;
  r.rtt = facts.round_trip;
  r.has_rtt = facts.http_status != 0;
  const char* why = facts.error_text != nullptr ? facts.error_text : "";
  switch (facts.error) {
    case transport_error::none: break;
    case transport_error::timeout:
      return fail(r, outcome::timeout, "no answer within %llums",
                  static_cast<unsigned long long>(facts.timeout_ms));
    case transport_error::resolve: return fail(r, outcome::dns, "%s", why);
    case transport_error::body_too_large:
      return fail(r, outcome::body, "body larger than %zu bytes", max_health_body);
    case transport_error::connect: return fail(r, outcome::connect, "%s", why);
  }
  if (policy.kind == check_kind::http) {
    if (r.http_status < 200 || r.http_status > 299) {
      return fail(r, outcome::status, "HTTP %ld", r.http_status);
    }
  } else {
    if (r.http_status != 200) return fail(r, outcome::status, "HTTP %ld", r.http_status);
    health_reading reading;
    if (const char* err = parse_health(facts.body, &reading)) {
      // The raw start of the body; the log line escapes it (once) for text or JSON.
      int shown = static_cast<int>(facts.body.size() < 40 ? facts.body.size() : 40);
      return fail(r, outcome::body, "%s: %.*s", err, shown,
                  facts.body.empty() ? "" : facts.body.data());
    }
    r.has_latency = true;
    r.latency = reading.latency;
    r.healthy = reading.healthy;
    if (!reading.healthy) {
      return fail(r, outcome::unhealthy, "healthy=false latency=%.6f", reading.latency);
    }
  }
  if (policy.slow_ms > 0 && r.rtt * 1e3 > static_cast<double>(policy.slow_ms)) {
    return fail(r, outcome::slow, "round trip %.3fms over %llums", r.rtt * 1e3,
                static_cast<unsigned long long>(policy.slow_ms));
  }
  return r;
}

}  // namespace sidecar
