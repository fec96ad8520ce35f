#include "alert_state.hpp"

namespace sidecar {

alert_step alert_state::on_result(outcome o, uint64_t now_ms) {
  alert_step step;
  if (o == outcome::ok) {
    fails_ = 0;
    ++oks_;
    if (!alerting_) {
      state_ = health_state::healthy;
      reason_ = outcome::ok;
      run_failures_ = 0;
    } else if (oks_ >= recover_after_) {
      step.recovered = true;
      step.bad_for_ms = now_ms - first_fail_ms_;
      step.failures_in_run = run_failures_;
      alerting_ = false;
      run_failures_ = 0;
      state_ = health_state::healthy;
      reason_ = outcome::ok;
    }
    return step;
  }
  if (fails_ == 0 && !alerting_) {
    first_fail_ms_ = now_ms;
    run_failures_ = 0;
  }
  ++fails_;
  ++run_failures_;
  oks_ = 0;
  step.consecutive = fails_;
  health_state failed_state = state_of(o);
  if (fails_ >= fail_after_) {
    step.alert = true;
    alerting_ = true;
    state_ = failed_state;
    reason_ = o;
  } else if (state_ == health_state::unknown) {
    // Not confirmed enough to alert, but there is no good poll to stand on either.
    state_ = failed_state;
    reason_ = o;
  }
  return step;
}

}  // namespace sidecar
