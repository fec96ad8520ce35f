// One URL the sidecar watches: the main /health target or an external probe.
//
// The main target's host name is resolved every poll (when replicas are on and it is a name,
// not an address) and each of its addresses is probed as a replica of its own, so that
// `--scale hello=3` or Swarm's tasks.hello shows three replicas, and replicas that come and go
// are followed (REPLICA joined/left). Each replica gets a slot from a fixed pool sized at
// start-up (--max-replicas): a curl transfer pinned to that address and a replica_monitor. The
// target's total (every replica's samples plus DNS failures) has a ring of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "alert_state.hpp"
#include "latency_ring.hpp"
#include "poller.hpp"
#include "probe_metrics.hpp"
#include "replica_monitor.hpp"
#include "replica_set.hpp"
#include "resolver.hpp"

namespace sidecar {

struct watch_options {
  const char* url = nullptr;
  check_kind kind = check_kind::health;
  bool replicas = true;     // resolve the host and probe every address
  size_t max_replicas = 1;  // slots (1 when replicas is off)
  uint64_t window_ms = 60'000;
  uint64_t interval_ms = 10'000;
  uint64_t slow_ms = 0;
  uint32_t fail_after = 1;
  uint32_t recover_after = 1;
};

class watched_target {
 public:
  watched_target(poller& p, resolver* r, const watch_options& options);
  watched_target(const watched_target&) = delete;
  watched_target& operator=(const watched_target&) = delete;

  // Parses the URL and sets up the transfers. Returns false with *error set.
  bool init(const char** error);
  // One scheduled poll at now_ms: resolve (if replicas are followed), then probe each address.
  void poll(uint64_t now_ms);
  // The window ending now: a REPORT per replica (when there are several) and the total.
  void report(uint64_t now_ms);

  // The target as a whole: down when it cannot be resolved or no replica is healthy, degraded
  // when some replica is not healthy, healthy when all are.
  health_state state() const;
  // Why it is degraded or down (dns, or the worst replica's reason); ok when healthy.
  outcome reason() const;
  size_t replica_count() const;
  const char* url() const { return options_.url; }
  check_kind kind() const { return options_.kind; }
  bool follows_replicas() const { return expand_; }
  uint64_t dns_failures() const { return dns_failures_; }
  // Appends one metrics_series per live replica to out (at most max_replicas); returns count.
  size_t series(metrics_series* out) const;
  size_t max_series() const { return slot_count_; }

 private:
  struct slot {
    slot(const watch_options& o)
        : monitor(o.url, o.kind, o.window_ms, o.interval_ms, o.fail_after, o.recover_after) {}
    watched_target* owner = nullptr;
    transfer xfer;
    replica_monitor monitor;
    slot_place place;  // address and state (replica_set.hpp)
  };

  static void on_resolved(void* ctx, int status, const char* reason,
                          const resolved_addresses& result);
  static void on_result(void* ctx, const poll_facts& facts);
  void reconcile(const resolved_addresses& result, uint64_t now_ms);
  void start_polls(uint64_t budget_ms);
  uint64_t budget_left(uint64_t now_ms) const;
  void record_dns(bool ok, const char* reason, uint64_t now_ms);
  uint64_t now() const;

  poller& poller_;
  resolver* resolver_;
  watch_options options_;
  check_policy policy_;
  bool expand_ = false;  // resolve and follow replicas (a name, replicas on)
  bool resolving_ = false;
  uint64_t poll_started_ms_ = 0;
  int port_ = 0;
  char host_[256] = "";
  char host_port_[300] = "";
  size_t slot_count_;
  std::unique_ptr<std::unique_ptr<slot>[]> slots_;
  latency_ring total_;
  alert_state dns_alerts_;
  uint64_t dns_failures_ = 0;
  bool warned_full_ = false;
};

}  // namespace sidecar
