// Running a test's libuv loop until something happens, with a bound, and watching that the
// loop never stalls meanwhile (a 5 ms ticker records the longest gap between its ticks).
#pragma once

#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string_view>

namespace loop_run {

class ticker {
 public:
  explicit ticker(uv_loop_t* loop) {
    uv_timer_init(loop, &timer_);
    timer_.data = this;
    last_ = uv_hrtime();
    uv_timer_start(&timer_, on_tick, 5, 5);
  }
  ~ticker() { stop(); }
  void stop() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
      // Let the close callback run before the handle's memory goes.
      uv_run(timer_.loop, UV_RUN_NOWAIT);
    }
  }
  // The longest time between two loop wake-ups seen by the ticker, in ms.
  double max_gap_ms() const { return static_cast<double>(max_gap_ns_) / 1e6; }

 private:
  static void on_tick(uv_timer_t* t) {
    auto* self = static_cast<ticker*>(t->data);
    uint64_t now = uv_hrtime();
    if (now - self->last_ > self->max_gap_ns_) self->max_gap_ns_ = now - self->last_;
    self->last_ = now;
  }
  uv_timer_t timer_{};
  uint64_t last_ = 0;
  uint64_t max_gap_ns_ = 0;
};

// Runs the loop until pred() holds or timeout_ms passed; returns pred().
inline bool until(uv_loop_t* loop, const std::function<bool()>& pred, uint64_t timeout_ms) {
  uv_timer_t wake{};
  uv_timer_init(loop, &wake);
  uv_timer_start(
      &wake, [](uv_timer_t*) {}, 2, 2);
  uint64_t deadline = uv_hrtime() + timeout_ms * 1000000ull;
  bool ok = pred();
  while (!ok && uv_hrtime() < deadline) {
    uv_run(loop, UV_RUN_ONCE);
    ok = pred();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

// Runs the loop for ms milliseconds.
inline void for_ms(uv_loop_t* loop, uint64_t ms) {
  until(
      loop, [] { return false; }, ms);
}

// Runs the loop until nothing is left, then closes it: 0 when no handle leaked.
inline int close_loop(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    uv_walk(
        loop,
        [](uv_handle_t* h, void*) {
          fprintf(stderr, "leaked handle: %s active=%d closing=%d\n",
                  uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h), uv_is_closing(h));
        },
        nullptr);
  }
  return rc;
}

// write(2)-family system calls made by this process so far (/proc/self/io "syscw").
inline uint64_t write_syscalls() {
  FILE* f = fopen("/proc/self/io", "r");
  if (f == nullptr) return 0;
  char key[64];
  unsigned long long v = 0;
  uint64_t out = 0;
  while (fscanf(f, "%63[^:]: %llu\n", key, &v) == 2) {
    if (std::string_view(key) == "syscw") out = v;
  }
  fclose(f);
  return out;
}

}  // namespace loop_run
