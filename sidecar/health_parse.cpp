#include "health_parse.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

namespace sidecar {
namespace {

constexpr int kMaxDepth = 32;

struct json_reader {
  std::string_view s;
  size_t i = 0;

  void skip_ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool eat(char c) {
    skip_ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool literal(std::string_view word) {
    if (s.substr(i, word.size()) != word) return false;
    i += word.size();
    return true;
  }

  // A string; its raw contents (escapes left as they are) go to *raw.
  bool string(std::string_view* raw) {
    skip_ws();
    if (i >= s.size() || s[i] != '"') return false;
    size_t start = ++i;
    while (i < s.size()) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        if (raw != nullptr) *raw = s.substr(start, i - start);
        ++i;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i >= s.size()) return false;
        char e = s[i];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (++i >= s.size() || !isxdigit(static_cast<unsigned char>(s[i]))) return false;
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                   e != 'r' && e != 't') {
          return false;
        }
      }
      ++i;
    }
    return false;
  }

  bool number(double* out) {
    skip_ws();
    size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    if (i >= s.size()) return false;
    if (s[i] == '0') {
      ++i;
    } else if (s[i] >= '1' && s[i] <= '9') {
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    } else {
      return false;
    }
    if (i < s.size() && s[i] == '.') {
      size_t d = ++i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
      if (i == d) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      size_t d = i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
      if (i == d) return false;
    }
    double v = 0;
    auto [end, ec] = std::from_chars(s.data() + start, s.data() + i, v);
    if (ec == std::errc::result_out_of_range)
      v = HUGE_VAL;
    else if (ec != std::errc() || end != s.data() + i)
      return false;
    if (out != nullptr) *out = v;
    return true;
  }

  bool value(int depth) {
    if (depth > kMaxDepth) return false;
    skip_ws();
    if (i >= s.size()) return false;
    switch (s[i]) {
      case '"': return string(nullptr);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      case '{': {
        ++i;
        if (eat('}')) return true;
        do {
          if (!string(nullptr) || !eat(':') || !value(depth + 1)) return false;
        } while (eat(','));
        return eat('}');
      }
      case '[': {
        ++i;
        if (eat(']')) return true;
        do {
          if (!value(depth + 1)) return false;
        } while (eat(','));
        return eat(']');
      }
      default: return number(nullptr);
    }
  }
};

}  // namespace

const char* parse_health(std::string_view body, health_reading* out) {
  json_reader r{body};
  bool have_healthy = false;
  bool have_latency = false;
  health_reading reading;
  if (!r.eat('{')) return "not a JSON object";
  if (!r.eat('}')) {
    do {
      std::string_view key;
      if (!r.string(&key) || !r.eat(':')) return "invalid JSON";
      r.skip_ws();
      if (key == "healthy") {
        if (r.literal("true")) {
          reading.healthy = true;
        } else if (r.literal("false")) {
          reading.healthy = false;
        } else {
          return "\"healthy\" is not a boolean";
        }
        have_healthy = true;
      } else if (key == "latency") {
        if (!r.number(&reading.latency)) return "\"latency\" is not a number";
        if (!std::isfinite(reading.latency) || reading.latency < 0) {
          return "\"latency\" is not a finite number >= 0";
        }
        have_latency = true;
      } else if (!r.value(1)) {
        return "invalid JSON";
      }
    } while (r.eat(','));
    if (!r.eat('}')) return "invalid JSON";
  }
  r.skip_ws();
  if (r.i != body.size()) return "trailing data after the JSON object";
  if (!have_healthy) return "no \"healthy\" field";
  if (!have_latency) return "no \"latency\" field";
  *out = reading;
  return nullptr;
}

}  // namespace sidecar
