#include "healthcheck.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "config.hpp"

namespace core {
namespace {

struct target {
  char host[64];
  int port = 80;
  std::string_view path;
};

// http://IP[:port]/path with a numeric IPv4 address or "localhost": this runs inside the
// container it checks, so there is nothing to resolve.
bool parse_url(std::string_view url, target* t) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme) return false;
  url.remove_prefix(scheme.size());
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  t->path = slash == std::string_view::npos ? std::string_view("/") : url.substr(slash);
  size_t colon = authority.rfind(':');
  std::string_view host = authority.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view p = authority.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), t->port);
    if (ec != std::errc() || end != p.data() + p.size() || t->port < 1 || t->port > 65535) {
      return false;
    }
  }
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty() || host.size() >= sizeof t->host) return false;
  memcpy(t->host, host.data(), host.size());
  t->host[host.size()] = '\0';
  in_addr a{};
  return inet_pton(AF_INET, t->host, &a) == 1;
}

int wait_fd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int rc = 0;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

}  // namespace

int run_healthcheck(const char* url, int timeout_ms) {
  target t;
  if (!parse_url(url, &t)) {
    fprintf(stderr, "hello: error: --healthcheck '%s': expected http://IPv4[:port]/path\n", url);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    printf("healthcheck: fail %s: socket: %s\n", url, strerror(errno));
    return 1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(t.port));
  inet_pton(AF_INET, t.host, &addr.sin_addr);
  auto fail = [&](const char* what, const char* why) {
    printf("healthcheck: fail %s: %s%s%s\n", url, what, why[0] != '\0' ? ": " : "", why);
    close(fd);
    return 1;
  };
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    return fail("connect", strerror(errno));
  }
  if (wait_fd(fd, POLLOUT, timeout_ms) <= 0) return fail("connect", "timed out");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return fail("connect", strerror(err));
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %.*s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: hello-healthcheck\r\n"
                   "Connection: close\r\n\r\n",
                   static_cast<int>(t.path.size()), t.path.data(), t.host, t.port);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof req) return fail("request", "URL too long");
  if (send(fd, req, static_cast<size_t>(n), MSG_NOSIGNAL) != n) {
    return fail("send", strerror(errno));
  }
  // Read the whole head (a server that stalls after its status line is not healthy).
  char head[2048] = "";
  size_t got = 0;
  while (got < sizeof head - 1 && strstr(head, "\r\n\r\n") == nullptr) {
    if (wait_fd(fd, POLLIN, timeout_ms) <= 0) return fail("answer", "timed out");
    ssize_t r = recv(fd, head + got, sizeof head - 1 - got, 0);
    if (r <= 0) return fail("answer", "connection closed before the end of the headers");
    got += static_cast<size_t>(r);
    head[got] = '\0';
  }
  int status = 0;
  if (sscanf(head, "HTTP/1.%*d %d", &status) != 1) return fail("answer", "not HTTP");
  close(fd);
  if (status != 200) {
    printf("healthcheck: fail %s: status %d\n", url, status);
    return 1;
  }
  printf("healthcheck: ok %s: status 200\n", url);
  return 0;
}

int healthcheck_mode(const char* program, int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "--healthcheck") != 0) return -1;
  if (argc > 3) {
    fprintf(stderr, "%s: error: --healthcheck takes at most one URL\n", program);
    return 2;
  }
  return run_healthcheck(argc == 3 ? argv[2] : default_healthcheck_url, 2000);
}

}  // namespace core
