// base64url, JWT issue/verify (a table of tampered tokens), the token cache and the rate
// limiter: the pure pieces of accounts.
#include "token.hpp"

#include <gtest/gtest.h>

#include <string>

#include "rate_limit.hpp"
#include "routes.hpp"
#include "token_cache.hpp"

using namespace accounts;

namespace {

struct sodium_ready {
  sodium_ready() { EXPECT_GE(sodium_init(), 0); }
} g_sodium;

std::string enc(std::string_view s) {
  char out[4096];
  size_t n = b64url_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size(), out, sizeof out);
  return {out, n};
}

bool dec(std::string_view s, std::string* out) {
  uint8_t buf[4096];
  size_t n = 0;
  if (!b64url_decode(s, buf, sizeof buf, &n)) return false;
  out->assign(reinterpret_cast<char*>(buf), n);
  return true;
}

// A key set with k1 (signs) and k2, from fixed seeds.
struct keys_fixture {
  key_set set;
  token_settings ts;
  keys_fixture() {
    uint8_t seed[32];
    for (int i = 0; i < 32; ++i) seed[i] = static_cast<uint8_t>(i);
    add_key(&set, "k1", seed);
    seed[0] = 99;
    add_key(&set, "k2", seed);
    set.signer = set.find("k1");
    ts.issuer = "iss";
    ts.audience = "aud";
    ts.ttl_s = 900;
  }
  // header.payload signed with kid's key.
  std::string sign(std::string_view header, std::string_view payload, const char* kid = "k1") {
    std::string input = enc(header) + "." + enc(payload);
    uint8_t sig[64];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const uint8_t*>(input.data()), input.size(),
                         set.find(kid)->sk);
    return input + "." + enc({reinterpret_cast<char*>(sig), 64});
  }
};

constexpr int64_t kNow = 1'800'000'000;

std::string claims(const char* extra = "", int64_t iat = kNow, int64_t exp = kNow + 900,
                   const char* iss = "iss", const char* aud = "\"aud\"") {
  char buf[512];
  snprintf(buf, sizeof buf,
           "{\"sub\":\"7\",\"name\":\"al\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"iss\":\"%s\",\"aud\":%s,\"jti\":\"j\"%s}",
           static_cast<long long>(iat), static_cast<long long>(iat), static_cast<long long>(exp),
           iss, aud, extra);
  return buf;
}

constexpr const char* kHeader = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k1\"}";

}  // namespace

TEST(Base64Url, RoundTripsAndIsStrict) {
  EXPECT_EQ(enc(""), "");
  EXPECT_EQ(enc("f"), "Zg");
  EXPECT_EQ(enc("fo"), "Zm8");
  EXPECT_EQ(enc("foo"), "Zm9v");
  EXPECT_EQ(enc("\xfb\xff"), "-_8");
  std::string out;
  EXPECT_TRUE(dec("Zm9v", &out));
  EXPECT_EQ(out, "foo");
  EXPECT_TRUE(dec("-_8", &out));
  EXPECT_EQ(out, "\xfb\xff");
  EXPECT_FALSE(dec("Zg==", &out));  // padding
  EXPECT_FALSE(dec("+/8", &out));   // the other alphabet
  EXPECT_FALSE(dec("Zh", &out));    // stray bits: not what encoding "f" gives
  EXPECT_FALSE(dec("Z", &out));     // impossible length
  EXPECT_FALSE(dec("Zm9v ", &out));
  EXPECT_FALSE(dec("Zm.9v", &out));
  for (int n = 0; n < 40; ++n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>(i * 37 + n);
    ASSERT_TRUE(dec(enc(s), &out)) << n;
    EXPECT_EQ(out, s) << n;
  }
}

TEST(Jwt, IssuedTokensVerify) {
  keys_fixture f;
  std::string t = issue_token(*f.set.signer, f.ts, 42, "alice \"quoted\"", kNow);
  ASSERT_FALSE(t.empty());
  verified_token v;
  ASSERT_EQ(verify_token(t, f.set, f.ts, kNow, &v), token_check::ok);
  EXPECT_EQ(v.sub, 42);
  EXPECT_EQ(std::string(v.name, v.name_len), "alice \"quoted\"");
  EXPECT_EQ(v.exp, kNow + 900);
  std::string header;
  ASSERT_TRUE(dec(t.substr(0, t.find('.')), &header));
  EXPECT_EQ(header, kHeader);
  // Two tokens issued in the same second differ (jti).
  EXPECT_NE(t, issue_token(*f.set.signer, f.ts, 42, "alice \"quoted\"", kNow));
}

TEST(Jwt, TimeChecksWithSkew) {
  keys_fixture f;
  std::string t = issue_token(*f.set.signer, f.ts, 1, "a", kNow);
  verified_token v;
  EXPECT_EQ(verify_token(t, f.set, f.ts, kNow - 30, &v), token_check::ok);
  EXPECT_EQ(verify_token(t, f.set, f.ts, kNow - 31, &v), token_check::not_yet_valid);
  EXPECT_EQ(verify_token(t, f.set, f.ts, kNow + 900 + 29, &v), token_check::ok);
  EXPECT_EQ(verify_token(t, f.set, f.ts, kNow + 900 + 30, &v), token_check::expired);
}

TEST(Jwt, RefusalTable) {
  keys_fixture f;
  std::string good = f.sign(kHeader, claims());
  verified_token v;
  ASSERT_EQ(verify_token(good, f.set, f.ts, kNow, &v), token_check::ok);
  std::string h64 = good.substr(0, good.find('.'));
  std::string s64 = good.substr(good.rfind('.') + 1);
  std::string p64 = good.substr(h64.size() + 1, good.size() - h64.size() - s64.size() - 2);
  struct row {
    const char* name;
    std::string token;
    token_check want;
  };
  const row rows[] = {
      {"alg none", enc("{\"alg\":\"none\",\"kid\":\"k1\"}") + "." + p64 + ".",
       token_check::malformed},
      {"alg none signed", enc("{\"alg\":\"none\",\"kid\":\"k1\"}") + "." + p64 + "." + s64,
       token_check::bad_alg},
      {"HS256", f.sign("{\"alg\":\"HS256\",\"kid\":\"k1\"}", claims()), token_check::bad_alg},
      {"ES256", f.sign("{\"alg\":\"ES256\",\"kid\":\"k1\"}", claims()), token_check::bad_alg},
      {"eddsa lower case", f.sign("{\"alg\":\"eddsa\",\"kid\":\"k1\"}", claims()),
       token_check::bad_alg},
      {"crit", f.sign("{\"alg\":\"EdDSA\",\"kid\":\"k1\",\"crit\":[\"x\"]}", claims()),
       token_check::bad_alg},
      {"no alg", f.sign("{\"kid\":\"k1\"}", claims()), token_check::malformed},
      {"typ other", f.sign("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}", claims()),
       token_check::malformed},
      {"unknown kid", f.sign("{\"alg\":\"EdDSA\",\"kid\":\"k9\"}", claims()),
       token_check::unknown_kid},
      {"no kid", f.sign("{\"alg\":\"EdDSA\"}", claims()), token_check::unknown_kid},
      {"other key's kid", f.sign(kHeader, claims(), "k2"), token_check::bad_signature},
      {"payload changed", h64 + "." + enc(claims(",\"admin\":true")) + "." + s64,
       token_check::bad_signature},
      {"header changed", enc("{\"alg\":\"EdDSA\",\"kid\":\"k1\"}") + "." + p64 + "." + s64,
       token_check::bad_signature},
      {"duplicate alg", f.sign("{\"alg\":\"EdDSA\",\"alg\":\"none\",\"kid\":\"k1\"}", claims()),
       token_check::malformed},
      {"expired", f.sign(kHeader, claims("", kNow - 2000, kNow - 100)), token_check::expired},
      {"not yet valid", f.sign(kHeader, claims("", kNow + 100, kNow + 1000)),
       token_check::not_yet_valid},
      {"wrong iss", f.sign(kHeader, claims("", kNow, kNow + 900, "evil")),
       token_check::wrong_issuer},
      {"wrong aud", f.sign(kHeader, claims("", kNow, kNow + 900, "iss", "\"x\"")),
       token_check::wrong_audience},
      {"aud list without ours", f.sign(kHeader, claims("", kNow, kNow + 900, "iss", "[\"x\"]")),
       token_check::wrong_audience},
      {"exp as text",
       f.sign(kHeader,
              "{\"sub\":\"7\",\"name\":\"a\",\"iat\":1,\"nbf\":1,\"exp\":\"9\",\"iss\":\"iss\","
              "\"aud\":\"aud\"}"),
       token_check::malformed},
      {"sub not a number",
       f.sign(kHeader,
              "{\"sub\":\"x\",\"name\":\"a\",\"iat\":1,\"nbf\":1,\"exp\":9,\"iss\":\"iss\","
              "\"aud\":\"aud\"}"),
       token_check::malformed},
      {"payload not JSON", f.sign(kHeader, "hello"), token_check::malformed},
      {"payload an array", f.sign(kHeader, "[1]"), token_check::malformed},
      {"truncated", good.substr(0, good.size() - 5), token_check::malformed},
      {"two parts", h64 + "." + p64, token_check::malformed},
      {"extra dot", good + ".", token_check::malformed},
      {"four parts", good + "." + s64, token_check::malformed},
      {"empty", "", token_check::malformed},
      {"dots only", "..", token_check::malformed},
      {"bad base64", h64 + "." + p64 + "." + s64.substr(0, 10) + "*" + s64.substr(11),
       token_check::malformed},
      {"too long", good + std::string(3000, 'A'), token_check::malformed},
  };
  for (const row& r : rows) {
    EXPECT_EQ(verify_token(r.token, f.set, f.ts, kNow, &v), r.want)
        << r.name << ": got " << token_check_name(verify_token(r.token, f.set, f.ts, kNow, &v));
  }
  // An audience list holding ours is accepted.
  EXPECT_EQ(verify_token(f.sign(kHeader, claims("", kNow, kNow + 900, "iss", "[\"x\",\"aud\"]")),
                         f.set, f.ts, kNow, &v),
            token_check::ok);
}

TEST(TokenCache, NeverPastExp) {
  token_cache cache(8);
  verified_token v;
  v.sub = 3;
  v.nbf = 100;
  v.exp = 200;
  auto k = token_cache::key_of("token-a");
  cache.put(k, v, 150);
  ASSERT_NE(cache.find(k, 150), nullptr);
  EXPECT_EQ(cache.find(k, 150)->sub, 3);
  EXPECT_NE(cache.find(k, 199), nullptr);
  EXPECT_EQ(cache.find(k, 200), nullptr);
  EXPECT_EQ(cache.find(k, 10'000), nullptr);
  EXPECT_EQ(cache.find(k, 99), nullptr);
  EXPECT_EQ(cache.find(token_cache::key_of("token-b"), 150), nullptr);
  // Not put when already expired or not yet valid.
  auto k2 = token_cache::key_of("token-c");
  cache.put(k2, v, 200);
  EXPECT_EQ(cache.find(k2, 150), nullptr);
  cache.put(k2, v, 50);
  EXPECT_EQ(cache.find(k2, 150), nullptr);
}

TEST(TokenCache, CollidingSlotsReplaceNeverConfuse) {
  token_cache cache(1);
  verified_token a, b;
  a.sub = 1;
  b.sub = 2;
  a.exp = b.exp = 1000;
  auto ka = token_cache::key_of("a");
  auto kb = token_cache::key_of("b");
  cache.put(ka, a, 10);
  cache.put(kb, b, 10);
  EXPECT_EQ(cache.find(ka, 10), nullptr);
  ASSERT_NE(cache.find(kb, 10), nullptr);
  EXPECT_EQ(cache.find(kb, 10)->sub, 2);
}

TEST(RateLimiter, BansAfterMaxRetriesWithinFindTime) {
  rate_limiter r({3, 1000, 5000}, 64);
  EXPECT_EQ(r.banned_for("a", 0), 0u);
  EXPECT_EQ(r.fail("a", 0), 0u);
  EXPECT_EQ(r.fail("a", 100), 0u);
  EXPECT_EQ(r.fail("a", 200), 5000u);
  EXPECT_EQ(r.banned_for("a", 200), 5000u);
  EXPECT_EQ(r.banned_for("a", 5199), 1u);
  EXPECT_EQ(r.banned_for("a", 5200), 0u);
  EXPECT_EQ(r.banned_for("b", 300), 0u);
  // Failures spread wider than the find time never ban.
  EXPECT_EQ(r.fail("c", 0), 0u);
  EXPECT_EQ(r.fail("c", 600), 0u);
  EXPECT_EQ(r.fail("c", 1200), 0u);
  EXPECT_EQ(r.fail("c", 1300), 0u);
  EXPECT_EQ(r.banned_for("c", 1300), 0u);
  // A success forgives.
  r.fail("d", 0);
  r.fail("d", 1);
  r.succeed("d");
  EXPECT_EQ(r.fail("d", 2), 0u);
}

TEST(RateLimiter, AFullTableStillBansTheHotKey) {
  rate_limiter r({2, 1000, 5000}, 4);
  for (int i = 0; i < 100; ++i) r.fail("noise" + std::to_string(i), 10);
  r.fail("hot", 20);
  EXPECT_EQ(r.fail("hot", 21), 5000u);
  EXPECT_GT(r.banned_for("hot", 22), 0u);
}

TEST(Fields, UsernameEmailPassword) {
  EXPECT_EQ(check_username("abc"), nullptr);
  EXPECT_EQ(check_username("Robert'); DROP TABLE accounts;--"), nullptr);
  EXPECT_EQ(check_username("<script>"), nullptr);
  EXPECT_NE(check_username("ab"), nullptr);
  EXPECT_NE(check_username(std::string(33, 'a')), nullptr);
  EXPECT_EQ(check_username("ééé"), nullptr);  // 3 characters, 6 bytes
  EXPECT_NE(check_username("a\nb"), nullptr);
  EXPECT_NE(check_username("a\x7f"
                           "b"),
            nullptr);
  EXPECT_NE(check_username("a\xc2\x85"
                           "b"),
            nullptr);  // NEL, a C1 control
  EXPECT_NE(check_username(" abc"), nullptr);
  EXPECT_EQ(check_email("a@example.com"), nullptr);
  EXPECT_EQ(check_email("o'or'1'='1@example.com"), nullptr);
  EXPECT_NE(check_email("a@b"), nullptr);
  EXPECT_NE(check_email("@example.com"), nullptr);
  EXPECT_NE(check_email("a b@example.com"), nullptr);
  EXPECT_NE(check_email("a@exa mple.com"), nullptr);
  EXPECT_NE(check_email("a@example..com"), nullptr);
  EXPECT_NE(check_email("a@.example.com"), nullptr);
  EXPECT_NE(check_email(std::string(65, 'a') + "@example.com"), nullptr);
  EXPECT_EQ(check_password("12345678"), nullptr);
  EXPECT_NE(check_password("1234567"), nullptr);
  EXPECT_NE(check_password(std::string(129, 'p')), nullptr);
}

TEST(Fields, HtmlEscapeAndTokenOf) {
  std::string out;
  html_escape(out, "<a href=\"x\">'&'</a>");
  EXPECT_EQ(out, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(token_of("Bearer abc", ""), "abc");
  EXPECT_EQ(token_of("bearer  abc ", ""), "abc");
  EXPECT_EQ(token_of("Basic abc", "accounts_token=x"), "");
  EXPECT_EQ(token_of("", "a=1; accounts_token=tok; b=2"), "tok");
  EXPECT_EQ(token_of("", "xaccounts_token=tok"), "");
  EXPECT_EQ(token_of("", ""), "");
}
