#include "replica_set.hpp"

namespace sidecar {

void replica_tally::add(health_state s) {
  ++active;
  switch (s) {
    case health_state::healthy: ++healthy; break;
    case health_state::degraded: ++degraded; break;
    case health_state::down: ++down; break;
    case health_state::unknown: ++unknown; break;
  }
}

health_state target_state(const replica_tally& t, bool lookup_down) {
  if (lookup_down) return health_state::down;
  if (t.active == 0 || t.unknown == t.active) return health_state::unknown;
  if (t.healthy == t.active) return health_state::healthy;
  if (t.down + t.unknown == t.active) return health_state::down;
  if (t.healthy + t.unknown == t.active) return health_state::healthy;
  return health_state::degraded;
}

}  // namespace sidecar
