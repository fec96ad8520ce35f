#include "json.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace core {

namespace {

// RapidJSON's reader keeps an internal stack it never uses in the in-place mode chosen below;
// handing it a static allocator keeps its constructor from allocating one of its own.
rapidjson::CrtAllocator g_stack_allocator;

constexpr unsigned kFlags = rapidjson::kParseInsituFlag | rapidjson::kParseValidateEncodingFlag |
                            rapidjson::kParseNumbersAsStringsFlag;

// UTF-8 of a code point in U+D800..U+DFFF: ED A0..BF xx.
bool has_surrogate(const char* s, size_t len) {
  for (size_t i = 0; i + 1 < len; ++i) {
    if (static_cast<unsigned char>(s[i]) == 0xED && static_cast<unsigned char>(s[i + 1]) >= 0xA0)
      return true;
  }
  return false;
}

}  // namespace

// The SAX handler: appends nodes, enforces the budget, depth, unique keys, and number range.
struct json_sax {
  json_doc& d;
  const char* base;

  using node = json_doc::node;

  bool add(json_type t, const char* text, size_t len, bool b = false) {
    if (d.count_ >= d.max_) {
      d.fail("more than %u values", d.max_);
      return false;
    }
    if (d.depth_ > 0) ++d.nodes_[d.open_[d.depth_ - 1]].count;
    node& n = d.nodes_[d.count_];
    n.type = t;
    n.boolean = b;
    n.count = 0;
    n.text = text;
    n.len = static_cast<uint32_t>(len);
    ++d.count_;
    n.end = d.count_;
    return true;
  }

  bool Null() { return add(json_type::null, nullptr, 0); }
  bool Bool(bool b) { return add(json_type::boolean, nullptr, 0, b); }
  bool Int(int) { return false; }  // never called: numbers arrive as text
  bool Uint(unsigned) { return false; }
  bool Int64(int64_t) { return false; }
  bool Uint64(uint64_t) { return false; }
  bool Double(double) { return false; }

  bool RawNumber(const char* s, rapidjson::SizeType len, bool) {
    double v = 0;
    auto [end, ec] = std::from_chars(s, s + len, v);
    if (ec == std::errc::result_out_of_range || end != s + len) {
      d.fail("number out of range at byte %zu", static_cast<size_t>(s - base));
      return false;
    }
    return add(json_type::number, s, len);
  }

  bool String(const char* s, rapidjson::SizeType len, bool) {
    if (has_surrogate(s, len)) {
      d.fail("string holds a lone surrogate near byte %zu", static_cast<size_t>(s - base));
      return false;
    }
    return add(json_type::string, s, len);
  }

  bool Key(const char* s, rapidjson::SizeType len, bool copy) {
    if (d.depth_ > 0) {
      // Members so far of the object being filled: key node, then the value's subtree.
      uint32_t obj = d.open_[d.depth_ - 1];
      std::string_view key(s, len);
      for (uint32_t i = obj + 1; i < d.count_; i = d.nodes_[i + 1].end) {
        if (std::string_view(d.nodes_[i].text, d.nodes_[i].len) == key) {
          d.fail("duplicate key \"%.*s\"", static_cast<int>(len < 40 ? len : 40), s);
          return false;
        }
      }
    }
    if (!String(s, len, copy)) return false;
    // The key node is not a member by itself: the member is counted once, with its key.
    if (d.depth_ > 0) --d.nodes_[d.open_[d.depth_ - 1]].count;
    return true;
  }

  bool start(json_type t) {
    if (d.depth_ >= d.max_depth_) {
      d.fail("nesting deeper than %u", d.max_depth_);
      return false;
    }
    if (!add(t, nullptr, 0)) return false;
    d.open_[d.depth_++] = d.count_ - 1;
    return true;
  }
  bool finish() {
    uint32_t i = d.open_[--d.depth_];
    d.nodes_[i].end = d.count_;
    return true;
  }
  bool StartObject() { return start(json_type::object); }
  bool EndObject(rapidjson::SizeType) { return finish(); }
  bool StartArray() { return start(json_type::array); }
  bool EndArray(rapidjson::SizeType) { return finish(); }
};

json_doc::json_doc(uint32_t max_values, uint32_t max_depth)
    : nodes_(new node[max_values > 0 ? max_values : 1]),
      open_(new uint32_t[max_depth > 0 ? max_depth : 1]),
      max_(max_values),
      max_depth_(max_depth) {}

void json_doc::fail(const char* fmt, ...) {
  if (error_len_ > 0) return;  // the first reason wins
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(error_, sizeof error_, fmt, ap);
  va_end(ap);
  error_len_ = n < 0 ? 0 : (static_cast<size_t>(n) < sizeof error_ ? n : sizeof error_ - 1);
}

bool json_doc::parse(char* text, size_t len) {
  count_ = 0;
  depth_ = 0;
  error_len_ = 0;
  error_[0] = '\0';
  // The in-place reader stops at a NUL; one inside the text would hide what follows it.
  if (const void* nul = memchr(text, '\0', len)) {
    fail("NUL byte at byte %zu", static_cast<size_t>(static_cast<const char*>(nul) - text));
    return false;
  }
  text[len] = '\0';
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>> reader(&g_stack_allocator);
  rapidjson::InsituStringStream in(text);
  json_sax sax{*this, text};
  rapidjson::ParseResult r = reader.Parse<kFlags>(in, sax);
  if (!r.IsError()) return true;
  count_ = 0;
  if (r.Code() == rapidjson::kParseErrorDocumentEmpty) {
    fail("empty body where JSON was expected");
  } else if (r.Code() != rapidjson::kParseErrorTermination) {
    // Our own checks stopped the reader (Termination) and already said why.
    const char* what = rapidjson::GetParseError_En(r.Code());
    fail("invalid JSON at byte %zu: %s", r.Offset(), what);
  }
  if (error_len_ == 0) fail("invalid JSON");
  return false;
}

// --- reading ---------------------------------------------------------------------------------

json_type json_ref::type() const {
  return doc_->at(index_).type;
}

size_t json_ref::size() const {
  if (!valid()) return 0;
  const auto& n = doc_->at(index_);
  return n.type == json_type::array || n.type == json_type::object ? n.count : 0;
}

json_ref json_ref::operator[](std::string_view key) const {
  if (!is(json_type::object)) return {};
  const auto& n = doc_->at(index_);
  for (uint32_t i = index_ + 1; i < n.end; i = doc_->at(i + 1).end) {
    const auto& k = doc_->at(i);
    if (std::string_view(k.text, k.len) == key) return json_ref(doc_, i + 1);
  }
  return {};
}

json_ref json_ref::at(size_t pos) const {
  if (!valid()) return {};
  const auto& n = doc_->at(index_);
  if (pos >= size()) return {};
  bool object = n.type == json_type::object;
  uint32_t i = index_ + 1;
  for (size_t k = 0; k < pos; ++k) i = doc_->at(object ? i + 1 : i).end;
  return json_ref(doc_, object ? i + 1 : i);
}

std::string_view json_ref::key_at(size_t pos) const {
  if (!is(json_type::object) || pos >= size()) return {};
  uint32_t i = index_ + 1;
  for (size_t k = 0; k < pos; ++k) i = doc_->at(i + 1).end;
  return {doc_->at(i).text, doc_->at(i).len};
}

std::optional<std::string_view> json_ref::string() const {
  if (!is(json_type::string)) return std::nullopt;
  const auto& n = doc_->at(index_);
  return std::string_view(n.text, n.len);
}

std::optional<bool> json_ref::boolean() const {
  if (!is(json_type::boolean)) return std::nullopt;
  return doc_->at(index_).boolean;
}

std::string_view json_ref::number_text() const {
  if (!is(json_type::number)) return {};
  const auto& n = doc_->at(index_);
  return {n.text, n.len};
}

std::optional<int64_t> json_ref::int64() const {
  std::string_view t = number_text();
  if (t.empty()) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  return v;
}

std::optional<double> json_ref::number() const {
  std::string_view t = number_text();
  if (t.empty()) return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  return v;
}

}  // namespace core
