#include "greeting.hpp"

namespace hello {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

decode_result percent_decode(std::string_view in, char* out, size_t cap, size_t* out_len) {
  size_t n = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return decode_result::bad_escape;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return decode_result::bad_escape;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (n == cap) return decode_result::too_long;
    out[n++] = c;
  }
  *out_len = n;
  return decode_result::ok;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;  // allowed range of the second byte
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      len = 2;
    } else if (b0 == 0xe0) {
      len = 3;
      lo = 0xa0;
    } else if ((b0 >= 0xe1 && b0 <= 0xec) || b0 == 0xee || b0 == 0xef) {
      len = 3;
    } else if (b0 == 0xed) {
      len = 3;
      hi = 0x9f;  // no UTF-16 surrogates
    } else if (b0 == 0xf0) {
      len = 4;
      lo = 0x90;
    } else if (b0 >= 0xf1 && b0 <= 0xf3) {
      len = 4;
    } else if (b0 == 0xf4) {
      len = 4;
      hi = 0x8f;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if (b < 0x80 || b > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

void capitalize_ascii(char* s, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    char c = s[i];
    if (i == 0) {
      if (c >= 'a' && c <= 'z') s[i] = static_cast<char>(c - 'a' + 'A');
    } else if (c >= 'A' && c <= 'Z') {
      s[i] = static_cast<char>(c - 'A' + 'a');
    }
  }
}

void write_greeting(core::buf_writer& w, std::string_view name) {
  w.put("{\"msg\":\"Hello, ");
  core::json_escape(w, name);
  w.put("!\"}");
}

}  // namespace hello
