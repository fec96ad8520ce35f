// Response building into fixed buffers: status lines, headers, JSON escaping. Nothing here
// allocates; a writer that runs out of room says so instead of growing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace core {

// Appends into caller-owned memory. Once an append does not fit, `overflow` is set, nothing
// more is written, and the content so far stays intact.
struct buf_writer {
  char* data = nullptr;
  size_t len = 0;
  size_t cap = 0;
  bool overflow = false;

  buf_writer() = default;
  buf_writer(char* d, size_t c) : data(d), cap(c) {}

  void reset() {
    len = 0;
    overflow = false;
  }
  size_t room() const { return cap - len; }
  std::string_view view() const { return {data, len}; }
  void put(std::string_view s);
  void put(char c);
  void put_uint(uint64_t v);
  // Shortest representation that reads back to the same double (like Python's repr).
  void put_double(double v);
};

// Reason phrase for the status codes this project answers; "Unknown" otherwise.
const char* http_reason(int status);

// Writes `s` as the inside of a JSON string: quote, backslash and control characters escaped
// (\n \r \t \b \f, else \u00XX); every other byte is copied as it is (the caller guarantees
// valid UTF-8 where it matters).
void json_escape(buf_writer& w, std::string_view s);

enum class conn_header : uint8_t { none, keep_alive, close };

struct response_head {
  int status = 200;
  const char* content_type = "application/json";
  size_t content_length = 0;
  conn_header connection = conn_header::none;
  std::string_view date;            // IMF-fixdate, e.g. "Mon, 23 Nov 2026 05:17:11 GMT"
  std::string_view common_headers;  // lines every answer carries (e.g. X-Served-By)
  std::string_view extra_headers;   // complete "Name: value\r\n" lines, or empty
};

// "HTTP/1.1 200 OK\r\n" + Date, Content-Type, Content-Length, Connection, extras + "\r\n".
void write_response_head(buf_writer& w, const response_head& head);

// Formats an IMF-fixdate (RFC 9110 5.6.7) for the Date header; 29 bytes + NUL.
void format_http_date(int64_t unix_seconds, char out[30]);

}  // namespace core
