#include "log.hpp"

#include <gtest/gtest.h>

using namespace core;

TEST(LogEscape, KeepsLinesSingleAndHonest) {
  char out[64];
  EXPECT_EQ(log_escape("/baz", out, sizeof out), 4u);
  EXPECT_STREQ(out, "/baz");
  log_escape("a\nb\"c\\d\x01\xff", out, sizeof out);
  EXPECT_STREQ(out, "a\\x0ab\\\"c\\\\d\\x01\\xff");
}

TEST(LogEscape, TruncatesWithoutSplittingAnEscape) {
  char out[6];
  log_escape("ab\ncd", out, sizeof out);
  EXPECT_STREQ(out, "ab");  // "\x0a" would not fit whole
  char one[1];
  EXPECT_EQ(log_escape("abc", one, sizeof one), 0u);
  EXPECT_STREQ(one, "");
}
