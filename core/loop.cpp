#include "loop.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "log.hpp"

namespace core {

const char* signal_name(int signum) {
  switch (signum) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGQUIT: return "SIGQUIT";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
  }
}

uint64_t raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  return static_cast<uint64_t>(lim.rlim_cur);
}

event_loop::event_loop() {
  // A peer closing early must be an EPIPE on write, never a dead process.
  signal(SIGPIPE, SIG_IGN);
  int rc = uv_loop_init(&loop_);
  if (rc != 0) {
    fprintf(stderr, "uv_loop_init: %s\n", uv_strerror(rc));
    std::abort();
  }
  loop_.data = this;
  uv_prepare_init(&loop_, &flush_);
  flush_.data = this;
  uv_prepare_start(&flush_, on_prepare);
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_));
  log_set_deferred(true);
}

event_loop::~event_loop() {
  if (!closed_) run();
  log_set_deferred(false);
}

void event_loop::watch_signals(stop_fn on_stop, void* ctx) {
  on_stop_ = on_stop;
  stop_ctx_ = ctx;
  if (signals_) return;
  signals_ = true;
  for (uv_signal_t* s : {&sigint_, &sigterm_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_unref(reinterpret_cast<uv_handle_t*>(&sigint_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&sigterm_));
}

void event_loop::on_prepare(uv_prepare_t*) {
  log_flush();
}

void event_loop::on_signal(uv_signal_t* h, int signum) {
  auto* self = static_cast<event_loop*>(h->data);
  ++self->signals_received_;
  if (self->signals_received_ > 1) {
    log_event("SIGNAL", "name=%s action=exit code=%d", signal_name(signum), 128 + signum);
    log_flush();
    _exit(128 + signum);
  }
  if (self->on_stop_ != nullptr) self->on_stop_(self->stop_ctx_, signum);
}

int event_loop::run() {
  if (closed_) return 0;
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Work is done and the exit status decided. Closing the signal handles restores the default
  // disposition, so a late SIGINT/SIGTERM would kill a process that is about to exit 0: keep
  // them blocked (pending, never delivered) from here on.
  if (signals_) {
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  }
  // Close our own (unreferenced) handles and let their close callbacks run.
  auto close_if_open = [](uv_handle_t* h) {
    if (h->loop != nullptr && !uv_is_closing(h)) uv_close(h, nullptr);
  };
  close_if_open(reinterpret_cast<uv_handle_t*>(&flush_));
  if (signals_) {
    close_if_open(reinterpret_cast<uv_handle_t*>(&sigint_));
    close_if_open(reinterpret_cast<uv_handle_t*>(&sigterm_));
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  closed_ = true;
  log_flush();
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          log_event("ERROR", "leaked_handle type=%s active=%d closing=%d",
                    uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h), uv_is_closing(h));
        },
        nullptr);
  }
  log_set_deferred(false);
  return rc;
}

}  // namespace core
