// Strict JSON reading (RFC 8259) into a small flat tree, with RapidJSON's SAX reader doing the
// tokenising and the escapes. docs/ARCHITECTURE.md says why RapidJSON: a maintained Debian
// package, header-only (nothing to link into the static images), a SAX interface that parses in
// place with no allocation, and error codes with offsets.
//
// What this layer adds to RapidJSON: a fixed node budget and nesting limit (a hostile body
// cannot make us allocate or recurse deeply), duplicate object keys refused, lone surrogates
// refused (RapidJSON 1.1 lets a lone \uDC00 through), numbers kept as their text and checked for
// range, NUL bytes refused, and one readable error message with the byte offset. Writing JSON
// stays with core::buf_writer and json_escape (response.hpp): faster than any DOM writer.
//
// No allocation after construction: the nodes live in one array made once; strings are
// unescaped in place in the caller's buffer (which must be writable and outlive the reads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace core {

enum class json_type : uint8_t { null, boolean, number, string, array, object };

class json_doc;

// A node of a parsed document; an invalid ref (missing member, out of range) answers every
// question with "no" so lookups chain: doc.root()["user"]["name"].string().
class json_ref {
 public:
  json_ref() = default;
  bool valid() const { return doc_ != nullptr; }
  json_type type() const;
  bool is(json_type t) const { return valid() && type() == t; }
  // Member of an object (nullptr-like ref if absent or not an object).
  json_ref operator[](std::string_view key) const;
  // Element i of an array, or the i-th member's value of an object.
  json_ref at(size_t i) const;
  // Key of the i-th member of an object.
  std::string_view key_at(size_t i) const;
  size_t size() const;  // elements or members; 0 for scalars

  std::optional<std::string_view> string() const;
  std::optional<bool> boolean() const;
  // Integers only (no fraction or exponent) that fit in int64_t.
  std::optional<int64_t> int64() const;
  std::optional<double> number() const;
  std::string_view number_text() const;  // as written

 private:
  friend class json_doc;
  json_ref(const json_doc* d, uint32_t i) : doc_(d), index_(i) {}
  const json_doc* doc_ = nullptr;
  uint32_t index_ = 0;
};

class json_doc {
 public:
  struct node {
    json_type type;
    bool boolean;
    uint32_t count;  // children: elements, or members (a member is a key node + a value)
    uint32_t end;    // index one past this node's subtree
    const char* text;
    uint32_t len;
  };

  json_doc(uint32_t max_values = 256, uint32_t max_depth = 32);
  json_doc(const json_doc&) = delete;
  json_doc& operator=(const json_doc&) = delete;

  // Parses text[0..len) in place: escapes are decoded into the same buffer, which needs one
  // more writable byte after the text (a NUL is put there). Returns false with error() set.
  bool parse(char* text, size_t len);
  // Why the last parse failed, e.g. "invalid JSON at byte 12: missing a colon after a name".
  std::string_view error() const { return {error_, error_len_}; }
  const char* error_text() const { return error_; }  // the same, NUL-terminated
  json_ref root() const { return count_ > 0 ? json_ref(this, 0) : json_ref(); }
  const node& at(uint32_t i) const { return nodes_[i]; }
  uint32_t max_values() const { return max_; }

 private:
  friend struct json_sax;
  void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

  std::unique_ptr<node[]> nodes_;
  std::unique_ptr<uint32_t[]> open_;  // indices of the containers being filled
  uint32_t max_;
  uint32_t max_depth_;
  uint32_t count_ = 0;
  uint32_t depth_ = 0;
  char error_[160] = "";
  size_t error_len_ = 0;
};

}  // namespace core
