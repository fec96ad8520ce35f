// Everything the sidecar keeps about one probed address (one replica of a target, or the
// target itself): its ring of past polls, its alert state and its metrics, and what happens to
// each verdict (record, ALERT/RECOVERED). Sized at start-up; recording a verdict or moving the
// monitor to another replica allocates nothing.
#pragma once

#include <cstdint>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "probe_metrics.hpp"
#include "verdict.hpp"

namespace sidecar {

class replica_monitor {
 public:
  replica_monitor(const char* target, check_kind kind, uint64_t window_ms, uint64_t interval_ms,
                  uint32_t fail_after, uint32_t recover_after)
      : target_(target),
        kind_(kind),
        window_ms_(window_ms),
        fail_after_(fail_after),
        recover_after_(recover_after),
        ring_(latency_ring::capacity_for(window_ms, interval_ms)),
        alerts_(fail_after, recover_after) {}

  // Starts over for another replica: empty ring, unknown state, zeroed metrics.
  void reset(const char* replica);

  // One poll's verdict at now_ms: the sample goes to the ring and the metrics; ALERT /
  // RECOVERED lines are logged at once. Returns the sample as recorded (for a target's total).
  poll_sample record(const poll_result& result, uint64_t now_ms);
  // The window ending now: logged as REPORT (for this replica when `log` is set) and kept for
  // the metrics.
  window_stats report(uint64_t now_ms, bool log = true);

  const char* replica() const { return replica_; }
  health_state state() const { return alerts_.state(); }
  outcome reason() const { return alerts_.reason(); }
  const probe_metrics& metrics() const { return metrics_; }

 private:
  const char* target_;
  check_kind kind_;
  uint64_t window_ms_;
  uint32_t fail_after_;
  uint32_t recover_after_;
  char replica_[64] = "";
  latency_ring ring_;
  alert_state alerts_;
  probe_metrics metrics_;
};

}  // namespace sidecar
