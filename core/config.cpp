#include "config.hpp"

#include "log.hpp"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace core {
namespace {

const char* g_program = "app";

bool starts_with(const char* s, const char* prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

void print_help(const cli_program& program, const cli_option* options, size_t count) {
  printf("%s %s: %s\n\nUsage: %s [options]\n\nOptions (flag, environment variable, default):\n",
         program.name, program.version, program.summary, program.name);
  for (size_t i = 0; i < count; ++i) {
    const cli_option& o = options[i];
    printf("  %s %s\n      env %s, default %s\n      %s\n", o.flag, o.metavar, o.env,
           o.default_value != nullptr ? o.default_value : "(none)", o.help);
  }
  printf(
      "  --help\n      print this help and exit\n  --version\n      print the version and exit\n");
  if (program.epilog != nullptr) printf("\n%s", program.epilog);
}

}  // namespace

void config_fail(const char* fmt, ...) {
  fflush(stdout);
  fprintf(stderr, "%s: error: ", g_program);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

void cli_parse(const cli_program& program, int argc, char** argv, cli_option* options,
               size_t count) {
  g_program = program.name;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      print_help(program, options, count);
      exit(0);
    }
    if (strcmp(arg, "--version") == 0) {
      printf("%s %s\n", program.name, program.version);
      exit(0);
    }
    cli_option* match = nullptr;
    const char* value = nullptr;
    for (size_t k = 0; k < count && match == nullptr; ++k) {
      size_t len = strlen(options[k].flag);
      if (strncmp(arg, options[k].flag, len) != 0) continue;
      if (arg[len] == '\0') {
        if (i + 1 >= argc)
          config_fail("%s needs a value (%s)", options[k].flag, options[k].metavar);
        match = &options[k];
        value = argv[++i];
      } else if (arg[len] == '=') {
        match = &options[k];
        value = arg + len + 1;
      }
    }
    if (match == nullptr) {
      if (starts_with(arg, "-")) config_fail("unknown option %s (see --help)", arg);
      config_fail("unexpected argument '%s' (see --help)", arg);
    }
    match->value = value;
    match->source = "flag";
  }
  for (size_t k = 0; k < count; ++k) {
    cli_option& o = options[k];
    if (o.value != nullptr) continue;
    const char* env = getenv(o.env);
    if (env != nullptr && env[0] != '\0') {
      o.value = env;
      o.source = "env";
    } else {
      o.value = o.default_value;
      o.source = "default";
    }
  }
}

void option_fail(const cli_option& option, const char* why) {
  char value[256];
  log_escape(option.value != nullptr ? option.value : "", value, sizeof value);
  config_fail("%s/%s '%s': %s", option.flag, option.env, value, why);
}

uint64_t option_duration(const cli_option& option, uint64_t min_ms) {
  uint64_t ms = 0;
  if (const char* e = parse_duration_ms(option.value, &ms)) option_fail(option, e);
  if (ms < min_ms) option_fail(option, min_ms == 1 ? "must be greater than 0" : "too short");
  return ms;
}

uint64_t option_uint(const cli_option& option, uint64_t min, uint64_t max) {
  uint64_t v = 0;
  if (const char* e = parse_uint(option.value, min, max, &v)) option_fail(option, e);
  return v;
}

uint64_t option_size(const cli_option& option, uint64_t min, uint64_t max) {
  uint64_t v = 0;
  if (const char* e = parse_size(option.value, min, max, &v)) option_fail(option, e);
  return v;
}

bool option_on_off(const cli_option& option) {
  bool v = false;
  if (const char* e = parse_on_off(option.value, &v)) option_fail(option, e);
  return v;
}

const char* parse_uint(std::string_view text, uint64_t min, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return "not a whole number";
  }
  if (v < min || v > max) return "out of range";
  *out = v;
  return nullptr;
}

const char* parse_duration_ms(std::string_view text, uint64_t* out_ms) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return "not a duration (use a whole number with ms, s or m, e.g. 10s)";
  std::string_view unit = text.substr(digits);
  uint64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit.empty()) {
    return "missing unit (use ms, s or m, e.g. 10s)";
  } else {
    return "unknown unit (use ms, s or m, e.g. 10s)";
  }
  uint64_t n = 0;
  if (parse_uint(text.substr(0, digits), 0, UINT64_MAX / (60 * 1000), &n) != nullptr ||
      n > 7ULL * 24 * 3600 * 1000 / scale) {
    return "too long (at most 7 days)";
  }
  *out_ms = n * scale;
  return nullptr;
}

const char* parse_listen_address(std::string_view text, char* host, size_t host_size, int* port) {
  std::string_view h;
  std::string_view p;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return "expected [IPv6]:PORT";
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return "expected HOST:PORT, e.g. 0.0.0.0:8080";
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) return "IPv6 addresses go in brackets: [::1]:8080";
  }
  if (h.empty()) h = "0.0.0.0";
  if (h.size() + 1 > host_size) return "host too long";
  uint64_t port_value = 0;
  if (parse_uint(p, 0, 65535, &port_value) != nullptr) return "port must be 0..65535";
  memcpy(host, h.data(), h.size());
  host[h.size()] = '\0';
  // The host must be a numeric address: a listener binds to an interface, not a name.
  unsigned char buf[16];
  if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
    return "host must be a numeric IPv4 or IPv6 address";
  *port = static_cast<int>(port_value);
  return nullptr;
}

const char* parse_size(std::string_view text, uint64_t min, uint64_t max, uint64_t* out) {
  uint64_t scale = 1;
  if (text.ends_with("KiB")) {
    scale = 1024;
    text.remove_suffix(3);
  } else if (text.ends_with("MiB")) {
    scale = 1024 * 1024;
    text.remove_suffix(3);
  }
  uint64_t n = 0;
  if (parse_uint(text, 0, UINT64_MAX / scale, &n) != nullptr) {
    return "not a size (a whole number of bytes, or with KiB or MiB)";
  }
  if (n * scale < min || n * scale > max) return "out of range";
  *out = n * scale;
  return nullptr;
}

const char* parse_double(std::string_view text, double* out) {
  if (text.empty() || text.size() > 64) return "not a number";
  char buf[65];
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  char* end = nullptr;
  errno = 0;
  double v = strtod(buf, &end);
  if (end != buf + text.size() || errno != 0 || v != v) return "not a number";
  *out = v;
  return nullptr;
}

const char* parse_on_off(std::string_view text, bool* out) {
  if (text == "on" || text == "true" || text == "1" || text == "yes") {
    *out = true;
  } else if (text == "off" || text == "false" || text == "0" || text == "no") {
    *out = false;
  } else {
    return "expected on or off";
  }
  return nullptr;
}

size_t format_duration(uint64_t ms, char* out, size_t size) {
  // Seconds when exact (the unit users write most: "10s", "60s"), else milliseconds.
  int n = ms != 0 && ms % 1000 == 0
              ? snprintf(out, size, "%llus", static_cast<unsigned long long>(ms / 1000))
              : snprintf(out, size, "%llums", static_cast<unsigned long long>(ms));
  return n < 0 ? 0 : static_cast<size_t>(n);
}

}  // namespace core
