// Proves "no allocation per poll in our code": malloc/calloc/realloc are replaced by counting
// wrappers (loop thread only), libcurl and c-ares get uncounted allocators through
// curl_global_init_mem and ares_library_init_mem (their internals are not our code), and 1,000
// polls of a keep-alive target with replicas followed (a lookup through sidecar::resolver each
// poll, answered by a fake DNS server with two addresses, then both probed through
// sidecar::poller), the rings, the alert states, the report formatting and the metrics text
// must count zero after a short warm-up. Failures are part of it: the target answers in a cycle
// of healthy, 503, healthy:false and healthy (ALERT and RECOVERED lines every poll), and every
// tenth lookup finds no address (ALERT reason=dns, the replicas leave and join again). The
// servers run on other threads. Not built with sanitizers.
#include <ares.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "counting_malloc.hpp"
#include "poller.hpp"
#include "report.hpp"
#include "resolver.hpp"
#include "watched_target.hpp"

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
    a.sin_addr.s_addr = htonl(INADDR_ANY);  // 127.0.0.1 and 127.0.0.2, the two replicas
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

  static std::string answer(const char* status, const std::string& body) {
    return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: application/json\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  // Every connection at once (one per replica, kept alive), multiplexed with poll(2).
  void serve() {
    const std::string answers[] = {
        answer("200 OK", "{\"healthy\":true,\"latency\":0.25}"),
        answer("503 Service Unavailable", "{\"healthy\":false,\"latency\":0.25}"),
        answer("200 OK", "{\"healthy\":false,\"latency\":0.95}"),
        answer("200 OK", "{\"healthy\":true,\"latency\":0.5}"),
    };
    size_t served = 0;
    std::vector<pollfd> fds{{listen_fd, POLLIN, 0}};
    std::vector<std::string> in{""};
    while (!stop) {
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      for (size_t i = fds.size(); i-- > 0;) {
        if (fds[i].revents == 0) continue;
        if (i == 0) {
          int fd = accept(listen_fd, nullptr, nullptr);
          if (fd < 0) return;
          fds.push_back({fd, POLLIN, 0});
          in.emplace_back();
          continue;
        }
        char buf[4096];
        ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0) {
          close(fds[i].fd);
          fds.erase(fds.begin() + static_cast<long>(i));
          in.erase(in.begin() + static_cast<long>(i));
          continue;
        }
        in[i].append(buf, static_cast<size_t>(n));
        size_t end;
        while ((end = in[i].find("\r\n\r\n")) != std::string::npos) {
          in[i].erase(0, end + 4);
          const std::string& a = answers[served++ % 4];
          send(fds[i].fd, a.data(), a.size(), MSG_NOSIGNAL);
        }
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) close(fds[i].fd);
  }
};

// A DNS server on its own thread: A questions get 127.0.0.1 and 127.0.0.2 (every tenth none),
// every other question an empty answer (RFC 1035 message format, names copied from the
// question).
struct fake_dns {
  int fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::atomic<int> a_questions{0};
  std::thread thread;

  fake_dns() {
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    timeval tv{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread = std::thread([this] { serve(); });
  }

  ~fake_dns() {
    stop = true;
    thread.join();
    close(fd);
  }

  void serve() {
    unsigned char q[512];
    while (!stop) {
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      ssize_t n = recvfrom(fd, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 17) continue;
      size_t p = 12;  // the question's name, then type and class
      while (p < static_cast<size_t>(n) && q[p] != 0) p += q[p] + 1u;
      if (p + 5 > static_cast<size_t>(n)) continue;
      size_t qend = p + 5;
      bool type_a = q[p + 1] == 0 && q[p + 2] == 1;
      int addresses = type_a && ++a_questions % 10 != 0 ? 2 : 0;
      unsigned char r[600];
      memcpy(r, q, qend);
      r[2] = 0x84 | (q[2] & 0x01);  // response, authoritative, RD copied
      r[3] = 0x80;                  // RA, NOERROR
      r[6] = 0;
      r[7] = static_cast<unsigned char>(addresses);  // answers
      r[8] = r[9] = r[10] = r[11] = 0;
      size_t len = qend;
      for (int k = 0; k < addresses; ++k) {
        const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0,   1, 0, 0,
                                    0,    5,    0, 4, 127, 0, 0, static_cast<unsigned char>(1 + k)};
        memcpy(r + len, rr, sizeof rr);
        len += sizeof rr;
      }
      sendto(fd, r, len, 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }
};

struct run_state {
  uv_loop_t* loop;
  sidecar::poller* poller;
  sidecar::resolver* resolver;
  sidecar::watched_target* target;
  pthread_t loop_thread;
  uv_timer_t next{};
  int polls = 0;
  uint64_t counted = 0;
  sidecar::metrics_series series[4] = {};
  char metrics[64 * 1024] = "";
  bool metrics_ok = true;
};

constexpr int kWarmup = 20;
constexpr int kPolls = 1000;

// One poll is done when both replicas have answered; the report and a scrape follow, as the
// sidecar's main would do them every window.
void on_poll_timer(uv_timer_t* t) {
  auto* st = static_cast<run_state*>(t->data);
  uint64_t now = uv_now(st->loop);
  st->target->report(now);
  core::buf_writer w(st->metrics, sizeof st->metrics);
  size_t n = st->target->series(st->series);
  sidecar::write_probe_metrics(w, st->series, n, 60000);
  if (w.overflow || n > 2) st->metrics_ok = false;
  ++st->polls;
  if (st->polls == kWarmup) alloc_count::start(st->loop_thread);
  if (st->polls == kWarmup + kPolls) {
    st->counted = alloc_count::stop();
    st->poller->close();
    st->resolver->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&st->next), nullptr);
    return;
  }
  st->target->poll(now);
  uv_timer_start(&st->next, on_poll_timer, 20, 0);
}

}  // namespace

TEST(PollAllocation, NoAllocationPerPollInOurCode) {
  ASSERT_EQ(curl_global_init_mem(CURL_GLOBAL_DEFAULT, alloc_count::raw_malloc, curl_free_fn,
                                 alloc_count::raw_realloc, curl_strdup, alloc_count::raw_calloc),
            CURLE_OK);
  ASSERT_EQ(ares_library_init_mem(ARES_LIB_INIT_ALL, alloc_count::raw_malloc, curl_free_fn,
                                  alloc_count::raw_realloc),
            ARES_SUCCESS);
  target t;
  fake_dns dns;
  std::string url = "http://replicas.test:" + std::to_string(t.port) + "/health";
  std::string dns_server = "127.0.0.1:" + std::to_string(dns.port);
  uv_loop_t loop;
  uv_loop_init(&loop);
  sidecar::poller poller(&loop, 2000, 4);
  sidecar::resolver resolver(&loop);
  sidecar::watch_options o;
  o.url = url.c_str();
  o.max_replicas = 4;
  o.window_ms = 60000;
  o.interval_ms = 10;
  sidecar::watched_target target(poller, &resolver, o);
  auto st = std::make_unique<run_state>();
  st->loop = &loop;
  st->poller = &poller;
  st->resolver = &resolver;
  st->target = &target;
  st->loop_thread = pthread_self();
  const char* error = nullptr;
  ASSERT_TRUE(poller.init(&error)) << error;
  ASSERT_TRUE(resolver.init(dns_server.c_str(), 2000, &error)) << error;
  ASSERT_TRUE(target.init(&error)) << error;
  uv_timer_init(&loop, &st->next);
  st->next.data = st.get();
  target.poll(uv_now(&loop));
  uv_timer_start(&st->next, on_poll_timer, 20, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ares_library_cleanup();
  curl_global_cleanup();
  EXPECT_EQ(st->polls, kWarmup + kPolls);
  EXPECT_TRUE(st->metrics_ok);
  // The failure paths did run: lookups failed (the replicas left and joined again).
  EXPECT_GE(target.dns_failures(), static_cast<uint64_t>(kPolls / 10 - 2));
  EXPECT_EQ(st->counted, 0u) << "allocations on the loop thread outside libcurl and c-ares over "
                                "1,000 polls";
}
