#include "log.hpp"

#include "response.hpp"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace core {
namespace {

const char* g_service = "app";
log_format g_format = log_format::text;
bool g_deferred = false;
char g_stdout_buffer[64 * 1024];

// Formats the current UTC time with milliseconds; the seconds part is cached since most lines
// of a busy second share it.
void format_now(char out[32]) {
  static time_t cached_sec = -1;
  static char cached[24];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &t);
    cached_sec = ts.tv_sec;
  }
  snprintf(out, 32, "%.20s.%03dZ", cached, static_cast<int>(ts.tv_nsec / 1000000) % 1000);
}

}  // namespace

void log_init(const char* service) {
  g_service = service;
  setvbuf(stdout, g_stdout_buffer, _IOFBF, sizeof g_stdout_buffer);
}

void log_set_deferred(bool deferred) {
  g_deferred = deferred;
  if (!deferred) fflush(stdout);
}

void log_event(const char* event, const char* fmt, ...) {
  char now[32];
  format_now(now);
  va_list ap;
  va_start(ap, fmt);
  if (g_format == log_format::json) {
    // Free-form events become {"time","service","event","message"}: still one object a line.
    char message[1024];
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    log_field f = log_field::text("message", message);
    char body[2048];
    format_fields(log_format::json, &f, 1, body, sizeof body);
    fprintf(stdout, "{\"time\":\"%s\",\"service\":\"%s\",\"event\":\"%s\"%s}\n", now, g_service,
            event, body);
  } else {
    fprintf(stdout, "%s %s %s ", now, g_service, event);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
  }
  if (!g_deferred) fflush(stdout);
}

void log_flush() {
  fflush(stdout);
}

size_t log_escape(std::string_view in, char* out, size_t out_size) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  if (out_size == 0) return 0;
  for (unsigned char c : in) {
    char tmp[4];
    size_t len = 0;
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = static_cast<char>(c);
      len = 2;
    } else if (c < 0x20 || c > 0x7e) {
      tmp[0] = '\\';
      tmp[1] = 'x';
      tmp[2] = hex[c >> 4];
      tmp[3] = hex[c & 15];
      len = 4;
    } else {
      tmp[0] = static_cast<char>(c);
      len = 1;
    }
    if (n + len >= out_size) break;
    for (size_t i = 0; i < len; ++i) out[n++] = tmp[i];
  }
  out[n] = '\0';
  return n;
}

void log_set_format(log_format format) {
  g_format = format;
}
log_format log_get_format() {
  return g_format;
}

namespace {

// Appends into a fixed buffer, silently truncating (a log line is never worth a failure).
struct out_buf {
  char* p;
  size_t size;
  size_t len = 0;
  void put(std::string_view v) {
    for (char c : v) {
      if (len + 1 >= size) return;
      p[len++] = c;
    }
  }
  void putf(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (len + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p + len, size - len, fmt, ap);
    va_end(ap);
    if (n > 0) len = len + static_cast<size_t>(n) < size ? len + static_cast<size_t>(n) : size - 1;
  }
  // A JSON string with core's one escaper (response.hpp), truncated like everything else here.
  void json_string(std::string_view v) {
    put("\"");
    if (len + 2 < size) {
      buf_writer w(p + len, size - len - 2);  // room for the closing quote and the NUL
      json_escape(w, v);
      len += w.len;
    }
    put("\"");
  }
};

}  // namespace

size_t format_fields(log_format format, const log_field* fields, size_t count, char* out,
                     size_t size) {
  if (size == 0) return 0;
  out_buf b{out, size};
  for (size_t i = 0; i < count; ++i) {
    const log_field& f = fields[i];
    if (format == log_format::json) {
      b.put(",\"");
      b.put(f.key);
      if (f.type == log_field::kind::f64 && f.unit[0] != '\0') {
        b.put("_");
        b.put(f.unit);
      }
      b.put("\":");
      switch (f.type) {
        case log_field::kind::word:
        case log_field::kind::text:
        case log_field::kind::note: b.json_string(f.s); break;
        case log_field::kind::u64: b.putf("%llu", static_cast<unsigned long long>(f.u)); break;
        case log_field::kind::f64: b.putf("%.*f", f.decimals, f.d); break;
      }
      continue;
    }
    if (i > 0) b.put(" ");
    switch (f.type) {
      case log_field::kind::note: b.put(f.s); break;
      case log_field::kind::word: {
        char escaped[512];
        log_escape(f.s, escaped, sizeof escaped);
        b.put(f.key);
        b.put("=");
        b.put(escaped);
        break;
      }
      case log_field::kind::text: {
        char escaped[512];
        log_escape(f.s, escaped, sizeof escaped);
        b.put(f.key);
        b.put("=\"");
        b.put(escaped);
        b.put("\"");
        break;
      }
      case log_field::kind::u64:
        b.putf("%s=%llu", f.key, static_cast<unsigned long long>(f.u));
        break;
      case log_field::kind::f64: b.putf("%s=%.*f%s", f.key, f.decimals, f.d, f.unit); break;
    }
  }
  out[b.len] = '\0';
  return b.len;
}

void log_fields(const char* event, const log_field* fields, size_t count) {
  char body[2048];
  format_fields(g_format, fields, count, body, sizeof body);
  if (g_format == log_format::text) {
    log_event(event, "%s", body);
    return;
  }
  char now[32];
  format_now(now);
  fprintf(stdout, "{\"time\":\"%s\",\"service\":\"%s\",\"event\":\"%s\"%s}\n", now, g_service,
          event, body);
  if (!g_deferred) fflush(stdout);
}

}  // namespace core
