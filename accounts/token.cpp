#include "token.hpp"

#include <sodium.h>

#include <cstdio>
#include <cstring>

#include "json.hpp"

namespace accounts {

size_t b64url_encode(const uint8_t* in, size_t n, char* out, size_t cap) {
  size_t need = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (cap < need) return 0;
  sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return need - 1;  // without the NUL
}

bool b64url_decode(std::string_view in, uint8_t* out, size_t cap, size_t* out_len) {
  const char* end = nullptr;
  size_t len = 0;
  if (sodium_base642bin(out, cap, in.data(), in.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != in.data() + in.size()) {
    return false;
  }
  // Canonical only: the text must be what encoding the bytes gives back (no stray low bits in
  // the last character), so one token has one spelling.
  if (in.size() != (len * 4 + 2) / 3) return false;
  if (!in.empty()) {
    char last[8];
    size_t tail = len % 3 == 0 ? 3 : len % 3;
    size_t n = b64url_encode(out + len - tail, tail, last, sizeof last);
    if (n == 0 || last[n - 1] != in.back()) return false;
  }
  *out_len = len;
  return true;
}

namespace {

// The payload's claims as we write them: a fixed order, integers, strings escaped.
size_t write_payload(char* buf, size_t cap, const token_settings& s, int64_t sub,
                     std::string_view name, int64_t now, const char* jti) {
  core::buf_writer w(buf, cap);
  w.put("{\"sub\":\"");
  w.put_uint(static_cast<uint64_t>(sub));
  w.put("\",\"name\":\"");
  core::json_escape(w, name);
  w.put("\",\"iat\":");
  w.put_uint(static_cast<uint64_t>(now));
  w.put(",\"nbf\":");
  w.put_uint(static_cast<uint64_t>(now));
  w.put(",\"exp\":");
  w.put_uint(static_cast<uint64_t>(now + s.ttl_s));
  w.put(",\"iss\":\"");
  core::json_escape(w, s.issuer);
  w.put("\",\"aud\":\"");
  core::json_escape(w, s.audience);
  w.put("\",\"jti\":\"");
  w.put(jti);
  w.put("\"}");
  return w.overflow ? 0 : w.len;
}

// The JSON reader for headers and payloads: one, made once (the loop is single-threaded).
core::json_doc& reader() {
  static core::json_doc doc(64, 4);
  return doc;
}

bool int_claim(const core::json_ref& obj, std::string_view name, int64_t* out) {
  std::optional<int64_t> v = obj[name].int64();
  if (!v) return false;
  *out = *v;
  return true;
}

}  // namespace

std::string issue_token(const signing_key& key, const token_settings& settings, int64_t sub,
                        std::string_view name, int64_t now) {
  char header[256];
  core::buf_writer hw(header, sizeof header);
  hw.put("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"");
  core::json_escape(hw, key.kid);
  hw.put("\"}");
  uint8_t id[16];
  randombytes_buf(id, sizeof id);
  char jti[32];
  size_t jn = b64url_encode(id, sizeof id, jti, sizeof jti);
  jti[jn] = '\0';
  char payload[1024];
  size_t pn = write_payload(payload, sizeof payload, settings, sub, name, now, jti);
  if (hw.overflow || pn == 0) return {};
  char out[max_token_bytes + 4];
  size_t n = b64url_encode(reinterpret_cast<const uint8_t*>(header), hw.len, out, sizeof out);
  if (n == 0) return {};
  out[n++] = '.';
  size_t m = b64url_encode(reinterpret_cast<const uint8_t*>(payload), pn, out + n, sizeof out - n);
  if (m == 0) return {};
  n += m;
  uint8_t sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const uint8_t*>(out), n, key.sk);
  if (n + 1 >= sizeof out) return {};
  out[n++] = '.';
  m = b64url_encode(sig, sizeof sig, out + n, sizeof out - n);
  if (m == 0 || n + m > max_token_bytes) return {};
  return std::string(out, n + m);
}

const char* token_check_name(token_check c) {
  switch (c) {
    case token_check::ok: return "ok";
    case token_check::malformed: return "malformed";
    case token_check::bad_alg: return "bad_alg";
    case token_check::unknown_kid: return "unknown_kid";
    case token_check::bad_signature: return "bad_signature";
    case token_check::expired: return "expired";
    case token_check::not_yet_valid: return "not_yet_valid";
    case token_check::wrong_issuer: return "wrong_issuer";
    case token_check::wrong_audience: return "wrong_audience";
    default: return "other";
  }
}

token_check verify_token(std::string_view token, const key_set& keys,
                         const token_settings& settings, int64_t now, verified_token* out) {
  if (token.empty() || token.size() > max_token_bytes) return token_check::malformed;
  size_t d1 = token.find('.');
  if (d1 == std::string_view::npos) return token_check::malformed;
  size_t d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return token_check::malformed;
  }
  std::string_view h64 = token.substr(0, d1);
  std::string_view p64 = token.substr(d1 + 1, d2 - d1 - 1);
  std::string_view s64 = token.substr(d2 + 1);
  if (h64.empty() || p64.empty() || s64.empty()) return token_check::malformed;

  // Header: the algorithm is pinned before anything else is believed.
  char header[512];
  size_t hn = 0;
  if (!b64url_decode(h64, reinterpret_cast<uint8_t*>(header), sizeof header - 1, &hn)) {
    return token_check::malformed;
  }
  core::json_doc& doc = reader();
  if (!doc.parse(header, hn) || !doc.root().is(core::json_type::object)) {
    return token_check::malformed;
  }
  core::json_ref h = doc.root();
  std::optional<std::string_view> alg = h["alg"].string();
  if (!alg) return token_check::malformed;
  if (*alg != "EdDSA" || h["crit"].valid()) return token_check::bad_alg;
  if (h["typ"].valid() && h["typ"].string() != std::optional<std::string_view>("JWT")) {
    return token_check::malformed;
  }
  std::optional<std::string_view> kid = h["kid"].string();
  const signing_key* key = kid ? keys.find(*kid) : nullptr;
  if (key == nullptr) return token_check::unknown_kid;

  uint8_t sig[crypto_sign_BYTES + 1];
  size_t sn = 0;
  if (!b64url_decode(s64, sig, sizeof sig, &sn) || sn != crypto_sign_BYTES) {
    return token_check::malformed;
  }
  if (crypto_sign_verify_detached(sig, reinterpret_cast<const uint8_t*>(token.data()), d2,
                                  key->pk) != 0) {
    return token_check::bad_signature;
  }

  // Payload: signed by us, still every claim is checked.
  char payload[1200];
  size_t pn = 0;
  if (!b64url_decode(p64, reinterpret_cast<uint8_t*>(payload), sizeof payload - 1, &pn)) {
    return token_check::malformed;
  }
  if (!doc.parse(payload, pn) || !doc.root().is(core::json_type::object)) {
    return token_check::malformed;
  }
  core::json_ref p = doc.root();
  int64_t exp = 0, nbf = 0, iat = 0;
  if (!int_claim(p, "exp", &exp) || !int_claim(p, "nbf", &nbf) || !int_claim(p, "iat", &iat)) {
    return token_check::malformed;
  }
  std::optional<std::string_view> sub = p["sub"].string();
  std::optional<std::string_view> name = p["name"].string();
  std::optional<std::string_view> iss = p["iss"].string();
  if (!sub || !name || !iss || name->size() > max_name_bytes) return token_check::malformed;
  int64_t id = 0;
  if (sub->empty() || sub->size() > 18) return token_check::malformed;
  for (char ch : *sub) {
    if (ch < '0' || ch > '9') return token_check::malformed;
    id = id * 10 + (ch - '0');
  }
  if (*iss != settings.issuer) return token_check::wrong_issuer;
  core::json_ref aud = p["aud"];
  bool aud_ok = aud.string() == std::optional<std::string_view>(settings.audience);
  if (aud.is(core::json_type::array)) {
    for (size_t i = 0; i < aud.size(); ++i) {
      if (aud.at(i).string() == std::optional<std::string_view>(settings.audience)) aud_ok = true;
    }
  }
  if (!aud_ok) return token_check::wrong_audience;
  if (now >= exp + settings.skew_s) return token_check::expired;
  if (nbf > now + settings.skew_s || iat > now + settings.skew_s) {
    return token_check::not_yet_valid;
  }
  out->sub = id;
  out->exp = exp;
  out->nbf = nbf;
  memcpy(out->name, name->data(), name->size());
  out->name[name->size()] = '\0';
  out->name_len = name->size();
  return token_check::ok;
}

}  // namespace accounts
