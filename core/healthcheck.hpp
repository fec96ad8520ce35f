// `<service> --healthcheck [URL]` (hello, visits, ...): one HTTP GET, exit 0 on a 200 and 1
// otherwise, so a scratch image needs no curl for Docker's HEALTHCHECK. Blocking on purpose: it
// runs alone, briefly.
#pragma once

namespace core {

inline constexpr const char* default_healthcheck_url = "http://127.0.0.1:8080/health";

// Returns the process exit status: 0 healthy, 1 unhealthy or unreachable, 2 bad URL.
int run_healthcheck(const char* url, int timeout_ms);

}  // namespace core
