// The pure pieces the store clients share: backoff, the secret file, address literals.
#include "store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

using namespace core;

TEST(Backoff, DoublesUpToTheCapWithBoundedJitter) {
  backoff b(100, 1000, 42);
  EXPECT_EQ(b.nominal_ms(0), 100u);
  EXPECT_EQ(b.nominal_ms(1), 200u);
  EXPECT_EQ(b.nominal_ms(3), 800u);
  EXPECT_EQ(b.nominal_ms(4), 1000u);
  EXPECT_EQ(b.nominal_ms(60), 1000u);
  bool varied = false;
  uint64_t first_at_cap = 0;
  for (uint32_t n = 0; n < 40; ++n) {
    uint64_t nominal = b.nominal_ms(n);
    uint64_t d = b.next_ms();
    EXPECT_GE(d, nominal - nominal / 2) << n;
    EXPECT_LE(d, nominal) << n;
    if (n == 10) first_at_cap = d;
    if (n > 10 && d != first_at_cap) varied = true;
  }
  EXPECT_TRUE(varied) << "no jitter";
  b.reset();
  EXPECT_EQ(b.attempt(), 0u);
  EXPECT_LE(b.next_ms(), 100u);
}

TEST(Backoff, SeedsGiveDifferentSchedules) {
  backoff a(1000, 1000, 1);
  backoff b(1000, 1000, 2);
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.next_ms() == b.next_ms();
  EXPECT_LT(same, 5);
}

namespace {
std::string write_temp(const std::string& content) {
  char path[] = "/tmp/secret-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
  return path;
}
}  // namespace

TEST(SecretFile, OneTrailingNewlineGoes) {
  std::string out;
  std::string p = write_temp("pa ss'\"word\n");
  EXPECT_EQ(read_secret_file(p.c_str(), &out), nullptr);
  EXPECT_EQ(out, "pa ss'\"word");
  unlink(p.c_str());
  p = write_temp("crlf\r\n");
  EXPECT_EQ(read_secret_file(p.c_str(), &out), nullptr);
  EXPECT_EQ(out, "crlf");
  unlink(p.c_str());
}

TEST(SecretFile, RefusesEmptyMultilineHugeAndMissing) {
  std::string out = "keep";
  std::string p = write_temp("\n");
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "empty");
  unlink(p.c_str());
  p = write_temp("two\nlines\n");
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "contains a line break");
  unlink(p.c_str());
  p = write_temp(std::string(5000, 'x'));
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "larger than 4 KiB");
  unlink(p.c_str());
  EXPECT_NE(read_secret_file("/nonexistent/secret", &out), nullptr);
  EXPECT_EQ(out, "keep");
}

TEST(IpLiteral, NoLookupForAddresses) {
  EXPECT_TRUE(is_ip_literal("127.0.0.1"));
  EXPECT_TRUE(is_ip_literal("::1"));
  EXPECT_TRUE(is_ip_literal("fd00::3"));
  EXPECT_FALSE(is_ip_literal("redis"));
  EXPECT_FALSE(is_ip_literal("localhost"));
  EXPECT_FALSE(is_ip_literal(""));
  EXPECT_FALSE(is_ip_literal("1.2.3.4.5"));
}
