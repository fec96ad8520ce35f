#include "routes.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace hello;

namespace {

struct answer {
  int status;
  std::string body;
  std::string extra;
};

answer call(app& a, std::string_view target, llhttp_method_t method = HTTP_GET) {
  static char scratch[core::http_server::inline_body];
  core::http_request req{};
  req.method = method;
  req.target = target;
  req.version_major = 1;
  req.version_minor = 1;
  core::http_reply reply;
  reply.body = core::buf_writer(scratch, sizeof scratch);
  handle_request(&a, req, reply);
  return {reply.status, std::string(reply.body.view()), std::string(reply.extra_headers)};
}

}  // namespace

TEST(Routes, Greetings) {
  app a{health_model(0.9, 1)};
  EXPECT_EQ(call(a, "/").body, "{\"msg\":\"Hello, World!\"}");
  EXPECT_EQ(call(a, "/baz").body, "{\"msg\":\"Hello, Baz!\"}");
  EXPECT_EQ(call(a, "/bAZ?x=1").body, "{\"msg\":\"Hello, Baz!\"}");
  EXPECT_EQ(call(a, "/hello%20WORLD").body, "{\"msg\":\"Hello, Hello world!\"}");
  EXPECT_EQ(call(a, "http://example.com/baz").body, "{\"msg\":\"Hello, Baz!\"}");
  EXPECT_EQ(call(a, "/%22%5C%0A").body, "{\"msg\":\"Hello, \\\"\\\\\\n!\"}");
  EXPECT_EQ(call(a, "/baz", HTTP_HEAD).status, 200);
}

TEST(Routes, HealthReportsPreviousRequestLatency) {
  app a{health_model(0.9, 99)};
  call(a, "/");
  double before = a.health.last_latency();
  answer h = call(a, "/health");
  EXPECT_EQ(h.status, 200);
  char expect[128];
  core::buf_writer w(expect, sizeof expect);
  w.put(before < 0.9 ? "{\"healthy\":true,\"latency\":" : "{\"healthy\":false,\"latency\":");
  w.put_double(before);
  w.put('}');
  EXPECT_EQ(h.body, std::string(w.view()));
  EXPECT_NE(a.health.last_latency(), before);  // the /health request drew its own
}

TEST(Routes, Errors) {
  app a{health_model(0.9, 1)};
  EXPECT_EQ(call(a, "/a/b").status, 404);
  EXPECT_EQ(call(a, "/baz/").status, 404);
  EXPECT_EQ(call(a, "/a%2Fb").status, 404);
  EXPECT_EQ(call(a, "/a/b").body, "{\"error\":\"not found\"}");
  EXPECT_EQ(call(a, "/%zz").status, 400);
  EXPECT_EQ(call(a, "/%ff").status, 400);
  EXPECT_EQ(call(a, "*").status, 400);
  EXPECT_EQ(call(a, "/" + std::string(1025, 'a')).status, 414);
  EXPECT_EQ(call(a, "/" + std::string(1024, 'a')).status, 200);
  answer post = call(a, "/baz", HTTP_POST);
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.extra, "Allow: GET, HEAD\r\n");
  EXPECT_EQ(call(a, "/a/b", HTTP_POST).status, 404);
}

TEST(TargetPath, Forms) {
  EXPECT_EQ(target_path("/a?b#c"), "/a");
  EXPECT_EQ(target_path("HTTP://h:1/x?y"), "/x");
  EXPECT_EQ(target_path("https://h"), "/");
  EXPECT_EQ(target_path("h:443"), "");
  EXPECT_EQ(target_path("*"), "");
}
