#include "config.hpp"

#include <gtest/gtest.h>

using namespace core;

TEST(ParseDuration, AcceptsUnits) {
  uint64_t ms = 0;
  EXPECT_EQ(parse_duration_ms("250ms", &ms), nullptr);
  EXPECT_EQ(ms, 250u);
  EXPECT_EQ(parse_duration_ms("10s", &ms), nullptr);
  EXPECT_EQ(ms, 10000u);
  EXPECT_EQ(parse_duration_ms("2m", &ms), nullptr);
  EXPECT_EQ(ms, 120000u);
  EXPECT_EQ(parse_duration_ms("0s", &ms), nullptr);
  EXPECT_EQ(ms, 0u);
}

TEST(ParseDuration, RejectsBadInput) {
  uint64_t ms = 42;
  for (const char* bad :
       {"", "10", "s", "10x", "1.5s", "-1s", "10 s", "10sec", "99999999999999m"}) {
    EXPECT_NE(parse_duration_ms(bad, &ms), nullptr) << bad;
  }
  EXPECT_EQ(ms, 42u);
  EXPECT_STREQ(parse_duration_ms("10", &ms), "missing unit (use ms, s or m, e.g. 10s)");
}

TEST(FormatDuration, SecondsWhenExactElseMilliseconds) {
  char buf[32];
  format_duration(60000, buf, sizeof buf);
  EXPECT_STREQ(buf, "60s");
  format_duration(90000, buf, sizeof buf);
  EXPECT_STREQ(buf, "90s");
  format_duration(250, buf, sizeof buf);
  EXPECT_STREQ(buf, "250ms");
  format_duration(0, buf, sizeof buf);
  EXPECT_STREQ(buf, "0ms");
}

TEST(ParseListenAddress, Forms) {
  char host[64];
  int port = -1;
  EXPECT_EQ(parse_listen_address("0.0.0.0:8080", host, sizeof host, &port), nullptr);
  EXPECT_STREQ(host, "0.0.0.0");
  EXPECT_EQ(port, 8080);
  EXPECT_EQ(parse_listen_address(":80", host, sizeof host, &port), nullptr);
  EXPECT_STREQ(host, "0.0.0.0");
  EXPECT_EQ(port, 80);
  EXPECT_EQ(parse_listen_address("[::1]:0", host, sizeof host, &port), nullptr);
  EXPECT_STREQ(host, "::1");
  EXPECT_EQ(port, 0);
}

TEST(ParseListenAddress, Rejects) {
  char host[64];
  int port = 0;
  for (const char* bad : {"nonsense", "localhost:80", "1.2.3.4:65536", "1.2.3.4:", "::1:80",
                          "[::1]80", "1.2.3.4:-1", "999.1.1.1:80"}) {
    EXPECT_NE(parse_listen_address(bad, host, sizeof host, &port), nullptr) << bad;
  }
}

TEST(ParseValues, DoubleOnOffUint) {
  double d = 0;
  EXPECT_EQ(parse_double("0.25", &d), nullptr);
  EXPECT_DOUBLE_EQ(d, 0.25);
  EXPECT_NE(parse_double("0.25x", &d), nullptr);
  EXPECT_NE(parse_double("nan", &d), nullptr);
  EXPECT_NE(parse_double("", &d), nullptr);
  bool b = false;
  EXPECT_EQ(parse_on_off("on", &b), nullptr);
  EXPECT_TRUE(b);
  EXPECT_EQ(parse_on_off("off", &b), nullptr);
  EXPECT_FALSE(b);
  EXPECT_NE(parse_on_off("maybe", &b), nullptr);
  uint64_t u = 0;
  EXPECT_EQ(parse_uint("17", 1, 20, &u), nullptr);
  EXPECT_EQ(u, 17u);
  EXPECT_NE(parse_uint("21", 1, 20, &u), nullptr);
  EXPECT_NE(parse_uint("1e3", 1, 2000, &u), nullptr);
}

TEST(CliParse, FlagBeatsEnvBeatsDefault) {
  cli_option opts[] = {
      {"--a", "UNIT_TEST_A", "da", "X", "a"},
      {"--b", "UNIT_TEST_B", "db", "X", "b"},
      {"--c", "UNIT_TEST_C", "dc", "X", "c"},
  };
  setenv("UNIT_TEST_A", "envA", 1);
  setenv("UNIT_TEST_B", "envB", 1);
  unsetenv("UNIT_TEST_C");
  const char* argv[] = {"prog", "--a", "flagA", "--c=flagC"};
  cli_parse({"prog", "1", "test"}, 4, const_cast<char**>(argv), opts, 3);
  EXPECT_STREQ(opts[0].value, "flagA");
  EXPECT_STREQ(opts[0].source, "flag");
  EXPECT_STREQ(opts[1].value, "envB");
  EXPECT_STREQ(opts[1].source, "env");
  EXPECT_STREQ(opts[2].value, "flagC");
}

TEST(CliParseDeath, UnknownFlagExitsTwo) {
  cli_option opts[] = {{"--a", "UNIT_TEST_A", "da", "X", "a"}};
  const char* argv[] = {"prog", "--nope"};
  EXPECT_EXIT(cli_parse({"prog", "1", "test"}, 2, const_cast<char**>(argv), opts, 1),
              testing::ExitedWithCode(2), "prog: error: unknown option --nope");
}

TEST(CliParseDeath, MissingValueExitsTwo) {
  cli_option opts[] = {{"--a", "UNIT_TEST_A", "da", "X", "a"}};
  const char* argv[] = {"prog", "--a"};
  EXPECT_EXIT(cli_parse({"prog", "1", "test"}, 2, const_cast<char**>(argv), opts, 1),
              testing::ExitedWithCode(2), "--a needs a value");
}
