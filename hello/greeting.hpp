// The greeting route's pure pieces: percent-decoding, UTF-8 validation, Flask-style
// capitalisation and the JSON answer.
#pragma once

#include <cstddef>
#include <string_view>

#include "form.hpp"
#include "response.hpp"
#include "utf8.hpp"

namespace hello {

// Longest name (after percent-decoding) that /<name> greets; longer names get 414.
inline constexpr size_t max_name_bytes = 1024;

using core::decode_result;

// Decodes %XX escapes ('+' stays '+': it means space only in query strings). Writes at most
// `cap` bytes to out and sets *out_len.
decode_result percent_decode(std::string_view in, char* out, size_t cap, size_t* out_len);

using core::valid_utf8;

// Python's str.capitalize() restricted to ASCII: first byte upper-cased, the rest lower-cased;
// non-ASCII bytes are left as they are.
void capitalize_ascii(char* s, size_t len);

// {"msg":"Hello, <name>!"} with name JSON-escaped.
void write_greeting(core::buf_writer& w, std::string_view name);

}  // namespace hello
