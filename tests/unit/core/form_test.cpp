// core::percent_decode and core::form_reader (HTML form bodies).
#include "form.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using core::decode_result;
using core::form_reader;

namespace {

std::vector<std::pair<std::string, std::string>> read_all(std::string_view body,
                                                          form_reader::result* last) {
  char buf[256];
  form_reader r(body, buf, sizeof buf);
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view name, value;
  for (;;) {
    *last = r.next(&name, &value);
    if (*last != form_reader::result::field) return out;
    out.emplace_back(name, value);
  }
}

}  // namespace

TEST(PercentDecode, PlusIsSpaceOnlyWhenAsked) {
  char out[32];
  size_t len = 0;
  ASSERT_EQ(core::percent_decode("a+b%20c%2B", true, out, sizeof out, &len), decode_result::ok);
  EXPECT_EQ(std::string(out, len), "a b c+");
  ASSERT_EQ(core::percent_decode("a+b", false, out, sizeof out, &len), decode_result::ok);
  EXPECT_EQ(std::string(out, len), "a+b");
}

TEST(PercentDecode, BadEscapesAndRoom) {
  char out[4];
  size_t len = 0;
  EXPECT_EQ(core::percent_decode("%", false, out, sizeof out, &len), decode_result::bad_escape);
  EXPECT_EQ(core::percent_decode("%4", false, out, sizeof out, &len), decode_result::bad_escape);
  EXPECT_EQ(core::percent_decode("%g0", false, out, sizeof out, &len), decode_result::bad_escape);
  EXPECT_EQ(core::percent_decode("abcde", false, out, sizeof out, &len), decode_result::too_long);
  EXPECT_EQ(core::percent_decode("%41%62", false, out, sizeof out, &len), decode_result::ok);
  EXPECT_EQ(std::string(out, len), "Ab");
}

TEST(FormReader, PairsAsBrowsersSendThem) {
  form_reader::result last;
  auto got = read_all("email=a%40b.c&password=p+w%26d%3D&empty=&flag&&x=%C3%A9t%C3%A9", &last);
  EXPECT_EQ(last, form_reader::result::end);
  std::vector<std::pair<std::string, std::string>> want = {
      {"email", "a@b.c"}, {"password", "p w&d="}, {"empty", ""}, {"flag", ""}, {"x", "été"}};
  EXPECT_EQ(got, want);
}

TEST(FormReader, ErrorsAreErrors) {
  form_reader::result last;
  read_all("a=%zz", &last);
  EXPECT_EQ(last, form_reader::result::bad_escape);
  read_all("a=%ff", &last);
  EXPECT_EQ(last, form_reader::result::bad_utf8);
  read_all(std::string(300, 'a') + "=1", &last);
  EXPECT_EQ(last, form_reader::result::too_long);
  read_all("", &last);
  EXPECT_EQ(last, form_reader::result::end);
}
