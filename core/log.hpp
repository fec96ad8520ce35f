// One line per event on stdout: "<UTC time> <service> <EVENT> key=value ...".
//
// Why buffered: a flush per line is a write(2) per request under load. Inside an event loop the
// loop owner calls log_flush() once per loop turn, just before the loop sleeps (see loop.hpp),
// so every line still reaches the pipe within the same turn. Outside a loop (start-up, exit)
// lines are flushed at once.
#pragma once

#include <cstddef>
#include <string_view>

namespace core {

void log_init(const char* service);
// While deferred, log_event() leaves flushing to log_flush() (the loop's before-sleep hook).
void log_set_deferred(bool deferred);
void log_event(const char* event, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_flush();

// Writes `in` into `out` as printable ASCII: bytes outside 0x20..0x7e and the quote and
// backslash are written as \xNN / \" / \\ so a log line never breaks or lies. Truncates to
// out_size - 1 bytes (never splitting an escape) and NUL-terminates. Returns the length.
size_t log_escape(std::string_view in, char* out, size_t out_size);

// Structured events: one call, rendered either as "key=value" text or as one JSON object per
// line, by the process-wide format. Fields live on the caller's stack; nothing allocates.
enum class log_format : uint8_t { text, json };
void log_set_format(log_format format);
log_format log_get_format();

struct log_field {
  enum class kind : uint8_t { word, text, note, u64, f64 };
  kind type;
  int decimals = 0;
  const char* key;
  const char* unit = "";
  std::string_view s;
  uint64_t u = 0;
  double d = 0;

  // A value without spaces, bare in text (state=down), a JSON string.
  static log_field word(const char* key, std::string_view v) { return {kind::word, 0, key, "", v}; }
  // Free text, quoted and escaped in text (detail="HTTP 503"), a JSON string.
  static log_field text(const char* key, std::string_view v) { return {kind::text, 0, key, "", v}; }
  // A trailing human sentence in text ("no latency samples ..."), a JSON string under key.
  static log_field note(const char* key, std::string_view v) { return {kind::note, 0, key, "", v}; }
  static log_field num(const char* key, uint64_t v) { return {kind::u64, 0, key, "", {}, v}; }
  // A number with fixed decimals and an optional unit suffix in text (best=0.123456s); in
  // JSON the key carries the unit instead (best_s) and the value is a plain number.
  static log_field real(const char* key, double v, int decimals, const char* unit = "") {
    return {kind::f64, decimals, key, unit, {}, 0, v};
  }
};

// Renders the fields (without time, service and event) into out; returns the length.
size_t format_fields(log_format format, const log_field* fields, size_t count, char* out,
                     size_t size);
void log_fields(const char* event, const log_field* fields, size_t count);
template <size_t N>
void log_fields(const char* event, const log_field (&fields)[N]) {
  log_fields(event, fields, N);
}

}  // namespace core
