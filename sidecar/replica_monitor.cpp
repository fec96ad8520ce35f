#include "replica_monitor.hpp"

#include <cstdio>

#include "report.hpp"

namespace sidecar {

void replica_monitor::reset(const char* replica) {
  snprintf(replica_, sizeof replica_, "%s", replica);
  ring_.clear();
  alerts_ = alert_state(fail_after_, recover_after_);
  metrics_ = probe_metrics{};
}

poll_sample replica_monitor::record(const poll_result& r, uint64_t now_ms) {
  poll_sample s;
  s.at_ms = now_ms;
  s.has_latency = r.has_latency;
  s.latency = r.latency;
  s.has_rtt = r.has_rtt;
  s.rtt = r.rtt;
  s.failed = r.result != outcome::ok;
  s.result = r.result;
  s.status = static_cast<uint16_t>(r.http_status);
  ring_.push(s);
  metrics_.record(r);
  alert_step step = alerts_.on_result(r.result, now_ms);
  if (step.alert) log_alert(r, target_, replica_, alerts_.state(), step.consecutive);
  if (step.recovered) log_recovered(target_, replica_, step);
  return s;
}

window_stats replica_monitor::report(uint64_t now_ms, bool log) {
  window_stats st = ring_.window(now_ms, window_ms_);
  metrics_.window = st;
  metrics_.has_window = true;
  if (log) {
    report_labels who{target_, replica_, 0, kind_};
    log_report(who, st, window_ms_, alerts_.state(), alerts_.reason());
  }
  return st;
}

}  // namespace sidecar
