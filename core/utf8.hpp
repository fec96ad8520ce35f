// UTF-8 validation shared by the services (names in paths, form fields, JSON is checked by its
// reader).
#pragma once

#include <string_view>

namespace core {

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s);

}  // namespace core
