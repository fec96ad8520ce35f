// In-process tests of core::http_server: a real loop and listener on loopback, a blocking
// client on another thread, and a check that the loop closes clean (no leaked handles).
#include "http_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "loop.hpp"
#include "loopback.hpp"

using namespace core;

namespace {

using loopback::connect_to;
using loopback::read_all;
using loopback::send_all;

// "/big": 300 KiB of a counting pattern (more than a pooled block holds).
constexpr size_t kBig = 300 * 1024;
char big_byte(size_t i) {
  return static_cast<char>('a' + (i * 7 + i / 1024) % 26);
}

void echo_target(void*, const http_request& req, http_reply& reply) {
  if (req.target == "/missing") {
    reply.status = 404;
  }
  if (req.target == "/big") {
    reply.content_type = "text/plain";
    for (size_t i = 0; i < kBig; ++i) reply.body.put(big_byte(i));
    return;
  }
  reply.body.put("{\"target\":\"");
  json_escape(reply.body, req.target);
  reply.body.put("\"}");
}

struct server_fixture {
  event_loop loop;
  http_server server;
  uv_async_t stop{};
  int port = 0;

  explicit server_fixture(http_server_config cfg = {}, http_handler handler = echo_target)
      : server(loop.uv(), cfg, handler, nullptr) {
    EXPECT_EQ(server.listen("127.0.0.1", 0), 0);
    std::string bound = server.bound_address();
    port = std::stoi(bound.substr(bound.rfind(':') + 1));
    uv_async_init(loop.uv(), &stop, [](uv_async_t* a) {
      static_cast<http_server*>(a->data)->drain(nullptr, nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop.data = &server;
  }

  // Runs the loop while `client` runs on a thread, then drains; returns uv_loop_close's result.
  template <class F>
  int run_with(F client) {
    std::thread t([&] {
      client(port);
      uv_async_send(&stop);
    });
    int rc = loop.run();
    t.join();
    return rc;
  }
};

// Answers with the kept header values and the peer: "a=<authorization>|c=<cookie>|p=<peer>";
// "/nocontent": a 204 with a body written anyway (it must not go out).
void echo_headers(void*, const http_request& req, http_reply& reply) {
  if (req.target == "/nocontent") {
    reply.status = 204;
    reply.body.put("dropped");
    return;
  }
  reply.content_type = "text/plain";
  reply.body.put("a=");
  reply.body.put(req.headers[0]);
  reply.body.put("|c=");
  reply.body.put(req.headers[1]);
  reply.body.put("|p=");
  reply.body.put(req.peer);
}

constexpr const char* kKept[] = {"authorization", "cookie"};

size_t count(const std::string& hay, std::string_view needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(HttpServer, PipelinedRequestsAnsweredInOrderThenClose) {
  server_fixture f;
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd,
             "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
             "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
    got = read_all(fd);
    close(fd);
  }),
            0);
  size_t one = got.find("{\"target\":\"/one\"}");
  size_t two = got.find("{\"target\":\"/two\"}");
  size_t three = got.find("{\"target\":\"/three\"}");
  ASSERT_NE(one, std::string::npos) << got;
  ASSERT_NE(two, std::string::npos) << got;
  ASSERT_NE(three, std::string::npos) << got;
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_EQ(got.find("/never"), std::string::npos);
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), 3u);
  EXPECT_EQ(count(got, "Connection: close"), 1u);
}

TEST(HttpServer, ManyPipelinedRequestsSurviveBlockFlushes) {
  // More answers than one 16 KiB block holds: the parser must pause, flush and resume.
  server_fixture f;
  std::string got;
  const int n = 400;
  EXPECT_EQ(f.run_with([&](int port) {
    std::string req;
    for (int i = 0; i < n; ++i)
      req += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    req += "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = connect_to(port);
    send_all(fd, req);
    got = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), static_cast<size_t>(n + 1));
  size_t prev = 0;
  for (int i = 0; i < n; i += 37) {
    size_t at = got.find("\"/r" + std::to_string(i) + "\"");
    ASSERT_NE(at, std::string::npos) << i;
    EXPECT_GE(at, prev);
    prev = at;
  }
}

TEST(HttpServer, MalformedRequestGetsOne400AndClose) {
  server_fixture f;
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd,
             "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"
             "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    got = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_EQ(count(got, "HTTP/1.1 "), 1u) << got;
  EXPECT_EQ(got.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << got;
  EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos);
}

TEST(HttpServer, LimitsAnswer414And413) {
  server_fixture f;
  std::string long_target, big_body;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd, "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
    long_target = read_all(fd);
    close(fd);
    fd = connect_to(port);
    send_all(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
    big_body = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_EQ(long_target.rfind("HTTP/1.1 414 URI Too Long\r\n", 0), 0u) << long_target;
  EXPECT_EQ(big_body.rfind("HTTP/1.1 413 Content Too Large\r\n", 0), 0u) << big_body;
}

TEST(HttpServer, Http10ClosesUnlessKeepAlive) {
  server_fixture f;
  std::string plain, kept;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd, "GET /a HTTP/1.0\r\n\r\n");
    plain = read_all(fd);  // returns because the server closes
    close(fd);
    fd = connect_to(port);
    send_all(fd, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c HTTP/1.0\r\n\r\n");
    kept = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_NE(plain.find("Connection: close"), std::string::npos) << plain;
  EXPECT_EQ(count(kept, "HTTP/1.1 200 OK"), 2u) << kept;
  EXPECT_NE(kept.find("Connection: keep-alive"), std::string::npos);
}

TEST(HttpServer, DrainClosesIdleKeepAliveConnections) {
  server_fixture f;
  int fd = -1;
  std::string first;
  EXPECT_EQ(f.run_with([&](int port) {
    fd = connect_to(port);
    send_all(fd, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) first.assign(buf, static_cast<size_t>(n));
  }),
            0);
  EXPECT_NE(first.find("200 OK"), std::string::npos);
  // The loop has ended, so the server closed the idle connection: we read EOF, not a timeout.
  char c;
  EXPECT_EQ(recv(fd, &c, 1, 0), 0);
  close(fd);
}

TEST(HttpServer, LargeBodiesGoOutWholeAndInOrderWhenTheSocketPushesBack) {
  http_server_config cfg;
  cfg.max_response_body = 512 * 1024;
  server_fixture f(cfg);
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd,
             "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // Not reading for a while: 600 KiB cannot all fit in the socket buffers, so the server
    // must queue the rest of a big body and stop parsing until it is written.
    usleep(200 * 1000);
    got = read_all(fd);
    close(fd);
  }),
            0);
  std::string body(kBig, '\0');
  for (size_t i = 0; i < kBig; ++i) body[i] = big_byte(i);
  std::string head = "Content-Length: " + std::to_string(kBig) + "\r\n";
  size_t a = got.find("{\"target\":\"/a\"}");
  size_t big1 = got.find(body);
  size_t b = got.find("{\"target\":\"/b\"}");
  size_t big2 = got.find(body, big1 + 1);
  size_t c = got.find("{\"target\":\"/c\"}");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(big1, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(big2, std::string::npos);
  ASSERT_NE(c, std::string::npos);
  EXPECT_LT(a, big1);
  EXPECT_LT(big1, b);
  EXPECT_LT(b, big2);
  EXPECT_LT(big2, c);
  EXPECT_EQ(count(got, head), 2u);
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), 5u);
}

TEST(HttpServer, BodyOverTheScratchIsA500) {
  http_server_config cfg;
  cfg.max_response_body = 64 * 1024;  // /big is 300 KiB
  server_fixture f(cfg);
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    send_all(fd, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    got = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_EQ(got.rfind("HTTP/1.1 500 ", 0), 0u) << got.substr(0, 200);
}

namespace {

// A handler that defers every request; a 200 ms timer answers it.
struct later_app {
  uv_loop_t* loop = nullptr;
  http_deferred pending;
  uv_timer_t timer{};
  int answered = 0;
  int drained = 0;
  int answered_when_drained = -1;
};

void defer_handler(void* ctx, const http_request&, http_reply& reply) {
  auto& a = *static_cast<later_app*>(ctx);
  a.pending = reply.defer();
  uv_timer_start(
      &a.timer,
      [](uv_timer_t* t) {
        auto& app = *static_cast<later_app*>(t->data);
        if (app.pending.answer(200, "application/json", "{\"later\":true}")) ++app.answered;
      },
      200, 0);
}

}  // namespace

// The drain's on_done comes once, after the last pending answer went out (not when the
// listener's close completes, which happens first).
TEST(HttpServer, DrainReportsOnceAfterTheLastDeferredAnswer) {
  event_loop loop;
  later_app app;
  app.loop = loop.uv();
  uv_timer_init(loop.uv(), &app.timer);
  app.timer.data = &app;
  http_server server(loop.uv(), http_server_config{}, defer_handler, &app);
  ASSERT_EQ(server.listen("127.0.0.1", 0), 0);
  std::string bound = server.bound_address();
  int port = std::stoi(bound.substr(bound.rfind(':') + 1));
  struct ctx_t {
    http_server* server;
    later_app* app;
  } ctx{&server, &app};
  uv_async_t go{};
  uv_async_init(loop.uv(), &go, [](uv_async_t* a) {
    auto* c = static_cast<ctx_t*>(a->data);
    c->server->drain(
        [](void* p) {
          auto* app = static_cast<later_app*>(p);
          ++app->drained;
          app->answered_when_drained = app->answered;
          uv_close(reinterpret_cast<uv_handle_t*>(&app->timer), nullptr);
        },
        c->app);
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
  });
  go.data = &ctx;
  std::string got;
  std::thread client([&] {
    int fd = connect_to(port);
    send_all(fd, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(50 * 1000);  // the request is pending when the drain starts
    uv_async_send(&go);
    got = read_all(fd);
    close(fd);
  });
  EXPECT_EQ(loop.run(), 0);
  client.join();
  EXPECT_EQ(app.drained, 1);
  EXPECT_EQ(app.answered_when_drained, 1);
  EXPECT_NE(got.find("{\"later\":true}"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
}

TEST(HttpServer, KeptHeadersAndThePeerReachTheHandler) {
  http_server_config cfg;
  cfg.captured_headers = kKept;
  cfg.captured_count = 2;
  cfg.want_peer = true;
  server_fixture f(cfg, echo_headers);
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    // The second request has no Cookie: nothing of the first one's is left over.
    send_all(fd,
             "GET /x HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\nX-Other: no\r\n"
             "AUTHORIZATION: Bearer abc.def\r\n\r\n");
    send_all(fd, "GET /y HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer second\r\n\r\n");
    send_all(fd, "GET /nocontent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    got = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_NE(got.find("a=Bearer abc.def|c=a=1; b=2|p=127.0.0.1"), std::string::npos) << got;
  EXPECT_NE(got.find("a=Bearer second|c=|p=127.0.0.1"), std::string::npos) << got;
  size_t nc = got.find("HTTP/1.1 204 No Content\r\n");
  ASSERT_NE(nc, std::string::npos) << got;
  std::string tail = got.substr(nc);
  EXPECT_EQ(tail.find("Content-Length"), std::string::npos) << tail;
  EXPECT_EQ(tail.find("Content-Type"), std::string::npos) << tail;
  EXPECT_EQ(tail.find("dropped"), std::string::npos) << tail;
}

TEST(HttpServer, KeptHeaderValuesBeyondTheBlockAre431) {
  http_server_config cfg;
  cfg.captured_headers = kKept;
  cfg.captured_count = 2;
  cfg.max_header_bytes = 64 * 1024;
  server_fixture f(cfg, echo_headers);
  std::string got;
  EXPECT_EQ(f.run_with([&](int port) {
    int fd = connect_to(port);
    std::string req = "GET /x HTTP/1.1\r\nHost: x\r\nCookie: " + std::string(9000, 'c') +
                      "\r\nAuthorization: " + std::string(9000, 'a') + "\r\n\r\n";
    send_all(fd, req);
    got = read_all(fd);
    close(fd);
  }),
            0);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 431") << got.substr(0, 200);
}
