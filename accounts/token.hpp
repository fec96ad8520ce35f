// JSON Web Tokens signed with EdDSA (Ed25519, RFC 8037), issued and verified the way RFC 8725
// (JWT best current practice) asks: the algorithm is pinned (the header's "alg" must be
// "EdDSA"; "none", HS256 and everything else are refused before any key is looked at), the
// key is chosen by "kid" among our own keys only, the signature is checked before any claim is
// believed, and every claim we rely on is required and checked (iss, aud, exp, nbf, iat, sub).
// The header and payload are read with core::json_doc (strict: duplicate keys refused, so a
// second "alg" or "exp" cannot hide behind the first).
//
// base64url without padding (RFC 7515 2) with libsodium; decoding is strict: a string that
// does not re-encode to itself (stray bits in the last character, padding, other alphabets)
// is malformed, so a token has exactly one spelling and the cache key means one token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "keys.hpp"

namespace accounts {

// Encodes n bytes; returns the length written (out needs 4 * n / 3 + 3 bytes), 0 if cap is
// too small.
size_t b64url_encode(const uint8_t* in, size_t n, char* out, size_t cap);
// Decodes strictly (see above). Returns false for bad characters, padding, a non-canonical
// last character or more than cap bytes.
bool b64url_decode(std::string_view in, uint8_t* out, size_t cap, size_t* out_len);

struct token_settings {
  std::string issuer;
  std::string audience;
  int64_t ttl_s = 900;
  int64_t skew_s = 30;  // clock-skew allowance for exp, nbf and iat
};

inline constexpr size_t max_token_bytes = 2048;
inline constexpr size_t max_name_bytes = 128;

// Signs a token for account `sub` (its id) named `name`, valid from now for settings.ttl_s.
// Returns the compact serialisation, or "" if it would not fit max_token_bytes.
std::string issue_token(const signing_key& key, const token_settings& settings, int64_t sub,
                        std::string_view name, int64_t now);

enum class token_check : uint8_t {
  ok,
  malformed,      // not three base64url parts, bad JSON, a required claim missing or mistyped
  bad_alg,        // alg other than EdDSA (none, HS256, ...), or a "crit" header
  unknown_kid,    // no kid, or not one of our keys
  bad_signature,  // the signature does not verify
  expired,        // now >= exp + skew
  not_yet_valid,  // nbf or iat later than now + skew
  wrong_issuer,
  wrong_audience,
  count
};
const char* token_check_name(token_check c);

struct verified_token {
  int64_t sub = 0;
  int64_t exp = 0;
  int64_t nbf = 0;
  char name[max_name_bytes + 1] = "";
  size_t name_len = 0;
};

// Verifies a compact token; on ok fills *out. No allocation.
token_check verify_token(std::string_view token, const key_set& keys,
                         const token_settings& settings, int64_t now, verified_token* out);

}  // namespace accounts
