// Proves "no heap allocation per request in steady state": this test binary counts malloc,
// calloc and realloc calls (tests/unit/support/counting_malloc), serves hello's real routes through
// core::http_server on a loop in this thread, and asserts that after a warm-up, 10,000
// keep-alive requests (sequential and pipelined, every route and error answer, access log on)
// cause zero allocations on the loop thread. Not built with sanitizers (they own malloc).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "counting_malloc.hpp"
#include "health.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "loopback.hpp"
#include "routes.hpp"

namespace {

using loopback::connect_to;

// Sends `req` and reads until `answers` complete responses (head + Content-Length body bytes;
// the HEAD requests here are never pipelined, and a lone HEAD answer ends at its head).
bool exchange(int fd, const std::string& req, int answers, std::string& buf, bool head_only) {
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return false;
  }
  buf.clear();
  int seen = 0;
  size_t scan = 0;
  char tmp[65536];
  while (seen < answers) {
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    // Complete responses: head end + Content-Length bytes (HEAD answers carry no body).
    for (;;) {
      size_t head_end = buf.find("\r\n\r\n", scan);
      if (head_end == std::string::npos) break;
      size_t cl = buf.find("Content-Length: ", scan);
      size_t len = cl != std::string::npos && cl < head_end ? std::stoul(buf.substr(cl + 16)) : 0;
      if (head_only) len = 0;
      size_t end = head_end + 4 + len;
      if (buf.size() < end) break;
      scan = end;
      ++seen;
    }
  }
  return true;
}

// Access logs go to stdout's fixed buffer; while a test counts, they go to /dev/null.
struct quiet_stdout {
  int saved = -1;
  quiet_stdout() {
    fflush(stdout);
    saved = dup(1);
    if (freopen("/dev/null", "w", stdout) == nullptr) saved = -1;
  }
  ~quiet_stdout() {
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
  }
};

int bound_port(const core::http_server& server) {
  std::string bound = server.bound_address();
  return std::stoi(bound.substr(bound.rfind(':') + 1));
}

}  // namespace

TEST(Allocation, NoHeapAllocationPerRequestInSteadyState) {
  quiet_stdout quiet;  // access log on
  ASSERT_NE(quiet.saved, -1);
  core::log_init("hello");

  core::event_loop loop;
  hello::app app{hello::health_model(0.9, 42)};
  core::http_server_config cfg;
  cfg.access_log = true;
  cfg.observer = hello::observe_request;  // /metrics counting, as hello's main sets it up
  cfg.observer_ctx = &app;
  core::http_server server(loop.uv(), cfg, hello::handle_request, &app);
  ASSERT_EQ(server.listen("127.0.0.1", 0), 0);
  int port = bound_port(server);
  pthread_t loop_thread = pthread_self();

  uv_async_t stop{};
  uv_async_init(loop.uv(), &stop, [](uv_async_t* a) {
    static_cast<core::http_server*>(a->data)->drain(nullptr, nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
  });
  stop.data = &server;

  // Names in several scripts: Unicode capitalisation (title case, final sigma) allocates nothing.
  const char* routes[] = {"/",       "/baz",
                          "/health", "/a/b",
                          "/%zz",    "/%C3%9F%C3%A9t%C3%A9%20%CE%9F%CE%94%CE%9F%CE%A3%20World",
                          "/status"};
  std::atomic<bool> ok{true};
  uint64_t during = 0;
  std::thread client([&] {
    int fd = connect_to(port);
    std::string buf;
    auto one = [&](int i) {
      std::string req = std::string(i % 7 == 0 ? "HEAD " : "GET ") + routes[i % 7] +
                        " HTTP/1.1\r\nHost: x\r\n\r\n";
      if (!exchange(fd, req, 1, buf, i % 7 == 0)) ok = false;
    };
    auto pipelined = [&](int i) {
      std::string req;
      for (int k = 0; k < 16; ++k)
        req += std::string("GET ") + routes[(i + k) % 7] + " HTTP/1.1\r\nHost: x\r\n\r\n";
      if (!exchange(fd, req, 16, buf, false)) ok = false;
    };
    for (int i = 0; i < 500; ++i) one(i);  // warm-up: pools fill, stdio buffer, date cache
    for (int i = 0; i < 30; ++i) pipelined(i);
    alloc_count::start(loop_thread);
    for (int i = 0; i < 8400; ++i) one(i);
    for (int i = 0; i < 100; ++i) pipelined(i);  // 1,600 more
    during = alloc_count::stop();
    close(fd);
    uv_async_send(&stop);
  });
  EXPECT_EQ(loop.run(), 0);
  client.join();
  EXPECT_TRUE(ok.load()) << "a request failed";
  EXPECT_EQ(during, 0u) << "heap allocations on the loop thread across 10,000 requests";
}

namespace {

// A JSON API in miniature: POST bodies parsed by core, every answer deferred and given from a
// timer in reverse order (so the queue reorders), as the visits and accounts services work.
struct deferred_app {
  core::http_deferred pending[64];
  size_t count = 0;
  uv_timer_t timer{};
  uint64_t answered = 0;
};

core::body_policy json_policy(void*, llhttp_method_t method, std::string_view) {
  return method == HTTP_POST ? core::body_policy{4096, true, false} : core::body_policy{};
}

void deferred_handler(void* ctx, const core::http_request& req, core::http_reply& reply) {
  auto& a = *static_cast<deferred_app*>(ctx);
  if (req.json == nullptr || a.count == 64) {
    reply.status = 400;
    return;
  }
  auto name = req.json->root()["name"].string();
  if (!name || name->empty()) {
    reply.status = 422;
    return;
  }
  a.pending[a.count++] = reply.defer();
}

void answer_all(uv_timer_t* t) {
  auto& a = *static_cast<deferred_app*>(t->data);
  char body[64];
  while (a.count > 0) {
    core::buf_writer w(body, sizeof body);
    w.put("{\"n\":");
    w.put_uint(++a.answered);
    w.put("}");
    a.pending[--a.count].answer(200, "application/json", w.view());
  }
}

}  // namespace

TEST(Allocation, NoHeapAllocationPerDeferredJsonRequestInSteadyState) {
  quiet_stdout quiet;
  ASSERT_NE(quiet.saved, -1);
  core::log_init("later");

  core::event_loop loop;
  deferred_app app;
  uv_timer_init(loop.uv(), &app.timer);
  app.timer.data = &app;
  uv_timer_start(&app.timer, answer_all, 1, 1);
  core::http_server_config cfg;
  cfg.body_policy = json_policy;
  core::http_server server(loop.uv(), cfg, deferred_handler, &app);
  ASSERT_EQ(server.listen("127.0.0.1", 0), 0);
  int port = bound_port(server);
  pthread_t loop_thread = pthread_self();

  struct stopper {
    core::http_server* server;
    uv_timer_t* timer;
  } st{&server, &app.timer};
  uv_async_t stop{};
  uv_async_init(loop.uv(), &stop, [](uv_async_t* a) {
    auto* s = static_cast<stopper*>(a->data);
    s->server->drain(nullptr, nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(s->timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
  });
  stop.data = &st;

  std::atomic<bool> ok{true};
  uint64_t during = 0;
  std::thread client([&] {
    int fd = connect_to(port);
    std::string buf;
    auto batch = [&](int i) {
      std::string req;
      for (int k = 0; k < 8; ++k) {
        std::string body = "{\"name\":\"caf\\u00e9 " + std::to_string(i * 8 + k) +
                           "\",\"tags\":[1,2.5,true,null,{\"x\":\"y\"}]}";
        req +=
            "POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
      }
      if (!exchange(fd, req, 8, buf, false)) ok = false;
      if (buf.find("HTTP/1.1 200 ") != 0) ok = false;
    };
    for (int i = 0; i < 100; ++i) batch(i);  // warm-up: exchange records, pool blocks
    alloc_count::start(loop_thread);
    for (int i = 0; i < 250; ++i) batch(i);  // 2,000 requests
    during = alloc_count::stop();
    close(fd);
    uv_async_send(&stop);
  });
  EXPECT_EQ(loop.run(), 0);
  client.join();
  EXPECT_TRUE(ok.load()) << "a request failed";
  EXPECT_GT(app.answered, 2000u);
  EXPECT_EQ(during, 0u)
      << "heap allocations on the loop thread across 2,000 deferred JSON requests";
}
