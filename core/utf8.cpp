#include "utf8.hpp"

namespace core {

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

}  // namespace core
