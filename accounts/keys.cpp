#include "keys.hpp"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "store.hpp"
#include "token.hpp"

namespace accounts {

namespace {

constexpr uint8_t kPkcs8Prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                      0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
constexpr std::string_view kBegin = "-----BEGIN PRIVATE KEY-----";
constexpr std::string_view kEnd = "-----END PRIVATE KEY-----";

}  // namespace

const signing_key* key_set::find(std::string_view kid) const {
  for (const signing_key& k : keys) {
    if (k.kid == kid) return &k;
  }
  return nullptr;
}

const char* parse_ed25519_pkcs8(const uint8_t* der, size_t len, uint8_t seed[32]) {
  if (len != sizeof kPkcs8Prefix + 32) {
    return len > 5 && der[0] == 0x30 ? "not an Ed25519 PKCS#8 private key (wrong length)"
                                     : "not DER";
  }
  if (memcmp(der, kPkcs8Prefix, 9) != 0) return "not a PKCS#8 v1 private key";
  if (memcmp(der + 9, kPkcs8Prefix + 9, 3) != 0) return "not an Ed25519 key (algorithm OID)";
  if (memcmp(der + 12, kPkcs8Prefix + 12, 4) != 0) return "malformed Ed25519 private key";
  memcpy(seed, der + sizeof kPkcs8Prefix, 32);
  return nullptr;
}

const char* parse_ed25519_pem(std::string_view pem, uint8_t seed[32]) {
  size_t b = pem.find(kBegin);
  if (b == std::string_view::npos) return "no \"-----BEGIN PRIVATE KEY-----\" line";
  size_t start = b + kBegin.size();
  size_t e = pem.find(kEnd, start);
  if (e == std::string_view::npos) return "no \"-----END PRIVATE KEY-----\" line";
  char b64[256];
  size_t n = 0;
  for (size_t i = start; i < e; ++i) {
    char ch = pem[i];
    if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t') continue;
    if (n >= sizeof b64) return "PEM body too long for an Ed25519 key";
    b64[n++] = ch;
  }
  uint8_t der[128];
  size_t der_len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(der, sizeof der, b64, n, nullptr, &der_len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != b64 + n) {
    return "bad base64 in the PEM body";
  }
  const char* why = parse_ed25519_pkcs8(der, der_len, seed);
  sodium_memzero(der, sizeof der);
  sodium_memzero(b64, sizeof b64);
  return why;
}

bool valid_kid(std::string_view kid) {
  if (kid.empty() || kid.size() > 64 || kid[0] == '.') return false;
  for (char ch : kid) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

void add_key(key_set* set, std::string_view kid, const uint8_t seed[32]) {
  signing_key k;
  k.kid = std::string(kid);
  crypto_sign_seed_keypair(k.pk, k.sk, seed);
  set->keys.push_back(std::move(k));
  std::sort(set->keys.begin(), set->keys.end(),
            [](const signing_key& a, const signing_key& b) { return a.kid < b.kid; });
  set->signer = nullptr;
}

bool load_keys(const char* dir, const char* signing_kid, key_set* out, std::string* why) {
  DIR* d = opendir(dir);
  if (d == nullptr) {
    *why = std::string("cannot open the keys directory: ") + strerror(errno);
    return false;
  }
  key_set set;
  bool ok = true;
  while (dirent* ent = readdir(d)) {
    std::string_view name = ent->d_name;
    if (name.size() <= 4 || name.substr(name.size() - 4) != ".pem") continue;
    std::string_view kid = name.substr(0, name.size() - 4);
    if (!valid_kid(kid)) {
      *why = "key file " + std::string(name) + ": a kid is 1..64 of [A-Za-z0-9._-]";
      ok = false;
      break;
    }
    std::string path = std::string(dir) + "/" + std::string(name);
    FILE* f = fopen(path.c_str(), "rb");
    if (f == nullptr) {
      *why = "key file " + std::string(name) + ": " + strerror(errno);
      ok = false;
      break;
    }
    char text[4096];
    size_t n = fread(text, 1, sizeof text, f);
    bool too_big = n == sizeof text;
    fclose(f);
    uint8_t seed[32];
    const char* bad = too_big ? "larger than 4 KiB" : parse_ed25519_pem({text, n}, seed);
    sodium_memzero(text, sizeof text);
    if (bad != nullptr) {
      *why = "key file " + std::string(name) + ": " + bad;
      ok = false;
      break;
    }
    add_key(&set, kid, seed);
    sodium_memzero(seed, sizeof seed);
  }
  closedir(d);
  if (!ok) return false;
  if (set.keys.empty()) {
    *why = "no <kid>.pem key in the keys directory";
    return false;
  }
  *out = std::move(set);
  out->signer = out->find(signing_kid);
  if (out->signer == nullptr) {
    *why = std::string("no key file ") + signing_kid + ".pem for the signing key";
    return false;
  }
  return true;
}

void write_jwks(const key_set& set, core::buf_writer& w) {
  w.put("{\"keys\":[");
  bool first = true;
  for (const signing_key& k : set.keys) {
    char x[64];
    size_t n = b64url_encode(k.pk, sizeof k.pk, x, sizeof x);
    if (!first) w.put(',');
    first = false;
    w.put("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"");
    w.put({x, n});
    w.put("\",\"kid\":\"");
    core::json_escape(w, k.kid);
    w.put("\",\"use\":\"sig\",\"alg\":\"EdDSA\"}");
  }
  w.put("]}");
}

}  // namespace accounts
