// libFuzzer driver: arbitrary bytes through core::http_server's whole connection state machine
// (llhttp glue, limits, pipelining, flushing, lingering close) with hello's real routes, over
// one end of a socketpair adopted by the server.
//
// Invariants checked on every input, besides ASan/UBSan:
//   - the output is a sequence of well-formed HTTP/1.1 responses (interim 100s allowed);
//   - a response carrying "Connection: close" is the last one, and the server then closes;
//   - every rejection by the server itself (framing errors, limits) carries "Connection: close";
//   - an input with no request in it gets no byte at all;
//   - the connection is gone when the input ends (nothing is left half-done or leaked).
//
// Every input runs twice more in the deferred mode: a handler that answers some requests at
// once and defers the others (POST bodies go through the JSON route path), the harness
// completing the deferred ones in an order drawn from the input between loop turns. There the
// answers must carry their request's sequence number in order, with no gap; an exchange
// cancelled when the client left must say so, and answering it afterwards must be a no-op.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "health.hpp"
#include "http_server.hpp"
#include "response.hpp"
#include "routes.hpp"

namespace {

// Small limits so that short inputs reach every rejection path.
core::http_server_config small_limits() {
  core::http_server_config cfg;
  cfg.access_log = false;
  cfg.max_target_bytes = 256;
  cfg.max_header_bytes = 512;
  cfg.max_headers = 8;
  cfg.max_body_bytes = 1024;
  return cfg;
}

struct harness {
  uv_loop_t loop{};
  hello::app app{hello::health_model(0.5, 1)};
  core::http_server* server = nullptr;

  harness() {
    uv_loop_init(&loop);
    server = new core::http_server(&loop, small_limits(), hello::handle_request, &app);
  }
};

// The deferred mode: see the top of the file.
struct deferred_harness;

struct slot {
  deferred_harness* h = nullptr;
  core::http_deferred answer;
  uint32_t seq = 0;
  bool cancelled = false;
  bool answered = false;
};

struct deferred_harness {
  uv_loop_t loop{};
  core::http_server* server = nullptr;
  std::vector<std::unique_ptr<slot>> slots;
  uint32_t seq = 0;
  std::string_view choices;  // the input's bytes, read as dice
  size_t dice = 0;

  deferred_harness() {
    uv_loop_init(&loop);
    core::http_server_config cfg = small_limits();
    cfg.max_pipelined = 4;
    cfg.body_policy = [](void*, llhttp_method_t m, std::string_view) {
      return m == HTTP_POST ? core::body_policy{512, true, true} : core::body_policy{};
    };
    server = new core::http_server(&loop, cfg, handle, this);
  }

  uint8_t roll() {
    return choices.empty() ? 0 : static_cast<uint8_t>(choices[dice++ % choices.size()]);
  }

  static void put_seq(core::buf_writer& w, uint32_t n) {
    w.put("{\"seq\":");
    w.put_uint(n);
    w.put("}");
  }

  static void handle(void* ctx, const core::http_request&, core::http_reply& reply) {
    auto& h = *static_cast<deferred_harness*>(ctx);
    uint32_t n = h.seq++;
    if (h.roll() % 3 == 0) {
      put_seq(reply.body, n);
      return;
    }
    auto s = std::make_unique<slot>();
    s->h = &h;
    s->seq = n;
    s->answer = reply.defer([](void* c) { static_cast<slot*>(c)->cancelled = true; }, s.get());
    h.slots.push_back(std::move(s));
  }

  // Answers one of the deferred exchanges still open, picked by the dice; false if none.
  bool complete_one() {
    std::vector<slot*> open;
    for (auto& s : slots) {
      if (!s->answered && !s->cancelled) open.push_back(s.get());
    }
    if (open.empty()) return false;
    slot* s = open[roll() % open.size()];
    char body[32];
    core::buf_writer w(body, sizeof body);
    put_seq(w, s->seq);
    // Refused only while its connection is closing: the cancel then comes (checked at the end).
    s->answered = s->answer.answer(200, "application/json", w.view());
    return s->answered;
  }
};

[[noreturn]] void fail(const char* what, const std::string& out) {
  fprintf(stderr, "invariant violated: %s\n--- output ---\n%s\n", what, out.c_str());
  abort();
}

bool has_request_bytes(std::string_view in) {
  for (char c : in) {
    if (c != '\r' && c != '\n') return true;
  }
  return false;
}

void check_output(std::string_view in, const std::string& out) {
  if (!has_request_bytes(in) && !out.empty()) fail("answered an input without a request", out);
  size_t pos = 0;
  bool closed = false;
  while (pos < out.size()) {
    if (closed) fail("bytes after a Connection: close response", out);
    if (out.compare(pos, 9, "HTTP/1.1 ") != 0) fail("not a status line", out);
    size_t head_end = out.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) fail("truncated head", out);
    std::string_view head(out.data() + pos, head_end - pos);
    int status = atoi(out.c_str() + pos + 9);
    if (status < 100 || status > 599) fail("bad status", out);
    pos = head_end + 4;
    if (status == 100) continue;
    size_t cl = head.find("\r\nContent-Length: ");
    if (cl == std::string_view::npos) fail("no Content-Length", out);
    size_t len = strtoul(head.data() + cl + 18, nullptr, 10);
    // HEAD answers have no body; the next thing is then a status line or the end.
    size_t body_len = 0;
    if (pos + len <= out.size() &&
        (pos + len == out.size() || out.compare(pos + len, 9, "HTTP/1.1 ") == 0)) {
      body_len = len;
      pos += len;
    } else if (!(pos == out.size() || out.compare(pos, 9, "HTTP/1.1 ") == 0)) {
      fail("body does not match Content-Length", out);
    }
    bool closes = head.find("\r\nConnection: close\r\n") != std::string_view::npos ||
                  head.ends_with("\r\nConnection: close");
    // The server's own rejections (framing, limits) have the reason phrase as their error;
    // they must close the connection, so nothing may follow them.
    std::string rejection = std::string("{\"error\":\"") + core::http_reason(status) + "\"";
    if (status >= 400 &&
        std::string_view(out.data() + pos - body_len, body_len).starts_with(rejection) && !closes) {
      fail("a rejection that does not close the connection", out);
    }
    if (closes) closed = true;
  }
}

}  // namespace

namespace {

// Deferred mode: the 200 answers carry {"seq":N}, which must count up from 0 without a gap
// (answers in request order, none lost in the middle).
void check_sequence(const std::string& out) {
  uint32_t want = 0;
  for (size_t pos = out.find("{\"seq\":"); pos != std::string::npos;
       pos = out.find("{\"seq\":", pos + 1)) {
    uint32_t got = static_cast<uint32_t>(strtoul(out.c_str() + pos + 7, nullptr, 10));
    if (got != want) fail("deferred answers out of request order", out);
    ++want;
  }
}

// The client's part of a run, between loop turns: `sending` while input is left, `sent` once
// it is all written (return true to half-close now), `after` once half-closed.
enum class phase { sending, sent, after };

// Feeds `in` to a fresh adopted connection, `chunk` bytes per write, then half-closes, runs the
// loop until the server has closed the connection, and returns what came back. `turn` is
// called once per loop turn with the phase the client is in.
template <class Turn>
std::string drive(uv_loop_t* loop, core::http_server* server, std::string_view in, size_t chunk,
                  Turn turn) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) abort();
  fcntl(fds[1], F_SETFL, O_NONBLOCK);
  if (server->adopt(fds[0]) != 0) abort();
  std::string out;
  char buf[65536];
  size_t sent = 0;
  bool shut = false;
  for (int i = 0; i < 100000; ++i) {
    if (sent < in.size()) {
      size_t n = in.size() - sent < chunk ? in.size() - sent : chunk;
      ssize_t w = send(fds[1], in.data() + sent, n, MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<size_t>(w);
      if (w < 0 && errno == EPIPE) sent = in.size();  // server closed: the rest is moot
      turn(phase::sending);
    } else if (!shut) {
      if (turn(phase::sent)) {
        shutdown(fds[1], SHUT_WR);
        shut = true;
      }
    } else {
      turn(phase::after);
    }
    uv_run(loop, UV_RUN_NOWAIT);
    for (;;) {
      ssize_t r = recv(fds[1], buf, sizeof buf, 0);
      if (r <= 0) break;
      out.append(buf, static_cast<size_t>(r));
    }
    if (shut && server->connection_count() == 0) break;
  }
  if (server->connection_count() != 0) fail("connection still open after the input ended", out);
  close(fds[1]);
  return out;
}

void run_deferred(deferred_harness& h, std::string_view in, size_t chunk) {
  h.slots.clear();
  h.seq = 0;
  h.choices = in;
  h.dice = 0;
  std::string out = drive(&h.loop, h.server, in, chunk, [&](phase p) {
    switch (p) {
      case phase::sending:
        if (h.roll() % 2 == 0) h.complete_one();
        return false;
      case phase::sent:
        // Everything sent: answer what is left, in the dice's order, then half-close. Dice
        // that say "leave now" make the client go with answers still pending (cancelled).
        return h.roll() % 8 == 0 || !h.complete_one();
      case phase::after:
        // The application still answers after the client left: a connection whose input
        // waits for its queue (max_pipelined) sees the FIN only then.
        if (h.roll() % 2 == 0) h.complete_one();
        return false;
    }
    return false;
  });
  if (h.server->pending_answers() != 0) fail("pending answers left after the connection", out);
  check_output(in, out);
  check_sequence(out);
  // The client is gone: every exchange was answered or cancelled, and a late answer is a no-op.
  for (auto& s : h.slots) {
    if (!s->answered && !s->cancelled) fail("an exchange ended without answer or cancel", out);
    if (s->answer.pending()) fail("an ended exchange still pending", out);
    if (s->answer.answer(200, "application/json", "{}")) fail("a late answer was accepted", out);
  }
}

void run_one(harness& h, std::string_view in, size_t chunk) {
  std::string out = drive(&h.loop, h.server, in, chunk, [](phase p) { return p == phase::sent; });
  check_output(in, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static harness h;
  if (size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Once in one write, once split in writes of 1..97 bytes picked by the first byte, so that
  // requests straddling reads are explored as much as whole ones.
  run_one(h, in, size == 0 ? 1 : size);
  run_one(h, in, size > 0 ? 1 + data[0] % 97 : 1);
  static deferred_harness d;
  run_deferred(d, in, size == 0 ? 1 : size);
  run_deferred(d, in, size > 0 ? 1 + data[0] % 97 : 1);
  return 0;
}
