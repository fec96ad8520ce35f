// A fixed pool of uv_poll_t watchers for sockets that a library opens on its own schedule
// (libcurl's connections, c-ares's resolver sockets). Each slot's memory may be reused only
// after libuv's close callback for its handle, so a slot is marked free there and not before.
#pragma once

#include <uv.h>

#include <cstddef>

namespace sidecar {

template <class Owner, class Fd>
struct poll_slot {
  uv_poll_t poll;
  Owner* owner;
  Fd fd;
  bool in_use;
};

// A free slot watching fd for owner, or nullptr when all are taken (or libuv refused).
template <class Slot, class Owner, class Fd>
Slot* acquire_poll_slot(uv_loop_t* loop, Slot* slots, size_t count, Owner* owner, Fd fd) {
  for (size_t i = 0; i < count; ++i) {
    Slot& s = slots[i];
    if (s.in_use) continue;
    if (uv_poll_init_socket(loop, &s.poll, fd) != 0) return nullptr;
    s.in_use = true;
    s.owner = owner;
    s.fd = fd;
    s.poll.data = &s;
    return &s;
  }
  return nullptr;
}

// Stops watching; the slot becomes free in the close callback. Idempotent.
template <class Slot>
void release_poll_slot(Slot* s) {
  auto* h = reinterpret_cast<uv_handle_t*>(&s->poll);
  if (uv_is_closing(h)) return;
  uv_poll_stop(&s->poll);
  uv_close(h, [](uv_handle_t* closed) { static_cast<Slot*>(closed->data)->in_use = false; });
}

}  // namespace sidecar
