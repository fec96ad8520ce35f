#include "health_parse.hpp"

#include <cmath>
#include <cstring>

#include "json.hpp"

namespace sidecar {

namespace {

// The poller keeps at most 16 KiB of a body (a larger one is already a "body" failure).
constexpr size_t kMaxBody = 16 * 1024;

}  // namespace

// core::json_doc does the reading (strict RFC 8259 through RapidJSON: duplicate keys, bad
// UTF-8, lone surrogates, deep nesting and out-of-range numbers are all refused); this only
// says what a health answer must hold. The body is copied to a buffer of our own because the
// reader works in place. One poll at a time on the loop thread, so one static buffer serves.
const char* parse_health(std::string_view body, health_reading* out) {
  static char text[kMaxBody + 1];
  static core::json_doc doc(64, 8);
  if (body.size() > kMaxBody) return "body too large";
  memcpy(text, body.data(), body.size());
  if (!doc.parse(text, body.size())) return doc.error_text();
  core::json_ref root = doc.root();
  if (!root.is(core::json_type::object)) return "not a JSON object";
  core::json_ref healthy = root["healthy"];
  core::json_ref latency = root["latency"];
  if (!healthy.valid()) return "no \"healthy\" field";
  if (!latency.valid()) return "no \"latency\" field";
  if (!healthy.boolean()) return "\"healthy\" is not a boolean";
  std::optional<double> l = latency.number();
  if (!l) return "\"latency\" is not a number";
  if (!std::isfinite(*l) || *l < 0) return "\"latency\" is not a finite number >= 0";
  out->healthy = *healthy.boolean();
  out->latency = *l;
  return nullptr;
}

}  // namespace sidecar
