// The sidecar's knobs: every one a flag and an environment variable (core/config), validated
// here at start-up into one struct; a bad value ends the program with one line and status 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "config.hpp"

namespace sidecar {

struct sidecar_config {
  static constexpr size_t max_probes = 32;

  const char* target = nullptr;  // the /health URL
  uint64_t interval_ms = 0;
  uint64_t window_ms = 0;
  uint64_t timeout_ms = 0;  // a poll's limit, lookup and GET together
  uint64_t jitter_ms = 0;
  uint64_t fail_after = 1;
  uint64_t recover_after = 1;
  uint64_t slow_ms = 0;  // 0: off
  bool follow_replicas = true;
  uint64_t max_replicas = 16;
  const char* ca_file = nullptr;     // nullptr: the system bundle
  const char* dns_server = nullptr;  // nullptr: the system resolver's configuration
  const char* probe_urls[max_probes] = {};
  size_t probe_count = 0;
  bool metrics_on = true;
  char metrics_host[64] = "";
  int metrics_port = 0;
  bool json_logs = false;

  std::unique_ptr<char[]> probe_text;  // the split --probes list the URLs point into
};

// Parses argv, the environment and the defaults (--help and --version exit 0); exits with
// status 2 on a bad value. libcurl must be initialised (URLs are checked with its parser).
void load_config(int argc, char** argv, sidecar_config* out);

}  // namespace sidecar
