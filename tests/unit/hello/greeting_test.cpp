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
std::string cap(std::string_view s) {
  char out[max_capitalized_bytes];
  return std::string(out, capitalize(s, out, sizeof out));
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
  EXPECT_EQ(cap(""), "");
}

// Expected values are python3's "...".capitalize() (tests/blackbox/test_capitalize.py asks
// python3 itself over a corpus and every cased character).
TEST(Capitalize, LikePythonOnUnicode) {
  EXPECT_EQ(cap("\u00e9t\u00e9"), "\u00c9t\u00e9");  // été -> Été
  EXPECT_EQ(cap("\u00c9COLE"), "\u00c9cole");        // ÉCOLE -> École
  EXPECT_EQ(cap("\u0434\u0416"), "\u0414\u0436");    // дЖ -> Дж
  EXPECT_EQ(cap("\u01c6EMAL"), "\u01c5emal");        // ǆ -> ǅ (title, not upper)
  EXPECT_EQ(cap("\u01c4"), "\u01c5");                // Ǆ -> ǅ
  EXPECT_EQ(cap("\u13e3\u13b3"), "\u13e3\uab83");    // Cherokee ᏣᎳ -> Ꮳꮃ
  EXPECT_EQ(cap("\u5f20\u4f1f"), "\u5f20\u4f1f");    // no case: unchanged
  EXPECT_EQ(cap("\U0001f600X"), "\U0001f600x");      // emoji first, then lower
}

TEST(Capitalize, ExpandsLikeSpecialCasing) {
  EXPECT_EQ(cap("\u00df"), "Ss");  // ß
  EXPECT_EQ(cap("\u00dfA"), "Ssa");
  EXPECT_EQ(cap("\ufb01nn"), "Finn");              // ﬁ
  EXPECT_EQ(cap("\ufb03"), "Ffi");                 // ﬃ
  EXPECT_EQ(cap("\u0149"), "\u02bcN");             // ŉ -> ʼN
  EXPECT_EQ(cap("\u0390"), "\u0399\u0308\u0301");  // ΐ -> Ϊ́
  EXPECT_EQ(cap("\u1fb2"), "\u1fba\u0345");        // ᾲ -> Ὰͅ
  EXPECT_EQ(cap("\u0587"), "\u0535\u0582");        // և -> Եւ
  EXPECT_EQ(cap("A\u0130"), "Ai\u0307");           // İ after the first: i + dot above
  EXPECT_EQ(cap("\u0130X"), "\u0130x");            // İ first: its own title case
  EXPECT_EQ(cap("a\u00df"), "A\u00df");            // ß after the first stays
}

TEST(Capitalize, FinalSigma) {
  EXPECT_EQ(cap("\u039f\u0394\u039f\u03a3"), "\u039f\u03b4\u03bf\u03c2");  // ΟΔΟΣ -> Οδος
  EXPECT_EQ(cap("\u03a3\u0391\u03a3"), "\u03a3\u03b1\u03c2");              // ΣΑΣ -> Σας
  EXPECT_EQ(cap("\u0391\u03a3 \u0392"), "\u0391\u03c2 \u03b2");            // word end
  EXPECT_EQ(cap("\u0391\u03a3\u0392"), "\u0391\u03c3\u03b2");              // mid-word
  EXPECT_EQ(cap("\u0391\u03a3.\u0392"), "\u0391\u03c3.\u03b2");            // '.' is skipped
  EXPECT_EQ(cap("\u0391\u0308\u03a3"), "\u0391\u0308\u03c2");              // mark skipped
  EXPECT_EQ(cap("1\u03a3"), "1\u03c3");                                    // nothing cased before
  EXPECT_EQ(cap("\u00aa\u03a3"), "\u00aa\u03c2");                          // ª is cased
}

TEST(Capitalize, StaysWithinTheBoundAndStopsAtAWholeCharacter) {
  // The longest growth: a first character of 2 bytes to 6, the rest by half (U+023A, 2 to 3).
  std::string worst = "\u0390";
  while (worst.size() + 2 <= max_name_bytes) worst += "\u023a";
  std::string out = cap(worst);
  EXPECT_LE(out.size(), max_capitalized_bytes);
  EXPECT_EQ(out.size(), 6 + (worst.size() - 2) / 2 * 3);
  char small[4];
  EXPECT_EQ(capitalize("ab\u00e9", small, 3), 2u);  // "Ab": é does not fit whole
  EXPECT_EQ(capitalize("\u00df", small, 1), 0u);    // "Ss" does not fit: nothing
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
