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

TEST(LogFields, TextAndJsonFromOneDescription) {
  log_field f[] = {
      log_field::word("state", "down"),
      log_field::num("n", 3),
      log_field::real("rtt", 1.5, 3, "ms"),
      log_field::text("detail", "a \"b\"\n"),
  };
  char out[256];
  format_fields(log_format::text, f, 4, out, sizeof out);
  EXPECT_STREQ(out, "state=down n=3 rtt=1.500ms detail=\"a \\\"b\\\"\\x0a\"");
  format_fields(log_format::json, f, 4, out, sizeof out);
  // JSON strings are escaped by core's one escaper (json_escape): a newline is \n.
  EXPECT_STREQ(out, ",\"state\":\"down\",\"n\":3,\"rtt_ms\":1.500,\"detail\":\"a \\\"b\\\"\\n\"");
}
