#include "watched_target.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "address.hpp"
#include "log.hpp"
#include "report.hpp"
#include "url.hpp"

namespace sidecar {
watched_target::watched_target(poller& p, resolver* r, const watch_options& options)
    : poller_(p),
      resolver_(r),
      options_(options),
      policy_{options.kind, options.slow_ms},
      slot_count_(options.max_replicas < 1 ? 1 : options.max_replicas),
      total_(latency_ring::capacity_for(options.window_ms, options.interval_ms) *
             (options.max_replicas < 1 ? 1 : options.max_replicas)),
      dns_alerts_(options.fail_after, options.recover_after) {}

bool watched_target::init(const char** error) {
  url_parts url;
  if (const char* why = parse_url(options_.url, &url)) {
    *error = why;
    return false;
  }
  snprintf(host_, sizeof host_, "%s", url.host);
  port_ = url.port;
  snprintf(host_port_, sizeof host_port_, "%s:%d", host_, port_);
  in_addr a4{};
  bool literal = host_[0] == '[' || inet_pton(AF_INET, host_, &a4) == 1;
  expand_ = options_.replicas && !literal && resolver_ != nullptr;
  if (!expand_) slot_count_ = 1;
  slots_.reset(new std::unique_ptr<slot>[slot_count_]);
  for (size_t i = 0; i < slot_count_; ++i) {
    slots_[i].reset(new slot(options_));
    slots_[i]->owner = this;
    if (!poller_.add(slots_[i]->xfer, options_.url, options_.kind, on_result, slots_[i].get(),
                     error)) {
      return false;
    }
  }
  if (!expand_) {
    // One address, the URL's own (curl resolves a name itself).
    slots_[0]->monitor.reset(host_port_);
    slots_[0]->place.state = slot_state::active;
  }
  return true;
}

uint64_t watched_target::now() const {
  return uv_now(poller_.loop());
}

void watched_target::poll(uint64_t now_ms) {
  if (!expand_) {
    start_polls(0);
    return;
  }
  if (resolving_) {
    core::log_event("WARN", "poll skipped: previous lookup of %s still running", host_);
    return;
  }
  poll_started_ms_ = now_ms;
  resolving_ = true;
  if (!resolver_->resolve(host_, on_resolved, this)) {
    resolving_ = false;
    record_dns(false, "too many lookups in flight", now_ms);
  }
}

// The transfers get what the lookup left of the poll's timeout, so that a poll (lookup and
// GET) always ends before the next one is due.
uint64_t watched_target::budget_left(uint64_t now_ms) const {
  uint64_t timeout = poller_.timeout_ms();
  uint64_t spent = now_ms - poll_started_ms_;
  return spent < timeout ? timeout - spent : 1;
}

void watched_target::on_resolved(void* ctx, int status, const char* reason,
                                 const resolved_addresses& result) {
  auto* self = static_cast<watched_target*>(ctx);
  self->resolving_ = false;
  uint64_t now_ms = self->now();
  if (status != 0) {
    self->record_dns(false, reason, now_ms);
    return;
  }
  self->record_dns(true, "", now_ms);
  self->reconcile(result, now_ms);
  self->start_polls(self->budget_left(now_ms));
}

// A failed lookup is a failed poll of the whole target: a sample in the total, an ALERT with
// reason dns. The name no longer says where the replicas are, so they leave (with their
// series); the next good lookup brings them back.
void watched_target::record_dns(bool ok, const char* reason, uint64_t now_ms) {
  char why[max_detail];
  poll_facts facts;
  if (!ok) {
    snprintf(why, sizeof why, "cannot resolve %.160s: %.60s", host_, reason);
    facts.error = transport_error::resolve;
    facts.error_text = why;
  }
  // Only the lookup's outcome counts here: ok, or dns.
  poll_result r = ok ? poll_result{} : judge(facts, policy_);
  if (!ok) {
    ++dns_failures_;
    poll_sample s;
    s.at_ms = now_ms;
    s.failed = true;
    s.result = outcome::dns;
    total_.push(s);
    static const resolved_addresses none{};
    reconcile(none, now_ms);
  }
  alert_step step = dns_alerts_.on_result(r.result, now_ms);
  if (step.alert) log_alert(r, options_.url, host_port_, dns_alerts_.state(), step.consecutive);
  if (step.recovered) log_recovered(options_.url, host_port_, step);
}

void watched_target::reconcile(const resolved_addresses& result, uint64_t now_ms) {
  (void)now_ms;
  size_t active = replica_count();
  auto place = [&](size_t i) -> slot_place& { return slots_[i]->place; };
  auto in_flight = [&](size_t i) { return slots_[i]->xfer.in_flight(); };
  auto left = [&](size_t i) {
    log_replica_change(options_.url, slots_[i]->monitor.replica(), "left", --active);
  };
  auto joined = [&](size_t i, size_t k) {
    slot& s = *slots_[i];
    char label[64];
    format_address(result.addr[k], port_, label, sizeof label);
    s.monitor.reset(label);
    if (!poller_.pin_address(s.xfer, label)) {
      core::log_event("ERROR", "cannot pin %s to %s", options_.url, label);
      return false;
    }
    log_replica_change(options_.url, label, "joined", ++active);
    return true;
  };
  size_t unplaced = reconcile_slots(slot_count_, place, in_flight, result, left, joined);
  if ((unplaced > 0 || result.truncated) && !warned_full_) {
    warned_full_ = true;
    core::log_event("WARN", "target=%s has more addresses than --max-replicas=%zu; not probed=%zu",
                    options_.url, slot_count_, unplaced);
  }
}

void watched_target::start_polls(uint64_t budget_ms) {
  for (size_t i = 0; i < slot_count_; ++i) {
    slot& s = *slots_[i];
    if (s.place.state != slot_state::active) continue;
    if (!poller_.start(s.xfer, budget_ms)) {
      core::log_event("WARN", "poll skipped: previous poll of %s still running",
                      s.monitor.replica());
    }
  }
}

void watched_target::on_result(void* ctx, const poll_facts& facts) {
  auto* s = static_cast<slot*>(ctx);
  if (s->place.state == slot_state::leaving) {
    s->place.state = slot_state::free;
    return;
  }
  if (s->place.state != slot_state::active) return;
  watched_target* self = s->owner;
  poll_sample sample = s->monitor.record(judge(facts, self->policy_), self->now());
  self->total_.push(sample);
}

void watched_target::report(uint64_t now_ms) {
  size_t n = replica_count();
  for (size_t i = 0; i < slot_count_; ++i) {
    slot& s = *slots_[i];
    if (s.place.state == slot_state::active) s.monitor.report(now_ms, n > 1);
  }
  window_stats st = total_.window(now_ms, options_.window_ms);
  report_labels who{options_.url, nullptr, n, options_.kind};
  log_report(who, st, options_.window_ms, state(), reason());
}

outcome watched_target::reason() const {
  if (expand_ && dns_alerts_.state() == health_state::down) return outcome::dns;
  // The reason of the worst replica: a down one first, else a degraded one.
  outcome degraded = outcome::ok;
  for (size_t i = 0; i < slot_count_; ++i) {
    const slot& s = *slots_[i];
    if (s.place.state != slot_state::active) continue;
    if (s.monitor.state() == health_state::down) return s.monitor.reason();
    if (s.monitor.state() == health_state::degraded && degraded == outcome::ok) {
      degraded = s.monitor.reason();
    }
  }
  return degraded;
}

health_state watched_target::state() const {
  replica_tally tally;
  for (size_t i = 0; i < slot_count_; ++i) {
    const slot& s = *slots_[i];
    if (s.place.state == slot_state::active) tally.add(s.monitor.state());
  }
  return target_state(tally, expand_ && dns_alerts_.state() == health_state::down);
}

size_t watched_target::replica_count() const {
  size_t n = 0;
  for (size_t i = 0; i < slot_count_; ++i) n += slots_[i]->place.state == slot_state::active;
  return n;
}

size_t watched_target::series(metrics_series* out) const {
  size_t n = 0;
  for (size_t i = 0; i < slot_count_; ++i) {
    const slot& s = *slots_[i];
    if (s.place.state != slot_state::active) continue;
    out[n++] = {&s.monitor.metrics(), options_.url, s.monitor.replica(), s.monitor.state()};
  }
  return n;
}

}  // namespace sidecar
