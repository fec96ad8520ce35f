// core::json_doc: strict RFC 8259 reading into the flat tree, and the accessors.
#include "json.hpp"

#include <gtest/gtest.h>

#include <string>

using core::json_doc;
using core::json_type;

namespace {

// Parses a copy (the reader works in place and needs a spare byte).
struct parsed {
  std::string buf;
  json_doc doc;
  bool ok;
  explicit parsed(std::string text, uint32_t max_values = 256, uint32_t max_depth = 32)
      : buf(std::move(text)), doc(max_values, max_depth) {
    size_t len = buf.size();
    buf.push_back('\0');
    ok = doc.parse(buf.data(), len);
  }
};

}  // namespace

TEST(Json, ObjectMembersAndScalars) {
  parsed p(R"({"s":"a\"b\u00e9\ud83d\ude00","i":-42,"d":2.5e3,"t":true,"f":false,"n":null})");
  ASSERT_TRUE(p.ok) << p.doc.error();
  auto r = p.doc.root();
  EXPECT_TRUE(r.is(json_type::object));
  EXPECT_EQ(r.size(), 6u);
  EXPECT_EQ(*r["s"].string(), "a\"b\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(*r["i"].int64(), -42);
  EXPECT_FALSE(r["d"].int64().has_value());  // not an integer
  EXPECT_DOUBLE_EQ(*r["d"].number(), 2500.0);
  EXPECT_EQ(*r["t"].boolean(), true);
  EXPECT_EQ(*r["f"].boolean(), false);
  EXPECT_TRUE(r["n"].is(json_type::null));
  EXPECT_FALSE(r["missing"].valid());
  EXPECT_FALSE(r["missing"]["deeper"].string().has_value());
  EXPECT_EQ(r.key_at(2), "d");
}

TEST(Json, NestedArraysSkipWholeSubtrees) {
  parsed p(R"({"a":[1,[2,3],{"b":[4]}],"c":"after"})");
  ASSERT_TRUE(p.ok) << p.doc.error();
  auto a = p.doc.root()["a"];
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(*a.at(0).int64(), 1);
  EXPECT_EQ(a.at(1).size(), 2u);
  EXPECT_EQ(*a.at(2)["b"].at(0).int64(), 4);
  EXPECT_FALSE(a.at(3).valid());
  EXPECT_EQ(*p.doc.root()["c"].string(), "after");
}

TEST(Json, Int64Range) {
  parsed p(R"([9223372036854775807,9223372036854775808,-9223372036854775808,1e2])");
  ASSERT_TRUE(p.ok);
  auto r = p.doc.root();
  EXPECT_EQ(*r.at(0).int64(), INT64_MAX);
  EXPECT_FALSE(r.at(1).int64().has_value());
  EXPECT_EQ(*r.at(2).int64(), INT64_MIN);
  EXPECT_FALSE(r.at(3).int64().has_value());
  EXPECT_DOUBLE_EQ(*r.at(1).number(), 9223372036854775808.0);
}

struct bad_case {
  const char* text;
  const char* problem;
};

class JsonRejects : public testing::TestWithParam<bad_case> {};

TEST_P(JsonRejects, WithAReason) {
  parsed p(GetParam().text);
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.doc.error().find(GetParam().problem), std::string_view::npos) << p.doc.error();
  EXPECT_FALSE(p.doc.root().valid());
}

INSTANTIATE_TEST_SUITE_P(
    Strict, JsonRejects,
    testing::Values(bad_case{R"({"a":1,"a":2})", "duplicate key \"a\""},
                    bad_case{R"({"a":{"b":1,"b":1}})", "duplicate key"},
                    bad_case{"\"\xff\"", "invalid JSON at byte"},
                    bad_case{"\"\xc0\xaf\"", "invalid JSON"},  // overlong '/'
                    bad_case{"\"\xed\xa0\x80\"", "invalid JSON"},
                    bad_case{R"("\ud800")", "surrogate"}, bad_case{R"("\udfff")", "surrogate"},
                    bad_case{R"("\ud800\u0041")", "surrogate"}, bad_case{"1e400", "Number too big"},
                    bad_case{"{} {}", "invalid JSON"}, bad_case{"[1,]", "invalid JSON"},
                    bad_case{"[01]", "invalid JSON"}, bad_case{"[.5]", "invalid JSON"},
                    bad_case{"[Infinity]", "invalid JSON"}, bad_case{"// c\n{}", "invalid JSON"},
                    bad_case{"", "empty body"}, bad_case{"   ", "empty body"},
                    bad_case{"\"a\tb\"", "invalid JSON"}));

TEST(Json, DepthAndValueBudget) {
  std::string deep(33, '[');
  deep += std::string(33, ']');
  parsed p(deep);
  EXPECT_FALSE(p.ok);
  EXPECT_EQ(p.doc.error(), "nesting deeper than 32");
  std::string ok_deep = std::string(32, '[') + std::string(32, ']');
  EXPECT_TRUE(parsed(ok_deep).ok);

  std::string many = "[";
  for (int i = 0; i < 10; ++i) many += (i ? ",1" : "1");
  many += "]";
  EXPECT_TRUE(parsed(many, 11).ok);  // the array and its ten numbers
  parsed over(many, 10);
  EXPECT_FALSE(over.ok);
  EXPECT_EQ(over.doc.error(), "more than 10 values");
}

TEST(Json, NulInsideTheTextIsRefused) {
  std::string text("{\"a\":\"x", 7);
  text.push_back('\0');
  text += "\"}";
  parsed p(text);
  EXPECT_FALSE(p.ok);
  EXPECT_EQ(p.doc.error(), "NUL byte at byte 7");
}

TEST(Json, DocumentIsReusable) {
  json_doc doc;
  std::string a = R"({"x":"1"})";
  a.push_back('\0');
  ASSERT_TRUE(doc.parse(a.data(), a.size() - 1));
  std::string b = "[";
  b.push_back('\0');
  EXPECT_FALSE(doc.parse(b.data(), b.size() - 1));
  std::string c = R"({"y":2})";
  c.push_back('\0');
  ASSERT_TRUE(doc.parse(c.data(), c.size() - 1));
  EXPECT_EQ(*doc.root()["y"].int64(), 2);
  EXPECT_FALSE(doc.root()["x"].valid());
}
