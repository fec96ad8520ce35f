// Configuration: every knob is a flag and an environment variable with a default, validated at
// start-up. A bad value ends the process with one line on stderr and exit status 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace core {

struct cli_option {
  const char* flag;           // "--listen"
  const char* env;            // "HELLO_LISTEN"
  const char* default_value;  // shown by --help; nullptr = no default
  const char* metavar;        // "HOST:PORT"
  const char* help;
  // Filled by cli_parse: the winning value (flag > env > default) and where it came from.
  const char* value = nullptr;
  const char* source = nullptr;
};

struct cli_program {
  const char* name;              // "hello"
  const char* version;           // "0.1.0"
  const char* summary;           // one line for --help
  const char* epilog = nullptr;  // more text after the options in --help
};

// Parses argv (--flag value, --flag=value), then the environment, then defaults. --help and
// --version print and exit 0; an unknown flag or a missing value exits 2 via config_fail().
void cli_parse(const cli_program& program, int argc, char** argv, cli_option* options,
               size_t count);

// Prints "<program>: error: <message>" on stderr and exits with status 2.
[[noreturn]] void config_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// An option's value parsed or the program ended with "<flag>/<env> '<value>': <why>" (the
// value escaped, so the error stays one line) and status 2.
[[noreturn]] void option_fail(const cli_option& option, const char* why);
uint64_t option_duration(const cli_option& option, uint64_t min_ms);  // min_ms 1: "> 0"
uint64_t option_uint(const cli_option& option, uint64_t min, uint64_t max);
uint64_t option_size(const cli_option& option, uint64_t min, uint64_t max);
bool option_on_off(const cli_option& option);

// Value parsers: return nullptr on success, else a short description of what is wrong.
// Durations are a whole number with a unit: ms, s or m ("250ms", "10s", "1m").
const char* parse_duration_ms(std::string_view text, uint64_t* out_ms);
// "HOST:PORT" with an IPv4 literal, "[v6]:PORT", or ":PORT" (all interfaces). Port 0..65535.
const char* parse_listen_address(std::string_view text, char* host, size_t host_size, int* port);
const char* parse_double(std::string_view text, double* out);
const char* parse_on_off(std::string_view text, bool* out);
const char* parse_uint(std::string_view text, uint64_t min, uint64_t max, uint64_t* out);

// Byte sizes: a whole number, optionally with KiB or MiB ("16KiB", "1MiB", "8192").
const char* parse_size(std::string_view text, uint64_t min, uint64_t max, uint64_t* out);

// "250ms", "10s", "60s": whole seconds when exact, else milliseconds.
size_t format_duration(uint64_t ms, char* out, size_t size);

}  // namespace core
