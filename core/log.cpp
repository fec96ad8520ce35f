#include "log.hpp"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace core {
namespace {

const char* g_service = "app";
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
  fprintf(stdout, "%s %s %s ", now, g_service, event);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
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

}  // namespace core
