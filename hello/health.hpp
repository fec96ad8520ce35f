// The simulated health model of the original service: every answered request "took" a random
// latency in [0, 1) seconds; /health reports the latency of the previous request and is
// healthy while it stays below the threshold.
#pragma once

#include <cstdint>

#include "response.hpp"

namespace hello {

class health_model {
 public:
  // threshold in [0, 1]: 0 makes every report unhealthy, 1 every report healthy.
  explicit health_model(double threshold, uint64_t seed);

  // Draws the latency of the request just answered (called once per request).
  void record_request();
  double last_latency() const { return last_; }
  bool healthy() const { return last_ < threshold_; }
  double threshold() const { return threshold_; }

  // {"healthy":true,"latency":0.7978267010781679}
  void write_json(core::buf_writer& w) const;

 private:
  double next_uniform();

  double threshold_;
  uint64_t state_[4];  // xoshiro256** state
  double last_;
};

// A seed from the kernel's entropy (falls back to the clock).
uint64_t random_seed();

}  // namespace hello
