#include "greeting.hpp"

namespace hello {
decode_result percent_decode(std::string_view in, char* out, size_t cap, size_t* out_len) {
  return core::percent_decode(in, false, out, cap, out_len);
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
