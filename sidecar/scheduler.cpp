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

namespace {

void skip_and_warn(uint64_t origin_ms, uint64_t period_ms, uint64_t now_ms, uint64_t* index,
                   const char* what) {
  if (uint64_t skipped = skip_missed(origin_ms, period_ms, now_ms, index)) {
    core::log_event("WARN", "loop stalled: skipped=%llu %s",
                    static_cast<unsigned long long>(skipped), what);
  }
}

}  // namespace

scheduler::scheduler(uv_loop_t* loop, watched_target* const* targets, size_t count,
                     uint64_t interval_ms, uint64_t window_ms, uint64_t origin_ms)
    : loop_(loop),
      targets_(targets),
      count_(count),
      interval_ms_(interval_ms),
      window_ms_(window_ms),
      origin_ms_(origin_ms) {}

void scheduler::start() {
  uv_timer_init(loop_, &poll_timer_);
  poll_timer_.data = this;
  uv_timer_init(loop_, &report_timer_);
  report_timer_.data = this;
  started_ = true;
  arm(&poll_timer_, on_poll_timer, polls_started_, interval_ms_);
  arm(&report_timer_, on_report_timer, reports_, window_ms_);
}

void scheduler::stop() {
  if (!started_) return;
  for (uv_timer_t* timer : {&poll_timer_, &report_timer_}) {
    auto* h = reinterpret_cast<uv_handle_t*>(timer);
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
}

// Slot `index` is due at origin + index * period; a late timer runs it at once.
void scheduler::arm(uv_timer_t* timer, uv_timer_cb cb, uint64_t index, uint64_t period_ms) {
  uint64_t due = origin_ms_ + index * period_ms;
  uint64_t now = uv_now(loop_);
  uv_timer_start(timer, cb, due > now ? due - now : 0, 0);
}

// A poll still running when the next is due makes that one skip (watched_target says so).
void scheduler::on_poll_timer(uv_timer_t* t) {
  auto* self = static_cast<scheduler*>(t->data);
  uint64_t now = uv_now(self->loop_);
  skip_and_warn(self->origin_ms_, self->interval_ms_, now, &self->polls_started_, "polls");
  for (size_t i = 0; i < self->count_; ++i) self->targets_[i]->poll(now);
  ++self->polls_started_;
  self->arm(&self->poll_timer_, on_poll_timer, self->polls_started_, self->interval_ms_);
}

// Report r covers the window ending at origin + r * window.
void scheduler::on_report_timer(uv_timer_t* t) {
  auto* self = static_cast<scheduler*>(t->data);
  uint64_t now = uv_now(self->loop_);
  skip_and_warn(self->origin_ms_, self->window_ms_, now, &self->reports_, "reports");
  for (size_t i = 0; i < self->count_; ++i) self->targets_[i]->report(now);
  ++self->reports_;
  self->arm(&self->report_timer_, on_report_timer, self->reports_, self->window_ms_);
}

}  // namespace sidecar
