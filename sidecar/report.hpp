// The sidecar's REPORT, ALERT, RECOVERED and REPLICA events, as text ("key=value") or JSON
// lines (SIDECAR_LOG_FORMAT), built from the window statistics and poll results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "log.hpp"
#include "poller.hpp"

namespace sidecar {

// Whose REPORT: one replica (replica set), or a target's total over `replicas` replicas.
struct report_labels {
  const char* target;
  const char* replica = nullptr;
  size_t replicas = 0;
  check_kind kind = check_kind::health;
};

// Text, one replica: "target=URL replica=10.0.0.3:8080 window=60s state=healthy samples=6
// failures=1 best=0.012345s worst=0.912345s avg=0.456789s rtt_p50=1.234ms rtt_p95=...
// rtt_p99=... rtt_max=..."; a total has "replicas=3" instead of "replica=..."; with no latency
// sample "... samples=0 failures=6 no latency samples in the past 60s". An external probe
// (check_kind::http) has "polls=N failures=M" and the round trips only.
// A degraded or down state is followed by its reason ("state=down reason=timeout").
size_t format_report(core::log_format format, char* out, size_t size, const report_labels& who,
                     const window_stats& st, uint64_t window_ms, health_state state,
                     outcome reason = outcome::ok);
// "reason=status target=URL replica=10.0.0.3:8080 state=down consecutive=3 detail=\"HTTP 503\"".
size_t format_alert(core::log_format format, char* out, size_t size, const poll_result& r,
                    const char* target, const char* replica, health_state state,
                    uint32_t consecutive);
// "target=URL replica=10.0.0.3:8080 state=healthy after=12.500s failures=3".
size_t format_recovered(core::log_format format, char* out, size_t size, const char* target,
                        const char* replica, const alert_step& step);

void log_report(const report_labels& who, const window_stats& st, uint64_t window_ms,
                health_state state, outcome reason = outcome::ok);
void log_alert(const poll_result& r, const char* target, const char* replica, health_state state,
               uint32_t consecutive);
void log_recovered(const char* target, const char* replica, const alert_step& step);
// "target=URL replica=10.0.0.4:8080 change=joined replicas=4" (or change=left).
void log_replica_change(const char* target, const char* replica, const char* change,
                        size_t replicas);

}  // namespace sidecar
