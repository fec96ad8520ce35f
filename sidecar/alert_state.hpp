// A replica's state over time as the sidecar reports it, and when to alert and recover. What
// one poll stands for (healthy, degraded, down) is the verdict's (verdict.hpp: state_of); this
// decides only when the state changes:
//
// Below the threshold a failure leaves a known state as it is (no flapping), but takes the
// state out of "unknown" (before any poll). A failure alerts once `fail_after` polls in a row have
// failed (1 = every failure, as the assignment asks), and every further failure alerts too, saying
// how many in a row. After an alert, `recover_after` good polls in a row bring a single RECOVERED
// with the time it was bad.
#pragma once

#include <cstdint>

#include "verdict.hpp"

namespace sidecar {

struct alert_step {
  bool alert = false;            // print an ALERT for this poll
  bool recovered = false;        // print RECOVERED
  uint32_t consecutive = 0;      // failures in a row, this one included (0 on success)
  uint64_t bad_for_ms = 0;       // with recovered: from the first failure to this poll
  uint32_t failures_in_run = 0;  // with recovered: how many polls failed in that run
};

class alert_state {
 public:
  alert_state(uint32_t fail_after, uint32_t recover_after)
      : fail_after_(fail_after < 1 ? 1 : fail_after),
        recover_after_(recover_after < 1 ? 1 : recover_after) {}

  alert_step on_result(outcome o, uint64_t now_ms);
  health_state state() const { return state_; }
  // Why the state is degraded or down: the failure that put it there (ok otherwise).
  outcome reason() const { return reason_; }

 private:
  uint32_t fail_after_;
  uint32_t recover_after_;
  health_state state_ = health_state::unknown;
  outcome reason_ = outcome::ok;
  bool alerting_ = false;
  uint32_t fails_ = 0;
  uint32_t oks_ = 0;
  uint32_t run_failures_ = 0;
  uint64_t first_fail_ms_ = 0;
};

}  // namespace sidecar
