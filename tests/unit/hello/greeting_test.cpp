#include "greeting.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace hello;

namespace {
std::string decode(std::string_view in, decode_result expect = decode_result::ok) {
  char out[64];
  size_t len = 0;
  EXPECT_EQ(percent_decode(in, out, sizeof out, &len), expect) << in;
  return expect == decode_result::ok ? std::string(out, len) : std::string();
}
std::string cap(std::string s) {
  capitalize_ascii(s.data(), s.size());
  return s;
}
}  // namespace

TEST(PercentDecode, DecodesEscapes) {
  EXPECT_EQ(decode("/hello%20world"), "/hello world");
  EXPECT_EQ(decode("%41%62"), "Ab");
  EXPECT_EQ(decode("a+b"), "a+b");
  EXPECT_EQ(decode("%2f%2F"), "//");
  EXPECT_EQ(decode("%00"), std::string(1, '\0'));
}

TEST(PercentDecode, RejectsBrokenEscapes) {
  decode("%zz", decode_result::bad_escape);
  decode("%", decode_result::bad_escape);
  decode("abc%4", decode_result::bad_escape);
  decode("%g1", decode_result::bad_escape);
  decode(std::string(65, 'a'), decode_result::too_long);
}

TEST(Utf8, AcceptsValidRejectsInvalid) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9"));
  EXPECT_TRUE(valid_utf8("\xe2\x82\xac"));      // euro sign
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));  // emoji
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x28\xa1"));      // bad continuation
}

TEST(Capitalize, LikePythonOnAscii) {
  EXPECT_EQ(cap("baz"), "Baz");
  EXPECT_EQ(cap("bAZ"), "Baz");
  EXPECT_EQ(cap("BAZ QUX"), "Baz qux");
  EXPECT_EQ(cap("123abC"), "123abc");
  EXPECT_EQ(cap("\xc3\xa9T\xc3\xa9"), "\xc3\xa9t\xc3\xa9");  // non-ASCII bytes untouched
  EXPECT_EQ(cap(""), "");
}

TEST(Greeting, ValidJsonForAnyName) {
  char buf[256];
  core::buf_writer w(buf, sizeof buf);
  write_greeting(w, "Baz");
  EXPECT_EQ(w.view(), "{\"msg\":\"Hello, Baz!\"}");
  w.reset();
  write_greeting(w, std::string_view("A\"b\\c\x01", 6));
  EXPECT_EQ(w.view(), "{\"msg\":\"Hello, A\\\"b\\\\c\\u0001!\"}");
}
