// How one poll ended, as the one word ALERT and REPORT lines and the metrics use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sidecar {

enum class outcome : uint8_t { ok, status, unhealthy, slow, timeout, connect, dns, body };
inline constexpr size_t outcome_count = 8;
const char* outcome_name(outcome o);  // "ok", "status", ... (poller.cpp)

}  // namespace sidecar
