// What one poll means: the one place where the sidecar decides "healthy".
//
// The transport (poller, resolver) reports facts only: the HTTP status, the body, the measured
// round trip, or the kind of error that stopped it. judge() turns those facts into the verdict:
// the outcome (one word, used by ALERT, REPORT and the metrics), a one-line detail, the
// /health reading, and the state this one poll stands for (healthy, degraded, down). Pure: no
// clock, no I/O, no allocation; tests/unit/sidecar/verdict_test.cpp holds its table of cases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sidecar {

// What a good answer is. health: 200 with a /health body ({"healthy":true,"latency":...});
// http: any 2xx after at most 5 redirects (an external probe; the body is read and dropped).
enum class check_kind : uint8_t { health, http };

// How one poll ended, as the one word ALERT and REPORT lines and the metrics use.
enum class outcome : uint8_t { ok, status, unhealthy, slow, timeout, connect, dns, body };
inline constexpr size_t outcome_count = 8;
const char* outcome_name(outcome o);  // "ok", "status", ...

// A replica's (or a target's) state: of one poll (the verdict), or over time (alert_state).
enum class health_state : uint8_t { unknown, healthy, degraded, down };
const char* state_name(health_state s);

// The state a poll with this outcome stands for: ok is healthy; an answer that came but says
// healthy:false or came too slowly is degraded; no valid 200 answer is down.
health_state state_of(outcome o);

// The largest /health body read; a larger one is a failed poll (outcome body).
inline constexpr size_t max_health_body = 16 * 1024;
// The longest detail text (libcurl's error buffer size).
inline constexpr size_t max_detail = 256;

// Why a transfer (or a lookup) ended without a whole HTTP answer.
enum class transport_error : uint8_t {
  none,            // an HTTP answer came (any status)
  timeout,         // the poll's time ran out
  resolve,         // the host name could not be resolved
  connect,         // refused, reset, closed mid-answer, TLS, anything else
  body_too_large,  // a /health body over max_health_body
};

// What the transport saw. body and error_text are borrowed: valid during the callback only.
struct poll_facts {
  transport_error error = transport_error::none;
  long http_status = 0;         // 0: no HTTP answer
  double round_trip = 0;        // seconds, measured by the transport (libcurl's total time)
  std::string_view body;        // the answer's body (health checks; probes drop theirs)
  const char* error_text = "";  // what the transport said about the error, one line
  uint64_t timeout_ms = 0;      // the poll's time limit (for the timeout's detail)
};

// How to judge: what a good answer is, and how slow a healthy one may be (0: no limit).
struct check_policy {
  check_kind kind = check_kind::health;
  uint64_t slow_ms = 0;
};

// The verdict on one poll, with the measurements the ring and the metrics keep.
struct poll_result {
  outcome result = outcome::ok;
  health_state state = health_state::healthy;
  long http_status = 0;
  bool has_latency = false;
  double latency = 0;  // reported by /health, seconds
  bool healthy = false;
  bool has_rtt = false;  // an HTTP answer came back (any status)
  double rtt = 0;        // measured round trip, seconds
  char detail[max_detail] = "";
};

// The verdict, in this order: a transport error (timeout, dns, body, connect); then the status
// (health: 200 only; http: any 2xx); then the /health body (body when it does not parse,
// unhealthy when it says healthy:false); then the round trip against policy.slow_ms (slow).
poll_result judge(const poll_facts& facts, const check_policy& policy);

}  // namespace sidecar
