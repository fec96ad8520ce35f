// Ed25519 signing keys: the PEM files `openssl genpkey -algorithm ed25519` writes (PKCS#8,
// RFC 8410), one per key in a directory, named <kid>.pem; the kid that signs new tokens, and
// the public keys as a JWK Set (RFC 7517 with RFC 8037's OKP key type).
//
// Why parse the DER instead of taking "the last 32 bytes": a file that is not an Ed25519
// private key (an X25519 or RSA key, a public key, a truncated file) must be refused at
// start-up, not turned into a wrong key. An Ed25519 PKCS#8 v1 key without attributes is
// exactly 48 bytes: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
// OCTET STRING (32 bytes: the seed) } }, i.e. the fixed prefix 302e020100300506032b657004220420
// and the seed.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "response.hpp"

namespace accounts {

struct signing_key {
  std::string kid;
  uint8_t pk[crypto_sign_PUBLICKEYBYTES];
  uint8_t sk[crypto_sign_SECRETKEYBYTES];  // seed + public key, as libsodium keeps it
};

struct key_set {
  std::vector<signing_key> keys;  // sorted by kid
  const signing_key* signer = nullptr;
  const signing_key* find(std::string_view kid) const;
};

// Reads one PEM "PRIVATE KEY" block (text around it is ignored) holding an Ed25519 PKCS#8 key.
// Returns nullptr and the 32-byte seed, or what is wrong.
const char* parse_ed25519_pem(std::string_view pem, uint8_t seed[32]);

// The PKCS#8 DER alone (48 bytes, the prefix above + the seed).
const char* parse_ed25519_pkcs8(const uint8_t* der, size_t len, uint8_t seed[32]);

// A kid is what a file name before ".pem" may be: 1..64 of [A-Za-z0-9._-], not starting with
// a dot.
bool valid_kid(std::string_view kid);

// Loads every <kid>.pem of dir (other files ignored); signing_kid must be one of them.
// Returns true, or false with *why set (one line).
bool load_keys(const char* dir, const char* signing_kid, key_set* out, std::string* why);

// Adds a key from its seed (tests and load_keys).
void add_key(key_set* set, std::string_view kid, const uint8_t seed[32]);

// {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"use":"sig","alg":"EdDSA"},...]}
void write_jwks(const key_set& set, core::buf_writer& w);

}  // namespace accounts
