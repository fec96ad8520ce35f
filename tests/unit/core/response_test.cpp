#include "response.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace core;

namespace {
std::string escaped(std::string_view in) {
  char buf[256];
  buf_writer w(buf, sizeof buf);
  json_escape(w, in);
  EXPECT_FALSE(w.overflow);
  return std::string(w.view());
}
}  // namespace

TEST(JsonEscape, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(escaped("plain"), "plain");
  EXPECT_EQ(escaped("a\"b"), "a\\\"b");
  EXPECT_EQ(escaped("a\\b"), "a\\\\b");
  EXPECT_EQ(escaped("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
  EXPECT_EQ(escaped(std::string_view("\x00\x01\x1f", 3)), "\\u0000\\u0001\\u001f");
  EXPECT_EQ(escaped("\x7f"), "\x7f");
  EXPECT_EQ(escaped("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST(BufWriter, OverflowKeepsContentAndStops) {
  char buf[8];
  buf_writer w(buf, sizeof buf);
  w.put("12345");
  w.put("6789");
  EXPECT_TRUE(w.overflow);
  EXPECT_EQ(w.view(), "12345");
  w.put("6");
  EXPECT_EQ(w.view(), "12345");
}

TEST(BufWriter, DoublesReadBackLikePythonRepr) {
  char buf[64];
  buf_writer w(buf, sizeof buf);
  w.put_double(0.7978267010781679);
  EXPECT_EQ(w.view(), "0.7978267010781679");
  w.reset();
  w.put_double(0.5);
  EXPECT_EQ(w.view(), "0.5");
  w.reset();
  w.put_double(0.0);
  EXPECT_EQ(w.view(), "0.0");
  w.reset();
  w.put_uint(18446744073709551615ULL);
  EXPECT_EQ(w.view(), "18446744073709551615");
}

TEST(ResponseHead, Layout) {
  char buf[512];
  buf_writer w(buf, sizeof buf);
  response_head h;
  h.status = 405;
  h.content_length = 12;
  h.connection = conn_header::close;
  h.date = "Mon, 23 Nov 2026 05:17:11 GMT";
  h.extra_headers = "Allow: GET, HEAD\r\n";
  write_response_head(w, h);
  EXPECT_EQ(w.view(),
            "HTTP/1.1 405 Method Not Allowed\r\nServer: hello-stack\r\n"
            "Date: Mon, 23 Nov 2026 05:17:11 GMT\r\nContent-Type: application/json\r\n"
            "Content-Length: 12\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n");
  w.reset();
  h.connection = conn_header::keep_alive;
  h.extra_headers = {};
  h.status = 200;
  write_response_head(w, h);
  EXPECT_NE(w.view().find("Connection: keep-alive\r\n"), std::string_view::npos);
  EXPECT_EQ(w.view().substr(0, 17), "HTTP/1.1 200 OK\r\n");
}

TEST(ResponseHead, NoContentHasNoLengthOrType) {
  char buf[512];
  buf_writer w(buf, sizeof buf);
  response_head h;
  h.status = 204;
  h.date = "Mon, 23 Nov 2026 05:17:11 GMT";
  h.extra_headers = "X-User: 1:a\r\n";
  write_response_head(w, h);
  EXPECT_EQ(w.view(),
            "HTTP/1.1 204 No Content\r\nServer: hello-stack\r\n"
            "Date: Mon, 23 Nov 2026 05:17:11 GMT\r\nX-User: 1:a\r\n\r\n");
}

TEST(HttpDate, ImfFixdate) {
  char out[30];
  format_http_date(0, out);
  EXPECT_STREQ(out, "Thu, 01 Jan 1970 00:00:00 GMT");
  format_http_date(1795412231, out);  // 2026-11-23T05:37:11Z
  EXPECT_STREQ(out, "Mon, 23 Nov 2026 05:37:11 GMT");
}

TEST(Reason, KnownAndUnknown) {
  EXPECT_STREQ(http_reason(404), "Not Found");
  EXPECT_STREQ(http_reason(431), "Request Header Fields Too Large");
  EXPECT_STREQ(http_reason(299), "Unknown");
}
