// The greeting route's pure pieces: percent-decoding, UTF-8 validation, Python-style
// capitalisation (utf8proc) and the JSON answer.
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

// capitalize()'s output for a name of max_name_bytes fits in this: a case mapping at most
// doubles a character's UTF-8 length (the first one's title case: 2 bytes -> 6), and lowering
// the others at most grows them by half (U+0130 -> "i\u0307", U+023A -> U+2C65).
inline constexpr size_t max_capitalized_bytes = 2 * max_name_bytes + 8;

// What Python's str.capitalize() (3.8 and later) does, over all of Unicode: the first character
// to its title case, every other one to lower case, with the full mappings of SpecialCasing.txt
// (ß -> Ss, ﬁ -> Fi, ŉ -> ʼN, İ -> i̇) and the final-sigma rule (Σ -> ς at the end of a word).
// The mappings and the properties come from utf8proc; case_tables.hpp adds the few one-to-many
// mappings and the Word_Break code points utf8proc does not carry. name must be valid UTF-8.
// Writes at most cap bytes to out (stopping at a whole character) and returns how many; no
// allocation.
size_t capitalize(std::string_view name, char* out, size_t cap);

// {"msg":"Hello, <name>!"} with name JSON-escaped.
void write_greeting(core::buf_writer& w, std::string_view name);

}  // namespace hello
