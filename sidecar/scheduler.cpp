#include "scheduler.hpp"

#include "log.hpp"
#include "watched_target.hpp"

namespace sidecar {

uint64_t skip_missed(uint64_t origin_ms, uint64_t period_ms, uint64_t now_ms, uint64_t* index) {
  if (now_ms < origin_ms) return 0;
  uint64_t latest = (now_ms - origin_ms) / period_ms;
  if (*index >= latest) return 0;
  uint64_t skipped = latest - *index;
  *index = latest;
  return skipped;
}

scheduler::scheduler(uv_loop_t* loop, watched_target* const* targets, size_t count,
                     uint64_t interval_ms, uint64_t window_ms, uint64_t origin_ms)
    : loop_(loop), targets_(targets), count_(count), origin_ms_(origin_ms) {
  polls_ = {this, {}, interval_ms, 0, "polls", &watched_target::poll};
  reports_ = {this, {}, window_ms, 1, "reports", &watched_target::report};
}

void scheduler::start() {
  for (beat* b : {&polls_, &reports_}) {
    uv_timer_init(loop_, &b->timer);
    b->timer.data = b;
  }
  started_ = true;
  arm(polls_);
  arm(reports_);
}

void scheduler::stop() {
  if (!started_) return;
  for (beat* b : {&polls_, &reports_}) {
    auto* h = reinterpret_cast<uv_handle_t*>(&b->timer);
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
}

// The next slot is due at origin + next * period; a late timer runs it at once.
void scheduler::arm(beat& b) {
  uint64_t due = origin_ms_ + b.next * b.period_ms;
  uint64_t now = uv_now(loop_);
  uv_timer_start(&b.timer, on_beat, due > now ? due - now : 0, 0);
}

// A poll still running when the next is due makes that one skip (watched_target says so).
void scheduler::on_beat(uv_timer_t* t) {
  auto& b = *static_cast<beat*>(t->data);
  scheduler& self = *b.owner;
  uint64_t now = uv_now(self.loop_);
  if (uint64_t skipped = skip_missed(self.origin_ms_, b.period_ms, now, &b.next)) {
    core::log_event("WARN", "loop stalled: skipped=%llu %s",
                    static_cast<unsigned long long>(skipped), b.what);
  }
  for (size_t i = 0; i < self.count_; ++i) (self.targets_[i]->*b.run)(now);
  ++b.next;
  self.arm(b);
}

}  // namespace sidecar
