// The owning event loop: one uv_loop_t, the before-sleep log flush, and SIGINT/SIGTERM.
//
// Why the loop's own handles are unreferenced: the process should live exactly as long as its
// real work (listeners, connections, timers, transfers). When a graceful stop has closed all of
// that, uv_run() returns by itself; run() then closes the loop's own handles and reports
// uv_loop_close()'s result, which is 0 only if nothing leaked.
#pragma once

#include <uv.h>

namespace core {

class event_loop {
 public:
  using stop_fn = void (*)(void* ctx, int signum);

  event_loop();
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  uv_loop_t* uv() { return &loop_; }

  // The first SIGINT or SIGTERM calls on_stop (start a graceful stop); a second one ends the
  // process at once with status 128 + signal.
  void watch_signals(stop_fn on_stop, void* ctx);

  // Runs until no referenced handle is left, then closes the loop. Returns uv_loop_close()'s
  // result: 0, or a negative libuv error if handles leaked (they are logged).
  int run();

  // Number of stop signals received so far.
  int signals_received() const { return signals_received_; }

 private:
  static void on_prepare(uv_prepare_t* h);
  static void on_signal(uv_signal_t* h, int signum);

  uv_loop_t loop_{};
  uv_prepare_t flush_{};
  uv_signal_t sigint_{};
  uv_signal_t sigterm_{};
  bool signals_ = false;
  bool closed_ = false;
  int signals_received_ = 0;
  stop_fn on_stop_ = nullptr;
  void* stop_ctx_ = nullptr;
};

const char* signal_name(int signum);

// Raises the soft open-file limit to the hard limit (a server with many connections needs
// one descriptor each) and returns the limit now in force.
uint64_t raise_fd_limit();

}  // namespace core
