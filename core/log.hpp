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

}  // namespace core
