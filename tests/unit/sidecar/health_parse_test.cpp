#include "health_parse.hpp"

#include <gtest/gtest.h>

using namespace sidecar;

TEST(ParseHealth, ReadsTheServiceAnswer) {
  health_reading r;
  ASSERT_EQ(parse_health("{\"healthy\":true,\"latency\":0.7978267010781679}", &r), nullptr);
  EXPECT_TRUE(r.healthy);
  EXPECT_DOUBLE_EQ(r.latency, 0.7978267010781679);
  ASSERT_EQ(parse_health(
                " {\n \"latency\" : 1e-3 , \"healthy\" : false, \"x\": [1, {\"y\": null}]}\n", &r),
            nullptr);
  EXPECT_FALSE(r.healthy);
  EXPECT_DOUBLE_EQ(r.latency, 0.001);
  EXPECT_EQ(parse_health("{\"latency\":0,\"healthy\":true}", &r), nullptr);
}

TEST(ParseHealth, RejectsWhatIsNotAHealthAnswer) {
  health_reading r;
  for (const char* bad :
       {"", "null", "[]", "{", "{\"healthy\":true}", "{\"latency\":0.1}",
        "{\"healthy\":1,\"latency\":0.1}", "{\"healthy\":true,\"latency\":\"0.1\"}",
        "{\"healthy\":true,\"latency\":-0.1}", "{\"healthy\":true,\"latency\":01}",
        "{\"healthy\":true,\"latency\":.5}", "{\"healthy\":true,\"latency\":1e999}",
        "{\"healthy\":true,\"latency\":0.1} x", "{'healthy':true,'latency':0.1}",
        "{\"healthy\":true,\"latency\":0.1,}", "<html>oops</html>",
        "{\"healthy\":true,\"latency\":0.1,\"s\":\"\x01\"}"}) {
    EXPECT_NE(parse_health(bad, &r), nullptr) << bad;
  }
  EXPECT_STREQ(parse_health("{\"healthy\":true}", &r), "no \"latency\" field");
}

TEST(ParseHealth, StrictJsonProblemsAreNamed) {
  health_reading r;
  EXPECT_STREQ(parse_health("{\"healthy\":true,\"healthy\":false,\"latency\":0}", &r),
               "duplicate key \"healthy\"");
  EXPECT_STREQ(parse_health("{\"healthy\":true,\"latency\":0,\"s\":\"\\udc00\"}", &r),
               "string holds a lone surrogate near byte 33");
  EXPECT_NE(std::string(parse_health("{\"healthy\":true,\"latency\":0,\"s\":\"\xff\"}", &r))
                .find("invalid JSON at byte"),
            std::string::npos);
  EXPECT_STREQ(parse_health(std::string(16 * 1024 + 1, ' '), &r), "body too large");
}

TEST(ParseHealth, DeepNestingIsRejectedNotRecursedForever) {
  std::string deep = "{\"healthy\":true,\"latency\":0.1,\"x\":" + std::string(10000, '[') +
                     std::string(10000, ']') + "}";
  health_reading r;
  EXPECT_NE(parse_health(deep, &r), nullptr);
}
