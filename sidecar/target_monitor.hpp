// Everything the sidecar keeps about one target: its ring of past polls, its alert state and
// its metrics, and what happens to each poll result (slow check, record, ALERT/RECOVERED).
// One per target, sized at start-up; recording a result allocates nothing.
#pragma once

#include <cstdint>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "poller.hpp"
#include "probe_metrics.hpp"

namespace sidecar {

class target_monitor {
 public:
  target_monitor(const char* target, uint64_t window_ms, uint64_t interval_ms, uint32_t fail_after,
                 uint32_t recover_after, uint64_t slow_ms)
      : target_(target),
        window_ms_(window_ms),
        slow_ms_(slow_ms),
        ring_(latency_ring::capacity_for(window_ms, interval_ms)),
        alerts_(fail_after, recover_after) {}

  // One poll's result at now_ms: a healthy answer slower than slow_ms becomes `slow`; the
  // sample goes to the ring and the metrics; ALERT / RECOVERED lines are logged at once.
  void record(const poll_result& result, uint64_t now_ms);
  // The window ending now: logged as REPORT and kept for the metrics.
  window_stats report(uint64_t now_ms);

  const char* target() const { return target_; }
  health_state state() const { return alerts_.state(); }
  const latency_ring& ring() const { return ring_; }
  latency_ring& ring() { return ring_; }
  const probe_metrics& metrics() const { return metrics_; }
  uint64_t window_ms() const { return window_ms_; }

 private:
  const char* target_;
  uint64_t window_ms_;
  uint64_t slow_ms_;
  latency_ring ring_;
  alert_state alerts_;
  probe_metrics metrics_;
};

}  // namespace sidecar
