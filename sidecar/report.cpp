#include "report.hpp"

#include <cstdio>

#include "config.hpp"
#include "log.hpp"

namespace sidecar {

static size_t clamp(int n, size_t size) {
  if (n < 0) return 0;
  return static_cast<size_t>(n) < size ? static_cast<size_t>(n) : size - 1;
}

size_t format_report(char* out, size_t size, const window_stats& st, uint64_t window_ms) {
  char window[32];
  core::format_duration(window_ms, window, sizeof window);
  if (st.samples == 0) {
    return clamp(
        snprintf(out, size, "window=%s samples=0 failures=%zu no latency samples in the past %s",
                 window, st.failures, window),
        size);
  }
  return clamp(
      snprintf(out, size, "window=%s samples=%zu failures=%zu best=%.6fs worst=%.6fs avg=%.6fs",
               window, st.samples, st.failures, st.best, st.worst, st.avg),
      size);
}

size_t format_alert(char* out, size_t size, const poll_result& r, const char* target) {
  char detail[2 * sizeof r.detail];
  core::log_escape(r.detail, detail, sizeof detail);
  char url[256];
  core::log_escape(target, url, sizeof url);
  return clamp(
      snprintf(out, size, "reason=%s target=%s detail=\"%s\"", outcome_name(r.result), url, detail),
      size);
}

}  // namespace sidecar
