#include "health.hpp"

#include <sys/random.h>
#include <uv.h>

namespace hello {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

health_model::health_model(double threshold, uint64_t seed) : threshold_(threshold) {
  for (uint64_t& s : state_) s = splitmix64(seed);
  last_ = next_uniform();
}

double health_model::next_uniform() {
  // xoshiro256**: fast, good statistical quality, no allocation.
  uint64_t result = rotl(state_[1] * 5, 7) * 9;
  uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  // Top 53 bits -> a double in [0, 1), like Python's random.random().
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

void health_model::record_request() {
  last_ = next_uniform();
}

void health_model::write_json(core::buf_writer& w) const {
  w.put(healthy() ? "{\"healthy\":true,\"latency\":" : "{\"healthy\":false,\"latency\":");
  w.put_double(last_);
  w.put('}');
}

uint64_t random_seed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof seed)) {
    seed = uv_hrtime() ^ (static_cast<uint64_t>(uv_os_getpid()) << 32);
  }
  return seed;
}

}  // namespace hello
