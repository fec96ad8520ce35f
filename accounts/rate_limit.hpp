// Brute-force regulation of failed logins, as Authelia's "regulation" does it: a key (a client
// address, or an account's e-mail) that fails max_retries times within find_time is banned for
// ban_time; a ban answers 429 with Retry-After before any password work is done. A success
// clears the key's failures. Unknown e-mails are counted like known ones (no hint that an
// account exists).
//
// A fixed table (no allocation after construction): keys are hashed with SipHash under a
// random key (crypto_shorthash), so a client cannot aim its entries at someone else's slot;
// a few slots are probed and, when all are taken, the one whose window is oldest is reused.
// A ban is therefore not guaranteed under a flood of distinct keys larger than the table, which
// is what nginx's limit_req in front is for.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace accounts {

struct regulation {
  uint32_t max_retries = 5;
  uint64_t find_time_ms = 120'000;
  uint64_t ban_time_ms = 300'000;
};

class rate_limiter {
 public:
  explicit rate_limiter(regulation r, size_t slots = 4096) : r_(r), slots_(slots == 0 ? 1 : slots) {
    crypto_shorthash_keygen(key_);
  }

  // 0 when allowed, else the milliseconds until the ban ends.
  uint64_t banned_for(std::string_view k, uint64_t now_ms) const {
    const slot* s = find(hash(k));
    if (s == nullptr || now_ms >= s->banned_until) return 0;
    return s->banned_until - now_ms;
  }

  // Counts a failure; returns the ban's remaining milliseconds if this failure started one.
  uint64_t fail(std::string_view k, uint64_t now_ms) {
    uint64_t h = hash(k);
    slot* s = find(h);
    if (s == nullptr) s = take(h, now_ms);
    if (now_ms >= s->window_start + r_.find_time_ms || now_ms < s->window_start) {
      s->window_start = now_ms;
      s->failures = 0;
    }
    if (++s->failures >= r_.max_retries) {
      s->banned_until = now_ms + r_.ban_time_ms;
      s->failures = 0;
      s->window_start = now_ms;
      return r_.ban_time_ms;
    }
    return 0;
  }

  void succeed(std::string_view k) {
    if (slot* s = find(hash(k))) *s = slot{};
  }

  const regulation& rules() const { return r_; }

 private:
  static constexpr size_t kProbe = 8;
  struct slot {
    uint64_t h = 0;  // 0: free
    uint64_t window_start = 0;
    uint64_t banned_until = 0;
    uint32_t failures = 0;
  };

  uint64_t hash(std::string_view k) const {
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, reinterpret_cast<const uint8_t*>(k.data()), k.size(), key_);
    uint64_t h = 0;
    for (size_t i = 0; i < sizeof h; ++i) h = (h << 8) | out[i];
    return h == 0 ? 1 : h;
  }
  slot* find(uint64_t h) {
    for (size_t i = 0; i < kProbe; ++i) {
      slot& s = slots_[(h + i) % slots_.size()];
      if (s.h == h) return &s;
    }
    return nullptr;
  }
  const slot* find(uint64_t h) const { return const_cast<rate_limiter*>(this)->find(h); }
  slot* take(uint64_t h, uint64_t now_ms) {
    slot* victim = nullptr;
    for (size_t i = 0; i < kProbe; ++i) {
      slot& s = slots_[(h + i) % slots_.size()];
      bool idle =
          s.h == 0 || (now_ms >= s.banned_until && now_ms >= s.window_start + r_.find_time_ms);
      if (idle) {
        victim = &s;
        break;
      }
      if (victim == nullptr || s.window_start < victim->window_start) victim = &s;
    }
    *victim = slot{};
    victim->h = h;
    victim->window_start = now_ms;
    return victim;
  }

  regulation r_;
  std::vector<slot> slots_;
  uint8_t key_[crypto_shorthash_KEYBYTES];
};

}  // namespace accounts
