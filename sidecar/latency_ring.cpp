#include "latency_ring.hpp"

#include <algorithm>
#include <cmath>

namespace sidecar {

latency_ring::latency_ring(size_t capacity)
    : slots_(new poll_sample[capacity == 0 ? 1 : capacity]),
      scratch_(new double[capacity == 0 ? 1 : capacity]),
      capacity_(capacity == 0 ? 1 : capacity) {}

void latency_ring::push(const poll_sample& s) {
  slots_[next_] = s;
  next_ = (next_ + 1) % capacity_;
  if (size_ < capacity_) ++size_;
}

window_stats latency_ring::window(uint64_t now_ms, uint64_t window_ms) {
  window_stats st;
  double sum = 0;
  for (size_t k = 0; k < size_; ++k) {
    const poll_sample& s = slots_[(next_ + capacity_ - 1 - k) % capacity_];
    if (s.at_ms > now_ms) continue;
    if (now_ms - s.at_ms >= window_ms) break;  // newest first: the rest is older still
    ++st.polls;
    if (s.failed) ++st.failures;
    if (s.has_rtt) scratch_[st.rtts++] = s.rtt;
    if (!s.has_latency) continue;
    if (st.samples == 0 || s.latency < st.best) st.best = s.latency;
    if (st.samples == 0 || s.latency > st.worst) st.worst = s.latency;
    sum += s.latency;
    ++st.samples;
  }
  if (st.samples > 0) st.avg = sum / static_cast<double>(st.samples);
  if (st.rtts > 0) {
    std::sort(scratch_.get(), scratch_.get() + st.rtts);
    auto rank = [&](double q) {  // nearest rank: the smallest value with >= q of the samples
      size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(st.rtts)));
      return scratch_[k == 0 ? 0 : k - 1];
    };
    st.rtt_p50 = rank(0.50);
    st.rtt_p95 = rank(0.95);
    st.rtt_p99 = rank(0.99);
    st.rtt_max = scratch_[st.rtts - 1];
  }
  return st;
}

}  // namespace sidecar
