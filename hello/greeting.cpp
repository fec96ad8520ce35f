#include "greeting.hpp"

#include <utf8proc.h>

#include <cstring>
#include <iterator>

#include "case_tables.hpp"

namespace hello {
decode_result percent_decode(std::string_view in, char* out, size_t cap, size_t* out_len) {
  return core::percent_decode(in, false, out, cap, out_len);
}

namespace {

const case_expansion* find_expansion(const case_expansion* table, size_t n, int32_t c) {
  for (size_t i = 0; i < n; ++i) {
    if (table[i].from == static_cast<char32_t>(c)) return &table[i];
  }
  return nullptr;
}

// Unicode's Cased: Lu, Ll, Lt, the other letters and symbols that have a case mapping
// (Ⅰ/ⅰ, Ⓐ/ⓐ, U+0345), and a few without one (ª, º, 🄰).
bool is_cased(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT: return true;
    default:
      if (utf8proc_tolower(c) != c || utf8proc_toupper(c) != c || utf8proc_totitle(c) != c) {
        return true;
      }
      for (const code_point_range& r : other_cased) {
        if (static_cast<char32_t>(c) >= r.first && static_cast<char32_t>(c) <= r.last) return true;
      }
      return false;
  }
}

// Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter, MidNumLet and
// Single_Quote (apostrophe, full stop, colon, middle dot, ...).
bool is_case_ignorable(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return true;
    default:
      for (char32_t m : word_mid_letters) {
        if (m == static_cast<char32_t>(c)) return true;
      }
      return false;
  }
}

// Decodes the code point at s[i] (valid UTF-8) and moves i past it.
int32_t next_code_point(std::string_view s, size_t* i) {
  int32_t c = 0;
  auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + *i),
                            static_cast<utf8proc_ssize_t>(s.size() - *i), &c);
  *i += n > 0 ? static_cast<size_t>(n) : 1;
  return n > 0 ? c : 0xFFFD;
}

// The code point ending just before s[end] (valid UTF-8), and where it starts.
int32_t previous_code_point(std::string_view s, size_t end, size_t* start) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  *start = i;
  size_t at = i;
  return next_code_point(s, &at);
}

// Python's Final_Sigma test for the Σ at s[at, next): a cased letter before it (case-ignorable
// ones skipped), and none after it.
bool final_sigma(std::string_view s, size_t at, size_t next) {
  size_t i = at;
  bool cased_before = false;
  while (i > 0) {
    int32_t c = previous_code_point(s, i, &i);
    if (!is_case_ignorable(c)) {
      cased_before = is_cased(c);
      break;
    }
  }
  if (!cased_before) return false;
  for (size_t j = next; j < s.size();) {
    int32_t c = next_code_point(s, &j);
    if (!is_case_ignorable(c)) return !is_cased(c);
  }
  return true;
}

struct utf8_out {
  char* out;
  size_t cap;
  size_t len = 0;
  bool full = false;

  // Appends the code points as UTF-8, all of them or (no room) none.
  void put(const int32_t* cps, size_t n) {
    utf8proc_uint8_t buf[3 * 4];
    size_t bytes = 0;
    for (size_t k = 0; k < n; ++k) {
      bytes += static_cast<size_t>(utf8proc_encode_char(cps[k], buf + bytes));
    }
    if (full || bytes > cap - len) {
      full = true;
      return;
    }
    memcpy(out + len, buf, bytes);
    len += bytes;
  }
};

}  // namespace

size_t capitalize(std::string_view name, char* out, size_t cap) {
  utf8_out w{out, cap};
  int32_t mapped[3];
  for (size_t i = 0; i < name.size() && !w.full;) {
    size_t at = i;
    int32_t c = next_code_point(name, &i);
    const case_expansion* e =
        at == 0 ? find_expansion(title_expansions, std::size(title_expansions), c)
                : find_expansion(lower_expansions, std::size(lower_expansions), c);
    size_t n = 1;
    if (e != nullptr) {
      n = e->count;
      for (size_t k = 0; k < n; ++k) mapped[k] = static_cast<int32_t>(e->to[k]);
    } else if (at == 0) {
      mapped[0] = utf8proc_totitle(c);
    } else if (c == 0x03A3) {
      mapped[0] = final_sigma(name, at, i) ? 0x03C2 : 0x03C3;  // ς or σ
    } else {
      mapped[0] = utf8proc_tolower(c);
    }
    w.put(mapped, n);
  }
  return w.len;
}

void write_greeting(core::buf_writer& w, std::string_view name) {
  w.put("{\"msg\":\"Hello, ");
  core::json_escape(w, name);
  w.put("!\"}");
}

}  // namespace hello
