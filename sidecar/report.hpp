// The sidecar's REPORT, ALERT and RECOVERED events, as text ("key=value") or JSON lines
// (SIDECAR_LOG_FORMAT), built from the window statistics and poll results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "log.hpp"
#include "poller.hpp"

namespace sidecar {

// Text: "window=60s state=healthy samples=6 failures=1 best=0.012345s worst=0.912345s
// avg=0.456789s rtt_p50=1.234ms rtt_p95=... rtt_p99=... rtt_max=...", or with no latency
// sample "... samples=0 failures=6 no latency samples in the past 60s".
size_t format_report(core::log_format format, char* out, size_t size, const window_stats& st,
                     uint64_t window_ms, health_state state);
// "reason=status target=URL state=down consecutive=3 detail=\"HTTP 503\"".
size_t format_alert(core::log_format format, char* out, size_t size, const poll_result& r,
                    const char* target, health_state state, uint32_t consecutive);
// "target=URL state=healthy after=12.500s failures=3".
size_t format_recovered(core::log_format format, char* out, size_t size, const char* target,
                        const alert_step& step);

void log_report(const window_stats& st, uint64_t window_ms, health_state state);
void log_alert(const poll_result& r, const char* target, health_state state, uint32_t consecutive);
void log_recovered(const char* target, const alert_step& step);

}  // namespace sidecar
