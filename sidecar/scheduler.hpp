// The sidecar's clock: poll k of every watched target starts at origin + k * interval, and
// report r (the window ending there) at origin + r * window, whatever earlier polls took, so
// the schedule does not drift. Two uv_timers on the loop; nothing allocated after start().
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace sidecar {

class watched_target;

// After a stall (the process stopped, a starved host) the slots that passed are skipped, not
// run back to back: moves *index to the latest slot due at now_ms (origin + index * period)
// and returns how many were skipped (0 when on time or early). Pure.
uint64_t skip_missed(uint64_t origin_ms, uint64_t period_ms, uint64_t now_ms, uint64_t* index);

class scheduler {
 public:
  // targets: the main target first, then the probes; they must outlive the scheduler.
  scheduler(uv_loop_t* loop, watched_target* const* targets, size_t count, uint64_t interval_ms,
            uint64_t window_ms, uint64_t origin_ms);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // Arms the timers: the first poll at the origin, the first report one window later.
  void start();
  // Closes the timers (idempotent); no poll or report starts after it.
  void stop();

 private:
  // One periodic task: slot `next` is due at origin + next * period; each runs `run` on
  // every target. Polls and reports are two of them.
  struct beat {
    scheduler* owner = nullptr;
    uv_timer_t timer{};
    uint64_t period_ms = 0;
    uint64_t next = 0;
    const char* what = "";  // for the stall warning: "polls", "reports"
    void (watched_target::*run)(uint64_t now_ms) = nullptr;
  };

  static void on_beat(uv_timer_t* t);
  void arm(beat& b);

  uv_loop_t* loop_;
  watched_target* const* targets_;
  size_t count_;
  uint64_t origin_ms_;
  bool started_ = false;
  beat polls_;    // poll k at origin + k * interval
  beat reports_;  // report r (the window ending there) at origin + r * window; r starts at 1
};

}  // namespace sidecar
