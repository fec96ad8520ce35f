#include "form.hpp"

#include "utf8.hpp"

namespace core {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

decode_result percent_decode(std::string_view in, bool plus_is_space, char* out, size_t cap,
                             size_t* out_len) {
  size_t n = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (in.size() - i < 3) return decode_result::bad_escape;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return decode_result::bad_escape;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (n == cap) return decode_result::too_long;
    out[n++] = c;
  }
  *out_len = n;
  return decode_result::ok;
}

form_reader::result form_reader::next(std::string_view* name, std::string_view* value) {
  while (!rest_.empty()) {
    size_t amp = rest_.find('&');
    std::string_view pair = rest_.substr(0, amp);
    rest_ = amp == std::string_view::npos ? std::string_view() : rest_.substr(amp + 1);
    if (pair.empty()) continue;  // "a=1&&b=2": empty pairs are skipped, as browsers do
    size_t eq = pair.find('=');
    std::string_view raw_name = pair.substr(0, eq);
    std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    size_t name_len = 0;
    size_t value_len = 0;
    decode_result r = percent_decode(raw_name, true, out_, cap_, &name_len);
    if (r == decode_result::ok)
      r = percent_decode(raw_value, true, out_ + name_len, cap_ - name_len, &value_len);
    if (r == decode_result::bad_escape) return result::bad_escape;
    if (r == decode_result::too_long) return result::too_long;
    *name = std::string_view(out_, name_len);
    *value = std::string_view(out_ + name_len, value_len);
    if (!valid_utf8(*name) || !valid_utf8(*value)) return result::bad_utf8;
    return result::field;
  }
  return result::end;
}

}  // namespace core
