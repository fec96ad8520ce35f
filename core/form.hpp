// Percent-decoding (paths, query strings) and application/x-www-form-urlencoded bodies (HTML
// forms), as the WHATWG URL standard reads them: pairs split on '&', name and value split on
// the first '=', '+' is a space, %XX a byte. Stricter than browsers on input they never send:
// a bad %-escape or a result that is not UTF-8 is an error, not a replacement character.
// Decodes into the caller's buffer; no allocation.
#pragma once

#include <cstddef>
#include <string_view>

namespace core {

enum class decode_result { ok, bad_escape, too_long };

// Decodes %XX escapes ('+' -> space only when plus_is_space: it means space in query strings
// and forms, not in paths). Writes at most `cap` bytes to out and sets *out_len.
decode_result percent_decode(std::string_view in, bool plus_is_space, char* out, size_t cap,
                             size_t* out_len);

class form_reader {
 public:
  // `body` must outlive the reader; decoded names and values go to out[0..cap) and stay
  // valid until the next call of next().
  form_reader(std::string_view body, char* out, size_t cap) : rest_(body), out_(out), cap_(cap) {}

  enum class result { field, end, bad_escape, bad_utf8, too_long };
  // The next pair: `field` with name/value set, `end` when none is left, else an error.
  result next(std::string_view* name, std::string_view* value);

 private:
  std::string_view rest_;
  char* out_;
  size_t cap_;
};

}  // namespace core
