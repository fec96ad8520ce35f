// The pure rules of a target's replica set, apart from the transfers and timers that carry
// them out (watched_target): which replicas leave and join after a lookup, and the target's
// state over its replicas. No I/O, no clock, no allocation; tests/unit/sidecar/
// replica_set_test.cpp.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "address.hpp"
#include "resolver.hpp"
#include "verdict.hpp"

namespace sidecar {

// A replica slot: free, probing an address (active), or left while its last transfer was still
// running (leaving: freed when that transfer ends, its result dropped).
enum class slot_state : uint8_t { free, active, leaving };

struct slot_place {
  sockaddr_storage addr{};
  slot_state state = slot_state::free;
};

// After a good lookup: every active slot whose address the lookup no longer has leaves (free
// at once, or leaving while in_flight(i)), then left(i) is called; every address no active slot
// holds goes to the lowest free slot, and joined(i, k) is called with the slot and the address
// index: when it returns false (the transfer could not be pinned) the slot stays free. place(i)
// returns slot i's slot_place&. Returns how many new addresses found no free slot.
template <class PlaceOf, class InFlight, class Left, class Joined>
size_t reconcile_slots(size_t n, PlaceOf place, InFlight in_flight, const resolved_addresses& found,
                       Left left, Joined joined) {
  for (size_t i = 0; i < n; ++i) {
    slot_place& p = place(i);
    if (p.state != slot_state::active) continue;
    bool still = false;
    for (size_t k = 0; k < found.count && !still; ++k) still = same_address(p.addr, found.addr[k]);
    if (still) continue;
    p.state = in_flight(i) ? slot_state::leaving : slot_state::free;
    left(i);
  }
  size_t unplaced = 0;
  for (size_t k = 0; k < found.count; ++k) {
    bool known = false;
    size_t free_slot = n;
    for (size_t i = 0; i < n && !known; ++i) {
      slot_place& p = place(i);
      known = p.state == slot_state::active && same_address(p.addr, found.addr[k]);
      if (p.state == slot_state::free && free_slot == n) free_slot = i;
    }
    if (known) continue;
    if (free_slot == n) {
      ++unplaced;
      continue;
    }
    slot_place& p = place(free_slot);
    p.addr = found.addr[k];
    if (joined(free_slot, k)) p.state = slot_state::active;
  }
  return unplaced;
}

// How the target's active replicas stand.
struct replica_tally {
  size_t active = 0;
  size_t healthy = 0;
  size_t degraded = 0;
  size_t down = 0;
  size_t unknown = 0;

  void add(health_state s);
};

// The target as a whole: down when its lookup is down or no replica has given a valid 200 (the
// ones not polled yet do not count), unknown before any replica was polled (or with none),
// healthy when every polled replica is, degraded otherwise.
health_state target_state(const replica_tally& t, bool lookup_down);

}  // namespace sidecar
