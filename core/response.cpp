#include "response.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace core {

void buf_writer::put(std::string_view s) {
  if (s.empty()) return;  // may have a null data(): memcpy must not see it
  if (overflow || s.size() > cap - len) {
    overflow = true;
    return;
  }
  memcpy(data + len, s.data(), s.size());
  len += s.size();
}

void buf_writer::put(char c) {
  if (overflow || len == cap) {
    overflow = true;
    return;
  }
  data[len++] = c;
}

void buf_writer::put_uint(uint64_t v) {
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
  (void)ec;
  put(std::string_view(tmp, static_cast<size_t>(end - tmp)));
}

void buf_writer::put_double(double v) {
  char tmp[32];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
  if (ec != std::errc()) {
    put("0");
    return;
  }
  std::string_view s(tmp, static_cast<size_t>(end - tmp));
  put(s);
  // JSON wants a number; Python's repr prints whole floats as "1.0": keep it a float.
  if (s.find_first_of(".e") == std::string_view::npos && s != "inf" && s != "nan") put(".0");
}

const char* http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 502: return "Bad Gateway";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

void json_escape(buf_writer& w, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;  // start of the current run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    w.put(s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"': w.put("\\\""); break;
      case '\\': w.put("\\\\"); break;
      case '\n': w.put("\\n"); break;
      case '\r': w.put("\\r"); break;
      case '\t': w.put("\\t"); break;
      case '\b': w.put("\\b"); break;
      case '\f': w.put("\\f"); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        w.put(std::string_view(u, 6));
      }
    }
  }
  w.put(s.substr(run));
}

void write_response_head(buf_writer& w, const response_head& head) {
  w.put("HTTP/1.1 ");
  w.put_uint(static_cast<uint64_t>(head.status));
  w.put(' ');
  w.put(http_reason(head.status));
  w.put("\r\nServer: hello-stack\r\nDate: ");
  w.put(head.date);
  // A 204 has neither (RFC 9110 8.6: no Content-Length in a 204), nor a 304 here (we never
  // send one with the representation's metadata).
  bool no_content = head.status == 204 || head.status == 304;
  if (head.content_type != nullptr && !no_content) {
    w.put("\r\nContent-Type: ");
    w.put(head.content_type);
  }
  if (!no_content) {
    w.put("\r\nContent-Length: ");
    w.put_uint(head.content_length);
  }
  w.put("\r\n");
  if (head.connection == conn_header::close) {
    w.put("Connection: close\r\n");
  } else if (head.connection == conn_header::keep_alive) {
    w.put("Connection: keep-alive\r\n");
  }
  w.put(head.common_headers);
  w.put(head.extra_headers);
  w.put("\r\n");
}

void format_http_date(int64_t unix_seconds, char out[30]) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm g{};
  gmtime_r(&t, &g);
  // strftime's %a/%b follow the locale; the header needs the fixed English names.
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto two = [](char* p, int v) {
    p[0] = static_cast<char>('0' + v / 10 % 10);
    p[1] = static_cast<char>('0' + v % 10);
  };
  int year = g.tm_year + 1900;
  if (year < 0 || year > 9999) year = 9999;
  memcpy(out, "Sun, 00 Jan 0000 00:00:00 GMT", 30);
  memcpy(out, days[g.tm_wday], 3);
  two(out + 5, g.tm_mday);
  memcpy(out + 8, months[g.tm_mon], 3);
  two(out + 12, year / 100);
  two(out + 14, year % 100);
  two(out + 17, g.tm_hour);
  two(out + 20, g.tm_min);
  two(out + 23, g.tm_sec);
}

}  // namespace core
