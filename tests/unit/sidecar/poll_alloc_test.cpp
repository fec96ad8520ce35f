// Proves "no allocation per poll in our code": malloc/calloc/realloc are replaced by counting
// wrappers (loop thread only), libcurl gets uncounted allocators through curl_global_init_mem
// (its internals are not our code), and 1,000 polls of a keep-alive target through
// sidecar::poller, the latency ring, the alert state and the report formatting must count zero
// after a short warm-up. The target runs on another thread. Not built with sanitizers.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "counting_malloc.hpp"
#include "poller.hpp"
#include "report.hpp"
#include "target_monitor.hpp"

namespace {
// libcurl's allocations, not counted: its internals are not our code.
void curl_free_fn(void* p) {
  alloc_count::raw_free(p);
}
char* curl_strdup(const char* s) {
  size_t n = strlen(s) + 1;
  auto* p = static_cast<char*>(alloc_count::raw_malloc(n));
  if (p != nullptr) memcpy(p, s, n);
  return p;
}
}  // namespace

namespace {

// A keep-alive /health target on its own thread: answers every request on every connection.
struct target {
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread thread;

  target() {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listen_fd, 16);
    socklen_t len = sizeof a;
    getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    thread = std::thread([this] { serve(); });
  }

  ~target() {
    stop = true;
    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    thread.join();
  }

  void serve() {
    const std::string body = "{\"healthy\":true,\"latency\":0.25}";
    const std::string answer =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    while (!stop) {
      int fd = accept(listen_fd, nullptr, nullptr);
      if (fd < 0) return;
      std::string in;
      char buf[4096];
      for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        size_t end;
        while ((end = in.find("\r\n\r\n")) != std::string::npos) {
          in.erase(0, end + 4);
          send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
        }
      }
      close(fd);
    }
  }
};

struct run_state {
  uv_loop_t* loop;
  sidecar::poller* poller;
  sidecar::target_monitor* target;
  pthread_t loop_thread;
  uv_timer_t next{};
  int polls = 0;
  uint64_t counted = 0;
};

constexpr int kWarmup = 20;
constexpr int kPolls = 1000;

void on_result(void* ctx, const sidecar::poll_result& r) {
  auto* st = static_cast<run_state*>(ctx);
  // What the sidecar's main does with every result, and a REPORT's formatting each time.
  uint64_t now = uv_now(st->loop);
  st->target->record(r, now);
  char line[512];
  sidecar::window_stats w = st->target->ring().window(now, 60000);
  sidecar::format_report(core::log_format::text, line, sizeof line, w, 60000, st->target->state());
  sidecar::format_report(core::log_format::json, line, sizeof line, w, 60000, st->target->state());
  ++st->polls;
  if (st->polls == kWarmup) alloc_count::start(st->loop_thread);
  if (st->polls == kWarmup + kPolls) {
    st->counted = alloc_count::stop();
    st->poller->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&st->next), nullptr);
    return;
  }
  uv_timer_start(
      &st->next, [](uv_timer_t* t) { static_cast<run_state*>(t->data)->poller->start(); }, 0, 0);
}

}  // namespace

TEST(PollAllocation, NoAllocationPerPollInOurCode) {
  ASSERT_EQ(curl_global_init_mem(CURL_GLOBAL_DEFAULT, alloc_count::raw_malloc, curl_free_fn,
                                 alloc_count::raw_realloc, curl_strdup, alloc_count::raw_calloc),
            CURLE_OK);
  target t;
  std::string url = "http://127.0.0.1:" + std::to_string(t.port) + "/health";
  uv_loop_t loop;
  uv_loop_init(&loop);
  sidecar::target_monitor target(url.c_str(), 60000, 10, 1, 1, 0);
  run_state st{&loop, nullptr, &target, pthread_self()};
  sidecar::poller poller(&loop, url.c_str(), 2000, on_result, &st);
  st.poller = &poller;
  const char* error = nullptr;
  ASSERT_TRUE(poller.init(&error)) << error;
  uv_timer_init(&loop, &st.next);
  st.next.data = &st;
  ASSERT_TRUE(poller.start());
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  curl_global_cleanup();
  EXPECT_EQ(st.polls, kWarmup + kPolls);
  EXPECT_EQ(target.metrics().probes, static_cast<uint64_t>(kWarmup + kPolls));
  EXPECT_EQ(target.state(), sidecar::health_state::healthy);
  EXPECT_EQ(st.counted, 0u) << "allocations on the loop thread outside libcurl over 1,000 polls";
}
