// The target logic without sockets or timers: who leaves and joins after a lookup, the
// target's state over its replicas, and skipping the polls a stall missed.
#include "replica_set.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scheduler.hpp"

using namespace sidecar;

namespace {

sockaddr_storage ip(const char* text) {
  sockaddr_storage a{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in&>(a).sin_addr) == 1) {
    a.ss_family = AF_INET;
  } else {
    a.ss_family = AF_INET6;
    inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6&>(a).sin6_addr);
  }
  return a;
}

resolved_addresses lookup(std::initializer_list<const char*> ips) {
  resolved_addresses r;
  for (const char* text : ips) r.addr[r.count++] = ip(text);
  return r;
}

std::string label(const sockaddr_storage& a) {
  char out[64];
  format_address(a, 80, out, sizeof out);
  return out;
}

// n slots, their transfers in flight or not; records what reconcile did.
struct replicas {
  std::vector<slot_place> slots;
  std::vector<bool> busy;
  std::vector<std::string> events;
  bool pin_ok = true;

  explicit replicas(size_t n) : slots(n), busy(n, false) {}

  size_t apply(const resolved_addresses& found) {
    return reconcile_slots(
        slots.size(), [&](size_t i) -> slot_place& { return slots[i]; },
        [&](size_t i) { return static_cast<bool>(busy[i]); }, found,
        [&](size_t i) { events.push_back("left " + label(slots[i].addr)); },
        [&](size_t i, size_t k) {
          events.push_back("joined " + label(found.addr[k]) + " slot " + std::to_string(i));
          return pin_ok;
        });
  }
};

}  // namespace

TEST(Reconcile, NewAddressesJoinFreeSlotsInOrder) {
  replicas r(4);
  EXPECT_EQ(r.apply(lookup({"10.0.0.1", "10.0.0.2"})), 0u);
  EXPECT_EQ(r.events,
            (std::vector<std::string>{"joined 10.0.0.1:80 slot 0", "joined 10.0.0.2:80 slot 1"}));
  EXPECT_EQ(r.slots[0].state, slot_state::active);
  EXPECT_EQ(r.slots[2].state, slot_state::free);
  r.events.clear();
  EXPECT_EQ(r.apply(lookup({"10.0.0.1", "10.0.0.2"})), 0u);  // the same: nothing happens
  EXPECT_TRUE(r.events.empty());
}

TEST(Reconcile, GoneAddressesLeaveAndTheirSlotsAreReused) {
  replicas r(2);
  r.apply(lookup({"10.0.0.1", "10.0.0.2"}));
  r.events.clear();
  r.apply(lookup({"10.0.0.2", "10.0.0.3"}));
  EXPECT_EQ(r.events, (std::vector<std::string>{"left 10.0.0.1:80", "joined 10.0.0.3:80 slot 0"}));
  EXPECT_EQ(label(r.slots[0].addr), "10.0.0.3:80");
  EXPECT_EQ(r.slots[0].state, slot_state::active);
}

TEST(Reconcile, ASlotInFlightLeavesButIsNotReusedYet) {
  replicas r(2);
  r.apply(lookup({"10.0.0.1"}));
  r.busy[0] = true;
  r.events.clear();
  r.apply(lookup({"10.0.0.2"}));
  EXPECT_EQ(r.slots[0].state, slot_state::leaving);  // freed when its transfer ends
  EXPECT_EQ(r.events, (std::vector<std::string>{"left 10.0.0.1:80", "joined 10.0.0.2:80 slot 1"}));
}

TEST(Reconcile, AnEmptyLookupEmptiesTheSet) {
  replicas r(3);
  r.apply(lookup({"10.0.0.1", "fd00::1"}));
  r.events.clear();
  r.apply(resolved_addresses{});
  EXPECT_EQ(r.events, (std::vector<std::string>{"left 10.0.0.1:80", "left [fd00::1]:80"}));
  for (const slot_place& p : r.slots) EXPECT_EQ(p.state, slot_state::free);
}

TEST(Reconcile, MoreAddressesThanSlotsAreCountedNotPlaced) {
  replicas r(2);
  EXPECT_EQ(r.apply(lookup({"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"})), 2u);
  EXPECT_EQ(r.events.size(), 2u);
}

TEST(Reconcile, ASlotThatCannotBePinnedStaysFree) {
  replicas r(1);
  r.pin_ok = false;
  r.apply(lookup({"10.0.0.1"}));
  EXPECT_EQ(r.slots[0].state, slot_state::free);
  r.pin_ok = true;
  r.apply(lookup({"10.0.0.1"}));  // tried again at the next lookup
  EXPECT_EQ(r.slots[0].state, slot_state::active);
}

TEST(Reconcile, SameIpIsTheSameReplicaWhateverThePort) {
  replicas r(2);
  r.apply(lookup({"10.0.0.1"}));
  resolved_addresses again = lookup({"10.0.0.1"});
  reinterpret_cast<sockaddr_in&>(again.addr[0]).sin_port = htons(9999);
  r.events.clear();
  r.apply(again);
  EXPECT_TRUE(r.events.empty());
}

namespace {
health_state state_of_replicas(std::initializer_list<health_state> states, bool lookup_down) {
  replica_tally t;
  for (health_state s : states) t.add(s);
  return target_state(t, lookup_down);
}
}  // namespace

TEST(TargetState, OverItsReplicas) {
  using enum health_state;
  struct row {
    std::initializer_list<health_state> replicas;
    bool lookup_down;
    health_state want;
  };
  const row rows[] = {
      {{}, false, unknown},
      {{unknown, unknown}, false, unknown},
      {{healthy, healthy}, false, healthy},
      {{healthy, unknown}, false, healthy},  // not polled yet: does not count
      {{healthy, degraded}, false, degraded},
      {{healthy, down}, false, degraded},  // one still answers
      {{degraded, degraded}, false, degraded},
      {{degraded, down}, false, degraded},
      {{down, down}, false, down},
      {{down, unknown}, false, down},
      {{healthy, healthy}, true, down},  // the lookup failed: the name says nothing
      {{}, true, down},
  };
  for (const row& r : rows) {
    EXPECT_EQ(state_name(state_of_replicas(r.replicas, r.lookup_down)),
              std::string(state_name(r.want)))
        << r.replicas.size() << " replicas, lookup_down=" << r.lookup_down;
  }
}

TEST(SkipMissed, OnTimeNothingIsSkipped) {
  uint64_t index = 3;
  EXPECT_EQ(skip_missed(1000, 100, 1300, &index), 0u);  // slot 3 due now
  EXPECT_EQ(index, 3u);
  EXPECT_EQ(skip_missed(1000, 100, 1399, &index), 0u);  // still within slot 3
  EXPECT_EQ(skip_missed(1000, 100, 500, &index), 0u);   // before the origin (jitter)
  EXPECT_EQ(index, 3u);
}

TEST(SkipMissed, AfterAStallOnlyTheLatestSlotRuns) {
  uint64_t index = 3;
  EXPECT_EQ(skip_missed(1000, 100, 2050, &index), 7u);  // slots 3..9 passed: 10 runs now
  EXPECT_EQ(index, 10u);
  uint64_t reports = 1;
  EXPECT_EQ(skip_missed(0, 60000, 185000, &reports), 2u);  // 3 windows ended, report once
  EXPECT_EQ(reports, 3u);
}
