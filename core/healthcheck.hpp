// `<service> --healthcheck [URL]` (hello, visits, ...): one HTTP GET, exit 0 on a 200 and 1
// otherwise, so a scratch image needs no curl for Docker's HEALTHCHECK. Blocking on purpose: it
// runs alone, briefly.
#pragma once

namespace core {

inline constexpr const char* default_healthcheck_url = "http://127.0.0.1:8080/health";

// Returns the process exit status: 0 healthy, 1 unhealthy or unreachable, 2 bad URL.
int run_healthcheck(const char* url, int timeout_ms);

// `<program> --healthcheck [URL]` as every service's main takes it: the exit status when argv
// asks for the health check (2 with a one-line error for extra arguments), -1 otherwise.
int healthcheck_mode(const char* program, int argc, char** argv);

// The --help epilog that describes it.
inline constexpr const char* healthcheck_help =
    "Health check mode (for Docker's HEALTHCHECK; no curl needed):\n"
    "  --healthcheck [URL]\n"
    "      one GET of URL (default http://127.0.0.1:8080/health); exit 0 on 200,\n"
    "      1 otherwise (refused, timeout after 2s, other status), 2 for a bad URL\n";

}  // namespace core
