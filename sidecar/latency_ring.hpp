// The sidecar's memory of the past window: a fixed ring of poll outcomes, sized once at
// start-up (window / interval + 2 slots), overwritten oldest-first, read without allocating.
// Like Redis's latency.h time series: a fixed array indexed modulo its size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "verdict.hpp"

namespace sidecar {

struct poll_sample {
  uint64_t at_ms = 0;            // monotonic completion time of the poll
  double latency = 0;            // the latency /health reported, seconds (valid if has_latency)
  double rtt = 0;                // measured round trip, seconds (valid if has_rtt)
  bool has_latency = false;      // the answer was a 200 with a parsable body
  bool has_rtt = false;          // an HTTP answer came back (any status)
  bool failed = false;           // the poll failed (alerted or not)
  outcome result = outcome::ok;  // how it ended
  uint16_t status = 0;           // HTTP status of the answer (0: none)
};

struct window_stats {
  size_t polls = 0;
  size_t samples = 0;   // polls with a reported latency
  size_t failures = 0;  // polls that raised an alert
  double best = 0;
  double worst = 0;
  double avg = 0;
  size_t rtts = 0;  // polls with a measured round trip
  double rtt_p50 = 0;
  double rtt_p95 = 0;
  double rtt_p99 = 0;
  double rtt_max = 0;
};

class latency_ring {
 public:
  explicit latency_ring(size_t capacity);

  // Slots needed to hold every poll of one window, with room for timer jitter.
  static size_t capacity_for(uint64_t window_ms, uint64_t interval_ms) {
    return static_cast<size_t>(window_ms / interval_ms) + 2;
  }

  void push(const poll_sample& s);
  void clear() { next_ = size_ = 0; }
  // Statistics of the samples with now_ms - window_ms < at_ms <= now_ms.
  // Percentiles are nearest-rank over a scratch array sized with the ring: no allocation.
  window_stats window(uint64_t now_ms, uint64_t window_ms);

  size_t size() const { return size_; }

 private:
  std::unique_ptr<poll_sample[]> slots_;
  std::unique_ptr<double[]> scratch_;
  size_t capacity_;
  size_t next_ = 0;
  size_t size_ = 0;
};

}  // namespace sidecar
