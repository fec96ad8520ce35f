// A small fixed-size cache of tokens already verified, for GET /auth: nginx asks once per
// protected request, and a client reuses its token, so most checks are a hash and a compare
// instead of an Ed25519 verification.
//
// Rules: the key is the token's BLAKE2b-256 hash (the whole token, so a changed byte is another
// key; base64url decoding is canonical, so one token has one spelling); an entry is returned
// only while now < exp (stricter than the verifier's skew allowance: the cache never accepts a
// token after its exp); only tokens already valid (nbf <= now) are put in. Direct-mapped:
// a colliding token replaces the entry; nothing allocates after construction.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "token.hpp"

namespace accounts {

class token_cache {
 public:
  explicit token_cache(size_t slots = 1024) : entries_(slots == 0 ? 1 : slots) {}

  struct key {
    uint8_t h[32];
  };
  static key key_of(std::string_view token) {
    key k;
    crypto_generichash(k.h, sizeof k.h, reinterpret_cast<const uint8_t*>(token.data()),
                       token.size(), nullptr, 0);
    return k;
  }

  // The verified token for k, if cached and now < its exp.
  const verified_token* find(const key& k, int64_t now) const {
    const entry& e = slot(k);
    if (!e.used || memcmp(e.k.h, k.h, sizeof k.h) != 0) return nullptr;
    if (now >= e.v.exp || now < e.v.nbf) return nullptr;
    return &e.v;
  }

  void put(const key& k, const verified_token& v, int64_t now) {
    if (now >= v.exp || now < v.nbf) return;
    entry& e = slot(k);
    e.used = true;
    e.k = k;
    e.v = v;
  }

  size_t slots() const { return entries_.size(); }

 private:
  struct entry {
    bool used = false;
    key k{};
    verified_token v;
  };
  const entry& slot(const key& k) const { return entries_[index(k)]; }
  entry& slot(const key& k) { return entries_[index(k)]; }
  size_t index(const key& k) const {
    uint64_t i;
    memcpy(&i, k.h, sizeof i);
    return static_cast<size_t>(i % entries_.size());
  }
  std::vector<entry> entries_;
};

}  // namespace accounts
