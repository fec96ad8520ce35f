// PEM/PKCS#8 parsing of Ed25519 private keys, the keys directory, and the JWKS.
#include "keys.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

using namespace accounts;

namespace {

// Made with `openssl genpkey -algorithm ed25519`; the public key from
// `openssl pkey -pubout -outform DER | tail -c 32`.
constexpr const char* kPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIB/au402HP9iHKHrncO0TCNZr9MSk0/eW9c9CKcCBTv9\n"
    "-----END PRIVATE KEY-----\n";
constexpr const char* kPublicHex =
    "f0a2499b434d259e2df5be98cd2c1d4a09e16db6e6b6dfbba70e0c34ef9e7bef";
constexpr const char* kX25519 =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VuBCIEICCY3LD6nEokfnFKVaZIAArcGtg0Pdp1t8ZIPdrwEjxc\n"
    "-----END PRIVATE KEY-----\n";
constexpr const char* kEd448 =
    "-----BEGIN PRIVATE KEY-----\n"
    "MEcCAQAwBQYDK2VxBDsEOQD0raUC/DyUcHyOgO3Nb780TKPL5gtdkPUU+4QFdCTD\n"
    "0mNqUFL5tPsvNGuNPBXtK2dnc5Ll5P+dcA==\n"
    "-----END PRIVATE KEY-----\n";

std::string hex(const uint8_t* p, size_t n) {
  std::string out;
  char b[3];
  for (size_t i = 0; i < n; ++i) {
    snprintf(b, sizeof b, "%02x", p[i]);
    out += b;
  }
  return out;
}

struct sodium_ready {
  sodium_ready() { EXPECT_GE(sodium_init(), 0); }
} g_sodium;

}  // namespace

TEST(Ed25519Pem, OpensslKeyGivesOpensslsPublicKey) {
  uint8_t seed[32];
  ASSERT_EQ(parse_ed25519_pem(kPem, seed), nullptr);
  key_set set;
  add_key(&set, "k1", seed);
  EXPECT_EQ(hex(set.keys[0].pk, 32), kPublicHex);
}

TEST(Ed25519Pem, TextAroundTheBlockAndCrlfAreFine) {
  std::string pem = "comment\r\n";
  for (const char* p = kPem; *p != '\0'; ++p) {
    if (*p == '\n') pem += '\r';
    pem += *p;
  }
  pem += "trailing\r\n";
  uint8_t seed[32];
  EXPECT_EQ(parse_ed25519_pem(pem, seed), nullptr);
}

TEST(Ed25519Pem, RefusesOtherKeysAndBrokenFiles) {
  uint8_t seed[32];
  EXPECT_STREQ(parse_ed25519_pem(kX25519, seed), "not an Ed25519 key (algorithm OID)");
  EXPECT_NE(parse_ed25519_pem(kEd448, seed), nullptr);
  EXPECT_NE(parse_ed25519_pem("", seed), nullptr);
  std::string pub =
      "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA8KJJm0NNJZ4t9b6YzSwdSgnhbbbmtt+7pw4MNO+ee+8=\n"
      "-----END PUBLIC KEY-----\n";
  EXPECT_NE(parse_ed25519_pem(pub, seed), nullptr);
  std::string pem = kPem;
  std::string truncated = pem.substr(0, 40) + pem.substr(pem.find("\n-----END"));
  EXPECT_NE(parse_ed25519_pem(truncated, seed), nullptr);
  std::string bad = pem;
  bad[40] = '*';
  EXPECT_NE(parse_ed25519_pem(bad, seed), nullptr);
  std::string no_end = pem.substr(0, pem.find("-----END"));
  EXPECT_NE(parse_ed25519_pem(no_end, seed), nullptr);
}

TEST(Ed25519Pkcs8, ChecksEveryPrefixByte) {
  uint8_t der[48] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                     0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
  uint8_t seed[32];
  ASSERT_EQ(parse_ed25519_pkcs8(der, sizeof der, seed), nullptr);
  for (size_t i = 0; i < 16; ++i) {
    der[i] ^= 1;
    EXPECT_NE(parse_ed25519_pkcs8(der, sizeof der, seed), nullptr) << i;
    der[i] ^= 1;
  }
  EXPECT_NE(parse_ed25519_pkcs8(der, 47, seed), nullptr);
}

TEST(Kid, Charset) {
  EXPECT_TRUE(valid_kid("k1"));
  EXPECT_TRUE(valid_kid("2026-11.a_b"));
  EXPECT_FALSE(valid_kid(""));
  EXPECT_FALSE(valid_kid(".hidden"));
  EXPECT_FALSE(valid_kid("a/b"));
  EXPECT_FALSE(valid_kid("a\"b"));
  EXPECT_FALSE(valid_kid(std::string(65, 'a')));
}

TEST(KeysDir, LoadsEveryPemAndPicksTheSigner) {
  char tmpl[] = "/tmp/keys_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  auto write = [&](const std::string& name, const char* text) {
    FILE* f = fopen((dir + "/" + name).c_str(), "w");
    fputs(text, f);
    fclose(f);
  };
  write("old.pem", kPem);
  write("README", "not a key");
  key_set set;
  std::string why;
  EXPECT_FALSE(load_keys(dir.c_str(), "new", &set, &why));
  EXPECT_NE(why.find("new.pem"), std::string::npos) << why;
  ASSERT_TRUE(load_keys(dir.c_str(), "old", &set, &why)) << why;
  EXPECT_EQ(set.keys.size(), 1u);
  EXPECT_EQ(set.signer->kid, "old");
  write("x.pem", kX25519);
  EXPECT_FALSE(load_keys(dir.c_str(), "old", &set, &why));
  EXPECT_NE(why.find("x.pem"), std::string::npos) << why;
  unlink((dir + "/x.pem").c_str());

  char buf[1024];
  core::buf_writer w(buf, sizeof buf);
  write_jwks(set, w);
  EXPECT_EQ(w.view(),
            "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":"
            "\"8KJJm0NNJZ4t9b6YzSwdSgnhbbbmtt-7pw4MNO-ee-8\",\"kid\":\"old\",\"use\":\"sig\","
            "\"alg\":\"EdDSA\"}]}");
  unlink((dir + "/old.pem").c_str());
  unlink((dir + "/README").c_str());
  rmdir(dir.c_str());
}
