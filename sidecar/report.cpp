#include "report.hpp"

#include <cstdio>

#include "config.hpp"

namespace sidecar {
namespace {

// Each event is described once, as fields; format_* render them, log_* print them.
template <class F>
size_t with_report_fields(const report_labels& who, const window_stats& st, uint64_t window_ms,
                          health_state state, outcome reason, F f) {
  char window[32];
  core::format_duration(window_ms, window, sizeof window);
  char note[64];
  snprintf(note, sizeof note, "no latency samples in the past %s", window);
  using core::log_field;
  log_field fields[16];
  size_t n = 0;
  fields[n++] = log_field::word("target", who.target);
  if (who.replica != nullptr) {
    fields[n++] = log_field::word("replica", who.replica);
  } else {
    fields[n++] = log_field::num("replicas", who.replicas);
  }
  fields[n++] = log_field::word("window", window);
  fields[n++] = log_field::word("state", state_name(state));
  bool bad = state == health_state::degraded || state == health_state::down;
  if (bad && reason != outcome::ok) fields[n++] = log_field::word("reason", outcome_name(reason));
  if (who.kind == check_kind::http) {
    // An external probe: no /health latency, only up/down and the round trip.
    fields[n++] = log_field::num("polls", st.polls);
    fields[n++] = log_field::num("failures", st.failures);
  } else {
    fields[n++] = log_field::num("samples", st.samples);
    fields[n++] = log_field::num("failures", st.failures);
  }
  if (who.kind == check_kind::health && st.samples > 0) {
    fields[n++] = log_field::real("best", st.best, 6, "s");
    fields[n++] = log_field::real("worst", st.worst, 6, "s");
    fields[n++] = log_field::real("avg", st.avg, 6, "s");
  }
  if (st.rtts > 0) {
    fields[n++] = log_field::real("rtt_p50", st.rtt_p50 * 1e3, 3, "ms");
    fields[n++] = log_field::real("rtt_p95", st.rtt_p95 * 1e3, 3, "ms");
    fields[n++] = log_field::real("rtt_p99", st.rtt_p99 * 1e3, 3, "ms");
    fields[n++] = log_field::real("rtt_max", st.rtt_max * 1e3, 3, "ms");
  }
  if (who.kind == check_kind::health && st.samples == 0)
    fields[n++] = log_field::note("note", note);
  return f(fields, n);
}

template <class F>
size_t with_alert_fields(const poll_result& r, const char* target, const char* replica,
                         health_state state, uint32_t consecutive, F f) {
  using core::log_field;
  log_field fields[] = {
      log_field::word("reason", outcome_name(r.result)),
      log_field::word("target", target),
      log_field::word("replica", replica),
      log_field::word("state", state_name(state)),
      log_field::num("consecutive", consecutive),
      log_field::text("detail", r.detail),
  };
  return f(fields, sizeof fields / sizeof fields[0]);
}

template <class F>
size_t with_recovered_fields(const char* target, const char* replica, const alert_step& step, F f) {
  using core::log_field;
  log_field fields[] = {
      log_field::word("target", target),
      log_field::word("replica", replica),
      log_field::word("state", state_name(health_state::healthy)),
      log_field::real("after", static_cast<double>(step.bad_for_ms) / 1e3, 3, "s"),
      log_field::num("failures", step.failures_in_run),
  };
  return f(fields, sizeof fields / sizeof fields[0]);
}

auto formatter(core::log_format format, char* out, size_t size) {
  return [=](const core::log_field* fields, size_t n) {
    return core::format_fields(format, fields, n, out, size);
  };
}

auto logger(const char* event) {
  return [=](const core::log_field* fields, size_t n) {
    core::log_fields(event, fields, n);
    return size_t{0};
  };
}

}  // namespace

size_t format_report(core::log_format format, char* out, size_t size, const report_labels& who,
                     const window_stats& st, uint64_t window_ms, health_state state,
                     outcome reason) {
  return with_report_fields(who, st, window_ms, state, reason, formatter(format, out, size));
}

size_t format_alert(core::log_format format, char* out, size_t size, const poll_result& r,
                    const char* target, const char* replica, health_state state,
                    uint32_t consecutive) {
  return with_alert_fields(r, target, replica, state, consecutive, formatter(format, out, size));
}

size_t format_recovered(core::log_format format, char* out, size_t size, const char* target,
                        const char* replica, const alert_step& step) {
  return with_recovered_fields(target, replica, step, formatter(format, out, size));
}

void log_report(const report_labels& who, const window_stats& st, uint64_t window_ms,
                health_state state, outcome reason) {
  with_report_fields(who, st, window_ms, state, reason, logger("REPORT"));
}

void log_alert(const poll_result& r, const char* target, const char* replica, health_state state,
               uint32_t consecutive) {
  with_alert_fields(r, target, replica, state, consecutive, logger("ALERT"));
}

void log_recovered(const char* target, const char* replica, const alert_step& step) {
  with_recovered_fields(target, replica, step, logger("RECOVERED"));
}

void log_replica_change(const char* target, const char* replica, const char* change,
                        size_t replicas) {
  using core::log_field;
  log_field fields[] = {
      log_field::word("target", target),
      log_field::word("replica", replica),
      log_field::word("change", change),
      log_field::num("replicas", replicas),
  };
  core::log_fields("REPLICA", fields, sizeof fields / sizeof fields[0]);
}

}  // namespace sidecar
