// The text of the sidecar's REPORT and ALERT lines (after the "<time> sidecar EVENT" prefix).
#pragma once

#include <cstddef>
#include <cstdint>

#include "latency_ring.hpp"
#include "poller.hpp"

namespace sidecar {

// "window=60s samples=6 failures=1 best=0.012345s worst=0.912345s avg=0.456789s", or with no
// sample "window=60s samples=0 failures=6 no latency samples in the past 60s".
size_t format_report(char* out, size_t size, const window_stats& st, uint64_t window_ms);

// "reason=status target=http://hello:8080/health detail=\"HTTP 503\"".
size_t format_alert(char* out, size_t size, const poll_result& r, const char* target);

}  // namespace sidecar
